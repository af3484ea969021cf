//! Fingerprints: the stable id of "the same error".
//!
//! Version 2 groups by the first tier that applies:
//! 1. **client**: an explicit `fingerprint` list the client sent (JSON field), where
//!    `{{ default }}` stands for the fingerprint computed below;
//! 2. **stack**: exception types (the whole chain, "Caused by:" and "During handling…"
//!    included) plus each frame as module or file basename + function, without line numbers or
//!    directories, direct recursion collapsed. Only in-app frames count when some frames can
//!    be told apart as library or runtime code (site-packages, node_modules, the JDK, Go's and
//!    Rust's standard libraries…); otherwise all frames do;
//! 3. **exception**: the exception type + its masked value, when there are no frames;
//! 4. **message**: the masked message. [`fingerprint`] hashes the masked text; a [`Grouper`]
//!    also mines it ([`crate::mine`]), so words masking cannot know (user and file names) group
//!    too: a mined group's fingerprint is the one its first line had, and never changes.
//!
//! A fingerprint is a SHA-256 as 64 lower-case hex characters. [`Grouping::previous`] carries
//! what version 2 gave the same event (panics and stacks without an exception class hash
//! differently since version 3), so the store can keep version-2 patterns matching for a
//! transition window instead of splitting every issue on upgrade. Version 4 reads Python's
//! exception groups (their sub-exceptions' types and frames; version 3 saw one message for
//! every group a handler logged): those events start new patterns, since the old one held
//! errors that version 4 keeps apart, so no `previous` points back to it.

use std::borrow::Cow;
use std::fmt;

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::mask::mask_into;
use crate::mine::{BucketSnapshot, Miner, Snapshot, bucket_name};
use crate::model::LogEvent;
use crate::parse::{exception_name, group_container, python_exception_lines, unbox_exception_group};

/// Stored with every pattern so a later algorithm can tell its own patterns apart.
pub const FINGERPRINT_VERSION: i32 = 4;

/// The fingerprint versions whose saved miner state this version restores.
const MINER_STATE_VERSIONS: std::ops::RangeInclusive<i32> = 2..=FINGERPRINT_VERSION;

/// Longest message text that takes part in grouping; longer messages are cut first.
const MAX_GROUPED_BYTES: usize = 2048;

/// Most parts a client's `fingerprint` list may have, and longest part, beyond which it is
/// ignored (the computed tiers apply).
const MAX_CLIENT_PARTS: usize = 16;
const MAX_CLIENT_PART_BYTES: usize = 256;

/// A SHA-256 fingerprint as 64 lower-case hex characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Fingerprint(String);

impl Fingerprint {
    /// Accepts exactly 64 hex characters.
    pub fn parse(s: &str) -> Option<Fingerprint> {
        (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit()))
            .then(|| Fingerprint(s.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 32 bytes of the hash (half the memory of the text); `None` for a fingerprint read
    /// from a damaged saved state.
    fn to_bytes(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.0, &mut out).ok().map(|()| out)
    }

    /// Whether this is the fingerprint of these 32 bytes (compared as text, without decoding).
    fn is(&self, bytes: &[u8; 32]) -> bool {
        let mut buf = [0u8; 64];
        hex::encode_to_slice(bytes, &mut buf).is_ok() && self.0.as_bytes() == buf
    }

    fn from_bytes(bytes: &[u8; 32]) -> Fingerprint {
        Fingerprint(hex_lower(bytes))
    }
}

/// Lower-case hex of at most 32 bytes, written through a table: `hex::encode` builds its
/// string a `char` at a time, a few per cent of the reader's time at one call per event.
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut buf = [0u8; 64];
    let out = &mut buf[..bytes.len() * 2];
    hex::encode_to_slice(bytes, out).expect("two digits per byte");
    std::str::from_utf8(out).expect("hex digits are ASCII").to_owned()
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which rule decided the group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    Client,
    Stack,
    Exception,
    Message,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Client => "client",
            Tier::Stack => "stack",
            Tier::Exception => "exception",
            Tier::Message => "message",
        }
    }
}

/// One frame of a stack signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackFrame {
    /// Module, class or file basename (no directories, no line numbers).
    pub module: String,
    pub function: String,
    /// False for library and runtime code (site-packages, node_modules, `java.*`, Go's `runtime`…).
    pub in_app: bool,
}

/// The result of grouping one event, with the parts that counted.
#[derive(Debug, Clone, PartialEq)]
pub struct Grouping {
    pub fingerprint: Fingerprint,
    pub tier: Tier,
    /// The masked message shown to users as the pattern's template (for the message tier, the
    /// mined template, with `<*>` where lines differ).
    pub template: String,
    /// The outermost exception type, e.g. `KeyError` or `java.lang.IllegalStateException`.
    pub error_type: Option<String>,
    /// The frames that counted: the in-app ones when some could be told apart, else all.
    pub frames: Vec<StackFrame>,
    /// The client's `fingerprint` parts, for the client tier.
    pub client_parts: Vec<String>,
    /// The fingerprint version 2 gave this event (or the line's own, for a mined group), when
    /// it differs.
    pub previous: Option<Fingerprint>,
}

fn hash(parts: &[&[u8]]) -> Fingerprint {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    Fingerprint(hex_lower(&hasher.finalize()))
}

fn stack_hash(error_types: &[String], frames: &[StackFrame]) -> Fingerprint {
    let mut hasher = Sha256::new();
    hasher.update(b"faultline/1\nstack\n");
    for t in error_types {
        hasher.update(t.as_bytes());
        hasher.update(b"|");
    }
    for f in frames {
        hasher.update(b"\n");
        hasher.update(f.module.as_bytes());
        hasher.update(b":");
        hasher.update(f.function.as_bytes());
    }
    Fingerprint(hex_lower(&hasher.finalize()))
}

fn message_hash(template: &str) -> Fingerprint {
    hash(&[b"faultline/1\nmessage\n", template.as_bytes()])
}

