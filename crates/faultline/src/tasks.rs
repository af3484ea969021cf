//! `faultline tasks` (list, show, set a state, create from a pattern) and
//! `faultline pattern-status`: the investigation tasks alerts create, from the command line.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Subcommand;
use faultline_core::{HOUR_MS, PatternStatus, TaskStatus};
use faultline_runtime::clock::now_ms;
use faultline_store::{FingerprintLookup, Store, TaskEvent, TaskRow, find_fingerprint};
use faultline_web::api::{AlertView, TaskDetail, TaskList, TaskView};
use serde_json::{Value, json};

use crate::output::{terminal_safe, time};

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// List tasks, most recently updated first.
    List {
        /// Only tasks in this state: open, in_progress, done, dismissed.
        #[arg(long)]
        status: Option<TaskStatus>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// One task with its description and history.
    Show {
        /// The task's number (from `tasks list`).
        id: i64,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Move a task to a state: open, in_progress, done or dismissed.
    Set {
        /// The task's number (from `tasks list`).
        id: i64,
        /// open, in_progress, done or dismissed.
        state: TaskStatus,
    },
    /// Create the investigation task for a pattern (or show its open one).
    Create {
        /// The pattern's id: its fingerprint, or any unique prefix of 8 characters or more.
        id: String,
    },
}

pub async fn run(store: Arc<dyn Store>, command: TasksCommand) -> anyhow::Result<()> {
    match command {
        TasksCommand::List { status, limit, json } => {
            let tasks = store.tasks(status, limit).await?;
            if json {
                let list = TaskList { tasks: tasks.into_iter().map(TaskView::from).collect() };
                outln!("{}", serde_json::to_string_pretty(&list)?)?;
            } else {
                out!("{}", table(&tasks))?;
            }
        }
        TasksCommand::Show { id, json } => {
            let (task, events) = store.task(id).await?.with_context(|| format!("no task {id}"))?;
            if json {
                let detail = TaskDetail {
                    task: TaskView::from(task.clone()),
                    events: events.iter().cloned().map(Into::into).collect(),
                };
                outln!("{}", serde_json::to_string_pretty(&detail)?)?;
            } else {
                out!("{}", details(&task, &events))?;
            }
        }
        TasksCommand::Set { id, state } => {
            if !store.set_task_status(id, state, now_ms()).await? {
                bail!("no task {id}");
            }
            outln!("task {id} is {state}")?;
        }
        TasksCommand::Create { id: typed } => {
            let fingerprint = pattern_id(&*store, &typed).await?;
            let faultline_store::TaskCreated { id, created } = store
                .create_task(&fingerprint, now_ms())
                .await?
                .with_context(|| format!("no pattern with id {typed:?}"))?;
            outln!("{} task {id}", if created { "created" } else { "already open:" })?;
        }
    }
    Ok(())
}

/// `faultline alerts`: recent alerts and how each delivery went (attempts, last error).
pub async fn alerts(store: Arc<dyn Store>, hours: u32, limit: u32, json_out: bool) -> anyhow::Result<()> {
    let since = now_ms() - i64::from(hours) * HOUR_MS;
    let alerts = store.alerts(since, limit).await?;
    let mut rows = Vec::with_capacity(alerts.len());
    for a in &alerts {
        let deliveries = store.deliveries(Some(a.id), 20).await?;
        rows.push((a, deliveries));
    }
    if json_out {
        // The API's alert list (`GET /api/alerts`), each alert with its deliveries besides.
        let alerts: Vec<Value> = rows
            .iter()
            .map(|(a, ds)| {
                let mut value = serde_json::to_value(AlertView::from((*a).clone())).unwrap_or_default();
                value["deliveries"] = ds
                    .iter()
                    .map(|d| {
                        json!({
                            "notifier": d.notifier,
                            "status": d.status,
                            "attempts": d.attempts,
                            "last_error": d.last_error,
                            "next_attempt": time(d.next_attempt_ms),
                        })
                    })
                    .collect();
                value
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&json!({ "alerts": alerts }))?)?;
        return Ok(());
    }
    for (a, ds) in &rows {
        outln!(
            "#{} {} {:<16} {:<6} task {}  {}",
            a.id,
            time(a.fired_ms),
            a.rule_type,
            a.priority,
            a.task_id.map_or("-".to_owned(), |t| t.to_string()),
            terminal_safe(&a.summary, 100)
        )?;
        for d in ds {
            let error = d.last_error.as_deref().map(|e| format!("  last error: {}", terminal_safe(e, 200)));
            outln!(
                "    {:<8} {:<8} {} attempt(s){}",
                d.notifier,
                d.status,
                d.attempts,
                error.unwrap_or_default()
            )?;
        }
    }
    if rows.is_empty() {
        outln!("(no alerts in the last {hours} hours)")?;
    }
    Ok(())
}

/// `faultline pattern-status FINGERPRINT STATUS`.
pub async fn set_pattern_status(
    store: Arc<dyn Store>,
    typed: &str,
    status: PatternStatus,
) -> anyhow::Result<()> {
    let fingerprint = pattern_id(&*store, typed).await?;
    if !store.set_pattern_status(&fingerprint, status, now_ms()).await? {
        bail!("no pattern with id {typed:?}");
    }
    outln!("pattern {fingerprint} is {status}")?;
    Ok(())
}

/// The whole fingerprint of the pattern a typed id (a unique prefix) names.
async fn pattern_id(store: &dyn Store, typed: &str) -> anyhow::Result<String> {
    match find_fingerprint(store, typed).await? {
        FingerprintLookup::Found(fingerprint) => Ok(fingerprint),
        other => bail!("{}", other.explain(typed)),
    }
}

fn table(tasks: &[TaskRow]) -> String {
    let mut out =
        format!("{:>5}  {:<11}  {:<6}  {:>6}  {:<24}  TITLE\n", "ID", "STATUS", "PRIO", "ALERTS", "UPDATED");
    for t in tasks {
        out.push_str(&format!(
            "{:>5}  {:<11}  {:<6}  {:>6}  {:<24}  {}\n",
            t.id,
            t.status,
            t.priority,
            t.alert_count,
            time(t.updated_ms),
            terminal_safe(&t.title, 100)
        ));
    }
    if tasks.is_empty() {
        out.push_str("(no tasks)\n");
    }
    out
}

fn details(t: &TaskRow, events: &[TaskEvent]) -> String {
    let mut out = format!(
        "Task {}: {}\nStatus: {}   Priority: {}   Type: {}   Alerts: {}\n\n",
        t.id,
        terminal_safe(&t.title, 500),
        t.status,
        t.priority,
        t.task_type,
        t.alert_count
    );
    for line in t.description.lines() {
        out.push_str(&terminal_safe(line, 1_000));
        out.push('\n');
    }
    out.push_str("\nHistory:\n");
    for e in events {
        out.push_str(&format!("  {}  {:<8}  {}\n", time(e.at_ms), e.kind, terminal_safe(&e.detail, 300)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_task_table_columns_line_up() {
        let task = TaskRow {
            id: 12,
            subject: "pattern:1".into(),
            pattern_id: Some(1),
            fingerprint: Some("ab".repeat(32)),
            task_type: "error_pattern".into(),
            title: "Investigate error: disk full".into(),
            description: String::new(),
            priority: "medium".into(),
            status: TaskStatus::InProgress,
            metadata: serde_json::Value::Null,
            alert_count: 3,
            created_ms: 1_764_460_800_000,
            updated_ms: 1_764_460_800_123,
        };
        let text = table(&[task]);
        let lines: Vec<&str> = text.lines().collect();
        for (heading, cell) in [("UPDATED", "2025-"), ("TITLE", "Investigate"), ("ALERTS", "3")] {
            let column = lines[0].find(heading).unwrap();
            let at = lines[1].find(cell).unwrap();
            let (start, end) =
                if heading == "ALERTS" { (column + heading.len() - 1, at) } else { (column, at) };
            assert_eq!(start, end, "{heading}:\n{text}");
        }
    }
}
