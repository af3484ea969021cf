//! The SQLite side of alerts, tasks and the notification outbox (see `Store`'s alert methods).
//!
//! Every write runs on the one writer connection in a transaction, so concurrent callers are
//! serialised and "one open task per subject" and "one alert per cooldown" hold.

use faultline_core::alert::Priority;
use faultline_core::{HOUR_MS, PatternStatus, TaskStatus};
use rusqlite::{Connection, OptionalExtension, Transaction, params};

use crate::Result;
use crate::sql::*;
use crate::types::*;

fn json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok(TaskRow {
        id: r.get(0)?,
        subject: r.get(1)?,
        pattern_id: r.get(2)?,
        fingerprint: r.get(3)?,
        task_type: r.get(4)?,
        title: r.get(5)?,
        description: r.get(6)?,
        priority: r.get(7)?,
        status: crate::sqlite::state(r, 8)?,
        metadata: json(r.get(9)?),
        alert_count: r.get(10)?,
        created_ms: r.get(11)?,
        updated_ms: r.get(12)?,
    })
}

fn alert_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        rule_id: r.get(1)?,
        rule_type: r.get(2)?,
        subject: r.get(3)?,
        pattern_id: r.get(4)?,
        fired_ms: r.get(5)?,
        priority: r.get(6)?,
        summary: r.get(7)?,
        reason: r.get(8)?,
        task_id: r.get(9)?,
        payload: json(r.get(10)?),
        held: r.get(11)?,
        digest_id: r.get(12)?,
    })
}

fn rule_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertRuleRow> {
    Ok(AlertRuleRow {
        id: r.get(0)?,
        name: r.get(1)?,
        rule_type: r.get(2)?,
        condition: json(r.get(3)?),
        action: r.get(4)?,
        enabled: r.get(5)?,
        cooldown_minutes: r.get(6)?,
        last_triggered_ms: r.get(7)?,
        trigger_count: r.get(8)?,
        created_ms: r.get(9)?,
    })
}

fn delivery_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    Ok(DeliveryRow {
        id: r.get(0)?,
        alert_id: r.get(1)?,
        notifier: r.get(2)?,
        idempotency_key: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get(5)?,
        next_attempt_ms: r.get(6)?,
        last_error: r.get(7)?,
        updated_ms: r.get(8)?,
    })
}

fn pattern_by_id(c: &Connection, id: i64) -> Result<Option<PatternRow>> {
    let sql = format!("SELECT {PATTERN_COLUMNS} FROM patterns p WHERE p.id = ?1");
    Ok(c.prepare_cached(&sql)?.query_row([id], crate::sqlite::pattern_row).optional()?)
}

pub(crate) fn seed_rules(tx: &Transaction<'_>, rules: &[NewRule], now_ms: i64) -> Result<()> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO alert_rules (name, rule_type, condition, action, enabled, cooldown_minutes, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT (name) DO NOTHING",
    )?;
    for r in rules {
        insert.execute(params![
            r.name,
            r.rule_type,
            r.condition.to_string(),
            r.action,
            r.enabled,
            r.cooldown_minutes,
            now_ms
        ])?;
    }
    Ok(())
}

/// Creates (`id` None) or replaces a rule; the name check and the write share the transaction.
pub(crate) fn save_rule(
    tx: &Transaction<'_>,
    id: Option<i64>,
    r: &NewRule,
    now_ms: i64,
) -> Result<RuleSaved> {
    if let Some(id) = id {
        let exists = tx.query_row("SELECT 1 FROM alert_rules WHERE id = ?1", [id], |_| Ok(())).optional()?;
        if exists.is_none() {
            return Ok(RuleSaved::NoSuchRule);
        }
    }
    let taken: Option<i64> = tx
        .query_row(
            "SELECT id FROM alert_rules WHERE name = ?1 AND id IS NOT ?2",
            params![r.name, id],
            |row| row.get(0),
        )
        .optional()?;
    if taken.is_some() {
        return Ok(RuleSaved::NameTaken);
    }
    let condition = r.condition.to_string();
    match id {
        None => {
            tx.execute(
                "INSERT INTO alert_rules (name, rule_type, condition, action, enabled, cooldown_minutes, created_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![r.name, r.rule_type, condition, r.action, r.enabled, r.cooldown_minutes, now_ms],
            )?;
            Ok(RuleSaved::Saved(tx.last_insert_rowid()))
        }
        Some(id) => {
            let changed = tx.execute(
                "UPDATE alert_rules SET name = ?2, rule_type = ?3, condition = ?4, action = ?5, enabled = ?6,
                 cooldown_minutes = ?7 WHERE id = ?1",
                params![id, r.name, r.rule_type, condition, r.action, r.enabled, r.cooldown_minutes],
            )?;
            Ok(if changed == 0 { RuleSaved::NoSuchRule } else { RuleSaved::Saved(id) })
        }
    }
}

