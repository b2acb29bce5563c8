//! Subscriptions over `graphql-transport-ws` with a WebSocket client:
//! authentication, authorization, token expiry, limits, a client that never
//! reads, Redis between instances (and dying under them), and shutdown.

use std::time::{Duration, Instant};

use bson::{doc, oid::ObjectId};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream,
    tungstenite::{Message, client::IntoClientRequest, http::HeaderValue},
};

use crate::{
    cache::{RedisProc, redis_settings, unique_prefix},
    helpers::{TestApp, module, spawn_app_with},
};

pub(crate) const PROGRESS: &str = "subscription($u: ID) { progressChanged(userId: $u) { status timeSpentSeconds module { slug } } }";
const NOTIFICATIONS: &str = "subscription { notificationAdded { message read module { slug } } }";
const RECORD: &str =
    "mutation($i: ProgressInput!) { recordProgress(input: $i) { timeSpentSeconds } }";

/// How long a message may take to arrive before the test fails.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// A `graphql-transport-ws` client.
pub(crate) struct Ws(WebSocketStream<MaybeTlsStream<TcpStream>>);

/// How a socket ended: a close code, or dropped without one.
#[derive(Debug, PartialEq)]
pub(crate) enum Ended {
    Closed(u16, String),
    Dropped,
}

fn ws_url(app: &TestApp, path: &str) -> String {
    format!("{}{path}", app.address.replace("http://", "ws://"))
}

async fn connect_with(app: &TestApp, path: &str, protocol: &str) -> Ws {
    let mut request = ws_url(app, path).into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_str(protocol).unwrap(),
    );
    let (stream, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("websocket upgrade");
    if protocol == "graphql-transport-ws" {
        assert_eq!(
            response.headers()["sec-websocket-protocol"],
            "graphql-transport-ws"
        );
    }
    Ws(stream)
}

pub(crate) async fn connect(app: &TestApp) -> Ws {
    connect_with(app, "/graphql/ws", "graphql-transport-ws").await
}

impl Ws {
    async fn send(&mut self, message: Value) {
        self.0
            .send(Message::Text(message.to_string().into()))
            .await
            .expect("send");
    }

    /// Signs in; asserts the ack.
    pub(crate) async fn init(&mut self, token: &str) {
        self.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
            .await;
        assert_eq!(self.next().await["type"], "connection_ack");
    }

    pub(crate) async fn subscribe(&mut self, id: &str, query: &str, variables: Value) {
        self.send(json!({ "type": "subscribe", "id": id, "payload": { "query": query, "variables": variables } }))
            .await;
    }

    /// The next protocol message (answering pings); panics on close.
    pub(crate) async fn next(&mut self) -> Value {
        match self.recv(WAIT).await {
            Ok(v) => v,
            Err(ended) => panic!("socket ended: {ended:?}"),
        }
    }

    /// The next protocol message within `wait`, or how the socket ended.
    pub(crate) async fn recv(&mut self, wait: Duration) -> Result<Value, Ended> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let message = tokio::time::timeout_at(deadline, self.0.next())
                .await
                .expect("no message in time");
            match message {
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == "ping" {
                        self.send(json!({ "type": "pong" })).await;
                        continue;
                    }
                    return Ok(v);
                }
                Some(Ok(Message::Close(frame))) => {
                    let frame = frame.expect("a close frame with a code");
                    return Err(Ended::Closed(frame.code.into(), frame.reason.to_string()));
                }
                Some(Ok(_)) => continue,
                Some(Err(_)) | None => return Err(Ended::Dropped),
            }
        }
    }

    /// Reads until the socket closes; returns the close code and reason.
    async fn closed(&mut self, wait: Duration) -> (u16, String) {
        loop {
            match self.recv(wait).await {
                Ok(_) => continue,
                Err(Ended::Closed(code, reason)) => return (code, reason),
                Err(Ended::Dropped) => panic!("dropped without a close frame"),
            }
        }
    }

    /// Whether a message arrives within `wait`.
    pub(crate) async fn quiet_for(&mut self, wait: Duration) -> bool {
        tokio::time::timeout(wait, self.recv(wait * 2))
            .await
            .is_err()
    }
}

