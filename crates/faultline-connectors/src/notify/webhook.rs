//! Generic webhook: the alert JSON as the body, signed with HMAC-SHA256.
//!
//! Headers: `Idempotency-Key` (the same for every attempt of one alert),
//! `X-Faultline-Timestamp` (Unix seconds) and, with a secret, `X-Faultline-Signature:
//! sha256=<hex>` over `"{timestamp}.{body}"`, so a receiver can check the sender and refuse
//! replays of old requests.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::{Notification, Outcome, classify, transport_error};

#[derive(Clone, Debug)]
pub struct Webhook {
    pub url: String,
    /// From the environment; never logged.
    pub secret: Option<SecretString>,
    pub client: reqwest::Client,
}

/// The signature header's value for a body sent at `timestamp`.
pub fn signature(secret: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub async fn send(&self, n: &Notification<'_>) -> Outcome {
        let body = n.payload.to_string().into_bytes();
        let timestamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut request = self
            .client
            .post(&self.url)
            .header("Content-Type", "application/json")
            .header("Idempotency-Key", n.idempotency_key)
            .header("X-Faultline-Timestamp", timestamp.to_string());
        if let Some(secret) = &self.secret {
            request =
                request.header("X-Faultline-Signature", signature(secret.expose_secret(), timestamp, &body));
        }
        match request.body(body).send().await {
            Ok(response) => classify(response).await,
            Err(e) => transport_error(&e),
        }
    }
}
