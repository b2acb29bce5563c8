//! The cache against a real redis-server: hits, freshness after writes,
//! coherence across instances, and Redis dying, returning and hanging.

use std::{
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use bson::{doc, oid::ObjectId};
use serde_json::{Value, json};

use crate::helpers::{TestApp, module, spawn_app_with};

/// A redis-server of the test's own, on a free port.
pub struct RedisProc {
    pub port: u16,
    child: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl RedisProc {
    pub async fn start() -> Self {
        let mut r = RedisProc {
            port: free_port(),
            child: None,
        };
        r.restart().await;
        r
    }

    pub async fn restart(&mut self) {
        let bin = std::env::var("KAIROS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let child = Command::new(bin)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (install it, or run scripts/test)");
        self.child = Some(child);
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("redis-server did not start");
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        self.stop();
    }
}

const STATS: &str = "{ progressStats { totalTimeSeconds modulesStarted } }";
const RECORD: &str =
    "mutation($i: ProgressInput!) { recordProgress(input: $i) { timeSpentSeconds } }";
const CACHE_STATS: &str = "{ cacheStats { backend redisConfigured redisAvailable hits misses hitRate memoryEntries breaker } }";

async fn cache_stats(app: &TestApp, admin: &str) -> Value {
    app.ok(CACHE_STATS, json!({}), Some(admin)).await["cacheStats"].clone()
}

/// Waits until the instance reports `backend` (the breaker's probe runs
/// every 50 ms with a back-off of at most 15 s).
pub async fn wait_backend(app: &TestApp, admin: &str, backend: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if cache_stats(app, admin).await["backend"] == backend {
            return;
        }
        assert!(Instant::now() < deadline, "backend never became {backend}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two instances sharing one database and one Redis key prefix, both
/// already on the Redis backend; also the Redis (to stop) and an admin token.
pub async fn two_instances_on_one_redis() -> (TestApp, TestApp, RedisProc, String) {
    two_instances_on_one_redis_with(&[]).await
}

/// Two instances sharing one database and a Redis of their own, with
/// `extra` settings, both using Redis; and an admin's token.
pub async fn two_instances_on_one_redis_with(
    extra: &[(&str, &str)],
) -> (TestApp, TestApp, RedisProc, String) {
    let redis = RedisProc::start().await;
    let (a, b, admin, _) = two_instances_on(&redis.url(), extra).await;
    (a, b, redis, admin)
}

/// Two instances sharing one database and the Redis at `url` (under a
/// key prefix of their own, returned last), with `extra` settings, both
/// using Redis; and an admin's token.
pub async fn two_instances_on(
    url: &str,
    extra: &[(&str, &str)],
) -> (TestApp, TestApp, String, String) {
    let prefix = unique_prefix();
    let mut settings = redis_settings(url, &prefix);
    settings.extend_from_slice(extra);
    let a = spawn_app_with(&settings).await;
    let db_name = a.state.settings.mongo.database.clone();
    settings.push(("MONGODB_DB", db_name.as_str()));
    let b = spawn_app_with(&settings).await;
    let admin = a.admin_token().await;
    wait_backend(&a, &admin, "redis").await;
    wait_backend(&b, &admin, "redis").await;
    (a, b, admin, prefix)
}

pub fn redis_settings<'a>(url: &'a str, prefix: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("REDIS_URL", url),
        ("CACHE_KEY_PREFIX", prefix),
        ("REDIS_TIMEOUT_MS", "50"),
    ]
}

pub fn unique_prefix() -> String {
    format!("kt{}:", ObjectId::new().to_hex())
}

async fn record(app: &TestApp, token: &str, module: &ObjectId, secs: i64) {
    app.ok(
        RECORD,
        json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": secs } }),
        Some(token),
    )
    .await;
}

#[tokio::test]
async fn a_second_read_is_served_by_redis_without_touching_the_database() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let app = spawn_app_with(&redis_settings(&url, &prefix)).await;
    let admin = app.admin_token().await;
    wait_backend(&app, &admin, "redis").await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = app.register("cached").await;
    record(&app, &token, &ids[0], 30).await;

    let first = app.ok(STATS, json!({}), Some(&token)).await;
    let before = app.db.commands.total();
    let second = app.ok(STATS, json!({}), Some(&token)).await;
    assert_eq!(
        app.db.commands.total(),
        before,
        "a hit costs no database command"
    );
    assert_eq!(first, second);
    let modules = "{ modules { totalCount nodes { slug } } }";
    app.ok(modules, json!({}), None).await;
    let before = app.db.commands.total();
    app.ok(modules, json!({}), None).await;
    assert_eq!(app.db.commands.total(), before);

    let stats = cache_stats(&app, &admin).await;
    assert_eq!(stats["backend"], "redis");
    assert!(stats["hits"].as_i64().unwrap() >= 2, "{stats}");
    assert!(stats["hitRate"].as_f64().unwrap() > 0.0);
}

#[tokio::test]
async fn reads_are_fresh_after_every_progress_write() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let app = spawn_app_with(&redis_settings(&url, &prefix)).await;
    let admin = app.admin_token().await;
    wait_backend(&app, &admin, "redis").await;
    let ids = app
        .insert_modules(vec![module("a", 1, doc! {}), module("b", 2, doc! {})])
        .await;
    let (token, _) = app.register("fresh").await;
    let q = "{ progressStats { totalTimeSeconds modulesStarted } myProgress { totalCount } history { nodes { kind } } }";

    let empty = app.ok(q, json!({}), Some(&token)).await;
    assert_eq!(empty["progressStats"]["modulesStarted"], 0);
    app.ok(
        "mutation($m: ID!) { startModule(moduleId: $m) { status } }",
        json!({ "m": ids[1].to_hex() }),
        Some(&token),
    )
    .await;
    let started = app.ok(q, json!({}), Some(&token)).await;
    assert_eq!(started["progressStats"]["modulesStarted"], 1);
    assert_eq!(started["myProgress"]["totalCount"], 1);
    assert_eq!(started["history"]["nodes"].as_array().unwrap().len(), 1);
    for (i, secs) in [10, 20, 30].into_iter().enumerate() {
        record(&app, &token, &ids[0], secs).await;
        let after = app.ok(q, json!({}), Some(&token)).await;
        let expected: i64 = [10, 20, 30][..=i].iter().sum();
        assert_eq!(after["progressStats"]["totalTimeSeconds"], expected);
        assert_eq!(after["myProgress"]["totalCount"], 2);
        assert_eq!(after["history"]["nodes"].as_array().unwrap().len(), 3 + i);
    }
}

