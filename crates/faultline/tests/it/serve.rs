//! `faultline serve` as a child process: errors arrive through every source (a tailed file,
//! journald through a stand-in journalctl, HTTP ingest, Python's HTTPHandler and the Python
//! client module run by real CPython), SIGTERM stops it cleanly, and a restart picks up what
//! was written while it was down, storing nothing twice.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultline_store::{SearchQuery, Store};

use crate::databases;

pub(crate) const TOKEN: &str = "test-token-0123456789abcdef";

/// A running `faultline serve`, killed if the test ends early.
pub(crate) struct Service {
    pub(crate) child: Child,
    pub(crate) url: String,
    pub(crate) log: Arc<Mutex<String>>,
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn connectors_fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../faultline-connectors/tests/fixtures").join(name)
}

fn python_client_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python")
}

fn start(dir: &Path, config: &Path) -> Service {
    start_with(dir, config, &[])
}

/// Starts `faultline serve` with extra environment variables (secrets for notifiers).
pub(crate) fn start_with(dir: &Path, config: &Path, env: &[(&str, &str)]) -> Service {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    cmd.envs(env.iter().copied());
    for (key, _) in std::env::vars() {
        if key.starts_with("FAULTLINE_") {
            cmd.env_remove(key);
        }
    }
    let mut child = cmd
        .current_dir(dir)
        .args(["--config", config.to_str().expect("utf-8"), "serve"])
        .env("TEST_FAULTLINE_TOKEN", TOKEN)
        .env("FAKE_JOURNAL", dir.join("journal.json"))
        .env("FAULTLINE_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start faultline serve");
    let stderr = child.stderr.take().expect("stderr");
    let log = Arc::new(Mutex::new(String::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on ").nth(1) {
                let _ = tx.send(rest.split(';').next().unwrap_or("").trim().to_owned());
            }
            sink.lock().expect("log").push_str(&(line + "\n"));
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
        panic!("faultline serve did not say where it listens:\n{}", log.lock().expect("log"))
    });
    Service { child, url, log }
}

