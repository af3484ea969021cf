//! The alerting service: evaluates what was committed — by this process, another `serve` on
//! the same database or a cron `faultline ingest` — with the rules of `faultline_core::alert`,
//! and records what fires (alert, task, deliveries) through the store.
//!
//! Every stored batch leaves one row per touched pattern in the store's alert feed, in the
//! batch's own transaction. The evaluator claims feed rows (a lease: rows of an evaluator that
//! died come back), evaluates them and deletes them; it runs when this process stores a batch
//! ([`Alerting::observe`] wakes it, never blocking the source; while batches keep coming
//! during evaluations, they start at most every [`EVALUATION_GAP`]) and every
//! `evaluate_interval`, which also covers other writers and the error rate. The store re-checks
//! each subject's cooldown when it records an alert and holds back notifications past the flood
//! limits (counted over every instance), so instances sharing a database neither repeat nor
//! outnumber each other; held notifications go out as one digest per channel.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use faultline_core::alert::{
    AlertState, CooldownKey, Decision, FloodLimits, Health, MinuteSeen, Observations, PatternObservation,
    PatternStatus, Rule, RuleKind, Subject, evaluate, task_for_error_rate,
};
use faultline_core::{HOUR_MS, Level, MINUTE_MS};
use faultline_store::{AlertDraft, AlertRuleRow, DigestDraft, FeedItem, IngestOutcome, NewRule, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::AlertsConfig;

/// Wakes the evaluator when this process stores something.
#[derive(Default)]
pub struct Alerting {
    wake: Notify,
}

impl Alerting {
    /// Called with every stored batch's outcome; never blocks on the database.
    pub fn observe(&self, outcome: &IngestOutcome) {
        if !outcome.touched.is_empty() {
            self.wake.notify_one();
        }
    }
}

/// Feed rows claimed per evaluation.
const FEED_BATCH: u32 = 5_000;
/// The least time from one evaluation's start to the next one's when batches were stored while
/// it ran. Under a stream of small batches, each evaluation takes what the batches of the
/// gap left in the feed at once, instead of one evaluation per batch: an evaluation reads the
/// rules and the touched patterns' minutes and commits the feed, so per batch it cost as much
/// as storing a Sentry event. An error stored during an evaluation waits at most this much
/// longer for its alert; one stored while the evaluator is idle is evaluated at once.
const EVALUATION_GAP: Duration = Duration::from_millis(50);
/// How long claimed feed rows stay this evaluator's; after a crash they come back this late.
const FEED_CLAIM_MS: i64 = 30_000;

/// What the feed rows of one evaluation say about one pattern.
#[derive(Debug, Clone, Copy)]
struct Pending {
    new: bool,
    regressed: bool,
    highest_level: Level,
    /// As of the latest batch.
    status: PatternStatus,
}

/// Folds feed rows (oldest first) into one fact per pattern.
fn pending_of(items: &[FeedItem]) -> BTreeMap<i64, Pending> {
    let mut pending: BTreeMap<i64, Pending> = BTreeMap::new();
    for item in items {
        let t = &item.touched;
        let p = pending.entry(t.pattern_id).or_insert(Pending {
            new: false,
            regressed: false,
            highest_level: t.highest_level,
            status: t.status,
        });
        p.status = t.status;
        p.new |= t.new;
        p.regressed |= t.regressed;
        p.highest_level = p.highest_level.max(t.highest_level);
    }
    pending
}

/// The rules written to the database on first start, from the config.
pub fn default_rules(c: &AlertsConfig) -> Vec<NewRule> {
    let kinds = [
        RuleKind::NewFingerprint,
        RuleKind::Spike { per_minute: c.spike_per_minute },
        RuleKind::Sustained { minutes: c.sustained_minutes, max_gap_minutes: c.sustained_max_gap_minutes },
        RuleKind::Critical,
        RuleKind::ErrorRate {
            window_minutes: c.error_rate_window_minutes,
            degraded: c.error_rate_degraded,
            fail: c.error_rate_fail,
            recovery_margin: 0.2,
        },
        RuleKind::Regression,
        RuleKind::IgnoredGrowing { count: c.ignored_growing_count, minutes: c.ignored_growing_minutes },
    ];
    let cooldown_minutes = (c.cooldown.as_secs() / 60).max(1) as i64;
    kinds
        .iter()
        .map(|kind| NewRule {
            name: kind.type_name().to_owned(),
            rule_type: kind.type_name().to_owned(),
            condition: kind.condition(),
            // An ignored pattern that grows is worth a message, not a task.
            action: if matches!(kind, RuleKind::IgnoredGrowing { .. }) {
                "notify"
            } else {
                "task_and_notify"
            }
            .to_owned(),
            enabled: true,
            cooldown_minutes,
        })
        .collect()
}

/// The evaluator's settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub interval: Duration,
    pub limits: FloodLimits,
    /// Names of the configured notifiers.
    pub notifiers: Vec<String>,
    /// `server.public_url`, for links in notifications and tasks.
    pub public_url: Option<String>,
    /// Held-back notifications go out as a digest once the oldest is this old.
    pub digest_after: Duration,
    /// This process, as feed claims name it.
    pub instance: String,
}

