//! The System Health page over HTTP on both backends: every page answers, hostile log text is
//! escaped, sign-in opens an HttpOnly session, forms need the CSRF value and the write scope,
//! and every page carries a Content-Security-Policy.

use std::sync::Arc;

use faultline_store::Store;
use faultline_web::{ApiToken, Auth, Scope};
use reqwest::redirect::Policy;
use serde_json::Value;

use crate::both;
use crate::common::{call, seed, start};

fn browser() -> reqwest::Client {
    reqwest::Client::builder().cookie_store(true).redirect(Policy::none()).build().unwrap()
}

async fn get(client: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client.get(url).send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, named_entities(&response.text().await.expect("body")))
}

/// askama writes `<` as `&#60;`; the assertions read better with the named forms.
fn named_entities(html: &str) -> String {
    html.replace("&#60;", "&lt;")
        .replace("&#62;", "&gt;")
        .replace("&#38;", "&amp;")
        .replace("&#34;", "&quot;")
}

async fn post(client: &reqwest::Client, url: &str, form: &[(&str, &str)]) -> (u16, String, String) {
    let response = client.post(url).form(form).send().await.expect("request");
    let status = response.status().as_u16();
    let location =
        response.headers().get("location").map(|v| v.to_str().unwrap().to_owned()).unwrap_or_default();
    (status, location, response.text().await.expect("body"))
}

/// The CSRF value a page's forms carry.
fn csrf(html: &str) -> String {
    let at = html.find("name=\"csrf\" value=\"").expect("a form with a CSRF value") + 19;
    html[at..at + 64].to_owned()
}

async fn top_fingerprint(url: &str) -> String {
    let (_, errors) =
        call("GET", &format!("{url}/api/logs/errors?sort=count"), Some("admin-secret"), None).await;
    errors["errors"][0]["fingerprint"].as_str().unwrap().to_owned()
}

