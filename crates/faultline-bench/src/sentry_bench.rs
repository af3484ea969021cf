//! `faultline-bench sentry`: Sentry events stored per second and peak memory, faultline beside
//! Bugsink (a Sentry-compatible server in Python/Django) on the same machine, in alternating
//! rounds, each server fresh (new SQLite database) in each round.
//!
//! The events are what `sentry-python` sends for an unhandled exception: a stack of 3–35
//! frames with source context and local variables, breadcrumbs, tags, contexts and the
//! request, 5–50 KB each, from 40 bug sites. One envelope per request, as SDKs send them,
//! from `--concurrency` clients at once. A server's rate is the events it has *stored* (rows in
//! its database) divided by the time from the first request to the last event stored; its
//! memory is the peak of its whole process tree's resident memory, sampled every 50 ms.
//! Events answered 200 but never stored are counted.
//!
//! faultline runs with its defaults but for the cap on entries stored per pattern per minute,
//! raised so that every event is stored, as Bugsink's quotas are raised.
//! Bugsink runs as its single-server set-up documents: gunicorn serving `bugsink.wsgi` and the
//! `bugsink-runsnappea` background worker that digests what gunicorn accepted, with its
//! per-project and global event quotas raised so that none is refused.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{Value, json};

use crate::memory_bench::mix;

/// How one server did in one round.
#[derive(Debug, Clone, Copy)]
struct Round {
    sent: usize,
    answered_ok: usize,
    stored: usize,
    seconds: f64,
    peak_mib: f64,
    /// The server's files once it stopped (database, write-ahead log, stored events).
    disk_mib: f64,
}

impl Round {
    fn rate(&self) -> f64 {
        self.stored as f64 / self.seconds
    }
}

pub async fn run(
    events: usize,
    bugsink_events: usize,
    concurrency: usize,
    rounds: u32,
    with_bugsink: bool,
) -> anyhow::Result<()> {
    let bodies = Arc::new(generate(events.max(bugsink_events)));
    let sizes: Vec<usize> = bodies.iter().map(Vec::len).collect();
    let mean_kb = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64 / 1024.0;
    println!(
        "{} envelopes, {:.1} KB mean ({:.1}–{:.1} KB), {concurrency} clients",
        bodies.len(),
        mean_kb,
        *sizes.iter().min().unwrap_or(&0) as f64 / 1024.0,
        *sizes.iter().max().unwrap_or(&0) as f64 / 1024.0
    );
    let bugsink = with_bugsink && which("bugsink-manage") && which("gunicorn");
    if with_bugsink && !bugsink {
        println!("bugsink-manage or gunicorn not found (pip install bugsink): faultline only");
    }
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let r = faultline_round(&bodies[..events], concurrency).await?;
        report_round(&format!("round {} faultline", round + 1), &r);
        ours.push(r);
        if bugsink {
            let r = bugsink_round(&bodies[..bugsink_events], concurrency).await?;
            report_round(&format!("round {} Bugsink", round + 1), &r);
            theirs.push(r);
        }
    }
    let median = |rounds: &[Round], f: fn(&Round) -> f64| {
        let mut v: Vec<f64> = rounds.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "faultline: {:.0} events/s stored (median of {}), peak {:.0} MiB",
        median(&ours, Round::rate),
        ours.len(),
        median(&ours, |r| r.peak_mib)
    );
    if !theirs.is_empty() {
        let (rate, peak) = (median(&theirs, Round::rate), median(&theirs, |r| r.peak_mib));
        println!("Bugsink:   {rate:.1} events/s stored (median of {}), peak {peak:.0} MiB", theirs.len());
        println!(
            "faultline/Bugsink: {:.0}× the events stored per second at {:.2}× the memory",
            median(&ours, Round::rate) / rate,
            median(&ours, |r| r.peak_mib) / peak
        );
    }
    Ok(())
}

