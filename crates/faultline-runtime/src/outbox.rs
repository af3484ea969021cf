//! The outbox worker: delivers the notifications stored with each alert.
//!
//! Deliveries are rows in the database, leased while an attempt runs, so they survive a
//! restart (a crashed attempt's lease runs out and it is tried again) and a slow receiver never
//! holds up ingestion. Failures are retried with exponential backoff, or after the receiver's
//! `Retry-After`; after `max_attempts` a delivery is given up and reported as an error.

use std::sync::Arc;
use std::time::Duration;

use faultline_connectors::backoff::Backoff;
use faultline_connectors::notify::{Notification, Notifier, Outcome};
use faultline_store::{DeliveryJob, DeliveryResult, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

/// The outbox worker's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub max_attempts: u32,
    /// How long an attempt may hold a delivery before another worker may take it.
    pub lease: Duration,
    /// How often due retries are looked for when nothing wakes the worker.
    pub poll: Duration,
}

pub struct Outbox {
    store: Arc<dyn Store>,
    notifiers: Arc<Vec<Notifier>>,
    settings: Settings,
}

/// Waits before retry `attempt` (1-based): 2 s, 4 s, 8 s… at most 15 minutes.
pub const BACKOFF: Backoff =
    Backoff { first: Duration::from_secs(2), factor: 2.0, max: Duration::from_secs(15 * 60), jitter: 0.0 };

impl Outbox {
    pub fn new(store: Arc<dyn Store>, notifiers: Vec<Notifier>, settings: Settings) -> Outbox {
        Outbox { store, notifiers: Arc::new(notifiers), settings }
    }

    /// Delivers until shutdown; `wake` is notified when new alerts are stored.
    pub async fn run(self, wake: Arc<Notify>, shutdown: CancellationToken) {
        loop {
            match self.run_once(now_ms()).await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %format!("{e:#}"), "outbox: cannot read deliveries"),
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(self.settings.poll) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Attempts every due delivery once, concurrently; returns how many were attempted.
    pub async fn run_once(&self, now: i64) -> anyhow::Result<usize> {
        let lease = self.settings.lease.as_millis() as i64;
        let jobs = self.store.claim_deliveries(now, lease, 32).await?;
        let n = jobs.len();
        let mut attempts = tokio::task::JoinSet::new();
        for job in jobs {
            let (store, notifiers, max_attempts) =
                (self.store.clone(), self.notifiers.clone(), self.settings.max_attempts);
            attempts.spawn(async move {
                let result = attempt(&notifiers, &job, max_attempts).await;
                if let Err(e) = store.finish_delivery(&job, &result, now_ms()).await {
                    // The lease runs out and the delivery is tried again: at least once, not lost.
                    tracing::warn!(delivery = job.id, error = %e, "outbox: cannot record the attempt");
                }
            });
        }
        while attempts.join_next().await.is_some() {}
        Ok(n)
    }
}

async fn attempt(notifiers: &[Notifier], job: &DeliveryJob, max_attempts: u32) -> DeliveryResult {
    let Some(notifier) = notifiers.iter().find(|n| n.name() == job.notifier) else {
        return DeliveryResult::Failed {
            error: format!("notifier {} is no longer configured", job.notifier),
        };
    };
    let notification = Notification {
        idempotency_key: &job.idempotency_key,
        subject: &job.subject,
        payload: &job.payload,
        reference: job.reference.as_deref(),
    };
    let attempt = u32::try_from(job.attempts).unwrap_or(u32::MAX).saturating_add(1);
    let outcome = notifier.send(&notification).await;
    let counted = match &outcome {
        Outcome::Sent { .. } => "sent",
        Outcome::Rejected { .. } => "failed",
        Outcome::Retry { .. } if attempt >= max_attempts => "failed",
        Outcome::Retry { .. } => "retried",
    };
    metrics::counter!("faultline_notifications_total", "channel" => job.notifier.clone(), "outcome" => counted)
        .increment(1);
    match outcome {
        Outcome::Sent { reference } => {
            tracing::debug!(notifier = %job.notifier, alert = job.alert_id, attempt, "notification sent");
            DeliveryResult::Sent { reference }
        }
        Outcome::Rejected { reason } => {
            tracing::error!(notifier = %job.notifier, alert = job.alert_id, error = %reason, "notification refused; not retrying");
            DeliveryResult::Failed { error: reason }
        }
        Outcome::Retry { reason, .. } if attempt >= max_attempts => {
            tracing::error!(
                notifier = %job.notifier,
                alert = job.alert_id,
                error = %reason,
                "notifier keeps failing: gave up after {attempt} attempts"
            );
            DeliveryResult::Failed { error: format!("gave up after {attempt} attempts: {reason}") }
        }
        Outcome::Retry { after, reason } => {
            let wait = after.unwrap_or_default().max(BACKOFF.wait(attempt));
            tracing::warn!(notifier = %job.notifier, alert = job.alert_id, error = %reason, retry_in = ?wait, "notification failed; will retry");
            DeliveryResult::Retry { next_attempt_ms: now_ms() + wait.as_millis() as i64, error: reason }
        }
    }
}

#[cfg(test)]
mod tests {
    use faultline_connectors::notify::{Webhook, http_client};
    use faultline_testkit::fake::{FakeHttp, Reply};

