//! `faultline-bench`: reproducible measurements of faultline (documented in
//! docs/benchmarks.md), and `seed`, which fills a database with generated errors. Not shipped:
//! the `faultline` binary carries none of this.

mod alert_latency;
mod grouping_bench;
mod ingest_http;
mod instances_bench;
mod memory_bench;
mod page_bench;
mod seed;
mod sentry_bench;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use faultline_runtime::cli::Globals;
use faultline_runtime::clock::now_ms;

/// faultline's benchmarks.
#[derive(Debug, Parser)]
#[command(name = "faultline-bench", about)]
struct Cli {
    /// The configuration (ingest settings) and the database of `page` and `seed`, as
    /// `faultline` reads them.
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a log and measure parse+fingerprint, end-to-end SQLite ingest and the bare-insert
    /// ceiling; with `--database postgres://…`, also end-to-end PostgreSQL ingest (into a fresh
    /// database `faultline_bench_ingest` on that server) and its ceiling, a `COPY` of the same rows.
    Ingest {
        /// Lines in the generated log.
        #[arg(long, default_value_t = 1_000_000)]
        lines: u64,
        /// Directory for the log and the databases (default: a temporary one, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Rounds; each runs the three measurements once, interleaved. Medians are reported.
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Start the HTTP server on loopback with a fresh SQLite database (or, with `--database
    /// postgres://…`, a fresh database `faultline_bench_http` on that server) and post NDJSON
    /// batches of error records to /api/ingest: accepted errors/s and request latency.
    Http {
        /// Error records to send.
        #[arg(long, default_value_t = 500_000)]
        records: u64,
        /// Records per request.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 4)]
        concurrency: usize,
        /// Every Nth record carries a traceback of `--large-bytes` (0: none), to show that large
        /// records cost only themselves (they are cut at ingest.max_line_bytes).
        #[arg(long, default_value_t = 0)]
        large_every: u64,
        /// Size of those tracebacks, in bytes.
        #[arg(long, default_value_t = 8 << 20)]
        large_bytes: usize,
        /// Directory for the database (default: a temporary one, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Group the Content lines of each labelled system under DIR (Loghub-2k layout) and write
    /// PRED_DIR/<System>.csv for `loghub_eval.py`; prints lines/s.
    Grouping {
        /// The folder with formats.json and one folder per system (e.g. ../shared/loghub-2k).
        dir: PathBuf,
        /// Where to write the predictions.
        #[arg(long)]
        out: PathBuf,
        /// Times every system is grouped afresh; the fastest round is reported.
        #[arg(long, default_value_t = 10)]
        rounds: u32,
        /// The miner's similarity threshold (the one parameter cross-validation chooses;
        /// `scripts/grouping_cross_validate.py`).
        #[arg(long, default_value_t = faultline_core::mine::DEFAULT_SIMILARITY)]
        similarity: f64,
    },
    /// Stream generated lines from many distinct patterns through the grouping engine and
    /// report resident memory.
    Memory {
        #[arg(long, default_value_t = 10_000_000)]
        lines: u64,
        #[arg(long, default_value_t = 100_000)]
        patterns: u64,
        /// Live families the miner keeps before evicting (default: the engine's own).
        #[arg(long)]
        capacity: Option<usize>,
    },
    /// Time the System Health page, the 24-hour error rate and substring searches over HTTP
    /// against the configured database (fill it first with `faultline-bench seed`).
    Page {
        /// Requests per measurement.
        #[arg(long, default_value_t = 30)]
        rounds: u32,
    },
    /// Start `faultline serve` with a tailed file and a webhook, add errors with new patterns one
    /// at a time (to the file and over HTTP) and time each until its webhook arrives.
    Alerts {
        /// Errors per path (file and HTTP).
        #[arg(long, default_value_t = 50)]
        rounds: u32,
        /// Directory for the database, config and log (default: a temporary one, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
    /// Sentry envelopes (5–50 KB events with stack traces) posted to a fresh `faultline serve`
    /// and, when installed (`pip install bugsink`), to Bugsink beside it, in alternating rounds:
    /// events stored per second and peak memory of each.
    Sentry {
        /// Events sent to faultline per round.
        #[arg(long, default_value_t = 20_000)]
        events: usize,
        /// Events sent to Bugsink per round (the first of the same envelopes).
        #[arg(long, default_value_t = 2_000)]
        bugsink_events: usize,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
        /// Measure faultline only.
        #[arg(long)]
        no_bugsink: bool,
        /// No server: time, on one thread, what a request handler does with each envelope
        /// (read the envelope and the event, scrub, fingerprint), phase by phase.
        #[arg(long)]
        decode: bool,
    },
    /// Several store instances (each with its own connection pool, as separate `serve` processes)
    /// write batches at once into a fresh PostgreSQL database `faultline_bench_instances` on the
    /// configured server (dropped after): every batch one hot pattern, or spread over 1,000;
    /// errors stored per second next to one instance writing as much alone.
    Instances {
        #[arg(long, default_value_t = 3)]
        instances: usize,
        /// Batches per instance.
        #[arg(long, default_value_t = 40)]
        batches: usize,
        /// Errors per batch.
        #[arg(long, default_value_t = 1_000)]
        batch: usize,
        #[arg(long, default_value_t = 3)]
        rounds: u32,
    },
    /// Fill the database with generated errors (benchmark or demo data): spread over the last
    /// days, skewed towards recent errors and a few busy patterns.
    Seed {
        #[arg(long, default_value_t = 1_000_000)]
        errors: u64,
        /// Distinct patterns (at most 1,500).
        #[arg(long, default_value_t = 500)]
        patterns: u64,
        /// Spread the errors over this many days, ending now.
        #[arg(long, default_value_t = 7)]
        days: u32,
        /// The order the errors are stored in: `shuffled` spreads each batch over the days (rows
        /// in no time order), `arrival` stores them oldest first, as a live service sends them.
        #[arg(long, value_enum, default_value_t = seed::Order::Shuffled)]
        order: seed::Order,
    },
}

/// The allocator of the `faultline` binary, so that the figures measured here are its own.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match faultline_runtime::cli::run("warn", run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.globals.config()?;
    match cli.command {
        Command::Ingest { lines, dir, rounds } => {
            let postgres = faultline_store::sqlite_path(&config.database_url).is_none();
            let postgres = postgres.then_some(config.database_url.as_str());
            ingest_http::ingest(lines, dir, rounds.max(1), postgres, &config).await
        }
        Command::Http { records, batch, concurrency, large_every, large_bytes, dir } => {
            let large = (large_every > 0).then_some((large_every, large_bytes));
            ingest_http::http(records, batch.max(1), concurrency.max(1), large, dir, &config).await
        }
        Command::Sentry { events, rounds, decode: true, .. } => {
            sentry_bench::decode(events.max(1), rounds.max(1))
        }
        Command::Sentry { events, bugsink_events, concurrency, rounds, no_bugsink, decode: false } => {
            sentry_bench::run(
                events.max(1),
                bugsink_events.max(1),
                concurrency.max(1),
                rounds.max(1),
                !no_bugsink,
            )
            .await
        }
        Command::Alerts { rounds, dir } => alert_latency::run(rounds.max(1), dir).await,
        Command::Grouping { dir, out, rounds, similarity } => {
            grouping_bench::run(&dir, &out, rounds.max(1), similarity)
        }
        Command::Memory { lines, patterns, capacity } => {
            memory_bench::run(lines, patterns, capacity).map(|_| ())
        }
        Command::Instances { instances, batches, batch, rounds } => {
            anyhow::ensure!(
                faultline_store::sqlite_path(&config.database_url).is_none(),
                "`instances` measures PostgreSQL: pass --database postgres://…"
            );
            instances_bench::run(
                &config.database_url,
                instances.max(1),
                batches.max(1),
                batch.max(1),
                rounds.max(1),
            )
            .await
        }
        Command::Page { rounds } => {
            let store = faultline_store::open(&config.database_url).await?;
            page_bench::run(store, rounds.max(1)).await
        }
        Command::Seed { errors, patterns, days, order } => {
            let store = faultline_store::open(&config.database_url).await?;
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(errors),
                indicatif::ProgressDrawTarget::stderr(),
            );
            let started = std::time::Instant::now();
            let seeded =
                seed::seed(&store, errors, patterns, days, order, now_ms(), |n| bar.set_position(n)).await?;
            bar.finish_and_clear();
            println!(
                "stored {} errors ({} already there) in {} new patterns in {:.1} s",
                seeded.stored,
                seeded.duplicates,
                seeded.patterns,
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
    }
}
