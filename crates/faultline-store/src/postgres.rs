//! PostgreSQL implementation of [`Store`], for several faultline instances sharing one database.
//!
//! Same tables and behaviour as the SQLite store. PostgreSQL text cannot hold NUL characters,
//! so NULs in log content are stored as U+FFFD (the one place the two backends differ).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use faultline_core::{DAY_MS, FINGERPRINT_VERSION, Level, PatternStatus, TaskStatus, UnknownState};
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use sqlx::postgres::{PgPool, PgPoolOptions, PgRow};
use sqlx::{Connection, Postgres, Row, Transaction};
use tokio::sync::Mutex;

use crate::mining::{self, BucketWrite, SharedMining};
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
    mining: SharedMining,
    /// Patterns of an older fingerprint version exist (they may match within the transition
    /// window).
    old_versions: bool,
    /// Days (their first millisecond) whose partition of `entries` this instance made or found.
    partition_days: HashSet<i64>,
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
                .map_err(|e| StoreError::Unreachable {
                    target: redact(url),
                    detail: crate::postgres_says(&e),
                })?;
        let _ = probe.close().await;
        // No JIT: its compile time (0.3–0.5 s with inlining and optimisation) is paid by every
        // query whose estimated cost passes `jit_above_cost`, and the search's generic plans are
        // priced far above it (a join on chunk id ranges over every day) while running in
        // milliseconds. No query here scans long enough to win it back.
        let options = sqlx::postgres::PgConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unreachable { target: redact(url), detail: crate::postgres_says(&e) })?
            .options([("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Unreachable { target: redact(url), detail: crate::postgres_says(&e) })?;
        MIGRATOR.run(&pool).await.map_err(|e| StoreError::Migration(e.to_string()))?;
        let now = wall_clock_ms();
        let days: HashSet<i64> =
            (now - DAY_MS..now + PARTITIONS_AHEAD_MS).step_by(DAY_MS as usize).map(day_of).collect();
        create_partitions(&pool, days.iter().copied()).await?;
        split_saved_state(&pool, now).await?;
        let old_versions: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM patterns WHERE fingerprint_version < $1)")
                .bind(FINGERPRINT_VERSION)
                .fetch_one(&pool)
                .await?;
        let caches = Caches {
            pattern_ids: HashMap::new(),
            mining: SharedMining::new(),
            old_versions,
            partition_days: days,
        };
        Ok(PgStore { pool, caches: Mutex::new(caches) })
    }

    /// The pool, for tests and tools that need to look underneath.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// How far ahead of today day partitions of `entries` are made: when a store opens and each time
/// the retention job runs (daily by default), so a day's partition exists before its entries come.
const PARTITIONS_AHEAD_MS: i64 = 7 * DAY_MS;

/// How far back a batch's entries make their day's partition as they are stored; older days wait
/// in the default partition until the retention job makes theirs (a backfill of years would
/// otherwise make a partition per day).
const PARTITIONS_BACK_MS: i64 = 31 * DAY_MS;

fn day_of(ms: i64) -> i64 {
    ms - ms.rem_euclid(DAY_MS)
}

fn wall_clock_ms() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since.as_millis()).unwrap_or(i64::MAX)
}

/// Makes the day partitions of `entries` holding each of `times` that do not exist yet, each in a
/// transaction of its own (creating one locks `entries` until its commit); entries of a new day
/// waiting in the default partition move into it. Returns how many were made.
async fn create_partitions(pool: &PgPool, times: impl Iterator<Item = i64>) -> Result<u64> {
    let mut made = 0;
    for at in times {
        let mut tx = pool.begin().await?;
        let created: bool =
            sqlx::query_scalar("SELECT entries_partition_for($1)").bind(at).fetch_one(&mut *tx).await?;
        tx.commit().await?;
        made += u64::from(created);
    }
    Ok(made)
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

// The batch's rows go in as one array per column (`UNNEST`): one statement per table.

/// New patterns; returns the (fingerprint, id) of those inserted.
const INSERT_PATTERNS: &str = "INSERT INTO patterns (fingerprint, fingerprint_version, tier,
    normalized_message, error_type, frames, first_seen_ms, last_seen_ms, occurrence_count, stack_trace,
    source, severity, created_ms, updated_ms)
    SELECT f, $2, tier, template, error_type, frames::jsonb, ts, ts, 0, traceback, source, level, $11, $11
    FROM UNNEST($1::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[], $8::text[],
        $9::text[], $10::text[])
        AS n(f, tier, template, error_type, frames, ts, traceback, source, level)
    ON CONFLICT (fingerprint) DO NOTHING RETURNING fingerprint, id";

/// Entries with distinct keys, for a small batch; returns (id, source id, key) of those not stored
/// before. A key is claimed in `entry_keys` (unique whatever the entry's time, which partitions
/// `entries`); only the entries whose key was new are inserted, in the batch's order.
const INSERT_ENTRIES: &str = "WITH n AS (
        SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[], $12::text[]) WITH ORDINALITY
            AS n(source_id, external_id, ts, level, source, message, traceback, path, method, metadata,
                pattern_id, raw, ord)),
    k AS (INSERT INTO entry_keys (source_id, external_id, timestamp_ms)
        SELECT source_id, external_id, ts FROM n
        ON CONFLICT (source_id, external_id) DO NOTHING RETURNING source_id, external_id)
    INSERT INTO entries (source_id, external_id, timestamp_ms, level, source, message, traceback,
        request_path, request_method, metadata, pattern_id, raw)
    SELECT n.source_id, n.external_id, ts, level, source, message, traceback, path, method, metadata::jsonb,
        pattern_id, raw
    FROM n JOIN k ON k.source_id = n.source_id AND k.external_id = n.external_id
    ORDER BY ord
    RETURNING id, source_id, external_id";

/// Claims entries' keys in `entry_keys` (unique whatever the entry's time, which partitions
/// `entries`); returns the keys that were not claimed before.
const CLAIM_KEYS: &str = "INSERT INTO entry_keys (source_id, external_id, timestamp_ms)
    SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[])
    ON CONFLICT (source_id, external_id) DO NOTHING RETURNING source_id, external_id";

/// The entries' columns, in the order [`CopyRows::entry`] writes them.
const COPY_ENTRIES: &str = "COPY entries (id, source_id, external_id, timestamp_ms, level, source, message,
    traceback, request_path, request_method, metadata, pattern_id, raw) FROM STDIN (FORMAT binary)";

/// The batch's occurrences added to its patterns (rows locked first); returns each one's status.
const UPDATE_PATTERNS: &str = "UPDATE patterns p SET
    occurrence_count = p.occurrence_count + d.count,
    first_seen_ms = LEAST(p.first_seen_ms, d.first_ms),
    last_seen_ms = GREATEST(p.last_seen_ms, d.last_ms),
    severity = CASE WHEN d.level = 'CRITICAL' OR p.severity = 'CRITICAL' THEN 'CRITICAL'
                    WHEN d.level = 'ERROR' OR p.severity = 'ERROR' THEN 'ERROR'
                    ELSE d.level END,
    sample_entry_id = coalesce(p.sample_entry_id, d.sample),
    sample_message = coalesce(p.sample_message, d.sample_message),
    normalized_message = coalesce(d.template, p.normalized_message),
    updated_ms = $1
    FROM UNNEST($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[],
        $8::text[], $9::text[]) AS d(id, count, first_ms, last_ms, level, sample, sample_message, template)
    WHERE p.id = d.id RETURNING p.id, p.status";

/// One alert-feed row per pattern the batch touched.
const INSERT_FEEDS: &str = "INSERT INTO alert_feed (pattern_id, new, regressed, level, status, committed_ms)
    SELECT pattern_id, new, regressed, level, status, $6
    FROM UNNEST($1::bigint[], $2::boolean[], $3::boolean[], $4::text[], $5::text[])
        AS n(pattern_id, new, regressed, level, status)";

const UPSERT_QUARTERS: &str = "INSERT INTO quarter_counts (quarter_ms, pattern_id, source, level, count)
    SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[])
    ON CONFLICT (quarter_ms, pattern_id, source, level) DO UPDATE SET count = quarter_counts.count + excluded.count";

/// The counts of a window `[$1, $2)`: whole quarters `[$3, $4)` from `quarter_counts`, the edges
/// from `minute_counts` (as in SQLite).
const WINDOW_COUNTS: &str = "(SELECT quarter_ms AS t, pattern_id, source, level, count FROM quarter_counts
        WHERE quarter_ms >= $3 AND quarter_ms < $4
    UNION ALL SELECT minute_ms, pattern_id, source, level, count FROM minute_counts
        WHERE minute_ms >= $1 AND minute_ms < LEAST($2, $3)
    UNION ALL SELECT minute_ms, pattern_id, source, level, count FROM minute_counts
        WHERE minute_ms >= GREATEST($4, $1) AND minute_ms < $2) w";

