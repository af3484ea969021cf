//! Railway: a project's logs through Railway's public GraphQL API
//! (`../shared/railway-api.md` in the repository's neighbourhood holds the facts used here).
//!
//! The API has no cursors: logs are read by time window (`environmentLogs` with
//! `beforeDate`/`anchorDate`/`beforeLimit`), and which end of an over-full window comes back is
//! not documented. [`crawl`] therefore never relies on it: a window that comes back full is split
//! in two and each half read again, until every window comes back with room to spare. Windows
//! are widened by a nanosecond on each side (whether bounds are inclusive is not documented
//! either) and the crawl re-reads `overlap` before its cursor; the duplicates this brings are
//! dropped by the entry key (timestamp, deployment instance, message) — in the crawl and again by
//! the store's unique key — so ties at one nanosecond are neither lost nor doubled.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::time::Duration;

use faultline_core::{HOUR_MS, Level, LogEvent, MINUTE_MS, Origin};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The public API endpoint.
pub const DEFAULT_API_URL: &str = "https://backboard.railway.com/graphql/v2";

/// How a token is sent: account/workspace tokens as a bearer token, project tokens in their
/// own header.
#[derive(Clone, Debug)]
pub enum Token {
    /// `RAILWAY_API_TOKEN`: `Authorization: Bearer`.
    Account(SecretString),
    /// `RAILWAY_TOKEN`: `Project-Access-Token`.
    Project(SecretString),
}

/// What went wrong talking to Railway, named for what the crawler does about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RailwayError {
    /// HTTP 429: wait, then slow down.
    #[error("rate limited by Railway; retry after {retry_after:?}")]
    RateLimited { retry_after: Duration },
    /// The token is wrong or lacks access: stop this target until the config changes.
    #[error("Railway refused the token: {message}")]
    Unauthorized { message: String },
    /// 5xx, timeouts, refused connections: back off, skip this run, retry next cycle.
    #[error("Railway API unavailable: {detail}")]
    Unavailable { detail: String },
    /// A body that is not the GraphQL answer expected: the run fails, nothing is stored.
    #[error("malformed answer from Railway: {detail}")]
    Malformed { detail: String },
    /// Any other GraphQL error (unknown environment id…).
    #[error("Railway API error: {message}")]
    Api { message: String },
    /// The hourly request budget is spent.
    #[error("hourly request budget of {per_hour} spent; next request allowed in {wait:?}")]
    BudgetSpent { per_hour: u32, wait: Duration },
}

impl RailwayError {
    /// Worth trying again within this run (after a pause).
    pub fn is_transient(&self) -> bool {
        matches!(self, RailwayError::Unavailable { .. } | RailwayError::RateLimited { .. })
    }
}

/// One `Log` from the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RailwayLog {
    /// As sent: RFC 3339 with nanoseconds.
    pub timestamp: String,
    /// Nanoseconds since the epoch.
    pub ts_ns: i64,
    pub message: String,
    pub severity: Option<String>,
    /// Attribute values decoded from their JSON encoding.
    pub attributes: Vec<(String, String)>,
    pub service_id: Option<String>,
    pub deployment_id: Option<String>,
    pub deployment_instance_id: Option<String>,
}

impl RailwayLog {
    /// The key two reads of the same line share: timestamp, deployment instance, message. The
    /// timestamp counts as the instant it names, written in the API's nanosecond form, so one
    /// line read by the crawl and by the live stream is one key even if the two paths write its
    /// time differently (`….120Z` / `….120000000Z`).
    pub fn key(&self) -> String {
        let canonical = parse_ns(&self.timestamp).map(format_ns);
        let timestamp = canonical.as_deref().unwrap_or(&self.timestamp);
        let mut h = Sha256::new();
        for part in [timestamp, self.deployment_instance_id.as_deref().unwrap_or(""), &self.message] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        format!("rw:{}", hex::encode(&h.finalize()[..16]))
    }

