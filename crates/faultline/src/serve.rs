//! `faultline serve`: the sources (files, journald), the HTTP server and the scheduled jobs in
//! one process, until SIGTERM or SIGINT.
//!
//! On a signal the server stops taking requests, the sources hand over what they read and their
//! cursors are stored with it, and the process exits 0. Whatever was read but not yet stored is
//! read again on the next start (cursors only move with the entries they cover).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::Datelike;
use faultline_connectors::journal::{self, JournalConfig, JournalStatus};
use faultline_connectors::tail::{FileBatch, TailOptions, Tailer};
use faultline_core::ParseContext;
use faultline_core::alert::FloodLimits;
use faultline_store::{IngestBatch, IngestOutcome, Store};
use faultline_web::{ApiToken, AppState, Auth, Settings};
use serde_json::json;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::alerting::{self, Alerting, Evaluator, default_rules};
use crate::config::Config;
use crate::now_ms;
use crate::outbox::{self, Outbox};
use crate::railway_crawl::Crawler;
use crate::scheduler::{self, Job, JobOutcome};

/// How long shutdown waits for sources to hand over their last batch.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What each source stored since the last `collect` job run.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct SourceCounters {
    batches: u64,
    stored: u64,
    duplicates: u64,
    capped: u64,
    below_level: u64,
    cut_lines: u64,
    errors: u64,
    last_error: Option<String>,
}

