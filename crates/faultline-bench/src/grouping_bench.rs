//! `faultline bench grouping DIR --out PRED_DIR`: groups the Content lines of every labelled
//! system under DIR (layouts from DIR/formats.json) with the engine's masks and template miner,
//! one configuration for all, and writes `PRED_DIR/<System>.csv` (LineId, group, template) for
//! `loghub_eval.py` to score. Prints lines/s of the grouping itself.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_core::mask::mask_into;
use faultline_core::mine::Miner;

/// A `log_format` as a regular expression: `<Name>` captures as little as possible, the text
/// between fields is a regular-expression fragment whose runs of spaces match any whitespace.
fn layout(format: &str) -> anyhow::Result<regex::Regex> {
    let mut pattern = String::from("^");
    let mut rest = format;
    while let Some(open) = rest.find('<') {
        let Some(close) = rest[open..].find('>') else { break };
        pattern.push_str(&spaces(&rest[..open]));
        let name = &rest[open + 1..open + close];
        let _ = write!(pattern, "(?P<{name}>.*?)");
        rest = &rest[open + close + 1..];
    }
    pattern.push_str(&spaces(rest));
    pattern.push('$');
    regex::Regex::new(&pattern).with_context(|| format!("log_format {format:?}"))
}

fn spaces(fragment: &str) -> String {
    let mut out = String::new();
    let mut in_space = false;
    for c in fragment.chars() {
        if c == ' ' {
            if !in_space {
                out.push_str(r"\s+");
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out
}

fn csv_field(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Groups `contents` with a fresh miner: each line's group id, and the miner.
fn group(contents: &[&str], similarity: f64) -> (Vec<u64>, Miner) {
    let mut miner = Miner::new(similarity);
    let mut masked = String::new();
    let ids = contents
        .iter()
        .map(|content| {
            masked.clear();
            mask_into(content, &mut masked);
            miner.add(&masked).cluster_id
        })
        .collect();
    (ids, miner)
}

pub fn run(dir: &Path, out: &Path, rounds: u32, similarity: f64) -> anyhow::Result<()> {
    anyhow::ensure!((0.0..=1.0).contains(&similarity), "--similarity must be between 0 and 1");
    let formats: serde_json::Value = serde_json::from_slice(
        &std::fs::read(dir.join("formats.json"))
            .with_context(|| format!("reading {}/formats.json", dir.display()))?,
    )?;
    let datasets = formats["datasets"].as_object().context("formats.json has no datasets")?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let mut systems: Vec<(&str, String)> = Vec::new();
    for (system, spec) in datasets {
        let log: PathBuf = dir.join(spec["log_file"].as_str().unwrap_or_default());
        if log.is_file() {
            systems.push((system, String::from_utf8_lossy(&std::fs::read(&log)?).into_owned()));
        }
    }
    let mut contents: Vec<Vec<&str>> = Vec::new();
    for (system, text) in &systems {
        let re = layout(datasets[*system]["log_format"].as_str().unwrap_or("<Content>"))?;
        contents.push(
            text.lines()
                .map(|line| {
                    let line = line.trim();
                    re.captures(line).and_then(|c| c.name("Content")).map_or(line, |m| m.as_str())
                })
                .collect(),
        );
    }
    let total_lines: usize = contents.iter().map(Vec::len).sum();
    anyhow::ensure!(total_lines > 0, "no system folder with its log under {}", dir.display());

    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        for lines in &contents {
            std::hint::black_box(group(lines, similarity));
        }
        best = best.min(started.elapsed());
    }

    for ((system, _), lines) in systems.iter().zip(&contents) {
        let (ids, miner) = group(lines, similarity);
        let clusters = miner.clusters();
        let templates: std::collections::HashMap<u64, &str> =
            clusters.iter().map(|c| (c.id, c.template.as_str())).collect();
        let mut csv = String::from("LineId,group,template\n");
        for (i, id) in ids.iter().enumerate() {
            // A group merged later is scored as the group it went into.
            let id = miner.resolve(*id);
            let _ = writeln!(csv, "{},{id},{}", i + 1, csv_field(templates[&id]));
        }
        let file = out.join(format!("{system}.csv"));
        std::fs::write(&file, csv).with_context(|| format!("writing {}", file.display()))?;
        println!("{system:<10} {:>6} lines {:>5} groups", lines.len(), clusters.len());
    }
    println!(
        "grouped {total_lines} lines in {:.1} ms (fastest of {rounds} rounds): {:.0} lines/s",
        best.as_secs_f64() * 1000.0,
        total_lines as f64 / best.as_secs_f64().max(1e-9)
    );
    println!("score: python3 ../shared/tools/loghub_eval.py {} --pred {}", dir.display(), out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_capture_the_content() {
        let re = layout("<Date> <Time> <Pid> <Level> <Component>: <Content>").unwrap();
        let line = "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block blk_3 terminating";
        assert_eq!(&re.captures(line).unwrap()["Content"], "PacketResponder 1 for block blk_3 terminating");
        let re = layout(r"\[<Time>\] \[<Level>\] <Content>").unwrap();
        assert_eq!(
            &re.captures("[Sun Dec 04 04:47:44 2005] [notice]  workerEnv.init() ok").unwrap()["Content"],
            "workerEnv.init() ok"
        );
    }
}