async fn record(app: &TestApp, token: &str, module: ObjectId, secs: i64) {
    app.ok(
        RECORD,
        json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": secs } }),
        Some(token),
    )
    .await;
}

/// The value of an unlabelled metric (0 when absent).
fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn a_learner_follows_their_own_progress_live() {
    let app = spawn_app_with(&[]).await;
    let modules = app.insert_modules(vec![module("live-a", 1, doc! {})]).await;
    let (token, _) = app.register("follower").await;
    let (other, _) = app.register("bystander").await;
    let mut ws = connect(&app).await;
    ws.init(&token).await;
    ws.subscribe("p", PROGRESS, json!({})).await;
    // Let the subscription register before the write.
    tokio::time::sleep(Duration::from_millis(200)).await;

    record(&app, &other, modules[0], 99).await;
    record(&app, &token, modules[0], 42).await;

    let next = ws.next().await;
    assert_eq!(next["type"], "next", "{next}");
    assert_eq!(next["id"], "p");
    let progress = &next["payload"]["data"]["progressChanged"];
    assert_eq!(
        progress["timeSpentSeconds"], 42,
        "only my own write: {next}"
    );
    assert_eq!(progress["module"]["slug"], "live-a");
    assert!(ws.quiet_for(Duration::from_millis(500)).await);

    // `complete` from the client ends it: no more events.
    ws.send(json!({ "type": "complete", "id": "p" })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    record(&app, &token, modules[0], 1).await;
    assert!(ws.quiet_for(Duration::from_millis(500)).await);
    let metrics = app.metrics().await;
    assert_eq!(metric(&metrics, "kairos_ws_connections"), 1.0, "{metrics}");
    assert_eq!(metric(&metrics, "kairos_ws_subscriptions"), 0.0);
    assert!(metric(&metrics, "kairos_live_events_delivered_total") >= 1.0);
}

#[tokio::test]
async fn a_publish_reaches_the_notification_bell_of_a_signed_in_learner() {
    let app = spawn_app_with(&[("JOB_POLL_MS", "100")]).await;
    let admin = app.admin_token().await;
    let (token, _) = app.register("bell").await;
    // Over the upgrade of /graphql itself, the key in lower case.
    let mut ws = connect_with(&app, "/graphql", "graphql-transport-ws").await;
    ws.send(json!({ "type": "connection_init", "payload": { "authorization": format!("bearer {token}") } }))
        .await;
    assert_eq!(ws.next().await["type"], "connection_ack");
    ws.subscribe("n", NOTIFICATIONS, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    app.ok(
        "mutation($i: ModuleInput!) { createModule(input: $i) { id } }",
        json!({ "i": { "slug": "fresh", "title": "Fresh", "summary": "s", "category": "c",
            "level": "BEGINNER", "durationMinutes": 5, "position": 0, "published": true, "content": "" } }),
        Some(&admin),
    )
    .await;

    let next = ws.next().await;
    let added = &next["payload"]["data"]["notificationAdded"];
    assert_eq!(added["message"], "New module published: Fresh", "{next}");
    assert_eq!(added["read"], false);
    assert_eq!(added["module"]["slug"], "fresh");
}

#[tokio::test]
async fn connection_init_needs_a_valid_token() {
    let app = spawn_app_with(&[]).await;
    let (token, _) = app.register("initer").await;

    let mut ws = connect(&app).await;
    ws.send(json!({ "type": "connection_init" })).await;
    assert_eq!(ws.closed(WAIT).await.0, 4401);

    let mut ws = connect(&app).await;
    ws.send(
        json!({ "type": "connection_init", "payload": { "Authorization": "Bearer not.a.token" } }),
    )
    .await;
    assert_eq!(ws.closed(WAIT).await.0, 4403);

    let mut ws = connect(&app).await;
    ws.subscribe("1", PROGRESS, json!({})).await;
    assert_eq!(ws.closed(WAIT).await.0, 4401, "subscribe before the ack");

    let mut ws = connect(&app).await;
    ws.init(&token).await;
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
        .await;
    assert_eq!(ws.closed(WAIT).await.0, 4429, "a second init");

    let mut ws = connect(&app).await;
    ws.send(json!({ "type": "hello" })).await;
    assert_eq!(ws.closed(WAIT).await.0, 4400);

    // Another subprotocol: refused before the upgrade, saying which one.
    let mut other = ws_url(&app, "/graphql/ws").into_client_request().unwrap();
    other.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-ws"),
    );
    match tokio_tungstenite::connect_async(other).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 400);
            let body = String::from_utf8(resp.body().clone().unwrap_or_default()).unwrap();
            assert!(body.contains("graphql-transport-ws"), "{body}");
        }
        other => panic!("expected 400, got {other:?}"),
    }

    // Not an upgrade: a clear refusal.
    let resp = app
        .client
        .get(format!("{}/graphql/ws", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 426);
}

