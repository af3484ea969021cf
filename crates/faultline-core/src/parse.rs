//! Reading one physical line into its parts: timestamp, level, source, message.
//!
//! Each line is tried as a JSON object, then as a text layout (optionally with a logfmt body),
//! then as logfmt, and otherwise kept whole as the message. The parser never fails: what it
//! cannot understand stays in the message.
//!
//! # When a line counts as an error
//! A line's level comes from the line itself: a JSON/logfmt level key, a level word in a known
//! text layout, or a syslog priority. A line whose level cannot be told is **not** an error,
//! unless it states one unambiguously (see [`states_error`]): it starts with `Traceback (most
//! recent call last):`, `Exception in thread`, `panic:`, `thread '…' panicked at`, `Error:`,
//! `FATAL`/`ERROR`/`CRITICAL` in capitals, or an exception name such as `ValueError:` or
//! `java.lang.IllegalStateException:`. The word "error" in the middle of a sentence ("0 errors")
//! never makes a line an error. Lines joined into a traceback take the level of the event they
//! belong to (see the assembler).

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::model::{Level, TimestampMs};
use crate::timestamp;

/// What the caller knows that the line does not say.
#[derive(Debug, Clone, Copy)]
pub struct ParseContext {
    /// Year assumed for timestamps without one (syslog's `Jan  2 15:04:05`).
    pub default_year: i32,
}

/// Which layout a line was read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Logfmt,
    Text,
    /// Nothing recognised: the whole line is the message.
    Plain,
}

/// The parts of one line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedLine<'a> {
    pub format: Format,
    pub timestamp_ms: Option<TimestampMs>,
    /// `None` when the line does not say.
    pub level: Option<Level>,
    pub source: Option<Cow<'a, str>>,
    pub message: Cow<'a, str>,
    /// A traceback carried inside the line itself (a JSON `exc_info`/`stack` field).
    pub traceback: Option<String>,
    pub request_method: Option<Cow<'a, str>>,
    pub request_path: Option<Cow<'a, str>>,
    pub metadata: Map<String, Value>,
}

impl ParsedLine<'_> {
    /// True when the line has a header of its own (a timestamp or a level), so it starts a new
    /// event rather than continuing the previous one. A JSON object with neither (a response
    /// body printed under an error line) is not a record of its own.
    pub fn has_header(&self) -> bool {
        self.timestamp_ms.is_some() || self.level.is_some()
    }
}

/// Parses one line (without its line terminator).
pub fn parse_line<'a>(line: &'a str, ctx: &ParseContext) -> ParsedLine<'a> {
    let mut parsed = parse_header(line, ctx);
    find_request(&mut parsed);
    parsed
}

/// [`parse_line`] without looking for a request line (`GET /path`) in a text message: what a
/// reader that only counts the line needs. [`find_request`] completes it.
pub fn parse_header<'a>(line: &'a str, ctx: &ParseContext) -> ParsedLine<'a> {
    let trimmed = line.trim_end_matches(['\r', '\n']);
    if trimmed.as_bytes().first() == Some(&b'{')
        && let Some(parsed) = parse_json(trimmed)
    {
        return parsed;
    }
    parse_text(trimmed, ctx)
}

/// Takes the request's method and path from a text message that names them (`GET /path`),
/// unless the line gave its path in a field of its own.
pub fn find_request(parsed: &mut ParsedLine<'_>) {
    if parsed.format == Format::Json || parsed.request_path.is_some() {
        return;
    }
    // Borrowed from the line when the message is.
    let found = match &parsed.message {
        Cow::Borrowed(message) => match request_in(message) {
            (Some(m), Some(p)) => Some((Cow::Borrowed(m), Cow::Borrowed(p))),
            _ => None,
        },
        Cow::Owned(message) => match request_in(message) {
            (Some(m), Some(p)) => Some((Cow::Owned(m.to_owned()), Cow::Owned(p.to_owned()))),
            _ => None,
        },
    };
    if let Some((method, path)) = found {
        parsed.request_method = Some(method);
        parsed.request_path = Some(path);
    }
}

