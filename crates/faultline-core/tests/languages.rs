//! Table tests of real-looking errors from Python, Java, Go, Rust and Node: which events must
//! share a pattern and which must stay apart; and a pinned corpus of fingerprints.

use expect_test::{Expect, expect};
use faultline_core::{FINGERPRINT_VERSION, Grouper, Grouping, Level, LogEvent, Origin, Tier, fingerprint};

fn event(message: &str, traceback: Option<&str>) -> LogEvent {
    LogEvent {
        timestamp_ms: 0,
        level: Level::Error,
        source: "app".into(),
        message: message.to_owned(),
        traceback: traceback.map(str::to_owned),
        request_path: None,
        request_method: None,
        metadata: Default::default(),
        raw: String::new(),
        origin: Origin { source_id: "t".into(), external_id: None },
    }
}

fn frames(g: &Grouping) -> Vec<String> {
    g.frames.iter().map(|f| format!("{}:{}", f.module, f.function)).collect()
}

/// Python: the same KeyError raised from one helper reached through two views.
fn python(view: &str, key: &str, line: u32) -> String {
    format!(
        "Traceback (most recent call last):
  File \"/usr/lib/python3.12/site-packages/flask/app.py\", line 880, in full_dispatch_request
    rv = self.dispatch_request()
  File \"/srv/shop/views.py\", line {line}, in {view}
    return load_user(uid)
  File \"/srv/shop/users.py\", line 12, in load_user
    return CACHE[key]
KeyError: '{key}'"
    )
}

#[test]
fn python_same_helper_same_call_site_groups_and_other_call_sites_stay_apart() {
    let a = fingerprint(&event("lookup failed", Some(&python("profile", "u-1", 40))));
    let b = fingerprint(&event("lookup failed", Some(&python("profile", "u-2", 42))));
    let other_site = fingerprint(&event("lookup failed", Some(&python("checkout", "u-1", 40))));
    assert_eq!(a.fingerprint, b.fingerprint, "other key, other line number: same error");
    assert_ne!(a.fingerprint, other_site.fingerprint, "the same exception from another call site");
    assert_eq!(a.tier, Tier::Stack);
    assert_eq!(frames(&a), ["views:profile", "users:load_user"], "Flask's frame is not in-app");
    assert_eq!(a.previous, None, "version 2 grouped Python stacks alike");
}

#[test]
fn python_two_exceptions_from_one_helper_stay_apart_and_chains_count() {
    let key = fingerprint(&event("x", Some(&python("profile", "u-1", 40))));
    let type_error =
        python("profile", "u-1", 40).replace("KeyError: 'u-1'", "TypeError: unhashable type: 'list'");
    let type_error = fingerprint(&event("x", Some(&type_error)));
    assert_ne!(key.fingerprint, type_error.fingerprint);

    let chained = format!(
        "{}\n\nDuring handling of the above exception, another exception occurred:\n\n{}",
        python("profile", "u-1", 40),
        python("profile", "u-1", 40).replace("KeyError: 'u-1'", "RuntimeError: cache broken")
    );
    let chained = fingerprint(&event("x", Some(&chained)));
    assert_ne!(chained.fingerprint, key.fingerprint, "a chained exception is part of the signature");
}

fn java(caller: &str, account: &str) -> String {
    format!(
        "java.lang.IllegalStateException: account {account} is locked
\tat com.acme.bank.Accounts.debit(Accounts.java:88)
\tat com.acme.bank.{caller}(Transfers.java:41)
\tat java.base/java.util.concurrent.ThreadPoolExecutor.runWorker(ThreadPoolExecutor.java:1136)
\tat org.springframework.web.servlet.FrameworkServlet.service(FrameworkServlet.java:897)
Caused by: java.sql.SQLException: lock wait timeout
\t... 4 more"
    )
}

