//! `POST /api/ingest` (a JSON object, a JSON array, or NDJSON; gzip accepted) and
//! `/api/ingest/python` (what Python's `logging.handlers.HTTPHandler` sends).
//!
//! Every record is checked on its own: good ones are stored, bad ones are reported back by
//! index with the reason, and the good ones of a request commit in one transaction.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use faultline_core::{
    LogEvent, Stamp, TimestampMs, cap_event, event_from_json, event_from_python_record, key_occurrences,
    plausible_time,
};
use faultline_store::{Committed, SourceKind, Submission};
use governor::clock::{Clock, DefaultClock};
use serde::Serialize;
use serde_json::Value;

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::{AppState, now_ms};

/// One record that was not accepted.
#[derive(Debug, Serialize)]
pub struct Rejected {
    /// Position in the request: array index or NDJSON line number, from 0.
    pub index: usize,
    pub error: String,
}

/// What an ingest request did.
#[derive(Debug, Serialize)]
pub struct IngestResponse {
    /// Records that were valid (stored, already stored before, or below the minimum level).
    pub accepted: usize,
    pub stored: u64,
    pub duplicates: u64,
    /// Valid records below the minimum level: counted, not stored.
    pub below_level: u64,
    /// Accepted records cut to the line-length limit (`ingest.max_line_bytes`).
    pub cut: u64,
    pub rejected: Vec<Rejected>,
}

pub(crate) async fn ingest(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = app.auth.check(&headers, Scope::Ingest)?;
    let body = read_body(&app, body)?;
    let media = media_type(&headers);
    if !matches!(
        media.as_str(),
        "" | "application/json"
            | "application/x-ndjson"
            | "application/jsonlines"
            | "application/x-jsonlines"
            | "text/plain"
    ) {
        return Err(ApiError::UnsupportedMediaType(format!(
            "unsupported content type {media:?}: send application/json or application/x-ndjson"
        )));
    }
    let records = split_records(&body)?;
    if records.len() > app.settings.max_records_per_request {
        return Err(ApiError::TooLarge(format!(
            "{} records in one request; at most {} are taken",
            records.len(),
            app.settings.max_records_per_request
        )));
    }
    check_quota(&app, &caller, records.len())?;
    let source_id = source_id(&caller);
    let now = now_ms();
    let mut events = Vec::with_capacity(records.len());
    let mut rejected = Vec::new();
    for (index, record) in records.into_iter().enumerate() {
        match record.and_then(|v| event_from_json(v, &source_id, now).map_err(|e| e.to_string())) {
            Ok(received) => events.push(received),
            Err(error) => rejected.push(Rejected { index, error }),
        }
    }
    store(&app, &source_id, events, rejected, now).await
}

pub(crate) async fn ingest_python(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = app.auth.check(&headers, Scope::Ingest)?;
    let body = read_body(&app, body)?;
    // HTTPHandler sends the record as the query string (GET, its default) or the body (POST).
    let form: &[u8] = if body.is_empty() { query.as_deref().unwrap_or("").as_bytes() } else { &body };
    let fields: Vec<(String, String)> = form_urlencoded_pairs(form);
    if fields.is_empty() {
        return Err(ApiError::BadRequest(
            "empty record: send the LogRecord's fields form-encoded, as logging.handlers.HTTPHandler does"
                .into(),
        ));
    }
    check_quota(&app, &caller, 1)?;
    let source_id = format!("{}:python", source_id(&caller));
    let now = now_ms();
    let (events, rejected) = match event_from_python_record(&fields, &source_id, now) {
        Ok(received) => (vec![received], Vec::new()),
        Err(e) => (Vec::new(), vec![Rejected { index: 0, error: e.to_string() }]),
    };
    store(&app, &source_id, events, rejected, now).await
}

/// The request's media type, lower-case, without parameters (`""` when none is given).
pub(crate) fn media_type(headers: &HeaderMap) -> String {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase()
}

pub(crate) fn read_body(app: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "request body larger than {} bytes (after gzip is undone): send smaller batches",
            app.settings.max_body_bytes
        )),
        _ => ApiError::BadRequest(format!("cannot read the request body: {}", rejection.body_text())),
    })
}

fn form_urlencoded_pairs(form: &[u8]) -> Vec<(String, String)> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(form).unwrap_or_default()
}