    /// The level: the `level` (or `lvl`, `severity`) attribute, else the `severity` field.
    /// Railway turns stderr into `error`.
    pub fn level(&self) -> Level {
        let attribute = self
            .attributes
            .iter()
            .find(|(k, _)| matches!(k.as_str(), "level" | "lvl" | "severity"))
            .map(|(_, v)| v.as_str());
        attribute.or(self.severity.as_deref()).and_then(Level::parse).unwrap_or(Level::Unknown)
    }
}

/// Railway's own notice that it dropped lines of a replica over 500 lines/s: the number dropped.
pub fn dropped_by_rate_limit(message: &str) -> Option<u64> {
    if !message.contains("rate limit of") || !message.contains("Messages dropped") {
        return None;
    }
    let tail = message.rsplit("Messages dropped").next()?;
    tail.trim_start_matches([':', ' ']).split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// A time window, both ends included, in nanoseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub since_ns: i64,
    pub until_ns: i64,
}

/// What [`crawl`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Crawled {
    /// Distinct logs, oldest first.
    pub logs: Vec<RailwayLog>,
    pub requests: u32,
    /// Windows of a single nanosecond that came back full even at `max_limit`: lines may be
    /// missing there.
    pub unsplittable: u32,
    /// Every log up to this time (included) is in `logs`: the window's end after a full crawl,
    /// or where a stopped crawl left off.
    pub drained_until_ns: i64,
}

/// A crawl cut short by a failed request, with what was read completely before it: windows
/// are read oldest first, so everything before the failed window is drained.
#[derive(Debug)]
pub struct Stopped {
    pub error: RailwayError,
    pub drained: Crawled,
}

impl From<Stopped> for RailwayError {
    fn from(stopped: Stopped) -> RailwayError {
        stopped.error
    }
}

/// What a finished or stopped crawl leaves to commit with its cursor. A full crawl: all of it.
/// A crawl stopped for want of requests (the hourly budget, a 429) that drained past the saved
/// cursor (`previous_ns`): what it drained, with the error to report, so a backlog larger than
/// one hour's budget is worked off hour by hour instead of being read again each time. Any
/// other stop: nothing (the run fails; the next one reads the window again).
pub fn settle(
    result: Result<Crawled, Stopped>,
    previous_ns: i64,
) -> Result<(Crawled, Option<RailwayError>), Stopped> {
    match result {
        Ok(crawled) => Ok((crawled, None)),
        Err(Stopped {
            error: error @ (RailwayError::BudgetSpent { .. } | RailwayError::RateLimited { .. }),
            drained,
        }) if drained.drained_until_ns > previous_ns => Ok((drained, Some(error))),
        Err(stopped) => Err(stopped),
    }
}

