//! OpenTelemetry logs over HTTP: `POST /v1/logs` with an `ExportLogsServiceRequest` in protobuf
//! (`application/x-protobuf`) or OTLP's JSON (`application/json`), gzip accepted; the message
//! types are `opentelemetry-proto`'s. Each log record becomes an event: its severity the level,
//! its body the message, `service.name` the source, the semantic conventions
//! `exception.type` / `exception.message` / `exception.stacktrace` the exception, attributes
//! and resource attributes metadata, trace and span ids kept. Records below the minimum level
//! are counted like any; records that cannot be read are answered in `partial_success`.
//!
//! OTLP/gRPC is served on the same port ([`LogsGrpc`]): the `LogsService/Export` call over
//! cleartext HTTP/2, gzip and deflate accepted, the token in the `authorization` metadata. Its
//! errors are gRPC status codes: a request with no readable record `INVALID_ARGUMENT`, over quota
//! `RESOURCE_EXHAUSTED` and a busy database `UNAVAILABLE`, both retried by OTLP exporters after the
//! delay their `RetryInfo` gives ([`retry_later`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use faultline_core::{Level, LogEvent, Origin, Stamp, TimestampMs};
use opentelemetry_proto::tonic::collector::logs::v1::logs_service_server::{LogsService, LogsServiceServer};
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsPartialSuccess, ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use prost::Message;
use serde_json::{Value, json};

use crate::auth::{Caller, Scope};
use crate::error::ApiError;
use crate::ingest::{Rejected, check_quota, commit, media_type, read_body};
use crate::{AppState, now_ms};

pub(crate) async fn logs(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let caller = app.auth.check(&headers, Scope::Ingest)?;
    let body = read_body(&app, body)?;
    let media = media_type(&headers);
    let json_encoding = match media.as_str() {
        "application/json" => true,
        "application/x-protobuf" | "application/protobuf" => false,
        other => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "unsupported content type {other:?}: send application/x-protobuf or application/json"
            )));
        }
    };
    let request: ExportLogsServiceRequest = if json_encoding {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("not an OTLP logs request: {e}")))?
    } else {
        ExportLogsServiceRequest::decode(body.as_ref())
            .map_err(|e| ApiError::BadRequest(format!("not an OTLP logs request: {e}")))?
    };
    let (status, answer) = export(&app, &caller, &request).await?;
    // OTLP answers 200 with partial_success for rejected records; `commit` makes a request with
    // nothing readable a 400.
    Ok(if json_encoding {
        (
            status,
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_vec(&answer).unwrap_or_default(),
        )
            .into_response()
    } else {
        (status, [(header::CONTENT_TYPE, "application/x-protobuf")], answer.encode_to_vec()).into_response()
    })
}

/// Stores the readable records of an export request, whichever transport brought it: the
/// status of an HTTP answer (400 when no record could be read) and OTLP's answer, which names
/// the records rejected.
async fn export(
    app: &AppState,
    caller: &Caller,
    request: &ExportLogsServiceRequest,
) -> Result<(StatusCode, ExportLogsServiceResponse), ApiError> {
    let now = now_ms();
    let source_id = match &caller.token {
        Some(name) => format!("otlp:{name}"),
        None => "otlp".to_owned(),
    };
    let (mut events, mut rejected) = (Vec::new(), Vec::new());
    let mut index = 0;
    for resource_logs in &request.resource_logs {
        let resource = resource_logs.resource.as_ref().map(|r| r.attributes.as_slice()).unwrap_or_default();
        for scope_logs in &resource_logs.scope_logs {
            for record in &scope_logs.log_records {
                match event_from_record(record, resource, &source_id, now) {
                    Ok(received) => events.push(received),
                    Err(error) => rejected.push(Rejected { index, error }),
                }
                index += 1;
            }
        }
    }
    check_quota(app, caller, events.len())?;
    let error_message =
        rejected.iter().map(|r| format!("record {}: {}", r.index, r.error)).collect::<Vec<_>>();
    let rejected_count = rejected.len() as i64;
    let (status, _) = commit(app, &source_id, events, rejected, now).await?;
    let partial_success = (rejected_count > 0).then(|| ExportLogsPartialSuccess {
        rejected_log_records: rejected_count,
        error_message: error_message.join("; "),
    });
    Ok((status, ExportLogsServiceResponse { partial_success }))
}

