//! The JSON API over real HTTP on loopback, on SQLite and PostgreSQL: every endpoint, its error
//! cases, auth, and the OpenAPI document checked against the routes and the real answers.

use std::sync::Arc;

use faultline_store::Store;
use faultline_web::{ApiToken, Auth, Scope};
use serde_json::{Value, json};

use crate::common::{HOSTILE, call, error_rate_alert, seed, start};

/// Checks `body` against the document's schema for this path, method and status.
fn conforms(doc: &Value, path: &str, method: &str, status: u16, body: &Value) {
    let response = &doc["paths"][path][method]["responses"][status.to_string()];
    assert!(response.is_object(), "{method} {path} answered {status}, which the document does not list");
    let schema = &response["content"]["application/json"]["schema"];
    if schema.is_null() {
        return;
    }
    // Resolve references against the whole document: it is the schema's root.
    let mut root = doc.clone();
    root.as_object_mut().unwrap().insert("allOf".into(), json!([schema]));
    let validator = jsonschema::validator_for(&root).expect("schema compiles");
    let errors: Vec<String> =
        validator.iter_errors(body).map(|e| format!("{} at {}", e, e.instance_path())).collect();
    assert!(errors.is_empty(), "{method} {path} {status} does not match the document: {errors:?}\n{body}");
}

