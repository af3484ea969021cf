//! Reading timestamps at the start of a line, or from a JSON field, into UTC milliseconds.
//!
//! Timestamps without a zone are taken as UTC. Syslog-style stamps carry no year: the caller's
//! [`crate::ParseContext`] supplies it.

/// Milliseconds in a second, a minute, an hour and a day: every time in faultline is UTC
/// milliseconds since the epoch.
pub const SECOND_MS: i64 = 1_000;
pub const MINUTE_MS: i64 = 60 * SECOND_MS;
pub const HOUR_MS: i64 = 60 * MINUTE_MS;
pub const DAY_MS: i64 = 24 * HOUR_MS;

use chrono::NaiveDate;

use crate::model::TimestampMs;

/// A timestamp found at the start of a line and the text after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix<'a> {
    pub timestamp_ms: TimestampMs,
    pub rest: &'a str,
}

/// Reads a timestamp at the very start of `line` (optionally inside `[...]`).
///
/// Accepted: RFC 3339 / ISO 8601 with `T` or space, `.` or `,` fractions and an optional zone
/// (`Z`, `+01:00`, `+0100`, ` +0000`, ` UTC`); `2024/01/31 12:00:00` (Go's log package);
/// syslog's `Jan  2 15:04:05`.
pub fn parse_prefix(line: &str, default_year: i32) -> Option<Prefix<'_>> {
    let bytes = line.as_bytes();
    if bytes.first() == Some(&b'[') {
        let close = memchr_byte(b']', bytes)?;
        let inner = &line[1..close];
        let (ms, used) = parse_at(inner, default_year)?;
        if !inner[used..].trim().is_empty() {
            return None;
        }
        return Some(Prefix { timestamp_ms: ms, rest: &line[close + 1..] });
    }
    let (ms, used) = parse_at(line, default_year)?;
    Some(Prefix { timestamp_ms: ms, rest: &line[used..] })
}

/// Reads a whole timestamp value as found in structured logs: an RFC 3339 string, or epoch
/// seconds / milliseconds / microseconds / nanoseconds as a number or numeric string.
pub fn parse_value(value: &serde_json::Value) -> Option<TimestampMs> {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                return Some(epoch_to_ms(i as f64));
            }
            n.as_f64().map(epoch_to_ms)
        }
        serde_json::Value::String(s) => {
            let s = s.trim();
            if let Ok(f) = s.parse::<f64>() {
                return Some(epoch_to_ms(f));
            }
            let (ms, used) = parse_at(s, 1970)?;
            s[used..].trim().is_empty().then_some(ms)
        }
        _ => None,
    }
}

/// Guesses the unit of an epoch number by its magnitude.
fn epoch_to_ms(v: f64) -> TimestampMs {
    let abs = v.abs();
    let ms = if abs >= 1e17 {
        v / 1e6 // nanoseconds
    } else if abs >= 1e14 {
        v / 1e3 // microseconds
    } else if abs >= 1e11 {
        v // milliseconds
    } else {
        v * 1e3 // seconds
    };
    ms as TimestampMs
}

fn memchr_byte(needle: u8, hay: &[u8]) -> Option<usize> {
    hay.iter().position(|&b| b == needle)
}

/// Parses a timestamp at the start of `s`; returns milliseconds and bytes used.
fn parse_at(s: &str, default_year: i32) -> Option<(TimestampMs, usize)> {
    let b = s.as_bytes();
    if b.len() >= 10 && b[0].is_ascii_digit() {
        return parse_iso(b).or_else(|| parse_day_month_year(b));
    }
    if b.len() >= 15 && b[0].is_ascii_uppercase() {
        return parse_syslog(b, default_year);
    }
    None
}

fn digits(b: &[u8], at: usize, n: usize) -> Option<u32> {
    let part = b.get(at..at + n)?;
    let mut v = 0u32;
    for &c in part {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u32::from(c - b'0');
    }
    Some(v)
}

fn parse_iso(b: &[u8]) -> Option<(TimestampMs, usize)> {
    let year = digits(b, 0, 4)? as i32;
    let sep = *b.get(4)?;
    if sep != b'-' && sep != b'/' {
        return None;
    }
    let month = digits(b, 5, 2)?;
    if b.get(7) != Some(&sep) {
        return None;
    }
    let day = digits(b, 8, 2)?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let mut i = 10;
    let mut ms_of_day: i64 = 0;
    if matches!(b.get(i), Some(b'T') | Some(b' ')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        let (time_ms, used) = parse_time(b, i + 1)?;
        ms_of_day = time_ms;
        i = used;
        i = parse_zone(b, i, &mut ms_of_day);
    }
    let days = date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days();
    Some((days * DAY_MS + ms_of_day, i))
}

/// `04-Mar-2024 10:15:02 UTC` (PHP's error log) and `04/Mar/2024:10:15:02 +0000` (the
/// common log format).
fn parse_day_month_year(b: &[u8]) -> Option<(TimestampMs, usize)> {
    let day = digits(b, 0, 2)?;
    let sep = *b.get(2)?;
    if (sep != b'-' && sep != b'/') || b.get(6) != Some(&sep) {
        return None;
    }
    let month = MONTHS.iter().position(|m| b.get(3..6) == Some(&m[..]))? as u32 + 1;
    let year = digits(b, 7, 4)? as i32;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    if !matches!(b.get(11), Some(b' ') | Some(b':')) {
        return None;
    }
    let (mut ms_of_day, used) = parse_time(b, 12)?;
    let end = parse_zone(b, used, &mut ms_of_day);
    let days = date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days();
    Some((days * DAY_MS + ms_of_day, end))
}

