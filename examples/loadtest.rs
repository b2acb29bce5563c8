//! The Kairos load test: a goose attack with the single-page app's mix.
//!
//! Each virtual user logs in as one of the seeded learners, then loops over
//! catalogue pages, module details with content, its progress, its
//! statistics, its history, and progress reports (about 10% writes). goose
//! runs the stages of `--test-plan` and writes per-request reports
//! (`--report-file x.md --report-file x.json`): requests/s, percentiles,
//! failures. A GraphQL error in a 200 response counts as a failure.
//!
//! `LOADTEST_SCENARIO=baseline` instead posts to a trivial handler (see
//! examples/baseline_server.rs) for the ratio to that limit;
//! `LOADTEST_SCENARIO=stats` drives cached progressStats alone.
//!
//! Run it through scripts/loadtest, which seeds, starts everything and
//! passes the stages.

use std::sync::atomic::{AtomicU64, Ordering};

use goose::prelude::*;
use kairos::seed::{DEMO_PASSWORD, seeded_id};
use serde_json::{Value, json};

static NEXT_LEARNER: AtomicU64 = AtomicU64::new(0);
static NEXT_MODULE: AtomicU64 = AtomicU64::new(0);

fn env_u64(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A published seeded module (the seeder leaves every tenth unpublished).
fn some_module() -> String {
    let modules = env_u64("LOADTEST_MODULES", 200).max(10);
    let mut n = NEXT_MODULE.fetch_add(7, Ordering::Relaxed) % modules;
    if n % 10 == 9 {
        n -= 1;
    }
    seeded_id(2, n).to_hex()
}

#[derive(Clone)]
struct Session {
    token: String,
}

/// Posts one GraphQL operation named `name`; a GraphQL error is a failure.
async fn gql(user: &mut GooseUser, name: &str, query: &str, variables: Value) -> TransactionResult {
    let mut builder = user
        .get_request_builder(&GooseMethod::Post, "/graphql")?
        .header("content-type", "application/json")
        .json(&json!({ "query": query, "variables": variables }));
    if let Some(session) = user.get_session_data::<Session>() {
        builder = builder.bearer_auth(&session.token);
    }
    let request = GooseRequest::builder()
        .name(name)
        .set_request_builder(builder)
        .build();
    let mut goose = user.request(request).await?;
    match goose.response {
        Ok(response) => {
            let body = response.text().await.unwrap_or_default();
            if body.contains("\"errors\"") {
                return user.set_failure("graphql error", &mut goose.request, None, Some(&body));
            }
            if name == "login" {
                let token = serde_json::from_str::<Value>(&body)
                    .ok()
                    .and_then(|v| v["data"]["login"]["token"].as_str().map(str::to_string));
                match token {
                    Some(token) => user.set_session_data(Session { token }),
                    None => {
                        return user.set_failure("no token", &mut goose.request, None, Some(&body));
                    }
                }
            }
            Ok(())
        }
        Err(_) => Ok(()),
    }
}

async fn login(user: &mut GooseUser) -> TransactionResult {
    let learners = env_u64("LOADTEST_USERS", 10_000).max(1);
    let n = NEXT_LEARNER.fetch_add(1, Ordering::Relaxed) % learners + 1;
    let query = "mutation($i: LoginInput!) { login(input: $i) { token } }";
    let vars = json!({ "i": { "login": format!("learner{n:06}"), "password": DEMO_PASSWORD } });
    gql(user, "login", query, vars).await
}

async fn catalogue(user: &mut GooseUser) -> TransactionResult {
    let query = "{ modules(first: 20) { totalCount nodes { id slug title summary category level tags durationMinutes myProgress { status } } pageInfo { hasNextPage endCursor } } }";
    gql(user, "modules page", query, json!({})).await
}

async fn module_detail(user: &mut GooseUser) -> TransactionResult {
    let query = "query($id: ID) { module(id: $id) { id title content durationMinutes myProgress { status score } } }";
    gql(
        user,
        "module with content",
        query,
        json!({ "id": some_module() }),
    )
    .await
}

async fn my_progress(user: &mut GooseUser) -> TransactionResult {
    let query = "{ myProgress(first: 20) { totalCount nodes { status score timeSpentSeconds attempts updatedAt module { id title } } } }";
    gql(user, "myProgress", query, json!({})).await
}

async fn stats(user: &mut GooseUser) -> TransactionResult {
    let query = "{ progressStats { modulesTotal modulesStarted modulesCompleted completionRate totalTimeSeconds averageScore currentStreakDays byCategory { category modulesTotal modulesCompleted } } }";
    gql(user, "progressStats", query, json!({})).await
}

async fn history(user: &mut GooseUser) -> TransactionResult {
    let query = "{ history(first: 20) { nodes { kind at timeSpentSeconds module { title } } } }";
    gql(user, "history", query, json!({})).await
}

async fn record(user: &mut GooseUser) -> TransactionResult {
    let query = "mutation($i: ProgressInput!) { recordProgress(input: $i) { status timeSpentSeconds attempts } }";
    let vars = json!({ "i": { "moduleId": some_module(), "timeSpentSeconds": 30, "score": 80.0 } });
    gql(user, "recordProgress", query, vars).await
}

/// The trivial handler: same transport, a fixed body, no work.
async fn baseline(user: &mut GooseUser) -> TransactionResult {
    gql(user, "baseline", "{ baseline }", json!({})).await
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    let scenario = match std::env::var("LOADTEST_SCENARIO").as_deref() {
        Ok("baseline") => scenario!("Baseline").register_transaction(transaction!(baseline)),
        Ok("stats") => scenario!("CachedStats")
            .register_transaction(transaction!(login).set_on_start())
            .register_transaction(transaction!(stats)),
        _ => scenario!("SinglePageApp")
            .register_transaction(transaction!(login).set_on_start())
            .register_transaction(transaction!(catalogue).set_weight(25)?)
            .register_transaction(transaction!(module_detail).set_weight(15)?)
            .register_transaction(transaction!(my_progress).set_weight(15)?)
            .register_transaction(transaction!(stats).set_weight(25)?)
            .register_transaction(transaction!(history).set_weight(10)?)
            .register_transaction(transaction!(record).set_weight(10)?),
    };
    GooseAttack::initialize()?
        .register_scenario(scenario)
        .execute()
        .await?;
    Ok(())
}
