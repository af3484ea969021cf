//! The read and write commands, as a user runs them.

use crate::{databases, example_log, faultline, json, stdout};

#[tokio::test]
async fn ingesting_the_same_file_twice_leaves_the_same_rows() {
    let dir = tempfile::tempdir().unwrap();
    let log = example_log();
    let log = log.to_str().unwrap();
    for db in databases(dir.path()).await {
        let first = stdout(&faultline(dir.path(), &db, &["ingest", log]));
        assert!(first.contains("20 errors stored, 0 duplicates skipped, 13 new patterns"), "{first}");
        let before = json(&faultline(dir.path(), &db, &["search", "--json", "--limit", "100"]));
        let patterns_before = json(&faultline(dir.path(), &db, &["patterns", "--json"]));

        let second = stdout(&faultline(dir.path(), &db, &["ingest", log]));
        assert!(second.contains("0 errors stored"), "{second}");
        assert_eq!(json(&faultline(dir.path(), &db, &["search", "--json", "--limit", "100"])), before);
        assert_eq!(json(&faultline(dir.path(), &db, &["patterns", "--json"])), patterns_before);
        assert_eq!(before["total"], 20, "{db}");
    }
}

#[tokio::test]
async fn a_copy_of_the_file_elsewhere_is_deduplicated_per_source_not_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.log");
    std::fs::copy(example_log(), &copy).unwrap();
    let db = dir.path().join("f.db").display().to_string();
    stdout(&faultline(dir.path(), &db, &["ingest", example_log().to_str().unwrap()]));
    let out = stdout(&faultline(dir.path(), &db, &["ingest", copy.to_str().unwrap()]));
    assert!(out.contains("20 errors stored, 0 duplicates skipped, 0 new patterns"), "{out}");
}

#[tokio::test]
async fn patterns_search_and_stats_answer_what_a_user_asks() {
    let dir = tempfile::tempdir().unwrap();
    for db in databases(dir.path()).await {
        stdout(&faultline(dir.path(), &db, &["ingest", example_log().to_str().unwrap()]));

        let top = json(&faultline(dir.path(), &db, &["patterns", "--top", "3", "--json"]));
        let top: Vec<(&str, i64)> = top
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p["template"].as_str().unwrap(), p["occurrence_count"].as_i64().unwrap()))
            .collect();
        assert_eq!(top[0], ("connection refused to <IP> (attempt <NUM> of <NUM>)", 4), "{db}");
        assert_eq!(top[1].1, 2);

        // Two Java traces with different skus and one Python KeyError twice: one pattern each.
        let java = json(&faultline(dir.path(), &db, &["search", "sku", "--json"]));
        let fingerprints: Vec<&str> =
            java["logs"].as_array().unwrap().iter().map(|e| e["fingerprint"].as_str().unwrap()).collect();
        assert_eq!(fingerprints.len(), 2);
        assert_eq!(fingerprints[0], fingerprints[1]);

        let crit = json(&faultline(dir.path(), &db, &["search", "--level", "crit", "--json"]));
        assert_eq!(crit["total"], 3);
        let billing = json(&faultline(dir.path(), &db, &["search", "--source", "billing.*", "--json"]));
        let billing = &billing["logs"][0];
        assert_eq!(billing["request_path"], "/api/pay");
        assert_eq!(billing["metadata"]["request_id"], "a1b2c3d4-0000-4e1a-9f00-2c4b6d8e0a12");

        let traced = json(&faultline(dir.path(), &db, &["search", "KeyError", "--json"]));
        assert_eq!(traced["total"], 2, "tracebacks are searched too");
        assert!(traced["logs"][0]["traceback"].as_str().unwrap().ends_with("KeyError: 'c_90001'"));

        // The sample log is from 2024: nothing in the last hour, all of it in a long window.
        let recent = json(&faultline(dir.path(), &db, &["stats", "--hours", "1", "--json"]));
        assert_eq!(recent["total_errors"], 0);
        let since_2024 = json(&faultline(dir.path(), &db, &["stats", "--hours", "100000", "--json"]));
        assert_eq!(since_2024["total_errors"], 20);
        assert_eq!(since_2024["by_level"]["CRITICAL"], 3);

        let nothing_new = json(&faultline(dir.path(), &db, &["patterns", "--new", "24h", "--json"]));
        assert_eq!(nothing_new.as_array().unwrap().len(), 0);
    }
}

