//! Browser sign-in and CSRF protection for the System Health page.
//!
//! Signing in with a token (read scope at least) opens a session: a random id in an HttpOnly,
//! SameSite=Strict cookie, mapped in memory to the token's name and scopes. The token itself is
//! never stored in the cookie. Every form that changes state carries a CSRF value that must
//! equal the `faultline_csrf` cookie (double submit): another site can make a browser send the
//! cookie but cannot read it to put it in the form. Sessions end after `SESSION_MS`, on sign-out,
//! or when the server restarts.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::HeaderMap;
use axum::http::header::COOKIE;
use faultline_core::HOUR_MS;

use crate::auth::Scope;

pub const SESSION_COOKIE: &str = "faultline_session";
pub const CSRF_COOKIE: &str = "faultline_csrf";
/// How long a sign-in lasts.
pub const SESSION_MS: i64 = 12 * HOUR_MS;

/// A signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    pub token_name: String,
    pub scopes: Vec<Scope>,
    expires_ms: i64,
}

/// The open sessions, by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    /// Opens a session and returns its id (the cookie value).
    pub fn open(&self, token_name: &str, scopes: Vec<Scope>, now_ms: i64) -> String {
        let id = random_token();
        let mut map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, s| s.expires_ms > now_ms);
        map.insert(
            id.clone(),
            Session { token_name: token_name.to_owned(), scopes, expires_ms: now_ms + SESSION_MS },
        );
        id
    }

    /// The live session named by the request's cookie.
    pub fn get(&self, headers: &HeaderMap, now_ms: i64) -> Option<Session> {
        let id = cookie(headers, SESSION_COOKIE)?;
        let map = self.by_id.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id).filter(|s| s.expires_ms > now_ms).cloned()
    }

    /// Ends the session named by the request's cookie.
    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie(headers, SESSION_COOKIE) {
            self.by_id.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
        }
    }
}

/// 32 random bytes, hex.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

/// A cookie's value from the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A `Set-Cookie` value: HttpOnly, SameSite=Strict, whole site.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}")
}

/// True when a form's CSRF value matches the request's CSRF cookie (compared in constant time).
pub fn csrf_ok(headers: &HeaderMap, form_value: &str) -> bool {
    let Some(expected) = cookie(headers, CSRF_COOKIE) else { return false };
    expected.len() == form_value.len()
        && expected.bytes().zip(form_value.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_cookie(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(COOKIE, value.parse().unwrap());
        h
    }

    #[test]
    fn sessions_open_expire_and_close() {
        let sessions = Sessions::default();
        let id = sessions.open("viewer", vec![Scope::Read], 0);
        let headers = with_cookie(&format!("other=1; {SESSION_COOKIE}={id}"));
        assert_eq!(sessions.get(&headers, 1000).unwrap().token_name, "viewer");
        assert!(sessions.get(&headers, SESSION_MS).is_none(), "expired");
        sessions.close(&headers);
        assert!(sessions.get(&headers, 1000).is_none());
        assert!(sessions.get(&with_cookie(&format!("{SESSION_COOKIE}=abc")), 0).is_none());
    }

    #[test]
    fn csrf_needs_the_cookie_and_an_equal_value() {
        let token = random_token();
        assert_eq!(token.len(), 64);
        let headers = with_cookie(&format!("{CSRF_COOKIE}={token}"));
        assert!(csrf_ok(&headers, &token));
        assert!(!csrf_ok(&headers, &random_token()));
        assert!(!csrf_ok(&headers, ""));
        assert!(!csrf_ok(&HeaderMap::new(), &token));
        assert!(!csrf_ok(&with_cookie(&format!("{CSRF_COOKIE}=")), ""));
    }
}
