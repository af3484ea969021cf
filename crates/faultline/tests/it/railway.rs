//! The Railway crawler from the outside: `faultline crawl --once`, `faultline railway check`
//! and `faultline serve` against a fake of Railway's API on loopback, on SQLite and PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use faultline_connectors::railway::format_ns;
use faultline_store::SearchQuery;
use faultline_testkit::fake::{FakeRailway, LiveOptions, Reply};

use crate::databases;
use crate::serve::{start_with, stop};

const TOKEN: &str = "railway-secret-token-123";

fn write_config(dir: &Path, database: &str, api_url: &str, poll: &str) -> PathBuf {
    let path = dir.join("faultline.toml");
    let text = format!(
        r#"
[database]
url = "{database}"

[server]
listen = "127.0.0.1:0"

[railway]
api_url = "{api_url}"
poll_interval = "{poll}"
page_size = 50
timeout = "2s"

[[railway.targets]]
project_id = "proj-1"
environment_id = "env-1"
"#
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn run(dir: &Path, config: &Path, token: &str, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FAULTLINE_") || key.starts_with("RAILWAY_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(dir).arg("--config").arg(config).args(args).env("RAILWAY_API_TOKEN", token);
    cmd.output().unwrap()
}

fn now_ns() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as i64
}

async fn crawl_once_stores_each_error_once(dir: &Path, database: &str) {
    let fake = FakeRailway::start(TOKEN).await;
    let config = write_config(dir, database, &fake.url(), "5m");
    let start = now_ns() - 30 * 60 * 1_000_000_000;
    for i in 0..300i64 {
        let severity = if i % 3 == 0 { "info" } else { "error" };
        fake.add(
            &format_ns(start + i * 1_000_000_000),
            severity,
            "svc-api",
            "i-1",
            &format!("payment {i} declined"),
        );
    }
    let out = run(dir, &config, TOKEN, &["crawl", "--once", "--json"]);
    let runs = crate::json(&out);
    assert_eq!((runs[0]["logs_fetched"].as_u64(), runs[0]["errors_stored"].as_u64()), (Some(200), Some(200)));
    assert!(
        runs[0]["api_requests"].as_u64().unwrap() >= 5,
        "page size 50: at least 4 pages and the discovery"
    );

    // New lines, and a rate limit on the way: stored once, the old ones not again.
    for i in 0..20i64 {
        fake.add(
            &format_ns(now_ns() - 1_000_000_000 + i),
            "error",
            "svc-worker",
            "i-2",
            &format!("queue {i} stuck"),
        );
    }
    // (Each `crawl --once` is a new process: its first request looks up the service names.)
    fake.http.script([Reply::new(200, r#"{"data":{"project":{"id":"proj-1","name":"shop","environments":{"edges":[]},"services":{"edges":[{"node":{"id":"svc-worker","name":"worker"}}]}}}}"#)]);
    fake.http.script([Reply::new(429, "").header("Retry-After", "1")]);
    let runs = crate::json(&run(dir, &config, TOKEN, &["crawl", "--once", "--json"]));
    assert_eq!(runs[0]["errors_stored"].as_u64(), Some(20), "{runs}");
    assert_eq!(runs[0]["rate_limit_waits"].as_u64(), Some(1));

    let store = faultline_store::open(database).await.unwrap();
    let all = store.search(&SearchQuery { limit: 1, ..Default::default() }).await.unwrap();
    assert_eq!(all.total, 220);
    let worker = store
        .search(&SearchQuery { text: Some("queue".into()), limit: 1, ..Default::default() })
        .await
        .unwrap();
    assert_eq!(worker.entries[0].source, "worker", "source is the service's name");
    assert_eq!(worker.entries[0].metadata["railway_service_id"], "svc-worker");
    let runs = store.job_runs(Some("railway_crawl"), 10).await.unwrap();
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.run.outcome == "ok"));

    // A refused token: a plain message, a failed run, and the token nowhere.
    let out = run(dir, &config, "wrong-token-456", &["crawl", "--once"]);
    assert!(!out.status.success());
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("Railway refused the token: Not Authorized"), "{text}");
    assert!(!text.contains("wrong-token-456"));
    let last = &store.job_runs(Some("railway_crawl"), 1).await.unwrap()[0];
    assert_eq!((last.run.outcome.as_str(), last.run.detail["outcome"].as_str()), ("failed", Some("stopped")));
    assert!(!last.run.detail.to_string().contains("wrong-token-456"));
    // Nor anywhere in the database's bytes (SQLite: the file and its write-ahead log).
    for file in [database.to_owned(), format!("{database}-wal")] {
        if let Ok(bytes) = std::fs::read(&file) {
            for token in [TOKEN, "wrong-token-456"] {
                assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()), "{token} in {file}");
            }
        }
    }

    // `railway check` says what is wrong in words.
    let out = run(dir, &config, "wrong-token-456", &["railway", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success() && text.contains("the token was refused"), "{text}");
    let out = run(dir, &config, TOKEN, &["railway", "check"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("ok: project shop (proj-1)") && text.contains("ok: environment production (env-1)"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crawl_once_stores_each_error_once_and_explains_refusals() {
    let db_dir = tempfile::tempdir().unwrap();
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().unwrap();
        crawl_once_stores_each_error_once(work.path(), &database).await;
    }
}

/// Log queries the fake Railway answered so far.
fn log_queries(fake: &FakeRailway) -> usize {
    fake.http
        .received()
        .iter()
        .filter(|r| String::from_utf8_lossy(&r.body).contains("environmentLogs"))
        .count()
}

/// Adds error number `round` to the fake server, waits until it is stored (failing, with the
/// service's log, if it never is), and returns how many log queries faultline made meanwhile
/// and how long it took (printed, not asserted: timing belongs to benchmarks).
async fn detect(
    fake: &FakeRailway,
    store: &std::sync::Arc<dyn faultline_store::Store>,
    service: &crate::serve::Service,
    round: u32,
) -> (usize, Duration) {
    let queries = log_queries(fake);
    let added = Instant::now();
    // Whole milliseconds: the live stream may then write the time shorter than the crawl does.
    let at = now_ns() / 1_000_000 * 1_000_000;
    fake.add(&format_ns(at), "error", "svc-api", "i-1", &format!("ledger {round} out of balance"));
    let q = SearchQuery { text: Some(format!("ledger {round} ")), limit: 1, ..Default::default() };
    while store.search(&q).await.unwrap().total != 1 {
        // Only a hang guard: a healthy service stores it in one interval.
        assert!(added.elapsed() < Duration::from_secs(60), "never stored:\n{}", service.log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (log_queries(fake) - queries, added.elapsed())
}

/// Waits for the crawl every service runs when it starts, so that it is not counted in round 0.
async fn crawled_at_start(fake: &FakeRailway) {
    let since = Instant::now();
    while log_queries(fake) == 0 {
        assert!(since.elapsed() < Duration::from_secs(60), "no crawl at start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Detection within one poll interval: `faultline serve` polling every 2 s stores a new error
/// from the first crawl that runs after it appeared, never a later one.
#[tokio::test(flavor = "multi_thread")]
async fn serve_finds_a_new_railway_error_within_one_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("faultline.db").display().to_string();
    let fake = FakeRailway::start(TOKEN).await;
    let config = write_config(dir.path(), &database, &fake.url(), "2s");
    let service = start_with(dir.path(), &config, &[("RAILWAY_API_TOKEN", TOKEN)]);
    let store = faultline_store::open(&database).await.unwrap();
    // On a loaded machine a slow start (migrations, the first crawl) could let the next crawl
    // run before round 0's error was stored, which says nothing of the poll interval.
    crawled_at_start(&fake).await;
    let mut took = Vec::new();
    for round in 0..3 {
        let (queries, elapsed) = detect(&fake, &store, &service, round).await;
        // One crawl after it appeared, or none when a crawl under way when it was added read it.
        assert!(queries <= 1, "round {round}: {queries} crawls before it was stored");
        took.push(elapsed);
    }
    let log = stop(service);
    assert!(log.contains("railway: 1 environment(s) every 2s"), "{log}");
    assert!(!log.contains(TOKEN));
    eprintln!("detection over 3 rounds: {took:?} (poll interval 2 s)");
}

/// Live mode: with a one-hour poll interval, a new error reaches the database through the
/// subscription (no crawl ran meanwhile), also after Railway ends the stream (faultline
/// subscribes again), and the next crawl, which writes each time differently, does not store it
/// twice.
#[tokio::test(flavor = "multi_thread")]
async fn live_mode_stores_a_new_error_without_a_crawl_and_survives_the_server_ending_the_stream() {
    let db_dir = tempfile::tempdir().unwrap();
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().unwrap();
        live_mode_then_crawl(work.path(), &database).await;
    }
}

async fn live_mode_then_crawl(dir: &Path, database: &str) {
    let fake = FakeRailway::start(TOKEN).await;
    let config = write_config(dir, database, &fake.url(), "1h");
    let text = std::fs::read_to_string(&config).unwrap();
    let live = format!("timeout = \"2s\"\nlive = true\nws_url = \"{}\"\n", fake.ws_url());
    std::fs::write(&config, text.replace("timeout = \"2s\"\n", &live)).unwrap();
    // The stream writes times without trailing zeros, the crawl with all nine digits.
    fake.set_live_options(LiveOptions { trimmed_timestamps: true, ..LiveOptions::default() });
    let service = start_with(dir, &config, &[("RAILWAY_API_TOKEN", TOKEN)]);
    let store = faultline_store::open(database).await.unwrap();
    let wait_for_subscriptions = |n: usize| {
        let fake = fake.clone();
        async move {
            let since = Instant::now();
            while fake.subscriptions.load(std::sync::atomic::Ordering::SeqCst) < n {
                assert!(since.elapsed() < Duration::from_secs(60), "no live subscription number {n}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    wait_for_subscriptions(1).await;
    crawled_at_start(&fake).await;
    let mut took = Vec::new();
    for round in 0..4 {
        if round == 2 {
            fake.end_streams();
            wait_for_subscriptions(2).await;
        }
        let (queries, elapsed) = detect(&fake, &store, &service, round).await;
        assert_eq!(queries, 0, "round {round}: through the subscription, no crawl (it polls hourly)");
        took.push(elapsed);
    }
    let log = stop(service);
    assert!(log.contains("railway: 1 environment(s) every 1h, live"), "{log}");
    assert!(!log.contains(TOKEN));
    // The crawl re-reads what live mode stored: nothing twice.
    let output = run(dir, &config, TOKEN, &["crawl", "--once", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let q = SearchQuery { text: Some("out of balance".into()), limit: 10, ..Default::default() };
    assert_eq!(store.search(&q).await.unwrap().total, 4);
    eprintln!("live mode: detection over 4 rounds {took:?}");
}

/// A cron job that runs `faultline ingest` with the service's configuration has no business
/// with Railway's token: it reads its file; the commands that crawl say what is missing.
#[test]
fn regression_23_ingest_needs_no_railway_token_and_the_crawl_names_the_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let database = dir.path().join("faultline.db").display().to_string();
    let config = write_config(dir.path(), &database, "http://127.0.0.1:9/graphql/v2", "5m");
    let log = dir.path().join("app.log");
    std::fs::write(&log, "2026-01-02 03:04:05,000 ERROR app: disk full on /var/lib/app\n").unwrap();
    let ingest = run(dir.path(), &config, "", &["ingest", log.to_str().unwrap()]);
    assert!(ingest.status.success(), "{}", String::from_utf8_lossy(&ingest.stderr));
    for args in [&["crawl", "--once"][..], &["serve"][..]] {
        let refused = run(dir.path(), &config, "", args);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{args:?}");
        assert!(stderr.contains("neither RAILWAY_API_TOKEN"), "{args:?}: {stderr}");
    }
}
