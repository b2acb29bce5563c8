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

/// A standalone server (no transactions, no change streams), from
/// scripts/test.
fn standalone_uri() -> String {
    std::env::var("KAIROS_TEST_STANDALONE_MONGODB_URI")
        .expect("KAIROS_TEST_STANDALONE_MONGODB_URI: run the tests with scripts/test")
}

/// `base` with `appName` set.
fn uri_with_app_name(base: &str, app_name: &str) -> String {
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
        Self::spawn_on(&mongo_uri(), db_name, extra).await
    }

    /// An instance on the server at `base`.
    async fn spawn_on(base: &str, db_name: &str, extra: &[(&str, &str)]) -> Self {
        let app_name = format!("kt-{}", &ObjectId::new().to_hex()[12..]);
        let uri = uri_with_app_name(base, &app_name);
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
        let admin = mongodb::Client::with_uri_str(base).await.unwrap();
        Faulty {
            app,
            app_name,
            admin,
            armed: std::sync::Mutex::new(None),
        }
    }

    /// Arms `failCommand` for this app's connections, `times` times.
    pub(crate) async fn arm(&self, times: i32, data: Document) {
        self.arm_mode(doc! { "times": times }, data).await;
    }

    /// Arms `fault`: after `skip` matching commands, `times` times.
    async fn arm_fault(&self, fault: &Fault) {
        let mode = doc! { "skip": fault.skip, "times": fault.times };
        self.arm_mode(mode, fault.data.clone()).await;
    }

    async fn arm_mode(&self, mode: Document, mut data: Document) {
        let turn = FAILPOINT.lock().await;
        *self.armed.lock().unwrap() = Some(turn);
        data.insert("appName", self.app_name.as_str());
        self.admin
            .database("admin")
            .run_command(doc! {
                "configureFailPoint": "failCommand",
                "mode": mode,
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

/// One fault: a failCommand payload and how many times it fires (after
/// letting `skip` matching commands through).
struct Fault {
    name: &'static str,
    times: i32,
    skip: i32,
    data: Document,
}

impl Fault {
    /// The same fault on the command's `(skip + 1)`-th sending, for a unit
    /// that sends one command name more than once.
    fn after(self, skip: i32) -> Fault {
        Fault { skip, ..self }
    }
}

fn close(cmd: &str, times: i32) -> Fault {
    Fault {
        name: "connection closed",
        times,
        skip: 0,
        data: doc! { "failCommands": [cmd], "closeConnection": true },
    }
}

fn applied_then_retryable(cmd: &str, times: i32) -> Fault {
    Fault {
        name: "applied, then a retryable write-concern error",
        times,
        skip: 0,
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
        skip: 0,
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

// The catalogue's writes: a module and its fan-out job (a publish), or a
// module with its progress, activity, notifications' references and the
// cancellation of its fan-outs (a deletion), are one unit.

const CREATE: &str = "mutation($i: ModuleInput!) { createModule(input: $i) { id slug published } }";
const UPDATE: &str = "mutation($id: ID!, $i: ModuleUpdateInput!) {
  updateModule(id: $id, input: $i) { id title published } }";
const DELETE: &str = "mutation($id: ID!) { deleteModule(id: $id) }";
/// The published catalogue, as anyone sees it (cached for minutes).
const CATALOGUE: &str = "{ modules(first: 20) { totalCount edges { node { slug title } } } }";

fn module_input(slug: &str, published: bool) -> Value {
    json!({
        "slug": slug, "title": format!("Title {slug}"), "summary": "S",
        "category": "faults", "level": "BEGINNER", "durationMinutes": 5,
        "position": 1, "published": published, "content": "C",
    })
}

/// A service for the catalogue's faults: without the change follower, so
/// that the cache is exact through the writer's own invalidation alone (and
/// the follower's token writes take no failpoint meant for a request).
async fn catalogue_faulty(extra: &[(&str, &str)]) -> (Faulty, String) {
    let mut vars = vec![("CACHE_FOLLOW_CHANGES", "false")];
    vars.extend_from_slice(extra);
    let f = Faulty::spawn_with(&unique_db("faults"), &vars).await;
    let admin = f.app.admin_token().await;
    (f, admin)
}

impl Faulty {
    async fn count(&self, coll: &str, filter: Document) -> u64 {
        self.coll(coll).count_documents(filter).await.unwrap()
    }

    /// The published catalogue as served: (total, slug → title).
    async fn catalogue(&self) -> (i64, Vec<(String, String)>) {
        let data = self.app.ok(CATALOGUE, json!({}), None).await;
        let nodes = data["modules"]["edges"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let n = &e["node"];
                (
                    n["slug"].as_str().unwrap().to_string(),
                    n["title"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        (data["modules"]["totalCount"].as_i64().unwrap(), nodes)
    }

    /// Sends `query` until it is answered without UNAVAILABLE (the driver
    /// finds the primary again after an injected stepdown).
    async fn until_ok(&self, query: &str, vars: Value, token: Option<&str>) -> Value {
        let start = Instant::now();
        loop {
            let body = self.app.gql(query, vars.clone(), token).await;
            if body.get("errors").is_none() {
                return body["data"].clone();
            }
            assert_eq!(code(&body), "UNAVAILABLE", "{body}");
            assert!(start.elapsed() < Duration::from_secs(10), "{body}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn oid(v: &Value) -> ObjectId {
    ObjectId::parse_str(v.as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn creating_a_published_module_queues_its_job_exactly_once_under_every_fault() {
    let (f, admin) = catalogue_faulty(&[]).await;
    let mut cases = Vec::new();
    for fault in four_faults("insert") {
        cases.push(("module insert", fault));
    }
    // The job's insert is the unit's second.
    for fault in four_faults("insert") {
        cases.push(("job insert", fault.after(1)));
    }
    for fault in four_faults("commitTransaction") {
        cases.push(("commit", fault));
    }
    for (i, (what, fault)) in cases.into_iter().enumerate() {
        let slug = format!("c{i}");
        // The catalogue is cached before each write.
        assert_eq!(f.catalogue().await.0, i as i64);
        f.arm_fault(&fault).await;
        let body = f
            .app
            .gql(
                CREATE,
                json!({ "i": module_input(&slug, true) }),
                Some(&admin),
            )
            .await;
        f.off().await;
        let case = format!("create, {what}: {} x{}", fault.name, fault.times);
        assert_eq!(outcome(&body, "createModule"), "ok", "{case}: {body}");
        let id = oid(&body["data"]["createModule"]["id"]);
        assert_eq!(
            f.count("modules", doc! { "slug": &slug }).await,
            1,
            "{case}"
        );
        assert_eq!(f.count("jobs", doc! { "module_id": id }).await, 1, "{case}");
        let (total, nodes) = f.catalogue().await;
        assert_eq!(total, i as i64 + 1, "{case}: the cached list was dropped");
        assert!(nodes.iter().any(|(s, _)| *s == slug), "{case}");
    }
    // An unpublished module queues nothing.
    f.app
        .ok(
            CREATE,
            json!({ "i": module_input("draft", false) }),
            Some(&admin),
        )
        .await;
    assert_eq!(
        f.count("jobs", doc! {}).await + 1,
        f.count("modules", doc! {}).await
    );
}

#[tokio::test]
async fn publishing_a_module_by_an_update_queues_its_job_exactly_once_under_every_fault() {
    let (f, admin) = catalogue_faulty(&[]).await;
    let mut cases = Vec::new();
    for cmd in ["findAndModify", "insert", "commitTransaction"] {
        cases.extend(four_faults(cmd).into_iter().map(|x| (cmd, x)));
    }
    for (i, (cmd, fault)) in cases.into_iter().enumerate() {
        let slug = format!("u{i}");
        let created = f
            .app
            .ok(
                CREATE,
                json!({ "i": module_input(&slug, false) }),
                Some(&admin),
            )
            .await;
        let id = created["createModule"]["id"].clone();
        // Cached: the draft as its admin sees it, and the published list.
        let read = format!("{{ module(id: {id}) {{ title published }} }}");
        let draft = f.app.ok(&read, json!({}), Some(&admin)).await;
        assert_eq!(draft["module"]["published"], false);
        assert_eq!(f.catalogue().await.0, i as i64);
        f.arm_fault(&fault).await;
        let renamed = format!("Renamed {slug}");
        let body = f
            .app
            .gql(
                UPDATE,
                json!({ "id": id, "i": { "published": true, "title": renamed } }),
                Some(&admin),
            )
            .await;
        f.off().await;
        let case = format!("publish, {cmd}: {} x{}", fault.name, fault.times);
        assert_eq!(outcome(&body, "updateModule"), "ok", "{case}: {body}");
        let stored = f
            .coll("modules")
            .find_one(doc! { "_id": oid(&id) })
            .await
            .unwrap()
            .unwrap();
        assert!(stored.get_bool("published").unwrap(), "{case}");
        assert_eq!(stored.get_str("title").unwrap(), renamed, "{case}");
        assert_eq!(
            f.count("jobs", doc! { "module_id": oid(&id) }).await,
            1,
            "{case}"
        );
        let now = f.app.ok(&read, json!({}), Some(&admin)).await;
        assert_eq!(now["module"]["title"], renamed.as_str(), "{case}");
        let (total, nodes) = f.catalogue().await;
        assert_eq!(total, i as i64 + 1, "{case}");
        assert!(nodes.contains(&(slug.clone(), renamed.clone())), "{case}");
    }
    // Updating a published module publishes nothing again.
    let id = f.coll("jobs").find_one(doc! {}).await.unwrap().unwrap();
    let id = id.get_object_id("module_id").unwrap();
    f.app
        .ok(
            UPDATE,
            json!({ "id": id.to_hex(), "i": { "published": true, "title": "Again" } }),
            Some(&admin),
        )
        .await;
    assert_eq!(f.count("jobs", doc! { "module_id": id }).await, 1);
}

/// A module with one learner's progress, two activity entries, a
/// notification naming it and its queued fan-out: (module id, learner's
/// token, learner id).
async fn module_with_traces(f: &Faulty, admin: &str, slug: &str) -> (ObjectId, String, ObjectId) {
    let created = f
        .until_ok(
            CREATE,
            json!({ "i": module_input(slug, true) }),
            Some(admin),
        )
        .await;
    let id = oid(&created["createModule"]["id"]);
    let (token, user) = f.app.register(&format!("learner{slug}")).await;
    f.until_ok(
        RECORD,
        json!({ "i": { "moduleId": id.to_hex(), "timeSpentSeconds": 30 } }),
        Some(&token),
    )
    .await;
    let user = ObjectId::parse_str(&user).unwrap();
    f.coll("notifications")
        .insert_one(doc! {
            "user_id": user, "message": "New module", "module_id": id,
            "read": false, "created_at": bson::DateTime::now(),
        })
        .await
        .unwrap();
    (id, token, user)
}

/// What a module left in the database: (module, progress, activity,
/// notifications naming it, the learner's notifications, live jobs,
/// cancelled jobs).
async fn traces(f: &Faulty, id: ObjectId, user: ObjectId) -> [u64; 7] {
    let of = || doc! { "module_id": id };
    [
        f.count("modules", doc! { "_id": id }).await,
        f.count("progress", of()).await,
        f.count("activity", of()).await,
        f.count("notifications", of()).await,
        f.count("notifications", doc! { "user_id": user }).await,
        f.count(
            "jobs",
            doc! { "module_id": id, "state": { "$in": ["queued", "running"] } },
        )
        .await,
        f.count("jobs", doc! { "module_id": id, "state": "cancelled" })
            .await,
    ]
}

const MY_PROGRESS: &str = "{ myProgress { totalCount } }";

#[tokio::test]
async fn deleting_a_module_removes_it_with_everything_it_left_or_nothing_under_every_fault() {
    let (f, admin) = catalogue_faulty(&[]).await;
    let mut cases = Vec::new();
    // The unit: find (exists), update (cancel the fan-out), find (its
    // learners), delete ×3 (module, progress, activity), update
    // (notifications), commit.
    cases.push(("find", close("find", 1)));
    for fault in four_faults("update") {
        cases.push(("jobs' cancellation", fault));
    }
    for fault in four_faults("update") {
        cases.push(("notifications' update", fault.after(1)));
    }
    for fault in four_faults("delete") {
        cases.push(("module's delete", fault));
    }
    for fault in four_faults("delete") {
        cases.push(("activity's delete", fault.after(2)));
    }
    for fault in four_faults("commitTransaction") {
        cases.push(("commit", fault));
    }
    for (i, (what, fault)) in cases.into_iter().enumerate() {
        let (id, token, user) = module_with_traces(&f, &admin, &format!("d{i}")).await;
        assert_eq!(traces(&f, id, user).await, [1, 1, 2, 1, 1, 1, 0]);
        // Cached: the module, and the learner's progress list.
        let read = format!("{{ module(id: \"{}\") {{ title }} }}", id.to_hex());
        f.app.ok(&read, json!({}), None).await;
        let mine = f.app.ok(MY_PROGRESS, json!({}), Some(&token)).await;
        assert_eq!(mine["myProgress"]["totalCount"], 1);
        f.arm_fault(&fault).await;
        let body = f
            .app
            .gql(DELETE, json!({ "id": id.to_hex() }), Some(&admin))
            .await;
        f.off().await;
        let case = format!("delete, {what}: {} x{}", fault.name, fault.times);
        assert_eq!(outcome(&body, "deleteModule"), "ok", "{case}: {body}");
        assert_eq!(body["data"]["deleteModule"], true, "{case}");
        // All gone; the notification stays without its module; the
        // fan-out cancelled.
        assert_eq!(traces(&f, id, user).await, [0, 0, 0, 0, 1, 0, 1], "{case}");
        let gone = f.app.gql(&read, json!({}), None).await;
        assert_eq!(code(&gone), "NOT_FOUND", "{case}: {gone}");
        let mine = f.app.ok(MY_PROGRESS, json!({}), Some(&token)).await;
        assert_eq!(mine["myProgress"]["totalCount"], 0, "{case}");
    }
}

#[tokio::test]
async fn a_catalogue_write_past_the_deadline_answers_unavailable_and_applies_nothing() {
    let (f, admin) = catalogue_faulty(&[("MONGODB_OPERATION_TIMEOUT_MS", "1500")]).await;

    // A publish whose job cannot be queued: no module either.
    f.arm_fault(&stepdown("insert", 10_000).after(1)).await;
    let body = f
        .app
        .gql(
            CREATE,
            json!({ "i": module_input("lost", true) }),
            Some(&admin),
        )
        .await;
    f.off().await;
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    assert_eq!(f.count("modules", doc! {}).await, 0);
    assert_eq!(f.count("jobs", doc! {}).await, 0);

    // An update that publishes, its job never queued: still the draft.
    let draft = f
        .until_ok(
            CREATE,
            json!({ "i": module_input("draft", false) }),
            Some(&admin),
        )
        .await;
    let id = draft["createModule"]["id"].clone();
    let read = format!("{{ module(id: {id}) {{ title published }} }}");
    f.app.ok(&read, json!({}), Some(&admin)).await;
    f.arm_fault(&stepdown("insert", 10_000)).await;
    let body = f
        .app
        .gql(
            UPDATE,
            json!({ "id": id, "i": { "published": true, "title": "Never" } }),
            Some(&admin),
        )
        .await;
    f.off().await;
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    let now = f.until_ok(&read, json!({}), Some(&admin)).await;
    assert_eq!(
        now["module"],
        json!({ "title": "Title draft", "published": false })
    );
    assert_eq!(f.count("jobs", doc! {}).await, 0);
    assert_eq!(f.catalogue().await.0, 0);

    // A deletion whose last step keeps failing: everything stays.
    let (id, token, user) = module_with_traces(&f, &admin, "kept").await;
    f.arm_fault(&close("update", 10_000).after(1)).await;
    let body = f
        .app
        .gql(DELETE, json!({ "id": id.to_hex() }), Some(&admin))
        .await;
    f.off().await;
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    assert_eq!(traces(&f, id, user).await, [1, 1, 2, 1, 1, 1, 0]);
    let mine = f.until_ok(MY_PROGRESS, json!({}), Some(&token)).await;
    assert_eq!(mine["myProgress"]["totalCount"], 1);
    let read = format!("{{ module(id: \"{}\") {{ title }} }}", id.to_hex());
    assert_eq!(
        f.app.ok(&read, json!({}), None).await["module"]["title"],
        "Title kept"
    );
}

#[tokio::test]
async fn on_a_standalone_server_a_keyed_report_sent_again_after_any_fault_is_applied_once() {
    // No transactions: the writes stand one by one, and the driver retries
    // none of them. The web app sends every report with a key and sends it
    // again after an error; the report is then whole, and counted once.
    let f = Faulty::spawn_on(&standalone_uri(), &unique_db("standalone"), &[]).await;
    let module = f.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let mut faults = Vec::new();
    // The writes: the progress update, the completion, the activity
    // entries, the key's answer (an upserting update).
    for cmd in ["findAndModify", "insert", "update"] {
        faults.extend(four_faults(cmd).into_iter().map(|x| (cmd, x)));
    }
    // The completion's transition is the second findAndModify.
    faults.extend(
        four_faults("findAndModify")
            .into_iter()
            .map(|x| ("completion", x.after(1))),
    );
    for (i, (cmd, fault)) in faults.into_iter().enumerate() {
        let (token, user) = f.app.register(&format!("solo{i}")).await;
        let report = json!({ "i": {
            "moduleId": module.to_hex(), "timeSpentSeconds": 120, "score": 80.0,
            "completed": true, "idempotencyKey": format!("k{i}"),
        } });
        f.arm_fault(&fault).await;
        let body = f.app.gql(RECORD, report.clone(), Some(&token)).await;
        f.off().await;
        let case = format!("standalone, {cmd}: {} x{}", fault.name, fault.times);
        let first = outcome(&body, "recordProgress");
        assert!(first == "ok" || first == "UNAVAILABLE", "{case}: {body}");
        // Sent again until answered (and once more after that).
        for _ in 0..2 {
            let answer = f.until_ok(RECORD, report.clone(), Some(&token)).await;
            let p = &answer["recordProgress"];
            assert_eq!(
                (&p["timeSpentSeconds"], &p["attempts"], &p["status"]),
                (&json!(120), &json!(1), &json!("COMPLETED")),
                "{case}: {answer}"
            );
        }
        // Exactly once: the time, one attempt, `started` + `completed`.
        assert_eq!(f.applied(&user, module).await, (120, 1, 2), "{case}");
        let kinds: Vec<String> = f
            .coll("activity")
            .distinct(
                "kind",
                doc! { "user_id": ObjectId::parse_str(&user).unwrap() },
            )
            .await
            .unwrap()
            .into_iter()
            .filter_map(|k| k.as_str().map(str::to_string))
            .collect();
        assert_eq!(kinds.len(), 2, "{case}: {kinds:?}");
        assert!(kinds.contains(&"started".to_string()), "{case}: {kinds:?}");
        assert!(
            kinds.contains(&"completed".to_string()),
            "{case}: {kinds:?}"
        );
    }
}

#[tokio::test]
async fn marking_notifications_read_and_updating_ones_settings_survive_the_faults_whole() {
    let (f, _admin) = catalogue_faulty(&[]).await;
    let mark = "mutation { markNotificationsRead }";
    let unread = "{ unreadNotificationCount }";
    // An update of many documents, which the driver never retries.
    for (i, fault) in four_faults("update").into_iter().enumerate() {
        let (token, user) = f.app.register(&format!("reader{i}")).await;
        let user = ObjectId::parse_str(&user).unwrap();
        let notes: Vec<Document> = (0..3)
            .map(|n| {
                doc! {
                    "user_id": user, "message": format!("note {n}"), "module_id": null,
                    "read": false, "created_at": bson::DateTime::now(),
                }
            })
            .collect();
        f.coll("notifications").insert_many(notes).await.unwrap();
        let before = f.until_ok(unread, json!({}), Some(&token)).await;
        assert_eq!(before["unreadNotificationCount"], 3);
        f.arm_fault(&fault).await;
        let body = f.app.gql(mark, json!({}), Some(&token)).await;
        f.off().await;
        let case = format!("mark read: {} x{}", fault.name, fault.times);
        assert_eq!(
            outcome(&body, "markNotificationsRead"),
            "ok",
            "{case}: {body}"
        );
        // The count of the run that committed.
        assert_eq!(body["data"]["markNotificationsRead"], 3, "{case}");
        let left = f
            .count("notifications", doc! { "user_id": user, "read": false })
            .await;
        assert_eq!(left, 0, "{case}");
        let after = f.app.ok(unread, json!({}), Some(&token)).await;
        assert_eq!(after["unreadNotificationCount"], 0, "{case}");
    }
    // One document: the driver retries it once, the unit after that.
    let (token, user) = f.app.register("settings").await;
    let user = ObjectId::parse_str(&user).unwrap();
    for (i, fault) in four_faults("findAndModify").into_iter().enumerate() {
        let name = format!("Name {i}");
        f.until_ok("{ me { displayName } }", json!({}), Some(&token))
            .await;
        f.arm_fault(&fault).await;
        let body = f
            .app
            .gql(
                "mutation($i: UpdateMeInput!) { updateMe(input: $i) { displayName } }",
                json!({ "i": { "displayName": name } }),
                Some(&token),
            )
            .await;
        f.off().await;
        let case = format!("updateMe: {} x{}", fault.name, fault.times);
        assert_eq!(outcome(&body, "updateMe"), "ok", "{case}: {body}");
        assert_eq!(
            body["data"]["updateMe"]["displayName"],
            name.as_str(),
            "{case}"
        );
        let stored = f
            .coll("users")
            .find_one(doc! { "_id": user })
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.get_str("display_name").unwrap(), name, "{case}");
        let me = f
            .app
            .ok("{ me { displayName } }", json!({}), Some(&token))
            .await;
        assert_eq!(me["me"]["displayName"], name.as_str(), "{case}");
    }
}

#[tokio::test]
async fn on_a_standalone_server_start_module_sent_again_after_any_fault_is_whole_once() {
    let f = Faulty::spawn_on(&standalone_uri(), &unique_db("standalone"), &[]).await;
    let module = f.app.insert_modules(vec![module("m", 1, doc! {})]).await[0];
    let mut faults = Vec::new();
    // The progress document, its `started` entry, the mark's removal.
    for cmd in ["findAndModify", "insert", "update"] {
        faults.extend(four_faults(cmd).into_iter().map(|x| (cmd, x)));
    }
    for (i, (cmd, fault)) in faults.into_iter().enumerate() {
        let (token, user) = f.app.register(&format!("starter{i}")).await;
        f.arm_fault(&fault).await;
        let body = f
            .app
            .gql(START, json!({ "m": module.to_hex() }), Some(&token))
            .await;
        f.off().await;
        let case = format!("standalone start, {cmd}: {} x{}", fault.name, fault.times);
        let first = outcome(&body, "startModule");
        assert!(first == "ok" || first == "UNAVAILABLE", "{case}: {body}");
        for _ in 0..2 {
            let answer = f
                .until_ok(START, json!({ "m": module.to_hex() }), Some(&token))
                .await;
            assert_eq!(answer["startModule"]["status"], "IN_PROGRESS", "{case}");
        }
        assert_eq!(f.applied(&user, module).await, (0, 0, 1), "{case}");
        let marked = f
            .count("progress", doc! { "started_unlogged": { "$exists": true } })
            .await;
        assert_eq!(marked, 0, "{case}");
    }
    // A start that stopped half-way, followed by a keyed report instead of
    // a second start: the report logs the missing `started` entry.
    let (token, user) = f.app.register("halfway").await;
    f.arm_fault(&stepdown("insert", 2)).await;
    let body = f
        .app
        .gql(START, json!({ "m": module.to_hex() }), Some(&token))
        .await;
    f.off().await;
    assert_eq!(code(&body), "UNAVAILABLE", "{body}");
    assert_eq!(f.applied(&user, module).await, (0, 0, 0));
    let report = json!({ "i": { "moduleId": module.to_hex(), "timeSpentSeconds": 30, "idempotencyKey": "h" } });
    f.until_ok(RECORD, report, Some(&token)).await;
    assert_eq!(f.applied(&user, module).await, (30, 1, 2));
    let marked = f
        .count("progress", doc! { "started_unlogged": { "$exists": true } })
        .await;
    assert_eq!(marked, 0);
}
