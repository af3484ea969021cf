//! faultline's product logic: turning raw log lines into events, and events into fingerprints.
//!
//! Nothing in this crate does IO, spawns a task or reads the clock: every function takes the time
//! it needs as an argument, so the whole crate is testable with hand-made timelines.

pub mod alert;
pub mod assemble;
pub mod fingerprint;
pub mod mask;
pub mod mine;
pub mod model;
pub mod parse;
pub mod record;
pub mod scrub;
pub mod sentry;
pub mod status;
pub mod timestamp;

pub use assemble::{Assembler, AssemblerOptions};
pub use fingerprint::{
    BucketState, FINGERPRINT_VERSION, Fingerprint, Grouper, GrouperState, Grouping, MinedGroup, StackFrame,
    Tier, fingerprint, headline, title,
};
pub use mask::mask;
pub use model::{Level, LogEvent, Origin, TimestampMs};
pub use parse::{ParseContext, ParsedLine, parse_line};
pub use record::{
    RecordError, Stamp, cap_event, event_from_json, event_from_python_record, key_occurrences, plausible_time,
};
pub use status::{PatternStatus, TaskStatus, UnknownState};
pub use timestamp::{DAY_MS, HOUR_MS, MINUTE_MS, SECOND_MS};
