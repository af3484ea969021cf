//! Alerts, tasks and the outbox on both backends: one alert per cooldown, one open task per
//! pattern, regressions, and deliveries that survive a crashed worker.

use std::sync::Arc;

use faultline_core::alert::Priority;
use faultline_core::{Level, PatternStatus, TaskStatus};
use faultline_store::{AlertDraft, DeliveryResult, NewRule, RuleSaved, Store, TaskCreated};

use crate::both;
use crate::harness::{T0, batch, event};

const MINUTE: i64 = 60_000;

/// The newest alerts' (pattern, task) links.
async fn alerts_links(store: &Arc<dyn Store>) -> Vec<(Option<String>, Option<String>)> {
    let link = |v: &serde_json::Value| v.as_str().map(str::to_owned);
    let alerts = store.alerts(0, 100).await.unwrap();
    alerts.iter().map(|a| (link(&a.payload["links"]["pattern"]), link(&a.payload["links"]["task"]))).collect()
}

async fn rule_id(store: &Arc<dyn Store>, rule_type: &str) -> i64 {
    store.alert_rules().await.unwrap().iter().find(|r| r.rule_type == rule_type).expect("rule").id
}

async fn seeded(store: &Arc<dyn Store>) {
    let rule = |name: &str, cond: serde_json::Value| NewRule {
        name: name.into(),
        rule_type: name.into(),
        condition: cond,
        action: "task_and_notify".into(),
        enabled: true,
        cooldown_minutes: 30,
    };
    let rules = [
        rule("new_fingerprint", serde_json::json!({})),
        rule("spike", serde_json::json!({"per_minute": 10})),
    ];
    store.seed_rules(&rules, T0).await.unwrap();
}

fn draft(rule_id: i64, pattern_id: i64, now_ms: i64) -> AlertDraft {
    AlertDraft {
        rule_id: Some(rule_id),
        rule_ids: vec![rule_id],
        rule_type: "new_fingerprint".into(),
        subject: format!("pattern:{pattern_id}"),
        pattern_id: Some(pattern_id),
        priority: Priority::High,
        reason: "seen for the first time".into(),
        cooldown_ms: 30 * MINUTE,
        escalation: false,
        state_change: false,
        flood: None,
        task: true,
        task_subject: None,
        close_task: false,
        reopen: false,
        task_draft: None,
        notifiers: vec!["webhook".into(), "slack".into()],
        extra: serde_json::Value::Null,
        public_url: Some("https://faultline.example.com/".into()),
        now_ms,
    }
}

async fn seeding_keeps_edited_rules(store: Arc<dyn Store>) {
    seeded(&store).await;
    // A user edits the spike rule, then the service starts again and seeds its defaults.
    let spike = rule_id(&store, "spike").await;
    let edited = NewRule {
        name: "spike".into(),
        rule_type: "spike".into(),
        condition: serde_json::json!({"per_minute": 99}),
        action: "notify".into(),
        enabled: false,
        cooldown_minutes: 5,
    };
    assert_eq!(store.update_rule(spike, &edited).await.unwrap(), RuleSaved::Saved(spike));
    seeded(&store).await;
    let rules = store.alert_rules().await.unwrap();
    assert_eq!(rules.len(), 2, "seeding again adds nothing");
    let kept = rules.iter().find(|r| r.id == spike).unwrap();
    assert_eq!(
        (&kept.condition, kept.action.as_str(), kept.enabled, kept.cooldown_minutes),
        (&serde_json::json!({"per_minute": 99}), "notify", false, 5),
        "the edit survives"
    );
    let other = rules.iter().find(|r| r.id != spike).unwrap();
    assert!(other.enabled && other.cooldown_minutes == 30 && other.trigger_count == 0);
}
both!(seeding_keeps_edited_rules);

