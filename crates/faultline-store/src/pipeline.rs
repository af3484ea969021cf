//! The one way events reach the store: every source (files, journald, Railway's crawl and live
//! stream, HTTP ingest, `faultline ingest`) hands its events to a [`Pipeline`], which
//! fingerprints them, commits them with the source's cursor, counts what happened per source
//! kind and tells the observers (the alert rules) which patterns the batch touched.
//!
//! A source only reads: it never writes to the store itself, so what is stored, counted and
//! alerted on is decided in one place.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use faultline_core::{Level, LogEvent};

use crate::{IngestBatch, IngestOutcome, Result, Store};

/// The kinds of source, as the per-source counters and logs name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Files,
    Journald,
    Railway,
    Http,
    /// `faultline ingest` and generated data.
    Command,
}

impl SourceKind {
    /// The name in counters, logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Files => "files",
            SourceKind::Journald => "journald",
            SourceKind::Railway => "railway",
            SourceKind::Http => "http",
            SourceKind::Command => "command",
        }
    }
}

/// What the pipeline decides for every source alike.
#[derive(Debug, Clone, Copy)]
pub struct PipelineSettings {
    /// Events below this level are counted per minute, not stored.
    pub min_level: Level,
    /// Occurrences stored per pattern and minute; the rest are only counted.
    pub max_stored_per_pattern_minute: u32,
}

impl Default for PipelineSettings {
    fn default() -> Self {
        PipelineSettings { min_level: Level::Error, max_stored_per_pattern_minute: 1000 }
    }
}

/// Events read by a source, with the cursor to resume from once they are stored.
#[derive(Debug, Clone)]
pub struct Submission {
    pub source_id: String,
    /// Stored with the events in one transaction; `None` leaves the saved cursor as it is.
    pub cursor: Option<String>,
    pub events: Vec<LogEvent>,
    /// Lines the source cut to the length limit while reading these events.
    pub cut_lines: u64,
    /// Ingest time: stamps events without a timestamp, and the patterns' `last_seen`.
    pub now_ms: i64,
}

/// What one commit did.
#[derive(Debug, Clone, Default)]
pub struct Committed {
    pub outcome: IngestOutcome,
    /// Events below the minimum level: counted, not stored.
    pub below_level: u64,
}

/// What each kind of source stored since the counters were last taken.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceCounters {
    pub batches: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub capped: u64,
    pub below_level: u64,
    pub cut_lines: u64,
    pub errors: u64,
    pub last_error: Option<String>,
}

/// Told about every committed batch; must not block (the alert rules note the touched patterns
/// and evaluate them on their own task).
pub type Observer = Arc<dyn Fn(&IngestOutcome) + Send + Sync>;

/// Fingerprint → store (with the cursor, one transaction) → counters → observers.
pub struct Pipeline {
    store: Arc<dyn Store>,
    settings: PipelineSettings,
    observers: Vec<Observer>,
    counters: Mutex<BTreeMap<SourceKind, SourceCounters>>,
}

impl Pipeline {
    pub fn new(store: Arc<dyn Store>, settings: PipelineSettings) -> Pipeline {
        Pipeline { store, settings, observers: Vec::new(), counters: Mutex::default() }
    }

    /// Calls `observer` after each committed batch, whichever source sent it.
    pub fn with_observer(mut self, observer: Observer) -> Pipeline {
        self.observers.push(observer);
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn settings(&self) -> PipelineSettings {
        self.settings
    }

    /// Fingerprints a source's events and commits them with its cursor.
    pub async fn submit(&self, kind: SourceKind, submission: Submission) -> Result<Committed> {
        let batch = IngestBatch::from_events(
            &submission.source_id,
            submission.cursor,
            submission.events,
            self.settings.min_level,
            self.settings.max_stored_per_pattern_minute,
            submission.now_ms,
        );
        self.commit(kind, batch, submission.cut_lines).await
    }

    /// Commits a batch a source has already fingerprinted (`faultline ingest` does that on its
    /// reader thread, so that reading and storing run on both cores).
    pub async fn commit(&self, kind: SourceKind, batch: IngestBatch, cut_lines: u64) -> Result<Committed> {
        let below_level = batch.below_level();
        let received = batch.events.len() as u64 + below_level;
        let outcome = if batch.events.is_empty() && batch.skipped.is_empty() && batch.cursor.is_none() {
            IngestOutcome::default()
        } else {
            // A failed commit is the caller's to report: the file and journald sources count it
            // through `failed` with their own words, HTTP answers 503, a crawl records its run.
            let started = std::time::Instant::now();
            let result = self.store.ingest(batch).await;
            metrics::histogram!("faultline_db_ingest_seconds").record(started.elapsed().as_secs_f64());
            if result.is_err() {
                metrics::counter!("faultline_ingest_failed_batches_total", "source" => kind.as_str())
                    .increment(1);
            }
            result?
        };
        let source = kind.as_str();
        metrics::counter!("faultline_events_received_total", "source" => source).increment(received);
        metrics::counter!("faultline_events_stored_total", "source" => source).increment(outcome.stored);
        metrics::counter!("faultline_events_duplicate_total", "source" => source)
            .increment(outcome.duplicates);
        metrics::counter!("faultline_events_capped_total", "source" => source).increment(outcome.capped);
        metrics::counter!("faultline_events_below_level_total", "source" => source).increment(below_level);
        metrics::counter!("faultline_patterns_new_total").increment(outcome.new_patterns);
        {
            let mut all = self.counters.lock().unwrap_or_else(|e| e.into_inner());
            let c = all.entry(kind).or_default();
            c.batches += 1;
            c.stored += outcome.stored;
            c.duplicates += outcome.duplicates;
            c.capped += outcome.capped;
            c.below_level += below_level;
            c.cut_lines += cut_lines;
        }
        for observer in &self.observers {
            observer(&outcome);
        }
        Ok(Committed { outcome, below_level })
    }

    /// Records a source's failure (a missing file, a journal that exited, a batch not stored).
    pub fn failed(&self, kind: SourceKind, error: String) {
        let mut all = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        let c = all.entry(kind).or_default();
        c.errors += 1;
        c.last_error = Some(error);
    }

    /// The counters since they were last taken, reset.
    pub fn take_counters(&self) -> BTreeMap<SourceKind, SourceCounters> {
        std::mem::take(&mut *self.counters.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
