//! The behaviour of every `Store` method, checked the same way on both backends.

use std::sync::Arc;

use faultline_core::Level;
use faultline_store::{
    FingerprintLookup, IngestBatch, JobRun, PatternQuery, SearchQuery, SourceFilter, Store, find_fingerprint,
};

use crate::both;
use crate::harness::{T0, batch, event};

fn sample() -> Vec<faultline_store::GroupedEvent> {
    vec![
        event("1", T0, Level::Error, "api", "connection refused to 10.0.0.1:5432"),
        event("2", T0 + 1_000, Level::Error, "api", "connection refused to 10.0.0.2:5432"),
        event("3", T0 + 61_000, Level::Critical, "worker.billing", "card 4242 declined for order 17"),
        event("4", T0 + 62_000, Level::Warning, "worker.email", "slow smtp handshake 1200ms"),
        event("5", T0 + 120_000, Level::Error, "api", "connection refused to 10.0.0.3:5432"),
    ]
}

async fn ingest_groups_counts_and_is_idempotent(store: Arc<dyn Store>) {
    let first = store.ingest(batch(sample())).await.expect("ingest");
    assert_eq!((first.stored, first.duplicates, first.new_patterns), (5, 0, 3));

    let again = store.ingest(batch(sample())).await.expect("re-ingest");
    assert_eq!((again.stored, again.duplicates, again.new_patterns), (0, 5, 0));

    let top = store.top_patterns(10, None).await.expect("top");
    let counts: Vec<(i64, &str)> =
        top.iter().map(|p| (p.occurrence_count, p.normalized_message.as_str())).collect();
    assert_eq!(
        counts,
        [
            (3, "connection refused to <IP>"),
            (1, "card <NUM> declined for order <NUM>"),
            (1, "slow smtp handshake <DUR>")
        ]
    );
    let refused = &top[0];
    assert_eq!((refused.first_seen_ms, refused.last_seen_ms), (T0, T0 + 120_000));
    assert_eq!(refused.fingerprint.len(), 64);
    assert_eq!(refused.fingerprint_version, faultline_core::FINGERPRINT_VERSION);
    assert_eq!(refused.status, faultline_core::PatternStatus::New);
    assert_eq!(refused.sample_message.as_deref(), Some("connection refused to 10.0.0.1:5432"));
    assert_eq!(store.pattern(&refused.fingerprint).await.expect("pattern").as_ref(), Some(refused));
}
both!(ingest_groups_counts_and_is_idempotent);

async fn severity_only_rises(store: Arc<dyn Store>) {
    store.ingest(batch(vec![event("1", T0, Level::Warning, "a", "disk at 91%")])).await.unwrap();
    store.ingest(batch(vec![event("2", T0, Level::Critical, "a", "disk at 99%")])).await.unwrap();
    store.ingest(batch(vec![event("3", T0, Level::Error, "a", "disk at 95%")])).await.unwrap();
    let top = store.top_patterns(1, None).await.unwrap();
    assert_eq!((top[0].severity.as_str(), top[0].occurrence_count), ("CRITICAL", 3));
}
both!(severity_only_rises);

async fn cursor_commits_with_its_batch(store: Arc<dyn Store>) {
    assert_eq!(store.cursor("test").await.unwrap(), None);
    let mut b = batch(sample());
    b.cursor = Some("offset:1234".into());
    store.ingest(b).await.unwrap();
    assert_eq!(store.cursor("test").await.unwrap().as_deref(), Some("offset:1234"));
}
both!(cursor_commits_with_its_batch);

async fn flood_is_counted_exactly_but_stored_up_to_the_cap(store: Arc<dyn Store>) {
    let events: Vec<_> = (0..50)
        .map(|i| event(&i.to_string(), T0 + i * 100, Level::Error, "loop", &format!("retry {i} failed")))
        .collect();
    let mut b = batch(events);
    b.max_stored_per_pattern_minute = 20;
    let outcome = store.ingest(b).await.unwrap();
    assert_eq!((outcome.stored, outcome.capped), (20, 30));
    // A later batch in the same minute is capped too; the next minute starts afresh.
    let mut b = batch(vec![
        event("x", T0 + 59_000, Level::Error, "loop", "retry 99 failed"),
        event("y", T0 + 60_000, Level::Error, "loop", "retry 100 failed"),
    ]);
    b.max_stored_per_pattern_minute = 20;
    let outcome = store.ingest(b).await.unwrap();
    assert_eq!((outcome.stored, outcome.capped), (1, 1));
    assert_eq!(store.top_patterns(1, None).await.unwrap()[0].occurrence_count, 52);
    assert_eq!(store.error_rate(T0, T0 + 120_000).await.unwrap().total_errors, 52);
    let page = store.search(&SearchQuery { limit: 100, ..Default::default() }).await.unwrap();
    assert_eq!(page.total, 21);
}
both!(flood_is_counted_exactly_but_stored_up_to_the_cap);

async fn search_filters_and_pages(store: Arc<dyn Store>) {
    store.ingest(batch(sample())).await.unwrap();
    let q =
        |text: Option<&str>| SearchQuery { text: text.map(str::to_owned), limit: 10, ..Default::default() };

    let page = store.search(&q(Some("CONNECTION refused"))).await.unwrap();
    assert_eq!(page.total, 3, "case-insensitive substring");
    let ids: Vec<&str> = page.entries.iter().map(|e| e.external_id.as_str()).collect();
    assert_eq!(ids, ["5", "2", "1"], "newest first");

    assert_eq!(store.search(&q(Some("10.0.0.2"))).await.unwrap().total, 1);
    assert_eq!(store.search(&q(Some("refused to 10.0.0.2:54"))).await.unwrap().total, 1, "across words");
    assert_eq!(store.search(&q(Some("d to 1"))).await.unwrap().total, 3, "word fragments");
    assert_eq!(store.search(&q(Some("refused  to"))).await.unwrap().total, 0, "spacing is exact");
    assert_eq!(store.search(&q(Some("42"))).await.unwrap().total, 1, "short needles still match");
    assert_eq!(store.search(&q(Some("no such text"))).await.unwrap().total, 0);
    assert_eq!(store.search(&q(Some("100%"))).await.unwrap().total, 0, "% is literal");

    let by_level = SearchQuery { level: Some(Level::Critical), ..q(None) };
    assert_eq!(store.search(&by_level).await.unwrap().entries[0].source, "worker.billing");
    let exact = SearchQuery { source: Some(SourceFilter::parse("worker")), ..q(None) };
    assert_eq!(store.search(&exact).await.unwrap().total, 0);
    let prefix = SearchQuery { source: Some(SourceFilter::parse("worker.*")), ..q(None) };
    assert_eq!(store.search(&prefix).await.unwrap().total, 2);
    let inner = SearchQuery { source: Some(SourceFilter::parse("billing*")), ..q(None) };
    assert_eq!(store.search(&inner).await.unwrap().total, 0, "a prefix matches at the start only");
    let window = SearchQuery { since_ms: Some(T0 + 60_000), until_ms: Some(T0 + 120_000), ..q(None) };
    assert_eq!(store.search(&window).await.unwrap().total, 2);

    let paged = SearchQuery { limit: 2, offset: 2, ..q(None) };
    let page = store.search(&paged).await.unwrap();
    assert_eq!((page.total, page.entries.len()), (5, 2));
    assert_eq!(page.entries[0].external_id, "3");
    // The last page, and a page past the end: the total is the same.
    let last = store.search(&SearchQuery { limit: 2, offset: 4, ..q(None) }).await.unwrap();
    assert_eq!((last.total, last.entries.len()), (5, 1));
    let past = store.search(&SearchQuery { limit: 2, offset: 7, ..q(None) }).await.unwrap();
    assert_eq!((past.total, past.total_capped, past.entries.len()), (5, false, 0));
    // A page that holds every match, counted up to a cap below them.
    let capped = SearchQuery { count_cap: Some(2), ..q(Some("CONNECTION refused")) };
    let page = store.search(&capped).await.unwrap();
    assert_eq!((page.total, page.total_capped, page.entries.len()), (2, true, 3));
}
both!(search_filters_and_pages);

async fn hostile_content_is_stored_as_given_and_searchable(store: Arc<dyn Store>) {
    store_hostile_content(store, 0).await;
}
both!(hostile_content_is_stored_as_given_and_searchable);

/// The same in a batch large enough for PostgreSQL's `COPY` path.
async fn hostile_content_in_a_large_batch_is_stored_as_given(store: Arc<dyn Store>) {
    store_hostile_content(store, 300).await;
}
both!(hostile_content_in_a_large_batch_is_stored_as_given);