/// `--decode`: the request handler's work on each envelope, on one thread and without a
/// server, phase by phase (each phase timed over all envelopes, the median of `rounds`): the
/// envelope and its event read into a log event, then scrubbing, then fingerprinting.
pub fn decode(events: usize, rounds: u32) -> anyhow::Result<()> {
    use faultline_core::sentry::{event_from_sentry, split_envelope};
    let bodies = generate(events);
    let megabytes = bodies.iter().map(Vec::len).sum::<usize>() as f64 / 1e6;
    let read = |bodies: &[Vec<u8>]| -> anyhow::Result<Vec<faultline_core::LogEvent>> {
        let mut out = Vec::with_capacity(bodies.len());
        for body in bodies {
            let envelope = split_envelope(body).map_err(anyhow::Error::msg)?;
            for item in envelope.items.iter().filter(|i| i.kind == "event") {
                out.push(event_from_sentry(&item.payload, "sentry:1", 0).map_err(anyhow::Error::msg)?);
            }
        }
        Ok(out)
    };
    let (mut reading, mut scrubbing, mut fingerprinting, mut packing) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut raw, mut packed, mut filtered) = (0, 0, 0);
    for _ in 0..rounds {
        let started = Instant::now();
        let mut events = read(&bodies)?;
        reading.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        filtered = events.iter_mut().map(faultline_core::scrub::scrub_event).sum();
        scrubbing.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        let groups: std::collections::HashSet<_> =
            events.iter().map(|e| faultline_core::fingerprint(e).fingerprint).collect();
        fingerprinting.push(started.elapsed().as_secs_f64());
        let started = Instant::now();
        packed = events.iter().filter_map(|e| faultline_store::packed::pack(&e.raw)).map(|p| p.len()).sum();
        packing.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(groups.len() > 1, "the events were not read: {} groups", groups.len());
        raw = events.iter().map(|e| e.raw.len()).sum();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("{events} envelopes, {megabytes:.1} MB, one thread, median of {rounds}:");
    println!(
        "  raw payloads {:.1} MB, compressed for SQLite {:.1} MB; {filtered} values filtered",
        raw as f64 / 1e6,
        packed as f64 / 1e6
    );
    let mut total = 0.0;
    for (what, v) in [
        ("read", &mut reading),
        ("scrub", &mut scrubbing),
        ("fingerprint", &mut fingerprinting),
        ("pack", &mut packing),
    ] {
        let s = median(v);
        total += s;
        println!("  {what:<12} {:>8.1} µs/event {:>8.0} MB/s", s / events as f64 * 1e6, megabytes / s);
    }
    println!(
        "  {:<12} {:>8.1} µs/event {:>8.0} events/s",
        "all",
        total / events as f64 * 1e6,
        events as f64 / total
    );
    Ok(())
}