    use super::*;

    fn job(attempts: i64) -> DeliveryJob {
        DeliveryJob {
            id: 1,
            alert_id: 7,
            notifier: "webhook".into(),
            idempotency_key: "faultline-alert-7".into(),
            attempts,
            subject: "pattern:1".into(),
            payload: serde_json::json!({"alert": 7}),
            reference: None,
        }
    }

    /// One attempt against a webhook receiver answering `reply`: the result and how far ahead
    /// of the attempt the next one is due (for retries).
    async fn attempt_with(reply: Reply, attempts: i64, max_attempts: u32) -> (DeliveryResult, Option<i64>) {
        let fake = FakeHttp::start(reply).await;
        let hook =
            Webhook { url: fake.url("/hook"), secret: None, client: http_client(Duration::from_secs(5)) };
        let before = now_ms();
        let result = attempt(&[Notifier::Webhook(hook)], &job(attempts), max_attempts).await;
        let wait = match &result {
            DeliveryResult::Retry { next_attempt_ms, .. } => Some(next_attempt_ms - before),
            _ => None,
        };
        (result, wait)
    }

    #[test]
    fn backoff_doubles_from_two_seconds_up_to_fifteen_minutes() {
        let secs: Vec<u64> = [1, 2, 3, 9, 10, 40].iter().map(|a| BACKOFF.wait(*a).as_secs()).collect();
        assert_eq!(secs, [2, 4, 8, 512, 900, 900]);
    }

    #[tokio::test]
    async fn a_failed_attempt_waits_the_backoff_or_the_receivers_retry_after_whichever_is_longer() {
        let (result, wait) = attempt_with(Reply::new(503, "down"), 2, 5).await;
        assert!(
            matches!(&result, DeliveryResult::Retry { error, .. } if error.starts_with("HTTP 503")),
            "{result:?}"
        );
        let wait = wait.expect("a retry");
        assert!((8_000..8_000 + 2_000).contains(&wait), "third attempt: backoff 8 s, got {wait} ms");
        let (_, wait) = attempt_with(Reply::new(429, "slow down").header("Retry-After", "120"), 0, 5).await;
        let wait = wait.expect("a retry");
        assert!((120_000..122_000).contains(&wait), "Retry-After 120 s, got {wait} ms");
    }

    #[tokio::test]
    async fn the_last_attempt_gives_up_and_a_refusal_is_final() {
        let (result, _) = attempt_with(Reply::new(503, "down"), 4, 5).await;
        assert!(
            matches!(&result, DeliveryResult::Failed { error } if error.starts_with("gave up after 5 attempts")),
            "{result:?}"
        );
        let (result, _) = attempt_with(Reply::new(400, "bad payload"), 0, 5).await;
        assert_eq!(result, DeliveryResult::Failed { error: "HTTP 400: bad payload".into() });
        let (result, _) = attempt_with(Reply::new(204, ""), 4, 5).await;
        assert_eq!(result, DeliveryResult::Sent { reference: None });
    }

    #[tokio::test]
    async fn a_notifier_no_longer_configured_fails_the_delivery() {
        let result = attempt(&[], &job(0), 5).await;
        assert_eq!(
            result,
            DeliveryResult::Failed { error: "notifier webhook is no longer configured".into() }
        );
    }
}
