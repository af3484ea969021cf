//! `faultline seed`: fills a database with generated errors (the System Health benchmark's data,
//! or a demo). Errors spread over the last `days`, recent ones denser; pattern popularity is
//! skewed like real traffic (a few patterns hold most errors). Rerunning adds nothing: each
//! generated error has a stable external id.

use std::sync::Arc;

use faultline_core::{Level, LogEvent, Origin};
use faultline_store::{Pipeline, PipelineSettings, SourceKind, Store, Submission};

use crate::ingest_http::{AREAS, Rng, error_message};

/// What a seeding stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seeded {
    pub stored: u64,
    pub duplicates: u64,
    pub patterns: u64,
}

const ROLES: [&str; 5] = ["api", "worker", "cron", "edge", "batch"];
const SHAPES: u64 = 30;

/// The order in which the generated errors are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Order {
    /// Each batch spread over the whole span: rows in the tables are in no time order, the
    /// hardest layout for a read of the newest entries.
    Shuffled,
    /// Oldest first, as a live service's errors arrive: rows lie in time order.
    Arrival,
}

/// The age (a fraction of the span) below which a share `q` of the product of two uniform
/// numbers falls: the inverse of its distribution function `a - a ln a`, by bisection.
fn product_quantile(q: f64) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        let below = if mid > 0.0 { mid - mid * mid.ln() } else { 0.0 };
        if below < q { lo = mid } else { hi = mid }
    }
    (lo + hi) / 2.0
}

/// Stores `errors` generated errors over `patterns` patterns (at most 1,500), the newest at
/// `now_ms`, the oldest `days` before.
pub async fn seed(
    store: &Arc<dyn Store>,
    errors: u64,
    patterns: u64,
    days: u32,
    order: Order,
    now_ms: i64,
    mut progress: impl FnMut(u64),
) -> anyhow::Result<Seeded> {
    let patterns = patterns.clamp(1, SHAPES * (AREAS.len() * ROLES.len()) as u64);
    let span = i64::from(days.max(1)) * 86_400_000;
    let mut rng = Rng(2024);
    let mut seeded = Seeded { stored: 0, duplicates: 0, patterns: 0 };
    let batch_size = 10_000;
    let mut n = 0;
    let pipeline = Pipeline::new(
        store.clone(),
        PipelineSettings { min_level: Level::Error, max_stored_per_pattern_minute: u32::MAX },
    );
    while n < errors {
        let mut events = Vec::with_capacity(batch_size);
        for _ in 0..batch_size.min((errors - n) as usize) {
            n += 1;
            // The product of two uniform numbers leans towards 0: recent errors and the first
            // patterns are the common ones. Every pattern appears at least once.
            let drawn = (rng.below(1 << 20) * rng.below(1 << 20)) as f64 / (1u64 << 40) as f64;
            let age = match order {
                Order::Shuffled => drawn,
                // The same distribution, its quantiles from the oldest to the newest; the draw
                // is still made, so the messages are those of a shuffled seeding.
                Order::Arrival => product_quantile(1.0 - (n as f64 - 0.5) / errors as f64),
            };
            let pattern =
                if n <= patterns { n - 1 } else { (rng.below(patterns) * rng.below(patterns)) / patterns };
            let shape = pattern % SHAPES;
            let combo = (pattern / SHAPES) as usize;
            let area = AREAS[combo % AREAS.len()];
            let role = ROLES[combo / AREAS.len() % ROLES.len()];
            let message = format!("{role}: {}", error_message(&mut rng, shape, area, n));
            let level = if shape % 10 == 7 { Level::Critical } else { Level::Error };
            let source = format!("{area}-{role}");
            events.push(LogEvent {
                timestamp_ms: now_ms - (age * span as f64) as i64,
                level,
                raw: message.clone(),
                message,
                traceback: None,
                request_path: Some(format!("/api/{area}")),
                request_method: Some("POST".into()),
                metadata: Default::default(),
                origin: Origin { source_id: "seed".into(), external_id: Some(format!("seed-{n}")) },
                source,
            });
        }
        let submission = Submission { source_id: "seed".into(), cursor: None, events, cut_lines: 0, now_ms };
        let outcome = pipeline.submit(SourceKind::Command, submission).await?.outcome;
        seeded.stored += outcome.stored;
        seeded.duplicates += outcome.duplicates;
        seeded.patterns += outcome.new_patterns;
        progress(n);
    }
    Ok(seeded)
}

#[cfg(test)]
mod tests {
    use super::product_quantile;

    #[test]
    fn the_arrival_ages_follow_the_shuffled_distribution() {
        // The inverse of `a - a ln a`: each age comes back as the share below it.
        for a in [0.001, 0.05, 0.2, 0.5, 0.9, 0.999] {
            let q = a - a * f64::ln(a);
            assert!((product_quantile(q) - a).abs() < 1e-9, "{a}");
        }
        // Half of the errors are younger than ~0.187 of the span, as drawn.
        assert!((product_quantile(0.5) - 0.1867).abs() < 1e-3, "{}", product_quantile(0.5));
        assert!(product_quantile(0.0) < 1e-12);
        assert!((product_quantile(1.0) - 1.0).abs() < 1e-6, "flat near 1: as close as f64 tells");
    }
}