const UPSERT_MINUTES: &str = "INSERT INTO minute_counts (minute_ms, pattern_id, source, level, count, stored,
    first_ms, last_ms)
    SELECT * FROM UNNEST($1::bigint[], $2::bigint[], $3::text[], $4::text[], $5::bigint[], $6::bigint[],
        $7::bigint[], $8::bigint[])
    ON CONFLICT (minute_ms, pattern_id, source, level)
    DO UPDATE SET count = minute_counts.count + excluded.count, stored = minute_counts.stored + excluded.stored,
    first_ms = least(minute_counts.first_ms, excluded.first_ms),
    last_ms = greatest(minute_counts.last_ms, excluded.last_ms)";

const UPSERT_LINES: &str = "INSERT INTO line_counts (minute_ms, source_id, level, count)
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[])
    ON CONFLICT (minute_ms, source_id, level) DO UPDATE SET count = line_counts.count + excluded.count";

const UPSERT_CURSOR: &str = "INSERT INTO source_cursors (source_id, cursor, updated_ms) VALUES ($1, $2, $3)
    ON CONFLICT (source_id) DO UPDATE SET cursor = excluded.cursor, updated_ms = excluded.updated_ms";

/// An installation whose miner state was saved whole (before buckets were shared) has it split
/// into `miner_buckets` by the first instance that finds that table empty.
async fn split_saved_state(pool: &PgPool, now_ms: i64) -> Result<()> {
    let empty: bool =
        sqlx::query_scalar("SELECT NOT EXISTS (SELECT 1 FROM miner_buckets)").fetch_one(pool).await?;
    if !empty {
        return Ok(());
    }
    let saved: Option<String> =
        sqlx::query_scalar(mining::LOAD_STATE).bind(mining::VERSION).fetch_optional(pool).await?;
    if saved.is_none() {
        return Ok(());
    }
    let writes = SharedMining::split(saved);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO miner_buckets (bucket, rev, version, state, updated_ms)
         SELECT k.bucket, k.rev, $4, k.state, $5
         FROM UNNEST($1::text[], $2::bigint[], $3::text[]) AS k(bucket, rev, state)
         ON CONFLICT (bucket) DO NOTHING",
    )
    .bind(writes.iter().map(|w| w.key.as_str()).collect::<Vec<_>>())
    .bind(writes.iter().map(|w| w.rev).collect::<Vec<_>>())
    .bind(writes.iter().map(|w| pg_text(&w.state)).collect::<Vec<_>>())
    .bind(mining::VERSION)
    .bind(now_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The asked buckets' rows (`$1` row keys, `$2` revisions held), each with its state only where
/// its revision is not the one held.
const READ_BUCKETS: &str = "SELECT m.bucket, m.rev, CASE WHEN m.rev = k.rev THEN NULL ELSE m.state END
    FROM UNNEST($1::text[], $2::bigint[]) AS k(bucket, rev) JOIN miner_buckets m ON m.bucket = k.bucket";

/// Writes the buckets a batch's lines changed, each only where its revision is still the one the
/// batch was mined on (the new one minus one; rows locked in the order given, the same on every
/// instance). Returns whether all were written: `false` when another instance changed one first.
async fn write_buckets(
    tx: &mut Transaction<'_, Postgres>,
    writes: &[BucketWrite],
    now_ms: i64,
) -> Result<bool> {
    if writes.is_empty() {
        return Ok(true);
    }
    let written: Vec<String> = sqlx::query_scalar(
        "INSERT INTO miner_buckets (bucket, rev, version, state, updated_ms)
         SELECT k.bucket, k.rev, $4, k.state, $5
         FROM UNNEST($1::text[], $2::bigint[], $3::text[]) WITH ORDINALITY AS k(bucket, rev, state, ord)
         ORDER BY k.ord
         ON CONFLICT (bucket) DO UPDATE
            SET rev = excluded.rev, version = excluded.version, state = excluded.state,
                updated_ms = excluded.updated_ms
            WHERE miner_buckets.rev = excluded.rev - 1
         RETURNING bucket",
    )
    .bind(writes.iter().map(|w| w.key.as_str()).collect::<Vec<_>>())
    .bind(writes.iter().map(|w| w.rev).collect::<Vec<_>>())
    .bind(writes.iter().map(|w| pg_text(&w.state)).collect::<Vec<_>>())
    .bind(mining::VERSION)
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?;
    Ok(written.len() == writes.len())
}

/// Times a batch is mined again after another instance changed one of its buckets first, before
/// the store answers busy.
const MINING_ATTEMPTS: usize = 8;

/// Stores one batch in `tx` with a fixed number of statements, whatever its size: each table
/// gets its rows as arrays (`UNNEST`), one round trip per table.
async fn ingest_tx(
    tx: &mut Transaction<'_, Postgres>,
    caches: &mut Caches,
    batch: &IngestBatch,
) -> Result<IngestOutcome> {
    let mut outcome = IngestOutcome::default();
    let mut new_ids = HashSet::new();
    let ids = resolve_patterns(tx, caches, batch, &mut outcome, &mut new_ids).await?;
    let (stored, counted) = batch_minute_rows(tx, batch, &ids).await?;
    let fates = insert_entries(tx, batch, &ids, stored).await?;
    let mut totals = BatchTotals::default();
    let mut stored = Vec::new();
    for ((ge, &pattern_id), fate) in batch.events.iter().zip(&ids).zip(&fates) {
        match fate {
            Fate::Stored(id) => {
                outcome.stored += 1;
                totals.add(pattern_id, ge, Some(*id));
                stored.push((*id, &ge.event));
            }
            Fate::Capped => {
                outcome.capped += 1;
                totals.add(pattern_id, ge, None);
            }
            Fate::Duplicate => outcome.duplicates += 1,
            Fate::Pending | Fate::Trying => unreachable!("every entry is decided"),
        }
    }
    if !stored.is_empty() {
        let c = chunks(stored);
        // Each chunk's keys are a slice of one flat array.
        sqlx::query(
            "INSERT INTO entry_chunks (first_id, last_id, keys)
             SELECT first_id, last_id, ($3::int4[])[start:upto]
             FROM UNNEST($1::bigint[], $2::bigint[], $4::int4[], $5::int4[]) AS c(first_id, last_id, start, upto)",
        )
        .bind(c.firsts)
        .bind(c.lasts)
        .bind(c.keys)
        .bind(c.starts)
        .bind(c.ends)
        .execute(&mut **tx)
        .await?;
    }
    outcome.touched = write_totals(tx, &totals, batch, &new_ids, &counted).await?;
    Ok(outcome)
}

/// The pattern id of every event of the batch, inserting the patterns not stored yet: one
/// lookup and one insert for all fingerprints not in the cache.
async fn resolve_patterns(
    tx: &mut Transaction<'_, Postgres>,
    caches: &mut Caches,
    batch: &IngestBatch,
    outcome: &mut IngestOutcome,
    new_ids: &mut HashSet<i64>,
) -> Result<Vec<i64>> {
    // The first event of each fingerprint not cached, in order of appearance.
    let mut unknown: Vec<&GroupedEvent> = Vec::new();
    let mut seen = HashSet::new();
    for ge in &batch.events {
        let fingerprint = ge.grouping.fingerprint.as_str();
        if !caches.pattern_ids.contains_key(fingerprint) && seen.insert(fingerprint) {
            unknown.push(ge);
        }
    }
    if !unknown.is_empty() {
        let mut found = find_patterns(tx, unknown.iter().map(|ge| ge.grouping.fingerprint.as_str())).await?;
        let mut missing = Vec::new();
        for ge in unknown {
            let fingerprint = ge.grouping.fingerprint.as_str();
            if found.contains_key(fingerprint) {
                continue;
            }
            // Within the transition window, a pattern of the previous fingerprint version
            // takes the event (rare: only after an upgrade that changed fingerprints).
            if caches.old_versions
                && let Some(previous) = &ge.grouping.previous
            {
                let old: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM patterns
                     WHERE fingerprint = $1 AND fingerprint_version < $2 AND last_seen_ms >= $3",
                )
                .bind(previous.as_str())
                .bind(FINGERPRINT_VERSION)
                .bind(batch.now_ms - mining::TRANSITION_WINDOW_MS)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(id) = old {
                    found.insert(fingerprint.to_owned(), id);
                    continue;
                }
            }
            missing.push(ge);
        }
        if !missing.is_empty() {
            // Instances inserting the same new patterns in other orders would wait for each
            // other both ways: each first takes a lock per new fingerprint, in one order.
            sqlx::query(
                "SELECT pg_advisory_xact_lock($1, k)
                 FROM (SELECT DISTINCT hashtext(f) AS k FROM UNNEST($2::text[]) f ORDER BY k) s",
            )
            .bind(NEW_PATTERN_LOCKS)
            .bind(missing.iter().map(|ge| ge.grouping.fingerprint.as_str()).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
            for (fingerprint, id) in insert_patterns(tx, &missing, batch.now_ms).await? {
                outcome.new_patterns += 1;
                new_ids.insert(id);
                found.insert(fingerprint, id);
            }
            // Patterns another instance inserted since the lookup above.
            let raced: Vec<&str> = missing
                .iter()
                .map(|ge| ge.grouping.fingerprint.as_str())
                .filter(|f| !found.contains_key(*f))
                .collect();
            if !raced.is_empty() {
                found.extend(find_patterns(tx, raced.into_iter()).await?);
            }
        }
        caches.pattern_ids.extend(found);
    }
    batch
        .events
        .iter()
        .map(|ge| {
            let fingerprint = ge.grouping.fingerprint.as_str();
            caches.pattern_ids.get(fingerprint).copied().ok_or_else(|| {
                StoreError::InvalidQuery(format!("pattern {fingerprint} was neither found nor inserted"))
            })
        })
        .collect()
}

/// The key space of the advisory locks taken on new fingerprints (the two-key form, apart from
/// the alert recording lock).
const NEW_PATTERN_LOCKS: i32 = 0x6661_756c; // "faul"

async fn find_patterns<'a>(
    tx: &mut Transaction<'_, Postgres>,
    fingerprints: impl Iterator<Item = &'a str>,
) -> Result<HashMap<String, i64>> {
    let fingerprints: Vec<&str> = fingerprints.collect();
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT fingerprint, id FROM patterns WHERE fingerprint = ANY($1)")
            .bind(&fingerprints)
            .fetch_all(&mut **tx)
            .await?;
    Ok(rows.into_iter().collect())
}

