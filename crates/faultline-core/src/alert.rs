//! Alert rules: which observations deserve an alert, and only once.
//!
//! [`evaluate`] is pure: the rules, what was observed and `now` go in, [`Decision`]s come out,
//! and the cooldowns and the error-rate state live in an [`AlertState`] value the caller keeps
//! (and rebuilds from stored alerts after a restart, with [`AlertState::remember`]). Every rule
//! is tested on hand-built timelines.
//!
//! One cooldown per subject: after any alert about a pattern, no rule alerts on it again
//! within the cooldown, except once to escalate to critical. The flood limits
//! ([`FloodLimits`]) are not applied here: every decision gets its alert and task, and the
//! store, which sees every instance's alerts, holds back notifications past the limits.

pub use crate::status::PatternStatus;
use crate::timestamp::MINUTE_MS;
use std::collections::{BTreeMap, BTreeSet};

use crate::model::{Level, TimestampMs};

/// One alert rule, as stored in the `alert_rules` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub id: i64,
    pub name: String,
    pub kind: RuleKind,
    /// No second alert about the same pattern (by any rule) within this time after one of
    /// this rule.
    pub cooldown_ms: i64,
    pub enabled: bool,
}

/// The conditions faultline alerts on.
#[derive(Debug, Clone, PartialEq)]
pub enum RuleKind {
    /// A pattern seen for the first time.
    NewFingerprint,
    /// A pattern's count in one minute above `per_minute`.
    Spike { per_minute: u64 },
    /// A pattern seen over at least `minutes` elapsed minutes, from its first occurrence to its
    /// latest, with no gap between occurrences longer than `max_gap_minutes`.
    Sustained { minutes: u32, max_gap_minutes: u32 },
    /// Any CRITICAL (or FATAL, PANIC…) entry.
    Critical,
    /// All errors per minute over the last `window_minutes` full minutes: below `degraded` is
    /// pass, up to `fail` is degraded, above is fail. Alerts on entering degraded or fail and on
    /// recovery. Leaving a state needs the rate `recovery_margin` (a fraction) below its
    /// threshold, so a rate hovering at a threshold does not flap.
    ErrorRate { window_minutes: u32, degraded: f64, fail: f64, recovery_margin: f64 },
    /// A pattern marked resolved is seen again.
    Regression,
    /// An ignored pattern seen more than `count` times in `minutes` minutes.
    IgnoredGrowing { count: u64, minutes: u32 },
}