async fn rules_are_created_and_edited_with_unique_names(store: Arc<dyn Store>) {
    seeded(&store).await;
    let spike = rule_id(&store, "spike").await;
    let mut rule = NewRule {
        name: "payments spike".into(),
        rule_type: "spike".into(),
        condition: serde_json::json!({"per_minute": 50}),
        action: "notify".into(),
        enabled: true,
        cooldown_minutes: 5,
    };
    let RuleSaved::Saved(id) = store.create_rule(&rule, T0).await.unwrap() else { panic!("not created") };
    assert_ne!(id, spike);
    assert_eq!(store.create_rule(&rule, T0).await.unwrap(), RuleSaved::NameTaken);

    rule.enabled = false;
    rule.condition = serde_json::json!({"per_minute": 80});
    assert_eq!(store.update_rule(id, &rule).await.unwrap(), RuleSaved::Saved(id));
    let stored = store.alert_rules().await.unwrap().into_iter().find(|r| r.id == id).unwrap();
    assert!(!stored.enabled);
    assert_eq!(stored.condition, serde_json::json!({"per_minute": 80}));
    assert_eq!((stored.action.as_str(), stored.cooldown_minutes, stored.created_ms), ("notify", 5, T0));

    rule.name = "spike".into();
    assert_eq!(store.update_rule(id, &rule).await.unwrap(), RuleSaved::NameTaken);
    assert_eq!(store.update_rule(id + 100, &rule).await.unwrap(), RuleSaved::NoSuchRule);
    assert_eq!(store.alert_rules().await.unwrap().len(), 3);
}
both!(rules_are_created_and_edited_with_unique_names);

async fn batches_report_new_critical_and_regressed_patterns(store: Arc<dyn Store>) {
    let out = store
        .ingest(batch(vec![
            event("1", T0, Level::Error, "api", "timeout after 30s"),
            event("2", T0, Level::Critical, "api", "timeout after 31s"),
        ]))
        .await
        .unwrap();
    assert_eq!(out.touched.len(), 1);
    let t = &out.touched[0];
    assert!(t.new && !t.regressed);
    assert_eq!((t.status, t.highest_level), (PatternStatus::New, Level::Critical));

    let fp = store.top_patterns(1, None).await.unwrap()[0].fingerprint.clone();
    assert!(store.set_pattern_status(&fp, PatternStatus::Resolved, T0).await.unwrap());
    let back = store
        .ingest(batch(vec![event("3", T0 + MINUTE, Level::Error, "api", "timeout after 5s")]))
        .await
        .unwrap();
    assert!(back.touched[0].regressed && !back.touched[0].new);
    assert_eq!(back.touched[0].status, PatternStatus::New);
    // A replay touches nothing: it stores nothing.
    let replay = store
        .ingest(batch(vec![event("3", T0 + MINUTE, Level::Error, "api", "timeout after 5s")]))
        .await
        .unwrap();
    assert!(replay.touched.is_empty());

    let counts = store.pattern_minute_counts(&[t.pattern_id], T0).await.unwrap();
    let counts: Vec<(i64, i64, u64)> = counts.iter().map(|c| (c.pattern_id, c.minute_ms, c.count)).collect();
    assert_eq!(counts, [(t.pattern_id, T0, 2), (t.pattern_id, T0 + MINUTE, 1)]);
    assert!(!store.set_pattern_status("no-such", PatternStatus::Known, T0).await.unwrap());
}
both!(batches_report_new_critical_and_regressed_patterns);

/// The minutes of several patterns read at once: each pattern's own counts (summed over
/// sources and levels), from the minute asked for on, and nothing of a pattern not asked for.
async fn minute_counts_of_several_patterns_stay_apart(store: Arc<dyn Store>) {
    let timeouts = vec![
        event("a1", T0 - MINUTE, Level::Error, "api", "timeout after 5s"),
        event("a2", T0 + 1_000, Level::Error, "api", "timeout after 6s"),
        event("a3", T0 + 2_000, Level::Critical, "worker", "timeout after 7s"),
        event("a4", T0 + 2 * MINUTE, Level::Error, "api", "timeout after 8s"),
    ];
    let disks = vec![
        event("b1", T0 + 3_000, Level::Error, "api", "disk full on /var"),
        event("b2", T0 + MINUTE + 5, Level::Error, "db", "disk full on /var"),
    ];
    let users = vec![event("c1", T0 + 4_000, Level::Error, "api", "user 7 not found in directory")];
    let mut ids = Vec::new();
    for events in [timeouts, disks, users] {
        let touched = store.ingest(batch(events)).await.unwrap().touched;
        assert_eq!(touched.len(), 1, "one pattern a batch");
        ids.push(touched[0].pattern_id);
    }
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    let counts = store.pattern_minute_counts(&[b, a], T0).await.unwrap();
    let mut counts: Vec<(i64, i64, u64)> =
        counts.iter().map(|m| (m.pattern_id, m.minute_ms, m.count)).collect();
    counts.sort();
    let mut expected = vec![(a, T0, 2), (a, T0 + 2 * MINUTE, 1), (b, T0, 1), (b, T0 + MINUTE, 1)];
    expected.sort();
    assert_eq!(counts, expected);
    assert!(store.pattern_minute_counts(&[c], T0 + MINUTE).await.unwrap().is_empty());
    assert!(store.pattern_minute_counts(&[], T0).await.unwrap().is_empty());
}
both!(minute_counts_of_several_patterns_stay_apart);

