//! Alerts end to end, against `faultline serve` as a child process: an error line appended to
//! a tailed file or posted to `/api/ingest` becomes one task and one delivery to each notifier
//! (local fakes of a webhook receiver and Slack); concurrent batches of one new pattern make
//! one alert; a delivery cut off by a crash is made again after the restart with the same
//! idempotency key. Errors written by another process (a cron `faultline ingest`) alert too;
//! several `serve` processes on one database alert once per pattern and share the scheduled jobs.

use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_testkit::fake::{FakeHttp, Reply};

use crate::databases;
use crate::serve::{Service, TOKEN, append, base_config, start_with, stop};

fn write_config(dir: &Path, database: &str, webhook: &str) -> PathBuf {
    write_config_with(dir, database, webhook, "")
}

/// The alerting config, with `extra` TOML added (its own sections).
fn write_config_with(dir: &Path, database: &str, webhook: &str, extra: &str) -> PathBuf {
    let config = dir.join("faultline.toml");
    let text = format!(
        r#"{base}
{extra}
[alerts]
evaluate_interval = "1s"
# The test's few errors must not make the error-rate rule fire by crossing a minute boundary.
error_rate_degraded = 100.0
error_rate_fail = 500.0

[notify]
timeout = "3s"

[notify.webhook]
url = "{webhook}"
secret_env = "TEST_FAULTLINE_TOKEN"

[notify.slack]
url_env = "TEST_SLACK_URL"
"#,
        base = base_config(dir, database),
    );
    std::fs::write(&config, text).expect("config");
    config
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn now_text() -> String {
    chrono::DateTime::from_timestamp_millis(now_ms()).unwrap().format("%Y-%m-%d %H:%M:%S,%3f").to_string()
}

pub(crate) async fn post(service: &Service, body: String) {
    let response = reqwest::Client::new()
        .post(format!("http://{}/api/ingest", service.url.trim_start_matches("http://")))
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("post");
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap_or_default());
}

/// Keys of the webhook deliveries whose alert was about `template`.
fn keys_for(hook: &FakeHttp, needle: &str) -> Vec<String> {
    hook.received()
        .iter()
        .filter(|r| r.json()["pattern"]["template"].as_str().is_some_and(|t| t.contains(needle)))
        .map(|r| r.header("idempotency-key").unwrap_or("").to_owned())
        .collect()
}

