//! Several `serve` processes on one PostgreSQL database, fed one stream by a round-robin client,
//! store it as one process does: the same patterns (fingerprints, so the same ids), templates and
//! counts. The template miner's state is shared through the database bucket by bucket.

use std::collections::BTreeMap;

use faultline_store::PatternQuery;

use crate::alerts::post;
use crate::serve::{Service, base_config, start_with, stop};

fn serve_on(dir: &std::path::Path, database: &str) -> Service {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let config = dir.join("faultline.toml");
    std::fs::write(&config, base_config(dir, database)).unwrap();
    start_with(dir, &config, &[])
}

/// Posts of five records each: words with few values, words that become variables once a
/// fourth value shows up, and names.
fn posts() -> Vec<String> {
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let verbs = ["started", "stopped", "paused"];
    let tables = ["orders", "carts", "users", "prices", "stock"];
    (0..30usize)
        .map(|b| {
            (0..5usize)
                .map(|j| {
                    let n = b * 5 + j;
                    let message = match j {
                        0 => format!("login failed for user {} from 10.0.0.{n}", users[b % users.len()]),
                        1 => format!("job export {} on worker {}", verbs[b % 3], n % 4),
                        2 => format!("deadlock detected on table {} after {n} ms", tables[(b * 2) % tables.len()]),
                        3 => format!("upstream svc-{} answered 503", ["api", "auth"][b % 2]),
                        _ => format!("payment declined for order {n}: card expired"),
                    };
                    serde_json::json!({"level": "error", "message": message, "source": "shop", "id": format!("r{n}")})
                        .to_string()
                        + "\n"
                })
                .collect()
        })
        .collect()
}

/// Each pattern's template → (fingerprint, count).
async fn patterns(database: &str) -> BTreeMap<String, (String, i64)> {
    let store = faultline_store::open(database).await.unwrap();
    let page = store.list_patterns(&PatternQuery { limit: 1000, ..Default::default() }).await.unwrap();
    let mut out = BTreeMap::new();
    for p in page.patterns {
        let again = out.insert(p.normalized_message.clone(), (p.fingerprint, p.occurrence_count));
        assert!(again.is_none(), "two patterns of {}", p.normalized_message);
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn three_serve_instances_behind_round_robin_store_as_one() {
    let Some(shared) = faultline_testkit::fresh_postgres_url().await else { return };
    let alone = faultline_testkit::fresh_postgres_url().await.unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..4).map(|_| tempfile::tempdir().unwrap()).collect();
    let three: Vec<Service> = dirs[..3].iter().map(|d| serve_on(d.path(), &shared)).collect();
    let one = serve_on(dirs[3].path(), &alone);
    for (i, body) in posts().into_iter().enumerate() {
        post(&three[i % 3], body.clone()).await;
        post(&one, body).await;
    }
    let by_three = patterns(&shared).await;
    let by_one = patterns(&alone).await;
    assert!(by_one.len() >= 8, "{by_one:#?}");
    assert!(by_one.keys().any(|t| t.contains("user <*>")), "users became a variable: {by_one:#?}");
    assert!(by_one.keys().any(|t| t.contains("paused")), "verbs stayed apart: {by_one:#?}");
    assert_eq!(by_one.values().map(|p| p.1).sum::<i64>(), 150);
    assert_eq!(by_three, by_one);
    for s in three {
        stop(s);
    }
    stop(one);
}