/// True when a message with no level of its own still states an error unambiguously.
pub fn states_error(message: &str) -> bool {
    let m = message.trim_start();
    const PREFIXES: [&str; 10] = [
        "Traceback (most recent call last):",
        "Exception in thread ",
        "panic: ",
        "Error: ",
        "ERROR",
        "FATAL",
        "CRITICAL",
        "Fatal error",
        "Uncaught ",
        "Unhandled ",
    ];
    if PREFIXES.iter().any(|p| m.starts_with(p)) {
        return true;
    }
    if m.starts_with("thread '") && m.contains("' panicked at") {
        return true;
    }
    exception_name(m).is_some()
}

/// The exception lines of a Python traceback, in the order printed: the first line after each
/// `Traceback (most recent call last):` header's frames, whatever the class is called (a chain
/// prints the outermost exception last).
pub(crate) fn python_exception_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut found = Vec::new();
    let mut after_header = false;
    for line in lines {
        if line.starts_with("Traceback (most recent call last):") {
            after_header = true;
        } else if after_header && !line.is_empty() && !line.starts_with([' ', '\t']) {
            after_header = false;
            found.push(line);
        }
    }
    found
}

/// How Python (3.11+) opens the report of an exception group, indented and boxed: `  + Exception
/// Group Traceback (most recent call last):`, then `|`-prefixed lines and `+---- N ----` lines
/// between its sub-exceptions.
pub(crate) const GROUP_TRACEBACK: &str = "+ Exception Group Traceback (most recent call last):";

/// A Python exception group's report as plain tracebacks one after another: the group's own,
/// then each sub-exception's (nested groups alike), the boxes and separators taken off. `None`
/// when `trace` holds no group.
pub(crate) fn unbox_exception_group(trace: &str) -> Option<String> {
    if !trace.contains(GROUP_TRACEBACK) {
        return None;
    }
    let mut out = String::with_capacity(trace.len());
    for line in trace.lines() {
        let mut t = line.trim_start();
        if !t.starts_with(['|', '+']) {
            out.push_str(line);
            out.push('\n');
            continue;
        }
        loop {
            if let Some(rest) = t.strip_prefix("| ") {
                t = rest;
            } else if t == "|" {
                t = "";
            } else {
                break;
            }
        }
        let bare = t.trim_start();
        if bare.starts_with(GROUP_TRACEBACK) {
            out.push_str("Traceback (most recent call last):");
        } else if bare.starts_with("+-") {
            continue; // `+-+---- 1 ----`, `+---- 2 ----`, `+--------`: between sub-exceptions
        } else {
            out.push_str(t);
        }
        out.push('\n');
    }
    Some(out)
}

/// Whether an exception line is an exception group's own (`ExceptionGroup: unhandled errors in a
/// TaskGroup (2 sub-exceptions)`): a container, whose sub-exceptions are the errors.
pub(crate) fn group_container(line: &str) -> bool {
    let line = line.trim_end();
    line.ends_with(" sub-exception)") || line.ends_with(" sub-exceptions)")
}

/// The exception type a line starts with, as in `ValueError: bad` or
/// `java.lang.IllegalStateException: boom` or a bare `KeyError`.
pub fn exception_name(line: &str) -> Option<&str> {
    let end = line.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$'));
    let (name, after) = match end {
        Some(i) => (&line[..i], &line[i..]),
        None => (line, ""),
    };
    if !(after.is_empty() || after.starts_with(':')) {
        return None;
    }
    let last = name.rsplit('.').next().unwrap_or(name);
    let looks_like_type = last.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
        && (last.ends_with("Error")
            || last.ends_with("Exception")
            || last.ends_with("Exit")
            || last.ends_with("Interrupt")
            || last.ends_with("Fault"));
    looks_like_type.then_some(name)
}

// --- JSON ------------------------------------------------------------------------------------

pub(crate) const LEVEL_KEYS: [&str; 9] =
    ["level", "severity", "lvl", "levelname", "level_name", "log.level", "loglevel", "@l", "status"];
