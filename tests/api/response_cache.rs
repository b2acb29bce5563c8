//! Issue 15: entities from the cache (a repeated page with its modules
//! sends no database command) and the whole-response cache (hits, exact
//! after writes on every instance, never across viewers, never errors),
//! with ETag / If-None-Match on GET.

use std::time::Duration;

use bson::{doc, oid::ObjectId};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{
    cache::{
        BlackHoleProxy, RedisProc, redis_settings, two_instances_on_one_redis,
        two_instances_on_one_redis_with, unique_prefix, wait_backend,
    },
    helpers::{TestApp, module, spawn_app_with},
};

const PROGRESS: &str = "{ myProgress(first: 20) { nodes { module { slug title } } } }";
const HISTORY: &str = "{ history(first: 20) { nodes { kind module { slug title } } } }";
const NOTIFICATIONS: &str =
    "{ notifications(first: 20) { nodes { message module { slug title } } } }";
const STATS: &str = "{ progressStats { totalTimeSeconds modulesStarted } }";
const RECORD: &str =
    "mutation($i: ProgressInput!) { recordProgress(input: $i) { timeSpentSeconds } }";
const RENAME: &str =
    "mutation($id: ID!, $i: ModuleUpdateInput!) { updateModule(id: $id, input: $i) { title } }";

async fn record(app: &TestApp, token: &str, module: &ObjectId, secs: i64) {
    app.ok(
        RECORD,
        json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": secs } }),
        Some(token),
    )
    .await;
}

/// A learner with progress and history on three modules and a
/// notification about each; returns (token, module ids).
async fn learner_with_pages(app: &TestApp, name: &str) -> (String, Vec<ObjectId>) {
    let ids = app
        .insert_modules(vec![
            module(&format!("{name}-a"), 1, doc! {}),
            module(&format!("{name}-b"), 2, doc! {}),
            module(&format!("{name}-c"), 3, doc! {}),
        ])
        .await;
    let (token, user) = app.register(name).await;
    let user = ObjectId::parse_str(&user).unwrap();
    for (i, id) in ids.iter().enumerate() {
        record(app, &token, id, 10 * (i as i64 + 1)).await;
    }
    let notes: Vec<_> = ids
        .iter()
        .map(|id| {
            doc! {
                "user_id": user, "message": "new module", "module_id": id,
                "read": false, "created_at": bson::DateTime::now(),
            }
        })
        .collect();
    app.db
        .raw("notifications")
        .insert_many(notes)
        .await
        .unwrap();
    (token, ids)
}

/// The database commands one request sends.
async fn commands_of(app: &TestApp, query: &str, token: &str) -> (u64, Value) {
    let before = app.db.commands.total();
    let data = app.ok(query, json!({}), Some(token)).await;
    (app.db.commands.total() - before, data)
}

/// Hits of one cache class, from `/metrics`.
async fn hits(app: &TestApp, class: &str) -> u64 {
    let metrics = app.metrics().await;
    let needle = format!("kairos_cache_hits_total{{class=\"{class}\"}}");
    metrics
        .lines()
        .find(|l| l.starts_with(&needle))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0) as u64
}

