//! Row and query types the store takes and returns.

use std::collections::BTreeMap;

use faultline_core::{Grouping, Level, LogEvent, MINUTE_MS, PatternStatus, TaskStatus, fingerprint};

/// One event and how it was grouped.
#[derive(Debug, Clone)]
pub struct GroupedEvent {
    pub event: LogEvent,
    pub grouping: Grouping,
}

impl GroupedEvent {
    /// Fingerprints an event as every source's events are: NULs replaced and secrets scrubbed
    /// (`faultline_core::scrub`) first, so that nothing stored or fingerprinted holds them.
    pub fn of(mut event: LogEvent) -> GroupedEvent {
        replace_nul(&mut event);
        let scrubbed = faultline_core::scrub::scrub_event(&mut event);
        if scrubbed > 0 {
            metrics::counter!("faultline_scrubbed_values_total").increment(scrubbed as u64);
        }
        let grouping = fingerprint(&event);
        GroupedEvent { event, grouping }
    }
}

/// Lines read but not stored (below the minimum level), counted per minute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineCount {
    pub minute: i64,
    pub source_id: String,
    pub level: Level,
    pub count: u64,
}

/// What one source hands the store in one transaction.
#[derive(Debug, Clone)]
pub struct IngestBatch {
    pub source_id: String,
    /// Saved with the batch, so a restart resumes exactly after it.
    pub cursor: Option<String>,
    pub events: Vec<GroupedEvent>,
    pub skipped: Vec<LineCount>,
    /// Raw entries stored per pattern per minute; the rest are only counted.
    pub max_stored_per_pattern_minute: u32,
    /// Time the batch is written, for `updated` columns.
    pub now_ms: i64,
    /// Set by [`crate::Store::mine_ahead`]; `None` for a batch the store is to mine itself.
    pub mined: Option<crate::MinedAhead>,
}

impl IngestBatch {
    /// Makes the batch a source hands over: events at or above `min_level` are fingerprinted
    /// for storing; the others are only counted per minute and level.
    pub fn from_events(
        source_id: &str,
        cursor: Option<String>,
        events: Vec<LogEvent>,
        min_level: Level,
        max_stored_per_pattern_minute: u32,
        now_ms: i64,
    ) -> IngestBatch {
        let mut skipped: BTreeMap<(i64, Level), u64> = BTreeMap::new();
        let mut grouped = Vec::with_capacity(events.len());
        for event in events {
            if event.level < min_level {
                *skipped.entry((minute_of(event.timestamp_ms), event.level)).or_default() += 1;
            } else {
                grouped.push(GroupedEvent::of(event));
            }
        }
        IngestBatch {
            source_id: source_id.to_owned(),
            cursor,
            events: grouped,
            skipped: skipped
                .into_iter()
                .map(|((minute, level), count)| LineCount {
                    minute,
                    source_id: source_id.to_owned(),
                    level,
                    count,
                })
                .collect(),
            max_stored_per_pattern_minute,
            now_ms,
            mined: None,
        }
    }

    /// Takes in the batch read after this one from the same source, so that both go in one
    /// transaction, as if read as one: events in order, the later cursor, the newer miner state
    /// to save. Given back when it cannot be: another source, other limits, or one batch mined
    /// ahead and the other not.
    pub fn absorb(&mut self, later: IngestBatch) -> Result<(), Box<IngestBatch>> {
        if later.source_id != self.source_id
            || later.max_stored_per_pattern_minute != self.max_stored_per_pattern_minute
            || later.mined.is_some() != self.mined.is_some()
        {
            return Err(Box::new(later));
        }
        let IngestBatch { cursor, events, skipped, now_ms, mined, .. } = later;
        self.events.extend(events);
        self.skipped.extend(skipped);
        if cursor.is_some() {
            self.cursor = cursor;
        }
        self.now_ms = self.now_ms.max(now_ms);
        if let (Some(mine), Some(crate::MinedAhead(Some(newer)))) = (self.mined.as_mut(), mined) {
            mine.0 = Some(newer);
        }
        Ok(())
    }

    /// Events counted but not stored for being below the minimum level.
    pub fn below_level(&self) -> u64 {
        self.skipped.iter().map(|s| s.count).sum()
    }
}

