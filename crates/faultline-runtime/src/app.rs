//! [`Application`], what `faultline serve` runs: the sources (files, journald, Railway), the HTTP
//! server, the alert rules, the outbox and the scheduled jobs in one process, all storing
//! through one [`Pipeline`], until SIGTERM, SIGINT or its shutdown token.
//!
//! On a signal the server stops taking requests, the sources hand over what they read and their
//! cursors are stored with it, and the process exits 0. Whatever was read but not yet stored is
//! read again on the next start (cursors only move with the entries they cover).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Datelike;
use faultline_connectors::journal::{self, JournalConfig, JournalStatus};
use faultline_connectors::tail::{FileBatch, TailOptions, Tailer};
use faultline_core::ParseContext;
use faultline_core::alert::FloodLimits;
use faultline_core::{DAY_MS, MINUTE_MS};
use faultline_store::{IngestOutcome, Pipeline, PipelineSettings, SourceKind, Store, Submission};
use faultline_web::{ApiToken, AppState, Auth, Settings};
use secrecy::ExposeSecret;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerting::{self, Alerting, Evaluator, default_rules};
use crate::clock::now_ms;
use crate::config::Config;
use crate::outbox::{self, Outbox};
use crate::railway_crawl::Crawler;
use crate::scheduler::{self, Job, JobOutcome};

/// How long shutdown waits for sources to hand over their last batch.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// The whole service, built from its configuration: bound to its address, not yet running.
pub struct Application {
    config: Config,
    store: Arc<dyn Store>,
    listener: tokio::net::TcpListener,
    local: SocketAddr,
    auth: Auth,
    shutdown: CancellationToken,
}

impl Application {
    /// Checks the configuration against the address and binds it; nothing runs yet.
    pub async fn build(
        config: Config,
        store: Arc<dyn Store>,
        listen: SocketAddr,
    ) -> anyhow::Result<Application> {
        // A service with Railway targets and no token would never crawl them.
        config.railway_ready()?;
        // Before any source or rule records a metric, so that /metrics shows them all.
        faultline_web::metrics::prometheus();
        config.install_scrub_rules();
        let auth = Auth::new(
            config
                .tokens
                .iter()
                .map(|t| ApiToken::new(t.name.clone(), t.secret.expose_secret(), t.scopes.clone()))
                .collect(),
        );
        if auth.is_open() && !listen.ip().is_loopback() {
            bail!(
                "refusing to listen on {listen} without API tokens: anyone who can reach it could send and read \
                 errors. Configure [[server.tokens]] (see faultline.example.toml) or listen on 127.0.0.1"
            );
        }
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener.local_addr().context("reading the bound address")?;
        Ok(Application { config, store, listener, local, auth, shutdown: CancellationToken::new() })
    }

    /// The address the server listens on (the port the system chose, for `:0`).
    pub fn addr(&self) -> SocketAddr {
        self.local
    }

    /// Cancelling it stops the application as SIGTERM does.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Runs the sources, the alert rules, the outbox, the scheduled jobs and the HTTP server
    /// until SIGTERM, SIGINT or the shutdown token; returns once sources have stored what they
    /// read.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Application { config, store, listener, local, auth, shutdown } = self;
        let mut tasks = JoinSet::new();
        let alerting = Arc::new(Alerting::default());
        let alerts =
            start_alerting(&config, store.clone(), alerting.clone(), shutdown.clone(), &mut tasks).await?;
        let observer = alerting.clone();
        let pipeline = Arc::new(
            Pipeline::new(
                store.clone(),
                PipelineSettings {
                    min_level: config.min_level,
                    max_stored_per_pattern_minute: config.max_stored_per_pattern_minute,
                },
            )
            .with_observer(Arc::new(move |outcome: &IngestOutcome| observer.observe(outcome))),
        );

        let watching = start_files(&config, pipeline.clone(), shutdown.clone(), &mut tasks).await?;
        let journald = start_journald(&config, pipeline.clone(), shutdown.clone(), &mut tasks).await?;
        let crawler = Crawler::new(&config).map(Arc::new);
        let railway = start_railway(crawler.clone(), pipeline.clone(), shutdown.clone(), &mut tasks);
        let instance = crate::instance::instance_id();
        scheduler::start(
            jobs(&config, pipeline.clone()),
            store.clone(),
            instance,
            shutdown.clone(),
            &mut tasks,
        );

