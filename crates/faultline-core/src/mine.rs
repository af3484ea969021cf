//! Template mining for what masking misses (user names, file names, bare host names, free-form
//! ids): masked lines are clustered so that tokens which vary inside a cluster become `<*>`.
//!
//! Lines are first clustered the Drain way (He et al., ICWS 2017): bucketed by token count and by
//! a leading token, a line joins the most similar family of its bucket when enough of its tokens
//! agree position by position. Placeholders from the masker (`<NUM>`, `<IP>`…) and mined
//! wildcards match any token.
//!
//! Drain's weak spot is a word that takes a few values: `stored as bytes` and `stored as values`,
//! `Failed password` and `Failed none`, `by client WindowsUpdateAgent.` and `by client SPP.` are
//! different events, while `for user alice` and `for user bob` are one. So a family keeps the
//! distinct words seen at each position while they are few ([`FEW`] or fewer): each combination
//! of them is its own group. Once a position has seen more, it is a variable, and the groups that
//! differed only there are merged into the oldest of them ([`Mined::merged`] names the others).
//!
//! A group's id is fixed when it is created and never changes when its template generalises; a
//! merged group's id keeps answering as an alias of the group it went into. The whole state can
//! be exported ([`Miner::snapshot`]) and restored: the same lines then map to the same ids.

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

/// A line's tokens; most lines have fewer than 32.
type Tokens<'a> = SmallVec<[&'a str; 32]>;

/// The wildcard a mined variable position becomes.
pub const WILDCARD: &str = "<*>";

/// How alike a line must be to a family's template to join it (share of positions that agree,
/// placeholders and wildcards agreeing with anything).
pub const DEFAULT_SIMILARITY: f64 = 0.8;

/// A position that has shown at most this many distinct words keeps them apart as groups.
pub const FEW: usize = 3;

/// Lines of one shape; each combination of its few-valued words is a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Family {
    /// The bucket's leading token (the first line's, or `<*>` when it was variable).
    first: String,
    /// The template: a word or placeholder where all lines agreed, `<*>` where they differed.
    tokens: Vec<String>,
    /// Per position, the distinct words seen while they are few; `None` once there were more
    /// (or for a placeholder): the position is then a variable.
    values: Vec<Option<Vec<String>>>,
    groups: Vec<Group>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Group {
    id: u64,
    /// Per position, the index of its word in `values` (0 where the position is a variable).
    key: Vec<u8>,
    count: u64,
}

/// One group as seen from outside: its id, template and line count.
#[derive(Debug, Clone, PartialEq)]
pub struct Cluster {
    pub id: u64,
    pub template: String,
    pub count: u64,
}

/// What [`Miner::add`] did with a line.
#[derive(Debug, Clone, PartialEq)]
pub struct Mined {
    pub cluster_id: u64,
    pub created: bool,
    /// Groups merged into others by this line, as (merged id, id it went into).
    pub merged: Vec<(u64, u64)>,
}

/// The miner's whole state, for saving and [`Miner::restore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    similarity: f64,
    next_id: u64,
    families: Vec<Family>,
    aliases: Vec<(u64, u64)>,
}

/// The families seen so far, bucketed by (token count, leading token).
#[derive(Debug, Clone)]
pub struct Miner {
    similarity: f64,
    next_id: u64,
    families: Vec<Family>,
    /// Token count → leading token → family indexes.
    buckets: FxHashMap<usize, FxHashMap<String, Vec<usize>>>,
    /// Merged group id → the id it went into (possibly merged again later).
    aliases: FxHashMap<u64, u64>,
}

impl Default for Miner {
    fn default() -> Self {
        Miner::new(DEFAULT_SIMILARITY)
    }
}

/// A masked value or wildcard, or a token holding one (`blk_<NUM>`, `/<IP>`): never a word
/// with few values.
fn is_placeholder(token: &str) -> bool {
    token.len() > 2 && token.find('<').is_some_and(|open| token[open..].contains('>'))
}

/// A masked value or the wildcard, alone: a variable from the start.
fn is_masked(token: &str) -> bool {
    token.len() > 2 && token.starts_with('<') && token.ends_with('>')
}

/// What tells a token's values apart: a word is itself; a token holding a masked value is its
/// text up to the first placeholder (`rdd_<NUM>` and `rdd_<NUM>_<NUM>` are one value). Only
/// words take few values: a second value next to a token holding a placeholder (`rdd_<NUM>`
/// and `broadcast_<NUM>`, or `rdd_<NUM>` and `none`) makes the position a variable.
fn value_key(token: &str) -> &str {
    match token.find('<') {
        Some(open) if is_placeholder(token) => &token[..=open],
        _ => token,
    }
}

/// A token Drain would call a variable: a placeholder or anything with a digit.
fn is_variable(token: &str) -> bool {
    (token.len() > 2 && token.starts_with('<') && token.ends_with('>'))
        || token.bytes().any(|b| b.is_ascii_digit())
}

