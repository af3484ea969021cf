//! Every notifier against a local fake of its service, speaking the real wire format: what a
//! success, a refusal, a rate limit, an outage and a timeout each turn into.

use std::time::Duration;

use faultline_connectors::notify::{
    Email, EmailTls, GitHub, Notification, Outcome, Slack, Webhook, http_client,
};
use faultline_testkit::fake::{FakeHttp, FakeSmtp, Reply};
use serde_json::json;

fn payload() -> serde_json::Value {
    json!({
        "alert_id": 7,
        "idempotency_key": "faultline-alert-7-1700000000000",
        "rule": "new_fingerprint",
        "priority": "high",
        "reason": "seen for the first time",
        "summary": "[new_fingerprint] <script>alert(1)</script> & co",
        "fired_at": "2023-11-14T22:13:20.000Z",
        "pattern": {
            "fingerprint": "0123456789abcdef0123",
            "template": "<script>alert(<NUM>)</script> & co",
            "occurrences": 3,
            "first_seen": "2023-11-14T22:13:00.000Z",
            "last_seen": "2023-11-14T22:13:20.000Z",
            "source": "api",
            "sample_message": "<script>alert(1)</script> & co",
            "stack_trace": "Traceback (most recent call last):\n  File \"a.py\", line 1",
        },
        "task": { "id": 3, "title": "Investigate error: <script>alert(<NUM>)</script> & co" },
    })
}

fn notification(payload: &serde_json::Value, reference: Option<&'static str>) -> Notification<'static> {
    let payload: &'static serde_json::Value = Box::leak(Box::new(payload.clone()));
    Notification {
        idempotency_key: "faultline-alert-7-1700000000000",
        subject: "pattern:3",
        payload,
        reference,
    }
}

fn client() -> reqwest::Client {
    // Generous for answers on a busy machine; the timeout cases withhold their answer.
    http_client(Duration::from_secs(3))
}

fn retry_after(o: &Outcome) -> Option<Duration> {
    match o {
        Outcome::Retry { after, .. } => *after,
        other => panic!("expected a retry, got {other:?}"),
    }
}

#[test]
fn webhook_signature_matches_a_known_answer() {
    // HMAC-SHA256 with key "s3cret" of `1700000000.{"alert":7}`, computed apart from this crate
    // (Python: hmac.new(b"s3cret", b'1700000000.{"alert":7}', hashlib.sha256).hexdigest()).
    assert_eq!(
        faultline_connectors::notify::webhook_signature("s3cret", 1_700_000_000, br#"{"alert":7}"#),
        "sha256=3b56c23befdc246b49a244f67ace73095b7e0c8a968a6e3160b1f5298926ba38"
    );
}

#[tokio::test]
async fn webhook_signs_the_body_and_sends_the_idempotency_key() {
    let fake = FakeHttp::start(Reply::new(202, "")).await;
    let hook = Webhook { url: fake.url("/hook"), secret: Some("s3cret".into()), client: client() };
    let p = payload();
    assert_eq!(hook.send(&notification(&p, None)).await, Outcome::Sent { reference: None });
    let got = &fake.received()[0];
    assert_eq!(got.json(), p);
    assert_eq!(got.header("idempotency-key"), Some("faultline-alert-7-1700000000000"));
    let ts: u64 = got.header("x-faultline-timestamp").unwrap().parse().unwrap();
    let expected = faultline_connectors::notify::webhook_signature("s3cret", ts, &got.body);
    assert_eq!(got.header("x-faultline-signature"), Some(expected.as_str()));
    assert!(expected.starts_with("sha256=") && expected.len() == 7 + 64);

    fake.script([
        Reply::new(503, "down"),
        Reply::new(429, "slow down").header("Retry-After", "7"),
        Reply::new(400, "bad payload"),
        Reply::new(200, "late").withheld(),
    ]);
    assert!(matches!(hook.send(&notification(&p, None)).await, Outcome::Retry { after: None, .. }));
    assert_eq!(retry_after(&hook.send(&notification(&p, None)).await), Some(Duration::from_secs(7)));
    assert_eq!(
        hook.send(&notification(&p, None)).await,
        Outcome::Rejected { reason: "HTTP 400: bad payload".into() }
    );
    let timed_out = hook.send(&notification(&p, None)).await;
    assert!(
        matches!(&timed_out, Outcome::Retry { reason, .. } if reason.starts_with("timed out")),
        "{timed_out:?}"
    );
}

#[tokio::test]
async fn webhook_to_a_closed_port_is_retried() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let hook = Webhook { url: format!("http://127.0.0.1:{port}/"), secret: None, client: client() };
    let outcome = hook.send(&notification(&payload(), None)).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.starts_with("cannot connect")),
        "{outcome:?}"
    );
    // A Slack hook URL is a secret: failure reasons (logged and stored) never quote it.
    let slack =
        Slack { url: format!("http://127.0.0.1:{port}/services/T0/B0/SECRETPART").into(), client: client() };
    let outcome = slack.send(&notification(&payload(), None)).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if !reason.contains("SECRETPART")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn slack_escapes_log_text_and_reads_its_error_codes() {
    let fake = FakeHttp::start(Reply::new(200, "ok")).await;
    let slack = Slack { url: fake.url("/services/T000/B000/XXXX").into(), client: client() };
    let p = payload();
    assert_eq!(slack.send(&notification(&p, None)).await, Outcome::Sent { reference: None });
    let text = fake.received()[0].json()["text"].as_str().unwrap().to_owned();
    assert!(
        text.starts_with("*[new_fingerprint] &lt;script&gt;alert(1)&lt;/script&gt; &amp; co*\n"),
        "{text}"
    );
    assert!(!text.contains("<script>"));

    fake.script([
        Reply::new(404, "no_service"),
        Reply::new(429, "rate_limited").header("Retry-After", "30"),
        Reply::new(500, "rollup_error"),
    ]);
    assert_eq!(
        slack.send(&notification(&p, None)).await,
        Outcome::Rejected { reason: "HTTP 404: no_service".into() }
    );
    assert_eq!(retry_after(&slack.send(&notification(&p, None)).await), Some(Duration::from_secs(30)));
    assert!(matches!(slack.send(&notification(&p, None)).await, Outcome::Retry { .. }));
}

