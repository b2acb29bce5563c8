//! Many instances behind a real load balancer: Debian's nginx, started here
//! on loopback in front of `kairos serve` processes (the real binary, real
//! SIGTERM) sharing one database and a Redis Cluster; a rolling restart of
//! every instance under continuous traffic.
//!
//! The restart is what an orchestrator does: start the replacement, wait
//! until it is ready, put it in the balancer; SIGTERM the old one, whose
//! `/ready` says 503 at once while it keeps serving for its drain period;
//! take it out of the balancer (an nginx reload, as a readiness-polling
//! balancer or a Kubernetes endpoint update would); it then closes its
//! listener, finishes what is in flight and exits.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use bson::doc;
use kairos::db::{Db, indexes};
use serde_json::{Value, json};

use crate::{
    cache::unique_prefix,
    helpers::{module, mongo_uri, test_settings, unique_db},
    scale::RedisCluster,
};

/// How long a stopping instance keeps serving with `/ready` 503: long enough
/// for the balancer to be reconfigured, as in production (5 s by default).
const DRAIN_SECS: &str = "4";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// What every instance of one deployment shares.
#[derive(Clone)]
pub struct Deployment {
    pub database: String,
    pub redis_url: String,
    pub prefix: String,
    pub dir: PathBuf,
}