impl Miner {
    pub fn new(similarity: f64) -> Miner {
        Miner {
            similarity,
            next_id: 1,
            families: Vec::new(),
            buckets: FxHashMap::default(),
            aliases: FxHashMap::default(),
        }
    }

    fn leading(tokens: &[&str]) -> &'static str {
        match tokens.first() {
            Some(t) if is_variable(t) => WILDCARD,
            _ => "",
        }
    }

    /// The bucket of lines with these tokens: same count, same first token unless it is variable.
    fn bucket(&mut self, len: usize, first: &str) -> &mut Vec<usize> {
        let by_first = self.buckets.entry(len).or_default();
        if !by_first.contains_key(first) {
            by_first.insert(first.to_owned(), Vec::new());
        }
        by_first.get_mut(first).expect("inserted above")
    }

    /// Adds one masked line; returns its group.
    pub fn add(&mut self, masked: &str) -> Mined {
        let tokens: Tokens = masked.split_ascii_whitespace().collect();
        let first = match Miner::leading(&tokens) {
            "" => tokens.first().copied().unwrap_or(""),
            wildcard => wildcard,
        };
        let len = tokens.len();
        let best = self.buckets.get(&len).and_then(|b| b.get(first)).and_then(|bucket| {
            let mut best: Option<(usize, f64)> = None;
            for &index in bucket {
                let score = similarity(&self.families[index].tokens, &tokens);
                if score >= self.similarity && best.is_none_or(|(_, s)| score > s) {
                    best = Some((index, score));
                }
            }
            best.map(|(index, _)| index)
        });
        match best {
            Some(index) => self.join(index, &tokens),
            None => {
                let id = self.fresh_id();
                let family = Family {
                    first: first.to_owned(),
                    tokens: tokens.iter().map(|t| (*t).to_owned()).collect(),
                    values: tokens
                        .iter()
                        .map(|t| (!is_masked(t)).then(|| vec![value_key(t).to_owned()]))
                        .collect(),
                    groups: vec![Group { id, key: vec![0; len], count: 1 }],
                };
                let index = self.families.len();
                self.families.push(family);
                self.bucket(len, first).push(index);
                Mined { cluster_id: id, created: true, merged: Vec::new() }
            }
        }
    }

    fn fresh_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Puts a line into family `index`: generalises its template, notes its words, and finds
    /// or creates the line's group.
    fn join(&mut self, index: usize, tokens: &[&str]) -> Mined {
        let mut key: SmallVec<[u8; 32]> = smallvec::smallvec![0u8; tokens.len()];
        let mut widened = false;
        let family = &mut self.families[index];
        for (p, new) in tokens.iter().enumerate() {
            if family.tokens[p] != *new && family.tokens[p] != WILDCARD {
                family.tokens[p] = WILDCARD.to_owned();
            }
            let Some(words) = &mut family.values[p] else { continue };
            let value = value_key(new);
            match words.iter().position(|w| w == value) {
                Some(at) => key[p] = at as u8,
                None if words.len() < FEW
                    && !is_masked(new)
                    && !value.ends_with('<')
                    && !words[0].ends_with('<') =>
                {
                    key[p] = words.len() as u8;
                    words.push(value.to_owned());
                }
                None => {
                    family.values[p] = None;
                    for group in &mut family.groups {
                        group.key[p] = 0;
                    }
                    widened = true;
                }
            }
        }
        let merged = if widened { self.merge_equal_keys(index) } else { Vec::new() };
        let family = &mut self.families[index];
        match family.groups.iter_mut().find(|g| g.key[..] == key[..]) {
            Some(group) => {
                group.count += 1;
                Mined { cluster_id: group.id, created: false, merged }
            }
            None => {
                let id = self.next_id;
                self.next_id += 1;
                self.families[index].groups.push(Group { id, key: key.to_vec(), count: 1 });
                Mined { cluster_id: id, created: true, merged }
            }
        }
    }

    /// After a position became a variable, groups of the family whose keys are now equal are
    /// one: each goes into the oldest.
    fn merge_equal_keys(&mut self, index: usize) -> Vec<(u64, u64)> {
        let family = &mut self.families[index];
        family.groups.sort_by_key(|g| g.id);
        let mut kept: Vec<Group> = Vec::with_capacity(family.groups.len());
        let mut merged = Vec::new();
        for group in family.groups.drain(..) {
            match kept.iter_mut().find(|k| k.key == group.key) {
                Some(into) => {
                    into.count += group.count;
                    merged.push((group.id, into.id));
                }
                None => kept.push(group),
            }
        }
        family.groups = kept;
        self.aliases.extend(merged.iter().copied());
        merged
    }

    /// The id a group answers to now: itself, or the group it was merged into.
    pub fn resolve(&self, mut id: u64) -> u64 {
        while let Some(&into) = self.aliases.get(&id) {
            id = into;
        }
        id
    }

    /// A group's current template (also for a merged id).
    pub fn template(&self, id: u64) -> Option<String> {
        let id = self.resolve(id);
        self.families.iter().find_map(|f| f.groups.iter().find(|g| g.id == id).map(|g| render(f, g)))
    }

    /// The live groups (merged ones are not listed).
    pub fn clusters(&self) -> Vec<Cluster> {
        self.families
            .iter()
            .flat_map(|f| {
                f.groups.iter().map(move |g| Cluster { id: g.id, template: render(f, g), count: g.count })
            })
            .collect()
    }

    /// The whole state, to save.
    pub fn snapshot(&self) -> Snapshot {
        let mut aliases: Vec<(u64, u64)> = self.aliases.iter().map(|(a, b)| (*a, *b)).collect();
        aliases.sort_unstable();
        Snapshot {
            similarity: self.similarity,
            next_id: self.next_id,
            families: self.families.clone(),
            aliases,
        }
    }

    /// A miner in the state a snapshot saved: the same lines then map to the same ids.
    pub fn restore(snapshot: Snapshot) -> Miner {
        let mut miner = Miner::new(snapshot.similarity);
        miner.next_id = snapshot.next_id;
        miner.aliases = snapshot.aliases.into_iter().collect();
        for family in snapshot.families {
            let index = miner.families.len();
            miner.bucket(family.tokens.len(), &family.first).push(index);
            miner.families.push(family);
        }
        miner
    }
}

