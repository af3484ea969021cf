//! The `faultline` binary: the command line over `faultline-runtime` and the store.

#[macro_use]
mod output;
mod tasks;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Datelike;
use clap::{Args, Parser, Subcommand};
use faultline_core::Level;
use faultline_core::{DAY_MS, HOUR_MS};
use faultline_runtime::cli::Globals;
use faultline_runtime::clock::now_ms;
use faultline_runtime::config::{self, Config};
use faultline_runtime::ingest::{IngestOptions, ingest_file};
use faultline_runtime::{Application, railway_crawl};
use faultline_store::{Pipeline, PipelineSettings, SearchQuery, SourceFilter, Store};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// faultline: finds the errors in your logs, groups them into patterns and keeps them searchable.
#[derive(Debug, Parser)]
#[command(name = "faultline", version, about)]
struct Cli {
    #[command(flatten)]
    globals: Globals,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the service: follow the configured files and journal, accept errors over HTTP, and
    /// run the scheduled jobs, until SIGTERM or Ctrl-C.
    Serve(ServeArgs),
    /// Read log files, store their errors and group them into patterns.
    Ingest(IngestArgs),
    /// Search stored errors by text, level, source and time, newest first.
    Search(SearchArgs),
    /// List error patterns: the most frequent, or the new ones.
    Patterns(PatternsArgs),
    /// Error rate over the last hours, by source and level.
    Stats(StatsArgs),
    /// Delete entries older than the retention period and reclaim space.
    Cleanup(CleanupArgs),
    /// Investigation tasks created by alerts: list, show, set a state, create from a pattern.
    #[command(subcommand)]
    Tasks(tasks::TasksCommand),
    /// Recent alerts and each notification's delivery: status, attempts, last error.
    Alerts {
        /// Window, in hours, ending now.
        #[arg(long, default_value_t = 24)]
        hours: u32,
        /// At most this many, newest first.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Set a pattern's status: new, known, resolved (closes its open task) or ignored.
    PatternStatus {
        /// The pattern's id: its fingerprint, or any unique prefix of 8 characters or more.
        id: String,
        /// new, known, resolved or ignored.
        status: faultline_core::PatternStatus,
    },
    /// Crawl the configured Railway environments now, once: from each saved cursor to now (the
    /// service crawls on its schedule).
    Crawl {
        /// Accepted for scripts written for earlier versions; the command always crawls once.
        #[arg(long, hide = true)]
        once: bool,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Railway: `check` verifies the token and ids against the API and says what is wrong.
    Railway {
        #[command(subcommand)]
        command: RailwayCommand,
    },
}

#[derive(Debug, Subcommand)]
enum RailwayCommand {
    /// Check the token, the project and each environment of `[railway]`.
    Check,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:8080, or server.listen from the config).
    #[arg(long, env = "FAULTLINE_LISTEN")]
    listen: Option<String>,
}

#[derive(Debug, Args)]
struct IngestArgs {
    /// Log files to read. Each resumes where the last ingest of it stopped.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Source name for lines that do not name their logger (default: the file name).
    #[arg(long)]
    source: Option<String>,
    /// Lowest level to store: WARNING, ERROR or CRITICAL (overrides the config).
    #[arg(long)]
    min_level: Option<String>,
    /// Read each file from its first line, as if it had never been read (entries already
    /// stored are recognised and not stored twice).
    #[arg(long)]
    from_start: bool,
}

#[derive(Debug, Args)]
struct SearchArgs {
    /// Case-insensitive text to find in the message or traceback.
    text: Option<String>,
    /// Only this level (ERROR, CRITICAL, WARNING; aliases such as err or fatal work).
    #[arg(long)]
    level: Option<String>,
    /// Only this source; end it with * for a prefix (e.g. "worker.*").
    #[arg(long)]
    source: Option<String>,
    /// Only entries newer than this, e.g. 30m, 24h, 7d.
    #[arg(long, value_parser = parse_age)]
    since: Option<Duration>,
    /// Only entries older than this, e.g. 1h.
    #[arg(long, value_parser = parse_age)]
    until: Option<Duration>,
    #[arg(long, default_value_t = 20)]
    limit: u32,
    #[arg(long, default_value_t = 0)]
    offset: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct PatternsArgs {
    /// How many patterns to show.
    #[arg(long, default_value_t = 20)]
    top: u32,
    /// Show patterns first seen within this age (e.g. 24h) instead of the most frequent.
    #[arg(long, value_parser = parse_age)]
    new: Option<Duration>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct StatsArgs {
    /// Window, in hours, ending now.
    #[arg(long, default_value_t = 1)]
    hours: u32,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
struct CleanupArgs {
    /// Keep this many days (default: retention.days from the config, 90).
    #[arg(long)]
    days: Option<u32>,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 30m, 24h, 7d"))
}

fn parse_level(s: &str) -> anyhow::Result<Level> {
    Level::parse(s).with_context(|| format!("invalid level {s:?}: use WARNING, ERROR or CRITICAL"))
}

/// jemalloc: a batch's events are built on the reading thread and freed on the writing one,
/// which glibc's malloc pays for on both (see docs/benchmarks.md, "The allocator"). Its
/// options are built in from `.cargo/config.toml`.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // A service says what it does; one-shot commands only warn.
    let default_filter = if matches!(cli.command, Command::Serve(_)) {
        "info,tower_http=warn,rusqlite_migration=warn"
    } else {
        "warn"
    };
    match faultline_runtime::cli::run(default_filter, run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if output::is_closed_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = cli.globals.config()?;
    // Commands that store what they read may create the database; the others only look at it.
    let creates = matches!(
        cli.command,
        Command::Serve(_) | Command::Ingest(_) | Command::Crawl { .. } | Command::Railway { .. }
    );
    if !creates
        && let Some(path) = faultline_store::sqlite_path(&config.database_url)
        && !path.exists()
    {
        anyhow::bail!(
            "no database at {}: check --database (or FAULTLINE_DATABASE_URL), or store something first with `faultline ingest` or `faultline serve`",
            path.display()
        );
    }
    let store = faultline_store::open(&config.database_url).await?;
    match cli.command {
        Command::Serve(args) => {
            let listen = match &args.listen {
                Some(addr) => config::parse_listen(addr)?,
                None => config.listen,
            };
            Application::build(config, store, listen).await?.run_until_stopped().await
        }
        Command::Ingest(args) => ingest(store, &config, args).await,
        Command::Search(args) => search(store, args).await,
        Command::Patterns(args) => patterns(store, args).await,
        Command::Stats(args) => stats(store, args).await,
        Command::Cleanup(args) => cleanup(store, &config, args).await,
        Command::Tasks(command) => tasks::run(store, command).await,
        Command::Alerts { hours, limit, json } => tasks::alerts(store, hours, limit, json).await,
        Command::Crawl { once: _, json } => crawl_once(store, &config, json).await,
        Command::Railway { command: RailwayCommand::Check } => railway_check(&config).await,
        Command::PatternStatus { id, status } => tasks::set_pattern_status(store, &id, status).await,
    }
}

async fn ingest(store: Arc<dyn Store>, config: &Config, args: IngestArgs) -> anyhow::Result<()> {
    let min_level = match &args.min_level {
        Some(l) => match parse_level(l)? {
            level if level >= Level::Warning => level,
            _ => anyhow::bail!("invalid --min-level {l:?}: use WARNING, ERROR or CRITICAL"),
        },
        None => config.min_level,
    };
    let pipeline = Pipeline::new(
        store,
        PipelineSettings { min_level, max_stored_per_pattern_minute: config.max_stored_per_pattern_minute },
    );
    let options = IngestOptions {
        batch_size: config.batch_size,
        max_line_bytes: config.max_line_bytes,
        source: args.source.clone(),
        default_year: chrono::DateTime::from_timestamp_millis(now_ms()).map_or(1970, |t| t.year()),
        now_ms: now_ms(),
        from_start: args.from_start,
    };
    // An unreadable file is reported and the others are still read; the exit code says so.
    let mut failed = 0;
    for file in &args.files {
        let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(file.display().to_string());
        let progress = bar.clone();
        let ingested = ingest_file(&pipeline, file, &options, move |pos, total| {
            progress.set_length(total);
            progress.set_position(pos);
        })
        .await
        .with_context(|| format!("ingesting {}", file.display()));
        bar.finish_and_clear();
        match ingested {
            Ok(summary) => outln!("{}", output::ingest_summary(&file.display().to_string(), &summary))?,
            Err(e) if args.files.len() == 1 => return Err(e),
            Err(e) => {
                failed += 1;
                eprintln!("error: {e:#}");
            }
        }
    }
    if failed > 0 {
        anyhow::bail!("{failed} of {} files could not be ingested", args.files.len());
    }
    Ok(())
}

async fn search(store: Arc<dyn Store>, args: SearchArgs) -> anyhow::Result<()> {
    let now = now_ms();
    let query = SearchQuery {
        text: args.text.clone(),
        level: args.level.as_deref().map(parse_level).transpose()?,
        source: args.source.as_deref().map(SourceFilter::parse),
        since_ms: args.since.map(|d| now - d.as_millis() as i64),
        until_ms: args.until.map(|d| now - d.as_millis() as i64),
        limit: args.limit.min(10_000),
        offset: args.offset,
        count_cap: None,
    };
    let page = store.search(&query).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&output::search_json(&query, &page))?)?;
    } else {
        out!("{}", output::search_table(&query, &page))?;
    }
    Ok(())
}

async fn patterns(store: Arc<dyn Store>, args: PatternsArgs) -> anyhow::Result<()> {
    let rows = match args.new {
        Some(age) => store.new_patterns(now_ms() - age.as_millis() as i64, args.top).await?,
        None => store.top_patterns(args.top, None).await?,
    };
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&output::patterns_json(&rows))?)?;
    } else {
        out!("{}", output::patterns_table(&rows))?;
    }
    Ok(())
}