/// Stores hostile messages among `filler` ordinary ones and searches for each.
async fn store_hostile_content(store: Arc<dyn Store>, filler: usize) {
    let script = "<script>alert('x')</script> failed";
    let sql = "user '; DROP TABLE entries; -- not found";
    let control = "bell \u{7} escape \u{1b}[31m red";
    let lossy = String::from_utf8_lossy(b"bad bytes \xff\xfe here").into_owned();
    let huge = format!("huge {}", "A".repeat(10 * 1024 * 1024));
    let events = vec![
        event("1", T0, Level::Error, "web", script),
        event("2", T0, Level::Error, "web", sql),
        event("3", T0, Level::Error, "web", control),
        event("4", T0, Level::Error, "web", &lossy),
        event("5", T0, Level::Error, "web", &huge),
    ];
    let ordinary =
        (0..filler).map(|i| event(&format!("f{i}"), T0 + i as i64, Level::Error, "web", "routine"));
    let events: Vec<_> = events.into_iter().chain(ordinary).collect();
    assert_eq!(store.ingest(batch(events)).await.unwrap().stored, 5 + filler as u64);
    let find = |text: &str| {
        let store = store.clone();
        let text = text.to_owned();
        async move {
            let page = store
                .search(&SearchQuery { text: Some(text), limit: 5, ..Default::default() })
                .await
                .unwrap();
            page.entries.into_iter().map(|e| e.message).collect::<Vec<_>>()
        }
    };
    assert_eq!(find("<script>").await, [script]);
    assert_eq!(find("DROP TABLE").await, [sql]);
    assert_eq!(find("escape \u{1b}[31m").await, [control]);
    assert_eq!(find("bad bytes \u{FFFD}").await, [lossy.as_str()]);
    assert_eq!(find("huge AAA").await[0].len(), huge.len());
}

/// SQLite refuses LIKE patterns over 50,000 bytes; a search for a longer piece of a stored
/// message (pasted from the page, say) still finds it, case folded, entries and patterns.
async fn a_needle_longer_than_a_like_pattern_may_be_is_found(store: Arc<dyn Store>) {
    let words: Vec<String> = (0..40_000).map(|i| format!("w{i}")).collect();
    let long = format!("upload failed: {}", words.join(" "));
    let events = vec![
        event("1", T0, Level::Error, "web", &long),
        event("2", T0, Level::Error, "web", "other failure"),
    ];
    assert_eq!(store.ingest(batch(events)).await.unwrap().stored, 2);
    let needle = long[1_000..61_000].to_uppercase();
    for text in [needle.clone(), format!("{needle} not there")] {
        let q = SearchQuery { text: Some(text.clone()), limit: 5, ..Default::default() };
        let found = store.search(&q).await.expect("a long needle is searched, not refused");
        let expected = usize::from(!text.ends_with("not there"));
        assert_eq!((found.total, found.entries.len()), (expected as u64, expected));
        let patterns = store
            .list_patterns(&PatternQuery { text: Some(text), limit: 5, ..Default::default() })
            .await
            .expect("a long needle is searched, not refused");
        assert_eq!(patterns.total, expected as u64);
    }
}
both!(a_needle_longer_than_a_like_pattern_may_be_is_found);

async fn rates_and_buckets_come_from_minute_counts(store: Arc<dyn Store>) {
    store.ingest(batch(sample())).await.unwrap();
    let rate = store.error_rate(T0, T0 + 180_000).await.unwrap();
    assert_eq!(rate.total_errors, 5);
    assert!((rate.errors_per_minute - 5.0 / 3.0).abs() < 1e-9);
    assert_eq!(rate.by_source.get("api"), Some(&3));
    assert_eq!(rate.by_level.get("CRITICAL"), Some(&1));
    let buckets = store.counts_by_interval(T0, T0 + 180_000, 1, None).await.unwrap();
    let counts: Vec<u64> = buckets.iter().map(|b| b.count).collect();
    assert_eq!(counts, [2, 2, 1]);
    assert_eq!(buckets[1].start_ms, T0 + 60_000);
    let by_level: Vec<(&str, u64)> = buckets[1].by_level.iter().map(|(l, n)| (l.as_str(), *n)).collect();
    assert_eq!(by_level, [("CRITICAL", 1), ("WARNING", 1)]);
    let empty = store.counts_by_interval(T0 - 3_600_000, T0, 30, None).await.unwrap();
    assert_eq!(empty.iter().map(|b| b.count).collect::<Vec<_>>(), [0, 0]);
}
both!(rates_and_buckets_come_from_minute_counts);

/// Windows read whole quarters from the rollup and their edges from the minute counts: every
/// window, aligned or not, counts exactly the entries inside it. The batches hold more minute
/// rows than one statement writes, and share some minutes.
async fn window_counts_match_the_entries(store: Arc<dyn Store>) {
    let q = 15 * 60_000;
    let start = T0.div_euclid(q) * q; // a quarter boundary
    let times: Vec<i64> = (0..150)
        .flat_map(|k| {
            let t = start + k * 7 * 60_000 + 13_000;
            if k % 5 == 0 { vec![t, t + 1_000] } else { vec![t] }
        })
        .collect();
    let events: Vec<_> = times
        .iter()
        .enumerate()
        .map(|(k, ts)| {
            let level = if k % 3 == 0 { Level::Critical } else { Level::Error };
            event(
                &k.to_string(),
                *ts,
                level,
                ["a", "b"][k % 2],
                &format!("failure kind {}", ["x", "y", "z"][k % 3]),
            )
        })
        .collect();
    // Every other event in each batch: the two minutes' events of every fifth minute are in both.
    for parity in [0, 1] {
        let part = events.iter().enumerate().filter(|(k, _)| k % 2 == parity).map(|(_, e)| e.clone());
        store.ingest(batch(part.collect())).await.unwrap();
    }
    let inside = |since: i64, until: i64| {
        times
            .iter()
            .filter(|t| **t >= since.div_euclid(60_000) * 60_000 && t.div_euclid(60_000) * 60_000 < until)
            .count() as u64
    };
    for (since, until) in [
        (start - q, start + 6 * 60 * 60_000),
        (start + 3 * 60_000, start + 2 * 60 * 60_000 + 50_000),
        (start + 16 * 60_000, start + 29 * 60_000),
        (start + q, start + 4 * q),
        (start + q + 1, start + 4 * q - 1),
    ] {
        let expected = inside(since, until);
        assert_eq!(store.error_rate(since, until).await.unwrap().total_errors, expected, "{since}..{until}");
        let busiest: u64 =
            store.busiest_patterns(since, until, 10).await.unwrap().iter().map(|b| b.count).sum();
        assert_eq!(busiest, expected, "{since}..{until}");
    }
    for minutes in [1u32, 15, 60] {
        let width = i64::from(minutes) * 60_000;
        for since in [start, start + 60_000] {
            let until = since + 5 * 60 * 60_000;
            let buckets = store.counts_by_interval(since, until, minutes, None).await.unwrap();
            for b in &buckets {
                assert_eq!(
                    b.count,
                    inside(b.start_ms, b.start_ms + width),
                    "{minutes} min bucket at {}",
                    b.start_ms
                );
            }
            assert_eq!(buckets.iter().map(|b| b.count).sum::<u64>(), inside(since, until));
        }
    }
}
both!(window_counts_match_the_entries);

async fn new_and_trending_patterns(store: Arc<dyn Store>) {
    store.ingest(batch(sample())).await.unwrap();
    let new = store.new_patterns(T0 + 60_000, 10).await.unwrap();
    assert_eq!(new.len(), 2);
    let now = T0 + 180_000;
    let trend = store.trending_patterns(now, 60_000, 10).await.unwrap();
    // Only "connection refused" has a count in the last minute window [now-60s, now)…
    let last_minute: Vec<(&str, i64, i64)> =
        trend.iter().map(|t| (t.pattern.normalized_message.as_str(), t.recent, t.previous)).collect();
    assert_eq!(last_minute, [("connection refused to <IP>", 1, 0)]);
    // Busiest within a window counts only the window's occurrences.
    let busiest = store.busiest_patterns(T0 + 60_000, now, 10).await.unwrap();
    let counts: Vec<u64> = busiest.iter().map(|b| b.count).collect();
    assert_eq!(counts, [1, 1, 1]);
    let busiest = store.busiest_patterns(T0, now, 1).await.unwrap();
    assert_eq!(
        (busiest[0].pattern.normalized_message.as_str(), busiest[0].count),
        ("connection refused to <IP>", 3)
    );
    assert!(store.busiest_patterns(now, now + 60_000, 10).await.unwrap().is_empty());
    // A pattern first seen in the window is new, not trending.
    let newcomer = event("late", now - 30_000, Level::Error, "api", "license server unreachable");
    store.ingest(batch(vec![newcomer])).await.unwrap();
    let trend = store.trending_patterns(now, 60_000, 10).await.unwrap();
    assert_eq!(trend.len(), 1, "{trend:?}");
}
both!(new_and_trending_patterns);

async fn cleanup_removes_old_entries_and_keeps_lifetime_counts(store: Arc<dyn Store>) {
    store.ingest(batch(sample())).await.unwrap();
    let report = store.cleanup(T0 + 60_000, 1).await.unwrap();
    assert_eq!(report.entries_deleted, 2);
    let page =
        store.search(&SearchQuery { text: Some("refused".into()), limit: 10, ..Default::default() }).await;
    let page = page.unwrap();
    assert_eq!(page.entries.iter().map(|e| e.external_id.as_str()).collect::<Vec<_>>(), ["5"]);
    let top = store.top_patterns(1, None).await.unwrap();
    assert_eq!(top[0].occurrence_count, 3, "lifetime count survives retention");
    assert_eq!(top[0].sample_message.as_deref(), Some("connection refused to 10.0.0.1:5432"));
    assert_eq!(store.error_rate(T0, T0 + 180_000).await.unwrap().total_errors, 3);
}
both!(cleanup_removes_old_entries_and_keeps_lifetime_counts);

