//! Masking: replacing the variable parts of a message with placeholders, in one pass.
//!
//! `conn 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 to 10.0.0.7:5432 refused` becomes
//! `conn <UUID> to <IP> refused`. Masked values never reach a fingerprint, so a fingerprint
//! carries no user data. The scanner is hand-written (no regex) because it runs on every line.
//!
//! | placeholder | what it replaces |
//! |---|---|
//! | `<TS>` | dates and times: `2024-01-02`, `2024-01-02T03:04:05.123Z`, `03:04:05`, `Sun Jul 10 03:55:15 2005`, `Jul 10 03:55:15`, `Mon, 02 Jan 2006 15:04:05 -0700`, `10/Jul/2005:03:55:15 +0000` |
//! | `<UUID>` | `8-4-4-4-12` hex UUIDs |
//! | `<IP>` | IPv4 (with `:port`) and IPv6 addresses |
//! | `<EMAIL>` | e-mail addresses |
//! | `<URL>` | `scheme://…` up to whitespace, a quote or a closing bracket |
//! | `<HOST>` | host names ending with a common top-level domain (`db-1.example.com`) |
//! | `<PATH>` | file paths of two or more segments: `/var/log/app.log`, `C:\\data\\app.db` |
//! | `<HEX>` | `0x…` numbers and hex ids of 8+ digits (hashes, object ids) |
//! | `<BOOL>` | `true` and `false` |
//! | `<DUR>` | durations: `123ms`, `1.5s`, `2h` |
//! | `<SIZE>` | sizes: `10MB`, `512 KB`, `7 bytes` |
//! | `<NUM>` | integers and decimals standing on their own or after `-`, `_`, `/`, `#`, `:` |
//! | `<STR>` | single- or double-quoted strings |
//! | `key=<VAL>` | the value of a `key=value` pair (also URL query parameters) that holds data: a digit, punctuation or quotes, or any value of a secret-looking key (`password`, `token`, `session`…) |
//! | `key: <VAL>` | the same for `key: value`, unless the value is a number or quoted (those keep their own placeholder); `Authorization: Bearer …` takes the credential along |
//!
//! A `key=value` value that is one plain word (`user=root`, `action=ACTION_DOWN`) is left to the
//! template miner: a word that takes a few values names different events, one that takes many
//! becomes a wildcard there.

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
    let mut misses = Misses::default();
    while i < b.len() {
        let c = b[i];
        if c == b' ' {
            // Nothing starts at a space.
            i += 1;
            continue;
        }
        // A placeholder counts as a word: what follows it starts a token only where what
        // followed the masked value did (masking twice changes nothing).
        let boundary = i == 0 || !is_alnum(b[i - 1]) && i != copied && !ends_with_placeholder(&b[..i]);
        let matched: Option<(usize, &str)> = if c == b'=' && i > 0 && is_word(b[i - 1]) {
            value_end(b, i + 1)
                .filter(|&end| holds_data(b, i, i + 1, end))
                .map(|end| (credential_end(b, i + 1, end), "=<VAL>"))
        } else if c == b':'
            && i > 0
            && is_word(b[i - 1])
            && b.get(i + 1) == Some(&b' ')
            && b.get(i + 2).is_some_and(|c| !c.is_ascii_digit() && !matches!(c, b'"' | b'\''))
            && !PLACEHOLDERS.iter().any(|p| b[i + 2..].starts_with(p))
        {
            // `key: value`, the same way (a plain word after a colon is text: `Error: Timeout`);
            // numbers, quoted strings and masked values keep their own placeholders.
            value_end(b, i + 2)
                .filter(|&end| holds_data(b, i, i + 2, end))
                .map(|end| (credential_end(b, i + 2, end), ": <VAL>"))
        } else if !boundary {
            None
        } else if (c == b'"' || c == b'\'') && request_line(b, i + 1) {
            // A quoted HTTP request line is read inside: its method names the event.
            i += 1;
            continue;
        } else if c == b'"' || c == b'\'' {
            quoted_end(b, i).map(|end| (end, "<STR>"))
        } else if matches!(c, b'<' | b'>' | b'~') && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // A bound or an estimate is the quantity: `<1 sec` like `3 sec`, `~2MB` like `2MB`.
            digit_token(b, i + 1).filter(|(_, p)| matches!(*p, "<NUM>" | "<DUR>" | "<SIZE>"))
        } else if c.is_ascii_digit() {
            digit_token(b, i)
        } else if c == b'-' && b.get(i + 1).is_some_and(u8::is_ascii_digit) {
            // A negative number: `index:-3` is `index:<NUM>` like `index:3`.
            digit_token(b, i + 1).filter(|(_, p)| matches!(*p, "<NUM>" | "<DUR>" | "<SIZE>"))
        } else if c.is_ascii_alphabetic() {
            let word_end = alnum_end(b, i + 1);
            let found = alpha_token(b, i, word_end, &mut misses);
            if found.is_none() {
                // A plain word: nothing starts inside it.
                i = word_end;
                continue;
            }
            found
        } else if c == b'/' {
            path_end(b, i).map(|end| (end, "<PATH>"))
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
                if is_alnum(c) {
                    i = alnum_end(b, i);
                }
            }
        }
    }
    out.push_str(&input[copied..]);
}