/// What a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestOutcome {
    /// Entries written.
    pub stored: u64,
    /// Events already stored before (same source and external id).
    pub duplicates: u64,
    /// Events counted but not stored because their pattern hit the per-minute cap.
    pub capped: u64,
    /// Patterns seen for the first time.
    pub new_patterns: u64,
    /// Every pattern that got new occurrences, for the alert rules.
    pub touched: Vec<TouchedPattern>,
}

/// A source's saved position ([`crate::Store::cursors`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedCursor {
    pub source_id: String,
    pub cursor: String,
    pub saved_ms: i64,
}

/// A pattern's occurrences in one minute ([`crate::Store::pattern_minute_counts`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteCount {
    pub pattern_id: i64,
    pub minute_ms: i64,
    pub count: u64,
    /// The first and the latest occurrence inside the minute (the minute's bounds for minutes
    /// counted before these were kept).
    pub first_ms: i64,
    pub last_ms: i64,
}

/// What one committed batch did to one pattern, as the alert feed keeps it until an evaluator
/// has looked at it ([`crate::Store::claim_feed`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedItem {
    /// The feed's order; pass it back to [`crate::Store::finish_feed`].
    pub seq: i64,
    pub touched: TouchedPattern,
    /// When the batch was committed.
    pub committed_ms: i64,
}

/// The task [`crate::Store::create_task`] gives: the pattern's open one, or a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskCreated {
    pub id: i64,
    /// False when the pattern already had an open task (that is the one given).
    pub created: bool,
}

/// A pattern that got new occurrences in a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TouchedPattern {
    pub pattern_id: i64,
    /// Created by this batch (exactly one batch creates each pattern, even with several writers).
    pub new: bool,
    /// It was resolved; this batch set it back to `new` (exactly one batch sees this).
    pub regressed: bool,
    /// Its status after the batch.
    pub status: PatternStatus,
    /// The most severe level among its new occurrences.
    pub highest_level: Level,
}

/// Adds up the counts; `touched` stays the left side's (it describes one batch).
impl std::ops::AddAssign for IngestOutcome {
    fn add_assign(&mut self, o: Self) {
        self.stored += o.stored;
        self.duplicates += o.duplicates;
        self.capped += o.capped;
        self.new_patterns += o.new_patterns;
    }
}

/// A source filter: exact, or a prefix when it ends with `*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceFilter {
    Exact(String),
    Prefix(String),
}