async fn search_finds_every_entry_across_batches(store: Arc<dyn Store>) {
    // Batches of 7 never line up with the index's internal chunks: each entry must still be found.
    let events: Vec<_> = (0..600)
        .map(|i| event(&i.to_string(), T0 + i * 10, Level::Error, "svc", &format!("job item-{i:03}-x lost")))
        .collect();
    for part in events.chunks(7) {
        store.ingest(batch(part.to_vec())).await.unwrap();
    }
    for i in [0, 6, 7, 254, 255, 256, 257, 510, 511, 512, 599] {
        let q = SearchQuery { text: Some(format!("ITEM-{i:03}-X")), limit: 5, ..Default::default() };
        let page = store.search(&q).await.unwrap();
        assert_eq!(page.total, 1, "item {i}");
        assert_eq!(page.entries[0].external_id, i.to_string());
    }
    let all = SearchQuery { text: Some("-x lost".into()), limit: 10, ..Default::default() };
    let exact = store.search(&all).await.unwrap();
    assert_eq!((exact.total, exact.total_capped), (600, false));
    // Counting up to a cap: "100+", and the same page, newest first.
    let capped = store.search(&SearchQuery { count_cap: Some(100), ..all.clone() }).await.unwrap();
    assert_eq!((capped.total, capped.total_capped), (100, true));
    assert_eq!(capped.entries, exact.entries);
    assert_eq!(capped.entries[0].external_id, "599");
    let second = SearchQuery { count_cap: Some(100), offset: 10, ..all.clone() };
    assert_eq!(store.search(&second).await.unwrap().entries[0].external_id, "589");
    let under = store.search(&SearchQuery { count_cap: Some(600), ..all }).await.unwrap();
    assert_eq!((under.total, under.total_capped), (600, false));
}
both!(search_finds_every_entry_across_batches);

/// A needle in one message of 300, whose words are in all of them: more candidate chunks of the
/// index than a capped count reads. Its count is then a lower bound, never below the entries a
/// page has shown, and exact where a page ends the matches or nothing caps it.
async fn a_capped_count_of_a_common_needle_is_a_lower_bound(store: Arc<dyn Store>) {
    let events: Vec<_> = (0..40_000)
        .map(|i| {
            let message = format!("request to db-{}.internal failed after {i} ms", i % 300);
            event(&i.to_string(), T0 + i * 10, Level::Error, "svc", &message)
        })
        .collect();
    for part in events.chunks(10_000) {
        store.ingest(batch(part.to_vec())).await.unwrap();
    }
    let matches: Vec<String> =
        (0..40_000).rev().filter(|i| i % 300 == 7).map(|i: i64| i.to_string()).collect();
    assert_eq!(matches.len(), 134);
    let q = |offset: u32, count_cap: Option<u64>| SearchQuery {
        text: Some("DB-7.internal".into()),
        limit: 100,
        offset,
        count_cap,
        ..Default::default()
    };
    let ids = |page: &faultline_store::SearchPage| {
        page.entries.iter().map(|e| e.external_id.clone()).collect::<Vec<_>>()
    };
    let exact = store.search(&q(0, None)).await.unwrap();
    assert_eq!((exact.total, exact.total_capped), (134, false), "uncapped: every match counted");
    assert_eq!(ids(&exact), matches[..100]);
    let capped = store.search(&q(0, Some(1_000))).await.unwrap();
    assert_eq!(ids(&capped), matches[..100], "the same page, newest first");
    assert!(capped.total_capped, "counted within a budget: at least {}", capped.total);
    assert!((100..=134).contains(&capped.total), "a lower bound, at least the page: {}", capped.total);
    let last = store.search(&q(100, Some(1_000))).await.unwrap();
    assert_eq!(ids(&last), matches[100..]);
    assert_eq!((last.total, last.total_capped), (134, false), "a short page ends the matches");
}
both!(a_capped_count_of_a_common_needle_is_a_lower_bound);

async fn search_finds_three_letter_words_beside_short_ones(store: Arc<dyn Store>) {
    // The trigram index leaves out words of one or two characters: a needle's words of three or
    // more are still found, alone or beside short ones, and only where the whole needle is.
    let events = vec![
        event("1", T0, Level::Error, "svc", "go to abc now"),
        event("2", T0 + 10, Level::Error, "svc", "abc to go"),
        event("3", T0 + 20, Level::Error, "svc", "nothing here"),
    ];
    store.ingest(batch(events)).await.unwrap();
    let ids = |text: &str| {
        let store = store.clone();
        let q = SearchQuery { text: Some(text.into()), limit: 10, ..Default::default() };
        async move {
            let page = store.search(&q).await.unwrap();
            let mut ids: Vec<String> = page.entries.into_iter().map(|e| e.external_id).collect();
            ids.sort();
            ids
        }
    };
    assert_eq!(ids("abc").await, ["1", "2"]);
    assert_eq!(ids("to abc").await, ["1"]);
    assert_eq!(ids("go to").await, ["1"]);
    assert!(ids("to abd").await.is_empty());
}
both!(search_finds_three_letter_words_beside_short_ones);

async fn events_without_ids_are_one_entry_per_second(store: Arc<dyn Store>) {
    // Sources with no ids of their own: the same error within one second is one entry.
    let no_id = |ts: i64, message: &str| {
        let mut e = event("unused", ts, Level::Error, "api", message);
        e.event.origin.external_id = None;
        e
    };
    let events = vec![
        no_id(T0 + 100, "upstream reset"),
        no_id(T0 + 900, "upstream reset"),
        no_id(T0 + 1_100, "upstream reset"),
        no_id(T0 + 200, "upstream reset by peer"),
    ];
    let outcome = store.ingest(batch(events.clone())).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (3, 1));
    let again = store.ingest(batch(events)).await.unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 4));
}
both!(events_without_ids_are_one_entry_per_second);

async fn job_runs_are_recorded_newest_first(store: Arc<dyn Store>) {
    let run = |job: &str, started_ms: i64, outcome: &str| JobRun {
        job: job.to_owned(),
        instance: "host:42:beef".to_owned(),
        started_ms,
        finished_ms: started_ms + 40,
        outcome: outcome.to_owned(),
        detail: serde_json::json!({"entries_deleted": 3, "note": "<b>\u{0}</b>"}),
    };
    store.record_job_run(&run("retention", T0, "ok")).await.unwrap();
    store.record_job_run(&run("error-rate", T0 + 1_000, "ok")).await.unwrap();
    let failed = store.record_job_run(&run("retention", T0 + 2_000, "failed")).await.unwrap();
    let all = store.job_runs(None, 10).await.unwrap();
    assert_eq!(
        all.iter().map(|r| r.run.job.as_str()).collect::<Vec<_>>(),
        ["retention", "error-rate", "retention"]
    );
    let retention = store.job_runs(Some("retention"), 1).await.unwrap();
    assert_eq!(retention.len(), 1);
    assert_eq!((retention[0].id, retention[0].run.outcome.as_str()), (failed, "failed"));
    assert_eq!(retention[0].run.finished_ms, T0 + 2_040);
    assert_eq!(retention[0].run.detail["entries_deleted"], 3);
    assert_eq!(retention[0].run.instance, "host:42:beef", "which instance ran it");
}
both!(job_runs_are_recorded_newest_first);

async fn a_job_lease_lets_one_instance_run_per_interval_and_is_taken_over(store: Arc<dyn Store>) {
    let minute = 60_000;
    assert!(store.claim_job("retention", "a", T0, T0 + minute).await.unwrap(), "first comer");
    assert!(!store.claim_job("retention", "b", T0 + 1, T0 + minute).await.unwrap(), "held by a");
    assert!(store.claim_job("collect", "b", T0 + 1, T0 + minute).await.unwrap(), "another job is free");
    store.finish_job("retention", "a", T0 + 5 * minute).await.unwrap();
    assert!(!store.claim_job("retention", "b", T0 + 2 * minute, T0 + 3 * minute).await.unwrap(), "not due");
    assert!(store.claim_job("retention", "b", T0 + 5 * minute, T0 + 6 * minute).await.unwrap(), "due again");
    // b dies holding it; once its lease runs out, a takes over.
    assert!(!store.claim_job("retention", "a", T0 + 6 * minute - 1, T0 + 7 * minute).await.unwrap());
    assert!(store.claim_job("retention", "a", T0 + 6 * minute, T0 + 7 * minute).await.unwrap(), "taken over");
    // b's late finish does not release a's lease.
    store.finish_job("retention", "b", T0).await.unwrap();
    assert!(!store.claim_job("retention", "b", T0 + 6 * minute + 1, T0 + 7 * minute).await.unwrap());
}
both!(a_job_lease_lets_one_instance_run_per_interval_and_is_taken_over);