#[tokio::test]
async fn two_instances_sharing_one_redis_stay_coherent() {
    let (a, b, _redis, _admin) = two_instances_on_one_redis().await;
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("shared").await;

    // B caches the stats; A writes; B must not serve its cached value.
    assert_eq!(
        b.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        0
    );
    assert_eq!(
        b.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        0
    );
    record(&a, &token, &ids[0], 42).await;
    assert_eq!(
        b.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        42
    );
}

#[tokio::test]
async fn killing_redis_mid_traffic_costs_no_error_and_a_write_during_the_outage_is_seen_after_it() {
    let (a, b, mut redis, admin) = two_instances_on_one_redis().await;
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("outage").await;
    record(&a, &token, &ids[0], 5).await;
    // B caches the value in Redis before the outage.
    assert_eq!(
        b.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        5
    );

    redis.stop();
    let mut slowest = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        let body = a.gql(STATS, json!({}), Some(&token)).await;
        slowest = slowest.max(t.elapsed());
        assert!(
            body.get("errors").is_none(),
            "request {i} during the outage: {body}"
        );
    }
    // Each request waits on Redis for at most REDIS_TIMEOUT_MS; this bound
    // only catches a hang (the driver's or fred's multi-second defaults).
    assert!(
        slowest < Duration::from_secs(2),
        "slowest request {slowest:?}"
    );
    wait_backend(&a, &admin, "memory").await;
    // A write during the outage, on A.
    record(&a, &token, &ids[0], 10).await;
    assert_eq!(
        a.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        15
    );

    redis.restart().await;
    wait_backend(&a, &admin, "redis").await;
    wait_backend(&b, &admin, "redis").await;
    // Redis lost its data here, but it need not have: the epoch bump makes
    // every pre-outage entry invalid. Either way B must see the write.
    assert_eq!(
        b.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        15
    );
    assert_eq!(
        a.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        15
    );
}

