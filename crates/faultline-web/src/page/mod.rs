//! The System Health page: server-rendered HTML (askama templates in `templates/`, escaped by
//! default) with a little JavaScript for the 30-second refresh, served by the same binary.
//!
//! Pages: `/` (health state, top errors, the 24-hour chart by level, new today, resolved and
//! quiet, trending), `/errors` (every pattern, filtered and paged, with bulk status changes; see
//! `errors`), `/patterns/{fingerprint}` (title, occurrence chart, why grouped, sample, stack,
//! occurrences, status and task buttons),
//! `/logs` (search), `/tasks`, `/sources` (sources and job runs), `/login`. State changes are
//! HTML forms that carry a CSRF value (see `session`). Every answer has a strict
//! Content-Security-Policy: scripts and styles come only from `/static/`.

mod errors;

use std::collections::HashMap;
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use faultline_core::{DAY_MS, HOUR_MS, MINUTE_MS};
use faultline_core::{Level, PatternStatus, TaskStatus};
use faultline_store::{
    EntryRow, FingerprintLookup, PatternOrder, PatternQuery, PatternRow, SearchQuery, SourceFilter, TaskRow,
    find_fingerprint, pattern_titles,
};
use serde::Deserialize;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::auth::Scope;
use crate::session::{self, CSRF_COOKIE, SESSION_COOKIE, SESSION_MS};
use crate::{AppState, now_ms};

type App = State<Arc<AppState>>;

pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The page routes, with their security headers.
pub fn routes() -> Router<Arc<AppState>> {
    let header = |name: &'static str, value: &'static str| {
        SetResponseHeaderLayer::overriding(HeaderName::from_static(name), HeaderValue::from_static(value))
    };
    Router::new()
        .route("/", get(health))
        .route("/errors", get(errors::errors_page))
        .route("/errors/status", post(errors::errors_status))
        .route("/patterns/{fingerprint}", get(pattern_page))
        .route("/patterns/{fingerprint}/status", post(pattern_status))
        .route("/patterns/{fingerprint}/task", post(pattern_task))
        .route("/logs", get(logs_page))
        .route("/tasks", get(tasks_page))
        .route("/tasks/{id}/status", post(task_status))
        .route("/sources", get(sources_page))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/static/app.css", get(css))
        .route("/static/app.js", get(js))
        .route("/static/favicon.svg", get(favicon))
        .layer(header("content-security-policy", CONTENT_SECURITY_POLICY))
        .layer(header("x-content-type-options", "nosniff"))
        .layer(header("x-frame-options", "DENY"))
        .layer(header("referrer-policy", "same-origin"))
}

async fn css() -> Response {
    static_file("text/css; charset=utf-8", include_str!("../../static/app.css"))
}

async fn js() -> Response {
    static_file("text/javascript; charset=utf-8", include_str!("../../static/app.js"))
}

async fn favicon() -> Response {
    static_file("image/svg+xml", include_str!("../../static/favicon.svg"))
}

fn static_file(content_type: &'static str, body: &'static str) -> Response {
    ([(CONTENT_TYPE, content_type), (CACHE_CONTROL, "max-age=300")], body).into_response()
}

/// Who is looking, what they may do, and the CSRF value their forms carry.
pub struct Viewer {
    /// The signed-in token's name; `None` when no tokens are configured.
    pub name: Option<String>,
    pub can_write: bool,
    pub csrf: String,
    /// The CSRF cookie must be set by this response.
    new_csrf: bool,
}

/// What every page's frame shows: navigation, who is signed in, refresh period.
pub struct Chrome {
    pub active: &'static str,
    pub viewer: Viewer,
    pub refresh_secs: u32,
    pub title: String,
}

impl Chrome {
    pub fn signed_in(&self) -> bool {
        self.viewer.name.is_some()
    }
}

/// The viewer of a page request, or the answer that sends them to sign in.
fn viewer(app: &AppState, headers: &HeaderMap, uri: &Uri) -> Result<Viewer, Box<Response>> {
    let Viewer { csrf, new_csrf, .. } = anonymous(headers);
    if app.auth.is_open() {
        return Ok(Viewer { name: None, can_write: true, csrf, new_csrf });
    }
    if let Some(s) = app.sessions.get(headers, now_ms()) {
        let can_write = s.scopes.contains(&Scope::Write);
        return Ok(Viewer { name: Some(s.token_name), can_write, csrf, new_csrf });
    }
    // A bearer token works too (scripts, the benchmark).
    if headers.contains_key(axum::http::header::AUTHORIZATION)
        && let Ok(caller) = app.auth.check(headers, Scope::Read)
    {
        let can_write = app.auth.check(headers, Scope::Write).is_ok();
        return Ok(Viewer { name: caller.token, can_write, csrf, new_csrf });
    }
    let next = uri.path_and_query().map_or("/", |p| p.as_str());
    let target = format!(
        "/login?{}",
        form_urlencoded::Serializer::new(String::new()).append_pair("next", next).finish()
    );
    Err(Box::new(see_other(&target)))
}

/// A page's query parameters, read leniently: a page shows its defaults rather than an error
/// for a hand-edited address (the JSON API is the strict one).
fn params<T: serde::de::DeserializeOwned + Default>(uri: &Uri) -> T {
    serde_urlencoded::from_str(uri.query().unwrap_or("")).unwrap_or_default()
}

fn see_other(location: &str) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

