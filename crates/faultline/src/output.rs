//! What the read commands print: plain tables for people, JSON (`--json`) for programs.
//!
//! Log text is untrusted: control characters are shown escaped so a log line can never move
//! the cursor, recolour or retitle the user's terminal.

use std::fmt::Write;
use std::io::Write as _;

/// `println!` for command output: a closed pipe (`faultline search … | head -1`) comes back as
/// an error the command returns, and `main` ends quietly on it.
macro_rules! outln {
    ($($arg:tt)*) => { $crate::output::write_out(format_args!("{}\n", format_args!($($arg)*))) };
}
/// `print!` for command output, as [`outln!`].
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::write_out(format_args!($($arg)*)) };
}

pub fn write_out(args: std::fmt::Arguments<'_>) -> std::io::Result<()> {
    let mut stdout = std::io::stdout().lock();
    stdout.write_fmt(args)?;
    stdout.flush()
}

/// True when `e` comes from writing to a pipe whose reader has gone.
pub fn is_closed_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

use faultline_store::{ErrorRate, PatternRow, SearchPage, SearchQuery};
use faultline_web::api::LogView;
use serde_json::{Value, json};

use faultline_runtime::ingest::IngestSummary;

pub fn ingest_summary(name: &str, s: &IngestSummary) -> String {
    let mut out = format!(
        "{name}: {} lines read, {} events, {} errors stored, {} duplicates skipped, {} new patterns",
        s.lines_read, s.events, s.store.stored, s.store.duplicates, s.store.new_patterns
    );
    if s.below_level > 0 {
        let _ = write!(out, ", {} below the minimum level counted", s.below_level);
    }
    if s.store.capped > 0 {
        let _ = write!(out, ", {} over the per-minute cap counted only", s.store.capped);
    }
    if s.cut_lines > 0 {
        let _ = write!(out, ", {} over-long lines cut", s.cut_lines);
    }
    out
}

/// `text` with control characters escaped and cut to `max` characters.
pub fn terminal_safe(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max + 8));
    for (n, c) in text.chars().enumerate() {
        if n >= max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push_str("⏎ "),
            c if c.is_control() || is_format_control(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    out
}

/// Unicode format characters that reorder or hide text (bidi overrides and isolates, zero-width
/// characters): shown escaped, so a log line cannot make the terminal show something else.
fn is_format_control(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2069}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}' | '\u{E0000}'..='\u{E007F}')
}

/// A byte count for people: `0 bytes`, `12.3 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

pub fn time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_else(|| ms.to_string())
}

pub fn search_table(q: &SearchQuery, page: &SearchPage) -> String {
    let mut out = String::new();
    for e in &page.entries {
        let _ = writeln!(
            out,
            "{}  {:<8}  {:<20}  {}",
            time(e.timestamp_ms),
            e.level,
            terminal_safe(&e.source, 20),
            terminal_safe(&e.message, 120)
        );
    }
    let shown_to = q.offset as usize + page.entries.len();
    let _ = writeln!(
        out,
        "{} of {} matching entries shown",
        shown_to.saturating_sub(q.offset as usize),
        page.total
    );
    out
}

/// The API's page of logs (`GET /api/monitoring/logs`), by the same names.
pub fn search_json(q: &SearchQuery, page: &SearchPage) -> Value {
    json!({
        "total": page.total,
        "total_capped": page.total_capped,
        "limit": q.limit,
        "offset": q.offset,
        "logs": page.entries.iter().cloned().map(LogView::from).collect::<Vec<_>>(),
    })
}

pub fn patterns_table(rows: &[PatternRow]) -> String {
    let mut out =
        format!("{:>8}  {:<8}  {:<16}  {:<24}  {}\n", "COUNT", "LEVEL", "ID", "LAST SEEN", "PATTERN");
    for p in rows {
        let what = match &p.error_type {
            Some(t) if !p.normalized_message.starts_with(t.as_str()) => {
                format!("[{t}] {}", p.normalized_message)
            }
            _ => p.normalized_message.clone(),
        };
        let _ = writeln!(
            out,
            "{:>8}  {:<8}  {:<16}  {:<24}  {}",
            p.occurrence_count,
            p.severity,
            &p.fingerprint[..16.min(p.fingerprint.len())],
            time(p.last_seen_ms),
            terminal_safe(&what, 100)
        );
    }
    if rows.is_empty() {
        out.push_str("no patterns yet: run `faultline ingest FILE` first\n");
    }
    out
}

pub fn patterns_json(rows: &[PatternRow]) -> Value {
    Value::Array(
        rows.iter()
            .map(|p| {
                // The API's names (`PatternView`), so scripts read both alike.
                json!({
                    "id": p.fingerprint,
                    "fingerprint": p.fingerprint,
                    "fingerprint_version": p.fingerprint_version,
                    "tier": p.tier,
                    "template": p.normalized_message,
                    "error_type": p.error_type,
                    "frames": p.frames,
                    "occurrence_count": p.occurrence_count,
                    "first_seen": time(p.first_seen_ms),
                    "last_seen": time(p.last_seen_ms),
                    "sample_message": p.sample_message,
                    "source": p.source,
                    "level": p.severity,
                    "status": p.status,
                })
            })
            .collect(),
    )
}

pub fn rate_table(hours: u32, r: &ErrorRate) -> String {
    let mut out =
        format!("last {hours}h: {} errors, {:.2} per minute\n", r.total_errors, r.errors_per_minute);
    out.push_str("by level:\n");
    for (level, n) in &r.by_level {
        let _ = writeln!(out, "  {level:<10} {n}");
    }
    out.push_str("by source:\n");
    for (source, n) in &r.by_source {
        let _ = writeln!(out, "  {:<30} {n}", terminal_safe(source, 30));
    }
    out
}

/// The API's rate report (`GET /api/monitoring/logs/rate`) by the same names, without its trend.
pub fn rate_json(hours: u32, r: &ErrorRate) -> Value {
    json!({
        "period_hours": hours,
        "total_errors": r.total_errors,
        "errors_per_minute": r.errors_per_minute,
        "by_source": r.by_source,
        "by_level": r.by_level,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_never_reach_the_terminal_raw() {
        assert_eq!(terminal_safe("red \u{1b}[31m bell\u{7}", 50), "red \\u{1b}[31m bell\\u{7}");
        assert_eq!(terminal_safe("abcdef", 3), "abc…");
    }
}