/// OTLP/gRPC's `LogsService`, answering as [`logs`] does over HTTP.
pub(crate) struct LogsGrpc(pub(crate) Arc<AppState>);

#[tonic::async_trait]
impl LogsService for LogsGrpc {
    async fn export(
        &self,
        request: tonic::Request<ExportLogsServiceRequest>,
    ) -> Result<tonic::Response<ExportLogsServiceResponse>, tonic::Status> {
        let headers = request.metadata().clone().into_headers();
        let caller = self.0.auth.check(&headers, Scope::Ingest).map_err(grpc_status)?;
        let (status, answer) = export(&self.0, &caller, request.get_ref()).await.map_err(grpc_status)?;
        if status == StatusCode::BAD_REQUEST {
            let why = answer.partial_success.map(|p| p.error_message).unwrap_or_default();
            return Err(tonic::Status::invalid_argument(format!("no log record could be read: {why}")));
        }
        Ok(tonic::Response::new(answer))
    }
}

/// The served `LogsService`: gzip- and deflate-compressed requests accepted (the compressions
/// OTLP exporters offer), as large as an HTTP body may be.
pub(crate) fn grpc_service(app: Arc<AppState>) -> LogsServiceServer<LogsGrpc> {
    let max = app.settings.max_body_bytes;
    LogsServiceServer::new(LogsGrpc(app))
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip)
        .accept_compressed(tonic::codec::CompressionEncoding::Deflate)
        .max_decoding_message_size(max)
}

/// An error as the gRPC status an OTLP exporter acts on: it retries `RESOURCE_EXHAUSTED` and
/// `UNAVAILABLE`, and drops the batch on the others.
fn grpc_status(e: ApiError) -> tonic::Status {
    let message = e.to_string();
    match e {
        ApiError::BadRequest(_) | ApiError::TooLarge(_) | ApiError::UnsupportedMediaType(_) => {
            tonic::Status::invalid_argument(message)
        }
        ApiError::Unauthorized(_) => tonic::Status::unauthenticated(message),
        ApiError::Forbidden(_) => tonic::Status::permission_denied(message),
        ApiError::NotFound(_) => tonic::Status::not_found(message),
        ApiError::Conflict(_) => tonic::Status::aborted(message),
        ApiError::TooManyRequests { retry_after_secs, .. }
        | ApiError::SentryRateLimited { retry_after_secs, .. } => {
            retry_later(tonic::Code::ResourceExhausted, message, retry_after_secs)
        }
        ApiError::Unavailable { retry_after_secs, .. } => {
            retry_later(tonic::Code::Unavailable, message, retry_after_secs)
        }
        ApiError::Internal(cause) => {
            tracing::error!(error = %cause, "OTLP/gRPC export failed");
            tonic::Status::internal("internal error")
        }
    }
}

