//! Scaling out for real: instances sharing a Redis Cluster (3 primaries, 3
//! replicas) or a Sentinel-watched Redis, started here from Debian's
//! `redis-server` on free loopback ports; a primary killed under traffic;
//! readiness while starting and draining.

use std::{
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use bson::{doc, oid::ObjectId};
use serde_json::{Value, json};

use crate::{
    cache::{redis_settings, two_instances_on, wait_backend},
    helpers::{TestApp, code, module, spawn_app_with},
};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn redis_bin() -> String {
    std::env::var("KAIROS_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// `redis-cli` beside the server binary.
fn redis_cli(args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(args)
        .output()
        .expect("redis-cli (install redis-tools, or run scripts/test)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A child process killed when dropped.
struct Proc(Option<Child>);

impl Proc {
    fn spawn(cmd: &mut Command) -> Self {
        Proc(Some(
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawning a redis process"),
        ))
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

async fn wait_port(port: u16) {
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("nothing listens on {port}");
}

/// A Redis Cluster of 3 primaries and 3 replicas.
pub struct RedisCluster {
    ports: Vec<u16>,
    procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

impl RedisCluster {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<u16> = (0..6).map(|_| free_port()).collect();
        let mut procs = Vec::new();
        for p in &ports {
            let conf = dir.path().join(format!("nodes-{p}.conf"));
            // The bus port on its own free port: the default, port + 10000,
            // does not exist above 55535.
            let bus = free_port().to_string();
            procs.push(Proc::spawn(Command::new(redis_bin()).args([
                "--port",
                &p.to_string(),
                "--cluster-port",
                &bus,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--cluster-node-timeout",
                "1000",
                "--cluster-replica-validity-factor",
                "0",
                "--dir",
                dir.path().to_str().unwrap(),
            ])));
        }
        for p in &ports {
            wait_port(*p).await;
        }
        let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
        let mut args = vec!["--cluster", "create"];
        args.extend(nodes.iter().map(String::as_str));
        args.extend(["--cluster-replicas", "1", "--cluster-yes"]);
        let created = redis_cli(&args);
        assert!(created.contains("All 16384 slots covered"), "{created}");
        let cluster = RedisCluster {
            ports,
            procs,
            _dir: dir,
        };
        cluster.wait_ok().await;
        cluster
    }

    /// `redis-cluster://` with every node as a seed.
    pub fn url(&self) -> String {
        let seeds: Vec<String> = self.ports[1..]
            .iter()
            .map(|p| format!("node=127.0.0.1:{p}"))
            .collect();
        format!(
            "redis-cluster://127.0.0.1:{}?{}",
            self.ports[0],
            seeds.join("&")
        )
    }

    fn alive(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports
            .iter()
            .zip(&self.procs)
            .filter(|(_, p)| p.0.is_some())
            .map(|(port, _)| *port)
    }

    /// Until every live node says `cluster_state:ok` and 3 live primaries
    /// serve (after a kill: the dead one replaced by its promoted replica).
    pub async fn wait_ok(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let alive: Vec<u16> = self.alive().collect();
            let primaries = self.primaries();
            let ok = primaries.iter().all(|(p, _)| alive.contains(p))
                && self.alive().all(|p| {
                    redis_cli(&["-p", &p.to_string(), "cluster", "info"])
                        .contains("cluster_state:ok")
                })
                && primaries.len() == 3;
            if ok {
                return;
            }
            assert!(Instant::now() < deadline, "the cluster never became ok");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Live primaries as (port, slot ranges), read from a live node.
    fn primaries(&self) -> Vec<(u16, Vec<(u16, u16)>)> {
        let any = self.alive().next().unwrap();
        redis_cli(&["-p", &any.to_string(), "cluster", "nodes"])
            .lines()
            .filter(|l| l.contains("master") && !l.contains("fail"))
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let port = f[1].split(['@', ':']).nth(1)?.parse().ok()?;
                let ranges = f[8..]
                    .iter()
                    .filter(|r| !r.starts_with('['))
                    .map(|r| match r.split_once('-') {
                        Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                        None => (r.parse().unwrap(), r.parse().unwrap()),
                    })
                    .collect();
                Some((port, ranges))
            })
            .collect()
    }

    /// Kills the primary that holds `key`; returns its port.
    pub fn kill_primary_of(&mut self, key: &str) -> u16 {
        let any = self.alive().next().unwrap();
        let slot: u16 = redis_cli(&["-p", &any.to_string(), "cluster", "keyslot", key])
            .trim()
            .parse()
            .unwrap();
        let port = self
            .primaries()
            .into_iter()
            .find(|(_, ranges)| ranges.iter().any(|(a, b)| (*a..=*b).contains(&slot)))
            .map(|(p, _)| p)
            .expect("a primary holds every slot");
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        self.procs[i].kill();
        port
    }

    /// A live primary holding a pub/sub subscriber (an instance's live
    /// event listener), from `CLIENT LIST`.
    pub fn primary_with_a_subscriber(&self) -> Option<u16> {
        self.primaries().into_iter().map(|(p, _)| p).find(|p| {
            redis_cli(&["-p", &p.to_string(), "client", "list"])
                .lines()
                .any(|l| l.split_whitespace().any(|f| f == "sub=1"))
        })
    }

    /// Kills the process on `port`.
    pub fn kill_port(&mut self, port: u16) {
        let i = self.ports.iter().position(|p| *p == port).unwrap();
        self.procs[i].kill();
    }

    /// Keys of this deployment on every live primary.
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        self.primaries()
            .iter()
            .flat_map(|(p, _)| {
                redis_cli(&[
                    "-p",
                    &p.to_string(),
                    "--scan",
                    "--pattern",
                    &format!("{prefix}*"),
                ])
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>()
            })
            .collect()
    }
}

/// A master, a replica and three sentinels watching them.
pub struct RedisSentinel {
    master: Proc,
    master_port: u16,
    replica_port: u16,
    sentinels: Vec<u16>,
    _procs: Vec<Proc>,
    _dir: tempfile::TempDir,
}

const SERVICE: &str = "kairos";

impl RedisSentinel {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (master_port, replica_port) = (free_port(), free_port());
        let server = |port: u16, extra: &[&str]| {
            let mut c = Command::new(redis_bin());
            c.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                // A replica writes an RDB when it syncs: keep it out of the
                // working tree.
                .args(["--dir", dir.path().to_str().unwrap()])
                .args(extra);
            Proc::spawn(&mut c)
        };
        let master = server(master_port, &[]);
        let master_arg = master_port.to_string();
        let mut procs = vec![server(
            replica_port,
            &["--replicaof", "127.0.0.1", &master_arg],
        )];
        wait_port(master_port).await;
        wait_port(replica_port).await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            let port = free_port();
            let conf = dir.path().join(format!("sentinel-{port}.conf"));
            std::fs::write(
                &conf,
                format!(
                    "port {port}\nbind 127.0.0.1\nsentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n\
                     sentinel down-after-milliseconds {SERVICE} 1000\n\
                     sentinel failover-timeout {SERVICE} 5000\nsentinel parallel-syncs {SERVICE} 1\n"
                ),
            )
            .unwrap();
            procs.push(Proc::spawn(
                Command::new(redis_bin())
                    .arg(conf.to_str().unwrap())
                    .arg("--sentinel"),
            ));
            sentinels.push(port);
        }
        for p in &sentinels {
            wait_port(*p).await;
        }
        // Until the replica is in sync and the sentinels know each other.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !redis_cli(&["-p", &replica_port.to_string(), "info", "replication"])
            .contains("master_link_status:up")
            || !sentinels.iter().all(|s| {
                // Each sentinel knows the replica (found through the
                // master's INFO) and the two other sentinels.
                let seen = redis_cli(&["-p", &s.to_string(), "sentinel", "master", SERVICE]);
                seen.contains("num-slaves\n1") && seen.contains("num-other-sentinels\n2")
            })
        {
            assert!(Instant::now() < deadline, "sentinel setup never settled");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        RedisSentinel {
            master,
            master_port,
            replica_port,
            sentinels,
            _procs: procs,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "redis-sentinel://127.0.0.1:{}?sentinelServiceName={SERVICE}&node=127.0.0.1:{}&node=127.0.0.1:{}",
            self.sentinels[0], self.sentinels[1], self.sentinels[2]
        )
    }

    pub fn kill_master(&mut self) {
        self.master.kill();
    }

    /// Until the sentinels name the replica as master.
    pub async fn wait_promoted(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let want = self.replica_port.to_string();
        loop {
            let addr = redis_cli(&[
                "-p",
                &self.sentinels[0].to_string(),
                "sentinel",
                "get-master-addr-by-name",
                SERVICE,
            ]);
            if addr.lines().nth(1) == Some(want.as_str()) {
                assert_ne!(self.master_port, self.replica_port);
                return;
            }
            assert!(Instant::now() < deadline, "no promotion: {addr}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `REDIS_TIMEOUT_MS` where no fault is injected: a loaded CI machine must
/// not turn a slow answer into a Redis error (50 ms elsewhere).
const CALM_TIMEOUT_MS: &str = "1000";

/// Two instances on one database and one Redis (any topology), both on
/// the Redis backend, and an admin token.
async fn two_instances(url: &str) -> (TestApp, TestApp, String, String) {
    two_instances_on(url, &[("REDIS_TIMEOUT_MS", CALM_TIMEOUT_MS)]).await
}

/// The caller's cost budget, lifted: the traffic tests drive one learner
/// as fast as the machine goes, and a fast machine must not meet
/// RATE_LIMITED (tests/api/cost.rs tests the budget). Every instance on
/// one Redis must have the same budget: they share the caller's bucket.
const LIFTED_BUDGET: [(&str, &str); 2] = [
    ("RATE_LIMIT_COST_BUCKET", "100000000"),
    ("RATE_LIMIT_COST_RESTORE_PER_SECOND", "100000000"),
];
const STATS: &str = "{ progressStats { totalTimeSeconds } }";
const RECORD: &str =
    "mutation($i: ProgressInput!) { recordProgress(input: $i) { timeSpentSeconds } }";
const MODULES: &str = "{ modules { totalCount nodes { slug title } } }";
const CACHE_STATS: &str = "{ cacheStats { backend hits errors } }";

async fn total(app: &TestApp, token: &str) -> i64 {
    app.ok(STATS, json!({}), Some(token)).await["progressStats"]["totalTimeSeconds"]
        .as_i64()
        .unwrap()
}

fn record_vars(module: &ObjectId, secs: i64) -> Value {
    json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": secs } })
}

/// Reads `query` twice on `app` and checks the second is a Redis hit that
/// costs the database nothing; returns the value.
async fn redis_hit(app: &TestApp, admin: &str, query: &str, token: Option<&str>) -> Value {
    app.ok(query, json!({}), token).await;
    let hits = app.ok(CACHE_STATS, json!({}), Some(admin)).await["cacheStats"]["hits"]
        .as_i64()
        .unwrap();
    let commands = app.db.commands.total();
    let value = app.ok(query, json!({}), token).await;
    let stats = app.ok(CACHE_STATS, json!({}), Some(admin)).await["cacheStats"].clone();
    assert_eq!(stats["backend"], "redis", "{stats}");
    assert!(stats["hits"].as_i64().unwrap() > hits, "not a hit: {stats}");
    // cacheStats itself reads no collection; the query was served by Redis.
    assert_eq!(
        app.db.commands.total(),
        commands,
        "{query} touched the database"
    );
    value
}

#[tokio::test]
async fn two_instances_on_a_redis_cluster_stay_coherent_after_every_kind_of_write() {
    let cluster = RedisCluster::start().await;
    let (a, b, admin, prefix) = two_instances(&cluster.url()).await;
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("clustered").await;

    // Progress: B caches, A writes, B sees it; both read from Redis.
    assert_eq!(
        redis_hit(&b, &admin, STATS, Some(&token)).await["progressStats"]["totalTimeSeconds"],
        0
    );
    a.ok(RECORD, record_vars(&ids[0], 42), Some(&token)).await;
    assert_eq!(
        redis_hit(&b, &admin, STATS, Some(&token)).await["progressStats"]["totalTimeSeconds"],
        42
    );
    assert_eq!(
        redis_hit(&a, &admin, STATS, Some(&token)).await["progressStats"]["totalTimeSeconds"],
        42
    );

    // Module create, update, publish and delete on A; the list on B.
    let slugs = |v: &Value| -> Vec<String> {
        v["modules"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                format!(
                    "{}={}",
                    n["slug"].as_str().unwrap(),
                    n["title"].as_str().unwrap()
                )
            })
            .collect()
    };
    let before = slugs(&redis_hit(&b, &admin, MODULES, None).await);
    let created = a
        .ok(
            "mutation($i: ModuleInput!) { createModule(input: $i) { id } }",
            json!({ "i": { "slug": "fresh", "title": "Fresh", "summary": "s", "category": "c",
                "level": "BEGINNER", "durationMinutes": 5, "position": 9, "published": false, "content": "x" } }),
            Some(&admin),
        )
        .await["createModule"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        slugs(&b.ok(MODULES, json!({}), None).await),
        before,
        "unpublished stays hidden"
    );
    let update =
        "mutation($id: ID!, $i: ModuleUpdateInput!) { updateModule(id: $id, input: $i) { id } }";
    a.ok(
        update,
        json!({ "id": created, "i": { "published": true } }),
        Some(&admin),
    )
    .await;
    let published = slugs(&redis_hit(&b, &admin, MODULES, None).await);
    assert!(
        published.contains(&"fresh=Fresh".to_string()),
        "{published:?}"
    );
    a.ok(
        update,
        json!({ "id": created, "i": { "title": "Renamed" } }),
        Some(&admin),
    )
    .await;
    let renamed = slugs(&redis_hit(&b, &admin, MODULES, None).await);
    assert!(
        renamed.contains(&"fresh=Renamed".to_string()),
        "{renamed:?}"
    );
    let by_id = "query($id: ID!) { module(id: $id) { title } }";
    assert_eq!(
        b.ok(by_id, json!({ "id": created }), None).await["module"]["title"],
        "Renamed"
    );
    a.ok(
        "mutation($id: ID!) { deleteModule(id: $id) }",
        json!({ "id": created }),
        Some(&admin),
    )
    .await;
    assert_eq!(slugs(&redis_hit(&b, &admin, MODULES, None).await), before);
    let gone = b.gql(by_id, json!({ "id": created }), None).await;
    assert!(
        gone["data"]["module"].is_null() || code(&gone) == "NOT_FOUND",
        "a deleted module is still served: {gone}"
    );

    // clearCache on A drops the entries on every primary, seen from B.
    assert!(
        !cluster.keys(&prefix).iter().all(|k| k.contains("gen:")),
        "values are cached"
    );
    let dropped = a
        .ok("mutation { clearCache }", json!({}), Some(&admin))
        .await["clearCache"]
        .as_i64()
        .unwrap();
    assert!(dropped >= 2, "dropped {dropped}");
    // Generations and the callers' cost buckets are no cached values.
    let left: Vec<String> = cluster
        .keys(&prefix)
        .into_iter()
        .filter(|k| !k.contains("gen:") && !k.contains("{bucket:"))
        .collect();
    assert!(left.is_empty(), "left after clearCache: {left:?}");
    assert_eq!(
        redis_hit(&b, &admin, STATS, Some(&token)).await["progressStats"]["totalTimeSeconds"],
        42
    );

    // The values spread over more than one primary.
    let slots: std::collections::HashSet<String> = cluster
        .keys(&prefix)
        .iter()
        .map(|k| redis_cli(&["-p", &cluster.ports[0].to_string(), "cluster", "keyslot", k]))
        .collect();
    assert!(slots.len() > 2, "keys in {} slots", slots.len());

    // A persisted query registered on A runs by its hash on B.
    let query = "{ modules { totalCount } }";
    let hash: String = kairos::graphql::documents::sha256(query)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect();
    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let post = |app: &TestApp, body: Value| {
        let req = app
            .client
            .post(format!("{}/graphql", app.address))
            .json(&body);
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let unknown = post(&b, json!({ "extensions": ext })).await;
    assert_eq!(
        unknown["errors"][0]["extensions"]["reason"], "PERSISTED_QUERY_NOT_FOUND",
        "{unknown}"
    );
    post(&a, json!({ "query": query, "extensions": ext })).await;
    let by_hash = post(&b, json!({ "extensions": ext })).await;
    assert!(
        by_hash["data"]["modules"]["totalCount"].is_number(),
        "{by_hash}"
    );
    for app in [&a, &b] {
        let s = app.ok(CACHE_STATS, json!({}), Some(&admin)).await["cacheStats"].clone();
        assert_eq!(s["errors"], 0, "no Redis error on a healthy cluster: {s}");
    }
}

/// `REDIS_TIMEOUT_MS` of the failover tests: what a request may wait on a
/// dead node before the instance serves from memory.
const FAILOVER_TIMEOUT_MS: &str = "200";

/// Steady traffic on two instances (writes on A, reads on both) while
/// `failover` kills the primary holding the given key and returns once its
/// replica took over. Checks: no client error, no write lost, both
/// instances back on Redis with hits, and no stale read once they are.
async fn failover_under_traffic(url: &str, failover: impl AsyncFnOnce(&str)) {
    let settings = [
        ("REDIS_TIMEOUT_MS", FAILOVER_TIMEOUT_MS),
        LIFTED_BUDGET[0],
        LIFTED_BUDGET[1],
    ];
    let (a, b, admin, prefix) = two_instances_on(url, &settings).await;
    let a = Arc::new(a);
    let b = Arc::new(b);
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("failover").await;
    assert_eq!(total(&b, &token).await, 0);

    let written = Arc::new(std::sync::atomic::AtomicI64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let traffic = {
        let (a, b, token, written, stop) = (
            a.clone(),
            b.clone(),
            token.clone(),
            written.clone(),
            stop.clone(),
        );
        let module = ids[0];
        tokio::spawn(async move {
            let (mut errors, mut worst, mut reads) = (0u32, Duration::ZERO, 0u32);
            let mut stale = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = Instant::now();
                let body = a.gql(RECORD, record_vars(&module, 1), Some(&token)).await;
                worst = worst.max(t.elapsed());
                if body.get("errors").is_some() {
                    errors += 1;
                    continue;
                }
                let expected = written.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                for app in [&a, &b] {
                    let t = Instant::now();
                    let body = app.gql(STATS, json!({}), Some(&token)).await;
                    worst = worst.max(t.elapsed());
                    reads += 1;
                    match body["data"]["progressStats"]["totalTimeSeconds"].as_i64() {
                        Some(seen) if seen < expected => {
                            stale.push((Instant::now(), seen, expected))
                        }
                        Some(_) => {}
                        None => errors += 1,
                    }
                }
            }
            (errors, worst, reads, stale)
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let gen_key = format!("{prefix}gen:global");
    let killed_at = Instant::now();
    failover(&gen_key).await;
    let promoted_at = Instant::now();
    wait_backend(&a, &admin, "redis").await;
    wait_backend(&b, &admin, "redis").await;
    let recovered_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (errors, worst, reads, stale) = traffic.await.unwrap();
    let after_recovery = stale.iter().filter(|(t, ..)| *t >= recovered_at).count();
    println!(
        "failover: {reads} reads, {errors} errors, worst {worst:?}, promotion after {:?}, \
         back on redis {:?} after it; stale reads: {} before promotion, {} between promotion \
         and recovery, {after_recovery} after",
        promoted_at - killed_at,
        recovered_at - promoted_at,
        stale.iter().filter(|(t, ..)| *t < promoted_at).count(),
        stale
            .iter()
            .filter(|(t, ..)| *t >= promoted_at && *t < recovered_at)
            .count(),
    );
    assert_eq!(errors, 0, "client errors during the failover");
    assert_eq!(after_recovery, 0, "stale reads after recovery: {stale:?}");
    // A hang would show as seconds; REDIS_TIMEOUT_MS is 200 ms.
    assert!(worst < Duration::from_secs(2), "worst request {worst:?}");
    // No write lost: the database and both instances agree with the count.
    let expected = written.load(std::sync::atomic::Ordering::SeqCst);
    assert!(expected > 0);
    assert_eq!(total(&a, &token).await, expected);
    assert_eq!(
        redis_hit(&b, &admin, STATS, Some(&token)).await["progressStats"]["totalTimeSeconds"],
        expected
    );
    // And coherent again: a write on A is seen on B at once.
    a.ok(RECORD, record_vars(&ids[0], 1), Some(&token)).await;
    assert_eq!(total(&b, &token).await, expected + 1);
}

#[tokio::test]
async fn a_cluster_primary_killed_under_traffic_costs_no_error_and_no_stale_read_after_promotion() {
    let mut cluster = RedisCluster::start().await;
    let url = cluster.url();
    failover_under_traffic(&url, async |key: &str| {
        cluster.kill_primary_of(key);
        cluster.wait_ok().await;
    })
    .await;
}

#[tokio::test]
async fn a_sentinel_master_killed_under_traffic_costs_no_error_and_no_stale_read_after_promotion() {
    let mut sentinel = RedisSentinel::start().await;
    let url = sentinel.url();
    failover_under_traffic(&url, async |_key: &str| {
        sentinel.kill_master();
        sentinel.wait_promoted().await;
    })
    .await;
}

#[tokio::test]
async fn a_starting_instance_uses_redis_from_its_first_request() {
    let cluster = RedisCluster::start().await;
    let (a, _b, admin, prefix) = two_instances(&cluster.url()).await;
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("starting").await;
    let db = a.state.settings.mongo.database.clone();
    let url = cluster.url();
    let mut settings = redis_settings(&url, &prefix);
    settings.push(("REDIS_TIMEOUT_MS", CALM_TIMEOUT_MS));
    settings.push(("MONGODB_DB", db.as_str()));
    for round in 0..3i64 {
        let c = spawn_app_with(&settings).await;
        // No waiting: the first requests already go through Redis.
        let ready = c
            .client
            .get(format!("{}/ready", c.address))
            .send()
            .await
            .unwrap();
        assert_eq!(ready.status(), 200);
        let body: Value = ready.json().await.unwrap();
        assert_eq!(body["cache_backend"], "redis", "{body}");
        assert_eq!(total(&c, &token).await, round * 7);
        a.ok(RECORD, record_vars(&ids[0], 7), Some(&token)).await;
        assert_eq!(
            total(&c, &token).await,
            (round + 1) * 7,
            "stale on a new instance"
        );
        let s = c.ok(CACHE_STATS, json!({}), Some(&admin)).await;
        assert_eq!(s["cacheStats"]["backend"], "redis");
    }
}

#[tokio::test]
async fn the_port_answers_at_once_when_the_database_is_down_and_ready_follows_it() {
    // Nothing listens on this port: the database is "down".
    let dead = free_port();
    let uri = format!("mongodb://127.0.0.1:{dead}/?serverSelectionTimeoutMS=300");
    let settings = crate::helpers::test_settings(
        &crate::helpers::unique_db("down"),
        &[
            ("MONGODB_URI", uri.as_str()),
            ("MONGODB_SERVER_SELECTION_TIMEOUT_MS", "300"),
        ],
    );
    let started = Instant::now();
    let app = kairos::app::Application::build(settings).await.unwrap();
    let built = started.elapsed();
    let address = format!("http://127.0.0.1:{}", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let health = client
        .get(format!("{address}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = client.get(format!("{address}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // The start waited on nothing of the database (its timeouts are 300 ms
    // here, 5 s by default); a generous bound that catches the old wait.
    assert!(built < Duration::from_millis(300), "build took {built:?}");
    drop(tx);
}

#[tokio::test]
async fn on_shutdown_ready_says_503_while_requests_are_still_served_then_the_port_closes() {
    let app = spawn_app_with(&[("SHUTDOWN_DRAIN_SECS", "1")]).await;
    let client = reqwest::Client::new();
    let ready = |c: &reqwest::Client| c.get(format!("{}/ready", app.address)).send();
    assert_eq!(ready(&client).await.unwrap().status(), 200);
    let TestApp {
        address, shutdown, ..
    } = app;
    let started = Instant::now();
    shutdown.send(()).unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let draining = client.get(format!("{address}/ready")).send().await.unwrap();
    assert_eq!(draining.status(), 503);
    let body: Value = draining.json().await.unwrap();
    assert_eq!(body["status"], "draining");
    // Still serving during the drain period.
    let fresh = reqwest::Client::new();
    let served = fresh
        .post(format!("{address}/graphql"))
        .json(&json!({ "query": "{ modules { totalCount } }" }))
        .send()
        .await
        .unwrap();
    assert_eq!(served.status(), 200);
    // Then the listener closes, promptly after the drain period.
    loop {
        let probe = reqwest::Client::new()
            .get(format!("{address}/health"))
            .send()
            .await;
        if probe.is_err() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "closed before the drain period"
    );
}

/// Until a write on `from` reaches `to`'s subscriber (its listener may not
/// be subscribed on Redis yet, or be re-subscribing after a failover: events
/// published meanwhile are lost, as documented); the writer's own
/// subscriber gets each write exactly once.
async fn until_delivered(
    from: &TestApp,
    own: &mut crate::live::Ws,
    to: &mut crate::live::Ws,
    token: &str,
    module: ObjectId,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        from.ok(RECORD, record_vars(&module, 1), Some(token)).await;
        assert_eq!(own.next().await["type"], "next", "local delivery");
        if let Ok(Ok(v)) =
            tokio::time::timeout(Duration::from_millis(500), to.recv(crate::live::WAIT)).await
        {
            assert_eq!(v["type"], "next", "{v}");
            assert!(v["payload"]["data"]["progressChanged"].is_object(), "{v}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a write never reached the other instance's subscriber"
        );
    }
}

/// Reads what is still arriving (writes retried by [`until_delivered`]
/// may be heard late) until the socket is quiet.
async fn settle(ws: &mut crate::live::Ws) {
    while !ws.quiet_for(Duration::from_millis(300)).await {}
}

#[tokio::test]
async fn a_subscription_on_one_instance_hears_writes_on_another_over_the_cluster_and_after_a_failover()
 {
    let mut cluster = RedisCluster::start().await;
    let (a, b, _admin, _prefix) = two_instances(&cluster.url()).await;
    let ids = a.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = a.register("listener").await;
    let mut on_a = crate::live::connect(&a).await;
    on_a.init(&token).await;
    on_a.subscribe("a", crate::live::PROGRESS, json!({})).await;
    let mut on_b = crate::live::connect(&b).await;
    on_b.init(&token).await;
    on_b.subscribe("b", crate::live::PROGRESS, json!({})).await;

    // Both ways, each event exactly once per subscriber.
    until_delivered(&a, &mut on_a, &mut on_b, &token, ids[0]).await;
    until_delivered(&b, &mut on_b, &mut on_a, &token, ids[0]).await;
    settle(&mut on_a).await;
    settle(&mut on_b).await;
    // Now steady: every write is heard on the other instance.
    for _ in 0..5 {
        a.ok(RECORD, record_vars(&ids[0], 1), Some(&token)).await;
        assert_eq!(on_a.next().await["id"], "a");
        assert_eq!(on_b.next().await["id"], "b");
    }

    // The primary an instance's listener is subscribed on dies; its replica
    // takes over and the listeners subscribe again there.
    let port = cluster
        .primary_with_a_subscriber()
        .expect("a listener subscribed on a primary");
    cluster.kill_port(port);
    cluster.wait_ok().await;
    until_delivered(&a, &mut on_a, &mut on_b, &token, ids[0]).await;
    until_delivered(&b, &mut on_b, &mut on_a, &token, ids[0]).await;
    settle(&mut on_a).await;
    settle(&mut on_b).await;
    for _ in 0..5 {
        b.ok(RECORD, record_vars(&ids[0], 1), Some(&token)).await;
        assert_eq!(on_b.next().await["id"], "b");
        assert_eq!(on_a.next().await["id"], "a");
    }
    assert!(on_a.quiet_for(Duration::from_millis(300)).await);
    assert!(on_b.quiet_for(Duration::from_millis(300)).await);
}
