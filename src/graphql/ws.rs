//! GraphQL over WebSocket: the `graphql-transport-ws` protocol (the one of
//! the `graphql-ws` library, used by Apollo's `GraphQLWsLink`, urql and
//! GraphiQL) on `/graphql` (upgrade) and `/graphql/ws`.
//!
//! One socket is two tasks: this connection's loop (client messages,
//! timers, the limits) and a writer that owns the sending half. Each
//! subscription runs in its own task and queues its messages for the
//! writer in one bounded queue per socket (`WS_SEND_BUFFER`): a client that
//! stops reading lets the queue fill and is closed with 1008, so memory per
//! socket is bounded whatever the client does.
//!
//! Close codes (the protocol's own, plus the standard ones):
//! - 4400 a message that is not the protocol's;
//! - 4401 no token in `connection_init`, or `subscribe` before the ack;
//! - 4403 a bad or expired token, and when the token expires while open;
//! - 4408 no `connection_init` within `WS_CONNECTION_INIT_TIMEOUT_SECS`;
//! - 4409 a subscription id already in use;
//! - 4429 a second `connection_init`, or over `WS_MAX_CONNECTIONS_PER_USER`;
//! - 3008 no message from the client for three keepalive periods;
//! - 1008 the client does not read its messages; 1012 the instance stops.
//!
//! An upgrade that does not offer `graphql-transport-ws` gets 400 before
//! any upgrade (a client offering only another subprotocol could not read
//! a close code: its handshake fails first); one over the per-address
//! limit gets 429, one during shutdown 503.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use async_graphql::Executor;
use axum::{
    extract::{
        RawQuery, State,
        ws::{
            CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade,
            rejection::WebSocketUpgradeRejection,
        },
    },
    http::{HeaderMap, StatusCode},
    response::Response,
};
use futures::{SinkExt, StreamExt, stream::SplitSink};
use metrics::Label;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::{
    sync::{Notify, mpsc, oneshot},
    task::AbortHandle,
    time::Instant,
};

use super::{
    context::RequestData,
    sockets::{Slots, Sockets},
    transport::{self, Endpoint, EndpointState},
};
use crate::{
    auth::Viewer,
    config::LiveSettings,
    error::{Code, error_response},
    http::{
        client::{Peer, client_ip},
        metrics::{Metrics, names},
    },
};

/// The one subprotocol served.
pub const PROTOCOL: &str = "graphql-transport-ws";

/// Largest client message: a subscription document, never an upload.
const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long a close frame may take to leave before the socket is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// `GET /graphql`: a WebSocket upgrade for subscriptions, else
/// [`transport::get_query`] (GraphiQL or a query from the URL).
pub async fn get_graphql<E: Executor>(
    State(http): State<EndpointState<E>>,
    peer: Peer,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
    RawQuery(query): RawQuery,
) -> Response {
    match upgrade {
        Ok(upgrade) => self::upgrade(http, upgrade, &headers, peer),
        Err(_) => transport::get_query(http, peer, headers, query).await,
    }
}

/// `GET /graphql/ws`: subscriptions only; anything but an upgrade gets 426.
pub async fn get_ws<E: Executor>(
    State(http): State<EndpointState<E>>,
    peer: Peer,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    match upgrade {
        Ok(upgrade) => self::upgrade(http, upgrade, &headers, peer),
        Err(_) => error_response(
            StatusCode::UPGRADE_REQUIRED,
            Code::BadUserInput,
            "this endpoint speaks graphql-transport-ws over WebSocket only",
        ),
    }
}

/// Accepts a WebSocket upgrade of the GraphQL endpoint.
fn upgrade<E: Executor>(
    http: Arc<Endpoint<E>>,
    ws: WebSocketUpgrade,
    headers: &HeaderMap,
    peer: Peer,
) -> Response {
    let client = client_ip(headers, peer.0, http.trust_proxy);
    let sockets = http.sockets.clone();
    let speaks_protocol = ws
        .requested_protocols()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == PROTOCOL);
    if !speaks_protocol {
        return error_response(
            StatusCode::BAD_REQUEST,
            Code::BadUserInput,
            "only the graphql-transport-ws subprotocol is served: send Sec-WebSocket-Protocol: graphql-transport-ws",
        );
    }
    if sockets.is_closing() {
        return error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            "this instance is restarting: connect again",
        );
    }
    let max = sockets.settings.max_connections_per_address;
    if let Some(a) = client
        && Sockets::take(&sockets.per_address, a, max).is_none()
    {
        sockets.metrics.rate_limited("ws_address");
        return error_response(
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            "too many subscription sockets from this address",
        );
    }
    sockets.open.fetch_add(1, Ordering::Relaxed);
    sockets
        .metrics
        .gauge(names::WS_CONNECTIONS, vec![])
        .increment(1.0);
    let slots = Slots {
        sockets,
        address: client,
        user: None,
    };
    ws.protocols([PROTOCOL])
        .max_message_size(MAX_MESSAGE_BYTES)
        .max_frame_size(MAX_MESSAGE_BYTES)
        // Small buffers: thousands of mostly idle sockets per instance.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_write_buffer_size(MAX_MESSAGE_BYTES * 4)
        .on_upgrade(move |socket| Connection::new(http, slots, client).run(socket))
}

