//! Following log files as they grow: globs, rotation, partial lines, multi-line events.
//!
//! [`Tailer::poll`] is called on a timer. For each file matched by the configured globs it reads
//! what was appended since the last call, joins lines into events, and hands them to `commit`
//! as [`FileBatch`]es with the [`Checkpoint`] to resume from. The tailer never saves a
//! checkpoint itself: the caller stores the events and the checkpoint in one transaction, and a
//! failed commit makes the tailer forget what it read and resume from the last saved checkpoint.
//!
//! A file is known by its first line (a digest of at most 256 bytes), its device and inode:
//! * **rename rotation** (`app.log` → `app.log.1`, new `app.log`): the old file is read to its end
//!   through the open descriptor before the new one is started;
//! * **copytruncate**: the copy in the same directory is found by its first line and read from
//!   the checkpoint to its end, then the truncated file from its start;
//! * **delete and recreate**: the old descriptor is drained, the new file read from its start;
//! * after a **restart**, a checkpoint that belongs to another file than the one now at the path
//!   sends the tailer looking for that file in the same directory (the rotated one), which is
//!   drained first; a checkpoint past the end of the file now there is never trusted;
//! * a file that **appears later** is read from its start; files found at the first scan with no
//!   checkpoint start at their end when `start_at_end` is set.
//!
//! A partial last line waits for its newline. An event that may still get traceback lines is
//! held until the next event starts or `multiline_wait_ms` pass without a line.
//!
//! Globs should match the live files (`/var/log/app/*.log`), not their rotated copies
//! (`app.log.1`), which are found by their first line when needed; `exclude` removes matches.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use faultline_core::{Assembler, AssemblerOptions, Level, LogEvent, ParseContext, TimestampMs};

use crate::file::{AtEnd, Checkpoint, LineReader, external_id, identity};

/// How files are followed.
#[derive(Debug, Clone)]
pub struct TailOptions {
    pub max_line_bytes: usize,
    /// Files found at the first scan that have no checkpoint start at their end (new lines only).
    pub start_at_end: bool,
    /// How long an event waits for more traceback lines before it is complete.
    pub multiline_wait_ms: i64,
    pub parse: ParseContext,
    /// Events per batch handed to `commit`.
    pub max_batch_events: usize,
    /// Full batches read from one file in one `poll`; the rest waits for the next poll, so a
    /// large backlog never keeps `poll` from returning (and a shutdown waiting).
    pub max_batches_per_poll: usize,
    /// Events below this level are handed over as summaries, for a store that only counts them
    /// (see [`AssemblerOptions::whole_from`]); the default keeps every event whole.
    pub whole_from: Level,
}

impl Default for TailOptions {
    fn default() -> Self {
        TailOptions {
            max_line_bytes: 64 * 1024,
            start_at_end: true,
            multiline_wait_ms: 1_000,
            parse: ParseContext { default_year: 1970 },
            max_batch_events: 5_000,
            max_batches_per_poll: 20,
            whole_from: Level::Unknown,
        }
    }
}

/// Events read from one file and where to resume once they are stored.
#[derive(Debug, Clone)]
pub struct FileBatch {
    /// `file:<canonical path>` of the followed path (rotated copies read for it included).
    pub source_id: String,
    pub events: Vec<LogEvent>,
    pub checkpoint: Checkpoint,
    /// Lines cut at the length cap since the previous batch.
    pub cut_lines: u64,
}

/// Errors that stop the tailer from starting.
#[derive(Debug, thiserror::Error)]
pub enum TailError {
    #[error("invalid glob {pattern:?}: {reason}")]
    InvalidGlob { pattern: String, reason: String },
    #[error("no files to follow: give at least one path or glob")]
    NothingToFollow,
}

/// What one followed file is doing, for status pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileStatus {
    pub path: PathBuf,
    pub source_id: String,
    /// Bytes read and stored so far in the current file, if it is open.
    pub offset: Option<u64>,
    pub size: Option<u64>,
    pub last_error: Option<String>,
}

/// What one `poll` met.
#[derive(Debug, Default)]
pub struct PollReport {
    /// Errors per path; the other files were still read.
    pub errors: Vec<(PathBuf, String)>,
    /// Some file has more to read already: poll again without waiting.
    pub more: bool,
}

