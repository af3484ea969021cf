//! Timeline tables for every rule: what fires, what stays quiet, cooldowns and hysteresis.

use expect_test::{Expect, expect};

use super::*;

const T0: i64 = 1_700_000_000_000 / MINUTE_MS * MINUTE_MS;

fn rule(id: i64, kind: RuleKind) -> Rule {
    Rule { id, name: kind.type_name().to_owned(), kind, cooldown_ms: 30 * MINUTE_MS, enabled: true }
}

fn all_rules() -> Vec<Rule> {
    vec![
        rule(1, RuleKind::NewFingerprint),
        rule(2, RuleKind::Spike { per_minute: 10 }),
        rule(3, RuleKind::Sustained { minutes: 5, max_gap_minutes: 1 }),
        rule(4, RuleKind::Critical),
        rule(5, RuleKind::ErrorRate { window_minutes: 5, degraded: 1.0, fail: 5.0, recovery_margin: 0.2 }),
        rule(6, RuleKind::Regression),
        rule(7, RuleKind::IgnoredGrowing { count: 100, minutes: 60 }),
    ]
}

/// One moment of a timeline: `at` seconds after T0.
struct Step {
    at: i64,
    obs: Observations,
}

/// A pattern observation; `counts` are (minutes after T0, count).
fn seen(pattern_id: i64, counts: &[(i64, u64)]) -> PatternObservation {
    PatternObservation {
        pattern_id,
        first_time: false,
        regressed: false,
        status: PatternStatus::New,
        highest_level: Level::Error,
        minute_counts: counts.iter().map(|&(m, c)| MinuteSeen::whole(T0 + m * MINUTE_MS, c)).collect(),
    }
}

fn at(at: i64, patterns: Vec<PatternObservation>) -> Step {
    Step { at, obs: Observations { patterns, total_minute_counts: None } }
}

/// Total errors: `per_minute[k]` in minute k after T0.
fn rate(at: i64, per_minute: &[u64]) -> Step {
    let totals = per_minute.iter().enumerate().map(|(k, &c)| (T0 + k as i64 * MINUTE_MS, c)).collect();
    Step { at, obs: Observations { patterns: Vec::new(), total_minute_counts: Some(totals) } }
}

/// Runs the steps through one state and prints what fired when.
fn timeline(rules: &[Rule], steps: Vec<Step>) -> String {
    let mut state = AlertState::default();
    let mut out = String::new();
    for step in steps {
        let decisions = evaluate(rules, &step.obs, &mut state, T0 + step.at * 1000);
        let fired: Vec<String> = decisions
            .iter()
            .map(|d| {
                let subject = match &d.subject {
                    Subject::Pattern(p) => format!("p{p}"),
                    Subject::ErrorRate { health, .. } => health.as_str().to_owned(),
                };
                let also = if d.rules.len() > 1 { format!(" +{}", d.rules.len() - 1) } else { String::new() };
                format!("{}({subject}){also} {}: {}", d.rule_type, d.priority.as_str(), d.reason)
            })
            .collect();
        let fired = if fired.is_empty() { "-".to_owned() } else { fired.join("; ") };
        out.push_str(&format!("t={}s {fired}\n", step.at));
    }
    out
}

#[track_caller]
fn check(steps: Vec<Step>, expect: Expect) {
    expect.assert_eq(&timeline(&all_rules(), steps));
}

