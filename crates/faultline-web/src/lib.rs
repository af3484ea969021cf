//! faultline's HTTP server: the health endpoint and the ingest endpoints, behind token auth,
//! body-size limits and per-token quotas, the JSON API with its OpenAPI document (`api`), and
//! the System Health page (`page`, with browser sign-in and CSRF in `session`).

pub mod api;
pub mod auth;
pub mod error;
mod ingest;
pub mod metrics;
mod otlp;
pub mod page;
mod sentry;
mod server;
pub mod session;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use faultline_core::DAY_MS;
use faultline_store::{Pipeline, Store};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tower_http::decompression::RequestDecompressionLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

pub use auth::{ApiToken, Auth, Scope};
pub use error::ApiError;
pub use ingest::{IngestResponse, Rejected};
pub use server::{ServerOptions, serve};

/// How the server treats what it is sent.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Largest request body, after gzip is undone.
    pub max_body_bytes: usize,
    pub max_records_per_request: usize,
    /// Records per minute per token (or for everyone, when no tokens are configured).
    pub quota_per_minute: Option<u32>,
    /// How often the System Health page refreshes itself (0: never).
    pub page_refresh_secs: u32,
    /// A sent record's message is cut at this many bytes, as a file line is.
    pub max_line_bytes: usize,
    /// A sent time further ahead of the arrival time than this is replaced by the arrival time.
    pub max_clock_skew_ms: i64,
    /// `GET /metrics` without a token even when tokens are configured (`server.metrics_public`).
    pub metrics_public: bool,
    /// Sentry project id → the source name its events are stored under (`sentry.projects`).
    pub sentry_projects: std::collections::BTreeMap<String, String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            max_body_bytes: 10 << 20,
            max_records_per_request: 100_000,
            quota_per_minute: None,
            page_refresh_secs: 30,
            max_line_bytes: 64 * 1024,
            max_clock_skew_ms: DAY_MS,
            metrics_public: false,
            sentry_projects: Default::default(),
        }
    }
}

/// What every handler shares.
pub struct AppState {
    /// Where ingest requests commit (with the other sources' events, counted and alerted on).
    pub pipeline: Arc<Pipeline>,
    /// The pipeline's store, for reads.
    pub store: Arc<dyn Store>,
    pub auth: Auth,
    pub settings: Settings,
    quota: Option<DefaultKeyedRateLimiter<String>>,
    sessions: session::Sessions,
    crawler: Option<CrawlHook>,
}

/// Runs a manual crawl and returns its run records (`POST /api/logs/crawl`).
pub type CrawlHook = Arc<
    dyn Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = serde_json::Value> + Send>> + Send + Sync,
>;

impl AppState {
    pub fn new(pipeline: Arc<Pipeline>, auth: Auth, settings: Settings) -> AppState {
        let quota = settings
            .quota_per_minute
            .and_then(NonZeroU32::new)
            .map(|per_minute| RateLimiter::keyed(Quota::per_minute(per_minute)));
        AppState {
            store: pipeline.store().clone(),
            pipeline,
            auth,
            settings,
            quota,
            sessions: session::Sessions::default(),
            crawler: None,
        }
    }

    /// Lets `POST /api/logs/crawl` run `crawl`.
    pub fn with_crawler(mut self, crawl: CrawlHook) -> AppState {
        self.crawler = Some(crawl);
        self
    }
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    // Metrics recorded from here on (by the server, the pipeline, the rules…) show in /metrics.
    metrics::prometheus();
    let max_body = state.settings.max_body_bytes;
    let state = Arc::new(state);
    let (api, _) = api::routes();
    Router::new()
        .merge(api)
        .merge(page::routes())
        .route("/healthz", get(healthz))
        .route("/api/ingest", post(ingest::ingest))
        .route("/api/ingest/python", post(ingest::ingest_python).get(ingest::ingest_python))
        .route("/api/{project}/envelope/", post(sentry::envelope))
        .route("/api/{project}/store/", post(sentry::store))
        .route("/v1/logs", post(otlp::logs))
        .route_service(
            "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
            otlp::grpc_service(state.clone()),
        )
        .route("/metrics", get(metrics::metrics))
        .route_layer(axum::middleware::from_fn(metrics::record_http))
        .layer(axum::middleware::from_fn(refuse_nul_in_path))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(RequestDecompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, Duration::from_secs(30)))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// A path naming a NUL (`%00`) names nothing faultline stores (PostgreSQL cannot hold one).
async fn refuse_nul_in_path(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if request.uri().path().contains("%00") {
        return ApiError::BadRequest("invalid path: contains a NUL character".into()).into_response();
    }
    next.run(request).await
}

async fn healthz(State(app): State<Arc<AppState>>) -> impl IntoResponse {
    match app.store.cursor("faultline:healthz").await {
        Ok(_) => (StatusCode::OK, axum::Json(serde_json::json!({ "status": "ok" }))),
        Err(e) => {
            tracing::error!(error = %e, "health check: database unreachable");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(serde_json::json!({ "status": "unavailable", "error": "database unreachable" })),
            )
        }
    }
}

/// True for addresses only this machine can reach.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().is_loopback()
}

/// Milliseconds since the epoch, now.
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}