impl RuleKind {
    /// The rule type's name in the `alert_rules` table and the API.
    pub fn type_name(&self) -> &'static str {
        match self {
            RuleKind::NewFingerprint => "new_fingerprint",
            RuleKind::Spike { .. } => "spike",
            RuleKind::Sustained { .. } => "sustained",
            RuleKind::Critical => "critical",
            RuleKind::ErrorRate { .. } => "error_rate",
            RuleKind::Regression => "regression",
            RuleKind::IgnoredGrowing { .. } => "ignored_growing",
        }
    }

    /// Reads a rule from its stored form: the type name and its condition object. Missing
    /// fields take the designs' defaults; unknown fields and wrong types are refused.
    pub fn from_stored(rule_type: &str, condition: &serde_json::Value) -> Result<RuleKind, String> {
        let empty = serde_json::Map::new();
        let fields = match condition {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => &empty,
            other => return Err(format!("condition of a {rule_type} rule must be an object, not {other}")),
        };
        let known: &[&str] = match rule_type {
            "new_fingerprint" | "critical" | "regression" => &[],
            "spike" => &["per_minute"],
            "sustained" => &["minutes", "max_gap_minutes"],
            "error_rate" => &["window_minutes", "degraded", "fail", "recovery_margin"],
            "ignored_growing" => &["count", "minutes"],
            other => return Err(format!("unknown rule type {other:?}")),
        };
        if let Some(extra) = fields.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(format!("unknown field {extra:?} in the condition of a {rule_type} rule"));
        }
        let int = |name: &str, default: u64| -> Result<u64, String> {
            match fields.get(name) {
                None => Ok(default),
                Some(v) => v
                    .as_u64()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name} must be a positive integer, not {v}")),
            }
        };
        let num = |name: &str, default: f64| -> Result<f64, String> {
            match fields.get(name) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .filter(|n| *n >= 0.0)
                    .ok_or_else(|| format!("{name} must be a number ≥ 0, not {v}")),
            }
        };
        let minutes = |name: &str, default: u64| -> Result<u32, String> {
            u32::try_from(int(name, default)?).map_err(|_| format!("{name} is too large"))
        };
        Ok(match rule_type {
            "new_fingerprint" => RuleKind::NewFingerprint,
            "critical" => RuleKind::Critical,
            "regression" => RuleKind::Regression,
            "spike" => RuleKind::Spike { per_minute: int("per_minute", 10)? },
            "sustained" => RuleKind::Sustained {
                minutes: minutes("minutes", 5)?,
                max_gap_minutes: minutes("max_gap_minutes", 1)?,
            },
            "ignored_growing" => {
                RuleKind::IgnoredGrowing { count: int("count", 100)?, minutes: minutes("minutes", 60)? }
            }
            _ => {
                let (degraded, fail) = (num("degraded", 1.0)?, num("fail", 5.0)?);
                if fail < degraded {
                    return Err(format!("fail ({fail}) must not be below degraded ({degraded})"));
                }
                let recovery_margin = num("recovery_margin", 0.2)?;
                if recovery_margin >= 1.0 {
                    return Err(format!("recovery_margin must be below 1, not {recovery_margin}"));
                }
                RuleKind::ErrorRate {
                    window_minutes: minutes("window_minutes", 5)?,
                    degraded,
                    fail,
                    recovery_margin,
                }
            }
        })
    }

    /// The condition object stored for this rule.
    pub fn condition(&self) -> serde_json::Value {
        use serde_json::json;
        match self {
            RuleKind::NewFingerprint | RuleKind::Critical | RuleKind::Regression => json!({}),
            RuleKind::Spike { per_minute } => json!({ "per_minute": per_minute }),
            RuleKind::Sustained { minutes, max_gap_minutes } => {
                json!({ "minutes": minutes, "max_gap_minutes": max_gap_minutes })
            }
            RuleKind::ErrorRate { window_minutes, degraded, fail, recovery_margin } => json!({
                "window_minutes": window_minutes, "degraded": degraded, "fail": fail,
                "recovery_margin": recovery_margin,
            }),
            RuleKind::IgnoredGrowing { count, minutes } => json!({ "count": count, "minutes": minutes }),
        }
    }

    /// Minutes of per-minute counts this rule looks back over (the caller fetches the longest).
    pub fn lookback_minutes(&self) -> u32 {
        match self {
            RuleKind::Spike { .. } => 2,
            RuleKind::Sustained { minutes, max_gap_minutes } => minutes + max_gap_minutes + 2,
            RuleKind::IgnoredGrowing { minutes, .. } => *minutes + 1,
            RuleKind::ErrorRate { window_minutes, .. } => *window_minutes + 1,
            RuleKind::NewFingerprint | RuleKind::Critical | RuleKind::Regression => 0,
        }
    }

    /// Most important first: when several rules fire for one pattern at once, one alert is sent,
    /// named after the first of them.
    fn rank(&self) -> u8 {
        match self {
            RuleKind::Critical => 0,
            RuleKind::Regression => 1,
            RuleKind::NewFingerprint => 2,
            RuleKind::Spike { .. } => 3,
            RuleKind::Sustained { .. } => 4,
            RuleKind::IgnoredGrowing { .. } => 5,
            RuleKind::ErrorRate { .. } => 6,
        }
    }
}

/// What was stored for one pattern since the last evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternObservation {
    pub pattern_id: i64,
    /// The pattern was created by these entries.
    pub first_time: bool,
    /// The pattern was resolved and these entries brought it back.
    pub regressed: bool,
    /// Its status now (a regression has already set it back to new).
    pub status: PatternStatus,
    /// The most severe level among the new entries.
    pub highest_level: Level,
    /// Entries per minute for recent minutes, at least as far back as the rules'
    /// [`RuleKind::lookback_minutes`]. Minutes left out count zero.
    pub minute_counts: Vec<MinuteSeen>,
}

