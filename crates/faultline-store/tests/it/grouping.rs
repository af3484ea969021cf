//! Mined patterns through the store: the miner's state survives a restart (same input, same
//! patterns), and patterns of an older fingerprint version keep matching within the transition
//! window. Each test reopens its database, so it runs on both backends by hand.

use std::sync::Arc;

use faultline_core::{Level, LogEvent, Origin, Tier, fingerprint};
use faultline_store::{GroupedEvent, Store};
use sqlx::Connection;

use crate::harness::{T0, batch, event};

/// A database that can be opened again: a SQLite file or a PostgreSQL URL.
struct Reopenable {
    url: String,
    _dir: Option<tempfile::TempDir>,
}

impl Reopenable {
    async fn all() -> Vec<Reopenable> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("faultline.db").to_str().unwrap().to_owned();
        let mut out = vec![Reopenable { url: path, _dir: Some(dir) }];
        if let Some(url) = faultline_testkit::fresh_postgres_url().await {
            out.push(Reopenable { url, _dir: None });
        }
        out
    }

    async fn open(&self) -> Arc<dyn Store> {
        faultline_store::open(&self.url).await.expect("open")
    }

    /// One number read underneath the store.
    async fn scalar(&self, sql: &str) -> i64 {
        if self.url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut conn).await.unwrap()
        } else {
            rusqlite::Connection::open(&self.url).unwrap().query_row(sql, [], |r| r.get(0)).unwrap()
        }
    }

    /// Runs SQL underneath the store (to make a pattern look like an older version's).
    async fn execute(&self, sql: &str) {
        if self.url.starts_with("postgres") {
            let mut conn = sqlx::PgConnection::connect(&self.url).await.unwrap();
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_owned())).execute(&mut conn).await.unwrap();
        } else {
            rusqlite::Connection::open(&self.url).unwrap().execute_batch(sql).unwrap();
        }
    }
}

fn logins(ids: std::ops::Range<u32>, users: &[&str]) -> Vec<GroupedEvent> {
    ids.map(|i| {
        let user = users[i as usize % users.len()];
        event(
            &format!("l{i}"),
            T0 + i64::from(i),
            Level::Error,
            "auth",
            &format!("login failed for user {user} from 10.0.0.{i}"),
        )
    })
    .collect()
}

#[tokio::test]
async fn mined_patterns_survive_a_restart() {
    for db in Reopenable::all().await {
        let store = db.open().await;
        let users = ["alice", "bob", "carol", "dave", "erin"];
        let first = store.ingest(batch(logins(0..10, &users))).await.unwrap();
        assert_eq!(first.new_patterns, 1, "{}: the users merge within the batch", db.url);
        let top = store.top_patterns(10, None).await.unwrap();
        assert_eq!(top.len(), 1);
        assert_eq!(top[0].normalized_message, "login failed for user <*> from <IP>");
        assert_eq!(top[0].tier, "message");
        let fp = top[0].fingerprint.clone();
        store.save_grouping(T0).await.unwrap();
        drop(store);

        let store = db.open().await;
        let again = store.ingest(batch(logins(10..14, &["frank", "bob"]))).await.unwrap();
        assert_eq!(again.new_patterns, 0, "{}: after a restart the miner still knows the pattern", db.url);
        let top = store.top_patterns(10, None).await.unwrap();
        assert_eq!((top.len(), top[0].fingerprint.as_str(), top[0].occurrence_count), (1, fp.as_str(), 14));
    }
}

/// After an upgrade the miner starts from the state the previous version saved (in its own
/// row): the store used to read only its own version's row, and mined from scratch.
#[tokio::test]
async fn regression_22_an_upgrade_restores_the_previous_versions_miner_state() {
    for db in Reopenable::all().await {
        let store = db.open().await;
        store.ingest(batch(logins(0..10, &["alice", "bob", "carol", "dave", "erin"]))).await.unwrap();
        store.save_grouping(T0).await.unwrap();
        drop(store);
        let previous = faultline_core::FINGERPRINT_VERSION - 1;
        // SQLite saves the state whole; PostgreSQL bucket by bucket.
        let table = if db.url.starts_with("postgres") { "miner_buckets" } else { "grouper_state" };
        db.execute(&format!(
            "UPDATE {table} SET version = {previous}, state = replace(state,
                '\"version\":{}', '\"version\":{previous}')",
            faultline_core::FINGERPRINT_VERSION
        ))
        .await;
        let store = db.open().await;
        let again = store.ingest(batch(logins(10..11, &["frank"]))).await.unwrap();
        assert_eq!(again.new_patterns, 0, "{}: the previous version's state was restored", db.url);
    }
}

