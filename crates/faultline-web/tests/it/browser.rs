//! The System Health page in a real headless Chromium (Debian's `chromium` and `chromium-driver`,
//! driven over WebDriver): click from the top error to its details, create a task, find it in
//! the task list; a stored `<script>`/`<img onerror>` payload shows as text and runs nothing; the
//! page fits a phone's width; the 30-second refresh keeps filters and scroll; the error list's
//! keyboard filter and bulk change; chart times in the viewer's zone. No JavaScript console
//! errors (a CSP violation is one). Screenshots go to `target/browser/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use faultline_core::Level;
use faultline_store::{IngestBatch, Store};
use faultline_web::{Auth, Settings};
use serde_json::{Value, json};

use crate::common::{HOSTILE, Server, event, now_ms, seed, start_with};

const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const CHROMIUM: &str = "/usr/bin/chromium";

/// A chromedriver process and a browser session; both end when dropped or closed.
struct Browser {
    client: Client,
    driver: Child,
    driver_url: String,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Browser {
    async fn start() -> Option<Browser> {
        Browser::start_in(None).await
    }

    /// A browser whose clock reads in this time zone (`TZ`), or the machine's.
    async fn start_in(time_zone: Option<&str>) -> Option<Browser> {
        if !std::path::Path::new(CHROMEDRIVER).exists() {
            assert!(
                std::env::var_os("FAULTLINE_SKIP_BROWSER").is_some(),
                "the browser tests need Debian's chromium and chromium-driver \
                 (apt-get install chromium chromium-driver), or FAULTLINE_SKIP_BROWSER=1"
            );
            return None;
        }
        let port = free_port();
        let mut driver = Command::new(CHROMEDRIVER);
        if let Some(zone) = time_zone {
            driver.env("TZ", zone);
        }
        let driver = driver
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver_url = format!("http://127.0.0.1:{port}");
        for _ in 0..100 {
            if reqwest::get(format!("{driver_url}/status")).await.is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({
            "browserName": "chrome",
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1280,900",
                    format!("--user-data-dir={}", profile.path().display()),
                ]
            }
        });
        let Value::Object(caps) = caps else { unreachable!() };
        let client = ClientBuilder::rustls()
            .expect("rustls")
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .expect("a Chromium session");
        Some(Browser { client, driver, driver_url, _profile: profile })
    }