#[tokio::test]
async fn pre_outage_entries_kept_by_redis_are_not_served_after_a_write_it_missed() {
    // Redis keeps running; this instance alone loses it (a black hole in
    // front of it), writes, and gets it back: its old entry must be dead.
    let redis = RedisProc::start().await;
    let proxy = BlackHoleProxy::start(redis.port).await;
    let (url, prefix) = (proxy.url(), unique_prefix());
    let app = spawn_app_with(&redis_settings(&url, &prefix)).await;
    let admin = app.admin_token().await;
    wait_backend(&app, &admin, "redis").await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = app.register("partition").await;
    record(&app, &token, &ids[0], 1).await;
    assert_eq!(
        app.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        1
    );

    proxy.set_black_hole(true);
    let t = Instant::now();
    record(&app, &token, &ids[0], 2).await;
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "a hanging Redis held a write {:?}",
        t.elapsed()
    );
    wait_backend(&app, &admin, "memory").await;
    for _ in 0..5 {
        let t = Instant::now();
        let body = app.gql(STATS, json!({}), Some(&token)).await;
        assert!(body.get("errors").is_none(), "{body}");
        assert!(t.elapsed() < Duration::from_secs(2));
        assert_eq!(body["data"]["progressStats"]["totalTimeSeconds"], 3);
    }
    proxy.set_black_hole(false);
    wait_backend(&app, &admin, "redis").await;
    assert_eq!(
        app.ok(STATS, json!({}), Some(&token)).await["progressStats"]["totalTimeSeconds"],
        3
    );
}

/// `REDIS_TIMEOUT_MS` of the silent-Redis test: long, so that one wait and
/// three are far apart whatever the machine's load.
const SILENT_TIMEOUT_MS: u64 = 2_000;

#[tokio::test]
async fn a_redis_gone_silent_costs_a_request_one_timeout_at_most() {
    // Redis stops answering on open connections (a black hole): no
    // connection error opens the breaker, only failures do. A signed-in
    // cached read makes several Redis calls (the cost bucket without
    // leases, the response cache, the cached value, the settlement): it
    // waits out the first and skips the others.
    let redis = RedisProc::start().await;
    let proxy = BlackHoleProxy::start(redis.port).await;
    let (url, prefix) = (proxy.url(), unique_prefix());
    let timeout = SILENT_TIMEOUT_MS.to_string();
    let mut settings = redis_settings(&url, &prefix);
    settings.extend([
        ("REDIS_TIMEOUT_MS", timeout.as_str()),
        ("RATE_LIMIT_COST_LEASE", "0"),
    ]);
    let app = spawn_app_with(&settings).await;
    let admin = app.admin_token().await;
    wait_backend(&app, &admin, "redis").await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = app.register("silent").await;
    record(&app, &token, &ids[0], 4).await;
    app.ok(STATS, json!({}), Some(&token)).await;

    proxy.set_black_hole(true);
    let t = Instant::now();
    let body = app.gql(STATS, json!({}), Some(&token)).await;
    let took = t.elapsed();
    assert!(body.get("errors").is_none(), "{body}");
    assert_eq!(body["data"]["progressStats"]["totalTimeSeconds"], 4);
    // One wait is SILENT_TIMEOUT_MS plus the request's own work; two
    // would be twice the timeout.
    assert!(
        took < Duration::from_millis(2 * SILENT_TIMEOUT_MS),
        "the request waited {took:?}: more than one REDIS_TIMEOUT_MS"
    );
    proxy.set_black_hole(false);
    wait_backend(&app, &admin, "redis").await;
}