async fn the_alert_feed_holds_every_batch_until_an_evaluator_is_done_with_it(store: Arc<dyn Store>) {
    let minute = 60_000;
    store
        .ingest(batch(vec![
            event("1", T0 + 5_000, Level::Error, "api", "timeout after 30s"),
            event("2", T0 + 50_000, Level::Critical, "api", "timeout after 31s"),
        ]))
        .await
        .unwrap();
    let second = IngestBatch {
        now_ms: T0 + minute,
        ..batch(vec![event("3", T0 + 70_000, Level::Error, "api", "timeout after 2s")])
    };
    store.ingest(second).await.unwrap();
    let a = store.claim_feed("a", T0 + minute, T0 + 2 * minute, 10).await.unwrap();
    let facts: Vec<(bool, Level, i64)> =
        a.iter().map(|i| (i.touched.new, i.touched.highest_level, i.committed_ms)).collect();
    assert_eq!(facts, [(true, Level::Critical, T0), (false, Level::Error, T0 + minute)], "one row per batch");
    assert!(a[0].seq < a[1].seq);
    assert!(
        store.claim_feed("b", T0 + minute, T0 + 2 * minute, 10).await.unwrap().is_empty(),
        "claimed by a"
    );
    // a dies: after its claim, b gets the rows; it finishes the first only.
    let b = store.claim_feed("b", T0 + 2 * minute, T0 + 3 * minute, 1).await.unwrap();
    assert_eq!(b.iter().map(|i| i.seq).collect::<Vec<_>>(), [a[0].seq], "oldest first, up to the limit");
    store.finish_feed(&[b[0].seq]).await.unwrap();
    let rest = store.claim_feed("b", T0 + 2 * minute, T0 + 3 * minute, 10).await.unwrap();
    assert_eq!(rest.iter().map(|i| i.seq).collect::<Vec<_>>(), [a[1].seq]);
    store.finish_feed(&[rest[0].seq]).await.unwrap();
    assert!(
        store.claim_feed("c", T0 + 9 * minute, T0 + 10 * minute, 10).await.unwrap().is_empty(),
        "all done"
    );

    // The minutes keep their first and latest occurrence, for the sustained rule.
    let pattern = a[0].touched.pattern_id;
    let minutes: Vec<(i64, u64, i64, i64)> = store
        .pattern_minute_counts(&[pattern], T0)
        .await
        .unwrap()
        .iter()
        .map(|m| (m.minute_ms - T0, m.count, m.first_ms - T0, m.last_ms - T0))
        .collect();
    assert_eq!(minutes, [(0, 2, 5_000, 50_000), (minute, 1, 70_000, 70_000)]);
}
both!(the_alert_feed_holds_every_batch_until_an_evaluator_is_done_with_it);

async fn cursors_are_listed_by_prefix(store: Arc<dyn Store>) {
    for (source_id, cursor) in
        [("file:/var/log/a.log", "x:10"), ("file:/var/log/b_c.log", "y:5"), ("journald", "s=1")]
    {
        let b = faultline_store::IngestBatch {
            source_id: source_id.into(),
            cursor: Some(cursor.into()),
            ..batch(vec![])
        };
        store.ingest(b).await.unwrap();
    }
    let files = store.cursors("file:").await.unwrap();
    assert_eq!(
        files.iter().map(|c| (c.source_id.as_str(), c.cursor.as_str())).collect::<Vec<_>>(),
        [("file:/var/log/a.log", "x:10"), ("file:/var/log/b_c.log", "y:5")]
    );
    assert_eq!(store.cursors("file:/var/log/b_").await.unwrap().len(), 1, "_ is literal");
    assert_eq!(store.cursors("").await.unwrap().len(), 3);
}
both!(cursors_are_listed_by_prefix);

async fn patterns_are_found_by_a_unique_prefix_of_their_id(store: Arc<dyn Store>) {
    // A leading word of its own puts each message in a template of its own.
    let word = |i: i64| {
        let letters = b"ghijklmnopqrstuvwxy";
        format!("{}{}", letters[(i % 19) as usize] as char, letters[(i / 19) as usize] as char)
    };
    let events = (0..40)
        .map(|i| event(&format!("p{i}"), T0 + i * 1_000, Level::Error, "api", &format!("{} failed", word(i))))
        .collect();
    store.ingest(batch(events)).await.unwrap();
    let all: Vec<String> =
        store.top_patterns(100, None).await.unwrap().into_iter().map(|p| p.fingerprint).collect();
    assert_eq!(all.len(), 40);
    for fp in &all {
        assert_eq!(find_fingerprint(&*store, &fp[..16]).await.unwrap(), FingerprintLookup::Found(fp.clone()));
        let typed = fp[..8].to_ascii_uppercase();
        assert_eq!(find_fingerprint(&*store, &typed).await.unwrap(), FingerprintLookup::Found(fp.clone()));
        assert_eq!(find_fingerprint(&*store, fp).await.unwrap(), FingerprintLookup::Found(fp.clone()));
    }
    // Every fingerprint starting with one hex digit, in order, from the index.
    let first = &all[0][..1];
    let mut expected: Vec<&String> = all.iter().filter(|f| f.starts_with(first)).collect();
    expected.sort();
    let found = store.fingerprints_with_prefix(first, 100).await.unwrap();
    assert_eq!(found.iter().collect::<Vec<_>>(), expected);
    let absent = (0..16u32)
        .map(|d| format!("{d:x}").repeat(8))
        .find(|p| !all.iter().any(|f| f.starts_with(p.as_str())))
        .unwrap();
    for typed in [absent.as_str(), "zzzzzzzzzz", "1a2b3c4d%", "1a2b3c4d' OR 1=1 --"] {
        assert_eq!(find_fingerprint(&*store, typed).await.unwrap(), FingerprintLookup::NotFound, "{typed}");
    }
    for (typed, says) in [("1a2b3c", "too short"), ("", "too short")] {
        match find_fingerprint(&*store, typed).await.unwrap() {
            FingerprintLookup::Invalid(reason) => assert!(reason.contains(says), "{typed:?}: {reason}"),
            other => panic!("{typed:?} gave {other:?}"),
        }
    }
}
both!(patterns_are_found_by_a_unique_prefix_of_their_id);

async fn patterns_page_filters_orders_and_occurrences_page(store: Arc<dyn Store>) {
    use faultline_store::{PatternOrder, PatternQuery};
    store.ingest(batch(sample())).await.unwrap();
    let messages = |page: &faultline_store::PatternPage| -> Vec<String> {
        page.patterns.iter().map(|p| p.normalized_message.clone()).collect()
    };
    let all = store.list_patterns(&PatternQuery { limit: 10, ..Default::default() }).await.unwrap();
    assert_eq!(all.total, 3);
    assert_eq!(messages(&all)[0], "connection refused to <IP>", "most occurrences first");
    let by_first = PatternQuery { order: PatternOrder::FirstSeen, limit: 10, ..Default::default() };
    let first = store.list_patterns(&by_first).await.unwrap();
    assert_eq!(messages(&first)[2], "connection refused to <IP>", "first seen longest ago: last");
    let by_last = PatternQuery { order: PatternOrder::LastSeen, limit: 1, ..Default::default() };
    let last = store.list_patterns(&by_last).await.unwrap();
    assert_eq!((last.total, messages(&last)), (3, vec!["connection refused to <IP>".to_owned()]));
    let critical = PatternQuery { level: Some(Level::Critical), limit: 10, ..Default::default() };
    assert_eq!(
        messages(&store.list_patterns(&critical).await.unwrap()),
        ["card <NUM> declined for order <NUM>"]
    );
    let worker = PatternQuery { source: Some("worker.email".into()), limit: 10, ..Default::default() };
    assert_eq!(store.list_patterns(&worker).await.unwrap().total, 1);
    let second_page = PatternQuery { limit: 2, offset: 2, ..Default::default() };
    assert_eq!(store.list_patterns(&second_page).await.unwrap().patterns.len(), 1);
    let resolved = PatternQuery {
        status: Some(faultline_core::PatternStatus::Resolved),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_patterns(&resolved).await.unwrap().total, 0);
    let recent = PatternQuery { seen_since_ms: Some(T0 + 100_000), limit: 10, ..Default::default() };
    assert_eq!(store.list_patterns(&recent).await.unwrap().total, 1);
    let quiet = PatternQuery { quiet_since_ms: Some(T0 + 100_000), limit: 10, ..Default::default() };
    assert_eq!(store.list_patterns(&quiet).await.unwrap().total, 2, "the patterns not seen since");

    let refused = &all.patterns[0].fingerprint;
    let page = store.occurrences(refused, 2, 0).await.unwrap().expect("known pattern");
    let ids: Vec<i64> = page.entries.iter().map(|e| e.timestamp_ms).collect();
    assert_eq!((page.total, ids), (3, vec![T0 + 120_000, T0 + 1_000]), "newest first, a page of 2");
    let rest = store.occurrences(refused, 2, 2).await.unwrap().unwrap();
    assert_eq!(rest.entries.iter().map(|e| e.timestamp_ms).collect::<Vec<_>>(), [T0]);
    assert_eq!(store.occurrences("no-such-fingerprint", 10, 0).await.unwrap(), None);
}
both!(patterns_page_filters_orders_and_occurrences_page);

