//! The PostgreSQL side of alerts, tasks and the notification outbox.
//!
//! Several instances may share the database: an alert takes a row lock on its rule before
//! checking the cooldown, the partial unique index `tasks_one_open` keeps one open task per
//! subject, and deliveries are leased with `FOR UPDATE SKIP LOCKED`.

use faultline_core::alert::Priority;
use faultline_core::{HOUR_MS, PatternStatus, TaskStatus, UnknownState};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::Result;
use crate::sql::*;
use crate::types::*;

type Tx<'a> = Transaction<'a, Postgres>;

/// id, alert id, notifier, idempotency key, attempts, subject, payload, reference.
type ClaimedRow = (i64, i64, String, String, i32, String, String, Option<String>);

fn json(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

pub(crate) fn task_row(r: &PgRow) -> Result<TaskRow, sqlx::Error> {
    Ok(TaskRow {
        id: r.try_get(0)?,
        subject: r.try_get(1)?,
        pattern_id: r.try_get(2)?,
        fingerprint: r.try_get(3)?,
        task_type: r.try_get(4)?,
        title: r.try_get(5)?,
        description: r.try_get(6)?,
        priority: r.try_get(7)?,
        status: crate::postgres::state(r, 8)?,
        metadata: json(r.try_get(9)?),
        alert_count: r.try_get::<i32, _>(10)?.into(),
        created_ms: r.try_get(11)?,
        updated_ms: r.try_get(12)?,
    })
}

fn alert_row(r: &PgRow) -> Result<AlertRow, sqlx::Error> {
    Ok(AlertRow {
        id: r.try_get(0)?,
        rule_id: r.try_get(1)?,
        rule_type: r.try_get(2)?,
        subject: r.try_get(3)?,
        pattern_id: r.try_get(4)?,
        fired_ms: r.try_get(5)?,
        priority: r.try_get(6)?,
        summary: r.try_get(7)?,
        reason: r.try_get(8)?,
        task_id: r.try_get(9)?,
        payload: json(r.try_get(10)?),
        held: r.try_get(11)?,
        digest_id: r.try_get(12)?,
    })
}

fn rule_row(r: &PgRow) -> Result<AlertRuleRow, sqlx::Error> {
    Ok(AlertRuleRow {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        rule_type: r.try_get(2)?,
        condition: r.try_get(3)?,
        action: r.try_get(4)?,
        enabled: r.try_get(5)?,
        cooldown_minutes: r.try_get::<i32, _>(6)?.into(),
        last_triggered_ms: r.try_get(7)?,
        trigger_count: r.try_get::<i32, _>(8)?.into(),
        created_ms: r.try_get(9)?,
    })
}

fn delivery_row(r: &PgRow) -> Result<DeliveryRow, sqlx::Error> {
    Ok(DeliveryRow {
        id: r.try_get(0)?,
        alert_id: r.try_get(1)?,
        notifier: r.try_get(2)?,
        idempotency_key: r.try_get(3)?,
        status: r.try_get(4)?,
        attempts: r.try_get::<i32, _>(5)?.into(),
        next_attempt_ms: r.try_get(6)?,
        last_error: r.try_get(7)?,
        updated_ms: r.try_get(8)?,
    })
}

async fn pattern_by_id(tx: &mut Tx<'_>, id: i64) -> Result<Option<PatternRow>> {
    let sql = format!("SELECT {PATTERN_COLUMNS} FROM patterns p WHERE p.id = $1");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **tx).await?;
    Ok(row.as_ref().map(crate::postgres::pattern_row).transpose()?)
}

async fn open_task(tx: &mut Tx<'_>, subject: &str) -> Result<Option<i64>> {
    Ok(sqlx::query_scalar("SELECT id FROM tasks WHERE subject = $1 AND status IN ('open', 'in_progress')")
        .bind(subject)
        .fetch_optional(&mut **tx)
        .await?)
}

