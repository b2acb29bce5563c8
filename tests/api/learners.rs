//! Learners: accounts, progress, statistics, history, authorization.

use std::collections::{BTreeMap, BTreeSet};

use bson::{Document, doc, oid::ObjectId};
use chrono::{Duration, NaiveDate, TimeZone, Utc};
use serde_json::{Value, json};

use crate::helpers::{TestApp, code, module, spawn_app};

const REGISTER: &str = "mutation($i: RegisterInput!) { register(input: $i) { token expiresAt user { id email username displayName role } } }";
const LOGIN: &str = "mutation($i: LoginInput!) { login(input: $i) { token user { username } } }";
const RECORD: &str = "mutation($i: ProgressInput!) { recordProgress(input: $i) {
  status score timeSpentSeconds attempts completedAt module { slug } } }";
const STATS: &str = "query($u: ID) { progressStats(userId: $u) {
  modulesTotal modulesStarted modulesInProgress modulesCompleted completionRate totalTimeSeconds
  averageScore lastActivityAt currentStreakDays
  byCategory { category modulesTotal modulesCompleted timeSpentSeconds averageScore } } }";

fn reg(email: &str, username: &str, password: &str) -> Value {
    json!({ "i": { "email": email, "username": username, "password": password } })
}

#[tokio::test]
async fn a_learner_registers_logs_in_by_email_or_username_and_sees_themself() {
    let app = spawn_app().await;
    let data = app
        .ok(
            REGISTER,
            reg("Ada@Example.org", "Ada_L", "correct horse battery"),
            None,
        )
        .await;
    let user = &data["register"]["user"];
    assert_eq!(user["role"], "LEARNER");
    assert_eq!(user["email"], "Ada@Example.org");
    assert!(
        data["register"]["expiresAt"]
            .as_str()
            .unwrap()
            .ends_with('Z')
    );

    for login in ["ada@example.org", "ADA_L", "ada_l"] {
        let data = app
            .ok(
                LOGIN,
                json!({ "i": { "login": login, "password": "correct horse battery" } }),
                None,
            )
            .await;
        let token = data["login"]["token"].as_str().unwrap();
        let me = app
            .ok("{ me { username email } }", json!({}), Some(token))
            .await;
        assert_eq!(me["me"]["username"], "Ada_L");
    }
    let anon = app.ok("{ me { id } }", json!({}), None).await;
    assert_eq!(anon["me"], Value::Null);

    // No secret is ever stored in a readable field or returned.
    let stored = app
        .db
        .raw("users")
        .find_one(doc! {})
        .await
        .unwrap()
        .unwrap();
    assert!(
        stored
            .get_str("password_hash")
            .unwrap()
            .starts_with("$argon2id$")
    );
    assert_eq!(stored.get_str("email_lower").unwrap(), "ada@example.org");
    assert!(!data.to_string().contains("argon2"));
}

#[tokio::test]
async fn duplicate_emails_and_usernames_conflict_case_insensitively() {
    let app = spawn_app().await;
    app.ok(
        REGISTER,
        reg("ada@example.org", "ada", "correct horse battery"),
        None,
    )
    .await;
    let body = app
        .gql(
            REGISTER,
            reg("ADA@example.org", "other", "correct horse battery"),
            None,
        )
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("email")
    );
    let body = app
        .gql(
            REGISTER,
            reg("other@example.org", "ADA", "correct horse battery"),
            None,
        )
        .await;
    assert_eq!(code(&body), "CONFLICT", "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("username")
    );
}

#[tokio::test]
async fn two_concurrent_registrations_of_one_name_give_one_success_and_one_conflict() {
    let app = spawn_app().await;
    let (a, b) = tokio::join!(
        app.gql(
            REGISTER,
            reg("one@example.org", "racer", "correct horse battery"),
            None
        ),
        app.gql(
            REGISTER,
            reg("two@example.org", "Racer", "correct horse battery"),
            None
        ),
    );
    let codes: BTreeSet<&str> = [
        a.get("errors").map(|_| code(&a)).unwrap_or("OK"),
        b.get("errors").map(|_| code(&b)).unwrap_or("OK"),
    ]
    .into_iter()
    .collect();
    assert_eq!(codes, BTreeSet::from(["CONFLICT", "OK"]), "{a}\n{b}");
}

