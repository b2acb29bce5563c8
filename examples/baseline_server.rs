//! The baseline of the load tests: a trivial axum handler answering every
//! POST /graphql with a fixed JSON body of the size of a progressStats
//! reply, served the same way (axum on tokio, loopback). Kairos figures are
//! also given as a ratio to this limit.
//!
//! cargo run --release --example baseline_server -- 127.0.0.1:8090

use axum::{Router, http::header, routing::post};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:8090".into());
    let body: &'static str = Box::leak(
        serde_json::json!({ "data": { "baseline": {
            "modulesTotal": 180, "modulesStarted": 20, "modulesCompleted": 8,
            "completionRate": 0.044444444444444446, "totalTimeSeconds": 52340,
            "averageScore": 76.25, "currentStreakDays": 3,
            "byCategory": (0..6).map(|i| serde_json::json!({
                "category": format!("category-{i}"), "modulesTotal": 30, "modulesCompleted": 1 + i,
            })).collect::<Vec<_>>(),
        } } })
        .to_string()
        .into_boxed_str(),
    );
    let app = Router::new().route(
        "/graphql",
        post(move || async move { ([(header::CONTENT_TYPE, "application/json")], body) }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("baseline listening on {}", listener.local_addr()?);
    axum::serve(listener, app).await
}
