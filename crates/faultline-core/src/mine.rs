//! Template mining for what masking misses (user names, file names, bare host names, free-form
//! ids): masked lines are clustered so that tokens which vary inside a cluster become `<*>`.
//!
//! Lines are first clustered the Drain way (He et al., ICWS 2017): bucketed by token count and by
//! a leading token, a line joins the most similar family of its bucket when enough of its tokens
//! agree position by position. Placeholders from the masker (`<NUM>`, `<IP>`…) and mined
//! wildcards match any token. A leading token that is a number or a name (`svc-api`,
//! `nova.compute`) does not split buckets: it is a position like the others.
//!
//! Drain's weak spot is a word that takes a few values: `stored as bytes` and `stored as values`,
//! `Failed password` and `Failed none`, `by client WindowsUpdateAgent.` and `by client SPP.` are
//! different events, while `for user alice` and `for user bob` are one. So a family keeps the
//! distinct words seen at each position while they are few ([`FEW`] or fewer): each combination
//! of them is its own group. Once a position has seen more, it is a variable, and the groups that
//! differed only there are merged into the oldest of them ([`Mined::merged`] names the others).
//! A position whose words are all verb forms (`started`, `stopped`, `paused`, `resumed`) says
//! what happened, not to whom: it keeps up to [`KEPT`] of them apart. Counting cannot tell
//! these from names: four user names that each recur look like four states that each recur.
//!
//! A group's id is fixed when it is created (a hash of its first line) and never changes when its
//! template generalises; a merged group's id keeps answering as an alias of the group it went
//! into. The whole state can be exported ([`Miner::snapshot`]) and restored: the same lines then
//! map to the same ids.
//!
//! A line is compared only with the families of its bucket, so a bucket's state decides all its
//! lines. Among several, it reads only those whose summary (`Member`) leaves them possible.
//! Instances sharing a database share the miner bucket by bucket ([`Miner::export_bucket`],
//! [`Miner::replace_bucket`]): each brings a line's bucket up to date before mining it and puts
//! back the buckets its lines changed, and then decides as one miner would. Such a miner keeps
//! only the buckets it saw lately ([`Miner::drop_idle_buckets`]) and never buries families: the
//! others are read again.
//!
//! Memory is bounded: past its capacity of families ([`DEFAULT_CAPACITY`]) the miner evicts the
//! tenth least recently seen. An evicted family is buried as a *fossil*: its template, each
//! group's template and id, as text (about a third of a live family). A line like a fossil's
//! template revives the family whole, its groups under their ids and its few words as they
//! were, so eviction never changes an id. Past [`FOSSILS_PER_FAMILY`] fossils per family of
//! capacity, the oldest are forgotten ([`Mined::forgotten`]): a group unseen for that long
//! starts afresh if it ever comes back.

use std::hash::{Hash, Hasher};

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};
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

/// Words a position can hold apart at most: past [`FEW`], a new word is kept apart only while
/// all the position's words are verb forms (see [`is_verb_form`]).
pub const KEPT: usize = 6;

/// Live families kept before the least recently seen are evicted into fossils.
pub const DEFAULT_CAPACITY: usize = 100_000;

/// Fossils kept per family of capacity before the oldest are forgotten.
pub const FOSSILS_PER_FAMILY: usize = 4;

/// Longest masked line mined (bytes); the rest of a longer line does not take part.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

/// A stretch of a family's text (at most `4 × MAX_LINE_BYTES` long).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: u16,
    len: u16,
}

/// The template token of a mined variable position.
const WILD: Span = Span { start: u16::MAX, len: 0 };

/// `Slot::held` of a position that is a variable.
const VARIABLE: u8 = u8::MAX;

/// One position of a family: what every line compares with (6 bytes; its few words live
/// apart, in [`Family::values`], read only where the template has a wildcard).
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The word or placeholder all lines agreed on, or [`WILD`] where they differed.
    token: Span,
    /// Whether the template token is a variable the Drain way (placeholder, wildcard, digits).
    variable: bool,
    /// How many distinct words the position has shown while they are few ([`VARIABLE`] once
    /// there were more, or for a placeholder).
    held: u8,
}

impl Slot {
    const VARIABLE: Slot = Slot { token: WILD, variable: true, held: VARIABLE };
}

/// The few words a position has shown (the first `held` of them).
type Values = [Span; KEPT];

/// Lines of one shape; each combination of its few-valued words is a group. All its strings
/// live back to back in `text`.
#[derive(Debug, Clone)]
struct Family {
    text: String,
    slots: Box<[Slot]>,
    /// Per position, its few words. Kept out of the slots so that a line compared with the
    /// family reads only the slots: with many families, fewer cache lines and pages per line.
    values: Box<[Values]>,
    groups: SmallVec<[Group; 1]>,
    /// The miner's clock when a line last joined.
    last_seen: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Group {
    id: u64,
    /// Per position, the index of its word in the slot's values (0 where it is a variable).
    key: SmallVec<[u8; 16]>,
    count: u64,
    /// What the caller tagged the group with ([`Miner::tag`]), kept beside it so that a line's
    /// group brings its tag without a lookup; all zeros when untagged. Not part of the state:
    /// a restored or revived group is untagged.
    #[serde(skip)]
    tag: [u8; 32],
}

impl PartialEq for Group {
    fn eq(&self, other: &Group) -> bool {
        (self.id, &self.key, self.count) == (other.id, &other.key, other.count)
    }
}

/// An evicted family, as text: enough to revive it whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Fossil {
    /// The family's template, then each group's, a line each.
    templates: Box<str>,
    /// Each group's (id, line count), in the order of their templates.
    groups: SmallVec<[(u64, u64); 1]>,
    /// Order of burial, to forget the oldest first.
    buried: u64,
}

impl Fossil {
    fn template(&self) -> &str {
        self.templates.split('\n').next().unwrap_or("")
    }

    /// Whether the fossil's family had this token count and leading token.
    fn is_of(&self, len: usize, first: &str) -> bool {
        let template = template_tokens(self.template());
        template.len() == len && leading(&template) == first
    }
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
    /// A new id (not an existing group, live or revived).
    pub created: bool,
    /// The line changed its bucket's state beyond counts: a new family or group, a template
    /// widened, a new few-valued word, groups merged ([`Miner::export_bucket`] is worth sharing).
    pub changed: bool,
    /// Groups merged into others by this line, as (merged id, id it went into).
    pub merged: Vec<(u64, u64)>,
    /// Ids forgotten to make room (old fossils' groups, and merged ids that answered to them).
    pub forgotten: Vec<u64>,
    /// Where the group lives: [`Miner::template_at`] finds it there while [`Miner::shape`]
    /// stays as it was after this line.
    pub place: u32,
}

/// A family as saved: its template, the few words per position, its groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct FamilyState {
    /// The bucket's leading token (the first line's, or `<*>` when it was variable).
    first: String,
    tokens: Vec<String>,
    values: Vec<Option<Vec<String>>>,
    groups: Vec<Group>,
    #[serde(default)]
    last_seen: u64,
}

/// The miner's whole state, for saving and [`Miner::restore`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    similarity: f64,
    next_id: u64,
    families: Vec<FamilyState>,
    aliases: Vec<(u64, u64)>,
    #[serde(default)]
    fossils: Vec<Fossil>,
    #[serde(default)]
    clock: u64,
}

/// One bucket's part of the miner's state (its families, fossils, and the merged ids that
/// answer to their groups): what instances sharing one database exchange, bucket by bucket
/// ([`Miner::export_bucket`], [`Miner::replace_bucket`]). A line is compared only with the
/// families of its bucket, so a bucket's state decides everything about its lines.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketSnapshot {
    families: Vec<FamilyState>,
    fossils: Vec<Fossil>,
    aliases: Vec<(u64, u64)>,
}

