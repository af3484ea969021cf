//! The template miner behind [`crate::Store::ingest`]: message-tier events of every batch are
//! mined (so `user alice` and `user bob` share a pattern). On SQLite ([`Mining`]) a batch is
//! mined before it waits for the writer (by the source's own thread when it calls
//! [`crate::Store::mine_ahead`]), so one batch is mined while another is written; the miner's
//! whole state is saved in a batch's own transaction when it is due, then restored when the
//! store opens. On PostgreSQL, which several instances share, the state is kept bucket by bucket
//! in the database and changes with the batches ([`SharedMining`]).
//!
//! A state is saved when groups were created or merged and [`SAVE_EVERY_MS`] have passed since
//! the last save, or after [`SAVE_IDLE_MS`] when only templates widened; the service saves
//! the rest when it stops ([`crate::Store::save_grouping`]). A group's fingerprint is the one
//! its first line had, so a group created again after a crash mostly finds its old pattern.

use std::collections::{BTreeMap, HashMap, HashSet};

use faultline_core::mine::bucket_name;
use faultline_core::{
    BucketState, DAY_MS, FINGERPRINT_VERSION, Grouper, GrouperState, MINUTE_MS, MinedGroup, Tier,
};
use sha2::{Digest, Sha256};

use crate::types::IngestBatch;

/// How long a pattern of an older fingerprint version keeps matching events of the new one
/// (counted from its last occurrence).
pub(crate) const TRANSITION_WINDOW_MS: i64 = 30 * DAY_MS;

/// Least time between two saves of a state with new groups.
const SAVE_EVERY_MS: i64 = 2_000;
/// Least time between two saves of a state whose templates only widened.
const SAVE_IDLE_MS: i64 = MINUTE_MS;

/// The miner's state taken when a save fell due, saved with the batch whose mining made it due.
/// Snapshots are numbered in the order they were taken, so that one saved late never replaces
/// a newer one.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub json: String,
    pub seq: u64,
}

/// A batch's events mined before it reaches the writer ([`crate::Store::mine_ahead`]), with the
/// state to save with it when a save fell due.
#[derive(Debug, Clone)]
pub struct MinedAhead(pub(crate) Option<Snapshot>);

pub(crate) struct Mining {
    grouper: Grouper,
    saved_ms: i64,
    /// Groups were created or merged since the last snapshot.
    created: bool,
    /// Lines were mined since the last snapshot.
    mined: bool,
    /// Snapshots taken so far.
    taken: u64,
}

impl Mining {
    /// The miner in a saved state (JSON), or a fresh one when there is none or it is from
    /// another version.
    pub fn load(saved: Option<String>) -> Mining {
        let grouper = saved
            .and_then(|json| match serde_json::from_str::<GrouperState>(&json) {
                Ok(state) => Grouper::restore(state),
                Err(e) => {
                    tracing::warn!(
                        "the saved template miner state cannot be read ({e}); mining starts afresh"
                    );
                    None
                }
            })
            .unwrap_or_default();
        Mining { grouper, saved_ms: i64::MIN, created: false, mined: false, taken: 0 }
    }

    /// Mines the batch's message-tier events, unless it was mined already, and marks it mined,
    /// with the state to save with it when a save is due. The state counts as saved from then
    /// on: should the batch's transaction fail, call [`Mining::not_saved`].
    pub fn mine(&mut self, batch: &mut IngestBatch) {
        if batch.mined.is_some() {
            return;
        }
        self.mined |= mine_batch(&mut self.grouper, batch);
        self.created |= self.grouper.take_changed();
        let since = batch.now_ms.saturating_sub(self.saved_ms);
        let due = (self.created && since >= SAVE_EVERY_MS) || (self.mined && since >= SAVE_IDLE_MS);
        batch.mined = Some(MinedAhead(due.then(|| self.snapshot(batch.now_ms))));
    }

    /// The state, when anything was mined since the last snapshot (to save before stopping).
    pub fn unsaved(&mut self, now_ms: i64) -> Option<Snapshot> {
        (self.mined || self.created).then(|| self.snapshot(now_ms))
    }