#[tokio::test]
async fn hostile_text_is_printed_escaped_to_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("evil.log");
    std::fs::write(&log, b"ERROR:root:clear \x1b[2J\x1b]0;pwned\x07 done \xff\n").unwrap();
    let db = dir.path().join("f.db").display().to_string();
    stdout(&faultline(dir.path(), &db, &["ingest", log.to_str().unwrap()]));
    let table = stdout(&faultline(dir.path(), &db, &["search", "clear"]));
    assert!(!table.contains('\x1b') && !table.contains('\x07'), "{table:?}");
    assert!(table.contains("clear \\u{1b}[2J\\u{1b}]0;pwned\\u{7} done \u{FFFD}"), "{table}");
    let raw = json(&faultline(dir.path(), &db, &["search", "clear", "--json"]));
    assert_eq!(raw["logs"][0]["message"], "clear \u{1b}[2J\u{1b}]0;pwned\u{7} done \u{FFFD}");
}

#[test]
fn errors_are_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db").display().to_string();
    let check = |args: &[&str], db: &str, expect: &str| {
        let out = faultline(dir.path(), db, args);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("error: ") && err.contains(expect) && !err.contains(" at line "), "{err}");
    };
    check(&["ingest", "/no/such.log"], &db, "cannot open /no/such.log: No such file or directory");
    check(&["patterns"], "mysql://x", "invalid database url \"mysql://x\"");
    check(
        &["patterns"],
        "postgres://postgres@127.0.0.1:1/x",
        "cannot open database postgres://postgres@127.0.0.1:1/x",
    );
    // What PostgreSQL said, without the line of its own C source sqlx appends ("at line 948").
    check(
        &["patterns"],
        "postgres://postgres@127.0.0.1:5432/faultline_no_such_database",
        "database \"faultline_no_such_database\" does not exist (SQLSTATE 3D000)",
    );
    check(&["search", "--level", "loud"], &db, "invalid level \"loud\"");

    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[ingest]\nmin_levl = \"ERROR\"\n").unwrap();
    check(&["--config", config.to_str().unwrap(), "patterns"], &db, "unknown config key ingest.min_levl (");
    check(&["--config", config.to_str().unwrap(), "patterns"], &db, "bad.toml line 2): expected one of");
}

#[test]
fn min_level_warning_stores_warnings_too() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db").display().to_string();
    let out = stdout(&faultline(
        dir.path(),
        &db,
        &["ingest", "--min-level", "warning", example_log().to_str().unwrap()],
    ));
    assert!(out.contains("21 errors stored"), "{out}");
}

#[test]
fn regression_16_a_closed_pipe_ends_list_commands_quietly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db").display().to_string();
    stdout(&faultline(dir.path(), &db, &["ingest", example_log().to_str().unwrap()]));
    for args in [&["search"][..], &["patterns"], &["search", "--json"], &["stats", "--hours", "100000"]] {
        // The reader goes away at once, as `| head -0` does.
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_faultline"))
            .current_dir(dir.path())
            .args(["--database", &db])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{args:?}: {:?} {stderr}", output.status);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn regression_16_read_commands_on_a_missing_sqlite_file_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/x.db");
    for args in [&["patterns"][..], &["search", "x"], &["stats"], &["tasks", "list"], &["cleanup"]] {
        let output = faultline(dir.path(), missing.to_str().unwrap(), args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("no database at") && stderr.contains("no/such/dir/x.db"), "{stderr}");
    }
    assert!(!dir.path().join("no").exists(), "nothing was created");
}