#[tokio::test]
async fn only_an_admin_follows_another_users_progress() {
    let app = spawn_app_with(&[]).await;
    let modules = app
        .insert_modules(vec![module("watched", 1, doc! {})])
        .await;
    let admin = app.admin_token().await;
    let (token, _) = app.register("curious").await;
    let (victim, victim_id) = app.register("watched").await;

    let mut ws = connect(&app).await;
    ws.init(&token).await;
    ws.subscribe("x", PROGRESS, json!({ "u": victim_id })).await;
    let refused = ws.next().await;
    assert_eq!(refused["id"], "x");
    assert_eq!(
        refused["payload"]["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );

    let mut ws = connect(&app).await;
    ws.init(&admin).await;
    ws.subscribe("y", PROGRESS, json!({ "u": victim_id })).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    record(&app, &victim, modules[0], 7).await;
    let next = ws.next().await;
    assert_eq!(
        next["payload"]["data"]["progressChanged"]["timeSpentSeconds"], 7,
        "{next}"
    );

    // An invalid document gets `error` (validation, as over HTTP).
    ws.subscribe(
        "z",
        "subscription { notificationAdded { nope } }",
        json!({}),
    )
    .await;
    let invalid = ws.next().await;
    assert_eq!(invalid["type"], "error", "{invalid}");
    assert_eq!(
        invalid["payload"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
}

#[tokio::test]
async fn the_socket_closes_when_its_token_expires() {
    let app = spawn_app_with(&[("JWT_TTL_SECS", "2")]).await;
    let (token, _) = app.register("shortlived").await;
    let mut ws = connect(&app).await;
    ws.init(&token).await;
    ws.subscribe("p", PROGRESS, json!({})).await;
    let started = Instant::now();
    let (code, reason) = ws.closed(WAIT).await;
    assert_eq!(code, 4403);
    assert!(reason.contains("expired"), "{reason}");
    assert!(started.elapsed() < Duration::from_secs(4));
    // The expired token itself is refused at once.
    let mut ws = connect(&app).await;
    ws.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
        .await;
    // Refused, or (within the 5 s leeway) accepted and closed at once.
    assert_eq!(ws.closed(WAIT).await.0, 4403);
}

#[tokio::test]
async fn subscriptions_and_sockets_are_limited() {
    let app = spawn_app_with(&[
        ("WS_MAX_SUBSCRIPTIONS_PER_CONNECTION", "1"),
        ("WS_MAX_CONNECTIONS_PER_USER", "1"),
        ("WS_MAX_CONNECTIONS_PER_ADDRESS", "3"),
    ])
    .await;
    let (token, _) = app.register("greedy").await;
    let mut first = connect(&app).await;
    first.init(&token).await;
    first.subscribe("1", PROGRESS, json!({})).await;
    first.subscribe("1", PROGRESS, json!({})).await;
    assert_eq!(first.closed(WAIT).await.0, 4409, "an id in use");

    let mut first = connect(&app).await;
    first.init(&token).await;
    first.subscribe("1", PROGRESS, json!({})).await;
    first.subscribe("2", PROGRESS, json!({})).await;
    let over = first.next().await;
    assert_eq!(over["type"], "error");
    assert_eq!(over["id"], "2");
    assert_eq!(over["payload"][0]["extensions"]["code"], "RATE_LIMITED");

    let mut second = connect(&app).await;
    second.send(json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } }))
        .await;
    let (code, reason) = second.closed(WAIT).await;
    assert_eq!(code, 4429);
    assert!(reason.contains("user"), "{reason}");

    // Per address: `first` plus two more are open; the next upgrade is 429.
    let _a = connect(&app).await;
    let _b = connect(&app).await;
    let refused = tokio_tungstenite::connect_async({
        let mut r = ws_url(&app, "/graphql/ws").into_client_request().unwrap();
        r.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static("graphql-transport-ws"),
        );
        r
    })
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 429),
        other => panic!("expected 429, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_is_closed_and_its_queue_stays_bounded() {
    let app = spawn_app_with(&[("WS_SEND_BUFFER", "4"), ("WS_EVENT_BUFFER", "1024")]).await;
    let (token, user) = app.register("sleeper").await;
    let user = ObjectId::parse_str(&user).unwrap();
    // A client with a tiny receive window, so the server's writes block.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let port = app.address.rsplit(':').next().unwrap().parse().unwrap();
    let stream = socket
        .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
        .await
        .unwrap();
    let mut request = ws_url(&app, "/graphql/ws").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (stream, _) = tokio_tungstenite::client_async(request, MaybeTlsStream::Plain(stream))
        .await
        .unwrap();
    let mut ws = Ws(stream);
    ws.init(&token).await;
    // Large messages that need no database (a `module` would be loaded per
    // event, and the surrogate under the whole suite delivers too slowly to
    // fill the kernel's buffers within the deadline).
    let fields: String = (0..90)
        .map(|i| format!(" f{i}: timeSpentSeconds"))
        .collect();
    let wide = format!("subscription {{ progressChanged {{ status{fields} }} }}");
    ws.subscribe("p", &wide, json!({})).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Events as the writes publish them, large and fast, never read.
    let live = app.state.services.live.clone();
    let module = ObjectId::new();
    let padding = "x".repeat(4_000);
    let mut published = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&app.metrics().await, "kairos_ws_connections") > 0.0 {
        assert!(
            Instant::now() < deadline,
            "the silent client was never closed"
        );
        for _ in 0..50 {
            live.publish(vec![kairos::live::LiveEvent {
                topic: kairos::live::Topic::Progress,
                user,
                doc: doc! {
                    "_id": ObjectId::new(), "user_id": user, "module_id": module,
                    "status": "in_progress", "time_spent_seconds": 1i64, "attempts": 0i64,
                    "started_at": bson::DateTime::now(), "updated_at": bson::DateTime::now(),
                    "padding": &padding,
                },
            }]);
            published += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("kairos_ws_closed_total{code=\"1008\"} 1"),
        "{metrics}"
    );
    // What reached the client is what the buffers held, not everything.
    let mut received = 0;
    while let Ok(Some(Ok(message))) =
        tokio::time::timeout(Duration::from_secs(2), ws.0.next()).await
    {
        if let Message::Text(t) = message
            && t.contains("\"next\"")
        {
            received += 1;
        }
    }
    assert!(received < published, "{received} of {published}");
}