/// Follows every file matched by a set of globs.
pub struct Tailer {
    include: Vec<String>,
    exclude: Vec<glob::Pattern>,
    options: TailOptions,
    files: BTreeMap<PathBuf, TailedFile>,
    scanned: bool,
}

struct TailedFile {
    source_id: String,
    /// The file existed at the tailer's first scan (so `start_at_end` applies to it).
    found_at_start: bool,
    open: Option<OpenFile>,
    last_error: Option<String>,
}

struct OpenFile {
    reader: LineReader<BufReader<File>>,
    identity: String,
    dev: u64,
    ino: u64,
    assembler: Assembler,
    /// The checkpoint last handed to `commit`.
    committed: Option<Checkpoint>,
    cut_reported: u64,
}

impl OpenFile {
    fn checkpoint(&self) -> Checkpoint {
        let offset = self.assembler.pending_offset().unwrap_or_else(|| self.reader.offset());
        Checkpoint { identity: self.identity.clone(), offset, dev: self.dev, ino: self.ino }
    }
}

/// How the file at a followed path relates to the one the tailer has open.
enum Change {
    Same,
    /// Another file is at the path now, or none: the open descriptor is the old file.
    Replaced {
        gone: bool,
    },
    /// Same file, but cut shorter or rewritten from its start (copytruncate).
    Truncated,
}

impl Tailer {
    pub fn new(include: Vec<String>, exclude: &[String], options: TailOptions) -> Result<Tailer, TailError> {
        if include.is_empty() {
            return Err(TailError::NothingToFollow);
        }
        for pattern in &include {
            glob::Pattern::new(pattern)
                .map_err(|e| TailError::InvalidGlob { pattern: pattern.clone(), reason: e.msg.to_owned() })?;
        }
        let exclude = exclude
            .iter()
            .map(|p| {
                glob::Pattern::new(p)
                    .map_err(|e| TailError::InvalidGlob { pattern: p.clone(), reason: e.msg.to_owned() })
            })
            .collect::<Result<_, _>>()?;
        Ok(Tailer { include, exclude, options, files: BTreeMap::new(), scanned: false })
    }

    /// Finds new files, then reads every followed file as far as it goes. `load` returns the
    /// saved checkpoint of a source id; `commit` stores a batch and its checkpoint together.
    pub fn poll<E: std::fmt::Display>(
        &mut self,
        now: TimestampMs,
        load: &mut dyn FnMut(&str) -> Result<Option<String>, E>,
        commit: &mut dyn FnMut(FileBatch) -> Result<(), E>,
    ) -> PollReport {
        self.scan();
        let mut report = PollReport::default();
        for (path, file) in &mut self.files {
            match poll_file(path, file, &self.options, now, load, commit) {
                Ok(more) => {
                    file.last_error = None;
                    report.more |= more;
                }
                Err(error) => {
                    // Forget what was read but not stored: resume from the saved checkpoint.
                    file.open = None;
                    file.last_error = Some(error.clone());
                    report.errors.push((path.clone(), error));
                }
            }
        }
        report
    }

    /// Follows files known from saved checkpoints (their source ids, `file:<path>`) even when
    /// nothing is at their path now: a file rotated away while faultline was stopped is then
    /// still drained. Ids that no include glob matches are ignored.
    pub fn remember<'a>(&mut self, source_ids: impl IntoIterator<Item = &'a str>) {
        for id in source_ids {
            let Some(path) = id.strip_prefix("file:").map(PathBuf::from) else { continue };
            let included =
                self.include.iter().any(|p| glob::Pattern::new(p).is_ok_and(|p| p.matches_path(&path)));
            if !included || self.exclude.iter().any(|p| p.matches_path(&path)) {
                continue;
            }
            self.files.entry(path).or_insert_with(|| TailedFile {
                source_id: id.to_owned(),
                found_at_start: false,
                open: None,
                last_error: None,
            });
        }
    }

    /// What each followed file is doing.
    pub fn status(&self) -> Vec<FileStatus> {
        self.files
            .iter()
            .map(|(path, f)| FileStatus {
                path: path.clone(),
                source_id: f.source_id.clone(),
                offset: f.open.as_ref().map(|o| o.reader.offset()),
                size: fs::metadata(path).ok().map(|m| m.len()),
                last_error: f.last_error.clone(),
            })
            .collect()
    }

    fn scan(&mut self) {
        let first = !self.scanned;
        self.scanned = true;
        for pattern in &self.include {
            let Ok(paths) = glob::glob(pattern) else { continue };
            for path in paths.flatten() {
                if self.files.contains_key(&path)
                    || self.exclude.iter().any(|p| p.matches_path(&path))
                    || !path.is_file()
                {
                    continue;
                }
                let Ok(source_id) = crate::file::source_id(&path) else { continue };
                self.files.insert(
                    path,
                    TailedFile { source_id, found_at_start: first, open: None, last_error: None },
                );
            }
        }
    }
}

