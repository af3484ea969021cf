//! `faultline ingest`: a file from its saved cursor to its end, through the [`Pipeline`].
//!
//! Reading, assembling, fingerprinting and mining ([`faultline_store::Store::mine_ahead`]) run
//! on a blocking thread while the store writes the previous batch, so the two cores work at
//! once. Each batch carries the cursor of the first byte not yet stored (the start of the event
//! still open), and the store commits both together: a crash at any point neither loses nor
//! repeats an event.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use faultline_connectors::file::OpenedFile;
use faultline_core::{Assembler, AssemblerOptions, Level, LogEvent, ParseContext};
use faultline_store::{
    GroupedEvent, IngestBatch, IngestOutcome, LineCount, Pipeline, PipelineSettings, SourceKind, minute_of,
};

/// How one ingest reads (what is stored is the pipeline's [`PipelineSettings`]).
#[derive(Debug, Clone)]
pub struct IngestOptions {
    pub batch_size: usize,
    pub max_line_bytes: usize,
    /// Source name for events that do not name one (default: the file's stem).
    pub source: Option<String>,
    /// Year for timestamps that carry none (syslog).
    pub default_year: i32,
    /// Ingest time: stamps events without a timestamp.
    pub now_ms: i64,
    /// Read from the first line even when a cursor is saved (what is already stored is
    /// recognised by its position and not stored twice).
    pub from_start: bool,
}

/// What an ingest did, for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestSummary {
    pub lines_read: u64,
    pub bytes_read: u64,
    pub events: u64,
    /// Events below the minimum level: counted per minute, not stored.
    pub below_level: u64,
    pub cut_lines: u64,
    pub dropped_trace_lines: u64,
    pub store: IngestOutcome,
}

/// A batch made by the reader, before the store sees it.
pub struct ReadBatch {
    pub events: Vec<GroupedEvent>,
    pub skipped: Vec<LineCount>,
    pub cursor: String,
    /// Bytes consumed so far, for progress.
    pub position: u64,
}

/// Reads `opened` to its end, handing batches of grouped events to `sink`; events below
/// `settings.min_level` are only counted. Returns the reader's counters. Pure CPU and file IO:
/// no database.
pub fn read_events(
    opened: &mut OpenedFile,
    options: &IngestOptions,
    settings: PipelineSettings,
    mut sink: impl FnMut(ReadBatch) -> anyhow::Result<()>,
) -> anyhow::Result<IngestSummary> {
    let mut summary = IngestSummary::default();
    let default_source = options.source.clone().unwrap_or_else(|| {
        opened.path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    });
    let parse = ParseContext { default_year: options.default_year };
    // Events below the minimum level are only counted: the assembler keeps none of their text.
    let mut assembler = Assembler::new(
        opened.source_id.clone(),
        AssemblerOptions { parse, whole_from: settings.min_level, ..Default::default() },
    );
    let mut events: Vec<GroupedEvent> = Vec::with_capacity(options.batch_size);
    let mut skipped: BTreeMap<(i64, Level), u64> = BTreeMap::new();
    let identity = opened.identity.clone();
    let mut accept =
        |event: LogEvent, events: &mut Vec<GroupedEvent>, skipped: &mut BTreeMap<(i64, Level), u64>| {
            summary.events += 1;
            if event.level < settings.min_level {
                summary.below_level += 1;
                *skipped.entry((minute_of(event.timestamp_ms), event.level)).or_default() += 1;
                return;
            }
            let mut event = event;
            if let Some(offset) = event.origin.external_id.as_deref().and_then(|o| o.parse::<u64>().ok()) {
                event.origin.external_id = Some(faultline_connectors::file::external_id(&identity, offset));
            }
            if event.source.is_empty() {
                event.source.clone_from(&default_source);
            }
            events.push(GroupedEvent::of(event));
        };
    let source_id = opened.source_id.clone();
    let take_skipped = |skipped: &mut BTreeMap<(i64, Level), u64>| -> Vec<LineCount> {
        std::mem::take(skipped)
            .into_iter()
            .map(|((minute, level), count)| LineCount { minute, source_id: source_id.clone(), level, count })
            .collect()
    };
    let read_err = |e| anyhow::anyhow!("cannot read {}: {e}", opened.path.display());
    loop {
        let Some(line) = opened.reader.next_line().map_err(read_err)? else { break };
        summary.lines_read += 1;
        if let Some(event) = assembler.push(&line.text, line.offset, options.now_ms) {
            accept(event, &mut events, &mut skipped);
            if events.len() >= options.batch_size {
                let resume = assembler.pending_offset().unwrap_or(opened.reader.offset());
                sink(ReadBatch {
                    events: std::mem::replace(&mut events, Vec::with_capacity(options.batch_size)),
                    skipped: take_skipped(&mut skipped),
                    cursor: opened.cursor_at(resume),
                    position: opened.reader.position(),
                })?;
            }
        }
    }
    if let Some(event) = assembler.finish(options.now_ms) {
        accept(event, &mut events, &mut skipped);
    }
    let end = opened.reader.offset();
    sink(ReadBatch {
        events,
        skipped: take_skipped(&mut skipped),
        cursor: opened.cursor_at(end),
        position: end,
    })?;
    summary.bytes_read = end - opened.start;
    summary.cut_lines = opened.reader.cut_lines;
    summary.dropped_trace_lines = assembler.dropped_lines;
    Ok(summary)
}

