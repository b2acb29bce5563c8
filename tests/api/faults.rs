//! Faults inside the database conversation, injected with MongoDB's own
//! `configureFailPoint`/`failCommand` (the surrogate runs with
//! `--enable-test-commands` in scripts/test). Every app here connects with
//! its own `appName`, and every failpoint names it, so the other tests
//! running in parallel never meet these faults. The server has one
//! `failCommand` failpoint, so arming it replaces another test's: the
//! tests here take turns, from arming to disarming ([`FAILPOINT`]).
//!
//! Each write is checked twice: the answer (ok or UNAVAILABLE, never
//! INTERNAL) and the database afterwards (the report applied exactly once,
//! or not at all).

use std::time::{Duration, Instant};

use bson::{Document, doc, oid::ObjectId};
use serde_json::{Value, json};

use crate::helpers::{TestApp, code, module, mongo_uri, spawn_app_with, unique_db};

const RECORD: &str = "mutation($i: ProgressInput!) { recordProgress(input: $i) {
  status timeSpentSeconds attempts score } }";
const START: &str = "mutation($m: ID!) { startModule(moduleId: $m) { status attempts } }";

/// The surrogate's URI with `appName` set.
fn uri_with_app_name(app_name: &str) -> String {
    let base = mongo_uri();
    let sep = if base.contains('?') {
        "&"
    } else if base.trim_end_matches('/').matches('/').count() > 2 {
        "?"
    } else {
        "/?"
    };
    format!("{}{sep}appName={app_name}", base.trim_end_matches('/'))
}

/// The server's one `failCommand` failpoint, held from `arm` to `off`.
static FAILPOINT: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A service whose database connections carry a name of their own.
pub(crate) struct Faulty {
    pub(crate) app: TestApp,
    app_name: String,
    admin: mongodb::Client,
    /// The failpoint while this test has it armed.
    armed: std::sync::Mutex<Option<tokio::sync::MutexGuard<'static, ()>>>,
}

impl Faulty {
    async fn spawn() -> Self {
        Self::spawn_with(&unique_db("faults"), &[]).await
    }

    /// Another instance on the database `db_name`, with extra settings.
    pub(crate) async fn spawn_with(db_name: &str, extra: &[(&str, &str)]) -> Self {
        let app_name = format!("kt-{}", &ObjectId::new().to_hex()[12..]);
        let uri = uri_with_app_name(&app_name);
        let mut vars = vec![
            ("MONGODB_URI", uri.as_str()),
            ("MONGODB_DB", db_name),
            // The notification worker polls with findAndModify: it would
            // take faults meant for the request.
            ("WORKER_ENABLED", "false"),
            // Each case registers a fresh learner.
            ("AUTH_RATE_LIMIT_PER_MINUTE", "0"),
            ("CACHE_FOLLOW_CHANGES", "true"),
        ];
        vars.extend_from_slice(extra);
        let app = spawn_app_with(&vars).await;
        let admin = mongodb::Client::with_uri_str(mongo_uri()).await.unwrap();
        Faulty {
            app,
            app_name,
            admin,
            armed: std::sync::Mutex::new(None),
        }
    }

    /// Arms `failCommand` for this app's connections, `times` times.
    pub(crate) async fn arm(&self, times: i32, mut data: Document) {
        let turn = FAILPOINT.lock().await;
        *self.armed.lock().unwrap() = Some(turn);
        data.insert("appName", self.app_name.as_str());
        self.admin
            .database("admin")
            .run_command(doc! {
                "configureFailPoint": "failCommand",
                "mode": { "times": times },
                "data": data,
            })
            .await
            .expect("configureFailPoint: is the surrogate started with --enable-test-commands?");
    }