fn github(fake: &FakeHttp) -> GitHub {
    GitHub { api_url: fake.url(""), repo: "acme/shop".into(), token: "ghp_test".into(), client: client() }
}

#[tokio::test]
async fn github_opens_one_issue_then_comments_on_it() {
    let fake = FakeHttp::start(Reply::new(500, "unexpected")).await;
    fake.route("GET /repos/acme/shop/issues?", |_| Reply::new(200, "[]"));
    fake.route("POST /repos/acme/shop/issues/42/comments", |_| Reply::new(201, r#"{"id": 1}"#));
    fake.route("POST /repos/acme/shop/issues", |_| Reply::new(201, r#"{"number": 42, "title": "x"}"#));
    let gh = github(&fake);
    let p = payload();
    assert_eq!(gh.send(&notification(&p, None)).await, Outcome::Sent { reference: Some("42".into()) });
    assert_eq!(gh.send(&notification(&p, Some("42"))).await, Outcome::Sent { reference: Some("42".into()) });

    let got = fake.received();
    let lines: Vec<String> = got.iter().map(|r| format!("{} {}", r.method, r.uri)).collect();
    assert_eq!(
        lines,
        [
            "GET /repos/acme/shop/issues?labels=faultline%3A0123456789ab&state=all&per_page=1",
            "POST /repos/acme/shop/issues",
            "POST /repos/acme/shop/issues/42/comments"
        ]
    );
    assert_eq!(got[1].header("authorization"), Some("Bearer ghp_test"));
    assert_eq!(got[1].header("x-github-api-version"), Some("2022-11-28"));
    let issue = got[1].json();
    assert_eq!(issue["title"], "Investigate error: <script>alert(<NUM>)</script> & co");
    assert_eq!(issue["labels"], json!(["faultline", "faultline:0123456789ab"]));
    assert!(
        issue["body"]
            .as_str()
            .unwrap()
            .contains("<!-- faultline idempotency-key: faultline-alert-7-1700000000000 -->")
    );
}

#[tokio::test]
async fn github_finds_the_issue_an_interrupted_attempt_opened() {
    let fake = FakeHttp::start(Reply::new(500, "unexpected")).await;
    fake.route("GET /repos/acme/shop/issues?", |_| {
        Reply::new(200, r#"[{"number": 9, "body": "<!-- faultline idempotency-key: faultline-alert-7-1700000000000 -->"}]"#)
    });
    let gh = github(&fake);
    assert_eq!(gh.send(&notification(&payload(), None)).await, Outcome::Sent { reference: Some("9".into()) });
    assert_eq!(fake.received().len(), 1, "no second issue, no comment");
}

#[tokio::test]
async fn github_rate_limits_validation_errors_and_malformed_answers() {
    let fake = FakeHttp::start(Reply::new(200, "[]")).await;
    let gh = github(&fake);
    let p = payload();
    let reset = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 120;
    fake.script([Reply::new(403, r#"{"message": "API rate limit exceeded"}"#)
        .header("x-ratelimit-remaining", "0")
        .header("x-ratelimit-reset", &reset.to_string())]);
    let after = retry_after(&gh.send(&notification(&p, None)).await).unwrap();
    assert!((115..=120).contains(&after.as_secs()), "{after:?}");

    fake.script([Reply::new(403, "{}").header("retry-after", "60")]);
    assert_eq!(retry_after(&gh.send(&notification(&p, None)).await), Some(Duration::from_secs(60)));

    fake.script([Reply::new(200, "[]"), Reply::new(422, r#"{"message": "Validation Failed"}"#)]);
    assert_eq!(
        gh.send(&notification(&p, None)).await,
        Outcome::Rejected { reason: r#"HTTP 422: {"message": "Validation Failed"}"#.into() }
    );
    fake.script([Reply::new(403, r#"{"message": "Resource not accessible by integration"}"#)]);
    assert!(matches!(gh.send(&notification(&p, None)).await, Outcome::Rejected { .. }));
    // A secondary rate limit with neither header: wait a minute, as GitHub advises.
    fake.script([Reply::new(
        403,
        r#"{"message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again."}"#,
    )]);
    assert_eq!(retry_after(&gh.send(&notification(&p, None)).await), Some(Duration::from_secs(60)));
    fake.script([Reply::new(200, "[]"), Reply::new(201, "{not json")]);
    let outcome = gh.send(&notification(&p, None)).await;
    assert!(
        matches!(&outcome, Outcome::Retry { reason, .. } if reason.starts_with("malformed")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn email_goes_over_smtp_with_the_key_as_message_id() {
    let smtp = FakeSmtp::start().await;
    let email = Email::new(
        "127.0.0.1",
        smtp.addr.port(),
        EmailTls::None,
        None,
        None,
        "faultline <faultline@example.com>".parse().unwrap(),
        vec!["oncall@example.com".parse().unwrap()],
        Duration::from_secs(5),
    )
    .unwrap();
    let p = payload();
    assert_eq!(email.send(&notification(&p, None)).await, Outcome::Sent { reference: None });
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["<oncall@example.com>"]);
    assert!(
        mails[0].data.contains("Message-ID: <faultline-alert-7-1700000000000@faultline>"),
        "{}",
        mails[0].data
    );
    assert!(mails[0].data.contains("Subject: [faultline] [new_fingerprint]"), "{}", mails[0].data);

    smtp.reply_to_next_data("451 4.3.0 try again later");
    assert!(matches!(email.send(&notification(&p, None)).await, Outcome::Retry { .. }));
    smtp.reply_to_next_data("550 5.7.1 relaying denied");
    assert!(matches!(email.send(&notification(&p, None)).await, Outcome::Rejected { .. }));
    assert_eq!(smtp.mails().len(), 1);
}

/// STARTTLS and AUTH against a relay with a private CA: the mail goes encrypted and
/// authenticated; a wrong password is refused for good (535), naming authentication; without
/// the CA the certificate is not trusted and nothing is sent in the clear.
#[tokio::test]
async fn email_uses_starttls_and_auth_with_a_private_ca() {
    let smtp = FakeSmtp::start_secure("alerts", "smtp-secret-0005").await;
    let ca = smtp.ca_pem().expect("the fake's CA");
    let email = |ca: Option<&str>, password: &str| {
        Email::new(
            "localhost",
            smtp.addr.port(),
            EmailTls::StartTls,
            ca,
            Some(("alerts".to_owned(), password.to_owned())),
            "faultline <faultline@example.com>".parse().unwrap(),
            vec!["oncall@example.com".parse().unwrap()],
            Duration::from_secs(5),
        )
        .unwrap()
    };
    let p = payload();
    let sent = email(Some(&ca), "smtp-secret-0005").send(&notification(&p, None)).await;
    assert_eq!(sent, Outcome::Sent { reference: None });
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1);
    assert!(mails[0].over_tls, "sent after STARTTLS");
    assert_eq!(mails[0].user.as_deref(), Some("alerts"));

    let refused = email(Some(&ca), "wrong-password").send(&notification(&p, None)).await;
    match &refused {
        Outcome::Rejected { reason } => {
            assert!(reason.contains("535") || reason.to_lowercase().contains("auth"), "{reason}");
            assert!(!reason.contains("wrong-password"), "{reason}");
        }
        other => panic!("a wrong password is refused for good: {other:?}"),
    }
    let untrusted = email(None, "smtp-secret-0005").send(&notification(&p, None)).await;
    assert!(!matches!(untrusted, Outcome::Sent { .. }), "{untrusted:?}");
    assert_eq!(smtp.mails().len(), 1, "nothing more arrived");
}
