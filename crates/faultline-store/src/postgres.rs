//! PostgreSQL implementation of [`Store`], for several faultline instances sharing one database.
//!
//! Same tables and behaviour as the SQLite store. PostgreSQL text cannot hold NUL characters,
//! so NULs in log content are stored as U+FFFD (the one place the two backends differ).

use std::borrow::Cow;
use std::collections::HashMap;

use faultline_core::{FINGERPRINT_VERSION, Level, PatternStatus, TaskStatus, UnknownState};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};
use tokio::sync::Mutex;

use crate::mining::{self, Mining};
use crate::postgres_alerts;
use crate::sql::*;
use crate::types::*;
use crate::{Result, Store, StoreError};

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    caches: Mutex<Caches>,
}

struct Caches {
    pattern_ids: HashMap<String, i64>,
    mining: Mining,
    /// Patterns of an older fingerprint version exist (they may match within the transition
    /// window).
    old_versions: bool,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl PgStore {
    /// Connects and applies pending migrations (serialised across instances by sqlx's lock).
    pub async fn connect(url: &str) -> Result<PgStore> {
        // One plain connection first: its error says what is wrong (refused, auth, no such
        // database) where the pool would only say it timed out.
        let probe =
            tokio::time::timeout(std::time::Duration::from_secs(10), sqlx::PgConnection::connect(url))
                .await
                .map_err(|_| StoreError::Unreachable {
                    target: redact(url),
                    detail: "timed out after 10s".into(),
                })?
                .map_err(|e| StoreError::Unreachable { target: redact(url), detail: e.to_string() })?;
        let _ = probe.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect(url)
            .await
            .map_err(|e| StoreError::Unreachable { target: redact(url), detail: e.to_string() })?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let saved: Option<String> = sqlx::query_scalar("SELECT state FROM grouper_state WHERE version = $1")
            .bind(mining::VERSION)
            .fetch_optional(&pool)
            .await?;
        let old_versions: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM patterns WHERE fingerprint_version < $1)")
                .bind(FINGERPRINT_VERSION)
                .fetch_one(&pool)
                .await?;
        let caches = Caches { pattern_ids: HashMap::new(), mining: Mining::load(saved), old_versions };
        Ok(PgStore { pool, caches: Mutex::new(caches) })
    }

    /// The pool, for tests and tools that need to look underneath.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// A database URL with any password replaced, fit for an error message.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

fn pg_text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') { Cow::Owned(s.replace('\0', "\u{FFFD}")) } else { Cow::Borrowed(s) }
}

fn pg_opt(s: &Option<String>) -> Option<Cow<'_, str>> {
    s.as_deref().map(pg_text)
}

const INSERT_PATTERN: &str =
    "INSERT INTO patterns (fingerprint, fingerprint_version, tier, normalized_message,
    error_type, frames, first_seen_ms, last_seen_ms, occurrence_count, stack_trace, source, severity,
    created_ms, updated_ms)
    VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $7, 0, $8, $9, $10, $11, $11)
    ON CONFLICT (fingerprint) DO NOTHING RETURNING id";

const INSERT_ENTRY: &str = "INSERT INTO entries (source_id, external_id, timestamp_ms, level, source,
    message, traceback, request_path, request_method, metadata, pattern_id, raw)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)
    ON CONFLICT (source_id, external_id) DO NOTHING RETURNING id";

const UPDATE_PATTERN: &str = "UPDATE patterns SET
    occurrence_count = occurrence_count + $1,
    first_seen_ms = LEAST(first_seen_ms, $2),
    last_seen_ms = GREATEST(last_seen_ms, $3),
    severity = CASE WHEN $4 = 'CRITICAL' OR severity = 'CRITICAL' THEN 'CRITICAL'
                    WHEN $4 = 'ERROR' OR severity = 'ERROR' THEN 'ERROR'
                    ELSE $4 END,
    sample_entry_id = coalesce(sample_entry_id, $5),
    sample_message = coalesce(sample_message, $8),
    normalized_message = coalesce($9, normalized_message),
    updated_ms = $6
    WHERE id = $7 RETURNING status";

const UPSERT_QUARTER: &str = "INSERT INTO quarter_counts (quarter_ms, pattern_id, source, level, count)
    VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (quarter_ms, pattern_id, source, level) DO UPDATE SET count = quarter_counts.count + excluded.count";

