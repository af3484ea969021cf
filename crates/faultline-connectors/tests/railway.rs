//! The Railway crawler against a fake of Railway's GraphQL API (real HTTP on loopback, the real
//! shapes and quirks: limit+1, ties at one nanosecond, 429, 5xx, slow answers, truncated JSON,
//! "Not Authorized"), and a property test of crawls with failures and restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use faultline_connectors::railway::{
    Budget, Client, RailwayError, RailwayLog, Token, Window, crawl, cursor_after, dropped_by_rate_limit,
    format_ns, next_window, parse_cursor, parse_ns, settle, to_event,
};
use faultline_connectors::railway_live::{LiveQuery, subscribe, ws_url};
use faultline_core::Level;
use faultline_testkit::fake::{FAKE_PROJECT_ID, FakeRailway, LiveOptions, LiveRefusal, Reply, SeverityStyle};
use proptest::prelude::*;

const T0: i64 = 1_780_000_000_000_000_000; // 2026-05-28, in ns

fn client(fake: &FakeRailway, token: Token) -> Client {
    Client::new(
        fake.url(),
        token,
        // Generous for answers on a busy machine; the timeout case withholds its answer.
        reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap(),
    )
}

#[tokio::test]
async fn crawl_finds_every_error_through_full_windows_and_ties() {
    let fake = FakeRailway::start("good-token").await;
    // 2,000 errors and 500 info lines over 20 minutes, and 250 errors sharing one nanosecond.
    for i in 0..2_500i64 {
        let severity = if i % 5 == 4 { "info" } else { "error" };
        fake.add(&format_ns(T0 + i * 480_000_000), severity, "svc-api", "inst-1", &format!("failure {i}"));
    }
    for i in 0..250 {
        fake.add(&format_ns(T0 + 7), "error", "svc-worker", &format!("inst-{}", i % 3), &format!("tie {i}"));
    }
    let c = client(&fake, Token::Account("good-token".into()));
    let window = Window { since_ns: T0, until_ns: T0 + 1_200_000_000_000 };
    let crawled = crawl(|w, limit| c.environment_logs("env-1", "@level:error", w, limit), window, 100, 5_000)
        .await
        .unwrap();
    assert_eq!(
        crawled.logs.len(),
        2_000 + 250,
        "250 lines at one nanosecond are read with the maximum limit"
    );
    assert_eq!(crawled.unsplittable, 0);
    // With a maximum below the tie, what cannot be read is reported, not hidden.
    let small = crawl(|w, limit| c.environment_logs("env-1", "@level:error", w, limit), window, 100, 200)
        .await
        .unwrap();
    assert_eq!(small.logs.len(), 2_000 + 201);
    // The tie's nanosecond, and the two next to it (their windows are widened onto it).
    assert!((1..=3).contains(&small.unsplittable), "{}", small.unsplittable);
    let keys: BTreeSet<String> = crawled.logs.iter().map(RailwayLog::key).collect();
    assert_eq!(keys.len(), crawled.logs.len(), "nothing twice");
    assert!(crawled.logs.windows(2).all(|w| w[0].ts_ns <= w[1].ts_ns));
    // 23 pages at least; halving windows and walking down to the tied nanosecond cost the rest.
    assert!(crawled.requests < 200, "{} requests", crawled.requests);
    let first = &crawled.logs[0];
    assert_eq!((first.level(), first.service_id.as_deref()), (Level::Error, Some("svc-api")));
    let auth = fake.http.received()[0].header("authorization").map(str::to_owned);
    assert_eq!(auth.as_deref(), Some("Bearer good-token"));
}

#[tokio::test]
async fn regression_18_a_tie_beyond_the_page_size_costs_a_few_requests() {
    let fake = FakeRailway::start("good-token").await;
    for i in 0..300 {
        fake.add(&format_ns(T0 + 90_000_000_007), "error", "svc-worker", "inst-1", &format!("tie {i}"));
    }
    for i in 0..40i64 {
        fake.add(&format_ns(T0 + i * 30_000_000_000), "error", "svc-api", "inst-1", &format!("failure {i}"));
    }
    let c = client(&fake, Token::Account("good-token".into()));
    // A two-hour window, as a first crawl with backfill reads it.
    let window = Window { since_ns: T0, until_ns: T0 + 7_200_000_000_000 };
    let crawled = crawl(|w, limit| c.environment_logs("env-1", "@level:error", w, limit), window, 100, 5_000)
        .await
        .unwrap();
    assert_eq!(crawled.logs.len(), 340);
    // Halving two hours down to one nanosecond took ~80 requests; isolating it takes a few.
    assert!(crawled.requests <= 8, "{} requests", crawled.requests);
}

