//! Every query the service sends is served by an index: a representative
//! run of every resolver (and the background fan-out) is captured through
//! the driver's command monitoring, each distinct query shape is
//! `explain`ed, and a collection scan of a collection that grows with
//! users fails the test.
//!
//! What the surrogate's `explain` can tell: the plan of `find`, `count`,
//! `distinct`, `findAndModify` and of an aggregation's first stage (its
//! `$cursor`), faithfully. It does not report the plans of `$lookup`
//! stages (our pipelines join by equality on indexed fields, see
//! `learners::stats`), and its explain of `update`/`delete` ignores the
//! filter; so each update or delete statement is explained as the `find`
//! of its filter, which selects the same index. Its planner also scans
//! where MongoDB uses indexes: for any `$or`, any `$regex`, and `_id`
//! equality next to other predicates. A scan of such a shape is not
//! waved through: the filter is reduced to what MongoDB's planner plans
//! from (each `$or` branch with the predicates beside it, `$and` members
//! merged, an anchored regex as its prefix range, `_id` alone) and every
//! reduced filter must then be served by an index on the surrogate.

use std::collections::BTreeMap;

use bson::{Bson, Document, doc};
use serde_json::json;

use crate::helpers::{module, spawn_app};

/// Collections that grow with the number of users.
const GROWING: [&str; 5] = ["users", "progress", "activity", "notifications", "jobs"];

/// The shape of a value: its structure with every leaf replaced by its
/// type, so that two requests differing only in values count once.
fn shape(value: &Bson) -> String {
    match value {
        Bson::Document(d) => {
            let parts: Vec<String> = d.iter().map(|(k, v)| format!("{k}:{}", shape(v))).collect();
            format!("{{{}}}", parts.join(","))
        }
        Bson::Array(a) => {
            // `$in` lists and pipelines: the shapes of distinct members.
            let mut parts: Vec<String> = a.iter().map(shape).collect();
            parts.dedup();
            format!("[{}]", parts.join(","))
        }
        other => format!("{:?}", other.element_type()),
    }
}