impl BucketSnapshot {
    /// The ids of the bucket's groups, live and fossil (not the merged ones).
    pub fn group_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.families
            .iter()
            .flat_map(|f| f.groups.iter().map(|g| g.id))
            .chain(self.fossils.iter().flat_map(|f| f.groups.iter().map(|g| g.0)))
    }
}

/// The name of a line's bucket: its token count and leading token (`7 Failed`, `12 <*>`),
/// which is how the miner files it.
pub fn bucket_name(masked: &str) -> String {
    let tokens = split(cut(masked));
    format!("{} {}", tokens.len(), leading(&tokens))
}

/// The token count and leading token a bucket's name holds.
fn parse_bucket_name(name: &str) -> Option<(usize, &str)> {
    let (len, first) = name.split_once(' ')?;
    Some((len.parse().ok()?, first))
}

/// The families seen so far, bucketed by (token count, leading token).
#[derive(Debug, Clone)]
pub struct Miner {
    similarity: f64,
    capacity: usize,
    next_id: u64,
    /// Lines added so far: the order of what was seen last (and of burials).
    clock: u64,
    families: Vec<Family>,
    /// Hash of (token count, leading token) → its families (up to four kept in the map's own
    /// entry), each with what rules it out for most lines without reading it ([`Member`]).
    buckets: FxHashMap<u64, SmallVec<[Member; 4]>>,
    /// Hash of (token count, leading token) → its fossils.
    graves: FxHashMap<u64, Vec<Fossil>>,
    fossils: usize,
    /// Live group id → index of its family.
    places: FxHashMap<u64, u32>,
    /// Merged group id → the id it went into (possibly merged again later).
    aliases: FxHashMap<u64, u64>,
    /// Lines seen lately → (family index, group id), for families that come first in their
    /// bucket: the same line again goes there without being compared (see [`Miner::add`]).
    recent: Recent,
    /// Counts the changes beyond line counts (see [`Miner::shape`]).
    shape: u64,
}

/// Positions after the leading one that a [`Member`] summarises.
const SUMMARISED: usize = 8;

/// A family as its bucket lists it: its index, and a summary of its template that bounds how
/// alike a line can be to it. Where the summary shows that too many of the family's fixed words
/// differ from the line's, the family cannot reach the similarity threshold and is not read:
/// with many families in a bucket (a miner holding 100,000 groups), a line reads the family it
/// joins, not every family beside it. The bound never rules out a family the full comparison
/// would choose, so decisions are those of reading them all.
#[derive(Debug, Clone, Copy)]
struct Member {
    index: u32,
    /// Bit `p`: position `p + 1` holds a word all the family's lines had (not a variable),
    /// which a line matches only with the same word.
    fixed: u8,
    /// Byte `p`: [`word_byte`] of that word.
    words: [u8; SUMMARISED],
}

/// A byte standing for a word: equal words give equal bytes.
fn word_byte(word: &str) -> u8 {
    let b = word.as_bytes();
    match b {
        [] => 0,
        [first, .., last] => (b.len() as u8) ^ first.rotate_left(3) ^ last.rotate_left(5) ^ b[b.len() / 2],
        [only] => *only,
    }
}

/// The bytes of a line's words at the summarised positions.
fn line_bytes(tokens: &[&str]) -> [u8; SUMMARISED] {
    let mut words = [0; SUMMARISED];
    for (byte, token) in words.iter_mut().zip(tokens.iter().skip(1)) {
        *byte = word_byte(token);
    }
    words
}

impl Member {
    fn of(index: u32, family: &Family) -> Member {
        let mut member = Member { index, fixed: 0, words: [0; SUMMARISED] };
        for (p, slot) in family.slots.iter().skip(1).take(SUMMARISED).enumerate() {
            if !slot.variable {
                member.fixed |= 1 << p;
                member.words[p] = word_byte(family.word(slot.token));
            }
        }
        member
    }

    /// Whether a line of `len` tokens whose summarised bytes are `words` can be alike enough:
    /// each fixed word whose byte differs from the line's is a position that disagrees.
    fn may_reach(&self, words: &[u8; SUMMARISED], len: usize, similarity: f64) -> bool {
        // The high bit of each byte of `x` that is not zero, gathered into one byte.
        let x = u64::from_le_bytes(self.words) ^ u64::from_le_bytes(*words);
        const LOW: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        let high = (((x & LOW) + LOW) | x) & !LOW;
        let nonzero = ((high >> 7).wrapping_mul(0x0102_0408_1020_4080) >> 56) as u8;
        let differ = (nonzero & self.fixed).count_ones() as usize;
        len == 0 || len.saturating_sub(differ) as f64 / len as f64 >= similarity
    }
}

/// Most lines [`Miner::recent`] remembers before it starts over.
const RECENT_LINES: usize = 4096;

/// Lines seen lately and where they went, all in one string: remembering a line allocates
/// nothing, and forgetting them all frees nothing (a line is looked up by its hash, then
/// compared whole).
#[derive(Debug, Clone, Default)]
struct Recent {
    text: String,
    /// Hash of a line → (where it starts in `text`, its length, family index, group id).
    lines: FxHashMap<u64, (u32, u32, u32, u64)>,
}

impl Recent {
    fn hash(line: &str) -> u64 {
        let mut hasher = FxHasher::default();
        hasher.write(line.as_bytes());
        hasher.finish()
    }

    fn get(&self, line: &str) -> Option<(u32, u64)> {
        let &(start, len, index, id) = self.lines.get(&Recent::hash(line))?;
        (self.text.get(start as usize..(start + len) as usize) == Some(line)).then_some((index, id))
    }

    fn insert(&mut self, line: &str, index: u32, id: u64) {
        if self.lines.len() >= RECENT_LINES || self.text.len() + line.len() > u32::MAX as usize {
            self.clear();
        }
        let start = self.text.len() as u32;
        self.text.push_str(line);
        self.lines.insert(Recent::hash(line), (start, line.len() as u32, index, id));
    }

    fn clear(&mut self) {
        self.text.clear();
        self.lines.clear();
    }
}

impl Default for Miner {
    fn default() -> Self {
        Miner::new(DEFAULT_SIMILARITY)
    }
}

/// A masked value or wildcard, or a token holding one (`blk_<NUM>`, `/<IP>`): never a word
/// with few values.
fn is_placeholder(token: &str) -> bool {
    token.len() > 2 && open_at(token).is_some_and(|open| token.as_bytes()[open..].contains(&b'>'))
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
    match open_at(token) {
        Some(open) if is_placeholder(token) => &token[..=open],
        _ => token,
    }
}

/// Where a token's first `<` is (tokens are short: a plain loop beats a searcher).
fn open_at(token: &str) -> Option<usize> {
    token.bytes().position(|b| b == b'<')
}

/// String equality for short tokens, without a call to `memcmp`.
#[inline]
fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    match a.len() {
        n if n != b.len() => false,
        0..=32 => a.iter().zip(b).all(|(x, y)| x == y),
        _ => a == b,
    }
}

/// A token Drain would call a variable: a placeholder or anything with a digit.
fn is_variable(token: &str) -> bool {
    is_masked(token) || token.bytes().any(|b| b.is_ascii_digit())
}

/// A past participle or gerund (`started`, `resuming`): lower-case letters ending in `ed` or
/// `ing`, four letters or more.
fn is_verb_form(word: &str) -> bool {
    word.len() >= 4
        && word.bytes().all(|b| b.is_ascii_lowercase())
        && (word.ends_with("ed") || word.ends_with("ing"))
}