async fn add_event(tx: &mut Tx<'_>, task_id: i64, at_ms: i64, kind: &str, detail: &str) -> Result<()> {
    sqlx::query("INSERT INTO task_events (task_id, at_ms, kind, detail) VALUES ($1, $2, $3, $4)")
        .bind(task_id)
        .bind(at_ms)
        .bind(kind)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) async fn seed_rules(pool: &PgPool, rules: &[NewRule], now_ms: i64) -> Result<()> {
    for r in rules {
        sqlx::query(
            "INSERT INTO alert_rules (name, rule_type, condition, action, enabled, cooldown_minutes, created_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&r.name)
        .bind(&r.rule_type)
        .bind(&r.condition)
        .bind(&r.action)
        .bind(r.enabled)
        .bind(r.cooldown_minutes as i32)
        .bind(now_ms)
        .execute(pool)
        .await?;
    }
    Ok(())
}

/// Creates (`id` None) or replaces a rule. A name taken meanwhile by another instance is
/// caught by the unique index.
pub(crate) async fn save_rule(pool: &PgPool, id: Option<i64>, r: &NewRule, now_ms: i64) -> Result<RuleSaved> {
    let result = match id {
        None => {
            sqlx::query_scalar::<_, i64>(
                "INSERT INTO alert_rules (name, rule_type, condition, action, enabled, cooldown_minutes, created_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
            )
            .bind(&r.name)
            .bind(&r.rule_type)
            .bind(&r.condition)
            .bind(&r.action)
            .bind(r.enabled)
            .bind(r.cooldown_minutes as i32)
            .bind(now_ms)
            .fetch_optional(pool)
            .await
        }
        Some(id) => {
            sqlx::query_scalar::<_, i64>(
                "UPDATE alert_rules SET name = $2, rule_type = $3, condition = $4, action = $5, enabled = $6,
                 cooldown_minutes = $7 WHERE id = $1 RETURNING id",
            )
            .bind(id)
            .bind(&r.name)
            .bind(&r.rule_type)
            .bind(&r.condition)
            .bind(&r.action)
            .bind(r.enabled)
            .bind(r.cooldown_minutes as i32)
            .fetch_optional(pool)
            .await
        }
    };
    match result {
        Ok(Some(id)) => Ok(RuleSaved::Saved(id)),
        Ok(None) => Ok(RuleSaved::NoSuchRule),
        Err(sqlx::Error::Database(e)) if e.is_unique_violation() => Ok(RuleSaved::NameTaken),
        Err(e) => Err(e.into()),
    }
}

pub(crate) async fn alert_rules(pool: &PgPool) -> Result<Vec<AlertRuleRow>> {
    let sql = format!("SELECT {RULE_COLUMNS} FROM alert_rules ORDER BY id");
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(pool).await?;
    Ok(rows.iter().map(rule_row).collect::<Result<_, _>>()?)
}

pub(crate) async fn pattern_minute_counts(
    pool: &PgPool,
    pattern_ids: &[i64],
    since_ms: i64,
) -> Result<Vec<MinuteCount>> {
    let sql = patterns_minutes_sql("= ANY($2)");
    let rows: Vec<(i64, i64, i64, i64, i64)> =
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(since_ms).bind(pattern_ids).fetch_all(pool).await?;
    Ok(rows
        .into_iter()
        .map(|(pattern_id, minute_ms, count, first_ms, last_ms)| MinuteCount {
            pattern_id,
            minute_ms,
            count: count as u64,
            first_ms,
            last_ms,
        })
        .collect())
}

/// Serialises alert recording across instances (a transaction-scoped advisory lock), so the
/// cooldown and flood checks see every alert committed before.
const ALERTS_LOCK: i64 = 0x6661_756c_746c_696e; // "faultlin"

pub(crate) async fn fire_alert(pool: &PgPool, draft: &AlertDraft) -> Result<Option<FiredAlert>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ALERTS_LOCK).execute(&mut *tx).await?;
    if draft.state_change
        && let Some(rule_id) = draft.rule_id
    {
        let latest: Option<String> =
            sqlx::query_scalar(LATEST_SUBJECT_OF_RULE).bind(rule_id).fetch_optional(&mut *tx).await?;
        if latest.as_deref() == Some(draft.subject.as_str()) {
            return Ok(None);
        }
    }
    if draft.cooldown_ms > 0 {
        let sql = if draft.escalation { RECENT_CRITICAL_ON_SUBJECT } else { RECENT_ON_SUBJECT };
        let recent: Option<i64> = sqlx::query_scalar(sql)
            .bind(&draft.subject)
            .bind(draft.now_ms - draft.cooldown_ms)
            .fetch_optional(&mut *tx)
            .await?;
        if recent.is_some() {
            return Ok(None);
        }
    }
    let held = match draft.flood {
        Some(limits) => {
            let (all, of_pattern): (i64, i64) = sqlx::query_as(NOTIFIED_SINCE)
                .bind(draft.pattern_id)
                .bind(draft.now_ms - HOUR_MS)
                .fetch_one(&mut *tx)
                .await?;
            all >= i64::from(limits.per_hour)
                || draft.pattern_id.is_some() && of_pattern >= i64::from(limits.per_pattern_per_hour)
        }
        None => false,
    };
    let pattern = match draft.pattern_id {
        Some(id) => pattern_by_id(&mut tx, id).await?,
        None => None,
    };
    let texts = alert_texts(draft, pattern.as_ref());
    let alert_id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (rule_id, rule_type, subject, pattern_id, fired_ms, priority, summary, reason, held)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
    )
    .bind(draft.rule_id)
    .bind(&draft.rule_type)
    .bind(&draft.subject)
    .bind(draft.pattern_id)
    .bind(draft.now_ms)
    .bind(draft.priority.as_str())
    .bind(&texts.summary)
    .bind(&draft.reason)
    .bind(held)
    .fetch_one(&mut *tx)
    .await?;
    for id in &draft.rule_ids {
        sqlx::query(
            "UPDATE alert_rules SET last_triggered_ms = $1, trigger_count = trigger_count + 1 WHERE id = $2",
        )
        .bind(draft.now_ms)
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    let task = if draft.close_task {
        close_task(&mut tx, draft, alert_id).await?.map(|id| (id, false))
    } else if draft.task {
        Some(upsert_task(&mut tx, draft, &texts, alert_id).await?)
    } else {
        None
    };
    let payload = alert_payload(alert_id, draft, &texts, pattern.as_ref(), task);
    sqlx::query("UPDATE alerts SET payload = $1, task_id = $2 WHERE id = $3")
        .bind(payload.to_string())
        .bind(task.map(|t| t.0))
        .bind(alert_id)
        .execute(&mut *tx)
        .await?;
    if !held {
        add_deliveries(&mut tx, alert_id, &draft.notifiers, draft.now_ms).await?;
    }
    tx.commit().await?;
    Ok(Some(FiredAlert {
        alert_id,
        task_id: task.map(|t| t.0),
        task_created: task.is_some_and(|t| t.1),
        held,
    }))
}