/// Inserts the patterns of these events (each the first of its fingerprint); returns the ones
/// this transaction inserted (not those another instance inserted first).
async fn insert_patterns(
    tx: &mut Transaction<'_, Postgres>,
    events: &[&GroupedEvent],
    now_ms: i64,
) -> Result<Vec<(String, i64)>> {
    let mut c = PatternColumns::default();
    for ge in events {
        let (e, g) = (&ge.event, &ge.grouping);
        c.fingerprint.push(g.fingerprint.as_str());
        c.tier.push(g.tier.as_str());
        c.template.push(pg_text(&g.template));
        c.error_type.push(pg_opt(&g.error_type));
        c.frames.push(frames_json(g).replace('\0', "\u{FFFD}"));
        c.timestamp.push(e.timestamp_ms);
        c.traceback.push(e.traceback.as_deref());
        c.source.push(&e.source);
        c.level.push(e.level.as_str());
    }
    Ok(sqlx::query_as(INSERT_PATTERNS)
        .bind(c.fingerprint)
        .bind(FINGERPRINT_VERSION)
        .bind(c.tier)
        .bind(c.template)
        .bind(c.error_type)
        .bind(c.frames)
        .bind(c.timestamp)
        .bind(c.traceback)
        .bind(c.source)
        .bind(c.level)
        .bind(now_ms)
        .fetch_all(&mut **tx)
        .await?)
}

#[derive(Default)]
struct PatternColumns<'a> {
    fingerprint: Vec<&'a str>,
    tier: Vec<&'a str>,
    template: Vec<Cow<'a, str>>,
    error_type: Vec<Option<Cow<'a, str>>>,
    frames: Vec<String>,
    timestamp: Vec<i64>,
    traceback: Vec<Option<&'a str>>,
    source: Vec<&'a str>,
    level: Vec<&'a str>,
}

/// What became of an event's entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Not decided yet.
    Pending,
    /// In the insert being sent.
    Trying,
    Stored(i64),
    /// Over the pattern's stored entries per minute: counted, not stored.
    Capped,
    /// Its key is stored already (or earlier in the batch).
    Duplicate,
}

/// Inserts the batch's entries in one statement, keeping at most the cap per (pattern, minute)
/// stored, and says what became of each event, exactly as inserting them one by one in order
/// would: events are tried in order while their minute has room; when some turn out to be
/// stored already, the room they leave goes to the next events of that minute in another
/// insert (rare: a batch sent again over a full minute).
async fn insert_entries(
    tx: &mut Transaction<'_, Postgres>,
    batch: &IngestBatch,
    ids: &[i64],
    mut stored: HashMap<(i64, i64), i64>,
) -> Result<Vec<Fate>> {
    let cap = i64::from(batch.max_stored_per_pattern_minute);
    let keys: Vec<Cow<'_, str>> = batch.events.iter().map(|ge| ge.event.idempotency_key()).collect();
    let slot = |i: usize| (ids[i], minute_of(batch.events[i].event.timestamp_ms));
    let mut fates = vec![Fate::Pending; batch.events.len()];
    let mut claimed: HashSet<(&str, &str)> = HashSet::new();
    loop {
        let mut trying = Vec::new();
        for i in 0..fates.len() {
            if fates[i] != Fate::Pending {
                continue;
            }
            let taken = stored.entry(slot(i)).or_insert(0);
            if *taken >= cap {
                fates[i] = Fate::Capped;
            } else if !claimed.insert((&batch.events[i].event.origin.source_id, &keys[i])) {
                fates[i] = Fate::Duplicate;
            } else {
                *taken += 1;
                fates[i] = Fate::Trying;
                trying.push(i);
            }
        }
        if trying.is_empty() {
            return Ok(fates);
        }
        let inserted = if trying.len() < COPY_MIN_ROWS {
            insert_few_entry_rows(tx, batch, ids, &keys, &trying).await?
        } else {
            copy_entry_rows(tx, batch, ids, &keys, &trying).await?
        };
        let mut freed = HashSet::new();
        for i in trying {
            fates[i] = match inserted.get(&i) {
                Some(&id) => Fate::Stored(id),
                None => {
                    *stored.entry(slot(i)).or_insert(0) -= 1;
                    freed.insert(slot(i));
                    Fate::Duplicate
                }
            };
        }
        if freed.is_empty() {
            return Ok(fates);
        }
        for (i, fate) in fates.iter_mut().enumerate() {
            if *fate == Fate::Capped && freed.contains(&slot(i)) {
                *fate = Fate::Pending;
            }
        }
    }
}

/// Rows from which a table's rows are written with `COPY`. It takes more round trips than one
/// statement (a look-up, a savepoint, the copy): below this, one statement is faster.
const COPY_MIN_ROWS: usize = 200;