#[tokio::test]
async fn a_redis_that_accepts_but_never_answers_costs_no_error() {
    // A socket that accepts connections and never replies.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let url = format!("redis://127.0.0.1:{port}");
    let prefix = unique_prefix();
    let app = spawn_app_with(&redis_settings(&url, &prefix)).await;
    app.insert_modules(vec![module("m", 1, doc! {})]).await;
    for _ in 0..10 {
        let t = Instant::now();
        let body = app.gql("{ modules { totalCount } }", json!({}), None).await;
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(body["data"]["modules"]["totalCount"], 1);
        assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    }
    let admin = app.admin_token().await;
    let stats = cache_stats(&app, &admin).await;
    assert_eq!(stats["backend"], "memory");
    assert_eq!(stats["redisConfigured"], true);
    assert_eq!(stats["redisAvailable"], false);
    let ready: Value = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["redis"], "down");
}

#[tokio::test]
async fn without_redis_the_memory_cache_serves_and_clear_cache_drops_by_prefix() {
    // The classes themselves, without whole responses in front of them.
    let app = spawn_app_with(&[("CACHE_RESPONSES", "false")]).await;
    let admin = app.admin_token().await;
    app.insert_modules(vec![module("m", 1, doc! {})]).await;
    app.ok("{ modules { totalCount } }", json!({}), None).await;
    app.ok("{ modules(first: 5) { totalCount } }", json!({}), None)
        .await;
    let before = app.db.commands.total();
    app.ok("{ modules { totalCount } }", json!({}), None).await;
    assert_eq!(app.db.commands.total(), before);
    let stats = cache_stats(&app, &admin).await;
    assert_eq!(
        (
            stats["backend"].as_str(),
            stats["redisConfigured"].as_bool()
        ),
        (Some("memory"), Some(false))
    );
    assert!(stats["memoryEntries"].as_i64().unwrap() >= 2);

    let dropped = app
        .ok(
            "mutation { clearCache(prefix: \"modules:\") }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert!(dropped["clearCache"].as_i64().unwrap() >= 2, "{dropped}");
    let before = app.db.commands.total();
    app.ok("{ modules { totalCount } }", json!({}), None).await;
    assert_eq!(
        app.db.commands.total(),
        before + 1,
        "a miss after clearCache"
    );
    // Admin only.
    let (learner, _) = app.register("nosy").await;
    let body = app
        .gql("mutation { clearCache }", json!({}), Some(&learner))
        .await;
    assert_eq!(crate::helpers::code(&body), "FORBIDDEN");
    let body = app.gql(CACHE_STATS, json!({}), None).await;
    assert_eq!(crate::helpers::code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn clear_cache_drops_redis_entries_by_prefix() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let mut settings = redis_settings(&url, &prefix);
    settings.push(("CACHE_RESPONSES", "false"));
    let app = spawn_app_with(&settings).await;
    let admin = app.admin_token().await;
    wait_backend(&app, &admin, "redis").await;
    app.insert_modules(vec![module("m", 1, doc! {})]).await;
    app.ok("{ modules { totalCount } }", json!({}), None).await;
    app.ok("{ modules(first: 3) { totalCount } }", json!({}), None)
        .await;
    let (token, _) = app.register("clear").await;
    app.ok(STATS, json!({}), Some(&token)).await;
    let dropped = app
        .ok(
            "mutation { clearCache(prefix: \"modules:\") }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(dropped["clearCache"], 2);
    let all = app
        .ok("mutation { clearCache }", json!({}), Some(&admin))
        .await;
    assert_eq!(all["clearCache"], 1, "the stats entry");
    // Glob characters in a prefix match literally.
    let none = app
        .ok(
            "mutation { clearCache(prefix: \"*\") }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(none["clearCache"], 0);
}

/// A TCP proxy to Redis that can turn into a black hole (accepts, never
/// forwards), to cut one instance off while Redis keeps its data.
pub struct BlackHoleProxy {
    port: u16,
    hole: tokio::sync::watch::Sender<bool>,
}

/// Waits until the watched flag equals `target`.
async fn wait_until(watch: &mut tokio::sync::watch::Receiver<bool>, target: bool) {
    loop {
        let now = *watch.borrow_and_update();
        if now == target || watch.changed().await.is_err() {
            return;
        }
    }
}

impl BlackHoleProxy {
    pub async fn start(target: u16) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (hole, watch) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let mut watch = watch.clone();
                tokio::spawn(async move {
                    let dark = *watch.borrow_and_update();
                    if dark {
                        // Hold the socket silently until the hole closes.
                        wait_until(&mut watch, false).await;
                        return;
                    }
                    let Ok(mut outbound) =
                        tokio::net::TcpStream::connect(("127.0.0.1", target)).await
                    else {
                        return;
                    };
                    let mut buf_in = vec![0u8; 16 * 1024];
                    let mut buf_out = vec![0u8; 16 * 1024];
                    loop {
                        use tokio::io::{AsyncReadExt, AsyncWriteExt};
                        tokio::select! {
                            // Going dark: stop forwarding, keep the socket
                            // open and silent until the hole closes.
                            _ = wait_until(&mut watch, true) => {
                                wait_until(&mut watch, false).await;
                                return;
                            }
                            n = inbound.read(&mut buf_in) => match n {
                                Ok(0) | Err(_) => return,
                                Ok(n) => if outbound.write_all(&buf_in[..n]).await.is_err() { return },
                            },
                            n = outbound.read(&mut buf_out) => match n {
                                Ok(0) | Err(_) => return,
                                Ok(n) => if inbound.write_all(&buf_out[..n]).await.is_err() { return },
                            },
                        }
                    }
                });
            }
        });
        BlackHoleProxy { port, hole }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn set_black_hole(&self, on: bool) {
        let _ = self.hole.send(on);
    }
}

#[tokio::test]
async fn metrics_expose_cache_hits_backend_breaker_and_the_pool() {
    let app = spawn_app_with(&[("CACHE_RESPONSES", "false")]).await;
    app.insert_modules(vec![module("m", 1, doc! {})]).await;
    for _ in 0..3 {
        app.ok("{ modules { totalCount } }", json!({}), None).await;
    }
    let text = app.metrics().await;
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing from /metrics:\n{text}"))
    };
    assert_eq!(value("kairos_cache_hits_total{class=\"modules\"}"), 2.0);
    assert_eq!(value("kairos_cache_misses_total{class=\"modules\"}"), 1.0);
    assert_eq!(value("kairos_cache_backend{backend=\"memory\"}"), 1.0);
    assert_eq!(value("kairos_cache_breaker_open"), 0.0);
    assert!(value("kairos_mongodb_pool_connections_open") >= 1.0);
    assert!(value("kairos_cache_memory_entries") >= 1.0);
}