async fn api_endpoints(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    seed(&store).await;
    let server = start(store.clone(), Auth::default(), dir).await;
    let u = |path: &str| format!("{}{path}", server.url);
    let (status, doc) = call("GET", &u("/api/openapi.json"), None, None).await;
    assert_eq!(status, 200);
    let check =
        |method: &str, path: &str, status: u16, body: &Value| conforms(&doc, path, method, status, body);

    // Patterns, sorted and filtered.
    let (s, errors) = call("GET", &u("/api/logs/errors"), None, None).await;
    check("get", "/api/logs/errors", s, &errors);
    assert_eq!((s, errors["total"].as_u64()), (200, Some(4)));
    let top = &errors["errors"][0];
    assert_eq!(
        (top["template"].as_str(), top["occurrence_count"].as_i64()),
        (Some("connection refused to <IP>"), Some(30))
    );
    assert_eq!(top["tier"], "message");
    let refused = top["fingerprint"].as_str().unwrap().to_owned();
    for sort in ["first_seen", "last_seen"] {
        let (_, sorted) = call("GET", &u(&format!("/api/logs/errors?sort={sort}")), None, None).await;
        let times: Vec<&str> =
            sorted["errors"].as_array().unwrap().iter().map(|p| p[sort].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]), "newest first by {sort}: {times:?}");
    }
    let (_, page) = call("GET", &u("/api/logs/errors?limit=2&offset=2"), None, None).await;
    assert_eq!((page["total"].as_u64(), page["errors"].as_array().unwrap().len()), (Some(4), 2));
    let (_, critical) = call("GET", &u("/api/logs/errors?level=critical"), None, None).await;
    assert_eq!(critical["total"], 1);
    let (_, recent) = call("GET", &u("/api/logs/errors?hours=24&source=cron"), None, None).await;
    assert_eq!(recent["total"], 0, "the cron error is 3 days old");

    let (s, one) = call("GET", &u(&format!("/api/logs/errors/{refused}")), None, None).await;
    check("get", "/api/logs/errors/{fingerprint}", s, &one);
    assert_eq!((s, one["id"].as_str()), (200, Some(refused.as_str())));
    let (s, missing) = call("GET", &u("/api/logs/errors/nope"), None, None).await;
    check("get", "/api/logs/errors/{fingerprint}", s, &missing);
    assert_eq!((s, missing["error"].as_str()), (404, Some("no such pattern")));

    let (s, occ) =
        call("GET", &u(&format!("/api/logs/errors/{refused}/occurrences?limit=10&offset=25")), None, None)
            .await;
    check("get", "/api/logs/errors/{fingerprint}/occurrences", s, &occ);
    assert_eq!((occ["total"].as_u64(), occ["occurrences"].as_array().unwrap().len()), (Some(30), 5));
    assert_eq!(occ["occurrences"][4]["message"], "connection refused to 10.0.0.29:5432", "oldest last");

    let (s, stats) = call("GET", &u("/api/logs/stats"), None, None).await;
    check("get", "/api/logs/stats", s, &stats);
    assert_eq!((stats["errors_24h"].as_u64(), stats["patterns_total"].as_u64()), (Some(32), Some(4)));
    assert_eq!(stats["by_level_24h"]["CRITICAL"], 1);

    // The monitoring endpoints of the design, with its shapes.
    let (s, logs) = call(
        "GET",
        &u("/api/monitoring/logs?query=REFUSED&level=error&source=api&hours=24&limit=5&offset=0"),
        None,
        None,
    )
    .await;
    check("get", "/api/monitoring/logs", s, &logs);
    assert_eq!(
        (logs["total"].as_u64(), logs["limit"].as_u64(), logs["logs"].as_array().unwrap().len()),
        (Some(30), Some(5), 5)
    );
    let first = &logs["logs"][0];
    assert_eq!(
        (first["request_path"].as_str(), first["request_method"].as_str()),
        (Some("/api/orders"), Some("POST"))
    );
    assert!(first["timestamp"].as_str().unwrap().ends_with('Z'), "RFC 3339 in UTC: {first}");
    let (_, hostile) = call("GET", &u("/api/monitoring/logs?query=DROP%20TABLE"), None, None).await;
    assert_eq!(hostile["logs"][0]["message"], HOSTILE, "stored and returned as given");
    let (_, prefix) = call("GET", &u("/api/monitoring/logs?source=worker.*"), None, None).await;
    assert_eq!(prefix["total"], 1);

    let (s, rate) = call("GET", &u("/api/monitoring/logs/rate?hours=1"), None, None).await;
    check("get", "/api/monitoring/logs/rate", s, &rate);
    assert_eq!((rate["period_hours"].as_u64(), rate["total_errors"].as_u64()), (Some(1), Some(31)));
    assert_eq!(rate["by_source"]["api"], 30);
    let trend = rate["trend"].as_array().unwrap();
    assert!((4..=5).contains(&trend.len()), "15-minute intervals over an hour: {}", trend.len());
    let (_, day) = call("GET", &u("/api/monitoring/logs/rate?hours=24"), None, None).await;
    assert_eq!(
        day["trend"].as_array().unwrap().iter().map(|p| p["count"].as_u64().unwrap()).sum::<u64>(),
        32
    );

    let (s, patterns) = call("GET", &u("/api/monitoring/logs/patterns?hours=24"), None, None).await;
    check("get", "/api/monitoring/logs/patterns", s, &patterns);
    assert_eq!(
        (patterns["patterns"].as_array().unwrap().len(), patterns["new_patterns_24h"].as_u64()),
        (3, Some(3))
    );

    let path = format!("/api/monitoring/logs/patterns/{refused}");
    let (s, changed) = call("PATCH", &u(&path), None, Some(json!({"status": "known"}))).await;
    check("patch", "/api/monitoring/logs/patterns/{id}", s, &changed);
    assert_eq!(changed, json!({"id": refused, "status": "known"}));
    let (_, known) = call("GET", &u("/api/logs/errors?status=known"), None, None).await;
    assert_eq!(known["total"], 1);
    let (s, bad) = call("PATCH", &u(&path), None, Some(json!({"status": "fixed"}))).await;
    check("patch", "/api/monitoring/logs/patterns/{id}", s, &bad);
    assert!(s == 400 && bad["error"].as_str().unwrap().contains("known, resolved or ignored"), "{bad}");
    let (s, _) = call("PATCH", &u(&path), None, Some(json!({"status": "known", "extra": 1}))).await;
    assert_eq!(s, 400, "unknown body fields are refused");
    // A unique prefix of the id (8 hex characters or more) names the pattern too.
    let short = &refused[..12];
    let (s, by_prefix) = call("GET", &u(&format!("/api/logs/errors/{short}")), None, None).await;
    assert_eq!((s, &by_prefix["fingerprint"]), (200, &json!(refused)), "{by_prefix}");
    let (s, changed) = call(
        "PATCH",
        &u(&format!("/api/monitoring/logs/patterns/{short}")),
        None,
        Some(json!({"status": "known"})),
    )
    .await;
    assert_eq!((s, &changed["id"]), (200, &json!(refused)), "the answer names the whole id");
    for (id, status, says) in
        [("1a2b3", 400, "too short"), ("zzzzzzzzzz", 404, "no such"), ("ffffffff00000000", 404, "no such")]
    {
        let (s, body) = call("GET", &u(&format!("/api/logs/errors/{id}")), None, None).await;
        assert_eq!(s, status, "{id}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{id}: {body}");
    }
    let (s, _) =
        call("PATCH", &u("/api/monitoring/logs/patterns/nope"), None, Some(json!({"status": "known"}))).await;
    assert_eq!(s, 404);

    // Tasks: create from a pattern (once), list, read, move.
    let (s, created) = call("POST", &u("/api/tasks"), None, Some(json!({"fingerprint": refused}))).await;
    check("post", "/api/tasks", s, &created);
    assert_eq!(created["created"], true);
    let (_, again) = call("POST", &u("/api/tasks"), None, Some(json!({"fingerprint": refused}))).await;
    assert_eq!(
        (again["created"].as_bool(), &again["id"]),
        (Some(false), &created["id"]),
        "one open task per pattern"
    );
    let id = created["id"].as_i64().unwrap();
    let (s, tasks) = call("GET", &u("/api/tasks?status=open"), None, None).await;
    check("get", "/api/tasks", s, &tasks);
    assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1);
    let (s, moved) =
        call("PATCH", &u(&format!("/api/tasks/{id}")), None, Some(json!({"status": "in_progress"}))).await;
    check("patch", "/api/tasks/{id}", s, &moved);
    assert_eq!(moved["id"], created["id"], "the same id, a number as POST gives it");
    let (s, task) = call("GET", &u(&format!("/api/tasks/{id}")), None, None).await;
    check("get", "/api/tasks/{id}", s, &task);
    assert_eq!(task["task"]["status"], "in_progress");
    assert!(task["task"]["title"].as_str().unwrap().contains("connection refused"), "{task}");
    let (s, _) = call("GET", &u("/api/tasks/999999"), None, None).await;
    assert_eq!(s, 404);
    let (s, _) = call("POST", &u("/api/tasks"), None, Some(json!({"fingerprint": "nope"}))).await;
    assert_eq!(s, 404);

    // Alerts, and whether the flood limits held their notifications back.
    let now = crate::common::now_ms();
    store.fire_alert(&error_rate_alert("degraded", 60, now - 2_000)).await.unwrap().unwrap();
    store.fire_alert(&error_rate_alert("fail", 1, now - 1_000)).await.unwrap().unwrap();
    let (s, alerts) = call("GET", &u("/api/alerts?hours=1"), None, None).await;
    check("get", "/api/alerts", s, &alerts);
    let listed: Vec<(&str, bool)> = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["subject"].as_str().unwrap(), a["held"].as_bool().unwrap()))
        .collect();
    assert_eq!(listed, [("error_rate:fail", true), ("error_rate:degraded", false)], "newest first");
    let (s, _) = call("GET", &u("/api/alerts?hours=0"), None, None).await;
    assert_eq!(s, 400);

    // Rules, runs, sources, manual crawl.
    let (s, rules) = call("GET", &u("/api/alerts/rules"), None, None).await;
    check("get", "/api/alerts/rules", s, &rules);
    let (s, runs) = call("GET", &u("/api/jobs/runs?job=collect&limit=5"), None, None).await;
    check("get", "/api/jobs/runs", s, &runs);
    let (s, sources) = call("GET", &u("/api/sources"), None, None).await;
    check("get", "/api/sources", s, &sources);
    assert_eq!(
        (sources["sources"][0]["source_id"].as_str(), sources["sources"][0]["cursor"].as_str()),
        (Some("test"), Some("cursor-1"))
    );
    // Each POST runs the crawler once and answers its run records.
    let (s, crawl) = call("POST", &u("/api/logs/crawl"), None, None).await;
    assert_eq!((s, crawl[0]["run"].as_u64()), (200, Some(1)));
    let (s, crawl) = call("POST", &u("/api/logs/crawl"), None, None).await;
    assert_eq!((s, crawl[0]["run"].as_u64()), (200, Some(2)));

    // Bad requests name what is wrong, never a 500.
    for (path, needle) in [
        ("/api/monitoring/logs?hours=abc", "hours"),
        ("/api/monitoring/logs?limit=-1", "limit"),
        ("/api/monitoring/logs?limit=0", "limit"),
        ("/api/monitoring/logs?limit=5000", "limit"),
        ("/api/monitoring/logs?colour=red", "colour"),
        ("/api/monitoring/logs?level=loud", "level"),
        ("/api/monitoring/logs/rate?hours=0", "hours"),
        ("/api/logs/errors?sort=random", "sort"),
        ("/api/logs/errors?status=fixed", "status"),
        ("/api/tasks?status=someday", "status"),
        ("/api/logs/stats?x=1", "x"),
    ] {
        let (s, body) = call("GET", &u(path), None, None).await;
        assert_eq!(s, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(needle), "{path}: {body}");
        let route = path.split('?').next().unwrap();
        check("get", route, s, &body);
    }
}

