//! The Railway crawler as a job: each run crawls every target from its saved cursor to now,
//! stores the errors with the new cursor in one transaction, and records a run (the design's
//! Monitoring section). Used by `faultline serve` (every `railway.poll_interval`) and
//! `faultline crawl --once`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline_connectors::backoff::Backoff;
use faultline_connectors::railway::{
    self, Budget, Client, RailwayError, Token, Window, crawl, cursor_after, next_window, parse_cursor,
};
use faultline_connectors::railway_live::{self, LiveQuery};
use faultline_store::{Committed, JobRun, Pipeline, SourceKind, Submission};
use serde_json::{Value, json};

use crate::config::{Config, RailwayConfig, RailwayTarget};

/// Attempts of one request within a run before the run is skipped (transient failures).
const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` waited within a run; longer ones skip the run.
const LONGEST_WAIT: Duration = Duration::from_secs(60);

/// What one target's run did, as recorded in `job_runs` (job `railway_crawl`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TargetRun {
    pub target: String,
    pub outcome: CrawlOutcome,
    pub window_since: String,
    pub window_until: String,
    pub logs_fetched: u64,
    pub errors_stored: u64,
    pub duplicates: u64,
    pub new_patterns: u64,
    pub api_requests: u32,
    pub api_errors: u32,
    pub rate_limit_waits: u32,
    /// Lines Railway says it dropped (its 500 lines/s per replica limit).
    pub railway_dropped_lines: u64,
    /// Nanoseconds that held more lines than the API returns at once.
    pub unsplittable: u32,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// How one target's crawl ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CrawlOutcome {
    /// Crawled to now (or as far as the budget allowed) and stored.
    #[default]
    Ok,
    /// Not this time (a transient failure, a long rate limit); the next run resumes.
    Skipped,
    /// The token was refused: no more runs until the configuration changes.
    Stopped,
}

impl CrawlOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            CrawlOutcome::Ok => "ok",
            CrawlOutcome::Skipped => "skipped",
            CrawlOutcome::Stopped => "stopped",
        }
    }
}

impl std::fmt::Display for CrawlOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

/// One finding of `faultline railway check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// False when something needs the user's attention.
    pub ok: bool,
    pub text: String,
}

impl Finding {
    fn ok(text: String) -> Finding {
        Finding { ok: true, text }
    }

    fn problem(text: String) -> Finding {
        Finding { ok: false, text }
    }
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", if self.ok { "ok" } else { "problem" }, self.text)
    }
}

/// The crawler: one client, one request budget shared by every target.
pub struct Crawler {
    client: Client,
    settings: RailwayConfig,
    budget: Mutex<Budget>,
    /// Service names by environment, found once per target.
    services: Mutex<BTreeMap<String, BTreeMap<String, String>>>,
    /// Targets stopped for a refused token, with the reason (until the config changes).
    stopped: Mutex<BTreeMap<String, String>>,
}

impl Crawler {
    /// `None` when no target is configured.
    pub fn new(config: &Config) -> Option<Crawler> {
        Crawler::with_clock(config, Arc::new(railway::SystemClock))
    }

    /// A crawler that reads time and waits through `clock`.
    pub fn with_clock(config: &Config, clock: Arc<dyn railway::Clock>) -> Option<Crawler> {
        let token: Token = config.railway_token.clone()?;
        let http = reqwest::Client::builder()
            .timeout(config.railway.timeout)
            .user_agent(concat!("faultline/", env!("CARGO_PKG_VERSION")))
            .build()
            .ok()?;
        Some(Crawler {
            client: Client::with_clock(config.railway.api_url.clone(), token, http, clock),
            settings: config.railway.clone(),
            budget: Mutex::new(Budget::new(
                config.railway.requests_per_hour,
                config.railway.requests_per_second,
            )),
            services: Mutex::default(),
            stopped: Mutex::default(),
        })
    }

    fn now_ms(&self) -> i64 {
        self.client.clock().now_ms()
    }