/// Groups one event on its own: the message tier hashes the masked message (no mining).
pub fn fingerprint(event: &LogEvent) -> Grouping {
    let message = cut(&event.message, MAX_GROUPED_BYTES);
    let mut template = String::with_capacity(message.len());
    mask_into(message, &mut template);

    let unboxed = event.traceback.as_deref().and_then(unbox_exception_group);
    let trace = unboxed.as_deref().or(event.traceback.as_deref()).unwrap_or("");
    let (mut error_types, value) = exception_chain(message, trace);
    let mut all_frames = frames(trace);
    sdk_in_app(event, &mut all_frames);
    let panic = error_types.first().is_some_and(|t| t.starts_with("panic: "));
    if panic && all_frames.is_empty() {
        // A Rust panic printed without its backtrace still says where: the file counts as the
        // one frame (without its line and column, which move between deploys).
        all_frames.extend(panic_location(message, trace));
    }
    // Version 2 hashed these stacks without the panic's message, or with no type at all.
    let mut legacy_types = error_types.clone();
    if panic {
        legacy_types = vec!["panic".to_owned()];
    }
    let error_type = legacy_types.first().cloned();
    if error_types.is_empty() && !all_frames.is_empty() {
        // An error with a stack but no exception class (a Go error's stack, a logger's own
        // stack): what it says is its kind, so two errors of one function stay apart.
        let mut kind = String::from("error: ");
        kind.push_str(&template);
        error_types.push(kind);
    }

    let mut previous = None;
    let (tier, fingerprint, frames) = if !all_frames.is_empty() {
        let in_app: Vec<StackFrame> = all_frames.iter().filter(|f| f.in_app).cloned().collect();
        let counted = if in_app.is_empty() { all_frames } else { in_app };
        let fingerprint = stack_hash(&error_types, &counted);
        let legacy = stack_hash(&legacy_types, &counted);
        if legacy != fingerprint {
            previous = Some(legacy);
        }
        (Tier::Stack, fingerprint, counted)
    } else if let (Some(t), Some(v)) = (&error_type, value) {
        let mut masked = String::with_capacity(v.len());
        mask_into(cut(&v, MAX_GROUPED_BYTES), &mut masked);
        let fp = hash(&[b"faultline/1\nexception\n", t.as_bytes(), b"\n", masked.as_bytes()]);
        (Tier::Exception, fp, Vec::new())
    } else {
        (Tier::Message, message_hash(&template), Vec::new())
    };
    let mut grouping =
        Grouping { fingerprint, tier, template, error_type, frames, client_parts: Vec::new(), previous };
    if let Some(parts) = client_parts(event) {
        let computed = grouping.fingerprint.as_str().to_owned();
        let mut hasher = Sha256::new();
        hasher.update(b"faultline/2\nclient");
        for part in &parts {
            hasher.update(b"\n");
            hasher.update(if part == "{{ default }}" { computed.as_bytes() } else { part.as_bytes() });
        }
        grouping.previous =
            Some(std::mem::replace(&mut grouping.fingerprint, Fingerprint(hex_lower(&hasher.finalize()))));
        grouping.tier = Tier::Client;
        grouping.client_parts = parts;
    }
    grouping
}

/// What a person reads as an event's name: `ExceptionType: value` when it carries an exception
/// (the type without its module or package path, as Sentry shows it), otherwise the message's
/// first line.
pub fn headline(message: &str, traceback: Option<&str>) -> String {
    let message = cut(message, MAX_GROUPED_BYTES);
    let unboxed = traceback.and_then(unbox_exception_group);
    let (types, value) = exception_chain(message, unboxed.as_deref().or(traceback).unwrap_or(""));
    match (types.first().filter(|t| !t.starts_with("panic: ")), value) {
        (Some(t), Some(v)) => {
            // A package or module path goes (`java.lang.`, `psycopg2.errors.`); Ruby's
            // namespaces stay, as Ruby and Sentry name the class (`ActiveRecord::RecordNotFound`).
            let short = t.rsplit(['.', '$', '\\']).next().filter(|s| !s.is_empty()).unwrap_or(t);
            let v = v.lines().next().unwrap_or("").trim();
            if v.is_empty() { short.to_owned() } else { format!("{short}: {v}") }
        }
        _ => message.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_owned(),
    }
}

/// A group's title from the headlines of two of its occurrences (its first and its latest): a
/// word both write alike is kept as written, a word that differs is masked (`<NUM>`, `<IP>`…,
/// `<*>` when no mask fits), so a value shows unless it is seen to vary. Headlines of different
/// lengths give the latest one masked whole.
pub fn title(first: &str, latest: &str) -> String {
    if first == latest {
        return latest.to_owned();
    }
    let (a, b): (Vec<&str>, Vec<&str>) =
        (first.split_whitespace().collect(), latest.split_whitespace().collect());
    if a.len() != b.len() {
        return mask_title(latest);
    }
    let words: Vec<String> = a
        .iter()
        .zip(&b)
        .map(|(x, y)| {
            if x == y {
                (*y).to_owned()
            } else {
                let masked = crate::mask::mask(y);
                if masked == *y { "<*>".to_owned() } else { masked }
            }
        })
        .collect();
    words.join(" ")
}

fn mask_title(text: &str) -> String {
    let mut masked = String::with_capacity(text.len());
    mask_into(text, &mut masked);
    masked
}

/// The client's `fingerprint` list: strings only, at most [`MAX_CLIENT_PARTS`] of at most
/// [`MAX_CLIENT_PART_BYTES`]; anything else is not a fingerprint and is ignored.
fn client_parts(event: &LogEvent) -> Option<Vec<String>> {
    let list = event.metadata.get("fingerprint")?.as_array()?;
    if list.is_empty() || list.len() > MAX_CLIENT_PARTS {
        return None;
    }
    list.iter()
        .map(|v| v.as_str().filter(|s| s.len() <= MAX_CLIENT_PART_BYTES).map(|s| s.trim().to_owned()))
        .collect::<Option<Vec<String>>>()
        .map(|parts| {
            parts
                .into_iter()
                .map(|p| if p.replace(' ', "") == "{{default}}" { "{{ default }}".to_owned() } else { p })
                .collect()
        })
}

