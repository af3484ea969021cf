//! Scrubbing before storage, like Sentry's server-side data scrubbing: values that look secret
//! become `[Filtered]` in the message, the traceback, the raw line and the metadata, on every
//! path, before anything is fingerprinted or written.
//!
//! What is filtered: the value after a key naming a secret (`password=…`, `"api_key": "…"`,
//! `Cookie: …`), the credential after `Bearer`/`Basic`/`Token`, and card numbers (13 to 19
//! digits, spaces or dashes between, that pass the Luhn check). In metadata, the whole value of
//! a key naming a secret, and secrets inside string values.

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

/// Whether a key names a secret.
pub fn secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    SECRET_KEYS.iter().any(|s| key.contains(s))
}

/// Scrubs an event in place; returns how many values were filtered.
pub fn scrub_event(event: &mut LogEvent) -> usize {
    let mut n = scrub_string(&mut event.message) + scrub_string(&mut event.raw);
    if let Some(t) = event.traceback.as_mut() {
        n += scrub_string(t);
    }
    for (key, value) in event.metadata.iter_mut() {
        n += scrub_value(key, value);
    }
    n
}

fn scrub_string(s: &mut String) -> usize {
    match scrub_text(s) {
        Some((clean, n)) => {
            *s = clean;
            n
        }
        None => 0,
    }
}

fn scrub_value(key: &str, value: &mut Value) -> usize {
    if secret_key(key) && !value.is_null() && *value != Value::String(FILTERED.to_owned()) {
        *value = Value::String(FILTERED.to_owned());
        return 1;
    }
    match value {
        Value::String(s) => scrub_string(s),
        Value::Array(items) => items.iter_mut().map(|v| scrub_value("", v)).sum(),
        Value::Object(map) => map.iter_mut().map(|(k, v)| scrub_value(k, v)).sum(),
        _ => 0,
    }
}

/// The text with secrets filtered and how many, or `None` when there was nothing to filter.
pub fn scrub_text(text: &str) -> Option<(String, usize)> {
    if !might_hold_secrets(text) {
        return None;
    }
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut copied, mut n) = (0, 0, 0);
    while i < b.len() {
        if let Some((start, end)) = secret_value_at(text, i).or_else(|| credential_at(text, i)) {
            out.push_str(&text[copied..start]);
            out.push_str(FILTERED);
            copied = end;
            i = end;
            n += 1;
            continue;
        }
        if let Some((end, card)) = digit_run(b, i) {
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
        // Next word or digit run.
        let c = b[i];
        i += 1;
        if c.is_ascii_alphanumeric() || c == b'_' {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
        }
        while i < b.len() && !text.is_char_boundary(i) {
            i += 1;
        }
    }
    if n == 0 {
        return None;
    }
    out.push_str(&text[copied..]);
    Some((out, n))
}

/// A cheap look, without allocating, for anything worth scanning: a secret key's word, a
/// scheme, or a run of 13 digits (spaces or dashes between groups, as card numbers are written;
/// a timestamp's run stops at its colons).
fn might_hold_secrets(text: &str) -> bool {
    let b = text.as_bytes();
    let mut run = 0;
    for (i, &c) in b.iter().enumerate() {
        if c.is_ascii_digit() {
            run += 1;
            if run >= 13 {
                return true;
            }
            continue;
        }
        if !(matches!(c, b' ' | b'-') && b.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            run = 0;
        }
        if matches!(c | 0x20, b'p' | b's' | b't' | b'a' | b'c' | b'b') {
            let rest = &b[i..];
            if SECRET_KEYS
                .iter()
                .chain(SCHEMES.iter())
                .any(|k| rest.len() >= k.len() && rest[..k.len()].eq_ignore_ascii_case(k.as_bytes()))
            {
                return true;
            }
        }
    }
    false
}

/// At the start of a key naming a secret, followed by `=`, `:` (spaces, quotes around): the
/// value's byte range.
fn secret_value_at(text: &str, i: usize) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    if !(b[i].is_ascii_alphanumeric() || b[i] == b'_')
        || i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_')
    {
        return None;
    }
    let key_end =
        i + b[i..].iter().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-')).count();
    if key_end == i || !secret_key(&text[i..key_end]) {
        return None;
    }
    let mut j = key_end;
    if b.get(j) == Some(&b'"') || b.get(j) == Some(&b'\'') {
        j += 1;
    }
    while b.get(j) == Some(&b' ') {
        j += 1;
    }
    if !matches!(b.get(j), Some(b'=' | b':')) {
        return None;
    }
    j += 1;
    while b.get(j) == Some(&b' ') {
        j += 1;
    }
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
    let mut digits = Vec::with_capacity(19);
    let (mut j, mut end) = (i, i);
    while j < b.len() {
        if b[j].is_ascii_digit() {
            digits.push(b[j] - b'0');
            j += 1;
            end = j;
        } else if matches!(b[j], b' ' | b'-') && b.get(j + 1).is_some_and(u8::is_ascii_digit) {
            j += 1;
        } else {
            break;
        }
    }
    let longer = b.get(end).is_some_and(|c| c.is_ascii_alphanumeric() || *c == b'_');
    Some((end, (13..=19).contains(&digits.len()) && !longer && luhn(&digits)))
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
}