#[tokio::test]
async fn wrong_password_and_unknown_login_fail_alike() {
    let app = spawn_app().await;
    app.register("known").await;
    let wrong = app
        .gql(
            LOGIN,
            json!({ "i": { "login": "known", "password": "not the password" } }),
            None,
        )
        .await;
    let unknown = app
        .gql(
            LOGIN,
            json!({ "i": { "login": "nobody", "password": "not the password" } }),
            None,
        )
        .await;
    assert_eq!(code(&wrong), "UNAUTHENTICATED");
    assert_eq!(code(&unknown), "UNAUTHENTICATED");
    assert_eq!(
        wrong["errors"][0]["message"],
        unknown["errors"][0]["message"]
    );
}

#[tokio::test]
async fn registration_input_is_validated() {
    let app = spawn_app().await;
    for vars in [
        reg("not-an-email", "valid_name", "correct horse battery"),
        reg("a@b", "valid_name", "correct horse battery"),
        reg(
            &format!("{}@example.org", "a".repeat(250)),
            "valid_name",
            "correct horse battery",
        ),
        reg("ok@example.org", "no", "correct horse battery"),
        reg("ok@example.org", "has space", "correct horse battery"),
        reg("ok@example.org", &"x".repeat(33), "correct horse battery"),
        reg("ok@example.org", "valid_name", "short"),
        reg("{\"$gt\": \"\"}", "valid_name", "correct horse battery"),
    ] {
        let body = app.gql(REGISTER, vars.clone(), None).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{vars}: {body}");
    }
}

