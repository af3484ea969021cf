//! The systemd journal, read by running `journalctl -o json --follow` and parsing its lines.
//!
//! No libsystemd is linked: the binary stays portable, and a host without `journalctl` gets a
//! clear error for this source while the others keep running. The cursor of each entry
//! (`__CURSOR`) is handed to the pipeline with the batch, and a restart passes the last stored
//! one to `--after-cursor` (journalctl's own `--cursor-file` is not updated while following).
//!
//! A field's value may be a string, an array of bytes (text that is not valid UTF-8, kept
//! lossily), or an array of either when the field is repeated (joined by newlines).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use faultline_core::{Level, LogEvent, Origin};
use serde_json::{Map, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// Source id of entries from the journal.
pub const SOURCE_ID: &str = "journald";

/// How the journal is read.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    /// The `journalctl` to run (a path, or a name looked up in `PATH`).
    pub command: PathBuf,
    /// Only entries of these units (`--unit`); all units when empty.
    pub units: Vec<String>,
    /// Least severe syslog priority read (`--priority`): 3 = err (and more severe).
    pub max_priority: u8,
    /// With no saved cursor: read only new entries (`--lines=0`), or the whole journal.
    pub start_at_end: bool,
    /// Entries per batch, and how long a batch waits to fill.
    pub batch_size: usize,
    pub batch_wait: Duration,
    /// Wait before restarting `journalctl` after it exits, doubled each time up to the max.
    pub restart_min: Duration,
    pub restart_max: Duration,
}

impl Default for JournalConfig {
    fn default() -> Self {
        JournalConfig {
            command: PathBuf::from("journalctl"),
            units: Vec::new(),
            max_priority: 3,
            start_at_end: true,
            batch_size: 1_000,
            batch_wait: Duration::from_millis(200),
            restart_min: Duration::from_millis(500),
            restart_max: Duration::from_secs(60),
        }
    }
}

/// Entries read since the last batch, and the cursor of the last one.
#[derive(Debug)]
pub struct JournalBatch {
    pub events: Vec<LogEvent>,
    pub cursor: String,
    /// Lines journalctl printed that were not journal entries.
    pub unreadable: u64,
}

/// A batch and the channel on which the pipeline says whether it was stored.
pub type Delivery = (JournalBatch, oneshot::Sender<Result<(), String>>);

/// What the source reports about itself while it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalStatus {
    Running,
    /// journalctl could not be started or exited; it is restarted after a wait.
    Failed(String),
}

/// The arguments `journalctl` is run with.
pub fn arguments(config: &JournalConfig, after_cursor: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--output=json".to_owned(),
        "--follow".to_owned(),
        "--no-pager".to_owned(),
        format!("--priority={}", config.max_priority.min(7)),
    ];
    for unit in &config.units {
        args.push(format!("--unit={unit}"));
    }
    match after_cursor {
        Some(cursor) => args.push(format!("--after-cursor={cursor}")),
        None if config.start_at_end => args.push("--lines=0".to_owned()),
        None => args.push("--no-tail".to_owned()),
    }
    args
}