async fn add_deliveries(tx: &mut Tx<'_>, alert_id: i64, notifiers: &[String], now_ms: i64) -> Result<()> {
    for notifier in notifiers {
        sqlx::query(
            "INSERT INTO deliveries (alert_id, notifier, idempotency_key, next_attempt_ms, created_ms, updated_ms)
             VALUES ($1, $2, $3, $4, $4, $4)",
        )
        .bind(alert_id)
        .bind(notifier)
        .bind(idempotency_key(alert_id, now_ms))
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Closes the incident's open task (a recovery); its id, if it had one.
async fn close_task(tx: &mut Tx<'_>, draft: &AlertDraft, alert_id: i64) -> Result<Option<i64>> {
    let subject = draft.task_subject.as_deref().unwrap_or(&draft.subject);
    let open: Option<i64> = sqlx::query_scalar(
        "UPDATE tasks SET status = 'done', updated_ms = $1
         WHERE subject = $2 AND status IN ('open', 'in_progress') RETURNING id",
    )
    .bind(draft.now_ms)
    .bind(subject)
    .fetch_optional(&mut **tx)
    .await?;
    if let Some(id) = open {
        let detail = format!("alert {alert_id} ({}): {}", draft.rule_type, draft.reason);
        add_event(tx, id, draft.now_ms, "closed", &detail).await?;
    }
    Ok(open)
}

/// Sums up the held alerts no digest has covered, once the oldest is `after_ms` old.
pub(crate) async fn send_digest(pool: &PgPool, draft: &DigestDraft) -> Result<Option<FiredAlert>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ALERTS_LOCK).execute(&mut *tx).await?;
    let rows: Vec<(i64, String, String, i64, String)> =
        sqlx::query_as(HELD_ALERTS).fetch_all(&mut *tx).await?;
    let held: Vec<HeldAlert> = rows
        .into_iter()
        .map(|(id, rule_type, summary, fired_ms, payload)| HeldAlert {
            id,
            rule_type,
            summary,
            fired_ms,
            payload: serde_json::from_str(&payload).unwrap_or_default(),
        })
        .collect();
    if held.first().is_none_or(|h| h.fired_ms > draft.now_ms - draft.after_ms) {
        return Ok(None);
    }
    let alert_id: i64 = sqlx::query_scalar(
        "INSERT INTO alerts (rule_type, subject, fired_ms, priority, summary, reason)
         VALUES ('digest', 'digest', $1, 'medium', '', '') RETURNING id",
    )
    .bind(draft.now_ms)
    .fetch_one(&mut *tx)
    .await?;
    let (summary, reason, payload) = digest_texts(alert_id, draft, &held);
    sqlx::query("UPDATE alerts SET summary = $1, reason = $2, payload = $3 WHERE id = $4")
        .bind(summary)
        .bind(reason)
        .bind(payload.to_string())
        .bind(alert_id)
        .execute(&mut *tx)
        .await?;
    let last = held.last().map_or(0, |h| h.id);
    sqlx::query("UPDATE alerts SET digest_id = $1 WHERE held AND digest_id IS NULL AND id <= $2")
        .bind(alert_id)
        .bind(last)
        .execute(&mut *tx)
        .await?;
    add_deliveries(&mut tx, alert_id, &draft.notifiers, draft.now_ms).await?;
    tx.commit().await?;
    Ok(Some(FiredAlert { alert_id, task_id: None, task_created: false, held: false }))
}