#[tokio::test]
async fn events_cross_instances_through_redis_and_survive_it_dying() {
    let mut redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let a = spawn_app_with(&redis_settings(&url, &prefix)).await;
    let db_name = a.state.settings.mongo.database.clone();
    let mut settings = redis_settings(&url, &prefix);
    settings.push(("MONGODB_DB", db_name.as_str()));
    let b = spawn_app_with(&settings).await;
    let modules = a.insert_modules(vec![module("shared", 1, doc! {})]).await;
    let (token, _) = a.register("roamer").await;

    let mut on_a = connect(&a).await;
    on_a.init(&token).await;
    on_a.subscribe("a", PROGRESS, json!({})).await;
    let mut on_b = connect(&b).await;
    on_b.init(&token).await;
    on_b.subscribe("b", PROGRESS, json!({})).await;

    // Until B's listener is subscribed on Redis, a write may not reach it.
    let mut secs = 1;
    let first_b = loop {
        record(&a, &token, modules[0], 1).await;
        let got_a = on_a.next().await;
        assert_eq!(got_a["id"], "a");
        if let Ok(Ok(v)) = tokio::time::timeout(Duration::from_millis(500), on_b.recv(WAIT)).await {
            break v;
        }
        secs += 1;
        assert!(secs < 40, "instance B never heard of a write on A");
    };
    assert_eq!(first_b["id"], "b");
    // Exactly once each: A does not get its own write back from Redis.
    assert!(on_a.quiet_for(Duration::from_millis(500)).await);

    redis.stop();
    record(&a, &token, modules[0], 1).await;
    let local = on_a.next().await;
    assert_eq!(local["type"], "next", "local delivery while Redis is down");
    assert!(on_a.quiet_for(Duration::from_millis(300)).await);

    redis.restart().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        record(&a, &token, modules[0], 1).await;
        assert_eq!(on_a.next().await["type"], "next");
        if let Ok(Ok(v)) = tokio::time::timeout(Duration::from_millis(500), on_b.recv(WAIT)).await {
            assert_eq!(v["id"], "b");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "delivery did not resume after Redis returned"
        );
    }
}

