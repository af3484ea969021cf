//! What both backends share: SQL text written once for both dialects (the `$n` placeholders
//! SQLite also reads), the column lists rows are read by, and the pure steps around queries.
//!
//! SQLite numbers `$n` parameters in the order they first appear in the text, not by `n`: in
//! every statement here `$1`, `$2`, … first appear in that order.

use std::collections::BTreeMap;

use faultline_core::MINUTE_MS;

use crate::types::*;
use crate::{Result, StoreError};

/// A resolved pattern seen again goes back to `new` (the regression rule alerts on it).
pub(crate) const REGRESS_PATTERN: &str = "UPDATE patterns SET status = 'new', updated_ms = $1
    WHERE id = $2 AND status = 'resolved'";

/// One row of the alert feed per pattern a batch touched (see migrations `*_alerting.sql`).
pub(crate) const INSERT_FEED: &str = "INSERT INTO alert_feed (pattern_id, new, regressed, level, status,
    committed_ms) VALUES ($1, $2, $3, $4, $5, $6)";

/// The subject of a rule's latest alert (a state change already announced is not again).
pub(crate) const LATEST_SUBJECT_OF_RULE: &str =
    "SELECT subject FROM alerts WHERE rule_id = $1 ORDER BY fired_ms DESC, id DESC LIMIT 1";

/// An alert about the subject younger than the cooldown.
pub(crate) const RECENT_ON_SUBJECT: &str =
    "SELECT id FROM alerts WHERE subject = $1 AND fired_ms > $2 LIMIT 1";

/// A critical alert about the subject younger than the cooldown (escalations are critical).
pub(crate) const RECENT_CRITICAL_ON_SUBJECT: &str =
    "SELECT id FROM alerts WHERE subject = $1 AND fired_ms > $2 AND rule_type = 'critical' LIMIT 1";

/// Notified alerts since a time: all, and about one pattern (for the flood limits). Digests
/// and tasks made by hand do not count.
pub(crate) const NOTIFIED_SINCE: &str =
    "SELECT count(*), coalesce(sum(CASE WHEN pattern_id = $1 THEN 1 ELSE 0 END), 0)
    FROM alerts WHERE fired_ms > $2 AND NOT held AND rule_type NOT IN ('digest', 'manual')";

/// The held alerts no digest has summed up yet, oldest first.
pub(crate) const HELD_ALERTS: &str = "SELECT id, rule_type, summary, fired_ms, payload FROM alerts
    WHERE held AND digest_id IS NULL ORDER BY id";

/// Claims up to `$4` feed rows no live evaluator holds.
pub(crate) const CLAIM_FEED: &str = "UPDATE alert_feed SET claimed_by = $1, claimed_until_ms = $2
    WHERE seq IN (SELECT seq FROM alert_feed WHERE claimed_until_ms <= $3 ORDER BY seq LIMIT $4)
    RETURNING seq, pattern_id, new, regressed, level, status, committed_ms";
/// [`CLAIM_FEED`] for PostgreSQL, where evaluators claiming at once skip each other's rows.
pub(crate) const CLAIM_FEED_PG: &str = "UPDATE alert_feed SET claimed_by = $1, claimed_until_ms = $2
    WHERE seq IN (SELECT seq FROM alert_feed WHERE claimed_until_ms <= $3 ORDER BY seq LIMIT $4
    FOR UPDATE SKIP LOCKED)
    RETURNING seq, pattern_id, new, regressed, level, status, committed_ms";

/// Takes a job's lease if the job is due and nobody holds it (or the holder's claim ran out).
pub(crate) const CLAIM_JOB: &str = "INSERT INTO job_leases (job, holder, expires_ms) VALUES ($1, $2, $3)
    ON CONFLICT (job) DO UPDATE SET holder = excluded.holder, expires_ms = excluded.expires_ms
    WHERE job_leases.due_ms <= $4 AND (job_leases.holder IS NULL OR job_leases.expires_ms <= $4)
    RETURNING job";

/// The minutes of the patterns whose id passes `in_ids` (`IN …` over `$2`, written as each
/// dialect takes a list), since `$1`, with the first and latest occurrence in each: one pass
/// over the window for all of them, as `minute_counts` is keyed by minute first.
pub(crate) fn patterns_minutes_sql(in_ids: &str) -> String {
    format!(
        "SELECT pattern_id, minute_ms, CAST(sum(count) AS BIGINT), min(coalesce(first_ms, minute_ms)),
        max(coalesce(last_ms, minute_ms + 59999)) FROM minute_counts
        WHERE minute_ms >= $1 AND pattern_id {in_ids} GROUP BY minute_ms, pattern_id"
    )
}

/// Gives a job's lease back and says when the job is next due.
pub(crate) const FINISH_JOB: &str =
    "UPDATE job_leases SET holder = NULL, expires_ms = 0, due_ms = $1 WHERE job = $2 AND holder = $3";

/// A pattern's open (or in-progress) task, by the pattern's fingerprint.
pub(crate) fn open_task_of_pattern_sql() -> String {
    format!(
        "SELECT {TASK_COLUMNS} FROM tasks t JOIN patterns p ON p.id = t.pattern_id
         WHERE p.fingerprint = $1 AND t.status IN ('open', 'in_progress') ORDER BY t.id DESC LIMIT 1"
    )
}

