//! Fingerprints are stored and must stay stable: this corpus pins the fingerprint, tier and
//! template of each kind of input, so a change of grouping shows up here and is made a
//! deliberate version bump (`FINGERPRINT_VERSION`), never a silent regrouping. Update with
//! `UPDATE_EXPECT=1` only together with such a bump.

use expect_test::{Expect, expect};
use faultline_core::{FINGERPRINT_VERSION, Level, LogEvent, Origin, fingerprint};

fn event(message: &str, traceback: Option<&str>, metadata: serde_json::Value) -> LogEvent {
    LogEvent {
        timestamp_ms: 0,
        level: Level::Error,
        source: "app".into(),
        message: message.to_owned(),
        traceback: traceback.map(str::to_owned),
        request_path: None,
        request_method: None,
        metadata: metadata.as_object().cloned().unwrap_or_default(),
        raw: String::new(),
        origin: Origin { source_id: "t".into(), external_id: None },
    }
}

#[track_caller]
fn check(e: LogEvent, want: Expect) {
    let g = fingerprint(&e);
    want.assert_eq(&format!("{} {} {}", g.tier.as_str(), g.fingerprint.as_str(), g.template));
}

#[test]
fn the_fingerprint_version_is_the_one_pinned_here() {
    assert_eq!(FINGERPRINT_VERSION, 2, "a new version needs this corpus updated with it");
}

#[test]
fn message_tier() {
    check(
        event("connection refused to 10.0.0.7:5432 after 3 tries", None, serde_json::json!({})),
        expect![
            "message f8af8f77935b8ce3855c82422cf28839e715971bcc1df1a8814386ea1b9b9581 connection refused to <IP> after <NUM> tries"
        ],
    );
    check(
        event(
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
fn exception_tier() {
    check(
        event("ValueError: invalid literal for int() with base 10: 'x'", None, serde_json::json!({})),
        expect![
            "exception b58cf76843e647b3390d84a9b8ea7c2403b69d8fca3949cf0051bcdd8d5335d1 ValueError: invalid literal for int() with base <NUM>: <STR>"
        ],
    );
}

#[test]
fn stack_tier() {
    let python = "Traceback (most recent call last):
  File \"/srv/shop/views.py\", line 41, in checkout
    return load_user(uid)
  File \"/srv/shop/users.py\", line 12, in load_user
    return CACHE[key]
KeyError: 'u-42'";
    check(
        event("checkout failed", Some(python), serde_json::json!({})),
        expect!["stack 92b862d5cb14a2a879e4e561e171bc2b336258b27db10afc40910c35d1515671 checkout failed"],
    );
    let java = "java.lang.IllegalStateException: cart is empty
\tat com.shop.cart.CartService.checkout(CartService.java:88)
\tat com.shop.web.CartController.post(CartController.java:31)";
    check(
        event("java.lang.IllegalStateException: cart is empty", Some(java), serde_json::json!({})),
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
    check(
        event("panic: runtime error: index out of range [3] with length 3", Some(go), serde_json::json!({})),
        expect![
            "stack 3eaadd66afdd62229032a9b692b35cf6330e2284dfcfdf401818bd281213bc65 panic: runtime error: index out of range [<NUM>] with length <NUM>"
        ],
    );
}

#[test]
fn client_tier() {
    let client = serde_json::json!({"fingerprint": ["checkout", "{{ default }}"]});
    check(
        event("payment declined for order 17", None, client),
        expect![
            "client d120429e65e60c9742bee6bc3578e8e8e4ebed168d84fbb3995af95e6896eb6c payment declined for order <NUM>"
        ],
    );
}
