//! `faultline-bench ingest` and `faultline-bench http`: file and HTTP ingest throughput
//! (documented in docs/benchmarks.md), and the log generator the other benchmarks share.

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use faultline_connectors::file::OpenedFile;
use faultline_core::Level;
use faultline_runtime::Config;
use faultline_runtime::ingest::{IngestOptions, ingest_file, read_events};
use faultline_store::{GroupedEvent, Pipeline, PipelineSettings, SearchQuery};

/// One round's figures.
struct Round {
    parse_secs: f64,
    ingest_secs: f64,
    ceiling_rows_per_sec: f64,
    rare_ms: f64,
    common_ms: f64,
    /// The same on PostgreSQL, when asked for.
    pg: Option<PgRound>,
}

struct PgRound {
    ingest_secs: f64,
    ceiling_rows_per_sec: f64,
    rare_ms: f64,
    common_ms: f64,
}

pub async fn ingest(
    lines: u64,
    dir: Option<PathBuf>,
    rounds: u32,
    postgres: Option<&str>,
    config: &Config,
) -> anyhow::Result<()> {
    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = dir.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let log = dir.join("bench.log");
    let started = Instant::now();
    let stats = generate(&log, lines)?;
    eprintln!(
        "generated {} lines ({} error events, {} MiB) in {:.1}s",
        stats.lines,
        stats.error_events,
        stats.bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    let settings = PipelineSettings {
        min_level: config.min_level,
        max_stored_per_pattern_minute: config.max_stored_per_pattern_minute,
    };
    let options = IngestOptions {
        batch_size: config.batch_size,
        max_line_bytes: config.max_line_bytes,
        source: None,
        default_year: 2024,
        now_ms: 1_704_067_200_000,
        from_start: false,
    };

    let mut results: Vec<Round> = Vec::new();
    let mut last = None;
    for round in 1..=rounds {
        let (r, counts) = one_round(&dir, &log, &options, settings, postgres).await?;
        eprint!(
            "round {round}: parse {:.2}s, SQLite ingest {:.2}s, ceiling {:.0} rows/s",
            r.parse_secs, r.ingest_secs, r.ceiling_rows_per_sec
        );
        if let Some(pg) = &r.pg {
            eprint!(
                "; PostgreSQL ingest {:.2}s, COPY ceiling {:.0} rows/s",
                pg.ingest_secs, pg.ceiling_rows_per_sec
            );
        }
        eprintln!();
        results.push(r);
        last = Some(counts);
    }
    let (n_lines, n_rows, n_patterns, rare_hits, common_hits) = last.context("no round ran")?;
    let median = |f: &dyn Fn(&Round) -> f64| {
        let mut v: Vec<f64> = results.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[0], v[v.len() - 1])
    };
    let lines_f = n_lines as f64;
    let rows = n_rows.max(1) as f64;
    let (parse, parse_lo, parse_hi) = median(&|r| r.parse_secs);
    let mut report = String::new();
    let _ = writeln!(
        report,
        "lines: {n_lines}  error events stored: {n_rows}  patterns: {n_patterns}  (median of {rounds} rounds, min–max)"
    );
    let _ = writeln!(
        report,
        "parse + fingerprint:         {:>9.0} lines/s  ({:.0}–{:.0})",
        lines_f / parse,
        lines_f / parse_hi,
        lines_f / parse_lo
    );
    let backend = |report: &mut String,
                   name: &str,
                   ingest: (f64, f64, f64),
                   ceiling: (f64, f64, f64),
                   ceiling_name: &str,
                   search: (f64, f64)| {
        let (ingest, ingest_lo, ingest_hi) = ingest;
        let (ceiling, ceiling_lo, ceiling_hi) = ceiling;
        // The ceiling in lines/s: the same rows stored at the bare-insert rate, per line read.
        let ceiling_lines = ceiling * lines_f / rows;
        let ingest_rate = lines_f / ingest;
        let _ = writeln!(
            report,
            "{:<29}{:>9.0} lines/s  ({:.0}–{:.0}; {:.0} rows/s)",
            format!("end-to-end ingest ({name}):"),
            ingest_rate,
            lines_f / ingest_hi,
            lines_f / ingest_lo,
            rows / ingest
        );
        let _ = writeln!(
            report,
            "{:<29}{:>9.0} lines/s  ({:.0}–{:.0}; {:.0} rows/s)",
            format!("ceiling ({ceiling_name}):"),
            ceiling_lines,
            ceiling_lo * lines_f / rows,
            ceiling_hi * lines_f / rows,
            ceiling
        );
        let _ =
            writeln!(report, "end-to-end / ceiling:        {:>9.1}%", 100.0 * ingest_rate / ceiling_lines);
        let _ = writeln!(report, "search, rare needle:         {:>9.1} ms ({rare_hits} hits)", search.0);
        let _ = writeln!(
            report,
            "search, common needle:       {:>9.1} ms ({common_hits} hits; first 50 rows + total)",
            search.1
        );
        ingest_rate
    };
    let sqlite_rate = backend(
        &mut report,
        "SQLite",
        median(&|r| r.ingest_secs),
        median(&|r| r.ceiling_rows_per_sec),
        "bare insert",
        (median(&|r| r.rare_ms).0, median(&|r| r.common_ms).0),
    );
    if postgres.is_some() {
        let pg = |f: fn(&PgRound) -> f64| move |r: &Round| r.pg.as_ref().map_or(f64::NAN, f);
        let pg_rate = backend(
            &mut report,
            "PostgreSQL",
            median(&pg(|p| p.ingest_secs)),
            median(&pg(|p| p.ceiling_rows_per_sec)),
            "PostgreSQL COPY",
            (median(&pg(|p| p.rare_ms)).0, median(&pg(|p| p.common_ms)).0),
        );
        let _ = writeln!(report, "PostgreSQL / SQLite:         {:>9.2}", pg_rate / sqlite_rate);
    }
    print!("{report}");
    Ok(())
}

