//! Events sent by Sentry SDKs: the envelope framing (one header line, then items, each a header
//! line and a payload of the header's `length` or up to the next newline) and the event payload
//! (Sentry's protocol, read with the `sentry-types` crate) turned into a [`LogEvent`].
//!
//! An envelope is split item by item, so one malformed item does not lose the others: each item
//! comes out with its type and either its payload or why it could not be read.

use sentry_types::protocol::v7;
use serde_json::{Map, Value, json};

use crate::model::{Level, LogEvent, Origin, TimestampMs};

/// One item of an envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    /// `event`, `transaction`, `session`, `attachment`, `client_report`…
    pub kind: String,
    pub payload: Vec<u8>,
}

/// An envelope, split.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The envelope's header (`event_id`, `dsn`, `sent_at`, `sdk`).
    pub header: Map<String, Value>,
    pub items: Vec<Item>,
    /// Why the rest of the body could not be read, if it could not: the items before it are kept.
    pub broken: Option<String>,
}

impl Envelope {
    /// The public key in the header's `dsn` (`https://<key>@host/<project>`), if there is one.
    pub fn dsn_key(&self) -> Option<String> {
        let dsn = self.header.get("dsn")?.as_str()?;
        let rest = dsn.split_once("://")?.1;
        let (key, _) = rest.split_once('@')?;
        let key = key.split(':').next().unwrap_or(key);
        (!key.is_empty()).then(|| key.to_owned())
    }
}

/// Splits an envelope. Only an unreadable header is an error for the whole body.
pub fn split_envelope(body: &[u8]) -> Result<Envelope, String> {
    let (first, mut rest) = line(body);
    let header = match serde_json::from_slice::<Value>(first) {
        Ok(Value::Object(map)) => map,
        Ok(_) => return Err("the envelope header is not a JSON object".to_owned()),
        Err(e) => return Err(format!("the envelope header is not JSON: {e}")),
    };
    let mut envelope = Envelope { header, items: Vec::new(), broken: None };
    let mut index = 0;
    while !rest.is_empty() {
        let (item_header, after) = line(rest);
        if item_header.iter().all(u8::is_ascii_whitespace) {
            rest = after;
            continue;
        }
        let item_header: Map<String, Value> = match serde_json::from_slice(item_header) {
            Ok(Value::Object(map)) => map,
            _ => {
                envelope.broken = Some(format!("item {index}: its header is not a JSON object"));
                break;
            }
        };
        let kind = item_header.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
        let payload = match item_header.get("length").and_then(Value::as_u64) {
            Some(length) => {
                let length = usize::try_from(length).unwrap_or(usize::MAX);
                if length > after.len() {
                    envelope.broken = Some(format!(
                        "item {index} ({kind}): length {length}, but {} bytes follow",
                        after.len()
                    ));
                    break;
                }
                let (payload, tail) = after.split_at(length);
                rest = tail.strip_prefix(b"\n").unwrap_or(tail);
                payload
            }
            None => {
                let (payload, tail) = line(after);
                rest = tail;
                payload
            }
        };
        envelope.items.push(Item { kind, payload: payload.to_vec() });
        index += 1;
    }
    Ok(envelope)
}

/// The bytes up to the next newline, and what follows it.
fn line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// Breadcrumbs kept with an event (the latest ones).
const BREADCRUMBS_KEPT: usize = 20;

/// Reads one event payload (an envelope's `event` item, or the body of the older `store`
/// endpoint) into a log event. `source_id` names where it came from (`sentry:<project>`).
pub fn event_from_sentry(payload: &[u8], source_id: &str, now: TimestampMs) -> Result<LogEvent, String> {
    // Text checked once: read as `&str`, serde_json does not check each string again.
    let text = std::str::from_utf8(payload).ok();
    let event = parse_event(payload, text)?;
    let chain: Vec<&v7::Exception> = event.exception.values.iter().collect();
    // The SDKs list a chain oldest first: the last exception is the one the program saw.
    let main = chain.last();
    let logged = event.logentry.as_ref().map(format_logentry).or_else(|| event.message.clone());
    let message = main
        .map(|e| exception_line(e))
        .or_else(|| logged.clone())
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| "the event has neither an exception nor a message".to_owned())?;
    let (traceback, in_app) = if chain.is_empty() { (None, Vec::new()) } else { render_chain(&chain) };
    let timestamp_ms = event
        .timestamp
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as TimestampMs)
        .unwrap_or(now);
    let level = match event.level {
        v7::Level::Debug => Level::Debug,
        v7::Level::Info => Level::Info,
        v7::Level::Warning => Level::Warning,
        v7::Level::Error => Level::Error,
        v7::Level::Fatal => Level::Critical,
    };
    let mut metadata = Map::new();
    let mut put = |key: &str, value: Value| {
        if !value.is_null() && value != json!({}) && value != json!([]) {
            metadata.insert(key.to_owned(), value);
        }
    };
    put("event_id", json!(event.event_id.simple().to_string()));
    if !event.fingerprint.is_empty()
        && event.fingerprint.as_ref() != [std::borrow::Cow::Borrowed("{{ default }}")]
    {
        put("fingerprint", json!(event.fingerprint));
    }
    put("platform", json!(event.platform));
    put("release", json!(event.release));
    put("environment", json!(event.environment));
    put("server_name", json!(event.server_name));
    put("transaction", json!(event.transaction));
    put("tags", json!(event.tags));
    // Who was affected, by id and name: addresses are left out (they identify people).
    if let Some(user) = &event.user {
        put("user", json!({ "id": user.id, "username": user.username }));
    }
    put("contexts", serde_json::to_value(&event.contexts).unwrap_or(Value::Null));
    let crumbs = &event.breadcrumbs.values;
    let latest = &crumbs[crumbs.len().saturating_sub(BREADCRUMBS_KEPT)..];
    put("breadcrumbs", serde_json::to_value(latest).unwrap_or(Value::Null));
    if in_app.iter().any(Option::is_some) {
        put("in_app", json!(in_app));
    }
    put("mechanism", json!(main.and_then(|e| e.mechanism.as_ref()).map(|m| &m.ty)));
    put("sdk", json!(event.sdk.as_ref().map(|s| format!("{} {}", s.name, s.version))));
    if let Some(logged) = logged.filter(|_| main.is_some()) {
        put("log_message", json!(logged));
    }
    let request = event.request.as_ref();
    Ok(LogEvent {
        timestamp_ms,
        level,
        source: event.logger.clone().filter(|l| !l.is_empty()).unwrap_or_else(|| source_id.to_owned()),
        message,
        traceback,
        request_path: request.and_then(|r| r.url.as_ref()).map(|u| u.path().to_owned()),
        request_method: request.and_then(|r| r.method.clone()),
        metadata: metadata.into_iter().collect(),
        raw: match text {
            Some(text) => text.to_owned(),
            None => String::from_utf8_lossy(payload).into_owned(),
        },
        origin: Origin {
            source_id: source_id.to_owned(),
            external_id: Some(format!("sentry:{}", event.event_id.simple())),
        },
    })
}