#[test]
fn new_fingerprint_fires_once_then_cools_down() {
    let first = PatternObservation { first_time: true, ..seen(1, &[(0, 1)]) };
    check(
        vec![at(0, vec![first.clone()]), at(30, vec![seen(1, &[(0, 2)])]), at(60, vec![first])],
        expect![[r#"
            t=0s new_fingerprint(p1) high: seen for the first time
            t=30s -
            t=60s -
        "#]],
    );
}

#[test]
fn spike_fires_above_ten_per_minute_not_at_ten() {
    check(
        vec![
            at(10, vec![seen(1, &[(0, 10)])]),
            at(50, vec![seen(1, &[(0, 11)])]),
            at(70, vec![seen(1, &[(0, 11), (1, 30)])]),
            at(31 * 60, vec![seen(1, &[(31, 12)])]),
        ],
        expect![[r#"
            t=10s -
            t=50s spike(p1) medium: 11 in one minute (limit 10)
            t=70s -
            t=1860s spike(p1) medium: 12 in one minute (limit 10)
        "#]],
    );
}

/// A pattern seen from `first` to `last` seconds after T0, once every `every` seconds.
fn seen_between(pattern_id: i64, first: i64, last: i64, every: i64) -> PatternObservation {
    let mut minutes: BTreeMap<i64, MinuteSeen> = BTreeMap::new();
    for t in (first..=last).step_by(every as usize).map(|s| T0 + s * 1000) {
        let minute = t.div_euclid(MINUTE_MS) * MINUTE_MS;
        let m = minutes.entry(minute).or_insert(MinuteSeen {
            minute_ms: minute,
            count: 0,
            first_ms: t,
            last_ms: t,
        });
        m.count += 1;
        m.last_ms = t;
    }
    PatternObservation { minute_counts: minutes.into_values().collect(), ..seen(pattern_id, &[]) }
}

#[test]
fn sustained_needs_five_elapsed_minutes_without_a_long_gap() {
    check(
        vec![
            // Five calendar minutes touched (0:50 to 4:10) are only 3 min 20 s of errors.
            at(4 * 60 + 15, vec![seen_between(1, 50, 4 * 60 + 10, 20)]),
            at(5 * 60 + 45, vec![seen_between(1, 50, 5 * 60 + 45, 20)]),
            at(5 * 60 + 55, vec![seen_between(1, 50, 5 * 60 + 55, 15)]),
        ],
        expect![[r#"
            t=255s -
            t=345s -
            t=355s sustained(p1) medium: seen over 5 min 0 s without a gap over 1 min
        "#]],
    );
    // A gap of more than a minute starts the run again; the run must still be going on.
    check(
        vec![
            at(
                7 * 60,
                vec![PatternObservation {
                    minute_counts: [seen_between(2, 0, 120, 30), seen_between(2, 200, 7 * 60, 30)]
                        .into_iter()
                        .flat_map(|o| o.minute_counts)
                        .collect(),
                    ..seen(2, &[])
                }],
            ),
            at(9 * 60, vec![seen_between(3, 0, 6 * 60, 30)]),
        ],
        expect![[r#"
            t=420s -
            t=540s -
        "#]],
    );
}

#[test]
fn one_cooldown_per_pattern_across_rules_with_one_escalation_to_critical() {
    let new = PatternObservation { first_time: true, ..seen(1, &[(0, 1)]) };
    let critical = |m: i64| PatternObservation { highest_level: Level::Critical, ..seen(1, &[(m, 1)]) };
    check(
        vec![
            at(0, vec![new]),
            at(10, vec![seen(1, &[(0, 40)])]),
            at(20, vec![critical(0)]),
            at(25 * 60, vec![critical(25)]),
            at(31 * 60, vec![seen(1, &[(31, 40)])]),
        ],
        expect![[r#"
            t=0s new_fingerprint(p1) high: seen for the first time
            t=10s -
            t=20s critical(p1) high: escalated to critical within the cooldown: CRITICAL entry
            t=1500s -
            t=1860s spike(p1) medium: 40 in one minute (limit 10)
        "#]],
    );
}

#[test]
fn critical_fires_at_once_and_wins_over_other_rules() {
    let critical =
        PatternObservation { first_time: true, highest_level: Level::Critical, ..seen(1, &[(0, 12)]) };
    check(
        vec![
            at(0, vec![critical.clone()]),
            at(60, vec![PatternObservation { first_time: false, ..critical }]),
            at(90, vec![PatternObservation { highest_level: Level::Critical, ..seen(2, &[(1, 1)]) }]),
        ],
        expect![[r#"
            t=0s critical(p1) +2 high: CRITICAL entry
            t=60s -
            t=90s critical(p2) high: CRITICAL entry
        "#]],
    );
}

#[test]
fn regression_fires_when_a_resolved_pattern_returns() {
    let back = PatternObservation { regressed: true, ..seen(1, &[(0, 1)]) };
    check(
        vec![at(0, vec![seen(1, &[(0, 1)])]), at(30, vec![back.clone()]), at(40 * 60, vec![back])],
        expect![[r#"
            t=0s -
            t=30s regression(p1) high: marked resolved, seen again
            t=2400s regression(p1) high: marked resolved, seen again
        "#]],
    );
}

#[test]
fn ignored_patterns_only_alert_when_growing() {
    let ignored = |counts: &[(i64, u64)]| PatternObservation {
        status: PatternStatus::Ignored,
        highest_level: Level::Critical,
        ..seen(1, counts)
    };
    check(
        vec![
            at(0, vec![ignored(&[(0, 50)])]),
            at(60, vec![ignored(&[(0, 50), (1, 50)])]),
            at(70, vec![ignored(&[(0, 50), (1, 51)])]),
            at(120, vec![ignored(&[(0, 50), (1, 51), (2, 500)])]),
        ],
        expect![[r#"
            t=0s -
            t=60s -
            t=70s ignored_growing(p1) medium: ignored, but seen 101 times in 60 minutes (limit 100)
            t=120s -
        "#]],
    );
}

#[test]
fn error_rate_alerts_on_entering_degraded_and_fail_and_on_recovery() {
    // Each step looks at the 5 full minutes before its own minute.
    check(
        vec![
            rate(5 * 60, &[0, 1, 0, 1, 2]),
            rate(5 * 60 + 1, &[1, 1, 1, 1, 1]),
            rate(5 * 60 + 2, &[1, 1, 1, 1, 30]),
            rate(6 * 60, &[1, 1, 1, 1, 30, 2]),
            rate(10 * 60, &[1, 1, 1, 1, 30, 2, 0, 0, 0, 0]),
        ],
        expect![[r#"
            t=300s -
            t=301s error_rate(degraded) medium: 1.0 errors/min over 5 min (degraded from 1)
            t=302s error_rate(fail) high: 6.8 errors/min over 5 min (fail above 5)
            t=360s -
            t=600s error_rate(pass) low: recovered: 0.4 errors/min over 5 min
        "#]],
    );
}

#[test]
fn error_rate_hovering_at_a_threshold_does_not_flap() {
    // 1.0/min enters degraded; 0.8–1.0 stays degraded (20% margin); below 0.8 recovers.
    check(
        vec![
            rate(5 * 60, &[1, 1, 1, 1, 1]),
            rate(5 * 60 + 1, &[1, 1, 1, 1, 0]),
            rate(5 * 60 + 2, &[1, 1, 1, 1, 1]),
            rate(5 * 60 + 3, &[1, 1, 1, 0, 0]),
            rate(5 * 60 + 4, &[1, 1, 1, 1, 1]),
        ],
        expect![[r#"
            t=300s error_rate(degraded) medium: 1.0 errors/min over 5 min (degraded from 1)
            t=301s -
            t=302s -
            t=303s error_rate(pass) low: recovered: 0.6 errors/min over 5 min
            t=304s -
        "#]],
    );
}

#[test]
fn disabled_rules_never_fire() {
    let mut rules = all_rules();
    rules.iter_mut().for_each(|r| r.enabled = r.kind != RuleKind::NewFingerprint);
    let first = PatternObservation { first_time: true, ..seen(1, &[(0, 1)]) };
    let out = timeline(&rules, vec![at(0, vec![first])]);
    expect![[r#"
        t=0s -
    "#]]
    .assert_eq(&out);
}

#[test]
fn remembered_alerts_keep_their_cooldown_after_a_restart() {
    let rules = all_rules();
    let mut state = AlertState::default();
    state.remember(2, CooldownKey::Pattern(1), T0, false);
    let obs = Observations { patterns: vec![seen(1, &[(1, 50)])], total_minute_counts: None };
    assert!(evaluate(&rules, &obs, &mut state, T0 + MINUTE_MS).is_empty());
    let later = Observations { patterns: vec![seen(1, &[(31, 50)])], total_minute_counts: None };
    let d = evaluate(&rules, &later, &mut state, T0 + 31 * MINUTE_MS);
    assert_eq!(d.len(), 1, "{d:?}");
}

#[test]
fn task_text_follows_the_design_and_keeps_one_line_titles() {
    let draft = task_for_pattern(&PatternFacts {
        fingerprint: "ab12".into(),
        template: "connection refused to <IP>\nsecond line".into(),
        error_type: Some("ConnectionError".into()),
        first_seen_ms: T0,
        last_seen_ms: T0 + 90_000,
        occurrences: 3,
        source: "api".into(),
        sample_message: Some("connection refused to 10.0.0.1".into()),
        stack_trace: Some("Traceback (most recent call last):\n  File \"a.py\", line 1".into()),
    });
    expect![[r#"
        Investigate error: ConnectionError: connection refused to <IP>
        Error fingerprint: ab12
        First seen: 2023-11-14T22:13:00.000Z
        Last seen: 2023-11-14T22:14:30.000Z
        Occurrences: 3
        Source: api

        Example log:
        connection refused to 10.0.0.1

        Stack trace:
        Traceback (most recent call last):
          File "a.py", line 1
    "#]]
    .assert_eq(&format!("{}\n{}", draft.title, draft.description));
}

#[test]
fn rules_read_back_from_their_stored_form() {
    for rule in all_rules() {
        assert_eq!(
            RuleKind::from_stored(rule.kind.type_name(), &rule.kind.condition()),
            Ok(rule.kind.clone())
        );
    }
    let defaults = RuleKind::from_stored("spike", &serde_json::json!({}));
    assert_eq!(defaults, Ok(RuleKind::Spike { per_minute: 10 }));
    let errors: Vec<String> = [
        ("spike", serde_json::json!({"per_minute": -1})),
        ("spike", serde_json::json!({"per_mintue": 5})),
        ("error_rate", serde_json::json!({"degraded": 6, "fail": 5})),
        ("sustained", serde_json::json!([5])),
        ("everything", serde_json::json!({})),
    ]
    .iter()
    .map(|(t, c)| RuleKind::from_stored(t, c).unwrap_err())
    .collect();
    expect![[r#"
        per_minute must be a positive integer, not -1
        unknown field "per_mintue" in the condition of a spike rule
        fail (5) must not be below degraded (6)
        condition of a sustained rule must be an object, not [5]
        unknown rule type "everything""#]]
    .assert_eq(&errors.join("\n"));
}