/// `@m`/`@mt` are Serilog's compact JSON (the rendered message, or its template).
const MESSAGE_KEYS: [&str; 7] = ["msg", "message", "event", "text", "@message", "@m", "@mt"];
pub(crate) const TIME_KEYS: [&str; 8] =
    ["time", "timestamp", "ts", "@timestamp", "@t", "asctime", "datetime", "t"];
const SOURCE_KEYS: [&str; 8] =
    ["logger", "name", "logger_name", "log.logger", "module", "source", "service", "component"];
const TRACE_KEYS: [&str; 10] = [
    "exc_info",
    "stack",
    "traceback",
    "stack_trace",
    "stacktrace",
    "exception",
    "exc_text",
    "@x",
    "error.stack_trace",
    "backtrace",
];
const PATH_KEYS: [&str; 4] = ["request_path", "path", "http.path", "url"];
const METHOD_KEYS: [&str; 3] = ["request_method", "method", "http.method"];

fn parse_json(line: &str) -> Option<ParsedLine<'_>> {
    let map: Map<String, Value> = serde_json::from_str(line).ok()?;
    Some(parse_json_object(map))
}

/// Reads a JSON log object (one JSON line, or one record sent to the ingest API): the known keys
/// become the event's parts, everything else stays in `metadata`.
pub fn parse_json_object(mut map: Map<String, Value>) -> ParsedLine<'static> {
    let level = take_first(&mut map, &LEVEL_KEYS, |v| match v {
        Value::String(s) => Level::parse(s),
        Value::Number(n) => n.as_i64().and_then(Level::from_number),
        _ => None,
    });
    let timestamp_ms = take_first(&mut map, &TIME_KEYS, timestamp::parse_value);
    let message = take_first(&mut map, &MESSAGE_KEYS, value_text);
    let source = take_first(&mut map, &SOURCE_KEYS, value_text);
    let mut traceback = take_first(&mut map, &TRACE_KEYS, |v| match v {
        // Ruby's `backtrace` and some loggers' stacks: one string per frame
        Value::Array(items) if items.iter().all(Value::is_string) && !items.is_empty() => {
            Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join("\n"))
        }
        _ => value_text(v).filter(|s| !s.is_empty()),
    });
    // pino / bunyan / ECS put the error in an object: {"err": {"message", "stack", "type"}}
    let mut nested_message = None;
    for key in ["err", "error"] {
        if let Some(Value::Object(obj)) = map.get(key) {
            if traceback.is_none() {
                traceback = obj.get("stack").or_else(|| obj.get("stack_trace")).and_then(value_text);
            }
            nested_message = obj.get("message").and_then(value_text);
        }
    }
    let request_path = take_first(&mut map, &PATH_KEYS, value_text);
    let request_method = take_first(&mut map, &METHOD_KEYS, value_text);
    let message = message.or(nested_message).unwrap_or_default();
    ParsedLine {
        format: Format::Json,
        timestamp_ms,
        level,
        source: source.map(Cow::Owned),
        message: Cow::Owned(message),
        traceback,
        request_method: request_method.map(Cow::Owned),
        request_path: request_path.map(Cow::Owned),
        metadata: map,
    }
}

/// Removes the first of `keys` whose value `read` accepts, and returns what it read.
fn take_first<T>(
    map: &mut Map<String, Value>,
    keys: &[&str],
    read: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    for key in keys {
        if let Some(v) = map.get(*key).and_then(&read) {
            map.remove(*key);
            return Some(v);
        }
    }
    None
}

fn value_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Array(items) if items.iter().all(Value::is_string) => {
            Some(items.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(""))
        }
        _ => None,
    }
}

// --- logfmt ----------------------------------------------------------------------------------

