//! Cached vs uncached throughput and latency of the hot reads, with the
//! memory backend and (when REDIS_URL is set) the Redis backend.
//!
//! Seeds one database, then for each (backend, cached?) pair starts the
//! real service on port 0 and drives each query with CONCURRENCY clients
//! for SECONDS seconds from this same process. Uncached means
//! CACHE_DISABLED=true: every request goes to MongoDB.
//!
//! MONGODB_URI=mongodb://127.0.0.1:27017 REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo run --release --example cache_bench
//!
//! `MODES=cached` (or `uncached`) runs one side only, e.g. under a profiler.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use kairos::{
    app::Application,
    config::{Settings, Source},
    db::{Db, indexes},
    seed::{self, SeedOptions},
};
use serde_json::{Value, json};

const QUERIES: [(&str, &str); 3] = [
    (
        "progressStats",
        "{ progressStats { modulesTotal modulesStarted modulesCompleted completionRate totalTimeSeconds averageScore currentStreakDays byCategory { category modulesTotal modulesCompleted } } }",
    ),
    (
        "modules (first 20)",
        "{ modules(first: 20) { totalCount nodes { id slug title category level tags position } pageInfo { hasNextPage endCursor } } }",
    ),
    (
        "myProgress (first 20)",
        "{ myProgress(first: 20) { totalCount nodes { status score timeSpentSeconds attempts updatedAt } } }",
    ),
];

struct Vars(Vec<(String, String)>);