/// A name rather than a word: joined parts (`nova.compute.manager`, `svc-api`, `job_runner`,
/// `kernel/mm`), which name one of many things of a kind, as a number does.
fn is_name(token: &str) -> bool {
    let b = token.as_bytes();
    b.len() > 2 && b[1..b.len() - 1].iter().any(|c| matches!(c, b'.' | b'-' | b'_' | b'/'))
}

/// The bucket's leading token of a line: its first token, or `<*>` when that is variable or a
/// name (a leading service or job name with a handful of values is one event, as any other
/// position's few values are: see [`FEW`]).
fn leading<'a>(tokens: &[&'a str]) -> &'a str {
    match tokens.first() {
        Some(t) if is_variable(t) || is_name(t) => WILDCARD,
        Some(t) => t,
        None => "",
    }
}

/// The bucket of lines with this token count and leading token.
fn bucket_key(len: usize, first: &str) -> u64 {
    let mut hasher = FxHasher::default();
    len.hash(&mut hasher);
    first.hash(&mut hasher);
    hasher.finish()
}

/// The tokens of a template (none for the empty one).
fn template_tokens(template: &str) -> Tokens<'_> {
    if template.is_empty() { Tokens::new() } else { template.split(' ').collect() }
}

/// Share of positions where a template agrees with a line: the same word, a wildcard, or two
/// variables (each template token comes with whether it is a variable).
fn similarity<'t>(template: impl Iterator<Item = (&'t str, bool)>, tokens: &[&str]) -> f64 {
    if tokens.is_empty() {
        return 1.0;
    }
    let same = template
        .zip(tokens)
        .filter(|((word, variable), t)| same(word, t) || *variable && (*word == WILDCARD || is_variable(t)))
        .count();
    same as f64 / tokens.len() as f64
}

impl Family {
    fn word(&self, span: Span) -> &str {
        if span == WILD { WILDCARD } else { &self.text[usize::from(span.start)..][..usize::from(span.len)] }
    }

    fn push(&mut self, word: &str) -> Span {
        let span = Span { start: self.text.len() as u16, len: word.len() as u16 };
        self.text.push_str(word);
        span
    }

    /// A position whose template token is `token`: a word holds itself as its one value.
    fn slot(&mut self, token: &str) -> (Slot, Values) {
        let mut values = [WILD; KEPT];
        if token == WILDCARD {
            return (Slot::VARIABLE, values);
        }
        let mut slot = Slot { token: self.push(token), variable: is_variable(token), ..Slot::VARIABLE };
        if !is_masked(token) {
            values[0] = Span { start: slot.token.start, len: value_key(token).len() as u16 };
            slot.held = 1;
        }
        (slot, values)
    }

    /// A family of one line.
    fn new(tokens: &[&str], group: Group, last_seen: u64) -> Family {
        let mut family = Family {
            text: String::with_capacity(tokens.iter().map(|t| t.len()).sum()),
            slots: Box::default(),
            values: Box::default(),
            groups: smallvec::smallvec![group],
            last_seen,
        };
        let (slots, values): (Vec<Slot>, Vec<Values>) = tokens.iter().map(|t| family.slot(t)).unzip();
        family.slots = slots.into_boxed_slice();
        family.values = values.into_boxed_slice();
        family
    }

    /// The bucket's leading token: the first token all lines shared, or `<*>`.
    fn first(&self) -> &str {
        match self.slots.first() {
            Some(slot) if slot.variable || is_name(self.word(slot.token)) => WILDCARD,
            Some(slot) => self.word(slot.token),
            None => "",
        }
    }

    fn similarity(&self, tokens: &[&str]) -> f64 {
        similarity(self.slots.iter().map(|s| (self.word(s.token), s.variable)), tokens)
    }

    /// The family's template: `<*>` where its lines differed.
    fn template(&self) -> String {
        let words: Vec<&str> = self.slots.iter().map(|s| self.word(s.token)).collect();
        words.join(" ")
    }

    /// Whether the `held` words of position `p` and `new` are all verb forms: words that say
    /// what happened (`started`, `stopped`, `paused`, `resumed`), each its own event however
    /// many the position shows, where names and other values are not inflected.
    fn verb_forms(&self, p: usize, held: usize, new: &str) -> bool {
        is_verb_form(new) && self.values[p][..held].iter().all(|v| is_verb_form(self.word(*v)))
    }

    /// A group's word at position `p`: the template's, or the group's own where few words
    /// differ.
    fn group_word(&self, group: &Group, p: usize) -> &str {
        let slot = &self.slots[p];
        let value = self.word(self.values[p][usize::from(group.key[p])]);
        // A held placeholder's key (`LOGIN(uid=<`) is shown as the wildcard.
        if slot.held != VARIABLE && slot.token == WILD && !value.ends_with('<') {
            value
        } else {
            self.word(slot.token)
        }
    }

    /// A group's template: the family's, with the group's own word where few words differ.
    fn render(&self, group: &Group) -> String {
        let mut out = String::with_capacity(self.text.len());
        for p in 0..self.slots.len() {
            if p > 0 {
                out.push(' ');
            }
            out.push_str(self.group_word(group, p));
        }
        out
    }

    /// The family as a fossil: its template, then for each group its words at the
    /// template's `<*>` positions.
    fn bury(&self, buried: u64) -> Fossil {
        let mut templates = self.template();
        for group in &self.groups {
            templates.push('\n');
            let wild = (0..self.slots.len()).filter(|p| self.slots[*p].token == WILD);
            for (i, p) in wild.enumerate() {
                if i > 0 {
                    templates.push(' ');
                }
                templates.push_str(self.group_word(group, p));
            }
        }
        Fossil {
            templates: templates.into_boxed_str(),
            groups: self.groups.iter().map(|g| (g.id, g.count)).collect(),
            buried,
        }
    }

    /// The family a fossil was: where its groups show different words at a `<*>` of the
    /// template, those are the position's few words; where all show `<*>`, it is a variable.
    fn revive(fossil: &Fossil, last_seen: u64) -> Family {
        let mut lines = fossil.templates.split('\n');
        let template = template_tokens(lines.next().unwrap_or(""));
        let groups: Vec<Tokens> = lines
            .map(|line| {
                let mut own = line.split(' ');
                template
                    .iter()
                    .map(|t| if *t == WILDCARD { own.next().unwrap_or(WILDCARD) } else { t })
                    .collect()
            })
            .collect();
        let mut family = Family {
            text: String::new(),
            slots: Box::default(),
            values: Box::default(),
            groups: SmallVec::new(),
            last_seen,
        };
        let mut slots = Vec::with_capacity(template.len());
        let mut all_values = Vec::with_capacity(template.len());
        for (p, token) in template.iter().enumerate() {
            let (mut slot, mut values) = family.slot(token);
            if slot.token == WILD {
                for words in &groups {
                    let word = words.get(p).copied().unwrap_or(WILDCARD);
                    let held = usize::from(if slot.held == VARIABLE { 0 } else { slot.held });
                    if word == WILDCARD
                        || held == KEPT
                        || values[..held].iter().any(|v| family.word(*v) == word)
                    {
                        continue;
                    }
                    values[held] = family.push(word);
                    slot.held = held as u8 + 1;
                }
            }
            slots.push(slot);
            all_values.push(values);
        }
        family.slots = slots.into_boxed_slice();
        family.values = all_values.into_boxed_slice();
        for (words, (id, count)) in groups.iter().zip(&fossil.groups) {
            let key = family
                .slots
                .iter()
                .zip(&family.values)
                .enumerate()
                .map(|(p, (slot, values))| {
                    let word = words.get(p).copied().unwrap_or(WILDCARD);
                    let held = if slot.held == VARIABLE { 0 } else { usize::from(slot.held) };
                    values[..held].iter().position(|v| family.word(*v) == word).unwrap_or(0) as u8
                })
                .collect();
            family.groups.push(Group { id: *id, key, count: *count, tag: [0; 32] });
        }
        family
    }