impl SourceFilter {
    pub fn parse(s: &str) -> SourceFilter {
        match s.strip_suffix('*') {
            Some(prefix) => SourceFilter::Prefix(prefix.to_owned()),
            None => SourceFilter::Exact(s.to_owned()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct SearchQuery {
    /// Case-insensitive substring of message or traceback.
    pub text: Option<String>,
    pub level: Option<Level>,
    pub source: Option<SourceFilter>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub limit: u32,
    pub offset: u32,
    /// Stop counting matches past this many (`None`: count them all). A capped count of a
    /// common needle also reads a bounded part of the window (SQLite: its newest 128 candidate
    /// chunks of the search index; PostgreSQL: 32,768 of its entries), past which the count is
    /// a lower bound (`total_capped`).
    pub count_cap: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EntryRow {
    pub id: i64,
    pub timestamp_ms: i64,
    pub level: String,
    pub source: String,
    pub message: String,
    pub traceback: Option<String>,
    pub request_path: Option<String>,
    pub request_method: Option<String>,
    pub metadata: serde_json::Value,
    pub fingerprint: String,
    pub raw: String,
    pub source_id: String,
    pub external_id: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct SearchPage {
    /// Matches in all, beyond this page, up to the query's `count_cap`.
    pub total: u64,
    /// True when counting stopped at the cap: there are at least `total` matches.
    pub total_capped: bool,
    pub entries: Vec<EntryRow>,
}

/// How far the API and the page count a search's matches ("1000+"): an exact count of a common
/// word over millions of entries would cost more than the page of results.
pub const SEARCH_COUNT_CAP: u64 = 1000;

impl SearchQuery {
    /// The total a page of `shown` results settles: a page short of its limit ends the matches
    /// (unless it is empty past the first page: then the matches ended before it).
    pub(crate) fn total_ended_by(&self, shown: usize) -> Option<i64> {
        (shown < self.limit as usize && (shown > 0 || self.offset == 0))
            .then(|| i64::from(self.offset) + shown as i64)
    }

    /// The matches the pages up to this one have shown, at least (none known from an empty page).
    pub(crate) fn matches_shown(&self, shown: usize) -> i64 {
        if shown > 0 { i64::from(self.offset) + shown as i64 } else { 0 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PatternRow {
    pub fingerprint: String,
    pub fingerprint_version: i32,
    pub tier: String,
    pub normalized_message: String,
    pub error_type: Option<String>,
    pub frames: Vec<String>,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub occurrence_count: i64,
    pub sample_message: Option<String>,
    pub stack_trace: Option<String>,
    pub source: String,
    pub severity: String,
    pub status: PatternStatus,
}

/// How [`crate::Store::list_patterns`] orders patterns (newest or largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PatternOrder {
    #[default]
    Count,
    LastSeen,
    FirstSeen,
}

impl PatternOrder {
    pub(crate) fn sql(self) -> &'static str {
        match self {
            PatternOrder::Count => "p.occurrence_count DESC, p.id",
            PatternOrder::LastSeen => "p.last_seen_ms DESC, p.id",
            PatternOrder::FirstSeen => "p.first_seen_ms DESC, p.id",
        }
    }
}

/// Filters for a page of patterns.
#[derive(Debug, Clone, Default)]
pub struct PatternQuery {
    pub order: PatternOrder,
    pub status: Option<PatternStatus>,
    pub source: Option<String>,
    /// The pattern's level (`severity`): ERROR, CRITICAL…
    pub level: Option<Level>,
    /// Only patterns seen at or after this time.
    pub seen_since_ms: Option<i64>,
    /// Only patterns not seen since this time (quiet ones).
    pub quiet_since_ms: Option<i64>,
    /// Only patterns whose template, exception type, sample message or stack trace holds this text
    /// (any case).
    pub text: Option<String>,
    /// Leaves out ignored patterns (unless `status` asks for them).
    pub hide_ignored: bool,
    pub limit: u32,
    pub offset: u32,
}

/// A page of patterns and how many match in all.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PatternPage {
    pub total: u64,
    pub patterns: Vec<PatternRow>,
}

/// A pattern and its occurrences within a window.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternCount {
    pub pattern: PatternRow,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Trend {
    pub pattern: PatternRow,
    pub recent: i64,
    pub previous: i64,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct ErrorRate {
    pub total_errors: u64,
    pub errors_per_minute: f64,
    pub by_source: BTreeMap<String, u64>,
    pub by_level: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bucket {
    pub start_ms: i64,
    pub count: u64,
    /// The count split by level (ERROR, CRITICAL…); levels with no entries are absent.
    pub by_level: BTreeMap<String, u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CleanupReport {
    pub entries_deleted: u64,
    pub minute_rows_deleted: u64,
    /// Bytes given back to the filesystem: what the SQLite file shrank by, or the size of the
    /// PostgreSQL day partitions dropped whole (the rows deleted one by one from the cutoff's own
    /// day are made reusable by VACUUM instead, and not counted).
    pub bytes_freed: u64,
}

/// Columns of an `EntryRow`, in the order both backends read them (`e` = entries, `p` = patterns).
pub(crate) const ENTRY_COLUMNS: &str =
    "e.id, e.timestamp_ms, e.level, e.source, e.message, e.traceback, e.request_path,
    e.request_method, e.metadata, p.fingerprint, e.raw, e.source_id, e.external_id";

/// Columns of a `PatternRow`, in the order both backends read them.
pub(crate) const PATTERN_COLUMNS: &str =
    "p.fingerprint, p.fingerprint_version, p.tier, p.normalized_message, p.error_type,
    p.frames, p.first_seen_ms, p.last_seen_ms, p.occurrence_count, p.sample_message, p.stack_trace, p.source,
    p.severity, p.status";

/// The minute (ms since epoch, floored) a timestamp falls in.
/// The width of a `quarter_counts` row.
pub const QUARTER_MS: i64 = 15 * MINUTE_MS;

/// The whole quarters inside `[since, until)` (`since` a minute start): `quarter_counts` covers
/// them and `minute_counts` the edges. With no whole quarter inside, an empty span at `until`.
pub(crate) fn quarter_span(since_ms: i64, until_ms: i64) -> (i64, i64) {
    let first = since_ms.div_euclid(QUARTER_MS) * QUARTER_MS;
    let first = if first < since_ms { first + QUARTER_MS } else { first };
    let end = until_ms.div_euclid(QUARTER_MS) * QUARTER_MS;
    if end <= first { (until_ms, until_ms) } else { (first, end) }
}

/// The batch's minute counts summed per quarter: (quarter, pattern, source, level) → count.
pub(crate) fn quarter_totals<'a>(
    minutes: &BTreeMap<(i64, i64, &'a str, &'static str), MinuteDelta>,
) -> BTreeMap<(i64, i64, &'a str, &'static str), i64> {
    let mut quarters = BTreeMap::new();
    for ((minute, pattern, source, level), MinuteDelta { count, .. }) in minutes {
        *quarters
            .entry((minute.div_euclid(QUARTER_MS) * QUARTER_MS, *pattern, *source, *level))
            .or_default() += count;
    }
    quarters
}

pub fn minute_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
}

/// The first and last minute the batch's events fall in.
pub(crate) fn batch_minute_span(batch: &IngestBatch) -> Option<(i64, i64)> {
    let mut ts = batch.events.iter().map(|g| g.event.timestamp_ms);
    let first = ts.next()?;
    let (lo, hi) = ts.fold((first, first), |(lo, hi), t| (lo.min(t), hi.max(t)));
    Some((minute_of(lo), minute_of(hi)))
}

/// The distinct (minute, pattern) pairs of a batch's events, `pattern_ids[i]` being event i's.
pub(crate) fn batch_minute_pairs(
    batch: &IngestBatch,
    pattern_ids: &[i64],
) -> std::collections::BTreeSet<(i64, i64)> {
    pattern_ids.iter().zip(&batch.events).map(|(&id, ge)| (minute_of(ge.event.timestamp_ms), id)).collect()
}

/// Escapes `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern and wraps it in `%…%`.
pub fn like_pattern(text: &str) -> String {
    format!("%{}%", like_escape(text))
}

/// `LIKE` pattern for values that start with `text` (escape character `\`).
pub fn like_prefix(text: &str) -> String {
    format!("{}%", like_escape(text))
}

fn like_escape(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    for c in text.chars() {
        if matches!(c, '%' | '_' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p
}

/// Per-pattern, per-minute bookkeeping for one batch, shared by both backends.
#[derive(Debug, Default)]
pub(crate) struct BatchTotals<'a> {
    /// pattern id → (count, min ts, max ts, highest level, first stored entry id)
    pub patterns: BTreeMap<i64, PatternDelta<'a>>,
    /// (minute, pattern id, source, level) → its counts
    pub minutes: BTreeMap<(i64, i64, &'a str, &'static str), MinuteDelta>,
}

/// One minute's counts of a pattern, source and level in a batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct MinuteDelta {
    pub count: i64,
    pub stored: i64,
    /// The first and the latest occurrence inside the minute.
    pub first_ms: i64,
    pub last_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct PatternDelta<'a> {
    pub count: i64,
    pub first_ms: i64,
    pub last_ms: i64,
    pub level: Level,
    pub sample: Option<i64>,
    /// Message of the sample entry.
    pub sample_message: Option<&'a str>,
    /// The newest mined template (message tier only: it widens as lines arrive).
    pub template: Option<&'a str>,
}

/// Borrowed from the batch: adding an event copies no text.
impl<'a> BatchTotals<'a> {
    pub fn add(&mut self, pattern_id: i64, grouped: &'a GroupedEvent, stored_id: Option<i64>) {
        let event = &grouped.event;
        let d = self.patterns.entry(pattern_id).or_insert(PatternDelta {
            count: 0,
            first_ms: event.timestamp_ms,
            last_ms: event.timestamp_ms,
            level: event.level,
            sample: None,
            sample_message: None,
            template: None,
        });
        if grouped.grouping.tier == faultline_core::Tier::Message {
            d.template = Some(&grouped.grouping.template);
        }
        d.count += 1;
        d.first_ms = d.first_ms.min(event.timestamp_ms);
        d.last_ms = d.last_ms.max(event.timestamp_ms);
        d.level = d.level.max(event.level);
        if d.sample.is_none() && stored_id.is_some() {
            d.sample = stored_id;
            d.sample_message = Some(&event.message);
        }
        let key = (minute_of(event.timestamp_ms), pattern_id, event.source.as_str(), event.level.as_str());
        let t = event.timestamp_ms;
        let m =
            self.minutes.entry(key).or_insert(MinuteDelta { count: 0, stored: 0, first_ms: t, last_ms: t });
        m.count += 1;
        m.stored += i64::from(stored_id.is_some());
        m.first_ms = m.first_ms.min(t);
        m.last_ms = m.last_ms.max(t);
    }
}

/// One finished run of a scheduled or manual job (collection, error-rate check, retention…).
#[derive(Debug, Clone, PartialEq)]
pub struct JobRun {
    pub job: String,
    /// Which faultline process ran it (`host:pid:…`); empty when unknown (runs recorded before).
    pub instance: String,
    pub started_ms: i64,
    pub finished_ms: i64,
    /// `ok`, `failed` or `skipped`.
    pub outcome: String,
    /// What the run did (counts) or why it failed, as a JSON object.
    pub detail: serde_json::Value,
}

/// The store's size, read when `/metrics` is scraped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreGauges {
    /// Bytes the database takes: SQLite's file (pages in use and free), PostgreSQL's database.
    pub database_bytes: i64,
    pub patterns: i64,
    /// Deliveries not yet sent nor given up.
    pub outbox_pending: i64,
}

/// A stored job run.
#[derive(Debug, Clone, PartialEq)]
pub struct JobRunRow {
    pub id: i64,
    pub run: JobRun,
}

/// Replaces NUL characters in every text of an event, metadata and ids included, with U+FFFD:
/// PostgreSQL cannot store them (not even escaped in JSON), and SQLite's LIKE and FTS5 stop
/// reading at one.
/// An event's metadata as the JSON text the `metadata` column holds; `None` when it has none.
pub(crate) fn metadata_json(event: &LogEvent) -> Option<String> {
    (!event.metadata.is_empty()).then(|| serde_json::to_string(&event.metadata).unwrap_or_default())
}

pub(crate) fn replace_nul(event: &mut LogEvent) {
    fix_nul(&mut event.message);
    fix_nul(&mut event.source);
    fix_nul(&mut event.raw);
    fix_nul(&mut event.origin.source_id);
    for field in [
        &mut event.traceback,
        &mut event.request_path,
        &mut event.request_method,
        &mut event.origin.external_id,
    ]
    .into_iter()
    .flatten()
    {
        fix_nul(field);
    }
    if event.metadata.iter().any(|(k, v)| k.contains('\0') || has_nul(v)) {
        event.metadata = map_without_nul(std::mem::take(&mut event.metadata));
    }
}

/// `s` with NUL characters as U+FFFD.
pub fn without_nul(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        std::borrow::Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

fn fix_nul(s: &mut String) {
    if let std::borrow::Cow::Owned(fixed) = without_nul(s) {
        *s = fixed;
    }
}

fn has_nul(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        _ => false,
    }
}

/// A JSON value with NUL characters as U+FFFD in every string and key, replaced before it is
/// serialised (replacing the escaped `\u0000` afterwards can break the JSON).
pub(crate) fn json_without_nul(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    if !has_nul(&v) {
        return v;
    }
    match v {
        Value::String(s) => Value::String(without_nul(&s).into_owned()),
        Value::Array(items) => Value::Array(items.into_iter().map(json_without_nul).collect()),
        Value::Object(map) => Value::Object(map_without_nul(map)),
        other => other,
    }
}

fn map_without_nul(
    map: serde_json::Map<String, serde_json::Value>,
) -> serde_json::Map<String, serde_json::Value> {
    map.into_iter().map(|(k, v)| (without_nul(&k).into_owned(), json_without_nul(v))).collect()
}

/// An alert rule as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRuleRow {
    pub id: i64,
    pub name: String,
    pub rule_type: String,
    pub condition: serde_json::Value,
    /// `task_and_notify`, `task` or `notify`.
    pub action: String,
    pub enabled: bool,
    pub cooldown_minutes: i64,
    pub last_triggered_ms: Option<i64>,
    pub trigger_count: i64,
    pub created_ms: i64,
}

/// A rule to create when no rule of that name exists (seeding from the config).
#[derive(Debug, Clone, PartialEq)]
pub struct NewRule {
    pub name: String,
    pub rule_type: String,
    pub condition: serde_json::Value,
    pub action: String,
    pub enabled: bool,
    pub cooldown_minutes: i64,
}

/// What became of a rule to create or change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSaved {
    /// Stored under this id.
    Saved(i64),
    /// Another rule has that name.
    NameTaken,
    /// No rule has that id.
    NoSuchRule,
}

/// An alert to record, with its task and deliveries, in one transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertDraft {
    /// The rule it is named after; `None` for the flood guard's summary.
    pub rule_id: Option<i64>,
    /// Every rule that fired (their trigger counts go up).
    pub rule_ids: Vec<i64>,
    pub rule_type: String,
    /// `pattern:<id>`, `error_rate:<health>` or `flood_guard`.
    pub subject: String,
    pub pattern_id: Option<i64>,
    pub priority: faultline_core::alert::Priority,
    pub reason: String,
    /// Recorded only if no alert about this subject (by any rule) is younger than this: a
    /// second faultline instance sharing the database may have just sent it.
    pub cooldown_ms: i64,
    /// A critical alert inside the cooldown: recorded unless a critical alert about the subject
    /// is younger than the cooldown.
    pub escalation: bool,
    /// A change of state (the error rate's health): recorded only if the rule's latest alert
    /// was about another subject (another instance may have announced this state already).
    pub state_change: bool,
    /// Past these (counted over every alert in the database), the alert and its task are
    /// recorded but its notifications are held back for the digest ([`crate::Store::send_digest`]).
    pub flood: Option<faultline_core::alert::FloodLimits>,
    /// Create or update the subject's open task.
    pub task: bool,
    /// The task's subject when it is not the alert's: an incident over several alerts (the
    /// error rate's episode, `error_rate`).
    pub task_subject: Option<String>,
    /// Close the subject's open task (a recovery ends the incident).
    pub close_task: bool,
    /// With no open task, reopen the subject's last task rather than create one (regressions).
    pub reopen: bool,
    /// The task text for subjects that are not patterns (patterns' come from their facts).
    pub task_draft: Option<faultline_core::alert::TaskDraft>,
    /// Notifier names to deliver to.
    pub notifiers: Vec<String>,
    /// Extra facts for the payload (error rate figures).
    pub extra: serde_json::Value,
    /// Where faultline's pages are seen from (`server.public_url`), for links in the payload.
    pub public_url: Option<String>,
    pub now_ms: i64,
}

/// The digest of held-back notifications ([`crate::Store::send_digest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestDraft {
    /// Sent once the oldest held alert is at least this old.
    pub after_ms: i64,
    pub notifiers: Vec<String>,
    pub public_url: Option<String>,
    pub now_ms: i64,
}

/// What recording an alert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FiredAlert {
    pub alert_id: i64,
    pub task_id: Option<i64>,
    pub task_created: bool,
    /// Past the flood limits: recorded with its task, notifications held for the digest.
    pub held: bool,
}

/// A stored alert.
#[derive(Debug, Clone, PartialEq)]
pub struct AlertRow {
    pub id: i64,
    pub rule_id: Option<i64>,
    pub rule_type: String,
    pub subject: String,
    pub pattern_id: Option<i64>,
    pub fired_ms: i64,
    pub priority: String,
    pub summary: String,
    pub reason: String,
    pub task_id: Option<i64>,
    pub payload: serde_json::Value,
    /// Its notifications were held back by the flood limits…
    pub held: bool,
    /// …and went out in this digest alert.
    pub digest_id: Option<i64>,
}

/// An investigation task.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub id: i64,
    pub subject: String,
    pub pattern_id: Option<i64>,
    pub fingerprint: Option<String>,
    pub task_type: String,
    pub title: String,
    pub description: String,
    pub priority: String,
    pub status: TaskStatus,
    pub metadata: serde_json::Value,
    pub alert_count: i64,
    pub created_ms: i64,
    pub updated_ms: i64,
}