/// Runs the source until `shutdown`: starts journalctl after `cursor`, sends batches on `out`
/// and waits for each to be stored before reading on. When journalctl exits, or a batch is not
/// stored, it starts again after the last stored cursor, with growing waits.
pub async fn run(
    config: JournalConfig,
    mut cursor: Option<String>,
    out: mpsc::Sender<Delivery>,
    status: tokio::sync::watch::Sender<JournalStatus>,
    shutdown: CancellationToken,
) {
    let restarts = crate::backoff::Backoff {
        first: config.restart_min,
        factor: 2.0,
        max: config.restart_max,
        jitter: 0.0,
    };
    let mut failures = 0;
    while !shutdown.is_cancelled() {
        let started = tokio::time::Instant::now();
        let outcome = follow(&config, &mut cursor, &out, &status, &shutdown).await;
        if shutdown.is_cancelled() || out.is_closed() {
            return;
        }
        let mut message = match outcome {
            Ok(()) => "journalctl exited".to_owned(),
            Err(e) => e,
        };
        // journalctl refuses a cursor it cannot parse (another machine's, a damaged value); one
        // whose entry is gone it seeks past by itself. Starting again with a refused cursor
        // would fail forever: start where the config says instead, and say so.
        if message.contains("Failed to seek to cursor") && cursor.take().is_some() {
            let from = if config.start_at_end { "new entries only" } else { "the whole journal" };
            message = format!("journalctl refused the saved cursor ({message}); reading {from} instead");
        }
        // A journalctl that ran longer than the longest wait was healthy: start the waits over.
        failures = if started.elapsed() > config.restart_max { 1 } else { failures + 1 };
        let wait = restarts.wait(failures);
        tracing::warn!(source = SOURCE_ID, "{message}; restarting in {wait:?}");
        let _ = status.send(JournalStatus::Failed(message));
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}

async fn follow(
    config: &JournalConfig,
    cursor: &mut Option<String>,
    out: &mpsc::Sender<Delivery>,
    status: &tokio::sync::watch::Sender<JournalStatus>,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut child = Command::new(&config.command)
        .args(arguments(config, cursor.as_deref()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", config.command.display()))?;
    let _ = status.send(JournalStatus::Running);
    let stdout = child.stdout.take().ok_or("journalctl has no stdout")?;
    let stderr = child.stderr.take();
    let mut lines = BufReader::new(stdout).lines();
    let mut pending = JournalBatch { events: Vec::new(), cursor: String::new(), unreadable: 0 };
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let timer = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = lines.next_line() => {
                let line = line.map_err(|e| format!("reading journalctl output: {e}"))?;
                let Some(line) = line else {
                    deliver(&mut pending, cursor, out).await?;
                    let detail = read_stderr(stderr).await;
                    let code = child.wait().await.ok().and_then(|s| s.code());
                    return Err(match (code, detail.is_empty()) {
                        (Some(0), true) => "journalctl exited".to_owned(),
                        (code, _) => format!("journalctl exited with {code:?}: {detail}"),
                    });
                };
                match parse_entry(&line) {
                    Some((event, entry_cursor)) => {
                        pending.events.push(event);
                        pending.cursor = entry_cursor;
                    }
                    None => pending.unreadable += 1,
                }
                deadline.get_or_insert_with(|| tokio::time::Instant::now() + config.batch_wait);
                if pending.events.len() >= config.batch_size {
                    deliver(&mut pending, cursor, out).await?;
                    deadline = None;
                }
            }
            _ = timer => {
                deliver(&mut pending, cursor, out).await?;
                deadline = None;
            }
            _ = shutdown.cancelled() => {
                deliver(&mut pending, cursor, out).await?;
                let _ = child.kill().await;
                return Ok(());
            }
        }
    }
}

/// Hands the pending batch over and waits until it is stored; only then does the cursor move.
async fn deliver(
    pending: &mut JournalBatch,
    cursor: &mut Option<String>,
    out: &mpsc::Sender<Delivery>,
) -> Result<(), String> {
    if pending.cursor.is_empty() {
        return Ok(());
    }
    let batch =
        std::mem::replace(pending, JournalBatch { events: Vec::new(), cursor: String::new(), unreadable: 0 });
    let next = batch.cursor.clone();
    let (ack, stored) = oneshot::channel();
    out.send((batch, ack)).await.map_err(|_| "the pipeline stopped".to_owned())?;
    match stored.await {
        Ok(Ok(())) => {
            *cursor = Some(next);
            Ok(())
        }
        Ok(Err(e)) => Err(format!("storing journal entries failed: {e}")),
        Err(_) => Err("the pipeline stopped".to_owned()),
    }
}

async fn read_stderr(stderr: Option<tokio::process::ChildStderr>) -> String {
    use tokio::io::AsyncReadExt;
    let Some(stderr) = stderr else { return String::new() };
    let mut text = String::new();
    let _ = stderr.take(4096).read_to_string(&mut text).await;
    text.trim().to_owned()
}

/// Reads one line of `journalctl -o json`: the event and the entry's cursor. `None` for a line
/// that is not a journal entry.
pub fn parse_entry(line: &str) -> Option<(LogEvent, String)> {
    let fields: Map<String, Value> = serde_json::from_str(line).ok()?;
    let text = |key: &str| fields.get(key).and_then(field_text);
    let cursor = text("__CURSOR")?;
    let timestamp_ms = text("__REALTIME_TIMESTAMP")
        .and_then(|us| us.parse::<i64>().ok())
        .map(|us| us.div_euclid(1000))
        .or_else(|| {
            text("_SOURCE_REALTIME_TIMESTAMP").and_then(|us| us.parse::<i64>().ok()).map(|us| us / 1000)
        })?;
    let level = text("PRIORITY")
        .and_then(|p| p.trim().parse::<u8>().ok())
        .map_or(Level::Unknown, Level::from_syslog_priority);
    let message_text = text("MESSAGE").unwrap_or_default();
    let (message, traceback) = match message_text.split_once('\n') {
        Some((first, rest)) if !rest.trim().is_empty() => (first.to_owned(), Some(rest.to_owned())),
        _ => (message_text.trim_end_matches('\n').to_owned(), None),
    };
    let source =
        ["SYSLOG_IDENTIFIER", "_SYSTEMD_UNIT", "_COMM"].iter().find_map(|k| text(k)).unwrap_or_default();
    let mut metadata = Map::new();
    for (key, name) in [
        ("_SYSTEMD_UNIT", "unit"),
        ("_HOSTNAME", "hostname"),
        ("_PID", "pid"),
        ("_BOOT_ID", "boot_id"),
        ("CODE_FILE", "code_file"),
        ("CODE_FUNC", "code_func"),
    ] {
        if let Some(v) = text(key) {
            metadata.insert(name.to_owned(), Value::String(v));
        }
    }
    let event = LogEvent {
        timestamp_ms,
        level,
        source,
        message,
        traceback,
        request_path: None,
        request_method: None,
        metadata,
        raw: message_text,
        origin: Origin { source_id: SOURCE_ID.to_owned(), external_id: Some(cursor.clone()) },
    };
    Some((event, cursor))
}

/// A journal field's value as text: a string, bytes (lossy UTF-8), or a repeated field.
fn field_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_u64) => {
            let bytes: Vec<u8> = items.iter().filter_map(Value::as_u64).map(|b| b.min(255) as u8).collect();
            Some(String::from_utf8_lossy(&bytes).into_owned())
        }
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().filter_map(field_text).collect();
            (!parts.is_empty()).then(|| parts.join("\n"))
        }
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_real_entry() {
        let line = r#"{"__CURSOR":"s=739ad463;i=1b2;b=5f;m=2e;t=5f1;x=1","__REALTIME_TIMESTAMP":"1704164645678901","PRIORITY":"3","_SYSTEMD_UNIT":"api.service","SYSLOG_IDENTIFIER":"api","_PID":"812","_HOSTNAME":"web-1","MESSAGE":"upstream timed out"}"#;
        let (event, cursor) = parse_entry(line).expect("entry");
        assert_eq!(cursor, "s=739ad463;i=1b2;b=5f;m=2e;t=5f1;x=1");
        assert_eq!((event.timestamp_ms, event.level), (1_704_164_645_678, Level::Error));
        assert_eq!((event.source.as_str(), event.message.as_str()), ("api", "upstream timed out"));
        assert_eq!(event.metadata.get("unit"), Some(&Value::from("api.service")));
        assert_eq!(event.origin.external_id.as_deref(), Some(cursor.as_str()));
    }

    #[test]
    fn byte_arrays_and_repeated_fields() {
        // "bad \xff" as bytes; MESSAGE repeated; a traceback across lines.
        let line = r#"{"__CURSOR":"c1","__REALTIME_TIMESTAMP":"1000000","PRIORITY":"2","SYSLOG_IDENTIFIER":[98,97,100,32,255],"MESSAGE":["Traceback (most recent call last):","ValueError: x"]}"#;
        let (event, _) = parse_entry(line).expect("entry");
        assert_eq!(event.source, "bad \u{FFFD}");
        assert_eq!(event.level, Level::Critical);
        assert_eq!(event.message, "Traceback (most recent call last):");
        assert_eq!(event.traceback.as_deref(), Some("ValueError: x"));
    }

    #[test]
    fn lines_that_are_not_entries_are_refused() {
        for line in ["", "-- No entries --", "{}", r#"{"__CURSOR":"c"}"#, "[1,2]"] {
            assert!(parse_entry(line).is_none(), "{line}");
        }
    }

    #[test]
    fn arguments_follow_the_cursor() {
        let config = JournalConfig { units: vec!["api.service".into()], ..JournalConfig::default() };
        let args = arguments(&config, Some("s=1"));
        assert!(
            args.contains(&"--after-cursor=s=1".to_owned())
                && args.contains(&"--unit=api.service".to_owned())
        );
        assert!(arguments(&config, None).contains(&"--lines=0".to_owned()));
        assert!(args.contains(&"--priority=3".to_owned()));
    }
}
