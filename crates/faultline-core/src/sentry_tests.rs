//! Envelopes and events in the shapes Sentry's SDKs send (Python, JavaScript, Java, Go, .NET).

use super::*;
use crate::fingerprint::{Tier, fingerprint};

const NOW: TimestampMs = 1_764_000_000_000;

fn envelope(items: &[(&str, &str, bool)]) -> Vec<u8> {
    let mut out = br#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","dsn":"https://abc123@faultline.example.com/42","sent_at":"2026-11-29T10:00:00Z"}"#.to_vec();
    out.push(b'\n');
    for (kind, payload, with_length) in items {
        // SDKs send each payload on one line.
        let payload = &serde_json::from_str::<Value>(payload).expect("fixture").to_string();
        let header = if *with_length {
            format!(r#"{{"type":"{kind}","length":{}}}"#, payload.len())
        } else {
            format!(r#"{{"type":"{kind}"}}"#)
        };
        out.extend_from_slice(header.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(payload.as_bytes());
        out.push(b'\n');
    }
    out
}

const PYTHON: &str = r#"{"event_id":"9ec79c33ec9942ab8353589fcb2e04dc","level":"error","platform":"python","timestamp":1764410400.5,
 "release":"shop@1.4.2","environment":"production","server_name":"web-1","tags":{"region":"eu"},
 "user":{"id":"42","email":"ann@example.com","ip_address":"10.1.2.3"},
 "request":{"url":"https://shop.example.com/cart/7?x=1","method":"POST"},
 "exception":{"values":[
   {"type":"KeyError","value":"'sku'","stacktrace":{"frames":[{"filename":"shop/cart.py","abs_path":"/srv/shop/cart.py","function":"total","lineno":31,"in_app":true,"context_line":"  price = item['sku']"}]}},
   {"type":"ValueError","value":"cart 7 has no price","mechanism":{"type":"django","handled":false},"stacktrace":{"frames":[
     {"filename":"django/core/handlers/base.py","abs_path":"/usr/lib/python3/site-packages/django/core/handlers/base.py","function":"get_response","lineno":197,"in_app":false},
     {"filename":"shop/views.py","abs_path":"/srv/shop/views.py","function":"checkout","lineno":12,"in_app":true}]}}]},
 "breadcrumbs":{"values":[{"timestamp":1764410399.0,"category":"query","message":"SELECT 1"}]},
 "sdk":{"name":"sentry.python","version":"2.75.0"}}"#;

#[test]
fn a_python_exception_becomes_an_entry_with_its_chain_and_context() {
    let body = envelope(&[("event", PYTHON, true), ("client_report", r#"{"discarded_events":[]}"#, false)]);
    let env = split_envelope(&body).expect("valid");
    assert_eq!(env.dsn_key().as_deref(), Some("abc123"));
    assert_eq!(env.items.iter().map(|i| i.kind.as_str()).collect::<Vec<_>>(), ["event", "client_report"]);
    let event = event_from_sentry(&env.items[0].payload, "sentry:42", NOW).expect("an event");
    assert_eq!(event.message, "ValueError: cart 7 has no price");
    assert_eq!((event.level, event.timestamp_ms), (Level::Error, 1_764_410_400_500));
    assert_eq!(event.origin.external_id.as_deref(), Some("sentry:9ec79c33ec9942ab8353589fcb2e04dc"));
    assert_eq!(
        (event.request_method.as_deref(), event.request_path.as_deref()),
        (Some("POST"), Some("/cart/7"))
    );
    let trace = event.traceback.as_deref().unwrap();
    assert!(
        trace.starts_with(
            "Traceback (most recent call last):\n  File \"/srv/shop/cart.py\", line 31, in total\n"
        ),
        "{trace}"
    );
    assert!(
        trace.contains("During handling of the above exception")
            && trace.ends_with("ValueError: cart 7 has no price\n"),
        "{trace}"
    );
    assert_eq!(event.metadata["release"], "shop@1.4.2");
    assert_eq!(event.metadata["tags"]["region"], "eu");
    assert_eq!(event.metadata["user"], json!({"id": "42", "username": null}), "no e-mail, no address");
    assert_eq!(event.metadata["mechanism"], "django");
    assert_eq!(event.metadata["sdk"], "sentry.python 2.75.0");
    let grouping = fingerprint(&event);
    assert_eq!(grouping.tier, Tier::Stack);
    assert_eq!(grouping.error_type.as_deref(), Some("ValueError"));
}

#[test]
fn messages_fingerprints_and_levels_of_other_sdks() {
    // JavaScript (@sentry/node): a message with params and a custom fingerprint.
    let js = r#"{"event_id":"0f6b1c2d3e4f45a6b7c8d9e0f1a2b3c4","level":"fatal","platform":"node","timestamp":"2026-11-29T10:00:00.250Z",
      "logentry":{"message":"queue %s is %d items behind","params":["orders",5000]},"fingerprint":["queue-lag","{{ default }}"]}"#;
    let event = event_from_sentry(js.as_bytes(), "sentry:7", NOW).unwrap();
    assert_eq!((event.message.as_str(), event.level), ("queue orders is 5000 items behind", Level::Critical));
    assert_eq!(event.source, "sentry:7", "no logger: known by its source");
    let grouping = fingerprint(&event);
    assert_eq!((grouping.tier, grouping.client_parts.len()), (Tier::Client, 2));
    // Java: module-qualified type, no value.
    let java = r#"{"event_id":"1f6b1c2d3e4f45a6b7c8d9e0f1a2b3c4","level":"error","platform":"java","timestamp":1764410400,
      "logger":"com.acme.Billing","exception":{"values":[{"type":"NullPointerException","module":"java.lang",
      "stacktrace":{"frames":[{"module":"com.acme.Billing","function":"charge","filename":"Billing.java","lineno":88,"in_app":true}]}}]}}"#;
    let event = event_from_sentry(java.as_bytes(), "sentry:7", NOW).unwrap();
    assert_eq!((event.message.as_str(), event.source.as_str()), ("NullPointerException", "com.acme.Billing"));
    // Go and .NET send a plain message.
    let go = r#"{"event_id":"2f6b1c2d3e4f45a6b7c8d9e0f1a2b3c4","level":"warning","platform":"go","message":"retrying upstream","timestamp":1764410400}"#;
    assert_eq!(event_from_sentry(go.as_bytes(), "s", NOW).unwrap().level, Level::Warning);
    let dotnet = r#"{"event_id":"3f6b1c2d3e4f45a6b7c8d9e0f1a2b3c4","platform":"csharp","message":"cache miss storm","timestamp":1764410400}"#;
    assert_eq!(
        event_from_sentry(dotnet.as_bytes(), "s", NOW).unwrap().level,
        Level::Error,
        "an event without a level is an error, as Sentry takes it"
    );
    let empty = r#"{"event_id":"4f6b1c2d3e4f45a6b7c8d9e0f1a2b3c4","timestamp":1764410400}"#;
    assert!(
        event_from_sentry(empty.as_bytes(), "s", NOW)
            .unwrap_err()
            .contains("neither an exception nor a message")
    );
    assert!(event_from_sentry(b"[1,2]", "s", NOW).unwrap_err().starts_with("not a Sentry event"));
}

#[test]
fn one_bad_item_does_not_lose_the_ones_before_it() {
    let mut body = envelope(&[("event", PYTHON, false), ("session", r#"{"sid":"x"}"#, true)]);
    body.extend_from_slice(b"{\"type\":\"attachment\",\"length\":999}\nshort\n");
    let env = split_envelope(&body).expect("the header is fine");
    assert_eq!(env.items.len(), 2);
    assert_eq!(env.broken.as_deref(), Some("item 2 (attachment): length 999, but 6 bytes follow"));
    let mut body = envelope(&[("event", PYTHON, true)]);
    body.extend_from_slice(b"not json\n{}\n");
    let env = split_envelope(&body).unwrap();
    assert_eq!(
        (env.items.len(), env.broken.as_deref()),
        (1, Some("item 1: its header is not a JSON object"))
    );
    assert!(split_envelope(b"garbage\n").unwrap_err().contains("not JSON"));
    assert_eq!(split_envelope(b"{}").unwrap().items, []);
}

#[test]
fn the_sdks_in_app_flags_decide_the_stack_tier() {
    // A vendored library under the application's own directory: only the SDK knows it is not
    // the application's code. The same error through two library paths is one pattern.
    let java = |vendor_function: &str, id: char| {
        format!(
            r#"{{"event_id":"{id}f6b1c2d3e4f45a6b7c8d9e0f1a2b3c4","level":"error","platform":"java","timestamp":1764410400,
              "exception":{{"values":[{{"type":"IllegalStateException","value":"pool closed","stacktrace":{{"frames":[
                {{"module":"com.acme.Billing","function":"charge","filename":"Billing.java","abs_path":"/app/Billing.java","lineno":88,"in_app":true}},
                {{"module":"com.vendor.pool.Pool","function":"{vendor_function}","filename":"Pool.java","abs_path":"/app/thirdparty/pool/Pool.java","lineno":12,"in_app":false}},
                {{"module":"com.vendor.pool.Pool","function":"{vendor_function}","filename":"Pool.java","abs_path":"/app/thirdparty/pool/Pool.java","lineno":12,"in_app":false}}]}}}}]}}}}"#
        )
    };
    let a = event_from_sentry(java("borrow", 'a').as_bytes(), "sentry:7", NOW).unwrap();
    let b = event_from_sentry(java("borrowAsync", 'b').as_bytes(), "sentry:7", NOW).unwrap();
    assert_eq!(a.metadata["in_app"], json!([true, false]), "recursion written once");
    let (ga, gb) = (fingerprint(&a), fingerprint(&b));
    assert_eq!(ga.tier, Tier::Stack);
    assert_eq!(ga.frames.iter().map(|f| f.function.as_str()).collect::<Vec<_>>(), ["charge"]);
    assert_eq!(ga.fingerprint, gb.fingerprint);
    // Without the SDK's word, the paths decide: both frames are the application's.
    let mut unflagged = a.clone();
    unflagged.metadata.remove("in_app");
    assert_eq!(fingerprint(&unflagged).frames.len(), 2);
}

#[test]
fn regression_19_a_javascript_message_with_a_synthetic_stack_is_stored() {
    // @sentry/node 11's captureMessage sends the message as an exception with a value, no type.
    let js = r#"{"event_id":"3ee6d2fd44c247c783301310867403b8","level":"error","platform":"node","timestamp":1795985115.148,
      "message":"queue orders is 5000 items behind","fingerprint":["queue-lag"],
      "exception":{"values":[{"value":"queue orders is 5000 items behind","mechanism":{"type":"generic","handled":true,"synthetic":true},
        "stacktrace":{"frames":[{"filename":"/srv/app/queue.js","module":"queue","function":"check","lineno":3,"in_app":true}]}}]}}"#;
    let event = event_from_sentry(js.as_bytes(), "sentry:9", NOW).expect("stored, not refused");
    assert_eq!(event.message, "queue orders is 5000 items behind");
    assert!(event.traceback.as_deref().unwrap().ends_with("\nqueue orders is 5000 items behind\n"));
    assert_eq!(fingerprint(&event).tier, Tier::Client);
}
