//! Storage: the one place that writes SQL.
//!
//! [`Store`] is implemented twice with identical behaviour: [`SqliteStore`] (one file, WAL; the
//! default) and [`PgStore`] (PostgreSQL, for several instances sharing the work). Every method
//! is exercised by the same test body on both (see `tests/it`).

mod ids;
mod mining;
pub mod packed;
mod pipeline;
mod postgres;
mod postgres_alerts;
mod sql;
mod sqlite;
mod sqlite_alerts;
mod types;

use std::path::Path;
use std::sync::Arc;

use faultline_core::{PatternStatus, TaskStatus};

pub use ids::{FingerprintLookup, MIN_ID_PREFIX, SHORT_ID_CHARS, find_fingerprint, pattern_titles, short_id};
pub use mining::MinedAhead;
pub use pipeline::{Committed, Observer, Pipeline, PipelineSettings, SourceCounters, SourceKind, Submission};
pub use postgres::PgStore;
#[cfg(feature = "bench")]
pub use postgres::bench_copy_ceiling;
pub use sqlite::SqliteStore;
#[cfg(feature = "bench")]
pub use sqlite::bench_bare_insert;
pub use types::*;

/// Errors the store reports, named for what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database URL or path is not one faultline understands.
    #[error("invalid database url {url:?}: expected a file path, sqlite://PATH or postgres://…")]
    InvalidUrl { url: String },
    /// The database could not be reached or opened.
    #[error("cannot open database {target}: {detail}")]
    Unreachable { target: String, detail: String },
    #[error("database migration failed: {0}")]
    Migration(String),
    /// Another process holds the database (SQLite's write lock) past the busy timeout: try
    /// again shortly.
    #[error("database busy: {0}")]
    Busy(String),
    #[error("sqlite: {0}")]
    Sqlite(rusqlite::Error),
    #[error("postgres: {}", postgres_says(.0))]
    Postgres(#[from] sqlx::Error),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                StoreError::Busy(e.to_string())
            }
            _ => StoreError::Sqlite(e),
        }
    }
}

/// What PostgreSQL said, without the server's source location that sqlx appends ("… at line
/// 948" is a line of PostgreSQL's C code, of no use to the reader).
pub(crate) fn postgres_says(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => match db.code() {
            Some(code) => format!("{} (SQLSTATE {code})", db.message()),
            None => db.message().to_owned(),
        },
        other => other.to_string(),
    }
}

impl StoreError {
    /// True when the same call may succeed if tried again shortly.
    pub fn is_transient(&self) -> bool {
        matches!(self, StoreError::Busy(_))
            || matches!(self, StoreError::Postgres(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_)))
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything faultline keeps, behind one interface.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Stores a batch of grouped events and the source's cursor in one transaction. Message-tier
    /// events are mined first (their fingerprint and template become their mined group's).
    async fn ingest(&self, batch: IngestBatch) -> Result<IngestOutcome>;
    /// Mines the batch's message-tier events now, on the caller's thread, so that storing it
    /// only writes: a source reading on a thread of its own (`faultline ingest`) mines each batch
    /// there while the store writes the one before. Call it just before handing the batch to
    /// [`Store::ingest`], in the order the batches are to be stored. A store whose mining is
    /// part of the write (PostgreSQL, whose instances share the miner) leaves the batch as it is.
    fn mine_ahead(&self, _batch: &mut IngestBatch) {}
    /// Saves the template miner's state if anything was mined since it was last saved (ingest
    /// saves it in its own transactions when due; call this before stopping).
    async fn save_grouping(&self, now_ms: i64) -> Result<()>;
    /// The cursor saved with the last batch of `source_id`.
    async fn cursor(&self, source_id: &str) -> Result<Option<String>>;
    /// Every saved cursor whose source id starts with `prefix`.
    async fn cursors(&self, prefix: &str) -> Result<Vec<SavedCursor>>;
    /// Substring search over message and traceback with filters, newest first.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage>;
    /// Most frequent patterns (lifetime counts), optionally only those seen since a time.
    async fn top_patterns(&self, limit: u32, seen_since_ms: Option<i64>) -> Result<Vec<PatternRow>>;
    /// Patterns first seen at or after `since_ms`, newest first.
    async fn new_patterns(&self, since_ms: i64, limit: u32) -> Result<Vec<PatternRow>>;
    /// Patterns whose count in `[now - window, now)` grew against the window before it; a pattern
    /// first seen inside the window is new, not trending, and is left out.
    async fn trending_patterns(&self, now_ms: i64, window_ms: i64, limit: u32) -> Result<Vec<Trend>>;
    /// A page of patterns, filtered and ordered.
    async fn list_patterns(&self, query: &PatternQuery) -> Result<PatternPage>;
    /// The patterns with the most occurrences in `[since, until)` (from the minute counts), most
    /// first; ignored patterns are left out.
    async fn busiest_patterns(&self, since_ms: i64, until_ms: i64, limit: u32) -> Result<Vec<PatternCount>>;
    /// A pattern's stored occurrences, newest first (`None`: no such pattern).
    async fn occurrences(&self, fingerprint: &str, limit: u32, offset: u32) -> Result<Option<SearchPage>>;
    /// The oldest and the newest stored occurrence of each of these patterns (one row when they
    /// are the same entry, none when its entries are all gone), in no particular order.
    async fn oldest_and_newest(&self, fingerprints: &[String]) -> Result<Vec<EntryRow>>;
    /// One pattern by fingerprint.
    async fn pattern(&self, fingerprint: &str) -> Result<Option<PatternRow>>;
    /// Fingerprints that start with `prefix` (lowercase hex only), in order, at most `limit`; see
    /// [`find_fingerprint`] for what a person types.
    async fn fingerprints_with_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>>;
    /// Error counts in `[since, until)`: total, per minute, by source and by level.
    async fn error_rate(&self, since_ms: i64, until_ms: i64) -> Result<ErrorRate>;
    /// Counts per time bucket in `[since, until)`, every bucket present (zeros included), of
    /// every pattern or of the one with this fingerprint.
    async fn counts_by_interval(
        &self,
        since_ms: i64,
        until_ms: i64,
        interval_minutes: u32,
        fingerprint: Option<&str>,
    ) -> Result<Vec<Bucket>>;
    /// Deletes entries older than `before_ms` in batches and reclaims space.
    async fn cleanup(&self, before_ms: i64, batch_size: u32) -> Result<CleanupReport>;
    /// Records a finished job run; returns its id.
    async fn record_job_run(&self, run: &JobRun) -> Result<i64>;
    /// The newest job runs first, optionally of one job only.
    async fn job_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<JobRunRow>>;