#[tokio::test]
async fn availability_is_case_insensitive_and_null_when_not_asked() {
    let app = spawn_app().await;
    app.register("taken").await;
    let q = "query($e: String, $u: String) { availability(email: $e, username: $u) { emailAvailable usernameAvailable } }";
    let data = app
        .ok(q, json!({ "e": "TAKEN@example.org", "u": "Taken" }), None)
        .await;
    assert_eq!(
        data["availability"],
        json!({ "emailAvailable": false, "usernameAvailable": false })
    );
    let data = app.ok(q, json!({ "u": "free_name" }), None).await;
    assert_eq!(
        data["availability"],
        json!({ "emailAvailable": null, "usernameAvailable": true })
    );
    let body = app.gql(q, json!({ "e": "nope" }), None).await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn bad_forged_or_expired_tokens_are_unauthenticated_even_for_public_fields() {
    let app = spawn_app().await;
    let (token, _) = app.register("tok").await;
    let forged = {
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[2] = "AAAA".repeat(10);
        parts.join(".")
    };
    let expired = {
        use jsonwebtoken::{EncodingKey, Header, encode};
        use secrecy::ExposeSecret;
        let secret = app.state.settings.auth.jwt_secret.expose_secret();
        let claims =
            json!({ "sub": ObjectId::new().to_hex(), "role": "learner", "iat": 1, "exp": 100 });
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    };
    for bad in ["garbage", forged.as_str(), expired.as_str()] {
        let body = app
            .gql("{ modules { totalCount } }", json!({}), Some(bad))
            .await;
        assert_eq!(code(&body), "UNAUTHENTICATED", "{bad}: {body}");
    }
    // Private fields without any token.
    for q in [
        "{ myProgress { totalCount } }",
        "{ progressStats { modulesTotal } }",
        "{ history { nodes { id } } }",
    ] {
        let body = app.gql(q, json!({}), None).await;
        assert_eq!(code(&body), "UNAUTHENTICATED", "{q}: {body}");
    }
    let body = app
        .gql(
            "mutation { startModule(moduleId: \"5f1d7f1c2b3a4c5d6e7f8091\") { status } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(code(&body), "UNAUTHENTICATED");
}

#[tokio::test]
async fn starting_is_idempotent_and_recording_accumulates() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, user_id) = app.register("learner").await;
    let m = ids[0].to_hex();

    let start = "mutation($m: ID!) { startModule(moduleId: $m) { status attempts timeSpentSeconds startedAt } }";
    let first = app.ok(start, json!({ "m": m }), Some(&token)).await;
    assert_eq!(first["startModule"]["status"], "IN_PROGRESS");
    assert_eq!(first["startModule"]["attempts"], 0);
    let again = app.ok(start, json!({ "m": m }), Some(&token)).await;
    assert_eq!(again, first);

    let r1 = app
        .ok(
            RECORD,
            json!({ "i": { "moduleId": m, "timeSpentSeconds": 100, "score": 70.0 } }),
            Some(&token),
        )
        .await;
    assert_eq!(r1["recordProgress"]["timeSpentSeconds"], 100);
    let r2 = app.ok(RECORD, json!({ "i": { "moduleId": m, "timeSpentSeconds": 50, "score": 40.0, "completed": true } }), Some(&token)).await;
    let p = &r2["recordProgress"];
    assert_eq!(
        (
            p["status"].as_str(),
            p["score"].as_f64(),
            p["timeSpentSeconds"].as_i64(),
            p["attempts"].as_i64()
        ),
        (Some("COMPLETED"), Some(70.0), Some(150), Some(2))
    );
    let completed_at = p["completedAt"].clone();
    let r3 = app
        .ok(
            RECORD,
            json!({ "i": { "moduleId": m, "timeSpentSeconds": 5, "score": 90.0 } }),
            Some(&token),
        )
        .await;
    let p = &r3["recordProgress"];
    assert_eq!(
        (
            p["status"].as_str(),
            p["score"].as_f64(),
            p["attempts"].as_i64()
        ),
        (Some("COMPLETED"), Some(90.0), Some(3))
    );
    assert_eq!(
        p["completedAt"], completed_at,
        "completion sticks with its first time"
    );

    // Activity: started (startModule), progressed, completed, progressed.
    let user = ObjectId::parse_str(&user_id).unwrap();
    let mut kinds: Vec<(bson::DateTime, String)> = Vec::new();
    let mut cursor = app
        .db
        .raw("activity")
        .find(doc! { "user_id": user })
        .sort(doc! { "_id": 1 })
        .await
        .unwrap();
    while cursor.advance().await.unwrap() {
        let d = cursor.deserialize_current().unwrap();
        kinds.push((
            *d.get_datetime("at").unwrap(),
            d.get_str("kind").unwrap().to_string(),
        ));
    }
    let kinds: Vec<&str> = kinds.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(kinds, ["started", "progressed", "completed", "progressed"]);
}

#[tokio::test]
async fn recording_on_a_fresh_module_appends_started_then_progressed() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = app.register("fresh").await;
    app.ok(
        RECORD,
        json!({ "i": { "moduleId": ids[0].to_hex(), "timeSpentSeconds": 10, "completed": true } }),
        Some(&token),
    )
    .await;
    let history = app
        .ok(
            "{ history { nodes { kind timeSpentSeconds module { slug } } } }",
            json!({}),
            Some(&token),
        )
        .await;
    let kinds: Vec<&str> = history["history"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    // Newest first; both entries share a timestamp, so ids order them.
    assert_eq!(kinds, ["COMPLETED", "STARTED"]);
}

#[tokio::test]
async fn twenty_concurrent_reports_lose_no_time_and_no_attempt() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = app.register("busy").await;
    let m = ids[0].to_hex();
    let calls = (0..20).map(|i| {
        let vars =
            json!({ "i": { "moduleId": m, "timeSpentSeconds": 10 + i, "score": f64::from(i) } });
        let token = token.clone();
        let app = &app;
        async move { app.gql(RECORD, vars, Some(&token)).await }
    });
    let results = futures::future::join_all(calls).await;
    for r in &results {
        assert!(r.get("errors").is_none(), "{r}");
    }
    let data = app
        .ok(
            "{ myProgress { nodes { timeSpentSeconds attempts score } } }",
            json!({}),
            Some(&token),
        )
        .await;
    let p = &data["myProgress"]["nodes"][0];
    assert_eq!(p["timeSpentSeconds"], (0..20).map(|i| 10 + i).sum::<i64>());
    assert_eq!(p["attempts"], 20);
    assert_eq!(p["score"], 19.0);
    let entries = app
        .db
        .raw("activity")
        .count_documents(doc! {})
        .await
        .unwrap();
    assert_eq!(entries, 21, "one started and twenty progressed entries");
}