/// The counts of a window `[$1, $2)`: whole quarters `[$3, $4)` from `quarter_counts`, the edges
/// from `minute_counts` (as in SQLite).
const WINDOW_COUNTS: &str = "(SELECT quarter_ms AS t, pattern_id, source, level, count FROM quarter_counts
        WHERE quarter_ms >= $3 AND quarter_ms < $4
    UNION ALL SELECT minute_ms, pattern_id, source, level, count FROM minute_counts
        WHERE minute_ms >= $1 AND minute_ms < LEAST($2, $3)
    UNION ALL SELECT minute_ms, pattern_id, source, level, count FROM minute_counts
        WHERE minute_ms >= GREATEST($4, $1) AND minute_ms < $2) w";

const UPSERT_MINUTE: &str = "INSERT INTO minute_counts (minute_ms, pattern_id, source, level, count, stored,
    first_ms, last_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (minute_ms, pattern_id, source, level)
    DO UPDATE SET count = minute_counts.count + excluded.count, stored = minute_counts.stored + excluded.stored,
    first_ms = least(minute_counts.first_ms, excluded.first_ms),
    last_ms = greatest(minute_counts.last_ms, excluded.last_ms)";

const UPSERT_LINES: &str =
    "INSERT INTO line_counts (minute_ms, source_id, level, count) VALUES ($1, $2, $3, $4)
    ON CONFLICT (minute_ms, source_id, level) DO UPDATE SET count = line_counts.count + excluded.count";

const UPSERT_CURSOR: &str = "INSERT INTO source_cursors (source_id, cursor, updated_ms) VALUES ($1, $2, $3)
    ON CONFLICT (source_id) DO UPDATE SET cursor = excluded.cursor, updated_ms = excluded.updated_ms";