/// Sends SIGTERM and waits for a clean exit.
pub(crate) fn stop(mut service: Service) -> String {
    let pid = service.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(status) = service.child.try_wait().expect("wait") {
            let log = service.log.lock().expect("log").clone();
            assert!(status.success(), "serve exited with {status} after SIGTERM:\n{log}");
            return log;
        }
        assert!(Instant::now() < deadline, "serve did not stop within 15 s of SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn journal_entry(i: u32, message: &str) -> String {
    let entry = serde_json::json!({
        "__CURSOR": format!("s=ab12;i={i:x};b=1;m={i:x};t={i:x};x={i:x}"),
        "__REALTIME_TIMESTAMP": (1_704_164_645_000_000u64 + u64::from(i) * 1_000_000).to_string(),
        "PRIORITY": "3",
        "SYSLOG_IDENTIFIER": "worker",
        "_SYSTEMD_UNIT": "worker.service",
        "MESSAGE": message,
    });
    format!("{entry}\n")
}

pub(crate) fn append(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("open");
    f.write_all(text.as_bytes()).expect("append");
}

async fn wait_for_total(
    store: &Arc<dyn Store>,
    text: &str,
    expected: u64,
    service: &Service,
) -> Vec<faultline_store::EntryRow> {
    let q = SearchQuery { text: Some(text.to_owned()), limit: 1000, ..Default::default() };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let page = store.search(&q).await.expect("search");
        if page.total >= expected || Instant::now() > deadline {
            assert_eq!(
                page.total,
                expected,
                "entries containing {text:?}: {:#?}\nserve log:\n{}",
                page.entries.iter().map(|e| (&e.source_id, &e.message)).collect::<Vec<_>>(),
                service.log.lock().expect("log")
            );
            return page.entries;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub(crate) fn python(script: &str, args: &[&str]) -> String {
    let output = Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", python_client_dir())
        .output()
        .expect("run python3");
    assert!(output.status.success(), "python failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const HTTP_HANDLER: &str = r#"
import logging, logging.handlers, sys
host = sys.argv[1]
log = logging.getLogger("billing.charges")
log.propagate = False
# A formatting handler first sets record.exc_text, which HTTPHandler then sends along.
log.addHandler(logging.StreamHandler(open("/dev/null", "w")))
log.addHandler(logging.handlers.HTTPHandler(host, "/api/ingest/python", method="POST", credentials=("app", sys.argv[2])))
try:
    {}["card"]
except KeyError:
    log.exception("stdlib handler: charge %s failed", "acct-42")
"#;

const CLIENT: &str = r#"
import json, logging, sys
from faultline_handler import FaultlineHandler
handler = FaultlineHandler(sys.argv[1], token=sys.argv[2], flush_interval=0.1)
log = logging.getLogger("shop.api")
log.propagate = False
log.addHandler(handler)
log.info("client module: not an error, not sent")
for i in range(4):
    log.error("client module: order %d rejected", i)
try:
    1 / 0
except ZeroDivisionError:
    log.exception("client module: division failed")
handler.close()
print(json.dumps({"sent": handler.sent, "dropped": handler.dropped, "rejected": handler.rejected}))
"#;

/// The settings every service test shares: the database, a loopback listener with an ingest
/// token, and the tailed `logs/*.log` read from the beginning.
pub(crate) fn base_config(dir: &Path, database: &str) -> String {
    format!(
        r#"
[database]
url = "{database}"

[server]
listen = "127.0.0.1:0"

[[server.tokens]]
name = "ci"
env = "TEST_FAULTLINE_TOKEN"
scopes = ["ingest"]

[files]
paths = ["{logs}/*.log"]
start_at = "beginning"
poll_interval = "100ms"
multiline_wait = "300ms"
"#,
        logs = dir.join("logs").display(),
    )
}

fn write_config(dir: &Path, database: &str) -> PathBuf {
    let config = dir.join("faultline.toml");
    let text = format!(
        r#"{base}
[journald]
enabled = true
command = "{journalctl}"
start_at = "beginning"

[schedule]
collect = "300ms"
error_rate_check = "300ms"
pattern_detection = "1s"
retention = "1h"
"#,
        base = base_config(dir, database),
        journalctl = connectors_fixture("journalctl").display(),
    );
    std::fs::write(&config, text).expect("config");
    config
}

async fn every_source_then_restart(dir: &Path, database: &str) {
    std::fs::create_dir_all(dir.join("logs")).expect("logs dir");
    let app_log = dir.join("logs/app.log");
    append(
        &app_log,
        "2024-01-02 03:04:05,100 ERROR app.db: file source: connection refused to 10.0.0.7\n\
         2024-01-02 03:04:06,100 INFO app.web: file source: request served\n\
         2024-01-02 03:04:07,100 ERROR app.jobs: file source: job failed\n\
         Traceback (most recent call last):\n  File \"/srv/jobs.py\", line 9, in run\nValueError: file source bad input\n",
    );
    let journal = dir.join("journal.json");
    std::fs::write(
        &journal,
        [journal_entry(1, "journal source: oom killed"), journal_entry(2, "journal source: restart loop")]
            .concat(),
    )
    .expect("journal");
    let config = write_config(dir, database);
    let store = faultline_store::open(database).await.expect("open store");

    let service = start(dir, &config);
    let client = reqwest::Client::new();
    let ndjson = (0..3)
        .map(|i| format!(r#"{{"id":"h{i}","level":"error","message":"http source: payment {i} declined","service":"payments"}}"#))
        .collect::<Vec<_>>()
        .join("\n");
    let response = client
        .post(format!("{}/api/ingest", service.url))
        .bearer_auth(TOKEN)
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200);
    // The same binary serves the System Health page; an ingest-only token does not open it.
    let page =
        client.get(format!("{}/logs?query=declined", service.url)).bearer_auth(TOKEN).send().await.unwrap();
    assert!(page.url().path().starts_with("/login"), "asks for a read token: {}", page.url());
    assert!(page.headers().contains_key("content-security-policy"));
    assert!(page.text().await.unwrap().contains("<h1>Sign in</h1>"));
    let host = service.url.trim_start_matches("http://").to_owned();
    python(HTTP_HANDLER, &[&host, TOKEN]);
    let client_result: serde_json::Value =
        serde_json::from_str(python(CLIENT, &[&service.url, TOKEN]).trim()).expect("client output");
    assert_eq!(client_result, serde_json::json!({"sent": 5, "dropped": 0, "rejected": 0}));

    let file = wait_for_total(&store, "file source", 2, &service).await;
    assert!(
        file.iter()
            .any(|e| e.traceback.as_deref().is_some_and(|t| t.contains("ValueError: file source bad input")))
    );
    wait_for_total(&store, "journal source", 2, &service).await;
    wait_for_total(&store, "http source", 3, &service).await;
    let stdlib = wait_for_total(&store, "stdlib handler", 1, &service).await;
    assert_eq!(
        (stdlib[0].source.as_str(), stdlib[0].message.as_str()),
        ("billing.charges", "stdlib handler: charge acct-42 failed")
    );
    assert!(
        stdlib[0].traceback.as_deref().is_some_and(|t| t.contains("KeyError: 'card'")),
        "{:?}",
        stdlib[0].traceback
    );
    let module = wait_for_total(&store, "client module", 5, &service).await;
    assert!(module.iter().all(|e| e.source == "shop.api"));
    assert!(module.iter().any(|e| e.traceback.as_deref().is_some_and(|t| t.contains("ZeroDivisionError"))));

    let log = stop(service);
    assert!(log.contains("stopped"), "{log}");

    // Written while faultline is down: picked up after the restart, nothing doubled.
    append(&app_log, "2024-01-02 03:05:00,000 ERROR app.db: file source: disk full\n");
    append(&journal, &journal_entry(3, "journal source: segfault"));
    let service = start(dir, &config);
    wait_for_total(&store, "file source", 3, &service).await;
    wait_for_total(&store, "journal source", 3, &service).await;
    let all = store.search(&SearchQuery { limit: 1000, ..Default::default() }).await.expect("search");
    let mut messages: Vec<&str> = all.entries.iter().map(|e| e.message.as_str()).collect();
    let n = messages.len();
    messages.sort();
    messages.dedup();
    assert_eq!((n, messages.len()), (15, 15), "every error once: {messages:#?}");

    let deadline = Instant::now() + Duration::from_secs(10);
    let jobs = loop {
        let runs = store.job_runs(None, 100).await.expect("job runs");
        let names: std::collections::BTreeSet<String> = runs.iter().map(|r| r.run.job.clone()).collect();
        if names.contains("collect") && names.contains("error_rate_check") || Instant::now() > deadline {
            break runs;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let check = jobs.iter().find(|r| r.run.job == "error_rate_check").expect("an error-rate check ran");
    assert_eq!(check.run.outcome, "ok");
    // The status follows the documented thresholds (pass < 1 ≤ degraded ≤ 5 < fail errors a
    // minute over 5 minutes); the HTTP and Python records of this test are dated now.
    let d = &check.run.detail;
    let rate = d["errors_per_minute"].as_f64().expect("rate");
    let total = d["total_errors"].as_f64().expect("total");
    assert!((rate - total / 5.0).abs() < 1e-9, "{d:?}");
    let want = if rate < 1.0 {
        "pass"
    } else if rate <= 5.0 {
        "degraded"
    } else {
        "fail"
    };
    assert_eq!(d["status"].as_str(), Some(want), "{d:?}");
    assert!(jobs.iter().any(|r| r.run.job == "collect" && r.run.detail["sources"].is_object()));
    stop(service);
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_collects_from_every_source_and_resumes_after_sigterm() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        every_source_then_restart(work.path(), &database).await;
    }
}

#[test]
fn refuses_a_public_address_without_tokens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = crate::faultline(dir.path(), "x.db", &["serve", "--listen", "0.0.0.0:0"]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0 without API tokens"), "{stderr}");
}

#[test]
fn python_client_never_blocks_and_counts_what_it_drops() {
    // A server that accepts connections and never answers: the first send hangs, yet every
    // logging call returns at once (the records wait in the queue).
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hanging = format!("http://{}", blackhole.local_addr().expect("addr"));
    // A port nothing listens on: every send fails, and records are dropped and counted.
    let refused = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("http://{}", l.local_addr().expect("addr"))
    };
    let script = r#"
import json, logging, sys, time
from faultline_handler import FaultlineHandler
hanging = FaultlineHandler(sys.argv[1], batch_size=1, timeout=30, flush_interval=0.05)
log = logging.getLogger("a"); log.propagate = False; log.addHandler(hanging)
log.error("first")
while hanging._busy == 0:
    time.sleep(0.01)
for i in range(100):
    log.error("queued %d", i)
queued_while_blocked = hanging._queue.qsize()
refused = FaultlineHandler(sys.argv[2], flush_interval=0.05, max_attempts=2)
log2 = logging.getLogger("b"); log2.propagate = False; log2.addHandler(refused)
for i in range(50):
    log2.error("lost %d", i)
refused.flush(10)
print(json.dumps({"queued_while_blocked": queued_while_blocked, "dropped": refused.dropped, "sent": refused.sent}), flush=True)
import os
os._exit(0)  # the hanging handler would hold the exit for its flush timeout
"#;
    let out = python(script, &[&hanging, &refused]);
    let result: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(result, serde_json::json!({"queued_while_blocked": 100, "dropped": 50, "sent": 0}));
    drop(blackhole);
}

#[test]
fn regression_16_python_client_closes_within_two_seconds_and_counts_every_record() {
    // A server that accepts connections and never answers.
    let blackhole = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let hanging = format!("http://{}", blackhole.local_addr().expect("addr"));
    let script = r#"
import json, logging, sys, time
from faultline_handler import FaultlineHandler
h = FaultlineHandler(sys.argv[1], timeout=30, flush_interval=0.05, queue_size=5000)
log = logging.getLogger("a"); log.propagate = False; log.addHandler(h)
for i in range(20000):
    log.error("record %d", i)
started = time.monotonic()
h.close()
took = time.monotonic() - started
print(json.dumps({"close_under_4s": took < 4.0, "accounted": h.sent + h.dropped + h.rejected}), flush=True)
"#;
    let started = std::time::Instant::now();
    let out = python(script, &[&hanging]);
    let result: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(result, serde_json::json!({"close_under_4s": true, "accounted": 20000}));
    // Interpreter exit runs logging's own flush and close again: it does not wait on them.
    assert!(started.elapsed() < Duration::from_secs(8), "python took {:?}", started.elapsed());
    drop(blackhole);
}

#[test]
fn regression_16_python_client_retries_busy_answers_with_backoff() {
    // A stand-in that answers as faultline does when its database is busy (503 with
    // Retry-After), then rate-limited (429), then takes the batch.
    let script = r#"
import json, logging, threading, time
from http.server import BaseHTTPRequestHandler, HTTPServer
from faultline_handler import FaultlineHandler
answers = [(503, "0"), (503, None), (429, "1")]
received = []
class Server(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if answers:
            code, retry = answers.pop(0)
            self.send_response(code)
            if retry is not None:
                self.send_header("Retry-After", retry)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"error": "the database is busy: try again shortly"}')
            return
        lines = body.decode().splitlines()
        received.extend(json.loads(l)["message"] for l in lines)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"accepted": len(lines), "rejected": []}).encode())
    def log_message(self, *args):
        pass
server = HTTPServer(("127.0.0.1", 0), Server)
threading.Thread(target=server.serve_forever, daemon=True).start()
h = FaultlineHandler("http://127.0.0.1:%d" % server.server_port, flush_interval=0.05, close_timeout=10)
log = logging.getLogger("a"); log.propagate = False; log.addHandler(h)
for i in range(5):
    log.error("busy %d", i)
h.close()
print(json.dumps({"sent": h.sent, "dropped": h.dropped, "retries": h.retries, "received": sorted(received)}))
"#;
    let out = python(script, &[]);
    let result: serde_json::Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        result,
        serde_json::json!({"sent": 5, "dropped": 0, "retries": 3,
            "received": ["busy 0", "busy 1", "busy 2", "busy 3", "busy 4"]})
    );
}

#[test]
fn regression_16_half_sent_requests_time_out_and_never_hold_the_server() {
    use std::io::Read;
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs");
    let config = dir.path().join("faultline.toml");
    let db = dir.path().join("f.db").display().to_string();
    std::fs::write(&config, base_config(dir.path(), &db)).expect("config");
    let service = start_with(
        dir.path(),
        &config,
        &[("FAULTLINE_SERVER__HEADER_TIMEOUT", "1s"), ("FAULTLINE_SERVER__MAX_CONNECTIONS", "32")],
    );
    let addr = service.url.trim_start_matches("http://").to_owned();
    // Half an HTTP/1.1 header, or nothing at all, or half of HTTP/2's preface (which leaves the
    // protocol untold).
    let half_sent = |n: usize| -> Vec<std::net::TcpStream> {
        (0..n)
            .map(|i| {
                let mut s = std::net::TcpStream::connect(&addr).expect("connect");
                let start: &[u8] = match i % 3 {
                    0 => b"POST /api/ingest HTTP/1.1\r\nHost: x\r\nContent-Ty",
                    1 => b"",
                    _ => b"PRI * HTTP/2.0\r\n",
                };
                s.write_all(start).expect("half a header");
                s
            })
            .collect()
    };
    let mut slow = half_sent(100);
    // More clients than the server serves at once, none finishing its header: it still answers.
    let mut health = std::net::TcpStream::connect(&addr).expect("connect");
    health.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
    health.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").expect("send");
    let mut answer = String::new();
    health.read_to_string(&mut answer).expect("healthz answers");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The half-sent ones were closed by the server, whichever way they started.
    for first in &mut slow[..3] {
        first.set_read_timeout(Some(Duration::from_secs(30))).expect("timeout");
        let mut buf = [0u8; 64];
        match first.read(&mut buf) {
            Ok(n) => assert!(n == 0 || String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"), "{n}"),
            Err(e) => assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}"),
        }
    }
    // A stop with half-sent requests open exits 0 without waiting on them.
    let _more = half_sent(10);
    let stopping = Instant::now();
    stop(service);
    assert!(stopping.elapsed() < Duration::from_secs(9), "stopped in {:?}", stopping.elapsed());
}

/// An HTTP/2 connection (as gRPC clients open) with nothing under way is closed after the header
/// timeout, as an idle HTTP/1.1 one is, although its client answers every ping: idle
/// connections never hold the server's connection slots.
#[tokio::test(flavor = "multi_thread")]
async fn an_idle_http2_connection_is_closed_like_an_idle_http1_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs");
    let config = dir.path().join("faultline.toml");
    let db = dir.path().join("f.db").display().to_string();
    std::fs::write(&config, base_config(dir.path(), &db)).expect("config");
    let service = start_with(dir.path(), &config, &[("FAULTLINE_SERVER__HEADER_TIMEOUT", "1s")]);
    let tcp =
        tokio::net::TcpStream::connect(service.url.trim_start_matches("http://")).await.expect("connect");
    let (mut send, connection) = h2::client::handshake(tcp).await.expect("an HTTP/2 handshake");
    // The connection task answers the server's pings until the server closes it.
    let open = tokio::spawn(connection);
    let request = http::Request::get(format!("{}/healthz", service.url)).body(()).expect("request");
    let (answer, _) = send.send_request(request, true).expect("send");
    let answer = answer.await.expect("answered over HTTP/2");
    assert_eq!(answer.status(), 200);
    let mut body = answer.into_body();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        let _ = body.flow_control().release_capacity(chunk.len());
    }
    let idle = Instant::now();
    let closed = tokio::time::timeout(Duration::from_secs(20), open).await;
    assert!(closed.is_ok(), "an idle HTTP/2 connection still open after 20 s");
    assert!(idle.elapsed() >= Duration::from_millis(500), "closed after {:?}", idle.elapsed());
    stop(service);
}