/// A pattern's occurrences in one minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinuteSeen {
    /// The minute's start.
    pub minute_ms: TimestampMs,
    pub count: u64,
    /// The first and the latest occurrence inside the minute.
    pub first_ms: TimestampMs,
    pub last_ms: TimestampMs,
}

impl MinuteSeen {
    /// A minute whose occurrences' times are unknown: taken as spanning the whole minute.
    pub fn whole(minute_ms: TimestampMs, count: u64) -> MinuteSeen {
        MinuteSeen { minute_ms, count, first_ms: minute_ms, last_ms: minute_ms + MINUTE_MS - 1 }
    }
}

/// Everything one evaluation looks at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    pub patterns: Vec<PatternObservation>,
    /// All errors per minute (minute start, count), for the error-rate rules; `None` skips them.
    pub total_minute_counts: Option<Vec<(TimestampMs, u64)>>,
}

/// The error-rate health check's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Health {
    #[default]
    Pass,
    Degraded,
    Fail,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Pass => "pass",
            Health::Degraded => "degraded",
            Health::Fail => "fail",
        }
    }

    pub fn parse(s: &str) -> Option<Health> {
        match s {
            "pass" => Some(Health::Pass),
            "degraded" => Some(Health::Degraded),
            "fail" => Some(Health::Fail),
            _ => None,
        }
    }
}

/// What an alert is about.
#[derive(Debug, Clone, PartialEq)]
pub enum Subject {
    Pattern(i64),
    /// The error rate entered `health` (`Pass` is a recovery).
    ErrorRate {
        health: Health,
        per_minute: f64,
    },
}

/// Task priority, from the Railway-crawler design: high for new and critical errors, medium
/// for recurring ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    Low,
    Medium,
    High,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Low => "low",
            Priority::Medium => "medium",
            Priority::High => "high",
        }
    }
}

/// One alert to send.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The rule the alert is named after (the most important one that fired).
    pub rule_id: i64,
    pub rule_type: &'static str,
    /// Every rule that fired for the subject in this evaluation, the named one first.
    pub rules: Vec<i64>,
    pub subject: Subject,
    pub priority: Priority,
    /// Why, in words: "seen for the first time", "14 in one minute (limit 10)"…
    pub reason: String,
    /// A critical alert let through inside the subject's cooldown (once per cooldown).
    pub escalation: bool,
}

/// Caps on notified alerts per hour, over every instance sharing a database. Alerts past them
/// are still recorded with their tasks; only their notifications are held back, to go out as
/// one digest per channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FloodLimits {
    pub per_pattern_per_hour: u32,
    pub per_hour: u32,
}

impl Default for FloodLimits {
    fn default() -> Self {
        FloodLimits { per_pattern_per_hour: 6, per_hour: 60 }
    }
}

/// Whom a cooldown is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CooldownKey {
    Pattern(i64),
    Health(Health),
}

/// What the engine remembers between evaluations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertState {
    /// Subject → its last alert.
    last_fired: BTreeMap<CooldownKey, LastAlert>,
    /// Error-rate health per rule: (current, last announced).
    health: BTreeMap<i64, (Health, Health)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LastAlert {
    at: TimestampMs,
    /// When its last critical alert was (an escalation included).
    critical_at: Option<TimestampMs>,
}

impl AlertState {
    /// Rebuilds memory from an alert sent earlier (read back from the database after a
    /// restart): its subject's cooldown and, for error-rate alerts, the health it announced.
    /// Call it oldest alert first: the last error-rate alert's health is the one announced.
    pub fn remember(&mut self, rule_id: i64, key: CooldownKey, fired_ms: TimestampMs, critical: bool) {
        let last = self.last_fired.entry(key).or_insert(LastAlert { at: fired_ms, critical_at: None });
        last.at = last.at.max(fired_ms);
        if critical {
            last.critical_at = Some(last.critical_at.map_or(fired_ms, |t| t.max(fired_ms)));
        }
        if let CooldownKey::Health(h) = key {
            self.health.insert(rule_id, (h, h));
        }
    }

