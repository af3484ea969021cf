//! Alerts end to end, against `faultline serve` as a child process: an error line appended to
//! a tailed file or posted to `/api/ingest` becomes one task and one delivery to each notifier
//! (local fakes of a webhook receiver and Slack); concurrent batches of one new pattern make
//! one alert; a delivery cut off by a crash is made again after the restart with the same
//! idempotency key.

use std::path::{Path, PathBuf};
use std::time::Duration;

use faultline_testkit::fake::{FakeHttp, Reply};

use crate::databases;
use crate::serve::{Service, TOKEN, append, base_config, start_with, stop};

fn write_config(dir: &Path, database: &str, webhook: &str) -> PathBuf {
    let config = dir.join("faultline.toml");
    let text = format!(
        r#"{base}
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

fn now_text() -> String {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%d %H:%M:%S,%3f").to_string()
}

async fn post(service: &Service, body: String) {
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

    // A delivery cut off by a crash: the receiver got the request, faultline died before the
    // answer. After the restart it is delivered again with the same key.
    hook.script([Reply::new(200, "").delayed(Duration::from_secs(2))]);
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
    let states: Vec<(&str, &str)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["title"].as_str().unwrap(), t["status"].as_str().unwrap()))
        .collect();
    assert!(states.contains(&("Investigate error: ledger imbalance on account <NUM>", "done")), "{states:?}");
    let shown = crate::stdout(&crate::faultline(dir, database, &["tasks", "show", &tasks[2].id.to_string()]));
    assert!(shown.contains("Error fingerprint: ") && shown.contains("History:"), "{shown}");
    let alerts = crate::json(&crate::faultline(dir, database, &["alerts", "--json"]));
    let delivered: Vec<(&str, &str, i64)> = alerts[0]["deliveries"]
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