/// The evaluator: one loop per process; several processes share the feed.
pub struct Evaluator {
    store: Arc<dyn Store>,
    alerting: Arc<Alerting>,
    settings: Settings,
    state: AlertState,
    /// Woken after an alert is recorded, so the outbox delivers at once.
    outbox: Arc<Notify>,
}

impl Evaluator {
    /// Rebuilds cooldowns and the announced error-rate health from alerts already stored.
    pub async fn start(
        store: Arc<dyn Store>,
        alerting: Arc<Alerting>,
        settings: Settings,
        outbox: Arc<Notify>,
    ) -> anyhow::Result<Evaluator> {
        let now = now_ms();
        let rules = store.alert_rules().await?;
        let longest = rules.iter().map(|r| r.cooldown_minutes * MINUTE_MS).max().unwrap_or(0).max(HOUR_MS);
        let mut state = AlertState::default();
        let mut past = store.alerts(now - longest, 10_000).await?;
        past.reverse(); // oldest first, so the last announced health wins
        for a in past {
            let Some(rule_id) = a.rule_id else { continue };
            let key = match a.subject.split_once(':') {
                Some(("pattern", id)) => id.parse().ok().map(CooldownKey::Pattern),
                Some(("error_rate", h)) => Health::parse(h).map(CooldownKey::Health),
                _ => None,
            };
            if let Some(key) = key {
                state.remember(rule_id, key, a.fired_ms, a.rule_type == "critical");
            }
        }
        Ok(Evaluator { store, alerting, settings, state, outbox })
    }