#[tokio::test]
async fn failures_are_named_for_what_the_crawler_does() {
    let fake = FakeRailway::start("good-token").await;
    fake.add(&format_ns(T0), "error", "svc-api", "i", "boom");
    let window = Window { since_ns: T0 - 10, until_ns: T0 + 10 };
    let project = client(&fake, Token::Project("good-token".into()));
    assert_eq!(project.environment_logs("env-1", "@level:error", window, 10).await.unwrap().len(), 1);
    assert_eq!(fake.http.received()[0].header("project-access-token"), Some("good-token"));

    fake.http.script([
        Reply::new(429, "").header("Retry-After", "7"),
        Reply::new(503, "upstream connect error"),
        Reply::new(200, r#"{"data":{"environmentLogs":[{"timestamp":"2026-"#),
        Reply::new(200, "[]").withheld(),
        Reply::new(
            200,
            r#"{"data":{"environmentLogs":[{"timestamp":"yesterday","message":"x","attributes":[]}]}}"#,
        ),
    ]);
    let got: Vec<RailwayError> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(project.environment_logs("env-1", "@level:error", window, 10).await.unwrap_err());
        }
        v
    };
    assert_eq!(got[0], RailwayError::RateLimited { retry_after: Duration::from_secs(7) });
    assert_eq!(got[1], RailwayError::Unavailable { detail: "HTTP 503".into() });
    assert!(matches!(&got[2], RailwayError::Malformed { .. }), "{:?}", got[2]);
    assert!(
        matches!(&got[3], RailwayError::Unavailable { detail } if detail.starts_with("timed out")),
        "{:?}",
        got[3]
    );
    assert!(
        matches!(&got[4], RailwayError::Malformed { detail } if detail.contains("yesterday")),
        "{:?}",
        got[4]
    );
    assert!(got.iter().take(2).all(RailwayError::is_transient));

    let wrong = client(&fake, Token::Account("stolen-or-expired".into()));
    let err = wrong.environment_logs("env-1", "@level:error", window, 10).await.unwrap_err();
    assert_eq!(err, RailwayError::Unauthorized { message: "Not Authorized".into() });
    assert!(
        !err.to_string().contains("stolen-or-expired") && !format!("{wrong:?}").contains("stolen-or-expired")
    );
}

#[tokio::test]
async fn discovery_names_services_and_events_keep_the_ids() {
    let fake = FakeRailway::start("good-token").await;
    let c = client(&fake, Token::Account("good-token".into()));
    let project = c.project("proj-1").await.unwrap();
    assert_eq!(project.name, "shop");
    assert_eq!(project.services.get("svc-api").map(String::as_str), Some("api"));
    fake.add(&format_ns(T0), "error", "svc-api", "inst-9", "db timeout");
    let logs = c.environment_logs("env-1", "", Window { since_ns: T0, until_ns: T0 }, 10).await.unwrap();
    let event = to_event(&logs[0], "railway:env-1", "env-1", &project.services);
    assert_eq!(
        (event.source.as_str(), event.level, event.timestamp_ms),
        ("api", Level::Error, T0 / 1_000_000)
    );
    assert_eq!(event.metadata["railway_deployment_instance_id"], "inst-9");
    assert_eq!(event.origin.external_id.as_deref(), Some(logs[0].key().as_str()));
}

