//! Masking: replacing the variable parts of a message with placeholders, in one pass.
//!
//! `conn 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 to 10.0.0.7:5432 refused` becomes
//! `conn <UUID> to <IP> refused`. Masked values never reach a fingerprint, so a fingerprint
//! carries no user data. The scanner is hand-written (no regex) because it runs on every line.
//!
//! | placeholder | what it replaces |
//! |---|---|
//! | `<TS>` | dates and times: `2024-01-02`, `2024-01-02T03:04:05.123Z`, `03:04:05` |
//! | `<UUID>` | `8-4-4-4-12` hex UUIDs |
//! | `<IP>` | IPv4 (with `:port`) and IPv6 addresses |
//! | `<EMAIL>` | e-mail addresses |
//! | `<HEX>` | `0x…` numbers and hex ids of 8+ digits (hashes, object ids) |
//! | `<NUM>` | integers and decimals standing on their own or after `-`, `_`, `/`, `#`, `:` |
//! | `<STR>` | single- or double-quoted strings |
//! | `key=<VAL>` | the value of a `key=value` pair (also URL query parameters) |

/// Returns `input` with its variable parts masked.
pub fn mask(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    mask_into(input, &mut out);
    out
}

/// Appends the masked form of `input` to `out`.
pub fn mask_into(input: &str, out: &mut String) {
    let b = input.as_bytes();
    let mut i = 0;
    let mut copied = 0; // input[copied..i] is still to be copied to out
    while i < b.len() {
        let c = b[i];
        // A placeholder counts as a word: what follows it starts a token only where what
        // followed the masked value did (masking twice changes nothing).
        let boundary =
            i == 0 || !b[i - 1].is_ascii_alphanumeric() && i != copied && !ends_with_placeholder(&b[..i]);
        let matched: Option<(usize, &str)> = if c == b'=' && i > 0 && is_word(b[i - 1]) {
            value_end(b, i + 1).map(|end| (end, "=<VAL>"))
        } else if !boundary {
            None
        } else if c == b'"' || c == b'\'' {
            quoted_end(b, i).map(|end| (end, "<STR>"))
        } else if c.is_ascii_digit() {
            digit_token(b, i)
        } else if c.is_ascii_alphabetic() {
            alpha_token(b, i)
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            ipv6_end(b, i).map(|end| (end, "<IP>"))
        } else {
            None
        };
        match matched {
            Some((end, placeholder)) => {
                out.push_str(&input[copied..i]);
                out.push_str(placeholder);
                i = end;
                copied = end;
            }
            None => {
                // A quote that opens no string (empty, or closed inside a word) is kept with
                // everything up to its closing quote, which so opens nothing either: masking
                // the result again changes nothing.
                if boundary && (c == b'"' || c == b'\'') {
                    i = unmatched_quote_end(b, i);
                    continue;
                }
                // Skip the rest of a word in one go: nothing starts inside a word.
                i += 1;
                if c.is_ascii_alphanumeric() {
                    while i < b.len() && b[i].is_ascii_alphanumeric() {
                        i += 1;
                    }
                }
            }
        }
    }
    out.push_str(&input[copied..]);
}

fn is_word(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

/// True when position `at` ends a token: end of text or a byte that cannot continue a word.
fn ends_token(b: &[u8], at: usize) -> bool {
    // A placeholder stands for a word (masking twice changes nothing).
    b.get(at)
        .is_none_or(|&c| !(is_word(c) || c == b'<' && PLACEHOLDERS.iter().any(|p| b[at..].starts_with(p))))
}

fn quoted_end(b: &[u8], start: usize) -> Option<usize> {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return None,
            c if c == quote => {
                return (i > start + 1 && ends_token(b, i + 1)).then_some(i + 1);
            }
            _ => i += 1,
        }
    }
    None
}

const PLACEHOLDERS: [&[u8]; 8] =
    [b"<NUM>", b"<STR>", b"<HEX>", b"<IP>", b"<UUID>", b"<TS>", b"<EMAIL>", b"<VAL>"];

fn ends_with_placeholder(before: &[u8]) -> bool {
    before.last() == Some(&b'>') && PLACEHOLDERS.iter().any(|p| before.ends_with(p))
}

/// Just past the first closing quote (on the same line) of a quote that opened no string.
fn unmatched_quote_end(b: &[u8], start: usize) -> usize {
    let quote = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            b'\n' => return i,
            c if c == quote => return i + 1,
            _ => i += 1,
        }
    }
    start + 1
}

/// The end of a `key=value` value: a quoted string, or up to whitespace or a separator.
fn value_end(b: &[u8], start: usize) -> Option<usize> {
    match b.get(start)? {
        b'"' | b'\'' => quoted_end(b, start),
        b' ' | b'\t' | b'=' | b',' | b'&' | b';' | b')' | b']' | b'}' => None,
        _ => {
            let mut i = start;
            while i < b.len()
                && !matches!(b[i], b' ' | b'\t' | b',' | b'&' | b';' | b')' | b']' | b'}' | b'"')
            {
                i += 1;
            }
            Some(i)
        }
    }
}