#[tokio::test]
async fn without_the_saved_state_a_restart_splits_word_variables() {
    // The control for the test above: the saved state is what keeps the pattern whole.
    for db in Reopenable::all().await {
        let store = db.open().await;
        store.ingest(batch(logins(0..10, &["alice", "bob", "carol", "dave", "erin"]))).await.unwrap();
        store.save_grouping(T0).await.unwrap();
        drop(store);
        db.execute(if db.url.starts_with("postgres") {
            "DELETE FROM miner_buckets"
        } else {
            "DELETE FROM grouper_state"
        })
        .await;
        let store = db.open().await;
        let again = store.ingest(batch(logins(10..11, &["frank"]))).await.unwrap();
        assert_eq!(again.new_patterns, 1, "{}", db.url);
    }
}

/// A PostgreSQL installation from before the miner was shared bucket by bucket has its whole
/// saved state split into buckets when it opens: its mined patterns keep matching.
#[tokio::test]
async fn a_whole_saved_state_on_postgres_is_split_into_buckets() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let db = Reopenable { url, _dir: None };
    let store = db.open().await;
    let first = logins(0..10, &["alice", "bob", "carol", "dave", "erin"]);
    store.ingest(batch(first.clone())).await.unwrap();
    drop(store);
    // The state the previous release saved: the same lines through one whole grouper.
    let mut grouper = faultline_core::Grouper::default();
    for ge in &first {
        grouper.group(&ge.event);
    }
    let state = serde_json::to_string(&grouper.snapshot()).unwrap().replace('\'', "''");
    db.execute(&format!(
        "DELETE FROM miner_buckets;
         INSERT INTO grouper_state (version, state, updated_ms) VALUES ({}, '{state}', 0)",
        faultline_core::FINGERPRINT_VERSION
    ))
    .await;
    let store = db.open().await;
    let again = store.ingest(batch(logins(10..11, &["frank"]))).await.unwrap();
    assert_eq!(again.new_patterns, 0, "the whole state was split and read");
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let rows: i64 =
        sqlx::query_scalar("SELECT count(*) FROM miner_buckets").fetch_one(&mut conn).await.unwrap();
    assert_eq!(rows, 1, "one bucket: login lines of one shape");
}

/// A Go panic: version 3 counts its message, version 2 did not.
const GO: &str = "goroutine 1 [running]:
main.pick(...)
\t/srv/app/pick.go:12
main.main()
\t/srv/app/main.go:7 +0x1d";

fn crash(id: &str, ts: i64) -> GroupedEvent {
    let event = LogEvent {
        timestamp_ms: ts,
        level: Level::Error,
        source: "shop".into(),
        message: "panic: runtime error: index out of range [3] with length 3".into(),
        traceback: Some(GO.into()),
        request_path: None,
        request_method: None,
        metadata: Default::default(),
        raw: String::new(),
        origin: Origin { source_id: "test".into(), external_id: Some(id.into()) },
    };
    let grouping = fingerprint(&event);
    GroupedEvent { event, grouping }
}