/// Railway's schema gives `err` as its severity example and its docs snap levels to
/// debug/info/warn/error: whatever the field says (or if it is absent), `@level:error` finds the
/// errors (a `fatal` line and stderr included), the level read is the same, and a warning is
/// neither.
#[tokio::test]
async fn every_reading_of_severity_gives_the_same_levels() {
    for style in [SeverityStyle::Words, SeverityStyle::Short, SeverityStyle::Absent] {
        let fake = FakeRailway::start("good-token").await;
        fake.set_severity_style(style);
        let c = client(&fake, Token::Account("good-token".into()));
        let lines = [
            ("error", "db timeout"),
            ("fatal", "out of memory"),
            ("stderr", "panic in worker"),
            ("warn", "slow query"),
            ("info", "served"),
        ];
        for (i, (level, message)) in lines.iter().enumerate() {
            fake.add(&format_ns(T0 + i as i64), level, "svc-api", "inst-1", message);
        }
        let window = Window { since_ns: T0, until_ns: T0 + 10 };
        let errors = c.environment_logs("env-1", "@level:error", window, 10).await.unwrap();
        let found: Vec<&str> = errors.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(found, ["db timeout", "out of memory", "panic in worker"], "{style:?}");
        let all = c.environment_logs("env-1", "", window, 10).await.unwrap();
        let levels: Vec<Level> = all.iter().map(|l| l.level()).collect();
        assert_eq!(
            levels,
            [Level::Error, Level::Error, Level::Error, Level::Warning, Level::Info],
            "{style:?}"
        );
    }
}

#[tokio::test]
async fn an_unknown_project_is_named_in_the_error() {
    let fake = FakeRailway::start("good-token").await;
    let c = client(&fake, Token::Account("good-token".into()));
    assert!(c.project(FAKE_PROJECT_ID).await.is_ok());
    let err = c.project("proj-gone").await.unwrap_err();
    assert!(err.to_string().contains("Project not found"), "{err}");
}