fn report_round(what: &str, r: &Round) {
    println!(
        "{what}: {} sent, {} answered 200, {} stored ({} answered 200 and not stored) in {:.2} s: {:.1} events/s; peak {:.0} MiB; files {:.1} MiB ({:.1} KB an event stored)",
        r.sent,
        r.answered_ok,
        r.stored,
        r.answered_ok.saturating_sub(r.stored),
        r.seconds,
        r.rate(),
        r.peak_mib,
        r.disk_mib,
        r.disk_mib * 1024.0 * 1024.0 / 1000.0 / r.stored.max(1) as f64
    );
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

// ---------------------------------------------------------------------------------------------
// Events

const MODULES: [&str; 8] = ["views", "cart", "billing", "orders", "search", "accounts", "stock", "mailer"];
const LIBRARY: [(&str, &str); 6] = [
    ("django/core/handlers/exception.py", "inner"),
    ("django/core/handlers/base.py", "_get_response"),
    ("django/views/generic/base.py", "view"),
    ("django/db/models/query.py", "get"),
    ("django/db/backends/utils.py", "execute"),
    ("requests/sessions.py", "request"),
];
const ERRORS: [(&str, &str); 8] = [
    ("KeyError", "'sku-{}'"),
    ("ValueError", "cart {} has no price"),
    ("ZeroDivisionError", "division by zero"),
    ("DoesNotExist", "Order matching query does not exist: id={}"),
    ("TimeoutError", "upstream payment gateway timed out after {}s"),
    ("AttributeError", "'NoneType' object has no attribute 'total'"),
    ("IntegrityError", "duplicate key value violates unique constraint \"orders_pkey\" (id)=({})"),
    ("ConnectionError", "HTTPSConnectionPool(host='api.example.com', port=443): max retries exceeded ({})"),
];

fn line_of_code(site: u64, n: u64) -> String {
    format!(
        "    result_{n} = self.{}_{site}(request, item_{n}, retries={})",
        MODULES[(n % 8) as usize],
        n % 5
    )
}

fn frame(site: u64, depth: u64, salt: u64) -> Value {
    let library = depth % 4 == 1;
    let (filename, function, module, abs_path) = if library {
        let (file, function) = LIBRARY[((site + depth) % 6) as usize];
        (
            file.to_owned(),
            function.to_owned(),
            file.trim_end_matches(".py").replace('/', "."),
            format!("/usr/lib/python3.11/site-packages/{file}"),
        )
    } else {
        let m = MODULES[((site * 7 + depth) % 8) as usize];
        (
            format!("shop/{m}.py"),
            format!("handle_{m}_{}", (site + depth) % 13),
            format!("shop.{m}"),
            format!("/srv/app/shop/{m}.py"),
        )
    };
    let lineno = 10 + (mix(site * 1000 + depth) % 400);
    let mut vars = serde_json::Map::new();
    for v in 0..(4 + depth % 6) {
        vars.insert(
            format!("var_{v}"),
            json!(format!(
                "<Order id={} customer='{}' total=Decimal('{}.{:02}')>",
                salt % 100_000,
                v,
                salt % 997,
                v
            )),
        );
    }
    json!({
        "filename": filename, "abs_path": abs_path, "function": function, "module": module,
        "lineno": lineno, "in_app": !library,
        "pre_context": (0..5).map(|k| line_of_code(site, depth * 10 + k)).collect::<Vec<_>>(),
        "context_line": line_of_code(site, depth * 10 + 5),
        "post_context": (6..11).map(|k| line_of_code(site, depth * 10 + k)).collect::<Vec<_>>(),
        "vars": vars,
    })
}

/// `n` envelopes, one event each: 40 bug sites, 3–35 frames, 0–30 breadcrumbs.
fn generate(n: usize) -> Vec<Vec<u8>> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_secs_f64();
    (0..n as u64)
        .map(|i| {
            let r = mix(i ^ 0x5e47);
            let site = r % 40;
            let frames = 3 + mix(i) % 33;
            let crumbs = mix(i + 7) % 31;
            let (ty, value) = ERRORS[(site % 8) as usize];
            let event_id = format!("{:016x}{:016x}", mix(i + 1), mix(i + 2));
            let region = if i % 2 == 0 { "eu" } else { "us" };
            let event = json!({
                "event_id": event_id,
                "timestamp": now - (n as u64 - i) as f64 * 0.01,
                "platform": "python",
                "level": "error",
                "logger": format!("shop.{}", MODULES[(site % 8) as usize]),
                "server_name": format!("web-{}", i % 4),
                "release": "shop@1.4.2",
                "environment": "production",
                "sdk": {"name": "sentry.python.django", "version": "2.75.0"},
                "tags": {"region": region, "customer_tier": "gold"},
                "user": {"id": (r % 5000).to_string()},
                "request": {
                    "url": format!("https://shop.example.com/{}/{}", MODULES[(site % 8) as usize], r % 100_000),
                    "method": "POST",
                    "headers": {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64)", "Accept": "application/json"},
                },
                "contexts": {
                    "runtime": {"name": "CPython", "version": "3.11.7"},
                    "os": {"name": "Linux", "version": "6.1.0"},
                    "trace": {"trace_id": format!("{:016x}{:016x}", mix(i + 3), mix(i + 4)), "span_id": format!("{:016x}", mix(i + 5))},
                },
                "breadcrumbs": {"values": (0..crumbs).map(|k| json!({
                    "timestamp": now - 5.0 + k as f64 * 0.1, "category": "query", "level": "info",
                    "message": format!("SELECT id, total, status FROM orders WHERE customer_id = {} AND status = 'open'", k * 31 + i % 100),
                })).collect::<Vec<_>>()},
                "exception": {"values": [{
                    "type": ty,
                    "value": value.replace("{}", &(r % 100_000).to_string()),
                    "module": "builtins",
                    "mechanism": {"type": "django", "handled": false},
                    "stacktrace": {"frames": (0..frames).map(|d| frame(site, d, r)).collect::<Vec<_>>()},
                }]},
            });
            let payload = serde_json::to_vec(&event).expect("serialisable");
            let mut body = format!(
                "{{\"event_id\":\"{event_id}\",\"sent_at\":\"2026-11-29T10:00:00Z\"}}\n{{\"type\":\"event\",\"length\":{}}}\n",
                payload.len()
            )
            .into_bytes();
            body.extend_from_slice(&payload);
            body.push(b'\n');
            body
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Sending and watching

/// Posts every envelope once, `concurrency` at a time; returns how many were answered 200.
async fn send(url: &str, key: &str, bodies: &[Vec<u8>], concurrency: usize) -> anyhow::Result<usize> {
    let client = reqwest::Client::builder().timeout(Duration::from_secs(120)).build()?;
    let next = Arc::new(AtomicUsize::new(0));
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(bodies.to_vec());
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, bodies, url) = (client.clone(), next.clone(), bodies.clone(), url.to_owned());
        let auth = format!("Sentry sentry_key={key}, sentry_version=7, sentry_client=faultline-bench/1");
        tasks.spawn(async move {
            let mut ok = 0;
            let mut other: HashMap<u16, usize> = HashMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let response = client
                    .post(&url)
                    .header("x-sentry-auth", &auth)
                    .header("content-type", "application/x-sentry-envelope")
                    .body(body.clone())
                    .send()
                    .await;
                match response {
                    Ok(r) if r.status().is_success() => ok += 1,
                    Ok(r) => {
                        let status = r.status().as_u16();
                        if !other.contains_key(&status) {
                            let text = r.text().await.unwrap_or_default();
                            println!("  {status}: {}", text.chars().take(300).collect::<String>());
                        }
                        *other.entry(status).or_default() += 1;
                    }
                    Err(_) => *other.entry(0).or_default() += 1,
                }
            }
            (ok, other)
        });
    }
    let mut ok = 0;
    let mut other: HashMap<u16, usize> = HashMap::new();
    while let Some(done) = tasks.join_next().await {
        let (n, o) = done?;
        ok += n;
        for (status, count) in o {
            *other.entry(status).or_default() += count;
        }
    }
    if !other.is_empty() {
        println!("  answers other than 200 (0: no answer): {other:?}");
    }
    Ok(ok)
}