/// Groups events with the template miner: message-tier events whose masked messages differ
/// only in words masking cannot know (`user alice`, `user bob`…) share a pattern. Its state
/// is saved with [`Grouper::snapshot`] and restored with [`Grouper::restore`]: the same lines
/// then map to the same fingerprints.
#[derive(Debug, Clone, Default)]
pub struct Grouper {
    miner: Miner,
    /// Mined group id (live or evicted, not merged) → the fingerprint its first line had.
    fingerprints: FxHashMap<u64, [u8; 32]>,
    /// Groups created or merged since the last [`Grouper::take_changed`].
    changed: bool,
    /// Buckets whose state changed beyond counts since the last
    /// [`Grouper::take_changed_buckets`].
    changed_buckets: FxHashSet<String>,
}

/// A line's group as [`Grouper::mine`] found it, for [`Grouper::settle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinedGroup {
    pub id: u64,
    /// The group's place in the miner, good while the miner's shape is the one noted.
    place: u32,
    shape: u64,
}

/// One bucket of a [`Grouper`]'s state ([`Grouper::export_bucket`]): the miner's part and the
/// fingerprints of its groups.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketState {
    pub version: i32,
    miner: BucketSnapshot,
    fingerprints: Vec<(u64, Fingerprint)>,
}

/// A [`Grouper`]'s whole state, for saving.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrouperState {
    pub version: i32,
    miner: Snapshot,
    fingerprints: Vec<(u64, Fingerprint)>,
}

impl Grouper {
    /// A grouper whose miner keeps at most `capacity` live families ([`Miner::with_capacity`]).
    pub fn with_capacity(capacity: usize) -> Grouper {
        Grouper { miner: Miner::default().with_capacity(capacity), ..Grouper::default() }
    }

    /// Groups one event: [`fingerprint`], with the message tier mined.
    pub fn group(&mut self, event: &LogEvent) -> Grouping {
        let mut grouping = fingerprint(event);
        self.refine(&mut grouping);
        grouping
    }

    /// Mines a message-tier grouping made by [`fingerprint`]: its fingerprint becomes the one
    /// of its mined group (the fingerprint the group's first line had), its template the
    /// group's template. Returns the mined group's id (`None` for other tiers, left as they
    /// are).
    pub fn refine(&mut self, grouping: &mut Grouping) -> Option<u64> {
        let mined = self.mine(grouping)?;
        self.settle(mined, grouping);
        Some(mined.id)
    }

    /// Mines a message-tier grouping without changing it; returns its group, for
    /// [`Grouper::settle`] once the whole batch is mined (`None` for other tiers).
    pub fn mine(&mut self, grouping: &Grouping) -> Option<MinedGroup> {
        if grouping.tier != Tier::Message {
            return None;
        }
        let mined = self.miner.add(&grouping.template);
        if mined.changed {
            self.changed_buckets.insert(bucket_name(&grouping.template));
        }
        if mined.created
            && let Some(bytes) = grouping.fingerprint.to_bytes()
        {
            self.fingerprints.insert(mined.cluster_id, bytes);
            // Kept beside the group too: a later line of it finds the fingerprint there,
            // without a lookup in `fingerprints` (with many groups, seldom cached).
            self.miner.tag(mined.place, mined.cluster_id, bytes);
            self.changed = true;
        }
        // A merged id answers as the group it went into, whose fingerprint counts.
        for (id, _) in &mined.merged {
            self.fingerprints.remove(id);
        }
        for id in &mined.forgotten {
            self.fingerprints.remove(id);
        }
        self.changed |= !mined.merged.is_empty() || !mined.forgotten.is_empty();
        Some(MinedGroup { id: mined.cluster_id, place: mined.place, shape: self.miner.shape() })
    }

    /// Gives a grouping its mined group's fingerprint and template as they are now: after later
    /// lines merged the group into an older one, the older one's. (Call it again for a batch's
    /// earlier lines once the batch is mined.)
    pub fn settle(&self, mined: MinedGroup, grouping: &mut Grouping) {
        // Unless the miner changed since, the group is where the line found it, under its id.
        // (With many groups, looking the id up again costs as much as mining the line.)
        let unchanged = mined.shape == self.miner.shape();
        let id = if unchanged { mined.id } else { self.miner.resolve(mined.id) };
        // A group tagged when it was created brings its fingerprint (the same as in
        // `fingerprints`); a revived or restored one is looked up.
        let (template, tag) = match unchanged.then(|| self.miner.template_and_tag_at(mined.place, id)) {
            Some(Some((template, tag))) => (Some(template), tag),
            Some(None) => (None, None),
            None => (self.miner.template(id), None),
        };
        let group_fp = tag.or_else(|| self.fingerprints.get(&id).copied());
        if let Some(template) = template {
            grouping.template = template;
        }
        // A restored state from before a group existed cannot name it: the line's own
        // fingerprint stands in.
        if let Some(group_fp) = group_fp
            && !grouping.fingerprint.is(&group_fp)
        {
            let own = std::mem::replace(&mut grouping.fingerprint, Fingerprint::from_bytes(&group_fp));
            grouping.previous.get_or_insert(own);
        }
    }

    /// Whether groups were created or merged since the last call (the state is worth saving).
    pub fn take_changed(&mut self) -> bool {
        std::mem::take(&mut self.changed)
    }

    /// Mined groups (live and evicted; not the merged ones).
    pub fn patterns(&self) -> usize {
        self.fingerprints.len()
    }

    /// The miner's live families and fossils ([`Miner::families`]).
    pub fn families(&self) -> (usize, usize) {
        self.miner.families()
    }

    pub fn snapshot(&self) -> GrouperState {
        let mut fingerprints: Vec<(u64, Fingerprint)> =
            self.fingerprints.iter().map(|(id, fp)| (*id, Fingerprint::from_bytes(fp))).collect();
        fingerprints.sort_unstable_by_key(|(id, _)| *id);
        GrouperState { version: FINGERPRINT_VERSION, miner: self.miner.snapshot(), fingerprints }
    }

    /// A grouper in a saved state; `None` when the state is from a version whose miner read
    /// differently. Versions 3 and 4 changed the stack and exception tiers, not the miner: a
    /// version-2 or -3 state is taken as it is, so mined groups keep their patterns across the
    /// upgrade.
    pub fn restore(state: GrouperState) -> Option<Grouper> {
        (MINER_STATE_VERSIONS.contains(&state.version)).then(|| Grouper {
            miner: Miner::restore(state.miner),
            fingerprints: state
                .fingerprints
                .iter()
                .filter_map(|(id, fp)| Some((*id, fp.to_bytes()?)))
                .collect(),
            changed: false,
            changed_buckets: FxHashSet::default(),
        })
    }