/// What the error list (`/errors`, `GET /api/logs/errors`) and an error's page read: a text
/// filter (any case, `%` and `_` taken literally), ignored patterns hidden unless asked for (also
/// from the busiest), one pattern's chart, and each pattern's newest occurrence for its title.
async fn error_list_text_ignored_chart_and_newest_occurrence(store: Arc<dyn Store>) {
    use faultline_core::PatternStatus;
    use faultline_store::{PatternQuery, pattern_titles};
    store.ingest(batch(sample())).await.unwrap();
    let list = |text: Option<&str>, status: Option<PatternStatus>, hide_ignored: bool| {
        let q = PatternQuery {
            text: text.map(str::to_owned),
            status,
            hide_ignored,
            limit: 10,
            ..Default::default()
        };
        let store = store.clone();
        async move {
            let page = store.list_patterns(&q).await.unwrap();
            let found: Vec<String> = page.patterns.iter().map(|p| p.normalized_message.clone()).collect();
            (page.total, found)
        }
    };
    assert_eq!(list(Some("REFUSED"), None, false).await, (1, vec!["connection refused to <IP>".to_owned()]));
    assert_eq!(list(Some("order 17"), None, false).await.0, 1, "the sample message is searched too");
    assert_eq!(list(Some("100%"), None, false).await.0, 0, "% is a character, not a wildcard");
    assert_eq!(list(Some("'; DROP TABLE patterns; --"), None, false).await.0, 0);

    let card_q = PatternQuery { text: Some("card".into()), limit: 1, ..Default::default() };
    let card = store.list_patterns(&card_q).await.unwrap().patterns.remove(0);
    assert!(store.set_pattern_status(&card.fingerprint, PatternStatus::Ignored, T0 + 200_000).await.unwrap());
    assert_eq!(list(None, None, false).await.0, 3, "every pattern");
    assert_eq!(list(None, None, true).await.0, 2, "ignored hidden");
    assert_eq!(list(None, Some(PatternStatus::Ignored), true).await.0, 1, "unless asked for");
    let busiest = store.busiest_patterns(T0, T0 + 180_000, 10).await.unwrap();
    assert!(
        busiest.iter().all(|b| b.pattern.fingerprint != card.fingerprint),
        "ignored: not among the busiest"
    );

    let refused_q = PatternQuery { text: Some("refused".into()), limit: 1, ..Default::default() };
    let refused = store.list_patterns(&refused_q).await.unwrap().patterns.remove(0);
    let buckets = store.counts_by_interval(T0, T0 + 180_000, 1, Some(&refused.fingerprint)).await.unwrap();
    assert_eq!(buckets.iter().map(|b| b.count).collect::<Vec<_>>(), [2, 0, 1], "only that pattern's");
    let none = store.counts_by_interval(T0, T0 + 180_000, 1, Some("no-such-fingerprint")).await.unwrap();
    assert_eq!(none.iter().map(|b| b.count).sum::<u64>(), 0);

    let wanted =
        vec![refused.fingerprint.clone(), card.fingerprint.clone(), "no-such-fingerprint".to_owned()];
    let mut edges: Vec<(String, String)> = store
        .oldest_and_newest(&wanted)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.fingerprint, e.message))
        .collect();
    edges.sort();
    let mut expected = vec![
        (refused.fingerprint.clone(), "connection refused to 10.0.0.1:5432".to_owned()),
        (refused.fingerprint.clone(), "connection refused to 10.0.0.3:5432".to_owned()),
        (card.fingerprint.clone(), "card 4242 declined for order 17".to_owned()),
    ];
    expected.sort();
    assert_eq!(edges, expected, "oldest and newest; one row for a pattern seen once");
    // Patterns whose entries are gone have no ends, and do not take a neighbour's.
    store.cleanup(T0 + 100_000, 100).await.unwrap();
    let all =
        [refused.fingerprint.clone(), card.fingerprint.clone(), list_fingerprint(&*store, "smtp").await];
    let edges: Vec<String> =
        store.oldest_and_newest(&all).await.unwrap().into_iter().map(|e| e.message).collect();
    assert_eq!(edges, ["connection refused to 10.0.0.3:5432"], "only the entry left");
    let titles = pattern_titles(&*store, [&refused, &card]).await.unwrap();
    assert_eq!(titles[&refused.fingerprint], "connection refused to <IP>", "the address varies");
    assert_eq!(titles[&card.fingerprint], "card 4242 declined for order 17", "seen once: as written");
}
both!(error_list_text_ignored_chart_and_newest_occurrence);

async fn list_fingerprint(store: &dyn Store, text: &str) -> String {
    let q = faultline_store::PatternQuery { text: Some(text.into()), limit: 1, ..Default::default() };
    store.list_patterns(&q).await.unwrap().patterns.remove(0).fingerprint
}

#[tokio::test]
async fn regression_16_another_writer_holding_sqlite_is_a_transient_error_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::SqliteStore::open(&path).await.unwrap();
    store.set_busy_timeout(std::time::Duration::from_millis(200)).unwrap();
    // Another process (a cron `faultline ingest`) holds the write lock.
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let err = store.ingest(batch(sample())).await.expect_err("the database is held");
    assert!(err.is_transient(), "{err}");
    other.execute_batch("COMMIT").unwrap();
    let outcome = store.ingest(batch(sample())).await.expect("free again");
    assert_eq!(outcome.stored, 5);
}

#[tokio::test]
async fn regression_16_a_writer_that_waits_gets_the_lock_when_it_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::SqliteStore::open(&path).await.unwrap();
    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let release = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(300));
        other.execute_batch("COMMIT").unwrap();
    });
    // Within the busy timeout the write waits for the lock instead of failing.
    let outcome = store.ingest(batch(sample())).await.expect("waited for the lock");
    assert_eq!(outcome.stored, 5);
    release.join().unwrap();
}

#[tokio::test]
async fn regression_16_sqlite_cleanup_gives_the_space_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let filler = "x".repeat(1_000);
    for b in 0..20 {
        let events = (0..500)
            .map(|i| {
                event(
                    &format!("{b}-{i}"),
                    T0 + i64::from(b) * 60_000,
                    Level::Error,
                    "api",
                    &format!("failed {b} {i} {filler}"),
                )
            })
            .collect();
        store.ingest(batch(events)).await.unwrap();
    }
    let size = |p: &std::path::Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal = dir.path().join("faultline.db-wal");
    let before = size(&path) + size(&wal);
    let report = store.cleanup(T0 + 18 * 60_000, 1_000).await.unwrap();
    assert_eq!(report.entries_deleted, 9_000);
    let after = size(&path) + size(&wal);
    assert!(report.bytes_freed > 5_000_000, "freed {}", report.bytes_freed);
    assert!(after + 5_000_000 < before, "file {before} → {after} bytes");
}

#[tokio::test]
async fn sqlite_readers_keep_answering_when_another_store_shrinks_the_file() {
    // Readers map the database file; a second store on the same file (another process, as the
    // CLI beside `serve`) gives space back and the file shrinks under the first one's mapping.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let reader = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let janitor = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let filler = "y".repeat(2_000);
    for b in 0..10 {
        let events = (0..400)
            .map(|i| {
                let message = format!("timeout talking to shard{b} request {i} {filler}");
                event(&format!("{b}-{i}"), T0 + i64::from(b) * 60_000, Level::Error, "api", &message)
            })
            .collect();
        reader.ingest(batch(events)).await.unwrap();
    }
    let search = |text: &str| SearchQuery { text: Some(text.to_owned()), limit: 500, ..Default::default() };
    // A cleanup with nothing to delete moves the rows from the write-ahead log into the file.
    janitor.cleanup(0, 1_000).await.unwrap();
    // Every page of the table read through the mapping.
    assert_eq!(reader.search(&search("shard9")).await.unwrap().total, 400);
    assert_eq!(reader.search(&search("shard1 ")).await.unwrap().total, 400);
    let size = || std::fs::metadata(&path).unwrap().len();
    let before = size();
    let report = janitor.cleanup(T0 + 9 * 60_000, 1_000).await.unwrap();
    assert_eq!(report.entries_deleted, 3_600);
    assert!(size() + 5_000_000 < before, "the file shrank: {before} → {} bytes", size());
    for _ in 0..3 {
        assert_eq!(reader.search(&search("shard1 ")).await.unwrap().total, 0);
        let page = reader.search(&search("shard9")).await.unwrap();
        assert_eq!((page.total, page.entries.len()), (400, 400));
    }
    // And it writes and reads on as the file grows again.
    let events = (0..400)
        .map(|i| {
            event(
                &format!("again-{i}"),
                T0 + 20 * 60_000,
                Level::Error,
                "api",
                &format!("shard7 back {i} {filler}"),
            )
        })
        .collect();
    reader.ingest(batch(events)).await.unwrap();
    assert_eq!(reader.search(&search("shard7 back")).await.unwrap().total, 400);
}

#[tokio::test]
async fn regression_16_entries_are_indexed_once_when_their_chunk_is_complete() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let rows = || -> Vec<i64> {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let mut stmt = conn.prepare("SELECT rowid FROM entries_fts ORDER BY rowid").unwrap();
        stmt.query_map([], |r| r.get(0)).unwrap().map(Result::unwrap).collect()
    };
    let found = |needle: &str| {
        let q = SearchQuery { text: Some(needle.into()), limit: 10, ..Default::default() };
        let store = store.clone();
        async move { store.search(&q).await.unwrap().total }
    };
    let one = |id: String, message: String| batch(vec![event(&id, T0, Level::Error, "api", &message)]);
    // Small entries, then large ones (1 MiB each), one batch at a time: the chunk they are in
    // (ids 1–255) is the newest, searched without the index, and nothing is indexed yet.
    for i in 0..5 {
        store.ingest(one(format!("s{i}"), format!("small{i} failed"))).await.unwrap();
    }
    let big = "y".repeat(1 << 20);
    for i in 0..5 {
        store.ingest(one(format!("l{i}"), format!("large{i} failed {big}"))).await.unwrap();
    }
    assert_eq!(rows(), Vec::<i64>::new());
    for needle in ["small0", "small4", "large0", "large4"] {
        assert_eq!(found(needle).await, 1, "{needle}");
    }
    // A batch that reaches the next chunk indexes the first whole: the 5 MiB of large entries
    // stored before are read back in two parts, so indexing never holds all of them at once.
    let events =
        (10..260).map(|i| event(&format!("b{i}"), T0, Level::Error, "api", &format!("bulk{i} failed")));
    store.ingest(batch(events.collect())).await.unwrap();
    let first_rows = rows();
    assert_eq!(first_rows.first().map(|r| r >> 8), Some(1), "the first row starts at id 1");
    assert_eq!(first_rows.iter().map(|r| (r >> 8) + (r & 255)).max(), Some(255), "chunk 0 ends at id 255");
    assert_eq!(first_rows.len(), 2, "the earlier entries held past ROW_BYTES, then the rest: {first_rows:?}");
    for needle in ["small0", "large4", "bulk10 failed", "bulk255", "bulk256", "bulk259"] {
        assert_eq!(found(needle).await, 1, "{needle}");
    }
    // Later small batches inside the new newest chunk leave the index as it was.
    store.ingest(one("t".into(), "tail1 failed".into())).await.unwrap();
    assert_eq!(rows(), first_rows);
    assert_eq!(found("tail1").await, 1);
}