/// Something that happened to a task (created, alert, state change, reopened).
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEvent {
    pub at_ms: i64,
    pub kind: String,
    pub detail: String,
}

/// A delivery the outbox worker has leased.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryJob {
    pub id: i64,
    pub alert_id: i64,
    pub notifier: String,
    pub idempotency_key: String,
    /// Attempts before this one.
    pub attempts: i64,
    pub subject: String,
    pub payload: serde_json::Value,
    /// What this notifier created for the subject earlier (a GitHub issue number).
    pub reference: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryResult {
    Sent { reference: Option<String> },
    Retry { next_attempt_ms: i64, error: String },
    Failed { error: String },
}

impl DeliveryResult {
    /// What the delivery row and the attempt record say: (status, next attempt, error, outcome).
    pub(crate) fn columns(&self, now_ms: i64) -> (&'static str, i64, Option<&str>, &'static str) {
        match self {
            DeliveryResult::Sent { .. } => ("sent", now_ms, None, "sent"),
            DeliveryResult::Retry { next_attempt_ms, error } => {
                ("pending", *next_attempt_ms, Some(error), "retry")
            }
            DeliveryResult::Failed { error } => ("failed", now_ms, Some(error), "failed"),
        }
    }
}

/// A delivery as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryRow {
    pub id: i64,
    pub alert_id: i64,
    pub notifier: String,
    pub idempotency_key: String,
    /// `pending`, `sent` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_ms: i64,
    pub last_error: Option<String>,
    pub updated_ms: i64,
}