    fn state(&self) -> FamilyState {
        FamilyState {
            first: self.first().to_owned(),
            tokens: self.slots.iter().map(|s| self.word(s.token).to_owned()).collect(),
            values: self
                .slots
                .iter()
                .zip(&self.values)
                .map(|(s, values)| {
                    (s.held != VARIABLE).then(|| {
                        values[..usize::from(s.held)].iter().map(|v| self.word(*v).to_owned()).collect()
                    })
                })
                .collect(),
            groups: self.groups.to_vec(),
            last_seen: self.last_seen,
        }
    }

    fn from_state(state: FamilyState) -> Family {
        let mut family = Family {
            text: String::new(),
            slots: Box::default(),
            values: Box::default(),
            groups: state.groups.into(),
            last_seen: state.last_seen,
        };
        let (slots, values): (Vec<Slot>, Vec<Values>) = state
            .tokens
            .iter()
            .zip(state.values.iter().chain(std::iter::repeat(&None)))
            .map(|(token, values)| {
                let token = if token == WILDCARD { WILD } else { family.push(token) };
                let mut slot = Slot {
                    token,
                    variable: token == WILD || is_variable(family.word(token)),
                    ..Slot::VARIABLE
                };
                let mut held = [WILD; KEPT];
                if let Some(values) = values.as_ref().filter(|v| !v.is_empty() && v.len() <= KEPT) {
                    for (i, v) in values.iter().enumerate() {
                        held[i] = family.push(v);
                    }
                    slot.held = values.len() as u8;
                }
                (slot, held)
            })
            .unzip();
        family.slots = slots.into_boxed_slice();
        family.values = values.into_boxed_slice();
        let positions = family.slots.len();
        for group in &mut family.groups {
            group.key.resize(positions, 0);
            for (p, k) in group.key.iter_mut().enumerate() {
                let held = family.slots[p].held;
                if held == VARIABLE || *k >= held {
                    *k = 0;
                }
            }
        }
        family
    }
}

/// A line's tokens, split at ASCII whitespace (a plain loop: the hot path of every line).
fn split(line: &str) -> Tokens<'_> {
    let b = line.as_bytes();
    let mut tokens = Tokens::new();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        if i > start {
            // Both ends are at ASCII bytes or the ends of the line: character boundaries.
            tokens.push(&line[start..i]);
        }
    }
    tokens
}

/// The first `MAX_LINE_BYTES` of a line, cut at a character boundary.
fn cut(line: &str) -> &str {
    &line[..line.floor_char_boundary(MAX_LINE_BYTES)]
}

impl Miner {
    pub fn new(similarity: f64) -> Miner {
        Miner {
            similarity,
            capacity: DEFAULT_CAPACITY,
            next_id: 1,
            clock: 0,
            families: Vec::new(),
            buckets: FxHashMap::default(),
            graves: FxHashMap::default(),
            fossils: 0,
            places: FxHashMap::default(),
            aliases: FxHashMap::default(),
            recent: Recent::default(),
            shape: 0,
        }
    }

    /// The same miner with room for `capacity` live families (at least one).
    pub fn with_capacity(mut self, capacity: usize) -> Miner {
        self.capacity = capacity.max(1);
        self
    }

    /// Adds one masked line; returns its group.
    pub fn add(&mut self, masked: &str) -> Mined {
        let mined = self.place_line(masked);
        if mined.changed {
            self.shape += 1;
        }
        mined
    }

    /// Changes so far beyond line counts: while it stays the same, every group keeps its id,
    /// template and place ([`Mined::place`]).
    pub fn shape(&self) -> u64 {
        self.shape
    }

    /// [`Miner::template`] of a group at the place a line found it, for as long as
    /// [`Miner::shape`] stays as it was after that line: no lookup of the id.
    pub fn template_at(&self, place: u32, id: u64) -> Option<String> {
        self.template_and_tag_at(place, id).map(|(template, _)| template)
    }

    /// [`Miner::template_at`], with the group's tag ([`Miner::tag`]; `None` when untagged).
    pub fn template_and_tag_at(&self, place: u32, id: u64) -> Option<(String, Option<[u8; 32]>)> {
        let family = self.families.get(place as usize)?;
        let group = family.groups.iter().find(|g| g.id == id)?;
        Some((family.render(group), (group.tag != [0; 32]).then_some(group.tag)))
    }

    /// Tags the group a line was just put in (at [`Mined::place`]), for
    /// [`Miner::template_and_tag_at`] to return with it: the caller's own data about the
    /// group, kept beside it in memory. Tags are not saved: the caller keeps its own copy.
    pub fn tag(&mut self, place: u32, id: u64, tag: [u8; 32]) {
        if let Some(group) =
            self.families.get_mut(place as usize).and_then(|f| f.groups.iter_mut().find(|g| g.id == id))
        {
            group.tag = tag;
        }
    }

    fn place_line(&mut self, masked: &str) -> Mined {
        self.clock += 1;
        let line = cut(masked);
        // A line seen before whose family comes first in its bucket goes there again: that
        // family agrees with it everywhere (templates only widen), so it is the most alike and,
        // being first, wins any tie; the line's words are all known there, so its group is the
        // same one (or the one that group was merged into).
        if let Some((index, id)) = self.recent.get(line) {
            let id = self.resolve(id);
            let family = &mut self.families[index as usize];
            if let Some(group) = family.groups.iter_mut().find(|g| g.id == id) {
                group.count += 1;
                family.last_seen = self.clock;
                return Mined {
                    cluster_id: id,
                    created: false,
                    changed: false,
                    merged: Vec::new(),
                    forgotten: Vec::new(),
                    place: index,
                };
            }
        }
        let tokens = split(line);
        let first = leading(&tokens);
        let key = bucket_key(tokens.len(), first);
        let mut best: Option<(usize, f64)> = None;
        let members = self.buckets.get(&key).map_or(&[][..], |b| &b[..]);
        // A lone family is read anyway; among several, only those the summary leaves possible.
        let bucket: SmallVec<[u32; 4]> = if members.len() < 2 {
            members.iter().map(|m| m.index).collect()
        } else {
            let words = line_bytes(&tokens);
            members
                .iter()
                .filter(|m| m.may_reach(&words, tokens.len(), self.similarity))
                .map(|m| m.index)
                .collect()
        };
        // With many families their memory is seldom cached: the families left are read once,
        // side by side, so the processor waits for them together rather than one after
        // another.
        let mut warm = 0usize;
        for &index in &bucket {
            let family = &self.families[index as usize];
            warm ^= usize::from(family.slots.first().map_or(0, |s| s.token.start))
                ^ usize::from(family.text.as_bytes().first().copied().unwrap_or(0));
        }
        std::hint::black_box(warm);
        for &index in &bucket {
            let family = &self.families[index as usize];
            if family.slots.len() != tokens.len() || family.first() != first {
                continue; // another bucket's hash
            }
            let score = family.similarity(&tokens);
            if score >= self.similarity && best.is_none_or(|(_, s)| score > s) {
                best = Some((index as usize, score));
                if score >= 1.0 {
                    break; // none can be more alike, and ties go to the first
                }
            }
        }
        if let Some((index, _)) = best {
            let mined = self.join(index, &tokens);
            if mined.changed {
                self.refile(key, index as u32);
            }
            if self.buckets.get(&key).and_then(|b| b.first()).map(|m| m.index) == Some(index as u32) {
                self.recent.insert(line, index as u32, mined.cluster_id);
            }
            return mined;
        }
        if let Some(index) = self.revive(key, &tokens) {
            let mut mined = self.join(index, &tokens);
            self.refile(key, index as u32);
            mined.forgotten = self.make_room();
            mined.place = self.places.get(&mined.cluster_id).copied().unwrap_or(mined.place);
            // A live family takes part in a line's choice where a fossil does not.
            mined.changed = true;
            return mined;
        }
        let id = self.fresh_id(&tokens.join(" "));
        let group = Group { id, key: smallvec::smallvec![0; tokens.len()], count: 1, tag: [0; 32] };
        let index = self.families.len() as u32;
        self.families.push(Family::new(&tokens, group, self.clock));
        self.places.insert(id, index);
        self.file(key, index);
        if self.buckets.get(&key).map_or(0, |b| b.len()) == 1 {
            self.recent.insert(line, index, id);
        }
        let forgotten = self.make_room();
        let place = self.places.get(&id).copied().unwrap_or(index);
        Mined { cluster_id: id, created: true, changed: true, merged: Vec::new(), forgotten, place }
    }

