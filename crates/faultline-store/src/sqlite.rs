//! SQLite implementation of [`Store`]: one file, WAL, one writer connection and [`READERS`]
//! readers.
//!
//! rusqlite is used (not sqlx) because ingest is row-heavy and rusqlite's prepared statements
//! are several times faster here. Calls run on tokio's blocking pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use faultline_core::{FINGERPRINT_VERSION, Level, PatternStatus, TaskStatus, UnknownState};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use rusqlite_migration::{M, Migrations};

use crate::mining::{self, Mining, Snapshot};
use crate::packed;
use crate::sql::*;
use crate::sqlite_alerts;
use crate::types::*;
use crate::{Result, Store, StoreError};

/// The SQLite store.
#[derive(Clone)]
pub struct SqliteStore {
    writer: Arc<Mutex<Writer>>,
    /// Readers, so independent reads (the parts of a page) run at once beside the writer.
    readers: Arc<Vec<Mutex<Connection>>>,
    /// Where a read that finds every reader busy waits.
    next_reader: Arc<std::sync::atomic::AtomicUsize>,
    /// Batches waiting for the writer, each with where its outcome goes: whoever holds the
    /// writer next commits all of them in one transaction (see [`SqliteStore::ingest`]).
    queued: Arc<Mutex<Vec<Queued>>>,
    /// The template miner: batches are mined before they wait for the writer, so one batch is
    /// mined while another is written. Taken after the writer when both are held, never before.
    mining: Arc<Mutex<Mining>>,
}

type Queued = (IngestBatch, Packed, tokio::sync::oneshot::Sender<Result<IngestOutcome>>);

/// Each event's raw text compressed for storage, when it is ([`packed::pack`]), computed before
/// the batch waits for the writer.
type Packed = Vec<Option<Vec<u8>>>;

/// The writer's page cache, in KiB as `PRAGMA cache_size` takes it (negative).
const WRITER_CACHE_KIB: i64 = -16 * 1024;

/// Batches of at most this many events look up what is stored per pattern-minute one by one.
const POINT_LOOKUPS: usize = 32;

/// Batches committed together at most, however many wait.
const GROUP_BATCHES: usize = 64;

struct Writer {
    conn: Connection,
    /// fingerprint → pattern id; ids never change once assigned.
    pattern_ids: HashMap<String, i64>,
    /// The newest miner snapshot saved.
    saved_seq: u64,
    /// Patterns of an older fingerprint version exist (they may match within the transition
    /// window).
    old_versions: bool,
}

fn migrations() -> Migrations<'static> {
    Migrations::new(vec![
        M::up(include_str!("../migrations/sqlite/01_init.sql")),
        M::up(include_str!("../migrations/sqlite/02_alerts.sql")),
        M::up(include_str!("../migrations/sqlite/03_quarter_counts.sql")),
        M::up(include_str!("../migrations/sqlite/04_grouper_state.sql")),
        M::up(include_str!("../migrations/sqlite/05_index_segments.sql")),
        M::up(include_str!("../migrations/sqlite/06_alerting.sql")),
        M::up(include_str!("../migrations/sqlite/07_newest_chunk_unindexed.sql")),
        M::up(include_str!("../migrations/sqlite/08_alerts_fired_covering.sql")),
        M::up_with_hook(include_str!("../migrations/sqlite/09_index_tokens.sql"), |tx: &Transaction| {
            reindex_all(tx).map_err(|e| rusqlite_migration::HookError::Hook(e.to_string()))
        }),
    ])
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65536)?;
    // Checkpoint every ~40 MiB of WAL rather than every 4 MiB: ingest rewrites the same hot
    // index pages batch after batch, and each checkpoint copies them again. (A separate
    // checkpoint thread with PASSIVE checkpoints was measured slower.)
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    Ok(())
}

/// Reader connections: one per core of a small machine.
const READERS: usize = 2;

/// The database file readers map into memory (SQLite caps it at 2 GiB unless built otherwise).
/// A search reading a needle's entries newest first visits rows all over the table; mapped,
/// each page is read from the operating system's cache in place instead of copied into the
/// connection's own cache by a system call, and the connection's cache is not thrashed.
/// Only readers map it: the writer's pages are the indexes' hot ones, which its cache holds.
const READER_MMAP_BYTES: i64 = 2 << 30;

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        let path = path.to_owned();
        blocking(move || {
            let unreachable =
                |detail: String| StoreError::Unreachable { target: path.display().to_string(), detail };
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| unreachable(e.to_string()))?;
            }
            let mut conn = Connection::open(&path).map_err(|e| unreachable(e.to_string()))?;
            // Writers take the write lock when they begin, so a busy database is waited for
            // (busy_timeout) instead of failing at once when a read turns into a write.
            conn.set_transaction_behavior(rusqlite::TransactionBehavior::Immediate);
            // Must precede the first table so deleted pages can be handed back by cleanup.
            conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
            configure(&conn)?;
            // The writer mostly appends: its cache needs the indexes' hot pages, not the rows it
            // wrote, which the reader's larger cache holds when they are read.
            conn.pragma_update(None, "cache_size", WRITER_CACHE_KIB)?;
            migrations().to_latest(&mut conn).map_err(|e| StoreError::Migration(e.to_string()))?;
            let readers = (0..READERS)
                .map(|_| {
                    let reader = Connection::open(&path).map_err(|e| unreachable(e.to_string()))?;
                    configure(&reader)?;
                    reader.pragma_update(None, "mmap_size", READER_MMAP_BYTES)?;
                    Ok(Mutex::new(reader))
                })
                .collect::<Result<Vec<_>>>()?;
            let saved: Option<String> =
                conn.query_row(mining::LOAD_STATE, [mining::VERSION], |r| r.get(0)).optional()?;
            let old_versions: bool = conn.query_row(
                "SELECT EXISTS (SELECT 1 FROM patterns WHERE fingerprint_version < ?1)",
                [FINGERPRINT_VERSION],
                |r| r.get(0),
            )?;
            let writer = Writer { conn, pattern_ids: HashMap::new(), saved_seq: 0, old_versions };
            Ok(SqliteStore {
                writer: Arc::new(Mutex::new(writer)),
                readers: Arc::new(readers),
                next_reader: Arc::default(),
                queued: Arc::default(),
                mining: Arc::new(Mutex::new(Mining::load(saved))),
            })
        })
        .await
    }

    /// How long a call waits for another process's write lock before it fails with
    /// [`StoreError::Busy`] (10 s unless set).
    pub fn set_busy_timeout(&self, timeout: std::time::Duration) -> Result<()> {
        lock(&self.writer).conn.busy_timeout(timeout)?;
        for reader in self.readers.iter() {
            lock(reader).busy_timeout(timeout)?;
        }
        Ok(())
    }

    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> {
        let (readers, next) = (self.readers.clone(), self.next_reader.clone());
        blocking(move || {
            let free = readers.iter().find_map(|r| r.try_lock().ok());
            let reader = free.unwrap_or_else(|| {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % readers.len();
                lock(&readers[i])
            });
            f(&reader)
        })
    }
}

impl SqliteStore {
    /// Runs `f` in a transaction on the writer connection.
    fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> {
        let writer = self.writer.clone();
        blocking(move || {
            let mut w = lock(&writer);
            let tx = w.conn.transaction()?;
            let value = f(&tx)?;
            tx.commit()?;
            Ok(value)
        })
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

const INSERT_PATTERN: &str =
    "INSERT INTO patterns (fingerprint, fingerprint_version, tier, normalized_message,
    error_type, frames, first_seen_ms, last_seen_ms, occurrence_count, stack_trace, source, severity,
    created_ms, updated_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 0, ?8, ?9, ?10, ?11, ?11)
    ON CONFLICT (fingerprint) DO NOTHING";

const INSERT_ENTRY: &str =
    "INSERT OR IGNORE INTO entries (source_id, external_id, timestamp_ms, level, source,
    message, traceback, request_path, request_method, metadata, pattern_id, raw)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)";

/// Shared by both backends: counts add up, first/last widen, severity only rises.
const UPDATE_PATTERN: &str = "UPDATE patterns SET
    occurrence_count = occurrence_count + ?1,
    first_seen_ms = min(first_seen_ms, ?2),
    last_seen_ms = max(last_seen_ms, ?3),
    severity = CASE WHEN ?4 = 'CRITICAL' OR severity = 'CRITICAL' THEN 'CRITICAL'
                    WHEN ?4 = 'ERROR' OR severity = 'ERROR' THEN 'ERROR'
                    ELSE ?4 END,
    sample_entry_id = coalesce(sample_entry_id, ?5),
    sample_message = coalesce(sample_message, ?8),
    normalized_message = coalesce(?9, normalized_message),
    updated_ms = ?6
    WHERE id = ?7 RETURNING status";