/// The event as `sentry-types` reads it. Sentry takes an exception with a value and no type
/// (the JavaScript SDK's captureMessage with a synthetic stack sends one), which sentry-types
/// refuses: such a payload is read again with an empty type filled in.
fn parse_event(payload: &[u8], text: Option<&str>) -> Result<v7::Event<'static>, String> {
    let read = match text {
        Some(text) => serde_json::from_str::<v7::Event<'static>>(text),
        None => serde_json::from_slice::<v7::Event<'static>>(payload),
    };
    let first = match read {
        Ok(event) => return Ok(event),
        Err(e) => e,
    };
    let mut value: Value = serde_json::from_slice(payload).map_err(|e| format!("not a Sentry event: {e}"))?;
    let mut filled = false;
    if let Some(values) = value.pointer_mut("/exception/values").and_then(Value::as_array_mut) {
        for exception in values.iter_mut().filter_map(Value::as_object_mut) {
            if !exception.contains_key("type") {
                exception.insert("type".to_owned(), json!(""));
                filled = true;
            }
        }
    }
    if !filled {
        return Err(format!("not a Sentry event: {first}"));
    }
    serde_json::from_value(value).map_err(|e| format!("not a Sentry event: {e}"))
}

/// `logentry.message` with its `%s`-style params filled in, or as given when it has none.
fn format_logentry(entry: &v7::LogEntry) -> String {
    let mut params = entry.params.iter();
    let mut out = String::with_capacity(entry.message.len());
    let mut chars = entry.message.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '%'
            && let Some(&spec) = chars.peek()
        {
            if spec == '%' {
                chars.next();
                out.push('%');
                continue;
            }
            if spec.is_ascii_alphabetic()
                && let Some(p) = params.next()
            {
                chars.next();
                match p {
                    Value::String(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// `Type: value`, or the one of them given.
fn exception_line(e: &v7::Exception) -> String {
    match (e.ty.as_str(), e.value.as_deref().filter(|v| !v.is_empty())) {
        ("", Some(value)) => value.to_owned(),
        (ty, Some(value)) => format!("{ty}: {value}"),
        (ty, None) => ty.to_owned(),
    }
}

/// The chain as a Python-style traceback (the layout faultline reads frames from), oldest
/// exception first, and the SDK's `in_app` flag of each frame written. A frame repeating the
/// one before it (recursion) is written once, as the fingerprint reads it.
fn render_chain(chain: &[&v7::Exception]) -> (Option<String>, Vec<Option<bool>>) {
    let mut out = String::new();
    let mut in_app = Vec::new();
    let mut previous: Option<(&str, &str)> = None;
    for (i, e) in chain.iter().enumerate() {
        if i > 0 {
            out.push_str("\nDuring handling of the above exception, another exception occurred:\n\n");
        }
        let frames = e.stacktrace.as_ref().map(|s| s.frames.as_slice()).unwrap_or_default();
        if !frames.is_empty() {
            out.push_str("Traceback (most recent call last):\n");
            for f in frames {
                let file =
                    f.abs_path.as_deref().or(f.filename.as_deref()).or(f.module.as_deref()).unwrap_or("?");
                let function = f.function.as_deref().unwrap_or("?");
                if previous == Some((file, function)) {
                    continue;
                }
                previous = Some((file, function));
                in_app.push(f.in_app);
                out.push_str(&format!("  File \"{file}\", line {}, in {function}\n", f.lineno.unwrap_or(0)));
                if let Some(code) = f.context_line.as_deref().map(str::trim).filter(|c| !c.is_empty()) {
                    out.push_str(&format!("    {code}\n"));
                }
            }
        }
        out.push_str(&exception_line(e));
        out.push('\n');
    }
    (Some(out), in_app)
}

#[cfg(test)]
#[path = "sentry_tests.rs"]
mod tests;
