//! The ingest endpoints over real HTTP on loopback, storing into a real database.

use std::io::Write;
use std::sync::Arc;

use faultline_store::{Pipeline, PipelineSettings, SearchQuery, Store};
use faultline_web::{ApiToken, AppState, Auth, Scope, Settings};
use serde_json::{Value, json};

struct Server {
    url: String,
    store: Arc<dyn Store>,
    _dir: Option<tempfile::TempDir>,
}

async fn serve_with(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
    auth: Auth,
    settings: Settings,
) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let app = faultline_web::router(AppState::new(
        Arc::new(Pipeline::new(store.clone(), PipelineSettings::default())),
        auth,
        settings,
    ));
    tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
    Server { url, store, _dir: dir }
}

async fn sqlite_server(auth: Auth, settings: Settings) -> Server {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().expect("utf-8")).await.expect("open");
    serve_with(store, Some(dir), auth, settings).await
}

fn tokens() -> Auth {
    Auth::new(vec![
        ApiToken::new("ci", "s3cret-ingest", vec![Scope::Ingest]),
        ApiToken::new("viewer", "s3cret-read", vec![Scope::Read]),
    ])
}

async fn post(
    url: &str,
    token: Option<&str>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(url).header("content-type", content_type).body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
    let mut body: Value = response.json().await.expect("JSON body");
    if let Some(r) = retry_after {
        body["retry_after_header"] = json!(r);
    }
    (status, body)
}

async fn stored(store: &Arc<dyn Store>, text: &str) -> Vec<faultline_store::EntryRow> {
    let q = SearchQuery { text: Some(text.to_owned()), limit: 100, ..Default::default() };
    store.search(&q).await.expect("search").entries
}

async fn partial_success_body(server: &Server) {
    let ndjson = [
        r#"{"level":"error","message":"db timeout on orders","logger":"api","ts":"2024-01-02T03:04:05Z","id":"a1"}"#,
        r#"{"level":"error","message": broken json"#,
        r#"{"severity":"CRITICAL","msg":"disk full on orders-db","service":"db"}"#,
        r#"{"level":"error"}"#,
        r#"{"level":"warning","message":"slow query on orders"}"#,
        r#"{"level":"WARNN","message":"typo level on orders"}"#,
    ]
    .join("\n");
    let (status, body) =
        post(&format!("{}/api/ingest", server.url), Some("s3cret-ingest"), "application/x-ndjson", ndjson)
            .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["accepted"].as_u64(), body["stored"].as_u64(), body["below_level"].as_u64()),
        (Some(3), Some(2), Some(1))
    );
    let rejected: Vec<(u64, &str)> = body["rejected"]
        .as_array()
        .expect("rejected")
        .iter()
        .map(|r| (r["index"].as_u64().expect("index"), r["error"].as_str().expect("error")))
        .collect();
    assert_eq!(rejected.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 3, 5]);
    assert!(rejected[0].1.starts_with("invalid JSON: "), "{rejected:?}");
    assert_eq!(rejected[1].1, "missing message: send \"message\" (or \"msg\")");
    assert_eq!(rejected[2].1, "unknown level \"WARNN\" in field \"level\"");
    let found = stored(&server.store, "orders").await;
    let mut messages: Vec<&str> = found.iter().map(|e| e.message.as_str()).collect();
    messages.sort();
    assert_eq!(messages, ["db timeout on orders", "disk full on orders-db"]);
    assert!(found.iter().all(|e| e.source_id == "http:ci"));

    // The same request again: the record with an id is a duplicate; the other has no id and
    // is the same error within one second only if resent at once, which it is.
    let again = r#"{"level":"error","message":"db timeout on orders","logger":"api","ts":"2024-01-02T03:04:05Z","id":"a1"}"#;
    let (status, body) =
        post(&format!("{}/api/ingest", server.url), Some("s3cret-ingest"), "application/json", again).await;
    assert_eq!((status, body["duplicates"].as_u64()), (200, Some(1)));
}

#[tokio::test]
async fn partial_success_reports_bad_records_by_index_and_stores_the_rest() {
    let server = sqlite_server(tokens(), Settings::default()).await;
    partial_success_body(&server).await;
}