/// Adds `rows` rows' counts to `minute_counts` (8 parameters a row, in the columns' order).
fn upsert_minutes_sql(rows: usize) -> String {
    let values = vec!["(?, ?, ?, ?, ?, ?, ?, ?)"; rows].join(", ");
    format!(
        "INSERT INTO minute_counts (minute_ms, pattern_id, source, level, count, stored, first_ms, last_ms)
         VALUES {values}
         ON CONFLICT (minute_ms, pattern_id, source, level)
         DO UPDATE SET count = count + excluded.count, stored = stored + excluded.stored,
         first_ms = min(coalesce(first_ms, excluded.first_ms), excluded.first_ms),
         last_ms = max(coalesce(last_ms, excluded.last_ms), excluded.last_ms)"
    )
}

type MinuteKey<'a> = (i64, i64, &'a str, &'static str);

/// One `minute_counts` row's parameters, in [`upsert_minutes_sql`]'s order.
fn minute_values<'r>(
    ((minute_ms, pattern_id, source, level), m): &(&'r MinuteKey<'_>, &'r MinuteDelta),
) -> [&'r dyn rusqlite::ToSql; 8] {
    [minute_ms, pattern_id, source, level, &m.count, &m.stored, &m.first_ms, &m.last_ms]
}

/// Minute rows written by one statement: a batch writes ~0.75 of them per error, and one row a
/// statement spent as much again on the statement as on the row.
const MINUTE_ROWS: usize = 64;

const UPSERT_QUARTER: &str = "INSERT INTO quarter_counts (quarter_ms, pattern_id, source, level, count)
    VALUES (?1, ?2, ?3, ?4, ?5)
    ON CONFLICT (quarter_ms, pattern_id, source, level) DO UPDATE SET count = count + excluded.count";

/// The counts of a window `[?1, ?2)` (`?1` a minute start): whole quarters `[?3, ?4)` from
/// `quarter_counts`, the edges from `minute_counts` (see [`quarter_span`]). Columns: t,
/// pattern_id, source, level, count.
const WINDOW_COUNTS: &str = "(SELECT quarter_ms AS t, pattern_id, source, level, count FROM quarter_counts
        WHERE quarter_ms >= ?3 AND quarter_ms < ?4
    UNION ALL SELECT minute_ms, pattern_id, source, level, count FROM minute_counts
        WHERE minute_ms >= ?1 AND minute_ms < min(?2, ?3)
    UNION ALL SELECT minute_ms, pattern_id, source, level, count FROM minute_counts
        WHERE minute_ms >= max(?4, ?1) AND minute_ms < ?2)";

const UPSERT_LINES: &str =
    "INSERT INTO line_counts (minute_ms, source_id, level, count) VALUES (?1, ?2, ?3, ?4)
    ON CONFLICT (minute_ms, source_id, level) DO UPDATE SET count = count + excluded.count";

const UPSERT_CURSOR: &str = "INSERT INTO source_cursors (source_id, cursor, updated_ms) VALUES (?1, ?2, ?3)
    ON CONFLICT (source_id) DO UPDATE SET cursor = excluded.cursor, updated_ms = excluded.updated_ms";

const UPSERT_STATE: &str = "INSERT INTO grouper_state (version, state, updated_ms) VALUES (?1, ?2, ?3)
    ON CONFLICT (version) DO UPDATE SET state = excluded.state, updated_ms = excluded.updated_ms";

impl Writer {
    /// Commits batches that arrived together (already mined) in one transaction (group commit:
    /// the commit and the trigram index are paid once for all of them), each with its own
    /// outcome, and the newest miner snapshot they carry. If that transaction fails, each batch
    /// is tried again in a transaction of its own, so one batch's failure stays its own.
    fn ingest_group(
        &mut self,
        batches: &[IngestBatch],
        packed: &[Packed],
        mining: &Mutex<Mining>,
    ) -> Vec<Result<IngestOutcome>> {
        let snapshot = batches
            .iter()
            .filter_map(|b| b.mined.as_ref()?.0.as_ref())
            .max_by_key(|s| s.seq)
            .filter(|s| s.seq > self.saved_seq);
        if let ([batch], [packed]) = (batches, packed) {
            return vec![self.commit_one(batch, packed, snapshot, mining)];
        }
        let now_ms = batches.iter().map(|b| b.now_ms).max().unwrap_or_default();
        let committed = (|| -> Result<Vec<IngestOutcome>> {
            let tx = self.conn.transaction()?;
            let mut inserted = Vec::new();
            let mut outcomes = Vec::with_capacity(batches.len());
            for (batch, packed) in batches.iter().zip(packed) {
                outcomes.push(ingest_tx(
                    &tx,
                    &mut self.pattern_ids,
                    self.old_versions,
                    batch,
                    packed,
                    &mut inserted,
                )?);
            }
            index_chunks(&tx, &inserted)?;
            save_snapshot(&tx, snapshot, now_ms)?;
            drop(inserted);
            tx.commit()?;
            Ok(outcomes)
        })();
        match self.settle(committed, snapshot, mining) {
            Ok(outcomes) => outcomes.into_iter().map(Ok).collect(),
            Err(_) => batches
                .iter()
                .zip(packed)
                .map(|(batch, packed)| self.commit_one(batch, packed, None, mining))
                .collect(),
        }
    }

    /// Commits a batch already mined, with the miner's snapshot when one is to be saved.
    fn commit_one(
        &mut self,
        batch: &IngestBatch,
        packed: &[Option<Vec<u8>>],
        snapshot: Option<&Snapshot>,
        mining: &Mutex<Mining>,
    ) -> Result<IngestOutcome> {
        let committed = (|| -> Result<IngestOutcome> {
            let tx = self.conn.transaction()?;
            let mut inserted = Vec::new();
            let outcome =
                ingest_tx(&tx, &mut self.pattern_ids, self.old_versions, batch, packed, &mut inserted)?;
            index_chunks(&tx, &inserted)?;
            save_snapshot(&tx, snapshot, batch.now_ms)?;
            drop(inserted);
            tx.commit()?;
            Ok(outcome)
        })();
        self.settle(committed, snapshot, mining)
    }

    /// How a batch's transaction ended: once it committed, the snapshot saved with it is
    /// noted; when it failed, the pattern ids cached during it are forgotten (they were rolled
    /// back with it) and the miner saves its state again with a later batch.
    fn settle<T>(
        &mut self,
        committed: Result<T>,
        snapshot: Option<&Snapshot>,
        mining: &Mutex<Mining>,
    ) -> Result<T> {
        match committed {
            Ok(value) => {
                self.saved(snapshot);
                Ok(value)
            }
            Err(e) => {
                self.pattern_ids.clear();
                if snapshot.is_some() {
                    lock(mining).not_saved();
                }
                Err(e)
            }
        }
    }

    fn saved(&mut self, snapshot: Option<&Snapshot>) {
        if let Some(s) = snapshot {
            self.saved_seq = self.saved_seq.max(s.seq);
        }
    }
}