/// Inserts the entries of events `which` (their keys are distinct, at least [`COPY_MIN_ROWS`])
/// whose keys were not stored before; returns the id of each one inserted, by event index. The
/// keys are claimed (with `COPY` while none is stored), ids taken from the sequence for the
/// claimed ones, in the batch's order, and their entries written with `COPY` (binary).
async fn copy_entry_rows<'b>(
    tx: &mut Transaction<'_, Postgres>,
    batch: &'b IngestBatch,
    ids: &[i64],
    keys: &'b [Cow<'b, str>],
    which: &[usize],
) -> Result<HashMap<usize, i64>> {
    let event = |i: usize| &batch.events[i].event;
    let sources = || which.iter().map(|&i| event(i).origin.source_id.as_str()).collect::<Vec<_>>();
    let names = || which.iter().map(|&i| keys[i].as_ref()).collect::<Vec<_>>();
    // The keys are claimed with `COPY` (an insert that checks each row for a conflict costs
    // about twice as much), as if none were stored before: a batch's keys are new unless it is
    // sent again. When one is stored (before, or by another instance meanwhile), the copy fails
    // as a whole, at once when it is the first row, and the keys are claimed with `ON CONFLICT`.
    let mut inserted: Vec<usize> = which.to_vec();
    if let Err(e) = copy_keys(tx, batch, keys, &inserted).await {
        if !is_unique_violation(&e) {
            return Err(e);
        }
        let claimed: Vec<(String, String)> = sqlx::query_as(CLAIM_KEYS)
            .bind(sources())
            .bind(names())
            .bind(which.iter().map(|&i| event(i).timestamp_ms).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await?;
        let claimed: HashSet<(&str, &str)> = claimed.iter().map(|(s, k)| (s.as_str(), k.as_str())).collect();
        inserted.retain(|&i| claimed.contains(&(&*event(i).origin.source_id, &*keys[i])));
    }
    if inserted.is_empty() {
        return Ok(HashMap::new());
    }
    let entry_ids: Vec<i64> =
        sqlx::query_scalar("SELECT nextval('entries_id_seq') FROM generate_series(1, $1)")
            .bind(inserted.len() as i64)
            .fetch_all(&mut **tx)
            .await?;
    copy_rows(tx, COPY_ENTRIES, inserted.iter().zip(&entry_ids), |rows, (&i, &id)| {
        rows.entry(id, event(i), &keys[i], ids[i])
    })
    .await?;
    Ok(inserted.into_iter().zip(entry_ids).collect())
}

/// Writes the keys of events `which` with `COPY`, in a savepoint: when one of them is stored
/// already, nothing is written and the error says so ([`is_unique_violation`]).
async fn copy_keys(
    tx: &mut Transaction<'_, Postgres>,
    batch: &IngestBatch,
    keys: &[Cow<'_, str>],
    which: &[usize],
) -> Result<()> {
    let mut savepoint = tx.begin().await?;
    let sql = "COPY entry_keys (source_id, external_id, timestamp_ms) FROM STDIN (FORMAT binary)";
    copy_rows(&mut savepoint, sql, which, |rows, &i| {
        let e = &batch.events[i].event;
        rows.fields(3);
        rows.text(Some(&e.origin.source_id));
        rows.text(Some(&keys[i]));
        rows.bigint(e.timestamp_ms);
    })
    .await?;
    savepoint.commit().await?;
    Ok(())
}

/// Sends `items` as rows of a binary `COPY` (`sql`), each written by `row`.
async fn copy_rows<T>(
    conn: &mut sqlx::PgConnection,
    sql: &str,
    items: impl IntoIterator<Item = T>,
    mut row: impl FnMut(&mut CopyRows, T),
) -> Result<()> {
    let mut copy = conn.copy_in_raw(sql).await?;
    let mut rows = CopyRows::new();
    for item in items {
        row(&mut rows, item);
        if rows.buf.len() >= COPY_SEND_BYTES {
            copy.send(rows.take()).await?;
        }
    }
    copy.send(rows.finish()).await?;
    copy.finish().await?;
    Ok(())
}

fn is_unique_violation(e: &StoreError) -> bool {
    matches!(e, StoreError::Postgres(sqlx::Error::Database(d)) if d.is_unique_violation())
}

/// [`copy_entry_rows`] for fewer than [`COPY_MIN_ROWS`] rows, in one statement.
async fn insert_few_entry_rows<'b>(
    tx: &mut Transaction<'_, Postgres>,
    batch: &'b IngestBatch,
    ids: &[i64],
    keys: &'b [Cow<'b, str>],
    which: &[usize],
) -> Result<HashMap<usize, i64>> {
    let mut c = EntryColumns::with_capacity(which.len());
    for &i in which {
        let e = &batch.events[i].event;
        c.source_id.push(&e.origin.source_id);
        c.external_id.push(&keys[i]);
        c.timestamp.push(e.timestamp_ms);
        c.level.push(e.level.as_str());
        c.source.push(&e.source);
        c.message.push(&e.message);
        c.traceback.push(e.traceback.as_deref());
        c.request_path.push(e.request_path.as_deref());
        c.request_method.push(e.request_method.as_deref());
        // `replace_nul` took the NULs out of the metadata before it is serialised.
        c.metadata.push(metadata_json(e));
        c.pattern_id.push(ids[i]);
        c.raw.push(&e.raw);
    }
    let rows: Vec<(i64, String, String)> = sqlx::query_as(INSERT_ENTRIES)
        .bind(c.source_id)
        .bind(c.external_id)
        .bind(c.timestamp)
        .bind(c.level)
        .bind(c.source)
        .bind(c.message)
        .bind(c.traceback)
        .bind(c.request_path)
        .bind(c.request_method)
        .bind(c.metadata)
        .bind(c.pattern_id)
        .bind(c.raw)
        .fetch_all(&mut **tx)
        .await?;
    let by_key: HashMap<(&str, &str), usize> = which
        .iter()
        .map(|&i| ((batch.events[i].event.origin.source_id.as_str(), keys[i].as_ref()), i))
        .collect();
    Ok(rows
        .into_iter()
        .filter_map(|(id, source_id, key)| by_key.get(&(source_id.as_str(), key.as_str())).map(|&i| (i, id)))
        .collect())
}

struct EntryColumns<'a> {
    source_id: Vec<&'a str>,
    external_id: Vec<&'a str>,
    timestamp: Vec<i64>,
    level: Vec<&'a str>,
    source: Vec<&'a str>,
    message: Vec<&'a str>,
    traceback: Vec<Option<&'a str>>,
    request_path: Vec<Option<&'a str>>,
    request_method: Vec<Option<&'a str>>,
    metadata: Vec<Option<String>>,
    pattern_id: Vec<i64>,
    raw: Vec<&'a str>,
}

impl EntryColumns<'_> {
    fn with_capacity(n: usize) -> Self {
        EntryColumns {
            source_id: Vec::with_capacity(n),
            external_id: Vec::with_capacity(n),
            timestamp: Vec::with_capacity(n),
            level: Vec::with_capacity(n),
            source: Vec::with_capacity(n),
            message: Vec::with_capacity(n),
            traceback: Vec::with_capacity(n),
            request_path: Vec::with_capacity(n),
            request_method: Vec::with_capacity(n),
            metadata: Vec::with_capacity(n),
            pattern_id: Vec::with_capacity(n),
            raw: Vec::with_capacity(n),
        }
    }
}

/// How much `COPY` data is sent at a time.
const COPY_SEND_BYTES: usize = 1 << 20;

/// Rows in `COPY`'s binary format: a header, then each row as its field count and each field's
/// length and bytes (-1 for NULL), then a trailer.
struct CopyRows {
    buf: Vec<u8>,
}

impl CopyRows {
    fn new() -> Self {
        let mut buf = Vec::with_capacity(COPY_SEND_BYTES + (64 << 10));
        buf.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        buf.extend_from_slice(&0i32.to_be_bytes()); // flags
        buf.extend_from_slice(&0i32.to_be_bytes()); // header extension length
        CopyRows { buf }
    }