/// Share of positions where the template agrees with the line.
fn similarity(template: &[String], tokens: &[&str]) -> f64 {
    if tokens.is_empty() {
        return 1.0;
    }
    let same = template
        .iter()
        .zip(tokens)
        .filter(|(a, b)| a.as_str() == **b || a.as_str() == WILDCARD || is_variable(a) && is_variable(b))
        .count();
    same as f64 / tokens.len() as f64
}

fn render(family: &Family, group: &Group) -> String {
    let mut out = String::new();
    for (p, token) in family.tokens.iter().enumerate() {
        if p > 0 {
            out.push(' ');
        }
        match &family.values[p] {
            // A held placeholder's key (`LOGIN(uid=<`) is shown as the wildcard.
            Some(words) if token == WILDCARD && !words[usize::from(group.key[p])].ends_with('<') => {
                out.push_str(&words[usize::from(group.key[p])])
            }
            _ => out.push_str(token),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_words_become_wildcards_and_the_first_id_stays() {
        let mut m = Miner::default();
        let a = m.add("session opened for user alice by <NUM>");
        let b = m.add("session opened for user bob by <NUM>");
        assert_ne!(a.cluster_id, b.cluster_id, "two users are still two words");
        m.add("session opened for user carol by <NUM>");
        let d = m.add("session opened for user dave by <NUM>");
        assert_eq!(d.cluster_id, a.cluster_id, "a fourth user makes the word a variable");
        assert_eq!(d.merged.len(), 2);
        assert_eq!(m.resolve(b.cluster_id), a.cluster_id);
        assert_eq!(m.template(b.cluster_id).unwrap(), "session opened for user <*> by <NUM>");
        let c = m.add("disk full on volume data");
        assert_ne!(c.cluster_id, a.cluster_id);
    }

    #[test]
    fn a_word_with_few_values_keeps_its_groups_apart() {
        let mut m = Miner::default();
        let mut ids = Vec::new();
        for i in 0..50 {
            let kind = if i % 7 == 0 { "values" } else { "bytes" };
            ids.push(m.add(&format!("Block rdd_{i} stored as {kind} in memory")).cluster_id);
        }
        let bytes = m.add("Block rdd_x stored as bytes in memory").cluster_id;
        let values = m.add("Block rdd_y stored as values in memory").cluster_id;
        assert_ne!(bytes, values);
        assert_eq!(m.template(values).unwrap(), "Block <*> stored as values in memory");
    }

    #[test]
    fn restored_miner_maps_the_same_lines_to_the_same_ids() {
        let mut m = Miner::default();
        let ids: Vec<u64> = ["job a failed after retry", "job b failed after retry", "cache miss for key x"]
            .iter()
            .map(|l| m.add(l).cluster_id)
            .collect();
        let json = serde_json::to_string(&m.snapshot()).unwrap();
        let mut restored = Miner::restore(serde_json::from_str(&json).unwrap());
        assert_eq!(restored.add("job b failed after retry").cluster_id, ids[1]);
        assert_eq!(restored.add("cache miss for key x").cluster_id, ids[2]);
        let fresh = restored.add("brand new line here").cluster_id;
        assert!(fresh > ids[2], "new ids continue after the restored ones");
    }
}