/// The read a command performs, as an explainable command, with the
/// collection it reads. `None` for commands that read no user data.
fn explainable(command: &Document) -> Vec<(String, Document)> {
    let name = command.keys().next().cloned().unwrap_or_default();
    let coll = command.get_str(&name).unwrap_or_default().to_string();
    let get = |k: &str| command.get_document(k).cloned().unwrap_or_default();
    let find = |filter: Document, sort: Option<Document>| {
        let mut f = doc! { "find": &coll, "filter": filter };
        if let Some(s) = sort {
            f.insert("sort", s);
        }
        f
    };
    match name.as_str() {
        "find" => {
            let mut f = find(get("filter"), command.get_document("sort").ok().cloned());
            if let Ok(p) = command.get_document("projection") {
                f.insert("projection", p.clone());
            }
            vec![(coll, f)]
        }
        "aggregate" => vec![(
            coll.clone(),
            doc! { "aggregate": &coll, "pipeline": command.get_array("pipeline").cloned().unwrap_or_default(), "cursor": {} },
        )],
        "count" => vec![(coll.clone(), doc! { "count": &coll, "query": get("query") })],
        "distinct" => vec![(
            coll.clone(),
            doc! { "distinct": &coll, "key": command.get_str("key").unwrap_or("_id"), "query": get("query") },
        )],
        "findAndModify" => vec![(
            coll.clone(),
            find(get("query"), command.get_document("sort").ok().cloned()),
        )],
        "update" | "delete" => {
            let list = if name == "update" {
                "updates"
            } else {
                "deletes"
            };
            command
                .get_array(list)
                .map(|a| {
                    a.iter()
                        .filter_map(Bson::as_document)
                        .map(|s| {
                            (
                                coll.clone(),
                                find(s.get_document("q").cloned().unwrap_or_default(), None),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// Whether a plan (any part of an explain answer) scans a collection.
fn scans(value: &Bson) -> bool {
    match value {
        Bson::Document(d) => d
            .iter()
            .any(|(k, v)| (k == "stage" && v.as_str() == Some("COLLSCAN")) || scans(v)),
        Bson::Array(a) => a.iter().any(scans),
        _ => false,
    }
}

/// The filters MongoDB's planner would plan `filter` from (see the
/// module documentation); `None` when nothing is left to reduce.
fn reduce(filter: &Document) -> Option<Vec<Document>> {
    let mut flat = Document::new();
    let mut ors: Vec<Vec<Document>> = Vec::new();
    let mut reduced = false;
    let add = |flat: &mut Document, ors: &mut Vec<Vec<Document>>, d: &Document| {
        for (k, v) in d {
            match (k.as_str(), v) {
                ("$or", Bson::Array(branches)) => ors.push(
                    branches
                        .iter()
                        .filter_map(Bson::as_document)
                        .cloned()
                        .collect(),
                ),
                _ => {
                    flat.insert(k.clone(), v.clone());
                }
            }
        }
    };
    for (k, v) in filter {
        match (k.as_str(), v) {
            ("$and", Bson::Array(members)) => {
                reduced = true;
                for m in members.iter().filter_map(Bson::as_document) {
                    add(&mut flat, &mut ors, m);
                }
            }
            _ => add(&mut flat, &mut ors, &doc! { k.clone(): v.clone() }),
        }
    }
    // Anchored regexes become the prefix ranges MongoDB scans.
    for (_, v) in flat.iter_mut() {
        let pattern = match v {
            Bson::RegularExpression(r) => Some(r.pattern.clone()),
            Bson::Document(d) => d.get_str("$regex").ok().map(str::to_string),
            _ => None,
        };
        if let Some(p) = pattern.and_then(|p| p.strip_prefix('^').map(str::to_string)) {
            let prefix: String = p.chars().take_while(|c| c.is_alphanumeric()).collect();
            let mut upper = prefix.clone();
            upper.push(char::MAX);
            *v = Bson::Document(doc! { "$gte": prefix, "$lt": upper });
            reduced = true;
        }
    }
    if flat.contains_key("_id")
        && flat.len() > 1
        && flat.get("_id").is_none_or(|v| v.as_document().is_none())
    {
        return Some(vec![doc! { "_id": flat.get("_id").cloned().unwrap() }]);
    }
    if ors.is_empty() {
        return reduced.then(|| vec![flat]);
    }
    // Every combination of one branch per `$or`, with the rest beside it.
    let mut out = vec![flat];
    for branches in ors {
        out = out
            .iter()
            .flat_map(|base| {
                branches.iter().map(move |b| {
                    let mut d = base.clone();
                    for (k, v) in b {
                        d.insert(k.clone(), v.clone());
                    }
                    d
                })
            })
            .collect();
    }
    Some(
        out.into_iter()
            .flat_map(|d| reduce(&d).unwrap_or_else(|| vec![d]))
            .collect(),
    )
}

/// The filter a command's plan starts from: a find's, or an aggregation's
/// leading `$match`.
fn leading_filter(target: &Document) -> Option<Document> {
    if let Ok(f) = target.get_document("filter") {
        return Some(f.clone());
    }
    if let Ok(f) = target.get_document("query") {
        return Some(f.clone());
    }
    target
        .get_array("pipeline")
        .ok()?
        .first()?
        .as_document()?
        .get_document("$match")
        .ok()
        .cloned()
}

async fn plan_scans(app: &crate::helpers::TestApp, target: Document) -> bool {
    let plan = app
        .db
        .db
        .run_command(doc! { "explain": target.clone(), "verbosity": "queryPlanner" })
        .await
        .unwrap_or_else(|e| panic!("explain of {target} failed: {e}"));
    scans(&Bson::Document(plan))
}

#[tokio::test]
async fn every_query_the_service_sends_is_served_by_an_index() {
    let app = spawn_app().await;
    app.db.commands.keep_commands();
    // A representative run of every resolver, as learner and admin.
    let ids = app
        .insert_modules(vec![
            module("x1", 1, doc! { "category": "rust" }),
            module("x2", 2, doc! { "category": "go" }),
        ])
        .await;
    let admin = app.admin_token().await;
    let (learner, learner_id) = app.register("plans").await;
    let (other, _) = app.register("plans2").await;
    let m = ids[0].to_hex();
    let mutations = [
        (
            "mutation($m: ID!) { startModule(moduleId: $m) { status } }",
            json!({ "m": m }),
        ),
        (
            "mutation($m: ID!) { recordProgress(input: { moduleId: $m, timeSpentSeconds: 60, score: 70, completed: true }) { status } }",
            json!({ "m": m }),
        ),
        (
            "mutation { updateMe(input: { timeZone: \"Europe/Paris\", leaderboardOptIn: true, displayName: \"P\" }) { id } }",
            json!({}),
        ),
        ("mutation { markNotificationsRead }", json!({})),
    ];
    for (q, v) in &mutations {
        app.ok(q, v.clone(), Some(&learner)).await;
    }
    app.ok(
        mutations[1].0,
        json!({ "m": ids[1].to_hex() }),
        Some(&other),
    )
    .await;
    let learner_queries = [
        "{ me { id timeZone } }",
        "{ availability(email: \"a@example.org\", username: \"abc\") { emailAvailable usernameAvailable } }",
        "{ modules(first: 5) { totalCount nodes { slug myProgress { status } } } }",
        "{ modules(category: \"rust\", level: BEGINNER) { nodes { slug } } }",
        "{ modules(search: \"x1\") { nodes { slug } } }",
        "{ module(slug: \"x1\") { id content } }",
        "{ myProgress { totalCount nodes { status module { slug } } } }",
        "{ myProgress(status: COMPLETED) { nodes { status } } }",
        "{ progressStats { modulesCompleted currentStreakDays longestStreakDays } }",
        "{ history { nodes { kind module { slug } } } }",
        "{ notifications { nodes { id } } unreadNotificationCount }",
        "{ activitySeries(from: \"2026-01-01T00:00:00Z\", to: \"2026-01-10T00:00:00Z\") { date } }",
        "{ periodStats(from: \"2026-01-01T00:00:00Z\", to: \"2026-01-10T00:00:00Z\") { current { activeDays } } }",
        "{ leaderboard { participants entries { name } } }",
        "{ leaderboard(period: ALL_TIME, category: \"rust\") { participants } }",
        "{ leaderboard(period: MONTH) { participants } }",
    ];
    for q in learner_queries {
        app.ok(q, json!({}), Some(&learner)).await;
    }
    // An opt-in after the rankings were built: the next reads lay it over
    // them (the users whose opt-in changed, the newcomer's figures).
    app.ok(
        "mutation { updateMe(input: { leaderboardOptIn: true }) { id } }",
        json!({}),
        Some(&other),
    )
    .await;
    for q in &learner_queries[learner_queries.len() - 3..] {
        app.ok(q, json!({}), Some(&learner)).await;
    }
    let page = app
        .ok(
            "{ history(first: 1) { pageInfo { endCursor } } }",
            json!({}),
            Some(&learner),
        )
        .await;
    let cursor = page["history"]["pageInfo"]["endCursor"].clone();
    app.ok(
        "query($a: String) { history(first: 1, after: $a) { nodes { kind } } }",
        json!({ "a": cursor }),
        Some(&learner),
    )
    .await;
    let admin_queries = [
        "{ adminDashboard { usersTotal activeUsersLast7Days completionsTotal topModules { learnersStarted } } }",
        "{ users(search: \"pla\") { totalCount nodes { id } } }",
        "{ users(role: LEARNER, first: 1) { nodes { id } pageInfo { endCursor } } }",
        "{ cacheStats { backend } }",
    ];
    for q in admin_queries {
        app.ok(q, json!({}), Some(&admin)).await;
    }
    app.ok(
        &format!("{{ progressStats(userId: \"{learner_id}\") {{ modulesCompleted }} }}"),
        json!({}),
        Some(&admin),
    )
    .await;
    // A publish: the fan-out worker's reads and writes run in the background.
    let created = app
        .ok(
            "mutation { createModule(input: { slug: \"x3\", title: \"T\", summary: \"S\", category: \"go\", level: BEGINNER, durationMinutes: 5, position: 3, published: true, content: \"C\" }) { id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    let created_id = created["createModule"]["id"].as_str().unwrap().to_string();
    for _ in 0..100 {
        let n = app
            .ok("{ unreadNotificationCount }", json!({}), Some(&learner))
            .await;
        if n["unreadNotificationCount"] == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.ok(
        "mutation($id: ID!) { updateModule(id: $id, input: { title: \"T2\" }) { id } }",
        json!({ "id": created_id }),
        Some(&admin),
    )
    .await;
    app.ok(
        "mutation($id: ID!) { deleteModule(id: $id) }",
        json!({ "id": created_id }),
        Some(&admin),
    )
    .await;

    // Every distinct shape, explained.
    let mut shapes: BTreeMap<String, (String, Document)> = BTreeMap::new();
    for command in app.db.commands.kept() {
        for (coll, target) in explainable(&command) {
            if !GROWING.contains(&coll.as_str()) {
                continue;
            }
            let mut keyed = target.clone();
            keyed.remove("cursor");
            shapes
                .entry(shape(&Bson::Document(keyed)))
                .or_insert((coll, target));
        }
    }
    assert!(
        shapes.len() >= 20,
        "the run covers the service's queries: {}",
        shapes.len()
    );
    for coll in GROWING.iter().filter(|c| **c != "jobs") {
        assert!(
            shapes.values().any(|(c, _)| c == coll),
            "no query of {coll} captured"
        );
    }
    let mut scanning = Vec::new();
    let mut reduced_shapes = 0;
    for (shape, (coll, target)) in &shapes {
        if !plan_scans(&app, target.clone()).await {
            continue;
        }
        // The surrogate scans: check what MongoDB would plan from instead.
        let parts = leading_filter(target).as_ref().and_then(reduce);
        let Some(parts) = parts else {
            scanning.push(format!("{coll}: {shape}"));
            continue;
        };
        reduced_shapes += 1;
        for part in parts {
            if plan_scans(&app, doc! { "find": coll.as_str(), "filter": part.clone() }).await {
                scanning.push(format!("{coll}: {shape}\n  (its part {part} scans)"));
            }
        }
    }
    eprintln!(
        "explained {} distinct query shapes; {reduced_shapes} checked through their reduced filters",
        shapes.len()
    );
    assert!(
        scanning.is_empty(),
        "collection scans of growing collections:\n{}",
        scanning.join("\n")
    );
}