    /// The buckets whose state changed beyond counts since the last call (sorted).
    pub fn take_changed_buckets(&mut self) -> Vec<String> {
        let mut names: Vec<String> = std::mem::take(&mut self.changed_buckets).into_iter().collect();
        names.sort_unstable();
        names
    }

    /// Every bucket holding families or fossils.
    pub fn bucket_names(&self) -> Vec<String> {
        self.miner.bucket_names()
    }

    /// Drops the least recently seen buckets past `capacity` live families
    /// ([`Miner::drop_idle_buckets`]); returns their names.
    pub fn drop_idle_buckets(&mut self, capacity: usize) -> Vec<String> {
        let (names, ids) = self.miner.drop_idle_buckets(capacity);
        for id in ids {
            self.fingerprints.remove(&id);
        }
        for name in &names {
            self.changed_buckets.remove(name);
        }
        names
    }

    /// One bucket's state, to share.
    pub fn export_bucket(&self, name: &str) -> BucketState {
        let miner = self.miner.export_bucket(name);
        let mut fingerprints: Vec<(u64, Fingerprint)> = miner
            .group_ids()
            .filter_map(|id| Some((id, Fingerprint::from_bytes(self.fingerprints.get(&id)?))))
            .collect();
        fingerprints.sort_unstable_by_key(|(id, _)| *id);
        BucketState { version: FINGERPRINT_VERSION, miner, fingerprints }
    }

    /// Puts a bucket in a state another grouper exported ([`Grouper::export_bucket`]); `None`,
    /// or a state of a version whose miner read differently, empties it.
    pub fn import_bucket(&mut self, name: &str, state: Option<BucketState>) {
        let state = state.filter(|s| MINER_STATE_VERSIONS.contains(&s.version));
        let (miner, fingerprints) = match state {
            Some(s) => (s.miner, s.fingerprints),
            None => (BucketSnapshot::default(), Vec::new()),
        };
        for id in self.miner.replace_bucket(name, miner) {
            self.fingerprints.remove(&id);
        }
        self.fingerprints.extend(fingerprints.iter().filter_map(|(id, fp)| Some((*id, fp.to_bytes()?))));
        self.changed_buckets.remove(name);
    }
}

fn cut(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

/// Exception types found in the message and traceback, outermost first, and the value of the
/// first one (the text after `Type: `). A panic (Go, Rust) has no type: its masked message stands
/// for one, `panic: <message>`.
fn exception_chain<'a>(message: &'a str, trace: &'a str) -> (Vec<String>, Option<Cow<'a, str>>) {
    let mut types: Vec<String> = Vec::new();
    let mut value = None;
    let mut note = |found: Option<(&'a str, Cow<'a, str>)>, types: &mut Vec<String>| {
        if let Some((name, v)) = found {
            if value.is_none() {
                value = Some(v);
            }
            if !types.iter().any(|t| t == name) {
                types.push(name.to_owned());
            }
        }
    };
    if trace.contains("Traceback (most recent call last):") {
        let lines = python_exception_lines(trace.lines());
        if lines.iter().any(|l| group_container(l)) {
            // An exception group (unboxed): its sub-exceptions are the errors, in the order
            // printed; the group itself only holds them (as Sentry titles and groups them).
            for line in lines.into_iter().filter(|l| !group_container(l)) {
                note(exception_line(line, true), &mut types);
            }
        } else {
            // Outermost first: a chain prints it last.
            for line in lines.into_iter().rev() {
                note(exception_line(line, true), &mut types);
            }
        }
    } else {
        note(exception_line(message, false), &mut types);
        let lines: Vec<&str> = trace.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if frame_line(line) {
                continue;
            }
            // A line right before a frame is an exception line whatever its class is called.
            let before_frame = lines.get(i + 1).is_some_and(|next| frame_line(next));
            note(exception_line(line, before_frame), &mut types);
        }
    }
    if types.is_empty()
        && let Some(panic) = panic_message(message, trace)
    {
        let mut kind = String::from("panic: ");
        mask_into(cut(panic, MAX_GROUPED_BYTES), &mut kind);
        types.push(kind);
    }
    (types, value)
}

/// The message of a Go or Rust panic.
fn panic_message<'a>(message: &'a str, trace: &'a str) -> Option<&'a str> {
    if let Some(rest) = message.strip_prefix("panic: ") {
        return Some(rest.strip_suffix(" [recovered]").unwrap_or(rest));
    }
    let at = message.find("' panicked at ")?;
    let rest = &message[at + "' panicked at ".len()..];
    // Before Rust 1.73: panicked at 'message', src/main.rs:3:5
    if let Some(quoted) = rest.strip_prefix('\'') {
        return Some(quoted.rsplit_once("', ").map_or(quoted, |(m, _)| m));
    }
    // Since: panicked at src/main.rs:3:5:\nmessage
    let source = if trace.contains("' panicked at ") { trace } else { message };
    let mut lines = source.lines().skip_while(|l| !l.contains("' panicked at "));
    lines.next();
    lines.next().filter(|l| !l.starts_with("note: ") && !l.starts_with("stack backtrace:")).or(Some(""))
}

/// The file a Rust panic names (`panicked at src/billing/money.rs:40:9:`), as a frame.
fn panic_location(message: &str, trace: &str) -> Option<StackFrame> {
    let line = trace.lines().chain(message.lines()).find(|l| l.contains("' panicked at "))?;
    let rest = &line[line.find("' panicked at ")? + "' panicked at ".len()..];
    let location = if rest.starts_with('\'') { rest.rsplit_once("', ")?.1 } else { rest };
    let file = strip_line_numbers(location.trim_end_matches(':'));
    (!file.is_empty()).then(|| StackFrame { module: file.to_owned(), function: String::new(), in_app: true })
}