/// The identity saved for a file seen with no complete line yet (digests are hex).
const EMPTY: &str = "empty";

type Load<'a, E> = &'a mut dyn FnMut(&str) -> Result<Option<String>, E>;
type Commit<'a, E> = &'a mut dyn FnMut(FileBatch) -> Result<(), E>;

fn poll_file<E: std::fmt::Display>(
    path: &Path,
    file: &mut TailedFile,
    options: &TailOptions,
    now: TimestampMs,
    load: Load<'_, E>,
    commit: Commit<'_, E>,
) -> Result<bool, String> {
    let io_err = |what: &str, e: io::Error| format!("{what} {}: {e}", path.display());
    // Each turn either reads the open file to its end and returns, or finishes a file that was
    // replaced and opens its successor.
    for _ in 0..4 {
        if file.open.is_none() {
            let saved = load(&file.source_id).map_err(|e| format!("loading checkpoint: {e}"))?;
            let saved = saved.as_deref().and_then(Checkpoint::parse);
            match open_current(path, file, saved, options, now, commit)? {
                Some(open) => file.open = Some(open),
                None => {
                    // Nothing complete is there yet (no file, or an empty one): whatever is
                    // written from now on is new, so `start_at_end` no longer applies.
                    file.found_at_start = false;
                    return Ok(false);
                }
            }
        }
        let Some(open) = file.open.as_mut() else { return Ok(false) };
        // Check before reading: after copytruncate the old position points into new text.
        match change(path, open).map_err(|e| io_err("checking", e))? {
            Change::Same => {
                return read_available(open, &file.source_id, options, now, AtEnd::Wait, commit)
                    .map_err(|e| e.describe(|io| io_err("reading", io)));
            }
            Change::Replaced { gone } => {
                // The descriptor still reads the old file: take what was written to it last.
                read_available(open, &file.source_id, options, now, AtEnd::Complete, commit)
                    .map_err(|e| e.describe(|io| io_err("reading", io)))?;
                finish(open, &file.source_id, now, commit)?;
                file.open = None;
                file.found_at_start = false;
                if gone {
                    return Ok(false);
                }
            }
            Change::Truncated => {
                // What was appended after the last read is in the copy, found on reopening.
                finish(open, &file.source_id, now, commit)?;
                file.open = None;
                file.found_at_start = false;
            }
        }
    }
    Ok(true)
}