#[test]
fn regression_16_search_escapes_direction_overrides_and_cleanup_says_what_it_freed() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("bidi.log");
    std::fs::write(&log, "2024-06-03T10:00:00Z ERROR app: invoice \u{202E}fdp.exe\u{202C} rejected\n")
        .unwrap();
    let db = dir.path().join("f.db").display().to_string();
    stdout(&faultline(dir.path(), &db, &["ingest", log.to_str().unwrap()]));
    let shown = stdout(&faultline(dir.path(), &db, &["search", "invoice"]));
    assert!(shown.contains("invoice \\u{202e}fdp.exe\\u{202c} rejected"), "{shown}");
    assert!(!shown.contains('\u{202E}'), "{shown}");
    let cleaned = stdout(&faultline(dir.path(), &db, &["cleanup", "--days", "1"]));
    assert!(
        cleaned.starts_with("deleted 1 entries") && cleaned.contains("the database file gave back"),
        "{cleaned}"
    );
}

/// The 16-character id `patterns` prints is what `tasks create` and `pattern-status` take, and
/// so is any unique prefix of 8 or more; a shorter or non-hex id is a clear error.
#[tokio::test]
async fn the_short_ids_patterns_prints_are_taken_by_every_command() {
    let dir = tempfile::tempdir().unwrap();
    for db in databases(dir.path()).await {
        stdout(&faultline(dir.path(), &db, &["ingest", example_log().to_str().unwrap()]));
        let table = stdout(&faultline(dir.path(), &db, &["patterns", "--top", "1"]));
        let short = table
            .split_whitespace()
            .find(|w| w.len() == 16 && w.bytes().all(|b| b.is_ascii_hexdigit()))
            .unwrap_or_else(|| panic!("no 16-character id in:\n{table}"))
            .to_owned();
        let full = json(&faultline(dir.path(), &db, &["patterns", "--top", "1", "--json"]))[0]["fingerprint"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(full.starts_with(&short) && full.len() == 64, "{short} {full}");

        let created = stdout(&faultline(dir.path(), &db, &["tasks", "create", &short]));
        assert!(created.starts_with("created task "), "{created}");
        let again =
            stdout(&faultline(dir.path(), &db, &["tasks", "create", &full[..8].to_ascii_uppercase()]));
        assert!(again.starts_with("already open: task "), "{again}");
        let set = stdout(&faultline(dir.path(), &db, &["pattern-status", &full[..10], "known"]));
        assert_eq!(set.trim(), format!("pattern {full} is known"));

        for (id, says) in [(&full[..7], "too short"), ("zzzzzzzzzz", "no pattern with id")] {
            let out = faultline(dir.path(), &db, &["pattern-status", id, "known"]);
            assert!(!out.status.success());
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains(says), "{id}: {err}");
        }
    }
}

/// Several files: one that cannot be read is reported and the others are still read (the exit
/// code says one failed); `--from-start` reads a file again from its first line, storing nothing
/// twice; `--min-level` takes only the levels it names.
#[test]
fn a_bad_file_does_not_stop_the_others_and_a_file_can_be_read_again() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db").display().to_string();
    let log = example_log();
    let log = log.to_str().unwrap();
    let out = faultline(dir.path(), &db, &["ingest", "/no/such.log", log]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such.log") && err.contains("1 of 2 files could not be ingested"), "{err}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("20 errors stored"), "the readable file was read: {said}");

    let again = stdout(&faultline(dir.path(), &db, &["ingest", log]));
    assert!(again.contains("0 errors stored"), "resumes at its end: {again}");
    let from_start = stdout(&faultline(dir.path(), &db, &["ingest", "--from-start", log]));
    assert!(from_start.contains("0 errors stored, 20 duplicates skipped"), "{from_start}");

    let low = faultline(dir.path(), &db, &["ingest", "--min-level", "info", log]);
    assert_eq!(low.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&low.stderr).contains("use WARNING, ERROR or CRITICAL"));
}