#[derive(Default)]
struct Counters(Mutex<BTreeMap<&'static str, SourceCounters>>);

impl Counters {
    fn stored(&self, source: &'static str, outcome: &IngestOutcome, below_level: u64, cut_lines: u64) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let c = all.entry(source).or_default();
        c.batches += 1;
        c.stored += outcome.stored;
        c.duplicates += outcome.duplicates;
        c.capped += outcome.capped;
        c.below_level += below_level;
        c.cut_lines += cut_lines;
    }

    fn failed(&self, source: &'static str, error: String) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let c = all.entry(source).or_default();
        c.errors += 1;
        c.last_error = Some(error);
    }

    fn take(&self) -> BTreeMap<&'static str, SourceCounters> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Runs everything until a signal; returns once sources have stopped.
pub async fn serve(store: Arc<dyn Store>, config: Config, listen: SocketAddr) -> anyhow::Result<()> {
    let auth = Auth::new(
        config.tokens.iter().map(|t| ApiToken::new(t.name.clone(), &t.secret, t.scopes.clone())).collect(),
    );
    if auth.is_open() && !listen.ip().is_loopback() {
        bail!(
            "refusing to listen on {listen} without API tokens: anyone who can reach it could send and read \
             errors. Configure [[server.tokens]] (see faultline.example.toml) or listen on 127.0.0.1"
        );
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let local = listener.local_addr().context("reading the bound address")?;
    let shutdown = CancellationToken::new();
    let counters = Arc::new(Counters::default());
    let mut tasks = JoinSet::new();
    let alerting = Arc::new(Alerting::default());
    let alerts =
        start_alerting(&config, store.clone(), alerting.clone(), shutdown.clone(), &mut tasks).await?;

    let sink = Sink { store: store.clone(), counters: counters.clone(), alerting: alerting.clone() };
    let watching = start_files(&config, sink.clone(), shutdown.clone(), &mut tasks).await?;
    let journald = start_journald(&config, sink, shutdown.clone(), &mut tasks).await?;
    let crawler = Crawler::new(&config).map(Arc::new);
    let railway =
        start_railway(crawler.clone(), store.clone(), alerting.clone(), shutdown.clone(), &mut tasks);
    scheduler::start(
        jobs(&config, store.clone(), counters.clone()),
        store.clone(),
        shutdown.clone(),
        &mut tasks,
    );

    let settings = Settings {
        min_level: config.min_level,
        max_stored_per_pattern_minute: config.max_stored_per_pattern_minute,
        max_body_bytes: config.max_body_bytes,
        quota_per_minute: config.ingest_quota_per_minute,
        max_line_bytes: config.max_line_bytes,
        max_clock_skew_ms: i64::try_from(config.max_clock_skew.as_millis()).unwrap_or(i64::MAX),
        ..Settings::default()
    };
    let observer = alerting.clone();
    let mut state = AppState::new(store.clone(), auth, settings)
        .with_observer(Arc::new(move |outcome: &IngestOutcome| observer.observe(outcome)));
    if let Some(crawler) = crawler {
        let (store, alerting) = (store.clone(), alerting.clone());
        state = state.with_crawler(Arc::new(move || {
            let (crawler, store, alerting) = (crawler.clone(), store.clone(), alerting.clone());
            Box::pin(async move {
                let observe = move |outcome: &IngestOutcome| alerting.observe(outcome);
                serde_json::to_value(crawler.run_once(&store, &observe).await).unwrap_or_default()
            })
        }));
    }
    let app = faultline_web::router(state);
    let http_shutdown = shutdown.clone();
    let options = faultline_web::ServerOptions {
        header_timeout: config.header_timeout,
        max_connections: config.max_connections,
        ..faultline_web::ServerOptions::default()
    };
    let server = tokio::spawn(faultline_web::serve(listener, app, options, http_shutdown.cancelled_owned()));
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
    if let Err(e) = store.save_grouping(crate::now_ms()).await {
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

/// Where sources' batches go: the store, the counters of the `collect` job and the alert rules.
#[derive(Clone)]
struct Sink {
    store: Arc<dyn Store>,
    counters: Arc<Counters>,
    alerting: Arc<Alerting>,
}

impl Sink {
    async fn ingest(&self, source: &'static str, batch: IngestBatch, cut_lines: u64) -> Result<(), String> {
        let below = batch.below_level();
        let outcome = self.store.ingest(batch).await.map_err(|e| e.to_string())?;
        self.counters.stored(source, &outcome, below, cut_lines);
        self.alerting.observe(&outcome);
        Ok(())
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
    store: Arc<dyn Store>,
    alerting: Arc<Alerting>,
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
            let (crawler, store, alerting, shutdown) =
                (crawler.clone(), store.clone(), alerting.clone(), shutdown.clone());
            tasks.spawn(async move {
                let observe = move |outcome: &IngestOutcome| alerting.observe(outcome);
                crawler.run_live(&store, &target, &observe, &shutdown).await;
            });
        }
    }
    let described = if crawler.live() { format!("{described}, live") } else { described };
    tasks.spawn(async move {
        let observe = move |outcome: &IngestOutcome| alerting.observe(outcome);
        loop {
            crawler.run_once(&store, &observe).await;
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
    sink: Sink,
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
        ..TailOptions::default()
    };
    let mut tailer = Tailer::new(include.clone(), &config.files.exclude, options)?;
    let store = sink.store.clone();
    let known = store.cursors("file:").await.context("reading saved file positions")?;
    tailer.remember(known.iter().map(|(id, _, _)| id.as_str()));
    let handle = tokio::runtime::Handle::current();
    let poll = config.files.poll_interval.max(Duration::from_millis(50));
    let (min_level, cap) = (config.min_level, config.max_stored_per_pattern_minute);
    tasks.spawn_blocking(move || {
        let mut reported: BTreeMap<PathBuf, String> = BTreeMap::new();
        loop {
            let now = now_ms();
            let mut load = |id: &str| handle.block_on(store.cursor(id)).map_err(|e| e.to_string());
            let mut commit = |batch: FileBatch| -> Result<(), String> {
                let cut = batch.cut_lines;
                let b = IngestBatch::from_events(
                    &batch.source_id,
                    Some(batch.checkpoint.to_string()),
                    batch.events,
                    min_level,
                    cap,
                    now,
                );
                handle.block_on(sink.ingest("files", b, cut))
            };
            let report = tailer.poll(now, &mut load, &mut commit);
            let errors: BTreeMap<PathBuf, String> = report.errors.into_iter().collect();
            for (path, error) in &errors {
                if reported.get(path) != Some(error) {
                    tracing::warn!(path = %path.display(), "file source: {error}");
                    sink.counters.failed("files", error.clone());
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
    sink: Sink,
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
    let cursor = sink.store.cursor(journal::SOURCE_ID).await.context("reading the saved journal cursor")?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<journal::Delivery>(4);
    let (status_tx, mut status_rx) = tokio::sync::watch::channel(JournalStatus::Running);
    tasks.spawn(journal::run(journal_config, cursor, tx, status_tx, shutdown));
    let status_counters = sink.counters.clone();
    tasks.spawn(async move {
        while status_rx.changed().await.is_ok() {
            if let JournalStatus::Failed(e) = status_rx.borrow().clone() {
                status_counters.failed("journald", e);
            }
        }
    });
    let (min_level, cap) = (config.min_level, config.max_stored_per_pattern_minute);
    tasks.spawn(async move {
        while let Some((batch, ack)) = rx.recv().await {
            let b = IngestBatch::from_events(
                journal::SOURCE_ID,
                Some(batch.cursor),
                batch.events,
                min_level,
                cap,
                now_ms(),
            );
            let _ = ack.send(sink.ingest("journald", b, 0).await);
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
fn jobs(config: &Config, store: Arc<dyn Store>, counters: Arc<Counters>) -> Vec<Job> {
    let s = config.schedule.clone();
    let retention_days = config.retention_days;
    let detection_window = s.pattern_detection.as_millis() as i64;
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    vec![
        Job::new("collect", s.collect, move || {
            let counters = counters.clone();
            async move { Ok(JobOutcome::ok(json!({ "sources": counters.take() }))) }
        }),
        Job::new("error_rate_check", s.error_rate_check, move || {
            let store = s1.clone();
            async move {
                let now = now_ms();
                let rate = store.error_rate(now - 5 * 60_000, now).await?;
                let status = match rate.errors_per_minute {
                    r if r < 1.0 => "pass",
                    r if r <= 5.0 => "degraded",
                    _ => "fail",
                };
                Ok(JobOutcome::ok(json!({
                    "window_minutes": 5,
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
                let before = now_ms() - i64::from(retention_days) * 86_400_000;
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
