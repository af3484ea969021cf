//! Model test of the file tailer: random sequences of appends (with partial lines and
//! tracebacks), rename rotation, copytruncate, delete and recreate, collector restarts and failed
//! commits, against a model that knows every event written. Every event must end up stored
//! exactly once.
//!
//! The stand-in store does what the real one does: entries are unique on (source id, external
//! id), and a batch's entries and checkpoint commit together or not at all. The one thing the
//! model assumes of the world is that the collector runs between two rotations of the same file
//! (it has polled since the last one), as it does when it polls every second and files rotate
//! hourly; a file rotated twice while nothing watches it cannot be found again by anyone, and a
//! deleted one only through a descriptor the collector still holds.
//!
//! Beside the model, an example of the summaries `TailOptions::whole_from` makes.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use faultline_connectors::tail::{FileBatch, TailOptions, Tailer};
use faultline_core::ParseContext;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    /// Append `lines` single-line events, then maybe half of one more (no newline yet).
    Append {
        lines: usize,
        partial: bool,
    },
    /// Append an event with a three-line Python traceback.
    Traceback,
    RotateRename {
        create_new: bool,
    },
    CopyTruncate,
    DeleteRecreate,
    Restart,
    Poll {
        fail_commit: bool,
    },
    Wait,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1..4usize, any::<bool>()).prop_map(|(lines, partial)| Op::Append { lines, partial }),
        2 => Just(Op::Traceback),
        1 => any::<bool>().prop_map(|create_new| Op::RotateRename { create_new }),
        1 => Just(Op::CopyTruncate),
        1 => Just(Op::DeleteRecreate),
        2 => Just(Op::Restart),
        4 => any::<bool>().prop_map(|fail_commit| Op::Poll { fail_commit }),
        1 => Just(Op::Wait),
    ]
}

/// The stand-in for the store: unique entries and checkpoints, committed together.
#[derive(Default)]
struct Stored {
    entries: HashMap<(String, String), String>,
    checkpoints: HashMap<String, String>,
}

struct World {
    dir: tempfile::TempDir,
    next_event: u64,
    /// The second half of a line whose first half is in the file already.
    pending_half: Option<String>,
    rotated: u32,
    written: Vec<u64>,
    now: i64,
    stored: Stored,
    tailer: Tailer,
    fail_next_commit: bool,
}

fn new_tailer(dir: &Path) -> Tailer {
    tailer_from(dir, false)
}

fn tailer_from(dir: &Path, start_at_end: bool) -> Tailer {
    let options = TailOptions {
        max_line_bytes: 4096,
        start_at_end,
        multiline_wait_ms: 1_000,
        parse: ParseContext { default_year: 2024 },
        max_batch_events: 3,
        max_batches_per_poll: 2,
        whole_from: faultline_core::Level::Unknown,
    };
    Tailer::new(vec![format!("{}/*.log", dir.display())], &[], options).expect("tailer")
}

