//! What `/api/sources` says about a source that fails before it stores anything.

use crate::test_app::{TestApp, eventually};

#[tokio::test(flavor = "multi_thread")]
async fn regression_18_a_failing_journal_shows_in_the_sources() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("no-such-journalctl");
    let config = format!("[journald]\nenabled = true\ncommand = \"{}\"\n", missing.display());
    let app = TestApp::spawn(dir, &config, &[]).await;
    let client = reqwest::Client::new();
    let journald = eventually("journald listed with its error", || {
        let (client, url) = (client.clone(), format!("{}/api/sources", app.url));
        async move {
            let body: serde_json::Value = client.get(url).send().await.ok()?.json().await.ok()?;
            body["sources"].as_array()?.iter().find(|s| s["source_id"] == "journald").cloned()
        }
    })
    .await;
    assert_eq!(
        (&journald["cursor"], &journald["lag_seconds"]),
        (&serde_json::Value::Null, &serde_json::Value::Null)
    );
    let error = journald["last_error"].as_str().expect("the error");
    assert!(error.contains("no-such-journalctl"), "says what failed: {error}");
    app.stop().await;
}
