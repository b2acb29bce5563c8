//! Query cost against the running service: full pages of every list pass,
//! abuse is refused with its cost, `extensions.cost` is exact, and the cost
//! bucket of each caller throttles across instances sharing Redis and per
//! instance without it.

use bson::doc;
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{
    cache::{RedisProc, redis_settings, unique_prefix, wait_backend},
    helpers::{TestApp, code, module, spawn_app, spawn_app_with},
};

/// A production instance, as graphql-cop is pointed at.
const PROD: [(&str, &str); 2] = [
    ("APP_ENV", "production"),
    ("JWT_SECRET", "0123456789abcdef0123456789abcdef-prod"),
];

impl TestApp {
    /// POSTs a query; returns the status, the headers and the JSON body.
    async fn query(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
    ) -> (StatusCode, header::HeaderMap, Value) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.json().await.expect("json body"))
    }
}

/// `extensions.cost` of a body.
fn cost(body: &Value) -> &Value {
    &body["extensions"]["cost"]
}

/// Every scalar field of each list's item.
const MODULE: &str = "id slug title summary category level tags durationMinutes position published createdAt updatedAt content";
const PROGRESS: &str = "status score timeSpentSeconds attempts startedAt completedAt updatedAt";
const ACTIVITY: &str = "id kind at timeSpentSeconds score";
const NOTIFICATION: &str = "id message read createdAt";
const USER: &str = "id email username displayName role createdAt";
const JOB: &str = "id state moduleId message total notified attempts lastError createdAt updatedAt startedAt finishedAt";
const PAGE_INFO: &str = "pageInfo { hasNextPage endCursor }";
const DAY: &str = "date timeSpentSeconds events completions";
const ENTRY: &str = "rank name modulesCompleted timeSpentSeconds isViewer";
const PERIOD: &str = "from to timeSpentSeconds modulesCompleted activeDays averageScore";

/// A full page of `list` as a list screen asks for it: the page info, the
/// edges with their cursors and every scalar of the node, and the nodes
/// (with `extra`, e.g. the module of a progress entry) when the connection
/// has them.
fn full_page(list: &str, fields: &str, total: bool, nodes: bool, extra: &str) -> String {
    let total = if total { "totalCount" } else { "" };
    let nodes = if nodes {
        format!("nodes {{ {fields} {extra} }}")
    } else {
        String::new()
    };
    format!(
        "{{ {list}(first: 100) {{ {total} {PAGE_INFO} edges {{ cursor node {{ {fields} }} }} {nodes} }} }}"
    )
}

#[tokio::test]
async fn a_full_page_of_every_list_with_every_scalar_field_passes() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let ids = app
        .insert_modules(
            (0..3)
                .map(|i| module(&format!("m{i}"), i, doc! {}))
                .collect(),
        )
        .await;
    let (learner, _) = app.register("pagereader").await;
    app.ok(
        "mutation($i: ProgressInput!) { recordProgress(input: $i) { attempts } }",
        json!({ "i": { "moduleId": ids[0].to_hex(), "timeSpentSeconds": 60, "score": 80 } }),
        Some(&learner),
    )
    .await;
    // (query, token, its cost: 1 + pageInfo 1 + 100 × one item)
    let screens = [
        (full_page("modules", MODULE, true, true, ""), None, 202),
        (
            full_page("myProgress", PROGRESS, true, true, "module { id title }"),
            Some(&learner),
            1 + 1 + 100 * (1 + 2),
        ),
        (
            full_page("history", ACTIVITY, false, true, "module { id title }"),
            Some(&learner),
            302,
        ),
        (
            full_page("notifications", NOTIFICATION, false, true, "module { id }"),
            Some(&learner),
            302,
        ),
        (full_page("users", USER, true, true, ""), Some(&admin), 202),
        (
            full_page("notificationJobs", JOB, false, false, ""),
            Some(&admin),
            102,
        ),
        // Declared @cost(weight: 10); the longest series is 367 dates, a
        // leaderboard holds `first` entries.
        (
            format!(
                "{{ activitySeries(from: \"2025-01-01T00:00:00Z\", to: \"2026-01-02T00:00:00Z\") {{ {DAY} }} }}"
            ),
            Some(&learner),
            10 + 367,
        ),
        (
            format!(
                "{{ leaderboard(first: 100) {{ period category viewerRank participants entries {{ {ENTRY} }} }} }}"
            ),
            Some(&learner),
            10 + 1 + 100,
        ),
        (
            format!(
                "{{ periodStats(from: \"2025-01-01T00:00:00Z\", to: \"2026-01-01T00:00:00Z\") {{ current {{ {PERIOD} }} previous {{ {PERIOD} }} }} }}"
            ),
            Some(&learner),
            10 + 2,
        ),
    ];

    for (query, token, expected) in screens {
        let (status, _, body) = app
            .query(&query, json!({}), token.map(String::as_str))
            .await;

        assert_eq!(status, StatusCode::OK, "{query}: {body:#}");
        assert!(body.get("errors").is_none(), "{query}: {body:#}");
        assert_eq!(cost(&body)["requestedQueryCost"], expected, "{query}");
    }
}