    /// One row, in [`COPY_ENTRIES`]' column order.
    fn entry(&mut self, id: i64, e: &faultline_core::LogEvent, key: &str, pattern_id: i64) {
        self.fields(13);
        self.bigint(id);
        self.text(Some(&e.origin.source_id));
        self.text(Some(key));
        self.bigint(e.timestamp_ms);
        self.text(Some(e.level.as_str()));
        self.text(Some(&e.source));
        self.text(Some(&e.message));
        self.text(e.traceback.as_deref());
        self.text(e.request_path.as_deref());
        self.text(e.request_method.as_deref());
        // A `jsonb` field: its version (1), then the JSON text.
        match metadata_json(e) {
            Some(json) => {
                self.buf.extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
                self.buf.push(1);
                self.buf.extend_from_slice(json.as_bytes());
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
        self.bigint(pattern_id);
        self.text(Some(&e.raw));
    }

    /// Starts a row of `n` fields.
    fn fields(&mut self, n: i16) {
        self.buf.extend_from_slice(&n.to_be_bytes());
    }

    fn bigint(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn text(&mut self, v: Option<&str>) {
        match v {
            Some(v) => {
                self.buf.extend_from_slice(&(v.len() as i32).to_be_bytes());
                self.buf.extend_from_slice(v.as_bytes());
            }
            None => self.buf.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }

    /// The rows so far, to send; the next ones follow them.
    fn take(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.buf, Vec::with_capacity(COPY_SEND_BYTES + (64 << 10)))
    }

    /// The rest of the rows and the trailer.
    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// The batch's totals: patterns (regressed ones back to `new`), minute and quarter counts, the
/// alert feed, the lines below the level and the cursor, each table in one statement.
async fn write_totals(
    tx: &mut Transaction<'_, Postgres>,
    totals: &BatchTotals<'_>,
    batch: &IngestBatch,
    new_ids: &HashSet<i64>,
    counted: &CountedMinutes,
) -> Result<Vec<TouchedPattern>> {
    let mut touched = Vec::with_capacity(totals.patterns.len());
    if !totals.patterns.is_empty() {
        let pattern_ids: Vec<i64> = totals.patterns.keys().copied().collect();
        // Rows locked in id order, so instances writing the same patterns never deadlock; the
        // lock an UPDATE of non-key columns takes (FOR UPDATE would also wait for the key-share
        // locks other instances' entries hold on their patterns, and deadlock with them).
        sqlx::query("SELECT id FROM patterns WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&pattern_ids)
            .execute(&mut **tx)
            .await?;
        let regressed: HashSet<i64> = sqlx::query_scalar(
            "UPDATE patterns SET status = 'new', updated_ms = $1
             WHERE id = ANY($2) AND status = 'resolved' RETURNING id",
        )
        .bind(batch.now_ms)
        .bind(&pattern_ids)
        .fetch_all(&mut **tx)
        .await?
        .into_iter()
        .collect();
        let d = || totals.patterns.values();
        let rows: Vec<(i64, String)> = sqlx::query_as(UPDATE_PATTERNS)
            .bind(batch.now_ms)
            .bind(&pattern_ids)
            .bind(d().map(|d| d.count).collect::<Vec<_>>())
            .bind(d().map(|d| d.first_ms).collect::<Vec<_>>())
            .bind(d().map(|d| d.last_ms).collect::<Vec<_>>())
            .bind(d().map(|d| d.level.as_str()).collect::<Vec<_>>())
            .bind(d().map(|d| d.sample).collect::<Vec<_>>())
            .bind(d().map(|d| d.sample_message.map(pg_text)).collect::<Vec<_>>())
            .bind(d().map(|d| d.template.map(pg_text)).collect::<Vec<_>>())
            .fetch_all(&mut **tx)
            .await?;
        let status: HashMap<i64, String> = rows.into_iter().collect();
        for (pattern_id, d) in &totals.patterns {
            let state = status.get(pattern_id).ok_or_else(|| {
                StoreError::InvalidQuery(format!("pattern {pattern_id} vanished during the batch"))
            })?;
            touched.push(TouchedPattern {
                pattern_id: *pattern_id,
                new: new_ids.contains(pattern_id),
                regressed: regressed.contains(pattern_id),
                status: state.parse().map_err(|e: UnknownState| sqlx::Error::Decode(Box::new(e)))?,
                highest_level: d.level,
            });
        }
        sqlx::query(INSERT_FEEDS)
            .bind(touched.iter().map(|t| t.pattern_id).collect::<Vec<_>>())
            .bind(touched.iter().map(|t| t.new).collect::<Vec<_>>())
            .bind(touched.iter().map(|t| t.regressed).collect::<Vec<_>>())
            .bind(touched.iter().map(|t| t.highest_level.as_str()).collect::<Vec<_>>())
            .bind(touched.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
            .bind(batch.now_ms)
            .execute(&mut **tx)
            .await?;
    }
    if !totals.minutes.is_empty() {
        // Rows not counted before, when there are many, are written with `COPY` (an upsert costs
        // about twice as much per row); the others are added to. When another instance wrote
        // one of the new rows since the batch looked (the pattern's lock orders them, not the
        // look-up), they are all upserted instead.
        let (mut upsert, new): (Vec<_>, Vec<_>) = totals.minutes.iter().partition(|(k, _)| {
            counted
                .get(&(k.0, k.1))
                .is_some_and(|rows| rows.iter().any(|(s, l)| *s == pg_text(k.2) && l == k.3))
        });
        let copied = new.len() >= COPY_MIN_ROWS
            && match copy_minutes(tx, &new).await {
                Ok(()) => true,
                Err(e) if is_unique_violation(&e) => false,
                Err(e) => return Err(e),
            };
        if !copied {
            upsert.extend(new);
            upsert.sort_unstable_by_key(|(k, _)| *k);
        }
        if !upsert.is_empty() {
            let m = || upsert.iter();
            sqlx::query(UPSERT_MINUTES)
                .bind(m().map(|(k, _)| k.0).collect::<Vec<_>>())
                .bind(m().map(|(k, _)| k.1).collect::<Vec<_>>())
                .bind(m().map(|(k, _)| pg_text(k.2)).collect::<Vec<_>>())
                .bind(m().map(|(k, _)| k.3).collect::<Vec<_>>())
                .bind(m().map(|(_, v)| v.count).collect::<Vec<_>>())
                .bind(m().map(|(_, v)| v.stored).collect::<Vec<_>>())
                .bind(m().map(|(_, v)| v.first_ms).collect::<Vec<_>>())
                .bind(m().map(|(_, v)| v.last_ms).collect::<Vec<_>>())
                .execute(&mut **tx)
                .await?;
        }
        let quarters = quarter_totals(&totals.minutes);
        let q = || quarters.iter();
        sqlx::query(UPSERT_QUARTERS)
            .bind(q().map(|(k, _)| k.0).collect::<Vec<_>>())
            .bind(q().map(|(k, _)| k.1).collect::<Vec<_>>())
            .bind(q().map(|(k, _)| pg_text(k.2)).collect::<Vec<_>>())
            .bind(q().map(|(k, _)| k.3).collect::<Vec<_>>())
            .bind(q().map(|(_, n)| *n).collect::<Vec<_>>())
            .execute(&mut **tx)
            .await?;
    }
    if !batch.skipped.is_empty() {
        // One row each: the upsert is one statement, which may not touch a row twice (a batch
        // made of several, `IngestBatch::absorb`, counts a minute in each).
        let mut lines: BTreeMap<(i64, &str, &str), i64> = BTreeMap::new();
        for c in &batch.skipped {
            *lines.entry((c.minute, c.source_id.as_str(), c.level.as_str())).or_default() += c.count as i64;
        }
        let s = || lines.iter();
        sqlx::query(UPSERT_LINES)
            .bind(s().map(|(k, _)| k.0).collect::<Vec<_>>())
            .bind(s().map(|(k, _)| pg_text(k.1)).collect::<Vec<_>>())
            .bind(s().map(|(k, _)| k.2).collect::<Vec<_>>())
            .bind(s().map(|(_, n)| *n).collect::<Vec<_>>())
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
    Ok(touched)
}

/// The `minute_counts` rows that exist: (minute, pattern id) → each one's (source, level).
type CountedMinutes = HashMap<(i64, i64), Vec<(String, String)>>;

/// The `minute_counts` rows of the (pattern, minute) pairs the batch touches, read inside its
/// transaction (so other writers' rows count too): the raw entries already stored per pair, and
/// the rows that exist. The pairs are looked up through the key's index, so a batch spread over
/// days (a backfill, a seeding) reads only its own pairs, not every pattern's counts of the
/// minutes in between.
async fn batch_minute_rows(
    tx: &mut Transaction<'_, Postgres>,
    batch: &IngestBatch,
    pattern_ids: &[i64],
) -> Result<(HashMap<(i64, i64), i64>, CountedMinutes)> {
    let pairs = batch_minute_pairs(batch, pattern_ids);
    if pairs.is_empty() {
        return Ok(Default::default());
    }
    let rows: Vec<(i64, i64, String, String, i64)> = sqlx::query_as(
        "SELECT m.minute_ms, m.pattern_id, m.source, m.level, m.stored
         FROM UNNEST($1::bigint[], $2::bigint[]) AS q(minute_ms, pattern_id)
         JOIN minute_counts m ON m.minute_ms = q.minute_ms AND m.pattern_id = q.pattern_id",
    )
    .bind(pairs.iter().map(|p| p.0).collect::<Vec<_>>())
    .bind(pairs.iter().map(|p| p.1).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    let mut stored: HashMap<(i64, i64), i64> = HashMap::new();
    let mut counted = CountedMinutes::with_capacity(rows.len());
    for (minute, pattern_id, source, level, n) in rows {
        if n > 0 {
            *stored.entry((pattern_id, minute)).or_default() += n;
        }
        counted.entry((minute, pattern_id)).or_default().push((source, level));
    }
    Ok((stored, counted))
}

/// A batch's counts of one (minute, pattern id, source, level).
type MinuteRow<'a> = (&'a (i64, i64, &'a str, &'static str), &'a MinuteDelta);

/// Writes new `minute_counts` rows with `COPY`, in a savepoint: when another instance wrote one
/// of them meanwhile, nothing is written and the error says so ([`is_unique_violation`]).
async fn copy_minutes(tx: &mut Transaction<'_, Postgres>, rows: &[MinuteRow<'_>]) -> Result<()> {
    let mut savepoint = tx.begin().await?;
    let sql = "COPY minute_counts (minute_ms, pattern_id, source, level, count, stored, first_ms, last_ms)
        FROM STDIN (FORMAT binary)";
    copy_rows(&mut savepoint, sql, rows, |buf, ((minute, pattern_id, source, level), d)| {
        buf.fields(8);
        buf.bigint(*minute);
        buf.bigint(*pattern_id);
        buf.text(Some(&pg_text(source)));
        buf.text(Some(level));
        for n in [d.count, d.stored, d.first_ms, d.last_ms] {
            buf.bigint(n);
        }
    })
    .await?;
    savepoint.commit().await?;
    Ok(())
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

/// The time bounds are plain comparisons of the partition key (an absent bound is the widest),
/// so the executor leaves out the days outside them whatever plan is cached.
const SEARCH_FILTERS: &str = "($1::text IS NULL OR e.level = $1)
    AND ($2::text IS NULL OR e.source = $2)
    AND ($3::text IS NULL OR e.source LIKE $3)
    AND e.timestamp_ms >= coalesce($4::bigint, -9223372036854775808)
    AND e.timestamp_ms < coalesce($5::bigint, 9223372036854775807)";

/// How entries are compared with a needle (`{match}` in the search variants), an expression of
/// `e` and the `LIKE` pattern `$6`: the needle is in the message or in the traceback, as on
/// SQLite. (A test of their concatenation makes the server build it for every entry it reads:
/// common needles took 10–50% longer.)
///
/// An ASCII needle is compared under the "C" collation, which folds ASCII letters alone and costs
/// half as much per row as folding every character of the text: it matches the same text as with
/// the database's folding, but for the few characters whose lower case is an ASCII letter (the
/// Kelvin sign, `İ`), which then match only themselves.
fn text_match(needle: &str) -> &'static str {
    if needle.is_ascii() {
        "(e.message COLLATE \"C\" ILIKE $6 OR e.traceback COLLATE \"C\" ILIKE $6)"
    } else {
        "(e.message ILIKE $6 OR e.traceback ILIKE $6)"
    }
}

/// Needles with a run of three letters or digits find candidate chunks through the GIN index on
/// `entry_chunks.keys` ([`trigram_keys`] of up to [`CHUNK`] consecutive entries; `{keys}`, the
/// needle's, is the parameter after the others); the exact test re-checks each entry of those
/// chunks.
///
/// The `OFFSET 0` keeps the other filters (time above all) out of the lookups by id: the
/// planner would AND the time index into each chunk's lookup, reading every entry of a day-wide
/// window once per candidate chunk (0.7–2.7 s for a rare needle at 1M entries instead of ~10 ms).
const INDEXED: (&str, &str) = (
    "(SELECT e.* FROM (SELECT first_id, last_id FROM entry_chunks WHERE keys @> {keys}) c
         JOIN entries e ON e.id BETWEEN c.first_id AND c.last_id
         WHERE {match} OFFSET 0) e",
    "TRUE",
);
/// Candidate chunks past which a needle is common.
const CHUNK_BUDGET: i64 = 128;
/// Needles without three letters or digits in a row (which the trigram index cannot narrow
/// down), and common needles, whose newest matches the planner finds by reading entries newest
/// first: each entry checked with ILIKE.
const SCANNED: (&str, &str) = ("entries e", "{match}");
const NO_TEXT: (&str, &str) = ("entries e", "$6::text IS NULL");

/// Entries of the window a capped count of a scanned needle reads, in whatever order the scan
/// finds them: as many as SQLite's count reads in its [`CHUNK_BUDGET`] candidate chunks. Past
/// them the count is a lower bound. A needle in one message of 300 (`db-7.internal`) has ~100
/// matches among them, and reaching the cap of 1,000 read ~300,000 entries (138 ms at 1M).
const SCAN_BUDGET: i64 = CHUNK_BUDGET * CHUNK as i64;

/// A capped count of a scanned needle: its matches among the window's first [`SCAN_BUDGET`] + 1
/// entries (`$7`), and how many entries were read. The needle is tested in the scan, which
/// passes on one boolean per entry (a scan passing on the text took a fifth longer).
fn budgeted_count_sql(matches: &str) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE m), count(*)
         FROM (SELECT {matches} AS m FROM entries e WHERE {SEARCH_FILTERS} LIMIT $7) e"
    )
}

fn search_sql((from, text): (&str, &str), matches: &str, count: bool) -> String {
    let from =
        from.replace("{keys}", if count { "$8::int4[]" } else { "$9::int4[]" }).replace("{match}", matches);
    let text = text.replace("{match}", matches);
    if count {
        format!("SELECT count(*) FROM (SELECT 1 FROM {from} WHERE {SEARCH_FILTERS} AND {text} LIMIT $7) n")
    } else {
        format!(
            "SELECT {ENTRY_COLUMNS} FROM {from} JOIN patterns p ON p.id = e.pattern_id
             WHERE {SEARCH_FILTERS} AND {text} ORDER BY e.timestamp_ms DESC, e.id DESC LIMIT $7 OFFSET $8"
        )
    }
}

/// The index keys a needle's matches all hold; none when the index cannot narrow it down (no
/// three letters or digits in a row). At most a few dozen: enough to be selective.
fn needle_keys(needle: &str) -> Vec<i32> {
    let mut keys = rustc_hash::FxHashSet::default();
    trigram_keys(needle, &mut keys);
    let mut keys: Vec<i32> = keys.into_iter().collect();
    keys.sort_unstable();
    keys.truncate(24);
    keys
}

/// Lets the planner scan tables whole or not, for the rest of the transaction.
async fn seqscan(tx: &mut Transaction<'_, Postgres>, on: bool) -> Result<()> {
    let sql = if on { "SET LOCAL enable_seqscan = on" } else { "SET LOCAL enable_seqscan = off" };
    sqlx::query(sql).execute(&mut **tx).await?;
    Ok(())
}

/// Whether the rest of the transaction's statements are planned for their parameters (custom)
/// or once for any (generic).
async fn custom_plans(tx: &mut Transaction<'_, Postgres>, on: bool) -> Result<()> {
    let sql = if on {
        "SET LOCAL plan_cache_mode = force_custom_plan"
    } else {
        "SET LOCAL plan_cache_mode = force_generic_plan"
    };
    sqlx::query(sql).execute(&mut **tx).await?;
    Ok(())
}

/// Entries per row of the trigram index.
const CHUNK: usize = 256;

/// The search index's rows for the entries a batch stored: runs of up to [`CHUNK`] entries with
/// consecutive ids (a gap, where another instance's entries or a duplicate's skipped id fall,
/// ends a run, so no chunk covers entries it does not hold), each with the distinct
/// [`trigram_keys`] of their text. The GIN index costs per key per row: trigrams that repeat
/// across a chunk's entries (stack frames, fixed words) are indexed once.
struct Chunks {
    firsts: Vec<i64>,
    lasts: Vec<i64>,
    /// Every chunk's keys, one chunk after the other.
    keys: Vec<i32>,
    /// Where each chunk's keys start and end in `keys` (SQL's array subscripts: from 1, both
    /// included).
    starts: Vec<i32>,
    ends: Vec<i32>,
}

fn chunks(mut stored: Vec<(i64, &faultline_core::LogEvent)>) -> Chunks {
    stored.sort_unstable_by_key(|(id, _)| *id);
    let mut c = Chunks {
        firsts: Vec::new(),
        lasts: Vec::new(),
        keys: Vec::new(),
        starts: Vec::new(),
        ends: Vec::new(),
    };
    let mut lines: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
    let mut keys: rustc_hash::FxHashSet<i32> = rustc_hash::FxHashSet::default();
    let end_chunk = |c: &mut Chunks, first: i64, last: i64, keys: &mut rustc_hash::FxHashSet<i32>| {
        c.firsts.push(first);
        c.lasts.push(last);
        c.starts.push(c.keys.len() as i32 + 1);
        c.keys.extend(keys.drain());
        c.ends.push(c.keys.len() as i32);
    };
    let mut run = 0;
    for (i, &(id, event)) in stored.iter().enumerate() {
        if i > 0 && (run == CHUNK || id != stored[i - 1].0 + 1) {
            end_chunk(&mut c, stored[i - run].0, stored[i - 1].0, &mut keys);
            lines.clear();
            run = 0;
        }
        run += 1;
        for line in event.message.split('\n').chain(event.traceback.iter().flat_map(|t| t.split('\n'))) {
            // Lines repeat across a chunk's entries: each is read once.
            if lines.insert(line) {
                trigram_keys(line, &mut keys);
            }
        }
    }
    if run > 0 {
        end_chunk(&mut c, stored[stored.len() - run].0, stored[stored.len() - 1].0, &mut keys);
    }
    c
}

/// The search index's keys of a text: each run of three ASCII letters or digits in it, folded
/// to lower case as `ILIKE` folds them (a character whose lower case is an ASCII letter, such as
/// the Kelvin sign, counts as that letter), as the three bytes of an `int4`. A text that
/// `ILIKE`s a needle holds every key of the needle, so the chunks holding all of a needle's
/// keys hold all its matches. These are the trigrams of `pg_trgm`'s `show_trgm` that are three
/// ASCII letters or digits (migration 0010 reads them from there).
fn trigram_keys(text: &str, keys: &mut rustc_hash::FxHashSet<i32>) {
    let mut window = 0i32;
    let mut run = 0;
    for c in text.chars() {
        let folded = if c.is_ascii() { c.to_ascii_lowercase() } else { c.to_lowercase().next().unwrap_or(c) };
        if folded.is_ascii_alphanumeric() {
            window = ((window << 8) | folded as i32) & 0xff_ffff;
            run += 1;
            if run >= 3 {
                keys.insert(window);
            }
        } else {
            run = 0;
        }
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn ingest(&self, mut batch: IngestBatch) -> Result<IngestOutcome> {
        for ge in &mut batch.events {
            replace_nul(&mut ge.event);
        }
        let mut caches = self.caches.lock().await;
        // The partitions of recent days the batch falls on, made before its transaction (making
        // one locks `entries` until it commits).
        let now = wall_clock_ms();
        let days: BTreeSet<i64> = batch
            .events
            .iter()
            .map(|ge| day_of(ge.event.timestamp_ms))
            .filter(|d| *d >= day_of(now - PARTITIONS_BACK_MS) && *d < now + PARTITIONS_AHEAD_MS)
            .filter(|d| !caches.partition_days.contains(d))
            .collect();
        if !days.is_empty() {
            create_partitions(&self.pool, days.iter().copied()).await?;
            caches.partition_days.extend(days);
        }
        for attempt in 1.. {
            let asked = caches.mining.asked(&batch);
            if !asked.is_empty() {
                let found: Vec<(String, i64, Option<String>)> = sqlx::query_as(READ_BUCKETS)
                    .bind(asked.keys().map(String::as_str).collect::<Vec<_>>())
                    .bind(asked.values().map(|(_, rev)| *rev).collect::<Vec<_>>())
                    .fetch_all(&self.pool)
                    .await?;
                caches.mining.refresh(&asked, found);
            }
            // The events keep their own groupings until the buckets are written: a batch mined
            // again starts from them.
            let (writes, ids) = caches.mining.mine(&batch);
            let result = async {
                let mut tx = self.pool.begin().await?;
                if !write_buckets(&mut tx, &writes, batch.now_ms).await? {
                    return Ok(None);
                }
                caches.mining.settle(&mut batch, &ids);
                let outcome = ingest_tx(&mut tx, &mut caches, &batch).await?;
                tx.commit().await?;
                Ok::<_, StoreError>(Some(outcome))
            }
            .await;
            match result {
                Ok(Some(outcome)) => {
                    caches.mining.committed();
                    return Ok(outcome);
                }
                Ok(None) if attempt < MINING_ATTEMPTS => {
                    metrics::counter!("faultline_miner_conflicts_total").increment(1);
                    caches.mining.failed(&asked);
                }
                Ok(None) => {
                    caches.mining.failed(&asked);
                    return Err(StoreError::Busy(
                        "other instances kept changing the template miner's buckets of this batch".into(),
                    ));
                }
                Err(e) => {
                    caches.mining.failed(&asked);
                    caches.pattern_ids.clear();
                    return Err(e);
                }
            }
        }
        unreachable!("the attempts end in a return")
    }

    /// Nothing to do: the miner's buckets are written with the batches that change them.
    async fn save_grouping(&self, _now_ms: i64) -> Result<()> {
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
        let needle = q.text.as_deref().filter(|t| !t.is_empty()).map(pg_text);
        let text = needle.as_deref().map(like_pattern);
        let keys = needle.as_deref().map(needle_keys).unwrap_or_default();
        let matches = needle.as_deref().map_or("", text_match);
        let variant = match needle.as_deref() {
            Some(_) if !keys.is_empty() => INDEXED,
            Some(_) => SCANNED,
            None => NO_TEXT,
        };
        let (exact, prefix) = match &q.source {
            Some(SourceFilter::Exact(s)) => (Some(s.clone()), None),
            Some(SourceFilter::Prefix(p)) => (None, Some(like_prefix(p))),
            None => (None, None),
        };
        let level = q.level.map(Level::as_str);
        let cap = q.count_cap.map_or(i64::MAX - 1, |c| c.min(i64::MAX as u64 - 1) as i64);
        // The filters every statement of a search takes first ($1 to $6).
        macro_rules! filtered {
            ($query:expr) => {
                $query.bind(level).bind(&exact).bind(&prefix).bind(q.since_ms).bind(q.until_ms).bind(&text)
            };
        }
        let mut tx = self.pool.begin().await?;
        let variant = if variant == INDEXED {
            // The planner prices a scan of `entry_chunks` by its few heap pages and not the
            // keys kept out of line, which every row's test reads: told to take the index
            // instead.
            seqscan(&mut tx, false).await?;
            let candidates: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM (SELECT 1 FROM entry_chunks WHERE keys @> $1 LIMIT $2) n",
            )
            .bind(&keys)
            .bind(CHUNK_BUDGET + 1)
            .fetch_one(&mut *tx)
            .await?;
            if candidates > CHUNK_BUDGET {
                // A common needle (at least one match per candidate chunk): counted (up to the
                // cap) straight from the entries, and its page read newest first, sooner than
                // re-checking every candidate chunk and sorting what they hold.
                seqscan(&mut tx, true).await?;
                SCANNED
            } else {
                INDEXED
            }
        } else {
            variant
        };
        // The page keeps the generic plan: newest first through the time index, stopping at the
        // page. Planned for the actual needle, PostgreSQL underestimates how many entries match
        // and sorts every match of the window instead (232 ms instead of 9 at 1M entries).
        custom_plans(&mut tx, false).await?;
        let page = filtered!(sqlx::query(sqlx::AssertSqlSafe(search_sql(variant, matches, false))))
            .bind(i64::from(q.limit))
            .bind(i64::from(q.offset));
        let page = if variant == INDEXED { page.bind(&keys) } else { page };
        let rows = page.fetch_all(&mut *tx).await?;
        // A page short of its limit ends the matches: they are the ones before it and on it,
        // and a rare needle is not looked up a second time to count them.
        let (total, beyond_budget) = if let Some(total) = q.total_ended_by(rows.len()) {
            (total, false)
        } else {
            // The counts are planned for this search's window and needle. A generic plan
            // guesses the time bound's selectivity and counts a common needle through a bitmap
            // of a whole day's time index (96 ms before its first row at 10M entries); the plan
            // for the actual bounds scans and stops at the cap (41 ms), for 0.4–2 ms of planning.
            custom_plans(&mut tx, true).await?;
            if variant == SCANNED && q.count_cap.is_some() {
                let (found, read): (i64, i64) =
                    filtered!(sqlx::query_as(sqlx::AssertSqlSafe(budgeted_count_sql(matches))))
                        .bind(SCAN_BUDGET + 1)
                        .fetch_one(&mut *tx)
                        .await?;
                // More entries than the budget: at least `found` matches, and at least those up
                // to this page's (the budget may hold fewer).
                (found.max(q.matches_shown(rows.len())), read > SCAN_BUDGET)
            } else {
                let count = filtered!(sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(search_sql(
                    variant, matches, true
                ))))
                .bind(cap + 1);
                let count = if variant == INDEXED { count.bind(&keys) } else { count };
                (count.fetch_one(&mut *tx).await?, false)
            }
        };
        tx.commit().await?;
        let entries = rows.iter().map(entry_row).collect::<Result<Vec<_>, _>>()?;
        let total_capped = total > cap || beyond_budget;
        Ok(SearchPage { total: total.min(cap) as u64, total_capped, entries })
    }

    async fn list_patterns(&self, q: &PatternQuery) -> Result<PatternPage> {
        let level = q.level.map(Level::as_str);
        let status = q.status.map(PatternStatus::as_str);
        let filters = "($1::text IS NULL OR p.status = $1) AND ($2::text IS NULL OR p.source = $2)
            AND ($3::text IS NULL OR p.severity = $3) AND ($4::bigint IS NULL OR p.last_seen_ms >= $4)
            AND ($5::bigint IS NULL OR p.last_seen_ms < $5)
            AND ($6::text IS NULL OR p.normalized_message ILIKE $6 OR p.error_type ILIKE $6
                OR p.sample_message ILIKE $6 OR p.stack_trace ILIKE $6)
            AND (NOT $7 OR p.status <> 'ignored')";
        let text = q.text.as_deref().map(like_pattern);
        let hide_ignored = q.hide_ignored && q.status.is_none();
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM patterns p WHERE {filters}"
        )))
        .bind(status)
        .bind(&q.source)
        .bind(level)
        .bind(q.seen_since_ms)
        .bind(q.quiet_since_ms)
        .bind(&text)
        .bind(hide_ignored)
        .fetch_one(&self.pool)
        .await?;
        let sql = format!(
            "SELECT {PATTERN_COLUMNS} FROM patterns p WHERE {filters} ORDER BY {} LIMIT $8 OFFSET $9",
            q.order.sql()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(status)
            .bind(&q.source)
            .bind(level)
            .bind(q.seen_since_ms)
            .bind(q.quiet_since_ms)
            .bind(&text)
            .bind(hide_ignored)
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

    async fn oldest_and_newest(&self, fingerprints: &[String]) -> Result<Vec<EntryRow>> {
        // Each end is the first entry at or past the pattern in (pattern, time) order, kept if it
        // is the pattern's: every day partition's (pattern_id, timestamp_ms) index gives its
        // first row at once, whether the pattern is in that day or not. With `pattern_id =
        // p.id` instead, the planner may read a day through its time index, filtering by
        // pattern: where rows lie in time order (as a live service writes them) it did so for
        // two days, and for a pattern absent from them read both whole (0.7 s for the page's
        // 69 patterns at 1M entries, 32 ms this way).
        let sql = format!(
            "SELECT DISTINCT ON (e.id) {ENTRY_COLUMNS} FROM patterns p CROSS JOIN LATERAL (
                (SELECT * FROM entries WHERE (pattern_id, timestamp_ms) >= (p.id, {MIN})
                 ORDER BY pattern_id, timestamp_ms, id LIMIT 1)
                UNION ALL
                (SELECT * FROM entries WHERE (pattern_id, timestamp_ms) <= (p.id, {MAX})
                 ORDER BY pattern_id DESC, timestamp_ms DESC, id DESC LIMIT 1)) e
             WHERE p.fingerprint = ANY($1) AND e.pattern_id = p.id",
            MIN = i64::MIN,
            MAX = i64::MAX,
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(fingerprints).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(entry_row).collect::<Result<Vec<_>, _>>()?)
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
                WHERE pattern_id NOT IN (SELECT id FROM patterns WHERE status = 'ignored')
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
        fingerprint: Option<&str>,
    ) -> Result<Vec<Bucket>> {
        let width = bucket_width(interval_minutes)?;
        let sql = format!(
            "SELECT (t - $1) / $5 AS bucket, level, sum(count)::bigint FROM {WINDOW_COUNTS}
             WHERE $6::text IS NULL OR pattern_id = (SELECT id FROM patterns WHERE fingerprint = $6)
             GROUP BY bucket, level"
        );
        let (first, end) = bucket_quarters(since_ms, until_ms, width);
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(since_ms)
            .bind(until_ms)
            .bind(first)
            .bind(end)
            .bind(width)
            .bind(fingerprint)
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
        // The coming days' partitions, and those of days whose entries wait in the default
        // partition (they came before their day's partition was made), kept or not.
        let now = wall_clock_ms();
        let waiting: Vec<i64> = sqlx::query_scalar(
            "SELECT DISTINCT timestamp_ms - timestamp_ms % $3 FROM entries_default
             WHERE timestamp_ms >= $1 AND timestamp_ms < $2",
        )
        .bind(before_ms.max(0))
        .bind(now + PARTITIONS_AHEAD_MS)
        .bind(DAY_MS)
        .fetch_all(&self.pool)
        .await?;
        let ahead = (now..now + PARTITIONS_AHEAD_MS).step_by(DAY_MS as usize);
        create_partitions(&self.pool, waiting.into_iter().chain(ahead)).await?;
        // Whole days past the cutoff go at once.
        let (dropped, bytes): (i64, i64) =
            sqlx::query_as("SELECT entries, bytes FROM drop_entries_partitions_before($1)")
                .bind(before_ms)
                .fetch_one(&self.pool)
                .await?;
        report.entries_deleted += dropped as u64;
        report.bytes_freed += bytes as u64;
        // The rest, row by row: the part of the cutoff's own day before it, and the default
        // partition's.
        loop {
            let n = sqlx::query(
                "DELETE FROM entries
                 WHERE timestamp_ms < $1 AND id IN (SELECT id FROM entries WHERE timestamp_ms < $1 LIMIT $2)",
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
        // Index rows whose entries are all gone.
        sqlx::query(
            "DELETE FROM entry_chunks c
             WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.id BETWEEN c.first_id AND c.last_id)",
        )
        .execute(&mut *tx)
        .await?;
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
            "UPDATE patterns SET sample_entry_id = (SELECT id FROM entries WHERE pattern_id = patterns.id
                 ORDER BY timestamp_ms DESC, id DESC LIMIT 1)
             WHERE sample_entry_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM entries WHERE id = sample_entry_id)",
        )
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM entry_keys WHERE timestamp_ms < $1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // Rows were deleted one by one only in the cutoff's day and the default partition (the
        // other days went whole), in the keys and in the search index.
        let cutoff_day: Option<String> = sqlx::query_scalar(
            "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
             WHERE i.inhparent = 'entries'::regclass
               AND c.relname = entries_partition_name($1)",
        )
        .bind(before_ms)
        .fetch_optional(&self.pool)
        .await?;
        let tables =
            cutoff_day.into_iter().chain(["entries_default", "entry_keys", "entry_chunks"].map(String::from));
        for table in tables {
            // Names from the catalogue or fixed above, never from input.
            let vacuum = format!("VACUUM (ANALYZE) {table}");
            sqlx::query(sqlx::AssertSqlSafe(vacuum)).execute(&self.pool).await?;
        }
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

