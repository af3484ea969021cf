//! PostgreSQL's day partitions of `entries`: retention drops whole days, an entry's key stays
//! unique across days, time-bounded reads leave other days out, and an installation from before
//! partitioning is moved over.

use std::sync::Arc;

use faultline_core::{DAY_MS, HOUR_MS, Level};
use faultline_store::{SearchQuery, Store};
use sqlx::{Connection, PgConnection};

use crate::both;
use crate::harness::{T0, batch, event};

/// The partitions of `entries`, by name, in order.
async fn partitions(url: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'entries'::regclass ORDER BY 1",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

async fn count(url: &str, sql: &str) -> i64 {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned())).fetch_one(&mut conn).await.unwrap()
}

async fn everything(store: &Arc<dyn Store>) -> Vec<String> {
    let page = store.search(&SearchQuery { limit: 100, ..Default::default() }).await.unwrap();
    let mut ids: Vec<String> = page.entries.into_iter().map(|e| e.external_id).collect();
    ids.sort();
    ids
}

/// Entries of days with no partition yet wait in the default one; the retention job makes their
/// days' partitions, then drops the days past the cutoff whole (their entries counted and their
/// space reported) and deletes the cutoff day's earlier entries one by one.
#[tokio::test]
async fn postgres_retention_drops_whole_days_and_deletes_only_what_is_older() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    let day = T0 - T0 % DAY_MS; // 2024-01-02
    let events = vec![
        event("a1", day - 2 * DAY_MS + HOUR_MS, Level::Error, "api", "disk full on db-1"),
        event("a2", day - 2 * DAY_MS + 2 * HOUR_MS, Level::Error, "api", "disk full on db-2"),
        event("b1", day - DAY_MS, Level::Error, "api", "disk full on db-3"),
        event("b2", day - 1, Level::Error, "api", "disk full on db-4"),
        event("c1", day + HOUR_MS / 2, Level::Error, "api", "disk full on db-5"),
        event("c2", T0, Level::Error, "api", "disk full on db-6"),
        event("c3", T0 + 1, Level::Error, "api", "disk full on db-7"),
    ];
    store.ingest(batch(events)).await.unwrap();
    let waiting = "SELECT count(*) FROM entries_default";
    assert_eq!(count(&url, waiting).await, 7, "no partition of 2024 existed");

    let report = store.cleanup(day - 2 * DAY_MS, 100).await.unwrap();
    assert_eq!(report.entries_deleted, 0);
    let made = partitions(&url).await;
    for name in ["entries_2023_12_31", "entries_2024_01_01", "entries_2024_01_02"] {
        assert!(made.contains(&name.to_owned()), "{name} in {made:?}");
    }
    assert_eq!(count(&url, waiting).await, 0, "the entries moved to their days");
    assert_eq!(count(&url, "SELECT count(*) FROM entries_2024_01_01").await, 2);

    let report = store.cleanup(day + HOUR_MS, 100).await.unwrap();
    assert_eq!(report.entries_deleted, 5, "two whole days and one entry of the cutoff's day");
    assert!(report.bytes_freed > 0, "{report:?}");
    let left = partitions(&url).await;
    assert!(!left.iter().any(|p| p == "entries_2023_12_31" || p == "entries_2024_01_01"), "{left:?}");
    assert!(left.contains(&"entries_2024_01_02".to_owned()));
    assert_eq!(everything(&store).await, ["c2", "c3"]);
    assert_eq!(count(&url, "SELECT count(*) FROM entry_keys").await, 2, "keys go with their entries");
    let top = store.top_patterns(1, None).await.unwrap();
    assert_eq!(top[0].occurrence_count, 7, "lifetime counts survive retention");
}