#[tokio::test]
async fn regression_16_stdlib_handler_counts_identical_calls_and_formats_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("logs")).expect("logs");
    let config = dir.path().join("faultline.toml");
    let db = dir.path().join("f.db").display().to_string();
    std::fs::write(&config, base_config(dir.path(), &db)).expect("config");
    let service = start(dir.path(), &config);
    let host = service.url.trim_start_matches("http://").to_owned();
    let script = r#"
import logging, logging.handlers, sys
log = logging.getLogger("stdlib.plain")
log.propagate = False
log.addHandler(logging.handlers.HTTPHandler(sys.argv[1], "/api/ingest/python", method="POST", credentials=("app", sys.argv[2])))
for _ in range(10):
    log.error("upstream answered code=%d", 502)
for exc in (ValueError("bad sku"), KeyError("cart")):
    try:
        raise exc
    except Exception:
        log.error("checkout failed", exc_info=True)
"#;
    python(script, &[&host, TOKEN]);
    let store = faultline_store::open(&db).await.expect("open");
    let found = wait_for_total(&store, "upstream answered code=502", 10, &service).await;
    let pattern = store.pattern(&found[0].fingerprint).await.expect("pattern").expect("exists");
    assert_eq!(pattern.occurrence_count, 10);
    let failed = wait_for_total(&store, "checkout failed", 2, &service).await;
    assert_ne!(failed[0].fingerprint, failed[1].fingerprint, "two exceptions under one message stay apart");
    stop(service);
}

