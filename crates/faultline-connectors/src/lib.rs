//! Sources that bring log lines in. Each hands lines with their position to the pipeline and
//! never saves its own cursor: the pipeline stores records and cursor in one transaction.

pub mod backoff;
pub mod file;
mod http;
pub mod journal;
pub mod notify;
pub mod railway;
pub mod railway_live;
pub mod tail;
