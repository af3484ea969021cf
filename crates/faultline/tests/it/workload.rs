//! The workload checker: the real `faultline serve` fed a seeded, replayable workload over every
//! input path while faults are injected, then a checker compares what was stored and counted
//! with what was written (a generator, a fault schedule and a checker, as Vector's delivery
//! soak tests and Jepsen do).
//!
//! Paths: tailed files (empty at start, with lines at start, created later, rotated by rename and
//! by copytruncate, multi-line Python, Node, Ruby and .NET stacks), HTTP ingest (with ids, with
//! timestamps but no id, neither; identical records in one request; retries after a lost answer),
//! OpenTelemetry log records over OTLP/HTTP (protobuf) and OTLP/gRPC, Python's stdlib
//! `HTTPHandler`, `FaultlineHandler`, the journald stand-in, the Railway crawl
//! (levels and severities in each reading), and `faultline ingest` run from another process on the
//! same SQLite file. Faults: kill -9 and restart, SIGTERM with a half-sent request open, the
//! database held by another writer, a webhook receiver that fails, half-sent requests left open,
//! a saved journal cursor journalctl refuses.
//!
//! The oracle checks that every distinct error is stored exactly once (or, where the client
//! could not know, at most as often as it was sent), that every stored occurrence is counted
//! (`occurrence_count`, minute counts), that no valid request got a 5xx other than a 503 with
//! `Retry-After`, that the Python client's counts add up, and that alerting saw it all: every
//! committed batch evaluated (the cron runs' too), one task per pattern although the flood
//! limits (set low) held notifications back, no second alert on a pattern within its cooldown
//! but one escalation to critical.
//!
//! `cargo test` runs a short budget with a fixed seed. The long run, and any seed a failure
//! printed:
//!
//! ```sh
//! FAULTLINE_WORKLOAD_SECONDS=1800 FAULTLINE_WORKLOAD_SCALE=20 FAULTLINE_WORKLOAD_SEED=random \
//!   cargo test --release -p faultline --test it workload -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{Service, TOKEN, append, base_config, start_with, stop};
use faultline_testkit::fake::{FAKE_PROJECT_ID, FakeRailway, SeverityStyle};

/// A small, replayable random generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// How often each message may be stored.
#[derive(Debug, Clone, Copy)]
struct Expect {
    min: u64,
    max: u64,
}

/// What the workload wrote, and what it saw.
#[derive(Default)]
struct Oracle {
    expected: BTreeMap<String, Expect>,
    /// Messages of a `FaultlineHandler` burst: each at most once; in all at least `sent`.
    bursts: Vec<Burst>,
    /// Answers that break the promise: a 5xx other than 503 + Retry-After.
    bad_answers: Vec<String>,
    answers: BTreeMap<u16, u64>,
    history: Vec<String>,
    kills: u64,
    events: u64,
    /// The payload sent of Sentry events large enough to be kept compressed, by message: the
    /// raw payload stored must be the same text.
    raws: BTreeMap<String, String>,
}

struct Burst {
    prefix: String,
    emitted: u64,
    sent: u64,
    dropped: u64,
    rejected: u64,
}

impl Oracle {
    fn exactly(&mut self, message: String, times: u64) {
        self.events += times;
        let e = self.expected.entry(message).or_insert(Expect { min: 0, max: 0 });
        e.min += times;
        e.max += times;
    }
    fn at_most(&mut self, message: String, min: u64, max: u64) {
        self.events += max;
        let e = self.expected.entry(message).or_insert(Expect { min: 0, max: 0 });
        e.min += min;
        e.max += max;
    }
    fn note(&mut self, what: String) {
        self.history.push(what);
    }
}

struct Workload {
    rng: Rng,
    seed: u64,
    dir: PathBuf,
    config: PathBuf,
    db: PathBuf,
    service: Option<Service>,
    started_at: Instant,
    next: u64,
    oracle: Oracle,
    files: Vec<TailedFile>,
    journal_cursor: u64,
    cron: Option<(Child, PathBuf, Vec<String>)>,
    cron_runs: u64,
    scale: u64,
    http: reqwest::Client,
    half_open: Vec<TcpStream>,
    railway: FakeRailway,
    /// Messages added to Railway: the crawl must have stored them all before the check.
    railway_messages: Vec<String>,
}

struct TailedFile {
    path: PathBuf,
    rotated: u32,
    last_rotation: Instant,
    /// Lines written to the live file since it was (re)created: rotation needs at least one.
    lines: u64,
}

const RAILWAY_TOKEN: &str = "wl-railway-token";

const RUN_ENV: [(&str, &str); 3] = [
    ("FAULTLINE_SERVER__HEADER_TIMEOUT", "2s"),
    ("TEST_WEBHOOK_SECRET", "s3cret"),
    ("RAILWAY_API_TOKEN", RAILWAY_TOKEN),
];

