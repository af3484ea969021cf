//! Multi-line assembly: joining tracebacks and stack dumps to the event they belong to.
//!
//! [`Assembler::push`] takes one physical line at a time and returns an event when the line
//! completes the previous one. A line with a header of its own (timestamp or level) always starts
//! a new event; under a log line of WARNING or above, every line without a header continues it,
//! however its runtime lays out the exception (as log shippers' multi-line rules do). Reports
//! with no log line before them are told by their first line: Python `Traceback (most recent call
//! last):` through the exception line (with chained "During handling…" / "The above exception…"
//! sections), Java `Exception in thread`/`\tat`/`Caused by:`/`... N more`, Go `panic:` and
//! goroutine dumps, Rust `thread '…' panicked at` until its `note:`, Node's `file:line` crash
//! report until `Node.js v…`, Ruby's `file:line:in 'm': message (Type)` with its `from` lines,
//! and indented frames after an exception line.

use std::borrow::Cow;

use crate::model::{Level, LogEvent, Origin, TimestampMs};
use crate::parse::{self, ParseContext, ParsedLine};

/// Limits that keep one runaway event from taking all memory.
#[derive(Debug, Clone, Copy)]
pub struct AssemblerOptions {
    /// Continuation lines kept per event; later ones are dropped and counted.
    pub max_lines: usize,
    /// Bytes kept per event across its lines.
    pub max_bytes: usize,
    pub parse: ParseContext,
    /// Events whose header gives a level below this one come out as summaries, for a reader
    /// that only counts them: timestamp, level and position kept, their text not (empty
    /// `message`, `raw` and `source`, no traceback, request or metadata). Their lines are still
    /// read, so where each event ends does not change. The default, [`Level::Unknown`], keeps
    /// every event whole.
    pub whole_from: Level,
}

impl Default for AssemblerOptions {
    fn default() -> Self {
        AssemblerOptions {
            max_lines: 1000,
            max_bytes: 1 << 20,
            parse: ParseContext { default_year: 1970 },
            whole_from: Level::Unknown,
        }
    }
}

/// Push-style state machine: feed lines, receive events.
#[derive(Debug)]
pub struct Assembler {
    source_id: String,
    options: AssemblerOptions,
    current: Option<Pending>,
    /// Timestamp of the last line that had one, for events whose lines carry none.
    last_timestamp: Option<TimestampMs>,
    /// Continuation lines dropped by the limits since the assembler was made.
    pub dropped_lines: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A single line so far, which may still get a traceback.
    Header,
    /// Plain continuation lines joined (indented frames, "Caused by:" …).
    Trace,
    /// Inside a Python traceback, before its exception line.
    PyTraceback,
    /// Inside a Python exception group's report, whose every line is indented.
    PyGroup,
    /// After a Python exception line: the rest of its message, or chaining text.
    PyAfterException,
    /// After "During handling of the above exception…": the next traceback of the chain.
    PyChained,
    /// Go or Rust panic: everything without a header continues.
    Panic,
    /// Node's report of an uncaught exception (`file:line`, source, caret, error, frames, the
    /// Node.js version): everything without a header continues.
    Crash,
    /// The last line of a report that says where it ends (Rust's `note: …`, `Node.js v…`):
    /// nothing more continues it.
    Closed,
}

#[derive(Debug)]
struct Pending {
    offset: u64,
    header: ParsedLine<'static>,
    /// True when the first line had a header of its own (not a bare traceback).
    headed: bool,
    /// Below [`AssemblerOptions::whole_from`]: only the first line is kept, for the rules.
    summary: bool,
    lines: Vec<String>,
    bytes: usize,
    blank_lines: usize,
    /// A stack frame line (`at …`, `from …`) has been joined.
    framed: bool,
    mode: Mode,
    last_push: TimestampMs,
}

impl Assembler {
    pub fn new(source_id: impl Into<String>, options: AssemblerOptions) -> Self {
        Assembler {
            source_id: source_id.into(),
            options,
            current: None,
            last_timestamp: None,
            dropped_lines: 0,
        }
    }

