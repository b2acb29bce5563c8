//! How `activitySeries`, `periodStats` and `leaderboard` requests, and the
//! memory of the progress CSV export, scale with the number of learners.
//!
//! For each size it seeds a database (`kairos seed`'s generator, every
//! learner opted in to the leaderboards: the worst case), starts the real
//! service on port 0 (memory cache), logs in as `learner000001` and times
//! sequential requests over HTTP:
//! - `activitySeries` (30 days) and `periodStats` (7 days), each request
//!   with a different range so that every one is a cache miss;
//! - `leaderboard`: the first read on an instance (it waits for the
//!   build), the steady state, the first read after an opt-in change (the
//!   change laid over the ranking), and reads on a second instance whose
//!   ranking is rebuilt every second in the background
//!   (`LEADERBOARD_REFRESH_SECS=1`);
//! - the CSV export of every progress entry, with the process's resident
//!   memory sampled every 5 ms while it streams (`VmRSS`).
//!
//! MONGODB_URI=mongodb://127.0.0.1:27017 PROGRESS=2 \
//!   cargo run --release --example analytics_scaling -- 1000 10000 100000
//!
//! `EXPORT_ONLY=1` measures the export alone (e.g. `PROGRESS=20`);
//! `SEEDED=1` uses a database seeded beforehand by `kairos seed` (named
//! `kairos_bench_analytics_<learners>`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use chrono::Utc;
use futures::StreamExt;
use kairos::{
    app::Application,
    config::Settings,
    db::{Db, indexes},
    seed::{self, SeedOptions},
};
use serde_json::{Value, json};

const REQUESTS: usize = 100;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    query: Value,
) -> anyhow::Result<Value> {
    let body: Value = client
        .post(base)
        .bearer_auth(token)
        .json(&query)
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(body.get("errors").is_none(), "request failed: {body}");
    Ok(body)
}

