//! What the HTTP-speaking connectors (notifiers, Railway) share.

/// A transport failure in words: what kind (timed out, cannot connect), then the chain of
/// causes. The URL is left out: a Slack hook URL is a secret, and these texts are logged and
/// stored.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "transport error"
    };
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(url) = e.url() {
        detail = detail.replace(url.as_str(), "[url]");
    }
    format!("{what}: {detail}")
}