    /// Takes the line that starts at byte `offset`; returns the previous event if this line
    /// completed it. `now` stamps events with no timestamp of their own and drives timeouts.
    pub fn push(&mut self, line: &str, offset: u64, now: TimestampMs) -> Option<LogEvent> {
        let line = line.trim_end_matches(['\n', '\r']);
        if line.trim().is_empty() {
            if let Some(p) = self.current.as_mut() {
                p.blank_lines += 1;
            }
            return None;
        }
        // A request line is looked for only in an event kept whole (below).
        let mut parsed = parse::parse_header(line, &self.options.parse);
        if !parsed.has_header()
            && let Some(p) = self.current.as_mut()
            && let Some(mode) = continues(p, line)
        {
            p.mode = mode;
            p.last_push = now;
            let t = line.trim_start();
            p.framed |= t.len() < line.len() && (t.starts_with("at ") || t.starts_with("from "));
            if p.summary {
                return None;
            }
            if p.lines.len() >= self.options.max_lines || p.bytes + line.len() > self.options.max_bytes {
                self.dropped_lines += 1;
                return None;
            }
            for _ in 0..std::mem::take(&mut p.blank_lines) {
                p.lines.push(String::new());
            }
            p.bytes += line.len() + 1;
            p.lines.push(line.to_owned());
            return None;
        }
        let done = self.current.take().map(|p| self.build(p, now));
        if let Some(ts) = parsed.timestamp_ms {
            self.last_timestamp = Some(ts);
        }
        let headed = parsed.has_header();
        let summary = headed && parsed.level.is_some_and(|level| level < self.options.whole_from);
        if !summary {
            parse::find_request(&mut parsed);
        }
        let mode = start_mode(line);
        let bytes = line.len().min(self.options.max_bytes);
        self.current = Some(Pending {
            offset,
            header: if summary { summary_of(parsed) } else { into_owned(parsed) },
            headed,
            summary,
            lines: vec![line.to_owned()],
            bytes,
            blank_lines: 0,
            framed: false,
            mode,
            last_push: now,
        });
        done
    }

    /// Completes the open event, if any (end of input).
    pub fn finish(&mut self, now: TimestampMs) -> Option<LogEvent> {
        self.current.take().map(|p| self.build(p, now))
    }

    /// Completes the open event when no line has come for `wait_ms`.
    pub fn flush_expired(&mut self, now: TimestampMs, wait_ms: i64) -> Option<LogEvent> {
        let expired = self.current.as_ref().is_some_and(|p| now - p.last_push >= wait_ms);
        if expired { self.finish(now) } else { None }
    }

    /// Byte offset of the first line of the event still open: where a restart must resume.
    pub fn pending_offset(&self) -> Option<u64> {
        self.current.as_ref().map(|p| p.offset)
    }

    fn build(&self, p: Pending, now: TimestampMs) -> LogEvent {
        let timestamp_ms = p.header.timestamp_ms.or(self.last_timestamp).unwrap_or(now);
        if p.summary {
            return LogEvent {
                timestamp_ms,
                level: p.header.level.unwrap_or(Level::Unknown),
                source: String::new(),
                message: String::new(),
                traceback: None,
                request_path: None,
                request_method: None,
                metadata: Default::default(),
                raw: String::new(),
                origin: Origin { source_id: self.source_id.clone(), external_id: Some(p.offset.to_string()) },
            };
        }
        let Pending { offset, header, headed, lines, mode, .. } = p;
        let raw = lines.join("\n");
        let first = lines.first().map(String::as_str).unwrap_or("");
        let (message, traceback) = if headed {
            let continuation = (lines.len() > 1).then(|| lines[1..].join("\n"));
            let mut message = header.message.into_owned();
            if message.trim().is_empty()
                && let Some(next) = lines[1..].iter().find(|l| !l.trim().is_empty())
            {
                // .NET's console logger puts the message on the line after its header.
                message = next.trim().to_owned();
            }
            (message, continuation.or(header.traceback))
        } else if lines.len() > 1 {
            (bare_block_message(&lines), Some(raw.clone()))
        } else {
            (header.message.into_owned(), None)
        };
        let level = match header.level {
            Some(level) => level,
            None if mode == Mode::Panic
                || first.starts_with("panic: ")
                || first.contains("' panicked at") =>
            {
                Level::Critical
            }
            None if traceback.is_some() || parse::states_error(first) => Level::Error,
            None => Level::Unknown,
        };
        LogEvent {
            timestamp_ms,
            level,
            source: header.source.map(Cow::into_owned).unwrap_or_default(),
            message,
            traceback,
            request_path: header.request_path.map(Cow::into_owned),
            request_method: header.request_method.map(Cow::into_owned),
            metadata: header.metadata,
            raw,
            origin: Origin { source_id: self.source_id.clone(), external_id: Some(offset.to_string()) },
        }
    }
}