/// Renders a page; sets the CSRF cookie when the viewer had none.
fn render(status: StatusCode, template: &impl Template, viewer: &Viewer) -> Response {
    let html = match template.render() {
        Ok(html) => html,
        Err(e) => {
            tracing::error!(error = %e, "page rendering failed");
            return (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let mut response =
        (status, [(CONTENT_TYPE, "text/html; charset=utf-8"), (CACHE_CONTROL, "no-store")], html)
            .into_response();
    if viewer.new_csrf
        && let Ok(value) =
            HeaderValue::from_str(&session::set_cookie(CSRF_COOKIE, &viewer.csrf, SESSION_MS / 1000))
    {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage {
    chrome: Chrome,
    heading: String,
    detail: String,
}

/// A page that only says something went wrong (a 5xx logs its cause and shows none of it).
fn message(app: &AppState, viewer: Viewer, status: StatusCode, heading: &str, detail: &str) -> Response {
    let page = MessagePage {
        chrome: chrome(app, "", viewer, heading),
        heading: heading.to_owned(),
        detail: detail.to_owned(),
    };
    render(status, &page, &page.chrome.viewer)
}

/// The whole fingerprint a URL's pattern id names (any unique prefix of 8 or more hex
/// characters will do), or the page that says why there is none.
async fn pattern_named(
    app: &AppState,
    viewer: Viewer,
    typed: &str,
) -> Result<(String, Viewer), Box<Response>> {
    match find_fingerprint(&*app.store, typed).await {
        Ok(FingerprintLookup::Found(fingerprint)) => Ok((fingerprint, viewer)),
        Ok(FingerprintLookup::NotFound) => Err(Box::new(message(
            app,
            viewer,
            StatusCode::NOT_FOUND,
            "No such error",
            "No pattern has that id.",
        ))),
        Ok(other) => {
            Err(Box::new(message(app, viewer, StatusCode::BAD_REQUEST, "Unclear id", &other.explain(typed))))
        }
        Err(e) => Err(Box::new(failed(app, viewer, e))),
    }
}

fn failed(app: &AppState, viewer: Viewer, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, "page failed");
    message(
        app,
        viewer,
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal error",
        "The cause is in the server's log.",
    )
}

fn chrome(app: &AppState, active: &'static str, viewer: Viewer, title: &str) -> Chrome {
    Chrome { active, viewer, refresh_secs: app.settings.page_refresh_secs, title: title.to_owned() }
}

/// "2026-11-24 09:05 UTC".
pub fn clock(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default().format("%Y-%m-%d %H:%M UTC").to_string()
}

/// "3 min ago", "5 h ago", "2 d ago".
pub fn ago(ms: i64, now: i64) -> String {
    let secs = (now - ms).max(0) / 1000;
    match secs {
        0..60 => "just now".to_owned(),
        60..3600 => format!("{} min ago", secs / 60),
        3600..86_400 => format!("{} h ago", secs / 3600),
        _ => format!("{} d ago", secs / 86_400),
    }
}

/// A CSS class for a level; anything unknown gets a neutral one.
fn level_class(level: &str) -> &'static str {
    match level {
        "CRITICAL" => "level-critical",
        "ERROR" => "level-error",
        "WARNING" => "level-warning",
        _ => "level-other",
    }
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// A path segment, percent-encoded.
fn segment(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// One pattern in a list.
pub struct PatternLine {
    pub href: String,
    /// The fingerprint, for forms that act on several patterns.
    pub fingerprint: String,
    pub title: String,
    pub template: String,
    pub count: String,
    pub source: String,
    pub level: String,
    pub level_class: &'static str,
    pub status: String,
    pub first_seen: String,
    pub last_seen: String,
    pub last_seen_ago: String,
}

impl PatternLine {
    fn new(p: &PatternRow, count: u64, now: i64, titles: &HashMap<String, String>) -> PatternLine {
        let title = titles.get(&p.fingerprint).unwrap_or(&p.normalized_message);
        PatternLine {
            href: format!("/patterns/{}", segment(&p.fingerprint)),
            fingerprint: p.fingerprint.clone(),
            title: clip(title, 240),
            template: clip(&p.normalized_message, 240),
            count: count.to_string(),
            source: clip(&p.source, 80),
            level: p.severity.clone(),
            level_class: level_class(&p.severity),
            status: p.status.as_str().to_owned(),
            first_seen: clock(p.first_seen_ms),
            last_seen: clock(p.last_seen_ms),
            last_seen_ago: ago(p.last_seen_ms, now),
        }
    }
}

/// One segment of a bar of the error-rate chart.
pub struct Segment {
    pub y: String,
    pub height: String,
    pub class: &'static str,
    pub title: String,
}

pub struct Bar {
    pub x: String,
    pub width: String,
    pub total: u64,
    pub segments: Vec<Segment>,
}

/// A time on the chart's x axis: written in UTC here, in the viewer's time zone by `app.js`
/// (`data-ms`, `data-format`), with UTC kept on hover.
pub struct AxisLabel {
    pub x: String,
    pub text: String,
    pub ms: i64,
    /// `time` (hours and minutes) or `day` (weekday and date).
    pub format: &'static str,
}

/// A count on the chart's y axis and its grid line.
pub struct YTick {
    pub y: String,
    pub text: String,
}

/// An error-rate chart: one stacked bar per bucket, by level, drawn as SVG, with a y axis whose
/// top is a round number at or above the highest bar.
pub struct Chart {
    pub bars: Vec<Bar>,
    pub labels: Vec<AxisLabel>,
    pub y_ticks: Vec<YTick>,
    pub max: u64,
    /// Where the plot starts, after the y axis' labels.
    pub left: u32,
    pub width: u32,
    pub height: u32,
    pub plot_height: u32,
}

const CHART_LEVELS: [&str; 4] = ["CRITICAL", "ERROR", "WARNING", "other"];

/// The smallest of 1, 2, 5, 10, 20, 50… at or above `n`.
fn round_up(n: u64) -> u64 {
    let mut step = 1u64;
    loop {
        for m in [1, 2, 5] {
            if m * step >= n {
                return m * step;
            }
        }
        step = step.saturating_mul(10);
    }
}

/// How a chart labels its x axis: every `every`-th bucket, as a time of day or as a day.
#[derive(Clone, Copy)]
struct XLabels {
    every: usize,
    format: &'static str,
}

const HOURLY: XLabels = XLabels { every: 6, format: "time" };
const DAILY: XLabels = XLabels { every: 4, format: "day" };

fn chart(buckets: &[faultline_store::Bucket], x: XLabels) -> Chart {
    let (left, width, plot_height) = (40u32, 760u32, 150u32);
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(0);
    let top = round_up(max.max(1));
    let slot = f64::from(width - left) / buckets.len().max(1) as f64;
    let scale = f64::from(plot_height) / top as f64;
    let mut bars = Vec::new();
    let mut labels = Vec::new();
    for (i, b) in buckets.iter().enumerate() {
        let bar_x = f64::from(left) + i as f64 * slot;
        let mut y = f64::from(plot_height);
        let mut segments = Vec::new();
        for level in CHART_LEVELS {
            let n = if level == "other" {
                b.by_level.iter().filter(|(l, _)| !CHART_LEVELS.contains(&l.as_str())).map(|(_, n)| n).sum()
            } else {
                b.by_level.get(level).copied().unwrap_or(0)
            };
            if n == 0 {
                continue;
            }
            let h = (n as f64 * scale).max(1.0);
            y -= h;
            segments.push(Segment {
                y: format!("{y:.1}"),
                height: format!("{h:.1}"),
                class: level_class(level),
                title: format!("{} UTC, {}: {n}", clock(b.start_ms), level),
            });
        }
        if i % x.every == 0 {
            let at = chrono::DateTime::from_timestamp_millis(b.start_ms).unwrap_or_default();
            let text = if x.format == "day" { at.format("%a %d") } else { at.format("%H:%M") };
            labels.push(AxisLabel {
                x: format!("{:.1}", bar_x + 2.0),
                text: text.to_string(),
                ms: b.start_ms,
                format: x.format,
            });
        }
        bars.push(Bar {
            x: format!("{:.1}", bar_x + 2.0),
            width: format!("{:.1}", (slot - 4.0).max(1.0)),
            total: b.count,
            segments,
        });
    }
    let mut y_ticks = vec![YTick { y: format!("{plot_height}"), text: "0".into() }];
    if top >= 2 {
        y_ticks
            .push(YTick { y: format!("{:.1}", f64::from(plot_height) / 2.0), text: (top / 2).to_string() });
    }
    y_ticks.push(YTick { y: "0".into(), text: top.to_string() });
    Chart { bars, labels, y_ticks, max, left, width, height: plot_height + 20, plot_height }
}

pub struct TrendLine {
    pub pattern: PatternLine,
    pub recent: i64,
    pub previous: i64,
}

#[derive(Template)]
#[template(path = "health.html")]
struct HealthPage {
    chrome: Chrome,
    range: String,
    top: Vec<PatternLine>,
    chart: Chart,
    errors_24h: u64,
    per_minute: String,
    by_level: Vec<(String, u64)>,
    new_today: Vec<PatternLine>,
    resolved: Vec<PatternLine>,
    quiet: Vec<PatternLine>,
    trending: Vec<TrendLine>,
    state: HealthState,
    /// While nothing was ever stored: set-ups for sending errors to this server.
    send_errors: Option<SendErrors>,
}

/// This server's address as the set-ups on the empty page write it.
struct SendErrors {
    /// `http://host:port`
    base: String,
    /// A DSN for project 1 with `TOKEN` as its key.
    dsn: String,
    /// `host:port`, for a scrape target.
    target: String,
}

impl SendErrors {
    fn new(host: &str) -> SendErrors {
        SendErrors {
            base: format!("http://{host}"),
            dsn: format!("http://TOKEN@{host}/1"),
            target: host.to_owned(),
        }
    }
}

/// The service's health as the `error_rate_check` job last judged it: pass, degraded or fail,
/// the rate that decided it, and since when it has been so.
pub struct HealthState {
    /// `pass`, `degraded`, `fail`, or `unknown` before the first check.
    pub status: String,
    pub sentence: String,
}

impl HealthState {
    /// From the job's runs, newest first.
    pub fn of(runs: &[faultline_store::JobRunRow], now: i64) -> HealthState {
        let status_of = |r: &faultline_store::JobRunRow| r.run.detail["status"].as_str().map(str::to_owned);
        let Some((newest, status)) = runs.iter().find_map(|r| status_of(r).map(|s| (r, s))) else {
            return HealthState {
                status: "unknown".into(),
                sentence: "Not checked yet: the error-rate check runs every few minutes.".into(),
            };
        };
        let since = runs
            .iter()
            .filter_map(|r| status_of(r).map(|s| (r, s)))
            .take_while(|(_, s)| *s == status)
            .last()
            .map_or(newest.run.started_ms, |(r, _)| r.run.started_ms);
        let word = match status.as_str() {
            "pass" => "Healthy",
            "degraded" => "Degraded",
            "fail" => "Failing",
            _ => "Checked",
        };
        let rate = newest.run.detail["errors_per_minute"].as_f64().unwrap_or(0.0);
        let window = newest.run.detail["window_minutes"].as_u64().unwrap_or(5);
        HealthState {
            sentence: format!(
                "{word}: {rate:.2} errors per minute over the last {window} minutes ({status} since {}, checked {}).",
                clock(since),
                ago(newest.run.started_ms, now)
            ),
            status,
        }
    }
}

#[derive(Deserialize, Default)]
struct HealthQuery {
    range: Option<String>,
}

async fn health(State(app): App, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(to_login) => return *to_login,
    };
    let range = params::<HealthQuery>(&uri).range.unwrap_or_else(|| "24h".into());
    let now = now_ms();
    match health_data(&app, &range, now).await {
        Ok(Some(mut page)) => {
            page.chrome = chrome(&app, "health", viewer, "System health");
            if page.top.is_empty() && app.store.gauges().await.is_ok_and(|g| g.patterns == 0) {
                let host = headers.get(axum::http::header::HOST).and_then(|h| h.to_str().ok());
                page.send_errors = Some(SendErrors::new(host.unwrap_or("127.0.0.1:8080")));
            }
            render(StatusCode::OK, &page, &page.chrome.viewer)
        }
        Ok(None) => message(&app, viewer, StatusCode::BAD_REQUEST, "Unknown range", "Use 24h, 7d or all."),
        Err(e) => failed(&app, viewer, e),
    }
}

async fn health_data(
    app: &AppState,
    range: &str,
    now: i64,
) -> Result<Option<HealthPage>, faultline_store::StoreError> {
    let store = &app.store;
    if !matches!(range, "24h" | "7d" | "all") {
        return Ok(None);
    }
    // The page's parts are independent reads: asked for at once, each on its own connection.
    let top = async {
        if range == "all" {
            let q = PatternQuery {
                order: PatternOrder::Count,
                limit: 10,
                hide_ignored: true,
                ..PatternQuery::default()
            };
            let page = store.list_patterns(&q).await?;
            Ok(page.patterns.into_iter().map(|p| (p.clone(), p.occurrence_count as u64)).collect())
        } else {
            let since = now - if range == "24h" { DAY_MS } else { 7 * DAY_MS };
            let busiest = store.busiest_patterns(since, now + MINUTE_MS, 10).await?;
            Ok::<Vec<(PatternRow, u64)>, faultline_store::StoreError>(
                busiest.into_iter().map(|b| (b.pattern, b.count)).collect(),
            )
        }
    };
    let until = (now / HOUR_MS + 1) * HOUR_MS;
    let midnight = now.div_euclid(DAY_MS) * DAY_MS;
    let resolved_q = PatternQuery {
        order: PatternOrder::LastSeen,
        status: Some(PatternStatus::Resolved),
        limit: 10,
        ..PatternQuery::default()
    };
    let quiet_q = PatternQuery {
        order: PatternOrder::LastSeen,
        seen_since_ms: Some(now - 7 * DAY_MS),
        quiet_since_ms: Some(now - DAY_MS),
        hide_ignored: true,
        limit: 10,
        ..PatternQuery::default()
    };
    let (top, buckets, rate, new_today, resolved, quiet, runs, trending) = tokio::try_join!(
        top,
        store.counts_by_interval(until - DAY_MS, until, 60, None),
        store.error_rate(now - DAY_MS, now),
        store.new_patterns(midnight, 10),
        store.list_patterns(&resolved_q),
        store.list_patterns(&quiet_q),
        store.job_runs(Some("error_rate_check"), 500),
        store.trending_patterns(now, HOUR_MS, 10),
    )?;
    let new_today: Vec<PatternRow> =
        new_today.into_iter().filter(|p| p.status != PatternStatus::Ignored).collect();
    let resolved = resolved.patterns;
    let quiet: Vec<PatternRow> =
        quiet.patterns.into_iter().filter(|p| p.status != PatternStatus::Resolved).collect();
    let state = HealthState::of(&runs, now);
    let every = top
        .iter()
        .map(|(p, _)| p)
        .chain(&new_today)
        .chain(&resolved)
        .chain(&quiet)
        .chain(trending.iter().map(|t| &t.pattern));
    let titles = pattern_titles(&**store, every).await?;
    let line = |p: &PatternRow| PatternLine::new(p, p.occurrence_count as u64, now, &titles);
    Ok(Some(HealthPage {
        chrome: Chrome {
            active: "health",
            viewer: Viewer { name: None, can_write: false, csrf: String::new(), new_csrf: false },
            refresh_secs: 0,
            title: String::new(),
        },
        range: range.to_owned(),
        top: top.iter().map(|(p, n)| PatternLine::new(p, *n, now, &titles)).collect(),
        chart: chart(&buckets, HOURLY),
        errors_24h: rate.total_errors,
        per_minute: format!("{:.2}", rate.errors_per_minute),
        by_level: rate.by_level.into_iter().collect(),
        new_today: new_today.iter().map(line).collect(),
        resolved: resolved.iter().map(line).collect(),
        quiet: quiet.iter().map(line).collect(),
        trending: trending
            .iter()
            .map(|t| TrendLine { pattern: line(&t.pattern), recent: t.recent, previous: t.previous })
            .collect(),
        state,
        send_errors: None,
    }))
}

/// One stored occurrence, for display.
pub struct EntryLine {
    pub time: String,
    pub level: String,
    pub level_class: &'static str,
    pub source: String,
    pub message: String,
    pub traceback: Option<String>,
    pub request: Option<String>,
    pub pattern_href: String,
    /// Metadata fields but the breadcrumbs, each value as text (JSON for lists and objects).
    pub context: Vec<(String, String)>,
    /// What led up to the error (an SDK's breadcrumbs), oldest first.
    pub breadcrumbs: Vec<Breadcrumb>,
}

/// One breadcrumb: time, category and text.
pub struct Breadcrumb {
    pub time: String,
    pub category: String,
    pub message: String,
}

/// Metadata kept for the fingerprint, not for reading.
const HIDDEN_METADATA: [&str; 2] = ["in_app", "breadcrumbs"];

impl Breadcrumb {
    fn list(metadata: &serde_json::Value) -> Vec<Breadcrumb> {
        let Some(crumbs) = metadata.get("breadcrumbs").and_then(|b| b.as_array()) else { return Vec::new() };
        crumbs
            .iter()
            .map(|c| {
                let text = |key: &str| c.get(key).and_then(|v| v.as_str()).unwrap_or("").to_owned();
                let time = match c.get("timestamp") {
                    Some(serde_json::Value::Number(n)) => n
                        .as_f64()
                        .and_then(|secs| chrono::DateTime::from_timestamp_millis((secs * 1000.0) as i64))
                        .map(|t| t.format("%H:%M:%S%.3f").to_string())
                        .unwrap_or_default(),
                    Some(serde_json::Value::String(s)) => s.clone(),
                    _ => String::new(),
                };
                let mut message = text("message");
                if message.is_empty()
                    && let Some(data) = c.get("data").filter(|d| !d.is_null())
                {
                    message = clip(&data.to_string(), 500);
                }
                let category = [text("category"), text("level")]
                    .into_iter()
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>();
                Breadcrumb { time, category: category.join(" · "), message: clip(&message, 2000) }
            })
            .collect()
    }
}

impl EntryLine {
    fn new(e: &EntryRow) -> EntryLine {
        let request = match (&e.request_method, &e.request_path) {
            (Some(m), Some(p)) => Some(format!("{m} {p}")),
            (None, Some(p)) => Some(p.clone()),
            _ => None,
        };
        EntryLine {
            time: chrono::DateTime::from_timestamp_millis(e.timestamp_ms)
                .unwrap_or_default()
                .format("%Y-%m-%d %H:%M:%S UTC")
                .to_string(),
            level: e.level.clone(),
            level_class: level_class(&e.level),
            source: e.source.clone(),
            message: clip(&e.message, 4000),
            traceback: e.traceback.as_deref().map(|t| clip(t, 20_000)),
            request,
            pattern_href: format!("/patterns/{}", segment(&e.fingerprint)),
            context: e
                .metadata
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(key, _)| !HIDDEN_METADATA.contains(&key.as_str()))
                .map(|(key, value)| {
                    let text = match value {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (clip(key, 200), clip(&text, 4000))
                })
                .collect(),
            breadcrumbs: Breadcrumb::list(&e.metadata),
        }
    }
}

/// A list's `page` parameter: 1 when absent, else a whole number from 1.
fn page_number(raw: Option<&str>) -> Result<u32, String> {
    match raw.filter(|v| !v.is_empty()).map(str::parse::<u32>) {
        None => Ok(1),
        Some(Ok(n)) if (1..=100_000).contains(&n) => Ok(n),
        Some(_) => Err("page must be a whole number from 1".to_owned()),
    }
}

/// A link to another page of a list, keeping the other parameters.
pub struct PageLinks {
    pub previous: Option<String>,
    pub next: Option<String>,
    pub page: u32,
    pub pages: u32,
}

/// A list's address with its non-empty parameters, and `page` when given.
fn list_url(path: &str, params: &[(&str, String)], page: Option<u32>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params.iter().filter(|(_, v)| !v.is_empty()) {
        query.append_pair(k, v);
    }
    if let Some(p) = page {
        query.append_pair("page", &p.to_string());
    }
    format!("{path}?{}", query.finish())
}

fn page_links(path: &str, params: &[(&str, String)], page: u32, per_page: u32, total: u64) -> PageLinks {
    let pages = total.div_ceil(u64::from(per_page)).max(1) as u32;
    let link = |p: u32| list_url(path, params, Some(p));
    PageLinks {
        previous: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        page,
        pages,
    }
}

/// Why a pattern's lines were grouped, in words.
fn tier_explained(tier: &str) -> &'static str {
    match tier {
        "stack" => "by stack trace: the frames below decided the group, line numbers and paths left out",
        "exception" => "by exception type and its message with variable parts masked",
        "message" => "by the message with variable parts (numbers, ids, addresses, times…) masked",
        "client" => {
            "by the fingerprint the client sent: the parts below ({{ default }} stands for the one computed from the error)"
        }
        _ => "by the rule named above",
    }
}

#[derive(Template)]
#[template(path = "pattern.html")]
struct PatternPageView {
    chrome: Chrome,
    fingerprint: String,
    action_base: String,
    pattern: PatternLine,
    full_title: String,
    full_template: String,
    /// Occurrences per hour over 24 hours, or per 6 hours over 7 days.
    chart: Chart,
    chart_label: &'static str,
    /// `24h` or `7d`.
    chart_range: String,
    tier: String,
    tier_explained: &'static str,
    version: i32,
    error_type: Option<String>,
    frames: Vec<String>,
    sample: Option<String>,
    stack_trace: Option<String>,
    occurrences: Vec<EntryLine>,
    total: u64,
    links: PageLinks,
    statuses: Vec<(&'static str, &'static str)>,
    /// The pattern's open task: linked instead of offering "Create task".
    task: Option<TaskLine>,
}

#[derive(Deserialize, Default)]
struct PatternParams {
    page: Option<u32>,
    /// The chart's range: `24h` (the default) or `7d`.
    chart: Option<String>,
}

const PER_PAGE: u32 = 25;

async fn pattern_page(State(app): App, headers: HeaderMap, uri: Uri, Path(typed): Path<String>) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(to_login) => return *to_login,
    };
    let (fingerprint, viewer) = match pattern_named(&app, viewer, &typed).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let asked = params::<PatternParams>(&uri);
    let page = asked.page.unwrap_or(1).clamp(1, 100_000);
    let chart_range = if asked.chart.as_deref() == Some("7d") { "7d" } else { "24h" };
    let now = now_ms();
    let pattern = match app.store.pattern(&fingerprint).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            return message(
                &app,
                viewer,
                StatusCode::NOT_FOUND,
                "No such error",
                "No pattern has that fingerprint.",
            );
        }
        Err(e) => return failed(&app, viewer, e),
    };
    let occurrences = match app.store.occurrences(&fingerprint, PER_PAGE, (page - 1) * PER_PAGE).await {
        Ok(found) => found.unwrap_or_default(),
        Err(e) => return failed(&app, viewer, e),
    };
    let task = match app.store.open_task(&fingerprint).await {
        Ok(task) => task.map(|t| TaskLine::new(&t, now, None)),
        Err(e) => return failed(&app, viewer, e),
    };
    let (chart_label, buckets) = if chart_range == "7d" {
        let until = (now / DAY_MS + 1) * DAY_MS;
        (
            "Occurrences per 6 hours over the last 7 days, by level",
            app.store.counts_by_interval(until - 7 * DAY_MS, until, 360, Some(&fingerprint)).await,
        )
    } else {
        let until = (now / HOUR_MS + 1) * HOUR_MS;
        (
            "Occurrences per hour over the last 24 hours, by level",
            app.store.counts_by_interval(until - DAY_MS, until, 60, Some(&fingerprint)).await,
        )
    };
    let buckets = match buckets {
        Ok(b) => b,
        Err(e) => return failed(&app, viewer, e),
    };
    let titles = match pattern_titles(&*app.store, [&pattern]).await {
        Ok(t) => t,
        Err(e) => return failed(&app, viewer, e),
    };
    let line = PatternLine::new(&pattern, pattern.occurrence_count as u64, now, &titles);
    let title = titles.get(&fingerprint).cloned().unwrap_or_default();
    let base = format!("/patterns/{}", segment(&fingerprint));
    let view = PatternPageView {
        chrome: chrome(&app, "errors", viewer, &clip(&title, 80)),
        fingerprint: pattern.fingerprint.clone(),
        action_base: base.clone(),
        pattern: line,
        full_title: clip(&title, 2_000),
        full_template: clip(&pattern.normalized_message, 20_000),
        chart: chart(&buckets, if chart_range == "7d" { DAILY } else { HOURLY }),
        chart_label,
        chart_range: chart_range.to_owned(),
        tier: pattern.tier.clone(),
        tier_explained: tier_explained(&pattern.tier),
        version: pattern.fingerprint_version,
        error_type: pattern.error_type.clone(),
        frames: pattern.frames.clone(),
        sample: pattern.sample_message.as_deref().map(|s| clip(s, 20_000)),
        stack_trace: pattern.stack_trace.as_deref().map(|s| clip(s, 50_000)),
        occurrences: occurrences.entries.iter().map(EntryLine::new).collect(),
        total: occurrences.total,
        links: page_links(&base, &[("chart", chart_range.to_owned())], page, PER_PAGE, occurrences.total),
        statuses: [
            (PatternStatus::Known, "Mark known"),
            (PatternStatus::Resolved, "Resolve"),
            (PatternStatus::Ignored, "Ignore"),
            (PatternStatus::New, "Mark new"),
        ]
        .into_iter()
        .map(|(to, label)| (to.as_str(), label))
        .collect(),
        task,
    };
    render(StatusCode::OK, &view, &view.chrome.viewer)
}