async fn save_state(tx: &mut Transaction<'_, Postgres>, state: &str, now_ms: i64) -> Result<()> {
    sqlx::query(
        "INSERT INTO grouper_state (version, state, updated_ms) VALUES ($1, $2, $3)
         ON CONFLICT (version) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms",
    )
    .bind(mining::VERSION)
    .bind(pg_text(state))
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn ingest_tx(
    tx: &mut Transaction<'_, Postgres>,
    caches: &mut Caches,
    batch: &IngestBatch,
) -> Result<IngestOutcome> {
    let mut outcome = IngestOutcome::default();
    let mut totals = BatchTotals::default();
    let cap = i64::from(batch.max_stored_per_pattern_minute);
    let mut stored = stored_in_batch_minutes(tx, batch).await?;
    let mut new_ids = std::collections::HashSet::new();
    for ge in &batch.events {
        let (event, g) = (&ge.event, &ge.grouping);
        let pattern_id = match caches.pattern_ids.get(g.fingerprint.as_str()) {
            Some(id) => *id,
            None => {
                let mut found: Option<i64> =
                    sqlx::query_scalar("SELECT id FROM patterns WHERE fingerprint = $1")
                        .bind(g.fingerprint.as_str())
                        .fetch_optional(&mut **tx)
                        .await?;
                if found.is_none()
                    && caches.old_versions
                    && let Some(previous) = &g.previous
                {
                    found = sqlx::query_scalar(
                        "SELECT id FROM patterns
                         WHERE fingerprint = $1 AND fingerprint_version < $2 AND last_seen_ms >= $3",
                    )
                    .bind(previous.as_str())
                    .bind(FINGERPRINT_VERSION)
                    .bind(batch.now_ms - mining::TRANSITION_WINDOW_MS)
                    .fetch_optional(&mut **tx)
                    .await?;
                }
                let inserted: Option<i64> = match found {
                    Some(_) => None,
                    None => {
                        sqlx::query_scalar(INSERT_PATTERN)
                            .bind(g.fingerprint.as_str())
                            .bind(FINGERPRINT_VERSION)
                            .bind(g.tier.as_str())
                            .bind(pg_text(&g.template))
                            .bind(pg_opt(&g.error_type))
                            .bind(pg_text(&frames_json(g)))
                            .bind(event.timestamp_ms)
                            .bind(pg_opt(&event.traceback))
                            .bind(pg_text(&event.source))
                            .bind(event.level.as_str())
                            .bind(batch.now_ms)
                            .fetch_optional(&mut **tx)
                            .await?
                    }
                };
                let id = match (found, inserted) {
                    (Some(id), _) => id,
                    (None, Some(id)) => {
                        outcome.new_patterns += 1;
                        new_ids.insert(id);
                        id
                    }
                    (None, None) => {
                        sqlx::query_scalar("SELECT id FROM patterns WHERE fingerprint = $1")
                            .bind(g.fingerprint.as_str())
                            .fetch_one(&mut **tx)
                            .await?
                    }
                };
                caches.pattern_ids.insert(g.fingerprint.as_str().to_owned(), id);
                id
            }
        };
        let minute = minute_of(event.timestamp_ms);
        let stored_so_far = stored.entry((pattern_id, minute)).or_insert(0);
        if *stored_so_far >= cap {
            outcome.capped += 1;
            totals.add(pattern_id, ge, None);
            continue;
        }
        // `from_events` took the NULs out of the metadata before it was serialised.
        let metadata =
            (!event.metadata.is_empty()).then(|| serde_json::to_string(&event.metadata).unwrap_or_default());
        let id: Option<i64> = sqlx::query_scalar(INSERT_ENTRY)
            .bind(pg_text(&event.origin.source_id))
            .bind(pg_text(&event.idempotency_key()))
            .bind(event.timestamp_ms)
            .bind(event.level.as_str())
            .bind(pg_text(&event.source))
            .bind(pg_text(&event.message))
            .bind(pg_opt(&event.traceback))
            .bind(pg_opt(&event.request_path))
            .bind(pg_opt(&event.request_method))
            .bind(metadata)
            .bind(pattern_id)
            .bind(pg_text(&event.raw))
            .fetch_optional(&mut **tx)
            .await?;
        let Some(id) = id else {
            outcome.duplicates += 1;
            continue;
        };
        *stored_so_far += 1;
        outcome.stored += 1;
        totals.add(pattern_id, ge, Some(id));
    }
    for (pattern_id, d) in &totals.patterns {
        let regressed = sqlx::query(REGRESS_PATTERN)
            .bind(batch.now_ms)
            .bind(pattern_id)
            .execute(&mut **tx)
            .await?
            .rows_affected()
            == 1;
        let status: String = sqlx::query_scalar(UPDATE_PATTERN)
            .bind(d.count)
            .bind(d.first_ms)
            .bind(d.last_ms)
            .bind(d.level.as_str())
            .bind(d.sample)
            .bind(batch.now_ms)
            .bind(pattern_id)
            .bind(d.sample_message.as_deref().map(pg_text))
            .bind(d.template.as_deref().map(pg_text))
            .fetch_one(&mut **tx)
            .await?;
        outcome.touched.push(TouchedPattern {
            pattern_id: *pattern_id,
            new: new_ids.contains(pattern_id),
            regressed,
            status: status.parse().map_err(|e: UnknownState| sqlx::Error::Decode(Box::new(e)))?,
            highest_level: d.level,
        });
    }
    for ((minute_ms, pattern_id, source, level), m) in &totals.minutes {
        sqlx::query(UPSERT_MINUTE)
            .bind(minute_ms)
            .bind(pattern_id)
            .bind(pg_text(source))
            .bind(*level)
            .bind(m.count)
            .bind(m.stored)
            .bind(m.first_ms)
            .bind(m.last_ms)
            .execute(&mut **tx)
            .await?;
    }
    for t in &outcome.touched {
        sqlx::query(INSERT_FEED)
            .bind(t.pattern_id)
            .bind(t.new)
            .bind(t.regressed)
            .bind(t.highest_level.as_str())
            .bind(t.status.as_str())
            .bind(batch.now_ms)
            .execute(&mut **tx)
            .await?;
    }
    for ((quarter_ms, pattern_id, source, level), count) in quarter_totals(&totals.minutes) {
        sqlx::query(UPSERT_QUARTER)
            .bind(quarter_ms)
            .bind(pattern_id)
            .bind(pg_text(source))
            .bind(level)
            .bind(count)
            .execute(&mut **tx)
            .await?;
    }
    for c in &batch.skipped {
        sqlx::query(UPSERT_LINES)
            .bind(c.minute)
            .bind(pg_text(&c.source_id))
            .bind(c.level.as_str())
            .bind(c.count as i64)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(cursor) = &batch.cursor {
        sqlx::query(UPSERT_CURSOR)
            .bind(pg_text(&batch.source_id))
            .bind(pg_text(cursor))
            .bind(batch.now_ms)
            .execute(&mut **tx)
            .await?;
    }
    Ok(outcome)
}

/// Raw entries already stored per (pattern, minute) within the batch's time span.
async fn stored_in_batch_minutes(
    tx: &mut Transaction<'_, Postgres>,
    batch: &IngestBatch,
) -> Result<HashMap<(i64, i64), i64>> {
    let Some((first, last)) = batch_minute_span(batch) else { return Ok(HashMap::new()) };
    let rows = sqlx::query(
        "SELECT pattern_id, minute_ms, sum(stored)::bigint FROM minute_counts
         WHERE minute_ms BETWEEN $1 AND $2 AND stored > 0 GROUP BY pattern_id, minute_ms",
    )
    .bind(first)
    .bind(last)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter()
        .map(|r| Ok(((r.try_get(0)?, r.try_get(1)?), r.try_get(2)?)))
        .collect::<Result<HashMap<_, _>, sqlx::Error>>()
        .map_err(Into::into)
}

fn entry_row(r: &PgRow) -> Result<EntryRow, sqlx::Error> {
    Ok(EntryRow {
        id: r.try_get(0)?,
        timestamp_ms: r.try_get(1)?,
        level: r.try_get(2)?,
        source: r.try_get(3)?,
        message: r.try_get(4)?,
        traceback: r.try_get(5)?,
        request_path: r.try_get(6)?,
        request_method: r.try_get(7)?,
        metadata: r.try_get::<Option<serde_json::Value>, _>(8)?.unwrap_or(serde_json::Value::Null),
        fingerprint: r.try_get(9)?,
        raw: r.try_get(10)?,
        source_id: r.try_get(11)?,
        external_id: r.try_get(12)?,
    })
}

pub(crate) fn pattern_row(r: &PgRow) -> Result<PatternRow, sqlx::Error> {
    let frames: serde_json::Value = r.try_get(5)?;
    Ok(PatternRow {
        fingerprint: r.try_get(0)?,
        fingerprint_version: r.try_get(1)?,
        tier: r.try_get(2)?,
        normalized_message: r.try_get(3)?,
        error_type: r.try_get(4)?,
        frames: serde_json::from_value(frames).unwrap_or_default(),
        first_seen_ms: r.try_get(6)?,
        last_seen_ms: r.try_get(7)?,
        occurrence_count: r.try_get(8)?,
        sample_message: r.try_get(9)?,
        stack_trace: r.try_get(10)?,
        source: r.try_get(11)?,
        severity: r.try_get(12)?,
        status: state(r, 13)?,
    })
}

/// Column `i` as one of a closed set of states (only their names are ever written).
pub(crate) fn state<T: std::str::FromStr<Err = UnknownState>>(r: &PgRow, i: usize) -> Result<T, sqlx::Error> {
    let text: String = r.try_get(i)?;
    text.parse()
        .map_err(|e: UnknownState| sqlx::Error::ColumnDecode { index: i.to_string(), source: Box::new(e) })
}

const SEARCH_FILTERS: &str = "($1::text IS NULL OR e.level = $1)
    AND ($2::text IS NULL OR e.source = $2)
    AND ($3::text IS NULL OR e.source LIKE $3)
    AND ($4::bigint IS NULL OR e.timestamp_ms >= $4)
    AND ($5::bigint IS NULL OR e.timestamp_ms < $5)";
/// The same expression the trigram GIN index is built on, so the planner can use it.
const TEXT_FILTER: &str = "(e.message || E'\\n' || coalesce(e.traceback, '')) ILIKE $6";
const NO_TEXT: &str = "$6::text IS NULL";

fn search_sql(text: &str, count: bool) -> String {
    if count {
        format!("SELECT count(*) FROM (SELECT 1 FROM entries e WHERE {SEARCH_FILTERS} AND {text} LIMIT $7) c")
    } else {
        format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e JOIN patterns p ON p.id = e.pattern_id
             WHERE {SEARCH_FILTERS} AND {text} ORDER BY e.timestamp_ms DESC, e.id DESC LIMIT $7 OFFSET $8"
        )
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn ingest(&self, mut batch: IngestBatch) -> Result<IngestOutcome> {
        for ge in &mut batch.events {
            replace_nul(&mut ge.event);
        }
        let mut caches = self.caches.lock().await;
        let state = caches.mining.mine(&mut batch);
        let mut tx = self.pool.begin().await?;
        let mut result = ingest_tx(&mut tx, &mut caches, &batch).await;
        if let (Ok(_), Some(state)) = (&result, &state)
            && let Err(e) = save_state(&mut tx, state, batch.now_ms).await
        {
            result = Err(e);
        }
        let committed = match result {
            Ok(outcome) => tx.commit().await.map(|()| outcome).map_err(StoreError::from),
            Err(e) => Err(e),
        };
        let caches = &mut *caches;
        settle_batch(committed, state.is_some(), batch.now_ms, &mut caches.mining, &mut caches.pattern_ids)
    }

    async fn save_grouping(&self, now_ms: i64) -> Result<()> {
        let mut caches = self.caches.lock().await;
        if let Some(state) = caches.mining.unsaved() {
            let mut tx = self.pool.begin().await?;
            save_state(&mut tx, &state, now_ms).await?;
            tx.commit().await?;
            caches.mining.saved(now_ms);
        }
        Ok(())
    }

    async fn cursor(&self, source_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar("SELECT cursor FROM source_cursors WHERE source_id = $1")
            .bind(pg_text(source_id))
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn cursors(&self, prefix: &str) -> Result<Vec<SavedCursor>> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT source_id, cursor, updated_ms FROM source_cursors
             WHERE source_id LIKE $1 ESCAPE '\\' ORDER BY source_id",
        )
        .bind(like_prefix(&pg_text(prefix)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(source_id, cursor, saved_ms)| SavedCursor { source_id, cursor, saved_ms })
            .collect())
    }

    async fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        let text = q.text.as_deref().filter(|t| !t.is_empty()).map(|t| like_pattern(&pg_text(t)));
        let variant = if text.is_some() { TEXT_FILTER } else { NO_TEXT };
        let (exact, prefix) = match &q.source {
            Some(SourceFilter::Exact(s)) => (Some(s.clone()), None),
            Some(SourceFilter::Prefix(p)) => (None, Some(like_prefix(p))),
            None => (None, None),
        };
        let level = q.level.map(Level::as_str);
        let count_sql = search_sql(variant, true);
        let cap = q.count_cap.map_or(i64::MAX - 1, |c| c.min(i64::MAX as u64 - 1) as i64);
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(count_sql))
            .bind(level)
            .bind(&exact)
            .bind(&prefix)
            .bind(q.since_ms)
            .bind(q.until_ms)
            .bind(&text)
            .bind(cap + 1)
            .fetch_one(&self.pool)
            .await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(search_sql(variant, false)))
            .bind(level)
            .bind(&exact)
            .bind(&prefix)
            .bind(q.since_ms)
            .bind(q.until_ms)
            .bind(&text)
            .bind(i64::from(q.limit))
            .bind(i64::from(q.offset))
            .fetch_all(&self.pool)
            .await?;
        let entries = rows.iter().map(entry_row).collect::<Result<Vec<_>, _>>()?;
        let total_capped = total > cap;
        Ok(SearchPage { total: total.min(cap) as u64, total_capped, entries })
    }

    async fn list_patterns(&self, q: &PatternQuery) -> Result<PatternPage> {
        let level = q.level.map(Level::as_str);
        let status = q.status.map(PatternStatus::as_str);
        let filters = "($1::text IS NULL OR p.status = $1) AND ($2::text IS NULL OR p.source = $2)
            AND ($3::text IS NULL OR p.severity = $3) AND ($4::bigint IS NULL OR p.last_seen_ms >= $4)
            AND ($5::bigint IS NULL OR p.last_seen_ms < $5)";
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM patterns p WHERE {filters}"
        )))
        .bind(status)
        .bind(&q.source)
        .bind(level)
        .bind(q.seen_since_ms)
        .bind(q.quiet_since_ms)
        .fetch_one(&self.pool)
        .await?;
        let sql = format!(
            "SELECT {PATTERN_COLUMNS} FROM patterns p WHERE {filters} ORDER BY {} LIMIT $6 OFFSET $7",
            q.order.sql()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status)
            .bind(&q.source)
            .bind(level)
            .bind(q.seen_since_ms)
            .bind(q.quiet_since_ms)
            .bind(i64::from(q.limit))
            .bind(i64::from(q.offset))
            .fetch_all(&self.pool)
            .await?;
        Ok(PatternPage {
            total: total as u64,
            patterns: rows.iter().map(pattern_row).collect::<Result<Vec<_>, _>>()?,
        })
    }

    async fn occurrences(&self, fingerprint: &str, limit: u32, offset: u32) -> Result<Option<SearchPage>> {
        let found: Option<(i64, i64)> = sqlx::query_as(
            "SELECT p.id, (SELECT count(*) FROM entries e WHERE e.pattern_id = p.id)
             FROM patterns p WHERE p.fingerprint = $1",
        )
        .bind(fingerprint)
        .fetch_optional(&self.pool)
        .await?;
        let Some((id, total)) = found else { return Ok(None) };
        let sql = format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e JOIN patterns p ON p.id = e.pattern_id
             WHERE e.pattern_id = $1 ORDER BY e.timestamp_ms DESC, e.id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(i64::from(limit))
            .bind(i64::from(offset))
            .fetch_all(&self.pool)
            .await?;
        let entries = rows.iter().map(entry_row).collect::<Result<Vec<_>, _>>()?;
        Ok(Some(SearchPage { total: total as u64, total_capped: false, entries }))
    }

    async fn top_patterns(&self, limit: u32, seen_since_ms: Option<i64>) -> Result<Vec<PatternRow>> {
        let sql = format!(
            "SELECT {PATTERN_COLUMNS} FROM patterns p WHERE ($1::bigint IS NULL OR p.last_seen_ms >= $1)
             ORDER BY p.occurrence_count DESC, p.id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(seen_since_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(pattern_row).collect::<Result<Vec<_>, _>>()?)
    }

    async fn busiest_patterns(&self, since_ms: i64, until_ms: i64, limit: u32) -> Result<Vec<PatternCount>> {
        let sql = format!(
            "SELECT {PATTERN_COLUMNS}, t.n FROM (
                SELECT pattern_id, sum(count)::bigint AS n FROM {WINDOW_COUNTS}
                GROUP BY pattern_id ORDER BY n DESC LIMIT $5
             ) t JOIN patterns p ON p.id = t.pattern_id ORDER BY t.n DESC, p.id"
        );
        let since = minute_of(since_ms);
        let (first, end) = quarter_span(since, until_ms);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .bind(until_ms)
            .bind(first)
            .bind(end)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(PatternCount { pattern: pattern_row(r)?, count: r.try_get::<i64, _>(14)? as u64 }))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn new_patterns(&self, since_ms: i64, limit: u32) -> Result<Vec<PatternRow>> {
        let sql = format!(
            "SELECT {PATTERN_COLUMNS} FROM patterns p WHERE p.first_seen_ms >= $1
             ORDER BY p.first_seen_ms DESC, p.id LIMIT $2"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(pattern_row).collect::<Result<Vec<_>, _>>()?)
    }

    async fn trending_patterns(&self, now_ms: i64, window_ms: i64, limit: u32) -> Result<Vec<Trend>> {
        let sql = format!(
            "SELECT {PATTERN_COLUMNS}, t.recent, t.previous FROM (
                SELECT pattern_id,
                       sum(CASE WHEN minute_ms >= $2 THEN count ELSE 0 END)::bigint AS recent,
                       sum(CASE WHEN minute_ms < $2 THEN count ELSE 0 END)::bigint AS previous
                FROM minute_counts WHERE minute_ms >= $1 AND minute_ms < $3 GROUP BY pattern_id
             ) t JOIN patterns p ON p.id = t.pattern_id
             WHERE t.recent > t.previous AND p.first_seen_ms < $2 ORDER BY t.recent - t.previous DESC, p.id LIMIT $4"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now_ms - 2 * window_ms)
            .bind(now_ms - window_ms)
            .bind(now_ms)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(Trend { pattern: pattern_row(r)?, recent: r.try_get(14)?, previous: r.try_get(15)? }))
            .collect::<Result<Vec<_>, sqlx::Error>>()
            .map_err(Into::into)
    }

    async fn fingerprints_with_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let (low, high) = prefix_range(&pg_text(prefix));
        Ok(sqlx::query_scalar(
            "SELECT fingerprint FROM patterns WHERE fingerprint >= $1 AND fingerprint < $2
             ORDER BY fingerprint LIMIT $3",
        )
        .bind(low)
        .bind(high)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?)
    }

    async fn pattern(&self, fingerprint: &str) -> Result<Option<PatternRow>> {
        let sql = format!("SELECT {PATTERN_COLUMNS} FROM patterns p WHERE p.fingerprint = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(fingerprint).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(pattern_row).transpose()?)
    }

    async fn error_rate(&self, since_ms: i64, until_ms: i64) -> Result<ErrorRate> {
        let sql =
            format!("SELECT source, level, sum(count)::bigint FROM {WINDOW_COUNTS} GROUP BY source, level");
        let since = minute_of(since_ms);
        let (first, end) = quarter_span(since, until_ms);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since)
            .bind(until_ms)
            .bind(first)
            .bind(end)
            .fetch_all(&self.pool)
            .await?;
        let found = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<(String, String, i64)>, sqlx::Error>>()?;
        Ok(ErrorRate::from_counts(found, since_ms, until_ms))
    }

    async fn counts_by_interval(
        &self,
        since_ms: i64,
        until_ms: i64,
        interval_minutes: u32,
    ) -> Result<Vec<Bucket>> {
        let width = bucket_width(interval_minutes)?;
        let sql = format!(
            "SELECT (t - $1) / $5 AS bucket, level, sum(count)::bigint FROM {WINDOW_COUNTS} GROUP BY bucket, level"
        );
        let (first, end) = bucket_quarters(since_ms, until_ms, width);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since_ms)
            .bind(until_ms)
            .bind(first)
            .bind(end)
            .bind(width)
            .fetch_all(&self.pool)
            .await?;
        let found = rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect::<Result<Vec<(i64, String, i64)>, sqlx::Error>>()?;
        Ok(fill_buckets(since_ms, until_ms, width, found))
    }

    async fn cleanup(&self, before_ms: i64, batch_size: u32) -> Result<CleanupReport> {
        let mut report = CleanupReport::default();
        loop {
            let n = sqlx::query(
                "DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE timestamp_ms < $1 LIMIT $2)",
            )
            .bind(before_ms)
            .bind(i64::from(batch_size))
            .execute(&self.pool)
            .await?
            .rows_affected();
            report.entries_deleted += n;
            if n < u64::from(batch_size) {
                break;
            }
        }
        let mut tx = self.pool.begin().await?;
        report.minute_rows_deleted = sqlx::query("DELETE FROM minute_counts WHERE minute_ms < $1")
            .bind(minute_of(before_ms))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM line_counts WHERE minute_ms < $1")
            .bind(minute_of(before_ms))
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM quarter_counts WHERE quarter_ms + $2 <= $1")
            .bind(minute_of(before_ms))
            .bind(QUARTER_MS)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE patterns SET sample_entry_id = (SELECT max(id) FROM entries WHERE pattern_id = patterns.id)
             WHERE sample_entry_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM entries WHERE id = sample_entry_id)",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sqlx::query("VACUUM (ANALYZE) entries").execute(&self.pool).await?;
        Ok(report)
    }

    async fn record_job_run(&self, run: &JobRun) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO job_runs (job, started_ms, finished_ms, outcome, detail, instance)
             VALUES ($1, $2, $3, $4, $5::jsonb, $6) RETURNING id",
        )
        .bind(&run.job)
        .bind(run.started_ms)
        .bind(run.finished_ms)
        .bind(&run.outcome)
        // JSONB refuses NUL even escaped; as elsewhere in PostgreSQL, it becomes U+FFFD.
        .bind(json_without_nul(run.detail.clone()).to_string())
        .bind(pg_text(&run.instance))
        .fetch_one(&self.pool)
        .await?)
    }

    async fn job_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<JobRunRow>> {
        type Row = (i64, String, i64, Option<i64>, Option<String>, Option<String>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT id, job, started_ms, finished_ms, outcome, detail::text, instance FROM job_runs
             WHERE $1::text IS NULL OR job = $1 ORDER BY started_ms DESC, id DESC LIMIT $2",
        )
        .bind(job)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, job, started_ms, finished_ms, outcome, detail, instance)| JobRunRow {
                id,
                run: JobRun {
                    job,
                    instance: instance.unwrap_or_default(),
                    started_ms,
                    finished_ms: finished_ms.unwrap_or_default(),
                    outcome: outcome.unwrap_or_default(),
                    detail: detail.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
                },
            })
            .collect())
    }

    async fn seed_rules(&self, rules: &[NewRule], now_ms: i64) -> Result<()> {
        postgres_alerts::seed_rules(&self.pool, rules, now_ms).await
    }

    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>> {
        postgres_alerts::alert_rules(&self.pool).await
    }

    async fn create_rule(&self, rule: &NewRule, now_ms: i64) -> Result<RuleSaved> {
        postgres_alerts::save_rule(&self.pool, None, rule, now_ms).await
    }

    async fn update_rule(&self, id: i64, rule: &NewRule) -> Result<RuleSaved> {
        postgres_alerts::save_rule(&self.pool, Some(id), rule, 0).await
    }

    async fn pattern_minute_counts(&self, pattern_ids: &[i64], since_ms: i64) -> Result<Vec<MinuteCount>> {
        postgres_alerts::pattern_minute_counts(&self.pool, pattern_ids, since_ms).await
    }

    async fn fire_alert(&self, draft: &AlertDraft) -> Result<Option<FiredAlert>> {
        postgres_alerts::fire_alert(&self.pool, draft).await
    }

    async fn send_digest(&self, draft: &DigestDraft) -> Result<Option<FiredAlert>> {
        postgres_alerts::send_digest(&self.pool, draft).await
    }

    async fn claim_feed(
        &self,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<Vec<FeedItem>> {
        postgres_alerts::claim_feed(&self.pool, holder, now_ms, until_ms, limit).await
    }

    async fn finish_feed(&self, seqs: &[i64]) -> Result<()> {
        postgres_alerts::finish_feed(&self.pool, seqs).await
    }

    async fn claim_job(&self, job: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        postgres_alerts::claim_job(&self.pool, job, holder, now_ms, until_ms).await
    }

    async fn finish_job(&self, job: &str, holder: &str, due_ms: i64) -> Result<()> {
        postgres_alerts::finish_job(&self.pool, job, holder, due_ms).await
    }

    async fn alerts(&self, since_ms: i64, limit: u32) -> Result<Vec<AlertRow>> {
        postgres_alerts::alerts(&self.pool, since_ms, limit).await
    }

    async fn tasks(&self, status: Option<TaskStatus>, limit: u32) -> Result<Vec<TaskRow>> {
        postgres_alerts::tasks(&self.pool, status, limit).await
    }

    async fn open_task(&self, fingerprint: &str) -> Result<Option<TaskRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(open_task_of_pattern_sql()))
            .bind(pg_text(fingerprint))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(postgres_alerts::task_row).transpose()?)
    }

    async fn task(&self, id: i64) -> Result<Option<(TaskRow, Vec<TaskEvent>)>> {
        postgres_alerts::task(&self.pool, id).await
    }

    async fn set_task_status(&self, id: i64, status: TaskStatus, now_ms: i64) -> Result<bool> {
        postgres_alerts::set_task_status(&self.pool, id, status, now_ms).await
    }

    async fn create_task(&self, fingerprint: &str, now_ms: i64) -> Result<Option<TaskCreated>> {
        postgres_alerts::create_task(&self.pool, &pg_text(fingerprint), now_ms).await
    }

    async fn set_pattern_status(
        &self,
        fingerprint: &str,
        status: PatternStatus,
        now_ms: i64,
    ) -> Result<bool> {
        postgres_alerts::set_pattern_status(&self.pool, &pg_text(fingerprint), status, now_ms).await
    }

    async fn claim_deliveries(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DeliveryJob>> {
        postgres_alerts::claim_deliveries(&self.pool, now_ms, lease_ms, limit).await
    }

    async fn finish_delivery(&self, job: &DeliveryJob, result: &DeliveryResult, now_ms: i64) -> Result<()> {
        postgres_alerts::finish_delivery(&self.pool, job, result, now_ms).await
    }

    async fn deliveries(&self, alert_id: Option<i64>, limit: u32) -> Result<Vec<DeliveryRow>> {
        postgres_alerts::deliveries(&self.pool, alert_id, limit).await
    }

    async fn gauges(&self) -> Result<StoreGauges> {
        let (database_bytes, patterns, outbox_pending): (i64, i64, i64) = sqlx::query_as(
            "SELECT pg_database_size(current_database()), (SELECT count(*) FROM patterns),
                    (SELECT count(*) FROM deliveries WHERE status = 'pending')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(StoreGauges { database_bytes, patterns, outbox_pending })
    }
}
