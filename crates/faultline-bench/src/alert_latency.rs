//! `faultline bench alerts`: detection latency against a real `faultline serve`.
//!
//! Starts this binary's `serve` as a child process (fresh SQLite database, one tailed file, a
//! webhook notifier pointing at a receiver inside the benchmark), then, one at a time, appends
//! an error line with a new pattern to the file, posts one to `/api/ingest`, or has another
//! process (`faultline ingest`, as a cron job would) store one in the same database, and times
//! until the webhook for it arrives. The webhook is sent only after the alert, its task and its
//! deliveries have committed, so the figure covers "task stored and webhook received". Errors
//! another process stores are found by the evaluation every `alerts.evaluate_interval`
//! ([`EVALUATE_INTERVAL`] here).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::body::Bytes;
use faultline_runtime::clock::now_ms;

const TOKEN: &str = "bench-token-0123456789abcdef";

/// The service's `alerts.evaluate_interval` in this benchmark (the default is 15 s).
pub const EVALUATE_INTERVAL: &str = "5s";

/// Arrival time of each webhook, by the marker word in its pattern's template.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

pub async fn run(rounds: u32, dir: Option<PathBuf>) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("temporary directory")?;
    let dir = dir.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(dir.join("logs"))?;
    let db = dir.join("bench-alerts.db");
    let _ = std::fs::remove_file(&db);

    let arrivals: Arrivals = Arc::default();
    let receiver = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", receiver.local_addr()?);
    let sink = arrivals.clone();
    let app = axum::Router::new().fallback(move |body: Bytes| {
        let sink = sink.clone();
        async move {
            let at = Instant::now();
            let payload: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(word) = payload["pattern"]["template"].as_str().and_then(marker) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).entry(word).or_insert(at);
            }
            "ok"
        }
    });
    tokio::spawn(async move { axum::serve(receiver, app).await });

    let config = dir.join("bench-alerts.toml");
    std::fs::write(
        &config,
        format!(
            r#"[database]
url = "{db}"
[server]
listen = "127.0.0.1:0"
[[server.tokens]]
name = "bench"
env = "FAULTLINE_BENCH_TOKEN"
scopes = ["ingest"]
[files]
paths = ["{logs}/*.log"]
start_at = "end"
[alerts]
evaluate_interval = "{interval}"
max_per_hour = 1000000
max_per_pattern_per_hour = 1000000
[notify.webhook]
url = "{hook}"
"#,
            db = db.display(),
            logs = dir.join("logs").display(),
            interval = EVALUATE_INTERVAL,
        ),
    )?;
    // The real service, as a separate process: the `faultline` binary built beside this one.
    let faultline = std::env::current_exe()?.with_file_name("faultline");
    anyhow::ensure!(
        faultline.exists(),
        "{} not found: build it first (cargo build --release -p faultline)",
        faultline.display()
    );
    let mut child = Command::new(&faultline)
        .args(["--config", config.to_str().context("utf-8 path")?, "serve"])
        .env("FAULTLINE_BENCH_TOKEN", TOKEN)
        .env("FAULTLINE_LOG", "info")
        .env_remove("FAULTLINE_DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting faultline serve")?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let _ = tx.send(rest.split(';').next().unwrap_or("").trim().to_owned());
            }
            // The service's warnings explain slow rounds.
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("serve: {line}");
            }
        }
    });
    let addr = rx.recv_timeout(Duration::from_secs(30)).context("faultline serve did not start")?;
    let result = measure(&dir, &addr, &faultline, &db, rounds, &arrivals).await;
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
    let [file, http, other] = result?;
    println!(
        "detection latency, error → task stored and webhook received ({rounds} rounds each, faultline serve, SQLite):"
    );
    report("tailed file", file);
    report("POST /api/ingest", http);
    report(&format!("faultline ingest (another process; evaluate_interval {EVALUATE_INTERVAL})"), other);
    Ok(())
}

/// The marker word planted in each line: `zq` followed by letters that are never hex. It leads
/// the message, so that each round's line is a template of its own (the miner joins lines that
/// differ in one word once a fourth variant comes).
fn marker(template: &str) -> Option<String> {
    template.split_whitespace().find(|w| w.starts_with("zq")).map(str::to_owned)
}

fn word(i: u32) -> String {
    let letters = b"ghijklmnopqrstuvwxy";
    let mut n = i as usize;
    let mut w = String::from("zq");
    loop {
        w.push(letters[n % letters.len()] as char);
        n /= letters.len();
        if n == 0 {
            return w;
        }
    }
}

async fn measure(
    dir: &std::path::Path,
    addr: &str,
    faultline: &std::path::Path,
    db: &std::path::Path,
    rounds: u32,
    arrivals: &Arrivals,
) -> anyhow::Result<[Vec<f64>; 3]> {
    let client = reqwest::Client::new();
    let log = dir.join("logs/app.log");
    std::fs::File::create(&log)?;
    tokio::time::sleep(Duration::from_millis(1500)).await; // the tailer has found the file
    let mut times: [Vec<f64>; 3] = Default::default();
    for i in 0..rounds * 3 {
        let w = word(i);
        let started = Instant::now();
        if i % 3 == 2 {
            // A cron job: another process stores the error in serve's database.
            let now = chrono::DateTime::from_timestamp_millis(now_ms()).unwrap_or_default();
            let batch = dir.join("cron.log");
            let line = format!(
                "{} ERROR cron: {w} checkout failed in module\n",
                now.format("%Y-%m-%d %H:%M:%S,%3f")
            );
            std::fs::write(&batch, line)?;
            let status = Command::new(faultline)
                .args(["--database", db.to_str().context("utf-8 path")?, "ingest"])
                .arg(&batch)
                .env_remove("FAULTLINE_DATABASE_URL")
                .stdout(Stdio::null())
                .status()?;
            anyhow::ensure!(status.success(), "faultline ingest failed: {status}");
        } else if i % 3 == 0 {
            let now = chrono::DateTime::from_timestamp_millis(now_ms()).unwrap_or_default();
            let line = format!(
                "{} ERROR bench: {w} checkout failed in module\n",
                now.format("%Y-%m-%d %H:%M:%S,%3f")
            );
            std::fs::OpenOptions::new().append(true).open(&log)?.write_all(line.as_bytes())?;
        } else {
            let body = serde_json::json!({"level": "error", "source": "bench", "message": format!("{w} checkout failed in module")});
            let response = client
                .post(format!("http://{addr}/api/ingest"))
                .bearer_auth(TOKEN)
                .json(&body)
                .send()
                .await?;
            if !response.status().is_success() {
                bail!("ingest answered {}", response.status());
            }
        }
        let deadline = started + Duration::from_secs(30);
        let arrived = loop {
            if let Some(at) = arrivals.lock().unwrap_or_else(|e| e.into_inner()).get(&w) {
                break *at;
            }
            if Instant::now() > deadline {
                bail!("no webhook for round {i} within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let ms = arrived.duration_since(started).as_secs_f64() * 1000.0;
        times[(i % 3) as usize].push(ms);
    }
    Ok(times)
}

fn report(what: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let pct = |p: f64| ms[((ms.len() as f64 * p).ceil() as usize).clamp(1, ms.len()) - 1];
    println!("  {what:<17} p50 {:>7.1} ms   p95 {:>7.1} ms   max {:>7.1} ms", pct(0.5), pct(0.95), pct(1.0));
}
