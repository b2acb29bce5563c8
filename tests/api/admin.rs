//! Admins: who may use the admin fields, catalogue writes (validation,
//! conflicts, freshness, deletion), the dashboard against an independent
//! computation, and the user list.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Document, doc, oid::ObjectId};
use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, code, module, spawn_app, spawn_app_with};

const CREATE: &str = "mutation($i: ModuleInput!) { createModule(input: $i) {
  id slug title summary category level tags durationMinutes position published content createdAt updatedAt } }";
const UPDATE: &str =
    "mutation($id: ID!, $i: ModuleUpdateInput!) { updateModule(id: $id, input: $i) {
  id slug title published position content } }";
const DELETE: &str = "mutation($id: ID!) { deleteModule(id: $id) }";
const RECORD: &str = "mutation($i: ProgressInput!) { recordProgress(input: $i) { status } }";
const DASHBOARD: &str = "query($n: Int) { adminDashboard {
  usersTotal activeUsersLast7Days modulesTotal modulesPublished completionsTotal averageScore
  topModules(limit: $n) { module { slug } learnersStarted learnersCompleted completionRate averageScore averageTimeSeconds } } }";
const USERS: &str = "query($f: Int, $a: String, $s: String, $r: Role) {
  users(first: $f, after: $a, search: $s, role: $r) {
    totalCount nodes { id email username role } pageInfo { hasNextPage endCursor } } }";

fn input(slug: &str) -> Value {
    json!({
        "slug": slug, "title": format!("Title {slug}"), "summary": "A summary",
        "category": "rust", "level": "BEGINNER", "tags": ["intro"],
        "durationMinutes": 30, "position": 1, "content": "Lesson body",
    })
}

fn with(mut v: Value, key: &str, value: Value) -> Value {
    v[key] = value;
    v
}

async fn create(app: &TestApp, admin: &str, input: Value) -> Value {
    app.ok(CREATE, json!({ "i": input }), Some(admin)).await["createModule"].clone()
}

#[tokio::test]
async fn every_admin_field_is_unauthenticated_anonymously_forbidden_to_learners_and_open_to_admins()
{
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (learner, _) = app.register("plain").await;
    let id = create(&app, &admin, input("matrix")).await["id"].clone();
    let other = create(&app, &admin, input("matrix-two")).await["id"].clone();
    let cases: Vec<(&str, &str, Value)> = vec![
        (
            "adminDashboard",
            "{ adminDashboard { usersTotal } }",
            json!({}),
        ),
        ("users", "{ users { totalCount } }", json!({})),
        ("cacheStats", "{ cacheStats { hits } }", json!({})),
        (
            "notificationJobs",
            "{ notificationJobs { edges { node { state } } } }",
            json!({}),
        ),
        ("createModule", CREATE, json!({ "i": input("matrix-new") })),
        (
            "updateModule",
            UPDATE,
            json!({ "id": id, "i": { "title": "Renamed" } }),
        ),
        ("deleteModule", DELETE, json!({ "id": other })),
        ("clearCache", "mutation { clearCache }", json!({})),
    ];
    for (field, query, vars) in cases {
        let anon = app.gql(query, vars.clone(), None).await;
        assert_eq!(code(&anon), "UNAUTHENTICATED", "{field}: {anon}");
        let body = app.gql(query, vars.clone(), Some(&learner)).await;
        assert_eq!(code(&body), "FORBIDDEN", "{field}: {body}");
        let ok = app.gql(query, vars, Some(&admin)).await;
        assert!(ok.get("errors").is_none(), "{field}: {ok}");
        assert!(!ok["data"][field].is_null(), "{field}: {ok}");
    }
}

#[tokio::test]
async fn a_created_module_reads_back_with_every_field_and_is_listed() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let created = create(
        &app,
        &admin,
        with(input("rust-101"), "published", json!(true)),
    )
    .await;
    assert_eq!(created["slug"], "rust-101");
    assert_eq!(created["level"], "BEGINNER");
    assert_eq!(created["tags"], json!(["intro"]));
    assert_eq!(created["content"], "Lesson body");
    assert_eq!(created["published"], true);
    assert_eq!(created["createdAt"], created["updatedAt"]);

    let stored = app
        .db
        .raw("modules")
        .find_one(doc! { "slug": "rust-101" })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.get_str("level").unwrap(), "beginner");
    assert_eq!(stored.get_i32("duration_minutes").unwrap(), 30);
    assert!(stored.get_datetime("created_at").is_ok());

    let listed = app
        .ok("{ modules { nodes { slug } } }", json!({}), None)
        .await;
    assert_eq!(listed["modules"]["nodes"], json!([{ "slug": "rust-101" }]));
}