/// Counts that are the same every round: lines, rows stored, patterns, rare and common hits.
type RoundCounts = (u64, u64, usize, u64, u64);

async fn one_round(
    dir: &Path,
    log: &Path,
    options: &IngestOptions,
    settings: PipelineSettings,
    postgres: Option<&str>,
) -> anyhow::Result<(Round, RoundCounts)> {
    // 1. Parse + fingerprint alone, keeping the grouped events for the ceiling runs.
    let mut opened = OpenedFile::open(log, None, options.max_line_bytes)?;
    let mut kept: Vec<GroupedEvent> = Vec::new();
    let started = Instant::now();
    let summary = read_events(&mut opened, options, settings, |batch| {
        kept.extend(batch.events);
        Ok(())
    })?;
    let parse_secs = started.elapsed().as_secs_f64();
    let n_patterns =
        kept.iter().map(|g| g.grouping.fingerprint.as_str()).collect::<std::collections::HashSet<_>>().len();

    // 2. End to end into a fresh SQLite file (search index included).
    let db = dir.join("bench.db");
    remove_db(&db);
    let measured = end_to_end(db.to_str().context("non-UTF-8 path")?, log, options, settings).await?;

    // 3. The ceiling: the same rows, bare inserts, B-tree indexes only.
    let bare = dir.join("bare.db");
    remove_db(&bare);
    let kept = std::sync::Arc::new(kept);
    let rows = kept.clone();
    let ceiling_rows_per_sec =
        tokio::task::spawn_blocking(move || faultline_store::bench_bare_insert(&bare, &rows))
            .await
            .context("bare insert thread")??;

    // 4. The same on PostgreSQL: end to end into a fresh database, then COPY into a bare table.
    let pg = match postgres {
        None => None,
        Some(url) => {
            let fresh = fresh_database(url, "faultline_bench_ingest").await?;
            let on_pg = end_to_end(&fresh, log, options, settings).await?;
            anyhow::ensure!(
                on_pg.stored == measured.stored,
                "PostgreSQL stored {} errors where SQLite stored {}",
                on_pg.stored,
                measured.stored
            );
            let ceiling_rows_per_sec = faultline_store::bench_copy_ceiling(&fresh, &kept).await?;
            Some(PgRound {
                ingest_secs: on_pg.secs,
                ceiling_rows_per_sec,
                rare_ms: on_pg.rare_ms,
                common_ms: on_pg.common_ms,
            })
        }
    };
    let round = Round {
        parse_secs,
        ingest_secs: measured.secs,
        ceiling_rows_per_sec,
        rare_ms: measured.rare_ms,
        common_ms: measured.common_ms,
        pg,
    };
    Ok((round, (summary.lines_read, measured.stored, n_patterns, measured.rare_hits, measured.common_hits)))
}

