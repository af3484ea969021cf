//! GitHub issues: the first alert on a subject opens an issue labelled with the pattern's
//! fingerprint; later alerts comment on it. Follows GitHub's REST API: 201 created, 422
//! validation failed (refused), 403/429 with `x-ratelimit-remaining: 0` and `x-ratelimit-reset`
//! or `retry-after` (retried when the limit resets), a bare 403 saying "secondary rate limit"
//! (retried after a minute), 5xx (retried).
//!
//! If faultline stops between GitHub creating the issue and faultline recording its number, the
//! retry finds the issue by its label and the alert's idempotency key in its body, and does not
//! open a second one.

use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::{Response, StatusCode};

use secrecy::{ExposeSecret, SecretString};

use super::{Notification, Outcome, classify, plain_text, retry_after, snippet, transport_error};

#[derive(Clone, Debug)]
pub struct GitHub {
    /// `https://api.github.com`, or a GitHub Enterprise API root.
    pub api_url: String,
    /// `owner/name`.
    pub repo: String,
    /// From the environment; never logged.
    pub token: SecretString,
    pub client: reqwest::Client,
}

/// The label that ties an issue to a subject.
fn label(n: &Notification<'_>) -> String {
    match n.payload["pattern"]["fingerprint"].as_str() {
        Some(fp) => format!("faultline:{}", &fp[..fp.len().min(12)]),
        None => format!("faultline:{}", n.subject.split(':').next().unwrap_or("alert")),
    }
}

fn marker(n: &Notification<'_>) -> String {
    format!("<!-- faultline idempotency-key: {} -->", n.idempotency_key)
}

/// GitHub's rate limits: 403 or 429 with `x-ratelimit-remaining: 0` (wait for
/// `x-ratelimit-reset`) or with `retry-after` (secondary limits).
fn rate_limited(status: StatusCode, headers: &HeaderMap) -> Option<Outcome> {
    if status != StatusCode::FORBIDDEN && status != StatusCode::TOO_MANY_REQUESTS {
        return None;
    }
    let header = |name: &str| {
        headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok())
    };
    let after = if let Some(after) = retry_after(headers) {
        after
    } else if header("x-ratelimit-remaining") == Some(0) {
        let reset = header("x-ratelimit-reset").unwrap_or(0);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Duration::from_secs(reset.saturating_sub(now).max(1))
    } else if status == StatusCode::TOO_MANY_REQUESTS {
        Duration::from_secs(60)
    } else {
        return None;
    };
    Some(Outcome::Retry {
        after: Some(after),
        reason: format!("GitHub rate limit (HTTP {})", status.as_u16()),
    })
}

impl GitHub {
    fn url(&self, path: &str) -> String {
        format!("{}/repos/{}/{}", self.api_url.trim_end_matches('/'), self.repo, path)
    }

    fn request(&self, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
        self.client
            .request(method, url)
            .bearer_auth(self.token.expose_secret())
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    /// Reads an answer: rate limits first, then the usual classification.
    async fn answer(response: Response) -> Result<Response, Outcome> {
        if let Some(limited) = rate_limited(response.status(), response.headers()) {
            return Err(limited);
        }
        if response.status().is_success() {
            return Ok(response);
        }
        if response.status() == StatusCode::FORBIDDEN {
            // A secondary rate limit may come as a bare 403 that only says so in its message;
            // GitHub's advice then is to wait at least a minute.
            let body = response.text().await.unwrap_or_default();
            let reason = format!("HTTP 403: {}", snippet(&body));
            if body.to_ascii_lowercase().contains("secondary rate limit") {
                return Err(Outcome::Retry { after: Some(Duration::from_secs(60)), reason });
            }
            return Err(Outcome::Rejected { reason });
        }
        Err(classify(response).await)
    }

    pub async fn send(&self, n: &Notification<'_>) -> Outcome {
        match self.deliver(n).await {
            Ok(number) => Outcome::Sent { reference: Some(number.to_string()) },
            Err(outcome) => outcome,
        }
    }

    async fn deliver(&self, n: &Notification<'_>) -> Result<u64, Outcome> {
        let known = match n.reference.and_then(|r| r.parse::<u64>().ok()) {
            Some(number) => Some((number, false)),
            None => self.find_issue(n).await?,
        };
        match known {
            // This very alert opened the issue before faultline could record it.
            Some((number, true)) => Ok(number),
            Some((number, false)) => self.comment(n, number).await,
            None => self.open_issue(n).await,
        }
    }

    /// The newest issue with the subject's label, and whether this alert opened it.
    async fn find_issue(&self, n: &Notification<'_>) -> Result<Option<(u64, bool)>, Outcome> {
        let request = self.request(reqwest::Method::GET, self.url("issues")).query(&[
            ("labels", label(n).as_str()),
            ("state", "all"),
            ("per_page", "1"),
        ]);
        let response = Self::answer(request.send().await.map_err(|e| transport_error(&e))?).await?;
        let issues: serde_json::Value = response.json().await.map_err(|e| Outcome::Retry {
            after: None,
            reason: format!("malformed issue list from GitHub: {}", snippet(&e.to_string())),
        })?;
        let Some(issue) = issues.as_array().and_then(|a| a.first()) else { return Ok(None) };
        let number = issue["number"].as_u64().ok_or_else(|| Outcome::Retry {
            after: None,
            reason: "issue without a number in GitHub's answer".into(),
        })?;
        let ours = issue["body"].as_str().is_some_and(|b| b.contains(&marker(n)));
        Ok(Some((number, ours)))
    }

    async fn open_issue(&self, n: &Notification<'_>) -> Result<u64, Outcome> {
        let text = plain_text(n.payload);
        let title = n.payload["task"]["title"]
            .as_str()
            .or(n.payload["summary"].as_str())
            .unwrap_or("faultline alert");
        let mut body = format!("{}\n\n```\n{}```\n", marker(n), text.replace("```", "'''"));
        if let Some(trace) = n.payload["pattern"]["stack_trace"].as_str() {
            body.push_str(&format!("\nStack trace:\n```\n{}\n```\n", trace.replace("```", "'''")));
        }
        let request = self.request(reqwest::Method::POST, self.url("issues")).json(&serde_json::json!({
            "title": title.chars().take(250).collect::<String>(),
            "body": body,
            "labels": ["faultline", label(n)],
        }));
        let response = Self::answer(request.send().await.map_err(|e| transport_error(&e))?).await?;
        let issue: serde_json::Value = response.json().await.map_err(|e| Outcome::Retry {
            after: None,
            reason: format!("malformed answer to issue creation: {}", snippet(&e.to_string())),
        })?;
        issue["number"]
            .as_u64()
            .ok_or_else(|| Outcome::Retry { after: None, reason: "created issue has no number".into() })
    }

    async fn comment(&self, n: &Notification<'_>, number: u64) -> Result<u64, Outcome> {
        let body = format!("{}\n\n```\n{}```\n", marker(n), plain_text(n.payload).replace("```", "'''"));
        let request = self
            .request(reqwest::Method::POST, self.url(&format!("issues/{number}/comments")))
            .json(&serde_json::json!({ "body": body }));
        let response = request.send().await.map_err(|e| transport_error(&e))?;
        if matches!(response.status(), StatusCode::NOT_FOUND | StatusCode::GONE) {
            // The issue was deleted or moved: open a new one.
            return self.open_issue(n).await;
        }
        Self::answer(response).await?;
        Ok(number)
    }
}