#[tokio::test]
async fn module_input_is_validated_field_by_field() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let base = input("valid");
    let bad = vec![
        with(base.clone(), "slug", json!("")),
        with(base.clone(), "slug", json!("Upper-Case")),
        with(base.clone(), "slug", json!("has space")),
        with(base.clone(), "slug", json!("x".repeat(101))),
        with(base.clone(), "slug", json!("{\"$gt\": \"\"}")),
        with(base.clone(), "title", json!("   ")),
        with(base.clone(), "summary", json!("")),
        with(base.clone(), "category", json!("")),
        with(base.clone(), "durationMinutes", json!(0)),
        with(base.clone(), "durationMinutes", json!(10_001)),
        with(base.clone(), "position", json!(-1)),
        with(base.clone(), "tags", json!(vec!["t"; 21])),
        with(base.clone(), "tags", json!([""])),
        with(base.clone(), "tags", json!(["x".repeat(51)])),
    ];
    for i in bad {
        let body = app.gql(CREATE, json!({ "i": i }), Some(&admin)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{i}: {body}");
    }
    assert_eq!(
        app.db
            .raw("modules")
            .count_documents(doc! {})
            .await
            .unwrap(),
        0
    );

    let id = create(&app, &admin, base.clone()).await["id"].clone();
    for change in [
        json!({ "slug": "Nope" }),
        json!({ "title": "" }),
        json!({ "durationMinutes": -5 }),
        json!({ "position": -1 }),
    ] {
        let body = app
            .gql(UPDATE, json!({ "id": id, "i": change }), Some(&admin))
            .await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{change}: {body}");
    }
    for bad_id in ["", "123", "zz01693b8a587308b42c39f9"] {
        let body = app
            .gql(UPDATE, json!({ "id": bad_id, "i": {} }), Some(&admin))
            .await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
        let body = app.gql(DELETE, json!({ "id": bad_id }), Some(&admin)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    }
    let unknown = ObjectId::new().to_hex();
    let body = app
        .gql(
            UPDATE,
            json!({ "id": unknown, "i": { "title": "x" } }),
            Some(&admin),
        )
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
    let body = app
        .gql(DELETE, json!({ "id": unknown }), Some(&admin))
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
}

#[tokio::test]
async fn content_over_a_megabyte_is_bad_input_and_a_large_lesson_is_fine() {
    let app = spawn_app_with(&[("BODY_LIMIT_BYTES", "4000000")]).await;
    let admin = app.admin_token().await;
    let body = app
        .gql(
            CREATE,
            json!({ "i": with(input("huge"), "content", json!("x".repeat(1_000_001))) }),
            Some(&admin),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{}", body["errors"]);
    let created = create(
        &app,
        &admin,
        with(input("large"), "content", json!("y".repeat(900_000))),
    )
    .await;
    assert_eq!(created["content"].as_str().unwrap().len(), 900_000);
}

#[tokio::test]
async fn a_taken_slug_is_a_conflict_on_create_and_on_update() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    create(&app, &admin, input("taken")).await;
    let body = app
        .gql(CREATE, json!({ "i": input("taken") }), Some(&admin))
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");

    let id = create(&app, &admin, input("free")).await["id"].clone();
    let body = app
        .gql(
            UPDATE,
            json!({ "id": id, "i": { "slug": "taken" } }),
            Some(&admin),
        )
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");
    // Keeping its own slug is no conflict.
    let same = app
        .ok(
            UPDATE,
            json!({ "id": id, "i": { "slug": "free", "position": 7 } }),
            Some(&admin),
        )
        .await;
    assert_eq!(same["updateModule"]["position"], 7);
}

#[tokio::test]
async fn module_writes_are_visible_at_once_even_with_every_cache_warm() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (learner, _) = app.register("reader").await;
    let a = create(&app, &admin, with(input("alpha"), "published", json!(true))).await;
    let b = create(&app, &admin, with(input("beta"), "published", json!(true))).await;
    let list = "{ modules { totalCount nodes { slug title } } }";
    let detail = "query($id: ID) { module(id: $id) { title } }";
    let by_slug = "query($s: String) { module(slug: $s) { title } }";
    let stats = "{ progressStats { modulesTotal } }";
    let dash = "{ adminDashboard { modulesTotal modulesPublished } }";
    let (app_, learner_, admin_, a_) = (&app, &learner, &admin, &a);
    let warm = |slug: &'static str| async move {
        for _ in 0..2 {
            app_.ok(list, json!({}), Some(learner_)).await;
            app_.ok(detail, json!({ "id": a_["id"] }), Some(learner_))
                .await;
            app_.ok(by_slug, json!({ "s": slug }), Some(learner_)).await;
            app_.ok(stats, json!({}), Some(learner_)).await;
            app_.ok(dash, json!({}), Some(admin_)).await;
        }
    };
    warm("alpha").await;

    // Rename and move: lists, details by id and slug see it at once.
    app.ok(
        UPDATE,
        json!({ "id": a["id"], "i": { "title": "Alpha II", "slug": "alpha-2" } }),
        Some(&admin),
    )
    .await;
    let data = app.ok(list, json!({}), Some(&learner)).await;
    assert_eq!(data["modules"]["nodes"][0]["title"], "Alpha II");
    let data = app
        .ok(detail, json!({ "id": a["id"] }), Some(&learner))
        .await;
    assert_eq!(data["module"]["title"], "Alpha II");
    let body = app
        .gql(by_slug, json!({ "s": "alpha" }), Some(&learner))
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");

    // Unpublish: gone for learners, from stats and from the dashboard.
    warm("alpha-2").await;
    app.ok(
        UPDATE,
        json!({ "id": b["id"], "i": { "published": false } }),
        Some(&admin),
    )
    .await;
    let data = app.ok(list, json!({}), Some(&learner)).await;
    assert_eq!(data["modules"]["totalCount"], 1);
    let data = app.ok(stats, json!({}), Some(&learner)).await;
    assert_eq!(data["progressStats"]["modulesTotal"], 1);
    let data = app.ok(dash, json!({}), Some(&admin)).await;
    assert_eq!(
        data["adminDashboard"],
        json!({ "modulesTotal": 2, "modulesPublished": 1 })
    );
    let body = app
        .gql(detail, json!({ "id": b["id"] }), Some(&learner))
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");

    // Create and delete: seen at once too.
    warm("alpha-2").await;
    create(&app, &admin, with(input("gamma"), "published", json!(true))).await;
    let data = app.ok(stats, json!({}), Some(&learner)).await;
    assert_eq!(data["progressStats"]["modulesTotal"], 2);
    app.ok(DELETE, json!({ "id": a["id"] }), Some(&admin)).await;
    let data = app.ok(list, json!({}), Some(&learner)).await;
    assert_eq!(
        data["modules"]["nodes"],
        json!([{ "slug": "gamma", "title": "Title gamma" }])
    );
    let data = app.ok(stats, json!({}), Some(&learner)).await;
    assert_eq!(data["progressStats"]["modulesTotal"], 1);
    let body = app
        .gql(detail, json!({ "id": a["id"] }), Some(&admin))
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
}

