//! Bearer tokens with scopes. Secrets come from the environment; only their SHA-256 digests are
//! kept, so a token never reaches a log line, an error message or a debug print.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read errors, patterns, stats.
    Read,
    /// Change state: pattern status, tasks, rules, manual crawls.
    Write,
    /// Send log records to the ingest endpoints.
    Ingest,
}

impl Scope {
    pub fn parse(name: &str) -> Option<Scope> {
        match name.trim().to_ascii_lowercase().as_str() {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "ingest" => Some(Scope::Ingest),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Ingest => "ingest",
        }
    }
}

/// One configured token.
pub struct ApiToken {
    pub name: String,
    digest: [u8; 32],
    pub scopes: Vec<Scope>,
}

impl std::fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiToken")
            .field("name", &self.name)
            .field("scopes", &self.scopes)
            .finish_non_exhaustive()
    }
}

impl ApiToken {
    pub fn new(name: impl Into<String>, secret: &str, scopes: Vec<Scope>) -> ApiToken {
        ApiToken { name: name.into(), digest: Sha256::digest(secret.as_bytes()).into(), scopes }
    }
}

/// The configured tokens. With none, the server is open and must only listen on loopback.
#[derive(Debug, Default)]
pub struct Auth {
    tokens: Vec<ApiToken>,
}

/// Who made a request: a token's name, or nobody when no tokens are configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub token: Option<String>,
}

impl Auth {
    pub fn new(tokens: Vec<ApiToken>) -> Auth {
        Auth { tokens }
    }

    /// True when no token is configured: every request is allowed.
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The name and scopes of the token whose secret this is (the page's sign-in form).
    pub fn identify(&self, secret: &str) -> Option<(String, Vec<Scope>)> {
        self.find(secret).map(|t| (t.name.clone(), t.scopes.clone()))
    }

    /// The token whose secret this is, compared in constant time.
    fn find(&self, secret: &str) -> Option<&ApiToken> {
        let digest: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        self.tokens.iter().find(|t| bool::from(t.digest.ct_eq(&digest)))
    }

    /// Checks the request's token (`Authorization: Bearer …`, or the password of HTTP Basic
    /// auth, which is what Python's `HTTPHandler(credentials=…)` sends) for `scope`.
    pub fn check(&self, headers: &HeaderMap, scope: Scope) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller { token: None });
        }
        let secret = presented_secret(headers)
            .ok_or(ApiError::Unauthorized("missing token: send \"Authorization: Bearer <token>\""))?;
        self.check_secret(&secret, scope)
    }

    /// Checks a secret presented some other way (a Sentry DSN's key) for `scope`.
    pub fn check_secret(&self, secret: &str, scope: Scope) -> Result<Caller, ApiError> {
        if self.is_open() {
            return Ok(Caller { token: None });
        }
        let token = self.find(secret).ok_or(ApiError::Unauthorized("invalid token"))?;
        if !token.scopes.contains(&scope) {
            return Err(ApiError::Forbidden(format!(
                "token {:?} lacks the {} scope",
                token.name,
                scope.as_str()
            )));
        }
        Ok(Caller { token: Some(token.name.clone()) })
    }
}

fn presented_secret(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (kind, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if kind.eq_ignore_ascii_case("bearer") {
        return Some(rest.to_owned()).filter(|s| !s.is_empty());
    }
    if kind.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (user, password) = decoded.split_once(':').unwrap_or((&decoded, ""));
        let secret = if password.is_empty() { user } else { password };
        return Some(secret.to_owned()).filter(|s| !s.is_empty());
    }
    None
}
