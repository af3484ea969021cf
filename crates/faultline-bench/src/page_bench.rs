//! `faultline bench page`: the System Health page, the 24-hour error rate and substring search,
//! timed over HTTP on loopback against the configured database (fill it with `faultline seed`).
//! The time is measured at the client, so it is the server's time plus a loopback round trip.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use faultline_runtime::clock::now_ms;
use faultline_store::{Pipeline, PipelineSettings, Store};
use faultline_web::{AppState, Auth, Settings};

/// Substrings of the seeded messages, from frequent to very rare.
const NEEDLES: [&str; 10] = [
    "refused",
    "deadlock detected",
    "mailbox unavailable",
    "checksum mismatch",
    "TLS handshake",
    "quota exceeded",
    "schema validation",
    "db-7.internal",
    "zebra-lantern",
    "no such text anywhere",
];

pub async fn run(store: Arc<dyn Store>, rounds: u32) -> anyhow::Result<()> {
    let total =
        store.list_patterns(&faultline_store::PatternQuery { limit: 1, ..Default::default() }).await?.total;
    anyhow::ensure!(total > 0, "the database has no errors: run `faultline-bench seed` first");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let app = faultline_web::router(AppState::new(
        Arc::new(Pipeline::new(store.clone(), PipelineSettings::default())),
        Auth::default(),
        Settings::default(),
    ));
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();

    let now = now_ms();
    let day = store.error_rate(now - 86_400_000, now).await?.total_errors;
    println!("database: {total} patterns, {day} errors in the last 24 h");

    let mut targets: Vec<(String, String)> = vec![
        ("System Health page (/)".into(), "/".into()),
        ("/api/monitoring/logs/rate?hours=24".into(), "/api/monitoring/logs/rate?hours=24".into()),
    ];
    let search: Vec<String> =
        NEEDLES.iter().map(|n| format!("/api/monitoring/logs?query={}", n.replace(' ', "+"))).collect();
    // Warm-up: caches and prepared statements, as on a server that has been running.
    for path in targets.iter().map(|(_, p)| p).chain(&search) {
        get(&client, &base, path).await?;
    }
    let mut results = Vec::new();
    for (name, path) in targets.drain(..) {
        let mut times = Vec::new();
        for _ in 0..rounds {
            times.push(get(&client, &base, &path).await?);
        }
        results.push((name, times));
    }
    let mut all = Vec::new();
    for (needle, path) in NEEDLES.iter().zip(&search) {
        let mut times = Vec::new();
        let mut hits = String::new();
        for _ in 0..rounds {
            let started = Instant::now();
            let body: serde_json::Value =
                client.get(format!("{base}{path}")).send().await?.error_for_status()?.json().await?;
            times.push(started.elapsed());
            let capped = if body["total_capped"] == true { "+" } else { "" };
            hits = format!("{}{capped}", body["total"]);
        }
        all.extend(&times);
        results.push((format!("  search {needle:?} ({hits} hits)"), times));
    }
    results.push((format!("API search (100 a page), 24 h, all {} needles", NEEDLES.len()), all));
    // The log search page: 25 entries a page, the same needles.
    let mut page_times = Vec::new();
    for needle in NEEDLES {
        let path = format!("/logs?query={}", needle.replace(' ', "+"));
        get(&client, &base, &path).await?;
        for _ in 0..rounds {
            page_times.push(get(&client, &base, &path).await?);
        }
    }
    results.push((format!("/logs page search (25 a page), all {} needles", NEEDLES.len()), page_times));

    println!("{:<62} {:>9} {:>9} {:>9}", "request", "p50 ms", "p95 ms", "max ms");
    for (name, mut times) in results {
        times.sort();
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize].as_secs_f64() * 1000.0;
        println!("{name:<62} {:>9.1} {:>9.1} {:>9.1}", at(0.5), at(0.95), at(1.0));
    }
    Ok(())
}

async fn get(client: &reqwest::Client, base: &str, path: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let response = client.get(format!("{base}{path}")).send().await.with_context(|| path.to_owned())?;
    anyhow::ensure!(response.status().is_success(), "{path} answered {}", response.status());
    response.bytes().await?;
    Ok(started.elapsed())
}