/// The facts of a pattern as tasks and notifications quote them.
pub(crate) fn pattern_facts(p: &PatternRow) -> faultline_core::alert::PatternFacts {
    faultline_core::alert::PatternFacts {
        fingerprint: p.fingerprint.clone(),
        template: p.normalized_message.clone(),
        error_type: p.error_type.clone(),
        first_seen_ms: p.first_seen_ms,
        last_seen_ms: p.last_seen_ms,
        occurrences: p.occurrence_count,
        source: p.source.clone(),
        sample_message: p.sample_message.clone(),
        stack_trace: p.stack_trace.clone(),
    }
}

/// Task text, metadata and the notification payload for an alert, shared by both backends.
pub(crate) struct AlertTexts {
    pub summary: String,
    pub task: faultline_core::alert::TaskDraft,
    pub metadata: serde_json::Value,
}

pub(crate) fn alert_texts(draft: &AlertDraft, pattern: Option<&PatternRow>) -> AlertTexts {
    use faultline_core::alert::{TaskDraft, rfc3339, task_for_pattern};
    let task = match (pattern, &draft.task_draft) {
        (Some(p), _) => task_for_pattern(&pattern_facts(p)),
        (None, Some(t)) => t.clone(),
        (None, None) => TaskDraft { title: draft.reason.clone(), description: draft.reason.clone() },
    };
    let summary = format!("[{}] {}", draft.rule_type, task.title.trim_start_matches("Investigate error: "));
    let metadata = serde_json::json!({
        "fingerprint": pattern.map(|p| p.fingerprint.clone()),
        "occurrences": pattern.map(|p| p.occurrence_count),
        "first_seen": pattern.map(|p| rfc3339(p.first_seen_ms)),
        "last_seen": pattern.map(|p| rfc3339(p.last_seen_ms)),
        "rule": draft.rule_type,
        "reason": draft.reason,
    });
    AlertTexts { summary, task, metadata }
}

