//! The journald source against a stand-in `journalctl` (tests/fixtures/journalctl) that prints
//! real `-o json` lines, byte-array and repeated fields included, and honours `--after-cursor`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_connectors::journal::{self, Delivery, JournalConfig, JournalStatus};
use faultline_core::Level;
use serde_json::json;
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

fn stand_in() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/journalctl")
}

fn entry(i: u32, priority: u8, message: serde_json::Value) -> String {
    let mut e = json!({
        "__CURSOR": format!("s=8f2c;i={i:x};b=77;m={i:x};t={i:x};x={i:x}"),
        "__REALTIME_TIMESTAMP": format!("{}", 1_704_164_645_000_000u64 + u64::from(i) * 1_000_000),
        "PRIORITY": priority.to_string(),
        "_SYSTEMD_UNIT": "api.service",
        "SYSLOG_IDENTIFIER": "api",
        "_HOSTNAME": "web-1",
        "MESSAGE": message,
    });
    if i.is_multiple_of(2) {
        e["SYSLOG_IDENTIFIER"] = json!([97, 112, 105]); // "api" as bytes
    }
    format!("{e}\n")
}

struct Running {
    rx: mpsc::Receiver<Delivery>,
    status: watch::Receiver<JournalStatus>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn start(journal: &Path, cursor: Option<String>, exit_after: Option<u32>) -> Running {
    // Each test gets its own journal file, passed to the stand-in by a small wrapper script.
    let mut config = JournalConfig {
        command: stand_in(),
        start_at_end: false,
        batch_wait: Duration::from_millis(50),
        restart_min: Duration::from_millis(50),
        ..JournalConfig::default()
    };
    let wrapper = journal.with_extension("sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nFAKE_JOURNAL='{}' FAKE_JOURNAL_EXIT_AFTER='{}' exec '{}' \"$@\"\n",
            journal.display(),
            exit_after.unwrap_or(0),
            stand_in().display()
        ),
    )
    .expect("wrapper");
    std::fs::set_permissions(&wrapper, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
    config.command = wrapper;
    let (tx, rx) = mpsc::channel(4);
    let (status_tx, status) = watch::channel(JournalStatus::Running);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(journal::run(config, cursor, tx, status_tx, shutdown.clone()));
    Running { rx, status, shutdown, task }
}

/// Receives batches, storing (acking) each, until `n` events came.
async fn receive(r: &mut Running, n: usize) -> (Vec<faultline_core::LogEvent>, String) {
    let mut events = Vec::new();
    let mut cursor = String::new();
    while events.len() < n {
        let (batch, ack) = tokio::time::timeout(Duration::from_secs(20), r.rx.recv())
            .await
            .expect("a batch in time")
            .expect("source running");
        events.extend(batch.events);
        cursor = batch.cursor;
        ack.send(Ok(())).expect("ack");
    }
    (events, cursor)
}

#[tokio::test]
async fn reads_entries_and_resumes_after_the_stored_cursor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal.json");
    let first = [
        entry(1, 3, json!("upstream timed out")),
        entry(2, 6, json!("healthy")), // info: not asked for (--priority=3)
        entry(3, 2, json!(["Traceback (most recent call last):", "ValueError: x"])),
        entry(4, 3, json!([98, 97, 100, 32, 255])),
    ];
    std::fs::write(&journal, first.concat()).expect("write");
    let mut r = start(&journal, None, None);
    let (events, cursor) = receive(&mut r, 3).await;
    let got: Vec<(Level, &str, &str)> =
        events.iter().map(|e| (e.level, e.source.as_str(), e.message.as_str())).collect();
    assert_eq!(
        got,
        [
            (Level::Error, "api", "upstream timed out"),
            (Level::Critical, "api", "Traceback (most recent call last):"),
            (Level::Error, "api", "bad \u{FFFD}"),
        ]
    );
    assert!(cursor.contains("i=4;"), "{cursor}");

