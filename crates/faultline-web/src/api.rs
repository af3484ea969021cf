//! The JSON API: errors (patterns) and their occurrences, log search, error rate, pattern
//! status, tasks, alert rules, job runs and sources. Every handler is annotated for the OpenAPI
//! document, which is built from the same route list the server uses (`/api/openapi.json`), so
//! the two cannot drift apart.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use faultline_core::{DAY_MS, HOUR_MS, MINUTE_MS};
use faultline_core::{Level, PatternStatus, TaskStatus, UnknownState};
use faultline_store::{
    AlertRuleRow, EntryRow, FingerprintLookup, NewRule, PatternOrder, PatternQuery, PatternRow, RuleSaved,
    SavedCursor, SearchQuery, SourceFilter, TaskRow, find_fingerprint, pattern_titles,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::{ApiError, AppState, Scope, now_ms};

type App = State<Arc<AppState>>;

/// Query parameters read strictly: an unknown parameter or a value of the wrong type is a 400
/// that names the parameter.
pub struct Params<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S> for Params<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        // PostgreSQL cannot hold a NUL, and no filter needs one.
        if let Some((name, _)) = form_urlencoded::parse(query.as_bytes()).find(|(_, v)| v.contains('\0')) {
            return Err(ApiError::BadRequest(format!(
                "invalid query parameter {name}: contains a NUL character"
            )));
        }
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(Params).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner().to_string();
            if path == "." {
                ApiError::BadRequest(format!("invalid query: {inner}"))
            } else {
                ApiError::BadRequest(format!("invalid query parameter {path}: {inner}"))
            }
        })
    }
}

/// A JSON body read strictly, with the same kind of 400.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::BadRequest(format!("cannot read the body: {e}")))?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::BadRequest(format!("invalid body: {e}")))?;
        if let Some(path) = nul_at(&value, "") {
            return Err(ApiError::BadRequest(format!("invalid body at {path}: contains a NUL character")));
        }
        serde_path_to_error::deserialize(value).map(Body).map_err(|e| {
            let path = e.path().to_string();
            ApiError::BadRequest(format!("invalid body at {path}: {}", e.into_inner()))
        })
    }
}

/// Where in a JSON value a string holds a NUL, as `.name.0`.
fn nul_at(value: &serde_json::Value, at: &str) -> Option<String> {
    match value {
        serde_json::Value::String(s) => {
            s.contains('\0').then(|| if at.is_empty() { ".".into() } else { at.into() })
        }
        serde_json::Value::Array(items) => {
            items.iter().enumerate().find_map(|(i, v)| nul_at(v, &format!("{at}[{i}]")))
        }
        serde_json::Value::Object(map) => map.iter().find_map(|(k, v)| {
            let here = format!("{at}.{k}");
            if k.contains('\0') { Some(here) } else { nul_at(v, &here) }
        }),
        _ => None,
    }
}

/// A 4xx or 5xx answer.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What was wrong with the request, or "internal error".
    pub error: String,
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn check_range(name: &str, value: u32, min: u32, max: u32) -> Result<u32, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::BadRequest(format!("invalid query parameter {name}: {value} is outside {min}..={max}")))
    }
}

fn parse_level(value: Option<&str>) -> Result<Option<Level>, ApiError> {
    value
        .filter(|v| !v.is_empty())
        .map(|v| {
            Level::parse(v).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "invalid query parameter level: {v:?} is not a level (DEBUG, INFO, WARNING, ERROR, CRITICAL)"
                ))
            })
        })
        .transpose()
}

/// A pattern or task state sent by a client; an unknown name is a 400 that lists the known ones.
pub(crate) fn parse_state<T: std::str::FromStr<Err = UnknownState>>(text: &str) -> Result<T, ApiError> {
    text.parse().map_err(|e: UnknownState| ApiError::BadRequest(e.to_string()))
}

/// The whole fingerprint a path or body id names: the fingerprint or any unique prefix of 8 or
/// more hex characters (404 when none matches, 400 when it is ambiguous or not an id).
pub(crate) async fn pattern_id(app: &AppState, typed: &str) -> Result<String, ApiError> {
    match find_fingerprint(&*app.store, typed).await? {
        FingerprintLookup::Found(fingerprint) => Ok(fingerprint),
        FingerprintLookup::NotFound => Err(not_found("pattern")),
        other => Err(ApiError::BadRequest(other.explain(typed))),
    }
}

fn not_found(what: &str) -> ApiError {
    ApiError::NotFound(format!("no such {what}"))
}

/// A pattern (an error group) and why its lines were grouped.
#[derive(Serialize, ToSchema)]
pub struct PatternView {
    /// The pattern's id: its fingerprint.
    pub id: String,
    pub fingerprint: String,
    pub fingerprint_version: i32,
    /// What grouped the lines: `stack`, `exception` or `message`.
    pub tier: String,
    /// What a person reads: `ExceptionType: value` or the message, a value masked only where
    /// the first, the oldest stored and the newest occurrence differ.
    pub title: String,
    /// The message with variable parts masked (`<NUM>`, `<IP>`…).
    pub template: String,
    pub error_type: Option<String>,
    /// The parts that counted besides the template: stack frames (module or file + function)
    /// for the stack tier, the client's fingerprint list for the client tier.
    pub frames: Vec<String>,
    pub sample_message: Option<String>,
    pub stack_trace: Option<String>,
    pub source: String,
    pub level: String,
    /// new, known, resolved or ignored.
    pub status: String,
    pub occurrence_count: i64,
    pub first_seen: String,
    pub last_seen: String,
}

