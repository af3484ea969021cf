//! A real Sentry SDK (Python's `sentry-sdk`) pointed at `faultline serve` with a DSN: its
//! exceptions and messages are stored, grouped and searchable like every error; and what
//! `/metrics` then says, read by Prometheus' own Python parser.

use std::time::Duration;

use crate::databases;
use crate::serve::{TOKEN, base_config, python, start_with, stop};

const SDK: &str = r#"
import sys, sentry_sdk
sentry_sdk.init(dsn=sys.argv[1], release="shop@1.4.2", environment="production",
                default_integrations=False, server_name="web-1")
sentry_sdk.set_tag("region", "eu")
def checkout(cart):
    return cart["total"] / cart["items"]
try:
    checkout({"total": 10, "items": 0})
except ZeroDivisionError:
    sentry_sdk.capture_exception()
with sentry_sdk.new_scope() as scope:
    scope.fingerprint = ["payment-timeouts"]
    sentry_sdk.capture_message("payment provider timed out after 30s", level="error")
    sentry_sdk.capture_message("payment provider timed out after 45s", level="error")
sentry_sdk.capture_message("cache warmed", level="info")
sentry_sdk.flush(10)
print("sent")
"#;

/// Reads `/metrics` with `prometheus_client`'s parser (it refuses what Prometheus would) and
/// prints the samples as JSON: name → [[labels, value]…].
const METRICS: &str = r#"
import sys, json, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1]).read().decode()
out = {}
for family in text_string_to_metric_families(text):
    for s in family.samples:
        out.setdefault(s.name, []).append([s.labels, s.value])
print(json.dumps(out))
"#;

async fn sentry_sdk_events(dir: &std::path::Path, database: &str) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let config = dir.join("faultline.toml");
    let text = base_config(dir, database).replace("[server]\n", "[server]\nmetrics_public = true\n");
    std::fs::write(&config, text).unwrap();
    let service = start_with(dir, &config, &[]);
    let host = service.url.trim_start_matches("http://");
    let dsn = format!("http://{TOKEN}@{host}/42");
    assert_eq!(python(SDK, &[&dsn]).trim(), "sent");
    let store = faultline_store::open(database).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let entries = loop {
        let q = faultline_store::SearchQuery { limit: 50, ..Default::default() };
        let page = store.search(&q).await.unwrap();
        if page.entries.len() >= 3 || tokio::time::Instant::now() > deadline {
            break page.entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let mut messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "ZeroDivisionError: division by zero",
            "payment provider timed out after 30s",
            "payment provider timed out after 45s"
        ],
        "the info message is below the minimum level"
    );
    let crash = entries.iter().find(|e| e.message.starts_with("ZeroDivisionError")).unwrap();
    assert_eq!(crash.source, "sentry:42");
    let trace = crash.traceback.as_deref().unwrap_or("");
    assert!(
        trace.contains(", in checkout\n") && trace.ends_with("ZeroDivisionError: division by zero\n"),
        "{trace}"
    );
    let meta = &crash.metadata;
    assert_eq!(
        (meta["release"].as_str(), meta["environment"].as_str()),
        (Some("shop@1.4.2"), Some("production"))
    );
    assert_eq!(meta["tags"]["region"], "eu");
    // The custom fingerprint groups both timeouts in one pattern of the client tier.
    let patterns = store.top_patterns(10, None).await.unwrap();
    let timeouts: Vec<_> = patterns.iter().filter(|p| p.normalized_message.contains("timed out")).collect();
    assert_eq!(timeouts.len(), 1, "{patterns:?}");
    assert_eq!(timeouts[0].occurrence_count, 2);

    let metrics: serde_json::Value =
        serde_json::from_str(python(METRICS, &[&format!("{}/metrics", service.url)]).trim()).expect("parsed");
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        metrics[name]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| labels.iter().all(|(k, v)| s[0][*k] == *v))
            .map(|s| s[1].as_f64().unwrap())
            .sum()
    };
    assert_eq!(value("faultline_events_stored_total", &[("source", "http")]), 3.0, "{metrics}");
    assert_eq!(value("faultline_events_below_level_total", &[("source", "http")]), 1.0);
    assert_eq!(value("faultline_patterns_new_total", &[]), 2.0);
    assert_eq!(value("faultline_patterns", &[]), 2.0, "read from the store at the scrape");
    assert_eq!(value("faultline_outbox_pending", &[]), 0.0, "no notifier configured");
    assert!(value("faultline_database_size_bytes", &[]) > 10_000.0, "{metrics}");
    let envelopes = [("route", "/api/{project}/envelope/"), ("status", "200")];
    assert_eq!(value("faultline_http_requests_total", &envelopes), 4.0, "one envelope per event");
    assert!(
        value("faultline_http_request_duration_seconds_count", &[("route", "/api/{project}/envelope/")])
            >= 4.0
    );
    stop(service);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sentry_sdk_needs_only_a_dsn() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        sentry_sdk_events(work.path(), &database).await;
    }
}

/// Three messages, each flushed before the next: the second is over the quota, and the SDK,
/// told so by `X-Sentry-Rate-Limits`, does not send the third at all. The first carries what
/// the configured scrub rules filter (an IBAN, an IP address).
const RATE_LIMITED: &str = r#"
import sys, sentry_sdk
sentry_sdk.init(dsn=sys.argv[1], default_integrations=False, send_client_reports=False)
for text in ["first: refund to iban=DE89370400440532013000 from 203.0.113.9 failed",
             "second: over the quota", "third: held back by the SDK"]:
    sentry_sdk.capture_message(text, level="error")
    sentry_sdk.flush(10)
print("sent")
"#;