async fn pages_cost_no_command_the_second_time(extra: &[(&str, &str)]) {
    let app = spawn_app_with(extra).await;
    let admin = app.admin_token().await;
    if extra.iter().any(|(k, _)| *k == "REDIS_URL") {
        wait_backend(&app, &admin, "redis").await;
    }
    let (token, _) = learner_with_pages(&app, "pages").await;
    for query in [PROGRESS, HISTORY, NOTIFICATIONS] {
        let (first_cost, first) = commands_of(&app, query, &token).await;
        assert!(first_cost > 0, "the first read goes to the database");
        let (second_cost, second) = commands_of(&app, query, &token).await;
        assert_eq!(second_cost, 0, "{query}: {second}");
        assert_eq!(first, second);
        let text = second.to_string();
        assert!(
            text.contains("pages-a") && text.contains("Module pages-c"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn repeated_pages_with_their_modules_send_no_database_command_through_redis() {
    // The whole-response cache off: the parts (pages and entities) alone.
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let mut settings = redis_settings(&url, &prefix);
    settings.push(("CACHE_RESPONSES", "false"));
    pages_cost_no_command_the_second_time(&settings).await;
}

#[tokio::test]
async fn repeated_pages_with_their_modules_send_no_database_command_from_memory() {
    pages_cost_no_command_the_second_time(&[("CACHE_RESPONSES", "false")]).await;
}

#[tokio::test]
async fn repeated_pages_send_no_database_command_with_the_response_cache() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    pages_cost_no_command_the_second_time(&redis_settings(&url, &prefix)).await;
}

#[tokio::test]
async fn a_module_title_change_is_seen_at_once_on_every_instance() {
    for responses in ["true", "false"] {
        let (a, b, _redis, admin) = two_instances_with(responses).await;
        let (token, ids) = learner_with_pages(&a, &format!("rename{responses}")).await;
        for app in [&a, &b] {
            for query in [PROGRESS, HISTORY, NOTIFICATIONS] {
                app.ok(query, json!({}), Some(&token)).await;
                app.ok(query, json!({}), Some(&token)).await;
            }
        }
        a.ok(
            RENAME,
            json!({ "id": ids[1].to_hex(), "i": { "title": "Renamed" } }),
            Some(&admin),
        )
        .await;
        for app in [&b, &a] {
            for query in [PROGRESS, HISTORY, NOTIFICATIONS] {
                let text = app.ok(query, json!({}), Some(&token)).await.to_string();
                assert!(
                    text.contains("Renamed")
                        && !text.contains(&format!("Module rename{responses}-b")),
                    "responses={responses} {query}: {text}"
                );
            }
        }
    }
}

async fn two_instances_with(responses: &str) -> (TestApp, TestApp, RedisProc, String) {
    two_instances_on_one_redis_with(&[("CACHE_RESPONSES", responses)]).await
}

#[tokio::test]
async fn a_response_hit_skips_execution_and_is_exact_after_a_write_on_another_instance() {
    let (a, b, _redis, _admin) = two_instances_on_one_redis().await;
    let (token, ids) = learner_with_pages(&a, "exact").await;
    let first = a.ok(STATS, json!({}), Some(&token)).await;
    assert_eq!(first["progressStats"]["totalTimeSeconds"], 60);
    let before = hits(&b, "responses").await;
    let (cost, on_b) = commands_of(&b, STATS, &token).await;
    assert_eq!((cost, &on_b), (0, &first), "stored by a, served by b");
    assert_eq!(hits(&b, "responses").await, before + 1);

    // A write on b; both instances answer the new figure at once.
    record(&b, &token, &ids[0], 5).await;
    for app in [&a, &b] {
        let now = app.ok(STATS, json!({}), Some(&token)).await;
        assert_eq!(now["progressStats"]["totalTimeSeconds"], 65);
    }
}

#[tokio::test]
async fn one_viewers_response_is_never_served_to_another() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let app = spawn_app_with(&redis_settings(&url, &prefix)).await;
    let ids = app.insert_modules(vec![module("v", 1, doc! {})]).await;
    let (ann, _) = app.register("ann").await;
    let (bob, _) = app.register("bob").await;
    record(&app, &ann, &ids[0], 11).await;
    record(&app, &bob, &ids[0], 22).await;
    for _ in 0..3 {
        for (token, secs) in [(&ann, 11), (&bob, 22)] {
            let data = app.ok(STATS, json!({}), Some(token)).await;
            assert_eq!(data["progressStats"]["totalTimeSeconds"], secs);
        }
    }
    // Anonymous callers get their own (an error, never stored), not ann's.
    let anonymous = app.gql(STATS, json!({}), None).await;
    assert_eq!(crate::helpers::code(&anonymous), "UNAUTHENTICATED");
    // The catalogue as a learner and as an admin (who sees drafts).
    app.insert_modules(vec![module("draft", 2, doc! { "published": false })])
        .await;
    let admin = app.admin_token().await;
    let list = "{ modules(first: 20) { totalCount } }";
    for _ in 0..2 {
        let learner = app.ok(list, json!({}), Some(&ann)).await;
        let as_admin = app.ok(list, json!({}), Some(&admin)).await;
        let anon = app.ok(list, json!({}), None).await;
        assert_eq!(learner["modules"]["totalCount"], 1);
        assert_eq!(anon["modules"]["totalCount"], 1);
        assert_eq!(as_admin["modules"]["totalCount"], 2, "{as_admin}");
    }
}

#[tokio::test]
async fn errors_and_partial_results_are_never_stored() {
    let app = spawn_app_with(&[]).await;
    app.insert_modules(vec![module("e", 1, doc! {})]).await;
    // A partial result: one root field fails, the other answers.
    let partial = "{ modules(first: 5) { totalCount } module(id: \"nope\") { slug } }";
    let before = hits(&app, "responses").await;
    for _ in 0..3 {
        let body = app.gql(partial, json!({}), None).await;
        assert!(body["errors"].is_array(), "{body}");
        assert_eq!(body["data"]["modules"]["totalCount"], 1);
    }
    let unauthenticated = "{ myProgress { totalCount } }";
    for _ in 0..3 {
        let body = app.gql(unauthenticated, json!({}), None).await;
        assert_eq!(crate::helpers::code(&body), "UNAUTHENTICATED");
    }
    assert_eq!(hits(&app, "responses").await, before, "nothing was stored");
    // A successful one is.
    let ok = "{ modules(first: 5) { totalCount } }";
    app.ok(ok, json!({}), None).await;
    app.ok(ok, json!({}), None).await;
    assert_eq!(hits(&app, "responses").await, before + 1);
}

#[tokio::test]
async fn a_write_redis_missed_makes_its_pre_outage_responses_stale() {
    // Redis keeps running with the stored responses; this instance alone
    // loses it (a black hole in front of it), writes, and gets it back.
    let redis = RedisProc::start().await;
    let proxy = BlackHoleProxy::start(redis.port).await;
    let (url, prefix) = (proxy.url(), unique_prefix());
    let app = spawn_app_with(&redis_settings(&url, &prefix)).await;
    let admin = app.admin_token().await;
    wait_backend(&app, &admin, "redis").await;
    let (token, ids) = learner_with_pages(&app, "outage").await;
    for _ in 0..2 {
        let data = app.ok(STATS, json!({}), Some(&token)).await;
        assert_eq!(data["progressStats"]["totalTimeSeconds"], 60);
    }
    let stored = hits(&app, "responses").await;
    assert!(stored >= 1);

    proxy.set_black_hole(true);
    record(&app, &token, &ids[0], 2).await;
    wait_backend(&app, &admin, "memory").await;
    let during = app.ok(STATS, json!({}), Some(&token)).await;
    assert_eq!(during["progressStats"]["totalTimeSeconds"], 62);
    proxy.set_black_hole(false);
    wait_backend(&app, &admin, "redis").await;
    for _ in 0..2 {
        let after = app.ok(STATS, json!({}), Some(&token)).await;
        assert_eq!(after["progressStats"]["totalTimeSeconds"], 62);
    }
}

async fn get(app: &TestApp, query: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut req = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[("query", query)]);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("request")
}

#[tokio::test]
async fn cacheable_get_responses_carry_an_etag_and_revalidate_with_304() {
    let app = spawn_app_with(&[]).await;
    let ids = app.insert_modules(vec![module("g", 1, doc! {})]).await;
    let list = "{ modules(first: 5) { nodes { slug title } } }";

    // Anonymous catalogue: public.
    let first = get(&app, list, &[]).await;
    assert_eq!(first.status(), StatusCode::OK);
    let etag = first.headers()[header::ETAG].to_str().unwrap().to_string();
    let cc = first.headers()[header::CACHE_CONTROL]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cc.starts_with("public"), "{cc}");
    let again = get(&app, list, &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers()[header::ETAG].to_str().unwrap(), etag);
    assert!(again.bytes().await.unwrap().is_empty());

    // Signed in: private, revalidated every time.
    let (token, _) = app.register("etag").await;
    let bearer = format!("Bearer {token}");
    record(&app, &token, &ids[0], 7).await;
    let mine = get(&app, STATS, &[("authorization", &bearer)]).await;
    assert_eq!(mine.status(), StatusCode::OK);
    assert_eq!(mine.headers()[header::CACHE_CONTROL], "private, no-cache");
    let my_etag = mine.headers()[header::ETAG].to_str().unwrap().to_string();
    let same = get(
        &app,
        STATS,
        &[("authorization", &bearer), ("if-none-match", &my_etag)],
    )
    .await;
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);
    // Another viewer's validator does not match this one's data.
    let (other, _) = app.register("etag2").await;
    let theirs = get(
        &app,
        STATS,
        &[
            ("authorization", &format!("Bearer {other}")),
            ("if-none-match", &my_etag),
        ],
    )
    .await;
    assert_eq!(theirs.status(), StatusCode::OK);
    // After a write the old validator no longer matches.
    record(&app, &token, &ids[0], 1).await;
    let changed = get(
        &app,
        STATS,
        &[("authorization", &bearer), ("if-none-match", &my_etag)],
    )
    .await;
    assert_eq!(changed.status(), StatusCode::OK);
    assert_ne!(changed.headers()[header::ETAG].to_str().unwrap(), my_etag);
    let body: Value = changed.json().await.unwrap();
    assert_eq!(body["data"]["progressStats"]["totalTimeSeconds"], 8);

    // Mutations and errors get no ETag.
    let bad = get(&app, "{ module(id: \"nope\") { slug } }", &[]).await;
    assert!(bad.headers().get(header::ETAG).is_none());
    tokio::time::sleep(Duration::from_millis(1)).await;
}

