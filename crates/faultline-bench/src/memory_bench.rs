//! `faultline bench memory`: a stream of generated lines from many distinct patterns through
//! the grouping engine (masking, fingerprints, the template miner), reporting the process's
//! resident memory as it goes and at its peak.

use std::time::Instant;

use faultline_core::mine::DEFAULT_CAPACITY;
use faultline_core::{Grouper, Level, LogEvent, Origin};

/// Resident and peak resident memory of this process, in MiB (Linux `/proc/self/status`).
pub(crate) fn resident_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A small deterministic mixer (SplitMix64), so every run generates the same stream.
pub(crate) fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// A pronounceable word for `n` (`kobali`, `tesumo`…): letters only, so masking keeps it.
fn word(n: u64) -> String {
    const SYLLABLES: [&str; 16] =
        ["ka", "to", "mi", "re", "su", "no", "ba", "li", "ve", "dor", "pa", "gi", "chu", "wen", "ox", "ly"];
    let mut out = String::new();
    let mut n = n;
    for _ in 0..3 {
        out.push_str(SYLLABLES[(n % 16) as usize]);
        n /= 16;
    }
    out
}

/// Line `n` of the stream: pattern `n % patterns`, whose constant words (5 to 12 of them, from a
/// 4,096-word vocabulary) are its own, with a user name, a number and an address filled in.
fn line(n: u64, patterns: u64) -> String {
    let p = n % patterns;
    let len = 5 + mix(p) % 8;
    let mut out = String::new();
    for i in 0..len {
        out.push_str(&word(mix(p * 31 + i) % 4096));
        out.push(' ');
        if i == 1 {
            out.push_str(&format!("user {} ", word(mix(n) % 1000)));
        }
    }
    out.push_str(&format!("after {} ms from 10.{}.{}.{}", mix(n) % 5000, n % 256, (n / 256) % 256, n % 7));
    out
}

/// Streams the lines and reports as it goes; returns the grouper's (groups, live families,
/// fossils) at the end.
pub fn run(lines: u64, patterns: u64, capacity: Option<usize>) -> anyhow::Result<(usize, usize, usize)> {
    anyhow::ensure!(patterns > 0, "--patterns must be at least 1");
    let (base, _) = resident_mib();
    let capacity = capacity.unwrap_or(DEFAULT_CAPACITY);
    println!(
        "{lines} lines from {patterns} patterns, {capacity} live families at most; resident before: {base:.1} MiB"
    );
    let mut grouper = Grouper::with_capacity(capacity);
    let mut event = LogEvent {
        timestamp_ms: 0,
        level: Level::Error,
        source: "bench".into(),
        message: String::new(),
        traceback: None,
        request_path: None,
        request_method: None,
        metadata: Default::default(),
        raw: String::new(),
        origin: Origin { source_id: "bench".into(), external_id: None },
    };
    let started = Instant::now();
    let step = (lines / 10).max(1);
    // The grouper's own time: lines are generated a chunk ahead, outside the clock.
    let mut grouping = std::time::Duration::ZERO;
    let mut chunk: Vec<String> = Vec::new();
    for n in 0..lines {
        if chunk.is_empty() {
            chunk = (n..(n + 4096).min(lines)).rev().map(|k| line(k, patterns)).collect();
        }
        event.message = chunk.pop().expect("a generated line");
        let t = Instant::now();
        std::hint::black_box(grouper.group(&event));
        grouping += t.elapsed();
        if (n + 1) % step == 0 {
            let (rss, _) = resident_mib();
            let (live, fossils) = grouper.families();
            println!(
                "{:>11} lines  {:>8} groups  {live:>7} live families  {fossils:>7} fossils  resident {rss:.1} MiB  {:.0} lines/s",
                n + 1,
                grouper.patterns(),
                (n + 1) as f64 / started.elapsed().as_secs_f64()
            );
        }
    }
    let (rss, peak) = resident_mib();
    println!("mined groups: {}; resident at the end {rss:.1} MiB, peak {peak:.1} MiB", grouper.patterns());
    println!("grouper alone (generation not counted): {:.0} lines/s", lines as f64 / grouping.as_secs_f64());
    let (live, fossils) = grouper.families();
    Ok((grouper.patterns(), live, fossils))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_capacity_bounds_live_families_and_keeps_every_group() {
        let (groups, live, fossils) = run(2_000, 100, Some(30)).unwrap();
        assert!(live <= 30, "{live} live families");
        assert_eq!(live + fossils, 100, "every pattern is live or a fossil");
        assert_eq!(groups, 100, "eviction split no pattern");
    }

    #[test]
    fn lines_of_one_pattern_share_their_words_and_patterns_differ() {
        let a = line(3, 1000);
        let b = line(1003, 1000);
        let c = line(4, 1000);
        let words = |s: &str| s.split(' ').take(2).map(str::to_owned).collect::<Vec<_>>();
        assert_eq!(words(&a), words(&b));
        assert_ne!(words(&a), words(&c));
        assert_ne!(a, b, "the variables differ");
    }
}