#[tokio::test]
async fn of_many_concurrent_completing_reports_exactly_one_logs_the_completion() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = app.register("finisher").await;
    let m = ids[0].to_hex();
    let calls = (0..12).map(|_| {
        let vars = json!({ "i": { "moduleId": m, "timeSpentSeconds": 1, "completed": true } });
        let (token, app) = (token.clone(), &app);
        async move { app.gql(RECORD, vars, Some(&token)).await }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r["data"]["recordProgress"]["status"], "COMPLETED", "{r}");
    }
    let activity = app.db.raw("activity");
    let count = |kind: &'static str| activity.count_documents(doc! { "kind": kind });
    assert_eq!(count("completed").await.unwrap(), 1);
    assert_eq!(count("started").await.unwrap(), 1);
    assert_eq!(count("progressed").await.unwrap(), 11);
}

#[tokio::test]
async fn progress_on_unknown_or_unpublished_modules_is_not_found_and_bad_values_are_rejected() {
    let app = spawn_app().await;
    let ids = app
        .insert_modules(vec![
            module("ok", 1, doc! {}),
            module("draft", 2, doc! { "published": false }),
        ])
        .await;
    let (token, _) = app.register("picky").await;
    for m in [ids[1].to_hex(), ObjectId::new().to_hex()] {
        let body = app
            .gql(
                RECORD,
                json!({ "i": { "moduleId": m, "timeSpentSeconds": 1 } }),
                Some(&token),
            )
            .await;
        assert_eq!(code(&body), "NOT_FOUND", "{body}");
        let body = app
            .gql(
                "mutation($m: ID!) { startModule(moduleId: $m) { status } }",
                json!({ "m": m }),
                Some(&token),
            )
            .await;
        assert_eq!(code(&body), "NOT_FOUND", "{body}");
    }
    let ok = ids[0].to_hex();
    for input in [
        json!({ "moduleId": ok, "timeSpentSeconds": -1 }),
        json!({ "moduleId": ok, "timeSpentSeconds": 86401 }),
        json!({ "moduleId": ok, "timeSpentSeconds": 1, "score": 100.01 }),
        json!({ "moduleId": ok, "timeSpentSeconds": 1, "score": -3 }),
        json!({ "moduleId": "nope", "timeSpentSeconds": 1 }),
        json!({ "moduleId": ok, "timeSpentSeconds": "ten" }),
        json!({ "moduleId": ok }),
    ] {
        let body = app.gql(RECORD, json!({ "i": input }), Some(&token)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{input}: {body}");
    }
}

#[tokio::test]
async fn my_progress_is_newest_first_filterable_and_paged() {
    let app = spawn_app().await;
    let ids = app
        .insert_modules(
            (0..5)
                .map(|i| module(&format!("m{i}"), i, doc! {}))
                .collect(),
        )
        .await;
    let (token, _) = app.register("pager").await;
    for (i, id) in ids.iter().enumerate() {
        app.ok(RECORD, json!({ "i": { "moduleId": id.to_hex(), "timeSpentSeconds": 1, "completed": i % 2 == 0 } }), Some(&token)).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let q = "query($first: Int, $after: String, $s: ProgressStatus) { myProgress(first: $first, after: $after, status: $s) {
      totalCount nodes { module { slug } status } pageInfo { hasNextPage endCursor } } }";
    let slugs = |d: &Value| -> Vec<String> {
        d["myProgress"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["module"]["slug"].as_str().unwrap().to_string())
            .collect()
    };
    let page1 = app.ok(q, json!({ "first": 3 }), Some(&token)).await;
    assert_eq!(slugs(&page1), ["m4", "m3", "m2"]);
    assert_eq!(page1["myProgress"]["totalCount"], 5);
    let page2 = app
        .ok(
            q,
            json!({ "first": 3, "after": page1["myProgress"]["pageInfo"]["endCursor"] }),
            Some(&token),
        )
        .await;
    assert_eq!(slugs(&page2), ["m1", "m0"]);
    assert_eq!(page2["myProgress"]["pageInfo"]["hasNextPage"], false);
    let done = app.ok(q, json!({ "s": "COMPLETED" }), Some(&token)).await;
    assert_eq!(slugs(&done), ["m4", "m2", "m0"]);
    assert_eq!(done["myProgress"]["totalCount"], 3);
    // A cursor of one learner's list is not valid in another's.
    let (other, _) = app.register("other").await;
    let body = app
        .gql(
            q,
            json!({ "after": page1["myProgress"]["pageInfo"]["endCursor"] }),
            Some(&other),
        )
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT");
}

