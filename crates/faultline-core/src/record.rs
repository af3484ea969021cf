//! Records sent to faultline rather than read from a log: a JSON object posted to the ingest API,
//! or a Python `logging.LogRecord` as `logging.handlers.HTTPHandler` sends it (form fields).
//!
//! Each record is checked on its own; a bad one gets a [`RecordError`] that says what is wrong,
//! so the caller can store the good ones and report the rest (partial success).
//!
//! A record that names no level is taken as `ERROR`: these endpoints exist to receive errors,
//! and a client that sends something else says so with `level`.

use std::borrow::Cow;
use std::fmt;

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::model::{Level, LogEvent, Origin, TimestampMs};
use crate::parse::{self, Format};
use crate::timestamp;

/// Keys whose value, when present but unreadable, makes a record invalid rather than metadata.
const STRICT_LEVEL_KEYS: [&str; 3] = ["level", "severity", "levelname"];
const STRICT_TIME_KEYS: [&str; 3] = ["timestamp", "time", "ts"];
/// Keys that carry the client's own id for the event (makes retries idempotent).
const ID_KEYS: [&str; 3] = ["id", "event_id", "uuid"];
/// Longest id kept; longer ones are rejected rather than cut (a cut id could collide).
const MAX_ID_CHARS: usize = 200;