    /// The error-rate health the engine last computed for a rule.
    pub fn health(&self, rule_id: i64) -> Health {
        self.health.get(&rule_id).map(|h| h.0).unwrap_or_default()
    }

    /// Takes another instance's announcement as this one's (its alert was recorded first).
    pub fn announced_elsewhere(&mut self, rule_id: i64, health: Health) {
        self.health.insert(rule_id, (health, health));
    }

    fn cooling(&self, key: CooldownKey, cooldown_ms: i64, now: TimestampMs) -> bool {
        self.last_fired.get(&key).is_some_and(|l| now - l.at < cooldown_ms)
    }

    fn critical_cooling(&self, key: CooldownKey, cooldown_ms: i64, now: TimestampMs) -> bool {
        self.last_fired.get(&key).and_then(|l| l.critical_at).is_some_and(|t| now - t < cooldown_ms)
    }

    fn fired(&mut self, key: CooldownKey, now: TimestampMs, critical: bool) {
        let last = self.last_fired.entry(key).or_insert(LastAlert { at: now, critical_at: None });
        last.at = now;
        if critical {
            last.critical_at = Some(now);
        }
    }

    /// Forgets cooldowns too old to matter.
    fn expire(&mut self, rules: &[Rule], now: TimestampMs) {
        let longest = rules.iter().map(|r| r.cooldown_ms).max().unwrap_or(0);
        self.last_fired.retain(|_, l| now - l.at < longest);
    }
}

/// Runs every enabled rule over the observations. Decisions are in a stable order: patterns
/// in the order observed, then error-rate changes.
pub fn evaluate(
    rules: &[Rule],
    observations: &Observations,
    state: &mut AlertState,
    now: TimestampMs,
) -> Vec<Decision> {
    state.expire(rules, now);
    let mut rules: Vec<&Rule> = rules.iter().filter(|r| r.enabled).collect();
    rules.sort_by_key(|r| (r.kind.rank(), r.id));
    let mut decisions = Vec::new();
    let mut seen = BTreeSet::new();
    for obs in &observations.patterns {
        if !seen.insert(obs.pattern_id) {
            continue;
        }
        let key = CooldownKey::Pattern(obs.pattern_id);
        let fired: Vec<(&Rule, String)> = rules
            .iter()
            .filter_map(|rule| pattern_rule(rule, obs, now).map(|reason| (*rule, reason)))
            .collect();
        // The rules that fire together make one alert, named after the most important; then the
        // pattern cools down for every rule, except that a first critical alert inside the
        // cooldown still goes out (an escalation).
        let Some((first, reason)) = fired.first() else { continue };
        let critical = matches!(first.kind, RuleKind::Critical);
        let (escalation, reason) = if !state.cooling(key, first.cooldown_ms, now) {
            (false, reason.clone())
        } else if critical && !state.critical_cooling(key, first.cooldown_ms, now) {
            (true, format!("escalated to critical within the cooldown: {reason}"))
        } else {
            continue;
        };
        state.fired(key, now, critical);
        let priority = match first.kind {
            RuleKind::Critical | RuleKind::NewFingerprint | RuleKind::Regression => Priority::High,
            _ => Priority::Medium,
        };
        decisions.push(Decision {
            rule_id: first.id,
            rule_type: first.kind.type_name(),
            rules: fired.iter().map(|(r, _)| r.id).collect(),
            subject: Subject::Pattern(obs.pattern_id),
            priority,
            reason,
            escalation,
        });
    }
    if let Some(totals) = &observations.total_minute_counts {
        for rule in &rules {
            if let Some(d) = error_rate_rule(rule, totals, state, now) {
                decisions.push(d);
            }
        }
    }
    decisions
}

