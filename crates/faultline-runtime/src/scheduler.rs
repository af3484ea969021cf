//! Periodic jobs of `faultline serve`: each runs on its own interval, and every run is recorded
//! in the store (start, end, outcome, what it did).

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

/// Starts every job on its interval (first run one interval after start) until `shutdown`.
pub fn start(jobs: Vec<Job>, store: Arc<dyn Store>, shutdown: CancellationToken, tasks: &mut JoinSet<()>) {
    for job in jobs {
        let store = store.clone();
        let shutdown = shutdown.clone();
        tasks.spawn(async move {
            let every = job.every.max(Duration::from_millis(100));
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                run_once(&job, store.as_ref()).await;
            }
        });
    }
}

/// Runs a job once and records the run; a failure is recorded, never propagated.
pub async fn run_once(job: &Job, store: &dyn Store) {
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
    let run = JobRun {
        job: job.name.to_owned(),
        started_ms,
        finished_ms: now_ms(),
        outcome: outcome.to_owned(),
        detail,
    };
    if let Err(e) = store.record_job_run(&run).await {
        tracing::warn!(job = job.name, "cannot record the job run: {e}");
    }
}