/// A line that is a stack frame of one of the runtimes read here.
fn frame_line(line: &str) -> bool {
    let t = line.trim_start();
    (t.starts_with("at ") && t.len() < line.len())
        || t.starts_with("from ")
        || t.starts_with("File \"")
        || (t.starts_with('#') && t[1..].starts_with(|c: char| c.is_ascii_digit()))
}

/// The exception a line names, with its value: `Type: value` and `Type` (the class must look
/// like an exception's unless `anywhere` says the line's place makes it one), after `Caused by:`,
/// .NET's ` ---> ` and `(0x80131904)`, Node's `[cause]:`, PHP's `Uncaught … in file:line`;
/// Ruby's `message (Type)` and Rails' `Type (message):`; Laravel's `[object] (Type(code: 0): …`.
fn exception_line(line: &str, anywhere: bool) -> Option<(&str, Cow<'_, str>)> {
    let mut t = line.trim_start();
    for prefix in
        ["Caused by: ", "Suppressed: ", "---> ", "[cause]: ", "Uncaught ", "PHP Fatal error:  Uncaught "]
    {
        if let Some(rest) = t.strip_prefix(prefix) {
            t = rest.trim_start();
        }
    }
    if let Some(rest) = t.strip_prefix("Exception in thread \"") {
        t = rest.split_once("\" ").map_or(rest, |(_, r)| r);
    }
    if let Some(at) = t.find("[object] (") {
        // Laravel: [object] (BadMethodCallException(code: 0): message at /path/File.php:67)
        let rest = &t[at + "[object] (".len()..];
        let (name, tail) = rest.split_once("(code: ")?;
        let value = tail.split_once("): ").map_or("", |(_, v)| v);
        let value = value.rsplit_once(" at ").map_or(value, |(v, _)| v);
        return class_name(name, true).map(|n| (n, Cow::Owned(value.replace("\\\\", "\\"))));
    }
    if let Some(found) = ruby_exception(t) {
        return Some(found);
    }
    let end = t.find(|c: char| !(c.is_ascii_alphanumeric() || "_.$\\:".contains(c))).unwrap_or(t.len());
    let (mut name, mut after) = (&t[..end], &t[end..]);
    if let Some(n) = name.strip_suffix(':') {
        // "Type: value" scanned with the colon
        name = n;
        after = &t[end - 1..];
    }
    // .NET: "SqlException (0x80131904): …", "Win32Exception (258): …"
    if let Some(code) = after.strip_prefix(" (")
        && let Some((inner, rest)) = code.split_once(')')
        && inner.bytes().all(|b| b.is_ascii_hexdigit() || b == b'x')
    {
        after = rest;
    }
    if !(after.is_empty() || after.starts_with(':')) {
        return None;
    }
    let name = class_name(name, anywhere)?;
    let mut value = after.trim_start_matches(':').trim();
    // PHP: "Cart 9 is empty in /var/www/src/Checkout.php:41"
    if let Some((v, location)) = value.rsplit_once(" in ")
        && (location.ends_with(|c: char| c.is_ascii_digit())
            && (location.contains(".php:") || location.contains(" on line ")))
    {
        value = v;
    }
    Some((name, Cow::Borrowed(value)))
}

/// `Type` when it is a class name: dotted or namespaced (`::`, `\\`), its last part starting
/// with a capital; and unless `anywhere`, named like an exception (…Error, …Exception).
fn class_name(name: &str, anywhere: bool) -> Option<&str> {
    let last = name.rsplit(['.', ':', '\\', '$']).next().unwrap_or(name);
    let capital = last.as_bytes().first().is_some_and(u8::is_ascii_uppercase);
    let named = exception_name(last).is_some() || (anywhere && capital);
    (capital && named && !name.ends_with(':') && !name.contains(":::")).then_some(name)
}

/// Ruby: `message (ActiveRecord::RecordNotFound)` (after `file:line:in 'method': ` when it is
/// the crash report's first line), and Rails' `ActionView::Template::Error (message):`.
fn ruby_exception(t: &str) -> Option<(&str, Cow<'_, str>)> {
    let t = t.strip_prefix('[').and_then(|r| r.split_once("] ")).map_or(t, |(_, r)| r);
    let ruby_class = |n: &str| {
        !n.is_empty()
            && n.split("::").all(|p| {
                p.as_bytes().first().is_some_and(u8::is_ascii_uppercase)
                    && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            })
            && (n.contains("::") || exception_name(n).is_some())
    };
    if let Some(inner) = t.strip_suffix(')')
        && let Some((message, name)) = inner.rsplit_once(" (")
        && ruby_class(name)
    {
        let message = match message.split_once(":in ") {
            Some((_, rest)) => {
                rest.split_once("': ").or_else(|| rest.split_once("`: ")).map_or(message, |(_, m)| m)
            }
            None => message,
        };
        return Some((name, Cow::Borrowed(message)));
    }
    if let Some(inner) = t.strip_suffix("):")
        && let Some((name, message)) = inner.split_once(" (")
        && ruby_class(name)
    {
        return Some((name, Cow::Borrowed(message)));
    }
    None
}

/// An SDK that knows which frames are the application's (Sentry's `in_app`) says so per frame
/// in the metadata's `in_app` list, in the traceback's order; its word wins over the paths'.
/// Recursion is collapsed in both lists alike, so a list that does not match is ignored.
fn sdk_in_app(event: &LogEvent, frames: &mut [StackFrame]) {
    let Some(flags) = event.metadata.get("in_app").and_then(|v| v.as_array()) else { return };
    if flags.len() != frames.len() {
        return;
    }
    for (frame, flag) in frames.iter_mut().zip(flags) {
        if let Some(flag) = flag.as_bool() {
            frame.in_app = flag;
        }
    }
}