#[derive(Deserialize)]
struct StatusForm {
    csrf: String,
    status: String,
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

/// Checks a state-changing form: a viewer with the write scope and a matching CSRF value.
fn writer(app: &AppState, headers: &HeaderMap, uri: &Uri, csrf: &str) -> Result<Viewer, Box<Response>> {
    let viewer = viewer(app, headers, uri)?;
    if !session::csrf_ok(headers, csrf) {
        return Err(Box::new(message(
            app,
            viewer,
            StatusCode::FORBIDDEN,
            "The form has expired",
            "Go back, reload the page and try again.",
        )));
    }
    if !viewer.can_write {
        return Err(Box::new(message(
            app,
            viewer,
            StatusCode::FORBIDDEN,
            "Read-only",
            "Sign in with a token that has the write scope to change this.",
        )));
    }
    Ok(viewer)
}

async fn pattern_status(
    State(app): App,
    headers: HeaderMap,
    uri: Uri,
    Path(typed): Path<String>,
    Form(form): Form<StatusForm>,
) -> Response {
    let viewer = match writer(&app, &headers, &uri, &form.csrf) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let (fingerprint, viewer) = match pattern_named(&app, viewer, &typed).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let Some(status) = PatternStatus::parse(&form.status) else {
        return message(
            &app,
            viewer,
            StatusCode::BAD_REQUEST,
            "Unknown status",
            "Use new, known, resolved or ignored.",
        );
    };
    match app.store.set_pattern_status(&fingerprint, status, now_ms()).await {
        Ok(true) => see_other(&format!("/patterns/{}", segment(&fingerprint))),
        Ok(false) => {
            message(&app, viewer, StatusCode::NOT_FOUND, "No such error", "No pattern has that fingerprint.")
        }
        Err(e) => failed(&app, viewer, e),
    }
}

async fn pattern_task(
    State(app): App,
    headers: HeaderMap,
    uri: Uri,
    Path(typed): Path<String>,
    Form(form): Form<CsrfForm>,
) -> Response {
    let viewer = match writer(&app, &headers, &uri, &form.csrf) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let (fingerprint, viewer) = match pattern_named(&app, viewer, &typed).await {
        Ok(found) => found,
        Err(page) => return *page,
    };
    match app.store.create_task(&fingerprint, now_ms()).await {
        Ok(Some(task)) => see_other(&format!("/tasks?highlight={0}#task-{0}", task.id)),
        Ok(None) => {
            message(&app, viewer, StatusCode::NOT_FOUND, "No such error", "No pattern has that fingerprint.")
        }
        Err(e) => failed(&app, viewer, e),
    }
}

#[derive(Template)]
#[template(path = "logs.html")]
struct LogsPageView {
    chrome: Chrome,
    query: String,
    level: String,
    source: String,
    hours: u32,
    hour_choices: Vec<(u32, &'static str)>,
    levels: Vec<&'static str>,
    entries: Vec<EntryLine>,
    total: String,
    links: PageLinks,
    problem: Option<String>,
}

#[derive(Deserialize, Default)]
struct LogsParams {
    query: Option<String>,
    level: Option<String>,
    source: Option<String>,
    hours: Option<String>,
    page: Option<String>,
}

async fn logs_page(State(app): App, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(to_login) => return *to_login,
    };
    let p = params::<LogsParams>(&uri);
    let text = p.query.unwrap_or_default();
    let level = p.level.unwrap_or_default();
    let source = p.source.unwrap_or_default();
    let mut problem = None;
    let hours = match p.hours.as_deref().filter(|h| !h.is_empty()).map(str::parse::<u32>) {
        None => 24,
        Some(Ok(h)) if (1..=24 * 366).contains(&h) => h,
        Some(_) => {
            problem = Some("hours must be a whole number from 1 to 8784".to_owned());
            24
        }
    };
    let page = page_number(p.page.as_deref()).unwrap_or_else(|e| {
        problem = Some(e);
        1
    });
    let parsed_level = if level.is_empty() {
        None
    } else {
        let parsed = Level::parse(&level);
        if parsed.is_none() {
            problem = Some("level must be DEBUG, INFO, WARNING, ERROR or CRITICAL".to_owned());
        }
        parsed
    };
    let search = SearchQuery {
        text: Some(text.clone()).filter(|t| !t.is_empty()),
        level: parsed_level,
        source: Some(source.clone()).filter(|s| !s.is_empty()).map(|s| SourceFilter::parse(&s)),
        since_ms: Some(now_ms() - i64::from(hours) * HOUR_MS),
        until_ms: None,
        limit: PER_PAGE,
        offset: (page - 1) * PER_PAGE,
        count_cap: Some(faultline_store::SEARCH_COUNT_CAP),
    };
    let found = if problem.is_some() {
        faultline_store::SearchPage::default()
    } else {
        match app.store.search(&search).await {
            Ok(found) => found,
            Err(e) => return failed(&app, viewer, e),
        }
    };
    let params = [
        ("query", text.clone()),
        ("level", level.clone()),
        ("source", source.clone()),
        ("hours", hours.to_string()),
    ];
    let view = LogsPageView {
        chrome: chrome(&app, "logs", viewer, "Log search"),
        links: page_links("/logs", &params, page, PER_PAGE, found.total),
        query: text,
        level,
        source,
        hours,
        hour_choices: vec![
            (1, "1 hour"),
            (6, "6 hours"),
            (24, "24 hours"),
            (168, "7 days"),
            (720, "30 days"),
        ],
        levels: vec!["CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG"],
        entries: found.entries.iter().map(EntryLine::new).collect(),
        total: if found.total_capped { format!("{}+", found.total) } else { found.total.to_string() },
        problem,
    };
    let status = if view.problem.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    render(status, &view, &view.chrome.viewer)
}

pub struct TaskLine {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub priority: String,
    pub status: String,
    pub pattern_href: Option<String>,
    pub alert_count: i64,
    pub created: String,
    pub updated_ago: String,
    pub highlight: bool,
    pub moves: Vec<(&'static str, &'static str)>,
}

impl TaskLine {
    fn new(t: &TaskRow, now: i64, highlight: Option<i64>) -> TaskLine {
        let moves = [
            (TaskStatus::InProgress, "Start"),
            (TaskStatus::Done, "Done"),
            (TaskStatus::Dismissed, "Dismiss"),
            (TaskStatus::Open, "Reopen"),
        ]
        .into_iter()
        .filter(|(to, _)| *to != t.status)
        // Reopening is for closed tasks; an open one is started instead.
        .filter(|(to, _)| *to != TaskStatus::Open || !t.status.is_open())
        .map(|(to, label)| (to.as_str(), label))
        .collect();
        TaskLine {
            id: t.id,
            title: clip(&t.title, 300),
            description: clip(&t.description, 20_000),
            priority: t.priority.clone(),
            status: t.status.as_str().to_owned(),
            pattern_href: t.fingerprint.as_deref().map(|f| format!("/patterns/{}", segment(f))),
            alert_count: t.alert_count,
            created: clock(t.created_ms),
            updated_ago: ago(t.updated_ms, now),
            highlight: highlight == Some(t.id),
            moves,
        }
    }
}

#[derive(Template)]
#[template(path = "tasks.html")]
struct TasksPageView {
    chrome: Chrome,
    status: String,
    states: Vec<&'static str>,
    tasks: Vec<TaskLine>,
    alerts: Vec<AlertLine>,
}

/// One alert of the last 24 hours on the tasks page.
struct AlertLine {
    fired_ago: String,
    rule: String,
    summary: String,
    reason: String,
    task_id: Option<i64>,
    /// "notified", "held for the digest" or "in digest #N".
    delivery: String,
}

impl AlertLine {
    fn new(a: &faultline_store::AlertRow, now: i64) -> AlertLine {
        let delivery = match (a.held, a.digest_id) {
            (false, _) => "notified".to_owned(),
            (true, None) => "held for the digest (flood limits)".to_owned(),
            (true, Some(d)) => format!("sent in digest alert #{d}"),
        };
        AlertLine {
            fired_ago: ago(a.fired_ms, now),
            rule: a.rule_type.clone(),
            summary: a.summary.clone(),
            reason: a.reason.clone(),
            task_id: a.task_id,
            delivery,
        }
    }
}

#[derive(Deserialize, Default)]
struct TasksParams {
    status: Option<String>,
    highlight: Option<String>,
}

async fn tasks_page(State(app): App, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(to_login) => return *to_login,
    };
    let p = params::<TasksParams>(&uri);
    let status = p.status.unwrap_or_default();
    let only = TaskStatus::parse(&status);
    if !status.is_empty() && only.is_none() {
        return message(
            &app,
            viewer,
            StatusCode::BAD_REQUEST,
            "Unknown state",
            "Use open, in_progress, done or dismissed.",
        );
    }
    let highlight = p.highlight.and_then(|h| h.parse().ok());
    let tasks = match app.store.tasks(only, 200).await {
        Ok(tasks) => tasks,
        Err(e) => return failed(&app, viewer, e),
    };
    let now = now_ms();
    let alerts = match app.store.alerts(now - faultline_core::DAY_MS, 50).await {
        Ok(alerts) => alerts,
        Err(e) => return failed(&app, viewer, e),
    };
    let view = TasksPageView {
        chrome: chrome(&app, "tasks", viewer, "Tasks"),
        status,
        states: TaskStatus::ALL.iter().map(|s| s.as_str()).collect(),
        tasks: tasks.iter().map(|t| TaskLine::new(t, now, highlight)).collect(),
        alerts: alerts.iter().map(|a| AlertLine::new(a, now)).collect(),
    };
    render(StatusCode::OK, &view, &view.chrome.viewer)
}