/// One end-to-end ingest of the log into the (empty) database at `url`, and two searches.
struct EndToEnd {
    secs: f64,
    stored: u64,
    rare_ms: f64,
    rare_hits: u64,
    common_ms: f64,
    common_hits: u64,
}

async fn end_to_end(
    url: &str,
    log: &Path,
    options: &IngestOptions,
    settings: PipelineSettings,
) -> anyhow::Result<EndToEnd> {
    let store = faultline_store::open(url).await?;
    let started = Instant::now();
    let ingested = ingest_file(&Pipeline::new(store.clone(), settings), log, options, |_, _| {}).await?;
    let secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let rare = store
        .search(&SearchQuery { text: Some("zebra-lantern".into()), limit: 50, ..Default::default() })
        .await?;
    let rare_ms = started.elapsed().as_secs_f64() * 1000.0;
    let started = Instant::now();
    let common = store
        .search(&SearchQuery { text: Some("disk quota exceeded".into()), limit: 50, ..Default::default() })
        .await?;
    let common_ms = started.elapsed().as_secs_f64() * 1000.0;
    Ok(EndToEnd {
        secs,
        stored: ingested.store.stored,
        rare_ms,
        rare_hits: rare.total,
        common_ms,
        common_hits: common.total,
    })
}

/// Drops and creates database `name` on the server of `url`; returns the URL naming it.
pub(crate) async fn fresh_database(url: &str, name: &str) -> anyhow::Result<String> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(url).await.context("connecting to PostgreSQL")?;
    // Two statements: neither may run inside a transaction, which one multi-statement
    // query would be.
    for sql in [format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"), format!("CREATE DATABASE {name}")] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut admin)
            .await
            .with_context(|| format!("creating database {name}"))?;
    }
    // What earlier runs left to write goes out before this one is timed (a superuser's right:
    // without it, the run is timed as the server is).
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut admin).await {
        eprintln!("CHECKPOINT before the run: {e}");
    }
    let mut fresh = reqwest::Url::parse(url).context("parsing the PostgreSQL URL")?;
    fresh.set_path(&format!("/{name}"));
    Ok(fresh.to_string())
}