#[tokio::test(flavor = "multi_thread")]
async fn an_sdk_over_quota_is_told_to_wait_and_waits_and_projects_have_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let database = dir.join("faultline.db").display().to_string();
    let config = dir.join("faultline.toml");
    let text = base_config(dir, &database)
        .replace("[server]\n", "[server]\nmetrics_public = true\ningest_quota_per_minute = 1\n")
        + "\n[sentry.projects]\n\"7\" = \"checkout\"\n[scrub]\nkeys = [\"iban\"]\nip_addresses = true\n";
    std::fs::write(&config, text).unwrap();
    let service = start_with(dir, &config, &[]);
    let host = service.url.trim_start_matches("http://");
    assert_eq!(python(RATE_LIMITED, &[&format!("http://{TOKEN}@{host}/7")]).trim(), "sent");

    // What the server saw: one envelope stored, one refused, and no third request.
    let metrics: serde_json::Value =
        serde_json::from_str(python(METRICS, &[&format!("{}/metrics", service.url)]).trim()).expect("parsed");
    let requests = |status: &str| -> f64 {
        metrics["faultline_http_requests_total"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|s| s[0]["route"] == "/api/{project}/envelope/" && s[0]["status"] == status)
            .map(|s| s[1].as_f64().unwrap())
            .sum()
    };
    assert_eq!((requests("200"), requests("429")), (1.0, 1.0), "{metrics}");
    let store = faultline_store::open(&database).await.unwrap();
    let page = store.search(&faultline_store::SearchQuery { limit: 10, ..Default::default() }).await.unwrap();
    let stored: Vec<(&str, &str)> =
        page.entries.iter().map(|e| (e.message.as_str(), e.source.as_str())).collect();
    assert_eq!(
        stored,
        [("first: refund to iban=[Filtered] from [Filtered] failed", "checkout")],
        "the project's configured name is the source; the configured scrub rules applied"
    );

    // The answer itself, as Relay gives it.
    let envelope = "{}\n{\"type\":\"event\"}\n{\"message\":\"fourth\",\"level\":\"error\"}\n";
    let response = reqwest::Client::new()
        .post(format!("{}/api/7/envelope/?sentry_key={TOKEN}", service.url))
        .body(envelope)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    let header =
        |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let retry_after: u64 = header("retry-after").parse().expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert_eq!(
        header("x-sentry-rate-limits"),
        format!("{retry_after}:error;default;security:key:ingest_quota")
    );
    stop(service);
}

/// `@sentry/node` (installed by `npm ci --prefix crates/faultline/tests/node`): an exception
/// and a message with a custom fingerprint, sent with a DSN.
const NODE_SDK: &str = r#"
const Sentry = require("@sentry/node");
Sentry.init({ dsn: process.argv[2], release: "web@2.0.0", environment: "staging", defaultIntegrations: false });
function pay(order) { return order.card.number; }
try { pay({}); } catch (e) { Sentry.captureException(e); }
Sentry.withScope((scope) => {
  scope.setFingerprint(["queue-lag"]);
  Sentry.captureMessage("queue orders is 5000 items behind", "error");
});
Sentry.flush(10000).then((ok) => console.log(ok ? "sent" : "not flushed"));
"#;

#[tokio::test(flavor = "multi_thread")]
async fn the_javascript_sdk_needs_only_a_dsn_too() {
    let modules = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node_modules");
    assert!(
        modules.join("@sentry/node").exists(),
        "run `npm ci --prefix crates/faultline/tests/node` first (.ci/run does)"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let database = dir.join("faultline.db").display().to_string();
    let config = dir.join("faultline.toml");
    // The JavaScript SDK reads a DSN's key as letters, digits and underscores only.
    let token = "jsingest0123456789abcdef";
    let text = base_config(dir, &database).replace(
        "[files]",
        "[[server.tokens]]\nname = \"js\"\nenv = \"TEST_JS_TOKEN\"\nscopes = [\"ingest\"]\n\n[files]",
    );
    std::fs::write(&config, text).unwrap();
    let service = start_with(dir, &config, &[("TEST_JS_TOKEN", token)]);
    let host = service.url.trim_start_matches("http://");
    let script = dir.join("app.js");
    std::fs::write(&script, NODE_SDK).unwrap();
    let output = std::process::Command::new("node")
        .arg(&script)
        .arg(format!("http://{token}@{host}/9"))
        .env("NODE_PATH", &modules)
        .output()
        .expect("node runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        "sent",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    let store = faultline_store::open(&database).await.unwrap();
    let page = store.search(&faultline_store::SearchQuery { limit: 10, ..Default::default() }).await.unwrap();
    let mut messages: Vec<&str> = page.entries.iter().map(|e| e.message.as_str()).collect();
    messages.sort();
    assert_eq!(
        messages,
        [
            "TypeError: Cannot read properties of undefined (reading 'number')",
            "queue orders is 5000 items behind"
        ]
    );
    let crash = page.entries.iter().find(|e| e.message.starts_with("TypeError")).unwrap();
    assert!(crash.traceback.as_deref().unwrap_or("").contains(", in pay\n"), "{:?}", crash.traceback);
    assert_eq!(crash.metadata["release"], "web@2.0.0");
    // The SDK marks node's own frames as not the application's: the signature is the app's frames.
    let patterns = store.top_patterns(10, None).await.unwrap();
    let crash_pattern = patterns.iter().find(|p| p.normalized_message.starts_with("TypeError")).unwrap();
    assert_eq!(crash_pattern.tier, "stack");
    assert!(
        crash_pattern.frames.iter().all(|f| !f.contains("node:internal") && !f.contains("loader")),
        "{:?}",
        crash_pattern.frames
    );
    let lag = patterns.iter().find(|p| p.normalized_message.contains("items behind")).unwrap();
    assert_eq!(lag.tier, "client", "the custom fingerprint");
    stop(service);
}