impl Workload {
    fn new(seed: u64, scale: u64, railway: FakeRailway) -> (Workload, tempfile::TempDir) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().to_owned();
        std::fs::create_dir_all(dir.join("logs")).expect("logs");
        std::fs::create_dir_all(dir.join("cron")).expect("cron");
        let db = dir.join("faultline.db");
        // A receiver that fails every delivery: the outbox must never hold up ingest.
        let failing = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let webhook = format!("http://{}/hook", failing.local_addr().expect("addr"));
        std::thread::spawn(move || {
            for mut conn in failing.incoming().flatten() {
                let mut buf = [0u8; 4096];
                let _ = conn.read(&mut buf);
                let _ = conn.write_all(
                    b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        let config = dir.join("faultline.toml");
        std::fs::write(
            &config,
            format!(
                r#"{base}
[ingest]
# Every occurrence is kept as an entry, so that stored and counted can be compared one to one.
max_stored_per_pattern_minute = 100000000

[journald]
enabled = true
command = "{journalctl}"
start_at = "beginning"

[schedule]
collect = "1s"
error_rate_check = "1s"
pattern_detection = "2s"
retention = "1h"

[alerts]
evaluate_interval = "1s"
# Low, so that the flood limits hold notifications back (never tasks) within a short run.
max_per_hour = 5

[notify]
timeout = "2s"

[notify.webhook]
url = "{webhook}"
secret_env = "TEST_WEBHOOK_SECRET"

[railway]
api_url = "{railway}"
poll_interval = "1s"
page_size = 50
timeout = "2s"

[[railway.targets]]
project_id = "{FAKE_PROJECT_ID}"
environment_id = "env-1"
"#,
                railway = railway.url(),
                // Files present at start are followed from their end (the default), which is
                // what makes a file empty at start a case of its own.
                base = base_config(&dir, &db.display().to_string())
                    .replace(r#"start_at = "beginning""#, r#"start_at = "end""#),
                journalctl = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../faultline-connectors/tests/fixtures/journalctl")
                    .display(),
            ),
        )
        .expect("config");
        std::fs::write(dir.join("journal.json"), "").expect("journal");
        let mut oracle = Oracle::default();
        // Present and empty at start, present with old lines at start (not read: start_at end),
        // and one created later.
        let files: Vec<TailedFile> = (0..3)
            .map(|k| TailedFile {
                path: dir.join(format!("logs/app-{k}.log")),
                rotated: 0,
                last_rotation: Instant::now(),
                lines: 0,
            })
            .collect();
        std::fs::write(&files[0].path, "").expect("empty file");
        append(
            &files[1].path,
            &format!("{} ERROR wl.file: wl{seed}-old written before the start\n", now_text()),
        );
        files.iter().for_each(|f| oracle.note(format!("file {} at start", f.path.display())));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().expect("client");
        let w = Workload {
            rng: Rng(seed),
            seed,
            dir,
            config,
            db,
            service: None,
            started_at: Instant::now(),
            next: 0,
            oracle,
            files,
            journal_cursor: 0,
            cron: None,
            cron_runs: 0,
            scale,
            http,
            half_open: Vec::new(),
            railway,
            railway_messages: Vec::new(),
        };
        (w, tmp)
    }

    fn token(&mut self, what: &str) -> String {
        self.next += 1;
        format!("wl{}-{}-{what}", self.seed, self.next)
    }

    /// Keeps what a service instance logged (the temporary directory goes with the test).
    fn keep_log(&self, service: &Service) {
        let path = std::env::temp_dir().join(format!("faultline-workload-{}-serve.log", self.seed));
        let log = service.log.lock().map(|l| l.clone()).unwrap_or_default();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(path).expect("log");
        let _ = f.write_all(log.as_bytes());
    }

    fn start(&mut self) {
        // Where the file sources will resume, for the step log.
        let read_only = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        if let Ok(conn) = rusqlite::Connection::open_with_flags(&self.db, read_only) {
            let cursors: Vec<String> = conn
                .prepare(
                    "SELECT source_id || ' ' || cursor FROM source_cursors WHERE source_id LIKE 'file:%'",
                )
                .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
                .unwrap_or_default();
            self.oracle.note(format!("file cursors at start: {cursors:?}"));
        }
        let service = start_with(&self.dir, &self.config, &RUN_ENV);
        self.oracle.note(format!("start: {}", service.url));
        self.service = Some(service);
        self.started_at = Instant::now();
    }

    fn url(&self) -> String {
        self.service.as_ref().map(|s| s.url.clone()).expect("running")
    }

    // -- the generator ------------------------------------------------------------------------

    async fn step(&mut self) {
        match self.rng.below(100) {
            0..=21 => self.append_lines(),
            22..=24 => self.railway_lines(),
            25..=29 => self.rotate(),
            30..=45 => self.post_http().await,
            46..=49 => self.post_otlp().await,
            50..=54 => self.post_sentry().await,
            55..=61 => self.python_stdlib(),
            62..=68 => self.python_client(),
            69..=76 => self.journal(),
            77..=83 => self.cron_ingest(),
            84..=88 => self.kill_and_restart().await,
            89..=91 => self.term_mid_request().await,
            92..=96 => self.busy_database().await,
            _ => self.half_sent_requests(),
        }
    }

    fn append_lines(&mut self) {
        let k = self.rng.below(self.files.len() as u64) as usize;
        if !self.files[k].path.exists() {
            // A file that appears: created empty and seen before it is written, as a logger
            // opening its file does. (A file that appears with lines while the collector is
            // down is, by `start_at = "end"`, older than the collector: not read.)
            std::fs::write(&self.files[k].path, "").expect("create");
            std::thread::sleep(Duration::from_millis(400));
            self.oracle.note(format!("create {}", self.files[k].path.display()));
        }
        let n = 1 + self.rng.below(5 * self.scale);
        let mut text = String::new();
        for _ in 0..n {
            let token = self.token("file");
            let form = self.rng.below(100);
            if form < 20 {
                let message = format!("{token} job failed");
                text.push_str(&format!(
                    "{} ERROR wl.jobs: {message}\nTraceback (most recent call last):\n  File \"/srv/jobs.py\", line 9, in run\nValueError: bad input {token}\n",
                    now_text()
                ));
                self.oracle.exactly(message, 1);
            } else if form < 30 {
                // Other runtimes' stacks under a log line: each one event, whatever its layout
                // (Node's property block closed at column 0, Ruby's bare backtrace lines, .NET's
                // inner exception and its end marker).
                let message = format!("{token} request failed");
                let stack = match self.rng.below(3) {
                    0 => {
                        "Error: lookup failed\n    at loadUser (/srv/users.js:10:11)\n    at async main (/srv/index.js:5:3) {\n  [cause]: Error: connect ECONNREFUSED 127.0.0.1:5432\n      at TCPConnectWrap.afterConnect [as oncomplete] (node:net:1555:16) {\n    errno: -111\n  }\n}\n"
                    }
                    1 => {
                        "Couldn't find Order with 'id'=42 (ActiveRecord::RecordNotFound)\n/srv/app/models/order.rb:12:in `find_for'\n/srv/app/controllers/orders_controller.rb:8:in `show'\n"
                    }
                    _ => {
                        "System.InvalidOperationException: save failed\n ---> System.TimeoutException: slow disk\n   at Shop.Disk.Write() in /src/Disk.cs:line 9\n   --- End of inner exception stack trace ---\n   at Shop.Orders.Save() in /src/Orders.cs:line 27\nClientConnectionId:5f2a8c1e-3b4d-4e6f-8a9b-0c1d2e3f4a5b\n"
                    }
                };
                text.push_str(&format!("{} ERROR wl.api: {message}\n{stack}", now_text()));
                self.oracle.exactly(message, 1);
            } else {
                let message = format!("{token} connection refused to 10.0.0.{}", self.rng.below(255));
                text.push_str(&format!("{} ERROR wl.db: {message}\n", now_text()));
                self.oracle.exactly(message, 1);
            }
            // Lines below the minimum level are read and not stored.
            if self.rng.chance(10) {
                text.push_str(&format!(
                    "{} INFO wl.web: {} request served\n",
                    now_text(),
                    self.token("info")
                ));
            }
        }
        append(&self.files[k].path, &text);
        self.files[k].lines += n;
        self.oracle.note(format!("append {n} events to {}", self.files[k].path.display()));
    }

    /// Lines logged on Railway, found by the crawl: errors however the app named their level
    /// (and however Railway writes its `severity`), and lines below the minimum level.
    fn railway_lines(&mut self) {
        let style =
            [SeverityStyle::Words, SeverityStyle::Short, SeverityStyle::Absent][self.rng.below(3) as usize];
        self.railway.set_severity_style(style);
        for _ in 0..1 + self.rng.below(3 * self.scale) {
            let token = self.token("railway");
            let level = ["error", "err", "fatal", "stderr"][self.rng.below(4) as usize];
            let message = format!("{token} ledger out of balance");
            let ns = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
            let at = chrono::DateTime::from_timestamp_nanos(ns.as_nanos() as i64)
                .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
            self.railway.add(&at, level, "svc-api", "inst-1", &message);
            self.oracle.exactly(message.clone(), 1);
            self.railway_messages.push(message);
            if self.rng.chance(20) {
                let info = format!("{} request served", self.token("railway-info"));
                self.railway.add(&at, "info", "svc-api", "inst-1", &info);
            }
        }
        self.oracle.note(format!("railway lines ({style:?})"));
    }

    fn rotate(&mut self) {
        let k = self.rng.below(self.files.len() as u64) as usize;
        let by_copy = self.rng.chance(40);
        // The collector must have looked at the file since its last rotation (see tail.rs).
        let f = &self.files[k];
        if f.lines == 0
            || f.last_rotation.elapsed() < Duration::from_secs(1)
            || self.started_at.elapsed() < Duration::from_secs(1)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
        let f = &mut self.files[k];
        f.rotated += 1;
        let rotated = PathBuf::from(format!("{}.{}", f.path.display(), f.rotated));
        if by_copy {
            std::fs::copy(&f.path, &rotated).expect("copy");
            std::fs::OpenOptions::new().write(true).truncate(true).open(&f.path).expect("truncate");
        } else {
            std::fs::rename(&f.path, &rotated).expect("rename");
            std::fs::write(&f.path, "").expect("recreate");
        }
        f.last_rotation = Instant::now();
        f.lines = 0;
        let what =
            format!("rotate {} by {}", f.path.display(), if by_copy { "copytruncate" } else { "rename" });
        self.oracle.note(what);
    }

    async fn post_http(&mut self) {
        let n = 1 + self.rng.below(20 * self.scale);
        let mut lines = Vec::new();
        let mut sent: Vec<(String, u64, bool)> = Vec::new();
        for _ in 0..n {
            let token = self.token("http");
            if self.rng.chance(3) {
                // Hostile records (issue 16): a NUL, a record past the line limit, a clock years
                // ahead. What is stored is the NUL as U+FFFD, the cut text, the arrival time.
                // Issues 18 and 19: secrets beside multi-byte characters in a record naming no
                // logger, stored scrubbed (the scrubber once panicked on such text).
                let id = format!("{token}-id");
                let (record, stored) = match self.rng.below(4) {
                    3 => (
                        serde_json::json!({"id": id, "message": format!("{token} login failed password=hunter2 for \u{202e}bob\u{202c} Bearer eyJ.abc-123")}),
                        format!(
                            "{token} login failed password=[Filtered] for \u{202e}bob\u{202c} Bearer [Filtered]"
                        ),
                    ),
                    0 => (
                        serde_json::json!({"id": id, "message": format!("{token} nul\u{0}byte")}),
                        format!("{token} nul\u{FFFD}byte"),
                    ),
                    1 => {
                        let message = format!("{token} {}", "x".repeat(70_000));
                        let cut = message[..64 * 1024].to_owned();
                        (serde_json::json!({"id": id, "message": message}), cut)
                    }
                    _ => {
                        let message = format!("{token} from a clock years ahead");
                        let record = serde_json::json!({"id": id, "timestamp": "9999-12-31T23:59:59Z", "message": message});
                        (record, message)
                    }
                };
                lines.push(record.to_string());
                sent.push((stored, 1, false));
                continue;
            }
            let message = format!("{token} payment declined for order {}", self.rng.below(1000));
            let copies = if self.rng.chance(10) { 1 + self.rng.below(4) } else { 1 };
            let kind = self.rng.below(3);
            for _ in 0..copies {
                let record = match kind {
                    0 => {
                        serde_json::json!({"id": format!("{token}-id"), "message": message, "logger": "wl.http"})
                    }
                    1 => {
                        serde_json::json!({"timestamp": now_rfc3339(), "message": message, "logger": "wl.http"})
                    }
                    _ => serde_json::json!({"message": message, "logger": "wl.http"}),
                };
                lines.push(record.to_string());
            }
            // An id makes copies one event; identical records without one are occurrences.
            sent.push((message, if kind == 0 { 1 } else { copies }, kind == 2));
        }
        let body = lines.join("\n");
        let mut lost_answer = false;
        for attempt in 0.. {
            match self.post("/api/ingest", body.clone()).await {
                Some(200) => break,
                Some(_) | None if attempt < 40 => {
                    lost_answer = true;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => panic!("seed {}: ingest never succeeded: {other:?}", self.seed),
            }
        }
        for (message, times, arrival_stamped) in sent {
            if arrival_stamped && lost_answer {
                // A record with neither id nor time sent again after a lost answer cannot be
                // told from a new one.
                self.oracle.at_most(message, times, 2 * times);
            } else {
                self.oracle.exactly(message, times);
            }
        }
        self.oracle.note(format!(
            "post {n} records ({} lines){}",
            lines.len(),
            if lost_answer { ", retried" } else { "" }
        ));
    }

    /// A Sentry envelope of one to three events, as SDKs send them: a Python message with its
    /// params, or the JavaScript SDK's captureMessage (an exception with a value and no type, once refused with
    /// a 400), a third of them with a stack of frames with source context and variables (several
    /// KB, which SQLite keeps compressed). Each carries its event id, so a retry after a lost
    /// answer stores nothing twice.
    async fn post_sentry(&mut self) {
        let n = 1 + self.rng.below(3);
        let mut body = String::from("{}\n");
        let mut sent = Vec::new();
        for _ in 0..n {
            let token = self.token("sentry");
            let event_id = format!("{:016x}{:016x}", self.rng.next(), self.rng.next());
            let (event, stored) = if self.rng.chance(33) {
                let value = format!("{token} render failed");
                let frames: Vec<_> = (0..8 + self.rng.below(30))
                    .map(|i| {
                        serde_json::json!({"filename": format!("app:///src/view{}.js", i % 7),
                        "function": format!("render{i}"), "lineno": 10 + i, "colno": 4, "in_app": i % 3 != 0,
                        "pre_context": ["  const items = props.items;", "  if (!items) {"],
                        "context_line": "    throw new Error('render failed');",
                        "post_context": ["  }", "  return items.map(row);"],
                        "vars": {"props": format!("{{ items: null, page: {i} }}"), "row": "[Function: row]"}})
                    })
                    .collect();
                let event = serde_json::json!({"event_id": event_id, "level": "error", "platform": "javascript",
                    "exception": {"values": [{"value": value, "mechanism": {"type": "onerror", "handled": false},
                        "stacktrace": {"frames": frames}}]}});
                self.oracle.raws.insert(value.clone(), event.to_string());
                (event, value)
            } else if self.rng.chance(50) {
                let value = format!("{token} queue is behind");
                let event = serde_json::json!({"event_id": event_id, "level": "error", "platform": "node",
                    "exception": {"values": [{"value": value, "mechanism": {"type": "generic", "synthetic": true}}]}});
                (event, value)
            } else {
                let message = format!("{token} cart has no price");
                let event = serde_json::json!({"event_id": event_id, "level": "error", "platform": "python",
                    "logentry": {"message": format!("{token} cart has no %s"), "params": ["price"]}});
                (event, message)
            };
            body.push_str(&format!("{{\"type\":\"event\"}}\n{event}\n"));
            sent.push(stored);
        }
        let path = format!("/api/7/envelope/?sentry_key={TOKEN}");
        let mut retried = false;
        for attempt in 0.. {
            match self.post(&path, body.clone()).await {
                Some(200) => break,
                Some(_) | None if attempt < 40 => {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => panic!("seed {}: the envelope was never taken: {other:?}", self.seed),
            }
        }
        for message in sent {
            self.oracle.exactly(message, 1);
        }
        self.oracle.note(format!("sentry envelope of {n} events{}", if retried { ", retried" } else { "" }));
    }

    /// OpenTelemetry log records, each stamped with its time (which makes a record sent again
    /// after a lost answer the same event), over OTLP/HTTP in protobuf or over OTLP/gRPC.
    async fn post_otlp(&mut self) {
        use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
        use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value::Value};
        use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
        use prost::Message;
        let n = 1 + self.rng.below(5 * self.scale);
        let grpc = self.rng.chance(50);
        let text = |s: String| Some(AnyValue { value: Some(Value::StringValue(s)) });
        let mut records = Vec::new();
        let mut sent = Vec::new();
        for _ in 0..n {
            let message = format!("{} shard {} export failed", self.token("otlp"), self.rng.below(100));
            records.push(LogRecord {
                time_unix_nano: now_ms() as u64 * 1_000_000 + self.rng.below(1_000_000),
                severity_number: 17,
                body: text(message.clone()),
                ..Default::default()
            });
            sent.push(message);
        }
        let request = ExportLogsServiceRequest {
            resource_logs: vec![ResourceLogs {
                resource: Some(opentelemetry_proto::tonic::resource::v1::Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: text("wl-otlp".into()),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_logs: vec![ScopeLogs { log_records: records, ..Default::default() }],
                ..Default::default()
            }],
        };
        let mut retried = false;
        for attempt in 0.. {
            let answer = if grpc {
                self.export_grpc(request.clone()).await
            } else {
                self.post_bytes("/v1/logs", "application/x-protobuf", request.encode_to_vec()).await
            };
            match answer {
                Some(200) => break,
                Some(_) | None if attempt < 40 => {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => panic!("seed {}: the OTLP export was never taken: {other:?}", self.seed),
            }
        }
        for message in sent {
            self.oracle.exactly(message, 1);
        }
        let how = if grpc { "gRPC" } else { "HTTP" };
        self.oracle
            .note(format!("OTLP/{how} export of {n} records{}", if retried { ", retried" } else { "" }));
    }

    /// An OTLP/gRPC export, its answer recorded as the HTTP status it stands for (200, 503 for
    /// the codes an exporter retries, 400 for the others); `None` when no answer came. An
    /// `INTERNAL` or `UNKNOWN` answer breaks the promise as a 500 does.
    async fn export_grpc(
        &mut self,
        request: opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest,
    ) -> Option<u16> {
        use opentelemetry_proto::tonic::collector::logs::v1::logs_service_client::LogsServiceClient;
        let endpoint =
            tonic::transport::Endpoint::from_shared(self.url()).ok()?.timeout(Duration::from_secs(20));
        let mut client = LogsServiceClient::new(endpoint.connect().await.ok()?);
        let mut request = tonic::Request::new(request);
        request.metadata_mut().insert("authorization", format!("Bearer {TOKEN}").parse().ok()?);
        let status = match client.export(request).await {
            Ok(_) => 200,
            // A status made from a transport error (the server down, or killed mid-request).
            Err(s) if std::error::Error::source(&s).is_some() => return None,
            Err(s) => match s.code() {
                tonic::Code::Unavailable | tonic::Code::ResourceExhausted => 503,
                tonic::Code::Internal | tonic::Code::Unknown => {
                    self.oracle.bad_answers.push(format!("gRPC {:?} Export: {}", s.code(), s.message()));
                    500
                }
                _ => 400,
            },
        };
        *self.oracle.answers.entry(status).or_default() += 1;
        Some(status)
    }

    /// Posts and records the answer; `None` when no answer came (the server was down).
    async fn post(&mut self, path: &str, body: String) -> Option<u16> {
        self.post_bytes(path, "application/x-ndjson", body.into_bytes()).await
    }

    async fn post_bytes(&mut self, path: &str, content_type: &str, body: Vec<u8>) -> Option<u16> {
        let response = self
            .http
            .post(format!("{}{path}", self.url()))
            .bearer_auth(TOKEN)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .ok()?;
        let status = response.status().as_u16();
        *self.oracle.answers.entry(status).or_default() += 1;
        let retry_after = response.headers().contains_key("retry-after");
        if status >= 500 && !(status == 503 && retry_after) {
            let text = response.text().await.unwrap_or_default();
            self.oracle.bad_answers.push(format!("{status} {path}: {text}"));
        }
        Some(status)
    }

    fn python_stdlib(&mut self) {
        let n = 1 + self.rng.below(3 * self.scale);
        let token = self.token("std");
        let script = format!(
            r#"
import logging, logging.handlers, sys
log = logging.getLogger("wl.std")
log.propagate = False
log.addHandler(logging.handlers.HTTPHandler(sys.argv[1], "/api/ingest/python", method="POST", credentials=("app", sys.argv[2])))
logging.addLevelName(45, "FAILURE")
for i in range({n}):
    log.error("{token} charge %s failed with code=%d", "acct", i)
    try:
        raise KeyError("card %d" % i)
    except KeyError:
        log.log(45, "{token} lookup %d failed", i, exc_info=True)
"#
        );
        let host = self.url().trim_start_matches("http://").to_owned();
        let output = python(&script, &[&host, TOKEN]);
        assert!(
            output.status.success(),
            "seed {}: stdlib handler: {}",
            self.seed,
            String::from_utf8_lossy(&output.stderr)
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!stderr.contains("Traceback"), "seed {}: HTTPHandler failed to send: {stderr}", self.seed);
        for i in 0..n {
            self.oracle.exactly(format!("{token} charge acct failed with code={i}"), 1);
            self.oracle.exactly(format!("{token} lookup {i} failed"), 1);
        }
        self.oracle.note(format!("stdlib HTTPHandler: {} records", 2 * n));
    }

    fn python_client(&mut self) {
        let n = 1 + self.rng.below(30 * self.scale);
        let prefix = self.token("client");
        let script = format!(
            r#"
import json, logging, sys
from faultline_handler import FaultlineHandler
h = FaultlineHandler(sys.argv[1], token=sys.argv[2], flush_interval=0.05, close_timeout=15)
log = logging.getLogger("wl.client"); log.propagate = False; log.addHandler(h)
for i in range({n}):
    log.error("{prefix} same text every time")
h.close()
print(json.dumps({{"sent": h.sent, "dropped": h.dropped, "rejected": h.rejected}}))
"#
        );
        let output = python(&script, &[&self.url(), TOKEN]);
        assert!(
            output.status.success(),
            "seed {}: client: {}",
            self.seed,
            String::from_utf8_lossy(&output.stderr)
        );
        let counts: serde_json::Value =
            serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("client output: {e}"));
        let get = |k: &str| counts[k].as_u64().unwrap_or(0);
        self.oracle.events += n;
        self.oracle.bursts.push(Burst {
            prefix: format!("{prefix} same text every time"),
            emitted: n,
            sent: get("sent"),
            dropped: get("dropped"),
            rejected: get("rejected"),
        });
        self.oracle.note(format!("FaultlineHandler: {n} identical records, {counts}"));
    }

    fn journal(&mut self) {
        let n = 1 + self.rng.below(5 * self.scale);
        let mut text = String::new();
        for _ in 0..n {
            self.journal_cursor += 1;
            let i = self.journal_cursor;
            let message = format!("{} worker crashed", self.token("journal"));
            let entry = serde_json::json!({
                "__CURSOR": format!("s=6f0c2d1a;i={i:x};b=9e1b4c7d;m={:x};t={:x};x=5a3e", i * 17, now_ms() * 1000),
                "__REALTIME_TIMESTAMP": (now_ms() * 1000).to_string(),
                "PRIORITY": "3",
                "SYSLOG_IDENTIFIER": "wl-worker",
                "MESSAGE": message,
            });
            text.push_str(&format!("{entry}\n"));
            self.oracle.exactly(message, 1);
        }
        append(&self.dir.join("journal.json"), &text);
        self.oracle.note(format!("journal: {n} entries"));
    }

    /// `faultline ingest` from cron, on the SQLite file the service writes, in the background.
    fn cron_ingest(&mut self) {
        self.finish_cron();
        self.cron_runs += 1;
        let path = self.dir.join(format!("cron/batch-{}.log", self.cron_runs));
        let n = 1 + self.rng.below(50 * self.scale);
        let mut text = String::new();
        let mut messages = Vec::new();
        for _ in 0..n {
            let message = format!("{} export failed", self.token("cron"));
            text.push_str(&format!("{} ERROR wl.cron: {message}\n", now_text()));
            messages.push(message);
        }
        std::fs::write(&path, text).expect("cron file");
        let child = ingest_command(&self.config, &self.db, &path).spawn().expect("faultline ingest");
        self.cron = Some((child, path, messages));
        self.oracle.note(format!("cron ingest of {n} lines started"));
    }

    fn finish_cron(&mut self) {
        let Some((child, path, messages)) = self.cron.take() else { return };
        let output = child.wait_with_output().expect("wait");
        if !output.status.success() {
            // Busy past its timeout: cron runs it again, and it resumes from its cursor.
            self.oracle.note(format!(
                "cron ingest failed ({}), run again",
                String::from_utf8_lossy(&output.stderr).trim()
            ));
            let again = ingest_command(&self.config, &self.db, &path).output().expect("faultline ingest");
            assert!(
                again.status.success(),
                "seed {}: cron ingest: {}",
                self.seed,
                String::from_utf8_lossy(&again.stderr)
            );
        }
        let summary = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        self.oracle.note(format!("cron ingest: {summary}"));
        for m in messages {
            self.oracle.exactly(m, 1);
        }
    }

    async fn kill_and_restart(&mut self) {
        // The kill lands while a request is in flight half of the time.
        let in_flight = self.rng.chance(50).then(|| {
            let url = format!("{}/api/ingest", self.url());
            let token = self.token("inflight");
            let message = format!("{token} posted as the server died");
            let body = serde_json::json!({"id": token, "message": message}).to_string();
            (url, body, message)
        });
        let pending = in_flight.clone().map(|(url, body, _)| {
            let http = self.http.clone();
            tokio::spawn(async move {
                http.post(url).bearer_auth(TOKEN).body(body).send().await.map(|r| r.status().as_u16())
            })
        });
        tokio::time::sleep(Duration::from_millis(self.rng.below(30))).await;
        let mut service = self.service.take().expect("running");
        self.keep_log(&service);
        service.child.kill().expect("kill -9");
        service.child.wait().expect("wait");
        drop(service);
        self.oracle.kills += 1;
        if let Some(p) = pending {
            let _ = p.await;
        }
        self.finish_cron();
        if self.rng.chance(25) {
            // A saved journal cursor journalctl refuses (a damaged or foreign one): the reader
            // starts over from the beginning, and what it reads again is stored once.
            let conn = rusqlite::Connection::open(&self.db).expect("open");
            let changed = conn
                .execute("UPDATE source_cursors SET cursor = 'not-a-cursor' WHERE source_id = 'journald'", [])
                .expect("damage the journal cursor");
            self.oracle.note(format!("journal cursor damaged ({changed} row)"));
        }
        self.start();
        if let Some((_, body, message)) = in_flight {
            // The client did not know: it sends again with the same id.
            for _ in 0..40 {
                if self.post("/api/ingest", body.clone()).await == Some(200) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            self.oracle.exactly(message, 1);
        }
        self.oracle.note("kill -9 and restart".into());
    }

    async fn term_mid_request(&mut self) {
        let url = self.url();
        let addr = url.trim_start_matches("http://").to_owned();
        let mut half = TcpStream::connect(&addr).expect("connect");
        half.write_all(b"POST /api/ingest HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"mess")
            .expect("half");
        self.finish_cron();
        let service = self.service.take().expect("running");
        let stopping = Instant::now();
        self.keep_log(&service);
        stop(service);
        assert!(
            stopping.elapsed() < Duration::from_secs(10),
            "seed {}: stop took {:?}",
            self.seed,
            stopping.elapsed()
        );
        drop(half);
        self.start();
        self.oracle.note("SIGTERM with a half-sent request, restart".into());
    }

    async fn busy_database(&mut self) {
        let hold = Duration::from_millis(500 + self.rng.below(2_000));
        let db = self.db.clone();
        let holder = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(db).expect("open");
            conn.busy_timeout(Duration::from_secs(30)).expect("busy timeout");
            conn.execute_batch("BEGIN IMMEDIATE").expect("lock");
            std::thread::sleep(hold);
            conn.execute_batch("COMMIT").expect("unlock");
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.post_http().await;
        holder.join().expect("holder");
        self.oracle.note(format!("database held for {hold:?}"));
    }

    fn half_sent_requests(&mut self) {
        let addr = self.url().trim_start_matches("http://").to_owned();
        for _ in 0..1 + self.rng.below(20) {
            if let Ok(mut s) = TcpStream::connect(&addr) {
                let _ = s.write_all(b"POST /api/ingest HTTP/1.1\r\nHost: x\r\nContent-Le");
                self.half_open.push(s);
            }
        }
        if self.half_open.len() > 200 {
            self.half_open.clear();
        }
        self.oracle.note("half-sent requests left open".into());
    }

    // -- the checker --------------------------------------------------------------------------

    async fn finish(mut self) -> Oracle {
        self.finish_cron();
        // Let the tailer take the last traceback and the evaluator every batch (rows claimed by
        // a killed process come back after 30 s), then stop cleanly.
        tokio::time::sleep(Duration::from_secs(2)).await;
        // The crawl polls every second: wait until it has been round since the last Railway
        // line (what it stored is checked below with the rest).
        {
            let conn = rusqlite::Connection::open(&self.db).expect("open");
            let deadline = Instant::now() + Duration::from_secs(60);
            for message in &self.railway_messages {
                while Instant::now() < deadline {
                    let n: i64 = conn
                        .query_row("SELECT count(*) FROM entries WHERE message = ?1", [message], |r| r.get(0))
                        .expect("railway entry");
                    if n > 0 {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let feed_left = {
            let conn = rusqlite::Connection::open(&self.db).expect("open");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let left: i64 =
                    conn.query_row("SELECT count(*) FROM alert_feed", [], |r| r.get(0)).expect("feed");
                if left == 0 || Instant::now() > deadline {
                    break left;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        };
        let service = self.service.take().expect("running");
        stop(service);
        let conn = rusqlite::Connection::open(&self.db).expect("open");
        let mut problems = Vec::new();
        // Alerting: every committed batch evaluated, whichever process wrote it and whatever
        // was killed; one task per pattern however many alerts the flood limits held back; no
        // second alert on a pattern within the cooldown but one escalation to critical.
        if feed_left > 0 {
            problems.push(format!("{feed_left} alert-feed rows never evaluated"));
        }
        let without_one_task: Vec<(String, i64)> = conn
            .prepare(
                "SELECT p.normalized_message, (SELECT count(*) FROM tasks t WHERE t.pattern_id = p.id) AS n
                 FROM patterns p WHERE n <> 1",
            )
            .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
            .expect("tasks per pattern");
        for (template, n) in without_one_task.iter().take(10) {
            let template: String = template.chars().take(80).collect();
            problems.push(format!("pattern {template:?} has {n} tasks, not one"));
        }
        let repeated: Vec<String> = conn
            .prepare(
                "SELECT a.subject || ' ' || a.rule_type || ' then ' || b.rule_type FROM alerts a
                 JOIN alerts b ON b.subject = a.subject AND b.id > a.id AND b.fired_ms < a.fired_ms + 30 * 60000
                 WHERE a.subject LIKE 'pattern:%' AND NOT (b.rule_type = 'critical' AND b.reason LIKE 'escalated%')",
            )
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("repeated alerts");
        for r in repeated.iter().take(10) {
            problems.push(format!("two alerts within the cooldown: {r}"));
        }
        let (patterns, alerts, held): (i64, i64, i64) = conn
            .query_row(
                "SELECT (SELECT count(*) FROM patterns), count(*), coalesce(sum(held), 0) FROM alerts",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .expect("alert counts");
        println!("alerting: {patterns} patterns, {alerts} alerts ({held} held back by the flood limits)");
        let mut stored: BTreeMap<String, u64> = BTreeMap::new();
        let prefix = format!("wl{}-", self.seed);
        {
            let mut stmt = conn
                .prepare("SELECT message, count(*), min(source_id || ' ' || external_id || ' id ' || id) FROM entries GROUP BY message")
                .expect("query");
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?, r.get::<_, String>(2)?)))
                .expect("rows");
            for row in rows {
                let (message, n, origin) = row.expect("row");
                let known = self.oracle.expected.contains_key(&message)
                    || self.oracle.bursts.iter().any(|b| b.prefix == message);
                if !message.starts_with(&prefix) || !known {
                    let id: i64 = origin.rsplit(' ').next().and_then(|i| i.parse().ok()).unwrap_or(0);
                    let near: Vec<String> = conn
                        .prepare("SELECT id || ' ' || source_id || ' ' || external_id || ' ' || substr(message, 1, 40) FROM entries WHERE id BETWEEN ?1 - 12 AND ?1 + 3 ORDER BY id")
                        .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect())
                        .unwrap_or_default();
                    problems.push(format!(
                        "stored something never written: {message:?} from {origin}; near: {near:#?}"
                    ));
                    continue;
                }
                stored.insert(message, n as u64);
            }
        }
        let mut compressed = 0;
        for (message, sent) in &self.oracle.raws {
            let raw = conn.query_row("SELECT raw FROM entries WHERE message = ?1", [message], |r| {
                Ok(match r.get_ref(0)? {
                    rusqlite::types::ValueRef::Blob(blob) => {
                        compressed += 1;
                        faultline_store::packed::unpack(blob)
                    }
                    other => other.as_str().map(str::to_owned).map_err(|e| e.to_string()),
                })
            });
            match raw {
                Ok(Ok(raw)) if raw == *sent => {}
                Ok(Ok(_)) => problems.push(format!("{message:?}: its raw payload came back changed")),
                Ok(Err(e)) => problems.push(format!("{message:?}: its raw payload: {e}")),
                Err(e) => problems.push(format!("{message:?}: no raw payload: {e}")),
            }
        }
        println!(
            "raw payloads: {} large Sentry events, {compressed} kept compressed",
            self.oracle.raws.len()
        );
        for (message, e) in &self.oracle.expected {
            let got = stored.remove(message).unwrap_or(0);
            if got < e.min || got > e.max {
                problems.push(format!("{message:?}: stored {got} times, expected {}..={}", e.min, e.max));
            }
        }
        for b in &self.oracle.bursts {
            let got = stored.remove(&b.prefix).unwrap_or(0);
            if b.emitted != b.sent + b.dropped + b.rejected {
                problems.push(format!(
                    "{:?}: the client lost count: {} emitted, {} sent, {} dropped",
                    b.prefix, b.emitted, b.sent, b.dropped
                ));
            }
            if got < b.sent || got > b.emitted {
                problems.push(format!(
                    "{:?}: stored {got}, the client sent {} of {}",
                    b.prefix, b.sent, b.emitted
                ));
            }
        }
        for (message, n) in stored {
            problems.push(format!("{message:?}: stored {n} times, never written"));
        }
        let one = |sql: &str| -> i64 { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
        let entries = one("SELECT count(*) FROM entries");
        let nameless = one("SELECT count(*) FROM entries WHERE source = ''");
        if nameless > 0 {
            problems.push(format!("{nameless} entries stored with an empty source"));
        }
        let counted = one("SELECT coalesce(sum(occurrence_count), 0) FROM patterns");
        let minutes = one("SELECT coalesce(sum(count), 0) FROM minute_counts");
        let quarters = one("SELECT coalesce(sum(count), 0) FROM quarter_counts");
        if counted != entries || minutes != entries || quarters != entries {
            problems.push(format!(
                "counts disagree with what is stored: {entries} entries, occurrence_count {counted}, minute counts {minutes}, quarter counts {quarters}"
            ));
        }
        problems.extend(self.oracle.bad_answers.iter().map(|a| format!("answered {a}")));
        drop(conn);
        problems.extend(self.search_matches_a_scan("after the run").await);
        // An old file read last: the newest ids hold the oldest times, and retention deletes
        // them. Search must still answer what a scan does (the newest chunk, searched directly,
        // then lies in chunk the index already covered).
        let old_file = self.dir.join("cron/old.log");
        let forty_days_ago = now_ms() - 40 * 86_400_000;
        let old_lines: String = (0..300)
            .map(|i| {
                let at = chrono::DateTime::from_timestamp_millis(forty_days_ago + i * 60_000).expect("time");
                format!(
                    "{} ERROR wl.old: wl{}-old-{i} archive failed\n",
                    at.format("%Y-%m-%d %H:%M:%S,%3f"),
                    self.seed
                )
            })
            .collect();
        std::fs::write(&old_file, old_lines).expect("old file");
        let ingested = ingest_command(&self.config, &self.db, &old_file).output().expect("faultline ingest");
        assert!(ingested.status.success(), "old file: {}", String::from_utf8_lossy(&ingested.stderr));
        let cleaned = faultline_command(&self.config, &self.db, &["cleanup", "--days", "30"])
            .output()
            .expect("faultline cleanup");
        assert!(cleaned.status.success(), "cleanup: {}", String::from_utf8_lossy(&cleaned.stderr));
        problems.extend(self.search_matches_a_scan("after retention deleted the newest ids").await);
        if !problems.is_empty() {
            // Which paths lost or doubled events: the word after the token's number.
            let mut by_path: BTreeMap<&str, u64> = BTreeMap::new();
            for p in &problems {
                let path = p.split('-').nth(2).and_then(|w| w.split([' ', '"']).next()).unwrap_or("other");
                *by_path.entry(path).or_default() += 1;
            }
            problems.insert(0, format!("by path: {by_path:?}"));
            let full = std::env::temp_dir().join(format!("faultline-workload-{}.log", self.seed));
            let _ = std::fs::write(&full, self.oracle.history.join("\n"));
            problems.insert(0, format!("every step: {}", full.display()));
            let tail: Vec<&String> =
                self.oracle.history.iter().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
            panic!(
                "workload seed {seed} failed: {n} problems\n{problems}\n\nlast steps:\n{tail}\n\nreplay: FAULTLINE_WORKLOAD_SEED={seed} FAULTLINE_WORKLOAD_SECONDS=<same> FAULTLINE_WORKLOAD_SCALE={scale} cargo test -p faultline --test it workload -- --nocapture",
                seed = self.seed,
                n = problems.len(),
                problems = problems.iter().take(40).cloned().collect::<Vec<_>>().join("\n"),
                tail = tail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n"),
                scale = self.scale,
            );
        }
        std::mem::take(&mut self.oracle)
    }
}

impl Workload {
    /// Searches the store for the messages of the newest entries and of a sample of the
    /// rest, and for the deleted old file's words: each total must be what a scan of the
    /// entries counts (search promises `LIKE '%needle%'`, case-insensitive).
    async fn search_matches_a_scan(&self, when: &str) -> Vec<String> {
        let store = faultline_store::open(self.db.to_str().expect("utf-8")).await.expect("open store");
        let conn = rusqlite::Connection::open(&self.db).expect("open");
        let mut needles: Vec<String> = conn
            .prepare("SELECT message FROM entries ORDER BY id DESC LIMIT 40")
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .expect("newest entries");
        // The longest message too: a 64 KiB one is longer than SQLite takes as a LIKE pattern
        // (searching for it once failed with "LIKE or GLOB pattern too complex").
        needles.extend(
            conn.query_row("SELECT message FROM entries ORDER BY length(message) DESC LIMIT 1", [], |r| {
                r.get(0)
            })
            .ok(),
        );
        needles.extend(self.oracle.expected.keys().step_by(self.oracle.expected.len() / 20 + 1).cloned());
        needles.push("archive failed".to_owned());
        let mut problems = Vec::new();
        for needle in needles {
            let scanned: i64 = conn
                .query_row(
                    "SELECT count(*) FROM entries WHERE instr(lower(message), lower(?1)) > 0
                     OR instr(lower(coalesce(traceback, '')), lower(?1)) > 0",
                    [&needle],
                    |r| r.get(0),
                )
                .expect("scan");
            let q =
                faultline_store::SearchQuery { text: Some(needle.clone()), limit: 1, ..Default::default() };
            let found = store.search(&q).await.expect("search").total;
            let short: String = needle.chars().take(80).collect();
            if found != scanned as u64 {
                problems.push(format!("search {short:?} {when}: {found} found, a scan counts {scanned}"));
            }
            // As the API and the page ask: a page of 100 and a capped count, which may be a
            // lower bound ("N+") but never below the page nor above the matches.
            let q = faultline_store::SearchQuery {
                text: Some(needle.clone()),
                limit: 100,
                count_cap: Some(faultline_store::SEARCH_COUNT_CAP),
                ..Default::default()
            };
            let page = store.search(&q).await.expect("search");
            let (shown, scanned) = (page.entries.len() as u64, scanned as u64);
            let consistent = shown == scanned.min(100)
                && (shown..=scanned).contains(&page.total)
                && (page.total_capped || page.total == scanned);
            if !consistent {
                problems.push(format!(
                    "search {short:?} {when}, capped: {} shown, total {} (capped: {}), a scan counts {scanned}",
                    shown, page.total, page.total_capped
                ));
            }
        }
        problems
    }
}

/// The `faultline` CLI on the service's configuration and database, as a cron job on that
/// host would run it.
fn faultline_command(config: &Path, db: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_faultline"));
    for (key, _) in std::env::vars() {
        if key.starts_with("FAULTLINE_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("TEST_FAULTLINE_TOKEN", TOKEN).env("TEST_WEBHOOK_SECRET", "s3cret");
    cmd.arg("--config").arg(config).args(["--database", db.to_str().expect("utf-8")]).args(args);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd
}

/// `faultline ingest` of one file (with the service's per-minute cap).
fn ingest_command(config: &Path, db: &Path, file: &Path) -> Command {
    let mut cmd = faultline_command(config, db, &["ingest"]);
    cmd.arg(file);
    cmd
}

fn python(script: &str, args: &[&str]) -> std::process::Output {
    Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .env("PYTHONPATH", Path::new(env!("CARGO_MANIFEST_DIR")).join("../../clients/python"))
        .output()
        .expect("run python3")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

fn now_text() -> String {
    chrono::DateTime::from_timestamp_millis(now_ms())
        .expect("now")
        .format("%Y-%m-%d %H:%M:%S,%3f")
        .to_string()
}

fn now_rfc3339() -> String {
    chrono::DateTime::from_timestamp_millis(now_ms())
        .expect("now")
        .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workload_nothing_lost_nothing_miscounted() {
    let seed = match std::env::var("FAULTLINE_WORKLOAD_SEED").ok().as_deref() {
        Some("random") => now_ms() as u64,
        Some(s) => s.parse().expect("FAULTLINE_WORKLOAD_SEED: a number or `random`"),
        None => 16,
    };
    let seconds = env_u64("FAULTLINE_WORKLOAD_SECONDS", 40);
    let scale = env_u64("FAULTLINE_WORKLOAD_SCALE", 1).max(1);
    eprintln!("workload seed {seed}, {seconds} s, scale {scale}");
    let railway = FakeRailway::start(RAILWAY_TOKEN).await;
    let (mut w, _tmp) = Workload::new(seed, scale, railway);
    w.start();
    let started = Instant::now();
    let mut steps = 0u64;
    while started.elapsed() < Duration::from_secs(seconds) {
        w.step().await;
        steps += 1;
    }
    let oracle = w.finish().await;
    let exports = |how: &str| oracle.history.iter().filter(|h| h.starts_with(how)).count();
    eprintln!(
        "workload seed {seed}: {steps} steps, {} events over every path (OTLP exports: {} gRPC, {} HTTP), {} kills, answers {:?}, {:.0} s: nothing lost, nothing miscounted",
        oracle.events,
        exports("OTLP/gRPC"),
        exports("OTLP/HTTP"),
        oracle.kills,
        oracle.answers,
        started.elapsed().as_secs_f64()
    );
}