/// An event's key names it whatever time it carries: a record sent again without its time is
/// stamped on arrival again, on another day, and is still stored once.
async fn an_event_sent_again_on_another_day_is_stored_once(store: Arc<dyn Store>) {
    let first = event("same-id", T0, Level::Error, "api", "payment gateway timed out");
    let again = event("same-id", T0 + 3 * DAY_MS, Level::Error, "api", "payment gateway timed out");
    assert_eq!(store.ingest(batch(vec![first])).await.unwrap().stored, 1);
    let outcome = store.ingest(batch(vec![again])).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (0, 1));
    assert_eq!(everything(&store).await, ["same-id"]);
    assert_eq!(store.top_patterns(1, None).await.unwrap()[0].occurrence_count, 1);
}
both!(an_event_sent_again_on_another_day_is_stored_once);

/// A search bounded in time reads only the partitions of its days, with the plan PostgreSQL
/// caches for a prepared statement (generic: no parameter values known when it was made).
#[tokio::test]
async fn postgres_a_search_bounded_in_time_reads_only_its_days() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    let day = T0 - T0 % DAY_MS;
    let events = (0..4)
        .map(|d| event(&format!("d{d}"), day + d * DAY_MS, Level::Error, "api", "queue stalled"))
        .collect();
    store.ingest(batch(events)).await.unwrap();
    store.cleanup(0, 100).await.unwrap();
    let query = SearchQuery {
        since_ms: Some(day + DAY_MS),
        until_ms: Some(day + 2 * DAY_MS),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.search(&query).await.unwrap().entries.len(), 1);
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::raw_sql("SET plan_cache_mode = force_generic_plan").execute(&mut conn).await.unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN (ANALYZE, COSTS OFF) SELECT count(*) FROM entries e
         WHERE e.timestamp_ms >= coalesce($1::bigint, -9223372036854775808)
           AND e.timestamp_ms < coalesce($2::bigint, 9223372036854775807)",
    )
    .bind(day + DAY_MS)
    .bind(day + 2 * DAY_MS)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("entries_2024_01_03"), "{plan}");
    for other in ["entries_2024_01_02", "entries_2024_01_04", "entries_2024_01_05", "entries_default"] {
        assert!(!plan.contains(other), "{other} read:\n{plan}");
    }
}

/// An installation from before partitioning: its entries, keys and ids carry over, and each day
/// within a year gets its partition.
#[tokio::test]
async fn postgres_entries_stored_before_partitioning_carry_over() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    // The schema before migration 7.
    let dir = tempfile::tempdir().unwrap();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(&migrations).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if name.as_str() < "0007" {
            std::fs::copy(&path, dir.path().join(name)).unwrap();
        }
    }
    let mut conn = PgConnection::connect(&url).await.unwrap();
    sqlx::migrate::Migrator::new(dir.path()).await.unwrap().run(&mut conn).await.unwrap();
    let now = wall_clock_ms();
    let yesterday = now - DAY_MS;
    sqlx::query(
        "INSERT INTO patterns (fingerprint, fingerprint_version, tier, normalized_message, first_seen_ms,
             last_seen_ms, occurrence_count, source, severity, created_ms, updated_ms)
         VALUES ('f-old', 3, 'message', 'disk full on <HOST>', $1, $2, 3, 'api', 'ERROR', $1, $2)",
    )
    .bind(yesterday)
    .bind(now)
    .execute(&mut conn)
    .await
    .unwrap();
    for (n, ts) in [(1, T0), (2, yesterday), (3, now)] {
        sqlx::query(
            "INSERT INTO entries (source_id, external_id, timestamp_ms, level, source, message, pattern_id, raw)
             SELECT 'test', 'old-' || $1::text, $2, 'ERROR', 'api', 'disk full on db-' || $1::text, id, 'disk full'
             FROM patterns",
        )
        .bind(n.to_string())
        .bind(ts)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    let count_before: i64 =
        sqlx::query_scalar("SELECT count(*) FROM entries").fetch_one(&mut conn).await.unwrap();
    assert_eq!(count_before, 3);
    let max_id: i64 = sqlx::query_scalar("SELECT max(id) FROM entries").fetch_one(&mut conn).await.unwrap();
    drop(conn);

    let store = faultline_store::open(&url).await.unwrap();
    assert_eq!(everything(&store).await, ["old-1", "old-2", "old-3"]);
    let made = partitions(&url).await;
    assert!(made.contains(&partition_of(yesterday)) && made.contains(&partition_of(now)), "{made:?}");
    assert_eq!(count(&url, "SELECT count(*) FROM entries_default").await, 1, "2024 is over a year back");
    // The keys came over: the same entry sent again is a duplicate; a new one gets a new id.
    let again = event("old-2", yesterday, Level::Error, "api", "disk full on db-2");
    let fresh = event("new-1", now, Level::Error, "api", "disk full on db-9");
    let outcome = store.ingest(batch(vec![again, fresh])).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (1, 1));
    let page =
        store.search(&SearchQuery { text: Some("db-9".into()), limit: 10, ..Default::default() }).await;
    assert!(page.unwrap().entries[0].id > max_id);
}