/// Stack frames found in a traceback, in the order printed, recursion collapsed.
fn frames(trace: &str) -> Vec<StackFrame> {
    let mut out: Vec<StackFrame> = Vec::new();
    let mut lines = trace.lines().peekable();
    let mut goroutines = 0;
    while let Some(line) = lines.next() {
        let t = line.trim_start();
        if line.starts_with("goroutine ") {
            // A Go dump goes on with the other goroutines: only the first one failed.
            goroutines += 1;
            if goroutines > 1 {
                break;
            }
        }
        let frame = if let Some(rest) = t.strip_prefix("File \"") {
            // Python:   File "/app/db.py", line 3, in get
            rest.split_once('"').map(|(path, tail)| StackFrame {
                module: basename(path).trim_end_matches(".py").to_owned(),
                function: tail.rsplit_once(", in ").map_or("", |(_, f)| f).trim().to_owned(),
                in_app: !library_path(path),
            })
        } else if let Some(rest) = t.strip_prefix("at ").filter(|_| line.starts_with([' ', '\t'])) {
            java_or_node_frame(rest)
        } else if let Some(frame) = ruby_frame(t) {
            Some(frame)
        } else if let Some(frame) = php_frame(t) {
            Some(frame)
        } else if let Some(name) = go_function(line).filter(|_| {
            lines.peek().is_some_and(|n| n.starts_with('\t') && n.contains(".go:") || n.contains(".s:"))
        }) {
            // Go: main.(*Server).handle(0xc000010000)  followed by  \t/app/server.go:42 +0x1d,
            // or pkg/errors' and zap's  main.(*Server).handle  followed by  \t/app/server.go:42
            let (module, function) = go_split(name);
            let path = lines.peek().map_or("", |n| n.trim());
            let std = !module.split('/').next().is_some_and(|p| p.contains('.') || p == "main");
            let in_app =
                !(library_path(path) || path.contains("/go/src/") || module.starts_with("runtime") || std);
            Some(StackFrame { module: module.to_owned(), function: function.to_owned(), in_app })
        } else if let Some((num, path)) =
            t.split_once(": ").filter(|(n, _)| n.bytes().all(|b| b.is_ascii_digit()) && !n.is_empty())
        {
            // Rust backtrace:    3: my_app::handler::run
            // or, in full:      12:     0x55d7c1a2f0e1 - my_app::handler::run::h1d2f0a3b4c5d6e7f
            let _ = num;
            let path = path.trim();
            let path = path.split_once(" - ").filter(|(a, _)| a.starts_with("0x")).map_or(path, |(_, p)| p);
            let path = strip_rust_hash(path);
            if path.contains(' ') && !path.starts_with('<') {
                continue; // anyhow's numbered causes: "0: failed to bind 0.0.0.0:8080"
            }
            let (module, function) = path.rsplit_once("::").unwrap_or(("", path));
            let in_app = !RUST_LIBRARIES.iter().any(|l| path.starts_with(l));
            Some(StackFrame { module: module.to_owned(), function: function.to_owned(), in_app })
        } else {
            None
        };
        if let Some(frame) = frame.filter(|f| !f.function.is_empty() || !f.module.is_empty())
            && out.last() != Some(&frame)
        {
            out.push(frame);
        }
    }
    out
}

/// `my_app::run::h1d2f0a3b4c5d6e7f` → `my_app::run`: the hash differs in every build.
fn strip_rust_hash(path: &str) -> &str {
    match path.rsplit_once("::h") {
        Some((head, hash)) if hash.len() == 16 && hash.bytes().all(|b| b.is_ascii_hexdigit()) => head,
        _ => path,
    }
}

/// `github.com/acme/shop/internal/api.(*Server).getOrder` → (`github.com/acme/shop/internal/api.(*Server)`,
/// `getOrder`): the function after the package path's last `/`.
fn go_split(name: &str) -> (&str, &str) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind('.') {
        Some(dot) => (&name[..slash + dot], &name[slash + dot + 1..]),
        None => ("", name),
    }
}

/// Ruby: `app/models/order.rb:12:in 'find'` (backquoted before Ruby 3.4, `Order#find` since), after
/// `from ` in a crash report or a Rails request tag; the crash's first line has its message after.
fn ruby_frame(t: &str) -> Option<StackFrame> {
    let t = t.strip_prefix("from ").unwrap_or(t);
    let t = if t.starts_with('[') { t.split_once("] ").map_or(t, |(_, r)| r.trim_start()) } else { t };
    let (location, rest) = t.split_once(":in ")?;
    let (path, line) = location.rsplit_once(':')?;
    if path.is_empty() || path.contains(' ') || line.is_empty() || !line.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest.strip_prefix(['`', '\'']).unwrap_or(rest);
    let function = rest.split('\'').next().unwrap_or(rest);
    let in_app = !(library_path(path)
        || ["/gems/", "/ruby/", "/rubygems", "<internal:"].iter().any(|m| path.contains(m)));
    Some(StackFrame {
        module: basename(path).trim_end_matches(".rb").to_owned(),
        function: function.to_owned(),
        in_app,
    })
}

/// PHP: `#0 /var/www/src/Cart.php(27): App\Checkout->place(Object(App\Cart))` and
/// `#2 [internal function]: App\Controller->show(…)`; the `{main}` line is no frame.
fn php_frame(t: &str) -> Option<StackFrame> {
    let rest = t.strip_prefix('#')?;
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let rest = rest[digits..].strip_prefix(' ').filter(|_| digits > 0)?;
    let (location, call) = rest.split_once("): ").or_else(|| rest.split_once("]: "))?;
    let path = location.rsplit_once('(').map_or("", |(p, _)| p);
    let function = call.split('(').next().unwrap_or(call).replace("\\\\", "\\");
    let in_app = !path.is_empty() && !library_path(path);
    Some(StackFrame { module: basename(path).trim_end_matches(".php").to_owned(), function, in_app })
}

/// The function a Go goroutine-dump line names: `main.(*T).run(0xc0…)` or
/// `created by main.main in goroutine 1`, or pkg/errors' `main.(*T).run` alone; `None` for any
/// other line.
fn go_function(line: &str) -> Option<&str> {
    if line.starts_with([' ', '\t']) || line.starts_with("goroutine ") {
        return None;
    }
    if let Some(rest) = line.strip_prefix("created by ") {
        return Some(rest.split(" in goroutine ").next().unwrap_or(rest));
    }
    let name = match line.rfind('(') {
        Some(open) if line.ends_with(')') => &line[..open],
        _ => line,
    };
    (!name.is_empty() && !name.contains(' ') && name.contains('.')).then_some(name)
}