fn run(b: &[u8], start: usize, pred: impl Fn(u8) -> bool) -> usize {
    let mut i = start;
    while i < b.len() && pred(b[i]) {
        i += 1;
    }
    i
}

/// A token starting with a digit: timestamp, IP, UUID, hex or number.
fn digit_token(b: &[u8], i: usize) -> Option<(usize, &'static str)> {
    if let Some(end) = uuid_end(b, i) {
        return Some((end, "<UUID>"));
    }
    if let Some(end) = timestamp_end(b, i) {
        return Some((end, "<TS>"));
    }
    if let Some(end) = ipv4_end(b, i) {
        return Some((end, "<IP>"));
    }
    if let Some(end) = ipv6_end(b, i) {
        return Some((end, "<IP>"));
    }
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x') | Some(b'X')) {
        let end = run(b, i + 2, |c| c.is_ascii_hexdigit());
        if end > i + 2 && ends_token(b, end) {
            return Some((end, "<HEX>"));
        }
    }
    if let Some(end) = long_hex_end(b, i) {
        return Some((end, "<HEX>"));
    }
    let mut end = run(b, i, |c| c.is_ascii_digit());
    if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = run(b, end + 1, |c| c.is_ascii_digit());
    }
    // A number may carry a unit ("12ms", "3s", "10MB"): keep the unit, mask the number.
    Some((end, "<NUM>"))
}

/// A token starting with a letter: e-mail, UUID, IPv6 or hex id; plain words are left alone.
fn alpha_token(b: &[u8], i: usize) -> Option<(usize, &'static str)> {
    if let Some(end) = email_end(b, i) {
        return Some((end, "<EMAIL>"));
    }
    if b[i].is_ascii_hexdigit() {
        if let Some(end) = uuid_end(b, i) {
            return Some((end, "<UUID>"));
        }
        if let Some(end) = long_hex_end(b, i) {
            return Some((end, "<HEX>"));
        }
        if let Some(end) = ipv6_end(b, i) {
            return Some((end, "<IP>"));
        }
    }
    None
}

fn uuid_end(b: &[u8], i: usize) -> Option<usize> {
    const GROUPS: [usize; 5] = [8, 4, 4, 4, 12];
    let mut at = i;
    for (n, len) in GROUPS.iter().enumerate() {
        let end = run(b, at, |c| c.is_ascii_hexdigit());
        if end - at != *len {
            return None;
        }
        at = end;
        if n < 4 {
            if b.get(at) != Some(&b'-') {
                return None;
            }
            at += 1;
        }
    }
    ends_token(b, at).then_some(at)
}

/// Hex ids of 8+ characters with at least one digit and one letter (or 16+ digits of hex).
fn long_hex_end(b: &[u8], i: usize) -> Option<usize> {
    let end = run(b, i, |c| c.is_ascii_hexdigit());
    if end - i < 8 || !ends_token(b, end) {
        return None;
    }
    let part = &b[i..end];
    let digits = part.iter().filter(|c| c.is_ascii_digit()).count();
    let has_letter = digits < part.len();
    (digits > 0 && has_letter).then_some(end)
}

fn timestamp_end(b: &[u8], i: usize) -> Option<usize> {
    let d = |at: usize, n: usize| b.get(at..at + n).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let mut at;
    if d(i, 4) && b.get(i + 4) == Some(&b'-') && d(i + 5, 2) && b.get(i + 7) == Some(&b'-') && d(i + 8, 2) {
        at = i + 10;
        if matches!(b.get(at), Some(b'T') | Some(b' ')) && d(at + 1, 2) && b.get(at + 3) == Some(&b':') {
            at += 1;
        } else {
            return ends_token(b, at).then_some(at);
        }
    } else {
        at = i;
    }
    // HH:MM[:SS[.frac]][zone]
    if !(d(at, 2) && b.get(at + 2) == Some(&b':') && d(at + 3, 2)) {
        return None;
    }
    at += 5;
    if b.get(at) == Some(&b':') && d(at + 1, 2) {
        at += 3;
    } else if at == i + 5 {
        return None; // a bare "12:34" is too ambiguous (ratios, ports)
    }
    if matches!(b.get(at), Some(b'.') | Some(b',')) && b.get(at + 1).is_some_and(u8::is_ascii_digit) {
        at = run(b, at + 1, |c| c.is_ascii_digit());
    }
    match b.get(at) {
        Some(b'Z') => at += 1,
        Some(b'+') | Some(b'-') if d(at + 1, 2) => {
            at += 3;
            if b.get(at) == Some(&b':') && d(at + 1, 2) {
                at += 3;
            } else if d(at, 2) {
                at += 2;
            }
        }
        _ => {}
    }
    ends_token(b, at).then_some(at)
}