/// Waits until the instance's change follower runs (`/ready`).
async fn wait_following(app: &TestApp) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let ready: Value = app
            .client
            .get(format!("{}/ready", app.address))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if ready["cache_follow"] == "following" {
            return;
        }
        assert!(Instant::now() < deadline, "never following: {ready}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Reads `query` on `app` until `done` holds or five seconds pass.
async fn fresh_within_seconds(
    app: &TestApp,
    query: &str,
    token: Option<&str>,
    done: impl Fn(&Value) -> bool,
) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let body = app.gql(query, json!({}), token).await;
        if done(&body) {
            return;
        }
        assert!(Instant::now() < deadline, "still stale: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Two instances on one database, following its changes, with `extra`.
async fn two_following(extra: &[(&str, &str)]) -> (TestApp, TestApp) {
    let mut settings = extra.to_vec();
    settings.push(("CACHE_FOLLOW_CHANGES", "true"));
    let a = spawn_app_with(&settings).await;
    let db_name = a.state.settings.mongo.database.clone();
    settings.push(("MONGODB_DB", db_name.as_str()));
    let b = spawn_app_with(&settings).await;
    // The followers start by dropping what may have been missed: only
    // then is the cache the tests' own.
    wait_following(&a).await;
    wait_following(&b).await;
    (a, b)
}

#[tokio::test]
async fn two_instances_following_changes_on_one_redis_stay_coherent_and_see_other_writers() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let (a, b) = two_following(&redis_settings(&url, &prefix)).await;
    let admin = a.admin_token().await;
    wait_backend(&a, &admin, "redis").await;
    wait_backend(&b, &admin, "redis").await;
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("follows").await;

    // As without following: once a mutation on A returns, B serves
    // nothing older, at once.
    for _ in 0..2 {
        let stats = b.ok(STATS, json!({}), Some(&token)).await;
        assert_eq!(stats["progressStats"]["totalTimeSeconds"], 0);
    }
    record(&a, &token, &ids[0], 42).await;
    let stats = b.ok(STATS, json!({}), Some(&token)).await;
    assert_eq!(stats["progressStats"]["totalTimeSeconds"], 42);
    let read = format!("{{ module(id: \"{}\") {{ title }} }}", ids[0].to_hex());
    for app in [&a, &b] {
        assert_eq!(
            app.ok(&read, json!({}), None).await["module"]["title"],
            "Module m"
        );
    }
    a.ok(
        "mutation($id: ID!) { updateModule(id: $id, input: { title: \"Through the API\" }) { id } }",
        json!({ "id": ids[0].to_hex() }),
        Some(&admin),
    )
    .await;
    for app in [&a, &b] {
        let data = app.ok(&read, json!({}), None).await;
        assert_eq!(data["module"]["title"], "Through the API");
    }

    // Another tool's writes: within seconds on both.
    a.db.raw("modules")
        .update_one(
            doc! { "_id": ids[0] },
            doc! { "$set": { "title": "Directly" } },
        )
        .await
        .unwrap();
    a.db.raw("progress")
        .update_many(doc! {}, doc! { "$inc": { "time_spent_seconds": 8_i64 } })
        .await
        .unwrap();
    for app in [&a, &b] {
        fresh_within_seconds(app, &read, None, |d| {
            d["data"]["module"]["title"] == "Directly"
        })
        .await;
        fresh_within_seconds(app, STATS, Some(&token), |d| {
            d["data"]["progressStats"]["totalTimeSeconds"] == 50
        })
        .await;
    }
    a.db.raw("modules")
        .delete_one(doc! { "_id": ids[0] })
        .await
        .unwrap();
    for app in [&a, &b] {
        fresh_within_seconds(app, &read, None, |d| {
            d["errors"][0]["extensions"]["code"] == "NOT_FOUND"
        })
        .await;
    }
}

#[tokio::test]
async fn without_redis_two_following_instances_learn_each_others_writes_from_the_change_stream() {
    // Each has only its memory cache: what A writes reaches B's cache only
    // through B's follower.
    let (a, b) = two_following(&[]).await;
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("alone").await;
    for _ in 0..2 {
        let stats = b.ok(STATS, json!({}), Some(&token)).await;
        assert_eq!(stats["progressStats"]["totalTimeSeconds"], 0);
    }
    record(&a, &token, &ids[0], 42).await;
    // A's own answer is exact at once.
    let stats = a.ok(STATS, json!({}), Some(&token)).await;
    assert_eq!(stats["progressStats"]["totalTimeSeconds"], 42);
    fresh_within_seconds(&b, STATS, Some(&token), |d| {
        d["data"]["progressStats"]["totalTimeSeconds"] == 42
    })
    .await;
}
