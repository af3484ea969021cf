//! The grouping hot path, per line: masking, mining, and whole events through `fingerprint`
//! and a `Grouper`. Lines are the Content lines of the Loghub-2k samples beside the repo when
//! present (`../shared/loghub-2k`), else a built-in mix. `cargo bench -p faultline-core`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use faultline_core::mask::mask_into;
use faultline_core::mine::Miner;
use faultline_core::{Grouper, Level, LogEvent, Origin, fingerprint};

const BUILT_IN: [&str; 8] = [
    "connection refused to 10.0.0.7:5432 after 3 retries (1.5s)",
    "session opened for user news by (uid=0)",
    "Block rdd_21_1 stored as bytes in memory (estimated size 162.0 B, free 403.0 KB)",
    "authentication failure; logname= uid=0 euid=0 tty=NODEVssh ruser= rhost=218.188.2.4",
    "GET https://api.example.com/users/42?token=abc failed: 503 in 120ms",
    "Receiving block blk_-1608999687919862906 src: /10.250.19.102:54106 dest: /10.250.19.102:50010",
    "payment 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 declined for card ending 4242",
    "login failed for user alice from db-1.prod.internal at Jul 10 03:55:15",
];

/// Every sample's log lines (whole lines: the layout is not stripped here), or the built-in mix.
#[allow(clippy::disallowed_methods, reason = "a benchmark may read its input; the core itself does no IO")]
fn lines() -> Vec<String> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/loghub-2k");
    let mut out = Vec::new();
    if let Ok(systems) = std::fs::read_dir(&dir) {
        for system in systems.flatten() {
            let name = system.file_name().to_string_lossy().into_owned();
            if let Ok(text) = std::fs::read_to_string(system.path().join(format!("{name}_2k.log"))) {
                out.extend(text.lines().map(str::to_owned));
            }
        }
    }
    if out.is_empty() {
        out = (0..2000).map(|i| BUILT_IN[i % BUILT_IN.len()].replace("42", &i.to_string())).collect();
    }
    out
}

fn event(message: &str) -> LogEvent {
    LogEvent {
        timestamp_ms: 0,
        level: Level::Error,
        source: "bench".into(),
        message: message.to_owned(),
        traceback: None,
        request_path: None,
        request_method: None,
        metadata: Default::default(),
        raw: String::new(),
        origin: Origin { source_id: "bench".into(), external_id: None },
    }
}

fn grouping(c: &mut Criterion) {
    let lines = lines();
    let mut group = c.benchmark_group("grouping");
    group.throughput(Throughput::Elements(lines.len() as u64));
    let mut out = String::new();
    group.bench_function("mask", |b| {
        b.iter(|| {
            for line in &lines {
                out.clear();
                mask_into(line, &mut out);
            }
        })
    });
    let masked: Vec<String> = lines.iter().map(|l| faultline_core::mask(l)).collect();
    group.bench_function("mine", |b| {
        b.iter(|| {
            let mut miner = Miner::default();
            for line in &masked {
                miner.add(line);
            }
            miner
        })
    });
    group.bench_function("mask_and_mine", |b| {
        b.iter(|| {
            let mut miner = Miner::default();
            for line in &lines {
                out.clear();
                mask_into(line, &mut out);
                miner.add(&out);
            }
            miner
        })
    });
    let events: Vec<LogEvent> = lines.iter().map(|l| event(l)).collect();
    group.bench_function("fingerprint_event", |b| {
        b.iter(|| events.iter().map(|e| fingerprint(e).tier as u8 as u64).sum::<u64>())
    });
    group.bench_function("grouper_event", |b| {
        b.iter(|| {
            let mut grouper = Grouper::default();
            events.iter().map(|e| grouper.group(e).tier as u8 as u64).sum::<u64>()
        })
    });
    group.finish();
}

criterion_group!(benches, grouping);
criterion_main!(benches);
