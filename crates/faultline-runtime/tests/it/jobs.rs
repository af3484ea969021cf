//! The scheduled jobs of `faultline serve` as the application runs them: retention deletes the
//! entries older than `retention.days` and nothing newer, pattern detection counts the patterns
//! first seen within its interval, and each run's record says what it did.

use faultline_core::{DAY_MS, HOUR_MS, Level, LogEvent, Origin, SECOND_MS};
use faultline_store::{IngestBatch, SearchQuery};

use crate::test_app::{TestApp, eventually};

fn event(id: &str, timestamp_ms: i64, message: &str) -> LogEvent {
    LogEvent {
        timestamp_ms,
        level: Level::Error,
        source: "api".into(),
        message: message.into(),
        traceback: None,
        request_path: None,
        request_method: None,
        metadata: Default::default(),
        raw: message.into(),
        origin: Origin { source_id: "seed".into(), external_id: Some(id.into()) },
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread")]
async fn retention_and_pattern_detection_do_what_their_runs_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = now_ms();
    let mut events: Vec<LogEvent> = (0..3)
        .map(|i| event(&format!("old-{i}"), now - 10 * DAY_MS + i, &format!("old failure {i}")))
        .collect();
    events.push(event("kept-edge", now - 6 * DAY_MS, "disk full on /var"));
    events.push(event("kept-recent", now - HOUR_MS, "disk full on /var"));
    // First seen inside the detection job's first window (it runs 5 s after start).
    events.push(event("fresh", now + 2 * SECOND_MS, "license server unreachable"));
    {
        let store =
            faultline_store::open(dir.path().join("faultline.db").to_str().unwrap()).await.expect("open");
        let batch = IngestBatch::from_events("seed", None, events, Level::Error, 1000, now);
        assert_eq!(store.ingest(batch).await.expect("seed").stored, 6);
    }
    let config = "[retention]\ndays = 7\n[schedule]\nretention = \"1s\"\npattern_detection = \"5s\"\n";
    let app = TestApp::spawn(dir, config, &[]).await;

    let first_run = |job: &'static str| {
        let store = app.store.clone();
        async move {
            let runs = store.job_runs(Some(job), 100).await.ok()?;
            runs.last().map(|r| r.run.clone())
        }
    };
    let retention = eventually("a retention run", || first_run("retention")).await;
    assert_eq!(retention.outcome, "ok");
    assert_eq!(retention.detail["retention_days"], 7);
    assert_eq!(retention.detail["entries_deleted"], 3, "{}", retention.detail);
    let everything = SearchQuery { limit: 100, ..SearchQuery::default() };
    let left = app.store.search(&everything).await.expect("search");
    let mut ids: Vec<&str> = left.entries.iter().map(|e| e.external_id.as_str()).collect();
    ids.sort();
    assert_eq!(ids, ["fresh", "kept-edge", "kept-recent"], "older than 7 days gone, the rest kept");
    let every_pattern = faultline_store::PatternQuery { limit: 10, ..Default::default() };
    let patterns = app.store.list_patterns(&every_pattern).await.expect("patterns");
    assert_eq!(patterns.total, 3, "patterns and their counts outlive their entries");

    let detection = eventually("a pattern-detection run", || first_run("pattern_detection")).await;
    assert_eq!(detection.outcome, "ok");
    assert_eq!(
        detection.detail["new_patterns"], 1,
        "only the one first seen in its window: {}",
        detection.detail
    );
    app.stop().await;
}