/// How an event that starts with `line` may continue.
fn start_mode(line: &str) -> Mode {
    // Most lines start with a timestamp; of the reports below, only Ruby's may start with a digit.
    if line.as_bytes().first().is_some_and(u8::is_ascii_digit) {
        return if ruby_crash(line) { Mode::Trace } else { Mode::Header };
    }
    if line.starts_with("Traceback (most recent call last):") {
        Mode::PyTraceback
    } else if line.trim_start().starts_with(parse::GROUP_TRACEBACK) {
        Mode::PyGroup
    } else if line.starts_with("panic: ")
        || (line.starts_with("thread '") && line.contains("' panicked at"))
        || goroutine_header(line)
    {
        Mode::Panic
    } else if line.starts_with("Exception in thread ") {
        Mode::Trace
    } else if node_crash_location(line) {
        Mode::Crash
    } else if ruby_crash(line) {
        Mode::Trace
    } else {
        Mode::Header
    }
}

/// `goroutine 42 [running]:`, the head of each goroutine in a Go stack dump.
fn goroutine_header(line: &str) -> bool {
    line.strip_prefix("goroutine ").is_some_and(|rest| {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        digits > 0 && rest[digits..].starts_with(" [") && line.ends_with(":")
    })
}

/// The first line Node prints for an uncaught exception: the throwing file and line alone
/// (`/app/src/config.js:8`), followed by the source line, a caret, and the error with its frames.
fn node_crash_location(line: &str) -> bool {
    if !line.ends_with(|c: char| c.is_ascii_digit()) {
        return false; // most lines: no search for the colon
    }
    let Some((path, number)) = line.rsplit_once(':') else { return false };
    let absolute = path.starts_with('/') || path.starts_with("file://") || path.get(1..3) == Some(":\\");
    absolute && !path.contains(' ') && !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit())
}

/// Ruby's report of an uncaught exception: `app/x.rb:22:in 'Report#average': divided by 0
/// (ZeroDivisionError)`, its frames on the `\tfrom …` lines after it.
fn ruby_crash(line: &str) -> bool {
    if !line.ends_with(')') {
        return false; // most lines: no search for `:in `
    }
    let Some((location, rest)) = line.split_once(":in ") else { return false };
    let file_line = location.rsplit_once(':').is_some_and(|(file, n)| {
        !file.is_empty() && !file.contains(' ') && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
    });
    file_line && (rest.contains("': ") || rest.contains("`: ")) && rest.ends_with(')')
}

/// Whether `line` (which has no header) continues `p`, and the mode after it.
fn continues(p: &Pending, line: &str) -> Option<Mode> {
    let indented = line.starts_with([' ', '\t']);
    let group = line.trim_start().starts_with(parse::GROUP_TRACEBACK);
    if line.starts_with("Traceback (most recent call last):") || group {
        // The traceback of the log line before it, or the next one of a chain; right after a
        // whole traceback, a new error.
        let open = matches!(p.mode, Mode::Header | Mode::PyChained) && p.header.traceback.is_none();
        return open.then_some(if group { Mode::PyGroup } else { Mode::PyTraceback });
    }
    if goroutine_header(line) {
        // The dump after a panic, or after a log line reporting one (net/http's "http: panic
        // serving …"); a dump with no panic before it is an event of its own.
        let after_panic = p.mode == Mode::Panic
            || (p.mode == Mode::Header
                && (p.lines[0].contains("panic") || p.header.level >= Some(Level::Error)));
        return after_panic.then_some(Mode::Panic);
    }
    if start_mode(line) != Mode::Header {
        return None; // a new panic, crash or "Exception in thread" is a new event
    }
    // An event whose own header says it is an error keeps every line without a header: its
    // exception, stack, chained causes and the lines a message or a driver adds (DETAIL:,
    // ClientConnectionId:, a response body), however each runtime lays them out. A header
    // is what starts a record, as log shippers' multi-line rules have it.
    let headed_error = p.headed && p.header.level >= Some(Level::Warning);
    if headed_error && p.framed && !indented && parse::exception_name(line).is_some() {
        // A second error report after the stack of the first (Node's `console.error(err)`).
        return None;
    }
    match p.mode {
        Mode::Closed => None,
        // Rust ends a panic with a `note:` about backtraces; Node ends its report with its version.
        Mode::Panic if line.starts_with("note: ") && p.lines[0].starts_with("thread '") => Some(Mode::Closed),
        Mode::Crash if line.starts_with("Node.js v") => Some(Mode::Closed),
        Mode::Panic | Mode::Crash => Some(p.mode),
        Mode::PyGroup => (indented || headed_error).then_some(Mode::PyGroup),
        Mode::PyTraceback if indented => Some(Mode::PyTraceback),
        Mode::PyTraceback => Some(Mode::PyAfterException),
        Mode::PyAfterException => {
            // Chaining text and the next traceback of the chain; under a log line, also a
            // message that goes on over several lines (a validation error's fields, a
            // database's DETAIL:). A bare traceback's output may be followed by anything.
            let chaining = line.starts_with("During handling of the above exception")
                || line.starts_with("The above exception was the direct cause");
            if chaining {
                Some(Mode::PyChained)
            } else {
                (indented || headed_error).then_some(Mode::PyAfterException)
            }
        }
        Mode::PyChained => None,
        Mode::Header | Mode::Trace => {
            // Node prints an error's own properties after its frames, closing them with "}".
            let closing = p.mode == Mode::Trace && line.starts_with('}');
            if headed_error
                || indented
                || closing
                || line.starts_with("Caused by:")
                || line.starts_with("Suppressed: ")
                || line.starts_with("--- End of ")
            {
                Some(Mode::Trace)
            } else if p.mode == Mode::Header && p.blank_lines == 0 && parse::exception_name(line).is_some() {
                // "charge failed" followed by "java.lang.IllegalStateException: boom"
                Some(Mode::Trace)
            } else {
                None
            }
        }
    }
}

