//! Killing `faultline ingest` mid-way and running it again loses and duplicates nothing.

use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use faultline_store::SearchQuery;

use crate::{databases, faultline, json, stdout};

/// A child process that is always waited for, even when the test fails early.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Writes a log of `n` events where every 4th is an ERROR (some with a traceback) and returns
/// how many errors it holds.
fn write_log(path: &std::path::Path, n: u64) -> u64 {
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut errors = 0;
    for i in 0..n {
        // 600 lines a minute: below the per-pattern cap, so every error is stored.
        let ms = i * 100;
        let ts = format!(
            "2024-01-02 {:02}:{:02}:{:02},{:03}",
            ms / 3_600_000,
            (ms / 60_000) % 60,
            (ms / 1000) % 60,
            ms % 1000
        );
        if i % 4 == 0 {
            errors += 1;
            writeln!(w, "{ts} ERROR app.jobs: job {i} failed on worker {}", i % 7).unwrap();
            if i % 8 == 0 {
                writeln!(w, "Traceback (most recent call last):\n  File \"/app/jobs.py\", line {}, in run\nValueError: bad input {i}", i % 90).unwrap();
            }
        } else {
            writeln!(w, "{ts} INFO app.jobs: job {i} ok").unwrap();
        }
    }
    errors
}

#[tokio::test]
async fn killing_ingest_midway_then_rerunning_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("jobs.log");
    let expected = write_log(&log, 400_000);
    for db in databases(dir.path()).await {
        let store = faultline_store::open(&db).await.unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_faultline"))
            .current_dir(dir.path())
            .args(["--database", &db, "ingest", log.to_str().unwrap()])
            .env("FAULTLINE_INGEST__BATCH_SIZE", "500")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut child = Reaped(child);
        // Wait until some batches are committed, then kill without warning.
        let started = Instant::now();
        let stored_when_killed = loop {
            let page = store.search(&SearchQuery { limit: 1, ..Default::default() }).await;
            let total = page.map_or(0, |p| p.total);
            if total > 0 || started.elapsed() > Duration::from_secs(60) {
                child.0.kill().expect("kill -9");
                let status = child.0.wait().expect("wait");
                // Not a crash test unless the process died of the kill, not of finishing.
                assert_eq!(status.signal(), Some(9), "the ingest ended before the kill: {status}");
                break total;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        assert!(stored_when_killed > 0, "ingest stored nothing within a minute");
        assert!(stored_when_killed < expected, "killed too late to prove anything ({db})");

        let out = stdout(&faultline(dir.path(), &db, &["ingest", log.to_str().unwrap()]));
        assert!(out.contains("0 duplicates skipped"), "resumed from its cursor: {out}");

        let all = json(&faultline(dir.path(), &db, &["search", "--json", "--limit", "1"]));
        assert_eq!(all["total"].as_u64(), Some(expected), "{db}");
        let patterns = json(&faultline(dir.path(), &db, &["patterns", "--json", "--top", "100"]));
        let counted: i64 =
            patterns.as_array().unwrap().iter().map(|p| p["occurrence_count"].as_i64().unwrap()).sum();
        assert_eq!(counted as u64, expected, "pattern counts are exact ({db})");
        let again = stdout(&faultline(dir.path(), &db, &["ingest", log.to_str().unwrap()]));
        assert!(again.contains("0 lines read"), "{again}");
    }
}