/// Splits `key=value key2="quoted value"` pairs; `None` unless the text is mostly pairs and
/// names a level or a message.
fn logfmt_pairs(text: &str) -> Option<Vec<(&str, Cow<'_, str>)>> {
    let mut pairs = Vec::new();
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i] == b' ' {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' && b[i] != b' ' {
            i += 1;
        }
        if i >= b.len() || b[i] != b'=' || i == key_start {
            return None;
        }
        let key = &text[key_start..i];
        i += 1;
        let value: Cow<'_, str> = if b.get(i) == Some(&b'"') {
            i += 1;
            let start = i;
            let mut escaped = false;
            while i < b.len() && b[i] != b'"' {
                escaped |= b[i] == b'\\';
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            let raw = &text[start..i.min(b.len())];
            i += 1;
            if escaped {
                Cow::Owned(raw.replace("\\\"", "\"").replace("\\\\", "\\").replace("\\n", "\n"))
            } else {
                Cow::Borrowed(raw)
            }
        } else {
            let start = i;
            while i < b.len() && b[i] != b' ' {
                i += 1;
            }
            Cow::Borrowed(&text[start..i])
        };
        pairs.push((key, value));
    }
    let named = pairs.iter().any(|(k, _)| matches!(*k, "level" | "lvl" | "msg" | "severity" | "message"));
    (named && pairs.len() >= 2).then_some(pairs)
}

fn parse_logfmt<'a>(
    pairs: Vec<(&'a str, Cow<'a, str>)>,
    timestamp_ms: Option<TimestampMs>,
) -> ParsedLine<'a> {
    let mut parsed = ParsedLine {
        format: Format::Logfmt,
        timestamp_ms,
        level: None,
        source: None,
        message: Cow::Borrowed(""),
        traceback: None,
        request_method: None,
        request_path: None,
        metadata: Map::new(),
    };
    for (key, value) in pairs {
        match key {
            "level" | "lvl" | "severity" if parsed.level.is_none() => parsed.level = Level::parse(&value),
            "msg" | "message" => parsed.message = value,
            "time" | "ts" | "timestamp" if parsed.timestamp_ms.is_none() => {
                parsed.timestamp_ms = timestamp::parse_value(&Value::String(value.into_owned()));
            }
            "logger" | "module" | "source" | "caller" | "component" if parsed.source.is_none() => {
                parsed.source = Some(value)
            }
            "stack" | "stacktrace" | "traceback" => parsed.traceback = Some(value.into_owned()),
            "path" => parsed.request_path = Some(value),
            "method" => parsed.request_method = Some(value),
            _ => {
                parsed.metadata.insert(key.to_owned(), Value::String(value.into_owned()));
            }
        }
    }
    parsed
}

// --- text layouts ----------------------------------------------------------------------------

fn parse_text<'a>(line: &'a str, ctx: &ParseContext) -> ParsedLine<'a> {
    let mut parsed = ParsedLine {
        format: Format::Text,
        timestamp_ms: None,
        level: None,
        source: None,
        message: Cow::Borrowed(line),
        traceback: None,
        request_method: None,
        request_path: None,
        metadata: Map::new(),
    };
    if let Some(ruby) = ruby_logger(line, ctx) {
        return ruby;
    }
    if let Some((level, category)) = dotnet_console(line) {
        parsed.level = Some(level);
        parsed.source = Some(Cow::Borrowed(category));
        parsed.message = Cow::Borrowed("");
        return parsed;
    }
    let mut rest = line;
    // syslog priority: "<11>..."
    if let Some(after) = rest.strip_prefix('<')
        && let Some(close) = after.find('>').filter(|&i| i > 0 && i <= 3)
        && let Ok(pri) = after[..close].parse::<u8>()
    {
        parsed.level = Some(Level::from_syslog_priority(pri & 7));
        rest = &after[close + 1..];
    }
    let mut syslog_layout = false;
    if let Some(prefix) = timestamp::parse_prefix(rest, ctx.default_year) {
        parsed.timestamp_ms = Some(prefix.timestamp_ms);
        syslog_layout = rest.as_bytes()[0].is_ascii_uppercase();
        rest = prefix.rest;
    }
    let after_ts = skip_separators(rest);

    if parsed.timestamp_ms.is_some()
        && let Some(pairs) = logfmt_pairs(after_ts)
    {
        return parse_logfmt(pairs, parsed.timestamp_ms);
    }
    if parsed.timestamp_ms.is_none()
        && parsed.level.is_none()
        && let Some(pairs) = logfmt_pairs(after_ts)
    {
        return parse_logfmt(pairs, None);
    }

    if syslog_layout {
        // "host program[pid]: message"
        if let Some((_host, body)) = after_ts.split_once(' ')
            && let Some((tag, message)) = body.split_once(": ")
            && !tag.contains(' ')
        {
            let program = tag.split('[').next().unwrap_or(tag);
            parsed.source = Some(Cow::Borrowed(program));
            parsed.message = Cow::Borrowed(message);
            return parsed;
        }
        parsed.message = Cow::Borrowed(after_ts);
        return parsed;
    }

    let (level, source, message) = read_header(after_ts, parsed.timestamp_ms.is_some());
    if level.is_some() {
        parsed.level = level;
    }
    parsed.source = source.map(Cow::Borrowed);
    parsed.message =
        Cow::Borrowed(if parsed.timestamp_ms.is_some() || level.is_some() { message } else { line });
    if parsed.timestamp_ms.is_none() && parsed.level.is_none() {
        parsed.format = Format::Plain;
    }
    parsed
}

