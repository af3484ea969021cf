//! `faultline-bench instances`: several store instances (each its own connection pool, as
//! separate `serve` processes have) write batches at once into one fresh PostgreSQL database,
//! every batch of one hot pattern or spread over many: errors stored per second, so what one
//! hot pattern costs instances that share it shows beside what they do apart.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use faultline_core::{Level, LogEvent, Origin};
use faultline_store::{GroupedEvent, IngestBatch, Store};

use crate::ingest_http::fresh_database;

/// What the batches hold.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Spread {
    /// Every event is one pattern.
    Hot,
    /// Each event is one of `PATTERNS` patterns, the same for every instance.
    Many,
    /// Each event is one of `PATTERNS` patterns of its instance's own.
    Apart,
}

const PATTERNS: usize = 1_000;

/// A word per pattern, without digits (digits would make it a variable to the miner).
fn word(mut i: usize) -> String {
    const SYLLABLES: [&str; 16] =
        ["ka", "lo", "mi", "nu", "pe", "ri", "so", "tu", "va", "we", "xi", "yo", "za", "be", "co", "du"];
    let mut out = String::new();
    for _ in 0..3 {
        out.push_str(SYLLABLES[i % 16]);
        i /= 16;
    }
    out
}

fn batch(spread: Spread, instance: usize, n: usize, size: usize, now_ms: i64) -> IngestBatch {
    let events = (0..size)
        .map(|j| {
            let i = (n * size + j) * 7 + instance;
            let message = match spread {
                Spread::Hot => format!("checkout service rejected order {i}: gateway timed out"),
                Spread::Many => {
                    format!("{} service rejected order {i}: gateway timed out", word(i % PATTERNS))
                }
                Spread::Apart => format!(
                    "{} service rejected order {i}: gateway timed out",
                    word(i % PATTERNS + instance * PATTERNS)
                ),
            };
            GroupedEvent::of(LogEvent {
                timestamp_ms: now_ms + (j as i64 % 1_000),
                level: Level::Error,
                source: "shop".into(),
                message: message.clone(),
                traceback: None,
                request_path: None,
                request_method: None,
                metadata: Default::default(),
                raw: message,
                origin: Origin {
                    source_id: format!("bench-{instance}"),
                    external_id: Some(format!("{instance}-{n}-{j}")),
                },
            })
        })
        .collect();
    IngestBatch {
        source_id: format!("bench-{instance}"),
        cursor: None,
        events,
        skipped: Vec::new(),
        max_stored_per_pattern_minute: u32::MAX,
        now_ms,
        mined: None,
    }
}

/// Errors stored per second by `instances` writing `batches` batches each at once.
async fn measure(
    url: &str,
    spread: Spread,
    instances: usize,
    batches: usize,
    size: usize,
) -> anyhow::Result<f64> {
    let fresh = fresh_database(url, "faultline_bench_instances").await?;
    let mut stores: Vec<Arc<dyn Store>> = Vec::new();
    for _ in 0..instances {
        stores.push(faultline_store::open(&fresh).await.context("opening the benchmark database")?);
    }
    let now_ms = faultline_runtime::clock::now_ms();
    // Each instance's batches are made before the clock starts.
    let work: Vec<Vec<IngestBatch>> =
        (0..instances).map(|k| (0..batches).map(|n| batch(spread, k, n, size, now_ms)).collect()).collect();
    // A first batch each, untimed: patterns and the miner's buckets exist before the clock starts.
    for (k, store) in stores.iter().enumerate() {
        store.ingest(batch(spread, k, batches, size, now_ms)).await?;
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (store, batches) in stores.iter().cloned().zip(work) {
        tasks.spawn(async move {
            let mut stored = 0;
            for b in batches {
                stored += store.ingest(b).await?.stored;
            }
            Ok::<u64, faultline_store::StoreError>(stored)
        });
    }
    let mut stored = 0;
    while let Some(done) = tasks.join_next().await {
        stored += done??;
    }
    let secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(stored == (instances * batches * size) as u64, "stored {stored} errors");
    drop(stores);
    Ok(stored as f64 / secs)
}

pub async fn run(
    url: &str,
    instances: usize,
    batches: usize,
    size: usize,
    rounds: u32,
) -> anyhow::Result<()> {
    let cases = [
        (Spread::Hot, 1),
        (Spread::Hot, instances),
        (Spread::Many, 1),
        (Spread::Many, instances),
        (Spread::Apart, instances),
    ];
    let mut figures: Vec<Vec<f64>> = vec![Vec::new(); cases.len()];
    for round in 1..=rounds {
        for (i, (spread, n)) in cases.iter().enumerate() {
            // One instance writes as many errors as all of them do together.
            let per = if *n == 1 { batches * instances } else { batches };
            let rate = measure(url, *spread, *n, per, size).await?;
            eprintln!("round {round}: {spread:?}, {n} instance(s): {rate:.0} errors/s");
            figures[i].push(rate);
        }
    }
    drop_database(url).await?;
    println!("errors stored per second, median of {rounds} round(s), batches of {size}:");
    for ((spread, n), rates) in cases.iter().zip(&mut figures) {
        rates.sort_by(f64::total_cmp);
        let what = match spread {
            Spread::Hot => "one hot pattern      ",
            Spread::Many => "1,000 patterns, shared",
            Spread::Apart => "1,000 patterns each",
        };
        println!("  {what}, {n} instance(s): {:>8.0}", rates[rates.len() / 2]);
    }
    Ok(())
}

async fn drop_database(url: &str) -> anyhow::Result<()> {
    use sqlx::Connection;
    let mut admin = sqlx::PgConnection::connect(url).await.context("connecting to PostgreSQL")?;
    sqlx::raw_sql("DROP DATABASE IF EXISTS faultline_bench_instances WITH (FORCE)")
        .execute(&mut admin)
        .await?;
    Ok(())
}