/// Reads every log in `window`: a window that comes back with `limit` or more logs (Railway
/// sometimes sends `limit + 1`) is split in two and both halves are read, whichever end of it
/// the server chose to send. Lines sharing one nanosecond cannot be split by time: such a window
/// is read again with `max_limit` (the API's maximum, 5000). Windows are read oldest first; a
/// failed request stops the crawl with everything before its window ([`Stopped`]), so a crawl
/// too long for one hour's request budget still moves forward.
pub async fn crawl<F, Fut>(
    mut fetch: F,
    window: Window,
    limit: u32,
    max_limit: u32,
) -> Result<Crawled, Stopped>
where
    F: FnMut(Window, u32) -> Fut,
    Fut: Future<Output = Result<Vec<RailwayLog>, RailwayError>>,
{
    let mut stack = vec![(window, limit)];
    let mut seen = HashSet::new();
    let mut crawled = Crawled { drained_until_ns: window.until_ns, ..Crawled::default() };
    while let Some((w, limit)) = stack.pop() {
        let logs = match fetch(w, limit).await {
            Ok(logs) => logs,
            Err(error) => {
                crawled.drained_until_ns = w.since_ns - 1;
                crawled.logs.retain(|l| l.ts_ns < w.since_ns);
                crawled.logs.sort_by(|a, b| (a.ts_ns, &a.timestamp).cmp(&(b.ts_ns, &b.timestamp)));
                return Err(Stopped { error, drained: crawled });
            }
        };
        crawled.requests += 1;
        let full = logs.len() >= limit as usize;
        let mut page_ts: Vec<i64> = logs.iter().map(|l| l.ts_ns).collect();
        for log in logs {
            if log.ts_ns >= w.since_ns && log.ts_ns <= w.until_ns && seen.insert(log.key()) {
                crawled.logs.push(log);
            }
        }
        if full {
            let tie = tied_nanosecond(&mut page_ts).filter(|_| limit < max_limit);
            if let Some(t) = tie.filter(|_| w.until_ns > w.since_ns) {
                // Most of the page shares one nanosecond (inside the window or just outside it,
                // where a server counting the bounds in sends it too): read it alone and the
                // time on either side of it at the maximum limit, whose pages hold the tie and
                // what is beside it, rather than halving the window down to it (dozens of
                // requests, every crawl).
                let pieces = [(t.saturating_add(1), w.until_ns), (t, t), (w.since_ns, t.saturating_sub(1))];
                for (since, until) in pieces {
                    let (since, until) = (since.max(w.since_ns), until.min(w.until_ns));
                    if since <= until {
                        stack.push((Window { since_ns: since, until_ns: until }, max_limit));
                    }
                }
            } else if w.until_ns > w.since_ns {
                let mid = w.since_ns + (w.until_ns - w.since_ns) / 2;
                stack.push((Window { since_ns: mid + 1, until_ns: w.until_ns }, limit));
                stack.push((Window { since_ns: w.since_ns, until_ns: mid }, limit));
            } else if limit < max_limit {
                stack.push((w, max_limit));
            } else {
                crawled.unsplittable += 1;
            }
        }
    }
    crawled.logs.sort_by(|a, b| (a.ts_ns, &a.timestamp).cmp(&(b.ts_ns, &b.timestamp)));
    Ok(crawled)
}

/// The nanosecond more than half of a full page's lines share, if one does.
fn tied_nanosecond(page_ts: &mut [i64]) -> Option<i64> {
    page_ts.sort_unstable();
    let mut best = (0, 0);
    for run in page_ts.chunk_by(|a, b| a == b) {
        if run.len() > best.1 {
            best = (run[0], run.len());
        }
    }
    (best.1 * 2 > page_ts.len()).then_some(best.0)
}

/// The window the next crawl reads: from `overlap` before the cursor (Railway may add a line
/// with a slightly older timestamp after the last crawl; re-reading is free, the key dedupes)
/// or, on the first crawl, `backfill` before now; to now.
pub fn next_window(cursor_ns: Option<i64>, now_ns: i64, overlap_ns: i64, backfill_ns: i64) -> Window {
    let since = match cursor_ns {
        Some(c) => c - overlap_ns,
        None => now_ns - backfill_ns,
    };
    Window { since_ns: since.min(now_ns), until_ns: now_ns }
}

/// The cursor saved after a crawl of `window`: where it ended.
pub fn cursor_after(window: Window) -> String {
    format!("railway:v1:{}", window.until_ns)
}

/// Reads a saved cursor; `None` for anything else (a new crawl backfills instead).
pub fn parse_cursor(cursor: &str) -> Option<i64> {
    cursor.strip_prefix("railway:v1:")?.parse().ok()
}

/// Requests allowed per rolling hour (Railway's plans: 100, 1,000, 10,000) and per second
/// (Hobby 10, Pro 50).
#[derive(Debug, Clone)]
pub struct Budget {
    pub per_hour: u32,
    pub per_second: u32,
    sent: VecDeque<i64>,
    /// The earliest time the next request may start.
    next_ms: i64,
}

impl Budget {
    pub fn new(per_hour: u32, per_second: u32) -> Budget {
        Budget { per_hour: per_hour.max(1), per_second: per_second.max(1), sent: VecDeque::new(), next_ms: 0 }
    }

    /// How long to wait before the next request so that requests start `1 / per_second` apart
    /// (never more than `per_second` in any second); the slot is taken.
    pub fn pace(&mut self, now_ms: i64) -> Duration {
        let spacing = (1000 + i64::from(self.per_second) - 1) / i64::from(self.per_second);
        let at = self.next_ms.max(now_ms);
        self.next_ms = at + spacing;
        Duration::from_millis((at - now_ms) as u64)
    }