    /// Browser console messages since the last call, as "LEVEL message".
    async fn console(&self) -> Vec<String> {
        let id = self.client.session_id().await.unwrap().expect("session id");
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/session/{id}/se/log", self.driver_url))
            .json(&json!({"type": "browser"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        answer["value"]
            .as_array()
            .expect("chromedriver returns the browser log")
            .iter()
            .map(|e| {
                format!("{} {}", e["level"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or(""))
            })
            .collect()
    }

    async fn assert_no_console_errors(&self, page: &str) {
        let errors: Vec<String> = self
            .console()
            .await
            .into_iter()
            .filter(|m| m.starts_with("SEVERE") || m.starts_with("WARNING"))
            .collect();
        assert!(errors.is_empty(), "console errors on {page}: {errors:#?}");
    }

    /// How far the page scrolls sideways, in CSS pixels (0 when it fits the window's width).
    async fn sideways(&self) -> i64 {
        let script = "return document.documentElement.scrollWidth - document.documentElement.clientWidth;";
        self.client.execute(script, vec![]).await.unwrap().as_i64().expect("a number")
    }

    async fn screenshot(&self, name: &str) {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser");
        std::fs::create_dir_all(&dir).unwrap();
        let png = self.client.screenshot().await.expect("screenshot");
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn text(&self, css: &str) -> String {
        self.client
            .wait()
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|_| panic!("{css}"))
            .text()
            .await
            .unwrap()
    }

    /// The text at `css` once it reads `expected` (a page still loading after a click shows the
    /// old text for a moment), or what it read last after 20 s.
    async fn text_becomes(&self, css: &str, expected: &str) -> String {
        let mut last = String::new();
        for _ in 0..200 {
            last = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.text().await.unwrap_or_default(),
                Err(_) => String::new(),
            };
            if last == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        last
    }

    async fn close(mut self) {
        let client = self.client.clone();
        client.close().await.unwrap();
        let _ = self.driver.kill();
    }
}

async fn serve(refresh_secs: u32) -> (Server, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = faultline_store::open(dir.path().join("faultline.db").to_str().unwrap()).await.unwrap();
    seed(&store).await;
    let settings = Settings { page_refresh_secs: refresh_secs, ..Settings::default() };
    (start_with(store.clone(), Auth::default(), settings, Some(dir)).await, store)
}

#[tokio::test]
async fn top_error_to_details_to_task_and_hostile_text_stays_text() {
    let Some(browser) = Browser::start().await else { return };
    let (server, _store) = serve(0).await;
    let c = &browser.client;

    c.goto(&format!("{}/", server.url)).await.unwrap();
    assert_eq!(browser.text("#errors-24h").await, "32");
    let bars = c.find_all(Locator::Css("#error-rate g.bar")).await.unwrap();
    assert_eq!(bars.len(), 24, "one bar per hour");
    let drawn = c.find_all(Locator::Css("#error-rate rect")).await.unwrap();
    assert!(drawn.len() >= 2, "the hours with errors have bars");
    let top = browser.text("#top-errors tbody tr:first-child .title").await;
    assert_eq!(top, "connection refused to <IP>");
    browser.screenshot("health").await;
    browser.assert_no_console_errors("/").await;

    c.find(Locator::Css("#top-errors tbody tr:first-child a.pattern-link"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    assert_eq!(browser.text("#template").await, "connection refused to <IP>");
    let details = c.current_url().await.unwrap();
    assert!(browser.text("#why").await.contains("Grouped"));
    assert_eq!(browser.text("#count").await, "30");
    browser.screenshot("details").await;
    browser.assert_no_console_errors("details").await;

    c.find(Locator::Css("button[data-status='known']")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.text_becomes("#status", "known").await, "known");
    c.find(Locator::Id("create-task")).await.unwrap().click().await.unwrap();
    let task = browser.text("li.task.highlight .task-title").await;
    assert!(task.contains("connection refused to <IP>"), "{task}");
    assert!(c.current_url().await.unwrap().path().ends_with("/tasks"));
    // Back on the error's page, its open task is linked and no second one is offered.
    c.goto(details.as_str()).await.unwrap();
    assert!(browser.text("#open-task a").await.contains("connection refused to <IP>"));
    assert!(c.find_all(Locator::Id("create-task")).await.unwrap().is_empty());
    c.goto(&format!("{}/tasks", server.url)).await.unwrap();
    browser.screenshot("tasks").await;
    browser.assert_no_console_errors("tasks").await;

    // The stored payload is shown as text; no element was made from it and no script ran.
    c.goto(&format!("{}/logs?query=DROP+TABLE", server.url)).await.unwrap();
    let shown = browser.text("ol.entries pre.message").await;
    assert_eq!(shown, HOSTILE);
    assert!(c.find_all(Locator::Css("main img, main script")).await.unwrap().is_empty());
    let ran: Value = c.execute("return typeof window.__faultline_xss;", vec![]).await.unwrap();
    assert_eq!(ran, json!("undefined"));
    c.find(Locator::Css("ol.entries a.group")).await.unwrap().click().await.unwrap();
    assert!(browser.text("#template").await.starts_with("<script>"), "the template, as text");
    browser.screenshot("hostile").await;
    browser.assert_no_console_errors("hostile").await;

    for path in ["/sources", "/tasks?status=open", "/?range=all"] {
        c.goto(&format!("{}{path}", server.url)).await.unwrap();
        browser.text("main h1").await;
        browser.assert_no_console_errors(path).await;
    }
    browser.close().await;
}

#[tokio::test]
async fn fits_a_phone_and_refreshes_keeping_filters_and_scroll() {
    let Some(browser) = Browser::start().await else { return };
    let (server, store) = serve(1).await;
    let c = &browser.client;

    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{}/", server.url)).await.unwrap();
    browser.text("#errors-24h").await;
    let overflow = browser.sideways().await;
    assert!(overflow <= 0, "the page scrolls sideways on a phone by {overflow} px");
    browser.screenshot("phone").await;

    c.set_window_size(1280, 500).await.unwrap();
    c.goto(&format!("{}/logs?query=refused&level=ERROR", server.url)).await.unwrap();
    assert_eq!(browser.text("#result-count").await, "30 entries");
    c.execute("window.scrollTo(0, 600);", vec![]).await.unwrap();
    let before: Value = c.execute("return window.scrollY;", vec![]).await.unwrap();
    assert!(before.as_f64().unwrap() > 0.0);

    let fresh = event("fresh", 0, Level::Error, "api", "connection refused to 10.9.9.9:5432", None);
    let batch = IngestBatch::from_events("test", None, vec![fresh], Level::Error, 1000, now_ms());
    store.ingest(batch).await.unwrap();
    let mut count = String::new();
    for _ in 0..50 {
        // The refresh swaps <main> in place: between the swap's steps the element may be gone or
        // stale, which is "not yet", not a failure.
        count = match c.find(Locator::Id("result-count")).await {
            Ok(element) => element.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        if count == "31 entries" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(count, "31 entries", "the refresh shows the new entry");
    let url = c.current_url().await.unwrap();
    assert_eq!(url.query(), Some("query=refused&level=ERROR"), "filters kept");
    let field = c.find(Locator::Css("input[name='query']")).await.unwrap();
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some("refused"));
    let after: Value = c.execute("return window.scrollY;", vec![]).await.unwrap();
    assert_eq!(after, before, "scroll kept");
    browser.assert_no_console_errors("refreshing /logs").await;
    browser.close().await;
}

/// The error list in a browser in another time zone: `/` jumps to the text filter, a ticked row
/// is resolved with the bulk buttons, titles read `Type: value`; the chart's times are the
/// viewer's (UTC on hover), and the list and an error's page fit a phone.
#[tokio::test]
async fn the_error_list_by_keyboard_and_bulk_change_with_local_chart_times() {
    let Some(browser) = Browser::start_in(Some("Asia/Kabul")).await else { return };
    let (server, store) = serve(0).await;
    let c = &browser.client;

    c.goto(&format!("{}/", server.url)).await.unwrap();
    assert!(browser.text("#health-state").await.starts_with("Not checked yet"));
    assert_eq!(browser.text("#error-rate .zone").await, "Asia/Kabul");
    let tick = c.find(Locator::Css("#error-rate text.x-tick")).await.unwrap();
    let ms: i64 = tick.attr("data-ms").await.unwrap().unwrap().parse().unwrap();
    let kolkata =
        chrono::DateTime::from_timestamp_millis(ms + 270 * 60_000).unwrap().format("%H:%M").to_string();
    assert_eq!(tick.text().await.unwrap(), kolkata, "UTC+04:30, not the server's UTC");
    let utc = chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%H:%M UTC").to_string();
    let hover: Value = c
        .execute("return document.querySelector('#error-rate text.x-tick title').textContent;", vec![])
        .await
        .unwrap();
    assert_eq!(hover, json!(utc));
    let ticks: Value = c
        .execute(
            "return [...document.querySelectorAll('#error-rate .y-tick')].map(t => t.textContent);",
            vec![],
        )
        .await
        .unwrap();
    let busiest: Value = c
        .execute(
            "return Math.max(...[...document.querySelectorAll('#error-rate g.bar')].map(b => +b.dataset.total));",
            vec![],
        )
        .await
        .unwrap();
    let busiest = busiest.as_u64().unwrap();
    let top = [1u64, 2, 5, 10, 20, 50, 100].into_iter().find(|t| *t >= busiest).unwrap();
    assert_eq!(
        ticks,
        json!(["0", (top / 2).to_string(), top.to_string()]),
        "a y axis up to the busiest hour, rounded"
    );

    c.find(Locator::Id("all-errors")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.text("#result-count").await, "3 errors", "the last 24 hours: not the 3-day-old one");
    c.goto(&format!("{}/errors", server.url)).await.unwrap();
    assert_eq!(browser.text("#result-count").await, "4 errors");
    let titles: Value = c
        .execute("return [...document.querySelectorAll('#errors .title')].map(t => t.textContent);", vec![])
        .await
        .unwrap();
    assert_eq!(
        titles,
        json!([
            "connection refused to <IP>",
            "card 4242 declined",
            "ValueError: <b>bad</b>",
            "nightly export failed after 3 tries"
        ])
    );
    c.find(Locator::Css("body")).await.unwrap().send_keys("/").await.unwrap();
    let focused: Value = c.execute("return document.activeElement.id;", vec![]).await.unwrap();
    assert_eq!(focused, json!("errors-query"), "/ jumps to the filter");
    c.active_element().await.unwrap().send_keys("card\u{E007}").await.unwrap();
    assert_eq!(browser.text_becomes("#result-count", "1 error").await, "1 error");
    assert_eq!(c.current_url().await.unwrap().query().map(|q| q.starts_with("query=card")), Some(true));

    c.find(Locator::Id("select-all")).await.unwrap().click().await.unwrap();
    let ticked: Value = c
        .execute("return document.querySelectorAll('input[name=fingerprint]:checked').length;", vec![])
        .await
        .unwrap();
    assert_eq!(ticked, json!(1));
    c.find(Locator::Css("button[data-status='resolved']")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.text_becomes("#done", "1 error marked resolved.").await, "1 error marked resolved.");
    assert_eq!(browser.text("#errors tbody .status").await, "resolved");
    let kept = c.find(Locator::Css("input[name='query']")).await.unwrap();
    assert_eq!(kept.prop("value").await.unwrap().as_deref(), Some("card"), "back on the same filtered list");
    browser.screenshot("errors").await;
    browser.assert_no_console_errors("/errors").await;

    // Paging: 60 more errors make two pages of 50; the next page keeps the filter.
    let more = (0..60)
        .map(|i| {
            event(
                &format!("kind-{i}"),
                60_000,
                Level::Error,
                "jobs",
                &format!("Kind{i}Error: job gave up"),
                None,
            )
        })
        .collect();
    store.ingest(IngestBatch::from_events("more", None, more, Level::Error, 1000, now_ms())).await.unwrap();
    c.goto(&format!("{}/errors?query=gave+up", server.url)).await.unwrap();
    assert_eq!(browser.text("#result-count").await, "60 errors");
    assert_eq!(c.find_all(Locator::Css("#errors tbody tr")).await.unwrap().len(), 50);
    c.find(Locator::Css("a[rel='next']")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.text_becomes(".pager span", "page 2 of 2").await, "page 2 of 2");
    assert_eq!(c.find_all(Locator::Css("#errors tbody tr")).await.unwrap().len(), 10);
    let field = c.find(Locator::Css("input[name='query']")).await.unwrap();
    assert_eq!(field.prop("value").await.unwrap().as_deref(), Some("gave up"), "the filter stays");

    c.set_window_size(390, 844).await.unwrap();
    for (path, name) in [
        ("/errors", "errors-phone"),
        ("/logs?query=refused", "logs-phone"),
        ("/tasks", "tasks-phone"),
        ("/sources", "sources-phone"),
    ] {
        c.goto(&format!("{}{path}", server.url)).await.unwrap();
        browser.text("main h1").await;
        let overflow = browser.sideways().await;
        assert!(overflow <= 0, "{path} scrolls sideways on a phone by {overflow} px");
        if !name.is_empty() {
            browser.screenshot(name).await;
        }
    }
    c.goto(&format!("{}/errors?query=refused", server.url)).await.unwrap();
    c.find(Locator::Css("#errors a.pattern-link")).await.unwrap().click().await.unwrap();
    assert_eq!(browser.text("#title").await, "connection refused to <IP>");
    assert_eq!(c.find_all(Locator::Css("#pattern-chart g.bar")).await.unwrap().len(), 24);
    let overflow = browser.sideways().await;
    assert!(overflow <= 0, "an error's page scrolls sideways on a phone by {overflow} px");
    browser.screenshot("details-phone").await;
    browser.assert_no_console_errors("an error's page").await;
    browser.close().await;
}