/// Events past which batches waiting for the store are not merged into one transaction.
const MERGED_EVENTS: usize = 30_000;

/// Ingests one file from its saved cursor to its end. `progress` gets the bytes consumed.
pub async fn ingest_file(
    pipeline: &Pipeline,
    path: &Path,
    options: &IngestOptions,
    progress: impl Fn(u64, u64) + Send + 'static,
) -> anyhow::Result<IngestSummary> {
    let source_id = faultline_connectors::file::source_id(path)?;
    let store = pipeline.store();
    let cursor = if options.from_start {
        None
    } else {
        store.cursor(&source_id).await.context("reading the saved cursor")?
    };
    let mut opened = OpenedFile::open(path, cursor.as_deref(), options.max_line_bytes)?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<IngestBatch>(2);
    let options_for_reader = options.clone();
    let settings = pipeline.settings();
    let miner = store.clone();
    let reader = tokio::task::spawn_blocking(move || {
        let total = opened.len;
        let now_ms = options_for_reader.now_ms;
        read_events(&mut opened, &options_for_reader, settings, |read| {
            progress(read.position, total);
            let mut batch = IngestBatch {
                source_id: source_id.clone(),
                cursor: Some(read.cursor),
                events: read.events,
                skipped: read.skipped,
                max_stored_per_pattern_minute: settings.max_stored_per_pattern_minute,
                now_ms,
                mined: None,
            };
            // Mined here, beside the store writing the batch before.
            miner.mine_ahead(&mut batch);
            tx.blocking_send(batch).map_err(|_| anyhow::anyhow!("store stopped"))
        })
    });
    let mut outcome = IngestOutcome::default();
    let mut next: Option<IngestBatch> = None;
    loop {
        let mut batch = match next.take() {
            Some(batch) => batch,
            None => match rx.recv().await {
                Some(batch) => batch,
                None => break,
            },
        };
        // Batches read while the store wrote the one before go in one transaction: when the
        // store is the slower side, it commits less often (each commit writes the indexes'
        // pages it touched again), and the reader never waits for more than it did.
        while batch.events.len() < MERGED_EVENTS.max(options.batch_size)
            && let Ok(later) = rx.try_recv()
        {
            if let Err(later) = batch.absorb(later) {
                next = Some(*later);
                break;
            }
        }
        outcome += pipeline.commit(SourceKind::Command, batch, 0).await.context("storing a batch")?.outcome;
    }
    store.save_grouping(options.now_ms).await.context("saving the template miner's state")?;
    let mut summary = reader.await.context("reader thread")??;
    summary.store = outcome;
    Ok(summary)
}
