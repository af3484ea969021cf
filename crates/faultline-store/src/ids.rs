//! Patterns as people name them: any unique prefix of a fingerprint, at least
//! [`MIN_ID_PREFIX`] hex characters long (the CLI shows 16), is as good as the whole one; and a
//! pattern's title.

use crate::{PatternRow, Result, Store};

/// The shortest prefix taken: 8 hex characters (4 billion values; an ambiguous one says so).
pub const MIN_ID_PREFIX: usize = 8;

/// Characters of a fingerprint shown where people read it: the CLI, notifications, links.
pub const SHORT_ID_CHARS: usize = 16;

/// The fingerprint as people see it (its first [`SHORT_ID_CHARS`] characters).
pub fn short_id(fingerprint: &str) -> &str {
    fingerprint.get(..SHORT_ID_CHARS).unwrap_or(fingerprint)
}

/// What a typed id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FingerprintLookup {
    /// The one pattern it names: its whole fingerprint.
    Found(String),
    NotFound,
    /// Several patterns start with it (at most 10 are listed).
    Ambiguous(Vec<String>),
    /// Shorter than [`MIN_ID_PREFIX`]; the reason, for the person who typed it.
    Invalid(String),
}

impl FingerprintLookup {
    /// The message for anything but `Found`.
    pub fn explain(&self, typed: &str) -> String {
        match self {
            FingerprintLookup::Found(f) => format!("{typed} is {f}"),
            FingerprintLookup::NotFound => format!("no pattern with id {typed:?}"),
            FingerprintLookup::Ambiguous(matches) => format!(
                "id {typed:?} is ambiguous: it starts {}; type more of it",
                matches.iter().map(|m| short_id(m)).collect::<Vec<_>>().join(", ")
            ),
            FingerprintLookup::Invalid(reason) => reason.clone(),
        }
    }
}

/// Finds the pattern a typed id names (a whole fingerprint or a unique prefix of one).
pub async fn find_fingerprint(store: &dyn Store, typed: &str) -> Result<FingerprintLookup> {
    let id = typed.trim().to_ascii_lowercase();
    // Fingerprints are hex: nothing else names a pattern.
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(FingerprintLookup::NotFound);
    }
    if id.len() < MIN_ID_PREFIX {
        return Ok(FingerprintLookup::Invalid(format!(
            "pattern id {typed:?} is too short: type at least {MIN_ID_PREFIX} characters of it"
        )));
    }
    Ok(lookup_of(store.fingerprints_with_prefix(&id, 11).await?))
}

/// Each pattern's title (fingerprint → title): the headline of its first occurrence (the sample
/// kept on the pattern) against those of its oldest and newest stored ones, see
/// [`faultline_core::title`]: a value shows as written unless these differ in it.
pub async fn pattern_titles<'a>(
    store: &dyn Store,
    patterns: impl IntoIterator<Item = &'a PatternRow>,
) -> Result<std::collections::HashMap<String, String>> {
    let patterns: Vec<&PatternRow> = patterns.into_iter().collect();
    let fingerprints: Vec<String> = patterns.iter().map(|p| p.fingerprint.clone()).collect();
    let mut stored: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for e in store.oldest_and_newest(&fingerprints).await? {
        stored
            .entry(e.fingerprint)
            .or_default()
            .push(faultline_core::headline(&e.message, e.traceback.as_deref()));
    }
    Ok(patterns
        .into_iter()
        .map(|p| {
            let first = match &p.sample_message {
                Some(m) => faultline_core::headline(m, p.stack_trace.as_deref()),
                None => p.normalized_message.clone(),
            };
            let others = stored.get(&p.fingerprint).map(Vec::as_slice).unwrap_or_default();
            let title = others.iter().fold(first, |title, other| faultline_core::title(&title, other));
            (p.fingerprint.clone(), title)
        })
        .collect())
}

/// The answer for the fingerprints a prefix matched.
fn lookup_of(mut found: Vec<String>) -> FingerprintLookup {
    match found.len() {
        0 => FingerprintLookup::NotFound,
        1 => FingerprintLookup::Found(found.remove(0)),
        _ => {
            found.truncate(10);
            FingerprintLookup::Ambiguous(found)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_matches_are_ambiguous_and_listed_short() {
        let a = format!("{}{}", "1a2b3c4d", "0".repeat(56));
        let b = format!("{}{}", "1a2b3c4d", "f".repeat(56));
        let found = lookup_of(vec![a.clone(), b]);
        assert_eq!(
            found.explain("1a2b3c4d"),
            "id \"1a2b3c4d\" is ambiguous: it starts 1a2b3c4d00000000, 1a2b3c4dffffffff; type more of it"
        );
        assert_eq!(lookup_of(vec![a.clone()]), FingerprintLookup::Found(a));
        assert_eq!(lookup_of(Vec::new()), FingerprintLookup::NotFound);
    }
}