#[tokio::test]
async fn clearing_a_class_also_drops_the_responses_made_of_it() {
    let app = spawn_app_with(&[]).await;
    let admin = app.admin_token().await;
    app.insert_modules(vec![module("c", 1, doc! {})]).await;
    let list = "{ modules(first: 5) { totalCount } }";
    app.ok(list, json!({}), None).await;
    let before = app.db.commands.total();
    app.ok(list, json!({}), None).await;
    assert_eq!(app.db.commands.total(), before);
    app.ok(
        "mutation { clearCache(prefix: \"modules:\") }",
        json!({}),
        Some(&admin),
    )
    .await;
    let before = app.db.commands.total();
    app.ok(list, json!({}), None).await;
    assert!(
        app.db.commands.total() > before,
        "recomputed after clearCache"
    );
}

#[tokio::test]
async fn a_stored_response_still_spends_the_callers_cost_bucket() {
    // A bucket of 30 points refilling at 1 a second: `progressStats` costs
    // about 10, so the fourth read in a row is refused even though every
    // read after the first is a stored response.
    let app = spawn_app_with(&[
        ("RATE_LIMIT_COST_BUCKET", "30"),
        ("RATE_LIMIT_COST_RESTORE_PER_SECOND", "1"),
    ])
    .await;
    let (token, _) = app.register("spender").await;
    let mut statuses = Vec::new();
    let mut refusal = Value::Null;
    for _ in 0..6 {
        let resp = app
            .client
            .post(format!("{}/graphql", app.address))
            .bearer_auth(&token)
            .json(&json!({ "query": STATS }))
            .send()
            .await
            .unwrap();
        statuses.push(resp.status());
        if resp.status() == StatusCode::TOO_MANY_REQUESTS {
            assert!(resp.headers().contains_key(header::RETRY_AFTER));
            refusal = resp.json().await.unwrap();
            break;
        }
    }
    assert!(hits(&app, "responses").await >= 1, "{statuses:?}");
    assert_eq!(
        statuses.last(),
        Some(&StatusCode::TOO_MANY_REQUESTS),
        "{statuses:?}"
    );
    assert_eq!(refusal["errors"][0]["extensions"]["code"], "RATE_LIMITED");
}