impl Source for Vars {
    fn get(&self, key: &str) -> Option<String> {
        self.0
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.clone())
    }
}

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let redis = std::env::var("REDIS_URL").ok();
    let concurrency = env_or("CONCURRENCY", 32) as usize;
    let seconds = env_or("SECONDS", 5);
    let learners = env_or("LEARNERS", 16) as usize;
    let db_name = "kairos_bench_cache".to_string();

    let base = vec![
        ("MONGODB_URI".to_string(), uri.clone()),
        ("MONGODB_DB".to_string(), db_name.clone()),
        ("BIND_ADDR".to_string(), "127.0.0.1:0".to_string()),
        ("MONGODB_COMPRESSORS".to_string(), "none".to_string()),
        ("RATE_LIMIT_PER_SECOND".to_string(), "1000000".to_string()),
        ("RATE_LIMIT_BURST".to_string(), "1000000".to_string()),
        ("AUTH_RATE_LIMIT_PER_MINUTE".to_string(), "0".to_string()),
        ("LOG_FORMAT".to_string(), "json".to_string()),
    ];
    let settings = Settings::from_source(&Vars(base.clone()))?;
    let db = Db::connect(&settings.mongo).await?;
    let opts = SeedOptions {
        users: env_or("USERS", 1_000),
        modules: 200,
        progress_per_user: 20,
        content_bytes: 20_000,
        reset: true,
        batch: 10_000,
    };
    seed::seed(&db, &opts).await?;
    indexes::reconcile(&db, &indexes::load(None, 365 * 86_400)?, true).await?;

    let mut runs: Vec<(&str, Vec<(String, String)>)> = vec![("memory", vec![])];
    if let Some(url) = &redis {
        runs.push((
            "redis",
            vec![
                ("REDIS_URL".to_string(), url.clone()),
                (
                    "CACHE_KEY_PREFIX".to_string(),
                    format!("bench{}:", std::process::id()),
                ),
            ],
        ));
    }
    let mut floor: Option<Run> = None;
    let mut persisted_rows: Vec<String> = Vec::new();
    println!("| query | backend | mode | req/s | p50 ms | p99 ms | errors | cached/uncached |");
    println!("|---|---|---|---:|---:|---:|---:|---:|");
    for (backend, extra) in runs {
        let mut uncached_rps = [0f64; QUERIES.len()];
        let modes = std::env::var("MODES").unwrap_or_else(|_| "uncached,cached".into());
        let modes: Vec<bool> = modes
            .split(',')
            .filter_map(|m| match m.trim() {
                "uncached" => Some(false),
                "cached" => Some(true),
                _ => None,
            })
            .collect();
        for cached in modes {
            let mut vars = base.clone();
            vars.extend(extra.clone());
            vars.push(("CACHE_DISABLED".to_string(), (!cached).to_string()));
            let settings = Settings::from_source(&Vars(vars.clone()))?;
            let app = Application::build(settings).await?;
            let url = format!("http://127.0.0.1:{}/graphql", app.port());
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(app.run_until(async {
                let _ = rx.await;
            }));
            tokio::time::sleep(Duration::from_millis(500)).await; // Redis probe
            let client = reqwest::Client::builder()
                .pool_max_idle_per_host(concurrency)
                .build()?;
            let mut tokens = Vec::new();
            for i in 1..=learners {
                let q = format!(
                    "mutation {{ login(input: {{login: \"learner{i:06}\", password: \"{}\"}}) {{ token }} }}",
                    seed::DEMO_PASSWORD
                );
                let body: Value = client
                    .post(&url)
                    .json(&json!({ "query": q }))
                    .send()
                    .await?
                    .json()
                    .await?;
                tokens.push(
                    body["data"]["login"]["token"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
            }
            let tokens = Arc::new(tokens);
            for (qi, (name, query)) in QUERIES.iter().enumerate() {
                let body = json!({ "query": query }).to_string();
                let run = drive(&client, &url, body, &tokens, concurrency, seconds).await?;
                let ratio = if cached && uncached_rps[qi] > 0.0 {
                    format!("{:.1}×", run.rps / uncached_rps[qi])
                } else {
                    "".into()
                };
                if !cached {
                    uncached_rps[qi] = run.rps;
                }
                println!(
                    "| {name} | {backend} | {} | {:.0} | {:.2} | {:.2} | {} | {ratio} |",
                    if cached { "cached" } else { "uncached" },
                    run.rps,
                    run.p50,
                    run.p99,
                    run.errors
                );
            }
            if cached && backend == "memory" {
                // The floor: the same request path with nothing to resolve
                // (`__typename`), i.e. HTTP + token + GraphQL + the client.
                let body = json!({ "query": FLOOR }).to_string();
                let run = drive(&client, &url, body, &tokens, concurrency, seconds).await?;
                floor = Some(run);
                // Persisted queries: the same reads sent as a hash alone
                // (registered once), against plain text, and plain text on
                // an instance that parses every request.
                let mut no_cache = vars.clone();
                no_cache.push(("GRAPHQL_DOCUMENT_CACHE_ENTRIES".into(), "0".into()));
                let parsing = Application::build(Settings::from_source(&Vars(no_cache))?).await?;
                let parsing_url = format!("http://127.0.0.1:{}/graphql", parsing.port());
                let (parsing_tx, parsing_rx) = tokio::sync::oneshot::channel::<()>();
                tokio::spawn(parsing.run_until(async {
                    let _ = parsing_rx.await;
                }));
                for (name, query) in QUERIES {
                    let hash: String = kairos::graphql::documents::sha256(query)
                        .iter()
                        .map(|b| format!("{b:02x}"))
                        .collect();
                    let ext = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
                    client
                        .post(&url)
                        .bearer_auth(&tokens[0])
                        .json(&json!({ "query": query, "extensions": ext }))
                        .send()
                        .await?;
                    let plain = json!({ "query": query }).to_string();
                    let hashed = json!({ "extensions": ext }).to_string();
                    let parsed = drive(
                        &client,
                        &parsing_url,
                        plain.clone(),
                        &tokens,
                        concurrency,
                        seconds,
                    )
                    .await?;
                    let p =
                        drive(&client, &url, plain.clone(), &tokens, concurrency, seconds).await?;
                    let h =
                        drive(&client, &url, hashed.clone(), &tokens, concurrency, seconds).await?;
                    persisted_rows.push(format!(
                        "| {name} | {} → {} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.2}× |",
                        plain.len(),
                        hashed.len(),
                        parsed.rps,
                        p.rps,
                        h.rps,
                        h.rps / parsed.rps,
                        h.rps / p.rps
                    ));
                }
                let _ = parsing_tx.send(());
            }
            let _ = tx.send(());
        }
    }
    if let Some(f) = floor {
        println!(
            "\nFloor (`{FLOOR}`, memory backend): {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            f.rps, f.p50, f.p99, f.errors
        );
    }
    if !persisted_rows.is_empty() {
        println!(
            "\n| query (cached, memory) | body bytes plain → persisted | plain, parsed every time req/s | plain, document cache req/s | persisted req/s | persisted / parsed every time | persisted / document cache |"
        );
        println!("|---|---:|---:|---:|---:|---:|---:|");
        for row in persisted_rows {
            println!("{row}");
        }
    }
    db.db.drop().await?;
    Ok(())
}

/// The cheapest request through the whole path.
const FLOOR: &str = "{ __typename }";

/// Figures of one driven query.
struct Run {
    rps: f64,
    p50: f64,
    p99: f64,
    errors: u64,
}

/// Sends `body` from `concurrency` clients for `seconds`, rotating tokens.
async fn drive(
    client: &reqwest::Client,
    url: &str,
    body: String,
    tokens: &Arc<Vec<String>>,
    concurrency: usize,
    seconds: u64,
) -> anyhow::Result<Run> {
    let body = Arc::new(body);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let workers = (0..concurrency).map(|w| {
        let (client, url, body, tokens) = (
            client.clone(),
            url.to_string(),
            body.clone(),
            tokens.clone(),
        );
        tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            let mut i = w;
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = client
                    .post(&url)
                    .bearer_auth(&tokens[i % tokens.len()])
                    .header("content-type", "application/json")
                    .body(body.as_str().to_owned())
                    .send()
                    .await;
                let ok = match resp {
                    Ok(r) => {
                        r.status().is_success()
                            && !r.text().await.unwrap_or_default().contains("\"errors\"")
                    }
                    Err(_) => false,
                };
                if !ok {
                    errors += 1;
                }
                lat.push(t.elapsed());
                i += 1;
            }
            (lat, errors)
        })
    });
    let started = Instant::now();
    let mut all = Vec::new();
    let mut errors = 0;
    for r in futures::future::join_all(workers).await {
        let (lat, e) = r?;
        all.extend(lat);
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let p = |q: f64| all[((all.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1000.0;
    Ok(Run {
        rps: all.len() as f64 / elapsed,
        p50: p(0.5),
        p99: p(0.99),
        errors,
    })
}