fn skip_separators(s: &str) -> &str {
    let t = s.trim_start();
    for sep in ["- ", "| ", ": "] {
        if let Some(r) = t.strip_prefix(sep) {
            return r.trim_start();
        }
    }
    t
}

/// Ruby's `Logger`: `E, [2024-03-04T10:15:02.331442 #4121] ERROR -- progname: message`.
fn ruby_logger<'a>(line: &'a str, ctx: &ParseContext) -> Option<ParsedLine<'a>> {
    let b = line.as_bytes();
    if !(b.len() > 5 && b"DIWEFAU".contains(&b[0]) && &b[1..4] == b", [") {
        return None;
    }
    let (inner, after) = bracketed(&line[3..])?;
    let stamp = inner.split(" #").next()?;
    let timestamp_ms = timestamp::parse_prefix(stamp, ctx.default_year)?.timestamp_ms;
    let (word, after) = after.trim_start().split_once(" -- ")?;
    let (progname, message) = after.split_once(':')?;
    let progname = progname.trim();
    Some(ParsedLine {
        format: Format::Text,
        timestamp_ms: Some(timestamp_ms),
        level: Some(Level::parse(word).unwrap_or(Level::Unknown)),
        source: (!progname.is_empty()).then_some(Cow::Borrowed(progname)),
        message: Cow::Borrowed(message.trim()),
        traceback: None,
        request_method: None,
        request_path: None,
        metadata: Map::new(),
    })
}

/// .NET's console logger: `fail: Microsoft.AspNetCore.Server.Kestrel[13]`, its message and
/// exception on the indented lines after it.
fn dotnet_console(line: &str) -> Option<(Level, &str)> {
    // The level is four letters: no search for `: ` along the line.
    let (word, category) = (line.get(..4)?, line.get(4..)?.strip_prefix(": ")?);
    let level = match word {
        "trce" => Level::Trace,
        "dbug" => Level::Debug,
        "info" => Level::Info,
        "warn" => Level::Warning,
        "fail" => Level::Error,
        "crit" => Level::Critical,
        _ => return None,
    };
    let open = category.rfind('[')?;
    let event_id = category[open + 1..].strip_suffix(']')?;
    (event_id.bytes().all(|b| b.is_ascii_digit()) && !category[..open].contains(' '))
        .then_some((level, &category[..open]))
}

/// PHP's error log: `PHP Fatal error:  Uncaught …`, `PHP Warning:  …`.
fn php_error(s: &str) -> Option<(Level, &str)> {
    let rest = s.strip_prefix("PHP ")?;
    let (kind, message) = rest.split_once(':')?;
    let level = match kind {
        "Fatal error" | "Parse error" | "Recoverable fatal error" | "Core error" | "Compile error" => {
            Level::Critical
        }
        "Warning" | "Core warning" | "Compile warning" => Level::Warning,
        "Notice" | "Deprecated" | "Strict Standards" => Level::Info,
        _ => return None,
    };
    Some((level, message.trim_start()))
}