fn save_snapshot(tx: &Transaction<'_>, snapshot: Option<&Snapshot>, now_ms: i64) -> Result<()> {
    if let Some(s) = snapshot {
        tx.prepare_cached(UPSERT_STATE)?.execute(params![mining::VERSION, s.json, now_ms])?;
    }
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stores one batch in `tx`; the entries it inserted are added to `inserted` for the trigram
/// index, which the caller fills once per transaction.
fn ingest_tx<'b>(
    tx: &Transaction<'_>,
    pattern_ids: &mut HashMap<String, i64>,
    old_versions: bool,
    batch: &'b IngestBatch,
    packed: &[Option<Vec<u8>>],
    inserted: &mut Vec<(i64, &'b faultline_core::LogEvent)>,
) -> Result<IngestOutcome> {
    let mut outcome = IngestOutcome::default();
    let mut totals = BatchTotals::default();
    let cap = i64::from(batch.max_stored_per_pattern_minute);
    let mut new_ids = std::collections::HashSet::new();
    {
        let mut insert_entry = tx.prepare_cached(INSERT_ENTRY)?;
        let ids = resolve_patterns(tx, pattern_ids, old_versions, batch, &mut outcome, &mut new_ids)?;
        let mut stored = stored_in_batch_minutes(tx, batch, &ids)?;
        inserted.reserve(batch.events.len());
        for (k, (ge, &pattern_id)) in batch.events.iter().zip(&ids).enumerate() {
            let event = &ge.event;
            let stored_so_far = stored.entry((pattern_id, minute_of(event.timestamp_ms))).or_insert(0);
            if *stored_so_far >= cap {
                outcome.capped += 1;
                totals.add(pattern_id, ge, None);
                continue;
            }
            let metadata = metadata_json(event);
            let raw: &dyn rusqlite::ToSql = match packed.get(k) {
                Some(Some(blob)) => blob,
                _ => &event.raw,
            };
            let n = insert_entry.execute(params![
                event.origin.source_id,
                event.idempotency_key(),
                event.timestamp_ms,
                event.level.as_str(),
                event.source,
                event.message,
                event.traceback,
                event.request_path,
                event.request_method,
                metadata,
                pattern_id,
                raw,
            ])?;
            if n == 0 {
                outcome.duplicates += 1;
                continue;
            }
            let id = tx.last_insert_rowid();
            inserted.push((id, event));
            *stored_so_far += 1;
            outcome.stored += 1;
            totals.add(pattern_id, ge, Some(id));
        }
    }
    outcome.touched = write_totals(tx, &totals, batch, &new_ids)?;
    Ok(outcome)
}

/// Entries per row of the trigram index (see migrations/sqlite/01_init.sql).
const CHUNK: i64 = 256;

/// Drops the index rows of the chunk holding the newest entry, which searches read directly.
const NEWEST_CHUNK_UNINDEXED: &str =
    "DELETE FROM entries_fts WHERE rowid >= ((SELECT max(id) FROM entries) / 256 * 256) << 8";

/// Text of a chunk's earlier entries held at once to index it: past it, they are indexed in
/// rows of their own, so indexing a chunk of large entries holds a bounded part of it.
const ROW_BYTES: usize = 4 << 20;

/// The rowid of an index row covering entries `first..=last` of one chunk: the first id shifted
/// left 8 bits, plus `last - first` (< [`CHUNK`]), so rows never overlap and sort by first id.
fn index_rowid(first: i64, last: i64) -> i64 {
    (first << 8) | (last - first)
}

/// Indexes the chunks of [`CHUNK`] consecutive ids that the entries just inserted (ids
/// ascending) completed: every chunk but the one holding the newest entry is indexed, each in a
/// row holding each distinct trigram of its entries' words once. The newest chunk is searched
/// without the index (see [`INDEXED`]), so a transaction that stays inside it, as most small
/// requests do, writes nothing to the index, and each entry's text is indexed once, whatever
/// the batches. The chunk's entries stored before this transaction are read back for it.
fn index_chunks(tx: &Transaction<'_>, inserted: &[(i64, &faultline_core::LogEvent)]) -> Result<()> {
    let (Some(&(first_id, _)), Some(&(last_id, _))) = (inserted.first(), inserted.last()) else {
        return Ok(());
    };
    let until = last_id / CHUNK * CHUNK;
    let before: Option<i64> = tx
        .prepare_cached("SELECT max(id) FROM entries WHERE id < ?1")?
        .query_row([first_id], |r| r.get(0))?;
    let from = before.unwrap_or(first_id).min(first_id) / CHUNK * CHUNK;
    if from >= until {
        return Ok(());
    }
    // Nothing indexes these chunks yet (cleanup keeps it so when it deletes the newest
    // entries); should rows remain, the chunks' new rows replace them rather than collide.
    tx.prepare_cached("DELETE FROM entries_fts WHERE rowid >= ?1 AND rowid < ?2")?
        .execute(params![from << 8, until << 8])?;
    let mut insert = tx.prepare_cached(INSERT_INDEX_ROW)?;
    let earlier = index_stored(tx, &mut insert, from, first_id.min(until))?;
    let texts = earlier.iter().map(|(id, m, t)| (*id, m.as_str(), t.as_deref())).chain(
        inserted
            .iter()
            .take_while(|(id, _)| *id < until)
            .map(|(id, e)| (*id, e.message.as_str(), e.traceback.as_deref())),
    );
    write_index_rows(&mut insert, texts)
}

const INSERT_INDEX_ROW: &str = "INSERT INTO entries_fts (rowid, body) VALUES (?1, ?2)";

/// Stored entries `from..to`, read back for the index (ids ascending): indexed whenever the
/// text held passes [`ROW_BYTES`]; the entries read since are returned, not yet indexed.
fn index_stored(
    tx: &Transaction<'_>,
    insert: &mut rusqlite::CachedStatement<'_>,
    from: i64,
    to: i64,
) -> Result<Vec<(i64, String, Option<String>)>> {
    let mut earlier: Vec<(i64, String, Option<String>)> = Vec::new();
    let mut held = 0;
    let mut stmt = tx.prepare_cached(
        "SELECT id, message, traceback FROM entries WHERE id >= ?1 AND id < ?2 ORDER BY id",
    )?;
    let mut rows = stmt.query(params![from, to])?;
    while let Some(r) = rows.next()? {
        let (message, traceback): (String, Option<String>) = (r.get(1)?, r.get(2)?);
        held += message.len() + traceback.as_ref().map_or(0, String::len);
        earlier.push((r.get(0)?, message, traceback));
        if held > ROW_BYTES {
            write_index_rows(insert, earlier.iter().map(|(id, m, t)| (*id, m.as_str(), t.as_deref())))?;
            earlier.clear();
            held = 0;
        }
    }
    Ok(earlier)
}

/// Fills the (empty) index from the stored entries: every chunk but the newest (migration 09,
/// which changed what the index holds).
fn reindex_all(tx: &Transaction<'_>) -> Result<()> {
    let newest: Option<i64> = tx.query_row("SELECT max(id) FROM entries", [], |r| r.get(0))?;
    let Some(newest) = newest else { return Ok(()) };
    let mut insert = tx.prepare_cached(INSERT_INDEX_ROW)?;
    let rest = index_stored(tx, &mut insert, 0, newest / CHUNK * CHUNK)?;
    write_index_rows(&mut insert, rest.iter().map(|(id, m, t)| (*id, m.as_str(), t.as_deref())))
}

/// Writes the index rows of `texts` (ids ascending): a row per chunk they reach, holding each
/// distinct trigram of its words once, as an index token ([`push_token`]).
fn write_index_rows<'a>(
    insert: &mut rusqlite::CachedStatement<'_>,
    texts: impl Iterator<Item = (i64, &'a str, Option<&'a str>)>,
) -> Result<()> {
    let mut words: rustc_hash::FxHashSet<&str> = rustc_hash::FxHashSet::default();
    // A trigram as one number (21 bits a character): one word to hash.
    let mut trigrams: rustc_hash::FxHashSet<u64> = rustc_hash::FxHashSet::default();
    let mut body = String::new();
    let mut row: Option<(i64, i64)> = None;
    for (id, message, traceback) in texts {
        if let Some((first, last)) = row
            && id / CHUNK != first / CHUNK
        {
            insert.execute(params![index_rowid(first, last), body])?;
            words.clear();
            trigrams.clear();
            body.clear();
            row = None;
        }
        row = Some((row.map_or(id, |(first, _)| first), id));
        for word in message.split_whitespace().chain(traceback.unwrap_or("").split_whitespace()) {
            // Words repeat across a chunk's entries: each is cut into trigrams once.
            if !words.insert(word) {
                continue;
            }
            let mut window = ['\0'; 3];
            for (i, c) in word.chars().enumerate() {
                window = [window[1], window[2], c.to_ascii_lowercase()];
                let key = u64::from(window[0]) << 42 | u64::from(window[1]) << 21 | u64::from(window[2]);
                if i >= 2 && trigrams.insert(key) {
                    push_token(&mut body, window);
                }
            }
        }
    }
    if let Some((first, last)) = row {
        insert.execute(params![index_rowid(first, last), body])?;
    }
    Ok(())
}

/// Appends the index token of a trigram (ASCII letters already in lower case) and a space: the
/// hex of its UTF-8 bytes, a word FTS5's `ascii` tokenizer keeps whole. So the index holds
/// exactly the trigrams inside words, each once per row, where FTS5's own trigram tokenizer
/// would read every trigram of every word, and those across the spaces between them.
fn push_token(body: &mut String, trigram: [char; 3]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut utf8 = [0u8; 4];
    for c in trigram {
        for &b in c.encode_utf8(&mut utf8).as_bytes() {
            body.push(char::from(HEX[usize::from(b >> 4)]));
            body.push(char::from(HEX[usize::from(b & 15)]));
        }
    }
    body.push(' ');
}

