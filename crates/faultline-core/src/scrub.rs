//! Scrubbing before storage, like Sentry's server-side data scrubbing: values that look secret
//! become `[Filtered]` in the message, the traceback, the raw line and the metadata, on every
//! path, before anything is fingerprinted or written.
//!
//! What is filtered: the value after a key naming a secret (`password=…`, `"api_key": "…"`,
//! `Cookie: …`), the credential after `Bearer`/`Basic`/`Token`, and card numbers (13 to 19
//! digits, spaces or dashes between, that pass the Luhn check). In metadata, the whole value of
//! a key naming a secret, and secrets inside string values.
//!
//! [`Rules`] adds to the defaults what a deployment configures (`[scrub]`): more key names,
//! safe fields that are never filtered, patterns of its own and, optionally, IP addresses. The
//! process's rules are installed once at start-up ([`install`]); until then the defaults hold.

use std::sync::OnceLock;

use aho_corasick::AhoCorasick;
use regex::Regex;
use serde_json::Value;

use crate::model::LogEvent;

/// What a filtered value is replaced with.
pub const FILTERED: &str = "[Filtered]";

/// Parts of key names whose values are secret (case-insensitive), as Sentry's defaults.
const SECRET_KEYS: [&str; 15] = [
    "password",
    "passwd",
    "pwd",
    "secret",
    "token",
    "api_key",
    "apikey",
    "access_key",
    "private_key",
    "privatekey",
    "auth",
    "credential",
    "session",
    "cookie",
    "csrf",
];

/// Authorisation schemes whose following word is a credential.
const SCHEMES: [&str; 3] = ["bearer", "basic", "token"];

/// What is scrubbed beyond the defaults.
#[derive(Debug, Clone)]
pub struct Rules {
    /// The parts of key names whose values are secret, the defaults and the configured ones,
    /// found in one pass over a key whatever their number (ASCII case ignored).
    secret_parts: AhoCorasick,
    /// Key names (lower-case, whole) never filtered, though they name a secret's word.
    safe_fields: Vec<String>,
    /// Text matching any of these (IP addresses among them, when asked) is filtered.
    patterns: Vec<Regex>,
}

impl Rules {
    /// Rules from configuration; an invalid pattern is an error naming it.
    pub fn new(
        keys: &[String],
        safe_fields: &[String],
        patterns: &[String],
        ip_addresses: bool,
    ) -> Result<Rules, String> {
        let lower = |v: &[String]| -> Vec<String> {
            v.iter().map(|k| k.trim().to_ascii_lowercase()).filter(|k| !k.is_empty()).collect()
        };
        let mut compiled = Vec::with_capacity(patterns.len() + 1);
        for p in patterns {
            compiled.push(Regex::new(p).map_err(|e| format!("invalid scrub pattern {p:?}: {e}"))?);
        }
        if ip_addresses {
            compiled.push(Regex::new(IP_ADDRESS).expect("a valid pattern"));
        }
        Ok(Rules {
            secret_parts: secret_parts(&lower(keys)),
            safe_fields: lower(safe_fields),
            patterns: compiled,
        })
    }

    /// Whether a key names a secret.
    pub fn secret_key(&self, key: &str) -> bool {
        let key = key.as_bytes();
        if self.safe_fields.iter().any(|f| f.as_bytes().eq_ignore_ascii_case(key)) {
            return false;
        }
        self.secret_parts.is_match(key)
    }

    /// Scrubs an event in place; returns how many values were filtered.
    pub fn scrub_event(&self, event: &mut LogEvent) -> usize {
        let mut n = self.scrub_string(&mut event.message) + self.scrub_string(&mut event.raw);
        if let Some(t) = event.traceback.as_mut() {
            n += self.scrub_string(t);
        }
        for (key, value) in event.metadata.iter_mut() {
            n += self.scrub_value(key, value);
        }
        n
    }

    fn scrub_string(&self, s: &mut String) -> usize {
        match self.scrub_text(s) {
            Some((clean, n)) => {
                *s = clean;
                n
            }
            None => 0,
        }
    }

    fn scrub_value(&self, key: &str, value: &mut Value) -> usize {
        if self.secret_key(key) && !value.is_null() && *value != Value::String(FILTERED.to_owned()) {
            *value = Value::String(FILTERED.to_owned());
            return 1;
        }
        match value {
            Value::String(s) => self.scrub_string(s),
            Value::Array(items) => items.iter_mut().map(|v| self.scrub_value("", v)).sum(),
            Value::Object(map) => map.iter_mut().map(|(k, v)| self.scrub_value(k, v)).sum(),
            _ => 0,
        }
    }