    /// A snapshot was not saved after all: the state is saved again when the next batch comes.
    pub fn not_saved(&mut self) {
        self.saved_ms = i64::MIN;
        self.created = true;
        self.mined = true;
    }

    fn snapshot(&mut self, now_ms: i64) -> Snapshot {
        self.saved_ms = now_ms;
        self.created = false;
        self.mined = false;
        self.taken += 1;
        let json = serde_json::to_string(&self.grouper.snapshot()).expect("a grouper state serialises");
        Snapshot { json, seq: self.taken }
    }
}

/// Mines a batch's message-tier events and gives each its group's fingerprint and template;
/// returns whether any was mined.
fn mine_batch(grouper: &mut Grouper, batch: &mut IngestBatch) -> bool {
    let ids = mine_events(grouper, batch);
    settle_events(grouper, batch, &ids)
}

/// Each event's mined group (`None` for tiers not mined), the batch left as it is.
fn mine_events(grouper: &mut Grouper, batch: &IngestBatch) -> Vec<Option<MinedGroup>> {
    batch.events.iter().map(|ge| grouper.mine(&ge.grouping)).collect()
}

/// Gives each mined event its group's fingerprint and template, once the whole batch is mined:
/// a group merged by a later line of the batch takes its earlier lines where it went. Returns
/// whether any was mined.
fn settle_events(grouper: &Grouper, batch: &mut IngestBatch, ids: &[Option<MinedGroup>]) -> bool {
    let mut mined = false;
    for (ge, id) in batch.events.iter_mut().zip(ids) {
        if let Some(id) = id {
            grouper.settle(*id, &mut ge.grouping);
            mined = true;
        }
    }
    mined
}

/// The miner of an instance that shares its database with others (PostgreSQL). The state lives
/// in `miner_buckets`, one row per bucket with a revision: before a batch is mined, the buckets
/// of its lines whose revision moved on are read again ([`SharedMining::refresh`]); the buckets
/// its lines changed are written with the batch, each only where its revision is still the one
/// read, and a batch that finds one moved on is mined again. So each bucket changes in one order
/// across the instances, and every instance decides its lines as one miner would. The instance
/// keeps the buckets it saw lately; the others are read again when a line needs them.
pub(crate) struct SharedMining {
    grouper: Grouper,
    /// Bucket name → the revision held ([`UNSURE`] after a batch that did not commit; a bucket
    /// not here is held at revision 0, empty).
    revs: HashMap<String, i64>,
}

/// The revision of a bucket whose state here may hold a batch that did not commit: read again.
const UNSURE: i64 = -1;

/// Live families an instance keeps at hand.
const SHARED_CAPACITY: usize = faultline_core::mine::DEFAULT_CAPACITY;

/// A bucket's row key: its name, or a hash of a long one (a btree key must stay small).
pub(crate) fn bucket_key(name: &str) -> String {
    if name.len() <= 256 && !name.contains('\0') {
        name.to_owned()
    } else {
        format!("#{}", hex::encode(Sha256::digest(name.as_bytes())))
    }
}

/// A bucket to write: its row key, the revision it becomes, its state.
pub(crate) struct BucketWrite {
    pub key: String,
    pub rev: i64,
    pub state: String,
}

impl SharedMining {
    pub fn new() -> SharedMining {
        SharedMining { grouper: Grouper::with_capacity(usize::MAX), revs: HashMap::new() }
    }

    /// The buckets of the batch's mined events, as (row key, revision held), by row key.
    pub fn asked(&self, batch: &IngestBatch) -> BTreeMap<String, (String, i64)> {
        // A batch repeats few templates: each is read once.
        let templates: HashSet<&str> = batch
            .events
            .iter()
            .filter(|ge| ge.grouping.tier == Tier::Message)
            .map(|ge| ge.grouping.template.as_str())
            .collect();
        templates
            .into_iter()
            .map(bucket_name)
            .map(|name| {
                let rev = self.revs.get(&name).copied().unwrap_or(0);
                (bucket_key(&name), (name, rev))
            })
            .collect()
    }

