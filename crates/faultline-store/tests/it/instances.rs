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

fn login(id: &str, user: &str) -> GroupedEvent {
    event(id, T0, Level::Error, "auth", &format!("login failed for user {user} from 10.0.0.1"))
}

/// The one bucket's (revision, state).
async fn bucket(conn: &mut sqlx::PgConnection) -> (i64, String) {
    sqlx::query_as("SELECT rev, state FROM miner_buckets").fetch_one(conn).await.unwrap()
}

/// An instance that mined a batch on a bucket another instance changed before it could write it
/// mines the batch again on the new state, and never writes over the other's change: here the
/// other had already made the users a variable, so the batch changes nothing.
#[tokio::test]
async fn a_batch_mined_on_a_bucket_changed_meanwhile_is_mined_again() {
    use sqlx::Connection;
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let other = faultline_store::open(&url).await.unwrap();
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    other.ingest(batch(["alice", "bob", "carol"].iter().map(|u| login(u, u)).collect())).await.unwrap();
    let before = bucket(&mut conn).await;
    other.ingest(batch(vec![login("dave", "dave")])).await.unwrap();
    let after = bucket(&mut conn).await;
    assert_eq!(after.0, before.0 + 1, "a fourth user changed the bucket");
    let alice = other.top_patterns(10, None).await.unwrap();
    let alice =
        alice.iter().find(|p| p.normalized_message.contains("<*>")).expect("merged").fingerprint.clone();

    // The bucket as it was before the fourth user; the change comes back in a transaction held
    // open until this instance has read the old state and waits to write its own.
    sqlx::query("UPDATE miner_buckets SET rev = $1, state = $2")
        .bind(before.0)
        .bind(&before.1)
        .execute(&mut conn)
        .await
        .unwrap();
    let mut holder = sqlx::PgConnection::connect(&url).await.unwrap();
    let mut tx = holder.begin().await.unwrap();
    sqlx::query("UPDATE miner_buckets SET rev = $1, state = $2")
        .bind(after.0)
        .bind(&after.1)
        .execute(&mut *tx)
        .await
        .unwrap();
    let this = faultline_store::open(&url).await.unwrap();
    let stored = tokio::spawn(async move { this.ingest(batch(vec![login("erin", "erin")])).await });
    let waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'";
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sqlx::query_scalar::<_, i64>(waiting).fetch_one(&mut conn).await.unwrap() == 0 {
        assert!(std::time::Instant::now() < deadline, "the batch never waited to write its bucket");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    tx.commit().await.unwrap();
    let outcome = stored.await.unwrap().expect("the batch is stored after mining it again");
    assert_eq!((outcome.stored, outcome.new_patterns), (1, 0));
    assert_eq!(bucket(&mut conn).await, after, "the other instance's change stands");
    let erin: String = sqlx::query_scalar(
        "SELECT p.fingerprint FROM entries e JOIN patterns p ON p.id = e.pattern_id WHERE e.message LIKE '%erin%'",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(erin, alice, "erin went to the merged group");
}