pub(crate) async fn claim_feed(
    pool: &PgPool,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
    limit: u32,
) -> Result<Vec<FeedItem>> {
    let rows: Vec<(i64, i64, bool, bool, String, String, i64)> = sqlx::query_as(CLAIM_FEED_PG)
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await?;
    let mut items = Vec::with_capacity(rows.len());
    for (seq, pattern_id, new, regressed, level, status, committed_ms) in rows {
        items.push(FeedItem {
            seq,
            touched: TouchedPattern {
                pattern_id,
                new,
                regressed,
                highest_level: faultline_core::Level::parse(&level).unwrap_or(faultline_core::Level::Error),
                status: status.parse().map_err(|e: UnknownState| sqlx::Error::Decode(Box::new(e)))?,
            },
            committed_ms,
        });
    }
    items.sort_by_key(|i| i.seq);
    Ok(items)
}

pub(crate) async fn finish_feed(pool: &PgPool, seqs: &[i64]) -> Result<()> {
    sqlx::query("DELETE FROM alert_feed WHERE seq = ANY($1)").bind(seqs).execute(pool).await?;
    Ok(())
}

pub(crate) async fn claim_job(
    pool: &PgPool,
    job: &str,
    holder: &str,
    now_ms: i64,
    until_ms: i64,
) -> Result<bool> {
    let got: Option<String> = sqlx::query_scalar(CLAIM_JOB)
        .bind(job)
        .bind(holder)
        .bind(until_ms)
        .bind(now_ms)
        .fetch_optional(pool)
        .await?;
    Ok(got.is_some())
}

pub(crate) async fn finish_job(pool: &PgPool, job: &str, holder: &str, due_ms: i64) -> Result<()> {
    sqlx::query(FINISH_JOB).bind(due_ms).bind(job).bind(holder).execute(pool).await?;
    Ok(())
}

async fn upsert_task(
    tx: &mut Tx<'_>,
    draft: &AlertDraft,
    texts: &AlertTexts,
    alert_id: i64,
) -> Result<(i64, bool)> {
    let high = draft.priority == Priority::High;
    let detail = format!("alert {alert_id} ({}): {}", draft.rule_type, draft.reason);
    let subject = draft.task_subject.as_deref().unwrap_or(&draft.subject);
    loop {
        let open = open_task(tx, subject).await?;
        let reopen: Option<i64> = match (open, draft.reopen) {
            (None, true) => {
                sqlx::query_scalar("SELECT id FROM tasks WHERE subject = $1 ORDER BY id DESC LIMIT 1")
                    .bind(subject)
                    .fetch_optional(&mut **tx)
                    .await?
            }
            _ => None,
        };
        if let Some(id) = open.or(reopen) {
            sqlx::query(
                "UPDATE tasks SET status = 'open', description = $1, metadata = $2, alert_count = alert_count + 1,
                 priority = CASE WHEN $3 THEN 'high' ELSE priority END, updated_ms = $4 WHERE id = $5",
            )
            .bind(&texts.task.description)
            .bind(texts.metadata.to_string())
            .bind(high)
            .bind(draft.now_ms)
            .bind(id)
            .execute(&mut **tx)
            .await?;
            add_event(tx, id, draft.now_ms, if open.is_some() { "alert" } else { "reopened" }, &detail)
                .await?;
            return Ok((id, false));
        }
        let inserted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO tasks (subject, pattern_id, title, description, priority, metadata, alert_count,
             created_ms, updated_ms) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $7)
             ON CONFLICT (subject) WHERE status IN ('open', 'in_progress') DO NOTHING RETURNING id",
        )
        .bind(subject)
        .bind(draft.pattern_id)
        .bind(&texts.task.title)
        .bind(&texts.task.description)
        .bind(draft.priority.as_str())
        .bind(texts.metadata.to_string())
        .bind(draft.now_ms)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some(id) = inserted {
            add_event(tx, id, draft.now_ms, "created", &detail).await?;
            return Ok((id, true));
        }
        // Another instance opened the task meanwhile: update that one.
    }
}

