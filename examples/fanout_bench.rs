//! Fan-out speed and what it does to reads: publishes a module to every
//! seeded learner and measures notifications/s, and the latency of reads
//! (catalogue page and progressStats, cache off so they reach the
//! database) while idle and while the fan-out runs.
//!
//! MONGODB_URI=mongodb://127.0.0.1:27017 LEARNERS=20000 \
//!   cargo run --release --example fanout_bench

use std::time::{Duration, Instant};

use kairos::{
    app::Application,
    config::{Settings, Source},
    db::{Db, indexes},
    seed::{self, SeedOptions},
};
use serde_json::{Value, json};

struct Vars(Vec<(&'static str, String)>);

impl Source for Vars {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    vars: Value,
) -> anyhow::Result<Value> {
    let mut req = client
        .post(url)
        .json(&json!({ "query": query, "variables": vars }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Ok(req.send().await?.json().await?)
}

/// Sequential reads by `readers` clients until `until` says stop; latencies.
async fn read_load(
    url: &str,
    token: &str,
    readers: usize,
    stop: impl Fn() -> bool + Clone + Send + 'static,
) -> Vec<Duration> {
    let tasks = (0..readers).map(|i| {
        let (url, token, stop) = (url.to_string(), token.to_string(), stop.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut lat = Vec::new();
            let queries = [
                "{ modules(first: 20) { totalCount nodes { id title } } }",
                "{ progressStats { modulesTotal modulesStarted completionRate } }",
            ];
            let mut n = i;
            while !stop() {
                let t = Instant::now();
                let ok = post(&client, &url, Some(&token), queries[n % 2], json!({})).await;
                lat.push(t.elapsed());
                assert!(
                    ok.map(|b| b.get("errors").is_none()).unwrap_or(false),
                    "read failed"
                );
                n += 1;
            }
            lat
        })
    });
    let mut all = Vec::new();
    for t in futures::future::join_all(tasks).await {
        all.extend(t.expect("reader"));
    }
    all.sort();
    all
}

fn pct(v: &[Duration], p: f64) -> f64 {
    v[((v.len() as f64 - 1.0) * p) as usize].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let learners: u64 = std::env::var("LEARNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let vars = Vars(vec![
        ("MONGODB_URI", uri),
        ("MONGODB_DB", "kairos_bench_fanout".into()),
        ("BIND_ADDR", "127.0.0.1:0".into()),
        ("MONGODB_COMPRESSORS", "none".into()),
        ("CACHE_DISABLED", "true".into()),
        ("RATE_LIMIT_PER_SECOND", "1000000".into()),
        ("RATE_LIMIT_BURST", "1000000".into()),
        ("AUTH_RATE_LIMIT_PER_MINUTE", "0".into()),
        ("JOB_POLL_MS", "100".into()),
    ]);
    let settings = Settings::from_source(&vars)?;
    let db = Db::connect(&settings.mongo).await?;
    let opts = SeedOptions {
        users: learners,
        modules: 40,
        progress_per_user: 2,
        content_bytes: 2_000,
        reset: true,
        batch: 10_000,
    };
    seed::seed(&db, &opts).await?;
    db.raw("notifications").delete_many(bson::doc! {}).await?;
    indexes::reconcile(&db, &indexes::load(None, 365 * 86_400)?, true).await?;

    let app = Application::build(settings).await?;
    let url = format!("http://127.0.0.1:{}/graphql", app.port());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let login =
        "mutation($l: String!, $p: String!) { login(input: {login: $l, password: $p}) { token } }";
    let token_of = |b: Value| {
        b["data"]["login"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let admin = token_of(
        post(
            &client,
            &url,
            None,
            login,
            json!({ "l": "admin", "p": seed::DEMO_PASSWORD }),
        )
        .await?,
    );
    let learner = token_of(
        post(
            &client,
            &url,
            None,
            login,
            json!({ "l": "learner000001", "p": seed::DEMO_PASSWORD }),
        )
        .await?,
    );

    let readers = 4;
    let idle_until = Instant::now() + Duration::from_secs(10);
    let idle = read_load(&url, &learner, readers, move || {
        Instant::now() >= idle_until
    })
    .await;

    let create = "mutation($i: ModuleInput!) { createModule(input: $i) { id } }";
    let input = json!({ "i": { "slug": "fanout-bench", "title": "Fan-out bench", "summary": "s", "category": "bench",
        "level": "BEGINNER", "durationMinutes": 10, "position": 1000, "published": true, "content": "c" } });
    let t0 = Instant::now();
    let created = post(&client, &url, Some(&admin), create, input).await?;
    let mutation_ms = t0.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(created.get("errors").is_none(), "createModule: {created}");

    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = done.clone();
    let during = tokio::spawn({
        let (url, learner) = (url.clone(), learner.clone());
        async move {
            read_load(&url, &learner, readers, move || {
                flag.load(std::sync::atomic::Ordering::Relaxed)
            })
            .await
        }
    });
    let jobs = "{ notificationJobs(first: 1) { edges { node { state total notified } } } }";
    let (state, notified) = loop {
        let b = post(&client, &url, Some(&admin), jobs, json!({})).await?;
        let job = &b["data"]["notificationJobs"]["edges"][0]["node"];
        let state = job["state"].as_str().unwrap_or("").to_string();
        anyhow::ensure!(b.get("errors").is_none(), "notificationJobs: {b}");
        if state == "DONE" || state == "FAILED" {
            break (state, job["notified"].as_i64().unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let fanout_secs = t0.elapsed().as_secs_f64();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let during = during.await?;

    println!("| learners | job | notified | fan-out (s) | notifications/s | createModule (ms) |");
    println!("|---:|---|---:|---:|---:|---:|");
    println!(
        "| {learners} | {state} | {notified} | {fanout_secs:.2} | {:.0} | {mutation_ms:.1} |",
        notified as f64 / fanout_secs
    );
    println!();
    println!("| reads ({readers} clients, cache off) | requests | p50 ms | p95 ms | p99 ms |");
    println!("|---|---:|---:|---:|---:|");
    for (name, v) in [("idle", &idle), ("during fan-out", &during)] {
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.2} |",
            v.len(),
            pct(v, 0.5),
            pct(v, 0.95),
            pct(v, 0.99)
        );
    }
    let _ = tx.send(());
    db.db.drop().await?;
    Ok(())
}