#[tokio::test]
async fn a_cleanup_that_deletes_the_newest_entries_leaves_search_and_ingest_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let events = |from: usize, ts: i64| -> Vec<_> {
        (from..from + 300)
            .map(|i| event(&format!("e{i}"), ts, Level::Error, "api", &format!("item{i} failed")))
            .collect()
    };
    let total = |needle: &str| {
        let q = SearchQuery { text: Some(needle.into()), limit: 10, ..Default::default() };
        let store = store.clone();
        async move { store.search(&q).await.unwrap().total }
    };
    // Ids 1–300 are recent; ids 301–600 come from an old file read last, so the newest ids
    // hold the oldest times. Chunk 1 (ids 256–511) is indexed, chunk 2 is the newest.
    store.ingest(batch(events(1, T0 + 3_600_000))).await.unwrap();
    store.ingest(batch(events(301, T0))).await.unwrap();
    let report = store.cleanup(T0 + 60_000, 1_000).await.unwrap();
    assert_eq!(report.entries_deleted, 300);
    // Chunk 1 now holds the newest entry (id 300): found once, not through its row and
    // again as the newest chunk.
    assert_eq!(total("item290 failed").await, 1);
    // New entries take ids 301–600 again: chunk 1 is indexed anew without a clash.
    store.ingest(batch(events(1001, T0 + 3_600_000))).await.unwrap();
    for needle in ["item290 failed", "item1001 failed", "item1300 failed", "item5 failed"] {
        assert_eq!(total(needle).await, 1, "{needle}");
    }
    assert_eq!(total("item400 failed").await, 0, "deleted");
}

/// Entries of mixed-case, punctuated, non-ASCII words (and some tracebacks), three chunks' worth
/// so that most of them are found through the search index: 700 entries over three chunks,
/// each line of 3–6 words drawn from a fixed list.
fn varied_entries() -> Vec<faultline_store::GroupedEvent> {
    const WORDS: [&str; 18] = [
        "Timeout",
        "connection",
        "REFUSED",
        "db-7.internal",
        "db-17.internal",
        "user_id=42",
        "Grüße",
        "日本語のエラー",
        "naïve",
        "🚀launch",
        "x",
        "ab",
        "0xDEADbeef",
        "/api/v2/orders",
        "\"quoted\"",
        "50%",
        "under_score",
        "ÉCHEC",
    ];
    let mut state = 7u64;
    let mut next = |n: u64| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (state >> 33) % n
    };
    (0..700)
        .map(|i| {
            let words: Vec<&str> =
                (0..3 + next(4)).map(|_| WORDS[next(WORDS.len() as u64) as usize]).collect();
            let mut e = event(&format!("v{i}"), T0 + i, Level::Error, "api", &words.join(" "));
            if next(5) == 0 {
                e.event.traceback = Some(format!("at Frame.run{} (worker.js:{})", next(3), next(40)));
            }
            e
        })
        .collect()
}

/// Substring search, indexed chunks included, against an oracle: the entries whose message or
/// traceback contains the needle, ASCII letters in either case (as LIKE compares them).
async fn indexed_search_finds_what_a_scan_finds(store: Arc<dyn Store>) {
    let entries = varied_entries();
    store.ingest(batch(entries.clone())).await.unwrap();
    let needles = [
        "timeout",
        "TIMEOUT conn",
        "db-7.internal",
        "db-1",
        "b-7.int",
        "7.internal",
        "USER_ID=4",
        "grüße",
        "日本語",
        "本語の",
        "ïve",
        "🚀lau",
        "deadBEEF",
        "api/v2",
        "\"quoted\" ",
        "50%",
        "r_s",
        "ab",
        "x ab",
        "frame.RUN2",
        "worker.js:1",
        "Run1 (worker",
        "ÉCHEC",
        "nothing-here",
        "refused  timeout",
        // The message and the traceback are searched each on its own, on both backends: a needle
        // that would span them finds nothing.
        "\nat Frame",
    ];
    let mut found_some = 0;
    for needle in needles {
        let folded = needle.to_ascii_lowercase();
        let contains = |text: &str| text.to_ascii_lowercase().contains(&folded);
        let expected = entries
            .iter()
            .filter(|e| contains(&e.event.message) || e.event.traceback.as_deref().is_some_and(contains))
            .count() as u64;
        let q = SearchQuery { text: Some(needle.into()), limit: 5, ..Default::default() };
        let page = store.search(&q).await.unwrap();
        assert_eq!(page.total, expected, "{needle:?}");
        assert_eq!(page.entries.len() as u64, expected.min(5), "{needle:?}");
        found_some += usize::from(expected > 0);
    }
    assert!(found_some >= 20, "most needles are in the entries ({found_some})");
}
both!(indexed_search_finds_what_a_scan_finds);

#[tokio::test]
async fn an_index_of_trigrams_of_words_is_rebuilt_as_tokens_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let entries = varied_entries();
    store.ingest(batch(entries.clone())).await.unwrap();
    drop(store);
    // What an installation before migration 09 has: FTS5's trigram tokenizer over the distinct
    // words of each complete chunk (ids 1–511 here; 512–700 is the newest chunk).
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "DROP TABLE entries_fts;
         CREATE VIRTUAL TABLE entries_fts USING fts5 (
             body, content = '', contentless_delete = 1, tokenize = 'trigram', detail = none);
         INSERT INTO entries_fts (rowid, body)
             SELECT (min(id) << 8) | (max(id) - min(id)), group_concat(message, ' ')
             FROM entries WHERE id < 512 GROUP BY id / 256;
         PRAGMA user_version = 8;",
    )
    .unwrap();
    drop(conn);
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    for needle in ["db-7.internal", "Grüße", "0xdeadbeef"] {
        let expected = entries
            .iter()
            .filter(|e| e.event.message.to_ascii_lowercase().contains(&needle.to_ascii_lowercase()))
            .count() as u64;
        assert!(expected > 100, "{needle}: {expected}");
        let q = SearchQuery { text: Some(needle.into()), limit: 10, ..Default::default() };
        assert_eq!(store.search(&q).await.unwrap().total, expected, "{needle}");
    }
    // New entries are indexed in the new form beside the rebuilt ones.
    let more: Vec<_> = (0..400)
        .map(|i| event(&format!("m{i}"), T0, Level::Error, "api", &format!("after{i} upgrade")))
        .collect();
    store.ingest(batch(more)).await.unwrap();
    let q = SearchQuery { text: Some("after1 upgrade".into()), limit: 10, ..Default::default() };
    assert_eq!(store.search(&q).await.unwrap().total, 1);
}

#[tokio::test]
async fn an_index_of_the_old_form_is_rebuilt_on_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let events = (0..600)
        .map(|i| event(&format!("{i}"), T0, Level::Error, "api", &format!("upgrade{i} failed")))
        .collect();
    store.ingest(batch(events)).await.unwrap();
    drop(store);
    // What an installation before migration 05 has: one row per chunk, rowid = id / 256 (and
    // none of what 06 and 08 add).
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        "INSERT INTO entries_fts (entries_fts) VALUES ('delete-all');
         INSERT INTO entries_fts (rowid, body) SELECT id / 256, group_concat(message, ' ') FROM entries GROUP BY id / 256;
         DROP INDEX alerts_fired; CREATE INDEX alerts_fired ON alerts (fired_ms);
         DROP TABLE alert_feed; DROP TABLE job_leases; DROP INDEX alerts_held; DROP INDEX alerts_subject;
         ALTER TABLE minute_counts DROP COLUMN first_ms; ALTER TABLE minute_counts DROP COLUMN last_ms;
         ALTER TABLE job_runs DROP COLUMN instance;
         ALTER TABLE alerts DROP COLUMN held; ALTER TABLE alerts DROP COLUMN digest_id;
         PRAGMA user_version = 4;",
    )
    .unwrap();
    drop(conn);
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    for needle in ["upgrade0 ", "upgrade255 ", "upgrade599 "] {
        let q = SearchQuery { text: Some(needle.trim().into()), limit: 10, ..Default::default() };
        assert_eq!(store.search(&q).await.unwrap().total, 1, "{needle}");
    }
}