fn remove_db(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

struct GenStats {
    lines: u64,
    error_events: u64,
    bytes: u64,
}

/// SplitMix64: a tiny seeded generator, so every run writes the same log.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub(crate) const AREAS: [&str; 10] =
    ["orders", "billing", "users", "search", "inventory", "shipping", "auth", "reports", "mailer", "gateway"];

/// Writes a log of `lines` lines: ~20% of lines belong to ERROR/CRITICAL events (300 patterns:
/// 30 shapes × 10 areas), in Python-text, JSON and logfmt layouts, some with tracebacks.
fn generate(path: &Path, lines: u64) -> anyhow::Result<GenStats> {
    let file = std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut rng = Rng(42);
    let mut stats = GenStats { lines: 0, error_events: 0, bytes: 0 };
    let mut ts: i64 = 1_704_067_200_000;
    let mut buf = String::with_capacity(4096);
    while stats.lines < lines {
        ts += 20 + rng.below(60) as i64;
        buf.clear();
        let time = chrono::DateTime::from_timestamp_millis(ts).unwrap_or_default();
        let roll = rng.below(1000);
        if roll < 185 {
            stats.error_events += 1;
            let area = AREAS[rng.below(10) as usize];
            let shape = rng.below(30);
            let level = if rng.below(20) == 0 { Level::Critical } else { Level::Error };
            let message = error_message(&mut rng, shape, area, stats.error_events);
            match rng.below(3) {
                0 => {
                    let _ = writeln!(
                        buf,
                        r#"{{"time":"{}","level":"{}","logger":"app.{area}","msg":"{}","request_id":"{:016x}"}}"#,
                        time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                        level.as_str().to_lowercase(),
                        message.replace('"', "'"),
                        rng.next()
                    );
                }
                1 => {
                    let _ = writeln!(
                        buf,
                        r#"{} level={} logger=app.{area} msg="{}" duration_ms={}"#,
                        time.format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                        level.as_str().to_lowercase(),
                        message.replace('"', "'"),
                        rng.below(5000)
                    );
                }
                _ => {
                    let _ = writeln!(
                        buf,
                        "{} {} app.{area}: {message}",
                        time.format("%Y-%m-%d %H:%M:%S,%3f"),
                        level
                    );
                    if shape.is_multiple_of(5) {
                        let _ = writeln!(
                            buf,
                            "Traceback (most recent call last):\n  File \"/srv/app/{area}/views.py\", line {}, in handle\n    result = service.run(request)\n  File \"/srv/app/{area}/service.py\", line {}, in run_{shape}\n    raise RuntimeError(msg)\nRuntimeError: {area} step {shape} failed for id {}",
                            10 + rng.below(200),
                            10 + rng.below(300),
                            rng.below(100_000)
                        );
                    }
                }
            }
        } else {
            let level = match rng.below(20) {
                0 => "WARNING",
                1..=4 => "DEBUG",
                _ => "INFO",
            };
            let _ = writeln!(
                buf,
                "{} {level} app.{}: handled GET /api/{}/{} in {}ms status=200",
                time.format("%Y-%m-%d %H:%M:%S,%3f"),
                AREAS[rng.below(10) as usize],
                AREAS[rng.below(10) as usize],
                rng.below(1_000_000),
                rng.below(900)
            );
        }
        let n = buf.bytes().filter(|b| *b == b'\n').count() as u64;
        stats.lines += n;
        stats.bytes += buf.len() as u64;
        w.write_all(buf.as_bytes())?;
    }
    w.flush()?;
    Ok(stats)
}

pub(crate) fn error_message(rng: &mut Rng, shape: u64, area: &str, n: u64) -> String {
    let ip = format!("10.{}.{}.{}", rng.below(256), rng.below(256), rng.below(256));
    let id = rng.next();
    // Every 100,000th error carries a rare needle for the search check.
    let needle = if n.is_multiple_of(100_000) { format!(" zebra-lantern-{n}") } else { String::new() };
    let text = match shape {
        0 => format!("{area} database connection refused to {ip}:5432"),
        1 => format!(
            "{area} request {:08x}-{:04x}-4{:03x}-a{:03x}-{:012x} timed out after {}ms",
            id as u32,
            id >> 48,
            id & 0xfff,
            (id >> 12) & 0xfff,
            id >> 16 & 0xffff_ffff_ffff,
            rng.below(30_000)
        ),
        2 => format!("{area} worker {} crashed with exit code {}", rng.below(64), rng.below(256)),
        3 => format!(
            "{area} failed to parse payload for user {}: unexpected token at byte {}",
            id % 100_000,
            rng.below(4096)
        ),
        4 => format!("{area} deadlock detected while updating row {}", id % 1_000_000),
        5 => format!("{area} upstream returned HTTP {} for /v1/{area}/{}", 500 + rng.below(4), id % 10_000),
        6 => format!("{area} disk quota exceeded on /var/lib/{area} ({} bytes free)", rng.below(1 << 20)),
        7 => format!("{area} cache miss storm: {} keys evicted in {}s", rng.below(100_000), rng.below(60)),
        8 => format!("{area} could not send mail to user{}@example.com: mailbox unavailable", id % 1000),
        9 => {
            format!("{area} token for session {:x} expired at {}", id, 1_700_000_000 + rng.below(10_000_000))
        }
        10 => format!("{area} queue depth {} exceeds limit 10000", 10_000 + rng.below(90_000)),
        11 => format!("{area} retry {} of 5 failed for job {}", rng.below(5) + 1, id % 1_000_000),
        12 => format!("{area} checksum mismatch: expected {:016x} got {:016x}", id, rng.next()),
        13 => format!("{area} permission denied opening /srv/data/{area}/{}.bin", id % 100_000),
        14 => format!("{area} lock on resource {} held for {}ms", id % 1000, rng.below(100_000)),
        15 => format!("{area} invalid state transition from pending to shipped for order {}", id % 1_000_000),
        16 => format!("{area} TLS handshake with {ip}:443 failed: certificate expired"),
        17 => format!("{area} out of memory allocating {} bytes", rng.below(1 << 30)),
        18 => format!("{area} migration {} failed: duplicate column 'status'", rng.below(300)),
        19 => format!("{area} rate limit exceeded for api key {:012x}", id & 0xffff_ffff_ffff),
        20 => format!("{area} KeyError: 'field_{}' missing from record", rng.below(50)),
        21 => format!("{area} division by zero computing ratio for batch {}", id % 10_000),
        22 => format!("{area} webhook delivery to https://hooks.example.com/{} failed with 503", id % 1000),
        23 => format!("{area} connection pool exhausted ({} of 20 in use)", 20),
        24 => format!("{area} stale read detected at version {}", id % 100_000),
        25 => format!("{area} unable to resolve host db-{}.internal", rng.below(9)),
        26 => format!("{area} segment {} corrupted, rebuilding index", id % 100_000),
        27 => format!(
            "{area} payment provider rejected charge of {}.{:02} EUR",
            rng.below(1000),
            rng.below(100)
        ),
        28 => format!("{area} schema validation failed at $.items[{}].price", rng.below(100)),
        _ => format!("{area} unexpected EOF after {} bytes from {ip}", rng.below(100_000)),
    };
    text + &needle
}

/// NDJSON bodies of `records` error records, `batch` per body, from the same generator as the
/// log benchmark (300 patterns, varying ids, IPs, numbers).
fn ndjson_bodies(records: u64, batch: usize, large: Option<(u64, usize)>) -> Vec<String> {
    let mut rng = Rng(7);
    let mut ts: i64 = 1_704_067_200_000;
    let mut bodies = Vec::new();
    let mut body = String::with_capacity(batch * 200);
    let mut in_body = 0;
    for n in 1..=records {
        ts += 20 + rng.below(60) as i64;
        let area = AREAS[rng.below(10) as usize];
        let shape = rng.below(30);
        let message = error_message(&mut rng, shape, area, n);
        let mut record = serde_json::json!({
            "id": format!("bench-{n}"),
            "timestamp": ts,
            "level": if rng.below(20) == 0 { "critical" } else { "error" },
            "logger": format!("app.{area}"),
            "message": message,
            "request_id": format!("{:016x}", rng.next()),
        });
        if let Some((_, bytes)) = large.filter(|(every, _)| n % every == 0) {
            let frame = format!("  File \"/srv/app/{area}.py\", line {n}, in handle\n");
            let traceback =
                format!("Traceback (most recent call last):\n{}", frame.repeat(bytes / frame.len() + 1));
            record["traceback"] = serde_json::Value::String(traceback);
        }
        let _ = writeln!(body, "{record}");
        in_body += 1;
        if in_body == batch {
            bodies.push(std::mem::replace(&mut body, String::with_capacity(batch * 200)));
            in_body = 0;
        }
    }
    if in_body > 0 {
        bodies.push(body);
    }
    bodies
}

pub async fn http(
    records: u64,
    batch: usize,
    concurrency: usize,
    large: Option<(u64, usize)>,
    dir: Option<PathBuf>,
    config: &Config,
) -> anyhow::Result<()> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    let temp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = dir.unwrap_or_else(|| temp.path().to_owned());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let db = dir.join("bench-http.db");
    remove_db(&db);
    let bodies = Arc::new(ndjson_bodies(records, batch, large));
    let bytes: usize = bodies.iter().map(String::len).sum();
    let largest = bodies.iter().map(String::len).max().unwrap_or(0);
    // A fresh SQLite file, or a fresh database on the PostgreSQL server `--database` names.
    let url = match faultline_store::sqlite_path(&config.database_url) {
        Some(_) => db.display().to_string(),
        None => fresh_database(&config.database_url, "faultline_bench_http").await?,
    };
    let store = faultline_store::open(&url).await?;
    let settings = faultline_web::Settings {
        max_body_bytes: config.max_body_bytes.max(bytes / bodies.len().max(1) * 2).max(largest + 1),
        max_line_bytes: config.max_line_bytes,
        ..faultline_web::Settings::default()
    };
    let pipeline = Pipeline::new(
        store.clone(),
        PipelineSettings {
            min_level: config.min_level,
            max_stored_per_pattern_minute: config.max_stored_per_pattern_minute,
        },
    );
    let app = faultline_web::router(faultline_web::AppState::new(
        Arc::new(pipeline),
        faultline_web::Auth::default(),
        settings,
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding a loopback port")?;
    let url = format!("http://{}/api/ingest", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    eprintln!(
        "posting {records} error records in {} requests of {batch} ({} MiB NDJSON), {concurrency} at a time, to {url}",
        bodies.len(),
        bytes >> 20
    );

    let client = reqwest::Client::new();
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (client, next, bodies, url) = (client.clone(), next.clone(), bodies.clone(), url.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let mut accepted = 0u64;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let sent = Instant::now();
                let response = client
                    .post(&url)
                    .header("content-type", "application/x-ndjson")
                    .body(body.clone())
                    .send()
                    .await
                    .context("posting a batch")?;
                let status = response.status();
                let answer: serde_json::Value = response.json().await.context("reading the answer")?;
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(status.is_success(), "HTTP {status}: {answer}");
                accepted += answer["accepted"].as_u64().unwrap_or(0);
            }
            anyhow::Ok((latencies, accepted))
        });
    }
    let mut latencies = Vec::new();
    let mut accepted = 0;
    while let Some(done) = workers.join_next().await {
        let (l, a) = done.context("client task")??;
        latencies.extend(l);
        accepted += a;
    }
    let secs = started.elapsed().as_secs_f64();
    latencies.sort_by(f64::total_cmp);
    let pct =
        |p: f64| latencies[((latencies.len() as f64 * p).ceil() as usize).clamp(1, latencies.len()) - 1];
    let stored = store.search(&SearchQuery { limit: 1, ..Default::default() }).await?.total;
    println!("accepted errors/s: {:.0} ({accepted} in {secs:.2}s, {stored} stored)", accepted as f64 / secs);
    println!(
        "request latency: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests of {batch} records, {concurrency} in flight)",
        pct(0.50),
        pct(0.99),
        pct(1.0),
        latencies.len()
    );
    let (_, peak) = crate::memory_bench::resident_mib();
    println!("peak resident memory: {peak:.0} MiB");
    drop(store);
    remove_db(&db);
    Ok(())
}