/// An FTS5 query matching chunks that contain every trigram lying inside a word of `needle`:
/// a superset of the chunks containing `needle` (the caller re-checks with LIKE, whose case
/// folding is ASCII's, as the index's). `None` when the needle has no such trigram (e.g. "a b").
fn trigram_query(needle: &str) -> Option<String> {
    let mut terms: Vec<String> = Vec::new();
    for word in needle.split_whitespace() {
        let chars: Vec<char> = word.chars().map(|c| c.to_ascii_lowercase()).collect();
        for w in chars.windows(3) {
            let mut token = String::with_capacity(26);
            push_token(&mut token, [w[0], w[1], w[2]]);
            token.pop();
            terms.push(token);
        }
    }
    terms.sort();
    terms.dedup();
    // Enough trigrams to be selective; the LIKE re-check keeps the answer exact.
    terms.truncate(24);
    let query = terms.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(" AND ");
    (!query.is_empty()).then_some(query)
}

/// The pattern id of every event in the batch, inserting patterns seen for the first time.
/// An event whose fingerprint is new but whose previous-version fingerprint names a pattern of
/// an older version seen within the transition window goes to that pattern.
fn resolve_patterns(
    tx: &Transaction<'_>,
    pattern_ids: &mut HashMap<String, i64>,
    old_versions: bool,
    batch: &IngestBatch,
    outcome: &mut IngestOutcome,
    new_ids: &mut std::collections::HashSet<i64>,
) -> Result<Vec<i64>> {
    let mut insert_pattern = tx.prepare_cached(INSERT_PATTERN)?;
    let mut find_pattern = tx.prepare_cached("SELECT id FROM patterns WHERE fingerprint = ?1")?;
    let mut find_previous = tx.prepare_cached(
        "SELECT id FROM patterns WHERE fingerprint = ?1 AND fingerprint_version < ?2 AND last_seen_ms >= ?3",
    )?;
    let mut ids = Vec::with_capacity(batch.events.len());
    for ge in &batch.events {
        let (event, g) = (&ge.event, &ge.grouping);
        if let Some(id) = pattern_ids.get(g.fingerprint.as_str()) {
            ids.push(*id);
            continue;
        }
        let mut id: Option<i64> =
            find_pattern.query_row([g.fingerprint.as_str()], |r| r.get(0)).optional()?;
        if id.is_none()
            && old_versions
            && let Some(previous) = &g.previous
        {
            let since = batch.now_ms - mining::TRANSITION_WINDOW_MS;
            id = find_previous
                .query_row(params![previous.as_str(), FINGERPRINT_VERSION, since], |r| r.get(0))
                .optional()?;
        }
        let id = match id {
            Some(id) => id,
            None => {
                let inserted = insert_pattern.execute(params![
                    g.fingerprint.as_str(),
                    FINGERPRINT_VERSION,
                    g.tier.as_str(),
                    g.template,
                    g.error_type,
                    frames_json(g),
                    event.timestamp_ms,
                    event.traceback,
                    event.source,
                    event.level.as_str(),
                    batch.now_ms,
                ])?;
                if inserted == 1 {
                    outcome.new_patterns += 1;
                    new_ids.insert(tx.last_insert_rowid());
                    tx.last_insert_rowid()
                } else {
                    // Written by another process since the lookup above.
                    find_pattern.query_row([g.fingerprint.as_str()], |r| r.get(0))?
                }
            }
        };
        pattern_ids.insert(g.fingerprint.as_str().to_owned(), id);
        ids.push(id);
    }
    Ok(ids)
}

/// Entries already stored per (pattern, minute) the batch touches, read inside its transaction
/// (so other writers' rows count too). A batch touching few of them
/// (a request of one event, a Sentry envelope) looks each up; a larger one reads its minutes
/// whole, which costs as much however many patterns those minutes hold.
fn stored_in_batch_minutes(
    tx: &Transaction<'_>,
    batch: &IngestBatch,
    pattern_ids: &[i64],
) -> Result<HashMap<(i64, i64), i64>> {
    if pattern_ids.len() <= POINT_LOOKUPS {
        let pairs = batch_minute_pairs(batch, pattern_ids);
        let mut stmt = tx.prepare_cached(
            "SELECT coalesce(sum(stored), 0) FROM minute_counts WHERE minute_ms = ?1 AND pattern_id = ?2",
        )?;
        let mut stored = HashMap::with_capacity(pairs.len());
        for (minute, pattern_id) in pairs {
            let n: i64 = stmt.query_row(params![minute, pattern_id], |r| r.get(0))?;
            if n > 0 {
                stored.insert((pattern_id, minute), n);
            }
        }
        return Ok(stored);
    }
    let Some((first, last)) = batch_minute_span(batch) else { return Ok(HashMap::new()) };
    let mut stmt = tx.prepare_cached(
        "SELECT pattern_id, minute_ms, sum(stored) FROM minute_counts
         WHERE minute_ms BETWEEN ?1 AND ?2 AND stored > 0 GROUP BY pattern_id, minute_ms",
    )?;
    let rows = stmt.query_map(params![first, last], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))?;
    Ok(rows.collect::<rusqlite::Result<HashMap<_, _>>>()?)
}

fn write_totals(
    tx: &Transaction<'_>,
    totals: &BatchTotals<'_>,
    batch: &IngestBatch,
    new_ids: &std::collections::HashSet<i64>,
) -> Result<Vec<TouchedPattern>> {
    let mut update = tx.prepare_cached(UPDATE_PATTERN)?;
    let mut regress = tx.prepare_cached(REGRESS_PATTERN)?;
    let mut touched = Vec::with_capacity(totals.patterns.len());
    for (pattern_id, d) in &totals.patterns {
        let regressed = regress.execute(params![batch.now_ms, pattern_id])? == 1;
        let status: PatternStatus = update.query_row(
            params![
                d.count,
                d.first_ms,
                d.last_ms,
                d.level.as_str(),
                d.sample,
                batch.now_ms,
                pattern_id,
                d.sample_message,
                d.template,
            ],
            |r| state(r, 0),
        )?;
        touched.push(TouchedPattern {
            pattern_id: *pattern_id,
            new: new_ids.contains(pattern_id),
            regressed,
            status,
            highest_level: d.level,
        });
    }
    let minutes: Vec<_> = totals.minutes.iter().collect();
    static MANY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| upsert_minutes_sql(MINUTE_ROWS));
    static ONE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| upsert_minutes_sql(1));
    let mut many = tx.prepare_cached(&MANY)?;
    let mut one = tx.prepare_cached(&ONE)?;
    for rows in minutes.chunks(MINUTE_ROWS) {
        if rows.len() == MINUTE_ROWS {
            many.execute(rusqlite::params_from_iter(rows.iter().flat_map(minute_values)))?;
        } else {
            for row in rows {
                one.execute(rusqlite::params_from_iter(minute_values(row)))?;
            }
        }
    }
    let mut feed = tx.prepare_cached(INSERT_FEED)?;
    for t in &touched {
        feed.execute(params![
            t.pattern_id,
            t.new,
            t.regressed,
            t.highest_level.as_str(),
            t.status.as_str(),
            batch.now_ms
        ])?;
    }
    let mut quarter = tx.prepare_cached(UPSERT_QUARTER)?;
    for ((quarter_ms, pattern_id, source, level), count) in quarter_totals(&totals.minutes) {
        quarter.execute(params![quarter_ms, pattern_id, source, level, count])?;
    }
    let mut lines = tx.prepare_cached(UPSERT_LINES)?;
    for c in &batch.skipped {
        lines.execute(params![c.minute, c.source_id, c.level.as_str(), c.count as i64])?;
    }
    if let Some(cursor) = &batch.cursor {
        tx.prepare_cached(UPSERT_CURSOR)?.execute(params![batch.source_id, cursor, batch.now_ms])?;
    }
    Ok(touched)
}

fn entry_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EntryRow> {
    let metadata: Option<String> = r.get(8)?;
    Ok(EntryRow {
        id: r.get(0)?,
        timestamp_ms: r.get(1)?,
        level: r.get(2)?,
        source: r.get(3)?,
        message: r.get(4)?,
        traceback: r.get(5)?,
        request_path: r.get(6)?,
        request_method: r.get(7)?,
        metadata: metadata.and_then(|m| serde_json::from_str(&m).ok()).unwrap_or(serde_json::Value::Null),
        fingerprint: r.get(9)?,
        raw: match r.get_ref(10)? {
            rusqlite::types::ValueRef::Blob(blob) => packed::unpack(blob).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(10, rusqlite::types::Type::Blob, e.into())
            })?,
            _ => r.get(10)?,
        },
        source_id: r.get(11)?,
        external_id: r.get(12)?,
    })
}