#[tokio::test]
async fn partial_success_on_postgres() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.expect("open postgres");
    let server = serve_with(store, None, tokens(), Settings::default()).await;
    partial_success_body(&server).await;
}

#[tokio::test]
async fn arrays_single_objects_and_gzip() {
    let server = sqlite_server(Auth::default(), Settings::default()).await;
    let url = format!("{}/api/ingest", server.url);
    let array = json!([{"message": "array one"}, {"message": "array two"}, 7]);
    let (status, body) = post(&url, None, "application/json", array.to_string()).await;
    assert_eq!((status, body["accepted"].as_u64()), (200, Some(2)));
    assert_eq!(body["rejected"][0]["error"], "expected a JSON object, found a number");

    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    for i in 0..500 {
        writeln!(gz, r#"{{"message":"gzipped error {i}","level":"error"}}"#).expect("gzip");
    }
    let response = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/x-ndjson")
        .header("content-encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["stored"], 500);
    assert_eq!(stored(&server.store, "gzipped error 499").await.len(), 1);
    assert!(stored(&server.store, "array two").await[0].source_id == "http");
}

#[tokio::test]
async fn tokens_are_checked_and_never_echoed() {
    let server = sqlite_server(tokens(), Settings::default()).await;
    let url = format!("{}/api/ingest", server.url);
    let record = r#"{"message":"x"}"#;
    let (status, body) = post(&url, None, "application/json", record).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("missing token: send \"Authorization: Bearer <token>\""))
    );
    let (status, body) = post(&url, Some("wrong-secret"), "application/json", record).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid token")));
    assert!(!body.to_string().contains("wrong-secret"));
    let (status, body) = post(&url, Some("s3cret-read"), "application/json", record).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("token \"viewer\" lacks the ingest scope")));
    // HTTP Basic auth with the token as password (Python's HTTPHandler credentials).
    let response = reqwest::Client::new()
        .post(format!("{}/api/ingest/python", server.url))
        .basic_auth("app", Some("s3cret-ingest"))
        .form(&[("msg", "from basic auth"), ("levelname", "ERROR"), ("name", "app")])
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), 200);
    assert_eq!(stored(&server.store, "from basic auth").await[0].source_id, "http:ci:python");
    assert_eq!(stored(&server.store, "s3cret").await.len(), 0);
}

