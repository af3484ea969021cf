//! The template miner behind [`crate::Store::ingest`]: message-tier events of every batch are
//! mined (so `user alice` and `user bob` share a pattern), and the miner's state is saved in
//! the batch's own transaction when it is due, then restored when the store opens.
//!
//! A state is saved when groups were created or merged and [`SAVE_EVERY_MS`] have passed since
//! the last save, or after [`SAVE_IDLE_MS`] when only templates widened; the service saves
//! the rest when it stops ([`crate::Store::save_grouping`]). A group's fingerprint is the one
//! its first line had, so a group created again after a crash mostly finds its old pattern.

use faultline_core::{DAY_MS, FINGERPRINT_VERSION, Grouper, GrouperState, MINUTE_MS};

use crate::types::IngestBatch;

/// How long a pattern of an older fingerprint version keeps matching events of the new one
/// (counted from its last occurrence).
pub(crate) const TRANSITION_WINDOW_MS: i64 = 30 * DAY_MS;

/// Least time between two saves of a state with new groups.
const SAVE_EVERY_MS: i64 = 2_000;
/// Least time between two saves of a state whose templates only widened.
const SAVE_IDLE_MS: i64 = MINUTE_MS;

pub(crate) struct Mining {
    grouper: Grouper,
    saved_ms: i64,
    /// Groups were created or merged since the last save.
    created: bool,
    /// Lines were mined since the last save.
    mined: bool,
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
        Mining { grouper, saved_ms: i64::MIN, created: false, mined: false }
    }

    /// Mines the batch's message-tier events; returns the state to save with the batch when a
    /// save is due (then call [`Mining::saved`] once the transaction commits).
    pub fn mine(&mut self, batch: &mut IngestBatch) -> Option<String> {
        let ids: Vec<Option<u64>> = batch.events.iter().map(|ge| self.grouper.mine(&ge.grouping)).collect();
        self.mined |= ids.iter().any(Option::is_some);
        // Settled once the batch is mined: a group merged by a later line of the batch takes
        // its earlier lines where it went.
        for (ge, id) in batch.events.iter_mut().zip(ids) {
            if let Some(id) = id {
                self.grouper.settle(id, &mut ge.grouping);
            }
        }
        self.created |= self.grouper.take_changed();
        let since = batch.now_ms.saturating_sub(self.saved_ms);
        let due = (self.created && since >= SAVE_EVERY_MS) || (self.mined && since >= SAVE_IDLE_MS);
        due.then(|| self.state())
    }

    /// The state, when anything was mined since the last save.
    pub fn unsaved(&self) -> Option<String> {
        (self.mined || self.created).then(|| self.state())
    }

    pub fn saved(&mut self, now_ms: i64) {
        self.saved_ms = now_ms;
        self.created = false;
        self.mined = false;
    }

    fn state(&self) -> String {
        serde_json::to_string(&self.grouper.snapshot()).expect("a grouper state serialises")
    }
}

/// The fingerprint version whose state is saved.
pub(crate) const VERSION: i32 = FINGERPRINT_VERSION;

/// The newest saved state up to this version (`$1` = [`VERSION`]): after an upgrade, the one the
/// previous version saved, which [`Grouper::restore`] takes when its miner read alike.
pub(crate) const LOAD_STATE: &str =
    "SELECT state FROM grouper_state WHERE version <= $1 ORDER BY version DESC LIMIT 1";