/// Why `rule` fires for this pattern, if it does (cooldowns aside).
fn pattern_rule(rule: &Rule, obs: &PatternObservation, now: TimestampMs) -> Option<String> {
    let ignored = obs.status == PatternStatus::Ignored;
    let this_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
    let count_at = |minute: i64| -> u64 {
        obs.minute_counts.iter().filter(|m| m.minute_ms == minute).map(|m| m.count).sum()
    };
    match &rule.kind {
        RuleKind::IgnoredGrowing { count, minutes } if ignored => {
            let since = this_minute - i64::from(minutes.saturating_sub(1)) * MINUTE_MS;
            let n: u64 = obs.minute_counts.iter().filter(|m| m.minute_ms >= since).map(|m| m.count).sum();
            (n > *count).then(|| format!("ignored, but seen {n} times in {minutes} minutes (limit {count})"))
        }
        _ if ignored => None,
        RuleKind::NewFingerprint => obs.first_time.then(|| "seen for the first time".to_owned()),
        RuleKind::Regression => obs.regressed.then(|| "marked resolved, seen again".to_owned()),
        RuleKind::Critical => {
            (obs.highest_level >= Level::Critical).then(|| format!("{} entry", obs.highest_level.as_str()))
        }
        RuleKind::Spike { per_minute } => {
            let n = count_at(this_minute).max(count_at(this_minute - MINUTE_MS));
            (n > *per_minute).then(|| format!("{n} in one minute (limit {per_minute})"))
        }
        RuleKind::Sustained { minutes, max_gap_minutes } => {
            let (start, end) = latest_run(&obs.minute_counts, i64::from(*max_gap_minutes) * MINUTE_MS)?;
            // The run must still be going on: its latest occurrence no older than the gap.
            let going_on = now - end <= i64::from(*max_gap_minutes) * MINUTE_MS;
            (going_on && end - start >= i64::from(*minutes) * MINUTE_MS).then(|| {
                format!("seen over {} without a gap over {max_gap_minutes} min", duration_words(end - start))
            })
        }
        RuleKind::ErrorRate { .. } | RuleKind::IgnoredGrowing { .. } => None,
    }
}

/// The first and the latest occurrence of the latest run of occurrences with no gap longer
/// than `max_gap_ms` between them.
fn latest_run(minutes: &[MinuteSeen], max_gap_ms: i64) -> Option<(TimestampMs, TimestampMs)> {
    let mut busy: Vec<&MinuteSeen> = minutes.iter().filter(|m| m.count > 0).collect();
    busy.sort_by_key(|m| m.first_ms);
    let last = busy.pop()?;
    let (mut start, end) = (last.first_ms, last.last_ms);
    for m in busy.iter().rev() {
        if start - m.last_ms > max_gap_ms {
            break;
        }
        start = start.min(m.first_ms);
    }
    Some((start, end))
}

/// "5 min 12 s", "1 h 3 min".
fn duration_words(ms: i64) -> String {
    let s = ms / 1000;
    match (s / 3600, s % 3600 / 60, s % 60) {
        (0, m, s) => format!("{m} min {s} s"),
        (h, m, _) => format!("{h} h {m} min"),
    }
}

fn error_rate_rule(
    rule: &Rule,
    totals: &[(TimestampMs, u64)],
    state: &mut AlertState,
    now: TimestampMs,
) -> Option<Decision> {
    let RuleKind::ErrorRate { window_minutes, degraded, fail, recovery_margin } = rule.kind else {
        return None;
    };
    let window = i64::from(window_minutes.max(1));
    let this_minute = now.div_euclid(MINUTE_MS) * MINUTE_MS;
    let since = this_minute - window * MINUTE_MS;
    let n: u64 = totals.iter().filter(|(m, _)| *m >= since && *m < this_minute).map(|(_, c)| c).sum();
    let per_minute = n as f64 / window as f64;
    let (current, announced) = state.health.get(&rule.id).copied().unwrap_or_default();
    let keep = 1.0 - recovery_margin;
    let next = if per_minute > fail {
        Health::Fail
    } else if per_minute >= degraded {
        // From fail, step down only once clearly below the fail threshold.
        if current == Health::Fail && per_minute > fail * keep { Health::Fail } else { Health::Degraded }
    } else if current > Health::Pass && per_minute >= degraded * keep {
        Health::Degraded.min(current)
    } else {
        Health::Pass
    };
    state.health.insert(rule.id, (next, announced));
    let key = CooldownKey::Health(next);
    if next == announced || state.cooling(key, rule.cooldown_ms, now) {
        return None;
    }
    state.fired(key, now, false);
    state.health.insert(rule.id, (next, next));
    let (priority, reason) = match next {
        Health::Fail => {
            (Priority::High, format!("{per_minute:.1} errors/min over {window} min (fail above {fail})"))
        }
        Health::Degraded => (
            Priority::Medium,
            format!("{per_minute:.1} errors/min over {window} min (degraded from {degraded})"),
        ),
        Health::Pass => (Priority::Low, format!("recovered: {per_minute:.1} errors/min over {window} min")),
    };
    Some(Decision {
        rule_id: rule.id,
        rule_type: rule.kind.type_name(),
        rules: vec![rule.id],
        subject: Subject::ErrorRate { health: next, per_minute },
        priority,
        reason,
        escalation: false,
    })
}