/// Opens the file now at `path`, first draining its predecessor when the saved checkpoint
/// belongs to another file. `None` when there is no file yet, or its first line is incomplete.
fn open_current<E: std::fmt::Display>(
    path: &Path,
    file: &TailedFile,
    saved: Option<Checkpoint>,
    options: &TailOptions,
    now: TimestampMs,
    commit: Commit<'_, E>,
) -> Result<Option<OpenFile>, String> {
    let mut handle = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            // Rotated away and not recreated yet: the old file may still have unread lines.
            if let Some(cp) = &saved {
                drain_predecessor(path, file, cp, (0, 0), options, now, commit)?;
            }
            return Ok(None);
        }
        Err(e) => return Err(format!("opening {}: {e}", path.display())),
    };
    let io_err = |e: io::Error| format!("reading {}: {e}", path.display());
    let meta = handle.metadata().map_err(io_err)?;
    let Some(identity) = identity(&mut handle, false).map_err(io_err)? else {
        if let Some(cp) =
            saved.as_ref().filter(|cp| (cp.dev, cp.ino) != (meta.dev(), meta.ino()) || meta.len() == 0)
        {
            drain_predecessor(path, file, cp, (meta.dev(), meta.ino()), options, now, commit)?;
        } else if saved.is_none() && options.start_at_end {
            // Seen empty: saved, so that lines written to it before a restart are read from the
            // file's start rather than skipped as lines older than the collector.
            let checkpoint =
                Checkpoint { identity: EMPTY.to_owned(), offset: 0, dev: meta.dev(), ino: meta.ino() };
            let batch =
                FileBatch { source_id: file.source_id.clone(), events: Vec::new(), checkpoint, cut_lines: 0 };
            commit(batch).map_err(|e| format!("storing a batch: {e}"))?;
        }
        return Ok(None);
    };
    let len = meta.len();
    let start = match saved {
        // A checkpoint past the end of its own file means it was cut: start over.
        Some(cp) if cp.identity == identity && cp.offset <= len => cp.offset,
        Some(cp) if cp.identity == identity => 0,
        Some(cp) => {
            drain_predecessor(path, file, &cp, (meta.dev(), meta.ino()), options, now, commit)?;
            0
        }
        None if file.found_at_start && options.start_at_end => {
            after_last_newline(&mut handle, len).map_err(io_err)?
        }
        None => 0,
    };
    tracing::debug!(path = %path.display(), start, "following a file");
    Ok(Some(open_at(handle, identity, &meta, start, &file.source_id, options).map_err(io_err)?))
}

fn open_at(
    mut handle: File,
    identity: String,
    meta: &fs::Metadata,
    start: u64,
    source_id: &str,
    options: &TailOptions,
) -> io::Result<OpenFile> {
    handle.seek(SeekFrom::Start(start))?;
    let assembler = Assembler::new(
        source_id,
        AssemblerOptions {
            parse: options.parse,
            whole_from: options.whole_from,
            ..AssemblerOptions::default()
        },
    );
    Ok(OpenFile {
        reader: LineReader::new(BufReader::with_capacity(64 * 1024, handle), start, options.max_line_bytes),
        identity,
        dev: meta.dev(),
        ino: meta.ino(),
        assembler,
        committed: None,
        cut_reported: 0,
    })
}

/// Looks in the directory of `path` for the file the checkpoint belongs to (renamed by rotation,
/// or the copy left by copytruncate) and reads it from the checkpoint to its end.
fn drain_predecessor<E: std::fmt::Display>(
    path: &Path,
    file: &TailedFile,
    cp: &Checkpoint,
    current: (u64, u64),
    options: &TailOptions,
    now: TimestampMs,
    commit: Commit<'_, E>,
) -> Result<(), String> {
    let Some(dir) = path.parent() else { return Ok(()) };
    if cp.identity == EMPTY {
        return Ok(());
    }
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    let mut found: Option<(File, fs::Metadata)> = None;
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if !meta.is_file() || (meta.dev(), meta.ino()) == current || meta.len() <= cp.offset {
            continue;
        }
        let Ok(mut handle) = File::open(entry.path()) else { continue };
        if identity(&mut handle, true).ok().flatten().as_deref() != Some(cp.identity.as_str()) {
            continue;
        }
        let same_inode = (meta.dev(), meta.ino()) == (cp.dev, cp.ino);
        if found.is_none() || same_inode {
            found = Some((handle, meta));
        }
        if same_inode {
            break;
        }
    }
    let Some((handle, meta)) = found else { return Ok(()) };
    let io_err = |e: io::Error| format!("reading the rotated file of {}: {e}", path.display());
    let mut open =
        open_at(handle, cp.identity.clone(), &meta, cp.offset, &file.source_id, options).map_err(io_err)?;
    read_available(&mut open, &file.source_id, options, now, AtEnd::Complete, commit)
        .map_err(|e| e.describe(io_err))?;
    finish(&mut open, &file.source_id, now, commit)
}