    /// Creates the rules whose names are not stored yet; stored rules (maybe edited) stay.
    async fn seed_rules(&self, rules: &[NewRule], now_ms: i64) -> Result<()>;
    /// Every alert rule, by id.
    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>>;
    /// Creates a rule (names are unique).
    async fn create_rule(&self, rule: &NewRule, now_ms: i64) -> Result<RuleSaved>;
    /// Replaces a rule's name, type, condition, action, enabled flag and cooldown; its trigger
    /// history stays.
    async fn update_rule(&self, id: i64, rule: &NewRule) -> Result<RuleSaved>;
    /// Occurrences per minute of some patterns since a time.
    async fn pattern_minute_counts(&self, pattern_ids: &[i64], since_ms: i64) -> Result<Vec<MinuteCount>>;
    /// Records an alert with its task and its deliveries in one transaction; `None` when the
    /// subject had an alert within `draft.cooldown_ms` (perhaps from another instance). Past the
    /// draft's flood limits the alert and its task are recorded and the deliveries held back.
    async fn fire_alert(&self, draft: &AlertDraft) -> Result<Option<FiredAlert>>;
    /// One digest alert for the held-back alerts, once the oldest is old enough.
    async fn send_digest(&self, draft: &DigestDraft) -> Result<Option<FiredAlert>>;
    /// Claims up to `limit` rows of the alert feed (what batches committed, by any process) for
    /// `holder` until `until_ms`, oldest first; rows of a holder whose claim ran out come again.
    async fn claim_feed(&self, holder: &str, now_ms: i64, until_ms: i64, limit: u32)
    -> Result<Vec<FeedItem>>;
    /// Deletes evaluated feed rows.
    async fn finish_feed(&self, seqs: &[i64]) -> Result<()>;
    /// Takes the lease of a scheduled job for `holder` until `until_ms` if the job is due and no
    /// one else holds it (or their lease ran out); `false` otherwise.
    async fn claim_job(&self, job: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool>;
    /// Gives the lease back; the job is next due at `due_ms`.
    async fn finish_job(&self, job: &str, holder: &str, due_ms: i64) -> Result<()>;
    /// Alerts fired since a time, newest first.
    async fn alerts(&self, since_ms: i64, limit: u32) -> Result<Vec<AlertRow>>;
    /// Tasks, most recently updated first, optionally in one state.
    async fn tasks(&self, status: Option<TaskStatus>, limit: u32) -> Result<Vec<TaskRow>>;
    /// The pattern's open (or in-progress) task, if it has one.
    async fn open_task(&self, fingerprint: &str) -> Result<Option<TaskRow>>;
    /// One task and its history.
    async fn task(&self, id: i64) -> Result<Option<(TaskRow, Vec<TaskEvent>)>>;
    /// Moves a task to a state; `false` if no such task.
    async fn set_task_status(&self, id: i64, status: TaskStatus, now_ms: i64) -> Result<bool>;
    /// The pattern's open task, or a new one. `None` if no such pattern.
    async fn create_task(&self, fingerprint: &str, now_ms: i64) -> Result<Option<TaskCreated>>;
    /// Sets a pattern's status; resolving it closes its open task. `false` if no such pattern.
    async fn set_pattern_status(&self, fingerprint: &str, status: PatternStatus, now_ms: i64)
    -> Result<bool>;
    /// Leases up to `limit` due deliveries for `lease_ms` (a crashed worker's lease runs out).
    async fn claim_deliveries(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DeliveryJob>>;
    /// Records an attempt's result and releases the lease.
    async fn finish_delivery(&self, job: &DeliveryJob, result: &DeliveryResult, now_ms: i64) -> Result<()>;
    /// Deliveries, newest first, optionally of one alert.
    async fn deliveries(&self, alert_id: Option<i64>, limit: u32) -> Result<Vec<DeliveryRow>>;
    /// How big the store is now: its size on disk, patterns, the outbox's waiting deliveries.
    async fn gauges(&self) -> Result<StoreGauges>;
}

/// Opens the store named by `url`: `postgres://…` / `postgresql://…`, or `sqlite://PATH` or a
/// plain file path for SQLite. Runs pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::connect(url).await?));
    }
    let path = sqlite_path(url).ok_or_else(|| StoreError::InvalidUrl { url: url.to_owned() })?;
    Ok(Arc::new(SqliteStore::open(&path).await?))
}

/// The file a SQLite database URL names (`PATH`, `sqlite://PATH`, `sqlite:PATH`); `None` for
/// PostgreSQL and other URLs.
pub fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return None;
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    if path.is_empty() || url.contains("://") && !url.starts_with("sqlite://") {
        return None;
    }
    Some(Path::new(path).to_owned())
}