    /// Disarms it (failpoints are server-wide: one test's leftover must
    /// not outlive it; `appName` keeps others' tests apart meanwhile).
    pub(crate) async fn off(&self) {
        self.admin
            .database("admin")
            .run_command(doc! { "configureFailPoint": "failCommand", "mode": "off" })
            .await
            .unwrap();
        self.armed.lock().unwrap().take();
    }

    fn coll(&self, name: &str) -> mongodb::Collection<Document> {
        self.admin
            .database(&self.app.state.settings.mongo.database)
            .collection(name)
    }

    /// (time counted, attempts, activity entries) of a learner on a module.
    async fn applied(&self, user: &str, module: ObjectId) -> (i64, i64, u64) {
        let user = ObjectId::parse_str(user).unwrap();
        let filter = doc! { "user_id": user, "module_id": module };
        let progress = self
            .coll("progress")
            .find_one(filter.clone())
            .await
            .unwrap();
        let entries = self.coll("activity").count_documents(filter).await.unwrap();
        match progress {
            Some(p) => (
                p.get_i64("time_spent_seconds").unwrap_or_default(),
                p.get_i64("attempts").unwrap_or_default(),
                entries,
            ),
            None => (0, 0, entries),
        }
    }
}

/// One fault: a failCommand payload and how many times it fires.
struct Fault {
    name: &'static str,
    times: i32,
    data: Document,
}

fn close(cmd: &str, times: i32) -> Fault {
    Fault {
        name: "connection closed",
        times,
        data: doc! { "failCommands": [cmd], "closeConnection": true },
    }
}

fn applied_then_retryable(cmd: &str, times: i32) -> Fault {
    Fault {
        name: "applied, then a retryable write-concern error",
        times,
        data: doc! { "failCommands": [cmd], "writeConcernError": {
            "code": 91, "codeName": "ShutdownInProgress", "errmsg": "injected",
            "errorLabels": ["RetryableWriteError"],
        } },
    }
}

fn stepdown(cmd: &str, times: i32) -> Fault {
    Fault {
        name: "stepdown (NotWritablePrimary)",
        times,
        data: doc! { "failCommands": [cmd], "errorCode": 10107 },
    }
}

/// The four faults of the issue on `cmd`: closed once, applied then a
/// retryable error, a stepdown once and twice.
fn four_faults(cmd: &str) -> Vec<Fault> {
    vec![
        close(cmd, 1),
        applied_then_retryable(cmd, 1),
        stepdown(cmd, 1),
        stepdown(cmd, 2),
    ]
}

/// The answer's outcome: "ok" or the error code.
fn outcome(body: &Value, field: &str) -> String {
    if body.get("errors").is_none() && !body["data"][field].is_null() {
        "ok".into()
    } else {
        code(body).to_string()
    }
}

#[tokio::test]
async fn a_progress_report_is_applied_exactly_once_or_not_at_all_under_every_fault() {
    let f = Faulty::spawn().await;
    let module = f.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let mut faults = Vec::new();
    for cmd in ["findAndModify", "insert", "commitTransaction"] {
        faults.extend(four_faults(cmd).into_iter().map(|x| (cmd, x)));
    }
    for (i, (cmd, fault)) in faults.into_iter().enumerate() {
        // A fresh learner each time: the first report also starts the module.
        let (token, user) = f.app.register(&format!("rep{i}")).await;
        f.arm(fault.times, fault.data).await;
        let body = f
            .app
            .gql(
                RECORD,
                json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": 120, "score": 80.0 } }),
                Some(&token),
            )
            .await;
        f.off().await;
        let answer = outcome(&body, "recordProgress");
        let applied = f.applied(&user, module).await;
        let case = format!(
            "{cmd}: {} x{}: {answer} {applied:?}",
            fault.name, fault.times
        );
        // Transactions run again on transient errors inside one deadline, so
        // each of these faults ends in a committed report.
        assert_eq!(answer, "ok", "{case}: {body}");
        assert_eq!(
            body["data"]["recordProgress"]["timeSpentSeconds"], 120,
            "{case}"
        );
        // Exactly once: the time once, one attempt, `started` + `progressed`.
        assert_eq!(applied, (120, 1, 2), "{case}");
    }
}