    /// The text with secrets filtered and how many, or `None` when there was nothing to filter.
    pub fn scrub_text(&self, text: &str) -> Option<(String, usize)> {
        let scanned = self.scan(text);
        if self.patterns.is_empty() {
            return scanned;
        }
        let (mut out, mut n) = scanned.unwrap_or_else(|| (text.to_owned(), 0));
        for pattern in &self.patterns {
            let mut found = 0;
            let replaced = pattern.replace_all(&out, |c: &regex::Captures| {
                if &c[0] == FILTERED || c[0].is_empty() {
                    c[0].to_owned()
                } else {
                    found += 1;
                    FILTERED.to_owned()
                }
            });
            if found > 0 {
                out = replaced.into_owned();
                n += found;
            }
        }
        (n > 0).then_some((out, n))
    }

    /// One pass over the words of `text`: at a word's start, a secret key's value, a scheme's
    /// credential or a run of digits; the text is copied only once something is filtered. Each
    /// word is read once, and only the rare word a test fits is looked at again.
    fn scan(&self, text: &str) -> Option<(String, usize)> {
        let b = text.as_bytes();
        let mut out = String::new();
        let (mut i, mut copied, mut n) = (0, 0, 0);
        while i < b.len() {
            let c = b[i];
            if !is_word_byte(c) {
                i += 1;
                continue;
            }
            // Inside a word (after a value filtered or a run of digits that was not a card):
            // nothing starts here.
            if i > 0 && is_word_byte(b[i - 1]) {
                i += run(&b[i..], is_word_byte);
                continue;
            }
            let word_end = i + run(&b[i..], is_word_byte);
            // A key may go on over dashes (`X-Api-Key`).
            let key_end = word_end + run(&b[word_end..], |c| is_word_byte(c) || c == b'-');
            let found = assignment(b, key_end).and_then(|_| secret_value_at(self, text, i)).or_else(|| {
                // A scheme is a whole word followed by a space.
                let scheme = matches!(word_end - i, 5 | 6) && matches!(c | 0x20, b'b' | b't');
                if scheme { credential_at(text, i) } else { None }
            });
            if let Some((start, end)) = found {
                out.push_str(&text[copied..start]);
                out.push_str(FILTERED);
                copied = end;
                i = end;
                n += 1;
                continue;
            }
            if c.is_ascii_digit()
                && let Some((end, card)) = digit_run(b, i)
            {
                if card {
                    out.push_str(&text[copied..i]);
                    out.push_str(FILTERED);
                    copied = end;
                    n += 1;
                }
                // A run of digits is a card or not as a whole, never from one of its groups on.
                i = end;
                continue;
            }
            i = word_end;
        }
        if n == 0 {
            return None;
        }
        out.push_str(&text[copied..]);
        Some((out, n))
    }
}

impl Default for Rules {
    fn default() -> Rules {
        Rules { secret_parts: secret_parts(&[]), safe_fields: Vec::new(), patterns: Vec::new() }
    }
}

/// The default parts of secret key names and `more`, as one case-insensitive automaton.
fn secret_parts(more: &[String]) -> AhoCorasick {
    let parts = SECRET_KEYS.iter().copied().chain(more.iter().map(String::as_str));
    AhoCorasick::builder().ascii_case_insensitive(true).build(parts).expect("plain words make an automaton")
}

/// A byte of a word: what a key, a scheme or a run of digits starts with.
fn is_word_byte(c: u8) -> bool {
    WORD_BYTES[usize::from(c)]
}

/// [`is_word_byte`] as a table: one load per byte where the scan steps byte by byte.
static WORD_BYTES: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = (c as u8).is_ascii_alphanumeric() || c == b'_' as usize;
        c += 1;
    }
    table
};

/// How many bytes at the start of `b` pass `test`.
fn run(b: &[u8], test: impl Fn(u8) -> bool) -> usize {
    b.iter().position(|&c| !test(c)).unwrap_or(b.len())
}

/// Where the value of a key ending at `key_end` starts, when it is given one: after `=` or
/// `:`, a closing quote and spaces allowed before it.
fn assignment(b: &[u8], key_end: usize) -> Option<usize> {
    let mut j = key_end;
    if matches!(b.get(j), Some(b'"' | b'\'')) {
        j += 1;
    }
    j += run(&b[j.min(b.len())..], |c| c == b' ');
    matches!(b.get(j), Some(b'=' | b':')).then_some(j + 1)
}