fn java_or_node_frame(rest: &str) -> Option<StackFrame> {
    let rest = rest.trim();
    // Node prints an error's own properties after its last frame: "at main (/app/x.js:5:3) {"
    let rest = rest.strip_suffix(" {").unwrap_or(rest);
    // .NET: "at Shop.Orders.Get(Int32 id) in /src/Shop/Orders.cs:line 42"
    let rest = match rest.rsplit_once(") in ") {
        Some((call, _)) => &rest[..call.len() + 1],
        None => rest,
    };
    match rest.split_once(" (").filter(|(f, _)| !f.contains('(')) {
        // Node:    at handler (/app/src/routes.js:10:5)
        Some((function, location)) => {
            let path = location.strip_suffix(')').unwrap_or(location);
            // Native code: "at Array.map (<anonymous>)", "at async Promise.all (index 4)"
            let native = path == "<anonymous>" || path == "native" || path.starts_with("index ");
            let file = if native { "" } else { strip_line_numbers(basename(path)) };
            let in_app = !native && !library_path(path);
            Some(StackFrame { module: file.to_owned(), function: function.trim().to_owned(), in_app })
        }
        None => {
            // Java:  at com.acme.Billing.charge(Billing.java:42)
            if let Some(open) = rest.find('(') {
                let name = &rest[..open];
                // Classes made at run time: lambdas (`$$Lambda$1472/0x…`) and proxies are none
                // of the application's frames; generated subclasses (`$$SpringCGLIB$$0`) stand
                // for the class they extend.
                if name.contains("$$Lambda")
                    || name.contains("$Proxy")
                    || name.contains("GeneratedMethodAccessor")
                {
                    return None;
                }
                // Java 9+ prefixes the module or class loader: "java.base/java.lang.Thread.run"
                let name = name.rsplit_once('/').map_or(name, |(_, n)| n);
                let (module, function) = name.rsplit_once('.').unwrap_or(("", name));
                let module = module.split("$$").next().unwrap_or(module);
                // .NET's compiled expression trees: lambda_method12, lambda_method37…
                if function.starts_with("lambda_method") {
                    return None;
                }
                let in_app = !JAVA_LIBRARIES.iter().any(|l| name.starts_with(l));
                return Some(StackFrame { module: module.to_owned(), function: function.to_owned(), in_app });
            }
            // Node, anonymous:    at /app/src/index.js:3:9
            Some(StackFrame {
                module: strip_line_numbers(basename(rest)).to_owned(),
                function: String::new(),
                in_app: !library_path(rest),
            })
        }
    }
}

/// Paths of installed libraries and runtimes: Python's site-packages and standard library,
/// node_modules and Node's internals, Go's module cache, vendored code.
fn library_path(path: &str) -> bool {
    const MARKERS: [&str; 10] = [
        "site-packages",
        "dist-packages",
        "/lib/python",
        "<frozen ",
        "node_modules",
        "node:internal",
        "/pkg/mod/",
        "/vendor/",
        "/usr/lib/",
        "/usr/local/lib/",
    ];
    path.starts_with("internal/") || path.starts_with("node:") || MARKERS.iter().any(|m| path.contains(m))
}

/// JVM and .NET frames from the runtime and common frameworks.
const JAVA_LIBRARIES: [&str; 17] = [
    "System.",
    "Microsoft.",
    "Npgsql.",
    "Newtonsoft.",
    "com.zaxxer.",
    "java.",
    "javax.",
    "jdk.",
    "sun.",
    "com.sun.",
    "kotlin.",
    "kotlinx.",
    "scala.",
    "org.springframework.",
    "io.netty.",
    "org.hibernate.",
    "org.eclipse.jetty.",
];

/// Rust frames from the standard library, the async runtime and the panic machinery.
const RUST_LIBRARIES: [&str; 9] =
    ["std::", "core::", "alloc::", "tokio::", "futures", "<", "rust_begin_unwind", "__rust", "backtrace::"];

fn basename(path: &str) -> &str {
    path.rsplit(['/', '\\']).next().unwrap_or(path)
}

