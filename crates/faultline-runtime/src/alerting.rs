//! The alerting service: watches what every source stores, runs the rules of
//! `faultline_core::alert` and records what fires (alert, task, deliveries) through the store.
//!
//! Sources never wait for it: [`Alerting::observe`] only merges the touched patterns into a
//! pending set and wakes the evaluator. The evaluator also runs every `evaluate_interval`, for
//! the error rate and its recovery. Cooldowns survive restarts: the state is rebuilt from the
//! alerts stored in the last hours, and the store re-checks the cooldown when it records an
//! alert, so instances sharing a database do not repeat each other.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use faultline_core::alert::{
    AlertState, CooldownKey, Decision, FloodLimits, Health, Observations, PatternObservation, PatternStatus,
    Rule, RuleKind, Subject, evaluate, task_for_error_rate,
};
use faultline_core::{HOUR_MS, Level, MINUTE_MS};
use faultline_store::{AlertDraft, AlertRuleRow, IngestOutcome, NewRule, Store};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::clock::now_ms;
use crate::config::AlertsConfig;

/// What the sources tell the evaluator.
#[derive(Default)]
pub struct Alerting {
    pending: Mutex<BTreeMap<i64, Pending>>,
    wake: Notify,
}

#[derive(Debug, Clone, Copy)]
struct Pending {
    new: bool,
    regressed: bool,
    highest_level: Level,
    /// As of the latest batch.
    status: PatternStatus,
}

impl Alerting {
    /// Notes the patterns a stored batch touched; never blocks on the database.
    pub fn observe(&self, outcome: &IngestOutcome) {
        if outcome.touched.is_empty() {
            return;
        }
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for t in &outcome.touched {
            let status = t.status;
            let p = pending.entry(t.pattern_id).or_insert(Pending {
                new: false,
                regressed: false,
                highest_level: t.highest_level,
                status,
            });
            p.status = status;
            p.new |= t.new;
            p.regressed |= t.regressed;
            p.highest_level = p.highest_level.max(t.highest_level);
        }
        drop(pending);
        self.wake.notify_one();
    }

    fn take(&self) -> BTreeMap<i64, Pending> {
        std::mem::take(&mut *self.pending.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Puts back what could not be evaluated (the database was down), keeping newer facts.
    fn restore(&self, taken: BTreeMap<i64, Pending>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        for (id, old) in taken {
            let p = pending.entry(id).or_insert(old);
            p.new |= old.new;
            p.regressed |= old.regressed;
            p.highest_level = p.highest_level.max(old.highest_level);
        }
    }
}

/// The rules written to the database on first start, from the config.
pub fn default_rules(c: &AlertsConfig) -> Vec<NewRule> {
    let kinds = [
        RuleKind::NewFingerprint,
        RuleKind::Spike { per_minute: c.spike_per_minute },
        RuleKind::Sustained { minutes: c.sustained_minutes },
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
}

/// The evaluator: one loop per process.
pub struct Evaluator {
    store: Arc<dyn Store>,
    alerting: Arc<Alerting>,
    settings: Settings,
    state: AlertState,
    /// Woken after an alert is recorded, so the outbox delivers at once.
    outbox: Arc<Notify>,
}

impl Evaluator {
    /// Rebuilds cooldowns and the flood guard from alerts already stored.
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
                state.remember(rule_id, key, a.fired_ms, now);
            }
        }
        Ok(Evaluator { store, alerting, settings, state, outbox })
    }

    /// Evaluates whenever something is stored and every interval, until shutdown.
    pub async fn run(mut self, shutdown: CancellationToken) {
        loop {
            if let Err(e) = self.run_once(now_ms()).await {
                tracing::warn!(error = %format!("{e:#}"), "alert evaluation failed; will retry");
            }
            tokio::select! {
                _ = self.alerting.wake.notified() => {}
                _ = tokio::time::sleep(self.settings.interval) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// One evaluation: pending patterns and the error rate.
    pub async fn run_once(&mut self, now: i64) -> anyhow::Result<usize> {
        let pending = self.alerting.take();
        match self.evaluate(&pending, now).await {
            Ok(n) => Ok(n),
            Err(e) => {
                self.alerting.restore(pending);
                Err(e)
            }
        }
    }

    async fn evaluate(&mut self, pending: &BTreeMap<i64, Pending>, now: i64) -> anyhow::Result<usize> {
        let rows = self.store.alert_rules().await?;
        let rules = rules_from_rows(&rows);
        let lookback = rules.iter().map(|r| r.kind.lookback_minutes()).max().unwrap_or(0);
        let this_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
        let since = this_minute - i64::from(lookback) * MINUTE_MS;
        let ids: Vec<i64> = pending.keys().copied().collect();
        let mut counts: BTreeMap<i64, Vec<(i64, u64)>> = BTreeMap::new();
        if !ids.is_empty() {
            for c in self.store.pattern_minute_counts(&ids, since).await? {
                counts.entry(c.pattern_id).or_default().push((c.minute_ms, c.count));
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
        let totals = self
            .store
            .counts_by_interval(since, this_minute + MINUTE_MS, 1)
            .await?
            .into_iter()
            .map(|b| (b.start_ms, b.count))
            .collect();
        let observations = Observations { patterns, total_minute_counts: Some(totals) };
        let decisions = evaluate(&rules, self.settings.limits, &observations, &mut self.state, now);
        let mut fired = 0;
        for d in &decisions {
            let row = d.rule_id;
            let rule = rows.iter().find(|r| r.id == row);
            let draft = self.draft(d, rule, now);
            match self.store.fire_alert(&draft).await? {
                Some(f) => {
                    fired += 1;
                    tracing::info!(
                        alert = f.alert_id,
                        rule = d.rule_type,
                        subject = %draft.subject,
                        task = ?f.task_id,
                        "alert: {}",
                        d.reason
                    );
                }
                None => tracing::debug!(rule = d.rule_type, subject = %draft.subject, "alert already sent"),
            }
        }
        if fired > 0 {
            self.outbox.notify_one();
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
            Subject::Suppressed { count, since } => (
                "flood_guard".to_owned(),
                None,
                None,
                serde_json::json!({ "suppressed": count, "since": faultline_core::alert::rfc3339(*since) }),
            ),
        };
        // A recovery closes nothing and opens nothing: it is news, not work.
        let recovery = matches!(d.subject, Subject::ErrorRate { health: Health::Pass, .. });
        AlertDraft {
            rule_id: rule.map(|r| r.id),
            rule_ids: d.rules.clone(),
            rule_type: d.rule_type.to_owned(),
            subject: subject.clone(),
            pattern_id,
            priority: d.priority,
            reason: d.reason.clone(),
            cooldown_ms: rule.map_or(0, |r| r.cooldown_minutes * MINUTE_MS),
            task: action != "notify" && !recovery && !matches!(d.subject, Subject::Suppressed { .. }),
            reopen: d.rule_type == "regression",
            task_draft,
            notifiers: if action == "task" { Vec::new() } else { self.settings.notifiers.clone() },
            extra,
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