/// The message of an event that is a traceback with no log line before it: the final
/// exception line for Python, the error line of Node's uncaught-exception report, the first
/// line otherwise.
fn bare_block_message(lines: &[String]) -> String {
    let first = lines[0].as_str();
    if node_crash_location(first) {
        let error =
            lines.iter().skip(1).find(|l| !l.starts_with([' ', '\t']) && parse::exception_name(l).is_some());
        return error.map_or(first, String::as_str).to_owned();
    }
    if first.trim_start().starts_with(parse::GROUP_TRACEBACK) {
        // A group's first sub-exception.
        let unboxed = parse::unbox_exception_group(&lines.join("\n")).unwrap_or_default();
        let leaves = parse::python_exception_lines(unboxed.lines());
        let leaf = leaves.into_iter().find(|l| !parse::group_container(l));
        return leaf.unwrap_or(first.trim()).to_owned();
    }
    if !first.starts_with("Traceback (most recent call last):") {
        return first.to_owned();
    }
    // A chain's last exception line is the one raised.
    parse::python_exception_lines(lines.iter().map(String::as_str))
        .last()
        .copied()
        .unwrap_or(first)
        .to_owned()
}

/// What the rules read of a summarised event's header: its timestamp, level and whether it
/// carries a traceback field.
fn summary_of(p: ParsedLine<'_>) -> ParsedLine<'static> {
    ParsedLine {
        format: p.format,
        timestamp_ms: p.timestamp_ms,
        level: p.level,
        source: None,
        message: Cow::Borrowed(""),
        traceback: p.traceback,
        request_method: None,
        request_path: None,
        metadata: Default::default(),
    }
}

fn into_owned(p: ParsedLine<'_>) -> ParsedLine<'static> {
    ParsedLine {
        format: p.format,
        timestamp_ms: p.timestamp_ms,
        level: p.level,
        source: p.source.map(|s| Cow::Owned(s.into_owned())),
        message: Cow::Owned(p.message.into_owned()),
        traceback: p.traceback,
        request_method: p.request_method.map(|s| Cow::Owned(s.into_owned())),
        request_path: p.request_path.map(|s| Cow::Owned(s.into_owned())),
        metadata: p.metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Assembles `text` and renders each event as `LEVEL message [+N lines]`.
    #[track_caller]
    fn check(text: &str, expect: &[&str]) {
        let mut asm = Assembler::new("test", AssemblerOptions::default());
        let mut events = Vec::new();
        let mut offset = 0u64;
        for line in text.split_inclusive('\n') {
            events.extend(asm.push(line, offset, 0));
            offset += line.len() as u64;
        }
        events.extend(asm.finish(0));
        let got: Vec<String> = events
            .iter()
            .map(|e| {
                let n = e.traceback.as_deref().map_or(0, |t| t.lines().count());
                format!("{} {} [+{n}]", e.level, e.message)
            })
            .collect();
        assert_eq!(got, expect);
    }

    #[test]
    fn python_logger_exception_with_chained_traceback() {
        check(
            "2024-01-02 03:04:05,123 ERROR app.api: request failed\n\
             Traceback (most recent call last):\n  File \"/app/db.py\", line 3, in get\n    raise KeyError(k)\n\
             KeyError: 'user'\n\nDuring handling of the above exception, another exception occurred:\n\n\
             Traceback (most recent call last):\n  File \"/app/api.py\", line 9, in view\n    return get()\n\
             RuntimeError: lookup failed\n\
             2024-01-02 03:04:06,000 INFO app.api: next request\n",
            &["ERROR request failed [+11]", "INFO next request [+0]"],
        );
    }

    #[test]
    fn bare_python_traceback_takes_the_exception_line() {
        check(
            "Traceback (most recent call last):\n  File \"x.py\", line 1, in <module>\nZeroDivisionError: division by zero\nplain output\n",
            &["ERROR ZeroDivisionError: division by zero [+3]", "UNKNOWN plain output [+0]"],
        );
    }

    #[test]
    fn java_stack_with_cause() {
        check(
            "2024-01-02 03:04:05.123 ERROR [main] com.acme.Billing - charge failed\n\
             java.lang.IllegalStateException: card declined\n\
             \tat com.acme.Billing.charge(Billing.java:42)\n\
             Caused by: java.io.IOException: reset\n\
             \tat com.acme.Net.read(Net.java:7)\n\
             \t... 3 more\n\
             Exception in thread \"main\" java.lang.NullPointerException\n\
             \tat com.acme.Main.main(Main.java:5)\n",
            &[
                "ERROR charge failed [+5]",
                "ERROR Exception in thread \"main\" java.lang.NullPointerException [+2]",
            ],
        );
    }

    #[test]
    fn go_and_rust_panics() {
        check(
            "panic: runtime error: index out of range [5] with length 3\n\ngoroutine 1 [running]:\n\
             main.lookup(...)\n\t/app/main.go:12\nmain.main()\n\t/app/main.go:20 +0x1d\nexit status 2\n\
             thread 'main' panicked at src/main.rs:10:5:\ncalled `Option::unwrap()` on a `None` value\n\
             note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
             2024-01-02T03:04:05Z INFO server: restarted\n",
            &[
                "CRITICAL panic: runtime error: index out of range [5] with length 3 [+8]",
                "CRITICAL thread 'main' panicked at src/main.rs:10:5: [+3]",
                "INFO restarted [+0]",
            ],
        );
    }

    #[test]
    fn node_frames_join_the_error_line() {
        check(
            "2024-01-02T03:04:05Z ERROR api: unhandled rejection\nTypeError: Cannot read properties of undefined (reading 'id')\n    at handler (/app/src/routes.js:10:5)\n    at process (node:internal/process/task_queues:95:5)\n",
            &["ERROR unhandled rejection [+3]"],
        );
    }

    #[test]
    fn pending_offset_points_at_the_open_event() {
        let mut asm = Assembler::new("t", AssemblerOptions::default());
        assert!(asm.push("ERROR:root:a\n", 0, 0).is_none());
        assert!(asm.push("Traceback (most recent call last):\n", 13, 0).is_none());
        assert_eq!(asm.pending_offset(), Some(0));
        let done = asm.push("ERROR:root:b\n", 48, 0).expect("first event");
        assert_eq!(done.origin.external_id.as_deref(), Some("0"));
        assert_eq!(asm.pending_offset(), Some(48));
    }

    #[test]
    fn limits_cap_a_runaway_traceback() {
        let options = AssemblerOptions { max_lines: 3, ..AssemblerOptions::default() };
        let mut asm = Assembler::new("t", options);
        asm.push("panic: loop", 0, 0);
        for i in 0..10 {
            asm.push(&format!("\tframe {i}"), 0, 0);
        }
        let event = asm.finish(0).expect("event");
        assert_eq!(event.raw.lines().count(), 3);
        assert_eq!(asm.dropped_lines, 8);
    }

    #[test]
    fn flushes_after_a_quiet_period() {
        let mut asm = Assembler::new("t", AssemblerOptions::default());
        asm.push("ERROR:root:a", 0, 1_000);
        assert!(asm.flush_expired(1_500, 1_000).is_none());
        assert!(asm.flush_expired(2_000, 1_000).is_some());
    }
}
