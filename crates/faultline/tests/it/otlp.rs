//! OpenTelemetry logs: the real OpenTelemetry Python SDK with its OTLP/HTTP (protobuf)
//! exporter, and a request in OTLP's JSON encoding, sent to `faultline serve`.

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

    let store = faultline_store::open(database).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let page =
            store.search(&faultline_store::SearchQuery { limit: 50, ..Default::default() }).await.unwrap();
        if page.entries.len() >= 3 || tokio::time::Instant::now() > deadline {
            break page.entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut seen: Vec<(&str, &str)> =
        entries.iter().map(|e| (e.source.as_str(), e.message.as_str())).collect();
    seen.sort();
    assert_eq!(
        seen,
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

#[tokio::test(flavor = "multi_thread")]
async fn opentelemetry_logs_over_http() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        otlp_logs(work.path(), &database).await;
    }
}