#[tokio::test]
async fn module_my_progress_costs_one_round_trip_for_a_page_and_is_per_viewer() {
    let app = spawn_app().await;
    let ids = app
        .insert_modules(
            (0..12)
                .map(|i| module(&format!("m{i}"), i, doc! {}))
                .collect(),
        )
        .await;
    let (alice, _) = app.register("alice").await;
    let (bob, _) = app.register("bob").await;
    app.ok(
        RECORD,
        json!({ "i": { "moduleId": ids[3].to_hex(), "timeSpentSeconds": 42 } }),
        Some(&alice),
    )
    .await;

    let q = "{ modules(first: 12) { nodes { slug myProgress { timeSpentSeconds } } } }";
    let before = app.db.commands.total();
    let data = app.ok(q, json!({}), Some(&alice)).await;
    assert_eq!(
        app.db.commands.total() - before,
        2,
        "one for the page, one for all myProgress"
    );
    let nodes = data["modules"]["nodes"].as_array().unwrap();
    assert_eq!(nodes[3]["myProgress"]["timeSpentSeconds"], 42);
    assert_eq!(
        nodes.iter().filter(|n| !n["myProgress"].is_null()).count(),
        1
    );

    let data = app.ok(q, json!({}), Some(&bob)).await;
    assert!(
        data["modules"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["myProgress"].is_null())
    );
    let data = app.ok(q, json!({}), None).await;
    assert!(
        data["modules"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["myProgress"].is_null())
    );
}

/// Inserts progress and activity for `user` directly (as a migration would).
async fn insert_learning(app: &TestApp, progress: Vec<Document>, activity: Vec<Document>) {
    if !progress.is_empty() {
        app.db.raw("progress").insert_many(progress).await.unwrap();
    }
    if !activity.is_empty() {
        app.db.raw("activity").insert_many(activity).await.unwrap();
    }
}