async fn auth_scopes(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    seed(&store).await;
    let auth = Auth::new(vec![
        ApiToken::new("viewer", "read-secret", vec![Scope::Read]),
        ApiToken::new("admin", "write-secret", vec![Scope::Read, Scope::Write]),
    ]);
    let server = start(store, auth, dir).await;
    let u = |path: &str| format!("{}{path}", server.url);
    let (s, body) = call("GET", &u("/api/logs/errors"), None, None).await;
    assert_eq!(
        (s, body["error"].as_str()),
        (401, Some("missing token: send \"Authorization: Bearer <token>\""))
    );
    assert_eq!(call("GET", &u("/api/logs/errors"), Some("wrong"), None).await.0, 401);
    let (s, errors) = call("GET", &u("/api/logs/errors"), Some("read-secret"), None).await;
    assert_eq!(s, 200);
    let path = format!("/api/monitoring/logs/patterns/{}", errors["errors"][0]["id"].as_str().unwrap());
    let (s, body) = call("PATCH", &u(&path), Some("read-secret"), Some(json!({"status": "ignored"}))).await;
    assert!(s == 403 && body["error"].as_str().unwrap().contains("write"), "{body}");
    assert_eq!(call("POST", &u("/api/logs/crawl"), Some("read-secret"), None).await.0, 403);
    let (s, _) = call("PATCH", &u(&path), Some("write-secret"), Some(json!({"status": "ignored"}))).await;
    assert_eq!(s, 200);
    // The document itself is public: it holds no data.
    assert_eq!(call("GET", &u("/api/openapi.json"), None, None).await.0, 200);
}

