//! One error type for every handler. A 4xx says what was wrong with the request; a 5xx says
//! "internal error" and the cause goes to the log, never to the client.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    TooManyRequests { message: String, retry_after_secs: u64 },
    /// Over quota on a Sentry endpoint: 429 with Relay's `X-Sentry-Rate-Limits` header too.
    #[error("{message}")]
    SentryRateLimited { message: String, retry_after_secs: u64, limits: String },
    /// A passing condition (the database busy with another writer): try again after a moment.
    #[error("{message}")]
    Unavailable { message: String, retry_after_secs: u64 },
    /// The cause is logged, not sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl From<faultline_store::StoreError> for ApiError {
    fn from(e: faultline_store::StoreError) -> Self {
        if e.is_transient() {
            tracing::warn!(error = %e, "database busy: answering 503");
            return ApiError::Unavailable {
                message: "the database is busy: try again shortly".into(),
                retry_after_secs: 1,
            };
        }
        ApiError::Internal(Box::new(e))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests { .. } | ApiError::SentryRateLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::Unavailable { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(cause) => {
                tracing::error!(error = %cause, "request failed");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        let mut response = (status, Json(json!({ "error": self.to_string() }))).into_response();
        match &self {
            ApiError::Unauthorized(_) => {
                response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::TooManyRequests { retry_after_secs, .. }
            | ApiError::Unavailable { retry_after_secs, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
            }
            ApiError::SentryRateLimited { retry_after_secs, limits, .. } => {
                response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_secs));
                if let Ok(limits) = HeaderValue::from_str(limits) {
                    response.headers_mut().insert("x-sentry-rate-limits", limits);
                }
            }
            _ => {}
        }
        response
    }
}
