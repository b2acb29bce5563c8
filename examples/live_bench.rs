//! Subscriptions at scale: the memory of many open subscriptions on one
//! instance, and the time from a write to its delivery to many subscribers.
//!
//! The service runs in a child process (this example started again with
//! `serve`), so that its resident memory (`VmRSS`) is the service's alone;
//! the clients run here, over loopback, with the `graphql-transport-ws`
//! protocol. An admin opens `CONNECTIONS` sockets, each with one
//! `progressChanged(userId:)` subscription: `SUBSCRIBERS` of them watch
//! learner A, the rest learner B (idle, as most sockets of a real service
//! are). Then:
//! - memory: the service's RSS before the first socket and with every
//!   socket subscribed (as its metrics count them), per connection;
//! - delivery: learner A records progress `WRITES` times, one write at a
//!   time; each write is timed from the moment its mutation is sent, and
//!   from the moment its answer (the commit) arrives, to the moment each
//!   of the `SUBSCRIBERS` sockets receives its `next` message.
//!
//! MONGODB_URI=mongodb://127.0.0.1:27017 \
//!   cargo run --release --example live_bench -- 10000 1000 50

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use kairos::{
    app::Application,
    config::{ProcessEnv, Settings, Source},
    db::{Db, indexes},
    seed::{self, SeedOptions},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt, BufReader},
    sync::{Semaphore, mpsc},
};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest, http::HeaderValue};