pub(crate) fn alert_rules(c: &Connection) -> Result<Vec<AlertRuleRow>> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id");
    let mut stmt = c.prepare_cached(&sql)?;
    Ok(stmt.query_map([], rule_row)?.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn pattern_minute_counts(
    c: &Connection,
    pattern_ids: &[i64],
    since_ms: i64,
) -> Result<Vec<MinuteCount>> {
    let ids = serde_json::Value::from(pattern_ids.to_vec()).to_string();
    let mut stmt = c.prepare_cached(&patterns_minutes_sql("IN (SELECT value FROM json_each($2))"))?;
    let rows = stmt.query_map(params![since_ms, ids], |r| {
        Ok(MinuteCount {
            pattern_id: r.get(0)?,
            minute_ms: r.get(1)?,
            count: r.get::<_, i64>(2)? as u64,
            first_ms: r.get(3)?,
            last_ms: r.get(4)?,
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Claims feed rows for `holder` until `until_ms`.
pub(crate) fn claim_feed(
    tx: &Transaction<'_>,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
    limit: u32,
) -> Result<Vec<FeedItem>> {
    let mut stmt = tx.prepare_cached(CLAIM_FEED)?;
    let rows = stmt.query_map(params![holder, until_ms, now_ms, limit], |r| {
        Ok(FeedItem {
            seq: r.get(0)?,
            touched: TouchedPattern {
                pattern_id: r.get(1)?,
                new: r.get(2)?,
                regressed: r.get(3)?,
                highest_level: faultline_core::Level::parse(&r.get::<_, String>(4)?)
                    .unwrap_or(faultline_core::Level::Error),
                status: crate::sqlite::state(r, 5)?,
            },
            committed_ms: r.get(6)?,
        })
    })?;
    let mut items = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    items.sort_by_key(|i| i.seq);
    Ok(items)
}

pub(crate) fn finish_feed(tx: &Transaction<'_>, seqs: &[i64]) -> Result<()> {
    let mut delete = tx.prepare_cached("DELETE FROM alert_feed WHERE seq = ?1")?;
    for seq in seqs {
        delete.execute([seq])?;
    }
    Ok(())
}

pub(crate) fn claim_job(
    tx: &Transaction<'_>,
    job: &str,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<bool> {
    let got: Option<String> = tx
        .prepare_cached(CLAIM_JOB)?
        .query_row(params![job, holder, until_ms, now_ms], |r| r.get(0))
        .optional()?;
    Ok(got.is_some())
}

pub(crate) fn finish_job(tx: &Transaction<'_>, job: &str, holder: &str, due_ms: i64) -> Result<()> {
    tx.prepare_cached(FINISH_JOB)?.execute(params![due_ms, job, holder])?;
    Ok(())
}

/// Records an alert, its task and its deliveries; `None` if the subject had an alert within the
/// cooldown (see [`AlertDraft`]).
pub(crate) fn fire_alert(tx: &Transaction<'_>, draft: &AlertDraft) -> Result<Option<FiredAlert>> {
    if draft.state_change
        && let Some(rule_id) = draft.rule_id
    {
        let latest: Option<String> =
            tx.prepare_cached(LATEST_SUBJECT_OF_RULE)?.query_row([rule_id], |r| r.get(0)).optional()?;
        if latest.as_deref() == Some(draft.subject.as_str()) {
            return Ok(None);
        }
    }
    if draft.cooldown_ms > 0 {
        let sql = if draft.escalation { RECENT_CRITICAL_ON_SUBJECT } else { RECENT_ON_SUBJECT };
        let recent: Option<i64> = tx
            .prepare_cached(sql)?
            .query_row(params![draft.subject, draft.now_ms - draft.cooldown_ms], |r| r.get(0))
            .optional()?;
        if recent.is_some() {
            return Ok(None);
        }
    }
    let held = match draft.flood {
        Some(limits) => {
            let (all, of_pattern): (i64, i64) = tx
                .prepare_cached(NOTIFIED_SINCE)?
                .query_row(params![draft.pattern_id, draft.now_ms - HOUR_MS], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            all >= i64::from(limits.per_hour)
                || draft.pattern_id.is_some() && of_pattern >= i64::from(limits.per_pattern_per_hour)
        }
        None => false,
    };
    let pattern = match draft.pattern_id {
        Some(id) => pattern_by_id(tx, id)?,
        None => None,
    };
    let texts = alert_texts(draft, pattern.as_ref());
    tx.prepare_cached(
        "INSERT INTO alerts (rule_id, rule_type, subject, pattern_id, fired_ms, priority, summary, reason, held)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        draft.rule_id,
        draft.rule_type,
        draft.subject,
        draft.pattern_id,
        draft.now_ms,
        draft.priority.as_str(),
        texts.summary,
        draft.reason,
        held
    ])?;
    let alert_id = tx.last_insert_rowid();
    let mut bump = tx.prepare_cached(
        "UPDATE alert_rules SET last_triggered_ms = ?1, trigger_count = trigger_count + 1 WHERE id = ?2",
    )?;
    for id in &draft.rule_ids {
        bump.execute(params![draft.now_ms, id])?;
    }
    let task = if draft.close_task {
        close_task(tx, draft, alert_id)?.map(|id| (id, false))
    } else if draft.task {
        Some(upsert_task(tx, draft, &texts, alert_id)?)
    } else {
        None
    };
    let payload = alert_payload(alert_id, draft, &texts, pattern.as_ref(), task);
    tx.prepare_cached("UPDATE alerts SET payload = ?1, task_id = ?2 WHERE id = ?3")?.execute(params![
        payload.to_string(),
        task.map(|t| t.0),
        alert_id
    ])?;
    if !held {
        add_deliveries(tx, alert_id, &draft.notifiers, draft.now_ms)?;
    }
    Ok(Some(FiredAlert {
        alert_id,
        task_id: task.map(|t| t.0),
        task_created: task.is_some_and(|t| t.1),
        held,
    }))
}

fn add_deliveries(tx: &Transaction<'_>, alert_id: i64, notifiers: &[String], now_ms: i64) -> Result<()> {
    let mut deliver = tx.prepare_cached(
        "INSERT INTO deliveries (alert_id, notifier, idempotency_key, next_attempt_ms, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, ?4, ?4)",
    )?;
    for notifier in notifiers {
        deliver.execute(params![alert_id, notifier, idempotency_key(alert_id, now_ms), now_ms])?;
    }
    Ok(())
}

/// Closes the incident's open task (a recovery); its id, if it had one.
fn close_task(tx: &Transaction<'_>, draft: &AlertDraft, alert_id: i64) -> Result<Option<i64>> {
    let subject = draft.task_subject.as_deref().unwrap_or(&draft.subject);
    let open: Option<i64> = tx
        .prepare_cached(
            "UPDATE tasks SET status = 'done', updated_ms = ?1
             WHERE subject = ?2 AND status IN ('open', 'in_progress') RETURNING id",
        )?
        .query_row(params![draft.now_ms, subject], |r| r.get(0))
        .optional()?;
    if let Some(id) = open {
        add_event(
            tx,
            id,
            draft.now_ms,
            "closed",
            &format!("alert {alert_id} ({}): {}", draft.rule_type, draft.reason),
        )?;
    }
    Ok(open)
}

/// Sums up the held alerts no digest has covered, once the oldest is `after_ms` old: one
/// alert with a delivery per notifier. `None` when there is nothing (yet) to send.
pub(crate) fn send_digest(tx: &Transaction<'_>, draft: &DigestDraft) -> Result<Option<FiredAlert>> {
    let held: Vec<HeldAlert> = tx
        .prepare_cached(HELD_ALERTS)?
        .query_map([], |r| {
            Ok(HeldAlert {
                id: r.get(0)?,
                rule_type: r.get(1)?,
                summary: r.get(2)?,
                fired_ms: r.get(3)?,
                payload: json(r.get(4)?),
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    if held.first().is_none_or(|h| h.fired_ms > draft.now_ms - draft.after_ms) {
        return Ok(None);
    }
    tx.prepare_cached(
        "INSERT INTO alerts (rule_type, subject, fired_ms, priority, summary, reason)
         VALUES ('digest', 'digest', ?1, 'medium', '', '')",
    )?
    .execute([draft.now_ms])?;
    let alert_id = tx.last_insert_rowid();
    let (summary, reason, payload) = digest_texts(alert_id, draft, &held);
    tx.prepare_cached("UPDATE alerts SET summary = ?1, reason = ?2, payload = ?3 WHERE id = ?4")?
        .execute(params![summary, reason, payload.to_string(), alert_id])?;
    let last = held.last().map_or(0, |h| h.id);
    tx.prepare_cached("UPDATE alerts SET digest_id = ?1 WHERE held AND digest_id IS NULL AND id <= ?2")?
        .execute(params![alert_id, last])?;
    add_deliveries(tx, alert_id, &draft.notifiers, draft.now_ms)?;
    Ok(Some(FiredAlert { alert_id, task_id: None, task_created: false, held: false }))
}

/// The subject's open task, updated; else (for a regression) its last task, reopened; else a
/// new task. Returns (task id, created).
fn upsert_task(
    tx: &Transaction<'_>,
    draft: &AlertDraft,
    texts: &AlertTexts,
    alert_id: i64,
) -> Result<(i64, bool)> {
    let subject = draft.task_subject.as_deref().unwrap_or(&draft.subject);
    let open: Option<i64> = tx
        .prepare_cached("SELECT id FROM tasks WHERE subject = ?1 AND status IN ('open', 'in_progress')")?
        .query_row([subject], |r| r.get(0))
        .optional()?;
    let reopen: Option<i64> = match (open, draft.reopen) {
        (None, true) => tx
            .prepare_cached("SELECT id FROM tasks WHERE subject = ?1 ORDER BY id DESC LIMIT 1")?
            .query_row([subject], |r| r.get(0))
            .optional()?,
        _ => None,
    };
    let high = draft.priority == Priority::High;
    let (id, created, kind) = match open.or(reopen) {
        Some(id) => {
            tx.prepare_cached(
                "UPDATE tasks SET status = 'open', description = ?1, metadata = ?2, alert_count = alert_count + 1,
                 priority = CASE WHEN ?3 THEN 'high' ELSE priority END, updated_ms = ?4 WHERE id = ?5",
            )?
            .execute(params![texts.task.description, texts.metadata.to_string(), high, draft.now_ms, id])?;
            (id, false, if open.is_some() { "alert" } else { "reopened" })
        }
        None => {
            tx.prepare_cached(
                "INSERT INTO tasks (subject, pattern_id, title, description, priority, metadata, alert_count,
                 created_ms, updated_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7)",
            )?
            .execute(params![
                subject,
                draft.pattern_id,
                texts.task.title,
                texts.task.description,
                draft.priority.as_str(),
                texts.metadata.to_string(),
                draft.now_ms
            ])?;
            (tx.last_insert_rowid(), true, "created")
        }
    };
    add_event(
        tx,
        id,
        draft.now_ms,
        kind,
        &format!("alert {alert_id} ({}): {}", draft.rule_type, draft.reason),
    )?;
    Ok((id, created))
}

fn add_event(c: &Connection, task_id: i64, at_ms: i64, kind: &str, detail: &str) -> Result<()> {
    c.prepare_cached("INSERT INTO task_events (task_id, at_ms, kind, detail) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![task_id, at_ms, kind, detail])?;
    Ok(())
}

pub(crate) fn alerts(c: &Connection, since_ms: i64, limit: u32) -> Result<Vec<AlertRow>> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE fired_ms >= ?1 ORDER BY fired_ms DESC, id DESC LIMIT ?2"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    Ok(stmt.query_map(params![since_ms, limit], alert_row)?.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn tasks(c: &Connection, status: Option<TaskStatus>, limit: u32) -> Result<Vec<TaskRow>> {
    let status = status.map(TaskStatus::as_str);
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN patterns p ON p.id = t.pattern_id
         WHERE ?1 IS NULL OR t.status = ?1 ORDER BY t.updated_ms DESC, t.id DESC LIMIT ?2"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    Ok(stmt.query_map(params![status, limit], task_row)?.collect::<rusqlite::Result<_>>()?)
}

pub(crate) fn task(c: &Connection, id: i64) -> Result<Option<(TaskRow, Vec<TaskEvent>)>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN patterns p ON p.id = t.pattern_id WHERE t.id = ?1"
    );
    let Some(task) = c.prepare_cached(&sql)?.query_row([id], task_row).optional()? else { return Ok(None) };
    let mut stmt =
        c.prepare_cached("SELECT at_ms, kind, detail FROM task_events WHERE task_id = ?1 ORDER BY id")?;
    let events = stmt
        .query_map([id], |r| Ok(TaskEvent { at_ms: r.get(0)?, kind: r.get(1)?, detail: r.get(2)? }))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(Some((task, events)))
}

pub(crate) fn set_task_status(
    tx: &Transaction<'_>,
    id: i64,
    status: TaskStatus,
    now_ms: i64,
) -> Result<bool> {
    let status = status.as_str();
    let old: Option<String> = tx
        .prepare_cached("SELECT status FROM tasks WHERE id = ?1")?
        .query_row([id], |r| r.get(0))
        .optional()?;
    let Some(old) = old else { return Ok(false) };
    if old == status {
        return Ok(true);
    }
    tx.prepare_cached("UPDATE tasks SET status = ?1, updated_ms = ?2 WHERE id = ?3")?
        .execute(params![status, now_ms, id])?;
    add_event(tx, id, now_ms, "status", &format!("{old} → {status}"))?;
    Ok(true)
}

/// The pattern's open task, or a new one ("Create task" on a pattern). `None` if no such pattern.
pub(crate) fn create_task(
    tx: &Transaction<'_>,
    fingerprint: &str,
    now_ms: i64,
) -> Result<Option<TaskCreated>> {
    let id: Option<i64> = tx
        .prepare_cached("SELECT id FROM patterns WHERE fingerprint = ?1")?
        .query_row([fingerprint], |r| r.get(0))
        .optional()?;
    let Some(pattern_id) = id else { return Ok(None) };
    let subject = format!("pattern:{pattern_id}");
    let open: Option<i64> = tx
        .prepare_cached("SELECT id FROM tasks WHERE subject = ?1 AND status IN ('open', 'in_progress')")?
        .query_row([&subject], |r| r.get(0))
        .optional()?;
    if let Some(id) = open {
        return Ok(Some(TaskCreated { id, created: false }));
    }
    let pattern = pattern_by_id(tx, pattern_id)?;
    let draft = manual_draft(subject, pattern_id, now_ms);
    let texts = alert_texts(&draft, pattern.as_ref());
    tx.prepare_cached(
        "INSERT INTO tasks (subject, pattern_id, title, description, priority, metadata, created_ms, updated_ms)
         VALUES (?1, ?2, ?3, ?4, 'medium', ?5, ?6, ?6)",
    )?
    .execute(params![
        draft.subject,
        pattern_id,
        texts.task.title,
        texts.task.description,
        texts.metadata.to_string(),
        now_ms
    ])?;
    let id = tx.last_insert_rowid();
    add_event(tx, id, now_ms, "created", "created by hand")?;
    Ok(Some(TaskCreated { id, created: true }))
}

/// Sets a pattern's status; resolving it closes its open task. `false` if no such pattern.
pub(crate) fn set_pattern_status(
    tx: &Transaction<'_>,
    fingerprint: &str,
    status: PatternStatus,
    now_ms: i64,
) -> Result<bool> {
    let id: Option<i64> = tx
        .prepare_cached(
            "UPDATE patterns SET status = ?1, updated_ms = ?2 WHERE fingerprint = ?3 RETURNING id",
        )?
        .query_row(params![status.as_str(), now_ms, fingerprint], |r| r.get(0))
        .optional()?;
    let Some(pattern_id) = id else { return Ok(false) };
    if status == PatternStatus::Resolved {
        let open: Option<i64> = tx
            .prepare_cached("SELECT id FROM tasks WHERE subject = ?1 AND status IN ('open', 'in_progress')")?
            .query_row([format!("pattern:{pattern_id}")], |r| r.get(0))
            .optional()?;
        if let Some(task_id) = open {
            tx.prepare_cached("UPDATE tasks SET status = 'done', updated_ms = ?1 WHERE id = ?2")?
                .execute(params![now_ms, task_id])?;
            add_event(tx, task_id, now_ms, "status", "pattern resolved → done")?;
        }
    }
    Ok(true)
}

pub(crate) fn claim_deliveries(
    tx: &Transaction<'_>,
    now_ms: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<DeliveryJob>> {
    let mut stmt = tx.prepare_cached(
        "SELECT d.id, d.alert_id, d.notifier, d.idempotency_key, d.attempts, a.subject, a.payload, r.reference
         FROM deliveries d JOIN alerts a ON a.id = d.alert_id
         LEFT JOIN notifier_refs r ON r.notifier = d.notifier AND r.subject = a.subject
         WHERE d.status = 'pending' AND d.next_attempt_ms <= ?1 AND d.lease_until_ms <= ?1
         ORDER BY d.next_attempt_ms, d.id LIMIT ?2",
    )?;
    let jobs: Vec<DeliveryJob> = stmt
        .query_map(params![now_ms, limit], |r| {
            Ok(DeliveryJob {
                id: r.get(0)?,
                alert_id: r.get(1)?,
                notifier: r.get(2)?,
                idempotency_key: r.get(3)?,
                attempts: r.get(4)?,
                subject: r.get(5)?,
                payload: json(r.get(6)?),
                reference: r.get(7)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    let mut lease = tx.prepare_cached("UPDATE deliveries SET lease_until_ms = ?1 WHERE id = ?2")?;
    for job in &jobs {
        lease.execute(params![now_ms + lease_ms, job.id])?;
    }
    Ok(jobs)
}

pub(crate) fn finish_delivery(
    tx: &Transaction<'_>,
    job: &DeliveryJob,
    result: &DeliveryResult,
    now_ms: i64,
) -> Result<()> {
    let (status, next, error, outcome) = result.columns(now_ms);
    tx.prepare_cached(
        "UPDATE deliveries SET status = ?1, attempts = attempts + 1, next_attempt_ms = ?2, lease_until_ms = 0,
         last_error = coalesce(?3, last_error), updated_ms = ?4 WHERE id = ?5",
    )?
    .execute(params![status, next, error, now_ms, job.id])?;
    tx.prepare_cached(
        "INSERT INTO delivery_attempts (delivery_id, at_ms, outcome, detail) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![job.id, now_ms, outcome, error])?;
    if let DeliveryResult::Sent { reference: Some(reference) } = result {
        tx.prepare_cached(
            "INSERT INTO notifier_refs (notifier, subject, reference) VALUES (?1, ?2, ?3)
             ON CONFLICT (notifier, subject) DO UPDATE SET reference = excluded.reference",
        )?
        .execute(params![job.notifier, job.subject, reference])?;
    }
    Ok(())
}

pub(crate) fn deliveries(c: &Connection, alert_id: Option<i64>, limit: u32) -> Result<Vec<DeliveryRow>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE ?1 IS NULL OR alert_id = ?1 ORDER BY id DESC LIMIT ?2"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    Ok(stmt.query_map(params![alert_id, limit], delivery_row)?.collect::<rusqlite::Result<_>>()?)
}