#[tokio::test]
async fn progress_stats_match_an_independent_computation_over_varied_data() {
    let app = spawn_app().await;
    // Catalogue: three categories, one unpublished module with progress.
    let cats = ["art", "db", "db", "rust", "rust", "rust", "db"];
    let mut modules: Vec<Document> = cats
        .iter()
        .enumerate()
        .map(|(i, c)| module(&format!("m{i}"), i as i32, doc! { "category": *c }))
        .collect();
    modules.push(module(
        "draft",
        99,
        doc! { "category": "zzz", "published": false },
    ));
    let ids = app.insert_modules(modules).await;
    let (token, user_id) = app.register("stats").await;
    let user = ObjectId::parse_str(&user_id).unwrap();
    let (other_token, other_id) = app.register("noise").await;
    let other = ObjectId::parse_str(&other_id).unwrap();
    let _ = other_token;

    let now = Utc::now();
    let today = now.date_naive();
    let midnight = Utc.from_utc_datetime(&today.and_hms_opt(0, 0, 0).unwrap());
    let t = |d: chrono::DateTime<Utc>| bson::DateTime::from_chrono(d);
    // (module index, status, score, time)
    let entries: Vec<(usize, &str, Option<f64>, i64)> = vec![
        (1, "completed", Some(80.0), 600),
        (2, "in_progress", None, 120),
        (3, "completed", Some(100.0), 900),
        (4, "in_progress", Some(55.5), 60),
        (7, "completed", Some(10.0), 5000), // unpublished: ignored
    ];
    let progress: Vec<Document> = entries
        .iter()
        .map(|(i, s, score, time)| {
            let mut d = doc! { "_id": ObjectId::new(), "user_id": user, "module_id": ids[*i], "status": *s,
                "time_spent_seconds": *time, "attempts": 1_i64, "started_at": t(now), "updated_at": t(now) };
            if let Some(sc) = score { d.insert("score", *sc); }
            d
        })
        .collect();
    // Someone else's progress must not count.
    let noise = vec![
        doc! { "_id": ObjectId::new(), "user_id": other, "module_id": ids[0], "status": "completed", "score": 1.0,
        "time_spent_seconds": 7_i64, "attempts": 1_i64, "started_at": t(now), "updated_at": t(now) },
    ];
    // Activity: one second after midnight today, one second before it
    // (yesterday), two days ago, and a gap; the streak is 3.
    let at = [
        midnight + Duration::seconds(1),
        midnight - Duration::seconds(1),
        midnight - Duration::hours(30),
        midnight - Duration::days(5),
    ];
    let activity: Vec<Document> = at
        .iter()
        .map(|a| doc! { "_id": ObjectId::new(), "user_id": user, "module_id": ids[1], "kind": "progressed", "at": t(*a), "time_spent_seconds": 1_i64 })
        .collect();
    insert_learning(&app, progress, activity).await;
    insert_learning(&app, noise, vec![doc! { "_id": ObjectId::new(), "user_id": other, "module_id": ids[0], "kind": "progressed", "at": t(now + Duration::seconds(5)), "time_spent_seconds": 1_i64 }]).await;

    // The independent computation, straight from the inputs above.
    let published: Vec<(usize, &str)> = cats.iter().copied().enumerate().collect();
    let mut by_cat: BTreeMap<&str, (i64, i64, i64, Vec<f64>)> = BTreeMap::new();
    for (_, c) in &published {
        by_cat.entry(c).or_default().0 += 1;
    }
    let (mut started, mut in_progress, mut completed, mut time, mut scores) =
        (0, 0, 0, 0, Vec::new());
    for (i, s, score, secs) in &entries {
        let Some((_, c)) = published.iter().find(|(j, _)| j == i) else {
            continue;
        };
        let e = by_cat.get_mut(c).unwrap();
        started += 1;
        if *s == "completed" {
            completed += 1;
            e.1 += 1;
        } else {
            in_progress += 1;
        }
        time += secs;
        e.2 += secs;
        if let Some(sc) = score {
            scores.push(*sc);
            e.3.push(*sc);
        }
    }
    let mean = |v: &Vec<f64>| {
        if v.is_empty() {
            Value::Null
        } else {
            json!(v.iter().sum::<f64>() / v.len() as f64)
        }
    };
    let total = published.len() as i64;
    let expected = json!({
        "modulesTotal": total, "modulesStarted": started, "modulesInProgress": in_progress,
        "modulesCompleted": completed, "completionRate": completed as f64 / total as f64,
        "totalTimeSeconds": time, "averageScore": mean(&scores),
        "lastActivityAt": kairos::graphql::scalars::DateTime::from(t(at[0])).to_rfc3339(),
        "currentStreakDays": 3,
        "byCategory": by_cat.iter().map(|(c, (n, done, secs, sc))| json!({
            "category": c, "modulesTotal": n, "modulesCompleted": done, "timeSpentSeconds": secs, "averageScore": mean(sc),
        })).collect::<Vec<_>>(),
    });

    let before_aggregates = app
        .db
        .commands
        .snapshot()
        .get("aggregate")
        .copied()
        .unwrap_or(0);
    let before = app.db.commands.total();
    let data = app.ok(STATS, json!({}), Some(&token)).await;
    assert_eq!(
        app.db.commands.total() - before,
        1,
        "exactly one database command"
    );
    assert_eq!(
        app.db.commands.snapshot()["aggregate"] - before_aggregates,
        1,
        "and it is an aggregate"
    );
    assert_eq!(data["progressStats"], expected);
    let _ = NaiveDate::MIN;
}