    /// Takes the rows found of the asked buckets, as (row key, revision, state where the
    /// revision is not the one held); an asked bucket with no row is emptied. A state of a
    /// version whose miner reads differently empties its bucket ([`Grouper::import_bucket`]).
    pub fn refresh(
        &mut self,
        asked: &BTreeMap<String, (String, i64)>,
        found: Vec<(String, i64, Option<String>)>,
    ) {
        let mut found: HashMap<String, (i64, Option<String>)> =
            found.into_iter().map(|(key, rev, state)| (key, (rev, state))).collect();
        for (key, (name, held)) in asked {
            match found.remove(key) {
                Some((rev, _)) if rev == *held => {}
                Some((rev, state)) => {
                    let state = state.and_then(|json| match serde_json::from_str::<BucketState>(&json) {
                        Ok(state) => Some(state),
                        Err(e) => {
                            tracing::warn!(
                                "a saved bucket of the template miner cannot be read ({e}); it starts afresh"
                            );
                            None
                        }
                    });
                    self.grouper.import_bucket(name, state);
                    self.revs.insert(name.clone(), rev);
                }
                None if *held != 0 => {
                    self.grouper.import_bucket(name, None);
                    self.revs.remove(name);
                }
                None => {}
            }
        }
    }

    /// Mines the batch (its buckets brought up to date by [`SharedMining::refresh`]), leaving
    /// its events as they are; returns the buckets its lines changed, to write with the batch,
    /// and each event's group, for [`SharedMining::settle`] once they are written.
    pub fn mine(&mut self, batch: &IngestBatch) -> (Vec<BucketWrite>, Vec<Option<MinedGroup>>) {
        let ids = mine_events(&mut self.grouper, batch);
        self.grouper.take_changed();
        let mut writes: Vec<BucketWrite> = self
            .grouper
            .take_changed_buckets()
            .into_iter()
            .map(|name| {
                let state =
                    serde_json::to_string(&self.grouper.export_bucket(&name)).expect("a bucket serialises");
                let rev = self.revs.get(&name).copied().unwrap_or(0) + 1;
                self.revs.insert(name.clone(), rev);
                BucketWrite { key: bucket_key(&name), rev, state }
            })
            .collect();
        writes.sort_by(|a, b| a.key.cmp(&b.key));
        (writes, ids)
    }

    /// Gives the mined events their groups' fingerprints and templates.
    pub fn settle(&self, batch: &mut IngestBatch, ids: &[Option<MinedGroup>]) {
        settle_events(&self.grouper, batch, ids);
    }

    /// After the batch committed: past the capacity, the least recently seen buckets are let go.
    pub fn committed(&mut self) {
        for name in self.grouper.drop_idle_buckets(SHARED_CAPACITY) {
            self.revs.remove(&name);
        }
    }

    /// After the batch did not commit: its buckets are read again before they are used.
    pub fn failed(&mut self, asked: &BTreeMap<String, (String, i64)>) {
        for (name, _) in asked.values() {
            self.revs.insert(name.clone(), UNSURE);
        }
    }

    /// Every bucket of a whole saved state (an installation from before buckets were shared),
    /// as rows to insert at revision 1.
    pub fn split(saved: Option<String>) -> Vec<BucketWrite> {
        let grouper = Mining::load(saved).grouper;
        let mut writes: Vec<BucketWrite> = grouper
            .bucket_names()
            .into_iter()
            .map(|name| BucketWrite {
                key: bucket_key(&name),
                rev: 1,
                state: serde_json::to_string(&grouper.export_bucket(&name)).expect("a bucket serialises"),
            })
            .collect();
        writes.sort_by(|a, b| a.key.cmp(&b.key));
        writes
    }
}

/// The fingerprint version whose state is saved.
pub(crate) const VERSION: i32 = FINGERPRINT_VERSION;

/// The newest saved state up to this version (`$1` = [`VERSION`]): after an upgrade, the one the
/// previous version saved, which [`Grouper::restore`] takes when its miner read alike.
pub(crate) const LOAD_STATE: &str =
    "SELECT state FROM grouper_state WHERE version <= $1 ORDER BY version DESC LIMIT 1";