/// One `kairos serve` process; killed (SIGKILL) when dropped.
pub struct Instance {
    pub port: u16,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Instance {
    /// Starts `kairos serve` on a free port and waits until `/ready` says
    /// 200 (database and Redis in use).
    pub async fn start(deployment: &Deployment) -> Self {
        Self::start_with(deployment, &[]).await
    }

    /// [`Instance::start`] with `extra` settings in its environment.
    pub async fn start_with(deployment: &Deployment, extra: &[(&str, &str)]) -> Self {
        let port = free_port();
        let log = deployment.dir.join(format!("kairos-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kairos"))
            .arg("serve")
            // No .env of the working tree.
            .current_dir(&deployment.dir)
            .env("MONGODB_URI", mongo_uri())
            .env("MONGODB_DB", &deployment.database)
            .env("MONGODB_MIN_POOL_SIZE", "1")
            .env("MONGODB_COMPRESSORS", "none")
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("REDIS_URL", &deployment.redis_url)
            .env("CACHE_KEY_PREFIX", &deployment.prefix)
            .env("SHUTDOWN_DRAIN_SECS", DRAIN_SECS)
            // Every request comes from nginx's address: take the client's
            // from X-Forwarded-For, and lift the per-address limits (one
            // test client is every learner here), and the caller's cost
            // budget (these tests drive one learner as fast as the machine
            // goes: a fast machine would otherwise meet RATE_LIMITED).
            .env("TRUST_PROXY", "true")
            .env("RATE_LIMIT_PER_SECOND", "1000000")
            .env("RATE_LIMIT_BURST", "1000000")
            .env("RATE_LIMIT_COST_BUCKET", "100000000")
            .env("RATE_LIMIT_COST_RESTORE_PER_SECOND", "100000000")
            .env("AUTH_RATE_LIMIT_PER_MINUTE", "0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(extra.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("spawning kairos serve");
        let instance = Instance {
            port,
            child: Some(child),
            log,
        };
        instance.wait_ready().await;
        instance
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn ready(&self) -> Option<(u16, Value)> {
        let resp = reqwest::get(format!("{}/ready", self.url())).await.ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.json().await.unwrap_or(Value::Null)))
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some((200, body)) = self.ready().await {
                assert_eq!(body["cache_backend"], "redis", "{body}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "instance on {} never became ready; log:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Whether its log names `text` (a worker's owner id, say).
    pub fn logged(&self, text: &str) -> bool {
        std::fs::read_to_string(&self.log).is_ok_and(|log| log.contains(text))
    }

    /// Kills it with SIGKILL, as a crash would: nothing is handed back.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Sends SIGTERM, as an orchestrator stopping it.
    pub fn terminate(&self) {
        let pid = self.child.as_ref().expect("running").id();
        let status = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (after SIGTERM); its exit status.
    pub async fn wait_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        let child = self.child.as_mut().expect("running");
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "instance on {} did not exit within {within:?}; log:\n{}",
                self.port,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Debian's nginx balancing the instances, on a free loopback port, with
/// its configuration, logs and temp files in a directory of its own.
pub struct Nginx {
    pub port: u16,
    dir: PathBuf,
    child: Option<Child>,
    generation: u32,
}

fn nginx_bin() -> String {
    std::env::var("KAIROS_NGINX").unwrap_or_else(|_| {
        ["/usr/sbin/nginx", "nginx"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .unwrap_or("nginx")
            .to_string()
    })
}

impl Nginx {
    pub async fn start(dir: &Path, upstreams: &[u16]) -> Self {
        let dir = dir.join("nginx");
        std::fs::create_dir_all(&dir).unwrap();
        // Workers run as nobody when the master is root: they must reach
        // their temp directories.
        let mut perms = std::fs::metadata(&dir).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&dir, perms.clone()).unwrap();
        std::fs::set_permissions(dir.parent().unwrap(), perms).unwrap();
        let mut nginx = Nginx {
            port: free_port(),
            dir,
            child: None,
            generation: 0,
        };
        nginx.write_config(upstreams);
        let log = std::fs::File::create(nginx.dir.join("stderr.log")).unwrap();
        nginx.child = Some(
            Command::new(nginx_bin())
                .args(["-p", nginx.dir.to_str().unwrap(), "-c", "nginx.conf"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nginx (install it, or run scripts/test)"),
        );
        nginx.wait_generation().await;
        nginx
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn write_config(&mut self, upstreams: &[u16]) {
        self.generation += 1;
        let servers: String = upstreams
            .iter()
            .map(|p| format!("    server 127.0.0.1:{p};\n"))
            .collect();
        let conf = nginx_config(self.port, &servers, self.generation);
        std::fs::write(self.dir.join("nginx.conf"), conf).unwrap();
    }

    /// Balances over `upstreams` from now on: reloads, then waits until
    /// every worker of the previous configuration is gone (having finished
    /// its requests), so no new request reaches a server left out.
    pub async fn set_upstreams(&mut self, upstreams: &[u16]) {
        let master = self.child.as_ref().unwrap().id();
        let old = workers(master);
        self.write_config(upstreams);
        let status = Command::new("kill")
            .args(["-HUP", &master.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        self.wait_generation().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while workers(master).iter().any(|w| old.contains(w)) {
            assert!(Instant::now() < deadline, "nginx's old workers never left");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Until nginx answers with the configuration last written.
    async fn wait_generation(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        let want = self.generation.to_string();
        let client = fresh_client();
        loop {
            if let Ok(r) = client
                .get(format!("{}/__generation", self.url()))
                .send()
                .await
                && r.text().await.ok().as_deref() == Some(want.as_str())
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "nginx never served generation {want}: {}",
                std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SIGTERM: the master stops its workers on the way out.
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let _ = c.wait();
        }
    }
}

/// Children of `pid` (nginx's workers), from /proc.
fn workers(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, not ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            out.push(child);
        }
    }
    out
}

/// The nginx configuration of the tests (scripts/cluster writes the same
/// shape): upstream connections are not kept alive, so a request either
/// reaches an instance on a new connection or is refused before it was
/// sent (and nginx tries the next instance); WebSockets are proxied.
pub fn nginx_config(port: u16, servers: &str, generation: u32) -> String {
    format!(
        r#"daemon off;
master_process on;
worker_processes 1;
pid nginx.pid;
error_log error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path tmp-body;
  proxy_temp_path tmp-proxy;
  fastcgi_temp_path tmp-fastcgi;
  uwsgi_temp_path tmp-uwsgi;
  scgi_temp_path tmp-scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  upstream kairos {{
{servers}  }}
  server {{
    listen 127.0.0.1:{port};
    location = /__generation {{ return 200 "{generation}"; }}
    location / {{
      proxy_pass http://kairos;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_read_timeout 1h;
    }}
  }}
}}
"#
    )
}

/// A client that opens a new connection for every request: an nginx reload
/// closes its old workers' idle keep-alive connections, a race every
/// keep-alive client has with any reloading proxy, not Kairos's to test.
pub fn fresh_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

pub async fn post(
    client: &reqwest::Client,
    url: &str,
    query: &str,
    vars: Value,
    token: Option<&str>,
) -> Result<Value, String> {
    let mut req = client
        .post(format!("{url}/graphql"))
        .json(&json!({ "query": query, "variables": vars }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| format!("transport: {e}"))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("{status}: body: {e}"))?;
    if !status.is_success() || body.get("errors").is_some() {
        return Err(format!("{status}: {body}"));
    }
    Ok(body["data"].clone())
}

const RECORD: &str =
    "mutation($i: ProgressInput!) { recordProgress(input: $i) { timeSpentSeconds } }";
const STATS: &str = "{ progressStats { totalTimeSeconds } }";

/// A database with its indexes applied, as an operator would, first.
pub async fn prepared_database(name: &str) -> Db {
    let settings = test_settings(name, &[]);
    let db = Db::connect(&settings.mongo).await.unwrap();
    let decls = indexes::load(None, 365 * 86_400).unwrap();
    indexes::reconcile(&db, &decls, true).await.unwrap();
    db
}

#[tokio::test]
async fn a_rolling_restart_behind_nginx_under_traffic_costs_no_failed_request_and_loses_nothing() {
    let cluster = RedisCluster::start().await;
    let dir = tempfile::tempdir().unwrap();
    let deployment = Deployment {
        database: unique_db("rolling"),
        redis_url: cluster.url(),
        prefix: unique_prefix(),
        dir: dir.path().to_path_buf(),
    };
    let db = prepared_database(&deployment.database).await;
    let module_id = bson::oid::ObjectId::new();
    let mut m = module("rolling", 1, doc! {});
    m.insert("_id", module_id);
    m.insert("created_at", bson::DateTime::now());
    m.insert("updated_at", bson::DateTime::now());
    db.raw("modules").insert_one(m).await.unwrap();

    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Instance::start(&deployment).await);
    }
    let ports = |xs: &[Instance]| xs.iter().map(|i| i.port).collect::<Vec<_>>();
    let mut nginx = Nginx::start(dir.path(), &ports(&instances)).await;
    let url = nginx.url();
    let client = fresh_client();
    let token = post(
        &client,
        &url,
        "mutation($i: RegisterInput!) { register(input: $i) { token } }",
        json!({ "i": { "email": "roller@example.org", "username": "roller", "password": "correct horse battery" } }),
        None,
    )
    .await
    .unwrap()["register"]["token"]
        .as_str()
        .unwrap()
        .to_string();

    // Steady traffic through nginx: writes by several clients at once, each
    // followed by a read that must already show it (from any instance).
    let stop = Arc::new(AtomicBool::new(false));
    let acknowledged = Arc::new(AtomicI64::new(0));
    let requests = Arc::new(AtomicU32::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, acknowledged, requests, url, token) = (
            stop.clone(),
            acknowledged.clone(),
            requests.clone(),
            url.clone(),
            token.clone(),
        );
        clients.push(tokio::spawn(async move {
            let client = fresh_client();
            let vars = json!({ "i": { "moduleId": module_id.to_hex(), "timeSpentSeconds": 1 } });
            let (mut failures, mut stale, mut worst) = (Vec::new(), 0u32, Duration::ZERO);
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let wrote = post(&client, &url, RECORD, vars.clone(), Some(&token)).await;
                worst = worst.max(t.elapsed());
                requests.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = wrote {
                    failures.push(e);
                    continue;
                }
                let floor = acknowledged.fetch_add(1, Ordering::SeqCst) + 1;
                let t = Instant::now();
                let read = post(&client, &url, STATS, json!({}), Some(&token)).await;
                worst = worst.max(t.elapsed());
                requests.fetch_add(1, Ordering::Relaxed);
                match read {
                    Ok(d) => {
                        if d["progressStats"]["totalTimeSeconds"].as_i64().unwrap() < floor {
                            stale += 1;
                        }
                    }
                    Err(e) => failures.push(e),
                }
            }
            (failures, stale, worst)
        }));
    }

    // Restart every instance, one after the other.
    let mut exits = Vec::new();
    for round in 0..instances.len() {
        let before = requests.load(Ordering::Relaxed);
        let fresh = Instance::start(&deployment).await;
        let mut next: Vec<u16> = ports(&instances);
        next.push(fresh.port);
        nginx.set_upstreams(&next).await;

        let mut old = instances.remove(0);
        let terminated = Instant::now();
        old.terminate();
        // Readiness says so at once, while requests are still served.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match old.ready().await {
                Some((503, body)) => {
                    assert_eq!(body["status"], "draining", "{body}");
                    break;
                }
                Some((200, _)) => {}
                other => panic!("instance {round} stopped answering at once: {other:?}"),
            }
            assert!(Instant::now() < deadline, "/ready never said 503");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // The balancer follows readiness: the instance leaves it.
        next.retain(|p| *p != old.port);
        nginx.set_upstreams(&next).await;
        let reconfigured = terminated.elapsed();
        assert!(
            reconfigured < Duration::from_secs(DRAIN_SECS.parse().unwrap()),
            "the balancer took {reconfigured:?}, longer than the drain period"
        );
        let status = old.wait_exit(Duration::from_secs(30)).await;
        assert!(status.success(), "instance {round} exited with {status}");
        exits.push(terminated.elapsed());
        instances.push(fresh);
        // Traffic went on through the restart.
        assert!(
            requests.load(Ordering::Relaxed) > before,
            "no traffic in round {round}"
        );
    }
    // A little more traffic on the new set, then stop.
    let settle = requests.load(Ordering::Relaxed);
    while requests.load(Ordering::Relaxed) < settle + 20 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let (mut failures, mut stale, mut worst) = (Vec::new(), 0, Duration::ZERO);
    for c in clients {
        let (f, s, w) = c.await.unwrap();
        failures.extend(f);
        stale += s;
        worst = worst.max(w);
    }
    let total_requests = requests.load(Ordering::Relaxed);
    let acknowledged = acknowledged.load(Ordering::SeqCst);
    println!(
        "rolling restart of 3 instances behind nginx: {total_requests} requests, {} failed, \
         {stale} stale reads, worst {worst:?}; SIGTERM to exit: {exits:?}; first failures: {:?}",
        failures.len(),
        failures.iter().take(3).collect::<Vec<_>>()
    );
    assert!(failures.is_empty(), "failed requests: {failures:?}");
    assert_eq!(stale, 0, "stale reads through the balancer");

    // Nothing lost: every acknowledged recordProgress is in the database.
    let stored = db
        .raw("progress")
        .find_one(doc! { "module_id": module_id })
        .await
        .unwrap()
        .expect("the progress document");
    let stored = stored
        .get("time_spent_seconds")
        .map(|v| match v {
            bson::Bson::Int32(n) => *n as i64,
            bson::Bson::Int64(n) => *n,
            other => panic!("time_spent_seconds: {other}"),
        })
        .unwrap();
    assert_eq!(stored, acknowledged, "acknowledged writes vs the database");
    let through = post(&client, &url, STATS, json!({}), Some(&token))
        .await
        .unwrap();
    assert_eq!(through["progressStats"]["totalTimeSeconds"], acknowledged);
    // The old instances exited promptly after their drain period.
    for e in &exits {
        assert!(*e < Duration::from_secs(10), "exit took {e:?}");
    }
}