async fn one_alert_per_cooldown_and_one_open_task_per_pattern(store: Arc<dyn Store>) {
    seeded(&store).await;
    let out = store.ingest(batch(vec![event("1", T0, Level::Error, "api", "db <down> id=7")])).await.unwrap();
    let pattern_id = out.touched[0].pattern_id;
    let new_rule = rule_id(&store, "new_fingerprint").await;
    let spike = rule_id(&store, "spike").await;

    let first = store.fire_alert(&draft(new_rule, pattern_id, T0)).await.unwrap().expect("fired");
    assert!(first.task_created && !first.held);
    assert_eq!(
        store.fire_alert(&draft(new_rule, pattern_id, T0 + MINUTE)).await.unwrap(),
        None,
        "cooling down"
    );
    let other_rule = AlertDraft {
        rule_type: "spike".into(),
        priority: Priority::Medium,
        ..draft(spike, pattern_id, T0 + MINUTE)
    };
    assert_eq!(store.fire_alert(&other_rule).await.unwrap(), None, "one cooldown per pattern, across rules");
    let critical = AlertDraft { rule_type: "critical".into(), escalation: true, ..other_rule.clone() };
    let second = store.fire_alert(&critical).await.unwrap().expect("one escalation to critical");
    assert_eq!((second.task_id, second.task_created), (first.task_id, false), "same task, updated");
    let again = AlertDraft { now_ms: T0 + 2 * MINUTE, ..critical };
    assert_eq!(store.fire_alert(&again).await.unwrap(), None, "one escalation per cooldown");
    let after =
        store.fire_alert(&draft(new_rule, pattern_id, T0 + 31 * MINUTE)).await.unwrap().expect("cooled down");
    assert_eq!(after.task_id, first.task_id);

    let tasks = store.tasks(None, 10).await.unwrap();
    assert_eq!(tasks.len(), 1);
    let task = &tasks[0];
    assert_eq!(
        (task.title.as_str(), task.priority.as_str(), task.alert_count),
        ("Investigate error: db <down> id=<VAL>", "high", 3)
    );
    assert!(
        task.description.contains("Occurrences: 1")
            && task.description.contains("Example log:\ndb <down> id=7"),
        "{}",
        task.description
    );
    assert_eq!(task.metadata["rule"], "new_fingerprint");
    assert_eq!(
        alerts_links(&store).await[0],
        (
            Some(format!(
                "https://faultline.example.com/patterns/{}",
                &task.fingerprint.as_deref().unwrap()[..16]
            )),
            Some(format!("https://faultline.example.com/tasks?highlight={0}#task-{0}", task.id)),
        )
    );
    assert_eq!(
        task.fingerprint.as_deref(),
        Some(store.top_patterns(1, None).await.unwrap()[0].fingerprint.as_str())
    );
    let (_, events) = store.task(task.id).await.unwrap().unwrap();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["created", "alert", "alert"]);

    let rules = store.alert_rules().await.unwrap();
    let fired: Vec<(i64, Option<i64>)> =
        rules.iter().map(|r| (r.trigger_count, r.last_triggered_ms)).collect();
    assert_eq!(
        fired,
        [(2, Some(T0 + 31 * MINUTE)), (1, Some(T0 + MINUTE))],
        "the critical draft named the spike rule"
    );
    let alerts = store.alerts(0, 10).await.unwrap();
    assert_eq!(alerts.len(), 3);
    assert_eq!(alerts[2].payload["pattern"]["template"], "db <down> id=<VAL>");
    assert_eq!(alerts[2].payload["task"]["id"], first.task_id.unwrap());
    assert_eq!(store.deliveries(None, 10).await.unwrap().len(), 6);
}
both!(one_alert_per_cooldown_and_one_open_task_per_pattern);

