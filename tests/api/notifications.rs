//! Notifications: what a learner reads and marks, and the background
//! fan-out of a publish — to many learners, across a crash of the worker
//! mid-way, and shared by two instances — with no duplicate and no loss.
//!
//! `KAIROS_FANOUT_LEARNERS` sets how many learners the big fan-out test
//! seeds (default 3,000, for the slow surrogate in CI); run it by hand with
//! 20,000: `KAIROS_FANOUT_LEARNERS=20000 cargo test --test api publishing_notifies`.

use std::time::{Duration, Instant};

use bson::{Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use kairos::{
    app::Application,
    db::{Db, indexes},
    notifications::jobs,
};
use serde_json::{Value, json};

use crate::{
    helpers::{TestApp, code, module, spawn_app, spawn_app_with, test_settings, unique_db},
    scale_balancer::{Deployment, Instance, Nginx, fresh_client, post, prepared_database},
};

const NOTES: &str = "query($f: Int, $a: String, $u: Boolean) {
  notifications(first: $f, after: $a, unreadOnly: $u) {
    nodes { id message read createdAt module { slug } } pageInfo { hasNextPage endCursor } } }";
const MARK: &str = "mutation($ids: [ID!]) { markNotificationsRead(ids: $ids) }";
const COUNT: &str = "{ unreadNotificationCount }";
const JOBS: &str = "{ notificationJobs(first: 20) { edges { node {
  id state moduleId message total notified attempts lastError createdAt startedAt finishedAt } } } }";

