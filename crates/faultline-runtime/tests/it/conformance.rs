//! Every source through the same cases: files, HTTP, journald and the Railway crawl each get the
//! same errors (two of one pattern, one hostile), and a warning below the minimum level. Each
//! must store the same three entries in two patterns, count the warning without storing it,
//! report both in the `collect` job's counters for its kind, and give each new pattern its
//! investigation task: the one pipeline behind every source, checked from outside.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use faultline_connectors::railway::format_ns;
use faultline_store::{JobRunRow, SearchQuery};
use faultline_testkit::fake::FakeRailway;
use serde_json::json;

use crate::test_app::{TestApp, eventually};

/// (is an error, message) for the source named `name`.
fn cases(name: &str) -> Vec<(bool, String)> {
    vec![
        (true, format!("conformance {name}: payment failed for order 1234")),
        (false, format!("conformance {name}: retrying payment for order 1234")),
        (true, format!("conformance {name}: payment failed for order 98765")),
        (true, format!("conformance {name}: <script>alert(1)</script> '; DROP TABLE entries; --")),
    ]
}

fn now_ms() -> i64 {
    faultline_runtime::clock::now_ms()
}

fn file_lines(now: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(now).expect("time");
    cases("files")
        .into_iter()
        .map(|(error, message)| {
            let level = if error { "ERROR" } else { "WARNING" };
            format!("{} {level} app.pay: {message}\n", at.format("%Y-%m-%d %H:%M:%S,%3f"))
        })
        .collect()
}

fn journal_entries(now: i64) -> String {
    cases("journald")
        .into_iter()
        .enumerate()
        .map(|(i, (error, message))| {
            let entry = json!({
                "__CURSOR": format!("s=c0;i={i:x};b=1;m={i:x};t={i:x};x={i:x}"),
                "__REALTIME_TIMESTAMP": (now * 1000 + i as i64).to_string(),
                "PRIORITY": if error { "3" } else { "4" },
                "SYSLOG_IDENTIFIER": "pay",
                "_SYSTEMD_UNIT": "pay.service",
                "MESSAGE": message,
            });
            format!("{entry}\n")
        })
        .collect()
}

fn http_body(now: i64) -> String {
    let at = chrono::DateTime::from_timestamp_millis(now).expect("time").to_rfc3339();
    cases("http")
        .into_iter()
        .map(|(error, message)| {
            let level = if error { "error" } else { "warning" };
            format!("{}\n", json!({"timestamp": at, "level": level, "logger": "app.pay", "message": message}))
        })
        .collect()
}

/// The stand-in journalctl reading `journal`.
fn journalctl(dir: &Path, journal: &Path) -> std::path::PathBuf {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../faultline-connectors/tests/fixtures/journalctl");
    let script = dir.join("journalctl");
    std::fs::write(
        &script,
        format!("#!/bin/sh\nFAKE_JOURNAL='{}' exec '{}' \"$@\"\n", journal.display(), fixture.display()),
    )
    .expect("script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

/// The `collect` job's counters of one source kind, summed over its runs.
fn counted(runs: &[JobRunRow], kind: &str, field: &str) -> u64 {
    runs.iter().filter_map(|r| r.run.detail["sources"][kind][field].as_u64()).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_source_stores_counts_and_alerts_the_same_cases_alike() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms() - 5_000;
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs");
    std::fs::write(dir.path().join("logs/app.log"), file_lines(now)).expect("log file");
    let journal = dir.path().join("journal.json");
    std::fs::write(&journal, journal_entries(now)).expect("journal");
    let railway = FakeRailway::start("railway-token").await;
    for (i, (error, message)) in cases("railway").into_iter().enumerate() {
        let at = format_ns(now * 1_000_000 + i as i64);
        railway.add(&at, if error { "error" } else { "warning" }, "svc-pay", "i-1", &message);
    }
    let config = format!(
        r#"
[files]
paths = ["{logs}/*.log"]
start_at = "beginning"
poll_interval = "100ms"
multiline_wait = "200ms"

[journald]
enabled = true
command = "{journalctl}"
priority = "warning"
start_at = "beginning"

[railway]
api_url = "{railway}"
filter = ""
poll_interval = "1s"

[[railway.targets]]
project_id = "proj-1"
environment_id = "env-1"

[schedule]
collect = "200ms"

[alerts]
evaluate_interval = "1s"
"#,
        logs = dir.path().join("logs").display(),
        journalctl = journalctl(dir.path(), &journal).display(),
        railway = railway.url(),
    );
    let app = TestApp::spawn(dir, &config, &[("RAILWAY_API_TOKEN", "railway-token")]).await;

    let response = reqwest::Client::new()
        .post(format!("{}/api/ingest", app.url))
        .header("content-type", "application/x-ndjson")
        .body(http_body(now))
        .send()
        .await
        .expect("post");
    let answer: serde_json::Value = response.json().await.expect("json");
    assert_eq!((answer["stored"].as_u64(), answer["below_level"].as_u64()), (Some(3), Some(1)), "{answer}");

    for (name, kind) in
        [("files", "files"), ("http", "http"), ("journald", "journald"), ("railway", "railway")]
    {
        let marker = format!("conformance {name}:");
        let query = SearchQuery { text: Some(marker.clone()), limit: 100, ..SearchQuery::default() };
        let store = app.store.clone();
        let page = eventually(&format!("three entries from {name}"), || {
            let (store, query) = (store.clone(), query.clone());
            async move { store.search(&query).await.ok().filter(|p| p.total >= 3) }
        })
        .await;
        let mut stored: Vec<&str> = page.entries.iter().map(|e| e.message.as_str()).collect();
        stored.sort_unstable();
        let mut expected: Vec<String> = cases(name).into_iter().filter(|(e, _)| *e).map(|(_, m)| m).collect();
        expected.sort_unstable();
        assert_eq!(stored, expected, "{name}: the errors, each once, the warning not stored");
        let mut fingerprints: Vec<&str> = page.entries.iter().map(|e| e.fingerprint.as_str()).collect();
        fingerprints.sort_unstable();
        fingerprints.dedup();
        assert_eq!(fingerprints.len(), 2, "{name}: the two payment failures are one pattern");

        let runs = eventually(&format!("the collect job counting {kind}"), || {
            let store = store.clone();
            async move {
                let runs = store.job_runs(Some("collect"), 10_000).await.ok()?;
                (counted(&runs, kind, "stored") >= 3 && counted(&runs, kind, "below_level") >= 1)
                    .then_some(runs)
            }
        })
        .await;
        assert_eq!(
            (
                counted(&runs, kind, "stored"),
                counted(&runs, kind, "below_level"),
                counted(&runs, kind, "errors")
            ),
            (3, 1, 0),
            "{name}: the pipeline's counters for {kind}"
        );

        let tasks = eventually(&format!("a task for each new pattern of {name}"), || {
            let store = store.clone();
            let fingerprints: Vec<String> = fingerprints.iter().map(|f| (*f).to_owned()).collect();
            async move {
                let tasks = store.tasks(None, 1000).await.ok()?;
                let mine: Vec<_> = tasks
                    .into_iter()
                    .filter(|t| t.fingerprint.as_ref().is_some_and(|f| fingerprints.contains(f)))
                    .collect();
                (mine.len() >= 2).then_some(mine)
            }
        })
        .await;
        assert_eq!(tasks.len(), 2, "{name}: one task per new pattern, no duplicate");
    }
    app.stop().await;
}
