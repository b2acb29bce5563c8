//! `spawn_app()`: the real service on port 0 against the surrogate
//! database, with a fresh database per test. Logs only with TEST_LOG set.

use std::sync::{
    Once,
    atomic::{AtomicU64, Ordering},
};

use bson::{Document, doc, oid::ObjectId};
use kairos::{
    app::{AppState, Application},
    auth::{Role, password::hash_password_blocking},
    config::Settings,
    db::{Db, indexes},
    learners::users::{NewUser, user_document},
};
use serde_json::{Value, json};
use tokio::sync::oneshot;

static TRACING: Once = Once::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The surrogate's address, from scripts/test.
pub fn mongo_uri() -> String {
    std::env::var("KAIROS_TEST_MONGODB_URI").unwrap_or_else(|_| "mongodb://127.0.0.1:27018".into())
}

/// A database name no other test uses.
pub fn unique_db(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "kt_{prefix}_{}_{n}_{}",
        std::process::id(),
        &ObjectId::new().to_hex()[16..]
    )
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: AppState,
    pub db: Db,
    /// Send (or drop) to stop the service as SIGTERM would.
    pub shutdown: oneshot::Sender<()>,
}

/// Settings of a test app: its own database, port 0, quick timeouts.
pub fn test_settings(db_name: &str, extra: &[(&str, &str)]) -> Settings {
    let uri = mongo_uri();
    let mut vars: Vec<(&str, &str)> = vec![
        ("MONGODB_URI", uri.as_str()),
        ("MONGODB_DB", db_name),
        ("BIND_ADDR", "127.0.0.1:0"),
        ("MONGODB_MIN_POOL_SIZE", "1"),
        ("MONGODB_MAX_POOL_SIZE", "20"),
        ("MONGODB_COMPRESSORS", "none"),
        // The change-stream follower invalidates after every write, a moment
        // later: tests that count cache hits and database commands run
        // without it; tests/api/faults.rs turns it on.
        ("CACHE_FOLLOW_CHANGES", "false"),
    ];
    vars.extend_from_slice(extra);
    struct Vars<'a>(Vec<(&'a str, &'a str)>);
    impl kairos::config::Source for Vars<'_> {
        fn get(&self, key: &str) -> Option<String> {
            self.0
                .iter()
                .rev()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }
    Settings::from_source(&Vars(vars)).expect("test settings")
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Spawns the service with extra environment settings.
pub async fn spawn_app_with(extra: &[(&str, &str)]) -> TestApp {
    TRACING.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            kairos::telemetry::init(kairos::config::LogFormat::Pretty);
        }
    });
    let settings = test_settings(&unique_db("api"), extra);
    // Indexes first, as an operator would: unique indexes guard the
    // invariants the tests check.
    let db = Db::connect(&settings.mongo).await.expect("db client");
    let decls = indexes::load(None, 365 * 86_400).expect("index declarations");
    indexes::reconcile(&db, &decls, true)
        .await
        .expect("apply indexes");
    let app = Application::build(settings).await.expect("build app");
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = rx.await;
    }));
    TestApp {
        address,
        client: reqwest::Client::new(),
        db: state.services.db.clone(),
        state,
        shutdown: tx,
    }
}

impl TestApp {
    /// Sends a GraphQL request and returns the JSON body.
    pub async fn gql(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.address))
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("request");
        assert!(
            resp.status().as_u16() < 500,
            "server error {}",
            resp.status()
        );
        resp.json().await.expect("json body")
    }

    /// Sends a query and asserts it had no error; returns `data`.
    pub async fn ok(&self, query: &str, variables: Value, token: Option<&str>) -> Value {
        let body = self.gql(query, variables, token).await;
        assert!(body.get("errors").is_none(), "unexpected errors: {body:#}");
        body["data"].clone()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(format!("{}/metrics", self.address))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }

    /// Inserts modules directly (the admin API arrives later), returning ids.
    pub async fn insert_modules(&self, modules: Vec<Document>) -> Vec<ObjectId> {
        let now = bson::DateTime::now();
        let mut ids = Vec::new();
        let docs: Vec<Document> = modules
            .into_iter()
            .map(|mut m| {
                let id = ObjectId::new();
                ids.push(id);
                m.insert("_id", id);
                for (k, v) in [("created_at", now), ("updated_at", now)] {
                    if !m.contains_key(k) {
                        m.insert(k, v);
                    }
                }
                m
            })
            .collect();
        self.db
            .raw("modules")
            .insert_many(docs)
            .await
            .expect("insert modules");
        ids
    }

    /// Registers a learner through the API; returns (token, user id).
    pub async fn register(&self, name: &str) -> (String, String) {
        let data = self
            .ok(
                "mutation($i: RegisterInput!) { register(input: $i) { token user { id } } }",
                json!({ "i": { "email": format!("{name}@example.org"), "username": name, "password": "correct horse battery" } }),
                None,
            )
            .await;
        (
            data["register"]["token"].as_str().unwrap().to_string(),
            data["register"]["user"]["id"].as_str().unwrap().to_string(),
        )
    }

    /// Creates an admin directly in the database and logs in as them.
    pub async fn admin_token(&self) -> String {
        let hash = hash_password_blocking("admin password 123").unwrap();
        let user = NewUser {
            email: "root@example.org".into(),
            username: "root".into(),
            display_name: None,
            password_hash: hash,
            role: Role::Admin,
        };
        self.db
            .raw("users")
            .insert_one(user_document(ObjectId::new(), &user, bson::DateTime::now()))
            .await
            .unwrap();
        let data = self
            .ok(
                "mutation { login(input: {login: \"root\", password: \"admin password 123\"}) { token } }",
                json!({}),
                None,
            )
            .await;
        data["login"]["token"].as_str().unwrap().to_string()
    }
}

/// A module document with sensible defaults, overridden by `fields`.
pub fn module(slug: &str, position: i32, fields: Document) -> Document {
    let mut m = doc! {
        "slug": slug,
        "title": format!("Module {slug}"),
        "summary": format!("Summary of {slug}"),
        "category": "general",
        "level": "beginner",
        "tags": ["intro"],
        "duration_minutes": 30,
        "position": position,
        "published": true,
        "content": format!("Content of {slug}. ").repeat(100),
    };
    for (k, v) in fields {
        m.insert(k, v);
    }
    m
}

/// The `extensions.code` of the first error.
pub fn code(body: &Value) -> &str {
    body["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
}