pub(crate) const TASK_COLUMNS: &str = "t.id, t.subject, t.pattern_id, p.fingerprint, t.task_type, t.title,
    t.description, t.priority, t.status, t.metadata, t.alert_count, t.created_ms, t.updated_ms";
pub(crate) const ALERT_COLUMNS: &str =
    "id, rule_id, rule_type, subject, pattern_id, fired_ms, priority, summary,
    reason, task_id, payload, held, digest_id";
pub(crate) const RULE_COLUMNS: &str = "id, name, rule_type, condition, action, enabled, cooldown_minutes,
    last_triggered_ms, trigger_count, created_ms";
pub(crate) const DELIVERY_COLUMNS: &str =
    "id, alert_id, notifier, idempotency_key, status, attempts, next_attempt_ms, last_error, updated_ms";

/// The parts that counted, besides the template: the frames (`module:function`) of the stack
/// tier, or the client's fingerprint list of the client tier.
pub(crate) fn frames_json(g: &faultline_core::Grouping) -> String {
    let frames: Vec<String> = if g.tier == faultline_core::Tier::Client {
        g.client_parts.clone()
    } else {
        g.frames.iter().map(|f| format!("{}:{}", f.module, f.function)).collect()
    };
    serde_json::to_string(&frames).unwrap_or_else(|_| "[]".to_owned())
}

/// The width of a count bucket; at least a minute.
pub(crate) fn bucket_width(interval_minutes: u32) -> Result<i64> {
    if interval_minutes == 0 {
        return Err(StoreError::InvalidQuery("interval must be at least one minute".into()));
    }
    Ok(i64::from(interval_minutes) * MINUTE_MS)
}

/// The quarters a bucketed count may read: only when every quarter falls inside one bucket
/// (buckets a whole number of quarters wide, starting on a quarter); otherwise none.
pub(crate) fn bucket_quarters(since_ms: i64, until_ms: i64, width: i64) -> (i64, i64) {
    if width % QUARTER_MS == 0 && since_ms % QUARTER_MS == 0 {
        quarter_span(since_ms, until_ms)
    } else {
        (until_ms, until_ms)
    }
}

/// Every bucket of `[since, until)`, from the (bucket index, level, count) rows found.
pub(crate) fn fill_buckets(
    since_ms: i64,
    until_ms: i64,
    width: i64,
    found: Vec<(i64, String, i64)>,
) -> Vec<Bucket> {
    let n = ((until_ms - since_ms).max(0) + width - 1) / width;
    let mut buckets: Vec<Bucket> = (0..n)
        .map(|i| Bucket { start_ms: since_ms + i * width, count: 0, by_level: BTreeMap::new() })
        .collect();
    for (i, level, count) in found {
        if let Some(b) = usize::try_from(i).ok().and_then(|i| buckets.get_mut(i)) {
            b.count += count as u64;
            *b.by_level.entry(level).or_default() += count as u64;
        }
    }
    buckets
}

impl ErrorRate {
    /// The rate from (source, level, count) rows of the window `[since, until)`.
    pub(crate) fn from_counts(found: Vec<(String, String, i64)>, since_ms: i64, until_ms: i64) -> ErrorRate {
        let mut rate = ErrorRate::default();
        for (source, level, n) in found {
            let n = n.max(0) as u64;
            rate.total_errors += n;
            *rate.by_source.entry(source).or_default() += n;
            *rate.by_level.entry(level).or_default() += n;
        }
        let minutes = ((until_ms - since_ms) as f64 / MINUTE_MS as f64).max(1.0);
        rate.errors_per_minute = rate.total_errors as f64 / minutes;
        rate
    }
}

/// The range of fingerprints that start with `prefix` (lowercase hex): `[prefix, prefix + "g")`,
/// as 'g' sorts after every hex digit in both databases' collations. A range instead of LIKE,
/// so both read it from the fingerprint index.
pub(crate) fn prefix_range(prefix: &str) -> (String, String) {
    (prefix.to_owned(), format!("{prefix}g"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// SQLite numbers `$n` by first appearance: each statement must name `$1`, `$2`, … first in
    /// that order, or SQLite binds the values to the wrong places (PostgreSQL would not notice).
    #[test]
    fn placeholders_first_appear_in_order() {
        let statements = [
            REGRESS_PATTERN,
            INSERT_FEED,
            LATEST_SUBJECT_OF_RULE,
            RECENT_ON_SUBJECT,
            RECENT_CRITICAL_ON_SUBJECT,
            NOTIFIED_SINCE,
            HELD_ALERTS,
            CLAIM_FEED,
            CLAIM_FEED_PG,
            CLAIM_JOB,
            FINISH_JOB,
        ];
        let built = [
            open_task_of_pattern_sql(),
            patterns_minutes_sql("= ANY($2)"),
            patterns_minutes_sql("IN (SELECT value FROM json_each($2))"),
        ];
        for sql in statements.into_iter().chain(built.iter().map(String::as_str)) {
            let mut seen = Vec::new();
            let bytes = sql.as_bytes();
            for (i, _) in sql.match_indices('$') {
                let digits: String =
                    bytes[i + 1..].iter().take_while(|b| b.is_ascii_digit()).map(|&b| b as char).collect();
                let n: usize = digits.parse().expect("a numbered placeholder");
                if !seen.contains(&n) {
                    assert_eq!(n, seen.len() + 1, "${n} appears before ${} in {sql}", seen.len() + 1);
                    seen.push(n);
                }
            }
        }
    }
}