/// Resident memory of `root` and all its descendants, in MiB.
fn tree_rss_mib(root: u32) -> f64 {
    let mut parent: HashMap<u32, u32> = HashMap::new();
    let mut rss: HashMap<u32, f64> = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else { continue };
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else { continue };
        let field = |name: &str| status.lines().find_map(|l| l.strip_prefix(name)).map(str::trim);
        if let Some(ppid) = field("PPid:").and_then(|v| v.parse().ok()) {
            parent.insert(pid, ppid);
        }
        let kb = field("VmRSS:").and_then(|v| v.trim_end_matches("kB").trim().parse::<f64>().ok());
        rss.insert(pid, kb.unwrap_or(0.0) / 1024.0);
    }
    let in_tree = |mut pid: u32| loop {
        if pid == root {
            return true;
        }
        match parent.get(&pid) {
            Some(&p) if p != 0 && p != pid => pid = p,
            _ => return false,
        }
    };
    rss.iter().filter(|(pid, _)| in_tree(**pid)).map(|(_, mib)| mib).sum()
}

/// Sends, then waits until `stored()` reaches the answered count or stops moving for 30 s,
/// sampling the process trees' memory all along.
async fn measure(
    roots: &[u32],
    url: &str,
    key: &str,
    bodies: &[Vec<u8>],
    concurrency: usize,
    stored: impl Fn() -> usize,
) -> anyhow::Result<Round> {
    let peak = Arc::new(std::sync::Mutex::new(0.0f64));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (peak, sampling, roots) = (peak.clone(), sampling.clone(), roots.to_vec());
        std::thread::spawn(move || {
            while sampling.load(Ordering::Relaxed) {
                let now: f64 = roots.iter().map(|r| tree_rss_mib(*r)).sum();
                let mut p = peak.lock().expect("peak");
                *p = p.max(now);
                drop(p);
                std::thread::sleep(Duration::from_millis(50));
            }
        })
    };
    let started = Instant::now();
    let answered_ok = send(url, key, bodies, concurrency).await?;
    let (mut last, mut last_change) = (stored(), Instant::now());
    let mut finished = started.elapsed();
    while last < answered_ok && last_change.elapsed() < Duration::from_secs(30) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = stored();
        if now != last {
            (last, last_change, finished) = (now, Instant::now(), started.elapsed());
        }
    }
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.join();
    let peak_mib = *peak.lock().expect("peak");
    Ok(Round {
        sent: bodies.len(),
        answered_ok,
        stored: last,
        seconds: finished.as_secs_f64(),
        peak_mib,
        disk_mib: 0.0,
    })
}