/// Batches sent at once are committed together (SQLite commits what waits for the writer in
/// one transaction): each caller still gets its own batch's outcome, an event sent twice is
/// stored once, and every stored entry is searchable.
async fn batches_sent_at_once_each_get_their_own_outcome(store: Arc<dyn Store>) {
    let events = |i: usize| -> Vec<_> {
        let n = i % 30 % 4 + 1;
        (0..n)
            .map(|k| {
                let id = format!("c{}-{k}", i % 30);
                event(
                    &id,
                    T0 + k as i64,
                    Level::Error,
                    "svc",
                    &format!("conc worker {} failed step {k}", i % 30),
                )
            })
            .collect()
    };
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..60usize {
        let store = store.clone();
        let batch = batch(events(i));
        tasks.spawn(async move { (i, store.ingest(batch).await.unwrap()) });
    }
    let mut outcomes = std::collections::BTreeMap::new();
    while let Some(done) = tasks.join_next().await {
        let (i, outcome) = done.unwrap();
        outcomes.insert(i, outcome);
    }
    for i in 0..30 {
        let n = events(i).len() as u64;
        let (a, b) = (&outcomes[&i], &outcomes[&(i + 30)]);
        assert_eq!((a.stored + a.duplicates, b.stored + b.duplicates), (n, n), "batch {i}");
        assert_eq!((a.stored + b.stored, a.duplicates + b.duplicates), (n, n), "batch {i} and its repeat");
    }
    let q = SearchQuery { text: Some("conc worker".into()), limit: 1, ..Default::default() };
    let expected: u64 = (0..30).map(|i| events(i).len() as u64).sum();
    assert_eq!(store.search(&q).await.unwrap().total, expected);
    for i in [0, 13, 29] {
        let q =
            SearchQuery { text: Some(format!("worker {i} failed step 0")), limit: 5, ..Default::default() };
        assert_eq!(store.search(&q).await.unwrap().total, 1, "worker {i}");
    }
}
both!(batches_sent_at_once_each_get_their_own_outcome);

/// The room a minute has left goes to the batch's events in order, and an event stored before
/// takes none of it: stored, duplicate and capped come out as if each event were inserted on
/// its own, in order (PostgreSQL inserts a batch's entries in one statement).
async fn a_batch_sent_again_fills_its_minute_in_order(store: Arc<dyn Store>) {
    let retry = |id: &str, k: i64| event(id, T0 + k, Level::Error, "loop", &format!("retry {k} failed"));
    let mut first = batch(vec![retry("1", 1), retry("2", 2)]);
    first.max_stored_per_pattern_minute = 3;
    let outcome = store.ingest(first).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates, outcome.capped), (2, 0, 0));
    // "1" and "2" are stored already; "3" takes the minute's last place; its copy and "4" are
    // over the cap (counted, not stored); "5" falls in the next minute.
    let mut again = batch(vec![
        retry("1", 1),
        retry("2", 2),
        retry("3", 3),
        retry("3", 3),
        retry("4", 4),
        retry("5", 60_000),
    ]);
    again.max_stored_per_pattern_minute = 3;
    let outcome = store.ingest(again).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates, outcome.capped), (2, 2, 2));
    let page = store.search(&SearchQuery { limit: 10, ..Default::default() }).await.unwrap();
    let mut ids: Vec<&str> = page.entries.iter().map(|e| e.external_id.as_str()).collect();
    ids.sort_unstable();
    assert_eq!(ids, ["1", "2", "3", "5"]);
    assert_eq!(store.top_patterns(1, None).await.unwrap()[0].occurrence_count, 6);
    assert_eq!(store.error_rate(T0, T0 + 120_000).await.unwrap().total_errors, 6);
}
both!(a_batch_sent_again_fills_its_minute_in_order);

/// A large batch (PostgreSQL copies its keys as if all were new) holding events stored before,
/// after new ones and among them, stores only the new ones and counts the rest as duplicates.
async fn a_large_batch_sent_again_stores_only_its_new_events(store: Arc<dyn Store>) {
    let fault = |i: i64| event(&format!("e{i}"), T0 + i, Level::Error, "api", &format!("fault {i} at shard"));
    let outcome = store.ingest(batch((0..300).map(fault).collect())).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (300, 0));
    // 100 new events first, then the 300 stored before with 50 new ones among them.
    let again: Vec<_> = (300..400).chain(0..150).chain(400..450).chain(150..300).map(fault).collect();
    let outcome = store.ingest(batch(again)).await.unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (150, 300));
    let q = SearchQuery { text: Some("at shard".into()), limit: 10, ..Default::default() };
    let page = store.search(&q).await.unwrap();
    assert_eq!(page.total, 450);
    assert_eq!(store.pattern(&page.entries[0].fingerprint).await.unwrap().unwrap().occurrence_count, 450);
    let q = SearchQuery { text: Some("fault 420 at".into()), limit: 10, ..Default::default() };
    assert_eq!(store.search(&q).await.unwrap().total, 1);
}
both!(a_large_batch_sent_again_stores_only_its_new_events);

/// An installation from before PostgreSQL indexed chunks of entries (one trigram row per entry)
/// has its stored entries indexed by the upgrade: they are found by search afterwards, beside
/// the entries stored after it.
#[tokio::test]
async fn postgres_entries_stored_before_chunked_search_are_found_after_the_upgrade() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    let events = (0..600)
        .map(|i| event(&format!("{i}"), T0, Level::Error, "api", &format!("upgrade{i} failed\nat step {i}")))
        .collect();
    store.ingest(batch(events)).await.unwrap();
    drop(store);
    // The schema before migration 6 (and 10, which changed the table 6 makes).
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "DROP TABLE entry_chunks;
         DELETE FROM _sqlx_migrations WHERE version IN (6, 10);
         CREATE INDEX entries_search ON entries
             USING gin ((message || E'\\n' || coalesce(traceback, '')) gin_trgm_ops);",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let store = faultline_store::open(&url).await.unwrap();
    store.ingest(batch(vec![event("new", T0, Level::Error, "api", "upgrade600 failed")])).await.unwrap();
    for needle in ["upgrade0 ", "upgrade255 ", "upgrade599 ", "step 256", "upgrade600"] {
        let q = SearchQuery { text: Some(needle.into()), limit: 10, ..Default::default() };
        assert_eq!(store.search(&q).await.unwrap().total, 1, "{needle}");
    }
    let q = SearchQuery { text: Some("failed".into()), limit: 10, ..Default::default() };
    assert_eq!(store.search(&q).await.unwrap().total, 601);
}

/// Migration 10 turns each chunk's text (what migrations 6–9 kept) into the keys the writer
/// makes now, read from pg_trgm's trigrams: the same keys, mixed case, digits, punctuation,
/// non-ASCII words and a Kelvin sign (whose lower case is `k`) included.
#[tokio::test]
async fn postgres_chunks_kept_as_text_get_the_writers_keys_on_upgrade() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    let mut entries = varied_entries();
    entries.push(event("kelvin", T0, Level::Error, "api", "\u{212A}ey lookup failed: \u{0130}D9 ...Ab"));
    store.ingest(batch(entries)).await.unwrap();
    drop(store);
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let keys_by_chunk =
        "SELECT first_id, last_id, ARRAY(SELECT k FROM unnest(keys) k ORDER BY k) FROM entry_chunks
                         ORDER BY first_id";
    let written: Vec<(i64, i64, Vec<i32>)> =
        sqlx::query_as(keys_by_chunk).fetch_all(&mut conn).await.unwrap();
    assert!(written.len() >= 3, "{} chunks", written.len());
    // Each chunk as migrations 6–9 left it: the distinct lines of its entries.
    sqlx::raw_sql(
        "ALTER TABLE entry_chunks ADD COLUMN doc TEXT;
         UPDATE entry_chunks c SET doc = (
             SELECT string_agg(DISTINCT line, E'\\n') FROM entries e,
                 regexp_split_to_table(e.message || E'\\n' || coalesce(e.traceback, ''), E'\\n') line
             WHERE e.id BETWEEN c.first_id AND c.last_id);
         ALTER TABLE entry_chunks DROP COLUMN keys;
         CREATE INDEX entry_chunks_doc ON entry_chunks USING gin (doc gin_trgm_ops);
         DELETE FROM _sqlx_migrations WHERE version = 10;",
    )
    .execute(&mut conn)
    .await
    .unwrap();
    let store = faultline_store::open(&url).await.unwrap();
    let converted: Vec<(i64, i64, Vec<i32>)> =
        sqlx::query_as(keys_by_chunk).fetch_all(&mut conn).await.unwrap();
    assert_eq!(converted, written);
    let kelvin = written.last().unwrap();
    let key = |t: &[u8; 3]| i32::from(t[0]) << 16 | i32::from(t[1]) << 8 | i32::from(t[2]);
    for trigram in [b"key", b"id9", b"loo"] {
        assert!(kelvin.2.contains(&key(trigram)), "{:?}", std::str::from_utf8(trigram));
    }
    for needle in ["EY LOOKUP", "lookup FAILED", "db-7.internal"] {
        let q = SearchQuery { text: Some(needle.into()), limit: 10, ..Default::default() };
        assert!(store.search(&q).await.unwrap().total > 0, "{needle}");
    }
}