        let settings = Settings {
            max_body_bytes: config.max_body_bytes,
            quota_per_minute: config.ingest_quota_per_minute,
            max_line_bytes: config.max_line_bytes,
            max_clock_skew_ms: i64::try_from(config.max_clock_skew.as_millis()).unwrap_or(i64::MAX),
            metrics_public: config.metrics_public,
            sentry_projects: config.sentry_projects.clone(),
            ..Settings::default()
        };
        let mut state = AppState::new(pipeline.clone(), auth, settings);
        if let Some(crawler) = crawler {
            let pipeline = pipeline.clone();
            state = state.with_crawler(Arc::new(move || {
                let (crawler, pipeline) = (crawler.clone(), pipeline.clone());
                Box::pin(async move {
                    serde_json::to_value(crawler.run_once(&pipeline).await).unwrap_or_default()
                })
            }));
        }
        let app = faultline_web::router(state);
        let options = faultline_web::ServerOptions {
            header_timeout: config.header_timeout,
            max_connections: config.max_connections,
            ..faultline_web::ServerOptions::default()
        };
        let server =
            tokio::spawn(faultline_web::serve(listener, app, options, shutdown.clone().cancelled_owned()));
        tracing::info!(
            "faultline listening on http://{local}; database {}; files: {}; journald: {}; railway: {}; alerts: {}",
            database_kind(&config.database_url),
            if watching.is_empty() { "none".to_owned() } else { watching.join(", ") },
            journald,
            railway,
            alerts,
        );

        wait_for_signal(&shutdown).await;
        tracing::info!("stopping: finishing batches and saving cursors");
        shutdown.cancel();
        let stopped = tokio::time::timeout(SHUTDOWN_GRACE, async {
            while tasks.join_next().await.is_some() {}
            server.await
        })
        .await;
        if let Err(e) = store.save_grouping(now_ms()).await {
            tracing::warn!("cannot save the template miner's state: {e}");
        }
        match stopped {
            Ok(Ok(Ok(()))) => {
                tracing::info!("stopped");
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(e).context("HTTP server"),
            Ok(Err(e)) => Err(anyhow::anyhow!("HTTP server task: {e}")),
            Err(_) => bail!("sources did not stop within {SHUTDOWN_GRACE:?}"),
        }
    }
}

fn database_kind(url: &str) -> String {
    if url.starts_with("postgres") {
        "PostgreSQL".to_owned()
    } else {
        format!("SQLite {}", url.strip_prefix("sqlite://").unwrap_or(url))
    }
}