/// `--json` speaks the API's vocabulary: every field a command prints is named as in the
/// schema of the API's answer for the same thing (its OpenAPI document), and the lists are
/// wrapped alike (`logs`, `tasks`).
#[tokio::test]
async fn json_output_uses_the_api_field_names() {
    let (_, doc) = faultline_web::api::routes();
    let doc = serde_json::to_value(&doc).unwrap();
    let fields = |schema: &str| -> std::collections::BTreeSet<String> {
        let properties = doc["components"]["schemas"][schema]["properties"].as_object();
        properties.unwrap_or_else(|| panic!("schema {schema}")).keys().cloned().collect()
    };
    let keys = |value: &serde_json::Value| -> std::collections::BTreeSet<String> {
        value.as_object().expect("an object").keys().cloned().collect()
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("f.db").display().to_string();
    stdout(&faultline(dir.path(), &db, &["ingest", example_log().to_str().unwrap()]));
    let top = json(&faultline(dir.path(), &db, &["patterns", "--top", "1", "--json"]));
    let id = top[0]["id"].as_str().unwrap().to_owned();
    stdout(&faultline(dir.path(), &db, &["tasks", "create", &id[..16]]));

    let search = json(&faultline(dir.path(), &db, &["search", "refused", "--json"]));
    assert_eq!(keys(&search), fields("LogsPage"));
    assert_eq!(keys(&search["logs"][0]), fields("LogView"));
    let stats = json(&faultline(dir.path(), &db, &["stats", "--hours", "100000", "--json"]));
    assert!(keys(&stats).is_subset(&fields("Rate")), "{:?} beside {:?}", keys(&stats), fields("Rate"));
    assert!(keys(&top[0]).is_subset(&fields("PatternView")), "{:?}", keys(&top[0]));
    let tasks = json(&faultline(dir.path(), &db, &["tasks", "list", "--json"]));
    assert_eq!(keys(&tasks), fields("TaskList"));
    assert_eq!(keys(&tasks["tasks"][0]), fields("TaskView"));
    let task_id = tasks["tasks"][0]["id"].as_i64().unwrap().to_string();
    let task = json(&faultline(dir.path(), &db, &["tasks", "show", &task_id, "--json"]));
    assert_eq!(keys(&task), fields("TaskDetail"));
    assert_eq!(keys(&task["task"]), fields("TaskView"));
    assert_eq!(task["task"]["fingerprint"], id.as_str());
}

/// With small batches the reader runs ahead of the store, and `faultline ingest` commits the
/// batches that wait together. Each of them counts INFO lines in the same minutes, which a
/// merged batch must add up before PostgreSQL's one upsert of them (it once failed there,
/// touching one row twice).
#[tokio::test]
async fn batches_committed_together_store_and_count_every_line() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("faultline.toml");
    std::fs::write(&config, "[ingest]\nbatch_size = 5\n").unwrap();
    let log = dir.path().join("app.log");
    let text: String = (0..2000)
        .map(|i| {
            let at = format!("2024-01-02 03:{:02}:{:02},{:03}", 10 + i / 100, i % 100 / 2, i % 1000);
            format!("{at} ERROR app.jobs: job {i} failed\n{at} INFO app.web: request {i} served\n")
        })
        .collect();
    std::fs::write(&log, text).unwrap();
    let (config, log) = (config.to_str().unwrap(), log.to_str().unwrap());
    for db in databases(dir.path()).await {
        let out = stdout(&faultline(dir.path(), &db, &["--config", config, "ingest", log]));
        assert!(out.contains("2000 errors stored, 0 duplicates skipped"), "{db}: {out}");
        assert!(out.contains("2000 below the minimum level counted"), "{db}: {out}");
        let again = stdout(&faultline(dir.path(), &db, &["--config", config, "ingest", log]));
        assert!(again.contains("0 errors stored"), "{db}: {again}");
    }
}