fn row(users: u64, progress: u64, name: &str, times: &mut [Duration]) {
    times.sort();
    let mean = times.iter().map(Duration::as_secs_f64).sum::<f64>() / times.len() as f64 * 1000.0;
    println!(
        "| {users} | {progress} | {name} | {mean:.2} | {:.2} | {:.2} | {:.2} |",
        percentile(times, 0.5),
        percentile(times, 0.95),
        percentile(times, 0.99)
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let uri = std::env::var("MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27017".into());
    let sizes: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sizes = if sizes.is_empty() {
        vec![1_000, 10_000]
    } else {
        sizes
    };
    let progress_per_user: u64 = std::env::var("PROGRESS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // EXPORT_ONLY=1 measures the export alone.
    let export_only = std::env::var("EXPORT_ONLY").is_ok_and(|v| v == "1");
    println!("| learners | progress docs | request | mean (ms) | p50 | p95 | p99 |");
    println!("|---:|---:|---|---:|---:|---:|---:|");
    let mut export_rows = Vec::new();
    for users in sizes {
        let name = format!("kairos_bench_analytics_{users}");
        let settings = Settings::from_source(&[
            ("MONGODB_URI", uri.as_str()),
            ("MONGODB_DB", name.as_str()),
            ("BIND_ADDR", "127.0.0.1:0"),
            ("MONGODB_COMPRESSORS", "none"),
            ("RATE_LIMIT_PER_SECOND", "1000000"),
            ("RATE_LIMIT_BURST", "1000000"),
            ("RATE_LIMIT_COST_BUCKET", "100000000"),
            ("RATE_LIMIT_COST_RESTORE_PER_SECOND", "100000000"),
        ])?;
        let db = Db::connect(&settings.mongo).await?;
        let opts = SeedOptions {
            users,
            modules: 40,
            progress_per_user,
            content_bytes: 200,
            reset: true,
            batch: 10_000,
        };
        let started = Instant::now();
        // SEEDED=1: the database was seeded beforehand (`kairos seed`).
        let report = if std::env::var("SEEDED").is_ok_and(|v| v == "1") {
            seed::SeedReport {
                progress: db.raw("progress").estimated_document_count().await?,
                ..Default::default()
            }
        } else {
            seed::seed(&db, &opts).await?
        };
        eprintln!(
            "seeded {users} learners in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        indexes::reconcile(&db, &indexes::load(None, 365 * 86_400)?, true).await?;
        if !export_only {
            db.raw("users")
                .update_many(
                    bson::doc! {},
                    bson::doc! { "$set": { "leaderboard_opt_in": true } },
                )
                .await?;
        }

        let app = Application::build(settings).await?;
        let base = format!("http://127.0.0.1:{}/graphql", app.port());
        let export_url = format!("http://127.0.0.1:{}/exports/progress.csv", app.port());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(app.run_until(async {
            let _ = rx.await;
        }));
        let client = reqwest::Client::new();
        let mut tokens = Vec::new();
        for login in ["learner000001", "learner000002", "admin"] {
            let body: Value = client
                .post(&base)
                .json(&json!({ "query": format!("mutation {{ login(input: {{login: \"{login}\", password: \"kairos-demo-password\"}}) {{ token }} }}") }))
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
        let (token, other, admin) = (&tokens[0], &tokens[1], &tokens[2]);
        let now = Utc::now();
        if !export_only {
            let mut series = Vec::new();
            let mut period = Vec::new();
            for i in 0..REQUESTS {
                let to = now - chrono::Duration::seconds(i as i64);
                let f = (to - chrono::Duration::days(30)).to_rfc3339();
                let t = Instant::now();
                post(&client, &base, token, json!({ "query": "query($f: DateTime!, $t: DateTime!) { activitySeries(from: $f, to: $t) { date events } }", "variables": { "f": f, "t": to.to_rfc3339() } })).await?;
                series.push(t.elapsed());
                let f = (to - chrono::Duration::days(7)).to_rfc3339();
                let t = Instant::now();
                post(&client, &base, token, json!({ "query": "query($f: DateTime!, $t: DateTime!) { periodStats(from: $f, to: $t) { current { activeDays } previous { activeDays } } }", "variables": { "f": f, "t": to.to_rfc3339() } })).await?;
                period.push(t.elapsed());
            }
            row(
                users,
                report.progress,
                "activitySeries (30 days, miss)",
                &mut series,
            );
            row(
                users,
                report.progress,
                "periodStats (7 days, miss)",
                &mut period,
            );
            let board = json!({ "query": "{ leaderboard(period: WEEK, first: 10) { participants viewerRank entries { rank name } } }" });
            // The first read on an instance waits for the build.
            let t = Instant::now();
            post(&client, &base, token, board.clone()).await?;
            row(
                users,
                report.progress,
                "leaderboard (WEEK, first read: waits for the build)",
                &mut [t.elapsed()],
            );
            let mut steady = Vec::new();
            for _ in 0..REQUESTS {
                let t = Instant::now();
                post(&client, &base, token, board.clone()).await?;
                steady.push(t.elapsed());
            }
            row(
                users,
                report.progress,
                "leaderboard (WEEK, steady state)",
                &mut steady,
            );
            let mut changed = Vec::new();
            for i in 0..10 {
                post(&client, &base, other, json!({ "query": format!("mutation {{ updateMe(input: {{ leaderboardOptIn: {} }}) {{ id }} }}", i % 2 == 1) })).await?;
                let t = Instant::now();
                post(&client, &base, token, board.clone()).await?;
                changed.push(t.elapsed());
            }
            row(
                users,
                report.progress,
                "leaderboard (WEEK, first read after an opt-in change)",
                &mut changed,
            );
            // A second instance on the same data rebuilding every second in
            // the background: reads while a rebuild runs.
            let busy = Application::build(Settings::from_source(&[
                ("MONGODB_URI", uri.as_str()),
                ("MONGODB_DB", name.as_str()),
                ("BIND_ADDR", "127.0.0.1:0"),
                ("MONGODB_COMPRESSORS", "none"),
                ("LEADERBOARD_REFRESH_SECS", "1"),
                ("RATE_LIMIT_PER_SECOND", "1000000"),
                ("RATE_LIMIT_BURST", "1000000"),
                ("RATE_LIMIT_COST_BUCKET", "100000000"),
                ("RATE_LIMIT_COST_RESTORE_PER_SECOND", "100000000"),
            ])?)
            .await?;
            let busy_base = format!("http://127.0.0.1:{}/graphql", busy.port());
            let (busy_tx, busy_rx) = tokio::sync::oneshot::channel::<()>();
            tokio::spawn(busy.run_until(async {
                let _ = busy_rx.await;
            }));
            post(&client, &busy_base, token, board.clone()).await?;
            let mut during = Vec::new();
            let until = Instant::now() + Duration::from_secs(5);
            while Instant::now() < until || during.len() < REQUESTS {
                let t = Instant::now();
                post(&client, &busy_base, token, board.clone()).await?;
                during.push(t.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            let _ = busy_tx.send(());
            row(
                users,
                report.progress,
                "leaderboard (WEEK, rebuilt every second in the background)",
                &mut during,
            );
        }
        // The export, with the resident memory sampled while it streams.
        let before = rss_kib();
        let peak = Arc::new(AtomicU64::new(before));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done) = (peak.clone(), done.clone());
            tokio::spawn(async move {
                while !done.load(Ordering::Relaxed) {
                    peak.fetch_max(rss_kib(), Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        };
        let t = Instant::now();
        let resp = client
            .get(&export_url)
            .query(&[
                ("from", (now - chrono::Duration::days(400)).to_rfc3339()),
                ("to", (now + chrono::Duration::days(1)).to_rfc3339()),
            ])
            .bearer_auth(admin)
            .send()
            .await?;
        if !resp.status().is_success() {
            done.store(true, Ordering::Relaxed);
            sampler.await?;
            export_rows.push(format!(
                "| {users} | {} | export failed: {} after {:.1} s | | | | |",
                report.progress,
                resp.status(),
                t.elapsed().as_secs_f64()
            ));
            let _ = tx.send(());
            db.db.drop().await?;
            continue;
        }
        let (mut bytes, mut lines) = (0u64, 0u64);
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            bytes += chunk.len() as u64;
            lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
        }
        done.store(true, Ordering::Relaxed);
        sampler.await?;
        export_rows.push(format!(
            "| {users} | {} | {} | {:.1} | {:.1} | {} | {} |",
            report.progress,
            lines.saturating_sub(1),
            bytes as f64 / 1_048_576.0,
            t.elapsed().as_secs_f64(),
            before / 1024,
            peak.load(Ordering::Relaxed).saturating_sub(before) / 1024,
        ));
        let _ = tx.send(());
        db.db.drop().await?;
    }
    println!();
    println!(
        "| learners | progress docs | rows exported | CSV MiB | seconds | RSS before (MiB) | peak RSS growth while streaming (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for r in export_rows {
        println!("{r}");
    }
    Ok(())
}