/// Reads `HH:MM[:SS[.frac]]` at `at`; returns ms of day and the index after it.
fn parse_time(b: &[u8], at: usize) -> Option<(i64, usize)> {
    let h = digits(b, at, 2)?;
    if b.get(at + 2) != Some(&b':') {
        return None;
    }
    let m = digits(b, at + 3, 2)?;
    let mut i = at + 5;
    let mut s = 0;
    if b.get(i) == Some(&b':') {
        s = digits(b, i + 1, 2)?;
        i += 3;
    }
    if h > 23 || m > 59 || s > 60 {
        return None;
    }
    let mut frac_ms = 0i64;
    if matches!(b.get(i), Some(b'.') | Some(b',')) && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        let mut scale = 100;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            frac_ms += i64::from(c - b'0') * scale;
            scale /= 10;
            i += 1;
        }
    }
    Some(((i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s)) * 1000 + frac_ms, i))
}

/// Reads an optional zone after a time and shifts `ms` to UTC; returns the index after it.
fn parse_zone(b: &[u8], at: usize, ms: &mut i64) -> usize {
    match b.get(at) {
        Some(b'Z') | Some(b'z') => return at + 1,
        Some(b'+') | Some(b'-') => {
            if let Some(end) = offset(b, at, ms) {
                return end;
            }
        }
        Some(b' ') => {
            if b.get(at + 1..at + 4) == Some(b"UTC") || b.get(at + 1..at + 4) == Some(b"GMT") {
                let end = at + 4;
                if b.get(end).is_none_or(|c| !c.is_ascii_alphanumeric()) {
                    return end;
                }
            }
            if matches!(b.get(at + 1), Some(b'+') | Some(b'-'))
                && let Some(end) = offset(b, at + 1, ms)
            {
                return end;
            }
        }
        _ => {}
    }
    at
}

fn offset(b: &[u8], at: usize, ms: &mut i64) -> Option<usize> {
    let sign: i64 = if b[at] == b'-' { -1 } else { 1 };
    let h = digits(b, at + 1, 2)?;
    let (m, end) = if b.get(at + 3) == Some(&b':') {
        (digits(b, at + 4, 2)?, at + 6)
    } else {
        (digits(b, at + 3, 2).unwrap_or(0), if digits(b, at + 3, 2).is_some() { at + 5 } else { at + 3 })
    };
    if b.get(end).is_some_and(u8::is_ascii_digit) {
        return None;
    }
    *ms -= sign * (i64::from(h) * 60 + i64::from(m)) * MINUTE_MS;
    Some(end)
}

const MONTHS: [&[u8; 3]; 12] =
    [b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec"];

fn parse_syslog(b: &[u8], year: i32) -> Option<(TimestampMs, usize)> {
    let month = MONTHS.iter().position(|m| &b[..3] == *m)? as u32 + 1;
    if b[3] != b' ' {
        return None;
    }
    let day = if b[4] == b' ' { digits(b, 5, 1)? } else { digits(b, 4, 2)? };
    if b[6] != b' ' {
        return None;
    }
    let (time_ms, end) = parse_time(b, 7)?;
    let date = NaiveDate::from_ymd_opt(year, month, day)?;
    let days = date.signed_duration_since(NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days();
    Some((days * DAY_MS + time_ms, end))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(line: &str, ms: i64, rest: &str) {
        let p = parse_prefix(line, 2024).expect("timestamp");
        assert_eq!((p.timestamp_ms, p.rest), (ms, rest));
    }

    // 2024-01-02T03:04:05Z
    const T: i64 = 1_704_164_645_000;

    #[test]
    fn iso_forms() {
        check("2024-01-02T03:04:05Z x", T, " x");
        check("2024-01-02 03:04:05,123 ERROR", T + 123, " ERROR");
        check("2024-01-02T03:04:05.123456+00:00 y", T + 123, " y");
        check("2024-01-02T04:04:05+01:00 y", T, " y");
        check("2024-01-02T04:04:05+0100 y", T, " y");
        check("[2024-01-02 03:04:05 +0000] [12]", T, " [12]");
        check("2024/01/02 03:04:05 panic", T, " panic");
        check("2024-01-02 03:04:05 UTC | x", T, " | x");
    }

    #[test]
    fn syslog_form_takes_year_from_context() {
        check("Jan  2 03:04:05 host app[1]: boom", T, " host app[1]: boom");
    }

    #[test]
    fn rejects_non_timestamps() {
        for line in ["2024-13-02 x", "12345", "Hello world", "[not a date] x", "2024-02-30"] {
            assert_eq!(parse_prefix(line, 2024), None, "{line}");
        }
    }

    #[test]
    fn epoch_values() {
        assert_eq!(parse_value(&serde_json::json!(1_704_164_645)), Some(T));
        assert_eq!(parse_value(&serde_json::json!(1_704_164_645_000i64)), Some(T));
        assert_eq!(parse_value(&serde_json::json!(1_704_164_645.5)), Some(T + 500));
        assert_eq!(parse_value(&serde_json::json!("2024-01-02T03:04:05Z")), Some(T));
    }
}