fn learners_for_fanout() -> usize {
    std::env::var("KAIROS_FANOUT_LEARNERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3_000)
}

/// Inserts `n` learners straight into `users` (never through the API: the
/// point is many of them, fast). Returns their ids.
async fn seed_learners(db: &Db, n: usize) -> Vec<ObjectId> {
    let ids: Vec<ObjectId> = (0..n).map(|_| ObjectId::new()).collect();
    let now = bson::DateTime::now();
    for chunk in ids.chunks(5_000) {
        let docs: Vec<Document> = chunk
            .iter()
            .map(|id| {
                let name = format!("s{}", id.to_hex());
                doc! { "_id": id, "email": format!("{name}@x.org"), "email_lower": format!("{name}@x.org"),
                "username": &name, "username_lower": &name, "password_hash": "none",
                "role": "learner", "created_at": now }
            })
            .collect();
        db.raw("users")
            .insert_many(docs)
            .ordered(false)
            .await
            .unwrap();
    }
    ids
}

async fn job(db: &Db, id: ObjectId) -> jobs::JobDoc {
    db.collection::<jobs::JobDoc>("jobs")
        .find_one(doc! { "_id": id })
        .await
        .unwrap()
        .expect("the job exists")
}

/// Waits (generously: the surrogate is slow) until the job is done.
async fn wait_done(db: &Db, id: ObjectId, within: Duration) -> jobs::JobDoc {
    let deadline = Instant::now() + within;
    loop {
        let j = job(db, id).await;
        if j.state == jobs::JobState::Done {
            return j;
        }
        assert!(
            !matches!(j.state, jobs::JobState::Failed | jobs::JobState::Cancelled),
            "{j:?}"
        );
        assert!(Instant::now() < deadline, "the job did not finish: {j:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Per learner, how many notifications of `module` they have; asserts
/// every one of `learners` has exactly one and nobody else has any.
async fn assert_exactly_one_each(db: &Db, module: ObjectId, learners: &[ObjectId]) {
    let cursor = db
        .raw("notifications")
        .aggregate(vec![
            doc! { "$match": { "module_id": module } },
            doc! { "$group": { "_id": "$user_id", "n": { "$sum": 1 } } },
        ])
        .await
        .unwrap();
    let rows: Vec<Document> = cursor.try_collect().await.unwrap();
    let dupes: Vec<&Document> = rows
        .iter()
        .filter(|r| r.get_i32("n").unwrap_or(0) != 1)
        .collect();
    assert!(
        dupes.is_empty(),
        "duplicates: {:?}",
        &dupes[..dupes.len().min(5)]
    );
    let got: std::collections::BTreeSet<ObjectId> = rows
        .iter()
        .map(|r| r.get_object_id("_id").unwrap())
        .collect();
    let want: std::collections::BTreeSet<ObjectId> = learners.iter().copied().collect();
    assert_eq!(
        got.len(),
        want.len(),
        "notified {} of {}",
        got.len(),
        want.len()
    );
    assert!(got == want, "the notified learners are not the learners");
}

#[tokio::test]
async fn publishing_notifies_every_learner_exactly_once_in_the_background() {
    let n = learners_for_fanout();
    let app = spawn_app_with(&[("JOB_POLL_MS", "200")]).await;
    let admin = app.admin_token().await;
    let (token, me) = app.register("watcher").await;
    let mut learners = seed_learners(&app.db, n).await;
    learners.push(ObjectId::parse_str(&me).unwrap());

    let started = Instant::now();
    let created = app
        .ok(
            "mutation($i: ModuleInput!) { createModule(input: $i) { id } }",
            json!({ "i": { "slug": "big-news", "title": "Big News", "summary": "s", "category": "c",
                "level": "ADVANCED", "durationMinutes": 5, "position": 0, "published": true, "content": "" } }),
            Some(&admin),
        )
        .await;
    let returned_after = started.elapsed();
    let module = ObjectId::parse_str(created["createModule"]["id"].as_str().unwrap()).unwrap();

    let listed = app.ok(JOBS, json!({}), Some(&admin)).await;
    let edges = listed["notificationJobs"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{listed}");
    let job_id = ObjectId::parse_str(edges[0]["node"]["id"].as_str().unwrap()).unwrap();
    assert_eq!(edges[0]["node"]["moduleId"], module.to_hex());

    let done = wait_done(&app.db, job_id, Duration::from_secs(600)).await;
    let took = started.elapsed();
    eprintln!(
        "fan-out of {} learners: mutation returned in {returned_after:?}, job done in {took:?} ({:.0} notifications/s)",
        learners.len(),
        learners.len() as f64 / took.as_secs_f64()
    );
    assert_eq!(done.total, Some(learners.len() as i64));
    assert_eq!(done.notified, learners.len() as i64);
    assert_exactly_one_each(&app.db, module, &learners).await;

    // Admins are not told; the job shows as done to admins.
    let admin_notes = app.ok(COUNT, json!({}), Some(&admin)).await;
    assert_eq!(admin_notes["unreadNotificationCount"], 0);
    let listed = app.ok(JOBS, json!({}), Some(&admin)).await;
    let node = &listed["notificationJobs"]["edges"][0]["node"];
    assert_eq!(node["state"], "DONE");
    assert_eq!(node["notified"], learners.len());
    assert_eq!(node["message"], "New module published: Big News");
    assert!(node["finishedAt"].is_string());

    // The learner reads it, with its module.
    let mine = app.ok(NOTES, json!({}), Some(&token)).await;
    assert_eq!(
        mine["notifications"]["nodes"][0]["message"],
        "New module published: Big News"
    );
    assert_eq!(
        mine["notifications"]["nodes"][0]["module"]["slug"],
        "big-news"
    );
    assert_eq!(
        app.ok(COUNT, json!({}), Some(&token)).await["unreadNotificationCount"],
        1
    );

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(&format!(
            "kairos_notifications_fanned_out_total {}",
            learners.len()
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains("kairos_notification_jobs_finished_total{state=\"done\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kairos_notification_jobs{state=\"queued\"}"));
}

#[tokio::test]
async fn only_a_publish_queues_a_fan_out() {
    let app = spawn_app().await;
    let admin = app.admin_token().await;
    let create = "mutation($i: ModuleInput!) { createModule(input: $i) { id } }";
    let update = "mutation($id: ID!, $i: ModuleUpdateInput!) { updateModule(id: $id, input: $i) { published } }";
    let draft = app
        .ok(
            create,
            json!({ "i": { "slug": "draft", "title": "Draft", "summary": "s", "category": "c",
                "level": "BEGINNER", "durationMinutes": 5, "position": 0, "content": "" } }),
            Some(&admin),
        )
        .await["createModule"]["id"]
        .clone();
    let jobs_count = || async { app.db.raw("jobs").count_documents(doc! {}).await.unwrap() };
    assert_eq!(jobs_count().await, 0, "an unpublished module tells no one");
    app.ok(
        update,
        json!({ "id": draft, "i": { "title": "Draft 2" } }),
        Some(&admin),
    )
    .await;
    assert_eq!(jobs_count().await, 0, "an edit tells no one");
    let data = app
        .ok(
            update,
            json!({ "id": draft, "i": { "published": true } }),
            Some(&admin),
        )
        .await;
    assert_eq!(data["updateModule"]["published"], true);
    assert_eq!(jobs_count().await, 1, "publishing does");
    app.ok(
        update,
        json!({ "id": draft, "i": { "published": true, "title": "Again" } }),
        Some(&admin),
    )
    .await;
    assert_eq!(
        jobs_count().await,
        1,
        "publishing a published module does not"
    );
    let stored = app.db.raw("jobs").find_one(doc! {}).await.unwrap().unwrap();
    assert_eq!(
        stored.get_str("message").unwrap(),
        "New module published: Draft 2"
    );
}

#[tokio::test]
async fn learners_page_count_and_mark_only_their_own_notifications() {
    let app = spawn_app().await;
    let (ann, ann_id) = app.register("ann").await;
    let (_, ben_id) = app.register("ben").await;
    let ids = app.insert_modules(vec![module("topic", 0, doc! {})]).await;
    let (ann_id, ben_id) = (
        ObjectId::parse_str(&ann_id).unwrap(),
        ObjectId::parse_str(&ben_id).unwrap(),
    );
    let base = chrono::Utc::now();
    let mut notes = Vec::new();
    let mut ann_notes = Vec::new();
    for i in 0..5 {
        let id = ObjectId::new();
        ann_notes.push(id);
        notes.push(doc! { "_id": id, "user_id": ann_id, "message": format!("note {i}"),
            "module_id": if i == 0 { bson::Bson::ObjectId(ids[0]) } else { bson::Bson::Null },
            "read": i == 4, "created_at": bson::DateTime::from_chrono(base + chrono::Duration::seconds(i)) });
    }
    let ben_note = ObjectId::new();
    notes.push(
        doc! { "_id": ben_note, "user_id": ben_id, "message": "ben's", "read": false,
        "created_at": bson::DateTime::now() },
    );
    app.db
        .raw("notifications")
        .insert_many(notes)
        .await
        .unwrap();

    // Newest first, in pages; the module resolves.
    let p1 = app.ok(NOTES, json!({ "f": 3 }), Some(&ann)).await;
    let msgs = |v: &Value| -> Vec<String> {
        v["notifications"]["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["message"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(msgs(&p1), ["note 4", "note 3", "note 2"]);
    assert_eq!(p1["notifications"]["pageInfo"]["hasNextPage"], true);
    let cursor = p1["notifications"]["pageInfo"]["endCursor"].clone();
    let p2 = app
        .ok(NOTES, json!({ "f": 3, "a": cursor }), Some(&ann))
        .await;
    assert_eq!(msgs(&p2), ["note 1", "note 0"]);
    assert_eq!(p2["notifications"]["nodes"][1]["module"]["slug"], "topic");
    assert_eq!(p2["notifications"]["nodes"][0]["module"], Value::Null);
    assert_eq!(p2["notifications"]["pageInfo"]["hasNextPage"], false);
    // A cursor of the full list is not one of the unread list.
    let body = app
        .gql(NOTES, json!({ "a": cursor, "u": true }), Some(&ann))
        .await;
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");

    let unread = app.ok(NOTES, json!({ "u": true }), Some(&ann)).await;
    assert_eq!(msgs(&unread), ["note 3", "note 2", "note 1", "note 0"]);
    assert_eq!(
        app.ok(COUNT, json!({}), Some(&ann)).await["unreadNotificationCount"],
        4
    );

    // Someone else's id changes nothing; an own unread one changes one; a
    // read one changes nothing; null marks the rest.
    let mark = |ids: Value| app.ok(MARK, json!({ "ids": ids }), Some(&ann));
    assert_eq!(
        mark(json!([ben_note.to_hex()])).await["markNotificationsRead"],
        0
    );
    assert_eq!(
        mark(json!([ann_notes[0].to_hex(), ann_notes[4].to_hex()])).await["markNotificationsRead"],
        1
    );
    assert_eq!(
        app.ok(COUNT, json!({}), Some(&ann)).await["unreadNotificationCount"],
        3
    );
    assert_eq!(mark(Value::Null).await["markNotificationsRead"], 3);
    assert_eq!(mark(Value::Null).await["markNotificationsRead"], 0);
    assert_eq!(
        app.ok(COUNT, json!({}), Some(&ann)).await["unreadNotificationCount"],
        0
    );
    let ben = app
        .db
        .raw("notifications")
        .find_one(doc! { "_id": ben_note })
        .await
        .unwrap()
        .unwrap();
    assert!(!ben.get_bool("read").unwrap(), "ben's stays unread");

    for bad in [json!(["nope"]), json!(["{\"$gt\":\"\"}"])] {
        let body = app.gql(MARK, json!({ "ids": bad }), Some(&ann)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    }
    for q in [NOTES, COUNT, MARK] {
        let body = app.gql(q, json!({}), None).await;
        assert_eq!(code(&body), "UNAUTHENTICATED", "{q}: {body}");
    }
}

/// A service in a runtime of its own, so that the test can kill it the way
/// a crash would: every task (the worker mid-round included) just stops,
/// releasing nothing.
struct Crashable {
    kill: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Crashable {
    async fn start(db_name: &str, extra: &[(&str, &str)]) -> Self {
        let settings = test_settings(db_name, extra);
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (kill, killed) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let app = Application::build(settings).await.expect("build app");
                tokio::spawn(app.run_until(std::future::pending()));
            });
            let _ = ready_tx.send(());
            let _ = killed.recv();
            rt.shutdown_background();
        });
        ready_rx.await.unwrap();
        Crashable {
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    fn crash(&mut self) {
        if let Some(k) = self.kill.take() {
            let _ = k.send(());
        }
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
    }
}

impl Drop for Crashable {
    fn drop(&mut self) {
        self.crash();
    }
}

async fn shared_db(prefix: &str) -> (String, Db) {
    let name = unique_db(prefix);
    let db = Db::connect(&test_settings(&name, &[]).mongo).await.unwrap();
    let decls = indexes::load(None, 86_400).unwrap();
    indexes::reconcile(&db, &decls, true).await.unwrap();
    (name, db)
}

async fn publish_directly(db: &Db, slug: &str) -> (ObjectId, ObjectId) {
    let module_id = ObjectId::new();
    let mut m = module(slug, 0, doc! {});
    m.insert("_id", module_id);
    m.insert("created_at", bson::DateTime::now());
    m.insert("updated_at", bson::DateTime::now());
    db.raw("modules").insert_one(m).await.unwrap();
    let job = jobs::enqueue(db, module_id, slug).await.unwrap();
    (module_id, job)
}

#[tokio::test]
async fn a_worker_killed_mid_fan_out_is_taken_over_and_nobody_is_told_twice_or_skipped() {
    let (name, db) = shared_db("crash").await;
    let learners = seed_learners(&db, 3_000).await;
    let fast = [
        ("NOTIFY_BATCH_SIZE", "100"),
        ("JOB_LEASE_SECS", "2"),
        ("JOB_POLL_MS", "100"),
    ];
    let mut first = Crashable::start(&name, &fast).await;
    let (module, job_id) = publish_directly(&db, "crash-news").await;

    // Kill it once it is well under way.
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let j = job(&db, job_id).await;
        if j.notified >= 500 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the fan-out never got going: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    first.crash();
    let at_crash = job(&db, job_id).await;
    assert_eq!(
        at_crash.state,
        jobs::JobState::Running,
        "killed mid-way, the job is still held by the dead worker: {at_crash:?}"
    );
    assert!(at_crash.notified < learners.len() as i64, "{at_crash:?}");

    // A new instance takes it over once the lease passes, and finishes it.
    let second = spawn_app_with(&[("MONGODB_DB", name.as_str()), ("JOB_POLL_MS", "100")]).await;
    let done = wait_done(&second.db, job_id, Duration::from_secs(600)).await;
    assert!(done.attempts >= 2, "{done:?}");
    assert_ne!(done.owner, at_crash.owner, "another worker finished it");
    assert_eq!(done.notified, learners.len() as i64);
    assert_exactly_one_each(&db, module, &learners).await;
}

#[tokio::test]
async fn two_instances_share_the_jobs_and_each_learner_hears_of_each_module_once() {
    let (name, db) = shared_db("pair").await;
    let learners = seed_learners(&db, 1_500).await;
    let settings = [
        ("MONGODB_DB", name.as_str()),
        ("NOTIFY_BATCH_SIZE", "250"),
        ("JOB_POLL_MS", "100"),
    ];
    let a: TestApp = spawn_app_with(&settings).await;
    let b: TestApp = spawn_app_with(&settings).await;
    let mut published = Vec::new();
    for i in 0..6 {
        published.push(publish_directly(&db, &format!("pair-{i}")).await);
    }
    let mut owners = std::collections::BTreeSet::new();
    for (module, job_id) in &published {
        let done = wait_done(&db, *job_id, Duration::from_secs(600)).await;
        assert_eq!(done.notified, learners.len() as i64);
        owners.insert(done.owner.clone());
        assert_exactly_one_each(&db, *module, &learners).await;
    }
    assert_eq!(
        db.raw("notifications")
            .count_documents(doc! {})
            .await
            .unwrap(),
        (6 * learners.len()) as u64
    );
    assert_eq!(owners.len(), 2, "both instances took jobs: {owners:?}");
    drop((a, b));
}

#[tokio::test]
async fn a_stopped_instance_hands_its_job_back_for_another_to_finish() {
    let (name, db) = shared_db("handback").await;
    let learners = seed_learners(&db, 2_000).await;
    let settings = [
        ("MONGODB_DB", name.as_str()),
        ("NOTIFY_BATCH_SIZE", "100"),
        // A long lease: only the hand-back lets another worker in soon.
        ("JOB_LEASE_SECS", "600"),
        ("JOB_POLL_MS", "100"),
    ];
    let first = spawn_app_with(&settings).await;
    let (module, job_id) = publish_directly(&db, "handback-news").await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while job(&db, job_id).await.notified < 300 {
        assert!(Instant::now() < deadline, "the fan-out never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    drop(first); // graceful shutdown
    let second = spawn_app_with(&settings).await;
    let done = wait_done(&db, job_id, Duration::from_secs(120)).await;
    assert!(done.attempts >= 2, "{done:?}");
    assert_exactly_one_each(&db, module, &learners).await;
    drop(second);
}

#[tokio::test]
async fn deleting_a_module_mid_fan_out_cancels_it_and_no_notification_keeps_the_module() {
    let (name, db) = shared_db("cancel").await;
    let learners = seed_learners(&db, 3_000).await;
    let app = spawn_app_with(&[
        ("MONGODB_DB", name.as_str()),
        ("NOTIFY_BATCH_SIZE", "100"),
        ("JOB_POLL_MS", "100"),
    ])
    .await;
    let admin = app.admin_token().await;
    let (module, job_id) = publish_directly(&db, "short-lived").await;
    let deadline = Instant::now() + Duration::from_secs(300);
    while job(&db, job_id).await.notified < 300 {
        assert!(Instant::now() < deadline, "the fan-out never got going");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    app.ok(
        "mutation($id: ID!) { deleteModule(id: $id) }",
        json!({ "id": module.to_hex() }),
        Some(&admin),
    )
    .await;

    // The worker notices at its next round and unlinks what it wrote.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let metrics = app.metrics().await;
        if metrics.contains("kairos_notification_jobs_finished_total{state=\"cancelled\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the worker never noticed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let cancelled = job(&db, job_id).await;
    assert_eq!(cancelled.state, jobs::JobState::Cancelled);
    assert!(cancelled.notified < learners.len() as i64, "{cancelled:?}");
    let linked = db
        .raw("notifications")
        .count_documents(doc! { "module_id": module })
        .await
        .unwrap();
    assert_eq!(linked, 0);
    let kept = db
        .raw("notifications")
        .count_documents(doc! { "message": "New module published: short-lived" })
        .await
        .unwrap();
    assert!(kept >= 300, "the notifications keep their text: {kept}");
    let listed = app
        .ok(
            "{ notificationJobs { edges { node { state } } } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(
        listed["notificationJobs"]["edges"][0]["node"]["state"],
        "CANCELLED"
    );
}

#[tokio::test]
async fn a_failing_fan_out_is_retried_with_back_off_then_given_up_or_finished_once_it_can() {
    let (name, db) = shared_db("retry").await;
    let learners = seed_learners(&db, 50).await;
    // A validator that every notification fails: the database refuses the
    // writes, as it would with a full disk or a bad deploy.
    let refuse = |on: bool| {
        let validator = if on {
            doc! { "user_id": { "$type": "string" } }
        } else {
            doc! {}
        };
        db.db
            .run_command(doc! { "collMod": "notifications", "validator": validator })
    };
    refuse(true).await.unwrap();
    let app = spawn_app_with(&[
        ("MONGODB_DB", name.as_str()),
        ("JOB_POLL_MS", "50"),
        ("JOB_RETRY_BASE_MS", "100"),
        ("JOB_MAX_ATTEMPTS", "4"),
    ])
    .await;

    // Never possible: four attempts, then failed.
    let (_, doomed) = publish_directly(&db, "doomed").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let failed = loop {
        let j = job(&db, doomed).await;
        if j.state == jobs::JobState::Failed {
            break j;
        }
        assert_ne!(j.state, jobs::JobState::Done, "{j:?}");
        assert!(Instant::now() < deadline, "never given up: {j:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(failed.attempts, 4, "{failed:?}");
    assert_eq!(
        failed.last_error.as_deref(),
        Some("attempt 4 failed: internal error")
    );
    assert!(failed.finished_at.is_some());

    // Possible again after a failed round: it finishes, once per learner.
    let (module, job_id) = publish_directly(&db, "recovers").await;
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let j = job(&db, job_id).await;
        if j.last_error.is_some() {
            assert_ne!(j.state, jobs::JobState::Failed, "{j:?}");
            break;
        }
        assert!(Instant::now() < deadline, "never tried: {j:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    refuse(false).await.unwrap();
    let done = wait_done(&db, job_id, Duration::from_secs(120)).await;
    assert!(done.attempts >= 2, "{done:?}");
    assert_exactly_one_each(&db, module, &learners).await;

    let metrics = app.metrics().await;
    assert!(
        metrics.contains("kairos_notification_jobs_finished_total{state=\"failed\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("kairos_notification_job_retries_total"));
}

#[tokio::test]
async fn three_instances_behind_nginx_one_killed_mid_fan_out_tell_each_learner_once() {
    let redis = crate::cache::RedisProc::start().await;
    let dir = tempfile::tempdir().unwrap();
    let deployment = Deployment {
        database: unique_db("fan3"),
        redis_url: redis.url(),
        prefix: crate::cache::unique_prefix(),
        dir: dir.path().to_path_buf(),
    };
    let db = prepared_database(&deployment.database).await;
    let learners = seed_learners(&db, 3_000).await;
    let hash = kairos::auth::password::hash_password_blocking("admin password 123").unwrap();
    let admin = kairos::learners::users::NewUser {
        email: "root@example.org".into(),
        username: "root".into(),
        display_name: None,
        password_hash: hash,
        role: kairos::auth::Role::Admin,
    };
    db.raw("users")
        .insert_one(kairos::learners::users::user_document(
            ObjectId::new(),
            &admin,
            bson::DateTime::now(),
        ))
        .await
        .unwrap();
    let fast = [
        ("NOTIFY_BATCH_SIZE", "100"),
        ("JOB_LEASE_SECS", "2"),
        ("JOB_POLL_MS", "100"),
    ];
    let mut instances = Vec::new();
    for _ in 0..3 {
        instances.push(Instance::start_with(&deployment, &fast).await);
    }
    let ports: Vec<u16> = instances.iter().map(|i| i.port).collect();
    let nginx = Nginx::start(dir.path(), &ports).await;
    let client = fresh_client();
    let login =
        "mutation { login(input: {login: \"root\", password: \"admin password 123\"}) { token } }";
    let token = post(&client, &nginx.url(), login, json!({}), None)
        .await
        .unwrap()["login"]["token"]
        .as_str()
        .unwrap()
        .to_string();

    // An admin publishes a module through the balancer.
    let create = "mutation($i: ModuleInput!) { createModule(input: $i) { id } }";
    let input = json!({ "i": { "slug": "fan3-news", "title": "News", "summary": "S", "category": "go",
        "level": "BEGINNER", "durationMinutes": 5, "position": 1, "published": true, "content": "C" } });
    let created = post(&client, &nginx.url(), create, input, Some(&token))
        .await
        .unwrap();
    let module: ObjectId = created["createModule"]["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let job_id = db
        .raw("jobs")
        .find_one(doc! { "module_id": module })
        .await
        .unwrap()
        .expect("publishing queued a fan-out")
        .get_object_id("_id")
        .unwrap();

    // Kill the instance running it, once it is well under way.
    let deadline = Instant::now() + Duration::from_secs(300);
    let owner = loop {
        let j = job(&db, job_id).await;
        if j.notified >= 500
            && let Some(owner) = j.owner
        {
            break owner;
        }
        assert!(
            Instant::now() < deadline,
            "the fan-out never got going: {j:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let running = instances
        .iter()
        .position(|i| i.logged(&owner))
        .expect("one instance's log names the job's worker");
    instances[running].kill();
    let at_kill = job(&db, job_id).await;

    // Another instance takes it over once the lease passes, and finishes it.
    let done = wait_done(&db, job_id, Duration::from_secs(600)).await;
    assert!(at_kill.notified < learners.len() as i64, "{at_kill:?}");
    assert!(done.attempts >= 2, "{done:?}");
    assert_ne!(done.owner.as_deref(), Some(owner.as_str()), "{done:?}");
    assert_eq!(done.notified, learners.len() as i64);
    assert_exactly_one_each(&db, module, &learners).await;
    // And the balancer still answers from the two left.
    let read = post(&client, &nginx.url(), "{ __typename }", json!({}), None).await;
    assert!(read.is_ok(), "{read:?}");
}