async fn task_status(
    State(app): App,
    headers: HeaderMap,
    uri: Uri,
    Path(id): Path<i64>,
    Form(form): Form<StatusForm>,
) -> Response {
    let viewer = match writer(&app, &headers, &uri, &form.csrf) {
        Ok(v) => v,
        Err(refused) => return *refused,
    };
    let Some(status) = TaskStatus::parse(&form.status) else {
        return message(
            &app,
            viewer,
            StatusCode::BAD_REQUEST,
            "Unknown state",
            "Use open, in_progress, done or dismissed.",
        );
    };
    match app.store.set_task_status(id, status, now_ms()).await {
        Ok(true) => see_other(&format!("/tasks?highlight={id}#task-{id}")),
        Ok(false) => {
            message(&app, viewer, StatusCode::NOT_FOUND, "No such task", "It may have been removed.")
        }
        Err(e) => failed(&app, viewer, e),
    }
}

pub struct SourceLine {
    pub source_id: String,
    pub cursor: String,
    pub updated: String,
    pub lag: String,
    pub last_error: Option<String>,
}

pub struct RunLine {
    pub job: String,
    pub started: String,
    pub duration_ms: i64,
    pub outcome: String,
    pub detail: String,
}

#[derive(Template)]
#[template(path = "sources.html")]
struct SourcesPageView {
    chrome: Chrome,
    sources: Vec<SourceLine>,
    runs: Vec<RunLine>,
}