impl World {
    fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let tailer = new_tailer(dir.path());
        World {
            dir,
            next_event: 0,
            pending_half: None,
            rotated: 0,
            written: Vec::new(),
            now: 1_704_067_200_000,
            stored: Stored::default(),
            tailer,
            fail_next_commit: false,
        }
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("app.log")
    }

    fn append(&mut self, text: &str) {
        let mut f = OpenOptions::new().create(true).append(true).open(self.log()).expect("open for append");
        f.write_all(text.as_bytes()).expect("append");
    }

    fn event_line(&mut self) -> (u64, String) {
        let n = self.next_event;
        self.next_event += 1;
        self.written.push(n);
        (n, format!("2024-01-01T00:00:{:02}.000Z ERROR app: evt-{n} failed\n", n % 60))
    }

    fn complete_partial(&mut self) {
        if let Some(rest) = self.pending_half.take() {
            self.append(&rest);
        }
    }

    fn poll(&mut self, fail_commit: bool) {
        self.fail_next_commit = fail_commit;
        let World { stored, tailer, now, fail_next_commit, .. } = self;
        let checkpoints = stored.checkpoints.clone();
        let mut load = |id: &str| -> Result<Option<String>, String> { Ok(checkpoints.get(id).cloned()) };
        let mut commit = |batch: FileBatch| -> Result<(), String> {
            if std::mem::take(fail_next_commit) {
                return Err("database is locked".into());
            }
            for e in batch.events {
                let key =
                    (batch.source_id.clone(), e.origin.external_id.clone().expect("file events have ids"));
                stored.entries.entry(key).or_insert(e.message);
            }
            stored.checkpoints.insert(batch.source_id, batch.checkpoint.to_string());
            Ok(())
        };
        // A commit that fails is seen by the next load: checkpoints are read per file open.
        // A poll that stops early (more to read) is followed by another, as the service does.
        while tailer.poll(*now, &mut load, &mut commit).more {}
    }

    fn apply(&mut self, op: &Op) {
        self.now += 100;
        match op {
            Op::Append { lines, partial } => {
                self.complete_partial();
                for _ in 0..*lines {
                    let (_, line) = self.event_line();
                    self.append(&line);
                }
                if *partial {
                    let (_, line) = self.event_line();
                    let (a, b) = line.split_at(line.len() / 2);
                    self.append(a);
                    self.pending_half = Some(b.to_owned());
                }
            }
            Op::Traceback => {
                self.complete_partial();
                let (n, line) = self.event_line();
                let trace = format!(
                    "{line}Traceback (most recent call last):\n  File \"/srv/app.py\", line {n}, in handle\nKeyError: 'k{n}'\n"
                );
                self.append(&trace);
            }
            Op::RotateRename { create_new } => {
                self.complete_partial();
                self.poll(false);
                if self.log().exists() {
                    self.rotated += 1;
                    fs::rename(self.log(), self.dir.path().join(format!("app.log.{}", self.rotated)))
                        .expect("rename");
                    if *create_new {
                        fs::write(self.log(), "").expect("create");
                    }
                }
            }
            Op::CopyTruncate => {
                self.complete_partial();
                self.poll(false);
                if self.log().exists() {
                    self.rotated += 1;
                    fs::copy(self.log(), self.dir.path().join(format!("app.log.{}", self.rotated)))
                        .expect("copy");
                    OpenOptions::new().write(true).truncate(true).open(self.log()).expect("truncate");
                }
            }
            Op::DeleteRecreate => {
                // A deleted file is gone for a collector that restarts: it must have caught up,
                // including events waiting for traceback lines.
                self.complete_partial();
                self.poll(false);
                self.now += 2_000;
                self.poll(false);
                if self.log().exists() {
                    fs::remove_file(self.log()).expect("delete");
                    fs::write(self.log(), "").expect("recreate");
                }
            }
            Op::Restart => {
                self.tailer = new_tailer(self.dir.path());
                self.tailer.remember(self.stored.checkpoints.keys().map(String::as_str));
            }
            Op::Poll { fail_commit } => self.poll(*fail_commit),
            Op::Wait => self.now += 2_000,
        }
    }

    /// Lets the collector catch up, then compares what was stored with what was written.
    fn check(&mut self) -> Result<(), TestCaseError> {
        self.complete_partial();
        for _ in 0..3 {
            self.now += 2_000;
            self.poll(false);
        }
        let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
        for message in self.stored.entries.values() {
            let n = message
                .split_whitespace()
                .find_map(|w| w.strip_prefix("evt-"))
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| {
                    TestCaseError::fail(format!("stored a message that was never written: {message:?}"))
                })?;
            *seen.entry(n).or_default() += 1;
        }
        let twice: Vec<_> = seen.iter().filter(|(_, c)| **c > 1).map(|(n, _)| *n).collect();
        let lost: Vec<_> = self.written.iter().filter(|n| !seen.contains_key(n)).collect();
        prop_assert!(twice.is_empty(), "stored more than once: {:?}", twice);
        prop_assert!(lost.is_empty(), "lost: {:?} of {}", lost, self.written.len());
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn every_event_is_stored_exactly_once(ops in proptest::collection::vec(op(), 1..40)) {
        let mut world = World::new();
        for op in &ops {
            world.apply(op);
        }
        world.check()?;
    }
}