async fn wait_for_keys(hook: &FakeHttp, needle: &str, n: usize, service: &Service) -> Vec<String> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let keys = keys_for(hook, needle);
        if keys.len() >= n {
            return keys;
        }
        if tokio::time::Instant::now() > deadline {
            panic!(
                "{n} webhook deliveries about {needle:?} expected, got {keys:?}\n{}",
                service.log.lock().unwrap()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn alerts_end_to_end(dir: &Path, database: &str) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let hook = FakeHttp::start(Reply::new(200, "")).await;
    let slack = FakeHttp::start(Reply::new(200, "ok")).await;
    let slack_url = slack.url("/services/T0/B0/secret");
    let config = write_config(dir, database, &hook.url("/hook"));
    let env = [("TEST_SLACK_URL", slack_url.as_str())];
    let service = start_with(dir, &config, &env);

    // A new error in a tailed file: one task, one webhook call, one Slack message.
    append(
        &dir.join("logs/app.log"),
        &format!("{} ERROR billing: ledger imbalance on account 4412\n", now_text()),
    );
    let keys = wait_for_keys(&hook, "ledger imbalance", 1, &service).await;
    let slack_texts = slack.wait_for(1, Duration::from_secs(10)).await;
    assert!(slack_texts[0].json()["text"].as_str().unwrap().contains("ledger imbalance on account"));
    let delivered = hook.received()[0].clone();
    let payload = delivered.json();
    assert_eq!(
        (payload["rule"].as_str(), payload["priority"].as_str()),
        (Some("new_fingerprint"), Some("high"))
    );
    assert_eq!(payload["task"]["created"], true);
    assert_eq!(payload["task"]["title"], "Investigate error: ledger imbalance on account <NUM>");
    assert_eq!(payload["idempotency_key"].as_str(), Some(keys[0].as_str()));
    assert!(delivered.header("x-faultline-signature").is_some_and(|s| s.starts_with("sha256=")));

    // Two batches of one new pattern at the same moment: one alert, one task.
    let record = |i: u32| {
        format!(
            "{{\"level\":\"error\",\"message\":\"inventory sync lost item {i}\",\"source\":\"sync\",\"id\":\"r{i}\"}}\n"
        )
    };
    tokio::join!(post(&service, record(1)), post(&service, record(2)), post(&service, record(3)));
    wait_for_keys(&hook, "inventory sync lost", 1, &service).await;

    // A delivery cut off by a crash: the receiver got the request and withholds its answer, so
    // faultline surely dies before it. After the restart it is delivered again with the same key.
    hook.script([Reply::new(200, "").withheld()]);
    append(&dir.join("logs/app.log"), &format!("{} CRITICAL payments: card vault unreachable\n", now_text()));
    let first = wait_for_keys(&hook, "card vault", 1, &service).await;
    let mut service = service;
    service.child.kill().expect("SIGKILL");
    service.child.wait().expect("wait");
    let service = start_with(dir, &config, &env);
    let again = wait_for_keys(&hook, "card vault", 2, &service).await;
    assert_eq!(again[0], again[1], "the redelivery carries the same idempotency key");
    assert_eq!(first[0], again[0]);
    let log = stop(service);
    assert!(
        !log.contains(TOKEN) && !log.contains("/services/T0/B0/secret"),
        "secrets stay out of the log:\n{log}"
    );

    // What the store says: one task per pattern, the critical one high priority, no duplicates.
    let store = faultline_store::open(database).await.unwrap();
    let mut tasks = store.tasks(None, 100).await.unwrap();
    tasks.sort_by_key(|t| t.id);
    let titles: Vec<(&str, &str)> = tasks.iter().map(|t| (t.title.as_str(), t.priority.as_str())).collect();
    assert_eq!(
        titles,
        [
            ("Investigate error: ledger imbalance on account <NUM>", "high"),
            ("Investigate error: inventory sync lost item <NUM>", "high"),
            ("Investigate error: card vault unreachable", "high"),
        ]
    );
    let alerts = store.alerts(0, 100).await.unwrap();
    let rules: Vec<&str> = alerts.iter().rev().map(|a| a.rule_type.as_str()).collect();
    assert_eq!(rules, ["new_fingerprint", "new_fingerprint", "critical"]);
    // Every alert went to both notifiers, once each as far as the receivers can tell.
    let deliveries = store.deliveries(None, 100).await.unwrap();
    assert_eq!(deliveries.len(), 6);
    assert!(deliveries.iter().all(|d| d.status == "sent"), "{deliveries:?}");
    let mut distinct: Vec<String> =
        hook.received().iter().map(|r| r.header("idempotency-key").unwrap().to_owned()).collect();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), 3);

    // The tasks command shows them; resolving a pattern closes its task.
    let fingerprint = tasks[0].fingerprint.clone().unwrap();
    crate::stdout(&crate::faultline(dir, database, &["pattern-status", &fingerprint, "resolved"]));
    let listed = crate::json(&crate::faultline(dir, database, &["tasks", "list", "--json"]));
    let states: Vec<(&str, &str)> = listed["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["title"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&("Investigate error: ledger imbalance on account <NUM>", "done")), "{states:?}");
    let shown = crate::stdout(&crate::faultline(dir, database, &["tasks", "show", &tasks[2].id.to_string()]));
    assert!(shown.contains("Error fingerprint: ") && shown.contains("History:"), "{shown}");
    let alerts = crate::json(&crate::faultline(dir, database, &["alerts", "--json"]));
    let delivered: Vec<(&str, &str, i64)> = alerts["alerts"][0]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (d["notifier"].as_str().unwrap(), d["status"].as_str().unwrap(), d["attempts"].as_i64().unwrap())
        })
        .collect();
    assert_eq!(
        delivered,
        [("slack", "sent", 1), ("webhook", "sent", 1)],
        "the crash cut the first attempt before it was recorded"
    );
    let bad = crate::faultline(dir, database, &["tasks", "set", &tasks[1].id.to_string(), "closed"]);
    assert!(String::from_utf8_lossy(&bad.stderr).contains("invalid task status \"closed\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_become_one_task_and_reach_every_notifier_even_across_a_crash() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        alerts_end_to_end(work.path(), &database).await;
    }
}