#[test]
fn java_in_app_frames_and_causes() {
    let a = fingerprint(&event("transfer failed", Some(&java("Transfers.send", "ACC-1"))));
    let b = fingerprint(&event("transfer failed", Some(&java("Transfers.send", "ACC-2"))));
    let other_site = fingerprint(&event("transfer failed", Some(&java("Refunds.pay", "ACC-1"))));
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, other_site.fingerprint);
    assert_eq!(frames(&a), ["com.acme.bank.Accounts:debit", "com.acme.bank.Transfers:send"]);
    let other_cause = fingerprint(&event(
        "transfer failed",
        Some(&java("Transfers.send", "ACC-1").replace("SQLException", "SQLTimeoutException")),
    ));
    assert_ne!(a.fingerprint, other_cause.fingerprint, "another cause is another error");
}

/// A Go panic's stack; the goroutine, the argument words and the line of the handler vary
/// between two panics of the same bug.
fn go(handler: &str, goroutine: u32, arg: &str, line: u32) -> String {
    format!(
        "goroutine {goroutine} [running]:
main.(*Store).Get({arg}, 0x2a)
\t/app/store.go:31 +0x1d
main.{handler}(0xc0000a4000)
\t/app/handlers.go:{line} +0x85
net/http.HandlerFunc.ServeHTTP(0x6f1c20, 0xc0000a4000)
\t/usr/local/go/src/net/http/server.go:2136 +0x29
created by net/http.(*Server).Serve in goroutine 1
\t/usr/local/go/src/net/http/server.go:3285 +0x4b4"
    )
}

#[test]
fn go_panics_group_by_in_app_frames() {
    let a = fingerprint(&event(
        "panic: runtime error: invalid memory address or nil pointer dereference",
        Some(&go("getOrder", 7, "0xc000010000", 52)),
    ));
    let b = fingerprint(&event(
        "panic: runtime error: invalid memory address or nil pointer dereference",
        Some(&go("getOrder", 913, "0xc0001f2a80", 57)),
    ));
    let other = fingerprint(&event(
        "panic: runtime error: invalid memory address or nil pointer dereference",
        Some(&go("listOrders", 7, "0xc000010000", 52)),
    ));
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, other.fingerprint);
    assert_eq!(frames(&a), ["main.(*Store):Get", "main:getOrder"]);
}

fn rust(caller: &str) -> String {
    format!(
        "stack backtrace:
   0: rust_begin_unwind
   1: core::panicking::panic_fmt
   2: core::option::expect_failed
   3: billing::invoice::total
   4: billing::{caller}
   5: tokio::runtime::task::harness::poll_future
   6: std::rt::lang_start_internal"
    )
}

#[test]
fn rust_panics_group_by_in_app_frames() {
    let msg = |n: u32| format!("thread 'worker-{n}' panicked at src/invoice.rs:{n}:9:\nmissing currency");
    let a = fingerprint(&event(&msg(3), Some(&rust("api::create"))));
    let b = fingerprint(&event(&msg(4), Some(&rust("api::create"))));
    let other = fingerprint(&event(&msg(3), Some(&rust("jobs::nightly"))));
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, other.fingerprint);
    assert_eq!(frames(&a), ["billing::invoice:total", "billing::api:create"]);
}

fn node(route: &str, id: &str) -> String {
    format!(
        "TypeError: Cannot read properties of undefined (reading '{id}')
    at priceOf (/srv/web/src/cart.js:14:22)
    at {route} (/srv/web/src/routes.js:40:9)
    at Layer.handle [as handle_request] (/srv/web/node_modules/express/lib/router/layer.js:95:5)
    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)"
    )
}

#[test]
fn node_errors_group_by_in_app_frames() {
    let a = fingerprint(&event("request failed", Some(&node("checkout", "price"))));
    let b = fingerprint(&event("request failed", Some(&node("checkout", "qty"))));
    let other = fingerprint(&event("request failed", Some(&node("quote", "price"))));
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, other.fingerprint);
    assert_eq!(frames(&a), ["cart.js:priceOf", "routes.js:checkout"]);
}