    /// Counts a request at `now_ms`, or says how long until one is allowed.
    pub fn take(&mut self, now_ms: i64) -> Result<(), RailwayError> {
        while self.sent.front().is_some_and(|t| *t <= now_ms - HOUR_MS) {
            self.sent.pop_front();
        }
        if self.sent.len() as u32 >= self.per_hour {
            let oldest = self.sent.front().copied().unwrap_or(now_ms);
            let wait = Duration::from_millis((oldest + HOUR_MS - now_ms).max(1) as u64);
            return Err(RailwayError::BudgetSpent { per_hour: self.per_hour, wait });
        }
        self.sent.push_back(now_ms);
        Ok(())
    }

    /// Requests counted in the last hour.
    pub fn used(&self) -> usize {
        self.sent.len()
    }
}

/// The GraphQL client. Clones share what Railway said about its rate-limit window.
#[derive(Clone)]
pub struct Client {
    pub api_url: String,
    pub token: Token,
    pub http: reqwest::Client,
    /// No request before this time (ms since the epoch): set by a 429's `Retry-After` and by
    /// `X-RateLimit-Remaining: 0` until `X-RateLimit-Reset`.
    paused_until_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
    clock: std::sync::Arc<dyn Clock>,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("api_url", &self.api_url).field("token", &self.token).finish()
    }
}

const ENVIRONMENT_LOGS: &str = "query EnvironmentLogs($environmentId: String!, $filter: String, \
$beforeDate: String, $anchorDate: String, $afterDate: String, $beforeLimit: Int, $afterLimit: Int) {
  environmentLogs(environmentId: $environmentId, filter: $filter, beforeDate: $beforeDate, anchorDate: $anchorDate,
                  afterDate: $afterDate, beforeLimit: $beforeLimit, afterLimit: $afterLimit) {
    timestamp message severity attributes { key value }
    tags { serviceId deploymentId deploymentInstanceId } } }";

const PROJECT: &str = "query Project($id: String!) { project(id: $id) { id name
  environments { edges { node { id name } } }
  services { edges { node { id name } } } } }";

/// A project's names, for `source` and metadata.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Project {
    pub id: String,
    pub name: String,
    pub environments: BTreeMap<String, String>,
    pub services: BTreeMap<String, String>,
}

/// Nanosecond RFC 3339, as the CLI sends dates.
pub fn format_ns(ns: i64) -> String {
    let t =
        chrono::DateTime::from_timestamp(ns.div_euclid(1_000_000_000), ns.rem_euclid(1_000_000_000) as u32)
            .unwrap_or_default();
    t.format("%Y-%m-%dT%H:%M:%S%.9fZ").to_string()
}

/// Reads an RFC 3339 timestamp into nanoseconds.
pub fn parse_ns(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s).ok()?.timestamp_nanos_opt()
}

/// The time the crawler reads and the waits it makes: the wall clock and tokio's timer in the
/// service, a hand-moved clock in tests (so a one-hour budget or a 120 s `Retry-After` is
/// checked without waiting for it).
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> i64;
    fn sleep(&self, wait: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>;
}

/// The wall clock and tokio's timer.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
    }

    fn sleep(&self, wait: Duration) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>> {
        Box::pin(tokio::time::sleep(wait))
    }
}

/// When the rate-limit window ends, if Railway says it is spent (`X-RateLimit-Remaining: 0`).
/// `X-RateLimit-Reset` may be epoch seconds, epoch milliseconds, seconds from now or a date
/// (the docs do not say); unreadable means a minute.
pub fn window_spent(headers: &reqwest::header::HeaderMap, now_ms: i64) -> Option<i64> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    if header("x-ratelimit-remaining")?.parse::<i64>().ok()? > 0 {
        return None;
    }
    let reset = header("x-ratelimit-reset").and_then(|r| match r.parse::<i64>() {
        Ok(n) if n > 100_000_000_000 => Some(n),
        Ok(n) if n > 1_000_000_000 => Some(n * 1000),
        Ok(n) => Some(now_ms + n * 1000),
        Err(_) => parse_ns(r).map(|ns| ns / 1_000_000),
    });
    Some(reset.unwrap_or(now_ms + MINUTE_MS).max(now_ms))
}