#[tokio::test]
async fn deleting_a_module_removes_its_progress_and_activity_and_unlinks_notifications() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (learner, learner_id) = app.register("deleter").await;
    let ids = app
        .insert_modules(vec![
            module("doomed", 0, doc! {}),
            module("kept", 1, doc! {}),
        ])
        .await;
    for id in &ids {
        app.ok(
            RECORD,
            json!({ "i": { "moduleId": id.to_hex(), "timeSpentSeconds": 60, "score": 90.0 } }),
            Some(&learner),
        )
        .await;
    }
    let user = ObjectId::parse_str(&learner_id).unwrap();
    app.db
        .raw("notifications")
        .insert_one(doc! {
            "_id": ObjectId::new(), "user_id": user, "message": "New module published: doomed",
            "module_id": ids[0], "read": false, "created_at": bson::DateTime::now(),
        })
        .await
        .unwrap();
    let mine = "{ myProgress { nodes { module { slug } } } history { nodes { module { slug } } }
      progressStats { modulesStarted totalTimeSeconds } notifications { nodes { message module { slug } } } }";
    // Warm the learner's caches, which hold the module.
    let before = app.ok(mine, json!({}), Some(&learner)).await;
    assert_eq!(before["myProgress"]["nodes"].as_array().unwrap().len(), 2);
    assert_eq!(
        before["notifications"]["nodes"][0]["module"]["slug"],
        "doomed"
    );

    let data = app
        .ok(DELETE, json!({ "id": ids[0].to_hex() }), Some(&admin))
        .await;
    assert_eq!(data["deleteModule"], true);

    let after = app.ok(mine, json!({}), Some(&learner)).await;
    assert_eq!(
        after["myProgress"]["nodes"],
        json!([{ "module": { "slug": "kept" } }])
    );
    let history: BTreeSet<&str> = after["history"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["module"]["slug"].as_str().unwrap())
        .collect();
    assert_eq!(history, BTreeSet::from(["kept"]));
    assert_eq!(
        after["progressStats"],
        json!({ "modulesStarted": 1, "totalTimeSeconds": 60 })
    );
    assert_eq!(
        after["notifications"]["nodes"],
        json!([{ "message": "New module published: doomed", "module": null }])
    );
    for coll in ["progress", "activity"] {
        let left = app
            .db
            .raw(coll)
            .count_documents(doc! { "module_id": ids[0] })
            .await
            .unwrap();
        assert_eq!(left, 0, "{coll}");
    }
    let note = app
        .db
        .raw("notifications")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(note.get("module_id"), Some(&bson::Bson::Null));

    // A second delete finds nothing.
    let body = app
        .gql(DELETE, json!({ "id": ids[0].to_hex() }), Some(&admin))
        .await;
    assert_eq!(code(&body), "NOT_FOUND", "{body}");
}