fn is_word(c: u8) -> bool {
    is_alnum(c) || c == b'_'
}

/// ASCII letters and digits, by table: one load instead of three range tests in the
/// scanner's hottest loops.
static ALNUM: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        table[c] = (c as u8).is_ascii_alphanumeric();
        c += 1;
    }
    table
};

#[inline]
fn is_alnum(c: u8) -> bool {
    ALNUM[usize::from(c)]
}

/// The end of the run of ASCII letters and digits from `start`. Eight bytes are tested at once
/// (the word's end is then found without a branch per byte, which a word's varying length
/// would mispredict); the last few bytes of the text one by one.
fn alnum_end(b: &[u8], start: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// The high bit of each byte `c` with `low < c < high` (for bytes under 0x80, each byte
    /// on its own: nothing carries from one byte into the next).
    fn between(x: u64, low: u64, high: u64) -> u64 {
        let seven = x & !HIGH;
        (ONES * (127 + high) - seven) & !x & (seven + ONES * (127 - low)) & HIGH
    }
    let mut i = start;
    while let Some(chunk) = b.get(i..i + 8) {
        let x = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
        let alnum = between(x, u64::from(b'0') - 1, u64::from(b'9') + 1)
            | between(x, u64::from(b'A') - 1, u64::from(b'Z') + 1)
            | between(x, u64::from(b'a') - 1, u64::from(b'z') + 1);
        let other = !alnum & HIGH;
        if other != 0 {
            return i + (other.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    run(b, i, is_alnum)
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

const PLACEHOLDERS: [&[u8]; 14] = [
    b"<NUM>", b"<STR>", b"<HEX>", b"<IP>", b"<UUID>", b"<TS>", b"<EMAIL>", b"<VAL>", b"<BOOL>", b"<DUR>",
    b"<SIZE>", b"<HOST>", b"<URL>", b"<PATH>",
];

fn ends_with_placeholder(before: &[u8]) -> bool {
    before.last() == Some(&b'>') && PLACEHOLDERS.iter().any(|p| before.ends_with(p))
}

/// Whether `b[start..]` begins an HTTP request line: `GET /path HTTP/1.1`.
fn request_line(b: &[u8], start: usize) -> bool {
    const METHODS: [&[u8]; 9] =
        [b"GET ", b"POST ", b"PUT ", b"PATCH ", b"DELETE ", b"HEAD ", b"OPTIONS ", b"CONNECT ", b"TRACE "];
    let rest = &b[start.min(b.len())..];
    METHODS.iter().any(|m| {
        rest.starts_with(m)
            && rest.get(m.len()).is_some_and(|&c| matches!(c, b'/' | b'<') || c.is_ascii_alphabetic())
    })
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

/// Key parts whose values are masked whatever they look like.
const SECRET_KEYS: [&[u8]; 9] =
    [b"pass", b"pwd", b"secret", b"token", b"key", b"auth", b"session", b"cookie", b"credential"];

/// The end of a masked value: an authorisation scheme (`Bearer`, `Basic`…) takes the credential
/// after it along.
fn credential_end(b: &[u8], start: usize, end: usize) -> usize {
    const SCHEMES: [&[u8]; 4] = [b"bearer", b"basic", b"token", b"digest"];
    let word = &b[start..end];
    if b.get(end) == Some(&b' ') && SCHEMES.iter().any(|s| word.eq_ignore_ascii_case(s)) {
        value_end(b, end + 1).unwrap_or(end)
    } else {
        end
    }
}

/// Whether the value `b[start..end]` of the key before `b[eq]` (`=` or `:`) is data to mask
/// rather than a word for the miner.
fn holds_data(b: &[u8], eq: usize, start: usize, end: usize) -> bool {
    let value = &b[start..end];
    if !value.iter().all(|&c| c.is_ascii_alphabetic() || matches!(c, b'_' | b'-' | b'.'))
        || is_dotted_name(value)
    {
        return true;
    }
    let key_start = b[..eq].iter().rposition(|&c| !is_word(c)).map_or(0, |p| p + 1);
    let key = &b[key_start..eq];
    static SECRET: std::sync::LazyLock<aho_corasick::AhoCorasick> = std::sync::LazyLock::new(|| {
        aho_corasick::AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .build(SECRET_KEYS)
            .expect("plain words make an automaton")
    });
    SECRET.is_match(key)
}

/// Lower-case labels joined by dots (`mail.example.pl`, `node.local`): as a key's value, a host
/// name whatever its top-level domain.
fn is_dotted_name(value: &[u8]) -> bool {
    value.contains(&b'.')
        && value
            .split(|&c| c == b'.')
            .all(|label| !label.is_empty() && label.iter().all(|&c| c.is_ascii_lowercase() || c == b'-'))
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
/// The digits and the byte after them decide which masks are tried, so a plain number is
/// read once.
fn digit_token(b: &[u8], i: usize) -> Option<(usize, &'static str)> {
    let hex_end = run(b, i, |c| c.is_ascii_hexdigit());
    if hex_end - i == 8
        && b.get(hex_end) == Some(&b'-')
        && let Some(end) = uuid_end(b, i)
    {
        return Some((end, "<UUID>"));
    }
    let digits = run(b, i, |c| c.is_ascii_digit()) - i;
    let next = b.get(i + digits).copied();
    let date = match (digits, next) {
        (4, Some(b'-')) | (2, Some(b':')) => timestamp_end(b, i),
        (1 | 2, Some(b' ')) => day_month_end(b, i),
        (2, Some(b'/')) => clf_date_end(b, i),
        _ => None,
    };
    if let Some(end) = date {
        return Some((end, "<TS>"));
    }
    if (1..=3).contains(&digits)
        && next == Some(b'.')
        && let Some(end) = ipv4_end(b, i)
    {
        return Some((end, "<IP>"));
    }
    if b.get(hex_end) == Some(&b':')
        && let Some(end) = ipv6_end(b, i)
    {
        return Some((end, "<IP>"));
    }
    if b[i] == b'0' && matches!(b.get(i + 1), Some(b'x') | Some(b'X')) {
        let end = run(b, i + 2, |c| c.is_ascii_hexdigit());
        if end > i + 2 && ends_token(b, end) {
            return Some((end, "<HEX>"));
        }
    }
    if hex_end - i >= 8
        && let Some(end) = long_hex_end(b, i)
    {
        return Some((end, "<HEX>"));
    }
    let mut end = i + digits;
    if b.get(end) == Some(&b'.') && b.get(end + 1).is_some_and(u8::is_ascii_digit) {
        end = run(b, end + 1, |c| c.is_ascii_digit());
    }
    // A duration or size: `12ms`, `1.5s`, `10MB`, `512 KB`, `3 sec`.
    let unit_end = run(b, end, |c| c.is_ascii_alphabetic());
    if unit_end > end && ends_token(b, unit_end) {
        let unit = &b[end..unit_end];
        if DURATION_UNITS.contains(&unit) {
            return Some((restated(b, unit_end, "<DUR>"), "<DUR>"));
        }
        if SIZE_UNITS.contains(&unit) {
            return Some((restated(b, unit_end, "<SIZE>"), "<SIZE>"));
        }
    } else if unit_end == end && b.get(end) == Some(&b' ') {
        let unit_end = run(b, end + 1, |c| c.is_ascii_alphabetic());
        let unit = &b[end + 1..unit_end];
        if SIZE_UNITS.contains(&unit) && ends_token(b, unit_end) {
            return Some((restated(b, unit_end, "<SIZE>"), "<SIZE>"));
        }
        if SPELLED_DURATION_UNITS.contains(&unit) && ends_token(b, unit_end) {
            return Some((restated(b, unit_end, "<DUR>"), "<DUR>"));
        }
    }
    Some((end, "<NUM>"))
}

/// Past a parenthesised restatement of the quantity that ends at `end` in other units
/// (`1190 bytes (1.16 KB)`, `90s (1.5 min)`): an optional part, so one event keeps one form.
fn restated(b: &[u8], end: usize, kind: &str) -> usize {
    if b.get(end..end + 2) != Some(b" (") || !b.get(end + 2).is_some_and(u8::is_ascii_digit) {
        return end;
    }
    match digit_token(b, end + 2) {
        Some((inner, k)) if k == kind && b.get(inner) == Some(&b')') => inner + 1,
        _ => end,
    }
}

const DURATION_UNITS: [&[u8]; 13] =
    [b"ns", b"us", b"ms", b"s", b"sec", b"secs", b"m", b"min", b"mins", b"h", b"hr", b"hrs", b"d"];
/// Duration units that follow a number after a space (`3 sec`, `2 minutes`); single letters
/// (`5 s`, `3 m`) are too often words to be read so.
const SPELLED_DURATION_UNITS: [&[u8]; 17] = [
    b"ns", b"us", b"ms", b"sec", b"secs", b"second", b"seconds", b"min", b"mins", b"minute", b"minutes",
    b"hr", b"hrs", b"hour", b"hours", b"day", b"days",
];
const SIZE_UNITS: [&[u8]; 11] =
    [b"B", b"KB", b"kB", b"MB", b"GB", b"TB", b"KiB", b"MiB", b"GiB", b"TiB", b"bytes"];

/// A token starting with a letter: URL, date, e-mail, host, boolean, UUID, hex id or IPv6; plain
/// words are left alone. The word's letters and digits (up to `word_end`) and the byte after
/// them decide which masks are tried, so a plain word is read once.
fn alpha_token(b: &[u8], i: usize, word_end: usize, misses: &mut Misses) -> Option<(usize, &'static str)> {
    let word = &b[i..word_end];
    let next = b.get(word_end).copied();
    match next {
        Some(b':') if word.len() == 1 && b.get(word_end + 1) == Some(&b'\\') => {
            return path_end(b, i).map(|end| (end, "<PATH>"));
        }
        Some(b':' | b'+' | b'.' | b'-') if i >= misses.url => match url_end(b, i) {
            Ok(end) => return Some((end, "<URL>")),
            Err(bound) => misses.url = bound,
        },
        _ => {}
    }
    if is_date_name(word)
        && let Some(end) = named_date_end(b, i)
    {
        return Some((end, "<TS>"));
    }
    if matches!(next, Some(b'@' | b'.' | b'_' | b'%' | b'+' | b'-')) && i >= misses.email {
        match email_end(b, i) {
            Ok(end) => return Some((end, "<EMAIL>")),
            Err(bound) => misses.email = bound,
        }
    }
    if matches!(next, Some(b'.' | b'-')) && i >= misses.host {
        match host_end(b, i).or_else(|bound| host_with_port_end(b, i).map_err(|other| bound.min(other))) {
            Ok(end) => return Some((end, "<HOST>")),
            Err(bound) => misses.host = bound,
        }
    }
    if (word.eq_ignore_ascii_case(b"true") || word.eq_ignore_ascii_case(b"false")) && ends_token(b, word_end)
    {
        return Some((word_end, "<BOOL>"));
    }
    if b[i].is_ascii_hexdigit() {
        if word.len() == 8
            && next == Some(b'-')
            && let Some(end) = uuid_end(b, i)
        {
            return Some((end, "<UUID>"));
        }
        if word.len() >= 8
            && let Some(end) = long_hex_end(b, i)
        {
            return Some((end, "<HEX>"));
        }
        if next == Some(b':')
            && let Some(end) = ipv6_end(b, i)
        {
            return Some((end, "<IP>"));
        }
    }
    None
}

/// Where the masks that read a whole run of name characters (URL schemes, e-mail local parts,
/// host names) failed: each of them, started anywhere before its position, reads the same run to
/// the same end and fails the same way. A dotted name (`org.apache.hadoop.hdfs.DataNode`) is so
/// read once rather than once per word in it. Each `Err(bound)` below promises that no start
/// from where it was tried up to `bound` matches; `bound` is that start when nothing is known.
#[derive(Default)]
struct Misses {
    url: usize,
    email: usize,
    host: usize,
}

/// Whether a word (letters and digits) is a weekday or month name, or its first three letters.
fn is_date_name(word: &[u8]) -> bool {
    if !(3..=9).contains(&word.len()) {
        return false;
    }
    let full: &[u8] = match [word[0] | 0x20, word[1] | 0x20, word[2] | 0x20] {
        [b'j', b'a', b'n'] => b"january",
        [b'f', b'e', b'b'] => b"february",
        [b'm', b'a', b'r'] => b"march",
        [b'a', b'p', b'r'] => b"april",
        [b'm', b'a', b'y'] => b"may",
        [b'j', b'u', b'n'] => b"june",
        [b'j', b'u', b'l'] => b"july",
        [b'a', b'u', b'g'] => b"august",
        [b's', b'e', b'p'] => b"september",
        [b'o', b'c', b't'] => b"october",
        [b'n', b'o', b'v'] => b"november",
        [b'd', b'e', b'c'] => b"december",
        [b'm', b'o', b'n'] => b"monday",
        [b't', b'u', b'e'] => b"tuesday",
        [b'w', b'e', b'd'] => b"wednesday",
        [b't', b'h', b'u'] => b"thursday",
        [b'f', b'r', b'i'] => b"friday",
        [b's', b'a', b't'] => b"saturday",
        [b's', b'u', b'n'] => b"sunday",
        _ => return false,
    };
    word.len() == 3 || word.eq_ignore_ascii_case(full)
}

const MONTHS: [&[u8]; 12] = [
    b"January",
    b"February",
    b"March",
    b"April",
    b"May",
    b"June",
    b"July",
    b"August",
    b"September",
    b"October",
    b"November",
    b"December",
];
const WEEKDAYS: [&[u8]; 7] =
    [b"Monday", b"Tuesday", b"Wednesday", b"Thursday", b"Friday", b"Saturday", b"Sunday"];

/// The end of a word from `names` (its first three letters, or all of it) starting at `i`.
fn name_end(b: &[u8], i: usize, names: &[&[u8]]) -> Option<usize> {
    let word = b.get(i..run(b, i, |c| c.is_ascii_alphabetic()))?;
    if !(3..=9).contains(&word.len()) {
        return None;
    }
    names
        .iter()
        .any(|n| word.eq_ignore_ascii_case(&n[..3]) || word.eq_ignore_ascii_case(n))
        .then_some(i + word.len())
}

fn spaces_end(b: &[u8], i: usize) -> usize {
    run(b, i, |c| c == b' ')
}

/// Past `n` digits at `at`, or `None`.
fn digits_end(b: &[u8], at: usize, min: usize, max: usize) -> Option<usize> {
    let end = run(b, at, |c| c.is_ascii_digit());
    (end - at >= min && end - at <= max).then_some(end)
}

/// Dates with a month name, which must carry a time or a year to count: ctime's
/// `Sun Jul 10 03:55:15 2005`, syslog's `Jul 10 03:55:15`, RFC 2822's
/// `Mon, 02 Jan 2006 15:04:05 -0700`, and `Jan 2, 2006`.
fn named_date_end(b: &[u8], i: usize) -> Option<usize> {
    let mut at = i;
    if let Some(end) = name_end(b, at, &WEEKDAYS) {
        at = end;
        if b.get(at) == Some(&b',') {
            at += 1;
        }
        at = spaces_end(b, at);
        if at == end {
            return None;
        }
        if b.get(at).is_some_and(u8::is_ascii_digit) {
            return day_month_end(b, at);
        }
    }
    let month = name_end(b, at, &MONTHS)?;
    let day_start = spaces_end(b, month);
    let day = digits_end(b, day_start, 1, 2).filter(|_| day_start > month)?;
    let mut at = day;
    if b.get(at) == Some(&b',') {
        at += 1;
    }
    date_tail(b, at)
}

/// `02 Jan 2006 15:04:05 -0700` (the part of RFC 2822 after the weekday).
fn day_month_end(b: &[u8], i: usize) -> Option<usize> {
    let day = digits_end(b, i, 1, 2)?;
    let month_start = spaces_end(b, day);
    let month = name_end(b, month_start, &MONTHS).filter(|_| month_start > day)?;
    date_tail(b, month)
}

/// After a month and day: `[ year][ time][ year][ zone]`, at least a time or a year.
fn date_tail(b: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    let mut seen = false;
    let year = |at: &mut usize| {
        let start = spaces_end(b, *at);
        if let Some(end) = digits_end(b, start, 4, 4).filter(|&e| start > *at && ends_token(b, e)) {
            *at = end;
            true
        } else {
            false
        }
    };
    seen |= year(&mut at);
    let start = spaces_end(b, at);
    if start > at
        && let Some(end) = timestamp_end(b, start)
    {
        at = end;
        seen = true;
        year(&mut at);
        let zone = spaces_end(b, at);
        if zone > at {
            if matches!(b.get(zone), Some(b'+') | Some(b'-')) && digits_end(b, zone + 1, 4, 4).is_some() {
                at = zone + 5;
            } else if b[zone..].starts_with(b"UTC") || b[zone..].starts_with(b"GMT") {
                at = zone + 3;
            }
        }
    }
    (seen && ends_token(b, at)).then_some(at)
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

/// The access log's `10/Jul/2005:03:55:15 +0000`.
fn clf_date_end(b: &[u8], i: usize) -> Option<usize> {
    let day = digits_end(b, i, 2, 2)?;
    let month = name_end(b, day + 1, &MONTHS).filter(|_| b.get(day) == Some(&b'/'))?;
    let year = digits_end(b, month + 1, 4, 4).filter(|_| b.get(month) == Some(&b'/'))?;
    let mut at = year;
    if b.get(at) == Some(&b':') {
        let time = digits_end(b, at + 1, 2, 2)?;
        at = timestamp_end(b, at + 1).unwrap_or(time);
    }
    if b.get(at) == Some(&b' ')
        && matches!(b.get(at + 1), Some(b'+') | Some(b'-'))
        && let Some(end) = digits_end(b, at + 2, 4, 4)
    {
        at = end;
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

/// `scheme://` and everything up to whitespace, a quote or a closing bracket. Fails up to the
/// scheme's end (see [`Misses`]).
fn url_end(b: &[u8], i: usize) -> Result<usize, usize> {
    let scheme = run(b, i, |c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'.' | b'-'));
    if !b[scheme..].starts_with(b"://") || scheme == i {
        return Err(scheme);
    }
    let mut end =
        run(b, scheme + 3, |c| !c.is_ascii_whitespace() && !matches!(c, b'"' | b'\'' | b'>' | b')' | b']'));
    while end > scheme + 3 && matches!(b[end - 1], b'.' | b',' | b';') {
        end -= 1;
    }
    if end > scheme + 3 { Ok(end) } else { Err(scheme) }
}

/// A file path: `/var/log/app.log`, `/srv/app/main.py:12` (up to the `:`), `C:\\data\\x.db`. It
/// needs two segments, so a lone `/health` or `a/b` stays text.
fn path_end(b: &[u8], i: usize) -> Option<usize> {
    let start = if b[i] == b'/' { i } else { i + 2 };
    let mut end = run(b, start, |c| {
        c.is_ascii_alphanumeric()
            || matches!(c, b'/' | b'\\' | b'.' | b'_' | b'-' | b'~' | b'+' | b'@' | b'%')
    });
    while end > start && matches!(b[end - 1], b'.' | b',') {
        end -= 1;
    }
    let segments =
        b[start..end].split(|&c| c == b'/' || c == b'\\').skip(1).filter(|s| !s.is_empty()).count();
    let first_ok = b.get(start + 1).is_some_and(|&c| is_word(c) || c == b'.');
    (segments >= 2 && first_ok && ends_token(b, end)).then_some(end)
}

/// Top-level domains that end host names (a Java class name such as `com.example.Foo` ends
/// with its class, not one of these).
const TLDS: [&[u8]; 30] = [
    b"com",
    b"net",
    b"org",
    b"edu",
    b"gov",
    b"mil",
    b"int",
    b"io",
    b"dev",
    b"app",
    b"cloud",
    b"ai",
    b"co",
    b"uk",
    b"de",
    b"fr",
    b"nl",
    b"jp",
    b"cn",
    b"ru",
    b"br",
    b"in",
    b"au",
    b"ca",
    b"us",
    b"eu",
    b"info",
    b"biz",
    b"local",
    b"internal",
];

/// A host name: lower-case labels joined by dots, ending with a common top-level domain.
fn host_end(b: &[u8], i: usize) -> Result<usize, usize> {
    let run_end = run(b, i, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    let mut end = run_end;
    while end > i && b[end - 1] == b'.' {
        end -= 1;
    }
    let name = &b[i..end];
    let Some(dot) = name.iter().rposition(|&c| c == b'.') else {
        return Err(run_end);
    };
    if !TLDS.contains(&&name[dot + 1..]) || !ends_token(b, end) {
        return Err(run_end);
    }
    // A later start may skip an empty or `-` label, so only this start fails.
    let labels_ok = name[..dot].split(|&c| c == b'.').all(|l| !l.is_empty() && l[0] != b'-');
    if labels_ok { Ok(end) } else { Err(i) }
}

/// A lower-case dotted name followed by a port (`node-7.dept.example.local:5070`) is a network
/// address whatever its top-level domain; a file with a line number (`app.py:12`,
/// `settings.yaml:3`) or code with one (`com.android.server.Session.relayout:215`) is not.
fn host_with_port_end(b: &[u8], i: usize) -> Result<usize, usize> {
    let end = run(b, i, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.');
    if b.get(end).is_some_and(|&c| c.is_ascii_uppercase() || c == b'_') {
        return Err(end);
    }
    let name = &b[i..end];
    let last = name.rsplit(|&c| c == b'.').next().unwrap_or_default();
    let port_end = run(b, end + 1, |c| c.is_ascii_digit());
    let Some(port) = b.get(end + 1..port_end) else {
        return Err(end);
    };
    let is_port = b.get(end) == Some(&b':') && (1..=5).contains(&port.len()) && ends_token(b, port_end);
    let source_file = SOURCE_EXTENSIONS.iter().any(|x| last.eq_ignore_ascii_case(x));
    if !(name.contains(&b'.') && last.iter().all(u8::is_ascii_alphabetic) && is_port && !source_file) {
        return Err(end);
    }
    // A later start may skip an empty or `-` label, so only this start fails.
    let labels_ok = name.split(|&c| c == b'.').all(|l| !l.is_empty() && l[0] != b'-');
    if labels_ok { Ok(end) } else { Err(i) }
}

/// File name extensions that a `name.ext:12` line reference ends with.
const SOURCE_EXTENSIONS: [&[u8]; 40] = [
    b"java",
    b"kt",
    b"scala",
    b"py",
    b"go",
    b"rs",
    b"js",
    b"mjs",
    b"cjs",
    b"ts",
    b"tsx",
    b"jsx",
    b"rb",
    b"php",
    b"cs",
    b"c",
    b"cc",
    b"cpp",
    b"h",
    b"hpp",
    b"swift",
    b"ex",
    b"exs",
    b"erb",
    b"log",
    b"yaml",
    b"yml",
    b"json",
    b"xml",
    b"toml",
    b"ini",
    b"conf",
    b"cfg",
    b"txt",
    b"html",
    b"sql",
    b"sh",
    b"md",
    b"csv",
    b"properties",
];

/// An e-mail address; fails up to the local part's end (see [`Misses`]): what follows it
/// decides alone.
fn email_end(b: &[u8], i: usize) -> Result<usize, usize> {
    let local_end = run(b, i, |c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'%' | b'+' | b'-'));
    if b.get(local_end) != Some(&b'@') || local_end == i {
        return Err(local_end);
    }
    let domain_start = local_end + 1;
    let mut end = run(b, domain_start, |c| c.is_ascii_alphanumeric() || c == b'.' || c == b'-');
    while end > domain_start && b[end - 1] == b'.' {
        end -= 1;
    }
    let domain = &b[domain_start..end];
    let tld = domain.rsplit(|&c| c == b'.').next().unwrap_or_default();
    if domain.contains(&b'.') && tld.len() >= 2 && tld.iter().all(u8::is_ascii_alphabetic) {
        Ok(end)
    } else {
        Err(local_end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Inputs the property test found where masking the result again changed it.
    #[test]
    fn alnum_end_agrees_with_a_byte_by_byte_scan() {
        let mut x = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..20_000 {
            let len = (x % 40) as usize;
            let text: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    // Mostly letters and digits, and every byte value sometimes.
                    if x.is_multiple_of(4) { (x >> 8) as u8 } else { b"az09AZmq5_"[(x >> 8) as usize % 10] }
                })
                .collect();
            for start in 0..=text.len() {
                assert_eq!(alnum_end(&text, start), run(&text, start, is_alnum), "{text:?} from {start}");
            }
        }
    }

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

    /// A dotted name is read once for URLs, e-mail addresses and hosts; a start inside it where
    /// the first start failed for a reason of its own still gets its mask.
    #[test]
    fn a_start_inside_a_dotted_name_keeps_its_own_mask() {
        check("at org.example..db-1.example.com now", "at org.example..<HOST> now");
        check("via a.-b.node-7.example.local:5070 up", "via a.-<HOST>:<NUM> up");
        check("to x.y.bob@example.com and x.y.z.com.", "to <EMAIL> and <HOST>.");
        check(
            "see org.apache.hadoop.hdfs.DataNode and a.b-https://c.d/e",
            "see org.apache.hadoop.hdfs.DataNode and <URL>",
        );
        check(
            "in org.apache.hadoop.hdfs.server.datanode.DataNode$Packet",
            "in org.apache.hadoop.hdfs.server.datanode.DataNode$Packet",
        );
    }

    #[test]
    fn masks_ids_addresses_and_times() {
        check(
            "conn 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 to 10.0.0.7:5432 refused",
            "conn <UUID> to <IP> refused",
        );
        check("at 2024-01-02T03:04:05.123Z and 2024-01-02 03:04:05,123", "at <TS> and <TS>");
        check("since 03:04:05 on 2024-01-02", "since <TS> on <TS>");
        check("at Sun Jul 10 03:55:15 2005 from x", "at <TS> from x");
        check("Jul  1 09:00:55 host sshd", "<TS> host sshd");
        check("sent Mon, 02 Jan 2006 15:04:05 -0700 ok", "sent <TS> ok");
        check("on 02 Jan 2006 15:04:05 GMT.", "on <TS>.");
        check("[10/Jul/2005:03:55:15 +0000] GET", "[<TS>] GET");
        check("due Jan 2, 2006 or later", "due <TS> or later");
        check("May I ask, Sun 3 times a day? March on", "May I ask, Sun <NUM> times a day? March on");
        check("peer [2001:db8::ff00:42:8329]:443 and ::1 down", "peer [<IP>]:<NUM> and <IP> down");
        check("mail to bob.smith+x@example.co.uk failed", "mail to <EMAIL> failed");
        check("rhost=csnsu.nsuok.edu from db-1.prod.internal.", "rhost=<VAL> from <HOST>.");
        check(
            "at com.example.Foo.bar(Foo.java) in android.intent.action",
            "at com.example.Foo.bar(Foo.java) in android.intent.action",
        );
        check("commit 9fceb02d0ae598e95dc970b74767f19372d61af8 bad", "commit <HEX> bad");
        check("ptr 0x7ffd5e8c0a10 null", "ptr <HEX> null");
        check("open /var/log/app-1.log: denied at /srv/main.py:12.", "open <PATH>: denied at <PATH>:<NUM>.");
        check(r"read C:\data\app.db and ./x /health a/b", r"read <PATH> and ./x /health a/b");
    }

    #[test]
    fn masks_numbers_but_not_words() {
        check("took 123ms after 3 retries (1.5s)", "took <DUR> after <NUM> retries (<DUR>)");
        check("size 512 KB of 10MB, 3 Bees, 7 bytes", "size <SIZE> of <SIZE>, <NUM> Bees, <SIZE>");
        check("worker-12 on shard_3 failed", "worker-<NUM> on shard_<NUM> failed");
        check("user123 hit a decade old facade", "user123 hit a decade old facade");
        check("HTTP/1.1 500", "HTTP/<NUM> <NUM>");
        check("index:-3 blk_-42 range 1-5 worker-7", "index:<NUM> blk_<NUM> range <NUM>-<NUM> worker-<NUM>");
        check(
            "overlap:false down TRUE visible=true trueish",
            "overlap:<BOOL> down <BOOL> visible=<BOOL> trueish",
        );
    }

    #[test]
    fn masks_quotes_and_key_values() {
        check(r#"KeyError: 'user_id' in "main""#, "KeyError: <STR> in <STR>");
        check("can't connect, don't retry", "can't connect, don't retry");
        check("user_id=42 name=\"Ann Lee\" ok", "user_id=<VAL> name=<VAL> ok");
        check("user=root tty=ssh action=ACTION_DOWN", "user=root tty=ssh action=ACTION_DOWN");
        check("password=hunter api_key=abc SessionId=xyz", "password=<VAL> api_key=<VAL> SessionId=<VAL>");
        check("id: ab12cd, Authorization: Bearer eyJhbGci.x_y", "id: <VAL>, Authorization: <VAL>");
        check("password: hunter error: timeout port: 8080", "password: <VAL> error: timeout port: <NUM>");
        check("GET https://api.example.com/users/42?token=abc&page=2 failed", "GET <URL> failed");
    }

    #[test]
    fn leaves_non_ascii_and_control_text_intact() {
        check("naïve café 12 ünïcode", "naïve café <NUM> ünïcode");
        check("\u{1b}[31mred\u{1b}[0m 5", "\u{1b}[<NUM>mred\u{1b}[<DUR> <NUM>");
        check("", "");
    }

    /// One event written several ways keeps one template: a host with a port whatever its
    /// domain, a quantity with or without its restatement or bound, a spelled-out unit; and a
    /// quoted request line keeps its method.
    #[test]
    fn one_event_one_template() {
        let same = [
            [
                "db-1.example.com:5432 refused",
                "node-7.dept.example.local:5070 refused",
                "cache.internal:6379 refused",
            ],
            ["sent 1190 bytes (1.16 KB) in 3 sec", "sent 1190 bytes in 3 sec", "sent 88 bytes in <1 sec"],
            ["took 90s (1.5 min) to drain", "took 2s to drain", "took ~2 seconds to drain"],
        ];
        for forms in same {
            let masked: Vec<String> = forms.iter().map(|f| mask(f)).collect();
            assert!(masked.iter().all(|m| *m == masked[0]), "{forms:?} -> {masked:?}");
        }
        check("at Billing.java:42 and app.py:12", "at Billing.java:<NUM> and app.py:<NUM>");
        check(
            "state.clipTopAmount:180 in com.android.server.wm.Session.relayout:215",
            "state.clipTopAmount:<NUM> in com.android.server.wm.Session.relayout:<NUM>",
        );
        check("reading settings.yaml:3", "reading settings.yaml:<NUM>");
        check(
            r#"10.0.0.1 - - "GET /v2/orders/42 HTTP/1.1" 200"#,
            r#"<IP> - - "GET <PATH> HTTP/<NUM>" <NUM>"#,
        );
        assert_ne!(mask(r#""GET /v2/orders/42 HTTP/1.1""#), mask(r#""DELETE /v2/orders/42 HTTP/1.1""#));
        check(r#"said "GET lost""#, r#"said "GET lost""#);
    }

    #[test]
    fn masking_is_idempotent() {
        for line in [
            "conn 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 to 10.0.0.7:5432 refused",
            "user_id=42 at 2024-01-02T03:04:05Z took 12ms",
            r#"sent 1190 bytes (1.16 KB) to node-7.lan:5070 in <1 sec "GET /a/b HTTP/1.1""#,
        ] {
            let once = mask(line);
            assert_eq!(mask(&once), once);
        }
    }
}