async fn resolving_closes_the_task_and_a_regression_reopens_it(store: Arc<dyn Store>) {
    seeded(&store).await;
    let out = store.ingest(batch(vec![event("1", T0, Level::Error, "api", "quota exceeded")])).await.unwrap();
    let pattern_id = out.touched[0].pattern_id;
    let fp = store.top_patterns(1, None).await.unwrap()[0].fingerprint.clone();
    let new_rule = rule_id(&store, "new_fingerprint").await;
    let fired = store.fire_alert(&draft(new_rule, pattern_id, T0)).await.unwrap().unwrap();
    store.set_pattern_status(&fp, PatternStatus::Resolved, T0 + MINUTE).await.unwrap();
    let task = store.task(fired.task_id.unwrap()).await.unwrap().unwrap().0;
    assert_eq!(task.status, TaskStatus::Done);

    let regression = AlertDraft {
        reopen: true,
        cooldown_ms: 0,
        rule_type: "regression".into(),
        ..draft(new_rule, pattern_id, T0 + 2 * MINUTE)
    };
    let again = store.fire_alert(&regression).await.unwrap().unwrap();
    assert_eq!((again.task_id, again.task_created), (fired.task_id, false));
    let (task, events) = store.task(fired.task_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Open);
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["created", "status", "reopened"]);

    // Manual "Create task" returns the open one; after dismissing it, makes a new one.
    assert_eq!(store.create_task(&fp, T0).await.unwrap(), Some(TaskCreated { id: task.id, created: false }));
    assert_eq!(store.open_task(&fp).await.unwrap().map(|t| t.id), Some(task.id));
    assert!(store.set_task_status(task.id, TaskStatus::Dismissed, T0).await.unwrap());
    assert_eq!(store.open_task(&fp).await.unwrap(), None, "a dismissed task is not open");
    let TaskCreated { id: new_id, created } = store.create_task(&fp, T0).await.unwrap().unwrap();
    assert!(created && new_id != task.id);
    assert!(store.set_task_status(new_id, TaskStatus::InProgress, T0).await.unwrap());
    assert_eq!(
        store.open_task(&fp).await.unwrap().map(|t| (t.id, t.status)),
        Some((new_id, TaskStatus::InProgress))
    );
    assert!(!store.set_task_status(9999, TaskStatus::Done, T0).await.unwrap());
    assert_eq!(store.create_task("nope", T0).await.unwrap(), None);
    assert_eq!(store.tasks(Some(TaskStatus::InProgress), 10).await.unwrap().len(), 1);
}
both!(resolving_closes_the_task_and_a_regression_reopens_it);

async fn concurrent_batches_of_a_new_pattern_create_one_alert_and_one_task(store: Arc<dyn Store>) {
    seeded(&store).await;
    let new_rule = rule_id(&store, "new_fingerprint").await;
    let mut handles = Vec::new();
    for k in 0..8 {
        let store = store.clone();
        handles.push(tokio::spawn(async move {
            let msg = format!("payment gateway timeout after {k}ms");
            let out = store
                .ingest(batch(vec![event(&format!("c{k}"), T0, Level::Error, "api", &msg)]))
                .await
                .unwrap();
            let mut fired = Vec::new();
            for t in out.touched.iter().filter(|t| t.new) {
                fired.push(store.fire_alert(&draft(new_rule, t.pattern_id, T0)).await.unwrap());
            }
            // A rule firing for an existing pattern at the same time must not add a task.
            let t = &out.touched[0];
            let spike = AlertDraft {
                rule_id: Some(new_rule + 1),
                rule_ids: vec![],
                rule_type: "spike".into(),
                ..draft(new_rule, t.pattern_id, T0)
            };
            fired.push(store.fire_alert(&spike).await.unwrap());
            fired
        }));
    }
    let mut fired = Vec::new();
    for h in handles {
        fired.extend(h.await.unwrap());
    }
    let fired: Vec<_> = fired.into_iter().flatten().collect();
    assert_eq!(fired.len(), 1, "one alert for the pattern, whichever rule came first: {fired:?}");
    assert_eq!(store.tasks(None, 10).await.unwrap().len(), 1);
    assert_eq!(store.top_patterns(10, None).await.unwrap().len(), 1);
}
both!(concurrent_batches_of_a_new_pattern_create_one_alert_and_one_task);