pub(crate) fn pattern_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PatternRow> {
    let frames: String = r.get(5)?;
    Ok(PatternRow {
        fingerprint: r.get(0)?,
        fingerprint_version: r.get(1)?,
        tier: r.get(2)?,
        normalized_message: r.get(3)?,
        error_type: r.get(4)?,
        frames: serde_json::from_str(&frames).unwrap_or_default(),
        first_seen_ms: r.get(6)?,
        last_seen_ms: r.get(7)?,
        occurrence_count: r.get(8)?,
        sample_message: r.get(9)?,
        stack_trace: r.get(10)?,
        source: r.get(11)?,
        severity: r.get(12)?,
        status: state(r, 13)?,
    })
}

/// Column `i` as one of a closed set of states (only their names are ever written).
pub(crate) fn state<T: std::str::FromStr<Err = UnknownState>>(
    r: &rusqlite::Row<'_>,
    i: usize,
) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    text.parse().map_err(|e: UnknownState| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
    })
}

/// The candidate row of the chunk holding the newest entry (`CHUNK` = 256), which is not
/// indexed (see [`index_chunks`]): its rowid in the index's form.
macro_rules! newest_chunk_row {
    () => {
        "SELECT (max(id) / 256 * 256) << 8 | max(id) % 256 AS r FROM entries"
    };
}

/// Filters every search variant shares; parameters ?1..?5.
const SEARCH_FILTERS: &str = "(?1 IS NULL OR e.level = ?1)
    AND (?2 IS NULL OR e.source = ?2)
    AND (?3 IS NULL OR e.source LIKE ?3 ESCAPE '\\')
    AND (?4 IS NULL OR e.timestamp_ms >= ?4)
    AND (?5 IS NULL OR e.timestamp_ms < ?5)";

/// Needles with a 3-character run inside a word find candidate chunks through the trigram index; the exact, escaped
/// LIKE re-checks each candidate entry.
/// The newest chunk, which is not indexed yet (see [`index_chunks`]), is always a candidate.
const INDEXED: (&str, &str) = (
    concat!(
        "(",
        newest_chunk_row!(),
        " UNION ALL SELECT r FROM (SELECT rowid AS r FROM entries_fts WHERE entries_fts MATCH ?6 ORDER BY rowid DESC)) f
     JOIN entries e ON e.id BETWEEN f.r >> 8 AND (f.r >> 8) + (f.r & 255)"
    ),
    "(e.message LIKE ?7 ESCAPE '\\' OR e.traceback LIKE ?7 ESCAPE '\\')",
);
/// The count of an indexed needle: the newest chunk and the newest `?9` indexed candidates only.
const INDEXED_COUNT: (&str, &str) = (
    concat!(
        "(",
        newest_chunk_row!(),
        " UNION ALL SELECT r FROM (SELECT rowid AS r FROM entries_fts WHERE entries_fts MATCH ?6 ORDER BY rowid DESC LIMIT ?9)) f
     JOIN entries e ON e.id BETWEEN f.r >> 8 AND (f.r >> 8) + (f.r & 255)"
    ),
    "(e.message LIKE ?7 ESCAPE '\\' OR e.traceback LIKE ?7 ESCAPE '\\')",
);
/// Indexed candidate chunks a capped count reads at most, besides the newest (each holds
/// `CHUNK` entries).
const CHUNK_BUDGET: i64 = 128;
/// Needles without a 3-character run inside a word cannot use the trigram index: a scan,
/// bounded by the other filters.
const SCANNED: (&str, &str) =
    ("entries e", "?6 IS NULL AND (e.message LIKE ?7 ESCAPE '\\' OR e.traceback LIKE ?7 ESCAPE '\\')");
const NO_TEXT: (&str, &str) = ("entries e", "?6 IS NULL AND ?7 IS NULL");
/// A common needle: entries newest first through the time index, each checked with LIKE.
const NEWEST_FIRST: (&str, &str) = (
    "entries e INDEXED BY entries_ts",
    "?6 IS NOT NULL AND (e.message LIKE ?7 ESCAPE '\\' OR e.traceback LIKE ?7 ESCAPE '\\')",
);

/// SQLite refuses a LIKE pattern longer than this (`SQLITE_MAX_LIKE_PATTERN_LENGTH`, bytes).
const MAX_LIKE_PATTERN: usize = 50_000;

/// The text test of every search variant (?7 the escaped pattern); see [`text_test`].
const LIKE_TEXT: &str = "(e.message LIKE ?7 ESCAPE '\\' OR e.traceback LIKE ?7 ESCAPE '\\')";

/// Whether any of `columns` holds the text of `parameter`: by LIKE (the parameter an escaped
/// pattern), or, for a needle whose pattern is too long for LIKE, by `instr` on lower-cased
/// text (the parameter the needle itself), which folds ASCII case as LIKE does.
fn text_test(columns: &[&str], parameter: &str, long: bool) -> String {
    let tests: Vec<String> = columns
        .iter()
        .map(|c| {
            if long {
                format!("instr(lower({c}), lower({parameter})) > 0")
            } else {
                format!("{c} LIKE {parameter} ESCAPE '\\'")
            }
        })
        .collect();
    format!("({})", tests.join(" OR "))
}

/// The search text's parameter (`LIKE` pattern, or the needle itself when the pattern would be
/// too long: see [`text_test`]), and whether it is the needle.
fn text_parameter(needle: &str) -> (String, bool) {
    let pattern = like_pattern(needle);
    if pattern.len() > MAX_LIKE_PATTERN { (needle.to_owned(), true) } else { (pattern, false) }
}