/// `routes.js:10:5` → `routes.js`
fn strip_line_numbers(file: &str) -> &str {
    let mut s = file;
    while let Some((head, tail)) = s.rsplit_once(':') {
        if tail.bytes().all(|b| b.is_ascii_digit()) {
            s = head;
        } else {
            break;
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Level, Origin};

    #[test]
    fn hex_is_written_as_the_hex_crate_writes_it() {
        let bytes: Vec<u8> = (0..=255u8).step_by(7).chain([0, 9, 10, 15, 16, 255]).collect();
        for n in [0, 1, 16, 32] {
            assert_eq!(hex_lower(&bytes[..n]), hex::encode(&bytes[..n]));
        }
        let fp = Fingerprint::from_bytes(bytes[..32].try_into().unwrap());
        assert!(fp.is(&fp.to_bytes().unwrap()));
        assert!(!fp.is(&[0u8; 32]));
        assert!(!Fingerprint("not hex".into()).is(&[0u8; 32]));
    }

    fn event(message: &str, traceback: Option<&str>) -> LogEvent {
        LogEvent {
            timestamp_ms: 0,
            level: Level::Error,
            source: String::new(),
            message: message.to_owned(),
            traceback: traceback.map(str::to_owned),
            request_path: None,
            request_method: None,
            metadata: Default::default(),
            raw: String::new(),
            origin: Origin { source_id: "t".into(), external_id: None },
        }
    }

    #[test]
    fn a_batch_settles_where_its_groups_ended_up_and_unchanged_groups_as_found() {
        let mut grouper = Grouper::default();
        let login = |user: &str| fingerprint(&event(&format!("login failed for user {user}"), None));
        // The fourth user makes the position a variable: the first three groups merge.
        let users = ["alice", "bob", "carol", "alice", "dave", "erin", "erin"];
        let mut batch: Vec<Grouping> = users.iter().map(|u| login(u)).collect();
        let mined: Vec<MinedGroup> = batch.iter().map(|g| grouper.mine(g).expect("a message")).collect();
        for (grouping, m) in batch.iter_mut().zip(&mined) {
            grouper.settle(*m, grouping);
        }
        for grouping in &batch {
            assert_eq!(grouping.fingerprint, batch[0].fingerprint, "{}", grouping.template);
            assert_eq!(grouping.template, "login failed for user <*>");
        }
        // Mined after the change, the last lines find the group where it stays.
        assert_eq!(mined[5].shape, grouper.miner.shape());
        assert_eq!(mined[5].id, grouper.miner.resolve(mined[0].id));
        // A later line that changes nothing keeps the earlier lines' answer.
        let mut later = login("frank");
        grouper.refine(&mut later);
        assert_eq!(
            (later.fingerprint, later.template),
            (batch[0].fingerprint.clone(), batch[0].template.clone())
        );
    }

    const PY: &str = "Traceback (most recent call last):\n  File \"/srv/app/api.py\", line 9, in view\n    return get(k)\n  File \"/srv/app/db.py\", line 3, in get\n    raise KeyError(k)\nKeyError: 'user'";

    #[test]
    fn a_headline_names_the_exception_and_its_value_or_else_the_message() {
        let java = "java.lang.IllegalStateException: pool exhausted after 30s\n\tat com.shop.Pool.take(Pool.java:88)";
        let cases = [
            ("lookup failed for 42", Some(PY), "KeyError: 'user'"),
            ("Request failed", Some(java), "IllegalStateException: pool exhausted after 30s"),
            ("LookupError: user 42 missing", None, "LookupError: user 42 missing"),
            ("ValueError", None, "ValueError"),
            ("\n  disk full on /var\nsecond line", None, "disk full on /var"),
            (
                "panic: runtime error: index out of range [3]",
                None,
                "panic: runtime error: index out of range [3]",
            ),
        ];
        for (message, traceback, want) in cases {
            assert_eq!(headline(message, traceback), want, "{message:?}");
        }
    }

    #[test]
    fn a_title_keeps_the_values_that_do_not_vary() {
        let cases = [
            ("LookupError: user 42 missing", "LookupError: user 42 missing", "LookupError: user 42 missing"),
            (
                "LookupError: user 42 missing",
                "LookupError: user 57 missing",
                "LookupError: user <NUM> missing",
            ),
            (
                "timeout calling 10.0.0.7 for alice",
                "timeout calling 10.0.0.9 for bob",
                "timeout calling <IP> for <*>",
            ),
            ("disk full", "disk full on /var/lib", "disk full on <PATH>"),
        ];
        for (first, latest, want) in cases {
            assert_eq!(title(first, latest), want, "{first:?} / {latest:?}");
        }
    }

    #[test]
    fn same_stack_different_values_and_lines_group_together() {
        let a = fingerprint(&event("lookup failed for 42", Some(PY)));
        let other = PY
            .replace("line 9", "line 11")
            .replace("/srv/app", "/opt/release-7")
            .replace("'user'", "'order'");
        let b = fingerprint(&event("lookup failed for 43", Some(&other)));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.tier, Tier::Stack);
        assert_eq!(a.error_type.as_deref(), Some("KeyError"));
        let frames: Vec<String> = a.frames.iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["api:view", "db:get"]);
    }

    #[test]
    fn different_stacks_do_not_group() {
        let a = fingerprint(&event("x", Some(PY)));
        let b = fingerprint(&event("x", Some(&PY.replace("in get", "in put"))));
        assert_ne!(a.fingerprint, b.fingerprint);
    }

    #[test]
    fn java_frames_and_causes() {
        let trace = "java.lang.IllegalStateException: card 4242 declined\n\tat com.acme.Billing.charge(Billing.java:42)\n\tat com.acme.Billing.charge(Billing.java:42)\n\tat com.acme.Api.pay(Api.java:7)\nCaused by: java.io.IOException: reset\n\t... 3 more";
        let g = fingerprint(&event("charge failed", Some(trace)));
        assert_eq!(g.error_type.as_deref(), Some("java.lang.IllegalStateException"));
        let frames: Vec<String> = g.frames.iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["com.acme.Billing:charge", "com.acme.Api:pay"]);
    }

    #[test]
    fn java_exception_line_ending_in_a_parenthesis_is_not_a_go_frame() {
        let trace = |sku: &str| {
            format!(
                "java.lang.IllegalStateException: stock for sku {sku} went negative (-2)\n\tat com.acme.Stock.reserve(Stock.java:142)"
            )
        };
        let a = fingerprint(&event("reservation failed", Some(&trace("88-1423"))));
        let b = fingerprint(&event("reservation failed", Some(&trace("91-0007"))));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_eq!(a.frames.len(), 1);
    }

    #[test]
    fn go_and_node_frames() {
        let go = "goroutine 1 [running]:\nmain.lookup(...)\n\t/app/main.go:12\nmain.(*Server).run(0xc0000)\n\t/app/server.go:20 +0x1d\ncreated by main.main in goroutine 1\n\t/app/main.go:30 +0x1a5";
        let frames: Vec<String> = frames(go).iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["main:lookup", "main.(*Server):run", "main:main"]);
        let node = "TypeError: x is undefined\n    at handler (/app/src/routes.js:10:5)\n    at /app/src/index.js:3:9";
        let frames: Vec<String> =
            super::frames(node).iter().map(|f| format!("{}:{}", f.module, f.function)).collect();
        assert_eq!(frames, ["routes.js:handler", "index.js:"]);
    }

    #[test]
    fn messages_group_by_masked_template() {
        let a = fingerprint(&event("timeout after 30s talking to 10.0.0.1:5432", None));
        let b = fingerprint(&event("timeout after 45s talking to 10.0.0.9:5432", None));
        let c = fingerprint(&event("disk full on /dev/sda1", None));
        assert_eq!(a.fingerprint, b.fingerprint);
        assert_ne!(a.fingerprint, c.fingerprint);
        assert_eq!(a.template, "timeout after <DUR> talking to <IP>");
        assert_eq!(a.fingerprint.as_str().len(), 64);
    }

    #[test]
    fn exception_without_frames_groups_by_type_and_value() {
        let a = fingerprint(&event("ValueError: invalid literal for int() with base 10: 'abc'", None));
        let b = fingerprint(&event("ValueError: invalid literal for int() with base 10: 'xyz'", None));
        assert_eq!((a.tier, a.fingerprint.clone()), (Tier::Exception, b.fingerprint));
    }
}
