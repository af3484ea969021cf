//! Railway live mode: `environmentLogs` as a GraphQL subscription over a WebSocket speaking
//! `graphql-transport-ws` (the protocol of the `graphql-ws` library, which Railway's CLI uses).
//!
//! The token goes in the upgrade request's headers, as over HTTP. Railway ends streams on its
//! own (`complete`), so [`Subscription::next_batch`] returning `Ok(None)` is normal: subscribe
//! again. Nothing here keeps a cursor: live lines are stored by their entry key, and the
//! polling crawl stays the safety net that fills whatever a dropped stream missed.

use secrecy::ExposeSecret;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::railway::{RailwayError, RailwayLog, Token, parse_log};

const SUBSCRIPTION: &str = "subscription EnvironmentLogs($environmentId: String!, $filter: String, \
$beforeDate: String, $beforeLimit: Int) {
  environmentLogs(environmentId: $environmentId, filter: $filter, beforeDate: $beforeDate, beforeLimit: $beforeLimit) {
    timestamp message severity attributes { key value }
    tags { serviceId deploymentId deploymentInstanceId } } }";

/// The WebSocket address of a GraphQL HTTP endpoint (`https://…` → `wss://…`, same path), as
/// Railway serves both on `/graphql/v2`.
pub fn ws_url(api_url: &str) -> String {
    if let Some(rest) = api_url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else if let Some(rest) = api_url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else {
        api_url.to_owned()
    }
}

/// What to subscribe to.
#[derive(Debug, Clone)]
pub struct LiveQuery {
    pub environment_id: String,
    pub filter: String,
    /// Replay lines after this RFC 3339 time (the newest seen before a reconnect), if the server
    /// honours it; duplicates are dropped by the entry key either way.
    pub after: Option<String>,
    pub replay_limit: u32,
}

/// One open subscription.
pub struct Subscription {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    id: String,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription").field("id", &self.id).finish()
    }
}

fn unavailable(e: impl std::fmt::Display) -> RailwayError {
    RailwayError::Unavailable { detail: format!("live stream: {e}") }
}

fn graphql_error(payload: &Value) -> RailwayError {
    let message = payload
        .as_array()
        .and_then(|errors| errors.first())
        .or(Some(payload))
        .and_then(|e| e["message"].as_str())
        .unwrap_or("unknown error")
        .chars()
        .filter(|c| !c.is_control())
        .take(300)
        .collect::<String>();
    let lower = message.to_ascii_lowercase();
    if lower.contains("not authorized") || lower.contains("project token not found") {
        RailwayError::Unauthorized { message }
    } else {
        RailwayError::Api { message }
    }
}

