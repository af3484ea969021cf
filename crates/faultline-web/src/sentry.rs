//! Sentry's ingest endpoints, so an application's existing Sentry SDK needs only a DSN pointing
//! at faultline (`http://<key>@<host>/<project>`): `POST /api/{project}/envelope/` and the older
//! `POST /api/{project}/store/` (one event as JSON). The key is an ingest-scope token (any key
//! with no tokens configured, as for `/api/ingest`), read from `X-Sentry-Auth`, the
//! `sentry_key` query parameter or the envelope header's `dsn`. Events are stored through the
//! pipeline like every record; other items (transactions, sessions, client reports,
//! attachments, check-ins…) are accepted and counted, not stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use faultline_core::sentry::{event_from_sentry, split_envelope};
use faultline_core::{LogEvent, Stamp};
use serde::Serialize;

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::ingest::{IngestResponse, Rejected, check_quota, commit, read_body};
use crate::{AppState, now_ms};

/// What a Sentry endpoint answers: the event id, as Sentry does, and what was done.
#[derive(Debug, Serialize)]
struct SentryResponse {
    id: Option<String>,
    #[serde(flatten)]
    ingest: IngestResponse,
    /// Items of other types, accepted and counted but not stored, by type.
    not_stored: BTreeMap<String, u64>,
}

pub(crate) async fn envelope(
    State(app): State<Arc<AppState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_body(&app, body)?;
    let envelope =
        split_envelope(&body).map_err(|e| ApiError::BadRequest(format!("malformed envelope: {e}")))?;
    let key = sentry_key(&headers, query.as_deref()).or_else(|| envelope.dsn_key());
    let caller = authorize(&app, key.as_deref())?;
    let (source_id, name) = source_of(&app.settings, &project);
    let now = now_ms();
    let (mut events, mut rejected, mut not_stored) = (Vec::new(), Vec::new(), BTreeMap::new());
    for (index, item) in envelope.items.iter().enumerate() {
        if item.kind == "event" {
            match event_from_sentry(&item.payload, &source_id, now) {
                Ok(event) => events.push((named(event, name), Stamp::Sent)),
                Err(error) => rejected.push(Rejected { index, error }),
            }
        } else {
            *not_stored.entry(item.kind.clone()).or_insert(0) += 1;
        }
    }
    if let Some(error) = envelope.broken {
        rejected.push(Rejected { index: envelope.items.len(), error });
    }
    let id = envelope.header.get("event_id").and_then(|v| v.as_str()).map(str::to_owned);
    answer(&app, &caller, &source_id, events, rejected, not_stored, id).await
}

pub(crate) async fn store(
    State(app): State<Arc<AppState>>,
    Path(project): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let body = read_body(&app, body)?;
    let caller = authorize(&app, sentry_key(&headers, query.as_deref()).as_deref())?;
    let (source_id, name) = source_of(&app.settings, &project);
    let event = event_from_sentry(&body, &source_id, now_ms()).map_err(ApiError::BadRequest)?;
    let event = named(event, name);
    let id = event.metadata.get("event_id").and_then(|v| v.as_str()).map(str::to_owned);
    answer(&app, &caller, &source_id, vec![(event, Stamp::Sent)], Vec::new(), BTreeMap::new(), id).await
}

async fn answer(
    app: &AppState,
    caller: &Caller,
    source_id: &str,
    events: Vec<(LogEvent, Stamp)>,
    rejected: Vec<Rejected>,
    not_stored: BTreeMap<String, u64>,
    id: Option<String>,
) -> Result<Response, ApiError> {
    check_quota(app, caller, events.len()).map_err(rate_limited)?;
    let (status, ingest) = commit(app, source_id, events, rejected, now_ms()).await?;
    Ok((status, Json(SentryResponse { id, ingest, not_stored })).into_response())
}

/// Events of a Sentry project come from the source `sentry:<project>`; their source name is
/// the one `sentry.projects` gives the project, if any.
fn source_of<'a>(settings: &'a crate::Settings, project: &str) -> (String, Option<&'a str>) {
    let project: String =
        project.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(64).collect();
    let name = settings.sentry_projects.get(&project).map(String::as_str);
    (format!("sentry:{project}"), name)
}

/// A configured project name is the event's source; the SDK's logger is kept in metadata.
fn named(mut event: LogEvent, name: Option<&str>) -> LogEvent {
    if let Some(name) = name {
        let logger = std::mem::replace(&mut event.source, name.to_owned());
        if logger != event.origin.source_id {
            event.metadata.insert("logger".to_owned(), logger.into());
        }
    }
    event
}

/// Over quota, a Sentry endpoint answers as Relay does: 429 with `Retry-After` and
/// `X-Sentry-Rate-Limits` (`<seconds>:<categories>:<scope>:<reason>`), which the SDKs honour by
/// not sending events of those categories until then.
fn rate_limited(error: ApiError) -> ApiError {
    match error {
        ApiError::TooManyRequests { message, retry_after_secs } => ApiError::SentryRateLimited {
            message,
            retry_after_secs,
            limits: format!("{retry_after_secs}:error;default;security:key:ingest_quota"),
        },
        other => other,
    }
}

fn authorize(app: &AppState, key: Option<&str>) -> Result<Caller, ApiError> {
    if app.auth.is_open() {
        return Ok(Caller { token: None });
    }
    let key = key.ok_or(ApiError::Unauthorized(
        "missing Sentry key: use a DSN with an ingest token as its key (http://<token>@host/<project>)",
    ))?;
    app.auth.check_secret(key, Scope::Ingest)
}

/// The `sentry_key` of `X-Sentry-Auth: Sentry sentry_key=…, sentry_version=7` or of the query.
fn sentry_key(headers: &HeaderMap, query: Option<&str>) -> Option<String> {
    let from_header = headers.get("x-sentry-auth").and_then(|v| v.to_str().ok()).and_then(|v| {
        let v = v.trim();
        let v = v.strip_prefix("Sentry ").unwrap_or(v);
        v.split(',').find_map(|part| part.trim().strip_prefix("sentry_key=").map(str::to_owned))
    });
    from_header
        .or_else(|| {
            let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query?).ok()?;
            pairs.into_iter().find(|(k, _)| k == "sentry_key").map(|(_, v)| v)
        })
        .filter(|k| !k.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_comes_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-sentry-auth",
            "Sentry sentry_version=7, sentry_client=sentry.python/2.75.0, sentry_key=abc123".parse().unwrap(),
        );
        assert_eq!(sentry_key(&headers, None).as_deref(), Some("abc123"));
        assert_eq!(
            sentry_key(&HeaderMap::new(), Some("sentry_version=7&sentry_key=k9")).as_deref(),
            Some("k9")
        );
        assert_eq!(sentry_key(&HeaderMap::new(), Some("sentry_key=")), None);
        let app = |projects: &[(&str, &str)]| crate::Settings {
            sentry_projects: projects.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        let plain = app(&[]);
        let named = app(&[("42", "checkout")]);
        assert_eq!(source_of(&plain, "42"), ("sentry:42".to_owned(), None));
        assert_eq!(source_of(&plain, "4/../<b>").0, "sentry:4b");
        assert_eq!(source_of(&named, "42"), ("sentry:42".to_owned(), Some("checkout")));
        assert_eq!(source_of(&named, "43").1, None);
    }
}