async fn wait_for_signal(shutdown: &CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot listen for SIGTERM: {e}");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Seeds the rules and starts the evaluator and the outbox; returns how they are described.
async fn start_alerting(
    config: &Config,
    store: Arc<dyn Store>,
    alerting: Arc<Alerting>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<String> {
    let names: Vec<String> = config.notifiers.iter().map(|n| n.name().to_owned()).collect();
    let wake = Arc::new(tokio::sync::Notify::new());
    let outbox = Outbox::new(
        store.clone(),
        config.notifiers.clone(),
        outbox::Settings {
            max_attempts: config.alerts.max_attempts.max(1),
            // Longer than an attempt may take; after a crash, deliveries are retried this soon.
            lease: config.notify_timeout + Duration::from_secs(5),
            poll: Duration::from_secs(1),
        },
    );
    // Deliveries stored before a restart go out even with the rules switched off.
    tasks.spawn(outbox.run(wake.clone(), shutdown.clone()));
    if !config.alerts.enabled {
        return Ok("off".to_owned());
    }
    store
        .seed_rules(&default_rules(&config.alerts), now_ms())
        .await
        .context("writing the default alert rules")?;
    let settings = alerting::Settings {
        interval: config.alerts.evaluate_interval.max(Duration::from_secs(1)),
        limits: FloodLimits {
            per_pattern_per_hour: config.alerts.max_per_pattern_per_hour,
            per_hour: config.alerts.max_per_hour,
        },
        notifiers: names.clone(),
        public_url: config.public_url.clone(),
        digest_after: config.alerts.digest_after,
        instance: crate::instance::instance_id().to_owned(),
    };
    let evaluator = Evaluator::start(store, alerting, settings, wake).await.context("reading past alerts")?;
    tasks.spawn(evaluator.run(shutdown));
    Ok(if names.is_empty() {
        "tasks only, no notifiers".to_owned()
    } else {
        format!("notify {}", names.join(", "))
    })
}

/// Starts the Railway crawler when targets are configured: a crawl at once, then every
/// `railway.poll_interval`. Returns how it is described in the startup line.
fn start_railway(
    crawler: Option<Arc<Crawler>>,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> String {
    let Some(crawler) = crawler else { return "off".to_owned() };
    let described = format!(
        "{} environment(s) every {}",
        crawler.targets().len(),
        humantime::format_duration(crawler.poll_interval())
    );
    if crawler.live() {
        for target in crawler.targets().to_vec() {
            let (crawler, pipeline, shutdown) = (crawler.clone(), pipeline.clone(), shutdown.clone());
            tasks.spawn(async move { crawler.run_live(&pipeline, &target, &shutdown).await });
        }
    }
    let described = if crawler.live() { format!("{described}, live") } else { described };
    tasks.spawn(async move {
        let instance = crate::instance::instance_id();
        loop {
            let store = pipeline.store().clone();
            let crawl = crawler.run_once(&pipeline);
            scheduler::with_lease(store.as_ref(), "railway_crawl", crawler.poll_interval(), instance, crawl)
                .await;
            tokio::select! {
                _ = tokio::time::sleep(crawler.poll_interval()) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    });
    described
}

/// Starts following the configured files; returns the globs watched.
async fn start_files(
    config: &Config,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<Vec<String>> {
    if config.files.paths.is_empty() {
        return Ok(Vec::new());
    }
    let include: Vec<String> = config.files.paths.iter().map(|p| absolute(p)).collect();
    let options = TailOptions {
        max_line_bytes: config.max_line_bytes,
        start_at_end: config.files_start_at_end,
        multiline_wait_ms: config.files.multiline_wait.as_millis() as i64,
        parse: ParseContext {
            default_year: chrono::DateTime::from_timestamp_millis(now_ms()).map_or(1970, |t| t.year()),
        },
        max_batch_events: config.batch_size,
        // What is below the stored level is only counted: its text is not kept.
        whole_from: config.min_level,
        ..TailOptions::default()
    };
    let mut tailer = Tailer::new(include.clone(), &config.files.exclude, options)?;
    let store = pipeline.store().clone();
    let known = store.cursors("file:").await.context("reading saved file positions")?;
    tailer.remember(known.iter().map(|c| c.source_id.as_str()));
    let handle = tokio::runtime::Handle::current();
    let poll = config.files.poll_interval.max(Duration::from_millis(50));
    tasks.spawn_blocking(move || {
        let mut reported: BTreeMap<PathBuf, String> = BTreeMap::new();
        loop {
            let now = now_ms();
            let mut load = |id: &str| handle.block_on(store.cursor(id)).map_err(|e| e.to_string());
            let mut commit = |batch: FileBatch| -> Result<(), String> {
                let submission = Submission {
                    source_id: batch.source_id,
                    cursor: Some(batch.checkpoint.to_string()),
                    events: batch.events,
                    cut_lines: batch.cut_lines,
                    now_ms: now,
                };
                handle
                    .block_on(pipeline.submit(SourceKind::Files, submission))
                    .map(drop)
                    .map_err(|e| e.to_string())
            };
            let report = tailer.poll(now, &mut load, &mut commit);
            let errors: BTreeMap<PathBuf, String> = report.errors.into_iter().collect();
            for (path, error) in &errors {
                if reported.get(path) != Some(error) {
                    tracing::warn!(path = %path.display(), "file source: {error}");
                    pipeline.failed(SourceKind::Files, error.clone());
                }
            }
            reported = errors;
            if shutdown.is_cancelled() {
                return;
            }
            if report.more {
                continue;
            }
            handle.block_on(async {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.cancelled() => {}
                }
            });
        }
    });
    Ok(include)
}

fn absolute(path: &str) -> String {
    let p = PathBuf::from(path);
    if p.is_absolute() {
        return path.to_owned();
    }
    std::env::current_dir().map(|d| d.join(&p).display().to_string()).unwrap_or_else(|_| path.to_owned())
}

/// Starts the journald source when enabled; returns how it is described in the startup line.
async fn start_journald(
    config: &Config,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    tasks: &mut JoinSet<()>,
) -> anyhow::Result<String> {
    if !config.journald.enabled {
        return Ok("off".to_owned());
    }
    let journal_config = JournalConfig {
        command: PathBuf::from(&config.journald.command),
        units: config.journald.units.clone(),
        max_priority: config.journald_max_priority,
        start_at_end: config.journald_start_at_end,
        batch_size: config.batch_size.min(5_000),
        ..JournalConfig::default()
    };
    let cursor =
        pipeline.store().cursor(journal::SOURCE_ID).await.context("reading the saved journal cursor")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<journal::Delivery>(4);
    let (status_tx, mut status_rx) = tokio::sync::watch::channel(JournalStatus::Running);
    tasks.spawn(journal::run(journal_config, cursor, tx, status_tx, shutdown));
    let status_pipeline = pipeline.clone();
    tasks.spawn(async move {
        // Each change of journalctl's state is a run record (`source_status`), so a failing
        // journal shows in `/api/sources` and on the Sources page, not only in the log.
        let mut failing = false;
        while status_rx.changed().await.is_ok() {
            let status = status_rx.borrow().clone();
            let (outcome, detail) = match status {
                JournalStatus::Failed(e) => {
                    status_pipeline.failed(SourceKind::Journald, e.clone());
                    failing = true;
                    ("failed", serde_json::json!({ "target": journal::SOURCE_ID, "error": e }))
                }
                JournalStatus::Running if failing => {
                    failing = false;
                    ("ok", serde_json::json!({ "target": journal::SOURCE_ID }))
                }
                JournalStatus::Running => continue,
            };
            let now = now_ms();
            let run = faultline_store::JobRun {
                job: "source_status".to_owned(),
                instance: crate::instance::instance_id().to_owned(),
                started_ms: now,
                finished_ms: now,
                outcome: outcome.to_owned(),
                detail,
            };
            if let Err(e) = status_pipeline.store().record_job_run(&run).await {
                tracing::warn!("cannot record the journal's state: {e}");
            }
        }
    });
    tasks.spawn(async move {
        while let Some((batch, ack)) = rx.recv().await {
            let submission = Submission {
                source_id: journal::SOURCE_ID.to_owned(),
                cursor: Some(batch.cursor),
                events: batch.events,
                cut_lines: 0,
                now_ms: now_ms(),
            };
            let committed = pipeline.submit(SourceKind::Journald, submission).await;
            let _ = ack.send(committed.map(drop).map_err(|e| e.to_string()));
        }
    });
    let units = if config.journald.units.is_empty() {
        "all units".to_owned()
    } else {
        config.journald.units.join(", ")
    };
    Ok(format!("{units}, priority {} and above", config.journald.priority))
}

/// The designs' periodic jobs.
fn jobs(config: &Config, pipeline: Arc<Pipeline>) -> Vec<Job> {
    let store = pipeline.store().clone();
    let s = config.schedule.clone();
    let retention_days = config.retention_days;
    let detection_window = s.pattern_detection.as_millis() as i64;
    // The health the page shows: the error-rate rule's window and thresholds.
    let (window, degraded, fail) = (
        config.alerts.error_rate_window_minutes.max(1),
        config.alerts.error_rate_degraded,
        config.alerts.error_rate_fail,
    );
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    vec![
        Job::new("collect", s.collect, move || {
            let counters = pipeline.take_counters();
            async move { Ok(JobOutcome::ok(json!({ "sources": counters }))) }
        }),
        Job::new("error_rate_check", s.error_rate_check, move || {
            let store = s1.clone();
            async move {
                let now = now_ms();
                let rate = store.error_rate(now - i64::from(window) * MINUTE_MS, now).await?;
                let status = match rate.errors_per_minute {
                    r if r < degraded => "pass",
                    r if r <= fail => "degraded",
                    _ => "fail",
                };
                Ok(JobOutcome::ok(json!({
                    "window_minutes": window,
                    "total_errors": rate.total_errors,
                    "errors_per_minute": rate.errors_per_minute,
                    "status": status,
                })))
            }
        }),
        Job::new("pattern_detection", s.pattern_detection, move || {
            let store = s2.clone();
            async move {
                let now = now_ms();
                let new = store.new_patterns(now - detection_window, 1000).await?;
                let trending = store.trending_patterns(now, detection_window, 20).await?;
                Ok(JobOutcome::ok(json!({
                    "new_patterns": new.len(),
                    "trending": trending.iter().map(|t| json!({
                        "fingerprint": t.pattern.fingerprint, "recent": t.recent, "previous": t.previous,
                    })).collect::<Vec<_>>(),
                })))
            }
        }),
        Job::new("retention", s.retention, move || {
            let store = s3.clone();
            async move {
                let before = now_ms() - i64::from(retention_days) * DAY_MS;
                let report = store.cleanup(before, 5_000).await?;
                Ok(JobOutcome::ok(json!({
                    "retention_days": retention_days,
                    "entries_deleted": report.entries_deleted,
                    "minute_rows_deleted": report.minute_rows_deleted,
                })))
            }
        }),
    ]
}