impl Client {
    pub fn new(api_url: String, token: Token, http: reqwest::Client) -> Client {
        Client::with_clock(api_url, token, http, std::sync::Arc::new(SystemClock))
    }

    pub fn with_clock(
        api_url: String,
        token: Token,
        http: reqwest::Client,
        clock: std::sync::Arc<dyn Clock>,
    ) -> Client {
        Client { api_url, token, http, paused_until_ms: Default::default(), clock }
    }

    /// The clock this client reads (shared with whoever crawls through it).
    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// How long Railway asked us to wait before the next request, if at all.
    pub fn paused_for(&self) -> Option<Duration> {
        let until = self.paused_until_ms.load(std::sync::atomic::Ordering::Relaxed);
        let now = self.clock.now_ms();
        (until > now).then(|| Duration::from_millis((until - now) as u64))
    }

    fn pause_until(&self, until_ms: i64) {
        self.paused_until_ms.fetch_max(until_ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// One GraphQL request; maps HTTP and GraphQL failures to [`RailwayError`].
    pub async fn query(&self, query: &str, variables: Value) -> Result<Value, RailwayError> {
        let request = self.http.post(&self.api_url).json(&json!({ "query": query, "variables": variables }));
        let request = match &self.token {
            Token::Account(t) => request.bearer_auth(t.expose_secret()),
            Token::Project(t) => request.header("Project-Access-Token", t.expose_secret()),
        };
        let response = request
            .send()
            .await
            .map_err(|e| RailwayError::Unavailable { detail: crate::http::describe(&e) })?;
        let status = response.status();
        if let Some(until) = window_spent(response.headers(), self.clock.now_ms()) {
            self.pause_until(until);
        }
        if status.as_u16() == 429 {
            let secs = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .unwrap_or(60);
            self.pause_until(self.clock.now_ms() + secs as i64 * 1000);
            return Err(RailwayError::RateLimited { retry_after: Duration::from_secs(secs) });
        }
        let body = response
            .bytes()
            .await
            .map_err(|e| RailwayError::Unavailable { detail: crate::http::describe(&e) })?;
        if status.is_server_error() {
            return Err(RailwayError::Unavailable { detail: format!("HTTP {}", status.as_u16()) });
        }
        if status.as_u16() == 401 || status.as_u16() == 403 {
            return Err(RailwayError::Unauthorized { message: format!("HTTP {}", status.as_u16()) });
        }
        let answer: Value = serde_json::from_slice(&body)
            .map_err(|e| RailwayError::Malformed { detail: format!("HTTP {}: {e}", status.as_u16()) })?;
        if let Some(message) = answer["errors"].as_array().and_then(|e| e.first()).map(|e| {
            e["message"]
                .as_str()
                .unwrap_or("unknown error")
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect::<String>()
        }) {
            let lower = message.to_ascii_lowercase();
            if lower.contains("not authorized") || lower.contains("project token not found") {
                return Err(RailwayError::Unauthorized { message });
            }
            return Err(RailwayError::Api { message });
        }
        if !status.is_success() {
            return Err(RailwayError::Malformed {
                detail: format!("HTTP {} without errors", status.as_u16()),
            });
        }
        Ok(answer["data"].clone())
    }

    /// `environmentLogs` for one window, widened by a nanosecond on each side so that the window is
    /// covered whether Railway's bounds are inclusive or not.
    pub async fn environment_logs(
        &self,
        environment_id: &str,
        filter: &str,
        window: Window,
        limit: u32,
    ) -> Result<Vec<RailwayLog>, RailwayError> {
        let until = format_ns(window.until_ns + 1);
        let variables = json!({
            "environmentId": environment_id,
            "filter": filter,
            "beforeDate": format_ns(window.since_ns - 1),
            "anchorDate": until,
            "afterDate": until,
            "beforeLimit": limit,
            "afterLimit": 0,
        });
        let data = self.query(ENVIRONMENT_LOGS, variables).await?;
        let list = data["environmentLogs"]
            .as_array()
            .ok_or_else(|| RailwayError::Malformed { detail: "environmentLogs is not a list".into() })?;
        list.iter().map(parse_log).collect()
    }

    /// The project's name and its environments' and services' names.
    pub async fn project(&self, project_id: &str) -> Result<Project, RailwayError> {
        let data = self.query(PROJECT, json!({ "id": project_id })).await?;
        let p = &data["project"];
        if !p.is_object() {
            return Err(RailwayError::Api { message: format!("project {project_id} not found") });
        }
        let names = |list: &Value| -> BTreeMap<String, String> {
            list["edges"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| {
                    Some((e["node"]["id"].as_str()?.to_owned(), e["node"]["name"].as_str()?.to_owned()))
                })
                .collect()
        };
        Ok(Project {
            id: p["id"].as_str().unwrap_or(project_id).to_owned(),
            name: p["name"].as_str().unwrap_or("").to_owned(),
            environments: names(&p["environments"]),
            services: names(&p["services"]),
        })
    }
}

pub(crate) fn parse_log(v: &Value) -> Result<RailwayLog, RailwayError> {
    let malformed = |what: &str| RailwayError::Malformed { detail: format!("log without {what}") };
    let timestamp = v["timestamp"].as_str().ok_or_else(|| malformed("timestamp"))?.to_owned();
    let ts_ns = parse_ns(&timestamp).ok_or_else(|| RailwayError::Malformed {
        detail: format!("invalid timestamp {:?}", timestamp.chars().take(60).collect::<String>()),
    })?;
    let message = v["message"].as_str().ok_or_else(|| malformed("message"))?.to_owned();
    let attributes = v["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| Some((a["key"].as_str()?.to_owned(), decode_attribute(a["value"].as_str()?))))
        .collect();
    let tag = |k: &str| v["tags"][k].as_str().map(str::to_owned);
    Ok(RailwayLog {
        timestamp,
        ts_ns,
        message,
        severity: v["severity"].as_str().map(str::to_owned),
        attributes,
        service_id: tag("serviceId"),
        deployment_id: tag("deploymentId"),
        deployment_instance_id: tag("deploymentInstanceId"),
    })
}

/// Attribute values arrive JSON-encoded (`"\"error\""`, `"123"`); strings are unwrapped.
fn decode_attribute(raw: &str) -> String {
    match serde_json::from_str::<Value>(raw) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => raw.to_owned(),
    }
}

/// The event faultline stores for a Railway log: `source` is the service's name (its id when
/// unknown), the ids are kept in metadata.
pub fn to_event(
    log: &RailwayLog,
    source_id: &str,
    environment_id: &str,
    services: &BTreeMap<String, String>,
) -> LogEvent {
    let service =
        log.service_id.as_deref().map(|id| services.get(id).cloned().unwrap_or_else(|| id.to_owned()));
    let mut metadata = serde_json::Map::new();
    metadata.insert("railway_environment_id".into(), json!(environment_id));
    for (k, v) in [
        ("railway_service_id", &log.service_id),
        ("railway_deployment_id", &log.deployment_id),
        ("railway_deployment_instance_id", &log.deployment_instance_id),
    ] {
        if let Some(v) = v {
            metadata.insert(k.into(), json!(v));
        }
    }
    for (k, v) in &log.attributes {
        if !matches!(k.as_str(), "level" | "lvl" | "severity" | "message") {
            metadata.entry(format!("attr_{k}")).or_insert(json!(v));
        }
    }
    let level = if dropped_by_rate_limit(&log.message).is_some() {
        // Railway's notice of lines it dropped is data loss, not an error of the app.
        metadata.insert("railway_data_loss".into(), json!(true));
        Level::Warning
    } else {
        log.level()
    };
    LogEvent {
        timestamp_ms: log.ts_ns.div_euclid(1_000_000),
        level,
        source: service.unwrap_or_else(|| "railway".to_owned()),
        message: log.message.clone(),
        traceback: None,
        request_path: None,
        request_method: None,
        metadata,
        raw: log.message.clone(),
        origin: Origin { source_id: source_id.to_owned(), external_id: Some(log.key()) },
    }
}