#[tokio::test]
async fn stats_of_an_empty_catalogue_and_a_new_learner_are_zero() {
    let app = spawn_app().await;
    let (token, _) = app.register("empty").await;
    let data = app.ok(STATS, json!({}), Some(&token)).await;
    assert_eq!(
        data["progressStats"],
        json!({ "modulesTotal": 0, "modulesStarted": 0, "modulesInProgress": 0, "modulesCompleted": 0,
            "completionRate": 0.0, "totalTimeSeconds": 0, "averageScore": null, "lastActivityAt": null,
            "currentStreakDays": 0, "byCategory": [] })
    );
}

#[tokio::test]
async fn learners_see_only_their_own_data_and_admins_anyone_s() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (alice, alice_id) = app.register("alice").await;
    let (bob, _) = app.register("bob").await;
    let admin = app.admin_token().await;
    app.ok(
        RECORD,
        json!({ "i": { "moduleId": ids[0].to_hex(), "timeSpentSeconds": 30 } }),
        Some(&alice),
    )
    .await;

    let stats = "query($u: ID) { progressStats(userId: $u) { totalTimeSeconds } }";
    let history = "query($u: ID) { history(userId: $u) { nodes { kind } } }";
    for q in [stats, history] {
        // anonymous / other learner / self / admin
        assert_eq!(
            code(&app.gql(q, json!({ "u": alice_id }), None).await),
            "UNAUTHENTICATED"
        );
        assert_eq!(
            code(&app.gql(q, json!({ "u": alice_id }), Some(&bob)).await),
            "FORBIDDEN"
        );
        app.ok(q, json!({ "u": alice_id }), Some(&alice)).await;
        let as_admin = app.ok(q, json!({ "u": alice_id }), Some(&admin)).await;
        assert_ne!(as_admin.to_string(), "{}");
        // Unknown user (admin) and malformed ids.
        assert_eq!(
            code(
                &app.gql(q, json!({ "u": ObjectId::new().to_hex() }), Some(&admin))
                    .await
            ),
            "NOT_FOUND"
        );
        assert_eq!(
            code(&app.gql(q, json!({ "u": "bad" }), Some(&admin)).await),
            "BAD_USER_INPUT"
        );
    }
    let as_admin = app.ok(stats, json!({ "u": alice_id }), Some(&admin)).await;
    assert_eq!(as_admin["progressStats"]["totalTimeSeconds"], 30);
    let own = app.ok(stats, json!({}), Some(&bob)).await;
    assert_eq!(own["progressStats"]["totalTimeSeconds"], 0);
}

#[tokio::test]
async fn history_is_newest_first_and_paged() {
    let app = spawn_app().await;
    let ids = app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = app.register("hist").await;
    for secs in [1, 2, 3] {
        app.ok(
            RECORD,
            json!({ "i": { "moduleId": ids[0].to_hex(), "timeSpentSeconds": secs } }),
            Some(&token),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let q = "query($after: String) { history(first: 2, after: $after) { nodes { kind timeSpentSeconds } pageInfo { hasNextPage endCursor } } }";
    let p1 = app.ok(q, json!({}), Some(&token)).await;
    let secs: Vec<i64> = p1["history"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["timeSpentSeconds"].as_i64().unwrap())
        .collect();
    assert_eq!(secs, [3, 2]);
    let p2 = app
        .ok(
            q,
            json!({ "after": p1["history"]["pageInfo"]["endCursor"] }),
            Some(&token),
        )
        .await;
    let kinds: Vec<&str> = p2["history"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["PROGRESSED", "STARTED"]);
    assert_eq!(p2["history"]["pageInfo"]["hasNextPage"], false);
}
