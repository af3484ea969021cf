//! The outbox worker: delivers the notifications stored with each alert.
//!
//! Deliveries are rows in the database, leased while an attempt runs, so they survive a
//! restart (a crashed attempt's lease runs out and it is tried again) and a slow receiver never
//! holds up ingestion. Failures are retried with exponential backoff, or after the receiver's
//! `Retry-After`; after `max_attempts` a delivery is given up and reported as an error.

use std::sync::Arc;
use std::time::Duration;

use faultline_connectors::notify::{Notification, Notifier, Outcome};
use faultline_store::{DeliveryJob, DeliveryResult, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::now_ms;

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
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(attempt.min(20))).min(Duration::from_secs(15 * 60))
}

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
    match notifier.send(&notification).await {
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
            let wait = after.unwrap_or_default().max(backoff(attempt));
            tracing::warn!(notifier = %job.notifier, alert = job.alert_id, error = %reason, retry_in = ?wait, "notification failed; will retry");
            DeliveryResult::Retry { next_attempt_ms: now_ms() + wait.as_millis() as i64, error: reason }
        }
    }
}