/// Per module: learners started, completed, their scores, their time.
type Figures = (i64, i64, Vec<f64>, i64);

/// Seeds a small school directly and returns what the dashboard must say,
/// computed here from the seeded documents.
async fn seed_school(app: &TestApp) -> Value {
    let now = Utc::now();
    let ids = app
        .insert_modules(vec![
            module("a", 0, doc! {}),
            module("b", 1, doc! {}),
            module("c", 2, doc! {}),
            module("hidden", 3, doc! { "published": false }),
            module("untouched", 4, doc! {}),
        ])
        .await;
    let slugs = ["a", "b", "c", "hidden", "untouched"];
    let learners: Vec<ObjectId> = (0..6).map(|_| ObjectId::new()).collect();
    let users: Vec<Document> = learners
        .iter()
        .enumerate()
        .map(|(i, id)| {
            doc! { "_id": id, "email": format!("l{i}@x.org"), "email_lower": format!("l{i}@x.org"),
            "username": format!("l{i}"), "username_lower": format!("l{i}"), "role": "learner",
            "created_at": bson::DateTime::now() }
        })
        .collect();
    app.db.raw("users").insert_many(users).await.unwrap();
    // (learner, module, status, score, time)
    let rows: Vec<(usize, usize, &str, Option<f64>, i64)> = vec![
        (0, 0, "completed", Some(90.0), 600),
        (1, 0, "completed", Some(70.0), 300),
        (2, 0, "in_progress", None, 100),
        (0, 1, "in_progress", Some(50.0), 50),
        (1, 1, "completed", Some(100.0), 200),
        (3, 2, "completed", None, 10),
        (4, 3, "completed", Some(10.0), 999),
        (5, 3, "in_progress", Some(20.0), 999),
    ];
    let progress: Vec<Document> = rows
        .iter()
        .map(|(u, m, status, score, time)| {
            let mut d = doc! { "_id": ObjectId::new(), "user_id": learners[*u], "module_id": ids[*m],
                "status": *status, "time_spent_seconds": *time, "attempts": 1_i64,
                "started_at": bson::DateTime::now(), "updated_at": bson::DateTime::now() };
            if let Some(s) = score {
                d.insert("score", *s);
            }
            d
        })
        .collect();
    app.db.raw("progress").insert_many(progress).await.unwrap();
    // Activity: learners 0 and 1 recently (twice for 0), 2 only 8 days ago,
    // 4 (on the hidden module) yesterday.
    let at = |days: i64| bson::DateTime::from_chrono(now - Duration::days(days));
    let activity: Vec<Document> = [(0, 0), (0, 1), (1, 2), (2, 8), (4, 1)]
        .iter()
        .map(|(u, days)| {
            doc! { "_id": ObjectId::new(), "user_id": learners[*u], "module_id": ids[0],
            "kind": "progressed", "at": at(*days), "time_spent_seconds": 1_i64 }
        })
        .collect();
    app.db.raw("activity").insert_many(activity).await.unwrap();

    // The expected figures, from the rows above: published modules only.
    let mut per: BTreeMap<usize, Figures> = BTreeMap::new();
    for (_, m, status, score, time) in &rows {
        if *m == 3 {
            continue;
        }
        let e = per.entry(*m).or_default();
        e.0 += 1;
        e.1 += i64::from(*status == "completed");
        e.2.extend(score.iter());
        e.3 += time;
    }
    let scores: Vec<f64> = per.values().flat_map(|e| e.2.clone()).collect();
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let mut top: Vec<(usize, Figures)> = per.into_iter().collect();
    top.sort_by(|(ma, a), (mb, b)| {
        b.0.cmp(&a.0)
            .then((b.1 as f64 / b.0 as f64).total_cmp(&(a.1 as f64 / a.0 as f64)))
            .then(ma.cmp(mb))
    });
    json!({
        "usersTotal": 7, // six learners and the admin
        "activeUsersLast7Days": 3,
        "modulesTotal": 5,
        "modulesPublished": 4,
        "completionsTotal": 4,
        "averageScore": mean(&scores),
        "topModules": top.iter().map(|(m, (started, done, sc, time))| json!({
            "module": { "slug": slugs[*m] },
            "learnersStarted": started,
            "learnersCompleted": done,
            "completionRate": *done as f64 / *started as f64,
            "averageScore": mean(sc),
            "averageTimeSeconds": *time as f64 / *started as f64,
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn the_dashboard_matches_an_independent_computation_in_one_aggregate_then_none() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let expected = seed_school(&app).await;
    assert_eq!(
        expected["topModules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["module"]["slug"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["a", "b", "c"],
        "the seeded order: most started, then completion rate"
    );

    let aggregates = || {
        app.db
            .commands
            .snapshot()
            .get("aggregate")
            .copied()
            .unwrap_or(0)
    };
    let (before, before_agg) = (app.db.commands.total(), aggregates());
    let data = app.ok(DASHBOARD, json!({ "n": 50 }), Some(&admin)).await;
    assert_eq!(
        app.db.commands.total() - before,
        1,
        "a miss costs exactly one database command"
    );
    assert_eq!(aggregates() - before_agg, 1, "and it is an aggregate");
    assert_eq!(data["adminDashboard"], expected);

    let before = app.db.commands.total();
    let again = app.ok(DASHBOARD, json!({ "n": 2 }), Some(&admin)).await;
    assert_eq!(app.db.commands.total() - before, 0, "a hit costs none");
    assert_eq!(
        again["adminDashboard"]["topModules"],
        json!(expected["topModules"].as_array().unwrap()[..2])
    );
    let default = app
        .ok(
            "{ adminDashboard { topModules { learnersStarted } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        default["adminDashboard"]["topModules"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

#[tokio::test]
async fn top_modules_takes_a_limit_of_1_to_50() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for n in [0, -1, 51] {
        let body = app.gql(DASHBOARD, json!({ "n": n }), Some(&admin)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{n}: {body}");
    }
    let data = app.ok(DASHBOARD, json!({ "n": 1 }), Some(&admin)).await;
    assert_eq!(data["adminDashboard"]["topModules"], json!([]));
    assert_eq!(data["adminDashboard"]["averageScore"], Value::Null);
}

#[tokio::test]
async fn the_dashboard_is_fresh_after_progress_and_module_writes() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let (learner, _) = app.register("fresh").await;
    let q =
        "{ adminDashboard { usersTotal activeUsersLast7Days completionsTotal modulesPublished } }";
    let m = create(&app, &admin, with(input("fresh"), "published", json!(true))).await;
    let first = app.ok(q, json!({}), Some(&admin)).await;
    assert_eq!(
        first["adminDashboard"],
        json!({ "usersTotal": 2, "activeUsersLast7Days": 0, "completionsTotal": 0, "modulesPublished": 1 })
    );
    app.ok(
        RECORD,
        json!({ "i": { "moduleId": m["id"], "timeSpentSeconds": 5, "completed": true } }),
        Some(&learner),
    )
    .await;
    let second = app.ok(q, json!({}), Some(&admin)).await;
    assert_eq!(
        second["adminDashboard"],
        json!({ "usersTotal": 2, "activeUsersLast7Days": 1, "completionsTotal": 1, "modulesPublished": 1 })
    );
    app.ok(
        UPDATE,
        json!({ "id": m["id"], "i": { "published": false } }),
        Some(&admin),
    )
    .await;
    let third = app.ok(q, json!({}), Some(&admin)).await;
    assert_eq!(third["adminDashboard"]["modulesPublished"], 0);
    assert_eq!(third["adminDashboard"]["completionsTotal"], 0);
}

async fn search(app: &TestApp, admin: &str, s: &str) -> (BTreeSet<String>, i64) {
    let data = app
        .ok(USERS, json!({ "s": s, "f": 100 }), Some(admin))
        .await;
    let names = data["users"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["username"].as_str().unwrap().to_string())
        .collect();
    (names, data["users"]["totalCount"].as_i64().unwrap())
}

#[tokio::test]
async fn users_are_searched_by_escaped_case_insensitive_prefix_filtered_by_role_and_paged() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    for name in ["alice", "Alan", "bob", "al.x", "alpha_b"] {
        app.register(name).await;
    }
    let set = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        search(&app, &admin, "AL").await,
        (set(&["alice", "Alan", "al.x", "alpha_b"]), 4)
    );
    // A regex metacharacter is a literal: "al." is not "al" + any character.
    assert_eq!(search(&app, &admin, "al.").await, (set(&["al.x"]), 1));
    assert_eq!(search(&app, &admin, "al.*").await, (set(&[]), 0));
    // Emails match too (every test email is <name>@example.org).
    assert_eq!(search(&app, &admin, "BOB@EX").await, (set(&["bob"]), 1));
    // Prefix only, never a substring.
    assert_eq!(search(&app, &admin, "lice").await, (set(&[]), 0));
    assert_eq!(search(&app, &admin, "{\"$gt\": \"\"}").await, (set(&[]), 0));

    let admins = app.ok(USERS, json!({ "r": "ADMIN" }), Some(&admin)).await;
    assert_eq!(
        admins["users"]["nodes"],
        json!([{ "id": admins["users"]["nodes"][0]["id"], "email": "root@example.org", "username": "root", "role": "ADMIN" }])
    );
    let learners = app
        .ok(USERS, json!({ "r": "LEARNER", "s": "a" }), Some(&admin))
        .await;
    assert_eq!(learners["users"]["totalCount"], 4);

    // Pages of two in id order cover everyone once.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = app
            .ok(USERS, json!({ "f": 2, "a": after }), Some(&admin))
            .await;
        let users = &data["users"];
        assert_eq!(users["totalCount"], 6);
        for n in users["nodes"].as_array().unwrap() {
            seen.push(n["id"].as_str().unwrap().to_string());
        }
        if !users["pageInfo"]["hasNextPage"].as_bool().unwrap() {
            break;
        }
        after = users["pageInfo"]["endCursor"].as_str().map(String::from);
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen.len(), 6);
    assert_eq!(seen, sorted, "ordered by id");

    // A cursor of another filter, a forged one and a large page are refused.
    let page = app
        .ok(USERS, json!({ "f": 1, "s": "a" }), Some(&admin))
        .await;
    let cursor = page["users"]["pageInfo"]["endCursor"].clone();
    for vars in [
        json!({ "a": cursor, "s": "b" }),
        json!({ "a": "forged" }),
        json!({ "f": 101 }),
        json!({ "s": "x".repeat(255) }),
    ] {
        let body = app.gql(USERS, vars.clone(), Some(&admin)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{vars}: {body}");
    }
    let everything = app
        .gql(
            "{ users(first: 100) { nodes { id email username displayName role createdAt } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert!(!everything.to_string().contains("argon2"));
}