/// At the start of a key naming a secret, followed by `=`, `:` (spaces, quotes around): the
/// value's byte range.
fn secret_value_at(rules: &Rules, text: &str, i: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    if !is_word_byte(b[i]) || i > 0 && is_word_byte(b[i - 1]) {
        return None;
    }
    let key_end = i + run(&b[i..], |c| is_word_byte(c) || c == b'-');
    // The cheap test first: most words are not followed by `=` or `:`.
    let mut j = assignment(b, key_end)?;
    if !rules.secret_key(&text[i..key_end]) {
        return None;
    }
    j += run(&b[j..], |c| c == b' ');
    if text[j..].starts_with(FILTERED) {
        return None;
    }
    let (start, end) = match b.get(j) {
        Some(&q @ (b'"' | b'\'')) => {
            let close = b[j + 1..].iter().position(|&c| c == q)? + j + 1;
            (j + 1, close)
        }
        _ => {
            let len = b[j..]
                .iter()
                .take_while(|c| {
                    !c.is_ascii_whitespace() && !matches!(c, b',' | b';' | b'&' | b')' | b']' | b'}')
                })
                .count();
            // `Authorization: Bearer abc` — the scheme stays, the credential goes.
            let word = &text[j..j + len];
            if SCHEMES.iter().any(|s| word.eq_ignore_ascii_case(s)) {
                return credential_at(text, j);
            }
            (j, j + len)
        }
    };
    (end > start && &text[start..end] != FILTERED).then_some((start, end))
}

/// An IPv4 address, or an IPv6 address written in full or with `::` after at least one group
/// (`2001:db8::7`, `fe80::1`); not `12:30:45`, not `Cache::add`.
const IP_ADDRESS: &str = concat!(
    r"\b(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\b",
    r"|\b(?:[0-9A-Fa-f]{1,4}:){7}[0-9A-Fa-f]{1,4}\b",
    r"|\b(?:[0-9A-Fa-f]{1,4}:){1,6}:(?:[0-9A-Fa-f]{1,4}(?::[0-9A-Fa-f]{1,4})*\b)?",
);

static RULES: OnceLock<Rules> = OnceLock::new();

/// Makes `rules` the process's rules, once; `false` if rules were installed before.
pub fn install(rules: Rules) -> bool {
    RULES.set(rules).is_ok()
}

fn rules() -> &'static Rules {
    static DEFAULT: OnceLock<Rules> = OnceLock::new();
    RULES.get().unwrap_or_else(|| DEFAULT.get_or_init(Rules::default))
}

/// Whether a key names a secret, under the process's rules.
pub fn secret_key(key: &str) -> bool {
    rules().secret_key(key)
}

/// Scrubs an event in place under the process's rules; returns how many values were filtered.
pub fn scrub_event(event: &mut LogEvent) -> usize {
    rules().scrub_event(event)
}

/// The text with secrets filtered under the process's rules, and how many; `None` when there
/// was nothing to filter.
pub fn scrub_text(text: &str) -> Option<(String, usize)> {
    rules().scrub_text(text)
}

/// At `Bearer`/`Basic`/`Token` followed by a space and a credential: the credential's range.
fn credential_at(text: &str, i: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    if i > 0 && b[i - 1].is_ascii_alphanumeric() {
        return None;
    }
    let scheme = SCHEMES
        .iter()
        .find(|s| b.len() - i > s.len() && b[i..i + s.len()].eq_ignore_ascii_case(s.as_bytes()))?;
    let mut j = i + scheme.len();
    if b.get(j) != Some(&b' ') {
        return None;
    }
    while b.get(j) == Some(&b' ') {
        j += 1;
    }
    let len = b[j..]
        .iter()
        .take_while(|c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'~' | b'+' | b'/' | b'=')
        })
        .count();
    // A credential is long and not a plain word ("token expired" is not one).
    let word = &text[j..j + len];
    let credential = len >= 8
        && word.bytes().any(|c| c.is_ascii_digit() || matches!(c, b'-' | b'_' | b'.' | b'/' | b'+' | b'='));
    (credential && word != FILTERED).then_some((j, j + len))
}

/// At the start of a run of digits (single spaces or dashes between groups), not inside a
/// word: where the run ends, and whether it is a card number (13–19 digits passing Luhn).
fn digit_run(b: &[u8], i: usize) -> Option<(usize, bool)> {
    if !b[i].is_ascii_digit()
        || (i > 0 && (b[i - 1].is_ascii_alphanumeric() || matches!(b[i - 1], b'.' | b'_')))
    {
        return None;
    }
    // Up to 20 digits are kept: a longer run is not a card number, whatever it holds.
    let mut digits = [0u8; 20];
    let mut count = 0;
    let (mut j, mut end) = (i, i);
    while j < b.len() {
        if b[j].is_ascii_digit() {
            if count < digits.len() {
                digits[count] = b[j] - b'0';
            }
            count += 1;
            j += 1;
            end = j;
        } else if matches!(b[j], b' ' | b'-') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
            j += 1;
        } else {
            break;
        }
    }
    let longer = b.get(end).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    Some((end, (13..=19).contains(&count) && !longer && luhn(&digits[..count])))
}

fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(k, &d)| {
            let d = u32::from(d);
            if k % 2 == 1 {
                let x = d * 2;
                if x > 9 { x - 9 } else { x }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> String {
        scrub_text(text).map_or_else(|| text.to_owned(), |(s, _)| s)
    }

    #[test]
    fn secrets_in_text_are_filtered_and_the_rest_kept() {
        let cases = [
            ("login failed password=hunter2 for bob", "login failed password=[Filtered] for bob"),
            (
                r#"{"api_key": "sk_live_51Habc", "user": "bob"}"#,
                r#"{"api_key": "[Filtered]", "user": "bob"}"#,
            ),
            ("Authorization: Bearer eyJhbGciOi.JIUzI1NiJ9.x", "Authorization: Bearer [Filtered]"),
            ("upstream said 401 to Bearer abc.def-123456", "upstream said 401 to Bearer [Filtered]"),
            ("Cookie: sessionid=9f8e7d6c; theme=dark", "Cookie: [Filtered]; theme=dark"),
            ("charge 4111 1111 1111 1111 declined", "charge [Filtered] declined"),
            ("card 4111-1111-1111-1111", "card [Filtered]"),
            // Not Luhn-valid, part of a longer number, a plain word after a scheme: kept.
            ("order 4111111111111112 shipped", "order 4111111111111112 shipped"),
            ("trace id 12345678901234567890123 lost", "trace id 12345678901234567890123 lost"),
            ("token expired for user 7", "token expired for user 7"),
            ("connection refused to 10.0.0.7:5432", "connection refused to 10.0.0.7:5432"),
        ];
        for (input, want) in cases {
            assert_eq!(clean(input), want, "{input}");
        }
        assert_eq!(scrub_text("nothing here"), None);
        assert_eq!(clean("password=[Filtered]"), "password=[Filtered]", "idempotent");
    }

    #[test]
    fn metadata_keys_naming_secrets_lose_their_values() {
        let mut event = LogEvent {
            timestamp_ms: 0,
            level: crate::Level::Error,
            source: "api".into(),
            message: "boom".into(),
            traceback: Some("ValueError: password=swordfish".into()),
            request_path: None,
            request_method: None,
            metadata: [
                (
                    "headers".to_owned(),
                    serde_json::json!({"Authorization": "Basic dXNlcjpwYXNz", "Accept": "*/*"}),
                ),
                ("db_password".to_owned(), serde_json::json!(1234)),
                ("note".to_owned(), serde_json::json!(["paid with 5555 5555 5555 4444"])),
            ]
            .into_iter()
            .collect(),
            raw: "boom token=abc123".into(),
            origin: crate::Origin { source_id: "test".into(), external_id: None },
        };
        assert_eq!(scrub_event(&mut event), 5);
        assert_eq!(
            event.metadata["headers"],
            serde_json::json!({"Authorization": FILTERED, "Accept": "*/*"})
        );
        assert_eq!(event.metadata["db_password"], FILTERED);
        assert_eq!(event.metadata["note"], serde_json::json!(["paid with [Filtered]"]));
        assert_eq!(event.traceback.as_deref(), Some("ValueError: password=[Filtered]"));
        assert_eq!(event.raw, "boom token=[Filtered]");
    }

    #[test]
    fn configured_keys_safe_fields_patterns_and_addresses() {
        let rules = Rules::new(
            &["IBAN".to_owned()],
            &["session_id".to_owned()],
            &[r"\bACCT-\d{6}\b".to_owned()],
            true,
        )
        .unwrap();
        let clean = |t: &str| rules.scrub_text(t).map_or_else(|| t.to_owned(), |(s, _)| s);
        assert_eq!(clean("refund to iban=DE89370400440532013000 failed"), "refund to iban=[Filtered] failed");
        assert_eq!(clean("session_id=42 expired"), "session_id=42 expired", "a safe field");
        assert_eq!(clean("sessionid=42 expired"), "sessionid=[Filtered] expired", "only the named field");
        assert_eq!(clean("account ACCT-123456 locked"), "account [Filtered] locked");
        assert_eq!(
            clean("from 203.0.113.9 and 2001:db8::7 via fe80::1"),
            "from [Filtered] and [Filtered] via [Filtered]"
        );
        assert_eq!(
            clean("version 1.2.3 at 12:30:45 in Cache::add"),
            "version 1.2.3 at 12:30:45 in Cache::add"
        );
        assert_eq!(rules.scrub_text("from [Filtered]"), None, "idempotent");
        assert!(
            Rules::new(&[], &[], &["(".to_owned()], false).unwrap_err().contains("invalid scrub pattern")
        );
        // The defaults keep addresses: they are what an operator reads a connection error for.
        assert_eq!(Rules::default().scrub_text("refused by 10.0.0.7"), None);
    }
}