/// A client message of `graphql-transport-ws`. Parsed one at a time and
/// dropped at once, so the size of the `Subscribe` variant costs nothing
/// that boxing it (an allocation per message) would save.
#[allow(clippy::large_enum_variant)]
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    ConnectionInit {
        #[serde(default)]
        payload: Option<Value>,
    },
    Ping {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Pong {
        #[serde(default)]
        #[allow(dead_code)]
        payload: Option<Value>,
    },
    Subscribe {
        id: String,
        payload: async_graphql::Request,
    },
    Complete {
        id: String,
    },
}

/// Why the loop ends: a close frame to send, or the client is gone.
type Close = Option<(u16, &'static str)>;

struct Connection<E> {
    http: Arc<Endpoint<E>>,
    slots: Slots,
    client: Option<IpAddr>,
    /// The signed-in viewer once `connection_init` was accepted.
    viewer: Option<Viewer>,
    /// When the token expires (the socket closes then).
    expires: Option<Instant>,
    init_seen: bool,
    subscriptions: HashMap<String, AbortHandle>,
    out: mpsc::Sender<Message>,
    /// Set by a subscription whose message found the queue full.
    overflow: Arc<Notify>,
    /// Subscriptions that ended by themselves.
    finished: (
        mpsc::UnboundedSender<String>,
        mpsc::UnboundedReceiver<String>,
    ),
}

impl<E: Executor> Connection<E> {
    fn new(http: Arc<Endpoint<E>>, slots: Slots, client: Option<IpAddr>) -> Self {
        Connection {
            http,
            slots,
            client,
            viewer: None,
            expires: None,
            init_seen: false,
            subscriptions: HashMap::new(),
            // Replaced in `run` with the writer's queue.
            out: mpsc::channel(1).0,
            overflow: Arc::new(Notify::new()),
            finished: mpsc::unbounded_channel(),
        }
    }

    fn settings(&self) -> &LiveSettings {
        &self.slots.sockets.settings
    }

    async fn run(mut self, socket: WebSocket) {
        let (sink, mut stream) = socket.split();
        let (out, out_rx) = mpsc::channel(self.settings().send_buffer);
        self.out = out;
        let (close_tx, close_rx) = oneshot::channel();
        let writer = tokio::spawn(write(sink, out_rx, close_rx));
        let mut closing = self.slots.sockets.closing.subscribe();
        let keepalive = self.settings().keepalive;
        let mut ping = tokio::time::interval_at(Instant::now() + keepalive, keepalive);
        let init_deadline = Instant::now() + self.settings().init_timeout;
        let mut last_seen = Instant::now();
        let overflow = self.overflow.clone();
        let close: Close = loop {
            let expires = self.expires;
            tokio::select! {
                biased;
                _ = closing.wait_for(|c| *c) => break Some((1012, "Service Restart: reconnect")),
                _ = overflow.notified() => {
                    break Some((1008, "Too slow: the client does not read its messages"));
                }
                _ = tokio::time::sleep_until(expires.unwrap_or(init_deadline)) => {
                    break Some(if expires.is_some() {
                        (4403, "Forbidden: the token expired; sign in again")
                    } else {
                        (4408, "Connection initialisation timeout")
                    });
                }
                _ = ping.tick() => {
                    if last_seen.elapsed() > keepalive * 3 {
                        break Some((3008, "Keepalive timeout"));
                    }
                    self.send(json!({ "type": "ping" }));
                }
                Some(id) = self.finished.1.recv() => {
                    self.subscriptions.remove(&id);
                }
                message = stream.next() => {
                    last_seen = Instant::now();
                    let text = match message {
                        Some(Ok(Message::Text(text))) => text,
                        Some(Ok(Message::Binary(_))) => break Some((4400, "Binary messages are not part of the protocol")),
                        Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                        Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break None,
                    };
                    if let Some(close) = self.on_message(&text) {
                        break Some(close);
                    }
                }
            }
        };
        for (_, task) in self.subscriptions.drain() {
            task.abort();
        }
        if let Some((code, _)) = close {
            self.slots.sockets.closed(code);
        }
        let _ = close_tx.send(close);
        let _ = tokio::time::timeout(CLOSE_GRACE * 2, writer).await;
    }

    /// Queues a message; a full queue means the client does not read.
    fn send(&self, message: Value) -> bool {
        queue(&self.out, &self.overflow, message)
    }

    /// Handles one client message; `Some` closes the socket.
    fn on_message(&mut self, text: &str) -> Option<(u16, &'static str)> {
        let Ok(message) = serde_json::from_str::<ClientMessage>(text) else {
            return Some((4400, "Invalid message received"));
        };
        match message {
            ClientMessage::ConnectionInit { payload } => {
                if self.init_seen {
                    return Some((4429, "Too many initialisation requests"));
                }
                self.init_seen = true;
                self.init(payload)
            }
            ClientMessage::Ping { .. } => {
                self.send(json!({ "type": "pong" }));
                None
            }
            ClientMessage::Pong { .. } => None,
            ClientMessage::Subscribe { id, payload } => self.subscribe(id, payload),
            ClientMessage::Complete { id } => {
                if let Some(task) = self.subscriptions.remove(&id) {
                    task.abort();
                }
                None
            }
        }
    }

    /// Checks the token of `connection_init` and takes the user's slot.
    fn init(&mut self, payload: Option<Value>) -> Option<(u16, &'static str)> {
        let Some(header) = payload.as_ref().and_then(authorization) else {
            return Some((
                4401,
                "Unauthorized: send Authorization: Bearer <token> in the connection_init payload",
            ));
        };
        let token = header
            .get(..7)
            .filter(|scheme| scheme.eq_ignore_ascii_case("bearer "))
            .map(|_| header[7..].trim());
        let Some((viewer, expires)) = token.and_then(|t| self.http.tokens.verify_until(t)) else {
            return Some((4403, "Forbidden: invalid or expired token"));
        };
        let sockets = &self.slots.sockets;
        let max = sockets.settings.max_connections_per_user;
        if Sockets::take(&sockets.per_user, viewer.user_id, max).is_none() {
            sockets.metrics.rate_limited("ws_user");
            return Some((4429, "Too many connections for this user"));
        }
        self.slots.user = Some(viewer.user_id);
        let left = (expires - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        self.expires = Some(Instant::now() + left);
        self.viewer = Some(viewer);
        self.send(json!({ "type": "connection_ack" }));
        None
    }

    /// Starts one operation in its own task.
    fn subscribe(
        &mut self,
        id: String,
        mut request: async_graphql::Request,
    ) -> Option<(u16, &'static str)> {
        let Some(viewer) = self.viewer else {
            return Some((4401, "Unauthorized"));
        };
        if self.subscriptions.contains_key(&id) {
            return Some((4409, "Subscriber for this id already exists"));
        }
        if self.subscriptions.len() >= self.settings().max_subscriptions_per_connection {
            self.send(json!({
                "type": "error",
                "id": id,
                "payload": [{
                    "message": format!(
                        "at most {} subscriptions per connection",
                        self.settings().max_subscriptions_per_connection
                    ),
                    "extensions": { "code": Code::RateLimited.as_str() },
                }],
            }));
            return None;
        }
        let http = self.http.clone();
        let out = self.out.clone();
        let overflow = self.overflow.clone();
        let finished = self.finished.0.clone();
        let client = self.client;
        let metrics = self.slots.sockets.metrics.clone();
        let task_id = id.clone();
        let task = tokio::spawn(async move {
            let _active = Active::new(metrics.clone());
            // Persisted queries and the allowlist apply here as over HTTP.
            // Boxed: the task keeps its largest state for life, and the
            // store's lookup (Redis) is far larger than the wait for events.
            if let Err(refusal) = Box::pin(http.documents.prepare(&mut request)).await {
                let (_, code, message, _) = refusal.parts();
                queue(
                    &out,
                    &overflow,
                    json!({ "type": "error", "id": task_id, "payload": [{
                        "message": message, "extensions": { "code": code.as_str() },
                    }]}),
                );
                let _ = finished.send(task_id);
                return;
            }
            let request = request.data(RequestData::new(Some(viewer), client));
            let mut responses = http.executor.execute_stream(request, None);
            let mut first = true;
            while let Some(response) = responses.next().await {
                let before_execution = first
                    && response.data == async_graphql::Value::Null
                    && !response.errors.is_empty()
                    && response.errors.iter().all(|e| e.path.is_empty());
                first = false;
                let mut payload = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
                if let Some(errors) = payload.get_mut("errors").and_then(Value::as_array_mut) {
                    transport::code_errors(errors);
                }
                if before_execution {
                    // Invalid documents get `error` and no `complete`.
                    let errors = payload.get("errors").cloned().unwrap_or(json!([]));
                    queue(
                        &out,
                        &overflow,
                        json!({ "type": "error", "id": task_id, "payload": errors }),
                    );
                    let _ = finished.send(task_id);
                    return;
                }
                let sent = queue(
                    &out,
                    &overflow,
                    json!({ "type": "next", "id": task_id, "payload": payload }),
                );
                if !sent {
                    metrics
                        .counter(
                            names::LIVE_DROPPED,
                            vec![Label::new("reason", "slow_client")],
                        )
                        .increment(1);
                    return;
                }
                metrics.counter(names::LIVE_DELIVERED, vec![]).increment(1);
            }
            queue(
                &out,
                &overflow,
                json!({ "type": "complete", "id": task_id }),
            );
            let _ = finished.send(task_id);
        });
        self.subscriptions.insert(id, task.abort_handle());
        None
    }
}

/// Counts one running subscription for as long as it lives (aborted ones
/// included).
struct Active(Metrics);

impl Active {
    fn new(metrics: Metrics) -> Self {
        metrics
            .gauge(names::WS_SUBSCRIPTIONS, vec![])
            .increment(1.0);
        Active(metrics)
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        self.0.gauge(names::WS_SUBSCRIPTIONS, vec![]).decrement(1.0);
    }
}

/// The `Authorization` entry of a `connection_init` payload, whatever the
/// case of its key.
fn authorization(payload: &Value) -> Option<&str> {
    payload
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("authorization"))
        .and_then(|(_, v)| v.as_str())
        .filter(|v| !v.trim().is_empty())
}

/// Queues a message for the writer; `false` (and the overflow signal) when
/// the queue is full or the writer is gone.
fn queue(out: &mpsc::Sender<Message>, overflow: &Notify, message: Value) -> bool {
    let text = Message::Text(Utf8Bytes::from(message.to_string()));
    match out.try_send(text) {
        Ok(()) => true,
        Err(mpsc::error::TrySendError::Full(_)) => {
            overflow.notify_one();
            false
        }
        Err(mpsc::error::TrySendError::Closed(_)) => false,
    }
}

/// The writer: sends queued messages until the connection asks it to
/// close, which it does even while a send is stuck on a client that does
/// not read.
async fn write(
    mut sink: SplitSink<WebSocket, Message>,
    mut out: mpsc::Receiver<Message>,
    mut close: oneshot::Receiver<Close>,
) {
    let reason = loop {
        tokio::select! {
            biased;
            reason = &mut close => break reason.ok().flatten(),
            message = out.recv() => {
                let Some(message) = message else { break None };
                tokio::select! {
                    sent = sink.send(message) => if sent.is_err() { return },
                    reason = &mut close => break reason.ok().flatten(),
                }
            }
        }
    };
    if let Some((code, reason)) = reason {
        send_close(&mut sink, code, reason).await;
    }
}

async fn send_close(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: &'static str) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from_static(reason),
    }));
    let _ = tokio::time::timeout(CLOSE_GRACE, async {
        let _ = sink.send(frame).await;
        let _ = sink.close().await;
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_key_of_connection_init_is_case_insensitive() {
        assert_eq!(
            authorization(&json!({ "authorization": "Bearer x" })),
            Some("Bearer x")
        );
        assert_eq!(
            authorization(&json!({ "AUTHORIZATION": "Bearer y" })),
            Some("Bearer y")
        );
        assert_eq!(authorization(&json!({ "Authorization": "  " })), None);
        assert_eq!(authorization(&json!({ "token": "x" })), None);
        assert_eq!(authorization(&json!("Bearer x")), None);
    }

    #[test]
    fn client_messages_follow_graphql_transport_ws() {
        let m: ClientMessage = serde_json::from_str(
            r#"{"type":"subscribe","id":"1","payload":{"query":"subscription { a }"}}"#,
        )
        .unwrap();
        assert!(matches!(m, ClientMessage::Subscribe { id, .. } if id == "1"));
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"start","id":"1"}"#).is_err());
        assert!(serde_json::from_str::<ClientMessage>(r#"{"type":"connection_init"}"#).is_ok());
    }
}