#[tokio::test]
async fn size_limit_quota_and_content_type() {
    let settings = Settings { max_body_bytes: 10_000, quota_per_minute: Some(5), ..Settings::default() };
    let server = sqlite_server(Auth::default(), settings).await;
    let url = format!("{}/api/ingest", server.url);
    let big = format!(r#"{{"message":"{}"}}"#, "x".repeat(20_000));
    let (status, body) = post(&url, None, "application/json", big).await;
    assert_eq!(status, 413);
    assert!(
        body["error"].as_str().is_some_and(|e| e.starts_with("request body larger than 10000 bytes")),
        "{body}"
    );

    let (status, _) =
        post(&url, None, "application/json", r#"[{"message":"a"},{"message":"b"},{"message":"c"}]"#).await;
    assert_eq!(status, 200);
    let (status, body) =
        post(&url, None, "application/json", r#"[{"message":"d"},{"message":"e"},{"message":"f"}]"#).await;
    assert_eq!(status, 429, "{body}");
    assert_eq!(body["error"], "ingest quota of 5 records per minute exceeded");
    let retry: u64 = body["retry_after_header"].as_str().expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "{retry}");
    assert_eq!(stored(&server.store, "e").await.len(), 0, "nothing of a refused request is stored");

    let (status, body) = post(&url, None, "application/x-www-form-urlencoded", "message=x").await;
    assert_eq!(status, 415);
    assert!(body["error"].as_str().is_some_and(|e| e.contains("application/x-ndjson")));
    let (status, body) = post(&url, None, "application/json", "  \n").await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("empty body: send a JSON object, a JSON array or NDJSON"))
    );
    let (status, body) = post(&url, None, "application/json", r#"{"level":"error"}"#).await;
    assert_eq!((status, body["accepted"].as_u64()), (400, Some(0)));
}

#[tokio::test]
async fn hostile_content_is_stored_exactly_and_harms_nothing() {
    let server = sqlite_server(Auth::default(), Settings::default()).await;
    let url = format!("{}/api/ingest", server.url);
    let hostile = [
        "<script>alert(1)</script> in checkout",
        "'; DROP TABLE entries; -- in checkout",
        "bell \u{7} escape \u{1b}[31m red in checkout",
        "nul \u{0} byte in checkout",
    ];
    let body = hostile.iter().map(|m| json!({"message": m}).to_string()).collect::<Vec<_>>().join("\n");
    let (status, response) = post(&url, None, "application/x-ndjson", body).await;
    assert_eq!((status, response["stored"].as_u64()), (200, Some(4)), "{response}");
    // Invalid UTF-8 is kept lossily, not refused; a huge line is fine within the body limit.
    let mut bytes = br#"{"message":"bad utf8 "#.to_vec();
    bytes.extend_from_slice(b"\xff\xfe in checkout\"}\n");
    bytes
        .extend_from_slice(format!(r#"{{"message":"huge {} in checkout"}}"#, "y".repeat(500_000)).as_bytes());
    let (status, response) = post(&url, None, "application/x-ndjson", bytes).await;
    assert_eq!(
        (status, response["stored"].as_u64(), response["cut"].as_u64()),
        (200, Some(2), Some(1)),
        "{response}"
    );
    // The huge one is cut at the line limit, as a file line would be.
    let huge = stored(&server.store, "huge yyy").await;
    assert_eq!(
        huge.iter().map(|e| e.message.len()).collect::<Vec<_>>(),
        [Settings::default().max_line_bytes]
    );
    let found = stored(&server.store, "in checkout").await;
    let shown: Vec<String> = found.iter().map(|e| e.message.chars().take(30).collect()).collect();
    assert_eq!(found.len(), 5, "{shown:?}");
    for m in &hostile[..3] {
        assert!(found.iter().any(|e| e.message == *m), "{m:?} stored exactly");
    }
    assert!(found.iter().any(|e| e.message == "bad utf8 \u{FFFD}\u{FFFD} in checkout"));
    assert!(found.iter().any(|e| e.message == "nul \u{FFFD} byte in checkout"), "NUL is kept as U+FFFD");
    assert!(stored(&server.store, "DROP TABLE").await.len() == 1, "the entries table is still there");
}

#[tokio::test]
async fn healthz_says_ok() {
    let server = sqlite_server(tokens(), Settings::default()).await;
    let response = reqwest::get(format!("{}/healthz", server.url)).await.expect("get");
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.expect("json"), json!({"status": "ok"}));
}

#[tokio::test]
async fn regression_16_identical_records_are_all_counted_and_a_retry_is_not() {
    let server = sqlite_server(Auth::default(), Settings::default()).await;
    let url = format!("{}/api/ingest", server.url);
    let count = |store: Arc<dyn Store>, needle: &'static str| async move {
        let found = stored(&store, needle).await;
        let fingerprint = found.first().map(|e| e.fingerprint.clone()).expect("stored");
        store.pattern(&fingerprint).await.expect("pattern").expect("exists").occurrence_count
    };
    // Five identical records, no id, no time: five occurrences.
    let five = [r#"{"message":"cache miss storm on shard 3"}"#; 5].join("\n");
    let (status, answer) = post(&url, None, "application/x-ndjson", five).await;
    assert_eq!((status, answer["stored"].as_u64()), (200, Some(5)), "{answer}");
    assert_eq!(count(server.store.clone(), "cache miss storm").await, 5);
    // Identical records that carry their time: occurrences too, and the same request sent
    // again after a lost answer stores nothing twice.
    let timed =
        [r#"{"message":"quota exceeded for tenant 9","ts":"2026-11-29T10:00:00.123Z"}"#; 3].join("\n");
    let (_, first) = post(&url, None, "application/x-ndjson", timed.clone()).await;
    let (_, again) = post(&url, None, "application/x-ndjson", timed).await;
    assert_eq!((first["stored"].as_u64(), again["duplicates"].as_u64()), (Some(3), Some(3)), "{again}");
    assert_eq!(count(server.store.clone(), "quota exceeded").await, 3);
}

#[tokio::test]
async fn sentry_envelopes_need_an_ingest_key_store_events_once_and_count_the_rest() {
    let server = sqlite_server(tokens(), Settings::default()).await;
    let event = json!({"event_id": "9ec79c33ec9942ab8353589fcb2e04dc", "level": "error", "timestamp": 1764410400.5,
        "exception": {"values": [{"type": "RuntimeError", "value": "ledger <b>closed</b>"}]}});
    let envelope = |dsn_key: &str| {
        format!(
            "{{\"event_id\":\"9ec79c33ec9942ab8353589fcb2e04dc\",\"dsn\":\"http://{dsn_key}@x/42\"}}\n{{\"type\":\"event\"}}\n{event}\n\
             {{\"type\":\"session\"}}\n{{\"sid\":\"a\"}}\n{{\"type\":\"event\"}}\n{{\"no\":\"event\"}}\n"
        )
    };
    let url = format!("{}/api/42/envelope/", server.url);
    let (status, body) = post(&url, None, "application/x-sentry-envelope", envelope("wrong")).await;
    assert_eq!((status, body["error"].as_str()), (401, Some("invalid token")));
    let (status, body) = post(&url, None, "application/x-sentry-envelope", envelope("s3cret-read")).await;
    assert_eq!(status, 403, "a read token is not an ingest key: {body}");
    let (status, body) = post(&url, None, "application/x-sentry-envelope", envelope("s3cret-ingest")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["id"].as_str(), body["stored"].as_u64()),
        (Some("9ec79c33ec9942ab8353589fcb2e04dc"), Some(1))
    );
    assert_eq!(body["not_stored"], json!({"session": 1}));
    assert_eq!(body["rejected"][0]["index"], 2, "the bad item, by index; the others kept");
    // The SDK sends again (a lost answer): stored once.
    let (_, again) = post(&url, None, "application/x-sentry-envelope", envelope("s3cret-ingest")).await;
    assert_eq!((again["stored"].as_u64(), again["duplicates"].as_u64()), (Some(0), Some(1)));
    let entries = stored(&server.store, "ledger").await;
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].source.as_str(), entries[0].message.as_str()),
        ("sentry:42", "RuntimeError: ledger <b>closed</b>")
    );
    // The older store endpoint, with the key in X-Sentry-Auth; a garbled envelope is a 400.
    let other = json!({"event_id": "1ec79c33ec9942ab8353589fcb2e04dc", "message": "ledger reopened late", "timestamp": 1764410401});
    let response = reqwest::Client::new()
        .post(format!("{}/api/42/store/", server.url))
        .header("x-sentry-auth", "Sentry sentry_version=7, sentry_key=s3cret-ingest")
        .body(other.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, body) =
        post(&url, Some("s3cret-ingest"), "application/x-sentry-envelope", "garbage\n").await;
    assert_eq!(status, 400);
    assert!(body["error"].as_str().unwrap().contains("malformed envelope"), "{body}");
}

