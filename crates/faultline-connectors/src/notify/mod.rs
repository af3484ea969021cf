//! Notifiers: where alerts go. Each takes one [`Notification`] and says how it went
//! ([`Outcome`]); the outbox worker in the binary records the outcome and retries.
//!
//! Every notifier sends the alert's idempotency key in the form its receiver can use: a header
//! for webhooks, the `Message-ID` of an email, a marker in GitHub issue bodies and comments.

mod email;
mod github;
mod slack;
mod webhook;

use std::time::Duration;

pub use email::{Email, EmailTls};
pub use github::GitHub;
pub use slack::Slack;
pub use webhook::{Webhook, signature as webhook_signature};

/// One alert to deliver.
#[derive(Debug, Clone, Copy)]
pub struct Notification<'a> {
    /// The same for every attempt of one alert: receivers drop repeats with it.
    pub idempotency_key: &'a str,
    /// `pattern:<id>`, `error_rate:<health>` or `flood_guard`.
    pub subject: &'a str,
    /// The alert as JSON (see `faultline_store`'s `alert_payload`).
    pub payload: &'a serde_json::Value,
    /// What this notifier created for the subject before (a GitHub issue number).
    pub reference: Option<&'a str>,
}

/// How a delivery attempt went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered; `reference` is kept for the subject's next alert.
    Sent { reference: Option<String> },
    /// Try again later: the receiver is down, slow or rate-limiting (`after` if it said when).
    Retry { after: Option<Duration>, reason: String },
    /// The receiver refused it for good (bad token, bad request): do not retry.
    Rejected { reason: String },
}

/// A configured notifier.
#[derive(Debug, Clone)]
pub enum Notifier {
    Webhook(Webhook),
    Slack(Slack),
    GitHub(GitHub),
    Email(Email),
}

impl Notifier {
    /// The name deliveries are recorded under.
    pub fn name(&self) -> &'static str {
        match self {
            Notifier::Webhook(_) => "webhook",
            Notifier::Slack(_) => "slack",
            Notifier::GitHub(_) => "github",
            Notifier::Email(_) => "email",
        }
    }

    pub async fn send(&self, n: &Notification<'_>) -> Outcome {
        match self {
            Notifier::Webhook(w) => w.send(n).await,
            Notifier::Slack(s) => s.send(n).await,
            Notifier::GitHub(g) => g.send(n).await,
            Notifier::Email(e) => e.send(n).await,
        }
    }
}

/// The HTTP client notifiers share: bounded time per attempt, our user agent.
pub fn http_client(timeout: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")))
        .build()
        .unwrap_or_else(|_| reqwest::Client::new())
}

/// The usual reading of an HTTP answer: 2xx sent; 408, 429 and 5xx retried (after
/// `Retry-After` if given); any other status refused, with the start of the body as the reason.
pub(crate) async fn classify(response: reqwest::Response) -> Outcome {
    let status = response.status();
    let after = retry_after(response.headers());
    let body = response.text().await.unwrap_or_default();
    if status.is_success() {
        return Outcome::Sent { reference: None };
    }
    let reason = format!("HTTP {}: {}", status.as_u16(), snippet(&body));
    if status.as_u16() == 408 || status.as_u16() == 429 || status.is_server_error() {
        Outcome::Retry { after, reason }
    } else {
        Outcome::Rejected { reason }
    }
}

/// A transport failure (refused, reset, timed out) is worth retrying. The URL is left out of
/// the reason: a Slack hook URL is a secret, and reasons are logged and stored.
pub(crate) fn transport_error(e: &reqwest::Error) -> Outcome {
    Outcome::Retry { after: None, reason: snippet(&crate::http::describe(e)) }
}

/// `Retry-After` in seconds (the HTTP-date form is rare from these services and ignored).
pub(crate) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: u64 = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// The first 200 characters of a receiver's answer, control characters removed, for an error
/// message (receivers' bodies are untrusted text too).
pub(crate) fn snippet(s: &str) -> String {
    let mut out: String = s.chars().filter(|c| !c.is_control() || *c == ' ').take(200).collect();
    if s.chars().count() > 200 {
        out.push('…');
    }
    out
}

/// The alert in plain text, shared by Slack, GitHub and email.
pub(crate) fn plain_text(payload: &serde_json::Value) -> String {
    let s = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let mut out = format!(
        "{}\nRule: {} ({})\nWhy: {}\nFired at: {}\n",
        s(&payload["summary"]),
        s(&payload["rule"]),
        s(&payload["priority"]),
        s(&payload["reason"]),
        s(&payload["fired_at"]),
    );
    let p = &payload["pattern"];
    if p.is_object() {
        // The short id, as the CLI and the page show it; the whole fingerprint is in the JSON.
        let id = p["short_id"].as_str().or(p["fingerprint"].as_str()).unwrap_or("");
        out.push_str(&format!(
            "Pattern: {id}\nOccurrences: {}\nFirst seen: {}\nLast seen: {}\nSource: {}\n",
            p["occurrences"],
            s(&p["first_seen"]),
            s(&p["last_seen"]),
            s(&p["source"]),
        ));
        if let Some(sample) = p["sample_message"].as_str() {
            out.push_str(&format!("Example: {}\n", snippet(sample)));
        }
    }
    if let Some(link) = payload["links"]["pattern"].as_str() {
        out.push_str(&format!("Open: {link}\n"));
    }
    if let Some(task) = payload["task"].as_object() {
        out.push_str(&format!("Task #{}: {}\n", task["id"], task["title"].as_str().unwrap_or("")));
        if let Some(link) = payload["links"]["task"].as_str() {
            out.push_str(&format!("Task: {link}\n"));
        }
    }
    // A digest lists the alerts whose notifications it stands for.
    if let Some(held) = payload["held"].as_array() {
        for h in held {
            let link = h["pattern"].as_str().map(|l| format!(" {l}")).unwrap_or_default();
            out.push_str(&format!("- {}{link}\n", snippet(&s(&h["summary"]))));
        }
        let listed = held.len() as u64;
        if let Some(more) = payload["held_count"].as_u64().filter(|n| *n > listed) {
            out.push_str(&format!("… and {} more\n", more - listed));
        }
    }
    out
}