/// The JSON every notifier is given (the generic webhook sends it as is).
pub(crate) fn alert_payload(
    alert_id: i64,
    draft: &AlertDraft,
    texts: &AlertTexts,
    pattern: Option<&PatternRow>,
    task: Option<(i64, bool)>,
) -> serde_json::Value {
    use faultline_core::alert::rfc3339;
    serde_json::json!({
        "alert_id": alert_id,
        "idempotency_key": idempotency_key(alert_id, draft.now_ms),
        "rule": draft.rule_type,
        "subject": draft.subject,
        "priority": draft.priority.as_str(),
        "reason": draft.reason,
        "summary": texts.summary,
        "fired_at": rfc3339(draft.now_ms),
        "pattern": pattern.map(|p| serde_json::json!({
            "fingerprint": p.fingerprint,
            "short_id": crate::short_id(&p.fingerprint),
            "template": p.normalized_message,
            "error_type": p.error_type,
            "first_seen": rfc3339(p.first_seen_ms),
            "last_seen": rfc3339(p.last_seen_ms),
            "occurrences": p.occurrence_count,
            "source": p.source,
            "severity": p.severity,
            "status": p.status,
            "sample_message": p.sample_message,
            "stack_trace": p.stack_trace,
        })),
        "task": task.map(|(id, created)| serde_json::json!({
            "id": id,
            "created": created,
            "title": texts.task.title,
            "description": texts.task.description,
        })),
        "links": {
            "pattern": pattern.and_then(|p| pattern_link(draft.public_url.as_deref(), &p.fingerprint)),
            "task": task.and_then(|(id, _)| task_link(draft.public_url.as_deref(), id)),
        },
        "extra": draft.extra,
    })
}