pub(crate) async fn alerts(pool: &PgPool, since_ms: i64, limit: u32) -> Result<Vec<AlertRow>> {
    let sql = format!(
        "SELECT {ALERT_COLUMNS} FROM alerts WHERE fired_ms >= $1 ORDER BY fired_ms DESC, id DESC LIMIT $2"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(since_ms).bind(i64::from(limit)).fetch_all(pool).await?;
    Ok(rows.iter().map(alert_row).collect::<Result<_, _>>()?)
}

pub(crate) async fn tasks(pool: &PgPool, status: Option<TaskStatus>, limit: u32) -> Result<Vec<TaskRow>> {
    let status = status.map(TaskStatus::as_str);
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN patterns p ON p.id = t.pattern_id
         WHERE $1::text IS NULL OR t.status = $1 ORDER BY t.updated_ms DESC, t.id DESC LIMIT $2"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(status).bind(i64::from(limit)).fetch_all(pool).await?;
    Ok(rows.iter().map(task_row).collect::<Result<_, _>>()?)
}

pub(crate) async fn task(pool: &PgPool, id: i64) -> Result<Option<(TaskRow, Vec<TaskEvent>)>> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks t LEFT JOIN patterns p ON p.id = t.pattern_id WHERE t.id = $1"
    );
    let Some(row) = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(pool).await? else {
        return Ok(None);
    };
    let events: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT at_ms, kind, detail FROM task_events WHERE task_id = $1 ORDER BY id")
            .bind(id)
            .fetch_all(pool)
            .await?;
    let events = events.into_iter().map(|(at_ms, kind, detail)| TaskEvent { at_ms, kind, detail }).collect();
    Ok(Some((task_row(&row)?, events)))
}

