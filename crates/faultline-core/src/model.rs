//! The log event model every source produces and every store keeps.

use std::borrow::Cow;
use std::fmt;

use sha2::{Digest, Sha256};

/// Milliseconds since the Unix epoch, UTC.
pub type TimestampMs = i64;

/// Severity of a log event, ordered from least to most severe.
///
/// `Unknown` is for lines whose level cannot be told; it sorts below `Trace` so a minimum-level
/// filter never keeps it by accident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Unknown,
    Trace,
    Debug,
    Info,
    Warning,
    Error,
    Critical,
}

impl Level {
    /// Every level a user can name, in ascending severity.
    pub const ALL: [Level; 7] = [
        Level::Unknown,
        Level::Trace,
        Level::Debug,
        Level::Info,
        Level::Warning,
        Level::Error,
        Level::Critical,
    ];

    /// Reads a level name or one of its common aliases, case-insensitively.
    ///
    /// Aliases come from the logging libraries faultline meets: `err`, `warn`, `fatal`, `crit`,
    /// `panic`, `emerg`, `alert`, `notice`, syslog's `eror`, and single letters used by glog-style
    /// loggers are not accepted because they are too easy to confuse with message text.
    pub fn parse(name: &str) -> Option<Level> {
        let name = name.trim();
        if name.is_empty() || name.len() > 11 {
            return None;
        }
        let mut buf = [0u8; 11];
        let lower = &mut buf[..name.len()];
        lower.copy_from_slice(name.as_bytes());
        lower.make_ascii_lowercase();
        Some(match &*lower {
            // Serilog writes VRB DBG INF WRN ERR FTL
            b"trace" | b"verbose" | b"vrb" => Level::Trace,
            b"debug" | b"dbg" => Level::Debug,
            b"info" | b"information" | b"informational" | b"notice" | b"inf" => Level::Info,
            b"warn" | b"warning" | b"wrn" => Level::Warning,
            b"error" | b"err" | b"eror" | b"exception" => Level::Error,
            b"critical" | b"crit" | b"fatal" | b"ftl" | b"panic" | b"emerg" | b"emergency" | b"alert"
            | b"severe" => Level::Critical,
            _ => return None,
        })
    }

    /// Maps a syslog / journald priority (0 = emerg … 7 = debug).
    pub fn from_syslog_priority(priority: u8) -> Level {
        match priority {
            0..=2 => Level::Critical,
            3 => Level::Error,
            4 => Level::Warning,
            5 | 6 => Level::Info,
            _ => Level::Debug,
        }
    }

    /// Maps a numeric level as used by Python's logging (10..50), pino/bunyan (10..60) and
    /// Monolog (100..600).
    pub fn from_number(n: i64) -> Option<Level> {
        Some(match n {
            10 => Level::Debug, // Python DEBUG; pino "trace" is 10 too, close enough
            20 => Level::Info,  // Python INFO; pino "debug"
            30 => Level::Warning,
            40 => Level::Error,
            50 => Level::Critical,
            60 => Level::Critical,
            // Monolog: 100 DEBUG, 200 INFO, 250 NOTICE, 300 WARNING, 400 ERROR, 500 CRITICAL,
            // 550 ALERT, 600 EMERGENCY
            100 => Level::Debug,
            200 | 250 => Level::Info,
            300 => Level::Warning,
            400 => Level::Error,
            500 | 550 | 600 => Level::Critical,
            _ => return None,
        })
    }

    /// The canonical upper-case name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Unknown => "UNKNOWN",
            Level::Trace => "TRACE",
            Level::Debug => "DEBUG",
            Level::Info => "INFO",
            Level::Warning => "WARNING",
            Level::Error => "ERROR",
            Level::Critical => "CRITICAL",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where an event came from, precise enough to make ingestion idempotent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// Stable id of the source, e.g. `file:/var/log/app.log` or `railway:<env id>`.
    pub source_id: String,
    /// An id the source gives the event (byte offset of its first line in a file, a journal
    /// cursor, an API id; for records sent without one, `record::key_occurrences`). `None` only
    /// for events built by hand (benchmarks, seeds): the store then derives one from a content
    /// hash within a one-second window, which would count identical events of one second once.
    pub external_id: Option<String>,
}

/// One log event: a single line, or a multi-line block such as a message and its traceback.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEvent {
    pub timestamp_ms: TimestampMs,
    pub level: Level,
    /// Logger, module or service name; empty when unknown.
    pub source: String,
    pub message: String,
    /// The traceback or stack dump joined to this event, lines separated by `\n`.
    pub traceback: Option<String>,
    pub request_path: Option<String>,
    pub request_method: Option<String>,
    /// Extra structured fields (JSON object), e.g. what a JSON line carried beyond the known keys.
    pub metadata: serde_json::Map<String, serde_json::Value>,
    /// The event's text as read, all lines joined by `\n`.
    pub raw: String,
    pub origin: Origin,
}

impl LogEvent {
    /// The id that makes storing this event idempotent: the source's external id, or else (for
    /// events built by hand, see [`Origin::external_id`]) a hash of the message within its
    /// one-second window.
    pub fn idempotency_key(&self) -> Cow<'_, str> {
        if let Some(id) = &self.origin.external_id {
            return Cow::Borrowed(id);
        }
        let mut hasher = Sha256::new();
        hasher.update(self.timestamp_ms.div_euclid(1000).to_le_bytes());
        hasher.update(self.level.as_str().as_bytes());
        hasher.update(self.source.as_bytes());
        hasher.update(b"\n");
        hasher.update(self.message.as_bytes());
        hasher.update(b"\n");
        hasher.update(self.traceback.as_deref().unwrap_or("").as_bytes());
        let digest = hasher.finalize();
        Cow::Owned(format!("h:{}", crate::fingerprint::hex_lower(&digest[..16])))
    }
}