    /// Evaluates whenever this process stores something and every interval, until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut digest_checked = 0;
        loop {
            let started = tokio::time::Instant::now();
            let now = now_ms();
            if let Err(e) = self.run_once(now).await {
                tracing::warn!(error = %format!("{e:#}"), "alert evaluation failed; will retry");
            }
            let interval = i64::try_from(self.settings.interval.as_millis()).unwrap_or(i64::MAX);
            if now - digest_checked >= interval {
                digest_checked = now;
                if let Err(e) = self.send_digest(now).await {
                    tracing::warn!(error = %format!("{e:#}"), "cannot send the digest; will retry");
                }
            }
            // Batches stored while it ran: the next evaluation waits out the gap. A batch that
            // comes to an idle evaluator is evaluated at once.
            let woken_meanwhile = tokio::select! {
                biased;
                _ = self.alerting.wake.notified() => true,
                _ = std::future::ready(()) => false,
            };
            if woken_meanwhile {
                tokio::select! {
                    _ = tokio::time::sleep_until(started + EVALUATION_GAP) => {}
                    _ = shutdown.cancelled() => return,
                }
                continue;
            }
            tokio::select! {
                _ = self.alerting.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One evaluation: the feed rows no one holds, and the error rate. Returns the alerts
    /// recorded. Rows are deleted once their alerts are recorded; on an error they come back
    /// when the claim runs out (and the store's cooldown keeps what was recorded from repeating).
    pub async fn run_once(&mut self, now: i64) -> anyhow::Result<usize> {
        let instance = self.settings.instance.clone();
        let mut fired = 0;
        let mut rates_checked = false;
        loop {
            let items = self.store.claim_feed(&instance, now, now + FEED_CLAIM_MS, FEED_BATCH).await?;
            let more = items.len() == FEED_BATCH as usize;
            if items.is_empty() && rates_checked {
                break;
            }
            fired += self.evaluate(&pending_of(&items), !rates_checked, now).await?;
            rates_checked = true;
            let seqs: Vec<i64> = items.iter().map(|i| i.seq).collect();
            if !seqs.is_empty() {
                self.store.finish_feed(&seqs).await?;
            }
            if !more {
                break;
            }
        }
        if fired > 0 {
            self.outbox.notify_one();
        }
        Ok(fired)
    }

    /// Sends the digest of held-back notifications when one is due.
    pub async fn send_digest(&mut self, now: i64) -> anyhow::Result<()> {
        let draft = DigestDraft {
            after_ms: i64::try_from(self.settings.digest_after.as_millis()).unwrap_or(i64::MAX),
            notifiers: self.settings.notifiers.clone(),
            public_url: self.settings.public_url.clone(),
            now_ms: now,
        };
        if let Some(digest) = self.store.send_digest(&draft).await? {
            tracing::info!(alert = digest.alert_id, "alert digest of held-back notifications");
            self.outbox.notify_one();
        }
        Ok(())
    }

    async fn evaluate(
        &mut self,
        pending: &BTreeMap<i64, Pending>,
        rates: bool,
        now: i64,
    ) -> anyhow::Result<usize> {
        let rows = self.store.alert_rules().await?;
        let rules = rules_from_rows(&rows);
        let lookback = rules.iter().map(|r| r.kind.lookback_minutes()).max().unwrap_or(0);
        let this_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
        let since = this_minute - i64::from(lookback) * MINUTE_MS;
        let ids: Vec<i64> = pending.keys().copied().collect();
        let mut counts: BTreeMap<i64, Vec<MinuteSeen>> = BTreeMap::new();
        if !ids.is_empty() {
            for c in self.store.pattern_minute_counts(&ids, since).await? {
                counts.entry(c.pattern_id).or_default().push(MinuteSeen {
                    minute_ms: c.minute_ms,
                    count: c.count,
                    first_ms: c.first_ms,
                    last_ms: c.last_ms,
                });
            }
        }
        let patterns = pending
            .iter()
            .map(|(&id, p)| PatternObservation {
                pattern_id: id,
                first_time: p.new,
                regressed: p.regressed,
                status: p.status,
                highest_level: p.highest_level,
                minute_counts: counts.remove(&id).unwrap_or_default(),
            })
            .collect();
        let totals = if rates {
            let buckets = self.store.counts_by_interval(since, this_minute + MINUTE_MS, 1, None).await?;
            Some(buckets.into_iter().map(|b| (b.start_ms, b.count)).collect())
        } else {
            None
        };
        let observations = Observations { patterns, total_minute_counts: totals };
        let decisions = evaluate(&rules, &observations, &mut self.state, now);
        let mut fired = 0;
        for d in &decisions {
            let rule = rows.iter().find(|r| r.id == d.rule_id);
            let draft = self.draft(d, rule, now);
            match self.store.fire_alert(&draft).await? {
                Some(f) => {
                    fired += 1;
                    let notification = if f.held { "held" } else { "notified" };
                    metrics::counter!("faultline_alerts_total", "rule" => d.rule_type, "notification" => notification)
                        .increment(1);
                    tracing::info!(
                        alert = f.alert_id,
                        rule = d.rule_type,
                        subject = %draft.subject,
                        task = ?f.task_id,
                        held = f.held,
                        "alert: {}",
                        d.reason
                    );
                }
                None => tracing::debug!(rule = d.rule_type, subject = %draft.subject, "alert already sent"),
            }
        }
        Ok(fired)
    }

    fn draft(&self, d: &Decision, rule: Option<&AlertRuleRow>, now: i64) -> AlertDraft {
        let action = rule.map_or("notify", |r| r.action.as_str());
        let (subject, pattern_id, task_draft, extra) = match &d.subject {
            Subject::Pattern(id) => (format!("pattern:{id}"), Some(*id), None, serde_json::Value::Null),
            Subject::ErrorRate { health, per_minute } => (
                format!("error_rate:{}", health.as_str()),
                None,
                Some(task_for_error_rate(*health, *per_minute, &d.reason)),
                serde_json::json!({ "health": health.as_str(), "errors_per_minute": per_minute }),
            ),
        };
        let error_rate = matches!(d.subject, Subject::ErrorRate { .. });
        // An error-rate episode is one incident with one task, updated as its state changes and
        // closed on recovery.
        let recovery = matches!(d.subject, Subject::ErrorRate { health: Health::Pass, .. });
        AlertDraft {
            rule_id: rule.map(|r| r.id),
            rule_ids: d.rules.clone(),
            rule_type: d.rule_type.to_owned(),
            subject,
            pattern_id,
            priority: d.priority,
            reason: d.reason.clone(),
            cooldown_ms: rule.map_or(0, |r| r.cooldown_minutes * MINUTE_MS),
            escalation: d.escalation,
            state_change: error_rate,
            flood: Some(self.settings.limits),
            task: action != "notify" && !recovery,
            task_subject: error_rate.then(|| "error_rate".to_owned()),
            close_task: recovery,
            reopen: d.rule_type == "regression",
            task_draft,
            notifiers: if action == "task" { Vec::new() } else { self.settings.notifiers.clone() },
            extra,
            public_url: self.settings.public_url.clone(),
            now_ms: now,
        }
    }
}

/// The enabled, well-formed rules; a malformed stored rule is skipped with a warning.
fn rules_from_rows(rows: &[AlertRuleRow]) -> Vec<Rule> {
    rows.iter()
        .filter_map(|r| match RuleKind::from_stored(&r.rule_type, &r.condition) {
            Ok(kind) => Some(Rule {
                id: r.id,
                name: r.name.clone(),
                kind,
                cooldown_ms: r.cooldown_minutes * MINUTE_MS,
                enabled: r.enabled,
            }),
            Err(e) => {
                tracing::warn!(rule = %r.name, error = %e, "alert rule skipped");
                None
            }
        })
        .collect()
}