#[test]
fn exceptions_without_frames_and_plain_messages() {
    let a = fingerprint(&event("ValueError: invalid literal for int() with base 10: 'abc'", None));
    let b = fingerprint(&event("ValueError: invalid literal for int() with base 10: '12x'", None));
    let c = fingerprint(&event("TypeError: invalid literal for int() with base 10: 'abc'", None));
    assert_eq!((a.tier, &a.fingerprint), (Tier::Exception, &b.fingerprint));
    assert_ne!(a.fingerprint, c.fingerprint, "another exception type is another error");
}

#[test]
fn the_grouper_mines_words_masking_cannot_know() {
    let mut grouper = Grouper::default();
    let users = ["alice", "bob", "carol", "dave", "erin"];
    let first = grouper.group(&event("login failed for user alice from 10.0.0.1", None));
    for user in users {
        let g = grouper.group(&event(&format!("login failed for user {user} from 10.0.0.9"), None));
        if user == "dave" || user == "erin" {
            assert_eq!(g.fingerprint, first.fingerprint, "a fourth user makes the name a variable");
            assert_eq!(g.template, "login failed for user <*> from <IP>");
        }
    }
    let disk = grouper.group(&event("disk full on volume data", None));
    assert_ne!(disk.fingerprint, first.fingerprint);
    // A word with few values names different events: `as bytes` and `as values` stay apart.
    let bytes = grouper.group(&event("block stored as bytes in memory", None));
    let values = grouper.group(&event("block stored as values in memory", None));
    assert_ne!(bytes.fingerprint, values.fingerprint);
}

#[test]
fn a_leading_name_follows_the_few_values_rule_like_any_position() {
    let mut grouper = Grouper::default();
    let line = |svc: &str| event(&format!("{svc} failed to renew its lease on the scheduler"), None);
    let api = grouper.group(&line("billing-api")).fingerprint;
    let worker = grouper.group(&line("billing-worker")).fingerprint;
    assert_ne!(api, worker, "two services are two events while they are few");
    for svc in ["email-sender", "pdf-render", "search-indexer", "stock-sync"] {
        grouper.group(&line(svc));
    }
    let later = grouper.group(&line("audit-log")).fingerprint;
    assert_eq!(later, api, "past a handful, the name is a variable of one event");
    // Plain words lead their own buckets as before: verbs name different events.
    let started = grouper.group(&event("started the nightly export for tenant acme", None)).fingerprint;
    let stopped = grouper.group(&event("stopped the nightly export for tenant acme", None)).fingerprint;
    assert_ne!(started, stopped);
}

#[test]
fn client_fingerprints_decide_and_default_stands_for_the_computed_one() {
    let mut e = event("payment declined for order 42", None);
    e.metadata.insert("fingerprint".into(), serde_json::json!(["payments", "{{ default }}"]));
    let a = fingerprint(&e);
    assert_eq!(a.tier, Tier::Client);
    assert_eq!(a.client_parts, ["payments", "{{ default }}"]);
    let mut other_message = event("card expired for order 42", None);
    other_message.metadata.insert("fingerprint".into(), serde_json::json!(["payments", "{{ default }}"]));
    assert_ne!(a.fingerprint, fingerprint(&other_message).fingerprint, "{{ default }} keeps messages apart");

    let mut x = event("payment declined for order 42", None);
    x.metadata.insert("fingerprint".into(), serde_json::json!(["payments"]));
    let mut y = event("card expired for order 7", None);
    y.metadata.insert("fingerprint".into(), serde_json::json!(["payments"]));
    assert_eq!(fingerprint(&x).fingerprint, fingerprint(&y).fingerprint, "an explicit list groups as told");

    let mut bad = event("payment declined for order 42", None);
    bad.metadata.insert("fingerprint".into(), serde_json::json!([1, {"a": 2}]));
    assert_eq!(fingerprint(&bad).tier, Tier::Message, "a list of non-strings is not a fingerprint");
}