impl PatternView {
    fn new(p: PatternRow, title: String) -> PatternView {
        PatternView {
            id: p.fingerprint.clone(),
            title,
            fingerprint: p.fingerprint,
            fingerprint_version: p.fingerprint_version,
            tier: p.tier,
            template: p.normalized_message,
            error_type: p.error_type,
            frames: p.frames,
            sample_message: p.sample_message,
            stack_trace: p.stack_trace,
            source: p.source,
            level: p.severity,
            status: p.status.as_str().to_owned(),
            occurrence_count: p.occurrence_count,
            first_seen: rfc3339(p.first_seen_ms),
            last_seen: rfc3339(p.last_seen_ms),
        }
    }

    /// Views of these patterns, each with its title.
    async fn list(app: &AppState, patterns: Vec<PatternRow>) -> Result<Vec<PatternView>, ApiError> {
        let mut titles = pattern_titles(&*app.store, &patterns).await?;
        Ok(patterns
            .into_iter()
            .map(|p| {
                let title = titles.remove(&p.fingerprint).unwrap_or_default();
                PatternView::new(p, title)
            })
            .collect())
    }
}

/// One stored log entry.
#[derive(Serialize, ToSchema)]
pub struct LogView {
    pub id: i64,
    /// RFC 3339, UTC.
    pub timestamp: String,
    pub level: String,
    pub source: String,
    pub message: String,
    pub traceback: Option<String>,
    pub request_path: Option<String>,
    pub request_method: Option<String>,
    /// The pattern this entry belongs to.
    pub fingerprint: String,
    /// What the source sent besides the message: an SDK's tags, context and breadcrumbs, a
    /// record's extra fields (`{}` when nothing).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

impl From<EntryRow> for LogView {
    fn from(e: EntryRow) -> LogView {
        LogView {
            id: e.id,
            timestamp: rfc3339(e.timestamp_ms),
            level: e.level,
            source: e.source,
            message: e.message,
            traceback: e.traceback,
            request_path: e.request_path,
            request_method: e.request_method,
            fingerprint: e.fingerprint,
            metadata: match e.metadata {
                serde_json::Value::Null => serde_json::Value::Object(Default::default()),
                other => other,
            },
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ErrorsQuery {
    /// `count` (default), `last_seen` or `first_seen`.
    pub sort: Option<String>,
    /// new, known, resolved, ignored, or `all`; without it every pattern but the ignored ones.
    pub status: Option<String>,
    pub source: Option<String>,
    pub level: Option<String>,
    /// Only patterns whose template, exception type, sample message or stack trace holds this text
    /// (any case).
    pub query: Option<String>,
    /// Only patterns seen within this many hours.
    pub hours: Option<u32>,
    /// 1 to 1000 (default 50).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// The error list's filters as the API and the page take them (the page passes its form's
/// text); limit and offset are left to the caller.
pub(crate) fn errors_filter(q: &ErrorsQuery, now: i64) -> Result<PatternQuery, ApiError> {
    let order = match q.sort.as_deref().filter(|s| !s.is_empty()).unwrap_or("count") {
        "count" => PatternOrder::Count,
        "last_seen" => PatternOrder::LastSeen,
        "first_seen" => PatternOrder::FirstSeen,
        other => {
            return Err(ApiError::BadRequest(format!(
                "invalid query parameter sort: {other:?}; use count, last_seen or first_seen"
            )));
        }
    };
    let (status, hide_ignored) = match q.status.as_deref().filter(|s| !s.is_empty()) {
        None => (None, true),
        Some("all") => (None, false),
        Some(s) => (Some(parse_state::<PatternStatus>(s)?), false),
    };
    let hours = q.hours.map(|h| check_range("hours", h, 1, 24 * 366)).transpose()?;
    Ok(PatternQuery {
        order,
        status,
        source: q.source.clone().filter(|s| !s.is_empty()),
        level: parse_level(q.level.as_deref())?,
        seen_since_ms: hours.map(|h| now - i64::from(h) * HOUR_MS),
        quiet_since_ms: None,
        text: q.query.clone().filter(|t| !t.trim().is_empty()),
        hide_ignored,
        limit: 0,
        offset: 0,
    })
}

#[derive(Serialize, ToSchema)]
pub struct ErrorsPage {
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
    pub errors: Vec<PatternView>,
}

/// Patterns (error groups), sortable and filtered.
#[utoipa::path(get, path = "/api/logs/errors", params(ErrorsQuery), tag = "errors",
    responses((status = 200, body = ErrorsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn list_errors(
    State(app): App,
    headers: HeaderMap,
    Params(q): Params<ErrorsQuery>,
) -> Result<Json<ErrorsPage>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let limit = check_range("limit", q.limit.unwrap_or(50), 1, 1000)?;
    let offset = q.offset.unwrap_or(0);
    let query = PatternQuery { limit, offset, ..errors_filter(&q, now_ms())? };
    let page = app.store.list_patterns(&query).await?;
    Ok(Json(ErrorsPage {
        total: page.total,
        limit,
        offset,
        errors: PatternView::list(&app, page.patterns).await?,
    }))
}

/// One pattern with why it was grouped.
#[utoipa::path(get, path = "/api/logs/errors/{fingerprint}", tag = "errors",
    params(("fingerprint" = String, Path, description = "the pattern's fingerprint")),
    responses((status = 200, body = PatternView), (status = 404, body = ErrorBody)))]
async fn get_error(
    State(app): App,
    headers: HeaderMap,
    Path(typed): Path<String>,
) -> Result<Json<PatternView>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let fingerprint = pattern_id(&app, &typed).await?;
    let pattern = app.store.pattern(&fingerprint).await?.ok_or_else(|| not_found("pattern"))?;
    Ok(Json(PatternView::list(&app, vec![pattern]).await?.remove(0)))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// 1 to 1000 (default 50).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct OccurrencesPage {
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
    pub occurrences: Vec<LogView>,
}

/// A pattern's stored occurrences, newest first.
#[utoipa::path(get, path = "/api/logs/errors/{fingerprint}/occurrences", tag = "errors",
    params(("fingerprint" = String, Path, description = "the pattern's fingerprint"), PageQuery),
    responses((status = 200, body = OccurrencesPage), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn occurrences(
    State(app): App,
    headers: HeaderMap,
    Path(typed): Path<String>,
    Params(q): Params<PageQuery>,
) -> Result<Json<OccurrencesPage>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let fingerprint = pattern_id(&app, &typed).await?;
    let limit = check_range("limit", q.limit.unwrap_or(50), 1, 1000)?;
    let offset = q.offset.unwrap_or(0);
    let page =
        app.store.occurrences(&fingerprint, limit, offset).await?.ok_or_else(|| not_found("pattern"))?;
    Ok(Json(OccurrencesPage {
        total: page.total,
        limit,
        offset,
        occurrences: page.entries.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct Stats {
    /// Errors in the last 24 hours.
    pub errors_24h: u64,
    pub errors_per_minute_24h: f64,
    pub by_level_24h: BTreeMap<String, u64>,
    pub by_source_24h: BTreeMap<String, u64>,
    /// Patterns by status (all time).
    pub patterns_by_status: BTreeMap<String, u64>,
    pub patterns_total: u64,
    pub new_patterns_24h: u64,
}

/// Error statistics: the last 24 hours and pattern counts.
#[utoipa::path(get, path = "/api/logs/stats", tag = "errors", responses((status = 200, body = Stats)))]
async fn stats(
    State(app): App,
    headers: HeaderMap,
    Params(_none): Params<Empty>,
) -> Result<Json<Stats>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let now = now_ms();
    let day_ago = now - DAY_MS;
    let rate = app.store.error_rate(day_ago, now).await?;
    let mut by_status = BTreeMap::new();
    let mut total = 0;
    for &status in PatternStatus::ALL {
        let q = PatternQuery { status: Some(status), limit: 1, ..PatternQuery::default() };
        let n = app.store.list_patterns(&q).await?.total;
        total += n;
        by_status.insert(status.as_str().to_owned(), n);
    }
    let new = app.store.new_patterns(day_ago, 10_000).await?.len() as u64;
    Ok(Json(Stats {
        errors_24h: rate.total_errors,
        errors_per_minute_24h: rate.errors_per_minute,
        by_level_24h: rate.by_level,
        by_source_24h: rate.by_source,
        patterns_by_status: by_status,
        patterns_total: total,
        new_patterns_24h: new,
    }))
}

/// No query parameters are accepted.
#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct LogsQuery {
    /// Case-insensitive substring of message or traceback.
    pub query: Option<String>,
    pub level: Option<String>,
    /// A source name, or a prefix ending in `*`.
    pub source: Option<String>,
    /// How far back, 1 to 8784 (default 24).
    pub hours: Option<u32>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct LogsPage {
    /// Matching entries, counted up to 1000, and for a common text among a bounded part of the
    /// window (about 32,000 of its entries).
    pub total: u64,
    /// True when counting stopped at 1000 or at that bound: there are at least `total` matches.
    pub total_capped: bool,
    pub limit: u32,
    pub offset: u32,
    pub logs: Vec<LogView>,
}

/// Search and filter stored logs, newest first.
#[utoipa::path(get, path = "/api/monitoring/logs", params(LogsQuery), tag = "monitoring",
    responses((status = 200, body = LogsPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
async fn search_logs(
    State(app): App,
    headers: HeaderMap,
    Params(q): Params<LogsQuery>,
) -> Result<Json<LogsPage>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let hours = check_range("hours", q.hours.unwrap_or(24), 1, 24 * 366)?;
    let limit = check_range("limit", q.limit.unwrap_or(100), 1, 1000)?;
    let offset = q.offset.unwrap_or(0);
    let search = SearchQuery {
        text: q.query.filter(|t| !t.is_empty()),
        level: parse_level(q.level.as_deref())?,
        source: q.source.filter(|s| !s.is_empty()).map(|s| SourceFilter::parse(&s)),
        since_ms: Some(now_ms() - i64::from(hours) * HOUR_MS),
        until_ms: None,
        limit,
        offset,
        count_cap: Some(faultline_store::SEARCH_COUNT_CAP),
    };
    let page = app.store.search(&search).await?;
    Ok(Json(LogsPage {
        total: page.total,
        total_capped: page.total_capped,
        limit,
        offset,
        logs: page.entries.into_iter().map(Into::into).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct HoursQuery {
    /// How far back, 1 to 8784.
    pub hours: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct TrendPoint {
    pub interval_start: String,
    pub count: u64,
    /// The count split by level; levels with none are absent.
    pub by_level: BTreeMap<String, u64>,
}

#[derive(Serialize, ToSchema)]
pub struct Rate {
    pub period_hours: u32,
    pub total_errors: u64,
    pub errors_per_minute: f64,
    pub by_level: BTreeMap<String, u64>,
    pub by_source: BTreeMap<String, u64>,
    /// Counts per interval (15 minutes up to 2 days, then hours, then days), zeros included.
    pub trend: Vec<TrendPoint>,
}

/// The interval of an error-rate trend over `hours`.
pub fn trend_interval_minutes(hours: u32) -> u32 {
    match hours {
        0..=48 => 15,
        49..=336 => 60,
        _ => 1440,
    }
}

/// Error rate over time: totals, by level and source, and a trend.
#[utoipa::path(get, path = "/api/monitoring/logs/rate", params(HoursQuery), tag = "monitoring",
    responses((status = 200, body = Rate), (status = 400, body = ErrorBody)))]
async fn rate(
    State(app): App,
    headers: HeaderMap,
    Params(q): Params<HoursQuery>,
) -> Result<Json<Rate>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let hours = check_range("hours", q.hours.unwrap_or(1), 1, 24 * 366)?;
    Ok(Json(error_rate(&app, hours, now_ms()).await?))
}

/// The rate report for the last `hours` before `now`; the page draws its chart from it.
pub async fn error_rate(app: &AppState, hours: u32, now: i64) -> Result<Rate, ApiError> {
    let interval = trend_interval_minutes(hours);
    let step = i64::from(interval) * MINUTE_MS;
    let until = (now / step + 1) * step;
    let since = until - i64::from(hours) * HOUR_MS;
    let (rate, buckets) = tokio::try_join!(
        app.store.error_rate(now - i64::from(hours) * HOUR_MS, now),
        app.store.counts_by_interval(since, until, interval, None),
    )?;
    Ok(Rate {
        period_hours: hours,
        total_errors: rate.total_errors,
        errors_per_minute: rate.errors_per_minute,
        by_level: rate.by_level,
        by_source: rate.by_source,
        trend: buckets
            .into_iter()
            .map(|b| TrendPoint { interval_start: rfc3339(b.start_ms), count: b.count, by_level: b.by_level })
            .collect(),
    })
}

#[derive(Serialize, ToSchema)]
pub struct PatternsReport {
    /// Patterns seen in the period, most occurrences first (up to 100).
    pub patterns: Vec<PatternView>,
    pub new_patterns_24h: u64,
    /// How many patterns grew in the last hour against the hour before.
    pub trending_patterns: u64,
}

/// Error patterns of the period, with counts of new and trending ones.
#[utoipa::path(get, path = "/api/monitoring/logs/patterns", params(HoursQuery), tag = "monitoring",
    responses((status = 200, body = PatternsReport), (status = 400, body = ErrorBody)))]
async fn patterns(
    State(app): App,
    headers: HeaderMap,
    Params(q): Params<HoursQuery>,
) -> Result<Json<PatternsReport>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let hours = check_range("hours", q.hours.unwrap_or(24), 1, 24 * 366)?;
    let now = now_ms();
    let query = PatternQuery {
        seen_since_ms: Some(now - i64::from(hours) * HOUR_MS),
        limit: 100,
        ..PatternQuery::default()
    };
    let page = app.store.list_patterns(&query).await?;
    let new = app.store.new_patterns(now - DAY_MS, 10_000).await?.len() as u64;
    let trending = app.store.trending_patterns(now, HOUR_MS, 10_000).await?.len() as u64;
    Ok(Json(PatternsReport {
        patterns: PatternView::list(&app, page.patterns).await?,
        new_patterns_24h: new,
        trending_patterns: trending,
    }))
}

#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StatusChange {
    /// For patterns: new, known, resolved or ignored. For tasks: open, in_progress, done or
    /// dismissed.
    pub status: String,
}

#[derive(Serialize, ToSchema)]
pub struct StatusChanged {
    pub id: String,
    pub status: String,
}

/// Marks a pattern known, resolved or ignored (or new again). Resolving closes its open task.
#[utoipa::path(patch, path = "/api/monitoring/logs/patterns/{id}", tag = "monitoring", request_body = StatusChange,
    params(("id" = String, Path, description = "the pattern's id (fingerprint)")),
    responses((status = 200, body = StatusChanged), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_pattern_status(
    State(app): App,
    headers: HeaderMap,
    Path(typed): Path<String>,
    Body(change): Body<StatusChange>,
) -> Result<Json<StatusChanged>, ApiError> {
    app.auth.check(&headers, Scope::Write)?;
    let status: PatternStatus = parse_state(&change.status)?;
    let id = pattern_id(&app, &typed).await?;
    if !app.store.set_pattern_status(&id, status, now_ms()).await? {
        return Err(not_found("pattern"));
    }
    Ok(Json(StatusChanged { id, status: status.as_str().to_owned() }))
}

/// An investigation task.
#[derive(Serialize, ToSchema)]
pub struct TaskView {
    pub id: i64,
    pub title: String,
    pub description: String,
    pub priority: String,
    /// open, in_progress, done or dismissed.
    pub status: String,
    pub task_type: String,
    pub fingerprint: Option<String>,
    pub alert_count: i64,
    pub created: String,
    pub updated: String,
}

impl From<TaskRow> for TaskView {
    fn from(t: TaskRow) -> TaskView {
        TaskView {
            id: t.id,
            title: t.title,
            description: t.description,
            priority: t.priority,
            status: t.status.as_str().to_owned(),
            task_type: t.task_type,
            fingerprint: t.fingerprint,
            alert_count: t.alert_count,
            created: rfc3339(t.created_ms),
            updated: rfc3339(t.updated_ms),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct TasksQuery {
    /// open, in_progress, done or dismissed.
    pub status: Option<String>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct TaskList {
    pub tasks: Vec<TaskView>,
}

/// Tasks, most recently updated first.
#[utoipa::path(get, path = "/api/tasks", params(TasksQuery), tag = "tasks",
    responses((status = 200, body = TaskList), (status = 400, body = ErrorBody)))]
async fn list_tasks(
    State(app): App,
    headers: HeaderMap,
    Params(q): Params<TasksQuery>,
) -> Result<Json<TaskList>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let status = q.status.as_deref().map(parse_state::<TaskStatus>).transpose()?;
    let limit = check_range("limit", q.limit.unwrap_or(100), 1, 1000)?;
    let tasks = app.store.tasks(status, limit).await?;
    Ok(Json(TaskList { tasks: tasks.into_iter().map(Into::into).collect() }))
}

#[derive(Serialize, ToSchema)]
pub struct TaskEventView {
    pub at: String,
    pub kind: String,
    pub detail: String,
}

impl From<faultline_store::TaskEvent> for TaskEventView {
    fn from(e: faultline_store::TaskEvent) -> TaskEventView {
        TaskEventView { at: rfc3339(e.at_ms), kind: e.kind, detail: e.detail }
    }
}

#[derive(Serialize, ToSchema)]
pub struct TaskDetail {
    pub task: TaskView,
    pub events: Vec<TaskEventView>,
}

/// One task and its history.
#[utoipa::path(get, path = "/api/tasks/{id}", tag = "tasks", params(("id" = i64, Path, description = "task id")),
    responses((status = 200, body = TaskDetail), (status = 404, body = ErrorBody)))]
async fn get_task(
    State(app): App,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Result<Json<TaskDetail>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let (task, events) = app.store.task(id).await?.ok_or_else(|| not_found("task"))?;
    Ok(Json(TaskDetail { task: task.into(), events: events.into_iter().map(Into::into).collect() }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The pattern to investigate.
    pub fingerprint: String,
}

#[derive(Serialize, ToSchema)]
pub struct TaskCreated {
    pub id: i64,
    /// False when the pattern already had an open task (that one is returned).
    pub created: bool,
}

/// Creates the investigation task of a pattern, or returns its open one.
#[utoipa::path(post, path = "/api/tasks", tag = "tasks", request_body = NewTask,
    responses((status = 200, body = TaskCreated), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn create_task(
    State(app): App,
    headers: HeaderMap,
    Body(new): Body<NewTask>,
) -> Result<Json<TaskCreated>, ApiError> {
    app.auth.check(&headers, Scope::Write)?;
    let fingerprint = pattern_id(&app, &new.fingerprint).await?;
    let task = app.store.create_task(&fingerprint, now_ms()).await?.ok_or_else(|| not_found("pattern"))?;
    Ok(Json(TaskCreated { id: task.id, created: task.created }))
}

/// Moves a task to another state.
#[utoipa::path(patch, path = "/api/tasks/{id}", tag = "tasks", request_body = StatusChange,
    params(("id" = i64, Path, description = "task id")),
    responses((status = 200, body = TaskStatusChanged), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn set_task_status(
    State(app): App,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(change): Body<StatusChange>,
) -> Result<Json<TaskStatusChanged>, ApiError> {
    app.auth.check(&headers, Scope::Write)?;
    let status: TaskStatus = parse_state(&change.status)?;
    if !app.store.set_task_status(id, status, now_ms()).await? {
        return Err(not_found("task"));
    }
    Ok(Json(TaskStatusChanged { id, status: status.as_str().to_owned() }))
}

#[derive(Serialize, ToSchema)]
pub struct TaskStatusChanged {
    /// The task's id, as `POST /api/tasks` gives it.
    pub id: i64,
    pub status: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct AlertsQuery {
    /// Alerts of the last this many hours, 1 to 720 (default 24).
    pub hours: Option<u32>,
    /// 1 to 1000 (default 100).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertView {
    pub id: i64,
    /// The rule it is named after (`digest` for a digest of held-back notifications).
    pub rule: String,
    /// `pattern:<id>`, `error_rate:<health>` or `digest`.
    pub subject: String,
    /// The pattern's id (fingerprint), for alerts about a pattern.
    pub fingerprint: Option<String>,
    pub fired: String,
    pub priority: String,
    pub summary: String,
    pub reason: String,
    pub task_id: Option<i64>,
    /// Past the flood limits: recorded with its task, its notifications held back…
    pub held: bool,
    /// …and sent in this digest alert (`null` while waiting for it).
    pub digest_id: Option<i64>,
}

#[derive(Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

/// Alerts fired, newest first: what each was about, why, its task, and whether the flood limits
/// held its notifications back for a digest.
#[utoipa::path(get, path = "/api/alerts", params(AlertsQuery), tag = "alerts",
    responses((status = 200, body = AlertList), (status = 400, body = ErrorBody)))]
async fn list_alerts(
    State(app): App,
    headers: HeaderMap,
    Params(q): Params<AlertsQuery>,
) -> Result<Json<AlertList>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let limit = check_range("limit", q.limit.unwrap_or(100), 1, 1000)?;
    let hours = check_range("hours", q.hours.unwrap_or(24), 1, 720)?;
    let alerts = app.store.alerts(now_ms() - i64::from(hours) * HOUR_MS, limit).await?;
    Ok(Json(AlertList { alerts: alerts.into_iter().map(Into::into).collect() }))
}

impl From<faultline_store::AlertRow> for AlertView {
    fn from(a: faultline_store::AlertRow) -> AlertView {
        AlertView {
            id: a.id,
            fingerprint: a.payload["pattern"]["fingerprint"].as_str().map(str::to_owned),
            rule: a.rule_type,
            subject: a.subject,
            fired: rfc3339(a.fired_ms),
            priority: a.priority,
            summary: a.summary,
            reason: a.reason,
            task_id: a.task_id,
            held: a.held,
            digest_id: a.digest_id,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct RuleView {
    pub id: i64,
    pub name: String,
    pub rule_type: String,
    #[schema(value_type = Object)]
    pub condition: serde_json::Value,
    pub action: String,
    pub enabled: bool,
    pub cooldown_minutes: i64,
    pub last_triggered: Option<String>,
    pub trigger_count: i64,
}

#[derive(Serialize, ToSchema)]
pub struct RuleList {
    pub rules: Vec<RuleView>,
}

impl From<AlertRuleRow> for RuleView {
    fn from(r: AlertRuleRow) -> RuleView {
        RuleView {
            id: r.id,
            name: r.name,
            rule_type: r.rule_type,
            condition: r.condition,
            action: r.action,
            enabled: r.enabled,
            cooldown_minutes: r.cooldown_minutes,
            last_triggered: r.last_triggered_ms.map(rfc3339),
            trigger_count: r.trigger_count,
        }
    }
}

/// Alert rules.
#[utoipa::path(get, path = "/api/alerts/rules", tag = "alerts", responses((status = 200, body = RuleList)))]
async fn list_rules(
    State(app): App,
    headers: HeaderMap,
    Params(_none): Params<Empty>,
) -> Result<Json<RuleList>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let rules = app.store.alert_rules().await?;
    Ok(Json(RuleList { rules: rules.into_iter().map(Into::into).collect() }))
}

const RULE_ACTIONS: [&str; 3] = ["task_and_notify", "task", "notify"];

/// A rule to create. The condition's fields depend on the type: `spike` {per_minute},
/// `sustained` {minutes}, `error_rate` {window_minutes, degraded, fail, recovery_margin},
/// `ignored_growing` {count, minutes}; `new_fingerprint`, `critical` and `regression` take none.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRuleBody {
    pub name: String,
    pub rule_type: String,
    #[schema(value_type = Object)]
    #[serde(default)]
    pub condition: serde_json::Value,
    /// task_and_notify (default), task or notify.
    pub action: Option<String>,
    /// Default true.
    pub enabled: Option<bool>,
    /// Minutes before the rule alerts again on the same pattern (default 30).
    pub cooldown_minutes: Option<i64>,
}

/// The fields of a rule to change; those left out stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleChange {
    pub name: Option<String>,
    pub rule_type: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub condition: Option<serde_json::Value>,
    pub action: Option<String>,
    pub enabled: Option<bool>,
    pub cooldown_minutes: Option<i64>,
}

/// Refuses a rule the evaluator could not run, saying why.
fn check_rule(rule: &NewRule) -> Result<(), ApiError> {
    let name = rule.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::BadRequest("invalid body at name: 1 to 200 characters".into()));
    }
    faultline_core::alert::RuleKind::from_stored(&rule.rule_type, &rule.condition)
        .map_err(|why| ApiError::BadRequest(format!("invalid rule: {why}")))?;
    if !RULE_ACTIONS.contains(&rule.action.as_str()) {
        return Err(ApiError::BadRequest(format!(
            "invalid body at action: {:?}; use task_and_notify, task or notify",
            rule.action
        )));
    }
    if !(0..=10_080).contains(&rule.cooldown_minutes) {
        return Err(ApiError::BadRequest(format!(
            "invalid body at cooldown_minutes: {} is outside 0..=10080",
            rule.cooldown_minutes
        )));
    }
    Ok(())
}

async fn saved_rule(app: &AppState, saved: RuleSaved, name: &str) -> Result<Json<RuleView>, ApiError> {
    let id = match saved {
        RuleSaved::Saved(id) => id,
        RuleSaved::NameTaken => return Err(ApiError::Conflict(format!("a rule named {name:?} exists"))),
        RuleSaved::NoSuchRule => return Err(not_found("rule")),
    };
    let rule =
        app.store.alert_rules().await?.into_iter().find(|r| r.id == id).ok_or_else(|| not_found("rule"))?;
    Ok(Json(rule.into()))
}

/// Creates an alert rule; it applies from the next evaluation.
#[utoipa::path(post, path = "/api/alerts/rules", tag = "alerts", request_body = NewRuleBody,
    responses((status = 200, body = RuleView), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_rule(
    State(app): App,
    headers: HeaderMap,
    Body(new): Body<NewRuleBody>,
) -> Result<Json<RuleView>, ApiError> {
    app.auth.check(&headers, Scope::Write)?;
    let rule = NewRule {
        name: new.name.trim().to_owned(),
        rule_type: new.rule_type,
        condition: new.condition,
        action: new.action.unwrap_or_else(|| "task_and_notify".into()),
        enabled: new.enabled.unwrap_or(true),
        cooldown_minutes: new.cooldown_minutes.unwrap_or(30),
    };
    check_rule(&rule)?;
    let saved = app.store.create_rule(&rule, now_ms()).await?;
    saved_rule(&app, saved, &rule.name).await
}

/// Changes an alert rule: enable or disable it, or edit its condition, action or cooldown.
#[utoipa::path(patch, path = "/api/alerts/rules/{id}", tag = "alerts", request_body = RuleChange,
    params(("id" = i64, Path, description = "rule id")),
    responses((status = 200, body = RuleView), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn update_rule(
    State(app): App,
    headers: HeaderMap,
    Path(id): Path<i64>,
    Body(change): Body<RuleChange>,
) -> Result<Json<RuleView>, ApiError> {
    app.auth.check(&headers, Scope::Write)?;
    let current =
        app.store.alert_rules().await?.into_iter().find(|r| r.id == id).ok_or_else(|| not_found("rule"))?;
    let rule = NewRule {
        name: change.name.map_or(current.name, |n| n.trim().to_owned()),
        rule_type: change.rule_type.unwrap_or(current.rule_type),
        condition: change.condition.unwrap_or(current.condition),
        action: change.action.unwrap_or(current.action),
        enabled: change.enabled.unwrap_or(current.enabled),
        cooldown_minutes: change.cooldown_minutes.unwrap_or(current.cooldown_minutes),
    };
    check_rule(&rule)?;
    let saved = app.store.update_rule(id, &rule).await?;
    saved_rule(&app, saved, &rule.name).await
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct RunsQuery {
    /// Only runs of this job (collect, error_rate_check, railway_crawl…).
    pub job: Option<String>,
    /// 1 to 1000 (default 50).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct RunView {
    pub id: i64,
    pub job: String,
    pub started: String,
    pub finished: String,
    pub duration_ms: i64,
    /// ok, failed or skipped.
    pub outcome: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

#[derive(Serialize, ToSchema)]
pub struct RunList {
    pub runs: Vec<RunView>,
}

/// Job and crawl runs, newest first.
#[utoipa::path(get, path = "/api/jobs/runs", params(RunsQuery), tag = "health",
    responses((status = 200, body = RunList), (status = 400, body = ErrorBody)))]
async fn job_runs(
    State(app): App,
    headers: HeaderMap,
    Params(q): Params<RunsQuery>,
) -> Result<Json<RunList>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    let limit = check_range("limit", q.limit.unwrap_or(50), 1, 1000)?;
    let runs = app.store.job_runs(q.job.as_deref().filter(|j| !j.is_empty()), limit).await?;
    Ok(Json(RunList {
        runs: runs
            .into_iter()
            .map(|r| RunView {
                id: r.id,
                job: r.run.job,
                started: rfc3339(r.run.started_ms),
                finished: rfc3339(r.run.finished_ms),
                duration_ms: r.run.finished_ms - r.run.started_ms,
                outcome: r.run.outcome,
                detail: r.run.detail,
            })
            .collect(),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct SourceView {
    /// `file:…`, `journald`, `railway:<environment>`…
    pub source_id: String,
    /// Where reading resumes (a file offset, a journal cursor, a Railway timestamp); `null`
    /// for a source that has stored nothing yet (a failing one).
    pub cursor: Option<String>,
    /// When the cursor last moved.
    pub updated: Option<String>,
    /// Seconds since then.
    pub lag_seconds: Option<i64>,
    /// Why the source's last run failed (a Railway crawl, journalctl), if it did.
    pub last_error: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceView>,
}

/// Each source's cursor, how long since it moved, and its last error.
#[utoipa::path(get, path = "/api/sources", tag = "health", responses((status = 200, body = SourceList)))]
async fn sources(
    State(app): App,
    headers: HeaderMap,
    Params(_none): Params<Empty>,
) -> Result<Json<SourceList>, ApiError> {
    app.auth.check(&headers, Scope::Read)?;
    Ok(Json(SourceList { sources: source_views(&app, now_ms()).await? }))
}

/// Each source with its cursor, lag and last crawl error (the API and the Sources page).
pub(crate) async fn source_views(app: &AppState, now: i64) -> Result<Vec<SourceView>, ApiError> {
    let cursors = app.store.cursors("").await?;
    // The latest run of each source that reports its runs (Railway crawls, journalctl's state).
    let mut latest: std::collections::BTreeMap<String, Option<String>> = std::collections::BTreeMap::new();
    for job in ["railway_crawl", "source_status"] {
        for r in app.store.job_runs(Some(job), 200).await? {
            if let Some(target) = r.run.detail["target"].as_str() {
                let error = r.run.detail["error"].as_str().map(str::to_owned);
                latest.entry(target.to_owned()).or_insert(error);
            }
        }
    }
    let mut views: Vec<SourceView> = cursors
        .into_iter()
        .filter(|c| !c.source_id.starts_with("faultline:"))
        .map(|SavedCursor { source_id, cursor, saved_ms: updated_ms }| SourceView {
            last_error: latest.remove(&source_id).flatten(),
            source_id,
            cursor: Some(cursor),
            updated: Some(rfc3339(updated_ms)),
            lag_seconds: Some((now - updated_ms).max(0) / 1000),
        })
        .collect();
    // A source that failed before storing anything has no cursor, but it is listed.
    views.extend(latest.into_iter().filter_map(|(source_id, error)| {
        error.map(|e| SourceView {
            source_id,
            cursor: None,
            updated: None,
            lag_seconds: None,
            last_error: Some(e),
        })
    }));
    Ok(views)
}

/// Runs a crawl of every Railway target now (`faultline serve` only).
#[utoipa::path(post, path = "/api/logs/crawl", tag = "errors",
    responses((status = 200, description = "one run record per target", content_type = "application/json"),
              (status = 404, body = ErrorBody, description = "no Railway target is configured")))]
async fn crawl(
    State(app): App,
    headers: HeaderMap,
    Params(_none): Params<Empty>,
) -> Result<Json<serde_json::Value>, ApiError> {
    app.auth.check(&headers, Scope::Write)?;
    let crawler =
        app.crawler.as_ref().ok_or_else(|| ApiError::NotFound("no Railway target is configured".into()))?;
    Ok(Json(crawler().await))
}

/// Every operation may answer 400 (a bad parameter), 401/403 (token, scope) and 500: added to
/// each operation so that the handlers list only what is particular to them.
fn add_error_responses(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::{ContentBuilder, Ref, RefOr, ResponseBuilder};
    let error = |description: &str| {
        RefOr::T(
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build(),
                )
                .build(),
        )
    };
    let common = [
        ("400", "the request is invalid: the error names the parameter and why"),
        ("401", "a token is required, or the one sent is unknown"),
        ("403", "the token lacks the scope this operation needs"),
        ("500", "internal error (the cause is in the server's log)"),
    ];
    for item in doc.paths.paths.values_mut() {
        for operation in [&mut item.get, &mut item.post, &mut item.patch, &mut item.put, &mut item.delete]
            .into_iter()
            .flatten()
        {
            for (status, description) in common {
                operation.responses.responses.entry(status.to_owned()).or_insert_with(|| error(description));
            }
        }
    }
}

static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// The OpenAPI 3 document of this API.
#[utoipa::path(get, path = "/api/openapi.json", tag = "meta",
    responses((status = 200, description = "this document (OpenAPI 3.1)", content_type = "application/json")))]
async fn openapi_document() -> impl axum::response::IntoResponse {
    let json = DOCUMENT.get().cloned().unwrap_or_default();
    ([(axum::http::header::CONTENT_TYPE, "application/json")], json)
}

/// The API routes and their OpenAPI document.
pub fn routes() -> (axum::Router<Arc<AppState>>, utoipa::openapi::OpenApi) {
    let mut doc = utoipa::openapi::OpenApiBuilder::new()
        .info(
            utoipa::openapi::InfoBuilder::new()
                .title("faultline")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Errors collected from logs, grouped into patterns, with alerts and tasks.",
                ))
                .build(),
        )
        .build();
    doc.components = Some(utoipa::openapi::ComponentsBuilder::new().build());
    let (router, mut doc) = OpenApiRouter::<Arc<AppState>>::with_openapi(doc)
        .routes(routes!(list_errors))
        .routes(routes!(get_error))
        .routes(routes!(occurrences))
        .routes(routes!(stats))
        .routes(routes!(crawl))
        .routes(routes!(search_logs))
        .routes(routes!(rate))
        .routes(routes!(patterns))
        .routes(routes!(set_pattern_status))
        .routes(routes!(list_tasks, create_task))
        .routes(routes!(get_task, set_task_status))
        .routes(routes!(list_alerts))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(update_rule))
        .routes(routes!(job_runs))
        .routes(routes!(sources))
        .routes(routes!(openapi_document))
        .split_for_parts();
    let security = utoipa::openapi::security::SecurityScheme::Http(utoipa::openapi::security::Http::new(
        utoipa::openapi::security::HttpAuthScheme::Bearer,
    ));
    if let Some(components) = doc.components.as_mut() {
        components.add_security_scheme("bearer", security);
    }
    doc.security =
        Some(vec![utoipa::openapi::security::SecurityRequirement::new("bearer", Vec::<String>::new())]);
    add_error_responses(&mut doc);
    let _ = DOCUMENT.set(doc.to_json().unwrap_or_default());
    (router, doc)
}