/// Reads `[LEVEL] source: message` and its variants after the timestamp.
/// Returns (level, source, message).
fn read_header(s: &str, after_timestamp: bool) -> (Option<Level>, Option<&str>, &str) {
    let mut rest = s;
    if let Some((level, message)) = php_error(rest) {
        return (Some(level), Some("php"), message);
    }
    // NLog: "2024-03-06 04:00:00.1234|ERROR|Shop.Sync.Importer|message"
    if after_timestamp
        && let Some(fields) = rest.strip_prefix('|')
        && let [level, logger, message] = fields.splitn(3, '|').collect::<Vec<_>>()[..]
        && let Some(level) = Level::parse(level)
    {
        return (Some(level), Some(logger), message);
    }
    // Monolog: "[2024-03-06 07:00:00] production.ERROR: message"
    // (`channel.LEVEL` holds no space: the `: ` is just before the first space, if anywhere.)
    if after_timestamp
        && let Some(space) = rest.find(' ')
        && let Some(channel_level) = rest[..space].strip_suffix(':')
        && let message = &rest[space + 1..]
        && let Some((channel, level)) = channel_level.rsplit_once('.')
        && !channel.is_empty()
        && !channel.contains(' ')
        && is_upper_word(level)
        && let Some(level) = Level::parse(level)
    {
        return (Some(level), Some(channel), message);
    }
    // gunicorn: "[1234] [ERROR] ..." — a bracketed pid first
    if let Some((inner, after)) = bracketed(rest)
        && !inner.is_empty()
        && inner.bytes().all(|b| b.is_ascii_digit())
    {
        rest = after.trim_start();
    }

    // Python basicConfig / uvicorn: "ERROR:root:message", "ERROR:    message"
    if let Some(colon) = rest.find(':').filter(|&i| i <= 9)
        && is_upper_word(&rest[..colon])
        && let Some(level) = Level::parse(&rest[..colon])
    {
        let after = &rest[colon + 1..];
        if after.starts_with(' ') {
            return (Some(level), None, after.trim_start());
        }
        if let Some((name, message)) = after.split_once(':')
            && !name.is_empty()
            && !name.contains(' ')
        {
            return (Some(level), Some(name), message);
        }
        return (Some(level), None, after);
    }

    // "[ERROR] ..." or "ERROR ..." (upper case always; any case right after a timestamp)
    let (word, after) = match bracketed(rest) {
        Some((inner, after)) => (inner.trim(), after),
        None => match rest.split_once([' ', '\t']) {
            Some((w, a)) => (w.trim_end_matches(':'), a),
            None => (rest.trim_end_matches(':'), ""),
        },
    };
    let level = Level::parse(word).filter(|_| after_timestamp || is_upper_word(word));
    let Some(level) = level else {
        // "name - LEVEL - message" (Python's "%(asctime)s - %(name)s - %(levelname)s - ...")
        if after_timestamp
            && let Some((name, tail)) = rest.split_once(" - ")
            && !name.contains(' ')
            && let Some((lvl, message)) = tail.split_once(" - ")
            && let Some(level) = Level::parse(lvl)
        {
            return (Some(level), Some(name), message);
        }
        return (None, None, rest);
    };
    let mut rest = skip_separators(after);
    // Flask: "ERROR in app: message"
    if let Some(r) = rest.strip_prefix("in ") {
        rest = r;
    }
    // "[thread] source - message" (log4j), "[source] message", "source: message", "source - message"
    let mut source = None;
    if let Some((inner, after)) = bracketed(rest)
        && !inner.contains(' ')
    {
        source = Some(inner);
        rest = after.trim_start();
        if let Some((class, message)) = rest.split_once(" - ")
            && !class.contains(' ')
        {
            return (Some(level), Some(class), message);
        }
        return (Some(level), source, skip_separators(rest));
    }
    let token_end = rest.find(' ').unwrap_or(rest.len());
    let token = &rest[..token_end];
    if token.len() > 1 && token.ends_with(':') && !token.starts_with("http") {
        source = Some(&token[..token.len() - 1]);
        rest = rest[token_end..].trim_start();
    } else if let Some(message) = rest[token_end..].strip_prefix(" - ")
        && !token.is_empty()
    {
        source = Some(token);
        rest = message;
    }
    (Some(level), source, rest)
}

