//! OpenTelemetry logs: the real OpenTelemetry Python SDK with its OTLP/HTTP (protobuf) and
//! OTLP/gRPC exporters, a request in OTLP's JSON encoding, and gRPC's own client for the
//! answers an exporter acts on, sent to `faultline serve`.

use std::time::Duration;

use crate::databases;
use crate::serve::{TOKEN, base_config, python, start_with, stop};

const SDK: &str = r#"
import sys, logging
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
provider = LoggerProvider(resource=Resource.create({"service.name": "checkout"}))
exporter = OTLPLogExporter(endpoint=sys.argv[1] + "/v1/logs", headers={"authorization": "Bearer " + sys.argv[2]})
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
log = logging.getLogger("checkout.cart")
log.propagate = False
log.addHandler(LoggingHandler(logger_provider=provider))
log.setLevel(logging.INFO)
try:
    {}["sku"]
except KeyError:
    log.exception("cart lookup failed for order 77")
log.error("inventory service answered 503")
log.info("cart viewed")
provider.shutdown()
print("sent")
"#;

async fn otlp_logs(dir: &std::path::Path, database: &str) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let config = dir.join("faultline.toml");
    std::fs::write(&config, base_config(dir, database)).unwrap();
    let service = start_with(dir, &config, &[]);
    assert_eq!(python(SDK, &[&service.url, TOKEN]).trim(), "sent");
    // OTLP's JSON encoding: hex trace ids, string-encoded 64-bit times, a record without body.
    let json = serde_json::json!({"resourceLogs": [{
    "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "billing"}}]},
    "scopeLogs": [{"logRecords": [
        {"timeUnixNano": "1764410400000000000", "severityNumber": 17, "severityText": "ERROR",
         "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
         "attributes": [{"key": "exception.type", "value": {"stringValue": "LedgerError"}},
                        {"key": "exception.message", "value": {"stringValue": "ledger 9 is closed"}}]},
        {"timeUnixNano": "1764410400000000001", "severityNumber": 17}
    ]}]}]});
    let response = reqwest::Client::new()
        .post(format!("{}/v1/logs", service.url))
        .bearer_auth(TOKEN)
        .json(&json)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let answer: serde_json::Value = response.json().await.unwrap();
    assert_eq!(answer["partialSuccess"]["rejectedLogRecords"], 1, "{answer}");
    assert!(
        answer["partialSuccess"]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("neither a body nor an exception")
    );

    let entries = stored(database, 3).await;
    assert_eq!(
        sources_and_messages(&entries),
        [
            ("billing", "LedgerError: ledger 9 is closed"),
            ("checkout", "cart lookup failed for order 77"),
            ("checkout", "inventory service answered 503"),
        ],
        "the INFO record is below the minimum level"
    );
    let lookup = entries.iter().find(|e| e.message.starts_with("cart lookup")).unwrap();
    let trace = lookup.traceback.as_deref().unwrap_or("");
    assert!(trace.contains("KeyError: 'sku'"), "exception.stacktrace is the traceback: {trace}");
    let ledger = entries.iter().find(|e| e.source == "billing").unwrap();
    assert_eq!(ledger.metadata["trace_id"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(ledger.timestamp_ms, 1_764_410_400_000);
    stop(service);
}

/// The entries stored, once there are `n` of them (or after 10 s).
async fn stored(database: &str, n: usize) -> Vec<faultline_store::EntryRow> {
    let store = faultline_store::open(database).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let page =
            store.search(&faultline_store::SearchQuery { limit: 50, ..Default::default() }).await.unwrap();
        if page.entries.len() >= n || tokio::time::Instant::now() > deadline {
            return page.entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn sources_and_messages(entries: &[faultline_store::EntryRow]) -> Vec<(&str, &str)> {
    let mut seen: Vec<(&str, &str)> =
        entries.iter().map(|e| (e.source.as_str(), e.message.as_str())).collect();
    seen.sort();
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn opentelemetry_logs_over_http() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        otlp_logs(work.path(), &database).await;
    }
}

/// The SDK's gRPC exporter (gzip), on the port that serves HTTP; then gRPC's own client for what
/// the exporter does not show: the status of a wrong token, of a request with nothing readable,
/// of one over quota with the `RetryInfo` it carries, and a partial success (deflated); then the
/// exporter again, over quota, waiting as the server said before it sends again.
const GRPC: &str = r#"
import sys, re, logging, grpc
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor, BatchLogRecordProcessor
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.grpc.exporter import Compression
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
url, token = sys.argv[1], sys.argv[2]
target = url.removeprefix("http://")
provider = LoggerProvider(resource=Resource.create({"service.name": "orders"}))
exporter = OTLPLogExporter(endpoint=url, insecure=True, compression=Compression.Gzip,
                           headers={"authorization": "Bearer " + token})
provider.add_log_record_processor(SimpleLogRecordProcessor(exporter))
log = logging.getLogger("orders.pay")
log.propagate = False
log.addHandler(LoggingHandler(logger_provider=provider))
log.setLevel(logging.INFO)
try:
    1 / 0
except ZeroDivisionError:
    log.exception("payment split failed for order 12")
log.error("fraud check timed out after 3000 ms")
log.info("order viewed")
provider.shutdown()

def request(*records):
    return logs_service_pb2.ExportLogsServiceRequest(resource_logs=[logs_pb2.ResourceLogs(
        resource=resource_pb2.Resource(attributes=[common_pb2.KeyValue(
            key="service.name", value=common_pb2.AnyValue(string_value="ledger"))]),
        scope_logs=[logs_pb2.ScopeLogs(log_records=list(records))])])
good = logs_pb2.LogRecord(severity_number=17, body=common_pb2.AnyValue(string_value="ledger 4 is closed"))
empty = logs_pb2.LogRecord(severity_number=17)
stub = logs_service_pb2_grpc.LogsServiceStub(grpc.insecure_channel(target))
def call(req, secret, compression=grpc.Compression.NoCompression):
    try:
        answer = stub.Export(req, metadata=[("authorization", "Bearer " + secret)], timeout=10,
                             compression=compression)
        return "OK rejected=%d %s" % (answer.partial_success.rejected_log_records,
                                     answer.partial_success.error_message)
    except grpc.RpcError as e:
        said = "%s %s" % (e.code().name, e.details())
        trailers = dict(e.trailing_metadata() or ())
        if "google.rpc.retryinfo-bin" in trailers:
            info = error_details_pb2.RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"])
            said += " | retryinfo %ds" % info.retry_delay.seconds
        if "grpc-status-details-bin" in trailers:
            for detail in status_pb2.Status.FromString(trailers["grpc-status-details-bin"]).details:
                info = error_details_pb2.RetryInfo()
                if detail.Unpack(info):
                    said += " | details %ds" % info.retry_delay.seconds
        return said
print("sdk sent")
print("wrong token:", call(request(good), "not-the-token"))
print("nothing readable:", call(request(empty), token))
print("partial:", call(request(good, empty), token, grpc.Compression.Deflate))
# 4 of the 20 a minute taken: 18 more fit the burst but not what is left of it.
print("over quota:", call(request(*[good] * 18), token))
# The exporter sends 19 records in one request: over what is left (with 3 s a record to refill,
# the wait stays over 2 s unless this script took 7 s to get here), it is told when to try again.
waits = []
class Waits(logging.Handler):
    def emit(self, record):
        waits.extend(re.findall(r"retrying in ([0-9.]+)s", record.getMessage()))
logging.getLogger("opentelemetry.exporter.otlp.proto.grpc.exporter").addHandler(Waits())
billing = LoggerProvider(resource=Resource.create({"service.name": "billing"}))
exporter = OTLPLogExporter(endpoint=url, insecure=True, timeout=30,
                           headers={"authorization": "Bearer " + token})
billing.add_log_record_processor(BatchLogRecordProcessor(exporter, schedule_delay_millis=60000))
invoices = logging.getLogger("billing")
invoices.propagate = False
invoices.addHandler(LoggingHandler(logger_provider=billing))
for i in range(19):
    invoices.error("invoice %d could not be sent", i)
billing.force_flush()
billing.shutdown()
print("exporter waited:", " ".join(waits))
"#;

async fn otlp_grpc(dir: &std::path::Path, database: &str) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let config = dir.join("faultline.toml");
    let text = base_config(dir, database)
        .replace("[server]\n", "[server]\ningest_quota_per_minute = 20\nmetrics_public = true\n");
    std::fs::write(&config, text).unwrap();
    let service = start_with(dir, &config, &[]);
    let said = python(GRPC, &[&service.url, TOKEN]);
    let line = |label: &str| {
        said.lines().find_map(|l| l.strip_prefix(label)).unwrap_or_else(|| panic!("{label} in {said}")).trim()
    };
    assert_eq!(line("sdk"), "sent");
    assert!(line("wrong token:").starts_with("UNAUTHENTICATED invalid token"), "{said}");
    assert!(line("nothing readable:").starts_with("INVALID_ARGUMENT no log record could be read"), "{said}");
    assert!(line("nothing readable:").contains("neither a body nor an exception"), "{said}");
    assert!(line("partial:").starts_with("OK rejected=1 record 1:"), "{said}");
    let over = line("over quota:");
    assert!(over.starts_with("RESOURCE_EXHAUSTED ingest quota"), "{said}");
    // The delay the message gives, in both places exporters read it.
    let secs = over.split("retry after ").nth(1).and_then(|r| r.split(' ').next()).unwrap();
    assert!(over.ends_with(&format!("| retryinfo {secs}s | details {secs}s")), "{said}");
    // The exporter's own back-off starts at 0.8–1.2 s with jitter: it waited the server's whole
    // seconds instead, once, and its retry was taken.
    let waited: Vec<&str> = line("exporter waited:").split_whitespace().collect();
    assert_eq!(waited.len(), 1, "{said}");
    let waited: f64 = waited[0].parse().unwrap();
    assert!(waited >= 2.0 && waited.fract() == 0.0, "{said}");
    // The two unreadable records (the refused request's and the partial one's) counted as OTLP's.
    let metrics = reqwest::get(format!("{}/metrics", service.url)).await.unwrap().text().await.unwrap();
    assert!(
        metrics.lines().any(|l| l == r#"faultline_events_rejected_total{protocol="otlp"} 2"#),
        "{metrics}"
    );

    let entries = stored(database, 22).await;
    let (invoices, entries): (Vec<_>, Vec<_>) = entries.into_iter().partition(|e| e.source == "billing");
    assert_eq!(invoices.len(), 19, "every record of the retried export stored once");
    assert_eq!(
        sources_and_messages(&entries),
        [
            ("ledger", "ledger 4 is closed"),
            ("orders", "fraud check timed out after 3000 ms"),
            ("orders", "payment split failed for order 12"),
        ],
        "the INFO record is below the minimum level; only the partial request's good record stored"
    );
    let split = entries.iter().find(|e| e.message.starts_with("payment split")).unwrap();
    let trace = split.traceback.as_deref().unwrap_or("");
    assert!(trace.contains("ZeroDivisionError"), "exception.stacktrace is the traceback: {trace}");
    stop(service);
}

#[tokio::test(flavor = "multi_thread")]
async fn opentelemetry_logs_over_grpc() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        otlp_grpc(work.path(), &database).await;
    }
}