/// A large batch's keys are written with `COPY`; when another instance stores one of them
/// before the batch's write commits, that event is a duplicate and the rest are stored.
#[tokio::test]
async fn postgres_a_key_another_instance_stores_meanwhile_is_a_duplicate() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    store.ingest(batch(vec![event("first", T0, Level::Error, "api", "warm-up failed")])).await.unwrap();
    // Another instance's transaction holds key "k2", not yet committed: the batch does not
    // see it, and its write waits for that transaction.
    let mut other = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::raw_sql(
        "BEGIN; INSERT INTO entry_keys (source_id, external_id, timestamp_ms) VALUES ('test', 'k2', 0)",
    )
    .execute(&mut other)
    .await
    .unwrap();
    let events =
        (0..300).map(|i| event(&format!("k{i}"), T0 + i, Level::Error, "api", "lock wait")).collect();
    let ingest = tokio::spawn({
        let store = store.clone();
        async move { store.ingest(batch(events)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!ingest.is_finished(), "the batch waits for the other transaction's key");
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    let outcome = ingest.await.unwrap().unwrap();
    assert_eq!((outcome.stored, outcome.duplicates), (299, 1));
    let q = SearchQuery { text: Some("lock wait".into()), limit: 10, ..Default::default() };
    let page = store.search(&q).await.unwrap();
    assert_eq!(page.total, 299);
    let pattern = store.pattern(&page.entries[0].fingerprint).await.unwrap().unwrap();
    assert_eq!(pattern.occurrence_count, 299);
}

/// A batch's new per-minute count rows, when there are many, are written with `COPY`; when
/// another instance writes one of them between the batch's look-up and its write, the batch
/// adds to that row instead.
#[tokio::test]
async fn postgres_a_minute_row_another_instance_writes_meanwhile_is_added_to() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    let outcome = store.ingest(batch(vec![event("a", T0, Level::Error, "api", "quota hit")])).await.unwrap();
    let pattern_id = outcome.touched[0].pattern_id;
    let later = T0 + 5 * 60_000;
    let mut other = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    sqlx::raw_sql("BEGIN").execute(&mut other).await.unwrap();
    sqlx::query(
        "INSERT INTO minute_counts (minute_ms, pattern_id, source, level, count, stored, first_ms, last_ms)
         VALUES ($1, $2, 'api', 'ERROR', 7, 0, $3, $3)",
    )
    .bind(later / 60_000 * 60_000)
    .bind(pattern_id)
    .bind(later)
    .execute(&mut other)
    .await
    .unwrap();
    // One event in each of 300 minutes, `later`'s among them.
    let minute = |m: i64| T0 / 60_000 * 60_000 + m * 60_000;
    let events: Vec<_> =
        (1..=300).map(|m| event(&format!("b{m}"), minute(m) + 1, Level::Error, "api", "quota hit")).collect();
    let ingest = tokio::spawn({
        let store = store.clone();
        async move { store.ingest(batch(events)).await }
    });
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(!ingest.is_finished(), "the batch waits for the other transaction's row");
    sqlx::raw_sql("COMMIT").execute(&mut other).await.unwrap();
    assert_eq!(ingest.await.unwrap().unwrap().stored, 300);
    let counts = store.pattern_minute_counts(&[pattern_id], T0).await.unwrap();
    let minutes: Vec<(i64, u64)> = counts.iter().map(|m| (m.minute_ms, m.count)).collect();
    let expected: Vec<(i64, u64)> =
        (0..=300).map(|m| (minute(m), if minute(m) == later / 60_000 * 60_000 { 8 } else { 1 })).collect();
    assert_eq!(minutes, expected);
}

/// PostgreSQL compares a needle with ASCII letters only with ASCII case folding (half the cost
/// per entry), and one with other letters with the database's: `échec` still finds `ÉCHEC`.
#[tokio::test]
async fn postgres_a_needle_with_non_ascii_letters_folds_their_case() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let store = faultline_store::open(&url).await.unwrap();
    let events = vec![
        event("1", T0, Level::Error, "api", "ÉCHEC de la connexion"),
        event("2", T0 + 1, Level::Error, "api", "Timeout talking to db-7"),
    ];
    store.ingest(batch(events)).await.unwrap();
    for (needle, hits) in
        [("échec de", 1), ("ÉCHEC DE", 1), ("chec DE LA", 1), ("TIMEOUT talking", 1), ("écho", 0)]
    {
        let q = SearchQuery { text: Some(needle.into()), limit: 10, ..Default::default() };
        assert_eq!(store.search(&q).await.unwrap().total, hits, "{needle}");
    }
}

/// Three instances on one PostgreSQL database store batches of the same patterns at once, in
/// different orders: none fails (each batch's entries hold key-share locks on their patterns
/// while the counts are added, which an exclusive row lock would deadlock with), and the counts
/// are exact.
#[tokio::test]
async fn regression_20_instances_storing_the_same_patterns_at_once_never_deadlock() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(faultline_store::open(&url).await.unwrap());
    }
    let messages = ["disk full on db-1", "token expired for user 7", "queue stalled after 30s"];
    let mut tasks = tokio::task::JoinSet::new();
    for round in 0..20 {
        for (k, store) in stores.iter().enumerate() {
            let store = store.clone();
            let events: Vec<_> = (0..messages.len())
                .map(|j| {
                    let m = messages[(j + k) % messages.len()];
                    event(&format!("{round}-{k}-{j}"), T0 + round, Level::Error, "svc", m)
                })
                .collect();
            tasks.spawn(async move { store.ingest(batch(events)).await });
        }
    }
    while let Some(done) = tasks.join_next().await {
        let outcome = done.unwrap().expect("no batch fails");
        assert_eq!(outcome.stored, 3);
    }
    let top = stores[0].top_patterns(10, None).await.unwrap();
    let counts: Vec<i64> = top.iter().map(|p| p.occurrence_count).collect();
    assert_eq!(counts, [60, 60, 60]);
}

/// The store's connections never compile queries with JIT, even on a server where every query
/// would: the generic plan of a rare needle's search is priced past the JIT thresholds, and
/// compiling it cost half a second for a search that runs in milliseconds.
#[tokio::test]
async fn postgres_connections_run_without_jit() {
    let Some(url) = faultline_testkit::fresh_postgres_url().await else { return };
    let database = url.rsplit('/').next().unwrap().split('?').next().unwrap().to_owned();
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let set = format!("ALTER DATABASE \"{database}\" SET jit = on");
    sqlx::raw_sql(sqlx::AssertSqlSafe(set)).execute(&mut admin).await.unwrap();
    let store = faultline_store::PgStore::connect(&url).await.unwrap();
    let jit: String = sqlx::query_scalar("SHOW jit").fetch_one(store.pool()).await.unwrap();
    assert_eq!(jit, "off");
    let mut other = <sqlx::PgConnection as sqlx::Connection>::connect(&url).await.unwrap();
    let fresh: String = sqlx::query_scalar("SHOW jit").fetch_one(&mut other).await.unwrap();
    assert_eq!(fresh, "on", "only faultline's own connections change");
}

/// Raw payloads of every size come back as they were sent, whatever form the store keeps them
/// in (SQLite compresses large ones): JSON of 40 KB, varied text, hostile text, a short line.
async fn raw_payloads_of_every_size_come_back_as_sent(store: Arc<dyn Store>) {
    let frames: String = (0..400)
        .map(|i| format!("{{\"function\":\"handle_{}\",\"lineno\":{i},\"vars\":{{\"ok\":\"é\"}}}},", i % 9))
        .collect();
    let json = format!("{{\"frames\":[{}]}}", frames.trim_end_matches(','));
    // 3 KB of text with few repeats.
    let noise: String = (0..3_000u64)
        .map(|i| char::from(b'!' + ((i.wrapping_mul(2_654_435_761) ^ (i << 9)) % 89) as u8))
        .collect();
    let hostile =
        format!("<script>alert(1)</script> '; DROP TABLE entries; -- \u{1b}[31m {}", "x".repeat(5_000));
    let raws = [json.as_str(), noise.as_str(), hostile.as_str(), "short"];
    let events = raws
        .iter()
        .enumerate()
        .map(|(i, raw)| {
            let mut e =
                event(&format!("raw-{i}"), T0 + i as i64, Level::Error, "api", &format!("payload {i}"));
            e.event.raw = (*raw).to_owned();
            e
        })
        .collect();
    assert_eq!(store.ingest(batch(events)).await.unwrap().stored, 4);
    for (i, raw) in raws.iter().enumerate() {
        let page = store
            .search(&SearchQuery { text: Some(format!("payload {i}")), limit: 5, ..Default::default() })
            .await
            .unwrap();
        assert_eq!(page.entries.len(), 1, "payload {i}");
        assert!(page.entries[0].raw == *raw, "payload {i} came back changed");
    }
}
both!(raw_payloads_of_every_size_come_back_as_sent);

/// SQLite keeps a large raw payload compressed, a short one or one that does not shrink as
/// text; a BLOB that is not a compressed payload is a clear error, not made-up text.
#[tokio::test]
async fn sqlite_keeps_large_raw_payloads_compressed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("faultline.db");
    let store = faultline_store::open(path.to_str().unwrap()).await.unwrap();
    let large: String =
        (0..2_000).map(|i| format!("\"frame {}\": \"context line {}\", ", i % 50, i % 7)).collect();
    let mut big = event("big", T0, Level::Error, "api", "big payload");
    big.event.raw = large.clone();
    let small = event("small", T0 + 1, Level::Error, "api", "small payload");
    store.ingest(batch(vec![big, small])).await.unwrap();
    let conn = rusqlite::Connection::open(&path).unwrap();
    let kept = |id: &str| -> (String, i64) {
        conn.query_row("SELECT typeof(raw), length(raw) FROM entries WHERE external_id = ?1", [id], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap()
    };
    let (kind, bytes) = kept("big");
    assert_eq!(kind, "blob");
    assert!(bytes * 10 < large.len() as i64, "{bytes} bytes kept for {}", large.len());
    assert_eq!(kept("small").0, "text");
    conn.execute("UPDATE entries SET raw = x'00ff00ff' WHERE external_id = 'small'", []).unwrap();
    let error = store
        .search(&SearchQuery { text: Some("small payload".into()), limit: 5, ..Default::default() })
        .await
        .unwrap_err();
    assert!(error.to_string().contains("raw payload not readable"), "{error}");
}