#[tokio::test]
async fn nested_and_aliased_abuse_is_refused_with_its_cost() {
    let app = spawn_app().await;
    let nested = format!("nodes {{ {MODULE} myProgress {{ status module {{ {MODULE} }} }} }}");
    let four_nested_pages: String = (0..4)
        .map(|i| format!("p{i}: modules(first: 100) {{ {nested} }} "))
        .collect();
    let twenty_counts: String = (0..20)
        .map(|i| format!("c{i}: modules(first: 100) {{ totalCount }} "))
        .collect();
    let typename_flood: String = (0..101).map(|i| format!("t{i}: __typename ")).collect();

    let one = app
        .query(
            &format!("{{ modules(first: 100) {{ {nested} }} }}"),
            json!({}),
            None,
        )
        .await
        .2;
    let four = app
        .query(&format!("{{ {four_nested_pages} }}"), json!({}), None)
        .await
        .2;
    let counts = app
        .query(&format!("{{ {twenty_counts} }}"), json!({}), None)
        .await
        .2;
    let flood = app
        .query(&format!("{{ {typename_flood} }}"), json!({}), None)
        .await
        .2;

    assert!(
        one.get("errors").is_none(),
        "one nested page passes: {one:#}"
    );
    assert_eq!(cost(&one)["requestedQueryCost"], 1 + 100 * 3);
    for (body, points) in [(&four, 4 * 301), (&counts, 20 * 101)] {
        assert_eq!(code(body), "BAD_USER_INPUT", "{body:#}");
        let message = body["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("costs {points} points; at most 1000")),
            "{message}"
        );
        assert_eq!(cost(body)["requestedQueryCost"], points);
        assert_eq!(cost(body)["actualQueryCost"], 0);
        assert!(body.get("data").is_none(), "refused before execution");
    }
    assert_eq!(code(&flood), "BAD_USER_INPUT", "{flood:#}");
    assert!(
        flood["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("101 aliases; at most 100"),
        "{flood:#}"
    );
}

#[tokio::test]
async fn extensions_cost_is_exact_for_known_queries() {
    let app = spawn_app().await;
    app.insert_modules(
        (0..3)
            .map(|i| module(&format!("k{i}"), i, doc! {}))
            .collect(),
    )
    .await;
    let (learner, _) = app.register("costreader").await;
    // (query, token, requested, actual)
    let known = [
        // 3 modules come back of the 100 asked for.
        ("{ modules(first: 100) { nodes { id } } }", None, 101, 4),
        (
            "{ modules(first: 100) { edges { cursor node { id } } nodes { id } } }",
            None,
            201,
            7,
        ),
        // Without items selected, the page is still read.
        ("{ modules(first: 10) { totalCount } }", None, 11, 11),
        ("{ me { id } }", None, 1, 0),
        ("{ me { id } }", Some(learner.as_str()), 1, 1),
        // progressStats is declared @cost(weight: 10); byCategory has no
        // size, so 20 are assumed and the one category is counted.
        (
            "{ progressStats { modulesTotal byCategory { category } } }",
            Some(learner.as_str()),
            10 + 1 + 20,
            10 + 1 + 1,
        ),
        // Priced at the longest series, charged the 7 days returned.
        (
            "{ activitySeries(from: \"2026-01-01T00:00:00Z\", to: \"2026-01-08T00:00:00Z\") { date events } }",
            Some(learner.as_str()),
            10 + 367,
            10 + 7,
        ),
        // Nobody opted in: no entry comes back of the 5 asked for.
        (
            "{ leaderboard(first: 5) { participants entries { rank name } } }",
            Some(learner.as_str()),
            10 + 1 + 5,
            10 + 1,
        ),
    ];

    for (query, token, requested, actual) in known {
        let (_, _, body) = app.query(query, json!({}), token).await;

        assert!(body.get("errors").is_none(), "{query}: {body:#}");
        let cost = cost(&body);
        assert_eq!(cost["requestedQueryCost"], requested, "{query}");
        assert_eq!(cost["actualQueryCost"], actual, "{query}");
        let throttle = &cost["throttleStatus"];
        assert_eq!(throttle["maximumAvailable"], 2000, "{body:#}");
        assert_eq!(throttle["restoreRate"], 100, "{body:#}");
        let left = throttle["currentlyAvailable"].as_u64().unwrap();
        assert!((2000 - 300..=2000).contains(&left), "{body:#}");
    }
}

#[tokio::test]
async fn a_graphiql_introspection_query_passes_and_errors_carry_the_cost_too() {
    let app = spawn_app().await;

    let (_, _, introspection) = app.query(INTROSPECTION, json!({}), None).await;
    let (_, _, invalid) = app.query("{ modules { nope } }", json!({}), None).await;

    assert!(
        introspection.get("errors").is_none(),
        "{}",
        introspection["errors"]
    );
    let points = cost(&introspection)["requestedQueryCost"].as_u64().unwrap();
    assert!((50..1000).contains(&points), "{points}");
    assert_eq!(code(&invalid), "BAD_USER_INPUT");
    assert_eq!(cost(&invalid)["actualQueryCost"], 0, "{invalid:#}");
    assert_eq!(
        cost(&invalid)["throttleStatus"]["maximumAvailable"],
        2000,
        "{invalid:#}"
    );
}

/// Costs 101 whatever comes back: no item is selected, so the page asked
/// for is charged.
const HUNDRED_ONE: &str = "{ modules(first: 100) { totalCount } }";

/// A bucket of 300 points restored at 1 a second: two requests of 101 fit,
/// a third does not, and nothing comes back during the test.
const SMALL_BUCKET: [(&str, &str); 2] = [
    ("RATE_LIMIT_COST_BUCKET", "300"),
    ("RATE_LIMIT_COST_RESTORE_PER_SECOND", "1"),
];

/// Asserts that `body` was refused by the bucket with 429 and Retry-After.
fn assert_throttled(status: StatusCode, headers: &header::HeaderMap, body: &Value) {
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body:#}");
    assert_eq!(code(body), "RATE_LIMITED", "{body:#}");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let throttle = &cost(body)["throttleStatus"];
    let left = throttle["currentlyAvailable"].as_u64().unwrap();
    assert!(left < 101, "{body:#}");
    // At one point a second, the missing points take that many seconds.
    assert!(
        retry >= 101 - left && retry <= 101 - left + 1,
        "{retry} {body:#}"
    );
    assert_eq!(body["errors"][0]["extensions"]["retryAfterSeconds"], retry);
    assert_eq!(cost(body)["requestedQueryCost"], 101);
}

#[tokio::test]
async fn the_bucket_of_a_user_is_shared_by_two_instances_on_one_redis() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let mut settings = redis_settings(&url, &prefix);
    settings.extend(SMALL_BUCKET);
    let a = spawn_app_with(&settings).await;
    let db_name = a.state.settings.mongo.database.clone();
    settings.push(("MONGODB_DB", db_name.as_str()));
    let b = spawn_app_with(&settings).await;
    let admin = a.admin_token().await;
    wait_backend(&a, &admin, "redis").await;
    wait_backend(&b, &admin, "redis").await;
    let (alice, _) = a.register("alice").await;
    let (bob, _) = a.register("bob").await;

    let first = a.query(HUNDRED_ONE, json!({}), Some(&alice)).await;
    let second = b.query(HUNDRED_ONE, json!({}), Some(&alice)).await;
    let (status, headers, third) = a.query(HUNDRED_ONE, json!({}), Some(&alice)).await;
    let other_user = b.query(HUNDRED_ONE, json!({}), Some(&bob)).await;

    for (status, _, body) in [&first, &second, &other_user] {
        assert_eq!(*status, StatusCode::OK, "{body:#}");
        assert!(body.get("errors").is_none(), "{body:#}");
    }
    let left = cost(&second.2)["throttleStatus"]["currentlyAvailable"]
        .as_u64()
        .unwrap();
    assert!((98..=100).contains(&left), "b saw what a spent: {left}");
    assert_throttled(status, &headers, &third);
    let bob_left = cost(&other_user.2)["throttleStatus"]["currentlyAvailable"]
        .as_u64()
        .unwrap();
    assert!(bob_left >= 199, "bob has his own bucket: {bob_left}");
    let metrics = a.metrics().await;
    assert!(
        metrics.contains("kairos_graphql_cost_refusals_total{reason=\"throttled\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kairos_rate_limited_total{scope=\"cost\"} 1"));
}