pub(crate) async fn set_task_status(pool: &PgPool, id: i64, status: TaskStatus, now_ms: i64) -> Result<bool> {
    let status = status.as_str();
    let mut tx = pool.begin().await?;
    let old: Option<String> = sqlx::query_scalar("SELECT status FROM tasks WHERE id = $1 FOR UPDATE")
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(old) = old else { return Ok(false) };
    if old != status {
        sqlx::query("UPDATE tasks SET status = $1, updated_ms = $2 WHERE id = $3")
            .bind(status)
            .bind(now_ms)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        add_event(&mut tx, id, now_ms, "status", &format!("{old} → {status}")).await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn create_task(
    pool: &PgPool,
    fingerprint: &str,
    now_ms: i64,
) -> Result<Option<TaskCreated>> {
    let mut tx = pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM patterns WHERE fingerprint = $1")
        .bind(fingerprint)
        .fetch_optional(&mut *tx)
        .await?;
    let Some(pattern_id) = id else { return Ok(None) };
    let subject = format!("pattern:{pattern_id}");
    if let Some(id) = open_task(&mut tx, &subject).await? {
        return Ok(Some(TaskCreated { id, created: false }));
    }
    let pattern = pattern_by_id(&mut tx, pattern_id).await?;
    let draft = manual_draft(subject, pattern_id, now_ms);
    let texts = alert_texts(&draft, pattern.as_ref());
    let inserted: Option<i64> = sqlx::query_scalar(
        "INSERT INTO tasks (subject, pattern_id, title, description, priority, metadata, created_ms, updated_ms)
         VALUES ($1, $2, $3, $4, 'medium', $5, $6, $6)
         ON CONFLICT (subject) WHERE status IN ('open', 'in_progress') DO NOTHING RETURNING id",
    )
    .bind(&draft.subject)
    .bind(pattern_id)
    .bind(&texts.task.title)
    .bind(&texts.task.description)
    .bind(texts.metadata.to_string())
    .bind(now_ms)
    .fetch_optional(&mut *tx)
    .await?;
    let result = match inserted {
        Some(id) => {
            add_event(&mut tx, id, now_ms, "created", "created by hand").await?;
            TaskCreated { id, created: true }
        }
        None => {
            TaskCreated { id: open_task(&mut tx, &draft.subject).await?.unwrap_or_default(), created: false }
        }
    };
    tx.commit().await?;
    Ok(Some(result))
}

pub(crate) async fn set_pattern_status(
    pool: &PgPool,
    fingerprint: &str,
    status: PatternStatus,
    now_ms: i64,
) -> Result<bool> {
    let mut tx = pool.begin().await?;
    let id: Option<i64> = sqlx::query_scalar(
        "UPDATE patterns SET status = $1, updated_ms = $2 WHERE fingerprint = $3 RETURNING id",
    )
    .bind(status.as_str())
    .bind(now_ms)
    .bind(fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(pattern_id) = id else { return Ok(false) };
    if status == PatternStatus::Resolved
        && let Some(task_id) = open_task(&mut tx, &format!("pattern:{pattern_id}")).await?
    {
        sqlx::query("UPDATE tasks SET status = 'done', updated_ms = $1 WHERE id = $2")
            .bind(now_ms)
            .bind(task_id)
            .execute(&mut *tx)
            .await?;
        add_event(&mut tx, task_id, now_ms, "status", "pattern resolved → done").await?;
    }
    tx.commit().await?;
    Ok(true)
}

pub(crate) async fn claim_deliveries(
    pool: &PgPool,
    now_ms: i64,
    lease_ms: i64,
    limit: u32,
) -> Result<Vec<DeliveryJob>> {
    let rows: Vec<ClaimedRow> = sqlx::query_as(
        "WITH due AS (
             SELECT id FROM deliveries
             WHERE status = 'pending' AND next_attempt_ms <= $1 AND lease_until_ms <= $1
             ORDER BY next_attempt_ms, id LIMIT $2 FOR UPDATE SKIP LOCKED)
         UPDATE deliveries d SET lease_until_ms = $1 + $3 FROM due WHERE d.id = due.id
         RETURNING d.id, d.alert_id, d.notifier, d.idempotency_key, d.attempts,
             (SELECT subject FROM alerts a WHERE a.id = d.alert_id),
             (SELECT payload FROM alerts a WHERE a.id = d.alert_id),
             (SELECT r.reference FROM notifier_refs r JOIN alerts a ON a.id = d.alert_id
              WHERE r.notifier = d.notifier AND r.subject = a.subject)",
    )
    .bind(now_ms)
    .bind(i64::from(limit))
    .bind(lease_ms)
    .fetch_all(pool)
    .await?;
    let mut jobs: Vec<DeliveryJob> = rows
        .into_iter()
        .map(|(id, alert_id, notifier, idempotency_key, attempts, subject, payload, reference)| DeliveryJob {
            id,
            alert_id,
            notifier,
            idempotency_key,
            attempts: attempts.into(),
            subject,
            payload: json(payload),
            reference,
        })
        .collect();
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

pub(crate) async fn finish_delivery(
    pool: &PgPool,
    job: &DeliveryJob,
    result: &DeliveryResult,
    now_ms: i64,
) -> Result<()> {
    let (status, next, error, outcome) = result.columns(now_ms);
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE deliveries SET status = $1, attempts = attempts + 1, next_attempt_ms = $2, lease_until_ms = 0,
         last_error = coalesce($3, last_error), updated_ms = $4 WHERE id = $5",
    )
    .bind(status)
    .bind(next)
    .bind(error)
    .bind(now_ms)
    .bind(job.id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO delivery_attempts (delivery_id, at_ms, outcome, detail) VALUES ($1, $2, $3, $4)",
    )
    .bind(job.id)
    .bind(now_ms)
    .bind(outcome)
    .bind(error)
    .execute(&mut *tx)
    .await?;
    if let DeliveryResult::Sent { reference: Some(reference) } = result {
        sqlx::query(
            "INSERT INTO notifier_refs (notifier, subject, reference) VALUES ($1, $2, $3)
             ON CONFLICT (notifier, subject) DO UPDATE SET reference = excluded.reference",
        )
        .bind(&job.notifier)
        .bind(&job.subject)
        .bind(reference)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}

pub(crate) async fn deliveries(pool: &PgPool, alert_id: Option<i64>, limit: u32) -> Result<Vec<DeliveryRow>> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE $1::bigint IS NULL OR alert_id = $1 ORDER BY id DESC LIMIT $2"
    );
    let rows =
        sqlx::query(sqlx::AssertSqlSafe(sql)).bind(alert_id).bind(i64::from(limit)).fetch_all(pool).await?;
    Ok(rows.iter().map(delivery_row).collect::<Result<_, _>>()?)
}