/// Reads lines to the current end of the file, committing full batches, then whatever is left
/// (or only the checkpoint, when it moved). While tailing (`AtEnd::Wait`) it stops after
/// `max_batches_per_poll` full batches and returns `true`: there is more to read.
fn read_available<E: std::fmt::Display>(
    open: &mut OpenFile,
    source_id: &str,
    options: &TailOptions,
    now: TimestampMs,
    at_end: AtEnd,
    commit: Commit<'_, E>,
) -> Result<bool, ReadError> {
    let mut events = Vec::new();
    let mut batches = 0;
    let commit_err = ReadError::Commit;
    while let Some(line) = open.reader.read_line(at_end).map_err(ReadError::Io)? {
        if let Some(event) = open.assembler.push(&line.text, line.offset, now) {
            events.push(with_file_id(event, &open.identity));
            if events.len() >= options.max_batch_events {
                send(open, source_id, std::mem::take(&mut events), commit).map_err(commit_err)?;
                batches += 1;
                if at_end == AtEnd::Wait && batches >= options.max_batches_per_poll.max(1) {
                    return Ok(true);
                }
            }
        }
    }
    if let Some(event) = open.assembler.flush_expired(now, options.multiline_wait_ms) {
        events.push(with_file_id(event, &open.identity));
    }
    if !events.is_empty() || open.committed.as_ref() != Some(&open.checkpoint()) {
        send(open, source_id, events, commit).map_err(commit_err)?;
    }
    Ok(false)
}

/// Completes the event still open (the file will not grow) and commits it.
fn finish<E: std::fmt::Display>(
    open: &mut OpenFile,
    source_id: &str,
    now: TimestampMs,
    commit: Commit<'_, E>,
) -> Result<(), String> {
    let events: Vec<LogEvent> =
        open.assembler.finish(now).map(|e| with_file_id(e, &open.identity)).into_iter().collect();
    send(open, source_id, events, commit)
}

fn send<E: std::fmt::Display>(
    open: &mut OpenFile,
    source_id: &str,
    events: Vec<LogEvent>,
    commit: Commit<'_, E>,
) -> Result<(), String> {
    let checkpoint = open.checkpoint();
    let cut_lines = open.reader.cut_lines - open.cut_reported;
    commit(FileBatch { source_id: source_id.to_owned(), events, checkpoint: checkpoint.clone(), cut_lines })
        .map_err(|e| format!("storing a batch: {e}"))?;
    open.cut_reported = open.reader.cut_lines;
    open.committed = Some(checkpoint);
    Ok(())
}

/// Reading a file failed, or storing what was read did.
enum ReadError {
    Io(io::Error),
    Commit(String),
}

impl ReadError {
    fn describe(self, what: impl FnOnce(io::Error) -> String) -> String {
        match self {
            ReadError::Io(e) => what(e),
            ReadError::Commit(message) => message,
        }
    }
}

fn with_file_id(mut event: LogEvent, identity: &str) -> LogEvent {
    if let Some(offset) = event.origin.external_id.as_deref().and_then(|o| o.parse::<u64>().ok()) {
        event.origin.external_id = Some(external_id(identity, offset));
    }
    event
}

fn change(path: &Path, open: &mut OpenFile) -> io::Result<Change> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Change::Replaced { gone: true }),
        Err(e) => return Err(e),
    };
    if (meta.dev(), meta.ino()) != (open.dev, open.ino) {
        return Ok(Change::Replaced { gone: false });
    }
    if meta.len() < open.reader.position() {
        return Ok(Change::Truncated);
    }
    // Truncated and written again past our offset between two polls: the first line tells.
    let mut handle = File::open(path)?;
    match identity(&mut handle, false)? {
        Some(id) if id == open.identity => Ok(Change::Same),
        None if meta.len() == 0 => Ok(Change::Truncated),
        None => Ok(Change::Same),
        Some(_) => Ok(Change::Truncated),
    }
}

/// The offset just after the last complete line, so reading starts at a line boundary.
fn after_last_newline(file: &mut File, len: u64) -> io::Result<u64> {
    const TAIL: u64 = 64 * 1024;
    let from = len.saturating_sub(TAIL);
    file.seek(SeekFrom::Start(from))?;
    let mut tail = Vec::with_capacity((len - from) as usize);
    file.by_ref().take(len - from).read_to_end(&mut tail)?;
    Ok(match memchr::memrchr(b'\n', &tail) {
        Some(i) => from + i as u64 + 1,
        None => len,
    })
}