    pub fn poll_interval(&self) -> Duration {
        self.settings.poll_interval
    }

    /// Whether live mode is on.
    pub fn live(&self) -> bool {
        self.settings.live
    }

    pub fn targets(&self) -> &[RailwayTarget] {
        &self.settings.targets
    }

    /// Crawls every target once through `pipeline`; each target's run is recorded.
    pub async fn run_once(&self, pipeline: &Pipeline) -> Vec<TargetRun> {
        let mut runs = Vec::new();
        for target in &self.settings.targets {
            let started_ms = self.now_ms();
            let clock = Instant::now();
            let mut run = self.crawl_target(pipeline, target).await;
            run.duration_ms = clock.elapsed().as_millis() as u64;
            let outcome = if run.outcome == CrawlOutcome::Ok { "ok" } else { "failed" };
            let record = JobRun {
                job: "railway_crawl".to_owned(),
                instance: crate::instance::instance_id().to_owned(),
                started_ms,
                finished_ms: self.now_ms(),
                outcome: outcome.to_owned(),
                detail: serde_json::to_value(&run).unwrap_or(Value::Null),
            };
            if let Err(e) = pipeline.store().record_job_run(&record).await {
                tracing::warn!(error = %e, "cannot record the railway crawl run");
            }
            match &run.error {
                Some(error) => tracing::warn!(target = %run.target, error = %error, "railway crawl failed"),
                None => tracing::info!(
                    target = %run.target,
                    fetched = run.logs_fetched,
                    stored = run.errors_stored,
                    requests = run.api_requests,
                    "railway crawl"
                ),
            }
            runs.push(run);
        }
        runs
    }