#[tokio::test]
async fn metrics_need_a_read_token_when_tokens_are_configured() {
    let server = sqlite_server(tokens(), Settings::default()).await;
    let (status, _) = post(
        &format!("{}/api/ingest", server.url),
        Some("s3cret-ingest"),
        "application/json",
        r#"{"message":"boom"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let client = reqwest::Client::new();
    let url = format!("{}/metrics", server.url);
    assert_eq!(client.get(&url).send().await.unwrap().status(), 401);
    assert_eq!(client.get(&url).bearer_auth("s3cret-ingest").send().await.unwrap().status(), 403);
    let response = client.get(&url).bearer_auth("s3cret-read").send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/plain; version=0.0.4"));
    let text = response.text().await.unwrap();
    assert!(text.contains("faultline_http_requests_total{route=\"/api/ingest\""), "{text}");
    let open = sqlite_server(tokens(), Settings { metrics_public: true, ..Settings::default() }).await;
    assert_eq!(client.get(format!("{}/metrics", open.url)).send().await.unwrap().status(), 200);
}

#[tokio::test]
async fn secrets_planted_in_every_field_never_reach_the_database_file() {
    let server = sqlite_server(tokens(), Settings::default()).await;
    let secrets = [
        "hunter2-pw",
        "sk_live_51Hsecret",
        "eyJhbGciOi.JIUzI1NiJ9.sig",
        "4111 1111 1111 1111",
        "s3ss10n-c00kie",
    ];
    let record = json!({
        "level": "error",
        "message": "login failed: password=hunter2-pw for bob",
        "traceback": "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nValueError: api_key=sk_live_51Hsecret",
        "headers": {"Authorization": "Bearer eyJhbGciOi.JIUzI1NiJ9.sig", "Cookie": "sid=s3ss10n-c00kie"},
        "card": "paid with 4111 1111 1111 1111",
    });
    let (status, body) = post(
        &format!("{}/api/ingest", server.url),
        Some("s3cret-ingest"),
        "application/json",
        record.to_string(),
    )
    .await;
    assert_eq!((status, body["stored"].as_u64()), (200, Some(1)), "{body}");
    let event = json!({"event_id": "5ec79c33ec9942ab8353589fcb2e04dc", "level": "error", "timestamp": 1764410400,
        "message": "charge failed for card 4111 1111 1111 1111", "tags": {"session_token": "s3ss10n-c00kie"}});
    let envelope = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n");
    let url = format!("{}/api/9/envelope/?sentry_key=s3cret-ingest", server.url);
    let (status, body) = post(&url, None, "application/x-sentry-envelope", envelope).await;
    assert_eq!((status, body["stored"].as_u64()), (200, Some(1)), "{body}");
    // An event as an SDK sends an unhandled exception, large enough that SQLite keeps its raw
    // payload compressed, where a grep of the file would not see a secret: it is checked as
    // read back.
    let frames: Vec<_> = (0..60)
        .map(|i| {
            json!({"function": format!("handle_{i}"), "filename": "shop/orders.py", "lineno": 10 + i,
            "context_line": "    charge(order, card)",
            "vars": {"password": "hunter2-pw", "note": "Bearer eyJhbGciOi.JIUzI1NiJ9.sig", "i": i}})
        })
        .collect();
    let event = json!({"event_id": "6fc79c33ec9942ab8353589fcb2e04dd", "level": "error", "timestamp": 1764410401,
        "exception": {"values": [{"type": "ValueError", "value": "api_key=sk_live_51Hsecret rejected",
            "stacktrace": {"frames": frames}}]},
        "request": {"url": "https://shop.example.com/pay", "method": "POST",
            "headers": {"Cookie": "sid=s3ss10n-c00kie"}, "data": "card=4111 1111 1111 1111"}});
    let envelope = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n");
    assert!(envelope.len() > 4 * faultline_store::packed::PACK_FROM, "{} bytes", envelope.len());
    let (status, body) = post(&url, None, "application/x-sentry-envelope", envelope).await;
    assert_eq!((status, body["stored"].as_u64()), (200, Some(1)), "{body}");
    let entries = stored(&server.store, "Filtered").await;
    assert_eq!(entries.len(), 3, "all kept, with [Filtered] in place of the secrets");
    for entry in &entries {
        let read_back = format!("{entry:?}");
        for secret in secrets {
            assert!(!read_back.contains(secret), "{secret} stored in {read_back}");
        }
    }
    // What is on disk: the database and its write-ahead log, byte for byte.
    let dir = server._dir.as_ref().unwrap().path();
    let mut bytes = Vec::new();
    for file in std::fs::read_dir(dir).unwrap().flatten() {
        bytes.extend(std::fs::read(file.path()).unwrap_or_default());
    }
    let on_disk = String::from_utf8_lossy(&bytes);
    assert!(on_disk.contains("[Filtered]"));
    for secret in secrets {
        assert!(!on_disk.contains(secret), "{secret} reached the database file");
    }
}
