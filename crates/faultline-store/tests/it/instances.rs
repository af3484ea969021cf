//! Several instances on one PostgreSQL database mine one stream as one instance does: the
//! miner's buckets are shared through the database, so the patterns, their templates and counts
//! do not depend on which instance took which batch.

use std::collections::BTreeMap;
use std::sync::Arc;

use faultline_core::Level;
use faultline_store::{GroupedEvent, PatternQuery, Store};

use crate::harness::{T0, batch, event};

/// Batches of lines of a few shapes: words with few values (which stay apart), words with many
/// (which become variables once a fourth shows up, merging the groups made so far), and lines
/// seen once.
fn stream() -> Vec<Vec<GroupedEvent>> {
    let users = ["alice", "bob", "carol", "dave", "erin", "frank"];
    let jobs = ["export", "import"];
    let verbs = ["started", "stopped", "paused"];
    let keys = ["orders", "carts", "users", "prices", "stock", "taxes", "fees"];
    (0..36)
        .map(|b: usize| {
            (0..7)
                .map(|j| {
                    let n = b * 7 + j;
                    let message = match j {
                        0 | 1 => {
                            format!("login failed for user {} from 10.0.3.{n}", users[(n + b) % users.len()])
                        }
                        2 | 3 => format!("job {} {} on worker {}", jobs[n % 2], verbs[(n / 2) % 3], n % 5),
                        4 => format!("cache miss for key {} in region eu", keys[b % keys.len()]),
                        5 => format!("volume {} is full on host db-{}", ["data", "logs"][n % 2], n % 3),
                        _ => format!("unusual event {} happened once", ["alpha", "beta", "gamma"][b % 3]),
                    };
                    event(&format!("e{n}"), T0 + b as i64 * 1_000, Level::Error, "svc", &message)
                })
                .collect()
        })
        .collect()
}

/// Each pattern as (template, fingerprint, count, first seen, last seen), by template.
async fn patterns(store: &Arc<dyn Store>) -> BTreeMap<String, (String, i64, i64, i64)> {
    let q = PatternQuery { limit: 1000, ..Default::default() };
    let page = store.list_patterns(&q).await.unwrap();
    let mut out = BTreeMap::new();
    for p in page.patterns {
        let fields = (p.fingerprint, p.occurrence_count, p.first_seen_ms, p.last_seen_ms);
        assert!(
            out.insert(p.normalized_message.clone(), fields).is_none(),
            "two patterns of {}",
            p.normalized_message
        );
    }
    out
}

async fn one_instance(stream: &[Vec<GroupedEvent>]) -> Option<BTreeMap<String, (String, i64, i64, i64)>> {
    let url = faultline_testkit::fresh_postgres_url().await?;
    let store = faultline_store::open(&url).await.unwrap();
    for events in stream {
        store.ingest(batch(events.clone())).await.unwrap();
    }
    Some(patterns(&store).await)
}

async fn instances(url: &str) -> Vec<Arc<dyn Store>> {
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(faultline_store::open(url).await.unwrap());
    }
    stores
}

/// Three instances taking the batches in turn give the same patterns, fingerprints, templates
/// and counts as one instance taking them all.
#[tokio::test]
async fn three_instances_taking_turns_mine_as_one() {
    let stream = stream();
    let Some(one) = one_instance(&stream).await else { return };
    let url = faultline_testkit::fresh_postgres_url().await.unwrap();
    let stores = instances(&url).await;
    for (i, events) in stream.iter().enumerate() {
        stores[i % 3].ingest(batch(events.clone())).await.unwrap();
    }
    let three = patterns(&stores[0]).await;
    assert!(one.len() >= 10, "the stream makes patterns of several kinds: {one:#?}");
    assert!(one.keys().any(|t| t.contains("<*>")), "words became variables: {one:#?}");
    assert!(one.keys().any(|t| t.contains("paused")), "few-valued words stayed apart: {one:#?}");
    assert_eq!(three, one);
}

/// Three instances storing the batches at once (another order every run) never make two
/// patterns of one template, and end with the mined templates one instance makes. (Which lines
/// a group took before a fourth word merged it depends on the order they came in, on one
/// instance as on three; the shapes that never merge are counted alike.)
#[tokio::test]
async fn three_instances_at_once_make_each_pattern_once() {
    let stream = stream();
    let Some(one) = one_instance(&stream).await else { return };
    let url = faultline_testkit::fresh_postgres_url().await.unwrap();
    let stores = instances(&url).await;
    let mut tasks = tokio::task::JoinSet::new();
    for (k, store) in stores.iter().enumerate() {
        let store = store.clone();
        let mine: Vec<Vec<GroupedEvent>> = stream.iter().skip(k).step_by(3).cloned().collect();
        tasks.spawn(async move {
            for events in mine {
                store.ingest(batch(events)).await.expect("no batch fails");
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    let at_once = patterns(&stores[0]).await;
    let total = |m: &BTreeMap<String, (String, i64, i64, i64)>| m.values().map(|p| p.1).sum::<i64>();
    assert_eq!(total(&at_once), total(&one));
    let mined = |m: &BTreeMap<String, (String, i64, i64, i64)>| -> Vec<String> {
        m.keys().filter(|t| t.contains("<*>")).cloned().collect()
    };
    assert_eq!(mined(&at_once), mined(&one));
    let unmerged = |m: &BTreeMap<String, (String, i64, i64, i64)>| -> BTreeMap<String, i64> {
        m.iter()
            .filter(|(t, _)| !t.starts_with("login") && !t.starts_with("cache"))
            .map(|(t, p)| (t.clone(), p.1))
            .collect()
    };
    assert_eq!(unmerged(&at_once), unmerged(&one));
    assert_eq!(unmerged(&one).len(), 11);
}