/// A status saying when to try again, as OTLP asks: a `RetryInfo` in the status's details
/// (`grpc-status-details-bin`, which the Go exporter and the Collector's read), and the same
/// `RetryInfo` alone under `google.rpc.retryinfo-bin` (which the Python exporter reads). An
/// exporter without them backs off by its own schedule.
fn retry_later(code: tonic::Code, message: String, secs: u64) -> tonic::Status {
    use tonic_types::{ErrorDetails, StatusExt};
    let retry = tonic_types::pb::RetryInfo {
        retry_delay: Some(prost_types::Duration {
            seconds: i64::try_from(secs).unwrap_or(i64::MAX),
            nanos: 0,
        }),
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert_bin(
        "google.rpc.retryinfo-bin",
        tonic::metadata::MetadataValue::from_bytes(&retry.encode_to_vec()),
    );
    tonic::Status::with_error_details_and_metadata(
        code,
        format!("{message}: retry after {secs} s"),
        ErrorDetails::with_retry_info(Some(std::time::Duration::from_secs(secs))),
        metadata,
    )
}

/// One log record, read in its resource's context.
fn event_from_record(
    record: &LogRecord,
    resource: &[KeyValue],
    source_id: &str,
    now: TimestampMs,
) -> Result<(LogEvent, Stamp), String> {
    let attributes: BTreeMap<&str, Value> =
        record.attributes.iter().map(|kv| (kv.key.as_str(), any_json(kv.value.as_ref()))).collect();
    let text = |key: &str| attributes.get(key).and_then(Value::as_str).filter(|s| !s.is_empty());
    let body = match record.body.as_ref().and_then(|b| b.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(_) => any_json(record.body.as_ref()).to_string(),
        None => String::new(),
    };
    let exception = match (text("exception.type"), text("exception.message")) {
        (Some(t), Some(m)) => Some(format!("{t}: {m}")),
        (Some(t), None) => Some(t.to_owned()),
        (None, Some(m)) => Some(m.to_owned()),
        (None, None) => None,
    };
    let message = match (body.trim().is_empty(), &exception) {
        (false, _) => body.clone(),
        (true, Some(e)) => e.clone(),
        (true, None) => return Err("the record has neither a body nor an exception".to_owned()),
    };
    let level = level_of(record.severity_number, &record.severity_text);
    let time = [record.time_unix_nano, record.observed_time_unix_nano].into_iter().find(|t| *t > 0);
    let stamp = if record.time_unix_nano > 0 { Stamp::Sent } else { Stamp::Arrival };
    let resource_attributes: BTreeMap<&str, Value> =
        resource.iter().map(|kv| (kv.key.as_str(), any_json(kv.value.as_ref()))).collect();
    let service = resource_attributes.get("service.name").and_then(Value::as_str).filter(|s| !s.is_empty());
    let mut metadata: serde_json::Map<String, Value> = attributes
        .iter()
        .filter(|(k, _)| !k.starts_with("exception."))
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    if !resource_attributes.is_empty() {
        metadata.insert("resource".to_owned(), json!(resource_attributes));
    }
    if !record.trace_id.is_empty() {
        metadata.insert("trace_id".to_owned(), json!(hex::encode(&record.trace_id)));
    }
    if !record.span_id.is_empty() {
        metadata.insert("span_id".to_owned(), json!(hex::encode(&record.span_id)));
    }
    if exception.is_some() && !body.trim().is_empty() {
        metadata.insert("exception".to_owned(), json!(exception));
    }
    let event = LogEvent {
        timestamp_ms: time.map_or(now, |ns| (ns / 1_000_000) as TimestampMs),
        level,
        source: service.map_or_else(|| source_id.to_owned(), str::to_owned),
        message,
        traceback: text("exception.stacktrace").map(str::to_owned),
        request_path: text("url.path").or(text("http.target")).map(str::to_owned),
        request_method: text("http.request.method").or(text("http.method")).map(str::to_owned),
        metadata: metadata.into_iter().collect(),
        raw: body,
        origin: Origin { source_id: source_id.to_owned(), external_id: None },
    };
    Ok((event, stamp))
}

/// OpenTelemetry's severity numbers (1–4 trace … 21–24 fatal), else its text.
fn level_of(number: i32, text: &str) -> Level {
    match number {
        1..=4 => Level::Trace,
        5..=8 => Level::Debug,
        9..=12 => Level::Info,
        13..=16 => Level::Warning,
        17..=20 => Level::Error,
        21..=24 => Level::Critical,
        _ => Level::parse(text).unwrap_or(Level::Info),
    }
}

fn any_json(value: Option<&AnyValue>) -> Value {
    match value.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => json!(s),
        Some(any_value::Value::BoolValue(b)) => json!(b),
        Some(any_value::Value::IntValue(i)) => json!(i),
        Some(any_value::Value::DoubleValue(d)) => json!(d),
        Some(any_value::Value::ArrayValue(a)) => {
            Value::Array(a.values.iter().map(|v| any_json(Some(v))).collect())
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            Value::Object(kv.values.iter().map(|kv| (kv.key.clone(), any_json(kv.value.as_ref()))).collect())
        }
        Some(any_value::Value::BytesValue(b)) => json!(hex::encode(b)),
        Some(any_value::Value::StringValueStrindex(_)) | None => Value::Null,
    }
}