/// Why one record was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The record is not a JSON object (`found` names what it is).
    NotAnObject {
        found: &'static str,
    },
    /// Neither a message nor a traceback.
    MissingMessage,
    UnknownLevel {
        field: String,
        value: String,
    },
    InvalidTimestamp {
        field: String,
        value: String,
    },
    InvalidId {
        field: String,
        reason: &'static str,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RecordError::NotAnObject { found } => write!(f, "expected a JSON object, found {found}"),
            RecordError::MissingMessage => f.write_str("missing message: send \"message\" (or \"msg\")"),
            RecordError::UnknownLevel { field, value } => {
                write!(f, "unknown level {:?} in field {field:?}", shorten(value))
            }
            RecordError::InvalidTimestamp { field, value } => write!(
                f,
                "invalid timestamp {:?} in field {field:?}: expected RFC 3339 or epoch seconds/milliseconds",
                shorten(value)
            ),
            RecordError::InvalidId { field, reason } => write!(f, "invalid {field:?}: {reason}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// Cuts a value quoted in an error message to something readable.
fn shorten(value: &str) -> Cow<'_, str> {
    const MAX: usize = 60;
    if value.chars().count() <= MAX {
        return Cow::Borrowed(value);
    }
    Cow::Owned(value.chars().take(MAX).chain("…".chars()).collect())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether a record said when it happened, or was stamped with its arrival time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stamp {
    Sent,
    Arrival,
}

/// Gives each record of one request that has no id of its own the key that makes storing it
/// idempotent without losing a count. A record that says when it happened is keyed by its whole
/// text (time included) and its rank among identical records of the request: the same request
/// sent again stores nothing twice, while five identical records in one request are five
/// occurrences. A record stamped on arrival cannot be told from a later identical one, so it is
/// keyed by the request (`request` must be unique per request) and its position.
pub fn key_occurrences(events: &mut [(LogEvent, Stamp)], request: &str) {
    let mut seen: std::collections::HashMap<[u8; 16], u32> = std::collections::HashMap::new();
    for (index, (event, stamp)) in events.iter_mut().enumerate() {
        if event.origin.external_id.is_some() {
            continue;
        }
        let key = match stamp {
            Stamp::Sent => {
                let digest = Sha256::digest(event.raw.as_bytes());
                let mut head = [0u8; 16];
                head.copy_from_slice(&digest[..16]);
                let rank = seen.entry(head).or_insert(0);
                let key = format!("h:{}:{rank}", crate::fingerprint::hex_lower(&head));
                *rank += 1;
                key
            }
            Stamp::Arrival => format!("r:{request}:{index}"),
        };
        event.origin.external_id = Some(key);
    }
}

/// How many lines' worth of bytes a sent traceback may hold (a file's traceback is that many
/// lines of at most `max_line_bytes` each in practice).
pub const TRACEBACK_LINES: usize = 16;

/// Cuts a sent record to what a file line may hold: the message and each metadata string at
/// `max_line_bytes`, the traceback at [`TRACEBACK_LINES`] times that, the raw text at the sum.
/// Returns whether anything was cut (the caller counts it).
pub fn cap_event(event: &mut LogEvent, max_line_bytes: usize) -> bool {
    fn cut(text: &mut String, max: usize) -> bool {
        if text.len() <= max {
            return false;
        }
        text.truncate(text.floor_char_boundary(max));
        true
    }
    fn cut_value(value: &mut Value, max: usize) -> bool {
        match value {
            Value::String(s) => cut(s, max),
            Value::Array(items) => items.iter_mut().fold(false, |c, v| cut_value(v, max) | c),
            Value::Object(map) => map.values_mut().fold(false, |c, v| cut_value(v, max) | c),
            _ => false,
        }
    }
    let traceback_max = max_line_bytes.saturating_mul(TRACEBACK_LINES);
    let mut was_cut = cut(&mut event.message, max_line_bytes);
    if let Some(t) = &mut event.traceback {
        was_cut |= cut(t, traceback_max);
    }
    for value in event.metadata.values_mut() {
        was_cut |= cut_value(value, max_line_bytes);
    }
    was_cut |= cut(&mut event.raw, max_line_bytes.saturating_add(traceback_max));
    was_cut
}

/// Replaces a sent time that cannot be right (before 1970, or more than `max_ahead_ms` after
/// `now`) with `now`, keeping the sent one in metadata as `original_timestamp` (milliseconds).
pub fn plausible_time(event: &mut LogEvent, now: TimestampMs, max_ahead_ms: i64) {
    if event.timestamp_ms >= 0 && event.timestamp_ms <= now.saturating_add(max_ahead_ms) {
        return;
    }
    event.metadata.insert("original_timestamp".to_owned(), Value::from(event.timestamp_ms));
    event.timestamp_ms = now;
}

/// Reads one JSON record sent to the ingest API. Known keys are the same as for JSON log lines
/// (`level`/`severity`, `message`/`msg`, `timestamp`/`time`/`ts`, `logger`/`source`/`service`,
/// `traceback`/`stack`/`exc_info`, `path`, `method`); `id` (or `event_id`) is the client's id
/// for the event; everything else is kept as metadata. `now` stamps records without a time.
pub fn event_from_json(
    value: Value,
    source_id: &str,
    now: TimestampMs,
) -> Result<(LogEvent, Stamp), RecordError> {
    let map = match value {
        Value::Object(map) => map,
        other => return Err(RecordError::NotAnObject { found: kind_of(&other) }),
    };
    let raw = Value::Object(map.clone()).to_string();
    let mut map = map;
    let external_id = take_id(&mut map)?;
    let parsed = parse::parse_json_object(map);
    debug_assert_eq!(parsed.format, Format::Json);
    for field in STRICT_LEVEL_KEYS {
        if let Some(v) = parsed.metadata.get(field).filter(|v| !v.is_null()) {
            return Err(RecordError::UnknownLevel { field: field.to_owned(), value: display(v) });
        }
    }
    for field in STRICT_TIME_KEYS {
        if let Some(v) = parsed.metadata.get(field).filter(|v| !v.is_null()) {
            return Err(RecordError::InvalidTimestamp { field: field.to_owned(), value: display(v) });
        }
    }
    let traceback = parsed.traceback.filter(|t| !t.trim().is_empty());
    let mut message = parsed.message.into_owned();
    if message.trim().is_empty() {
        match traceback.as_deref().and_then(headline) {
            Some(last) => message = last.to_owned(),
            None => return Err(RecordError::MissingMessage),
        }
    }
    let stamp = if parsed.timestamp_ms.is_some() { Stamp::Sent } else { Stamp::Arrival };
    let event = LogEvent {
        timestamp_ms: parsed.timestamp_ms.unwrap_or(now),
        level: parsed.level.unwrap_or(Level::Error),
        // A record naming no logger is known by where it came from (`http:<token name>`).
        source: parsed
            .source
            .filter(|s| !s.trim().is_empty())
            .map_or_else(|| source_id.to_owned(), Cow::into_owned),
        message,
        traceback,
        request_path: parsed.request_path.map(Cow::into_owned),
        request_method: parsed.request_method.map(Cow::into_owned),
        metadata: parsed.metadata,
        raw,
        origin: Origin { source_id: source_id.to_owned(), external_id },
    };
    Ok((event, stamp))
}

fn take_id(map: &mut Map<String, Value>) -> Result<Option<String>, RecordError> {
    for field in ID_KEYS {
        let Some(value) = map.remove(field) else { continue };
        let id = match value {
            Value::String(s) => s,
            Value::Number(n) => n.to_string(),
            Value::Null => continue,
            _ => {
                return Err(RecordError::InvalidId {
                    field: field.to_owned(),
                    reason: "expected a string or a number",
                });
            }
        };
        if id.is_empty() || id.chars().count() > MAX_ID_CHARS {
            return Err(RecordError::InvalidId {
                field: field.to_owned(),
                reason: "must be 1 to 200 characters",
            });
        }
        return Ok(Some(format!("id:{id}")));
    }
    Ok(None)
}

fn display(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The line of a traceback that says what went wrong: the last for Python (the exception comes
/// after the frames), the first for everything else (Java, Node, Go put it on top).
fn headline(traceback: &str) -> Option<&str> {
    let mut lines = traceback.lines().map(str::trim).filter(|l| !l.is_empty());
    if traceback.trim_start().starts_with("Traceback (most recent call last):") {
        lines.next_back()
    } else {
        lines.next()
    }
}

/// Reads the form fields of a Python `logging.LogRecord` as the standard library's
/// `logging.handlers.HTTPHandler` posts them (`record.__dict__`, URL-encoded): `name` is the
/// source, `levelname` the level (or, for a name of the application's own, `levelno` by the
/// standard level at or below it), `message` (set once a formatter ran) or else `msg % args`
/// as `logging` formats it, `created` the time, `exc_text` the traceback or, when no formatter
/// ran, the exception type and value read from `exc_info`'s text; `pathname`, `lineno`,
/// `funcName`, `module`, `process`, `thread` and `args` are kept as metadata.
pub fn event_from_python_record(
    fields: &[(String, String)],
    source_id: &str,
    now: TimestampMs,
) -> Result<(LogEvent, Stamp), RecordError> {
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let present = |v: &&str| !v.is_empty() && *v != "None";
    let by_number = |no: &str| no.trim().parse::<i64>().ok().map(python_level);
    let level = match (get("levelname").filter(present), get("levelno").filter(present)) {
        (Some(name), no) => match (Level::parse(name), no.and_then(by_number)) {
            (Some(level), _) | (None, Some(level)) => level,
            (None, None) => {
                return Err(RecordError::UnknownLevel { field: "levelname".into(), value: name.into() });
            }
        },
        (None, Some(no)) => by_number(no)
            .ok_or_else(|| RecordError::UnknownLevel { field: "levelno".into(), value: no.into() })?,
        (None, None) => Level::Error,
    };
    let (timestamp_ms, stamp) = match get("created").filter(present) {
        Some(created) => (
            created
                .parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(|f| timestamp::parse_value(&Value::from(f)))
                .ok_or_else(|| RecordError::InvalidTimestamp {
                    field: "created".into(),
                    value: created.into(),
                })?,
            Stamp::Sent,
        ),
        None => (now, Stamp::Arrival),
    };
    let traceback = get("exc_text")
        .filter(present)
        .filter(|t| !t.trim().is_empty())
        .map(str::to_owned)
        .or_else(|| get("exc_info").and_then(python_exception));
    let args = get("args").filter(|a| present(a) && *a != "()");
    let message = match get("message").filter(present) {
        Some(m) => m.to_owned(),
        None => match get("msg").filter(present) {
            Some(msg) => match args {
                Some(args) => python_format(msg, args).unwrap_or_else(|| msg.to_owned()),
                None => msg.to_owned(),
            },
            None => traceback.as_deref().and_then(headline).ok_or(RecordError::MissingMessage)?.to_owned(),
        },
    };
    let mut metadata = Map::new();
    for key in ["pathname", "lineno", "funcName", "module", "process", "processName", "thread", "threadName"]
    {
        if let Some(v) = get(key).filter(present) {
            metadata.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    }
    if let Some(args) = args {
        metadata.insert("args".to_owned(), Value::String(args.to_owned()));
    }
    if let Some(name) = get("levelname").filter(|n| present(n) && Level::parse(n).is_none()) {
        metadata.insert("levelname".to_owned(), Value::String(name.to_owned()));
    }
    let raw = fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n");
    let event = LogEvent {
        timestamp_ms,
        level,
        source: get("name").filter(present).unwrap_or(source_id).to_owned(),
        message,
        traceback,
        request_path: None,
        request_method: None,
        metadata,
        raw,
        origin: Origin { source_id: source_id.to_owned(), external_id: None },
    };
    Ok((event, stamp))
}

/// The standard level at or below a Python `levelno` (a custom level such as 45 is an ERROR).
fn python_level(no: i64) -> Level {
    match no {
        50.. => Level::Critical,
        40..=49 => Level::Error,
        30..=39 => Level::Warning,
        20..=29 => Level::Info,
        _ => Level::Debug,
    }
}

/// The last line of a Python traceback, `Type: value`, read from the text of `exc_info` as
/// `HTTPHandler` sends it: `(<class 'mod.Type'>, Type('value'), <traceback object at 0x…>)`.
fn python_exception(exc_info: &str) -> Option<String> {
    let items = py::split_items(exc_info.trim().strip_prefix('(')?.strip_suffix(')')?)?;
    let class = items.first()?.trim().strip_prefix("<class '")?.strip_suffix("'>")?;
    let name = class.strip_prefix("builtins.").unwrap_or(class);
    let value = items.get(1).map(|v| v.trim()).unwrap_or("");
    // `Type('a')` → a; `Type()` → nothing; `Type('a', 2)` → its args tuple, as str() shows it.
    let inner = value.find('(').and_then(|open| value.strip_suffix(')').map(|v| &v[open + 1..]));
    let text = match inner.and_then(py::split_items) {
        Some(args) if args.is_empty() => String::new(),
        Some(args) if args.len() == 1 => py::as_str(&args[0]),
        Some(_) => format!("({})", inner.unwrap_or_default()),
        None => value.to_owned(),
    };
    Some(if text.is_empty() { name.to_owned() } else { format!("{name}: {text}") })
}

/// `msg % args` as Python's `logging` does it, from the text of `args` (the repr of a tuple or
/// of a dict). `None` when the format and the arguments do not fit, as `logging` would complain.
fn python_format(msg: &str, args: &str) -> Option<String> {
    let args = args.trim();
    let (positional, named) = if let Some(inner) = args.strip_prefix('{').and_then(|a| a.strip_suffix('}')) {
        let mut named = Vec::new();
        for item in py::split_items(inner)? {
            let (k, v) = py::split_pair(&item)?;
            named.push((py::as_str(&k), v));
        }
        (Vec::new(), named)
    } else if let Some(inner) = args.strip_prefix('(').and_then(|a| a.strip_suffix(')')) {
        (py::split_items(inner)?, Vec::new())
    } else {
        (vec![args.to_owned()], Vec::new())
    };
    let mut out = String::with_capacity(msg.len() + 16);
    let mut next = positional.iter();
    let mut rest = msg;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        if let Some(r) = rest.strip_prefix('%') {
            out.push('%');
            rest = r;
            continue;
        }
        let value = if let Some(r) = rest.strip_prefix('(') {
            let close = r.find(')')?;
            let key = &r[..close];
            rest = &r[close + 1..];
            named.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())?
        } else {
            next.next()?.as_str()
        };
        let spec_len = rest.find(|c: char| c.is_ascii_alphabetic())?;
        let (spec, conv) = (&rest[..spec_len], rest[spec_len..].chars().next()?);
        rest = &rest[spec_len + conv.len_utf8()..];
        out.push_str(&py::convert(value, spec, conv)?);
    }
    out.push_str(rest);
    (next.next().is_none()).then_some(out)
}

/// Reading the repr of Python values, as far as formatting a log message needs.
mod py {
    /// Splits `a, 'b, c', (d, e)` at its top-level commas (a trailing one is dropped).
    pub(super) fn split_items(text: &str) -> Option<Vec<String>> {
        let mut items = Vec::new();
        let mut depth = 0i32;
        let mut quote: Option<char> = None;
        let mut escaped = false;
        let mut start = 0;
        for (i, c) in text.char_indices() {
            match quote {
                Some(q) => {
                    if escaped {
                        escaped = false;
                    } else if c == '\\' {
                        escaped = true;
                    } else if c == q {
                        quote = None;
                    }
                }
                None => match c {
                    '\'' | '"' => quote = Some(c),
                    '(' | '[' | '{' | '<' => depth += 1,
                    ')' | ']' | '}' | '>' => depth -= 1,
                    ',' if depth == 0 => {
                        items.push(text[start..i].trim().to_owned());
                        start = i + 1;
                    }
                    _ => {}
                },
            }
        }
        if quote.is_some() || depth != 0 {
            return None;
        }
        let last = text[start..].trim();
        if !last.is_empty() {
            items.push(last.to_owned());
        }
        Some(items)
    }

    /// `'key': value` → (`'key'`, `value`).
    pub(super) fn split_pair(item: &str) -> Option<(String, String)> {
        let mut quote: Option<char> = None;
        let mut escaped = false;
        for (i, c) in item.char_indices() {
            match quote {
                Some(_) if escaped => escaped = false,
                Some(_) if c == '\\' => escaped = true,
                Some(q) if c == q => quote = None,
                Some(_) => {}
                None if c == '\'' || c == '"' => quote = Some(c),
                None if c == ':' => {
                    return Some((item[..i].trim().to_owned(), item[i + 1..].trim().to_owned()));
                }
                None => {}
            }
        }
        None
    }

    /// What `str()` gives for a value written as its repr: a string literal unquoted and
    /// unescaped; anything else as written.
    pub(super) fn as_str(repr: &str) -> String {
        let repr = repr.trim();
        let quoted = repr.len() >= 2
            && ((repr.starts_with('\'') && repr.ends_with('\''))
                || (repr.starts_with('"') && repr.ends_with('"')));
        if !quoted {
            return repr.to_owned();
        }
        let mut out = String::with_capacity(repr.len());
        let mut chars = repr[1..repr.len() - 1].chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some('x') => {
                    let hex: String = chars.by_ref().take(2).collect();
                    out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                }
                Some('u') => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.extend(u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32));
                }
                Some(other) => out.push(other),
                None => out.push('\\'),
            }
        }
        out
    }

    /// One `%` conversion: `%s`, `%r`, `%d`/`%i`/`%u`, `%f`/`%e`/`%g`, `%x`/`%o`, with width,
    /// precision and the `-`/`0` flags.
    pub(super) fn convert(value: &str, spec: &str, conv: char) -> Option<String> {
        let left = spec.contains('-');
        let zero = spec.trim_start_matches(['-', '+', ' ', '#']).starts_with('0');
        let digits = spec.trim_start_matches(['-', '+', ' ', '#', '0']);
        let (width, precision) = match digits.split_once('.') {
            Some((w, p)) => (w.parse::<usize>().unwrap_or(0), Some(p.parse::<usize>().unwrap_or(0))),
            None => (digits.parse::<usize>().unwrap_or(0), None),
        };
        let number = || -> Option<f64> {
            match value.trim() {
                "True" => Some(1.0),
                "False" => Some(0.0),
                v => v.parse::<f64>().ok(),
            }
        };
        let body = match conv {
            's' => {
                let s = as_str(value);
                match precision {
                    Some(p) => s.chars().take(p).collect(),
                    None => s,
                }
            }
            'r' | 'a' => value.trim().to_owned(),
            'd' | 'i' | 'u' => format!("{}", number()?.trunc() as i64),
            'f' | 'F' => format!("{:.*}", precision.unwrap_or(6), number()?),
            'e' | 'E' => {
                let s = format!("{:.*e}", precision.unwrap_or(6), number()?);
                if conv == 'E' { s.to_uppercase() } else { s }
            }
            'g' | 'G' => format!("{}", number()?),
            'x' => format!("{:x}", value.trim().parse::<i64>().ok()?),
            'X' => format!("{:X}", value.trim().parse::<i64>().ok()?),
            'o' => format!("{:o}", value.trim().parse::<i64>().ok()?),
            _ => return None,
        };
        let pad = width.saturating_sub(body.chars().count());
        Some(match (left, zero && conv != 's') {
            (true, _) => format!("{body}{}", " ".repeat(pad)),
            (false, true) if body.starts_with('-') => format!("-{}{}", "0".repeat(pad), &body[1..]),
            (false, true) => format!("{}{body}", "0".repeat(pad)),
            (false, false) => format!("{}{body}", " ".repeat(pad)),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: TimestampMs = 1_700_000_000_000;

    fn read(v: Value) -> Result<LogEvent, String> {
        event_from_json(v, "http:test", NOW).map(|(e, _)| e).map_err(|e| e.to_string())
    }

    #[test]
    fn regression_18_a_record_without_a_logger_is_known_by_its_source() {
        for record in [json!({"message": "boom"}), json!({"message": "boom", "logger": " "})] {
            assert_eq!(read(record).expect("valid").source, "http:test");
        }
        let fields = [("msg".to_owned(), "boom".to_owned()), ("levelname".to_owned(), "ERROR".to_owned())];
        let (event, _) = event_from_python_record(&fields, "http:test:python", NOW).expect("valid");
        assert_eq!(event.source, "http:test:python");
    }

    #[test]
    fn a_full_record_maps_every_known_field() {
        let event = read(json!({
            "timestamp": "2024-01-02T03:04:05.678Z", "level": "error", "logger": "api.users",
            "message": "KeyError: 'id'", "traceback": "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\nKeyError: 'id'",
            "path": "/users/7", "method": "GET", "id": "evt-1", "region": "eu"
        }))
        .expect("valid");
        assert_eq!(event.timestamp_ms, 1_704_164_645_678);
        assert_eq!((event.level, event.source.as_str()), (Level::Error, "api.users"));
        assert_eq!(event.message, "KeyError: 'id'");
        assert!(event.traceback.as_deref().is_some_and(|t| t.ends_with("KeyError: 'id'")));
        assert_eq!(
            (event.request_method.as_deref(), event.request_path.as_deref()),
            (Some("GET"), Some("/users/7"))
        );
        assert_eq!(event.origin.external_id.as_deref(), Some("id:evt-1"));
        assert_eq!(event.metadata.get("region"), Some(&json!("eu")));
    }

    #[test]
    fn defaults_error_level_and_now() {
        let event = read(json!({"msg": "boom"})).expect("valid");
        assert_eq!((event.level, event.timestamp_ms, event.origin.external_id), (Level::Error, NOW, None));
    }

    #[test]
    fn a_traceback_alone_is_enough() {
        let event = read(json!({"stack": "Error: boom\n    at f (a.js:1:2)"})).expect("valid");
        assert_eq!(event.message, "Error: boom");
    }

    #[test]
    fn bad_records_say_what_is_wrong() {
        assert_eq!(read(json!([1])).unwrap_err(), "expected a JSON object, found an array");
        assert_eq!(
            read(json!({"level": "error"})).unwrap_err(),
            "missing message: send \"message\" (or \"msg\")"
        );
        assert_eq!(
            read(json!({"level": "WARNN", "msg": "x"})).unwrap_err(),
            "unknown level \"WARNN\" in field \"level\""
        );
        assert!(
            read(json!({"ts": "yesterday", "msg": "x"}))
                .unwrap_err()
                .starts_with("invalid timestamp \"yesterday\"")
        );
        assert_eq!(
            read(json!({"id": {}, "msg": "x"})).unwrap_err(),
            "invalid \"id\": expected a string or a number"
        );
        let long = "x".repeat(500);
        let err = read(json!({"level": long, "msg": "x"})).unwrap_err();
        assert!(err.len() < 120, "{err}");
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn python_http_handler_fields() {
        let fields = form(&[
            ("name", "billing"),
            ("msg", "charge failed for %s"),
            ("args", "('acct-9',)"),
            ("levelname", "ERROR"),
            ("levelno", "40"),
            ("pathname", "/srv/app/billing.py"),
            ("lineno", "42"),
            ("created", "1704164645.678"),
            ("exc_text", "None"),
            ("exc_info", "None"),
        ]);
        let (event, _) = event_from_python_record(&fields, "python", NOW).expect("valid");
        assert_eq!((event.level, event.source.as_str()), (Level::Error, "billing"));
        assert_eq!(event.message, "charge failed for acct-9");
        assert_eq!(event.timestamp_ms, 1_704_164_645_678);
        assert_eq!(event.traceback, None);
        assert_eq!(event.metadata.get("args"), Some(&json!("('acct-9',)")));
        assert_eq!(event.metadata.get("lineno"), Some(&json!("42")));
    }

    #[test]
    fn python_record_prefers_the_formatted_message_and_keeps_exc_text() {
        let fields = form(&[
            ("msg", "x %s"),
            ("message", "x 1"),
            ("levelno", "50"),
            ("exc_text", "Traceback (most recent call last):\nValueError: 1"),
        ]);
        let (event, _) = event_from_python_record(&fields, "python", NOW).expect("valid");
        assert_eq!((event.level, event.message.as_str()), (Level::Critical, "x 1"));
        assert!(event.traceback.is_some());
        let bad = event_from_python_record(&form(&[("msg", "x"), ("levelname", "LOUD")]), "python", NOW)
            .map(|(e, _)| e);
        assert_eq!(bad.unwrap_err().to_string(), "unknown level \"LOUD\" in field \"levelname\"");
    }

    fn python(pairs: &[(&str, &str)]) -> LogEvent {
        event_from_python_record(&form(pairs), "python", NOW).expect("valid").0
    }

    #[test]
    fn regression_16_python_message_is_formatted_with_its_args() {
        let cases = [
            ("code=%d", "(503,)", "code=503"),
            ("user %s missing in %r", "('bob', 'users')", "user bob missing in 'users'"),
            ("%5.1f%% done, %-4s|%03d", "(99.44, 'ab', 7)", " 99.4% done, ab  |007"),
            ("%(user)s failed %(n)d times", "{'user': 'ann', 'n': 3}", "ann failed 3 times"),
            ("tuple %s", "((1, 2),)", "tuple (1, 2)"),
            ("quote %s", r#"("it's, ok",)"#, "quote it's, ok"),
            // What logging itself would refuse stays as sent, the args kept in metadata.
            ("two %s %s", "('one',)", "two %s %s"),
            ("bad %d", "('x',)", "bad %d"),
        ];
        for (msg, args, want) in cases {
            let event = python(&[("msg", msg), ("args", args), ("levelname", "ERROR")]);
            assert_eq!(event.message, want, "{msg} % {args}");
        }
    }

    #[test]
    fn regression_16_python_exception_read_from_exc_info_without_a_formatter() {
        let event = python(&[
            ("msg", "request failed"),
            ("levelname", "ERROR"),
            ("exc_info", "(<class 'ValueError'>, ValueError('bad value 42'), <traceback object at 0x7f1>)"),
            ("exc_text", "None"),
        ]);
        assert_eq!(event.traceback.as_deref(), Some("ValueError: bad value 42"));
        let other = python(&[
            ("msg", "request failed"),
            ("levelname", "ERROR"),
            (
                "exc_info",
                "(<class 'app.errors.QuotaExceeded'>, QuotaExceeded(), <traceback object at 0x7f1>)",
            ),
        ]);
        assert_eq!(other.traceback.as_deref(), Some("app.errors.QuotaExceeded"));
        let fp = |e: &LogEvent| crate::fingerprint(e).fingerprint;
        assert_ne!(fp(&event), fp(&other), "two exceptions under one message stay apart");
    }

    #[test]
    fn regression_16_python_custom_level_names_map_by_levelno() {
        let event = python(&[("msg", "x"), ("levelname", "FAILURE"), ("levelno", "45")]);
        assert_eq!(event.level, Level::Error);
        assert_eq!(event.metadata.get("levelname"), Some(&json!("FAILURE")));
        assert_eq!(python(&[("msg", "x"), ("levelname", "DOOM"), ("levelno", "55")]).level, Level::Critical);
        assert_eq!(python(&[("msg", "x"), ("levelname", "NOTE"), ("levelno", "25")]).level, Level::Info);
    }

    fn keyed(records: &[Value], request: &str) -> Vec<String> {
        let mut events: Vec<(LogEvent, Stamp)> =
            records.iter().map(|r| event_from_json(r.clone(), "http", NOW).expect("valid")).collect();
        key_occurrences(&mut events, request);
        events.into_iter().map(|(e, _)| e.origin.external_id.expect("keyed")).collect()
    }

    #[test]
    fn regression_16_identical_records_are_distinct_occurrences_and_a_resent_request_is_not() {
        let timed = json!({"msg": "boom", "ts": "2024-01-02T03:04:05.678Z"});
        let first = keyed(&[timed.clone(), timed.clone(), timed.clone()], "a");
        assert_eq!(first.iter().collect::<std::collections::HashSet<_>>().len(), 3);
        assert_eq!(
            keyed(&[timed.clone(), timed.clone(), timed.clone()], "b"),
            first,
            "a retry keys the same"
        );
        let untimed = json!({"msg": "boom"});
        let a = keyed(&[untimed.clone(), untimed.clone()], "a");
        let b = keyed(&[untimed.clone(), untimed], "b");
        assert_ne!(a[0], a[1]);
        assert!(a.iter().all(|k| !b.contains(k)), "two requests stamped on arrival never collide");
        assert_eq!(keyed(&[json!({"msg": "boom", "id": 7})], "a"), ["id:7"]);
    }

    #[test]
    fn regression_16_records_are_capped_like_file_lines() {
        let mut event = read(
            json!({"msg": "é".repeat(100), "stack": "x".repeat(5000), "extra": {"big": "y".repeat(300)}}),
        )
        .expect("valid");
        assert!(cap_event(&mut event, 101));
        assert_eq!(event.message.len(), 100, "cut at a character boundary");
        assert_eq!(event.traceback.as_deref().map(str::len), Some(101 * TRACEBACK_LINES));
        assert_eq!(event.metadata["extra"]["big"].as_str().map(str::len), Some(101));
        assert!(event.raw.len() <= 101 * (TRACEBACK_LINES + 1));
        assert!(!cap_event(&mut event, 101), "cutting twice changes nothing");
    }

    #[test]
    fn regression_16_implausible_times_become_the_arrival_time() {
        let day = 86_400_000;
        for (ts, kept) in [
            (NOW, true),
            (NOW + day - 1, true),
            (0, true),
            (NOW + day + 1, false),
            (-1, false),
            (i64::MAX, false),
        ] {
            let mut event = read(json!({"msg": "x"})).expect("valid");
            event.timestamp_ms = ts;
            plausible_time(&mut event, NOW, day);
            assert_eq!(event.timestamp_ms == ts, kept, "{ts}");
            assert_eq!(event.metadata.get("original_timestamp").is_none(), kept, "{ts}");
        }
        for sent in [json!(1e308), json!("-1199-01-01T00:00:00Z"), json!("9999-12-31T23:59:59Z")] {
            match event_from_json(json!({"msg": "x", "ts": sent}), "http", NOW) {
                Ok((mut event, _)) => {
                    plausible_time(&mut event, NOW, day);
                    assert_eq!(event.timestamp_ms, NOW, "{sent}");
                }
                Err(e) => assert!(e.to_string().starts_with("invalid timestamp"), "{e}"),
            }
        }
    }
}