#[tokio::test]
async fn older_version_patterns_keep_matching_within_the_transition_window() {
    for db in Reopenable::all().await {
        let e = crash("c1", T0);
        assert_eq!(e.grouping.tier, Tier::Stack);
        let v2 = e.grouping.previous.clone().expect("version 2 left out the panic's message").to_string();
        let store = db.open().await;
        store.ingest(batch(vec![e])).await.unwrap();
        drop(store);
        // As if version 2 had made this pattern.
        db.execute(&format!("UPDATE patterns SET fingerprint = '{v2}', fingerprint_version = 2")).await;

        let store = db.open().await;
        let out = store.ingest(batch(vec![crash("c2", T0 + 1_000)])).await.unwrap();
        assert_eq!(out.new_patterns, 0, "{}: the version-2 pattern still matches", db.url);
        let top = store.top_patterns(10, None).await.unwrap();
        assert_eq!((top.len(), top[0].fingerprint.as_str(), top[0].occurrence_count), (1, v2.as_str(), 2));
        drop(store);

        // Last seen 31 days before the batch: the window has passed, a version-3 pattern starts.
        let old = T0 - 31 * 24 * 3_600_000;
        db.execute(&format!("UPDATE patterns SET last_seen_ms = {old}, first_seen_ms = {old}")).await;
        let store = db.open().await;
        let out = store.ingest(batch(vec![crash("c3", T0 + 2_000)])).await.unwrap();
        assert_eq!(out.new_patterns, 1, "{}", db.url);
        let newest = store.pattern(crash("x", 0).grouping.fingerprint.as_str()).await.unwrap().unwrap();
        assert_eq!(newest.fingerprint_version, faultline_core::FINGERPRINT_VERSION);
    }
}

#[tokio::test]
async fn each_pattern_keeps_the_parts_that_grouped_it() {
    for db in Reopenable::all().await {
        let store = db.open().await;
        let mut sent = event("c1", T0, Level::Error, "api", "checkout failed for order 42");
        sent.event.metadata.insert("fingerprint".into(), serde_json::json!(["checkout", "{{ default }}"]));
        sent.grouping = fingerprint(&sent.event);
        let mut crash = event("s1", T0 + 1, Level::Error, "api", "KeyError: 'user'");
        crash.event.traceback = Some(
            "Traceback (most recent call last):\n  File \"/srv/app/views.py\", line 10, in checkout\n    \
             cart = load(user)\n  File \"/srv/app/cart.py\", line 3, in load\n    return DB[user]\nKeyError: 'user'"
                .into(),
        );
        crash.grouping = fingerprint(&crash.event);
        store.ingest(batch(vec![sent, crash])).await.unwrap();
        let top = store.top_patterns(10, None).await.unwrap();
        let by_tier = |tier: &str| {
            top.iter().find(|p| p.tier == tier).unwrap_or_else(|| panic!("{}: no {tier} pattern", db.url))
        };
        assert_eq!(by_tier("client").frames, ["checkout", "{{ default }}"], "{}", db.url);
        assert_eq!(by_tier("stack").frames, ["views:checkout", "cart:load"], "{}", db.url);
        assert_eq!(by_tier("stack").error_type.as_deref(), Some("KeyError"));
    }
}

fn declines(ids: std::ops::Range<u32>, cards: &[&str]) -> Vec<GroupedEvent> {
    ids.map(|i| {
        let card = cards[i as usize % cards.len()];
        event(
            &format!("p{i}"),
            T0 + i64::from(i),
            Level::Error,
            "billing",
            &format!("payment declined for card {card}"),
        )
    })
    .collect()
}

/// The patterns a store makes of `batches` committed one by one.
async fn committed_one_by_one(
    db: &Reopenable,
    batches: impl IntoIterator<Item = faultline_store::IngestBatch>,
) -> Vec<(String, i64)> {
    let store = db.open().await;
    for b in batches {
        store.ingest(b).await.unwrap();
    }
    patterns(&store).await
}

/// Patterns as (template, count), by template.
async fn patterns(store: &Arc<dyn Store>) -> Vec<(String, i64)> {
    let mut all: Vec<(String, i64)> = store
        .top_patterns(100, None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.normalized_message, p.occurrence_count))
        .collect();
    all.sort();
    all
}

/// `faultline ingest` mines each batch on its reader thread (`mine_ahead`) while the store
/// writes the one before: what is stored is what the store makes when it mines them itself.
#[tokio::test]
async fn batches_mined_ahead_are_stored_as_batches_the_store_mines() {
    let cards = ["visa", "amex", "maestro", "discover"];
    let users = ["alice", "bob", "carol"];
    let batches =
        || [batch(logins(0..6, &users)), batch(declines(0..8, &cards)), batch(logins(6..9, &["dave"]))];
    let (plain, ahead) = (Reopenable::all().await, Reopenable::all().await);
    for (plain, ahead) in plain.iter().zip(&ahead) {
        let mined_by_the_store = committed_one_by_one(plain, batches()).await;
        assert_eq!(mined_by_the_store.iter().map(|p| p.1).sum::<i64>(), 17, "{}", plain.url);
        let store = ahead.open().await;
        let mut batches: Vec<_> = batches().into();
        for b in &mut batches {
            store.mine_ahead(b);
        }
        for b in batches {
            store.ingest(b).await.unwrap();
        }
        assert_eq!(patterns(&store).await, mined_by_the_store, "{}", ahead.url);
    }
}