/// Every route is in the document and every documented operation is routed; a standard
/// validator (openapi-spec-validator) accepts the document.
#[tokio::test]
async fn the_openapi_document_matches_the_routes_and_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let store = faultline_store::open(dir.path().join("db").to_str().unwrap()).await.unwrap();
    let server = start(store, Auth::default(), None).await;
    let (_, doc) = call("GET", &format!("{}/api/openapi.json", server.url), None, None).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push(format!("{} {path}", method.to_uppercase()));
            // A documented operation is routed: not 404 for want of a route, nor 405.
            let concrete = path.replace("{fingerprint}", "x").replace("{id}", "1");
            let body = (method != "get").then(|| json!({}));
            let (status, _) = call(method, &format!("{}{concrete}", server.url), None, body).await;
            assert_ne!(status, 405, "{method} {path}");
            if status == 404 {
                let (_, answer) =
                    call(method, &format!("{}{concrete}", server.url), None, Some(json!({}))).await;
                assert!(
                    answer["error"].as_str().unwrap_or("").starts_with("no such"),
                    "{method} {path} is not routed"
                );
            }
        }
    }
    documented.sort();
    let expected = [
        "GET /api/alerts",
        "GET /api/alerts/rules",
        "GET /api/jobs/runs",
        "GET /api/logs/errors",
        "GET /api/logs/errors/{fingerprint}",
        "GET /api/logs/errors/{fingerprint}/occurrences",
        "GET /api/logs/stats",
        "GET /api/monitoring/logs",
        "GET /api/monitoring/logs/patterns",
        "GET /api/monitoring/logs/rate",
        "GET /api/openapi.json",
        "GET /api/sources",
        "GET /api/tasks",
        "GET /api/tasks/{id}",
        "PATCH /api/alerts/rules/{id}",
        "PATCH /api/monitoring/logs/patterns/{id}",
        "PATCH /api/tasks/{id}",
        "POST /api/alerts/rules",
        "POST /api/logs/crawl",
        "POST /api/tasks",
    ];
    assert_eq!(documented, expected);

    let file = dir.path().join("openapi.json");
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "openapi-spec-validator refused the document (pip install openapi-spec-validator):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