fn ipv4_end(b: &[u8], i: usize) -> Option<usize> {
    let mut at = i;
    for n in 0..4 {
        let end = run(b, at, |c| c.is_ascii_digit());
        if end == at || end - at > 3 {
            return None;
        }
        at = end;
        if n < 3 {
            if b.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
    }
    if b.get(at) == Some(&b':') {
        let end = run(b, at + 1, |c| c.is_ascii_digit());
        if end > at + 1 && end - at <= 6 {
            at = end;
        }
    }
    ends_token(b, at).then_some(at)
}

fn ipv6_end(b: &[u8], i: usize) -> Option<usize> {
    let end = run(b, i, |c| c.is_ascii_hexdigit() || c == b':' || c == b'.');
    let part = &b[i..end];
    let colons = part.iter().filter(|&&c| c == b':').count();
    if colons < 2 || !ends_token(b, end) {
        return None;
    }
    // every group is at most 4 hex digits, and "::" appears at most once or there are 7 colons
    let groups_ok = part.split(|&c| c == b':').all(|g| g.len() <= 4 || g.contains(&b'.'));
    let double = part.windows(2).filter(|w| w == b"::").count();
    let shape_ok = (double == 1 && colons <= 7) || (double == 0 && colons == 7);
    (groups_ok && shape_ok && part.last() != Some(&b'.')).then_some(end)
}

fn email_end(b: &[u8], i: usize) -> Option<usize> {
    let local_end = run(b, i, |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-'));
    if b.get(local_end) != Some(&b'@') || local_end == i {
        return None;
    }
    let domain_start = local_end + 1;
    let mut end = run(b, domain_start, |c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    while end > domain_start && b[end - 1] == b'.' {
        end -= 1;
    }
    let domain = &b[domain_start..end];
    let tld = domain.rsplit(|&c| c == b'.').next()?;
    (domain.contains(&b'.') && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic)).then_some(end)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs the property test found where masking the result again changed it.
    #[test]
    fn masking_twice_changes_nothing() {
        for input in ["\"\" \"\"", "\" \"a\" \"\"", "0' '", "\" \"\" \"a\"", "\" \"0", "\"ab\"'c' x"] {
            let once = mask(input);
            assert_eq!(mask(&once), once, "{input:?}");
        }
        assert_eq!(mask("says \"\" then 'x y' done"), "says \"\" then <STR> done");
    }

    #[track_caller]
    fn check(input: &str, expect: &str) {
        assert_eq!(mask(input), expect, "input: {input}");
    }

    #[test]
    fn masks_ids_addresses_and_times() {
        check(
            "conn 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 to 10.0.0.7:5432 refused",
            "conn <UUID> to <IP> refused",
        );
        check("at 2024-01-02T03:04:05.123Z and 2024-01-02 03:04:05,123", "at <TS> and <TS>");
        check("since 03:04:05 on 2024-01-02", "since <TS> on <TS>");
        check("peer [2001:db8::ff00:42:8329]:443 and ::1 down", "peer [<IP>]:<NUM> and <IP> down");
        check("mail to bob.smith+x@example.co.uk failed", "mail to <EMAIL> failed");
        check("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 bad", "commit <HEX> bad");
        check("ptr 0x7ffd5e8c0a10 null", "ptr <HEX> null");
    }

    #[test]
    fn masks_numbers_but_not_words() {
        check("took 123ms after 3 retries (1.5s)", "took <NUM>ms after <NUM> retries (<NUM>s)");
        check("worker-12 on shard_3 failed", "worker-<NUM> on shard_<NUM> failed");
        check("user123 hit a decade old facade", "user123 hit a decade old facade");
        check("HTTP/1.1 500", "HTTP/<NUM> <NUM>");
    }

    #[test]
    fn masks_quotes_and_key_values() {
        check(r#"KeyError: 'user_id' in "main""#, "KeyError: <STR> in <STR>");
        check("can't connect, don't retry", "can't connect, don't retry");
        check("user_id=42 name=\"Ann Lee\" ok", "user_id=<VAL> name=<VAL> ok");
        check(
            "GET https://api.example.com/users/42?token=abc&page=2 failed",
            "GET https://api.example.com/users/<NUM>?token=<VAL>&page=<VAL> failed",
        );
    }

    #[test]
    fn leaves_non_ascii_and_control_text_intact() {
        check("naïve café 12 ünïcode", "naïve café <NUM> ünïcode");
        check("\u{1b}[31mred\u{1b}[0m 5", "\u{1b}[<NUM>mred\u{1b}[<NUM>m <NUM>");
        check("", "");
    }

    #[test]
    fn masking_is_idempotent() {
        for line in [
            "conn 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 to 10.0.0.7:5432 refused",
            "user_id=42 at 2024-01-02T03:04:05Z took 12ms",
        ] {
            let once = mask(line);
            assert_eq!(mask(&once), once);
        }
    }
}