/// Measures the PostgreSQL ceiling for the ingest benchmark: `COPY … FROM STDIN` (binary, as the
/// store writes entries) of the given rows into a bare `entries`-shaped table (same columns, B-tree indexes only, no trigram
/// index, no patterns) in one transaction, in the database at `url`. Returns rows per second.
#[cfg(feature = "bench")]
pub async fn bench_copy_ceiling(url: &str, rows: &[GroupedEvent]) -> Result<f64> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS bare_entries;
         CREATE TABLE bare_entries (id BIGINT PRIMARY KEY, source_id TEXT NOT NULL,
            external_id TEXT NOT NULL, timestamp_ms BIGINT NOT NULL, level TEXT NOT NULL,
            source TEXT NOT NULL, message TEXT NOT NULL, traceback TEXT, request_path TEXT,
            request_method TEXT, metadata JSONB, pattern_id BIGINT NOT NULL, raw TEXT NOT NULL);
         CREATE UNIQUE INDEX bare_entries_origin ON bare_entries (source_id, external_id);
         CREATE INDEX bare_entries_ts ON bare_entries (timestamp_ms);
         CREATE INDEX bare_entries_pattern_ts ON bare_entries (pattern_id, timestamp_ms);",
    )
    .execute(&mut conn)
    .await?;
    // The end-to-end run before left dirty pages and write-ahead log behind: written out first
    // (a superuser's right), so that a checkpoint does not run during the timed copy only
    // sometimes.
    if let Err(e) = sqlx::query("CHECKPOINT").execute(&mut conn).await {
        tracing::warn!("CHECKPOINT before the ceiling: {e}");
    }
    let mut ids: HashMap<&str, i64> = HashMap::new();
    let started = std::time::Instant::now();
    let mut tx = conn.begin().await?;
    // The same rows in the same format as the store's `COPY`.
    let sql = COPY_ENTRIES.replacen("entries", "bare_entries", 1);
    copy_rows(&mut tx, &sql, rows.iter().enumerate(), |buf, (n, ge)| {
        let next = ids.len() as i64 + 1;
        let pattern_id = *ids.entry(ge.grouping.fingerprint.as_str()).or_insert(next);
        buf.entry(n as i64 + 1, &ge.event, &ge.event.idempotency_key(), pattern_id);
    })
    .await?;
    tx.commit().await?;
    let rate = rows.len() as f64 / started.elapsed().as_secs_f64();
    sqlx::query("DROP TABLE bare_entries").execute(&mut conn).await?;
    Ok(rate)
}