/// A pattern's page under `server.public_url`.
pub(crate) fn pattern_link(public_url: Option<&str>, fingerprint: &str) -> Option<String> {
    public_url.map(|u| format!("{}/patterns/{}", u.trim_end_matches('/'), crate::short_id(fingerprint)))
}

/// A task on the tasks page under `server.public_url`.
pub(crate) fn task_link(public_url: Option<&str>, id: i64) -> Option<String> {
    public_url.map(|u| format!("{}/tasks?highlight={id}#task-{id}", u.trim_end_matches('/')))
}

/// One held alert, as a digest lists it.
#[derive(Debug, Clone)]
pub(crate) struct HeldAlert {
    pub id: i64,
    pub rule_type: String,
    pub summary: String,
    pub fired_ms: i64,
    pub payload: serde_json::Value,
}

/// Held alerts a digest names one by one; past these it gives the count only.
const DIGEST_LISTED: usize = 20;

/// The digest's reason, summary and payload (the notifiers' usual fields, plus `held`).
pub(crate) fn digest_texts(
    alert_id: i64,
    draft: &DigestDraft,
    held: &[HeldAlert],
) -> (String, String, serde_json::Value) {
    use faultline_core::alert::rfc3339;
    let since = held.iter().map(|h| h.fired_ms).min().unwrap_or(draft.now_ms);
    let minutes = ((draft.now_ms - since) / MINUTE_MS).max(1);
    let new = held.iter().filter(|h| h.rule_type == "new_fingerprint").count();
    let mut reason =
        format!("{} alerts held back by the flood limits in the last {minutes} minutes", held.len());
    if new > 0 {
        reason.push_str(&format!(" ({new} new patterns)"));
    }
    let names: Vec<&str> = held.iter().take(DIGEST_LISTED).map(|h| h.summary.as_str()).collect();
    let summary = format!("[digest] {reason}");
    let reason =
        format!("{reason}: {}{}", names.join("; "), if held.len() > DIGEST_LISTED { "; …" } else { "" });
    let payload = serde_json::json!({
        "alert_id": alert_id,
        "idempotency_key": idempotency_key(alert_id, draft.now_ms),
        "rule": "digest",
        "subject": "digest",
        "priority": "medium",
        "reason": reason,
        "summary": summary,
        "fired_at": rfc3339(draft.now_ms),
        "held": held.iter().take(DIGEST_LISTED).map(|h| serde_json::json!({
            "alert_id": h.id,
            "rule": h.rule_type,
            "summary": h.summary,
            "fired_at": rfc3339(h.fired_ms),
            "pattern": h.payload["links"]["pattern"],
            "task": h.payload["links"]["task"],
        })).collect::<Vec<_>>(),
        "held_count": held.len(),
        "links": { "alerts": draft.public_url.as_deref().map(|u| format!("{}/tasks", u.trim_end_matches('/'))) },
    });
    (summary, reason, payload)
}

/// The key receivers use to drop a repeated delivery of the same alert.
pub(crate) fn idempotency_key(alert_id: i64, fired_ms: i64) -> String {
    format!("faultline-alert-{alert_id}-{fired_ms}")
}

/// The draft behind a task created by hand from a pattern.
pub(crate) fn manual_draft(subject: String, pattern_id: i64, now_ms: i64) -> AlertDraft {
    AlertDraft {
        rule_id: None,
        rule_ids: Vec::new(),
        rule_type: "manual".to_owned(),
        subject,
        pattern_id: Some(pattern_id),
        priority: faultline_core::alert::Priority::Medium,
        reason: "created by hand".to_owned(),
        cooldown_ms: 0,
        escalation: false,
        state_change: false,
        flood: None,
        task: true,
        task_subject: None,
        close_task: false,
        reopen: false,
        task_draft: None,
        notifiers: Vec::new(),
        extra: serde_json::Value::Null,
        public_url: None,
        now_ms,
    }
}