async fn another_process_writes_and_serve_alerts(dir: &Path, database: &str) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let hook = FakeHttp::start(Reply::new(200, "")).await;
    let slack = FakeHttp::start(Reply::new(200, "ok")).await;
    let config = write_config(dir, database, &hook.url("/hook"));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[server]\n", "[server]\npublic_url = \"https://faultline.example.com/\"\n");
    std::fs::write(&config, text).unwrap();
    let slack_url = slack.url("/services/T0/B0/secret");
    let service = start_with(dir, &config, &[("TEST_SLACK_URL", slack_url.as_str())]);

    // A cron job ingests a file into the database `serve` uses.
    let batch = dir.join("cron.log");
    std::fs::write(
        &batch,
        format!(
            "{now} ERROR reports: nightly export lost 12 rows\n{now} CRITICAL reports: archive volume is read-only\n",
            now = now_text()
        ),
    )
    .unwrap();
    let ingested = crate::faultline(dir, database, &["ingest", batch.to_str().unwrap()]);
    assert!(ingested.status.success(), "{}", String::from_utf8_lossy(&ingested.stderr));
    wait_for_keys(&hook, "nightly export lost", 1, &service).await;
    wait_for_keys(&hook, "archive volume", 1, &service).await;
    let critical = hook
        .received()
        .into_iter()
        .map(|r| r.json())
        .find(|p| p["pattern"]["template"].as_str().is_some_and(|t| t.contains("archive volume")))
        .unwrap();
    assert_eq!(critical["rule"], "critical");
    let fingerprint = critical["pattern"]["fingerprint"].as_str().unwrap();
    assert_eq!(
        critical["links"]["pattern"].as_str(),
        Some(format!("https://faultline.example.com/patterns/{}", &fingerprint[..16]).as_str()),
        "notifications link back to the pattern page"
    );
    let task = critical["task"]["id"].as_i64().unwrap();
    assert_eq!(
        critical["links"]["task"].as_str(),
        Some(format!("https://faultline.example.com/tasks?highlight={task}#task-{task}").as_str())
    );
    let texts = slack.wait_for(2, Duration::from_secs(10)).await;
    let text: Vec<String> =
        texts.iter().map(|r| r.json()["text"].as_str().unwrap_or("").to_owned()).collect();
    let text = text.join("\n");
    assert!(
        text.contains(&format!("Pattern: {}", &fingerprint[..16])),
        "short id, not 64 characters: {text}"
    );
    assert!(!text.contains(fingerprint), "{text}");
    assert!(text.contains("https://faultline.example.com/patterns/"), "{text}");
    stop(service);
    let store = faultline_store::open(database).await.unwrap();
    assert_eq!(store.tasks(None, 10).await.unwrap().len(), 2, "one task per new pattern");
}

#[tokio::test(flavor = "multi_thread")]
async fn regression_18_errors_stored_by_another_process_alert() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        another_process_writes_and_serve_alerts(work.path(), &database).await;
    }
}

