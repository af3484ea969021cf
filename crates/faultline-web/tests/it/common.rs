//! Helpers shared by the server's tests: seeded data (with a hostile payload), a server on
//! loopback, a JSON call, and `both!`, which runs a test body on SQLite and on PostgreSQL.

use std::sync::Arc;

use faultline_core::{Level, LogEvent, Origin};
use faultline_store::{IngestBatch, Pipeline, PipelineSettings, Store};
use faultline_web::{AppState, Auth, Settings};
use serde_json::{Value, json};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// An error-rate alert recorded `now_ms`; its notification is held past `per_hour` alerts an
/// hour. The hostile text shows that alerts are escaped where they are listed.
pub fn error_rate_alert(health: &str, per_hour: u32, now_ms: i64) -> faultline_store::AlertDraft {
    faultline_store::AlertDraft {
        rule_id: None,
        rule_ids: Vec::new(),
        rule_type: "error_rate".into(),
        subject: format!("error_rate:{health}"),
        pattern_id: None,
        priority: faultline_core::alert::Priority::High,
        reason: format!("the error rate is {health} <b>now</b>"),
        cooldown_ms: 0,
        escalation: false,
        state_change: false,
        flood: Some(faultline_core::alert::FloodLimits { per_pattern_per_hour: 6, per_hour }),
        task: false,
        task_subject: None,
        close_task: false,
        reopen: false,
        task_draft: None,
        notifiers: vec!["webhook".into()],
        extra: Value::Null,
        public_url: None,
        now_ms,
    }
}

pub fn event(
    id: &str,
    ago_ms: i64,
    level: Level,
    source: &str,
    message: &str,
    traceback: Option<&str>,
) -> LogEvent {
    LogEvent {
        timestamp_ms: now_ms() - ago_ms,
        level,
        source: source.to_owned(),
        message: message.to_owned(),
        traceback: traceback.map(str::to_owned),
        request_path: Some("/api/orders".into()),
        request_method: Some("POST".into()),
        metadata: Default::default(),
        raw: message.to_owned(),
        origin: Origin { source_id: "test".into(), external_id: Some(id.to_owned()) },
    }
}

pub const HOSTILE: &str = "<script>alert(1)</script><img src=x onerror=alert(2)> '; DROP TABLE entries; --";

pub async fn seed(store: &Arc<dyn Store>) {
    let mut events = Vec::new();
    for i in 0..30 {
        events.push(event(
            &format!("refused-{i}"),
            i * 60_000,
            Level::Error,
            "api",
            &format!("connection refused to 10.0.0.{i}:5432"),
            None,
        ));
    }
    events.push(event("card", 2 * 3_600_000, Level::Critical, "worker.billing", "card 4242 declined", None));
    events.push(event(
        "hostile",
        5 * 60_000,
        Level::Error,
        "web<b>",
        HOSTILE,
        Some("Traceback (most recent call last):\n  File \"app.py\", line 3, in handler\nValueError: <b>bad</b>"),
    ));
    events.push(event(
        "old",
        3 * 86_400_000,
        Level::Error,
        "cron",
        "nightly export failed after 3 tries",
        None,
    ));
    let batch =
        IngestBatch::from_events("test", Some("cursor-1".into()), events, Level::Error, 1000, now_ms());
    store.ingest(batch).await.expect("seed");
}

pub struct Server {
    pub url: String,
    _dir: Option<tempfile::TempDir>,
}

pub async fn start(store: Arc<dyn Store>, auth: Auth, dir: Option<tempfile::TempDir>) -> Server {
    start_with(store, auth, Settings::default(), dir).await
}

pub async fn start_with(
    store: Arc<dyn Store>,
    auth: Auth,
    settings: Settings,
    dir: Option<tempfile::TempDir>,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let crawls = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let state = AppState::new(Arc::new(Pipeline::new(store, PipelineSettings::default())), auth, settings)
        .with_crawler(Arc::new(move || {
            let n = crawls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            Box::pin(async move { json!([{"target": "railway:env-1", "outcome": "ok", "run": n}]) })
        }));
    let app = faultline_web::router(state);
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    Server { url, _dir: dir }
}

pub async fn call(method: &str, url: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.to_uppercase().parse().unwrap(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}")))
}

#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test]
            async fn sqlite() {
                let dir = tempfile::tempdir().unwrap();
                let store =
                    faultline_store::open(dir.path().join("faultline.db").to_str().unwrap()).await.unwrap();
                super::$name(store, Some(dir)).await;
            }

            #[tokio::test]
            async fn postgres() {
                let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
                let store = faultline_store::open(&url).await.unwrap();
                super::$name(store, None).await;
            }
        }
    };
}