/// Opens the WebSocket (token in the upgrade headers), completes `connection_init` /
/// `connection_ack` within `timeout` and subscribes.
pub async fn subscribe(
    ws_url: &str,
    token: &Token,
    query: &LiveQuery,
    timeout: Duration,
) -> Result<Subscription, RailwayError> {
    let mut request = ws_url.into_client_request().map_err(unavailable)?;
    let headers = request.headers_mut();
    headers.insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().map_err(unavailable)?);
    let (name, value) = match token {
        Token::Account(t) => ("Authorization", format!("Bearer {}", t.expose_secret())),
        Token::Project(t) => ("Project-Access-Token", t.expose_secret().to_owned()),
    };
    // A token with characters a header cannot hold is refused without echoing it.
    let value = value.parse().map_err(|_| RailwayError::Unauthorized {
        message: "the token is not a valid header value".into(),
    })?;
    headers.insert(name, value);
    let open = async {
        let (mut socket, response) =
            tokio_tungstenite::connect_async(request).await.map_err(|e| match e {
                tokio_tungstenite::tungstenite::Error::Http(r)
                    if matches!(r.status().as_u16(), 401 | 403) =>
                {
                    RailwayError::Unauthorized { message: format!("HTTP {}", r.status().as_u16()) }
                }
                tokio_tungstenite::tungstenite::Error::Http(r) => {
                    RailwayError::Unavailable { detail: format!("live stream: HTTP {}", r.status().as_u16()) }
                }
                other => unavailable(other),
            })?;
        let protocol = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok());
        if protocol != Some("graphql-transport-ws") {
            return Err(RailwayError::Malformed {
                detail: format!("live stream: server chose protocol {protocol:?}, not graphql-transport-ws"),
            });
        }
        socket
            .send(Message::text(json!({"type": "connection_init"}).to_string()))
            .await
            .map_err(unavailable)?;
        loop {
            let message = socket.next().await.ok_or_else(|| unavailable("closed before connection_ack"))?;
            let text = match message.map_err(unavailable)? {
                Message::Text(text) => text,
                Message::Close(frame) => {
                    let reason = frame.map(|f| f.reason.to_string()).unwrap_or_default();
                    // graphql-transport-ws closes with 4403 "Forbidden" for a refused token.
                    return Err(if reason.to_ascii_lowercase().contains("forbidden") {
                        RailwayError::Unauthorized { message: reason }
                    } else {
                        unavailable(format!("closed before connection_ack: {reason}"))
                    });
                }
                _ => continue,
            };
            let answer: Value = serde_json::from_str(&text)
                .map_err(|e| RailwayError::Malformed { detail: format!("live stream: {e}") })?;
            match answer["type"].as_str() {
                Some("connection_ack") => break,
                Some("ping") => {
                    socket.send(Message::text(r#"{"type":"pong"}"#)).await.map_err(unavailable)?
                }
                _ => {}
            }
        }
        Ok(socket)
    };
    let mut socket =
        tokio::time::timeout(timeout, open).await.map_err(|_| unavailable("handshake timed out"))??;
    let id = format!("faultline-{}", std::process::id());
    let variables = json!({
        "environmentId": query.environment_id,
        "filter": query.filter,
        "beforeDate": query.after,
        "beforeLimit": query.after.as_ref().map(|_| query.replay_limit),
    });
    let subscribe =
        json!({"id": id, "type": "subscribe", "payload": {"query": SUBSCRIPTION, "variables": variables}});
    socket.send(Message::text(subscribe.to_string())).await.map_err(unavailable)?;
    Ok(Subscription { socket, id })
}

impl Subscription {
    /// The next batch of logs; `Ok(None)` when the server ended the stream (subscribe again).
    /// A GraphQL `error` for the subscription is returned as [`RailwayError`] (a refused token
    /// as `Unauthorized`).
    pub async fn next_batch(&mut self) -> Result<Option<Vec<RailwayLog>>, RailwayError> {
        loop {
            let Some(message) = self.socket.next().await else { return Ok(None) };
            let text = match message {
                Ok(Message::Text(text)) => text,
                Ok(Message::Close(_)) => return Ok(None),
                Ok(_) => continue,
                Err(e) => return Err(unavailable(e)),
            };
            let answer: Value = serde_json::from_str(&text)
                .map_err(|e| RailwayError::Malformed { detail: format!("live stream: {e}") })?;
            match answer["type"].as_str() {
                Some("next") if answer["id"] == self.id.as_str() => {
                    let payload = &answer["payload"];
                    if payload["errors"].is_array() && !payload["data"]["environmentLogs"].is_array() {
                        return Err(graphql_error(&payload["errors"]));
                    }
                    let list = payload["data"]["environmentLogs"].as_array().ok_or_else(|| {
                        RailwayError::Malformed {
                            detail: "live stream: environmentLogs is not a list".into(),
                        }
                    })?;
                    return list.iter().map(parse_log).collect::<Result<Vec<_>, _>>().map(Some);
                }
                Some("error") if answer["id"] == self.id.as_str() => {
                    return Err(graphql_error(&answer["payload"]));
                }
                Some("complete") if answer["id"] == self.id.as_str() => return Ok(None),
                Some("ping") => {
                    self.socket.send(Message::text(r#"{"type":"pong"}"#)).await.map_err(unavailable)?
                }
                _ => {}
            }
        }
    }

    /// Ends the subscription and closes the socket politely.
    pub async fn close(mut self) {
        let complete = json!({"id": self.id, "type": "complete"}).to_string();
        let _ = self.socket.send(Message::text(complete)).await;
        let _ = self.socket.close(None).await;
    }
}