fn count(db: &Path, sql: &str) -> usize {
    rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .and_then(|c| c.query_row(sql, [], |r| r.get::<_, i64>(0)))
        .map_or(0, |n| n as usize)
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let _ = child.wait();
}

/// Starts `command` and waits for a stderr line containing `ready`; returns what follows it.
fn start(mut command: Command, ready: &str) -> anyhow::Result<(Child, String)> {
    let mut child = command.stdout(Stdio::null()).stderr(Stdio::piped()).spawn()?;
    let stderr = child.stderr.take().context("stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let marker = ready.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split(&marker).nth(1) {
                let _ = tx.send(rest.to_owned());
            }
        }
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(rest) => Ok((child, rest)),
        Err(_) => {
            stop(&mut child);
            anyhow::bail!("did not start (waited for {ready:?})")
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The two servers

async fn faultline_round(bodies: &[Vec<u8>], concurrency: usize) -> anyhow::Result<Round> {
    let dir = tempfile::tempdir()?;
    let db = dir.path().join("faultline.db");
    let config = dir.path().join("faultline.toml");
    std::fs::write(
        &config,
        format!(
            "[database]\nurl = \"{}\"\n[server]\nlisten = \"127.0.0.1:0\"\n\
             [ingest]\nmax_stored_per_pattern_minute = 1000000000\n",
            db.display()
        ),
    )?;
    let faultline = std::env::current_exe()?.with_file_name("faultline");
    anyhow::ensure!(faultline.exists(), "{} not found: build it first", faultline.display());
    let mut command = Command::new(&faultline);
    command
        .args(["--config", config.to_str().context("utf-8 path")?, "serve"])
        .env("FAULTLINE_LOG", "info")
        .env_remove("FAULTLINE_DATABASE_URL");
    let (mut child, addr) = start(command, "listening on http://").context("faultline serve")?;
    let addr = addr.split(';').next().unwrap_or("").trim().to_owned();
    let url = format!("http://{addr}/api/1/envelope/");
    let result = measure(&[child.id()], &url, "bench", bodies, concurrency, || {
        count(&db, "SELECT count(*) FROM entries")
    })
    .await;
    stop(&mut child);
    result.map(|r| Round { disk_mib: files_mib(dir.path()), ..r })
}

/// The size of the files under `dir`, in MiB.
fn files_mib(dir: &Path) -> f64 {
    let mut bytes = 0;
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => todo.push(entry.path()),
                Ok(m) => bytes += m.len(),
                Err(_) => {}
            }
        }
    }
    bytes as f64 / (1024.0 * 1024.0)
}