async fn deliveries_are_leased_retried_and_recorded(store: Arc<dyn Store>) {
    seeded(&store).await;
    let out = store.ingest(batch(vec![event("1", T0, Level::Error, "api", "boom")])).await.unwrap();
    let new_rule = rule_id(&store, "new_fingerprint").await;
    store.fire_alert(&draft(new_rule, out.touched[0].pattern_id, T0)).await.unwrap().unwrap();

    let jobs = store.claim_deliveries(T0, 30_000, 10).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.notifier.as_str()).collect::<Vec<_>>(), ["webhook", "slack"]);
    assert_eq!(jobs[0].idempotency_key, jobs[1].idempotency_key);
    assert_eq!(jobs[0].payload["rule"], "new_fingerprint");
    assert!(store.claim_deliveries(T0 + 1_000, 30_000, 10).await.unwrap().is_empty(), "leased");
    // The worker died: after the lease, both are due again.
    let jobs = store.claim_deliveries(T0 + 31_000, 30_000, 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let (webhook, slack) = (&jobs[0], &jobs[1]);
    store
        .finish_delivery(webhook, &DeliveryResult::Sent { reference: Some("issue-7".into()) }, T0 + 32_000)
        .await
        .unwrap();
    let retry = DeliveryResult::Retry { next_attempt_ms: T0 + 90_000, error: "HTTP 503".into() };
    store.finish_delivery(slack, &retry, T0 + 32_000).await.unwrap();
    assert!(store.claim_deliveries(T0 + 60_000, 30_000, 10).await.unwrap().is_empty());
    let again = store.claim_deliveries(T0 + 90_000, 30_000, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    store
        .finish_delivery(
            &again[0],
            &DeliveryResult::Failed { error: "HTTP 404 no_service".into() },
            T0 + 91_000,
        )
        .await
        .unwrap();

    let rows = store.deliveries(None, 10).await.unwrap();
    let states: Vec<(&str, &str, i64, Option<&str>)> = rows
        .iter()
        .map(|d| (d.notifier.as_str(), d.status.as_str(), d.attempts, d.last_error.as_deref()))
        .collect();
    assert_eq!(states, [("slack", "failed", 2, Some("HTTP 404 no_service")), ("webhook", "sent", 1, None)]);

    // The webhook's reference is handed to its next delivery for the same pattern.
    store.fire_alert(&draft(new_rule, out.touched[0].pattern_id, T0 + 40 * MINUTE)).await.unwrap().unwrap();
    let next = store.claim_deliveries(T0 + 40 * MINUTE, 30_000, 10).await.unwrap();
    assert_eq!(next[0].reference.as_deref(), Some("issue-7"));
    assert_eq!(next[1].reference, None);
}
both!(deliveries_are_leased_retried_and_recorded);

async fn past_the_flood_limits_tasks_are_made_and_notifications_wait_for_one_digest(store: Arc<dyn Store>) {
    seeded(&store).await;
    let new_rule = rule_id(&store, "new_fingerprint").await;
    let limits = faultline_core::alert::FloodLimits { per_pattern_per_hour: 6, per_hour: 3 };
    let mut fired = Vec::new();
    let messages = [
        "payment gateway refused the card",
        "disk quota exceeded on volume",
        "template render failed for invoice",
        "websocket handshake rejected by proxy",
        "cache warmup aborted midway",
    ];
    for (k, msg) in messages.iter().enumerate() {
        let out =
            store.ingest(batch(vec![event(&format!("f{k}"), T0, Level::Error, "api", msg)])).await.unwrap();
        let d = AlertDraft {
            flood: Some(limits),
            ..draft(new_rule, out.touched[0].pattern_id, T0 + k as i64 * 1000)
        };
        fired.push(store.fire_alert(&d).await.unwrap().expect("recorded"));
    }
    assert_eq!(fired.iter().map(|f| f.held).collect::<Vec<_>>(), [false, false, false, true, true]);
    assert!(fired.iter().all(|f| f.task_created), "every new pattern gets its task");
    assert_eq!(store.tasks(None, 10).await.unwrap().len(), 5);
    assert_eq!(store.deliveries(None, 100).await.unwrap().len(), 6, "two notifiers × three alerts");

    let digest = |now_ms: i64| faultline_store::DigestDraft {
        after_ms: 10 * MINUTE,
        notifiers: vec!["webhook".into(), "slack".into()],
        public_url: None,
        now_ms,
    };
    assert_eq!(store.send_digest(&digest(T0 + 5 * MINUTE)).await.unwrap(), None, "not yet");
    let sent = store.send_digest(&digest(T0 + 11 * MINUTE)).await.unwrap().expect("the digest");
    assert_eq!(store.send_digest(&digest(T0 + 12 * MINUTE)).await.unwrap(), None, "once");
    let alerts = store.alerts(0, 100).await.unwrap();
    let d = alerts.iter().find(|a| a.id == sent.alert_id).unwrap();
    assert_eq!((d.rule_type.as_str(), d.payload["held_count"].as_u64()), ("digest", Some(2)));
    assert!(
        d.reason
            .starts_with("2 alerts held back by the flood limits in the last 10 minutes (2 new patterns): "),
        "{}",
        d.reason
    );
    assert!(d.reason.contains("websocket handshake") && d.reason.contains("cache warmup"), "{}", d.reason);
    let held: Vec<Option<i64>> = alerts.iter().filter(|a| a.held).map(|a| a.digest_id).collect();
    assert_eq!(held, [Some(sent.alert_id), Some(sent.alert_id)]);
    let deliveries = store.deliveries(Some(sent.alert_id), 10).await.unwrap();
    assert_eq!(deliveries.len(), 2, "one digest per channel");

    // The per-pattern limit: with one alert per pattern per hour, the first pattern's second
    // alert is held (its task still updated); a pattern with none yet is not.
    let per_pattern = Some(faultline_core::alert::FloodLimits { per_pattern_per_hour: 1, per_hour: 100 });
    let pattern_of = |id: i64| alerts.iter().find(|a| a.id == id).unwrap().pattern_id.unwrap();
    let again = AlertDraft {
        flood: per_pattern,
        cooldown_ms: 0,
        ..draft(new_rule, pattern_of(fired[0].alert_id), T0 + 20 * MINUTE)
    };
    let held = store.fire_alert(&again).await.unwrap().unwrap();
    assert!(held.held && held.task_id == fired[0].task_id, "{held:?}");
    let out =
        store.ingest(batch(vec![event("g", T0, Level::Error, "api", "mailer queue stalled")])).await.unwrap();
    let fresh =
        AlertDraft { flood: per_pattern, ..draft(new_rule, out.touched[0].pattern_id, T0 + 20 * MINUTE) };
    assert!(!store.fire_alert(&fresh).await.unwrap().unwrap().held);
}
both!(past_the_flood_limits_tasks_are_made_and_notifications_wait_for_one_digest);

async fn an_error_rate_episode_is_one_task_closed_on_recovery(store: Arc<dyn Store>) {
    seeded(&store).await;
    // The seeded rules have no error-rate rule; any rule id stands for it here.
    let rule = rule_id(&store, "spike").await;
    let rate = |health: &str, at: i64| AlertDraft {
        rule_id: Some(rule),
        rule_ids: vec![],
        rule_type: "error_rate".into(),
        subject: format!("error_rate:{health}"),
        pattern_id: None,
        cooldown_ms: 30 * MINUTE,
        state_change: true,
        task: health != "pass",
        close_task: health == "pass",
        task_subject: Some("error_rate".into()),
        task_draft: Some(faultline_core::alert::TaskDraft {
            title: format!("Investigate error rate: {health}"),
            description: format!("The error-rate check is {health}."),
        }),
        ..draft(0, 0, T0 + at * MINUTE)
    };
    let degraded = store.fire_alert(&rate("degraded", 0)).await.unwrap().unwrap();
    assert!(degraded.task_created);
    assert_eq!(
        store.fire_alert(&rate("degraded", 1)).await.unwrap(),
        None,
        "announced already (by any instance)"
    );
    let fail = store.fire_alert(&rate("fail", 2)).await.unwrap().unwrap();
    assert_eq!((fail.task_id, fail.task_created), (degraded.task_id, false), "the same incident");
    let pass = store.fire_alert(&rate("pass", 9)).await.unwrap().unwrap();
    assert_eq!(pass.task_id, degraded.task_id);
    let (task, events) = store.task(degraded.task_id.unwrap()).await.unwrap().unwrap();
    assert_eq!(task.status, TaskStatus::Done, "recovery closes it");
    assert_eq!(events.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>(), ["created", "alert", "closed"]);
    let next = store.fire_alert(&rate("degraded", 45)).await.unwrap().unwrap();
    assert!(next.task_created && next.task_id != degraded.task_id, "a new episode, a new task");
}
both!(an_error_rate_episode_is_one_task_closed_on_recovery);