#[tokio::test]
async fn a_database_that_keeps_failing_answers_unavailable_and_applies_nothing() {
    // A primary that stays gone past the operation deadline.
    let f = Faulty::spawn_with(
        &unique_db("faults"),
        &[("MONGODB_OPERATION_TIMEOUT_MS", "1500")],
    )
    .await;
    let module = f.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let cases = [
        stepdown("findAndModify", 10_000),
        stepdown("insert", 10_000),
        close("insert", 10_000),
    ];
    for (i, fault) in cases.into_iter().enumerate() {
        let (token, user) = f.app.register(&format!("down{i}")).await;
        f.arm(fault.times, fault.data).await;
        let body = f
            .app
            .gql(
                RECORD,
                json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": 60 } }),
                Some(&token),
            )
            .await;
        f.off().await;
        let case = fault.name;
        assert_eq!(code(&body), "UNAVAILABLE", "{case}: {body}");
        assert_eq!(f.applied(&user, module).await, (0, 0, 0), "{case}");
        // And the learner's next report goes through whole, once the
        // driver has found the primary again.
        let start = Instant::now();
        let ok = loop {
            let body = f
                .app
                .gql(
                    RECORD,
                    json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": 60 } }),
                    Some(&token),
                )
                .await;
            if body.get("errors").is_none() {
                break body;
            }
            assert_eq!(code(&body), "UNAVAILABLE", "{case}: {body}");
            assert!(start.elapsed() < Duration::from_secs(10), "{case}: {body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        assert_eq!(ok["data"]["recordProgress"]["attempts"], 1, "{case}");
        assert_eq!(f.applied(&user, module).await, (60, 1, 2), "{case}");
    }
}

#[tokio::test]
async fn starting_a_module_and_registering_survive_the_faults_whole() {
    let f = Faulty::spawn().await;
    let module = f.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let mut i = 0;
    for cmd in ["findAndModify", "insert", "commitTransaction"] {
        for fault in four_faults(cmd) {
            i += 1;
            let (token, user) = f.app.register(&format!("st{i}")).await;
            f.arm(fault.times, fault.data).await;
            let body = f
                .app
                .gql(START, json!({ "m": module.to_hex() }), Some(&token))
                .await;
            f.off().await;
            let case = format!("start, {cmd}: {} x{}", fault.name, fault.times);
            assert_eq!(outcome(&body, "startModule"), "ok", "{case}: {body}");
            // The progress document and its one `started` entry.
            assert_eq!(f.applied(&user, module).await, (0, 0, 1), "{case}");
        }
    }
    // Registration is one insert: the driver's retryable write covers it.
    for (j, fault) in four_faults("insert").into_iter().enumerate() {
        let name = format!("newbie{j}");
        f.arm(fault.times, fault.data).await;
        let body = f
            .app
            .gql(
                "mutation($i: RegisterInput!) { register(input: $i) { user { id } } }",
                json!({ "i": { "email": format!("{name}@example.org"), "username": name, "password": "correct horse battery" } }),
                None,
            )
            .await;
        f.off().await;
        let answer = outcome(&body, "register");
        let stored = f
            .coll("users")
            .count_documents(doc! { "username": &name })
            .await
            .unwrap();
        let case = format!("register: {} x{}: {answer}", fault.name, fault.times);
        assert!(answer == "ok" || answer == "UNAVAILABLE", "{case}: {body}");
        assert_eq!(stored, u64::from(answer == "ok"), "{case}");
    }
}

#[tokio::test]
async fn reads_are_retried_once_by_the_driver() {
    let f = Faulty::spawn().await;
    f.app.insert_modules(vec![module("m", 1, doc! {})]).await;
    let (token, _) = f.app.register("reader").await;
    for cmd in ["find", "aggregate"] {
        f.arm(1, close(cmd, 1).data).await;
        // Fresh each time (no cache hit): a new page size is a new key.
        let first = if cmd == "find" { 1 } else { 2 };
        let body = f
            .app
            .gql(
                &format!("{{ modules(first: {first}) {{ totalCount edges {{ node {{ slug }} }} }} myProgress {{ totalCount }} }}"),
                json!({}),
                Some(&token),
            )
            .await;
        f.off().await;
        assert!(body.get("errors").is_none(), "{cmd}: {body}");
        assert_eq!(body["data"]["modules"]["edges"][0]["node"]["slug"], "m");
    }
}

#[tokio::test]
async fn an_idempotent_report_applies_once_across_instances_even_when_its_answer_was_lost() {
    let a = Faulty::spawn_with(
        &unique_db("faults"),
        &[("MONGODB_OPERATION_TIMEOUT_MS", "1500")],
    )
    .await;
    let db_name = a.app.state.settings.mongo.database.clone();
    let b = Faulty::spawn_with(&db_name, &[]).await;
    let module = a.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let (token, user) = a.app.register("twice").await;
    let report = |key: &str, time: i64| json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": time, "score": 70.0, "idempotencyKey": key } });

    // The same key on both instances: one report.
    let first = a.app.ok(RECORD, report("k-1", 100), Some(&token)).await;
    let again = b.app.ok(RECORD, report("k-1", 100), Some(&token)).await;
    assert_eq!(first, again);
    assert_eq!(a.applied(&user, module).await, (100, 1, 2));

    // The same key with another report is refused, nothing changes.
    let other = b.app.gql(RECORD, report("k-1", 5), Some(&token)).await;
    assert_eq!(code(&other), "BAD_USER_INPUT", "{other}");
    assert_eq!(a.applied(&user, module).await, (100, 1, 2));

    // A new key is a new report.
    let next = b.app.ok(RECORD, report("k-2", 10), Some(&token)).await;
    assert_eq!(next["recordProgress"]["timeSpentSeconds"], 110);

    // The first answer lost: the commit is applied but every answer to it
    // fails (write-concern errors past the deadline), so the client sees
    // UNAVAILABLE and sends the report again, this time to the other
    // instance.
    a.arm(10_000, applied_then_retryable("commitTransaction", 1).data)
        .await;
    let lost = a.app.gql(RECORD, report("k-3", 7), Some(&token)).await;
    a.off().await;
    assert_eq!(code(&lost), "UNAVAILABLE", "{lost}");
    let (time, attempts, entries) = a.applied(&user, module).await;
    assert_eq!((time, attempts, entries), (117, 3, 4), "the commit stood");
    let retried = b.app.ok(RECORD, report("k-3", 7), Some(&token)).await;
    assert_eq!(retried["recordProgress"]["timeSpentSeconds"], 117);
    assert_eq!(retried["recordProgress"]["attempts"], 3);
    assert_eq!(a.applied(&user, module).await, (117, 3, 4), "not twice");

    // Racing copies of one report: still once.
    let racing = futures::future::join_all((0..4).map(|i| {
        let app = if i % 2 == 0 { &a.app } else { &b.app };
        app.gql(RECORD, report("k-4", 3), Some(&token))
    }))
    .await;
    for body in &racing {
        assert!(body.get("errors").is_none(), "{body}");
        assert_eq!(body["data"]["recordProgress"]["timeSpentSeconds"], 120);
    }
    assert_eq!(a.applied(&user, module).await, (120, 4, 5));

    // Keys out of bounds are bad input.
    for key in [String::new(), "k".repeat(65)] {
        let body = a.app.gql(RECORD, report(&key, 1), Some(&token)).await;
        assert_eq!(code(&body), "BAD_USER_INPUT", "{body}");
    }
}

/// Polls `query` on `app` until `done` holds for its data or `within` ends.
async fn eventually(app: &TestApp, query: &str, within: Duration, done: impl Fn(&Value) -> bool) {
    let start = Instant::now();
    loop {
        let data = app.ok(query, json!({}), None).await;
        if done(&data) {
            return;
        }
        assert!(
            start.elapsed() < within,
            "still stale after {within:?}: {data}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_title_changed_directly_in_mongodb_is_read_fresh_on_two_instances() {
    let a = Faulty::spawn().await;
    let db_name = a.app.state.settings.mongo.database.clone();
    let b = Faulty::spawn_with(&db_name, &[]).await;
    let id = a.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let query = format!("{{ module(id: \"{}\") {{ title }} }}", id.to_hex());
    for app in [&a.app, &b.app] {
        // Cached now (modules are cached for minutes).
        let data = app.ok(&query, json!({}), None).await;
        assert_eq!(data["module"]["title"], "Module m");
    }
    // Another tool writes, not through the service.
    a.coll("modules")
        .update_one(doc! { "_id": id }, doc! { "$set": { "title": "Renamed" } })
        .await
        .unwrap();
    for app in [&a.app, &b.app] {
        eventually(app, &query, Duration::from_secs(5), |d| {
            d["module"]["title"] == "Renamed"
        })
        .await;
    }
}

#[tokio::test]
async fn a_progress_event_is_published_once_after_the_commit_whatever_the_retries() {
    use crate::live::{PROGRESS, connect};
    let f = Faulty::spawn_with(
        &unique_db("faults"),
        &[("MONGODB_OPERATION_TIMEOUT_MS", "1500")],
    )
    .await;
    let module = f.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let (token, user) = f.app.register("watched").await;
    let mut ws = connect(&f.app).await;
    ws.init(&token).await;
    ws.subscribe("p", PROGRESS, json!({})).await;
    // Let the subscription register before the writes.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let report = |time: i64, key: &str| json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": time, "idempotencyKey": key } });

    // Each fault makes the transaction run again (or commit again): the
    // subscriber hears of the report once, with what was committed.
    let mut total = 0;
    for (i, fault) in [
        stepdown("insert", 1),
        close("findAndModify", 1),
        applied_then_retryable("commitTransaction", 1),
    ]
    .into_iter()
    .enumerate()
    {
        let time = 10 * (i as i64 + 1);
        total += time;
        f.arm(fault.times, fault.data).await;
        let body = f
            .app
            .gql(RECORD, report(time, &format!("e-{i}")), Some(&token))
            .await;
        f.off().await;
        assert_eq!(
            outcome(&body, "recordProgress"),
            "ok",
            "{}: {body}",
            fault.name
        );
        let next = ws.next().await;
        assert_eq!(next["type"], "next", "{next}");
        assert_eq!(
            next["payload"]["data"]["progressChanged"]["timeSpentSeconds"], total,
            "{}: {next}",
            fault.name
        );
        assert!(
            ws.quiet_for(Duration::from_millis(500)).await,
            "{}: published twice",
            fault.name
        );
    }
    // A report sent again with its key changes nothing and tells nobody.
    let again = f.app.ok(RECORD, report(30, "e-2"), Some(&token)).await;
    assert_eq!(again["recordProgress"]["timeSpentSeconds"], total);
    assert!(
        ws.quiet_for(Duration::from_millis(500)).await,
        "a replay was published"
    );
    // Nor does a report that failed: nothing was committed.
    f.arm(10_000, stepdown("insert", 10_000).data).await;
    let failed = f.app.gql(RECORD, report(5, "e-9"), Some(&token)).await;
    f.off().await;
    assert_eq!(code(&failed), "UNAVAILABLE", "{failed}");
    assert!(
        ws.quiet_for(Duration::from_millis(500)).await,
        "a failed write was published"
    );
    assert_eq!(f.applied(&user, module).await, (total, 3, 4));
}