/// Settings from pairs (the seeding parent's).
struct Vars(Vec<(&'static str, String)>);

impl Source for Vars {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

async fn post(
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let client = reqwest::Client::new();
    let mut request = client
        .post(url)
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let body: Value = request.send().await?.json().await?;
    anyhow::ensure!(body.get("errors").is_none(), "{body}");
    Ok(body["data"].clone())
}

/// The child: the service itself, printing its port.
async fn serve() -> anyhow::Result<()> {
    let app = Application::build(Settings::from_source(&ProcessEnv)?).await?;
    println!("port {}", app.port());
    app.run_until_stopped().await
}

type Sink = Arc<
    tokio::sync::Mutex<
        futures::stream::SplitSink<
            tokio_tungstenite::WebSocketStream<
                tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
            >,
            Message,
        >,
    >,
>;

/// Opens one signed-in socket; its reader answers pings and reports each
/// `next` message (with the time it arrived) on `deliveries`.
async fn open(
    ws_url: &str,
    token: &str,
    deliveries: Option<mpsc::UnboundedSender<Instant>>,
) -> anyhow::Result<Sink> {
    let mut request = ws_url.into_client_request()?;
    request.headers_mut().insert(
        "sec-websocket-protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(request).await?;
    let init = json!({ "type": "connection_init", "payload": { "Authorization": format!("Bearer {token}") } });
    ws.send(Message::text(init.to_string())).await?;
    match ws.next().await {
        Some(Ok(Message::Text(t))) if t.contains("connection_ack") => {}
        other => anyhow::bail!("no ack: {other:?}"),
    }
    let (sink, mut stream) = ws.split();
    let sink: Sink = Arc::new(tokio::sync::Mutex::new(sink));
    let pong = sink.clone();
    tokio::spawn(async move {
        while let Some(Ok(message)) = stream.next().await {
            let Message::Text(text) = message else {
                continue;
            };
            if text.contains("\"next\"") {
                if let Some(tx) = &deliveries {
                    let _ = tx.send(Instant::now());
                }
            } else if text.contains("\"ping\"")
                && pong
                    .lock()
                    .await
                    .send(Message::text(r#"{"type":"pong"}"#))
                    .await
                    .is_err()
            {
                break;
            }
        }
    });
    Ok(sink)
}

/// Subscribes an open socket to `user`'s progress.
async fn subscribe(sink: &Sink, user: &str) -> anyhow::Result<()> {
    let subscribe = json!({ "type": "subscribe", "id": "1", "payload": {
        "query": "subscription($u: ID) { progressChanged(userId: $u) { timeSpentSeconds } }",
        "variables": { "u": user },
    }});
    sink.lock()
        .await
        .send(Message::text(subscribe.to_string()))
        .await?;
    Ok(())
}

async fn subscriptions(base: &str) -> anyhow::Result<f64> {
    let text = reqwest::get(format!("{base}/metrics"))
        .await?
        .text()
        .await?;
    Ok(text
        .lines()
        .find_map(|l| l.strip_prefix("kairos_ws_subscriptions "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("serve") {
        return serve().await;
    }
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|v| v.parse().ok()).unwrap_or(default);
    let (connections, subscribers, writes) = (arg(0, 10_000), arg(1, 1_000), arg(2, 50));
    anyhow::ensure!(
        subscribers <= connections,
        "more subscribers than connections"
    );
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let database = "kairos_bench_live";

    // A small catalogue and three accounts: the admin and two learners.
    let seed_settings = Settings::from_source(&Vars(vec![
        ("MONGODB_URI", uri.clone()),
        ("MONGODB_DB", database.into()),
    ]))?;
    let db = Db::connect(&seed_settings.mongo).await?;
    let opts = SeedOptions {
        users: 2,
        modules: 5,
        progress_per_user: 0,
        content_bytes: 200,
        reset: true,
        batch: 1_000,
    };
    seed::seed(&db, &opts).await?;
    indexes::reconcile(&db, &indexes::load(None, 365 * 86_400)?, true).await?;
    db.shutdown().await;

    let limit = (connections * 2).to_string();
    let mut child = tokio::process::Command::new(std::env::current_exe()?)
        .arg("serve")
        .env("MONGODB_URI", &uri)
        .env("MONGODB_DB", database)
        .env("BIND_ADDR", "127.0.0.1:0")
        .env("MONGODB_COMPRESSORS", "none")
        .env("RATE_LIMIT_PER_SECOND", "1000000")
        .env("RATE_LIMIT_BURST", "1000000")
        .env("AUTH_RATE_LIMIT_PER_MINUTE", "0")
        .env("WORKER_ENABLED", "false")
        // One admin opens every subscription: lift its cost bucket.
        .env("RATE_LIMIT_COST_BUCKET", "1000000000")
        .env("RATE_LIMIT_COST_RESTORE_PER_SECOND", "1000000000")
        .env("WS_MAX_CONNECTIONS_PER_USER", &limit)
        .env("WS_MAX_CONNECTIONS_PER_ADDRESS", &limit)
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let pid = child.id().expect("child pid");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let port = loop {
        let line = lines
            .next_line()
            .await?
            .expect("the service printed its port");
        if let Some(p) = line.strip_prefix("port ") {
            break p.trim().to_string();
        }
    };
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}/graphql");
    let ws_url = format!("ws://127.0.0.1:{port}/graphql");

    let login = "mutation($l: String!, $p: String!) { login(input: {login: $l, password: $p}) { token user { id } } }";
    let as_user = |name: &'static str| {
        let url = url.clone();
        async move {
            let data = post(
                &url,
                None,
                login,
                json!({ "l": name, "p": seed::DEMO_PASSWORD }),
            )
            .await?;
            anyhow::Ok((
                data["login"]["token"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                data["login"]["user"]["id"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            ))
        }
    };
    let (admin, _) = as_user("admin").await?;
    let (learner_a, a) = as_user("learner000001").await?;
    let (_, b) = as_user("learner000002").await?;
    let module = post(
        &url,
        None,
        "{ modules(first: 1) { nodes { id } } }",
        json!({}),
    )
    .await?["modules"]["nodes"][0]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // A warm-up write, so that the first timed one is like the others.
    let record = "mutation($i: ProgressInput!) { recordProgress(input: $i) { timeSpentSeconds } }";
    let input = json!({ "i": { "moduleId": module, "timeSpentSeconds": 1 } });
    post(&url, Some(&learner_a), record, input.clone()).await?;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = rss_kib(pid);
    let opened = Instant::now();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let gate = Arc::new(Semaphore::new(200));
    let mut tasks = Vec::with_capacity(connections);
    for i in 0..connections {
        let (ws_url, admin, gate) = (ws_url.clone(), admin.clone(), gate.clone());
        let deliveries = (i < subscribers).then(|| tx.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire().await;
            open(&ws_url, &admin, deliveries).await
        }));
    }
    let mut sinks = Vec::with_capacity(connections);
    for task in tasks {
        sinks.push(task.await??);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signed_in = rss_kib(pid);
    for (i, sink) in sinks.iter().enumerate() {
        subscribe(sink, if i < subscribers { &a } else { &b }).await?;
    }
    while subscriptions(&base).await? < connections as f64 {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let open_secs = opened.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss_kib(pid);
    let per = |from: u64, to: u64| to.saturating_sub(from) as f64 / connections as f64;
    println!(
        "{connections} subscribed sockets opened in {open_secs:.1} s; service RSS {before} KiB → {signed_in} KiB signed in → {after} KiB subscribed: {:.1} KiB per connection ({:.1} the signed-in socket, {:.1} its subscription)",
        per(before, after),
        per(before, signed_in),
        per(signed_in, after),
    );

    let mut from_send = Vec::with_capacity(writes * subscribers);
    let mut from_commit = Vec::with_capacity(writes * subscribers);
    let mut lost = 0;
    for _ in 0..writes {
        let sent = Instant::now();
        post(&url, Some(&learner_a), record, input.clone()).await?;
        let committed = Instant::now();
        let mut got = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while got < subscribers {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(at)) => {
                    from_send.push(at.duration_since(sent));
                    from_commit.push(at.saturating_duration_since(committed));
                    got += 1;
                }
                _ => {
                    lost += subscribers - got;
                    break;
                }
            }
        }
    }
    from_send.sort();
    from_commit.sort();
    println!(
        "{writes} writes × {subscribers} subscribers ({} deliveries, {lost} missing): from the mutation sent p50 {:.1} ms p99 {:.1} ms max {:.1} ms; from its answer p50 {:.1} ms p99 {:.1} ms",
        from_send.len(),
        pct(&from_send, 0.5),
        pct(&from_send, 0.99),
        pct(&from_send, 1.0),
        pct(&from_commit, 0.5),
        pct(&from_commit, 0.99),
    );
    child.kill().await?;
    Ok(())
}