/// The facts of a pattern an investigation task is written from.
#[derive(Debug, Clone, PartialEq)]
pub struct PatternFacts {
    pub fingerprint: String,
    pub template: String,
    pub error_type: Option<String>,
    pub first_seen_ms: TimestampMs,
    pub last_seen_ms: TimestampMs,
    pub occurrences: i64,
    pub source: String,
    pub sample_message: Option<String>,
    pub stack_trace: Option<String>,
}

/// An investigation task, as the Railway-crawler design's task creator writes it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskDraft {
    pub title: String,
    pub description: String,
}

/// Longest summary in a task title, in characters.
const TITLE_SUMMARY_CHARS: usize = 120;
/// Longest example log or stack trace quoted in a task, in characters.
const QUOTE_CHARS: usize = 4_000;

/// Writes the task for a pattern: `Investigate error: {summary}` and a description with the
/// fingerprint, first and last seen, occurrences, an example log and the stack trace.
pub fn task_for_pattern(p: &PatternFacts) -> TaskDraft {
    let summary = match &p.error_type {
        Some(t) if !p.template.starts_with(t.as_str()) => format!("{t}: {}", p.template),
        _ => p.template.clone(),
    };
    let summary = one_line(&summary, TITLE_SUMMARY_CHARS);
    let mut description = format!(
        "Error fingerprint: {}\nFirst seen: {}\nLast seen: {}\nOccurrences: {}\nSource: {}\n",
        p.fingerprint,
        rfc3339(p.first_seen_ms),
        rfc3339(p.last_seen_ms),
        p.occurrences,
        p.source,
    );
    description.push_str("\nExample log:\n");
    description.push_str(&clip(p.sample_message.as_deref().unwrap_or(&p.template), QUOTE_CHARS));
    description.push('\n');
    if let Some(trace) = p.stack_trace.as_deref().filter(|t| !t.is_empty()) {
        description.push_str("\nStack trace:\n");
        description.push_str(&clip(trace, QUOTE_CHARS));
        description.push('\n');
    }
    TaskDraft { title: format!("Investigate error: {summary}"), description }
}

/// The task for an error-rate alert.
pub fn task_for_error_rate(health: Health, per_minute: f64, reason: &str) -> TaskDraft {
    TaskDraft {
        title: format!("Investigate error rate: {} ({per_minute:.1} errors/min)", health.as_str()),
        description: format!("The error-rate check is {}: {reason}.\n", health.as_str()),
    }
}

/// Milliseconds as RFC 3339 UTC, for people.
pub fn rfc3339(ms: TimestampMs) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

/// The first line of `s`, control characters replaced, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    let mut out: String = line.chars().map(|c| if c.is_control() { ' ' } else { c }).take(max).collect();
    if line.chars().count() > max {
        out.push('…');
    }
    out
}

fn clip(s: &str, max: usize) -> String {
    let mut out: String = s.chars().take(max).collect();
    if s.chars().count() > max {
        out.push_str("\n… (cut)");
    }
    out
}

#[cfg(test)]
#[path = "alert_tests.rs"]
mod tests;