    async fn crawl_target(&self, pipeline: &Pipeline, target: &RailwayTarget) -> TargetRun {
        let source_id = format!("railway:{}", target.environment_id);
        let mut run = TargetRun { target: source_id.clone(), ..TargetRun::default() };
        let stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner()).get(&source_id).cloned();
        if let Some(reason) = stopped {
            run.outcome = CrawlOutcome::Stopped;
            run.error = Some(format!("stopped until the token or ids change: {reason}"));
            return run;
        }
        match self.crawl_and_store(pipeline, target, &source_id, &mut run).await {
            Ok(()) => run.outcome = CrawlOutcome::Ok,
            Err(e) => {
                if let RailwayError::Unauthorized { message } = &e {
                    self.stopped
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(source_id.clone(), message.clone());
                    run.outcome = CrawlOutcome::Stopped;
                } else {
                    run.outcome = CrawlOutcome::Skipped;
                }
                run.error = Some(e.to_string());
            }
        }
        run
    }

    async fn crawl_and_store(
        &self,
        pipeline: &Pipeline,
        target: &RailwayTarget,
        source_id: &str,
        run: &mut TargetRun,
    ) -> Result<(), RailwayError> {
        let services = self.services(target, run).await?;
        let cursor = pipeline
            .store()
            .cursor(source_id)
            .await
            .map_err(|e| RailwayError::Unavailable { detail: format!("reading the cursor: {e}") })?;
        let now_ns = self.now_ms() * 1_000_000;
        let window = next_window(
            cursor.as_deref().and_then(parse_cursor),
            now_ns,
            self.settings.overlap.as_nanos() as i64,
            self.settings.backfill.as_nanos() as i64,
        );
        run.window_since = railway::format_ns(window.since_ns);
        run.window_until = railway::format_ns(window.until_ns);
        let filter = filter(&self.settings.filter, &target.services);
        let counters = Mutex::new((0u32, 0u32));
        let result = crawl(
            |w: Window, limit: u32| {
                let filter = filter.clone();
                let counters = &counters;
                async move { self.request(&target.environment_id, &filter, w, limit, counters).await }
            },
            window,
            self.settings.page_size,
            5_000,
        )
        .await;
        let (errors, waits) = *counters.lock().unwrap_or_else(|e| e.into_inner());
        run.api_errors += errors;
        run.rate_limit_waits += waits;
        let previous_ns = cursor.as_deref().and_then(parse_cursor).unwrap_or(window.since_ns - 1);
        let (crawled, stopped) = match railway::settle(result, previous_ns) {
            Ok(settled) => settled,
            Err(stopped) => {
                run.api_requests += stopped.drained.requests;
                return Err(stopped.error);
            }
        };
        run.api_requests += crawled.requests;
        run.unsplittable = crawled.unsplittable;
        run.logs_fetched = crawled.logs.len() as u64;
        run.railway_dropped_lines =
            crawled.logs.iter().filter_map(|l| railway::dropped_by_rate_limit(&l.message)).sum();
        // A service added since the names were read: read them again (once per run).
        let unknown = |names: &BTreeMap<String, String>| {
            crawled.logs.iter().any(|l| l.service_id.as_ref().is_some_and(|id| !names.contains_key(id)))
        };
        let services = if unknown(&services) && !services.is_empty() {
            self.services.lock().unwrap_or_else(|e| e.into_inner()).remove(&target.environment_id);
            self.services(target, run).await.unwrap_or(services)
        } else {
            services
        };
        let events = crawled
            .logs
            .iter()
            .map(|l| railway::to_event(l, source_id, &target.environment_id, &services))
            .collect();
        let submission = Submission {
            source_id: source_id.to_owned(),
            cursor: Some(cursor_after(Window {
                since_ns: window.since_ns,
                until_ns: crawled.drained_until_ns,
            })),
            events,
            cut_lines: 0,
            now_ms: self.now_ms(),
        };
        let Committed { outcome, .. } = pipeline
            .submit(SourceKind::Railway, submission)
            .await
            .map_err(|e| RailwayError::Unavailable { detail: format!("storing the crawl: {e}") })?;
        run.errors_stored = outcome.stored + outcome.capped;
        run.duplicates = outcome.duplicates;
        run.new_patterns = outcome.new_patterns;
        match stopped {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// One request within the budget, retried on transient failures (`Retry-After` honoured).
    async fn request(
        &self,
        environment_id: &str,
        filter: &str,
        window: Window,
        limit: u32,
        counters: &Mutex<(u32, u32)>,
    ) -> Result<Vec<railway::RailwayLog>, RailwayError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            // A 429 or a spent window (X-RateLimit-Remaining: 0) pauses every request.
            if let Some(wait) = self.client.paused_for() {
                if wait > LONGEST_WAIT {
                    return Err(RailwayError::RateLimited { retry_after: wait });
                }
                counters.lock().unwrap_or_else(|e| e.into_inner()).1 += 1;
                metrics::counter!("faultline_railway_rate_limit_waits_total").increment(1);
                self.client.clock().sleep(wait).await;
            }
            let pace = self.budget.lock().unwrap_or_else(|e| e.into_inner()).pace(self.now_ms());
            if !pace.is_zero() {
                self.client.clock().sleep(pace).await;
            }
            self.budget.lock().unwrap_or_else(|e| e.into_inner()).take(self.now_ms())?;
            let result = self.client.environment_logs(environment_id, filter, window, limit).await;
            let error = match result {
                Ok(logs) => {
                    metrics::counter!("faultline_railway_requests_total", "outcome" => "ok").increment(1);
                    return Ok(logs);
                }
                Err(e) => e,
            };
            metrics::counter!("faultline_railway_requests_total", "outcome" => "error").increment(1);
            counters.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
            if attempt >= ATTEMPTS || !error.is_transient() {
                return Err(error);
            }
            if let RailwayError::Unavailable { .. } = error {
                let wait = REQUEST_BACKOFF.wait(attempt);
                tracing::debug!(error = %error, wait = ?wait, "railway request failed; retrying");
                self.client.clock().sleep(wait).await;
            }
        }
    }

    /// Live mode for one target until `shutdown`: subscribe, store each batch as it comes (by
    /// entry key, without touching the crawl's cursor), subscribe again when Railway ends the
    /// stream (replaying from the newest line seen) or it fails (backoff 1 s → 30 s with
    /// jitter). A refused token ends live mode for the target; the crawl reports it.
    pub async fn run_live(
        &self,
        pipeline: &Pipeline,
        target: &RailwayTarget,
        shutdown: &tokio_util::sync::CancellationToken,
    ) {
        let source_id = format!("railway:{}", target.environment_id);
        let ws_url =
            self.settings.ws_url.clone().unwrap_or_else(|| railway_live::ws_url(&self.settings.api_url));
        let mut query = LiveQuery {
            environment_id: target.environment_id.clone(),
            filter: filter(&self.settings.filter, &target.services),
            after: None,
            replay_limit: self.settings.page_size,
        };
        let mut failures = 0u32;
        while !shutdown.is_cancelled() {
            let subscribed = tokio::select! {
                s = railway_live::subscribe(&ws_url, &self.client.token, &query, self.settings.timeout) => s,
                _ = shutdown.cancelled() => return,
            };
            let error = match subscribed {
                Ok(mut live) => {
                    tracing::info!(target = %source_id, "railway live stream open");
                    loop {
                        let next = tokio::select! {
                            n = live.next_batch() => n,
                            _ = shutdown.cancelled() => { live.close().await; return }
                        };
                        match next {
                            Ok(Some(logs)) => {
                                failures = 0;
                                if let Some(newest) = logs.iter().max_by_key(|l| l.ts_ns) {
                                    query.after = Some(newest.timestamp.clone());
                                }
                                self.store_live(pipeline, target, &source_id, &logs).await;
                            }
                            Ok(None) => break None,
                            Err(e) => break Some(e),
                        }
                    }
                }
                Err(e) => Some(e),
            };
            let wait = match error {
                None => {
                    tracing::debug!(target = %source_id, "railway ended the live stream; subscribing again");
                    Duration::from_millis(200 + fastrand::u64(..800))
                }
                Some(RailwayError::Unauthorized { message }) => {
                    tracing::warn!(target = %source_id, reason = %message, "railway live mode refused; polling only");
                    return;
                }
                Some(e) => {
                    failures += 1;
                    let wait = LIVE_BACKOFF.wait(failures);
                    tracing::warn!(target = %source_id, error = %e, retry_in = ?wait, "railway live stream failed");
                    wait
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn store_live(
        &self,
        pipeline: &Pipeline,
        target: &RailwayTarget,
        source_id: &str,
        logs: &[railway::RailwayLog],
    ) {
        let mut names = TargetRun::default();
        let services = self.services(target, &mut names).await.unwrap_or_default();
        let events =
            logs.iter().map(|l| railway::to_event(l, source_id, &target.environment_id, &services)).collect();
        // No cursor: the crawl's cursor stays where the crawl left it; its re-reads are duplicates.
        let submission = Submission {
            source_id: source_id.to_owned(),
            cursor: None,
            events,
            cut_lines: 0,
            now_ms: self.now_ms(),
        };
        match pipeline.submit(SourceKind::Railway, submission).await {
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(target = %source_id, error = %e, "cannot store live railway logs; the crawl will")
            }
        }
    }

    /// Service names of the target's project, looked up once.
    async fn services(
        &self,
        target: &RailwayTarget,
        run: &mut TargetRun,
    ) -> Result<BTreeMap<String, String>, RailwayError> {
        if let Some(known) =
            self.services.lock().unwrap_or_else(|e| e.into_inner()).get(&target.environment_id)
        {
            return Ok(known.clone());
        }
        self.budget.lock().unwrap_or_else(|e| e.into_inner()).take(self.now_ms())?;
        run.api_requests += 1;
        let names = match self.client.project(&target.project_id).await {
            Ok(project) => project.services,
            // Names are a convenience: a project token may not read the project; ids will do.
            Err(RailwayError::Api { .. }) => BTreeMap::new(),
            // Try again next run; the logs need not wait for the names.
            Err(e) if e.is_transient() => {
                run.api_errors += 1;
                return Ok(BTreeMap::new());
            }
            Err(e) => return Err(e),
        };
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(target.environment_id.clone(), names.clone());
        Ok(names)
    }

    /// `faultline railway check`: the token, the project and each environment, in words.
    pub async fn check(&self) -> Vec<Finding> {
        let mut lines = Vec::new();
        for target in &self.settings.targets {
            match self.client.project(&target.project_id).await {
                Ok(p) => {
                    lines.push(Finding::ok(format!("project {} ({})", p.name, p.id)));
                    match p.environments.get(&target.environment_id) {
                        Some(name) => {
                            lines.push(Finding::ok(format!("environment {name} ({})", target.environment_id)))
                        }
                        None if p.environments.is_empty() => {}
                        None => lines.push(Finding::problem(format!(
                            "environment {} is not in project {}; it has: {}",
                            target.environment_id,
                            p.name,
                            p.environments
                                .iter()
                                .map(|(id, n)| format!("{n} ({id})"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))),
                    }
                }
                Err(e) => {
                    lines.push(Finding::problem(format!("project {}: {}", target.project_id, explain(&e))))
                }
            }
            let now = self.now_ms() * 1_000_000;
            let window = Window { since_ns: now - 60_000_000_000, until_ns: now };
            match self.client.environment_logs(&target.environment_id, &self.settings.filter, window, 1).await
            {
                Ok(_) => {
                    lines.push(Finding::ok(format!("can read logs of environment {}", target.environment_id)))
                }
                Err(e) => lines.push(Finding::problem(format!(
                    "logs of environment {}: {}",
                    target.environment_id,
                    explain(&e)
                ))),
            }
        }
        lines
    }
}

/// What a user should do about an error.
fn explain(e: &RailwayError) -> String {
    match e {
        RailwayError::Unauthorized { message } => format!(
            "the token was refused ({message}). Use an account token in RAILWAY_API_TOKEN (created with \
             \"No workspace\"), or a project token of this environment in RAILWAY_TOKEN"
        ),
        other => other.to_string(),
    }
}

/// The configured filter, limited to the target's services when some are named.
fn filter(base: &str, services: &[String]) -> String {
    if services.is_empty() {
        return base.to_owned();
    }
    let only = services.iter().map(|s| format!("@service:{s}")).collect::<Vec<_>>().join(" OR ");
    if base.trim().is_empty() { only } else { format!("({base}) AND ({only})") }
}

/// Between retries of one request: 1 s, 2 s, 4 s… with up to 50% jitter.
const REQUEST_BACKOFF: Backoff =
    Backoff { first: Duration::from_secs(1), factor: 2.0, max: Duration::from_secs(16), jitter: 0.5 };
/// Between live subscriptions after failures: 1 s growing ×1.5 to 30 s, with up to 50% jitter.
const LIVE_BACKOFF: Backoff =
    Backoff { first: Duration::from_secs(1), factor: 1.5, max: Duration::from_secs(30), jitter: 0.5 };

/// Summary lines for `faultline crawl --once`.
pub fn summary(runs: &[TargetRun]) -> Value {
    json!(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use faultline_store::{PipelineSettings, Store};
    use faultline_testkit::fake::{FakeRailway, Reply};
    use std::sync::atomic::{AtomicI64, Ordering};

    /// A clock moved by hand: `sleep` moves it at once and remembers the wait.
    #[derive(Default)]
    struct HandClock {
        now_ms: AtomicI64,
        slept: Mutex<Vec<Duration>>,
    }

    impl railway::Clock for HandClock {
        fn now_ms(&self) -> i64 {
            self.now_ms.load(Ordering::SeqCst)
        }

        fn sleep(
            &self,
            wait: Duration,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
            self.slept.lock().unwrap().push(wait);
            self.now_ms.fetch_add(wait.as_millis() as i64, Ordering::SeqCst);
            Box::pin(std::future::ready(()))
        }
    }

    impl HandClock {
        fn advance(&self, by: Duration) {
            self.now_ms.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
        }
    }

    const START_MS: i64 = 1_781_000_000_000;

    fn through(store: &Arc<dyn Store>) -> Pipeline {
        Pipeline::new(store.clone(), PipelineSettings::default())
    }

    async fn setup(
        requests_per_hour: u32,
    ) -> (FakeRailway, Arc<HandClock>, Crawler, Arc<dyn Store>, tempfile::TempDir) {
        let fake = FakeRailway::start("good-token").await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faultline.toml");
        std::fs::write(
            &path,
            format!(
                "[railway]\napi_url = \"{}\"\npoll_interval = \"30s\"\nrequests_per_hour = {requests_per_hour}\n\
                 page_size = 100\n",
                fake.url()
            ),
        )
        .unwrap();
        let mut config =
            Config::load(Some(&path), figment::providers::Env::prefixed("FAULTLINE_TEST_NONE_")).unwrap();
        config.railway_token = Some(Token::Account("good-token".into()));
        config.railway.targets.push(RailwayTarget {
            project_id: faultline_testkit::fake::FAKE_PROJECT_ID.into(),
            environment_id: "env-1".into(),
            services: vec![],
        });
        let clock = Arc::new(HandClock { now_ms: AtomicI64::new(START_MS), ..HandClock::default() });
        let crawler = Crawler::with_clock(&config, clock.clone()).unwrap();
        let store = faultline_store::open(dir.path().join("db.sqlite").to_str().unwrap()).await.unwrap();
        (fake, clock, crawler, store, dir)
    }

    fn log_requests(fake: &FakeRailway) -> usize {
        fake.http
            .received()
            .iter()
            .filter(|r| r.json()["query"].as_str().unwrap_or("").contains("environmentLogs"))
            .count()
    }

    #[tokio::test]
    async fn a_429_is_waited_out_for_exactly_its_retry_after_then_the_crawl_goes_on() {
        let (fake, clock, crawler, store, _dir) = setup(1000).await;
        fake.add(&railway::format_ns((START_MS - 1000) * 1_000_000), "error", "svc-api", "i-1", "boom");
        // Discovery answers; the first log request is refused for 7 s.
        crawler.run_once(&through(&store)).await;
        let before = clock.slept.lock().unwrap().len();
        clock.advance(Duration::from_secs(30));
        fake.add(
            &railway::format_ns((START_MS + 10_000) * 1_000_000),
            "error",
            "svc-api",
            "i-1",
            "second boom",
        );
        fake.http.script([Reply::new(429, "slow down").header("Retry-After", "7")]);
        let runs = crawler.run_once(&through(&store)).await;
        let slept: Vec<Duration> = clock.slept.lock().unwrap()[before..].to_vec();
        assert_eq!(slept, [Duration::from_secs(7)], "exactly the Retry-After, once");
        assert_eq!(
            (runs[0].outcome, runs[0].rate_limit_waits, runs[0].errors_stored),
            (CrawlOutcome::Ok, 1, 1)
        );
        assert_eq!(store.search(&Default::default()).await.unwrap().total, 2);
    }

    #[tokio::test]
    async fn a_service_added_later_is_named_after_the_names_are_read_again() {
        let (fake, clock, crawler, store, _dir) = setup(1000).await;
        fake.add(&railway::format_ns((START_MS - 1000) * 1_000_000), "error", "svc-api", "i-1", "boom");
        crawler.run_once(&through(&store)).await;
        clock.advance(Duration::from_secs(30));
        let ts = railway::format_ns((START_MS + 10_000) * 1_000_000);
        let logs = serde_json::json!({"data": {"environmentLogs": [{
            "timestamp": ts, "message": "payments down", "severity": "error", "attributes": [],
            "tags": {"serviceId": "svc-new", "deploymentId": "d", "deploymentInstanceId": "i-9"}}]}});
        let project = serde_json::json!({"data": {"project": {"id": "p-1", "name": "shop",
            "environments": {"edges": []},
            "services": {"edges": [{"node": {"id": "svc-api", "name": "api"}}, {"node": {"id": "svc-new", "name": "payments"}}]}}}});
        fake.http.script([Reply::new(200, &logs.to_string()), Reply::new(200, &project.to_string())]);
        let run = crawler.run_once(&through(&store)).await.remove(0);
        assert_eq!(run.outcome, CrawlOutcome::Ok, "{run:?}");
        let q = faultline_store::SearchQuery {
            text: Some("payments down".into()),
            limit: 1,
            ..Default::default()
        };
        let page = store.search(&q).await.unwrap();
        assert_eq!(page.entries[0].source, "payments");
    }

    #[tokio::test]
    async fn a_retry_after_longer_than_a_minute_skips_the_run_and_no_request_goes_out_until_it_ends() {
        let (fake, clock, crawler, store, _dir) = setup(1000).await;
        fake.add(&railway::format_ns((START_MS - 1000) * 1_000_000), "error", "svc-api", "i-1", "boom");
        crawler.run_once(&through(&store)).await;
        fake.http.script([Reply::new(429, "").header("Retry-After", "120")]);
        clock.advance(Duration::from_secs(30));
        let runs = crawler.run_once(&through(&store)).await;
        assert_eq!(runs[0].outcome, CrawlOutcome::Skipped);
        let sent = log_requests(&fake);
        // 30 s later (the next poll) Railway's 120 s are not over: nothing is sent.
        clock.advance(Duration::from_secs(30));
        let runs = crawler.run_once(&through(&store)).await;
        assert_eq!((runs[0].outcome, log_requests(&fake)), (CrawlOutcome::Skipped, sent));
        assert!(runs[0].error.as_deref().unwrap_or("").contains("rate limit"), "{:?}", runs[0].error);
        clock.advance(Duration::from_secs(90));
        let runs = crawler.run_once(&through(&store)).await;
        assert_eq!(runs[0].outcome, CrawlOutcome::Ok);
        assert!(log_requests(&fake) > sent);
        assert!(
            clock.slept.lock().unwrap().is_empty(),
            "a long pause is never slept through: {:?}",
            clock.slept
        );
    }

    #[tokio::test]
    async fn the_hourly_budget_is_never_exceeded_and_a_larger_backlog_is_worked_off_hour_by_hour() {
        let (fake, clock, crawler, store, _dir) = setup(100).await;
        // 12,000 errors in the hour before the first crawl, pages of 100: more than 100 requests.
        for i in 0..12_000i64 {
            let at_ms = START_MS - 3_000_000 + i * 250;
            fake.add(&railway::format_ns(at_ms * 1_000_000), "error", "svc-api", "i-1", &format!("boom {i}"));
        }
        // (clock time, requests sent) per poll, every 5 minutes.
        let mut sent_at: Vec<(i64, usize)> = Vec::new();
        let mut outcomes = Vec::new();
        for _ in 0..72 {
            let before = fake.http.received().len();
            let run = crawler.run_once(&through(&store)).await.remove(0);
            sent_at.push((clock.now_ms.load(Ordering::SeqCst), fake.http.received().len() - before));
            outcomes.push(run.outcome);
            if run.outcome == CrawlOutcome::Ok {
                break;
            }
            assert!(run.error.as_deref().unwrap_or("").contains("budget"), "{run:?}");
            clock.advance(Duration::from_secs(300));
        }
        for (i, (start, _)) in sent_at.iter().enumerate() {
            let in_hour: usize =
                sent_at[i..].iter().take_while(|(t, _)| *t < start + 3_600_000).map(|(_, n)| n).sum();
            assert!(in_hour <= 100, "{in_hour} requests in the hour from {start}");
        }
        assert!(outcomes.len() > 12, "the budget held the crawl back past the first hour: {outcomes:?}");
        assert_eq!(outcomes.last(), Some(&CrawlOutcome::Ok), "{outcomes:?}");
        let stored = store.error_rate(0, i64::MAX / 2).await.unwrap().total_errors;
        assert_eq!(stored, 12_000, "every error, once");
    }
}