#[test]
fn a_rotation_while_the_collector_is_down_is_drained_after_restart() {
    let mut world = World::new();
    world.apply(&Op::Append { lines: 2, partial: false });
    world.apply(&Op::Poll { fail_commit: false });
    world.apply(&Op::Append { lines: 3, partial: false });
    world.apply(&Op::Restart);
    world.rotated += 1;
    fs::rename(world.log(), world.dir.path().join("app.log.1")).expect("rename");
    world.apply(&Op::Append { lines: 1, partial: false });
    world.check().expect("nothing lost or doubled");
    assert_eq!(world.stored.entries.len(), 6);
}

/// A world whose log is empty when a tailer that starts files at their end first polls it.
fn empty_at_start() -> World {
    let mut world = World::new();
    fs::write(world.log(), "").expect("create empty");
    world.tailer = tailer_from(world.dir.path(), true);
    world.apply(&Op::Poll { fail_commit: false });
    world
}

#[test]
fn regression_16_lines_appended_to_a_file_empty_at_start_are_kept() {
    let mut world = empty_at_start();
    world.apply(&Op::Append { lines: 1, partial: false });
    world.apply(&Op::Poll { fail_commit: false });
    world.apply(&Op::Append { lines: 2, partial: false });
    world.check().expect("nothing lost or doubled");
    assert_eq!(world.stored.entries.len(), 3);
}

#[test]
fn a_file_with_lines_at_start_still_starts_at_its_end() {
    let mut world = World::new();
    world.append("2024-01-01T00:00:00.000Z ERROR app: old line before start\n");
    world.tailer = tailer_from(world.dir.path(), true);
    world.apply(&Op::Poll { fail_commit: false });
    world.apply(&Op::Append { lines: 2, partial: false });
    world.check().expect("nothing lost or doubled");
    assert_eq!(world.stored.entries.len(), 2);
}

#[test]
fn regression_16_lines_written_to_a_file_empty_at_start_survive_a_restart_before_they_are_read() {
    let mut world = empty_at_start();
    world.apply(&Op::Append { lines: 2, partial: false });
    // The collector restarts before it read them: the file is not new to it.
    world.tailer = tailer_from(world.dir.path(), true);
    world.tailer.remember(world.stored.checkpoints.keys().map(String::as_str));
    world.check().expect("nothing lost or doubled");
    assert_eq!(world.stored.entries.len(), 2);
}

/// With `whole_from`, what is below that level is handed over as a summary (its level, time and
/// position, not its text), and the errors whole, as the store that only counts the rest needs.
#[test]
fn events_below_whole_from_are_handed_over_as_summaries() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("app.log"),
        "2024-01-02 03:04:05,000 INFO app.web: GET /health served\n  {\"id\": 1}\n\
         2024-01-02 03:04:06,000 ERROR app.jobs: job failed\n\
         Traceback (most recent call last):\n  File \"/srv/jobs.py\", line 9, in run\nValueError: bad\n",
    )
    .expect("log");
    let options = TailOptions {
        start_at_end: false,
        whole_from: faultline_core::Level::Error,
        ..TailOptions::default()
    };
    let mut tailer =
        Tailer::new(vec![format!("{}/*.log", dir.path().display())], &[], options).expect("tailer");
    let mut events = Vec::new();
    let mut load = |_: &str| Ok::<_, String>(None);
    let mut commit = |batch: FileBatch| {
        events.extend(batch.events);
        Ok::<_, String>(())
    };
    // The traceback's end is known once the wait for more lines has passed.
    tailer.poll(0, &mut load, &mut commit);
    tailer.poll(60_000, &mut load, &mut commit);
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.level, e.message.as_str(), e.traceback.as_deref().map(str::lines).map(Iterator::count)))
        .collect();
    assert_eq!(
        seen,
        [(faultline_core::Level::Info, "", None), (faultline_core::Level::Error, "job failed", Some(3))],
        "{events:#?}"
    );
}