fn search_sql((from, text): (&str, &str), count: bool, long: bool) -> String {
    debug_assert!(!long || text.contains(LIKE_TEXT), "a variant with another text test: {text}");
    let text = if long {
        text.replace(LIKE_TEXT, &text_test(&["e.message", "e.traceback"], "?7", true))
    } else {
        text.to_owned()
    };
    if count {
        format!("SELECT count(*) FROM (SELECT 1 FROM {from} WHERE {SEARCH_FILTERS} AND {text} LIMIT ?8)")
    } else {
        format!(
            "SELECT {ENTRY_COLUMNS} FROM {from} JOIN patterns p ON p.id = e.pattern_id
             WHERE {SEARCH_FILTERS} AND {text} ORDER BY e.timestamp_ms DESC, e.id DESC LIMIT ?8 OFFSET ?9"
        )
    }
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    /// Batches that arrive while another commits wait in a queue; whoever takes the writer next
    /// commits up to [`GROUP_BATCHES`] of them in one transaction and hands each its outcome.
    /// Every queued batch has a caller about to take the writer, so none is left behind.
    async fn ingest(&self, mut batch: IngestBatch) -> Result<IngestOutcome> {
        // SQLite's LIKE and FTS5 stop reading text at a NUL: stored as U+FFFD, as in
        // PostgreSQL, so everything after it stays searchable.
        for ge in &mut batch.events {
            replace_nul(&mut ge.event);
        }
        let (reply, outcome) = tokio::sync::oneshot::channel();
        let (writer, queued, mining) = (self.writer.clone(), self.queued.clone(), self.mining.clone());
        let task = tokio::task::spawn_blocking(move || {
            // Compressed before the writer is waited for, as the batch is mined: while one
            // batch is written, the next is prepared.
            let packed: Packed = batch.events.iter().map(|ge| packed::pack(&ge.event.raw)).collect();
            // A batch not mined ahead is mined and queued under the miner's lock, so that
            // batches wait for the writer in the order they were mined.
            let mut miner = batch.mined.is_none().then(|| lock(&mining));
            if let Some(miner) = miner.as_mut() {
                miner.mine(&mut batch);
            }
            lock(&queued).push((batch, packed, reply));
            drop(miner);
            let mut writer = lock(&writer);
            let group: Vec<Queued> = {
                let mut queued = lock(&queued);
                let n = queued.len().min(GROUP_BATCHES);
                queued.drain(..n).collect()
            };
            if group.is_empty() {
                return;
            }
            let (mut batches, mut packed, mut replies) = (Vec::new(), Vec::new(), Vec::new());
            for (batch, packs, reply) in group {
                batches.push(batch);
                packed.push(packs);
                replies.push(reply);
            }
            let results = writer.ingest_group(&batches, &packed, &mining);
            // The next batch may take the writer, and each caller goes on, while this thread
            // frees the batches' text (a tenth of the writer's time when it held the lock).
            drop(writer);
            for (reply, result) in replies.into_iter().zip(results) {
                let _ = reply.send(result);
            }
            drop((batches, packed));
        });
        match outcome.await {
            Ok(result) => result,
            // Whoever took this batch stopped without an answer: a panic is the caller's own.
            Err(_) => match task.await {
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                _ => Err(StoreError::Busy("the writer stopped before committing".into())),
            },
        }
    }

    fn mine_ahead(&self, batch: &mut IngestBatch) {
        lock(&self.mining).mine(batch);
    }

    async fn save_grouping(&self, now_ms: i64) -> Result<()> {
        let (writer, mining) = (self.writer.clone(), self.mining.clone());
        blocking(move || {
            let Some(snapshot) = lock(&mining).unsaved(now_ms) else { return Ok(()) };
            let mut w = lock(&writer);
            if snapshot.seq <= w.saved_seq {
                // A batch mined since saved a newer one while this waited for the writer.
                return Ok(());
            }
            let saved = w
                .conn
                .prepare_cached(UPSERT_STATE)
                .and_then(|mut stmt| stmt.execute(params![mining::VERSION, snapshot.json, now_ms]));
            match saved {
                Ok(_) => {
                    w.saved(Some(&snapshot));
                    Ok(())
                }
                Err(e) => {
                    lock(&mining).not_saved();
                    Err(e.into())
                }
            }
        })
        .await
    }

    async fn cursor(&self, source_id: &str) -> Result<Option<String>> {
        let source_id = source_id.to_owned();
        self.read(move |c| {
            Ok(c.query_row("SELECT cursor FROM source_cursors WHERE source_id = ?1", [source_id], |r| {
                r.get(0)
            })
            .optional()?)
        })
        .await
    }

    async fn cursors(&self, prefix: &str) -> Result<Vec<SavedCursor>> {
        let pattern = like_prefix(prefix);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT source_id, cursor, updated_ms FROM source_cursors
                 WHERE source_id LIKE ?1 ESCAPE '\\' ORDER BY source_id",
            )?;
            let rows = stmt.query_map([pattern], |r| {
                Ok(SavedCursor { source_id: r.get(0)?, cursor: r.get(1)?, saved_ms: r.get(2)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn search(&self, q: &SearchQuery) -> Result<SearchPage> {
        let q = q.clone();
        self.read(move |c| {
            // Stored text has U+FFFD where a NUL was; FTS5 would refuse the NUL itself.
            let text = q.text.as_deref().map(without_nul);
            let (variant, phrase, like) = match text.as_deref().filter(|t| !t.is_empty()) {
                Some(t) => match trigram_query(t) {
                    Some(query) => (INDEXED, Some(query), Some(text_parameter(t))),
                    None => (SCANNED, None, Some(text_parameter(t))),
                },
                None => (NO_TEXT, None, None),
            };
            let long = like.as_ref().is_some_and(|(_, long)| *long);
            let like = like.map(|(parameter, _)| parameter);
            let (exact, prefix) = match &q.source {
                Some(SourceFilter::Exact(s)) => (Some(s.clone()), None),
                Some(SourceFilter::Prefix(p)) => (None, Some(like_prefix(p))),
                None => (None, None),
            };
            let level = q.level.map(Level::as_str);
            let cap = q.count_cap.map_or(i64::MAX - 1, |c| c.min(i64::MAX as u64 - 1) as i64);
            let (total, total_capped) = if variant == INDEXED {
                // A capped count reads at most CHUNK_BUDGET candidate chunks, newest first; more
                // candidates than that make the count a lower bound.
                let budget = if q.count_cap.is_some() { CHUNK_BUDGET } else { i64::MAX - 1 };
                let candidates: i64 = c
                    .prepare_cached(
                        "SELECT count(*) FROM (SELECT 1 FROM entries_fts WHERE entries_fts MATCH ?1 LIMIT ?2)",
                    )?
                    .query_row(params![phrase, budget + 1], |r| r.get(0))?;
                let filters =
                    params![level, exact, prefix, q.since_ms, q.until_ms, phrase, like, cap + 1, budget];
                let total: i64 = c.prepare_cached(&search_sql(INDEXED_COUNT, true, long))?.query_row(filters, |r| r.get(0))?;
                (total, total > cap || candidates > budget)
            } else {
                let filters = params![level, exact, prefix, q.since_ms, q.until_ms, phrase, like, cap + 1];
                let total: i64 = c.prepare_cached(&search_sql(variant, true, long))?.query_row(filters, |r| r.get(0))?;
                (total, total > cap)
            };
            // A needle with more matches than the cap is common: reading entries newest first
            // finds a page of them sooner than sorting every candidate the index gives.
            let variant = if total_capped && variant == INDEXED { NEWEST_FIRST } else { variant };
            let mut stmt = c.prepare_cached(&search_sql(variant, false, long))?;
            let rows = stmt.query_map(
                params![level, exact, prefix, q.since_ms, q.until_ms, phrase, like, q.limit, q.offset],
                entry_row,
            )?;
            let entries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            // A page short of its limit ends the matches; a count within the budget may hold
            // fewer than the pages up to this one have shown.
            let (total, total_capped) = match q.total_ended_by(entries.len()) {
                Some(total) => (total, total > cap),
                None => (total.max(q.matches_shown(entries.len())), total_capped),
            };
            Ok(SearchPage { total: total.min(cap) as u64, total_capped, entries })
        })
        .await
    }

    async fn list_patterns(&self, q: &PatternQuery) -> Result<PatternPage> {
        let q = q.clone();
        self.read(move |c| {
            let level = q.level.map(Level::as_str);
            let status = q.status.map(PatternStatus::as_str);
            let text = q.text.as_deref().map(text_parameter);
            let matches = text_test(
                &["p.normalized_message", "p.error_type", "p.sample_message", "p.stack_trace"],
                "?6",
                text.as_ref().is_some_and(|(_, long)| *long),
            );
            let filters = format!(
                "(?1 IS NULL OR p.status = ?1) AND (?2 IS NULL OR p.source = ?2)
                AND (?3 IS NULL OR p.severity = ?3) AND (?4 IS NULL OR p.last_seen_ms >= ?4)
                AND (?5 IS NULL OR p.last_seen_ms < ?5)
                AND (?6 IS NULL OR {matches})
                AND (?7 = 0 OR p.status <> 'ignored')"
            );
            let text = text.map(|(parameter, _)| parameter);
            let hide_ignored = q.hide_ignored && q.status.is_none();
            let total: i64 =
                c.prepare_cached(&format!("SELECT count(*) FROM patterns p WHERE {filters}"))?.query_row(
                    params![status, q.source, level, q.seen_since_ms, q.quiet_since_ms, text, hide_ignored],
                    |r| r.get(0),
                )?;
            let sql = format!(
                "SELECT {PATTERN_COLUMNS} FROM patterns p WHERE {filters} ORDER BY {} LIMIT ?8 OFFSET ?9",
                q.order.sql()
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(
                params![
                    status,
                    q.source,
                    level,
                    q.seen_since_ms,
                    q.quiet_since_ms,
                    text,
                    hide_ignored,
                    q.limit,
                    q.offset
                ],
                pattern_row,
            )?;
            Ok(PatternPage { total: total as u64, patterns: rows.collect::<rusqlite::Result<Vec<_>>>()? })
        })
        .await
    }

    async fn occurrences(&self, fingerprint: &str, limit: u32, offset: u32) -> Result<Option<SearchPage>> {
        let fingerprint = fingerprint.to_owned();
        self.read(move |c| {
            let Some((id, total)): Option<(i64, i64)> = c
                .query_row(
                    "SELECT p.id, (SELECT count(*) FROM entries e WHERE e.pattern_id = p.id)
                     FROM patterns p WHERE p.fingerprint = ?1",
                    [&fingerprint],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
            else {
                return Ok(None);
            };
            let sql = format!(
                "SELECT {ENTRY_COLUMNS} FROM entries e JOIN patterns p ON p.id = e.pattern_id
                 WHERE e.pattern_id = ?1 ORDER BY e.timestamp_ms DESC, e.id DESC LIMIT ?2 OFFSET ?3"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![id, limit, offset], entry_row)?;
            let entries = rows.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(Some(SearchPage { total: total as u64, total_capped: false, entries }))
        })
        .await
    }

    async fn oldest_and_newest(&self, fingerprints: &[String]) -> Result<Vec<EntryRow>> {
        let fingerprints = fingerprints.to_vec();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {ENTRY_COLUMNS} FROM patterns p JOIN entries e ON e.id IN (
                    (SELECT id FROM entries WHERE pattern_id = p.id ORDER BY timestamp_ms, id LIMIT 1),
                    (SELECT id FROM entries WHERE pattern_id = p.id ORDER BY timestamp_ms DESC, id DESC LIMIT 1))
                 WHERE p.fingerprint = ?1"
            ))?;
            let mut found = Vec::with_capacity(2 * fingerprints.len());
            for f in &fingerprints {
                for row in stmt.query_map([f], entry_row)? {
                    found.push(row?);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn top_patterns(&self, limit: u32, seen_since_ms: Option<i64>) -> Result<Vec<PatternRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {PATTERN_COLUMNS} FROM patterns p WHERE (?1 IS NULL OR p.last_seen_ms >= ?1)
                 ORDER BY p.occurrence_count DESC, p.id LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![seen_since_ms, limit], pattern_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn busiest_patterns(&self, since_ms: i64, until_ms: i64, limit: u32) -> Result<Vec<PatternCount>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {PATTERN_COLUMNS}, t.n FROM (
                    SELECT pattern_id, sum(count) AS n FROM {WINDOW_COUNTS}
                    WHERE pattern_id NOT IN (SELECT id FROM patterns WHERE status = 'ignored')
                    GROUP BY pattern_id ORDER BY n DESC LIMIT ?5
                 ) t JOIN patterns p ON p.id = t.pattern_id ORDER BY t.n DESC, p.id"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let since = minute_of(since_ms);
            let (first, end) = quarter_span(since, until_ms);
            let rows = stmt.query_map(params![since, until_ms, first, end, limit], |r| {
                Ok(PatternCount { pattern: pattern_row(r)?, count: r.get::<_, i64>(14)? as u64 })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn new_patterns(&self, since_ms: i64, limit: u32) -> Result<Vec<PatternRow>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {PATTERN_COLUMNS} FROM patterns p WHERE p.first_seen_ms >= ?1
                 ORDER BY p.first_seen_ms DESC, p.id LIMIT ?2"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![since_ms, limit], pattern_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn trending_patterns(&self, now_ms: i64, window_ms: i64, limit: u32) -> Result<Vec<Trend>> {
        self.read(move |c| {
            let sql = format!(
                "SELECT {PATTERN_COLUMNS}, t.recent, t.previous FROM (
                    SELECT pattern_id,
                           sum(CASE WHEN minute_ms >= ?2 THEN count ELSE 0 END) AS recent,
                           sum(CASE WHEN minute_ms < ?2 THEN count ELSE 0 END) AS previous
                    FROM minute_counts WHERE minute_ms >= ?1 AND minute_ms < ?3 GROUP BY pattern_id
                 ) t JOIN patterns p ON p.id = t.pattern_id
                 WHERE t.recent > t.previous AND p.first_seen_ms < ?2 ORDER BY t.recent - t.previous DESC, p.id LIMIT ?4"
            );
            let mut stmt = c.prepare_cached(&sql)?;
            let rows = stmt
                .query_map(params![now_ms - 2 * window_ms, now_ms - window_ms, now_ms, limit], |r| {
                    Ok(Trend { pattern: pattern_row(r)?, recent: r.get(14)?, previous: r.get(15)? })
                })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn fingerprints_with_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<String>> {
        let (low, high) = prefix_range(prefix);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT fingerprint FROM patterns WHERE fingerprint >= ?1 AND fingerprint < ?2
                 ORDER BY fingerprint LIMIT ?3",
            )?;
            let rows = stmt.query_map(params![low, high, limit], |r| r.get(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<String>>>()?)
        })
        .await
    }

    async fn pattern(&self, fingerprint: &str) -> Result<Option<PatternRow>> {
        let fingerprint = fingerprint.to_owned();
        self.read(move |c| {
            let sql = format!("SELECT {PATTERN_COLUMNS} FROM patterns p WHERE p.fingerprint = ?1");
            Ok(c.prepare_cached(&sql)?.query_row([fingerprint], pattern_row).optional()?)
        })
        .await
    }

    async fn error_rate(&self, since_ms: i64, until_ms: i64) -> Result<ErrorRate> {
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT source, level, sum(count) FROM {WINDOW_COUNTS} GROUP BY source, level"
            ))?;
            let since = minute_of(since_ms);
            let (first, end) = quarter_span(since, until_ms);
            let rows = stmt
                .query_map(params![since, until_ms, first, end], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            Ok(ErrorRate::from_counts(rows.collect::<rusqlite::Result<Vec<_>>>()?, since_ms, until_ms))
        })
        .await
    }

    async fn counts_by_interval(
        &self,
        since_ms: i64,
        until_ms: i64,
        interval_minutes: u32,
        fingerprint: Option<&str>,
    ) -> Result<Vec<Bucket>> {
        let width = bucket_width(interval_minutes)?;
        let fingerprint = fingerprint.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT (t - ?1) / ?5 AS bucket, level, sum(count) FROM {WINDOW_COUNTS}
                 WHERE ?6 IS NULL OR pattern_id = (SELECT id FROM patterns WHERE fingerprint = ?6)
                 GROUP BY bucket, level"
            ))?;
            let (first, end) = bucket_quarters(since_ms, until_ms, width);
            let rows = stmt.query_map(params![since_ms, until_ms, first, end, width, fingerprint], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            let found = rows.collect::<rusqlite::Result<Vec<(i64, String, i64)>>>()?;
            Ok(fill_buckets(since_ms, until_ms, width, found))
        })
        .await
    }

    async fn cleanup(&self, before_ms: i64, batch_size: u32) -> Result<CleanupReport> {
        let writer = self.writer.clone();
        blocking(move || {
            let mut w = lock(&writer);
            let mut report = CleanupReport::default();
            loop {
                let tx = w.conn.transaction()?;
                let n = tx.execute(
                    "DELETE FROM entries WHERE id IN (SELECT id FROM entries WHERE timestamp_ms < ?1 LIMIT ?2)",
                    params![before_ms, batch_size],
                )?;
                tx.commit()?;
                report.entries_deleted += n as u64;
                if n < batch_size as usize {
                    break;
                }
            }
            let tx = w.conn.transaction()?;
            report.minute_rows_deleted =
                tx.execute("DELETE FROM minute_counts WHERE minute_ms < ?1", [minute_of(before_ms)])? as u64;
            tx.execute("DELETE FROM line_counts WHERE minute_ms < ?1", [minute_of(before_ms)])?;
            tx.execute("DELETE FROM quarter_counts WHERE quarter_ms + ?2 <= ?1", [minute_of(before_ms), QUARTER_MS])?;
            // Samples that pointed at removed entries fall back to the newest one left.
            tx.execute(
                "UPDATE patterns SET sample_entry_id = (SELECT max(id) FROM entries WHERE pattern_id = patterns.id)
                 WHERE sample_entry_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM entries WHERE id = sample_entry_id)",
                [],
            )?;
            // Chunks wholly below the oldest entry left hold only deleted text. Entries deleted
            // out of id order leave stale text in a live chunk: a harmless extra candidate.
            tx.execute(
                "DELETE FROM entries_fts WHERE rowid < (coalesce((SELECT min(id) FROM entries), 1 << 54) / ?1 * ?1) << 8",
                [CHUNK],
            )?;
            // Entries deleted by time may be the newest by id: the chunk that now holds the
            // newest entry is searched directly and must not be indexed as well.
            tx.execute(NEWEST_CHUNK_UNINDEXED, [])?;
            tx.commit()?;
            w.conn.execute("INSERT INTO entries_fts (entries_fts) VALUES ('optimize')", [])?;
            let pages = |c: &Connection| -> rusqlite::Result<(i64, i64)> {
                Ok((c.pragma_query_value(None, "page_count", |r| r.get(0))?, c.pragma_query_value(None, "page_size", |r| r.get(0))?))
            };
            let (before, page_size) = pages(&w.conn)?;
            // Every free page is handed back: the pragma frees one page per row it steps.
            {
                let mut vacuum = w.conn.prepare("PRAGMA incremental_vacuum")?;
                let mut rows = vacuum.query([])?;
                while rows.next()?.is_some() {}
            }
            w.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
            let (after, _) = pages(&w.conn)?;
            report.bytes_freed = u64::try_from((before - after).max(0) * page_size).unwrap_or(0);
            Ok(report)
        })
        .await
    }

    async fn record_job_run(&self, run: &JobRun) -> Result<i64> {
        let run = run.clone();
        let writer = self.writer.clone();
        blocking(move || {
            let w = lock(&writer);
            w.conn.execute(
                "INSERT INTO job_runs (job, started_ms, finished_ms, outcome, detail, instance)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    run.job,
                    run.started_ms,
                    run.finished_ms,
                    run.outcome,
                    run.detail.to_string(),
                    run.instance
                ],
            )?;
            Ok(w.conn.last_insert_rowid())
        })
        .await
    }

    async fn job_runs(&self, job: Option<&str>, limit: u32) -> Result<Vec<JobRunRow>> {
        let job = job.map(str::to_owned);
        self.read(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT id, job, started_ms, finished_ms, outcome, detail, instance FROM job_runs
                 WHERE ?1 IS NULL OR job = ?1 ORDER BY started_ms DESC, id DESC LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![job, limit], |r| {
                let detail: Option<String> = r.get(5)?;
                Ok(JobRunRow {
                    id: r.get(0)?,
                    run: JobRun {
                        job: r.get(1)?,
                        instance: r.get::<_, Option<String>>(6)?.unwrap_or_default(),
                        started_ms: r.get(2)?,
                        finished_ms: r.get::<_, Option<i64>>(3)?.unwrap_or_default(),
                        outcome: r.get::<_, Option<String>>(4)?.unwrap_or_default(),
                        detail: detail.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
                    },
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn seed_rules(&self, rules: &[NewRule], now_ms: i64) -> Result<()> {
        let rules = rules.to_vec();
        self.write(move |tx| sqlite_alerts::seed_rules(tx, &rules, now_ms)).await
    }

    async fn alert_rules(&self) -> Result<Vec<AlertRuleRow>> {
        self.read(sqlite_alerts::alert_rules).await
    }

    async fn create_rule(&self, rule: &NewRule, now_ms: i64) -> Result<RuleSaved> {
        let rule = rule.clone();
        self.write(move |tx| sqlite_alerts::save_rule(tx, None, &rule, now_ms)).await
    }

    async fn update_rule(&self, id: i64, rule: &NewRule) -> Result<RuleSaved> {
        let rule = rule.clone();
        self.write(move |tx| sqlite_alerts::save_rule(tx, Some(id), &rule, 0)).await
    }

    async fn pattern_minute_counts(&self, pattern_ids: &[i64], since_ms: i64) -> Result<Vec<MinuteCount>> {
        let ids = pattern_ids.to_vec();
        self.read(move |c| sqlite_alerts::pattern_minute_counts(c, &ids, since_ms)).await
    }

    async fn fire_alert(&self, draft: &AlertDraft) -> Result<Option<FiredAlert>> {
        let draft = draft.clone();
        self.write(move |tx| sqlite_alerts::fire_alert(tx, &draft)).await
    }

    async fn send_digest(&self, draft: &DigestDraft) -> Result<Option<FiredAlert>> {
        let draft = draft.clone();
        self.write(move |tx| sqlite_alerts::send_digest(tx, &draft)).await
    }

    async fn claim_feed(
        &self,
        holder: &str,
        now_ms: i64,
        until_ms: i64,
        limit: u32,
    ) -> Result<Vec<FeedItem>> {
        // Most evaluations find nothing new: look with the reader before taking the writer.
        let waiting = self
            .read(move |c| {
                let row = c
                    .prepare_cached("SELECT 1 FROM alert_feed WHERE claimed_until_ms <= ?1 LIMIT 1")?
                    .query_row([now_ms], |_| Ok(()))
                    .optional()?;
                Ok(row.is_some())
            })
            .await?;
        if !waiting {
            return Ok(Vec::new());
        }
        let holder = holder.to_owned();
        self.write(move |tx| sqlite_alerts::claim_feed(tx, &holder, now_ms, until_ms, limit)).await
    }

    async fn finish_feed(&self, seqs: &[i64]) -> Result<()> {
        let seqs = seqs.to_vec();
        self.write(move |tx| sqlite_alerts::finish_feed(tx, &seqs)).await
    }

    async fn claim_job(&self, job: &str, holder: &str, now_ms: i64, until_ms: i64) -> Result<bool> {
        let (job, holder) = (job.to_owned(), holder.to_owned());
        self.write(move |tx| sqlite_alerts::claim_job(tx, &job, &holder, now_ms, until_ms)).await
    }

    async fn finish_job(&self, job: &str, holder: &str, due_ms: i64) -> Result<()> {
        let (job, holder) = (job.to_owned(), holder.to_owned());
        self.write(move |tx| sqlite_alerts::finish_job(tx, &job, &holder, due_ms)).await
    }

    async fn alerts(&self, since_ms: i64, limit: u32) -> Result<Vec<AlertRow>> {
        self.read(move |c| sqlite_alerts::alerts(c, since_ms, limit)).await
    }

    async fn tasks(&self, status: Option<TaskStatus>, limit: u32) -> Result<Vec<TaskRow>> {
        self.read(move |c| sqlite_alerts::tasks(c, status, limit)).await
    }

    async fn open_task(&self, fingerprint: &str) -> Result<Option<TaskRow>> {
        let fingerprint = fingerprint.to_owned();
        self.read(move |c| {
            Ok(c.prepare_cached(&open_task_of_pattern_sql())?
                .query_row([fingerprint], sqlite_alerts::task_row)
                .optional()?)
        })
        .await
    }

    async fn task(&self, id: i64) -> Result<Option<(TaskRow, Vec<TaskEvent>)>> {
        self.read(move |c| sqlite_alerts::task(c, id)).await
    }

    async fn set_task_status(&self, id: i64, status: TaskStatus, now_ms: i64) -> Result<bool> {
        self.write(move |tx| sqlite_alerts::set_task_status(tx, id, status, now_ms)).await
    }

    async fn create_task(&self, fingerprint: &str, now_ms: i64) -> Result<Option<TaskCreated>> {
        let fingerprint = fingerprint.to_owned();
        self.write(move |tx| sqlite_alerts::create_task(tx, &fingerprint, now_ms)).await
    }

    async fn set_pattern_status(
        &self,
        fingerprint: &str,
        status: PatternStatus,
        now_ms: i64,
    ) -> Result<bool> {
        let fingerprint = fingerprint.to_owned();
        self.write(move |tx| sqlite_alerts::set_pattern_status(tx, &fingerprint, status, now_ms)).await
    }

    async fn claim_deliveries(&self, now_ms: i64, lease_ms: i64, limit: u32) -> Result<Vec<DeliveryJob>> {
        self.write(move |tx| sqlite_alerts::claim_deliveries(tx, now_ms, lease_ms, limit)).await
    }

    async fn finish_delivery(&self, job: &DeliveryJob, result: &DeliveryResult, now_ms: i64) -> Result<()> {
        let (job, result) = (job.clone(), result.clone());
        self.write(move |tx| sqlite_alerts::finish_delivery(tx, &job, &result, now_ms)).await
    }

    async fn deliveries(&self, alert_id: Option<i64>, limit: u32) -> Result<Vec<DeliveryRow>> {
        self.read(move |c| sqlite_alerts::deliveries(c, alert_id, limit)).await
    }

    async fn gauges(&self) -> Result<StoreGauges> {
        self.read(|c| {
            let pages: i64 = c.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let page_size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            let (patterns, outbox_pending) = c.query_row(
                "SELECT (SELECT count(*) FROM patterns), (SELECT count(*) FROM deliveries WHERE status = 'pending')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(StoreGauges { database_bytes: pages * page_size, patterns, outbox_pending })
        })
        .await
    }
}

/// Measures the ceiling for the ingest benchmark: inserting the given rows into a bare
/// `entries`-shaped table (same columns, B-tree indexes only, no FTS, no patterns) in one
/// transaction with one prepared statement. Returns rows per second.
#[cfg(feature = "bench")]
pub fn bench_bare_insert(path: &Path, rows: &[GroupedEvent]) -> Result<f64> {
    let mut conn = Connection::open(path)?;
    configure(&conn)?;
    conn.execute_batch(
        "CREATE TABLE entries (id INTEGER PRIMARY KEY, source_id TEXT NOT NULL, external_id TEXT NOT NULL,
            timestamp_ms INTEGER NOT NULL, level TEXT NOT NULL, source TEXT NOT NULL, message TEXT NOT NULL,
            traceback TEXT, request_path TEXT, request_method TEXT, metadata TEXT, pattern_id INTEGER NOT NULL,
            raw TEXT NOT NULL);
         CREATE UNIQUE INDEX entries_origin ON entries (source_id, external_id);
         CREATE INDEX entries_ts ON entries (timestamp_ms);
         CREATE INDEX entries_pattern_ts ON entries (pattern_id, timestamp_ms);",
    )?;
    let mut ids: HashMap<&str, i64> = HashMap::new();
    let started = std::time::Instant::now();
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare(INSERT_ENTRY)?;
        for ge in rows {
            let next = ids.len() as i64 + 1;
            let pattern_id = *ids.entry(ge.grouping.fingerprint.as_str()).or_insert(next);
            let e = &ge.event;
            let metadata = metadata_json(e);
            stmt.execute(params![
                e.origin.source_id,
                e.idempotency_key(),
                e.timestamp_ms,
                e.level.as_str(),
                e.source,
                e.message,
                e.traceback,
                e.request_path,
                e.request_method,
                metadata,
                pattern_id,
                e.raw,
            ])?;
        }
    }
    tx.commit()?;
    Ok(rows.len() as f64 / started.elapsed().as_secs_f64())
}