async fn sources_page(State(app): App, headers: HeaderMap, uri: Uri) -> Response {
    let viewer = match viewer(&app, &headers, &uri) {
        Ok(v) => v,
        Err(to_login) => return *to_login,
    };
    let now = now_ms();
    let sources = match crate::api::source_views(&app, now).await {
        Ok(s) => s,
        Err(e) => return failed(&app, viewer, e),
    };
    let runs = match app.store.job_runs(None, 50).await {
        Ok(r) => r,
        Err(e) => return failed(&app, viewer, e),
    };
    let view = SourcesPageView {
        chrome: chrome(&app, "sources", viewer, "Sources and jobs"),
        sources: sources
            .into_iter()
            .map(|s| SourceLine {
                lag: s.lag_seconds.map_or_else(|| "never stored".to_owned(), |l| ago(now - l * 1000, now)),
                source_id: s.source_id,
                cursor: s.cursor.map_or_else(String::new, |c| clip(&c, 120)),
                updated: s.updated.unwrap_or_default(),
                last_error: s.last_error.map(|e| clip(&e, 500)),
            })
            .collect(),
        runs: runs
            .into_iter()
            .map(|r| RunLine {
                job: r.run.job,
                started: clock(r.run.started_ms),
                duration_ms: r.run.finished_ms - r.run.started_ms,
                outcome: r.run.outcome,
                detail: clip(&r.run.detail.to_string(), 300),
            })
            .collect(),
    };
    render(StatusCode::OK, &view, &view.chrome.viewer)
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage {
    chrome: Chrome,
    next: String,
    problem: Option<String>,
}

#[derive(Deserialize, Default)]
struct NextParam {
    next: Option<String>,
}

/// Only a local path: never send a signed-in browser to another site.
fn safe_next(next: Option<String>) -> String {
    next.filter(|n| n.starts_with('/') && !n.starts_with("//") && !n.contains('\\'))
        .unwrap_or_else(|| "/".into())
}

/// A viewer with no rights yet, with the request's CSRF value (or a new one to set).
fn anonymous(headers: &HeaderMap) -> Viewer {
    let (csrf, new_csrf) = match session::cookie(headers, CSRF_COOKIE) {
        Some(value) => (value, false),
        None => (session::random_token(), true),
    };
    Viewer { name: None, can_write: false, csrf, new_csrf }
}

async fn login_page(State(app): App, headers: HeaderMap, uri: Uri) -> Response {
    let next = safe_next(params::<NextParam>(&uri).next);
    let page =
        LoginPage { chrome: chrome(&app, "login", anonymous(&headers), "Sign in"), next, problem: None };
    render(StatusCode::OK, &page, &page.chrome.viewer)
}

#[derive(Deserialize)]
struct LoginForm {
    csrf: String,
    token: String,
    next: Option<String>,
}

async fn login(State(app): App, headers: HeaderMap, Form(form): Form<LoginForm>) -> Response {
    let next = safe_next(form.next);
    let refuse = |status: StatusCode, problem: &str| {
        let page = LoginPage {
            chrome: chrome(&app, "login", anonymous(&headers), "Sign in"),
            next: next.clone(),
            problem: Some(problem.to_owned()),
        };
        render(status, &page, &page.chrome.viewer)
    };
    if !session::csrf_ok(&headers, &form.csrf) {
        return refuse(StatusCode::FORBIDDEN, "The form has expired; try again.");
    }
    if app.auth.is_open() {
        return see_other(&next);
    }
    let Some((name, scopes)) = app.auth.identify(form.token.trim()) else {
        return refuse(StatusCode::UNAUTHORIZED, "That token is not valid.");
    };
    if !scopes.contains(&Scope::Read) {
        return refuse(StatusCode::FORBIDDEN, "That token lacks the read scope.");
    }
    let id = app.sessions.open(&name, scopes, now_ms());
    let mut response = see_other(&next);
    if let Ok(value) = HeaderValue::from_str(&session::set_cookie(SESSION_COOKIE, &id, SESSION_MS / 1000)) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

async fn logout(State(app): App, headers: HeaderMap, Form(form): Form<CsrfForm>) -> Response {
    if session::csrf_ok(&headers, &form.csrf) {
        app.sessions.close(&headers);
    }
    let mut response = see_other("/login");
    if let Ok(value) = HeaderValue::from_str(&session::set_cookie(SESSION_COOKIE, "", 0)) {
        response.headers_mut().append(SET_COOKIE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_site() {
        assert_eq!(safe_next(Some("/logs?query=x".into())), "/logs?query=x");
        assert_eq!(safe_next(Some("//evil.example/".into())), "/");
        assert_eq!(safe_next(Some("https://evil.example/".into())), "/");
        assert_eq!(safe_next(Some("/\\evil.example".into())), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn clip_counts_characters_not_bytes() {
        assert_eq!(clip("ééé", 2), "éé…");
        assert_eq!(clip("abc", 3), "abc");
    }

    #[test]
    fn chart_stacks_levels_within_the_plot() {
        let mut by_level = std::collections::BTreeMap::new();
        by_level.insert("ERROR".to_owned(), 30);
        by_level.insert("CRITICAL".to_owned(), 10);
        let full = faultline_store::Bucket { start_ms: 0, count: 40, by_level };
        let empty = faultline_store::Bucket { start_ms: HOUR_MS, count: 0, by_level: Default::default() };
        let c = chart(&[full, empty], HOURLY);
        assert_eq!((c.max, c.bars.len(), c.bars[1].segments.len()), (40, 2, 0));
        let heights: Vec<&str> = c.bars[0].segments.iter().map(|s| s.height.as_str()).collect();
        assert_eq!(heights, ["30.0", "90.0"], "CRITICAL first, then ERROR, on a scale up to 50");
        let ticks: Vec<&str> = c.y_ticks.iter().map(|t| t.text.as_str()).collect();
        assert_eq!(ticks, ["0", "25", "50"]);
        assert_eq!(c.bars[0].segments[1].y, "30.0");
    }
}