/// A key no other request of any run of this server has: records stamped on arrival are keyed
/// by it (see [`key_occurrences`]).
fn request_key(now: TimestampMs) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    static STARTED: OnceLock<u128> = OnceLock::new();
    let started = STARTED.get_or_init(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    });
    format!("{started:x}.{:x}.{now:x}", NEXT.fetch_add(1, Ordering::Relaxed))
}

async fn store(
    app: &AppState,
    source_id: &str,
    received: Vec<(LogEvent, Stamp)>,
    rejected: Vec<Rejected>,
    now: TimestampMs,
) -> Result<Response, ApiError> {
    let (status, response) = commit(app, source_id, received, rejected, now).await?;
    Ok((status, Json(response)).into_response())
}

/// Cuts, checks the times of and stores the accepted records of one request; the answer's
/// status is 400 when every record was rejected.
pub(crate) async fn commit(
    app: &AppState,
    source_id: &str,
    mut received: Vec<(LogEvent, Stamp)>,
    rejected: Vec<Rejected>,
    now: TimestampMs,
) -> Result<(StatusCode, IngestResponse), ApiError> {
    key_occurrences(&mut received, &request_key(now));
    let mut cut = 0;
    let events: Vec<LogEvent> = received
        .into_iter()
        .map(|(mut event, _)| {
            cut += u64::from(cap_event(&mut event, app.settings.max_line_bytes));
            plausible_time(&mut event, now, app.settings.max_clock_skew_ms);
            event
        })
        .collect();
    let accepted = events.len();
    let protocol = if source_id.starts_with("sentry:") {
        "sentry"
    } else if source_id == "otlp" || source_id.starts_with("otlp:") {
        "otlp"
    } else if source_id.ends_with(":python") {
        "python"
    } else {
        "json"
    };
    metrics::counter!("faultline_events_rejected_total", "protocol" => protocol)
        .increment(rejected.len() as u64);
    let submission =
        Submission { source_id: source_id.to_owned(), cursor: None, events, cut_lines: cut, now_ms: now };
    let Committed { outcome, below_level } = app.pipeline.submit(SourceKind::Http, submission).await?;
    let status = if accepted == 0 && !rejected.is_empty() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let response = IngestResponse {
        accepted,
        stored: outcome.stored + outcome.capped,
        duplicates: outcome.duplicates,
        below_level,
        cut,
        rejected,
    };
    Ok((status, response))
}

fn source_id(caller: &Caller) -> String {
    match &caller.token {
        Some(name) => format!("http:{name}"),
        None => "http".to_owned(),
    }
}

/// Splits a body into records: one JSON value (an array gives its items), or NDJSON lines.
/// Text that is not UTF-8 is read lossily rather than refused.
fn split_records(body: &[u8]) -> Result<Vec<Result<Value, String>>, ApiError> {
    let text = String::from_utf8_lossy(body);
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(ApiError::BadRequest("empty body: send a JSON object, a JSON array or NDJSON".into()));
    }
    if trimmed.starts_with('[') {
        return match serde_json::from_str::<Value>(trimmed) {
            Ok(Value::Array(items)) => Ok(items.into_iter().map(Ok).collect()),
            Ok(_) => unreachable!("a JSON text starting with [ is an array"),
            Err(e) => Err(ApiError::BadRequest(format!("invalid JSON array: {e}"))),
        };
    }
    if let Ok(value) = serde_json::from_str::<Value>(trimmed) {
        return Ok(vec![Ok(value)]);
    }
    Ok(trimmed
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|line| serde_json::from_str::<Value>(line).map_err(|e| format!("invalid JSON: {e}")))
        .collect())
}

pub(crate) fn check_quota(app: &AppState, caller: &Caller, records: usize) -> Result<(), ApiError> {
    let Some(limiter) = &app.quota else { return Ok(()) };
    let Some(n) = NonZeroU32::new(u32::try_from(records).unwrap_or(u32::MAX)) else { return Ok(()) };
    let key = caller.token.clone().unwrap_or_default();
    match limiter.check_key_n(&key, n) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(not_until)) => {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            Err(ApiError::TooManyRequests {
                message: format!(
                    "ingest quota of {} records per minute exceeded",
                    app.settings.quota_per_minute.unwrap_or(0)
                ),
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            })
        }
        Err(_) => Err(ApiError::TooLarge(format!(
            "{records} records exceed the quota of {} per minute: send smaller requests",
            app.settings.quota_per_minute.unwrap_or(0)
        ))),
    }
}