#[tokio::test]
async fn shutdown_closes_every_socket_with_service_restart() {
    let app = spawn_app_with(&[]).await;
    let (token, _) = app.register("leaver").await;
    let mut ws = connect(&app).await;
    ws.init(&token).await;
    ws.subscribe("p", PROGRESS, json!({})).await;
    let mut idle = connect(&app).await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    drop(app);

    let (code, _) = ws.closed(WAIT).await;
    assert_eq!(code, 1012);
    assert_eq!(idle.closed(WAIT).await.0, 1012);
}

#[tokio::test]
async fn a_subscription_over_the_cost_limit_is_refused() {
    // A limit of 4 points (and 4 fields): the fragment is written once but
    // spread four times, so the document names 3 fields and costs 5.
    let app = spawn_app_with(&[("QUERY_COMPLEXITY_LIMIT", "4")]).await;
    let (token, _) = app.register("frugal").await;
    let costly = "subscription { progressChanged { ...M ...M ...M ...M } } fragment M on Progress { module { id } }";
    let cheap = "subscription { progressChanged { module { id } } }";

    let mut ws = connect(&app).await;
    ws.init(&token).await;
    ws.subscribe("costly", costly, json!({})).await;
    let refused = ws.next().await;
    ws.subscribe("cheap", cheap, json!({})).await;

    assert_eq!(refused["type"], "error", "{refused:#}");
    assert_eq!(refused["id"], "costly");
    assert_eq!(
        refused["payload"][0]["extensions"]["code"],
        "BAD_USER_INPUT"
    );
    let message = refused["payload"][0]["message"].as_str().unwrap();
    assert!(message.contains("costs 5 points; at most 4"), "{message}");
    assert!(
        ws.quiet_for(Duration::from_millis(300)).await,
        "the cheap subscription runs and waits for events"
    );
}

#[tokio::test]
async fn starting_a_subscription_spends_the_callers_cost_bucket() {
    // A bucket of 5 points refilling at 1 a second; the subscription below
    // costs 2 (the progress and its module): two start, the third is
    // refused until the bucket refills.
    let app = spawn_app_with(&[
        ("RATE_LIMIT_COST_BUCKET", "5"),
        ("RATE_LIMIT_COST_RESTORE_PER_SECOND", "1"),
    ])
    .await;
    let (token, _) = app.register("eager").await;
    let query = "subscription { progressChanged { module { id } } }";

    let mut ws = connect(&app).await;
    ws.init(&token).await;
    ws.subscribe("1", query, json!({})).await;
    ws.subscribe("2", query, json!({})).await;
    ws.subscribe("3", query, json!({})).await;
    let refused = ws.next().await;

    assert_eq!(refused["type"], "error", "{refused:#}");
    assert_eq!(refused["id"], "3");
    let error = &refused["payload"][0];
    assert_eq!(error["extensions"]["code"], "RATE_LIMITED", "{refused:#}");
    assert!(error["extensions"]["retryAfterSeconds"].as_u64().unwrap() >= 1);
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("costs 2 points"),
        "{refused:#}"
    );
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("kairos_graphql_cost_refusals_total{reason=\"throttled\"} 1"),
        "{metrics}"
    );
}
