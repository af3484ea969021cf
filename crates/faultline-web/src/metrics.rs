//! `GET /metrics`: the process's counters and histograms in Prometheus' text format
//! (`metrics-exporter-prometheus`), and the layer that times every routed HTTP request.
//!
//! Metrics are recorded anywhere with the `metrics` facade (`counter!`, `histogram!`): the
//! pipeline (events received, stored, duplicate, capped, below the level, new patterns, ingest
//! transaction time), the ingest handlers (records rejected), the alert evaluator, the outbox,
//! the scheduler and the Railway crawler. Labels are bounded: source kinds, rule types,
//! notifier names, job names, route templates, status codes. The store's size (database bytes,
//! patterns, deliveries waiting in the outbox) is read at each scrape.

use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::AppState;
use crate::auth::Scope;
use crate::error::ApiError;

/// Request-latency buckets, in seconds.
const LATENCY_BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

/// The process's recorder, installed on first use (metrics are process-wide).
pub fn prometheus() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets(&LATENCY_BUCKETS)
                .map(PrometheusBuilder::build_recorder)
                .unwrap_or_else(|_| PrometheusBuilder::new().build_recorder());
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics shows this one only");
            }
            handle
        })
        .clone()
}

/// `GET /metrics`: open with no tokens configured (loopback only) or with
/// `server.metrics_public`; otherwise a token with the read scope.
pub(crate) async fn metrics(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if !app.settings.metrics_public {
        app.auth.check(&headers, Scope::Read)?;
    }
    // The store's size is read now, at the scrape, rather than kept up to date.
    match app.store.gauges().await {
        Ok(g) => {
            metrics::gauge!("faultline_database_size_bytes").set(g.database_bytes as f64);
            metrics::gauge!("faultline_patterns").set(g.patterns as f64);
            metrics::gauge!("faultline_outbox_pending").set(g.outbox_pending as f64);
        }
        Err(e) => tracing::warn!(error = %e, "/metrics: cannot read the store's size"),
    }
    let handle = prometheus();
    handle.run_upkeep();
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
        handle.render(),
    )
        .into_response())
}

/// Counts and times every routed request by its route template and status.
pub(crate) async fn record_http(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let started = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("faultline_http_requests_total", "route" => route.clone(), "method" => method, "status" => status)
        .increment(1);
    metrics::histogram!("faultline_http_request_duration_seconds", "route" => route)
        .record(started.elapsed().as_secs_f64());
    response
}