fn partition_of(ms: i64) -> String {
    let date = chrono::DateTime::from_timestamp_millis(ms).unwrap();
    format!("entries_{}", date.format("%Y_%m_%d"))
}

fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Entries of the last month make their day's partition as they are stored (a week's import
/// is pruned by day at once); older ones wait in the default partition for the retention job.
#[tokio::test]
async fn postgres_entries_of_the_last_month_make_their_day_as_they_are_stored() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    let now = wall_clock_ms();
    let made = partitions(&url).await;
    assert!(made.contains(&partition_of(now)) && made.contains(&partition_of(now + 6 * DAY_MS)), "{made:?}");
    let events = vec![
        event("week", now - 7 * DAY_MS, Level::Error, "api", "cache miss storm"),
        event("month", now - 30 * DAY_MS, Level::Error, "api", "cache miss storm"),
        event("older", now - 60 * DAY_MS, Level::Error, "api", "cache miss storm"),
    ];
    assert_eq!(store.ingest(batch(events)).await.unwrap().stored, 3);
    for ms in [now - 7 * DAY_MS, now - 30 * DAY_MS] {
        let sql = format!("SELECT count(*) FROM {}", partition_of(ms));
        assert_eq!(count(&url, &sql).await, 1, "{sql}");
    }
    assert_eq!(count(&url, "SELECT count(*) FROM entries_default").await, 1);
    store.cleanup(now - 90 * DAY_MS, 100).await.unwrap();
    assert_eq!(count(&url, "SELECT count(*) FROM entries_default").await, 0, "moved by the retention job");
    assert_eq!(everything(&store).await, ["month", "older", "week"]);
}

/// Three instances store batches over days with no partition yet, in different orders, while
/// one also runs the retention job: each makes the days it needs while the others store (making
/// one locks the tables in the order batches take them), and none fails or loses a count.
#[tokio::test]
async fn postgres_instances_making_days_while_others_store_never_deadlock() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(faultline_store::open(&url).await.unwrap());
    }
    let now = wall_clock_ms();
    let mut tasks = tokio::task::JoinSet::new();
    for (k, store) in stores.iter().enumerate() {
        for round in 0..6i64 {
            let store = store.clone();
            let events = (0..12i64)
                .map(|d| {
                    let back = 2 + (d + round + k as i64 * 5) % 12;
                    let id = format!("{k}-{round}-{d}");
                    event(&id, now - back * DAY_MS, Level::Error, "svc", "replica lag over threshold")
                })
                .collect();
            tasks.spawn(async move { store.ingest(batch(events)).await.map(|o| o.stored) });
        }
    }
    let janitor = stores[0].clone();
    tasks.spawn(async move { janitor.cleanup(now - 40 * DAY_MS, 100).await.map(|_| 0) });
    let mut stored = 0;
    while let Some(done) = tasks.join_next().await {
        stored += done.unwrap().expect("no batch or job fails");
    }
    assert_eq!(stored, 3 * 6 * 12);
    assert_eq!(count(&url, "SELECT count(*) FROM entries_default").await, 0);
    assert_eq!(stores[1].top_patterns(1, None).await.unwrap()[0].occurrence_count, 216);
}