async fn pages_render_escaped_with_security_headers(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    seed(&store).await;
    let now = crate::common::now_ms();
    store.fire_alert(&crate::common::error_rate_alert("degraded", 60, now - 2_000)).await.unwrap();
    store.fire_alert(&crate::common::error_rate_alert("fail", 1, now - 1_000)).await.unwrap();
    let server = start(store, Auth::default(), dir).await;
    let u = |path: &str| format!("{}{path}", server.url);
    let client = browser();

    let (status, headers, html) = get(&client, &u("/")).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(headers["x-content-type-options"], "nosniff");
    assert!(headers["set-cookie"].to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
    assert!(html.contains("connection refused to &lt;IP&gt;"), "top error shown, escaped");
    assert_eq!(html.matches("<g class=\"bar\"").count(), 24, "one bar per hour");
    assert!(html.contains("id=\"errors-24h\">32<"), "30 refused + the card + the hostile one");

    // Hostile text is escaped everywhere it is shown.
    let (_, _, logs) = get(&client, &u("/logs?query=DROP+TABLE")).await;
    assert!(
        logs.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"),
        "{logs}"
    );
    assert!(logs.contains("web&lt;b&gt;"), "the source too");
    assert!(logs.contains("ValueError: &lt;b&gt;bad&lt;/b&gt;"), "and the traceback");
    for page in [&html, &logs] {
        assert!(!page.contains("<script>alert") && !page.contains("<img src=x"));
        assert_eq!(page.matches("<script").count(), 1, "only /static/app.js");
    }
    assert!(logs.contains("id=\"result-count\">1 entries"));

    // Details: why grouped, occurrences paginated (25 per page).
    let (_, errors) = call("GET", &u("/api/logs/errors?sort=count"), None, None).await;
    let fp = errors["errors"][0]["fingerprint"].as_str().unwrap().to_owned();
    let (status, _, detail) = get(&client, &u(&format!("/patterns/{fp}"))).await;
    assert_eq!(status, 200);
    assert!(detail.contains("Why grouped") && detail.contains("id=\"create-task\""));
    assert!(detail.contains("page 1 of 2"), "30 occurrences, 25 a page");
    let (_, _, second) = get(&client, &u(&format!("/patterns/{fp}?page=2"))).await;
    assert_eq!(second.matches("<li class=\"entry\">").count(), 5);
    assert_eq!(get(&client, &u("/patterns/no-such")).await.0, 404);

    // Status change and task creation need the CSRF value from the page.
    let token = csrf(&detail);
    let (s, _, _) =
        post(&client, &u(&format!("/patterns/{fp}/status")), &[("csrf", "0"), ("status", "known")]).await;
    assert_eq!(s, 403);
    let anonymous = reqwest::Client::builder().redirect(Policy::none()).build().unwrap();
    let (s, _, _) =
        post(&anonymous, &u(&format!("/patterns/{fp}/status")), &[("csrf", &token), ("status", "known")])
            .await;
    assert_eq!(s, 403, "the value without the cookie (another site's form) is refused");
    let (_, pattern) = call("GET", &u(&format!("/api/logs/errors/{fp}")), None, None).await;
    assert_eq!(pattern["status"], "new");
    let (s, location, _) =
        post(&client, &u(&format!("/patterns/{fp}/status")), &[("csrf", &token), ("status", "known")]).await;
    assert_eq!((s, location.as_str()), (303, format!("/patterns/{fp}").as_str()));
    let (_, pattern) = call("GET", &u(&format!("/api/logs/errors/{fp}")), None, None).await;
    assert_eq!(pattern["status"], "known");
    let (s, location, _) = post(&client, &u(&format!("/patterns/{fp}/task")), &[("csrf", &token)]).await;
    assert!(s == 303 && location.starts_with("/tasks?highlight="), "{location}");
    let (_, _, tasks) = get(&client, &u(&location)).await;
    assert!(tasks.contains("class=\"task highlight\""), "the new task is marked");
    assert!(tasks.contains("connection refused to &lt;IP&gt;"));
    // Recent alerts, and which ones the flood limits held back for the digest.
    let alerts = &tasks[tasks.find("id=\"alerts\"").expect("the alerts section")..];
    assert_eq!(alerts.matches("held for the digest").count(), 1, "{alerts}");
    assert_eq!(alerts.matches(">notified<").count(), 1, "{alerts}");
    assert!(alerts.contains("the error rate is fail &lt;b&gt;now&lt;/b&gt;"), "escaped: {alerts}");

    for path in ["/sources", "/tasks?status=open", "/?range=7d", "/?range=all", "/logs?hours=abc"] {
        let (status, headers, _) = get(&client, &u(path)).await;
        assert!(status == 200 || (path.contains("abc") && status == 400), "{path}: {status}");
        assert!(headers.contains_key("content-security-policy"), "{path}");
    }
    let (_, _, css) = get(&client, &u("/static/app.css")).await;
    assert!(css.contains(".chart"));
}
both!(pages_render_escaped_with_security_headers);

async fn sign_in_with_a_token(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    seed(&store).await;
    let auth = Auth::new(vec![
        ApiToken::new("viewer", "read-secret", vec![Scope::Read]),
        ApiToken::new("admin", "admin-secret", vec![Scope::Read, Scope::Write]),
    ]);
    let server = start(store, auth, dir).await;
    let u = |path: &str| format!("{}{path}", server.url);

    let client = browser();
    let (status, headers, _) = get(&client, &u("/logs?query=x")).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (303, "/login?next=%2Flogs%3Fquery%3Dx"));
    let (_, _, login) = get(&client, &u("/login?next=%2Flogs")).await;
    let token = csrf(&login);
    let (s, _, body) =
        post(&client, &u("/login"), &[("csrf", &token), ("token", "guess-secret"), ("next", "/logs")]).await;
    assert!(s == 401 && body.contains("not valid") && !body.contains("guess-secret"));

    // A read token: pages, but no buttons, and forms are refused.
    let response = client
        .post(u("/login"))
        .form(&[("csrf", token.as_str()), ("token", "read-secret"), ("next", "https://evil.example/")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(response.headers()["location"], "/", "never sent to another site");
    let cookie = response.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("faultline_session=") && cookie.contains("HttpOnly"), "{cookie}");
    assert!(!cookie.contains("read-secret"), "the cookie is not the token");
    let fp = top_fingerprint(&server.url).await;
    let (s, _, detail) = get(&client, &u(&format!("/patterns/{fp}"))).await;
    assert!(s == 200 && !detail.contains("create-task") && detail.contains("(read-only)"));
    let (s, _, _) = post(&client, &u(&format!("/patterns/{fp}/task")), &[("csrf", &token)]).await;
    assert_eq!(s, 403);

    // Sign out ends the session.
    let (s, _, _) = post(&client, &u("/logout"), &[("csrf", &token)]).await;
    assert_eq!(s, 303);
    assert_eq!(get(&client, &u("/")).await.0, 303);

    // A write token may change things.
    let (s, _, _) =
        post(&client, &u("/login"), &[("csrf", &token), ("token", "admin-secret"), ("next", "/")]).await;
    assert_eq!(s, 303);
    let (_, _, detail) = get(&client, &u(&format!("/patterns/{fp}"))).await;
    assert!(detail.contains("create-task"));
    let (s, location, _) = post(&client, &u(&format!("/patterns/{fp}/task")), &[("csrf", &token)]).await;
    assert!(s == 303 && location.starts_with("/tasks"));
    let (_, tasks) = call("GET", &u("/api/tasks"), Some("read-secret"), None).await;
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(1));
    // The session cookie does not open the JSON API: it takes a bearer token.
    let response = client.get(u("/api/tasks")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    let _: Value = response.json().await.unwrap();
}
both!(sign_in_with_a_token);

/// The top of `/` says how the last error-rate checks judged the service: not checked yet, then
/// the newest check's state, its rate and window, since the first of the checks in a row that
/// agree.
async fn the_health_state_is_the_last_checks_verdict(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    let server = start(store.clone(), Auth::default(), dir).await;
    let client = browser();
    let state = |html: &str| {
        let start = html.find("id=\"health-state\"").expect("the state is shown");
        html[start..html[start..].find("</p>").map_or(html.len(), |e| start + e)].to_owned()
    };
    let (_, _, html) = get(&client, &format!("{}/", server.url)).await;
    assert!(
        state(&html).contains("health-unknown") && state(&html).contains("Not checked yet"),
        "{}",
        state(&html)
    );

    let now = crate::common::now_ms();
    let minute = 60_000;
    for (ago, status, rate) in [(30, "pass", 0.2), (20, "fail", 7.5), (10, "fail", 9.25)] {
        let run = faultline_store::JobRun {
            job: "error_rate_check".into(),
            instance: "web-test:1:0000".into(),
            started_ms: now - ago * minute,
            finished_ms: now - ago * minute,
            outcome: "ok".into(),
            detail: serde_json::json!({"status": status, "errors_per_minute": rate, "window_minutes": 5}),
        };
        store.record_job_run(&run).await.unwrap();
    }
    let (_, _, html) = get(&client, &format!("{}/", server.url)).await;
    let shown = state(&html);
    let since =
        chrono::DateTime::from_timestamp_millis(now - 20 * minute).unwrap().format("%Y-%m-%d %H:%M UTC");
    assert!(shown.contains("health-fail"), "{shown}");
    assert!(
        shown.contains(&format!(
            "Failing: 9.25 errors per minute over the last 5 minutes (fail since {since}"
        )),
        "{shown}"
    );
}
both!(the_health_state_is_the_last_checks_verdict);

/// A server with nothing stored shows how to send errors, addressed to itself; once a Sentry
/// event arrives, its occurrence shows the event's context and breadcrumbs, escaped.
async fn empty_state_then_context_and_breadcrumbs(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    let server = start(store, Auth::default(), dir).await;
    let client = browser();
    let host = server.url.trim_start_matches("http://");
    let (_, _, html) = get(&client, &server.url).await;
    let section = &html[html.find("id=\"send-errors\"").expect("the Send errors section")..];
    for snippet in [
        format!("sentry_sdk.init(dsn=\"http://TOKEN@{host}/1\")"),
        format!("Sentry.init({{ dsn: \"http://TOKEN@{host}/1\" }})"),
        format!("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT={}/v1/logs", server.url),
        format!(
            "OTEL_EXPORTER_OTLP_LOGS_ENDPOINT={}\nexport OTEL_EXPORTER_OTLP_LOGS_PROTOCOL=grpc",
            server.url
        ),
        format!("FaultlineHandler(\"{}\", token=\"TOKEN\")", server.url),
        format!("curl -s {}/api/ingest", server.url),
        format!("targets: [\"{host}\"]"),
    ] {
        assert!(section.contains(&snippet), "{snippet} in {section}");
    }

    let event = serde_json::json!({
        "event_id": "5d1e0f9a8b7c4d3e2f1a0b9c8d7e6f5a", "level": "error", "platform": "python",
        "message": "checkout failed", "release": "shop@<b>1.4.2</b>", "tags": {"region": "eu"},
        "contexts": {"runtime": {"name": "CPython", "version": "3.11.7"}},
        "breadcrumbs": {"values": [
            {"timestamp": 1764410399.5, "category": "query", "message": "SELECT <script>1</script>"},
            {"timestamp": 1764410399.75, "category": "http", "data": {"url": "/pay", "status_code": 502}}
        ]}
    });
    let body = format!("{{}}\n{{\"type\":\"event\"}}\n{event}\n");
    let response = reqwest::Client::new()
        .post(format!("{}/api/1/envelope/", server.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, _, html) = get(&client, &server.url).await;
    assert!(!html.contains("id=\"send-errors\""), "gone once something is stored");
    let fp = top_fingerprint(&server.url).await;
    let (_, _, detail) = get(&client, &format!("{}/patterns/{fp}", server.url)).await;
    let context = &detail[detail.find("class=\"context\"").expect("the context")..];
    assert!(context.contains("<dt>release</dt><dd><code>shop@&lt;b&gt;1.4.2&lt;/b&gt;</code>"), "{context}");
    assert!(
        context.contains("<dt>tags</dt><dd><code>{&quot;region&quot;:&quot;eu&quot;}</code>"),
        "{context}"
    );
    assert!(context.contains("CPython"));
    let crumbs = &detail[detail.find("class=\"breadcrumbs\"").expect("the breadcrumbs")..];
    assert!(crumbs.contains("Breadcrumbs (2)"), "{crumbs}");
    assert!(crumbs.contains("<time>09:59:59.500</time> <span class=\"category\">query</span> SELECT &lt;script&gt;1&lt;/script&gt;"), "{crumbs}");
    assert!(crumbs.contains("status_code"), "a breadcrumb without a message shows its data");
    assert!(!detail.contains("<script>1"));
}
both!(empty_state_then_context_and_breadcrumbs);

/// Every form refuses a POST without the CSRF value its page set (another site's form): sign
/// in, a task's state, Create task and sign out; each also works with the value, so the
/// refusals are the CSRF check's.
async fn every_form_refuses_a_post_without_its_csrf_value(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    seed(&store).await;
    let auth = Auth::new(vec![ApiToken::new("admin", "admin-secret", vec![Scope::Read, Scope::Write])]);
    let server = start(store, auth, dir).await;
    let u = |path: &str| format!("{}{path}", server.url);
    let client = browser();
    let forged = "0".repeat(64);
    let (_, _, login) = get(&client, &u("/login")).await;
    let token = csrf(&login);

    let (s, _, _) = post(&client, &u("/login"), &[("csrf", &forged), ("token", "admin-secret")]).await;
    assert_eq!(s, 403, "sign-in");
    assert_eq!(get(&client, &u("/")).await.0, 303, "not signed in");
    let response = client
        .post(u("/login"))
        .form(&[("csrf", token.as_str()), ("token", "admin-secret")])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    let session = response.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();

    let fp = top_fingerprint(&server.url).await;
    let (s, _, _) = post(&client, &u(&format!("/patterns/{fp}/task")), &[("csrf", &forged)]).await;
    assert_eq!(s, 403, "Create task");
    let (_, tasks) = call("GET", &u("/api/tasks"), Some("admin-secret"), None).await;
    assert_eq!(tasks["tasks"].as_array().map(Vec::len), Some(0));
    let (s, _, _) = post(&client, &u(&format!("/patterns/{fp}/task")), &[("csrf", &token)]).await;
    assert_eq!(s, 303);
    let (_, tasks) = call("GET", &u("/api/tasks"), Some("admin-secret"), None).await;
    let id = tasks["tasks"][0]["id"].as_i64().expect("the task");
    let state = |id: i64| {
        let url = u(&format!("/api/tasks/{id}"));
        async move { call("GET", &url, Some("admin-secret"), None).await.1["task"]["status"].clone() }
    };
    let path = format!("/tasks/{id}/status");
    let (s, _, _) = post(&client, &u(&path), &[("csrf", &forged), ("status", "done")]).await;
    assert_eq!((s, state(id).await), (403, Value::from("open")), "a task's state");
    let (s, _, _) = post(&client, &u(&path), &[("csrf", &token), ("status", "done")]).await;
    assert_eq!((s, state(id).await), (303, Value::from("done")));

    // Sign-out without the value leaves the session open (only this browser's cookie is
    // cleared); with it, the session ends.
    let with_session = |path: &str| {
        reqwest::Client::builder()
            .redirect(Policy::none())
            .build()
            .unwrap()
            .get(u(path))
            .header("cookie", session.clone())
            .send()
    };
    post(&client, &u("/logout"), &[("csrf", &forged)]).await;
    assert_eq!(with_session("/").await.unwrap().status().as_u16(), 200, "still signed in");
    let (_, _, login) = get(&client, &u("/login")).await;
    let token = csrf(&login);
    let cookies = format!("{session}; faultline_csrf={token}");
    let response = reqwest::Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
        .post(u("/logout"))
        .header("cookie", cookies)
        .form(&[("csrf", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 303);
    assert_eq!(with_session("/").await.unwrap().status().as_u16(), 303, "signed out");
}
both!(every_form_refuses_a_post_without_its_csrf_value);

/// Signs a new browser in with a token.
async fn signed_in(url: &str, token: &str) -> (reqwest::Client, String) {
    let client = browser();
    let (_, _, login) = get(&client, &format!("{url}/login")).await;
    let csrf_value = csrf(&login);
    let (s, _, _) =
        post(&client, &format!("{url}/login"), &[("csrf", &csrf_value), ("token", token), ("next", "/")])
            .await;
    assert_eq!(s, 303, "signed in");
    (client, csrf_value)
}

/// The rows' titles of an error list page, in order.
fn titles(html: &str) -> Vec<String> {
    html.split("<span class=\"title\">").skip(1).map(|s| s[..s.find("</span>").unwrap()].to_owned()).collect()
}

fn result_count(html: &str) -> String {
    let at = html.find("id=\"result-count\">").expect("a result count") + 18;
    html[at..at + html[at..].find('<').unwrap()].to_owned()
}

/// `/errors` lists every pattern (ignored ones only when asked), filters by text, level, source,
/// period and status with the API's names, pages by 50, changes the status of the ticked rows,
/// and titles each error `Type: value` or by its message, masked only where it varies.
async fn the_error_list_filters_pages_and_changes_many(
    store: Arc<dyn Store>,
    dir: Option<tempfile::TempDir>,
) {
    seed(&store).await;
    let mut many = Vec::new();
    for i in 0..60 {
        let ago = 10 * 60_000 + i * 1_000;
        many.push(crate::common::event(
            &format!("kind-{i}"),
            ago,
            faultline_core::Level::Error,
            "jobs",
            &format!("Kind{i}Error: job {i} gave up"),
            None,
        ));
    }
    let batch = faultline_store::IngestBatch::from_events(
        "test-many",
        None,
        many,
        faultline_core::Level::Error,
        1000,
        crate::common::now_ms(),
    );
    store.ingest(batch).await.unwrap();
    let auth = Auth::new(vec![
        ApiToken::new("viewer", "read-secret", vec![Scope::Read]),
        ApiToken::new("admin", "admin-secret", vec![Scope::Read, Scope::Write]),
    ]);
    let server = start(store, auth, dir).await;
    let u = |path: &str| format!("{}{path}", server.url);
    let (client, token) = signed_in(&server.url, "admin-secret").await;

    let (s, _, all) = get(&client, &u("/errors")).await;
    assert_eq!((s, result_count(&all).as_str()), (200, "64 errors"));
    assert_eq!(titles(&all).len(), 50, "a page of 50");
    assert_eq!(
        titles(&all)[0],
        "connection refused to &lt;IP&gt;",
        "most occurrences first; the address varies"
    );
    assert!(all.contains("rel=\"next\" href=\"/errors?page=2\""), "a link to the next page");
    let (_, _, second) = get(&client, &u("/errors?page=2")).await;
    assert_eq!(titles(&second).len(), 14);

    let (_, _, found) = get(&client, &u("/errors?query=BAD")).await;
    assert_eq!(titles(&found), ["ValueError: &lt;b&gt;bad&lt;/b&gt;"], "by the exception, escaped");
    let (_, _, found) = get(&client, &u("/errors?level=CRITICAL")).await;
    assert_eq!(titles(&found), ["card 4242 declined"], "seen once: the value as written");
    let (_, _, found) = get(&client, &u("/errors?source=cron")).await;
    assert_eq!(titles(&found), ["nightly export failed after 3 tries"]);
    let (_, _, found) = get(&client, &u("/errors?hours=24&query=nightly")).await;
    assert_eq!(result_count(&found), "0 errors", "three days old");
    let (_, _, found) = get(&client, &u("/errors?sort=first_seen&query=Kind5")).await;
    let newest_first: Vec<String> = [5, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59]
        .iter()
        .map(|k| format!("Kind{k}Error: job {k} gave up"))
        .collect();
    assert_eq!(titles(&found), newest_first);
    for (bad, says) in
        [("hours=abc", "hours must be"), ("status=gone", "new, known, resolved"), ("sort=size", "use count")]
    {
        let (s, _, page) = get(&client, &u(&format!("/errors?{bad}"))).await;
        assert!(s == 400 && page.contains("class=\"problem\"") && page.contains(says), "{bad}: {s}");
    }

    // Tick two rows and ignore them: the list comes back with its filters, says what changed,
    // and hides them; asked for, they are there.
    let (_, errors) =
        call("GET", &u("/api/logs/errors?query=Kind1&sort=first_seen&limit=2"), Some("read-secret"), None)
            .await;
    let picked: Vec<String> =
        errors["errors"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(errors["errors"][0]["title"], "Kind1Error: job 1 gave up", "the API gives the same title");
    let form = [
        ("csrf", token.as_str()),
        ("back", "/errors?query=Kind1&page=1"),
        ("fingerprint", picked[0].as_str()),
        ("fingerprint", picked[1].as_str()),
        ("status", "ignored"),
    ];
    let (s, location, _) = post(
        &client,
        &u("/errors/status"),
        &[("csrf", "0".repeat(64).as_str()), ("fingerprint", picked[0].as_str()), ("status", "ignored")],
    )
    .await;
    assert_eq!((s, location.as_str()), (403, ""), "a forged form changes nothing");
    let (s, location, _) = post(&client, &u("/errors/status"), &form).await;
    assert_eq!((s, location.as_str()), (303, "/errors?query=Kind1&page=1&changed=2&to=ignored"));
    let (_, _, after) = get(&client, &u(&location)).await;
    assert!(after.contains("2 errors marked ignored."), "{after}");
    assert_eq!(result_count(&after), "9 errors", "Kind1 and Kind10…19 but the two ignored");
    let (_, _, ignored) = get(&client, &u("/errors?status=ignored&sort=first_seen")).await;
    assert_eq!(titles(&ignored), ["Kind1Error: job 1 gave up", "Kind10Error: job 10 gave up"]);
    let (_, _, every) = get(&client, &u("/errors?status=all")).await;
    assert_eq!(result_count(&every), "64 errors");
    let (_, api) = call("GET", &u("/api/logs/errors?limit=1"), Some("read-secret"), None).await;
    assert_eq!(api["total"], 62, "the API hides ignored ones too unless asked (status=all)");

    // An error's page: its title, its template, its own chart over 24 hours or 7 days.
    let refused = top_fingerprint(&server.url).await;
    let (_, _, detail) = get(&client, &u(&format!("/patterns/{refused}"))).await;
    assert!(detail.contains("<span id=\"title\">connection refused to &lt;IP&gt;</span>"));
    let chart = &detail[detail.find("id=\"pattern-chart\"").expect("the error's chart")..];
    assert_eq!(chart.matches("<g class=\"bar\"").count(), 24);
    let hourly: u64 =
        chart.split("data-total=\"").skip(1).map(|s| s[..s.find('"').unwrap()].parse::<u64>().unwrap()).sum();
    assert_eq!(hourly, 30, "its 30 occurrences, not the others'");
    let (_, _, weekly) = get(&client, &u(&format!("/patterns/{refused}?chart=7d"))).await;
    let chart = &weekly[weekly.find("id=\"pattern-chart\"").unwrap()..];
    assert_eq!(chart.matches("<g class=\"bar\"").count(), 28, "7 days of 6 hours");

    // A read-only viewer sees the list without the boxes, and may not post.
    let (reader, reader_csrf) = signed_in(&server.url, "read-secret").await;
    let (_, _, list) = get(&reader, &u("/errors")).await;
    assert!(!list.contains("name=\"fingerprint\"") && titles(&list).len() == 50);
    let (s, _, _) = post(
        &reader,
        &u("/errors/status"),
        &[("csrf", &reader_csrf), ("fingerprint", &refused), ("status", "resolved")],
    )
    .await;
    assert_eq!(s, 403);
}
both!(the_error_list_filters_pages_and_changes_many);