/// The container image's configuration (`deploy/container.toml`): it listens beyond loopback
/// with its one token from `FAULTLINE_ADMIN_TOKEN`, answers the health check without one, and
/// stops cleanly on SIGTERM. (The image itself cannot be built here: no registry to pull the
/// base images from.)
#[tokio::test]
async fn the_container_configuration_serves_with_its_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/container.toml");
    let db = dir.path().join("faultline.db").display().to_string();
    let admin = "container-admin-token-0123";
    let service = start_with(
        dir.path(),
        &config,
        &[
            ("FAULTLINE_ADMIN_TOKEN", admin),
            ("FAULTLINE_LISTEN", "0.0.0.0:0"),
            ("FAULTLINE_DATABASE_URL", &db),
        ],
    );
    assert!(service.url.starts_with("http://0.0.0.0:"), "{}", service.url);
    let url = service.url.replace("0.0.0.0", "127.0.0.1");
    let client = reqwest::Client::new();
    let health = client.get(format!("{url}/healthz")).send().await.expect("healthz");
    assert_eq!(health.status(), 200);
    let record = serde_json::json!({"level": "error", "message": "container check: disk full"});
    let refused = client.post(format!("{url}/api/ingest")).json(&record).send().await.expect("post");
    assert_eq!(refused.status(), 401, "no token, no ingest");
    let stored =
        client.post(format!("{url}/api/ingest")).bearer_auth(admin).json(&record).send().await.expect("post");
    assert_eq!(stored.status(), 200);
    stop(service);
    assert!(Path::new(&db).exists(), "the database is where FAULTLINE_DATABASE_URL says");
}