fn bracketed(s: &str) -> Option<(&str, &str)> {
    let inner = s.strip_prefix('[')?;
    let close = inner.find(']')?;
    Some((&inner[..close], &inner[close + 1..]))
}

fn is_upper_word(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_uppercase())
}

/// The methods [`request_in`] recognises.
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// The first request line in a message: a method standing alone as a word, one space, and an
/// absolute path (up to whitespace, a quote or the query). What the regular expression
/// `\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s"?]*)` finds (a test holds them equal),
/// scanned by hand: it runs on every line read.
fn request_in(message: &str) -> (Option<&str>, Option<&str>) {
    let bytes = message.as_bytes();
    let slashes = (1..bytes.len()).filter(|&i| bytes[i] == b'/' && bytes[i - 1] == b' ').map(|i| i - 1);
    for at in slashes {
        let start = bytes[..at].iter().rposition(|b| !b.is_ascii_uppercase()).map_or(0, |i| i + 1);
        let method = &message[start..at];
        let alone = message[..start].chars().next_back().is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if !alone || !METHODS.contains(&method) {
            continue;
        }
        let path = &message[at + 1..];
        let end =
            path[1..].find(|c: char| c.is_whitespace() || c == '"' || c == '?').map_or(path.len(), |e| e + 1);
        return (Some(method), Some(&path[..end]));
    }
    (None, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CTX: ParseContext = ParseContext { default_year: 2024 };

    /// Renders what the parser read as `LEVEL | source | message`.
    #[track_caller]
    fn check(line: &str, expect: &str) {
        let p = parse_line(line, &CTX);
        let got = format!(
            "{} | {} | {}",
            p.level.map_or("-", Level::as_str),
            p.source.as_deref().unwrap_or("-"),
            p.message
        );
        assert_eq!(got, expect, "line: {line}");
    }

    #[test]
    fn python_layouts() {
        check("ERROR:root:database is down", "ERROR | root | database is down");
        check(
            "2024-01-02 03:04:05,123 ERROR app.db: connection refused",
            "ERROR | app.db | connection refused",
        );
        check(
            "2024-01-02 03:04:05,123 - app.worker - WARNING - retrying job 12",
            "WARNING | app.worker | retrying job 12",
        );
        check("[2024-01-02 03:04:05,123] ERROR in views: boom", "ERROR | views | boom");
    }

    #[test]
    fn server_layouts() {
        check("ERROR:    Exception in ASGI application", "ERROR | - | Exception in ASGI application");
        check(
            "[2024-01-02 03:04:05 +0000] [42] [ERROR] Exception in worker process",
            "ERROR | - | Exception in worker process",
        );
        check(
            "2024-01-02T03:04:05.123Z ERROR my_app::db: pool timed out",
            "ERROR | my_app::db | pool timed out",
        );
        check(
            "2024-01-02 03:04:05.123 ERROR [main] com.acme.Billing - charge failed",
            "ERROR | com.acme.Billing | charge failed",
        );
        check("Jan  2 03:04:05 web1 sshd[812]: error: kex failed", "- | sshd | error: kex failed");
        check("<11>Jan  2 03:04:05 web1 app[1]: disk full", "ERROR | app | disk full");
    }

    #[test]
    fn structured_layouts() {
        check(
            r#"{"level":"error","msg":"payment failed","logger":"billing","order":7}"#,
            "ERROR | billing | payment failed",
        );
        check(
            r#"{"severity":"CRITICAL","message":"out of memory","time":1704164645}"#,
            "CRITICAL | - | out of memory",
        );
        check(r#"{"level":50,"msg":"crash","name":"api"}"#, "CRITICAL | api | crash");
        check(
            r#"time=2024-01-02T03:04:05Z level=error msg="upstream timeout" service=api"#,
            "ERROR | - | upstream timeout",
        );
        check(r#"2024-01-02T03:04:05Z level=warn msg="slow query" ms=1200"#, "WARNING | - | slow query");
    }

    #[test]
    fn lines_without_a_level() {
        check("just some output", "- | - | just some output");
        check("0 errors found", "- | - | 0 errors found");
        check("", "- | - | ");
    }

    #[test]
    fn json_keeps_extra_fields_and_traceback() {
        let p = parse_line(
            r#"{"level":"error","msg":"boom","exc_info":"Traceback (most recent call last):\nValueError: x","user_id":3,"method":"POST","path":"/api/pay"}"#,
            &CTX,
        );
        assert_eq!(p.traceback.as_deref(), Some("Traceback (most recent call last):\nValueError: x"));
        assert_eq!(p.metadata.get("user_id"), Some(&serde_json::json!(3)));
        assert_eq!(
            (p.request_method.as_deref(), p.request_path.as_deref()),
            (Some("POST"), Some("/api/pay"))
        );
    }

    #[test]
    fn request_path_from_text() {
        let p = parse_line(r#"ERROR:    127.0.0.1:5000 - "POST /api/orders HTTP/1.1" 500"#, &CTX);
        assert_eq!(
            (p.request_method.as_deref(), p.request_path.as_deref()),
            (Some("POST"), Some("/api/orders"))
        );
    }

    #[test]
    fn unambiguous_errors() {
        for m in [
            "Traceback (most recent call last):",
            "ValueError: invalid literal",
            "java.lang.IllegalStateException: boom",
            "panic: runtime error: index out of range",
            "thread 'main' panicked at src/main.rs:3:5:",
            "Exception in thread \"main\" java.lang.NullPointerException",
            "Error: ENOENT: no such file",
        ] {
            assert!(states_error(m), "{m}");
        }
        for m in ["0 errors found", "error handling improved", "user logged in", "Errors: none"] {
            assert!(!states_error(m), "{m}");
        }
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = "x".repeat(10 * 1024 * 1024);
        for line in [
            "{",
            "{\"level\":",
            "[",
            "[]",
            "<999>",
            "<1",
            "\u{0}\u{1b}[31mERROR\u{7}",
            &long,
            "ERROR:",
            "2024-01-02T",
            "é[ERROR]ü",
        ] {
            let _ = parse_line(line, &CTX);
        }
    }

    #[test]
    fn request_lines_in_messages() {
        let table = [
            (r#"10.0.0.1 - - "GET /v2/orders/7?page=2 HTTP/1.1" 500"#, Some(("GET", "/v2/orders/7"))),
            ("handler failed: DELETE /items/3 returned 503", Some(("DELETE", "/items/3"))),
            ("POST / HTTP/1.1", Some(("POST", "/"))),
            (r#"x "OPTIONS /a"b"#, Some(("OPTIONS", "/a"))),
            ("XGET /a then PUT /b", Some(("PUT", "/b"))),
            ("_GET /a", None),
            ("éGET /a", None),
            ("get /a", None),
            ("GET  /a", None),
            ("GET /", Some(("GET", "/"))),
            ("copied to /tmp/x", None),
        ];
        for (message, want) in table {
            let got = request_in(message);
            assert_eq!(got, want.map_or((None, None), |(m, p)| (Some(m), Some(p))), "{message:?}");
        }
    }

    proptest::proptest! {
        /// The hand-written scanner finds what the regular expression it replaced finds.
        #[test]
        fn request_in_agrees_with_the_regex(
            message in r#"([A-Z]{0,8}|[a-zé_1 "?/\t]|GET|POST|DELETE|OPTIONS| /[a-z0-9/]{0,6}){0,12}"#
        ) {
            let oracle = regex::Regex::new(r#"\b(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS) (/[^\s"?]*)"#).unwrap();
            let want = oracle
                .captures(&message)
                .map_or((None, None), |c| (c.get(1).map(|m| m.as_str()), c.get(2).map(|m| m.as_str())));
            proptest::prop_assert_eq!(request_in(&message), want);
        }
    }
}