/// Three `serve` processes on one PostgreSQL database: a pattern sent to all of them at once
/// alerts once; each scheduled job runs once per interval across them, and goes on when the
/// instance that ran it last is killed.
#[tokio::test(flavor = "multi_thread")]
async fn instances_on_one_database_alert_once_and_share_the_jobs() {
    let Some(database) = faultline_testkit::fresh_postgres_url().await else { return };
    let hook = FakeHttp::start(Reply::new(200, "")).await;
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let schedule = "[schedule]\ncollect = \"1s\"\nerror_rate_check = \"1s\"\npattern_detection = \"1s\"\nretention = \"1h\"\n";
    let mut services: Vec<Service> = dirs
        .iter()
        .map(|d| {
            std::fs::create_dir_all(d.path().join("logs")).unwrap();
            let config = write_config_with(d.path(), &database, &hook.url("/hook"), schedule);
            start_with(d.path(), &config, &[("TEST_SLACK_URL", "http://127.0.0.1:9/unused")])
        })
        .collect();
    let record = |i: usize| {
        format!(
            "{{\"level\":\"error\",\"message\":\"replica {i} lag above threshold\",\"source\":\"db\",\"id\":\"i{i}\"}}\n"
        )
    };
    tokio::join!(post(&services[0], record(1)), post(&services[1], record(2)), post(&services[2], record(3)));
    wait_for_keys(&hook, "lag above threshold", 1, &services[0]).await;

    let store = faultline_store::open(&database).await.unwrap();
    let started = now_ms();
    tokio::time::sleep(Duration::from_secs(6)).await;
    // Kill the instance that ran the latest error-rate check; the others go on with it.
    let runs = store.job_runs(Some("error_rate_check"), 100).await.unwrap();
    let latest = runs[0].run.instance.clone();
    let pid = latest.split(':').nth(1).unwrap().parse::<u32>().unwrap();
    let killed = services.iter().position(|s| s.child.id() == pid).expect("one of ours ran it");
    services[killed].child.kill().unwrap();
    services[killed].child.wait().unwrap();
    let killed_at = now_ms();
    tokio::time::sleep(Duration::from_secs(5)).await;

    let alerts = store.alerts(0, 100).await.unwrap();
    let about_lag = alerts.iter().filter(|a| a.summary.contains("lag above threshold")).count();
    assert_eq!(about_lag, 1, "one alert for the pattern, from whichever instance: {alerts:?}");
    assert_eq!(keys_for(&hook, "lag above threshold").len(), 1, "one notification");
    let runs = store.job_runs(Some("error_rate_check"), 1000).await.unwrap();
    let mut starts: Vec<i64> = runs.iter().map(|r| r.run.started_ms).filter(|t| *t >= started).collect();
    starts.sort();
    let seconds = (now_ms() - started) as f64 / 1000.0;
    assert!(
        (starts.len() as f64) <= seconds * 1.25 + 1.0,
        "{} runs in {seconds:.1} s with a 1 s interval: run once per interval, not per instance",
        starts.len()
    );
    assert!(starts.len() as f64 >= seconds * 0.5, "{} runs in {seconds:.1} s", starts.len());
    let after: Vec<&str> = runs
        .iter()
        .filter(|r| r.run.started_ms > killed_at + 1_000)
        .map(|r| r.run.instance.as_str())
        .collect();
    assert!(after.len() >= 2 && !after.contains(&latest.as_str()), "the survivors go on: {after:?}");
    let instances: std::collections::BTreeSet<&str> = runs.iter().map(|r| r.run.instance.as_str()).collect();
    assert!(instances.len() >= 2, "run records say which instance ran each: {instances:?}");
    for s in services.drain(..) {
        if s.child.id() != pid {
            stop(s);
        }
    }
}

async fn a_flood_makes_every_task_and_one_digest(dir: &Path, database: &str) {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let hook = FakeHttp::start(Reply::new(200, "")).await;
    let config = write_config(dir, database, &hook.url("/hook"));
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[alerts]\n", "[alerts]\nmax_per_hour = 2\ndigest_after = \"2s\"\n");
    std::fs::write(&config, text).unwrap();
    let service = start_with(dir, &config, &[("TEST_SLACK_URL", "http://127.0.0.1:9/unused")]);
    let areas = ["billing", "search", "uploads", "mailer", "sessions"];
    let body: String = areas
        .iter()
        .enumerate()
        .map(|(i, area)| {
            format!("{{\"level\":\"error\",\"message\":\"{area} backend refused the call\",\"source\":\"{area}\",\"id\":\"d{i}\"}}\n")
        })
        .collect();
    post(&service, body).await;
    // Two alerts are notified; the other three wait for the digest, which names them.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let digest = loop {
        let got = hook.received().into_iter().map(|r| r.json()).find(|p| p["rule"] == "digest");
        if let Some(d) = got {
            break d;
        }
        assert!(tokio::time::Instant::now() < deadline, "no digest:\n{}", service.log.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(digest["held_count"], 3, "{digest}");
    let listed = digest["held"].as_array().unwrap().len();
    assert_eq!(listed, 3);
    let notified: Vec<serde_json::Value> =
        hook.received().into_iter().map(|r| r.json()).filter(|p| p["rule"] == "new_fingerprint").collect();
    assert_eq!(notified.len(), 2, "past the limit, notifications wait for the digest");
    stop(service);
    let store = faultline_store::open(database).await.unwrap();
    assert_eq!(store.tasks(None, 10).await.unwrap().len(), 5, "every new pattern has its task");
    let held = store.alerts(0, 100).await.unwrap().into_iter().filter(|a| a.held).count();
    assert_eq!(held, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn regression_18_a_flood_makes_every_task_and_one_digest() {
    let db_dir = tempfile::tempdir().expect("tempdir");
    for database in databases(db_dir.path()).await {
        let work = tempfile::tempdir().expect("tempdir");
        a_flood_makes_every_task_and_one_digest(work.path(), &database).await;
    }
}
