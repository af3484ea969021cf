//! Local stand-ins for the services faultline talks to: an HTTP receiver answering from a
//! script (Slack, GitHub, webhooks, including their failures) and an SMTP server.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// Path and query.
    pub uri: String,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// A scripted answer.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Wait this long before answering (to make clients time out).
    pub delay: Duration,
    /// Never answer: the request is received and the client waits until it gives up or dies.
    pub withheld: bool,
}

impl Reply {
    pub fn new(status: u16, body: &str) -> Reply {
        Reply { status, headers: Vec::new(), body: body.to_owned(), delay: Duration::ZERO, withheld: false }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    pub fn delayed(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Receives the request and never answers it.
    pub fn withheld(mut self) -> Reply {
        self.withheld = true;
        self
    }
}

type Route = (String, Box<dyn Fn(&Received) -> Reply + Send + Sync>);

#[derive(Default)]
struct State {
    received: Vec<Received>,
    /// Answers used first, in order, whatever the request.
    script: VecDeque<Reply>,
    /// Then the first route whose method+path prefix matches ("POST /repos/o/r/issues").
    routes: Vec<Route>,
}

/// An HTTP server on 127.0.0.1 that records every request.
#[derive(Clone)]
pub struct FakeHttp {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
}

impl FakeHttp {
    /// Starts the server; unscripted requests get `default`.
    pub async fn start(default: Reply) -> FakeHttp {
        let state = Arc::new(Mutex::new(State::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake");
        let addr = listener.local_addr().expect("fake address");
        let shared = state.clone();
        let app =
            axum::Router::new().fallback(move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
                let state = shared.clone();
                let default = default.clone();
                async move {
                    let received = Received {
                        method: method.to_string(),
                        uri: uri.to_string(),
                        headers,
                        body: body.to_vec(),
                    };
                    let reply = {
                        let mut s = state.lock().unwrap();
                        let line = format!("{} {}", received.method, received.uri);
                        let reply = s.script.pop_front().or_else(|| {
                            s.routes
                                .iter()
                                .find(|(prefix, _)| line.starts_with(prefix.as_str()))
                                .map(|(_, f)| f(&received))
                        });
                        s.received.push(received);
                        reply.unwrap_or(default)
                    };
                    if reply.withheld {
                        std::future::pending::<()>().await;
                    }
                    tokio::time::sleep(reply.delay).await;
                    let mut response: Response =
                        (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
                    for (k, v) in reply.headers {
                        response.headers_mut().insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                            v.parse().unwrap(),
                        );
                    }
                    response
                }
            });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeHttp { addr, state }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Queues answers for the next requests.
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// Answers requests starting with `prefix` ("METHOD /path") with `f`.
    pub fn route(&self, prefix: &str, f: impl Fn(&Received) -> Reply + Send + Sync + 'static) {
        self.state.lock().unwrap().routes.push((prefix.to_owned(), Box::new(f)));
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Waits until at least `n` requests arrived (or the time is up) and returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let received = self.received();
            if received.len() >= n || tokio::time::Instant::now() >= deadline {
                return received;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One message the SMTP fake accepted.
#[derive(Debug, Clone)]
pub struct Mail {
    pub from: String,
    pub to: Vec<String>,
    pub data: String,
    /// Sent after STARTTLS.
    pub over_tls: bool,
    /// The user it authenticated as (AUTH PLAIN or LOGIN), if it did.
    pub user: Option<String>,
}

/// What a [`FakeSmtp`] with security offers: STARTTLS with a certificate for `localhost` made
/// for the run, and AUTH (PLAIN, LOGIN) for one user, only once the session is encrypted.
struct Security {
    acceptor: tokio_rustls::TlsAcceptor,
    ca_pem: String,
    user: String,
    password: String,
}

/// An SMTP server on 127.0.0.1 speaking enough of RFC 5321 for a client: EHLO, MAIL, RCPT,
/// DATA, RSET, NOOP, QUIT, and with [`FakeSmtp::start_secure`] STARTTLS (RFC 3207) and AUTH
/// PLAIN/LOGIN (RFC 4954: 535 for wrong credentials, 530 for mail before authentication).
/// Replies to DATA come from a script (default `250`), so tests can answer 451 (try later) or
/// 550 (refused).
#[derive(Clone)]
pub struct FakeSmtp {
    pub addr: SocketAddr,
    mails: Arc<Mutex<Vec<Mail>>>,
    data_replies: Arc<Mutex<VecDeque<String>>>,
    security: Option<Arc<Security>>,
}

enum Next {
    Done,
    StartTls,
}

impl FakeSmtp {
    pub async fn start() -> FakeSmtp {
        FakeSmtp::serve(None).await
    }

    /// A server that offers STARTTLS (its certificate's CA: [`FakeSmtp::ca_pem`]) and requires
    /// AUTH as `user` with `password` over TLS before it takes mail.
    pub async fn start_secure(user: &str, password: &str) -> FakeSmtp {
        let certified =
            rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
        let cert = certified.cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("server certificate");
        FakeSmtp::serve(Some(Arc::new(Security {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            ca_pem: certified.cert.pem(),
            user: user.to_owned(),
            password: password.to_owned(),
        })))
        .await
    }

    async fn serve(security: Option<Arc<Security>>) -> FakeSmtp {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind smtp");
        let fake = FakeSmtp {
            addr: listener.local_addr().expect("smtp address"),
            mails: Arc::default(),
            data_replies: Arc::default(),
            security,
        };
        let server = fake.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let server = server.clone();
                tokio::spawn(async move {
                    let _ = server.session(socket).await;
                });
            }
        });
        fake
    }

    /// The PEM certificate a client must trust to talk TLS to a [`FakeSmtp::start_secure`].
    pub fn ca_pem(&self) -> Option<String> {
        self.security.as_ref().map(|s| s.ca_pem.clone())
    }

    /// The reply to the next DATA, e.g. "451 4.3.0 try again later".
    pub fn reply_to_next_data(&self, reply: &str) {
        self.data_replies.lock().unwrap().push_back(reply.to_owned());
    }

    pub fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    async fn session(&self, socket: tokio::net::TcpStream) -> std::io::Result<()> {
        let mut plain = BufReader::new(socket);
        plain.write_all(b"220 fake.smtp ESMTP ready\r\n").await?;
        if let Next::StartTls = self.converse(&mut plain, false).await? {
            let security = self.security.as_ref().expect("STARTTLS only when offered");
            let encrypted = security.acceptor.accept(plain.into_inner()).await?;
            self.converse(&mut BufReader::new(encrypted), true).await?;
        }
        Ok(())
    }

    /// One SMTP conversation on `stream` until QUIT, the client leaving, or STARTTLS.
    async fn converse<S>(&self, stream: &mut BufReader<S>, over_tls: bool) -> std::io::Result<Next>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let (mut from, mut to) = (String::new(), Vec::new());
        let mut user: Option<String> = None;
        let security = self.security.as_deref();
        let decode = |text: &str| {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD
                .decode(text.trim())
                .map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let mut line = String::new();
        loop {
            line.clear();
            if stream.read_line(&mut line).await? == 0 {
                return Ok(Next::Done);
            }
            let line = line.trim_end_matches(['\r', '\n']).to_owned();
            let upper = line.to_ascii_uppercase();
            let reply = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
                let mut reply = "250-fake.smtp\r\n250-8BITMIME".to_owned();
                match security {
                    Some(_) if !over_tls => reply.push_str("\r\n250-STARTTLS"),
                    Some(_) => reply.push_str("\r\n250-AUTH PLAIN LOGIN"),
                    None => {}
                }
                reply + "\r\n250 SMTPUTF8"
            } else if upper == "STARTTLS" && security.is_some() && !over_tls {
                stream.write_all(b"220 2.0.0 ready to start TLS\r\n").await?;
                return Ok(Next::StartTls);
            } else if let Some(security) = security.filter(|_| upper.starts_with("AUTH ") && over_tls) {
                let mut words = line[5..].split_whitespace();
                let (given_user, given_password) =
                    match (words.next().map(str::to_ascii_uppercase).as_deref(), words.next()) {
                        (Some("PLAIN"), Some(initial)) => {
                            let text = decode(initial).unwrap_or_default();
                            let mut parts = text.split('\0').skip(1);
                            (parts.next().unwrap_or("").to_owned(), parts.next().unwrap_or("").to_owned())
                        }
                        (Some("LOGIN"), _) => {
                            stream.write_all(b"334 VXNlcm5hbWU6\r\n").await?;
                            let mut answer = String::new();
                            stream.read_line(&mut answer).await?;
                            let given_user = decode(&answer).unwrap_or_default();
                            stream.write_all(b"334 UGFzc3dvcmQ6\r\n").await?;
                            answer.clear();
                            stream.read_line(&mut answer).await?;
                            (given_user, decode(&answer).unwrap_or_default())
                        }
                        _ => (String::new(), String::new()),
                    };
                if given_user == security.user && given_password == security.password {
                    user = Some(given_user);
                    "235 2.7.0 authentication successful".to_owned()
                } else {
                    "535 5.7.8 authentication credentials invalid".to_owned()
                }
            } else if upper.starts_with("MAIL FROM:") {
                if security.is_some() && user.is_none() {
                    "530 5.7.0 authentication required".to_owned()
                } else {
                    from = line[10..].trim().to_owned();
                    "250 2.1.0 ok".to_owned()
                }
            } else if upper.starts_with("RCPT TO:") {
                to.push(line[8..].trim().to_owned());
                "250 2.1.5 ok".to_owned()
            } else if upper == "DATA" {
                stream.write_all(b"354 end with <CRLF>.<CRLF>\r\n").await?;
                let mut data = String::new();
                let mut l = String::new();
                loop {
                    l.clear();
                    if stream.read_line(&mut l).await? == 0 {
                        return Ok(Next::Done);
                    }
                    let text = l.trim_end_matches(['\r', '\n']);
                    if text == "." {
                        break;
                    }
                    data.push_str(text.strip_prefix('.').unwrap_or(text));
                    data.push('\n');
                }
                let reply = self
                    .data_replies
                    .lock()
                    .unwrap()
                    .pop_front()
                    .unwrap_or_else(|| "250 2.0.0 queued".into());
                if reply.starts_with('2') {
                    self.mails.lock().unwrap().push(Mail {
                        from: from.clone(),
                        to: std::mem::take(&mut to),
                        data,
                        over_tls,
                        user: user.clone(),
                    });
                }
                reply
            } else if upper == "QUIT" {
                stream.write_all(b"221 2.0.0 bye\r\n").await?;
                return Ok(Next::Done);
            } else if upper.starts_with("RSET") || upper.starts_with("NOOP") {
                "250 2.0.0 ok".to_owned()
            } else {
                "502 5.5.2 command not recognized".to_owned()
            };
            stream.write_all(format!("{reply}\r\n").as_bytes()).await?;
        }
    }
}

/// A fake of Railway's GraphQL API on a [`FakeHttp`]: it holds a timeline of logs and answers
/// `environmentLogs` (window by `beforeDate`..`anchorDate`, `@level:error` filter, the newest
/// `beforeLimit + 1` of an over-full window, as the real API's off-by-one; a 400 validation
/// error for variables of the wrong type or a query missing a field the crawl reads) and
/// `project`, with `Not Authorized` for any token but the one given, and the `X-RateLimit-*`
/// headers on every answer. Failures are scripted on `http`.
///
/// Its live endpoint ([`FakeRailway::ws_url`]) speaks `graphql-transport-ws`: `connection_init`
/// → `connection_ack`, then an `environmentLogs` subscription that replays lines after
/// `beforeDate` and pushes each line [`FakeRailway::add`]ed as a `next`; [`FakeRailway::end_streams`]
/// ends every stream with `complete`, as Railway does on its own.
#[derive(Clone)]
pub struct FakeRailway {
    pub http: FakeHttp,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    live: tokio::sync::broadcast::Sender<Live>,
    ws_addr: SocketAddr,
    /// Subscriptions opened so far.
    pub subscriptions: Arc<std::sync::atomic::AtomicUsize>,
    live_options: Arc<Mutex<LiveOptions>>,
    severity_style: Arc<Mutex<SeverityStyle>>,
}

#[derive(Debug, Clone)]
enum Live {
    Log(serde_json::Value),
    End,
}

#[derive(Clone)]
struct LiveState {
    token: String,
    logs: Arc<Mutex<Vec<serde_json::Value>>>,
    live: tokio::sync::broadcast::Sender<Live>,
    subscriptions: Arc<std::sync::atomic::AtomicUsize>,
    options: Arc<Mutex<LiveOptions>>,
}

/// How the fake's live endpoint refuses a token Railway does not take: its docs leave it open
/// (the CLI checks the upgrade's status; after the upgrade it is undocumented).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LiveRefusal {
    /// Upgraded, then an `error` message for the subscription ("Not Authorized").
    #[default]
    GraphqlError,
    /// No upgrade: this HTTP status (401, 403…).
    Status(u16),
    /// Upgraded, then closed with this code (4403 is graphql-ws' "Forbidden").
    Close(u16),
}

/// The live endpoint's readings of what the docs leave open.
#[derive(Debug, Clone, Copy, Default)]
pub struct LiveOptions {
    pub refusal: LiveRefusal,
    /// Write a line's time without the fraction's trailing zeros (`….12Z` where HTTP answers
    /// `….120000000Z`): one instant, another string.
    pub trimmed_timestamps: bool,
}

/// `….120000000Z` → `….12Z`; `….000000000Z` → `…Z`.
fn trimmed(timestamp: &str) -> String {
    match timestamp.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((whole, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() { format!("{whole}Z") } else { format!("{whole}.{fraction}Z") }
        }
        None => timestamp.to_owned(),
    }
}

async fn live_upgrade(
    ws: axum::extract::ws::WebSocketUpgrade,
    headers: HeaderMap,
    axum::extract::State(state): axum::extract::State<LiveState>,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let bearer = header("authorization").map(|v| v.trim_start_matches("Bearer ").to_owned());
    let authorized = bearer.as_deref() == Some(state.token.as_str())
        || header("project-access-token").as_deref() == Some(state.token.as_str());
    let refusal = state.options.lock().unwrap().refusal;
    match refusal {
        LiveRefusal::Status(code) if !authorized => {
            (StatusCode::from_u16(code).unwrap(), r#"{"errors":[{"message":"Not Authorized"}]}"#)
                .into_response()
        }
        LiveRefusal::Close(code) if !authorized => {
            ws.protocols(["graphql-transport-ws"]).on_upgrade(move |mut socket| async move {
                use axum::extract::ws::{CloseFrame, Message};
                let frame = CloseFrame { code, reason: "Forbidden".into() };
                let _ = socket.send(Message::Close(Some(frame))).await;
            })
        }
        _ => ws
            .protocols(["graphql-transport-ws"])
            .on_upgrade(move |socket| live_session(socket, authorized, state)),
    }
}

async fn live_session(mut socket: axum::extract::ws::WebSocket, authorized: bool, state: LiveState) {
    use axum::extract::ws::Message;
    let send = |v: serde_json::Value| Message::Text(v.to_string().into());
    let mut updates = state.live.subscribe();
    let mut id = None;
    while id.is_none() {
        let Some(Ok(Message::Text(text))) = socket.recv().await else { return };
        let message: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        match message["type"].as_str() {
            Some("connection_init") => {
                let _ = socket.send(send(serde_json::json!({"type": "connection_ack"}))).await;
            }
            Some("subscribe") => {
                let sub = message["id"].clone();
                if !authorized {
                    let error = serde_json::json!({"id": sub, "type": "error", "payload": [{"message": "Not Authorized"}]});
                    let _ = socket.send(send(error)).await;
                    return;
                }
                state.subscriptions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let vars = &message["payload"]["variables"];
                if let Some(after) = vars["beforeDate"].as_str() {
                    let limit = vars["beforeLimit"].as_u64().unwrap_or(100) as usize;
                    let mut replay: Vec<serde_json::Value> = state
                        .logs
                        .lock()
                        .unwrap()
                        .iter()
                        .filter(|l| {
                            nanos(l["timestamp"].as_str().unwrap_or("")) > nanos(after) && is_error(l)
                        })
                        .cloned()
                        .collect();
                    replay.truncate(limit);
                    let next = serde_json::json!({"id": sub, "type": "next", "payload": {"data": {"environmentLogs": replay}}});
                    let _ = socket.send(send(next)).await;
                }
                id = Some(sub);
            }
            _ => {}
        }
    }
    let id = id.unwrap_or_default();
    loop {
        tokio::select! {
            update = updates.recv() => match update {
                Ok(Live::Log(mut log)) if is_error(&log) => {
                    if state.options.lock().unwrap().trimmed_timestamps {
                        log["timestamp"] = serde_json::Value::String(trimmed(log["timestamp"].as_str().unwrap_or("")));
                    }
                    let next = serde_json::json!({"id": id, "type": "next", "payload": {"data": {"environmentLogs": [log]}}});
                    if socket.send(send(next)).await.is_err() { return }
                }
                Ok(Live::Log(_)) => {}
                Ok(Live::End) | Err(_) => {
                    let _ = socket.send(send(serde_json::json!({"id": id, "type": "complete"}))).await;
                    let _ = socket.send(Message::Close(None)).await;
                    return;
                }
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) if text.contains("\"ping\"") => {
                    let _ = socket.send(send(serde_json::json!({"type": "pong"}))).await;
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

fn nanos(ts: &str) -> i128 {
    // "2026-06-18T04:41:00.000000000Z": compare as (seconds, nanos) without a date library.
    let (date, rest) = ts.split_once('T').unwrap_or((ts, ""));
    let digits: String = date.chars().chain(rest.chars()).filter(char::is_ascii_digit).collect();
    let (whole, frac) = digits.split_at(14.min(digits.len()));
    let frac = format!("{frac:0<9}");
    whole.parse::<i128>().unwrap_or(0) * 1_000_000_000 + frac[..9].parse::<i128>().unwrap_or(0)
}

/// Railway's levels: "lowercased and snapped to debug/info/warn/error" (stderr is error).
fn snapped(level: &str) -> &'static str {
    match level.to_ascii_lowercase().as_str() {
        "error" | "err" | "fatal" | "crit" | "critical" | "panic" | "emerg" | "alert" | "stderr" => "error",
        "warn" | "warning" => "warn",
        "debug" | "trace" => "debug",
        _ => "info",
    }
}

/// What `@level:error` matches: the snapped level of the line's `level` attribute.
fn is_error(log: &serde_json::Value) -> bool {
    log["attributes"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|a| a["key"] == "level" && a["value"].as_str().is_some_and(|v| v.trim_matches('"') == "error"))
}

/// How the fake writes a log's `severity` field, which Railway's schema leaves open ("eg. err").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SeverityStyle {
    /// `error`, `warn`, `info`, `debug`: the snapped level.
    #[default]
    Words,
    /// `err` for errors, as the schema's example.
    Short,
    /// No `severity` at all: only the `level` attribute says.
    Absent,
}

/// The project the fake Railway knows; any other id is "Project not found".
pub const FAKE_PROJECT_ID: &str = "proj-1";

/// The GraphQL answer of the fake Railway: `Not Authorized` for a wrong token, the window of
/// `environmentLogs`, `project`, or an unknown-field error.
fn graphql_answer(r: &Received, token: &str, timeline: &Mutex<Vec<serde_json::Value>>) -> Reply {
    let bearer = r.header("authorization").map(|v| v.trim_start_matches("Bearer ").to_owned());
    let project = r.header("project-access-token").map(str::to_owned);
    if bearer.as_deref() != Some(token) && project.as_deref() != Some(token) {
        return Reply::new(200, r#"{"data":null,"errors":[{"message":"Not Authorized"}]}"#);
    }
    let body = r.json();
    let (query, vars) = (body["query"].as_str().unwrap_or(""), &body["variables"]);
    if query.contains("environmentLogs") {
        // What a GraphQL server checks before it runs anything: the variables' types and the
        // fields the crawl reads (a 400 with `errors`, as Apollo answers a validation failure).
        let invalid = |message: String| {
            Reply::new(
                400,
                &serde_json::json!({"errors": [{"message": message,
                "extensions": {"code": "GRAPHQL_VALIDATION_FAILED"}}]})
                .to_string(),
            )
        };
        if !vars["environmentId"].is_string() {
            return invalid(
                "Variable \"$environmentId\" of required type \"String!\" was not provided.".into(),
            );
        }
        for (name, value) in [("beforeLimit", &vars["beforeLimit"]), ("afterLimit", &vars["afterLimit"])] {
            if !(value.is_null() || value.is_i64()) {
                return invalid(format!(
                    "Variable \"${name}\" got invalid value {value}; Int cannot represent it."
                ));
            }
        }
        for field in ["timestamp", "message", "severity", "attributes"] {
            if !query.contains(field) {
                return invalid(format!("the crawl reads `{field}` but does not ask for it"));
            }
        }
        let since = nanos(vars["beforeDate"].as_str().unwrap_or(""));
        let until = nanos(vars["anchorDate"].as_str().unwrap_or(""));
        let limit = vars["beforeLimit"].as_u64().unwrap_or(100) as usize;
        let errors_only = vars["filter"].as_str().unwrap_or("").contains("@level:error");
        let mut found: Vec<serde_json::Value> = timeline
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                let t = nanos(l["timestamp"].as_str().unwrap_or(""));
                t >= since && t <= until && (!errors_only || is_error(l))
            })
            .cloned()
            .collect();
        found.sort_by_key(|l| nanos(l["timestamp"].as_str().unwrap_or("")));
        let keep = found.len().min(limit + 1);
        let newest = found.split_off(found.len() - keep);
        return Reply::new(200, &serde_json::json!({"data": {"environmentLogs": newest}}).to_string());
    }
    if query.contains("project(") {
        if vars["id"] != FAKE_PROJECT_ID {
            return Reply::new(
                200,
                r#"{"data":null,"errors":[{"message":"Project not found","path":["project"],"extensions":{"code":"NOT_FOUND"}}]}"#,
            );
        }
        let data = serde_json::json!({"data": {"project": {
            "id": vars["id"], "name": "shop",
            "environments": {"edges": [{"node": {"id": "env-1", "name": "production"}}]},
            "services": {"edges": [{"node": {"id": "svc-api", "name": "api"}}, {"node": {"id": "svc-worker", "name": "worker"}}]},
        }}});
        return Reply::new(200, &data.to_string());
    }
    Reply::new(200, r#"{"data":null,"errors":[{"message":"Cannot query field"}]}"#)
}

impl FakeRailway {
    pub async fn start(token: &str) -> FakeRailway {
        let http = FakeHttp::start(Reply::new(404, "not found")).await;
        let logs: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let live_token = token.to_owned();
        let (timeline, token) = (logs.clone(), token.to_owned());
        let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        http.route("POST /graphql/v2", move |r| {
            // Railway sends its rate-limit headers "with the response on each request".
            let n = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let reset =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 3600;
            graphql_answer(r, &token, &timeline)
                .header("X-RateLimit-Limit", "1000")
                .header("X-RateLimit-Remaining", &1000u64.saturating_sub(n + 1).max(1).to_string())
                .header("X-RateLimit-Reset", &reset.to_string())
        });
        let (live, _) = tokio::sync::broadcast::channel(1024);
        let subscriptions = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let options: Arc<Mutex<LiveOptions>> = Arc::default();
        let state = LiveState {
            token: live_token,
            logs: logs.clone(),
            live: live.clone(),
            subscriptions: subscriptions.clone(),
            options: options.clone(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind fake live endpoint");
        let ws_addr = listener.local_addr().expect("fake live address");
        let app =
            axum::Router::new().route("/graphql/v2", axum::routing::get(live_upgrade)).with_state(state);
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeRailway {
            http,
            logs,
            live,
            ws_addr,
            subscriptions,
            live_options: options,
            severity_style: Arc::default(),
        }
    }

    /// The live (WebSocket) endpoint.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/graphql/v2", self.ws_addr)
    }

    /// Plays another reading of the live endpoint from now on.
    pub fn set_live_options(&self, options: LiveOptions) {
        *self.live_options.lock().unwrap() = options;
    }

    /// Ends every open stream with `complete`, as Railway does from time to time.
    pub fn end_streams(&self) {
        let _ = self.live.send(Live::End);
    }

    pub fn url(&self) -> String {
        self.http.url("/graphql/v2")
    }

    /// Writes the `severity` field of lines added from now on in another of its readings.
    pub fn set_severity_style(&self, style: SeverityStyle) {
        *self.severity_style.lock().unwrap() = style;
    }

    /// Adds a log line: `timestamp` in RFC 3339 with nanoseconds, `level` as the app wrote it
    /// (`error`, `err`, `fatal`, `warn`, `info`…, or `stderr`), which Railway snaps to
    /// debug/info/warn/error for the `level` attribute and `@level:` filters.
    pub fn add(&self, timestamp: &str, level: &str, service: &str, instance: &str, message: &str) {
        let snapped = snapped(level);
        let mut log = serde_json::json!({
            "timestamp": timestamp,
            "message": message,
            "attributes": [{"key": "level", "value": format!("\"{snapped}\"")}],
            "tags": {"serviceId": service, "deploymentId": "dep-1", "deploymentInstanceId": instance},
        });
        let severity = match *self.severity_style.lock().unwrap() {
            SeverityStyle::Words => Some(snapped),
            SeverityStyle::Short => Some(if snapped == "error" { "err" } else { snapped }),
            SeverityStyle::Absent => None,
        };
        log["severity"] =
            severity.map_or(serde_json::Value::Null, |s| serde_json::Value::String(s.to_owned()));
        self.logs.lock().unwrap().push(log.clone());
        let _ = self.live.send(Live::Log(log));
    }
}
