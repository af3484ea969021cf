//! Fresh databases for tests: a temp SQLite file, or a new PostgreSQL database per test
//! (see `faultline_testkit` for where PostgreSQL comes from).

use std::sync::Arc;

use faultline_core::{Level, LogEvent, Origin, fingerprint};
use faultline_store::{GroupedEvent, IngestBatch, Store};

pub struct TestStore {
    pub store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

pub async fn sqlite() -> TestStore {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().expect("utf-8 path")).await.expect("open sqlite");
    TestStore { store, _dir: Some(dir) }
}

pub async fn postgres() -> Option<TestStore> {
    let url = faultline_testkit::fresh_postgres_url().await?;
    let store = faultline_store::open(&url).await.expect("open postgres");
    Some(TestStore { store, _dir: None })
}

/// Runs one async test body against SQLite and PostgreSQL.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let t = $crate::harness::sqlite().await;
                super::$name(t.store.clone()).await;
            }
            #[tokio::test]
            async fn postgres() {
                let Some(t) = $crate::harness::postgres().await else { return };
                super::$name(t.store.clone()).await;
            }
        }
    };
}

pub const T0: i64 = 1_704_164_640_000; // 2024-01-02T03:04:00Z, a minute boundary

/// An ERROR event with an external id, grouped by the real fingerprinter.
pub fn event(external_id: &str, ts: i64, level: Level, source: &str, message: &str) -> GroupedEvent {
    let event = LogEvent {
        timestamp_ms: ts,
        level,
        source: source.to_owned(),
        message: message.to_owned(),
        traceback: None,
        request_path: None,
        request_method: None,
        metadata: Default::default(),
        raw: message.to_owned(),
        origin: Origin { source_id: "test".into(), external_id: Some(external_id.to_owned()) },
    };
    let grouping = fingerprint(&event);
    GroupedEvent { event, grouping }
}

pub fn batch(events: Vec<GroupedEvent>) -> IngestBatch {
    IngestBatch {
        source_id: "test".into(),
        cursor: None,
        events,
        skipped: Vec::new(),
        max_stored_per_pattern_minute: 10_000,
        now_ms: T0,
        mined: None,
    }
}