const BUGSINK_CONF_EXTRA: &str = r#"
BUGSINK.update({
    "MAX_EVENTS_PER_PROJECT_PER_5_MINUTES": 1_000_000_000,
    "MAX_EVENTS_PER_PROJECT_PER_HOUR": 1_000_000_000,
    "MAX_EVENTS_PER_PROJECT_PER_MONTH": 1_000_000_000,
    "MAX_EVENTS_PER_5_MINUTES": 1_000_000_000,
    "MAX_EVENTS_PER_HOUR": 1_000_000_000,
    "MAX_EVENTS_PER_MONTH": 1_000_000_000,
})
"#;

async fn bugsink_round(bodies: &[Vec<u8>], concurrency: usize) -> anyhow::Result<Round> {
    let dir = tempfile::tempdir()?;
    let base: PathBuf = dir.path().to_owned();
    let data = base.join("data");
    std::fs::create_dir_all(&data)?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let env = |c: &mut Command| {
        c.current_dir(&base).env("PYTHONPATH", &base).env("DJANGO_SETTINGS_MODULE", "bugsink_conf");
    };
    let run = |args: &[&str]| -> anyhow::Result<String> {
        let mut c = Command::new(args[0]);
        env(&mut c);
        let out = c.args(&args[1..]).output()?;
        anyhow::ensure!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    run(&[
        "bugsink-create-conf",
        "--template=singleserver",
        "--host=127.0.0.1",
        &format!("--port={port}"),
        &format!("--base-dir={}", data.display()),
        "--output-file=bugsink_conf.py",
    ])?;
    let conf = base.join("bugsink_conf.py");
    let mut text = std::fs::read_to_string(&conf)?;
    text.push_str(BUGSINK_CONF_EXTRA);
    std::fs::write(&conf, text)?;
    run(&["bugsink-manage", "migrate", "-v0"])?;
    run(&["bugsink-manage", "migrate", "snappea", "--database=snappea", "-v0"])?;
    let created = run(&[
        "bugsink-manage",
        "shell",
        "-c",
        "from teams.models import Team\nfrom projects.models import Project\n\
         t = Team.objects.create(name='bench')\np = Project.objects.create(team=t, name='bench', slug='bench')\n\
         print(p.id, p.sentry_key.hex)",
    ])?;
    // Django's shell may first say what it imported: the answer is the last line.
    let mut words = created.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").split_whitespace();
    let (project, key) =
        (words.next().context("project id")?.to_owned(), words.next().context("key")?.to_owned());

    let mut gunicorn = Command::new("gunicorn");
    env(&mut gunicorn);
    gunicorn.args([&format!("--bind=127.0.0.1:{port}"), "--workers=2", "--error-logfile=-", "bugsink.wsgi"]);
    let (mut server, _) = start(gunicorn, "Booting worker").context("gunicorn")?;
    let mut snappea = Command::new("bugsink-runsnappea");
    env(&mut snappea);
    let mut worker =
        snappea.stdout(Stdio::null()).stderr(Stdio::null()).spawn().context("bugsink-runsnappea")?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db = data.join("db.sqlite3");
    let url = format!("http://127.0.0.1:{port}/api/{project}/envelope/");
    let result = measure(&[server.id(), worker.id()], &url, &key, bodies, concurrency, || {
        count(&db, "SELECT count(*) FROM events_event")
    })
    .await;
    stop(&mut worker);
    stop(&mut server);
    result.map(|r| Round { disk_mib: files_mib(&data), ..r })
}