#[tokio::test]
async fn a_spent_rate_limit_window_pauses_the_next_request() {
    let fake = FakeRailway::start("good-token").await;
    let c = client(&fake, Token::Account("good-token".into()));
    let w = Window { since_ns: T0, until_ns: T0 };
    assert_eq!(c.paused_for(), None);
    // The reset, in whole seconds, lies 29 to 30 s after `asked`; the pause counts from the
    // answer, however long the machine took to get there.
    let asked = std::time::Instant::now();
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 30;
    fake.http.script([Reply::new(200, r#"{"data":{"environmentLogs":[]}}"#)
        .header("X-RateLimit-Remaining", "0")
        .header("X-RateLimit-Reset", &reset.to_string())]);
    assert!(c.environment_logs("env-1", "", w, 10).await.unwrap().is_empty(), "the answer itself is good");
    let paused = c.paused_for().expect("paused until the reset");
    let since = asked.elapsed();
    assert!(
        paused <= Duration::from_secs(30) && paused + since >= Duration::from_secs(29),
        "{paused:?} after {since:?}"
    );
    // A clone (another target's crawl) sees the same pause.
    assert!(c.clone().paused_for().is_some());

    let other = client(&fake, Token::Account("good-token".into()));
    fake.http.script([Reply::new(429, "").header("Retry-After", "20")]);
    let asked = std::time::Instant::now();
    let refused = other.environment_logs("env-1", "", w, 10).await;
    assert!(matches!(refused, Err(RailwayError::RateLimited { .. })), "{refused:?}");
    let (paused, since) = (other.paused_for().unwrap(), asked.elapsed());
    assert!(
        paused <= Duration::from_secs(20) && paused + since >= Duration::from_secs(20),
        "{paused:?} after {since:?}"
    );
}

#[test]
fn railway_drop_notices_are_data_loss() {
    let notice = "Railway rate limit of 500 logs/sec reached for replica abc. Messages dropped: 1234";
    assert_eq!(dropped_by_rate_limit(notice), Some(1234));
    assert_eq!(dropped_by_rate_limit("rate limit of our API reached"), None);
    let log = RailwayLog {
        timestamp: format_ns(T0),
        ts_ns: T0,
        message: notice.into(),
        severity: Some("error".into()),
        attributes: vec![],
        service_id: None,
        deployment_id: None,
        deployment_instance_id: None,
    };
    let event = to_event(&log, "railway:e", "e", &BTreeMap::new());
    assert_eq!(
        (event.level, &event.metadata["railway_data_loss"]),
        (Level::Warning, &serde_json::json!(true))
    );
}

#[test]
fn the_request_budget_is_never_exceeded() {
    let mut budget = Budget::new(100, 10);
    let mut allowed = Vec::new();
    // Try a request every 10 s for three hours.
    for k in 0..1_080i64 {
        let now = k * 10_000;
        if budget.take(now).is_ok() {
            allowed.push(now);
        }
    }
    for (i, t) in allowed.iter().enumerate() {
        let in_hour = allowed[i..].iter().take_while(|u| **u < t + 3_600_000).count();
        assert!(in_hour <= 100, "{in_hour} requests in the hour from {t}");
    }
    assert_eq!(allowed.len(), 300);
    let mut one = Budget::new(1, 10);
    one.take(0).unwrap();
    assert_eq!(
        one.take(1_000),
        Err(RailwayError::BudgetSpent { per_hour: 1, wait: Duration::from_millis(3_599_000) })
    );
}

#[test]
fn regression_18_requests_are_paced_per_second_too() {
    // 25 requests wanted at once, then more a little later: at most 10 start in any second.
    let mut budget = Budget::new(10_000, 10);
    let mut starts: Vec<i64> = (0..25).map(|_| budget.pace(0).as_millis() as i64).collect();
    starts.extend((0..5).map(|_| 3_000 + budget.pace(3_000).as_millis() as i64));
    for (i, t) in starts.iter().enumerate() {
        let in_second = starts[i..].iter().filter(|u| **u < t + 1_000).count();
        assert!(in_second <= 10, "{in_second} requests in the second from {t}: {starts:?}");
    }
    assert_eq!(starts[24], 2_400, "evenly spaced, not bunched then stalled");
    assert_eq!(starts[25], 3_000, "a quiet moment needs no wait");
}

#[test]
fn cursors_and_timestamps_round_trip() {
    assert_eq!(parse_ns(&format_ns(T0 + 123)), Some(T0 + 123));
    assert_eq!(format_ns(T0), "2026-05-28T20:26:40.000000000Z");
    let w = next_window(None, T0, 60_000_000_000, 3_600_000_000_000);
    assert_eq!(w, Window { since_ns: T0 - 3_600_000_000_000, until_ns: T0 });
    assert_eq!(parse_cursor(&cursor_after(w)), Some(T0));
    assert_eq!(next_window(Some(T0), T0 + 5, 60, 1).since_ns, T0 - 60);
    assert_eq!(parse_cursor("file:1:2"), None);
}

fn log(ts: i64, message: &str) -> RailwayLog {
    RailwayLog {
        timestamp: format_ns(ts),
        ts_ns: ts,
        message: message.to_owned(),
        severity: Some("error".into()),
        attributes: vec![],
        service_id: None,
        deployment_id: None,
        deployment_instance_id: Some("i".into()),
    }
}

/// The server in memory (`timeline` sorted by time), with the real API's choices: an
/// over-full window sends its newest `limit + 1`, bounds are inclusive; a request may fail
/// (`failure` 0: a 502, 1: a 429, 2: the hourly budget spent; anything else answers).
fn fetch_from(
    timeline: &[RailwayLog],
    w: Window,
    limit: u32,
    failure: u8,
) -> Result<Vec<RailwayLog>, RailwayError> {
    match failure {
        0 => return Err(RailwayError::Unavailable { detail: "HTTP 502".into() }),
        1 => return Err(RailwayError::RateLimited { retry_after: Duration::from_secs(7) }),
        2 => return Err(RailwayError::BudgetSpent { per_hour: 1000, wait: Duration::from_secs(60) }),
        _ => {}
    }
    let start = timeline.partition_point(|l| l.ts_ns < w.since_ns - 1);
    let end = timeline.partition_point(|l| l.ts_ns <= w.until_ns + 1);
    let found = &timeline[start..end];
    let keep = found.len().min(limit as usize + 1);
    Ok(found[found.len() - keep..].to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Random arrivals (some a little late, some at one nanosecond), crawls at random times,
    /// random failures and restarts: what is stored equals what the server holds, once each.
    #[test]
    fn crawls_with_failures_and_restarts_store_each_error_once(
        arrivals in prop::collection::vec((0i64..600_000, 0i64..30_000, 0u8..4), 1..300),
        crawl_gaps in prop::collection::vec(1i64..120_000, 1..12),
        failures in prop::collection::vec(0u8..10, 0..40),
        limit in 3u32..40,
    ) {
        const MS: i64 = 1_000_000;
        let overlap = 60_000 * MS;
        // (visible at, timestamp): a line may show up to 30 s after its timestamp.
        let mut lines: Vec<(i64, RailwayLog)> = arrivals.iter().enumerate().map(|(i, (at, late, tie))| {
            let ts = if *tie == 0 { T0 + 5 * MS } else { T0 + at * MS };
            (ts + late * MS, log(ts, &format!("error {i}")))
        }).collect();
        lines.sort_by_key(|(_, l)| l.ts_ns);
        let mut stored: BTreeSet<String> = BTreeSet::new();
        let mut cursor: Option<String> = None;
        let mut failures = failures.into_iter();
        let mut now = T0;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut crawl_at: Vec<i64> = crawl_gaps.iter().scan(0, |t, g| { *t += g; Some(*t) }).collect();
        crawl_at.push(700_000); // a last crawl after every line is visible
        for at in crawl_at {
            now = now.max(T0 + at * MS);
            let visible: Vec<RailwayLog> = lines.iter().filter(|(v, _)| *v <= now).map(|(_, l)| l.clone()).collect();
            let window = next_window(cursor.as_deref().and_then(parse_cursor), now, overlap, 3_600_000 * MS);
            let result = rt.block_on(crawl(|w, limit| {
                let failure = failures.next().unwrap_or(9);
                std::future::ready(fetch_from(&visible, w, limit, failure))
            }, window, limit, 5_000));
            // What the crawler commits, by its own rule (`settle`): entries and cursor together.
            // Any other stop stores nothing and keeps the cursor; the next cycle reads again.
            let previous = cursor.as_deref().and_then(parse_cursor).unwrap_or(window.since_ns - 1);
            if let Ok((crawled, stopped_by)) = settle(result, previous) {
                if let Some(error) = &stopped_by {
                    let for_want_of_requests = matches!(error, RailwayError::BudgetSpent { .. } | RailwayError::RateLimited { .. });
                    prop_assert!(for_want_of_requests, "kept what a {:?} stop drained", error);
                }
                prop_assert!(crawled.logs.iter().all(|l| l.ts_ns <= crawled.drained_until_ns));
                stored.extend(crawled.logs.iter().map(RailwayLog::key));
                cursor = Some(cursor_after(Window { since_ns: window.since_ns, until_ns: crawled.drained_until_ns }));
            }
        }
        // The last crawl may itself fail: retry until one succeeds, as the next cycle would.
        loop {
            let visible: Vec<RailwayLog> = lines.iter().map(|(_, l)| l.clone()).collect();
            let window = next_window(cursor.as_deref().and_then(parse_cursor), now, overlap, 3_600_000 * MS);
            let fetch = |w, limit| std::future::ready(fetch_from(&visible, w, limit, 9));
            if let Ok(crawled) = rt.block_on(crawl(fetch, window, limit, 5_000)) {
                stored.extend(crawled.logs.iter().map(RailwayLog::key));
                break;
            }
        }
        let expected: BTreeSet<String> = lines.iter().map(|(_, l)| l.key()).collect();
        prop_assert_eq!(stored, expected);
    }
}

fn live_query(after: Option<String>) -> LiveQuery {
    LiveQuery { environment_id: "env-1".into(), filter: "@level:error".into(), after, replay_limit: 500 }
}

#[tokio::test]
async fn live_mode_streams_new_errors_and_resubscribes_with_a_replay_when_the_server_ends_the_stream() {
    let fake = FakeRailway::start("good-token").await;
    let token = Token::Account("good-token".into());
    let timeout = Duration::from_secs(5);
    let mut live = subscribe(&fake.ws_url(), &token, &live_query(None), timeout).await.expect("subscribed");
    fake.add(&format_ns(T0), "info", "svc-api", "i-1", "GET /health 200");
    fake.add(&format_ns(T0 + 1), "error", "svc-api", "i-1", "boom <b>1</b>");
    let batch = tokio::time::timeout(timeout, live.next_batch()).await.expect("in time").unwrap().unwrap();
    assert_eq!(
        batch.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(),
        ["boom <b>1</b>"],
        "errors only"
    );
    assert_eq!(batch[0].ts_ns, T0 + 1);

    // Railway ends streams on its own: the stream says so, and lines added meanwhile come back
    // in the replay after the newest line seen.
    fake.end_streams();
    assert_eq!(tokio::time::timeout(timeout, live.next_batch()).await.expect("in time").unwrap(), None);
    fake.add(&format_ns(T0 + 2), "error", "svc-worker", "i-2", "boom 2");
    let mut again = subscribe(&fake.ws_url(), &token, &live_query(Some(format_ns(T0 + 1))), timeout)
        .await
        .expect("again");
    let replay = again.next_batch().await.unwrap().unwrap();
    assert_eq!(replay.iter().map(|l| l.message.as_str()).collect::<Vec<_>>(), ["boom 2"]);
    assert_eq!(fake.subscriptions.load(std::sync::atomic::Ordering::SeqCst), 2);
    again.close().await;
}

#[tokio::test]
async fn live_mode_names_a_refused_token_and_an_unreachable_server_without_the_token() {
    let fake = FakeRailway::start("good-token").await;
    let timeout = Duration::from_secs(5);
    let mut live =
        subscribe(&fake.ws_url(), &Token::Project("wrong-secret-token".into()), &live_query(None), timeout)
            .await
            .expect("the socket opens; the subscription is refused");
    let error = live.next_batch().await.unwrap_err();
    assert!(matches!(error, RailwayError::Unauthorized { .. }), "{error:?}");
    assert!(!format!("{error} {error:?} {live:?}").contains("wrong-secret-token"));

    // Nothing listens there: refused connection, said so, token absent.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let error = subscribe(
        &format!("ws://{closed}/graphql/v2"),
        &Token::Account("wrong-secret-token".into()),
        &live_query(None),
        timeout,
    )
    .await
    .unwrap_err();
    assert!(error.is_transient(), "{error:?}");
    assert!(!error.to_string().contains("wrong-secret-token"));
    assert_eq!(ws_url("https://backboard.railway.com/graphql/v2"), "wss://backboard.railway.com/graphql/v2");
}

/// One line is one key whichever form its time takes on the way in (the crawl's HTTP answers
/// and the live stream may write one instant with or without trailing zeros), and the key of
/// the API's own nanosecond form is pinned: stored entries keep their keys across versions.
#[test]
fn regression_23_a_line_is_one_key_whatever_form_its_time_takes() {
    let line = |timestamp: &str| RailwayLog {
        timestamp: timestamp.to_owned(),
        ts_ns: parse_ns(timestamp).unwrap(),
        message: "db timeout".into(),
        severity: Some("error".into()),
        attributes: Vec::new(),
        service_id: Some("svc-api".into()),
        deployment_id: Some("dep-1".into()),
        deployment_instance_id: Some("inst-9".into()),
    };
    let http = line("2026-06-18T04:41:00.120000000Z");
    // sha256("2026-06-18T04:41:00.120000000Z\0inst-9\0db timeout\0"), first 16 bytes (computed apart).
    assert_eq!(http.key(), "rw:605df2df9a3cd2f81957a1b5cf91f276");
    for other in ["2026-06-18T04:41:00.12Z", "2026-06-18T04:41:00.120Z", "2026-06-18T06:41:00.12+02:00"] {
        assert_eq!(line(other).key(), http.key(), "{other}");
    }
    assert_ne!(line("2026-06-18T04:41:00.120000001Z").key(), http.key());
}

/// Every way Railway may refuse a live subscription's token (the docs leave it open) is named
/// as a refused token, not a transient failure to retry forever, and never shows the token.
#[tokio::test]
async fn regression_23_live_mode_names_a_refused_token_however_railway_refuses_it() {
    let fake = FakeRailway::start("good-token").await;
    let token = Token::Project("wrong-secret-token".into());
    for refusal in [
        LiveRefusal::GraphqlError,
        LiveRefusal::Status(401),
        LiveRefusal::Status(403),
        LiveRefusal::Close(4403),
    ] {
        fake.set_live_options(LiveOptions { refusal, ..LiveOptions::default() });
        let error = match subscribe(&fake.ws_url(), &token, &live_query(None), Duration::from_secs(5)).await {
            Err(e) => e,
            Ok(mut live) => live.next_batch().await.expect_err("refused"),
        };
        assert!(matches!(error, RailwayError::Unauthorized { .. }), "{refusal:?}: {error:?}");
        assert!(!error.is_transient(), "{refusal:?}");
        assert!(!format!("{error} {error:?}").contains("wrong-secret-token"), "{refusal:?}");
    }
}