use crate::both;

/// Rules are created, edited, disabled and enabled; a rule the evaluator could not run is
/// refused with the reason.
async fn alert_rules(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    let server = start(store, Auth::default(), dir).await;
    let u = |path: &str| format!("{}{path}", server.url);
    let (_, doc) = call("GET", &u("/api/openapi.json"), None, None).await;
    let check =
        |method: &str, path: &str, status: u16, body: &Value| conforms(&doc, path, method, status, body);

    let spike = json!({"name": "checkout spike", "rule_type": "spike", "condition": {"per_minute": 40}});
    let (s, rule) = call("POST", &u("/api/alerts/rules"), None, Some(spike.clone())).await;
    check("post", "/api/alerts/rules", s, &rule);
    assert_eq!(s, 200, "{rule}");
    assert_eq!(
        (rule["enabled"].as_bool(), rule["action"].as_str(), rule["cooldown_minutes"].as_i64()),
        (Some(true), Some("task_and_notify"), Some(30))
    );
    let (s, body) = call("POST", &u("/api/alerts/rules"), None, Some(spike)).await;
    check("post", "/api/alerts/rules", s, &body);
    assert!(s == 409 && body["error"].as_str().unwrap().contains("checkout spike"), "{body}");

    let path = format!("/api/alerts/rules/{}", rule["id"]);
    let (s, changed) = call("PATCH", &u(&path), None, Some(json!({"enabled": false}))).await;
    check("patch", "/api/alerts/rules/{id}", s, &changed);
    assert_eq!(
        (changed["enabled"].as_bool(), &changed["condition"]),
        (Some(false), &json!({"per_minute": 40}))
    );
    let (s, changed) =
        call("PATCH", &u(&path), None, Some(json!({"enabled": true, "condition": {"per_minute": 90}}))).await;
    assert_eq!((s, changed["enabled"].as_bool()), (200, Some(true)));
    let (_, rules) = call("GET", &u("/api/alerts/rules"), None, None).await;
    assert_eq!(rules["rules"][0]["condition"], json!({"per_minute": 90}));

    for (body, needle) in [
        (json!({"name": "x", "rule_type": "earthquake"}), "earthquake"),
        (json!({"name": "x", "rule_type": "spike", "condition": {"per_second": 3}}), "per_second"),
        (json!({"name": "x", "rule_type": "spike", "condition": {"per_minute": "many"}}), "per_minute"),
        (json!({"name": "", "rule_type": "critical"}), "name"),
        (json!({"name": "x", "rule_type": "critical", "action": "page"}), "action"),
        (json!({"name": "x", "rule_type": "critical", "cooldown_minutes": -1}), "cooldown_minutes"),
        (json!({"name": "x", "rule_type": "critical", "colour": "red"}), "colour"),
    ] {
        let (s, answer) = call("POST", &u("/api/alerts/rules"), None, Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains(needle), "{body}: {answer}");
    }
    let (s, answer) = call("PATCH", &u(&path), None, Some(json!({"condition": {"per_minute": -5}}))).await;
    assert_eq!(s, 400, "{answer}");
    let (s, _) = call("PATCH", &u("/api/alerts/rules/424242"), None, Some(json!({"enabled": false}))).await;
    assert_eq!(s, 404);
}