#[test]
fn a_restored_grouper_gives_the_same_fingerprints() {
    let lines: Vec<String> = (0..40)
        .map(|i| match i % 3 {
            0 => format!(
                "job {} failed for tenant t{}",
                ["sync", "export", "import", "purge", "scan"][i % 5],
                i
            ),
            1 => format!("cache miss for key k{i}"),
            _ => format!("user {} logged out", ["ann", "ben", "cy", "di", "ed", "fay"][i % 6]),
        })
        .collect();
    let mut whole = Grouper::default();
    let expected: Vec<String> =
        lines.iter().map(|l| whole.group(&event(l, None)).fingerprint.to_string()).collect();
    let mut first = Grouper::default();
    let mut got: Vec<String> =
        lines[..17].iter().map(|l| first.group(&event(l, None)).fingerprint.to_string()).collect();
    let saved = serde_json::to_string(&first.snapshot()).unwrap();
    let mut restored = Grouper::restore(serde_json::from_str(&saved).unwrap()).expect("same version");
    got.extend(lines[17..].iter().map(|l| restored.group(&event(l, None)).fingerprint.to_string()));
    assert_eq!(got, expected);
}

#[test]
fn a_state_saved_by_version_2_is_restored_so_mined_groups_survive_the_upgrade() {
    let mut before = Grouper::default();
    let users = ["ann", "ben", "cy", "di", "ed"];
    let first = before.group(&event("login failed for user ann", None)).fingerprint;
    for user in users {
        before.group(&event(&format!("login failed for user {user}"), None));
    }
    let mut state = before.snapshot();
    state.version = 2;
    let mut after = Grouper::restore(state).expect("version 2's miner state");
    assert_eq!(after.group(&event("login failed for user flo", None)).fingerprint, first);
    let mut older = before.snapshot();
    older.version = 1;
    assert!(Grouper::restore(older).is_none(), "version 1 mined differently");
}

// Fingerprints are stored and must stay stable: this corpus pins the fingerprint, tier and
// template of each kind of input, so a change of grouping shows up here and is made a
// deliberate version bump (`FINGERPRINT_VERSION`), never a silent regrouping. Update with
// `UPDATE_EXPECT=1` only together with such a bump.

fn pinned_event(message: &str, traceback: Option<&str>, metadata: serde_json::Value) -> LogEvent {
    let mut e = event(message, traceback);
    e.metadata = metadata.as_object().cloned().unwrap_or_default();
    e
}

#[track_caller]
fn pin(e: LogEvent, want: Expect) {
    let g = fingerprint(&e);
    want.assert_eq(&format!("{} {} {}", g.tier.as_str(), g.fingerprint.as_str(), g.template));
}

#[test]
fn pinned_the_fingerprint_version() {
    assert_eq!(FINGERPRINT_VERSION, 4, "a new version needs this corpus updated with it");
}

#[test]
fn pinned_message_tier() {
    pin(
        pinned_event("connection refused to 10.0.0.7:5432 after 3 tries", None, serde_json::json!({})),
        expect![
            "message f8af8f77935b8ce3855c82422cf28839e715971bcc1df1a8814386ea1b9b9581 connection refused to <IP> after <NUM> tries"
        ],
    );
    pin(
        pinned_event(
            "user 3f2a9c1e-5b7d-4e1a-9f00-2c4b6d8e0a11 not found in \"users\"",
            None,
            serde_json::json!({}),
        ),
        expect![
            "message 5beab7f9e42a345af731f9b06e33a0980ba7d30802fd0ecdcc77d5dc9de915ca user <UUID> not found in <STR>"
        ],
    );
}

#[test]
fn pinned_exception_tier() {
    pin(
        pinned_event("ValueError: invalid literal for int() with base 10: 'x'", None, serde_json::json!({})),
        expect![
            "exception b58cf76843e647b3390d84a9b8ea7c2403b69d8fca3949cf0051bcdd8d5335d1 ValueError: invalid literal for int() with base <NUM>: <STR>"
        ],
    );
}