    /// Lists family `index` in bucket `key`.
    fn file(&mut self, key: u64, index: u32) {
        let member = Member::of(index, &self.families[index as usize]);
        self.buckets.entry(key).or_default().push(member);
    }

    /// Brings family `index`'s summary in bucket `key` up to date (its template changed).
    fn refile(&mut self, key: u64, index: u32) {
        let member = Member::of(index, &self.families[index as usize]);
        if let Some(listed) = self.buckets.get_mut(&key).and_then(|b| b.iter_mut().find(|m| m.index == index))
        {
            *listed = member;
        }
    }

    /// A new group's id: a hash of its first line, so miners of several instances that create
    /// the same group at once name it alike, and one's ids never clash with another's. (A line
    /// always goes to the group it created, or the one that group was merged into: while a
    /// group lives, no other is created from its first line.)
    fn fresh_id(&mut self, line: &str) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        line.hash(&mut hasher);
        let mut id = hasher.finish();
        while id == 0 || self.places.contains_key(&id) || self.aliases.contains_key(&id) {
            id = id.wrapping_add(1);
        }
        self.next_id += 1;
        id
    }

    /// Revives the fossil of the line's bucket most like it, if any is like enough; returns
    /// the revived family's index.
    fn revive(&mut self, key: u64, tokens: &[&str]) -> Option<usize> {
        let grave = self.graves.get_mut(&key)?;
        let mut best: Option<(usize, f64)> = None;
        for (at, fossil) in grave.iter().enumerate() {
            let template = template_tokens(fossil.template());
            if template.len() != tokens.len() || leading(&template) != leading(tokens) {
                continue;
            }
            let score = similarity(template.iter().map(|w| (*w, is_variable(w))), tokens);
            if score >= self.similarity && best.is_none_or(|(_, s)| score > s) {
                best = Some((at, score));
            }
        }
        let fossil = grave.swap_remove(best?.0);
        if grave.is_empty() {
            self.graves.remove(&key);
        }
        self.fossils -= 1;
        let index = self.families.len() as u32;
        let family = Family::revive(&fossil, self.clock);
        for group in &family.groups {
            self.places.insert(group.id, index);
        }
        self.families.push(family);
        self.file(key, index);
        Some(index as usize)
    }

    /// Puts a line into family `index`: generalises its template, notes its words, and finds
    /// or creates the line's group.
    fn join(&mut self, index: usize, tokens: &[&str]) -> Mined {
        let mut key: SmallVec<[u8; 16]> = smallvec::smallvec![0u8; tokens.len()];
        let mut widened = false;
        let mut changed = false;
        let family = &mut self.families[index];
        family.last_seen = self.clock;
        for (p, new) in tokens.iter().enumerate() {
            let slot = family.slots[p];
            if slot.token != WILD {
                if same(family.word(slot.token), new) {
                    // All lines had this token: its value is the one held (key 0), if any.
                    continue;
                }
                family.slots[p].token = WILD;
                family.slots[p].variable = true;
                changed = true;
            }
            if slot.held == VARIABLE {
                continue;
            }
            let value = value_key(new);
            let held = usize::from(slot.held);
            let values = family.values[p];
            match values[..held].iter().position(|w| same(family.word(*w), value)) {
                Some(at) => key[p] = at as u8,
                None if (held < FEW || held < KEPT && family.verb_forms(p, held, value))
                    && !is_masked(new)
                    && !value.ends_with('<')
                    && !family.word(values[0]).ends_with('<') =>
                {
                    key[p] = slot.held;
                    family.values[p][held] = family.push(value);
                    family.slots[p].held += 1;
                    changed = true;
                }
                None => {
                    family.slots[p].held = VARIABLE;
                    for group in &mut family.groups {
                        group.key[p] = 0;
                    }
                    widened = true;
                }
            }
        }
        let merged = if widened { self.merge_equal_keys(index) } else { Vec::new() };
        let family = &mut self.families[index];
        if let Some(group) = family.groups.iter_mut().find(|g| g.key == key) {
            group.count += 1;
            return Mined {
                cluster_id: group.id,
                created: false,
                changed: changed || widened,
                merged,
                forgotten: Vec::new(),
                place: index as u32,
            };
        }
        let id = self.fresh_id(&tokens.join(" "));
        self.families[index].groups.push(Group { id, key, count: 1, tag: [0; 32] });
        self.places.insert(id, index as u32);
        Mined {
            cluster_id: id,
            created: true,
            changed: true,
            merged,
            forgotten: Vec::new(),
            place: index as u32,
        }
    }

    /// After a position became a variable, groups of the family whose keys are now equal are
    /// one: each goes into the oldest.
    fn merge_equal_keys(&mut self, index: usize) -> Vec<(u64, u64)> {
        // A family's groups are in the order they were created.
        let family = &mut self.families[index];
        let mut kept: SmallVec<[Group; 1]> = SmallVec::new();
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
        for (id, _) in &merged {
            self.places.remove(id);
        }
        self.aliases.extend(merged.iter().copied());
        merged
    }

    /// Past capacity, evicts the least recently seen tenth of the families into fossils (the
    /// family just used stays), and forgets the oldest fossils past their room. Returns the
    /// forgotten ids.
    fn make_room(&mut self) -> Vec<u64> {
        if self.families.len() <= self.capacity {
            return Vec::new();
        }
        let keep = (self.capacity - self.capacity / 10).max(1);
        let excess = self.families.len() - keep;
        let mut stamps: Vec<u64> = self.families.iter().map(|f| f.last_seen).collect();
        let cutoff = *stamps.select_nth_unstable(excess - 1).1;
        let mut kept = Vec::with_capacity(self.capacity);
        for family in std::mem::take(&mut self.families) {
            if family.last_seen > cutoff || family.last_seen == self.clock {
                kept.push(family);
                continue;
            }
            let key = bucket_key(family.slots.len(), family.first());
            self.graves.entry(key).or_default().push(family.bury(self.clock));
            self.fossils += 1;
        }
        self.families = kept;
        self.reindex();
        self.forget()
    }

    /// Files every family in its bucket and every group at its family again, after families
    /// were removed.
    fn reindex(&mut self) {
        self.buckets.clear();
        self.places.clear();
        self.recent.clear();
        for (index, family) in self.families.iter().enumerate() {
            let key = bucket_key(family.slots.len(), family.first());
            self.buckets.entry(key).or_default().push(Member::of(index as u32, family));
            for group in &family.groups {
                self.places.insert(group.id, index as u32);
            }
        }
    }

    /// Forgets the oldest fossils past [`FOSSILS_PER_FAMILY`] × capacity, and the merged ids
    /// that answered to them.
    fn forget(&mut self) -> Vec<u64> {
        let room = self.capacity.saturating_mul(FOSSILS_PER_FAMILY);
        if self.fossils <= room {
            return Vec::new();
        }
        let excess = self.fossils - room;
        let mut stamps: Vec<u64> = self.graves.values().flatten().map(|f| f.buried).collect();
        let cutoff = *stamps.select_nth_unstable(excess - 1).1;
        let mut forgotten: Vec<u64> = Vec::new();
        let mut gone = 0;
        for grave in self.graves.values_mut() {
            grave.retain(|f| {
                let old = f.buried <= cutoff;
                if old {
                    forgotten.extend(f.groups.iter().map(|(id, _)| *id));
                    gone += 1;
                }
                !old
            });
        }
        self.graves.retain(|_, grave| !grave.is_empty());
        self.fossils -= gone;
        let answering = self.unalias(&forgotten);
        forgotten.extend(answering);
        forgotten
    }

    /// Removes the merged ids that answer to any of `ended`; returns them.
    fn unalias(&mut self, ended: &[u64]) -> Vec<u64> {
        let ended: FxHashSet<u64> = ended.iter().copied().collect();
        let answering: Vec<u64> =
            self.aliases.keys().copied().filter(|a| ended.contains(&self.resolve(*a))).collect();
        for alias in &answering {
            self.aliases.remove(alias);
        }
        answering
    }

    /// The id a group answers to now: itself, or the group it was merged into.
    pub fn resolve(&self, mut id: u64) -> u64 {
        while let Some(&into) = self.aliases.get(&id) {
            id = into;
        }
        id
    }

    /// A live group's current template (also for a merged id); `None` for an evicted group.
    pub fn template(&self, id: u64) -> Option<String> {
        let id = self.resolve(id);
        self.template_at(*self.places.get(&id)?, id)
    }

    /// The live groups (merged and evicted ones are not listed).
    pub fn clusters(&self) -> Vec<Cluster> {
        self.families
            .iter()
            .flat_map(|f| {
                f.groups.iter().map(move |g| Cluster { id: g.id, template: f.render(g), count: g.count })
            })
            .collect()
    }

    /// Live families, and fossils of evicted ones.
    pub fn families(&self) -> (usize, usize) {
        (self.families.len(), self.fossils)
    }

    /// The whole state, to save.
    pub fn snapshot(&self) -> Snapshot {
        let mut aliases: Vec<(u64, u64)> = self.aliases.iter().map(|(a, b)| (*a, *b)).collect();
        aliases.sort_unstable();
        let mut fossils: Vec<Fossil> = self.graves.values().flatten().cloned().collect();
        fossils.sort_unstable_by_key(|f| (f.buried, f.groups.first().map(|g| g.0)));
        Snapshot {
            similarity: self.similarity,
            next_id: self.next_id,
            families: self.families.iter().map(Family::state).collect(),
            aliases,
            fossils,
            clock: self.clock,
        }
    }

    /// A miner in the state a snapshot saved: the same lines then map to the same ids.
    pub fn restore(snapshot: Snapshot) -> Miner {
        let mut miner = Miner::new(snapshot.similarity);
        miner.next_id = snapshot.next_id;
        miner.clock = snapshot.clock;
        miner.aliases = snapshot.aliases.into_iter().collect();
        for state in snapshot.families.into_iter().filter(FamilyState::fits) {
            let index = miner.families.len() as u32;
            let family = Family::from_state(state);
            let key = bucket_key(family.slots.len(), family.first());
            miner.buckets.entry(key).or_default().push(Member::of(index, &family));
            for group in &family.groups {
                miner.places.insert(group.id, index);
            }
            miner.families.push(family);
        }
        for fossil in snapshot.fossils.into_iter().filter(Fossil::fits) {
            let key = {
                let template = template_tokens(fossil.template());
                bucket_key(template.len(), leading(&template))
            };
            miner.graves.entry(key).or_default().push(fossil);
            miner.fossils += 1;
        }
        miner
    }

    /// The bucket's families (in the order lines meet them), fossils, and the merged ids that
    /// answer to their groups.
    pub fn export_bucket(&self, name: &str) -> BucketSnapshot {
        let Some((len, first)) = parse_bucket_name(name) else { return BucketSnapshot::default() };
        let key = bucket_key(len, first);
        let families: Vec<FamilyState> = self
            .bucket_families(key, len, first)
            .map(|index| self.families[index as usize].state())
            .collect();
        let fossils: Vec<Fossil> =
            self.graves.get(&key).into_iter().flatten().filter(|f| f.is_of(len, first)).cloned().collect();
        let mut bucket = BucketSnapshot { families, fossils, aliases: Vec::new() };
        let ids: FxHashSet<u64> = bucket.group_ids().collect();
        let mut aliases: Vec<(u64, u64)> = self
            .aliases
            .iter()
            .filter(|(merged, _)| ids.contains(&self.resolve(**merged)))
            .map(|(a, b)| (*a, *b))
            .collect();
        aliases.sort_unstable();
        bucket.aliases = aliases;
        bucket
    }

    /// Indexes of the live families of a bucket (leaving out other buckets of the same hash).
    fn bucket_families(&self, key: u64, len: usize, first: &str) -> impl Iterator<Item = u32> + '_ {
        let first = first.to_owned();
        self.buckets.get(&key).into_iter().flatten().map(|m| m.index).filter(move |index| {
            let family = &self.families[*index as usize];
            family.slots.len() == len && family.first() == first
        })
    }

    /// Puts a bucket in the state another miner exported: its families, fossils and merged ids
    /// are replaced whole; the rest of the miner is left as it is. Returns the group ids (live,
    /// fossil and merged) the bucket held before, for the caller's own maps.
    pub fn replace_bucket(&mut self, name: &str, snapshot: BucketSnapshot) -> Vec<u64> {
        self.shape += 1;
        let Some((len, first)) = parse_bucket_name(name) else { return Vec::new() };
        let key = bucket_key(len, first);
        let old = self.export_bucket(name);
        let mut gone: Vec<u64> = old.group_ids().collect();
        for (merged, _) in &old.aliases {
            self.aliases.remove(merged);
            gone.push(*merged);
        }
        // Families: overwritten in place where the bucket had them, the rest added at the end;
        // when it now has fewer (another miner evicted some), the miner is indexed again.
        let places: Vec<u32> = self.bucket_families(key, len, first).collect();
        let mut incoming: Vec<Family> = snapshot
            .families
            .into_iter()
            .filter(FamilyState::fits)
            .map(|state| {
                let mut family = Family::from_state(state);
                family.last_seen = self.clock;
                family
            })
            .collect();
        for id in &gone {
            self.places.remove(id);
        }
        self.recent.clear();
        if incoming.len() >= places.len() {
            let extra = incoming.split_off(places.len());
            for (&index, family) in places.iter().zip(incoming) {
                for group in &family.groups {
                    self.places.insert(group.id, index);
                }
                self.families[index as usize] = family;
                self.refile(key, index);
            }
            for family in extra {
                let index = self.families.len() as u32;
                for group in &family.groups {
                    self.places.insert(group.id, index);
                }
                self.families.push(family);
                self.file(key, index);
            }
        } else {
            let mut places = places;
            places.sort_unstable();
            let mut at = 0;
            let mut index = 0u32;
            self.families.retain(|_| {
                let keep = places.get(at) != Some(&index);
                at += usize::from(!keep);
                index += 1;
                keep
            });
            self.families.extend(incoming);
            self.reindex();
        }
        // Fossils and merged ids.
        if let Some(grave) = self.graves.get_mut(&key) {
            let before = grave.len();
            grave.retain(|f| !f.is_of(len, first));
            self.fossils -= before - grave.len();
        }
        let clock = self.clock;
        let fossils: Vec<Fossil> = snapshot
            .fossils
            .into_iter()
            .filter(|f| f.fits() && f.is_of(len, first))
            .map(|f| Fossil { buried: clock, ..f })
            .collect();
        self.fossils += fossils.len();
        if !fossils.is_empty() {
            self.graves.entry(key).or_default().extend(fossils);
        }
        self.graves.retain(|_, grave| !grave.is_empty());
        self.aliases.extend(snapshot.aliases);
        gone
    }

    /// Past `capacity` live families, the least recently seen buckets (a tenth of the
    /// capacity's worth of families, at least), dropped whole: families, fossils and merged
    /// ids. For a miner whose buckets are kept elsewhere too (instances sharing a database):
    /// a dropped bucket is read again when a line needs it, so, unlike eviction into fossils,
    /// this never changes what a line is decided. Returns the dropped buckets' names and ids.
    pub fn drop_idle_buckets(&mut self, capacity: usize) -> (Vec<String>, Vec<u64>) {
        if self.families.len() <= capacity {
            return (Vec::new(), Vec::new());
        }
        self.shape += 1;
        let keep = (capacity - capacity / 10).max(1);
        // Each bucket's last sighting and live families.
        let mut seen: FxHashMap<String, (u64, usize)> = FxHashMap::default();
        for family in &self.families {
            let (last, size) = seen.entry(format!("{} {}", family.slots.len(), family.first())).or_default();
            *last = (*last).max(family.last_seen);
            *size += 1;
        }
        let mut order: Vec<(u64, usize, String)> =
            seen.into_iter().map(|(name, (last, size))| (last, size, name)).collect();
        order.sort_unstable();
        let mut live = self.families.len();
        let mut names = Vec::new();
        for (_, size, name) in order {
            if live <= keep {
                break;
            }
            live -= size;
            names.push(name);
        }
        let dropped: FxHashSet<&str> = names.iter().map(String::as_str).collect();
        let mut ids: Vec<u64> = Vec::new();
        self.families.retain(|family| {
            let gone = dropped.contains(format!("{} {}", family.slots.len(), family.first()).as_str());
            if gone {
                ids.extend(family.groups.iter().map(|g| g.id));
            }
            !gone
        });
        for grave in self.graves.values_mut() {
            grave.retain(|fossil| {
                let template = template_tokens(fossil.template());
                let gone = dropped.contains(format!("{} {}", template.len(), leading(&template)).as_str());
                if gone {
                    ids.extend(fossil.groups.iter().map(|g| g.0));
                }
                !gone
            });
        }
        self.graves.retain(|_, grave| !grave.is_empty());
        self.fossils = self.graves.values().map(Vec::len).sum();
        let answering = self.unalias(&ids);
        ids.extend(answering);
        self.reindex();
        (names, ids)
    }

    /// The names of the buckets holding live families or fossils.
    pub fn bucket_names(&self) -> Vec<String> {
        let mut names: FxHashSet<String> =
            self.families.iter().map(|f| format!("{} {}", f.slots.len(), f.first())).collect();
        for fossil in self.graves.values().flatten() {
            let template = template_tokens(fossil.template());
            names.insert(format!("{} {}", template.len(), leading(&template)));
        }
        let mut names: Vec<String> = names.into_iter().collect();
        names.sort_unstable();
        names
    }
}