async fn stats(store: Arc<dyn Store>, args: StatsArgs) -> anyhow::Result<()> {
    let until = now_ms();
    let since = until - i64::from(args.hours.max(1)) * HOUR_MS;
    let rate = store.error_rate(since, until).await?;
    if args.json {
        outln!("{}", serde_json::to_string_pretty(&output::rate_json(args.hours, &rate))?)?;
    } else {
        out!("{}", output::rate_table(args.hours, &rate))?;
    }
    Ok(())
}

async fn crawl_once(store: Arc<dyn Store>, config: &Config, json: bool) -> anyhow::Result<()> {
    config.railway_ready()?;
    let crawler = railway_crawl::Crawler::new(config)
        .context("no Railway targets: add [[railway.targets]] with project_id and environment_id")?;
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!("crawling {} Railway environment(s)", crawler.targets().len()));
    bar.enable_steady_tick(Duration::from_millis(120));
    let pipeline = Pipeline::new(
        store,
        PipelineSettings {
            min_level: config.min_level,
            max_stored_per_pattern_minute: config.max_stored_per_pattern_minute,
        },
    );
    let runs = crawler.run_once(&pipeline).await;
    bar.finish_and_clear();
    if json {
        outln!("{}", serde_json::to_string_pretty(&railway_crawl::summary(&runs))?)?;
    } else {
        for r in &runs {
            outln!(
                "{}: {} — {} logs fetched, {} errors stored, {} already stored, {} new patterns, {} requests, {} API errors, {} rate-limit waits, {} ms{}",
                r.target,
                r.outcome,
                r.logs_fetched,
                r.errors_stored,
                r.duplicates,
                r.new_patterns,
                r.api_requests,
                r.api_errors,
                r.rate_limit_waits,
                r.duration_ms,
                r.error.as_deref().map(|e| format!("\n  {e}")).unwrap_or_default()
            )?;
        }
    }
    if runs.iter().any(|r| r.outcome != railway_crawl::CrawlOutcome::Ok) {
        anyhow::bail!("some Railway crawls did not complete");
    }
    Ok(())
}

async fn railway_check(config: &Config) -> anyhow::Result<()> {
    config.railway_ready()?;
    let crawler = railway_crawl::Crawler::new(config)
        .context("no Railway targets: add [[railway.targets]] with project_id and environment_id")?;
    let lines = crawler.check().await;
    for line in &lines {
        outln!("{line}")?;
    }
    if lines.iter().any(|l| !l.ok) {
        anyhow::bail!("the Railway settings need attention");
    }
    Ok(())
}

async fn cleanup(store: Arc<dyn Store>, config: &Config, args: CleanupArgs) -> anyhow::Result<()> {
    let days = args.days.unwrap_or(config.retention_days);
    let before = now_ms() - i64::from(days) * DAY_MS;
    let report = store.cleanup(before, 5_000).await?;
    outln!(
        "deleted {} entries and {} per-minute count rows older than {days} days; the database file gave back {}",
        report.entries_deleted,
        report.minute_rows_deleted,
        output::bytes(report.bytes_freed)
    )?;
    Ok(())
}