#[test]
fn pinned_stack_tier() {
    let python = "Traceback (most recent call last):
  File \"/srv/shop/views.py\", line 41, in checkout
    return load_user(uid)
  File \"/srv/shop/users.py\", line 12, in load_user
    return CACHE[key]
KeyError: 'u-42'";
    pin(
        pinned_event("checkout failed", Some(python), serde_json::json!({})),
        expect!["stack 92b862d5cb14a2a879e4e561e171bc2b336258b27db10afc40910c35d1515671 checkout failed"],
    );
    let java = "java.lang.IllegalStateException: cart is empty
\tat com.shop.cart.CartService.checkout(CartService.java:88)
\tat com.shop.web.CartController.post(CartController.java:31)";
    pin(
        pinned_event("java.lang.IllegalStateException: cart is empty", Some(java), serde_json::json!({})),
        expect![
            "stack fc00e2daffe8d9a4dfb21bce5d61ce65f904650c6109212852f813425b3ecf7a java.lang.IllegalStateException: cart is empty"
        ],
    );
    let go = "panic: runtime error: index out of range [3] with length 3

goroutine 1 [running]:
main.pick(...)
\t/srv/app/pick.go:12
main.main()
\t/srv/app/main.go:7 +0x1d";
    pin(
        pinned_event(
            "panic: runtime error: index out of range [3] with length 3",
            Some(go),
            serde_json::json!({}),
        ),
        expect![
            "stack 37e997652e9c038e0c16ee9d7600b72fe7f2b893b1ffe42085b06361575de416 panic: runtime error: index out of range [<NUM>] with length <NUM>"
        ],
    );
    // Version 3 counts a panic's message; the fingerprint version 2 gave stays reachable, so
    // a stored version-2 pattern keeps its occurrences.
    let v3 = fingerprint(&pinned_event(
        "panic: runtime error: index out of range [3] with length 3",
        Some(go),
        serde_json::json!({}),
    ));
    assert_eq!(
        v3.previous.as_ref().map(|f| f.as_str()),
        Some("3eaadd66afdd62229032a9b692b35cf6330e2284dfcfdf401818bd281213bc65")
    );
}

/// Version 4: a Python exception group counts its sub-exceptions' types and frames; the group
/// itself is a container.
#[test]
fn pinned_exception_group() {
    let group = "  + Exception Group Traceback (most recent call last):
  |   File \"/app/jobs/sync.py\", line 24, in main
  |     async with asyncio.TaskGroup() as tg:
  | ExceptionGroup: unhandled errors in a TaskGroup (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | Traceback (most recent call last):
    |   File \"/app/jobs/sync.py\", line 12, in pull
    |     await client.get(url)
    | ConnectionRefusedError: [Errno 111] Connection refused
    +---------------- 2 ----------------
    | Traceback (most recent call last):
    |   File \"/app/jobs/sync.py\", line 17, in push
    |     raise ValueError(n)
    | ValueError: 7
    +------------------------------------";
    let e = pinned_event("sync failed", Some(group), serde_json::json!({}));
    pin(
        e.clone(),
        expect!["stack 3841f49fedadc78360f78fb12ba22305494b53a46a8c7cf0c3937ad4c8eb6964 sync failed"],
    );
    assert_eq!(fingerprint(&e).previous, None, "version 3 merged every group one handler logged");
    assert_eq!(
        faultline_core::headline("sync failed", Some(group)),
        "ConnectionRefusedError: [Errno 111] Connection refused"
    );
}

#[test]
fn pinned_client_tier() {
    let client = serde_json::json!({"fingerprint": ["checkout", "{{ default }}"]});
    pin(
        pinned_event("payment declined for order 17", None, client),
        expect![
            "client d120429e65e60c9742bee6bc3578e8e8e4ebed168d84fbb3995af95e6896eb6c payment declined for order <NUM>"
        ],
    );
}