/// A family's strings must fit its 16-bit spans; only a damaged state has longer ones (lines are
/// mined on their first `MAX_LINE_BYTES`), and such a family is left out.
fn fits(len: usize) -> bool {
    len < usize::from(u16::MAX)
}

impl FamilyState {
    fn fits(&self) -> bool {
        let strings = self.tokens.iter().chain(self.values.iter().flatten().flatten());
        fits(strings.map(String::len).sum())
    }
}

impl Fossil {
    fn fits(&self) -> bool {
        fits(self.templates.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lines of 3 to 10 words from a small vocabulary (with numbers and placeholders), so
    /// that families share buckets, widen, and lines fall on both sides of the threshold.
    fn mixed_lines(n: u64) -> Vec<String> {
        const WORDS: [&str; 12] =
            ["open", "close", "read", "disk", "<NUM>", "42", "user", "alice", "bob", "<IP>", "fail", "ok"];
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        (0..n)
            .map(|_| {
                let len = 3 + next() % 8;
                let first = ["job", "<NUM>", "svc-api"][(next() % 3) as usize];
                let rest: Vec<&str> = (1..len).map(|_| WORDS[(next() % 12) as usize]).collect();
                format!("{first} {}", rest.join(" "))
            })
            .collect()
    }

    #[test]
    fn a_family_ruled_out_by_its_summary_is_never_alike_enough() {
        let mut m = Miner::default();
        let lines = mixed_lines(3000);
        for line in &lines {
            m.add(line);
        }
        let mut ruled_out = 0;
        for (key, members) in &m.buckets {
            for member in members {
                let family = &m.families[member.index as usize];
                let fresh = Member::of(member.index, family);
                assert_eq!(
                    (member.fixed, member.words),
                    (fresh.fixed, fresh.words),
                    "summary kept up to date"
                );
                assert_eq!(*key, bucket_key(family.slots.len(), family.first()));
            }
        }
        for line in &lines {
            let tokens = split(line);
            let words = line_bytes(&tokens);
            for (index, family) in m.families.iter().enumerate() {
                if family.slots.len() != tokens.len() {
                    continue;
                }
                if !Member::of(index as u32, family).may_reach(&words, tokens.len(), DEFAULT_SIMILARITY) {
                    ruled_out += 1;
                    assert!(
                        family.similarity(&tokens) < DEFAULT_SIMILARITY,
                        "{line:?} vs {}",
                        family.template()
                    );
                }
            }
        }
        assert!(ruled_out > 1000, "the summary rules families out ({ruled_out})");
    }

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

    /// Past [`FEW`] words, a position of verb forms keeps each apart (what happened), and a
    /// position of names becomes a variable (whom it happened to).
    #[test]
    fn verb_forms_stay_apart_past_few_and_names_merge() {
        let mut m = Miner::default();
        let states = ["started", "stopped", "paused", "resumed", "restarted", "failed"];
        let ids: Vec<u64> = (0..36)
            .map(|i| m.add(&format!("Job worker {} {} at <NUM>", i, states[i % 6])).cluster_id)
            .collect();
        let groups: std::collections::HashSet<u64> = ids.iter().map(|id| m.resolve(*id)).collect();
        assert_eq!(groups.len(), 6, "one group per state");
        assert_eq!(m.template(ids[3]).unwrap(), "Job worker <*> resumed at <NUM>");
        // A seventh is past what a position holds: the states become a variable.
        let seventh = m.add("Job worker 99 crashed at <NUM>").cluster_id;
        assert_eq!(m.template(seventh).unwrap(), "Job worker <*> <*> at <NUM>");

        let mut m = Miner::default();
        let ids: Vec<u64> = ["cyrus", "news", "test", "root", "cyrus", "news"]
            .iter()
            .map(|u| m.add(&format!("session closed for user {u}")).cluster_id)
            .collect();
        let groups: std::collections::HashSet<u64> = ids.iter().map(|id| m.resolve(*id)).collect();
        assert_eq!(groups.len(), 1, "user names are one event: {groups:?}");
        assert_eq!(m.template(ids[0]).unwrap(), "session closed for user <*>");
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
        assert!(!ids.contains(&fresh), "a new group's id is none of the restored ones");
    }

    /// Lines of `families` shapes, round after round, each with another user each time.
    fn rounds(m: &mut Miner, families: u8, rounds: usize) -> Vec<Vec<u64>> {
        let users = ["alice", "bob", "carol", "dave", "erin", "frank", "grace"];
        (0..rounds)
            .map(|r| {
                (0..families)
                    .map(|f| {
                        let f = char::from(b'a' + f);
                        let line = format!(
                            "task{f} kind{f} failed for user {} after <NUM> ms",
                            users[r % users.len()]
                        );
                        let id = m.add(&line).cluster_id;
                        m.resolve(id)
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn evicted_families_come_back_whole_under_their_ids() {
        let mut whole = Miner::default();
        let mut small = Miner::default().with_capacity(3);
        let kept = rounds(&mut whole, 10, 7);
        let evicted = rounds(&mut small, 10, 7);
        assert!(small.families().0 <= 3, "live families stay within the capacity");
        assert!(small.families().1 > 0, "the others are fossils");
        assert_eq!(evicted, kept, "eviction changes no id, and few words merge as without it");
        let last = evicted.last().unwrap();
        assert_eq!(small.template(last[9]).unwrap(), "taskj kindj failed for user <*> after <NUM> ms");
    }

    #[test]
    fn old_fossils_are_forgotten_past_their_room() {
        let mut m = Miner::default().with_capacity(1);
        let mut forgotten = Vec::new();
        let mut ids = Vec::new();
        for f in 0..20 {
            let name = char::from(b'a' + f as u8);
            let mined = m.add(&format!("disk{name} volume{name} is full"));
            ids.push(mined.cluster_id);
            forgotten.extend(mined.forgotten);
        }
        let (live, fossils) = m.families();
        assert_eq!(live, 1);
        assert!(fossils <= FOSSILS_PER_FAMILY, "{fossils} fossils");
        assert_eq!(forgotten, ids[..20 - 1 - fossils].to_vec(), "the oldest go first");
        let again = m.add("disks volumes is full").cluster_id;
        assert_eq!(again, ids[18], "a fossil still revives");
        let back = m.add("diska volumea is full");
        assert!(back.created, "a forgotten group starts afresh");
    }

    #[test]
    fn fossils_are_saved_and_restored() {
        let mut m = Miner::default().with_capacity(2);
        let first = rounds(&mut m, 6, 2);
        let json = serde_json::to_string(&m.snapshot()).unwrap();
        let mut restored = Miner::restore(serde_json::from_str(&json).unwrap()).with_capacity(2);
        let mut again = m.clone();
        assert_eq!(rounds(&mut restored, 6, 5), rounds(&mut again, 6, 5));
        assert_eq!(
            rounds(&mut restored, 6, 1)[0],
            first[0].iter().map(|id| restored.resolve(*id)).collect::<Vec<_>>()
        );
    }

    /// Miners taking turns on one stream, each bringing a line's bucket up to date from a shared
    /// table before it mines the line and putting the bucket back when the line changed it (as
    /// instances on one database do), give every line the group and template one miner gives it;
    /// also when they keep only a few families at hand and read the others again when needed.
    #[test]
    fn miners_sharing_their_buckets_decide_as_one_miner() {
        let users = ["alice", "bob", "carol", "dave", "erin"];
        let verbs = ["started", "stopped", "paused"];
        let mut lines = Vec::new();
        for i in 0..200usize {
            lines.push(format!("worker {} {} job for user {}", i % 4, verbs[i % 3], users[i % 5]));
            lines.push(format!("cache miss for key {} in region eu", users[(i * 7) % 5]));
            lines.push(format!("disk{} volume{} is full", i % 9, i % 9));
            if i % 50 == 0 {
                lines.push(format!("unique event number {} happened", users[i % 5]));
            }
        }
        for capacity in [DEFAULT_CAPACITY, 3] {
            let mut one = Miner::default();
            let mut miners: Vec<Miner> = (0..3).map(|_| Miner::default().with_capacity(usize::MAX)).collect();
            let mut dropped = 0;
            let mut revs: Vec<FxHashMap<String, u64>> = vec![FxHashMap::default(); 3];
            let mut table: FxHashMap<String, (u64, String)> = FxHashMap::default();
            for (n, line) in lines.iter().enumerate() {
                let expected = one.add(line).cluster_id;
                let m = &mut miners[n % 3];
                let name = bucket_name(line);
                let known = revs[n % 3].get(&name).copied().unwrap_or(0);
                if let Some((rev, json)) = table.get(&name)
                    && *rev != known
                {
                    m.replace_bucket(&name, serde_json::from_str(json).unwrap());
                    revs[n % 3].insert(name.clone(), *rev);
                }
                let mined = m.add(line);
                if mined.changed {
                    let rev = table.get(&name).map_or(0, |(r, _)| *r) + 1;
                    table
                        .insert(name.clone(), (rev, serde_json::to_string(&m.export_bucket(&name)).unwrap()));
                    revs[n % 3].insert(name, rev);
                }
                assert_eq!(m.resolve(mined.cluster_id), one.resolve(expected), "line {n}: {line}");
                assert_eq!(m.template(mined.cluster_id), one.template(expected), "line {n}: {line}");
                for name in m.drop_idle_buckets(capacity).0 {
                    revs[n % 3].remove(&name);
                    dropped += 1;
                }
            }
            assert_eq!(dropped > 0, capacity == 3, "buckets were dropped and read again");
        }
    }

    #[test]
    fn a_bucket_replaced_by_fewer_families_leaves_the_others_alone() {
        let mut m = Miner::default();
        let a = m.add("alpha one two three").cluster_id;
        let b = m.add("alpha x y z").cluster_id;
        let other = m.add("cache miss for key <NUM>").cluster_id;
        let name = bucket_name("alpha one two three");
        let gone = m.replace_bucket(&name, BucketSnapshot::default());
        assert_eq!(gone.len(), 2);
        assert!(gone.contains(&a) && gone.contains(&b));
        assert_eq!(m.families(), (1, 0));
        assert_eq!(m.add("cache miss for key <NUM>").cluster_id, other, "another bucket keeps its groups");
        assert_eq!(m.template(other).unwrap(), "cache miss for key <NUM>");
        assert!(m.add("alpha one two three").created, "the emptied bucket starts afresh");
    }

    #[test]
    fn a_damaged_state_with_overlong_strings_is_left_out_not_a_panic() {
        let mut m = Miner::default();
        let id = m.add("cache miss for key x").cluster_id;
        let mut json: serde_json::Value = serde_json::to_value(m.snapshot()).unwrap();
        let huge = "y".repeat(70_000);
        json["families"][0]["tokens"][3] = serde_json::json!(huge);
        json["families"][0]["values"][3] = serde_json::json!([huge]);
        let mut restored = Miner::restore(serde_json::from_value(json).unwrap());
        assert_eq!(restored.families(), (0, 0));
        let again = restored.add("cache miss for key x");
        assert!(again.created, "the damaged family starts afresh");
        assert_eq!(again.cluster_id, id, "under the id its first line gives it");
    }
}