/// Issue 16: a NUL anywhere (record fields, client fingerprints, metadata, query parameters,
/// paths, bodies) is stored as U+FFFD or refused with a 400 naming where it was, on both
/// backends; never a 500, never a lost batch.
async fn regression_16_nul_anywhere(store: Arc<dyn Store>, dir: Option<tempfile::TempDir>) {
    let server = start(store.clone(), Auth::default(), dir).await;
    let u = |path: &str| format!("{}{path}", server.url);
    let records = [
        json!({"message": "nul in fingerprint", "fingerprint": ["x\u{0}", "{{ default }}"]}),
        json!({"message": "nul in metadata", "extra": {"k\u{0}ey": ["v\u{0}", "\\u0000 as text"]}}),
        json!({"message": "nul in id", "id": "a\u{0}b", "logger": "svc\u{0}x", "path": "/p\u{0}"}),
        json!({"message": "m\u{0}", "traceback": "Traceback (most recent call last):\n  File \"a.py\", line 1, in f\u{0}\nValueError: v\u{0}"}),
    ];
    let body = records.iter().map(Value::to_string).collect::<Vec<_>>().join("\n");
    let response = reqwest::Client::new()
        .post(u("/api/ingest"))
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .expect("post");
    let status = response.status().as_u16();
    let answer: Value = response.json().await.expect("json");
    assert_eq!((status, answer["stored"].as_u64()), (200, Some(4)), "{answer}");
    let (s, found) = call("GET", &u("/api/monitoring/logs?query=nul%20in"), None, None).await;
    assert_eq!((s, found["total"].as_u64()), (200, Some(3)), "{found}");
    let query =
        faultline_store::SearchQuery { text: Some("nul in metadata".into()), limit: 1, ..Default::default() };
    let entry = store.search(&query).await.expect("search").entries.remove(0);
    assert_eq!(entry.metadata["extra"], json!({"k\u{FFFD}ey": ["v\u{FFFD}", "\\u0000 as text"]}));

    for path in [
        "/api/monitoring/logs?source=a%00b",
        "/api/monitoring/logs?query=a%00b",
        "/api/logs/errors?source=a%00b",
    ] {
        let (s, body) = call("GET", &u(path), None, None).await;
        assert_eq!(s, 400, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("NUL"), "{path}: {body}");
    }
    let (s, body) = call("GET", &u("/api/logs/errors/ab%00cd"), None, None).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid path: contains a NUL character")));
    let rule = json!({"name": "nul\u{0}rule", "rule_type": "spike", "condition": {"per_minute": 40}});
    let (s, body) = call("POST", &u("/api/alerts/rules"), None, Some(rule)).await;
    assert_eq!((s, body["error"].as_str()), (400, Some("invalid body at .name: contains a NUL character")));
}

both!(regression_16_nul_anywhere);
both!(api_endpoints);
both!(alert_rules);
both!(auth_scopes);
