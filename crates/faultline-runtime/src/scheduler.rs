//! Periodic jobs of `faultline serve`: each runs on its own interval, and every run is recorded
//! in the store (start, end, outcome, what it did, which instance ran it).
//!
//! Instances sharing a database share the jobs: before a run, an instance takes the job's lease
//! in the store, which it gets only when the job is due and no one else holds it; after the
//! run the lease is given back with the time the job is next due. So each job runs once per
//! interval across instances, and the lease of an instance that dies mid-run runs out
//! ([`lease_for`]) and is taken over.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use faultline_store::{JobRun, Store};
use serde_json::{Value, json};
use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;

type JobFuture = Pin<Box<dyn Future<Output = anyhow::Result<JobOutcome>> + Send>>;

/// What a run did: `ok` with counts, or `skipped` with the reason.
pub struct JobOutcome {
    pub skipped: bool,
    pub detail: Value,
}

impl JobOutcome {
    pub fn ok(detail: Value) -> JobOutcome {
        JobOutcome { skipped: false, detail }
    }
}

/// A named job and how often it runs.
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    pub run: Arc<dyn Fn() -> JobFuture + Send + Sync>,
}

impl Job {
    pub fn new<F, Fut>(name: &'static str, every: Duration, run: F) -> Job
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = anyhow::Result<JobOutcome>> + Send + 'static,
    {
        Job { name, every, run: Arc::new(move || Box::pin(run())) }
    }
}

/// How long a job's lease holds: past it, an instance that died mid-run is taken over. At least
/// the interval (a run is not started twice within one) and 30 s, at most 10 minutes.
pub fn lease_for(every: Duration) -> Duration {
    every.clamp(Duration::from_secs(30), Duration::from_secs(600))
}

/// Starts every job on its interval (first run one interval after start) until `shutdown`;
/// `instance` names this process in leases and run records.
pub fn start(
    jobs: Vec<Job>,
    store: Arc<dyn Store>,
    instance: &str,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    for job in jobs {
        let store = store.clone();
        let shutdown = shutdown.clone();
        let instance = instance.to_owned();
        tasks.spawn(async move {
            let every = job.every.max(Duration::from_millis(100));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                run_leased(&job, store.as_ref(), &instance).await;
            }
        });
    }
}

/// Runs the job if this instance gets its lease.
pub async fn run_leased(job: &Job, store: &dyn Store, instance: &str) -> bool {
    with_lease(store, job.name, job.every, instance, run_once(job, store, instance)).await.is_some()
}

/// Runs `work` if this instance gets the lease of the job `name` (it is due and no one else
/// holds it), then gives the lease back with the next due time, `every` after this start.
/// `None` when another instance has it.
pub async fn with_lease<T>(
    store: &dyn Store,
    name: &str,
    every: Duration,
    instance: &str,
    work: impl Future<Output = T>,
) -> Option<T> {
    let every = i64::try_from(every.as_millis()).unwrap_or(i64::MAX / 4);
    let lease =
        i64::try_from(lease_for(Duration::from_millis(every as u64)).as_millis()).unwrap_or(i64::MAX / 4);
    let now = now_ms();
    match store.claim_job(name, instance, now, now + lease).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::debug!(job = name, "another instance runs it this time");
            return None;
        }
        Err(e) => {
            tracing::warn!(job = name, "cannot take the job's lease: {e}");
            return None;
        }
    }
    let out = work.await;
    // A tenth of the interval early, so the next tick of any instance finds it due despite
    // timer drift.
    if let Err(e) = store.finish_job(name, instance, now + every - every / 10).await {
        tracing::warn!(job = name, "cannot give the job's lease back: {e}");
    }
    Some(out)
}

/// Runs a job once and records the run; a failure is recorded, never propagated.
pub async fn run_once(job: &Job, store: &dyn Store, instance: &str) {
    let started_ms = now_ms();
    let result = (job.run)().await;
    let (outcome, detail) = match result {
        Ok(o) if o.skipped => ("skipped", o.detail),
        Ok(o) => ("ok", o.detail),
        Err(e) => {
            tracing::warn!(job = job.name, "job failed: {e:#}");
            ("failed", json!({ "error": format!("{e:#}") }))
        }
    };
    let finished_ms = now_ms();
    metrics::counter!("faultline_job_runs_total", "job" => job.name, "outcome" => outcome).increment(1);
    metrics::histogram!("faultline_job_duration_seconds", "job" => job.name)
        .record((finished_ms - started_ms).max(0) as f64 / 1000.0);
    let run = JobRun {
        job: job.name.to_owned(),
        instance: instance.to_owned(),
        started_ms,
        finished_ms,
        outcome: outcome.to_owned(),
        detail,
    };
    if let Err(e) = store.record_job_run(&run).await {
        tracing::warn!(job = job.name, "cannot record the job run: {e}");
    }
}
