//! Slack incoming webhook: `{"text": …}` posted to the hook URL. Slack answers `200 ok`, or an
//! error code in the body (`invalid_payload`, `no_service`, `channel_is_archived`…) with a 4xx
//! (refused for good), 429 with `Retry-After`, or 5xx (retried).

use secrecy::{ExposeSecret, SecretString};

use super::{Notification, Outcome, classify, plain_text, transport_error};

#[derive(Clone, Debug)]
pub struct Slack {
    /// The hook URL is a secret (anyone holding it can post): from the environment, never logged.
    pub url: SecretString,
    pub client: reqwest::Client,
}

/// Slack's mrkdwn needs `&`, `<` and `>` escaped; log text is full of them.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

impl Slack {
    pub async fn send(&self, n: &Notification<'_>) -> Outcome {
        let text = plain_text(n.payload);
        let (title, rest) = text.split_once('\n').unwrap_or((&text, ""));
        let body = serde_json::json!({
            "text": format!("*{}*\n{}", escape(title), escape(rest)),
        });
        match self.client.post(self.url.expose_secret()).json(&body).send().await {
            Ok(response) => classify(response).await,
            Err(e) => transport_error(&e),
        }
    }
}