/// A batch mined ahead carries the miner's state when a save fell due; another source's batch,
/// mined later, may commit first with a newer state. The older state, committed last, must not
/// replace it: after a restart the miner knows what the newer one knew.
#[tokio::test]
async fn an_older_miner_state_committed_late_does_not_replace_a_newer_one() {
    for db in Reopenable::all().await {
        let store = db.open().await;
        let mut ahead = batch(logins(0..6, &["alice", "bob", "carol"]));
        store.mine_ahead(&mut ahead);
        let later = faultline_store::IngestBatch {
            now_ms: T0 + 5_000,
            ..batch(declines(0..8, &["visa", "amex", "maestro", "discover"]))
        };
        store.ingest(later).await.unwrap();
        store.ingest(ahead).await.unwrap();
        // Stopped without `save_grouping`: what is saved is what the batches carried.
        drop(store);
        let store = db.open().await;
        let again = store.ingest(batch(declines(8..9, &["jcb"]))).await.unwrap();
        assert_eq!(again.new_patterns, 0, "{}: the newer state, which knew the declines, was kept", db.url);
    }
}

/// `faultline ingest` commits batches that waited for the store together
/// (`IngestBatch::absorb`): stored as when committed one by one, with the newest miner state
/// any of them carried.
#[tokio::test]
async fn batches_absorbed_into_one_are_stored_as_when_committed_apart() {
    // Lines below the level counted in the same minute by two batches, and in another.
    let counted = |level: Level, count: u64| faultline_store::LineCount {
        minute: faultline_store::minute_of(T0),
        source_id: "app".to_owned(),
        level,
        count,
    };
    let batches = || {
        let third = faultline_store::IngestBatch { now_ms: T0 + 5_000, ..batch(logins(6..9, &["dave"])) };
        let mut first = batch(logins(0..6, &["alice", "bob"]));
        first.skipped = vec![counted(Level::Info, 3)];
        let mut second = batch(declines(0..8, &["visa", "amex", "maestro"]));
        second.skipped = vec![counted(Level::Debug, 2), counted(Level::Info, 4)];
        [first, second, third]
    };
    let line_counts = "SELECT CAST(count(*) * 1000 + sum(count) AS BIGINT) FROM line_counts";
    let (apart, together) = (Reopenable::all().await, Reopenable::all().await);
    for (apart, together) in apart.iter().zip(&together) {
        let committed_apart = committed_one_by_one(apart, batches()).await;
        assert_eq!(apart.scalar(line_counts).await, 2_009, "{}", apart.url);
        let store = together.open().await;
        let [mut first, mut second, mut third] = batches();
        let not_mined = batch(logins(9..10, &["erin"]));
        for b in [&mut first, &mut second, &mut third] {
            store.mine_ahead(b);
        }
        // (PostgreSQL mines as it writes: nothing is mined ahead there.)
        if first.mined.is_some() {
            assert!(first.absorb(not_mined).is_err(), "a batch the store is to mine stays apart");
        }
        first.absorb(second).unwrap();
        first.absorb(third).unwrap();
        assert_eq!(first.events.len(), 17);
        store.ingest(first).await.unwrap();
        assert_eq!(patterns(&store).await, committed_apart, "{}", together.url);
        assert_eq!(
            together.scalar(line_counts).await,
            2_009,
            "one row per minute and level: {}",
            together.url
        );
        // Stopped without `save_grouping`: the state saved is the third batch's, which knew the
        // declines the second made.
        drop(store);
        let store = together.open().await;
        let again = store.ingest(batch(declines(8..9, &["jcb"]))).await.unwrap();
        assert_eq!(again.new_patterns, 0, "{}", together.url);
    }
}
