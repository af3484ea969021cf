//! Storage: the one place that writes SQL.
//!
//! [`Store`] is implemented twice with identical behaviour: [`SqliteStore`] (one file, WAL; the
//! default) and [`PgStore`] (PostgreSQL, for several instances sharing the work). Every method
//! is exercised by the same test body on both (see `tests/it`).

mod postgres;
mod sqlite;
mod types;

use std::path::Path;
use std::sync::Arc;

pub use postgres::PgStore;
pub use sqlite::{SqliteStore, bench_bare_insert};
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
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("postgres: {0}")]
    Postgres(#[from] sqlx::Error),
    #[error("invalid query: {0}")]
    InvalidQuery(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything faultline keeps, behind one interface.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Stores a batch of grouped events and the source's cursor in one transaction.
    async fn ingest(&self, batch: IngestBatch) -> Result<IngestOutcome>;
    /// The cursor saved with the last batch of `source_id`.
    async fn cursor(&self, source_id: &str) -> Result<Option<String>>;
    /// Every saved cursor whose source id starts with `prefix`: (source id, cursor, saved at).
    async fn cursors(&self, prefix: &str) -> Result<Vec<(String, String, i64)>>;
    /// Substring search over message and traceback with filters, newest first.
    async fn search(&self, query: &SearchQuery) -> Result<SearchPage>;
    /// Most frequent patterns (lifetime counts), optionally only those seen since a time.
    async fn top_patterns(&self, limit: u32, seen_since_ms: Option<i64>) -> Result<Vec<PatternRow>>;
    /// Patterns first seen at or after `since_ms`, newest first.
    async fn new_patterns(&self, since_ms: i64, limit: u32) -> Result<Vec<PatternRow>>;
    /// Patterns whose count in `[now - window, now)` grew against the window before it.
    async fn trending_patterns(&self, now_ms: i64, window_ms: i64, limit: u32) -> Result<Vec<Trend>>;
    /// One pattern by fingerprint.
    async fn pattern(&self, fingerprint: &str) -> Result<Option<PatternRow>>;
    /// Error counts in `[since, until)`: total, per minute, by source and by level.
    async fn error_rate(&self, since_ms: i64, until_ms: i64) -> Result<ErrorRate>;
    /// Counts per time bucket in `[since, until)`, every bucket present (zeros included).
    async fn counts_by_interval(
        &self,
        since_ms: i64,
        until_ms: i64,
        interval_minutes: u32,
    ) -> Result<Vec<Bucket>>;
    /// Deletes entries older than `before_ms` in batches and reclaims space.
    async fn cleanup(&self, before_ms: i64, batch_size: u32) -> Result<CleanupReport>;
    /// Records a finished job run; returns its id.
    async fn record_job_run(&self, run: &JobRun) -> Result<i64>;
    /// The newest job runs first, optionally of one job only.
    async fn job_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<JobRunRow>>;
}

/// Opens the store named by `url`: `postgres://…` / `postgresql://…`, or `sqlite://PATH` or a
/// plain file path for SQLite. Runs pending migrations.
pub async fn open(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(Arc::new(PgStore::connect(url).await?));
    }
    let path = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")).unwrap_or(url);
    if path.is_empty() || url.contains("://") && !url.starts_with("sqlite://") {
        return Err(StoreError::InvalidUrl { url: url.to_owned() });
    }
    Ok(Arc::new(SqliteStore::open(Path::new(path)).await?))
}