/// Lua scripts Redis has run (`EVAL` and `EVALSHA`) since it started.
fn scripts_run(redis: &RedisProc) -> u64 {
    let out = std::process::Command::new("redis-cli")
        .args(["-p", &redis.port.to_string(), "INFO", "commandstats"])
        .output()
        .expect("redis-cli (install redis-tools, or run scripts/test)");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("cmdstat_eval:") || l.starts_with("cmdstat_evalsha:"))
        .filter_map(|l| {
            l.split("calls=")
                .nth(1)?
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[tokio::test]
async fn an_instance_leases_points_so_requests_skip_redis_yet_never_spend_a_point_twice() {
    let redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let mut settings = redis_settings(&url, &prefix);
    settings.extend(SMALL_BUCKET);
    settings.push(("RATE_LIMIT_COST_LEASE", "150"));
    let a = spawn_app_with(&settings).await;
    let db_name = a.state.settings.mongo.database.clone();
    settings.push(("MONGODB_DB", db_name.as_str()));
    let b = spawn_app_with(&settings).await;
    let admin = a.admin_token().await;
    wait_backend(&a, &admin, "redis").await;
    wait_backend(&b, &admin, "redis").await;
    let (erin, _) = a.register("erin").await;
    // Warm the page's cache, so that the reads below are quick.
    a.query(
        "{ modules(first: 10) { totalCount } }",
        json!({}),
        Some(&admin),
    )
    .await;

    // Twelve reads of 11 points on a: one lease of 150 pays for them all.
    let before = scripts_run(&redis);
    let mut last = Value::Null;
    for _ in 0..12 {
        let (status, _, body) = a
            .query(
                "{ modules(first: 10) { totalCount } }",
                json!({}),
                Some(&erin),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body:#}");
        last = body;
    }
    let round_trips = scripts_run(&redis) - before;
    // b has what a did not lease: 300 − 150 = 150, so one request of 101
    // passes and a second does not, although erin spent only 132 points.
    let on_b = b.query(HUNDRED_ONE, json!({}), Some(&erin)).await;
    let (status, headers, refused) = b.query(HUNDRED_ONE, json!({}), Some(&erin)).await;

    assert_eq!(cost(&last)["requestedQueryCost"], 11, "{last:#}");
    assert!(
        round_trips <= 4,
        "12 requests on one instance took {round_trips} Redis round trips"
    );
    // a reports the shared bucket plus what is left of its lease.
    let left = cost(&last)["throttleStatus"]["currentlyAvailable"]
        .as_u64()
        .unwrap();
    assert!((168..=180).contains(&left), "{last:#}");
    assert_eq!(on_b.0, StatusCode::OK, "{:#}", on_b.2);
    assert_throttled(status, &headers, &refused);
}

#[tokio::test]
async fn without_redis_each_instance_keeps_its_own_buckets() {
    let a = spawn_app_with(&SMALL_BUCKET).await;
    let db_name = a.state.settings.mongo.database.clone();
    let mut settings = SMALL_BUCKET.to_vec();
    settings.push(("MONGODB_DB", db_name.as_str()));
    let b = spawn_app_with(&settings).await;
    let (carol, _) = a.register("carol").await;

    let spent = [
        a.query(HUNDRED_ONE, json!({}), Some(&carol)).await,
        a.query(HUNDRED_ONE, json!({}), Some(&carol)).await,
    ];
    let (status, headers, refused) = a.query(HUNDRED_ONE, json!({}), Some(&carol)).await;
    let elsewhere = b.query(HUNDRED_ONE, json!({}), Some(&carol)).await;

    for (status, _, body) in &spent {
        assert_eq!(*status, StatusCode::OK, "{body:#}");
    }
    assert_throttled(status, &headers, &refused);
    assert_eq!(elsewhere.0, StatusCode::OK, "{:#}", elsewhere.2);
    let left = cost(&elsewhere.2)["throttleStatus"]["currentlyAvailable"]
        .as_u64()
        .unwrap();
    assert!(left >= 199, "b has a bucket of its own: {left}");
}

#[tokio::test]
async fn when_redis_dies_each_instance_falls_back_to_its_own_bucket() {
    let mut redis = RedisProc::start().await;
    let (url, prefix) = (redis.url(), unique_prefix());
    let mut settings = redis_settings(&url, &prefix);
    settings.extend(SMALL_BUCKET);
    let app = spawn_app_with(&settings).await;
    let admin = app.admin_token().await;
    wait_backend(&app, &admin, "redis").await;
    let (dave, _) = app.register("dave").await;
    let spent_in_redis = app.query(HUNDRED_ONE, json!({}), Some(&dave)).await;

    redis.stop();
    let during = [
        app.query(HUNDRED_ONE, json!({}), Some(&dave)).await,
        app.query(HUNDRED_ONE, json!({}), Some(&dave)).await,
    ];
    let (status, headers, refused) = app.query(HUNDRED_ONE, json!({}), Some(&dave)).await;

    let left = cost(&spent_in_redis.2)["throttleStatus"]["currentlyAvailable"]
        .as_u64()
        .unwrap();
    assert!((199..=200).contains(&left), "{:#}", spent_in_redis.2);
    for (status, _, body) in &during {
        assert_eq!(
            *status,
            StatusCode::OK,
            "served while Redis is down: {body:#}"
        );
        assert!(body.get("errors").is_none(), "{body:#}");
    }
    // This instance's own bucket started full: two requests, then 429.
    let left = cost(&during[1].2)["throttleStatus"]["currentlyAvailable"]
        .as_u64()
        .unwrap();
    assert!((98..=100).contains(&left), "{:#}", during[1].2);
    assert_throttled(status, &headers, &refused);
}

#[tokio::test]
async fn graphql_cop_denial_of_service_checks_all_pass_in_production() {
    let app = spawn_app_with(&PROD).await;
    let aliases = |n: usize| -> String {
        let fields: String = (0..n).map(|i| format!("alias{i}:__typename \n")).collect();
        format!("query cop {{ {fields} }}")
    };
    let duplicated = format!("query cop {{ {} }}", "__typename \n".repeat(500));
    let directives = "query cop { __typename @aa@aa@aa@aa@aa@aa@aa@aa@aa@aa }";
    let circular = "query cop { __schema { types { fields { type { fields { type { fields { type { name } } } } } } } } }";
    let batch: Vec<Value> = (0..10)
        .map(|_| json!({ "query": "query cop { __typename }" }))
        .collect();

    let (_, _, hundred) = app.query(&aliases(100), json!({}), None).await;
    let (_, _, alias_overloading) = app.query(&aliases(101), json!({}), None).await;
    let (_, _, field_duplication) = app.query(&duplicated, json!({}), None).await;
    let (_, _, directive_overloading) = app.query(directives, json!({}), None).await;
    let (_, _, circular_introspection) = app.query(circular, json!({}), None).await;
    let batch_response = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&batch)
        .send()
        .await
        .unwrap();
    let batch_status = batch_response.status();
    let batch_body: Value = batch_response.json().await.unwrap();

    assert_eq!(hundred["data"]["alias99"], "Query", "{hundred:#}");
    // What graphql-cop looks at for each check, then why it was refused.
    assert!(alias_overloading["data"]["alias100"].is_null());
    assert!(
        alias_overloading["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("101 aliases; at most 100"),
        "{alias_overloading:#}"
    );
    assert!(field_duplication["data"]["__typename"].is_null());
    assert!(
        field_duplication["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("repeats 499 fields"),
        "{field_duplication:#}"
    );
    let errors = directive_overloading["errors"].as_array().unwrap();
    assert!(errors.len() < 10, "{directive_overloading:#}");
    assert!(circular_introspection["data"]["__schema"].is_null());
    assert!(!batch_body.is_array(), "{batch_body:#}");
    assert_eq!(batch_status, StatusCode::BAD_REQUEST);
    for body in [
        &alias_overloading,
        &field_duplication,
        &directive_overloading,
    ] {
        assert_eq!(code(body), "BAD_USER_INPUT", "{body:#}");
    }
}

#[tokio::test]
async fn anonymous_callers_are_throttled_by_address() {
    let app = spawn_app_with(&SMALL_BUCKET).await;

    app.query(HUNDRED_ONE, json!({}), None).await;
    app.query(HUNDRED_ONE, json!({}), None).await;
    let (status, headers, body) = app.query(HUNDRED_ONE, json!({}), None).await;

    assert_throttled(status, &headers, &body);
}

#[tokio::test]
async fn zero_valued_metrics_are_present_on_a_fresh_start() {
    let app = spawn_app().await;
    let series = [
        "kairos_rate_limited_total{scope=\"http\"} 0",
        "kairos_rate_limited_total{scope=\"auth\"} 0",
        "kairos_rate_limited_total{scope=\"cost\"} 0",
        "kairos_graphql_cost_refusals_total{reason=\"cost_limit\"} 0",
        "kairos_graphql_cost_refusals_total{reason=\"throttled\"} 0",
        "kairos_graphql_errors_total{code=\"INTERNAL\"} 0",
        "kairos_graphql_errors_total{code=\"RATE_LIMITED\"} 0",
    ];

    let fresh = app.metrics().await;
    let too_costly: String = (0..20)
        .map(|i| format!("c{i}: modules(first: 100) {{ totalCount }} "))
        .collect();
    app.query(&format!("{{ {too_costly} }}"), json!({}), None)
        .await;
    app.query(
        "query Catalogue { modules(first: 5) { nodes { id } } }",
        json!({}),
        None,
    )
    .await;
    let after = app.metrics().await;

    for line in series {
        assert!(fresh.contains(line), "{line} missing in:\n{fresh}");
    }
    assert!(
        after.contains("kairos_graphql_cost_refusals_total{reason=\"cost_limit\"} 1"),
        "{after}"
    );
    assert!(
        after.contains("kairos_graphql_query_cost_count{operation=\"Catalogue\"} 1"),
        "{after}"
    );
    assert!(
        after.contains("kairos_graphql_query_cost_sum{operation=\"Catalogue\"} 1"),
        "an empty catalogue costs its connection only: {after}"
    );
}

/// The introspection query GraphiQL sends (graphql-js
/// `getIntrospectionQuery()`).
const INTROSPECTION: &str = r#"
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue {
  name description
  type { ...TypeRef }
  defaultValue
}
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}
"#;
