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

/// Reads one JSON record sent to the ingest API. Known keys are the same as for JSON log lines
/// (`level`/`severity`, `message`/`msg`, `timestamp`/`time`/`ts`, `logger`/`source`/`service`,
/// `traceback`/`stack`/`exc_info`, `path`, `method`); `id` (or `event_id`) is the client's id
/// for the event; everything else is kept as metadata. `now` stamps records without a time.
pub fn event_from_json(value: Value, source_id: &str, now: TimestampMs) -> Result<LogEvent, RecordError> {
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
    Ok(LogEvent {
        timestamp_ms: parsed.timestamp_ms.unwrap_or(now),
        level: parsed.level.unwrap_or(Level::Error),
        source: parsed.source.map(Cow::into_owned).unwrap_or_default(),
        message,
        traceback,
        request_path: parsed.request_path.map(Cow::into_owned),
        request_method: parsed.request_method.map(Cow::into_owned),
        metadata: parsed.metadata,
        raw,
        origin: Origin { source_id: source_id.to_owned(), external_id },
    })
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
/// source, `levelname` (or `levelno`) the level, `message` (set once a formatter ran) or else `msg`
/// the message, `created` the time, `exc_text` the traceback; `pathname`, `lineno`, `funcName`,
/// `module`, `process`, `thread` and `args` are kept as metadata.
pub fn event_from_python_record(
    fields: &[(String, String)],
    source_id: &str,
    now: TimestampMs,
) -> Result<LogEvent, RecordError> {
    let get = |key: &str| fields.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
    let present = |v: &&str| !v.is_empty() && *v != "None";
    let level = match (get("levelname"), get("levelno")) {
        (Some(name), _) if present(&name) => Level::parse(name)
            .ok_or_else(|| RecordError::UnknownLevel { field: "levelname".into(), value: name.into() })?,
        (_, Some(no)) if present(&no) => no
            .parse::<i64>()
            .ok()
            .and_then(Level::from_number)
            .ok_or_else(|| RecordError::UnknownLevel { field: "levelno".into(), value: no.into() })?,
        _ => Level::Error,
    };
    let timestamp_ms = match get("created").filter(present) {
        Some(created) => created
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .and_then(|f| timestamp::parse_value(&Value::from(f)))
            .ok_or_else(|| RecordError::InvalidTimestamp {
                field: "created".into(),
                value: created.into(),
            })?,
        None => now,
    };
    let traceback = get("exc_text").filter(present).filter(|t| !t.trim().is_empty()).map(str::to_owned);
    let message = match get("message").filter(present).or_else(|| get("msg").filter(present)) {
        Some(m) => m.to_owned(),
        None => traceback.as_deref().and_then(headline).ok_or(RecordError::MissingMessage)?.to_owned(),
    };
    let mut metadata = Map::new();
    for key in ["pathname", "lineno", "funcName", "module", "process", "processName", "thread", "threadName"]
    {
        if let Some(v) = get(key).filter(present) {
            metadata.insert(key.to_owned(), Value::String(v.to_owned()));
        }
    }
    if let Some(args) = get("args").filter(|a| present(a) && *a != "()") {
        metadata.insert("args".to_owned(), Value::String(args.to_owned()));
    }
    let raw = fields.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("\n");
    Ok(LogEvent {
        timestamp_ms,
        level,
        source: get("name").filter(present).unwrap_or_default().to_owned(),
        message,
        traceback,
        request_path: None,
        request_method: None,
        metadata,
        raw,
        origin: Origin { source_id: source_id.to_owned(), external_id: None },
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: TimestampMs = 1_700_000_000_000;

    fn read(v: Value) -> Result<LogEvent, String> {
        event_from_json(v, "http:test", NOW).map_err(|e| e.to_string())
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
        let event = event_from_python_record(&fields, "python", NOW).expect("valid");
        assert_eq!((event.level, event.source.as_str()), (Level::Error, "billing"));
        assert_eq!(event.message, "charge failed for %s");
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
        let event = event_from_python_record(&fields, "python", NOW).expect("valid");
        assert_eq!((event.level, event.message.as_str()), (Level::Critical, "x 1"));
        assert!(event.traceback.is_some());
        let bad = event_from_python_record(&form(&[("msg", "x"), ("levelname", "LOUD")]), "python", NOW);
        assert_eq!(bad.unwrap_err().to_string(), "unknown level \"LOUD\" in field \"levelname\"");
    }
}
