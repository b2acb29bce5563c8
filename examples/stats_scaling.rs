//! How `progressStats` and `myProgress` scale with the number of users in
//! the database.
//!
//! For each size it seeds a database (same catalogue, same data for the
//! measured learner), starts the real service on port 0, logs in as
//! `learner000001` and times sequential `progressStats` and `myProgress`
//! requests over HTTP (no cache in front). `PROGRESS` sets the progress
//! entries per learner (default 2). It also prints the plan of the pipeline's first
//! stage, which must be an index scan on the learner.
//!
//! MONGODB_URI=mongodb://127.0.0.1:27017 cargo run --release --example stats_scaling -- 1000 100000

use std::time::{Duration, Instant};

use bson::doc;
use kairos::{
    app::Application,
    config::Settings,
    db::{Db, indexes},
    learners::stats,
    seed::{self, SeedOptions},
};
use serde_json::{Value, json};

const REQUESTS: usize = 300;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 100_000]
    } else {
        sizes
    };
    let progress_per_user: u64 = std::env::var("PROGRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    println!(
        "| users in database | progress docs | query | mean (ms) | p50 | p95 | p99 | first stage plan |"
    );
    println!("|---:|---:|---|---:|---:|---:|---:|---|");
    for users in sizes {
        let name = format!("kairos_bench_stats_{users}");
        let settings = Settings::from_source(&[
            ("MONGODB_URI", uri.as_str()),
            ("MONGODB_DB", name.as_str()),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("MONGODB_COMPRESSORS", "none"),
            ("CACHE_DISABLED", "true"),
            ("RATE_LIMIT_PER_SECOND", "1000000"),
            ("RATE_LIMIT_BURST", "1000000"),
        ])?;
        let db = Db::connect(&settings.mongo).await?;
        let opts = SeedOptions {
            users,
            modules: 200,
            progress_per_user,
            content_bytes: 2_000,
            reset: true,
            batch: 10_000,
        };
        let started = Instant::now();
        let report = seed::seed(&db, &opts).await?;
        eprintln!(
            "seeded {users} users in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        indexes::reconcile(&db, &indexes::load(None, 365 * 86_400)?, true).await?;

        // The plan of the pipeline's first stage.
        let learner = seed::seeded_id(1, 1);
        let explain = db
            .db
            .run_command(doc! {
                "explain": { "aggregate": "users", "pipeline": stats::pipeline(learner), "cursor": {} },
                "verbosity": "queryPlanner",
            })
            .await?;
        let plan = serde_json::to_string(&explain)?;
        let stage = if plan.contains("IXSCAN") {
            "IXSCAN"
        } else if plan.contains("COLLSCAN") {
            "COLLSCAN"
        } else {
            "?"
        };

        let app = Application::build(settings).await?;
        let base = format!("http://127.0.0.1:{}/graphql", app.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::new();
        let login: Value = client
            .post(&base)
            .json(&json!({ "query": "mutation { login(input: {login: \"learner000001\", password: \"kairos-demo-password\"}) { token } }" }))
            .send()
            .await?
            .json()
            .await?;
        let token = login["data"]["login"]["token"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let queries = [
            (
                "progressStats",
                "{ progressStats { modulesTotal modulesStarted completionRate averageScore currentStreakDays byCategory { category modulesTotal } } }",
                stage,
            ),
            (
                "myProgress(first: 20)",
                "{ myProgress(first: 20) { totalCount nodes { status score timeSpentSeconds updatedAt module { slug } } } }",
                "",
            ),
        ];
        for (name, query, plan) in queries {
            let query = json!({ "query": query });
            let mut times = Vec::with_capacity(REQUESTS);
            for i in 0..REQUESTS + 20 {
                let t = Instant::now();
                let body: Value = client
                    .post(&base)
                    .bearer_auth(&token)
                    .json(&query)
                    .send()
                    .await?
                    .json()
                    .await?;
                anyhow::ensure!(body.get("errors").is_none(), "{name} failed: {body}");
                if i >= 20 {
                    times.push(t.elapsed());
                }
            }
            times.sort();
            let mean =
                times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64 * 1000.0;
            println!(
                "| {users} | {} | {name} | {mean:.2} | {:.2} | {:.2} | {:.2} | {plan} |",
                report.progress,
                percentile(&times, 0.5),
                percentile(&times, 0.95),
                percentile(&times, 0.99)
            );
        }
        let _ = tx.send(());
        db.db.drop().await?;
    }
    Ok(())
}