    // Stop, append while stopped, start again from the stored cursor: only the new entry.
    r.shutdown.cancel();
    r.task.await.expect("source stops");
    std::fs::write(&journal, [first.concat(), entry(5, 3, json!("disk full"))].concat()).expect("append");
    let mut r = start(&journal, Some(cursor.clone()), None);
    let (events, _) = receive(&mut r, 1).await;
    assert_eq!(events.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["disk full"]);
    let args = std::fs::read_to_string(dir.path().join("journal.json.args")).expect("args");
    assert!(args.lines().last().is_some_and(|l| l.contains(&format!("--after-cursor={cursor}"))), "{args}");
    r.shutdown.cancel();
    r.task.await.expect("source stops");
}

/// A saved cursor whose entry was vacuumed away resumes after it (journalctl seeks to the
/// nearest entry); one journalctl cannot parse is dropped with a clear status, and reading
/// starts where the config says, instead of restarting with it forever.
#[tokio::test]
async fn regression_23_a_vanished_cursor_resumes_and_a_refused_one_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal.json");
    // Entry 3 was vacuumed; the cursor stored for it is still well-formed.
    let kept = [1, 2, 4, 5].map(|i| entry(i, 3, json!(format!("error {i}"))));
    std::fs::write(&journal, kept.concat()).expect("write");
    let vanished = "s=8f2c;i=3;b=77;m=3;t=3;x=3".to_owned();
    let mut r = start(&journal, Some(vanished), None);
    let (events, _) = receive(&mut r, 2).await;
    assert_eq!(events.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["error 4", "error 5"]);
    r.shutdown.cancel();
    r.task.await.expect("source stops");

    let mut r = start(&journal, Some("not a cursor".to_owned()), None);
    let (events, cursor) = receive(&mut r, 4).await;
    assert_eq!(events.len(), 4, "the whole journal, as start_at_end = false says");
    assert!(cursor.contains("i=5;"), "{cursor}");
    let args = std::fs::read_to_string(dir.path().join("journal.json.args")).expect("args");
    let refused = args.lines().filter(|l| l.contains("--after-cursor=not a cursor")).count();
    assert_eq!(refused, 1, "the refused cursor is not tried again: {args}");
    r.shutdown.cancel();
    r.task.await.expect("source stops");
}

#[tokio::test]
async fn restarts_journalctl_after_it_exits_and_after_a_failed_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal.json");
    let all: Vec<String> = (1..=4).map(|i| entry(i, 3, json!(format!("error {i}")))).collect();
    std::fs::write(&journal, all.concat()).expect("write");
    // journalctl exits after each entry: every entry arrives from a new process.
    let mut r = start(&journal, None, Some(1));
    let (batch, ack) = r.rx.recv().await.expect("first batch");
    assert_eq!(batch.events[0].message, "error 1");
    ack.send(Err("database is locked".into())).expect("ack");
    // Not stored: the same entry comes again, then the rest in order, each once.
    let (events, _) = receive(&mut r, 4).await;
    let messages: Vec<&str> = events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["error 1", "error 2", "error 3", "error 4"]);
    r.shutdown.cancel();
    r.task.await.expect("source stops");
}

#[tokio::test]
async fn a_missing_journalctl_is_reported_not_fatal() {
    let config = JournalConfig {
        command: PathBuf::from("/nonexistent/journalctl"),
        restart_min: Duration::from_millis(20),
        ..JournalConfig::default()
    };
    let (tx, _rx) = mpsc::channel(1);
    let (status_tx, mut status) = watch::channel(JournalStatus::Running);
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(journal::run(config, None, tx, status_tx, shutdown.clone()));
    tokio::time::timeout(Duration::from_secs(10), status.wait_for(|s| matches!(s, JournalStatus::Failed(_))))
        .await
        .expect("reported in time")
        .expect("status");
    let JournalStatus::Failed(message) = status.borrow().clone() else { unreachable!() };
    assert!(message.starts_with("cannot run /nonexistent/journalctl: "), "{message}");
    shutdown.cancel();
    task.await.expect("stops on shutdown");
}

#[tokio::test]
async fn status_is_running_while_following() {
    let dir = tempfile::tempdir().expect("tempdir");
    let journal = dir.path().join("journal.json");
    std::fs::write(&journal, entry(1, 3, json!("x"))).expect("write");
    let mut r = start(&journal, None, None);
    receive(&mut r, 1).await;
    assert_eq!(*r.status.borrow(), JournalStatus::Running);
    r.shutdown.cancel();
    r.task.await.expect("source stops");
}
