//! Protection and operations against the running service: query limits,
//! rate limits, compression, CORS, request ids, readiness, metrics, logs,
//! production hardening, a dead database, and a battery of bad input.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use bson::doc;
use proptest::{prelude::*, test_runner::TestRunner};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, code, module, mongo_uri, spawn_app, spawn_app_with, unique_db};

const LIST: &str = "query ListModules { modules(first: 5) { nodes { id slug } } }";

impl TestApp {
    /// POSTs a raw body with a content type; returns status, headers, body.
    async fn post_raw(
        &self,
        content_type: Option<&str>,
        body: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, header::HeaderMap, Vec<u8>) {
        let mut req = self
            .client
            .post(format!("{}/graphql", self.address))
            .body(body);
        if let Some(ct) = content_type {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.expect("request");
        let (status, headers) = (resp.status(), resp.headers().clone());
        (status, headers, resp.bytes().await.expect("body").to_vec())
    }

    /// POSTs a GraphQL request with extra headers; returns status, headers
    /// and the JSON body.
    async fn post_json(
        &self,
        body: Value,
        headers: &[(&str, &str)],
    ) -> (StatusCode, header::HeaderMap, Value) {
        let (status, headers, bytes) = self
            .post_raw(
                Some("application/json"),
                serde_json::to_vec(&body).unwrap(),
                headers,
            )
            .await;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("not JSON ({status}): {}", String::from_utf8_lossy(&bytes)));
        (status, headers, body)
    }

    async fn get_path(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request")
    }

    /// A GET as a browser sends it (asking for HTML).
    async fn browser_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(format!("{}{path}", self.address))
            .header("accept", "text/html")
            .send()
            .await
            .expect("request")
    }

    async fn metrics_text(&self) -> String {
        let resp = self.get_path("/metrics").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(
            resp.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        resp.text().await.unwrap()
    }
}

// ---------------------------------------------------------------- limits

/// Module fields a rich client might select for each item.
const MODULE_FIELDS: &str =
    "id slug title summary category level tags durationMinutes position published";

/// Four aliases of a page of modules with each one's progress and its
/// module: 4 × (1 + first × 3) points.
fn four_nested_pages(first: &str) -> String {
    let page = format!(
        "modules(first: {first}) {{ nodes {{ {MODULE_FIELDS} myProgress {{ module {{ {MODULE_FIELDS} }} }} }} }}"
    );
    (0..4).map(|i| format!("p{i}: {page} ")).collect()
}

#[tokio::test]
async fn a_page_is_priced_by_its_size_so_full_nested_pages_are_refused() {
    let app = spawn_app().await;
    let query = |first: u32| format!("{{ {} }}", four_nested_pages(&first.to_string()));

    let small = app.gql(&query(5), json!({}), None).await;
    let started = Instant::now();
    let (status, _, full) = app.post_json(json!({ "query": query(100) }), &[]).await;

    assert!(small.get("errors").is_none(), "{small:#}");
    assert!(status.as_u16() < 500);
    assert_eq!(code(&full), "BAD_USER_INPUT", "{full:#}");
    assert!(
        full["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("costs 1204 points"),
        "{full:#}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused promptly"
    );
}

#[tokio::test]
async fn the_page_size_in_a_variable_is_priced_too() {
    let app = spawn_app().await;
    let q = format!("query($n: Int) {{ {} }}", four_nested_pages("$n"));

    let small = app.gql(&q, json!({ "n": 5 }), None).await;
    let body = app.gql(&q, json!({ "n": 100 }), None).await;

    assert!(small.get("errors").is_none(), "{small:#}");
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body:#}");
}

#[tokio::test]
async fn aliases_of_full_pages_add_up_past_the_limit() {
    let app = spawn_app().await;
    let aliases: String = (0..20)
        .map(|i| format!("p{i}: modules(first: 100) {{ totalCount }} "))
        .collect();

    let body = app.gql(&format!("{{ {aliases} }}"), json!({}), None).await;

    assert_eq!(code(&body), "BAD_USER_INPUT", "{body:#}");
}

#[tokio::test]
async fn an_alias_bomb_is_refused_within_milliseconds() {
    let app = spawn_app().await;
    let aliases: String = (0..3000).map(|i| format!("a{i}: __typename ")).collect();
    let query = format!("{{ {aliases} }}");
    assert!(query.len() < 64 * 1024, "stays under the body limit");

    let started = Instant::now();
    let (status, _, body) = app.post_json(json!({ "query": query }), &[]).await;

    assert!(status.as_u16() < 500);
    assert_eq!(code(&body), "BAD_USER_INPUT", "{body:#}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "took {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn a_query_deeper_than_the_limit_is_refused() {
    let app = spawn_app().await;
    let mut inner = "id".to_string();
    for _ in 0..8 {
        inner = format!("myProgress {{ module {{ {inner} }} }}");
    }

    let body = app
        .gql(
            &format!("{{ modules {{ nodes {{ {inner} }} }} }}"),
            json!({}),
            None,
        )
        .await;

    assert_eq!(code(&body), "BAD_USER_INPUT", "{body:#}");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_with_a_graphql_body() {
    let app = spawn_app().await;
    let padding = " ".repeat(70 * 1024);
    let body = format!("{{\"query\": \"{{ __typename }}{padding}\"}}");

    let (status, _, bytes) = app
        .post_raw(Some("application/json"), body.into_bytes(), &[])
        .await;

    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(code(&body), "BAD_USER_INPUT");
}

// ----------------------------------------------------------- rate limits

/// Sends `n` quick requests; returns their statuses in order.
async fn burst(app: &TestApp, n: usize, headers: &[(&str, &str)]) -> Vec<StatusCode> {
    let mut statuses = Vec::new();
    for _ in 0..n {
        let (status, _, _) = app
            .post_raw(
                Some("application/json"),
                br#"{"query":"{ __typename }"}"#.to_vec(),
                headers,
            )
            .await;
        statuses.push(status);
    }
    statuses
}

const LOW_LIMIT: [(&str, &str); 2] = [("RATE_LIMIT_PER_SECOND", "1"), ("RATE_LIMIT_BURST", "3")];

#[tokio::test]
async fn past_the_burst_a_client_gets_429_with_retry_after_and_a_graphql_body() {
    let app = spawn_app_with(&LOW_LIMIT).await;

    let statuses = burst(&app, 3, &[]).await;
    let (status, headers, bytes) = app
        .post_raw(
            Some("application/json"),
            br#"{"query":"{ __typename }"}"#.to_vec(),
            &[],
        )
        .await;
    // Ten more: at one token a second, most of them must be refused.
    let more = burst(&app, 10, &[]).await;

    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(code(&body), "RATE_LIMITED");
    assert!(
        more.iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count()
            >= 5
    );
    let health = app.get_path("/health").await;
    assert_eq!(health.status(), StatusCode::OK, "probes are not limited");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("kairos_rate_limited_total{scope=\"http\"}"),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_spoofed_forwarded_header_does_not_reset_the_limit_without_a_trusted_proxy() {
    let app = spawn_app_with(&LOW_LIMIT).await;

    burst(&app, 4, &[]).await;
    let spoofed: Vec<_> = (0..4).map(|i| format!("203.0.113.{i}")).collect::<Vec<_>>();
    let mut statuses = Vec::new();
    for ip in &spoofed {
        statuses.extend(burst(&app, 1, &[("x-forwarded-for", ip.as_str())]).await);
    }

    assert!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count()
            >= 3,
        "the forwarded header must be ignored: {statuses:?}"
    );
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_forwarded_client_has_its_own_bucket() {
    let mut vars = LOW_LIMIT.to_vec();
    vars.push(("TRUST_PROXY", "true"));
    let app = spawn_app_with(&vars).await;
    let alice = [("x-forwarded-for", "198.51.100.1")];
    let bob = [("x-forwarded-for", "198.51.100.2")];
    // The client prepends a forged entry; the proxy appended the real one.
    let forged_bob = [("x-forwarded-for", "198.51.100.2, 198.51.100.1")];

    let alice_statuses = burst(&app, 8, &alice).await;
    let forged = burst(&app, 1, &forged_bob).await;
    let bob_statuses = burst(&app, 3, &bob).await;

    assert!(alice_statuses.contains(&StatusCode::TOO_MANY_REQUESTS));
    assert_eq!(forged, [StatusCode::TOO_MANY_REQUESTS]);
    assert!(
        bob_statuses.iter().all(|s| *s == StatusCode::OK),
        "{bob_statuses:?}"
    );
}

const LOGIN: &str = "mutation SignIn($l: String!, $p: String!) { login(input: {login: $l, password: $p}) { token } }";

#[tokio::test]
async fn sign_in_attempts_are_limited_per_address_with_rate_limited() {
    let app = spawn_app_with(&[("AUTH_RATE_LIMIT_PER_MINUTE", "2"), ("TRUST_PROXY", "true")]).await;
    let attempt = |ip: &'static str| {
        let app = &app;
        async move {
            app.post_json(
                json!({ "query": LOGIN, "variables": { "l": "nobody", "p": "wrong password!" } }),
                &[("x-forwarded-for", ip)],
            )
            .await
            .2
        }
    };

    let first = attempt("192.0.2.10").await;
    let second = attempt("192.0.2.10").await;
    let third = attempt("192.0.2.10").await;
    let register = app
        .post_json(
            json!({ "query": "mutation { register(input: {email: \"x@example.org\", username: \"xx_x\", password: \"long enough password\"}) { token } }" }),
            &[("x-forwarded-for", "192.0.2.10")],
        )
        .await
        .2;
    let elsewhere = attempt("192.0.2.11").await;

    assert_eq!(code(&first), "UNAUTHENTICATED");
    assert_eq!(code(&second), "UNAUTHENTICATED");
    assert_eq!(code(&third), "RATE_LIMITED", "{third:#}");
    assert_eq!(
        code(&register),
        "RATE_LIMITED",
        "register shares the bucket"
    );
    assert_eq!(code(&elsewhere), "UNAUTHENTICATED");
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains("kairos_rate_limited_total{scope=\"auth\"} 2"),
        "{metrics}"
    );
}

// ------------------------------------------- compression, CORS, request id

#[tokio::test]
async fn large_responses_are_compressed_with_gzip_or_br_and_small_ones_are_not() {
    let app = spawn_app().await;
    app.insert_modules(
        (0..10)
            .map(|i| module(&format!("m{i}"), i, doc! {}))
            .collect(),
    )
    .await;
    let big = json!({ "query": "{ modules { nodes { id slug title summary content } } }" });
    let small = json!({ "query": "{ __typename }" });

    let post = |body: &Value, encodings: &'static str| {
        let (app, bytes) = (&app, serde_json::to_vec(body).unwrap());
        async move {
            app.post_raw(
                Some("application/json"),
                bytes,
                &[("accept-encoding", encodings)],
            )
            .await
        }
    };

    let (_, gz_headers, gz_bytes) = post(&big, "gzip").await;
    let (_, br_headers, _) = post(&big, "br").await;
    let (_, small_headers, _) = post(&small, "gzip, br").await;

    assert_eq!(gz_headers[header::CONTENT_ENCODING], "gzip");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz_bytes[..]), &mut text)
        .unwrap();
    let body: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        body["data"]["modules"]["nodes"].as_array().unwrap().len(),
        10
    );
    assert_eq!(br_headers[header::CONTENT_ENCODING], "br");
    assert!(small_headers.get(header::CONTENT_ENCODING).is_none());
}

#[tokio::test]
async fn cors_allows_the_configured_origin_only_and_never_credentials() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "https://app.example.org")]).await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization, content-type",
            )
            .send()
    };

    let allowed = preflight("https://app.example.org").await.unwrap();
    let other = preflight("https://evil.example.com").await.unwrap();

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    let allowed_headers = allowed.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(allowed_headers.contains("authorization"));
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_a_given_one_is_kept() {
    let app = spawn_app().await;

    let (_, generated, _) = app
        .post_json(json!({ "query": "{ __typename }" }), &[])
        .await;
    let (_, given, _) = app
        .post_json(
            json!({ "query": "{ __typename }" }),
            &[("x-request-id", "trace-me-42")],
        )
        .await;

    assert_eq!(
        generated["x-request-id"].to_str().unwrap().len(),
        36,
        "a UUID"
    );
    assert_eq!(given["x-request-id"], "trace-me-42");
}

// ------------------------------------------------------ ready and metrics

#[tokio::test]
async fn ready_says_200_with_the_state_of_each_dependency() {
    let app = spawn_app().await;

    let resp = app.get_path("/ready").await;

    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["mongodb"], "up");
    assert!(body.get("redis").is_some(), "{body:#}");
}

#[tokio::test]
async fn metrics_count_requests_latency_errors_and_commands_per_operation() {
    let app = spawn_app().await;

    app.ok(LIST, json!({}), None).await;
    app.ok(LIST, json!({}), None).await;
    let bad = app
        .gql("{ modules(first: 1000) { totalCount } }", json!({}), None)
        .await;
    let text = app.metrics_text().await;

    assert_eq!(code(&bad), "BAD_USER_INPUT");
    assert!(
        text.contains("kairos_graphql_requests_total{operation=\"ListModules\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("kairos_graphql_request_duration_seconds_bucket{operation=\"ListModules\""),
        "{text}"
    );
    assert!(
        text.contains("kairos_graphql_errors_total{code=\"BAD_USER_INPUT\"} 1"),
        "{text}"
    );
    assert!(
        text.contains("kairos_mongodb_commands_total{command=\"aggregate\"}"),
        "{text}"
    );
    assert!(
        text.contains("kairos_http_requests_total{route=\"/graphql\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(text.contains("kairos_mongodb_pool_max_size"), "{text}");
}

#[tokio::test]
async fn two_services_in_one_process_keep_their_own_metrics() {
    let (a, b) = (spawn_app().await, spawn_app().await);

    a.ok(LIST, json!({}), None).await;
    let text_b = b.metrics_text().await;

    assert!(!text_b.contains("operation=\"ListModules\""), "{text_b}");
}

// --------------------------------------------------------------- production

const PROD: [(&str, &str); 2] = [
    ("APP_ENV", "production"),
    ("JWT_SECRET", "0123456789abcdef0123456789abcdef-prod"),
];

#[tokio::test]
async fn production_turns_graphiql_and_introspection_off() {
    let app = spawn_app_with(&PROD).await;

    let page = app.browser_get("/graphql").await;
    let introspection = app
        .gql("{ __schema { types { name } } }", json!({}), None)
        .await;
    let typed = app
        .gql(
            "{ __type(name: \"User\") { fields { name } } }",
            json!({}),
            None,
        )
        .await;

    assert_eq!(page.status(), StatusCode::NOT_FOUND);
    assert!(
        introspection["data"]["__schema"].is_null(),
        "{introspection:#}"
    );
    assert!(typed["data"]["__type"].is_null(), "{typed:#}");
}

#[tokio::test]
async fn production_serves_graphiql_and_introspection_when_asked_for() {
    let mut vars = PROD.to_vec();
    vars.extend([("GRAPHIQL", "true"), ("INTROSPECTION", "true")]);
    let app = spawn_app_with(&vars).await;

    let page = app.browser_get("/graphql").await;
    let data = app
        .ok("{ __schema { queryType { name } } }", json!({}), None)
        .await;

    assert_eq!(page.status(), StatusCode::OK);
    assert_eq!(data["__schema"]["queryType"]["name"], "Query");
}

// -------------------------------------------------------------------- logs

/// A `kairos serve` process whose stdout lines are collected.
struct Served {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    address: String,
}

impl Served {
    fn start(envs: &[(&str, &str)]) -> Served {
        let mut child = Command::new(env!("CARGO_BIN_EXE_kairos"))
            .arg("serve")
            .env("BIND_ADDR", "127.0.0.1:0")
            .env("MONGODB_URI", mongo_uri())
            .env("MONGODB_DB", unique_db("logs"))
            .env("MONGODB_COMPRESSORS", "none")
            .env("MONGODB_MIN_POOL_SIZE", "1")
            .env("RUST_LOG", "info")
            .envs(envs.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn kairos");
        let stdout = child.stdout.take().unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v["message"] == "serving"
                {
                    let _ = tx.send(v["addr"].as_str().unwrap_or_default().to_string());
                }
                sink.lock().unwrap().push(line);
            }
        });
        let addr = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("the service logs its address");
        Served {
            child,
            lines,
            address: format!("http://{addr}"),
        }
    }

    /// Stops the process and returns every line it wrote.
    fn stop(mut self) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        std::thread::sleep(Duration::from_millis(100));
        self.lines.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn json_logs_have_one_line_per_request_and_never_a_secret() {
    let served = Served::start(&[("LOG_FORMAT", "json")]);
    let client = reqwest::Client::new();
    let password = "Sup3r-Secret-Passw0rd";
    let post = |body: Value, token: Option<String>| {
        let mut req = client
            .post(format!("{}/graphql", served.address))
            .header("x-request-id", "log-test-1")
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };

    let registered: Value = post(
        json!({ "query": "mutation SignUp($p: String!) { register(input: {email: \"log@example.org\", username: \"logger\", password: $p}) { token } }", "variables": { "p": password } }),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let login: Value = post(
        json!({ "query": LOGIN, "variables": { "l": "logger", "p": password } }),
        None,
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let token = login["data"]["login"]["token"]
        .as_str()
        .unwrap()
        .to_string();
    let me = post(
        json!({ "query": "query Me { me { username } }" }),
        Some(token.clone()),
    )
    .await
    .unwrap();
    let bad_token = post(
        json!({ "query": "{ me { id } }" }),
        Some("forged.token.value".into()),
    )
    .await
    .unwrap();
    let lines = served.stop();

    assert!(registered.get("errors").is_none(), "{registered:#}");
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(bad_token.status(), StatusCode::UNAUTHORIZED);
    let parsed: Vec<Value> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}")))
        .collect();
    let requests: Vec<&Value> = parsed
        .iter()
        .filter(|v| v["target"] == "kairos::request")
        .collect();
    assert_eq!(requests.len(), 4, "one line per request: {lines:#?}");
    let sign_in = requests
        .iter()
        .find(|v| v["operation"] == "SignIn")
        .expect("the login line");
    assert_eq!(sign_in["status"], 200);
    assert_eq!(sign_in["request_id"], "log-test-1");
    assert!(sign_in["duration_ms"].as_f64().is_some());
    let all = lines.join("\n");
    for secret in [password, token.as_str(), "forged.token.value", "Bearer"] {
        assert!(!all.contains(secret), "{secret:?} was logged:\n{all}");
    }
    assert!(!all.to_lowercase().contains("authorization"), "{all}");
}

// ------------------------------------------------------ a dead database

/// A SecantusDB server of the test's own, on a port that stays the same
/// across restarts.
struct Database {
    bin: String,
    port: u16,
    dir: std::path::PathBuf,
    child: Option<Child>,
}

impl Database {
    fn start(bin: String) -> Database {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(unique_db("sdb"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut db = Database {
            bin,
            port,
            dir,
            child: None,
        };
        db.restart();
        db
    }

    fn uri(&self) -> String {
        format!("mongodb://127.0.0.1:{}", self.port)
    }

    fn restart(&mut self) {
        let child = Command::new(&self.bin)
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--storage-path")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start SecantusDB");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "SecantusDB did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const AVAILABILITY: &str =
    "query Probe { availability(username: \"free_name\") { usernameAvailable } }";

#[tokio::test]
async fn with_the_database_down_requests_answer_unavailable_quickly_and_recover_after() {
    let Ok(bin) = std::env::var("KAIROS_SECANTUSD") else {
        eprintln!("KAIROS_SECANTUSD is not set (scripts/test sets it): skipped");
        return;
    };
    let mut db = Database::start(bin);
    let uri = db.uri();
    let app = spawn_app_with(&[
        ("MONGODB_URI", uri.as_str()),
        ("MONGODB_SERVER_SELECTION_TIMEOUT_MS", "1000"),
        ("MONGODB_CONNECT_TIMEOUT_MS", "1000"),
        ("MONGODB_OPERATION_TIMEOUT_MS", "3000"),
    ])
    .await;
    app.register("survivor").await;
    let sign_in =
        json!({ "query": LOGIN, "variables": { "l": "survivor", "p": "correct horse battery" } });
    let mut statuses = Vec::new();

    // Down: every request that needs the database says UNAVAILABLE, soon.
    db.kill();
    for body in [
        json!({ "query": AVAILABILITY }),
        sign_in.clone(),
        json!({ "query": "mutation { register(input: {email: \"new@example.org\", username: \"newbie\", password: \"long enough password\"}) { token } }" }),
    ] {
        let started = Instant::now();
        let (status, _, body) = app.post_json(body, &[]).await;
        statuses.push(status);
        assert_eq!(code(&body), "UNAVAILABLE", "{body:#}");
        assert!(
            !body.to_string().contains("127.0.0.1"),
            "no internals: {body:#}"
        );
        // Server selection gives up after 1 s; allow generously for retries.
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{:?}",
            started.elapsed()
        );
    }
    // Reads that the cache may serve must not fail with a 5xx either.
    let (status, _, _) = app.post_json(json!({ "query": LIST }), &[]).await;
    statuses.push(status);
    let started = Instant::now();
    let ready = app.get_path("/ready").await;
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(started.elapsed() < Duration::from_secs(8));
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["mongodb"], "down");

    // Back, on the same port: no restart of the service.
    db.restart();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, _, body) = app.post_json(json!({ "query": AVAILABILITY }), &[]).await;
        statuses.push(status);
        if body.get("errors").is_none() {
            break;
        }
        assert_eq!(code(&body), "UNAVAILABLE", "{body:#}");
        assert!(Instant::now() < deadline, "no recovery: {body:#}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // Writes and reads work again (the server may or may not have kept
    // its data through a hard kill; that is the database's business).
    let (token, _) = app.register("comeback").await;
    let (_, _, signed_in) = app
        .post_json(
            json!({ "query": LOGIN, "variables": { "l": "comeback", "p": "correct horse battery" } }),
            &[],
        )
        .await;
    let ready = app.get_path("/ready").await;

    assert!(!token.is_empty());
    assert!(
        signed_in["data"]["login"]["token"].is_string(),
        "{signed_in:#}"
    );
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(
        statuses.iter().all(|s| s.as_u16() < 500),
        "no 5xx from /graphql: {statuses:?}"
    );
}

// ------------------------------------------------------------- bad input

/// What a bad request must get: a status below 500 and a JSON body whose
/// errors all carry a code and a message.
fn assert_clear_error(what: &str, status: StatusCode, bytes: &[u8]) {
    assert!(status.as_u16() < 500, "{what}: {status}");
    let body: Value = serde_json::from_slice(bytes).unwrap_or_else(|_| {
        panic!(
            "{what}: not JSON ({status}): {}",
            String::from_utf8_lossy(bytes)
        )
    });
    let errors = body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors: {body:#}"));
    assert!(!errors.is_empty(), "{what}");
    for e in errors {
        assert!(e["extensions"]["code"].is_string(), "{what}: {body:#}");
        assert!(
            !e["message"].as_str().unwrap_or_default().is_empty(),
            "{what}: {body:#}"
        );
    }
}

#[tokio::test]
async fn every_kind_of_bad_input_gets_a_clear_error_and_never_a_5xx() {
    let app = spawn_app().await;
    let json_ct = Some("application/json");
    let q = |query: &str, variables: Value| {
        serde_json::to_vec(&json!({ "query": query, "variables": variables })).unwrap()
    };
    let deep = format!("{}{}", "{ a ".repeat(500), "}".repeat(500));
    let aliases: String = (0..3000).map(|i| format!("m{i}: me {{ id }} ")).collect();
    let directives = format!("{{ __typename {} }}", "@skip(if: false) ".repeat(2000));
    let huge_string = "x".repeat(60_000);
    let huge_list: Vec<u32> = (0..10_000).collect();
    let cases: Vec<(&str, Option<&str>, Vec<u8>)> = vec![
        ("malformed JSON", json_ct, b"{\"query\": ".to_vec()),
        ("a JSON string", json_ct, b"\"hello\"".to_vec()),
        ("JSON null", json_ct, b"null".to_vec()),
        (
            "a batch",
            json_ct,
            br#"[{"query":"{ __typename }"}]"#.to_vec(),
        ),
        ("no query", json_ct, b"{}".to_vec()),
        ("a numeric query", json_ct, br#"{"query": 5}"#.to_vec()),
        (
            "string variables",
            json_ct,
            br#"{"query":"{ __typename }","variables":"x"}"#.to_vec(),
        ),
        (
            "text/plain",
            Some("text/plain"),
            q("{ __typename }", json!({})),
        ),
        ("no content type", None, q("{ __typename }", json!({}))),
        (
            "a form",
            Some("application/x-www-form-urlencoded"),
            b"query=%7B__typename%7D".to_vec(),
        ),
        (
            "multipart",
            Some("multipart/form-data; boundary=x"),
            b"--x\r\n\r\n--x--".to_vec(),
        ),
        (
            "invalid UTF-8",
            json_ct,
            b"{\"query\":\"{ \xff\xfe }\"}".to_vec(),
        ),
        (
            "an unknown operation",
            json_ct,
            br#"{"query":"query A { __typename }","operationName":"B"}"#.to_vec(),
        ),
        ("a syntax error", json_ct, q("{ modules { ", json!({}))),
        ("an unknown field", json_ct, q("{ nope }", json!({}))),
        (
            "a wrong variable type",
            json_ct,
            q(
                "query($f: Int) { modules(first: $f) { totalCount } }",
                json!({ "f": "ten" }),
            ),
        ),
        (
            "an operator as an ID",
            json_ct,
            q(
                "query($id: ID) { module(id: $id) { id } }",
                json!({ "id": { "$gt": "" } }),
            ),
        ),
        (
            "an operator-looking ID string",
            json_ct,
            q(
                "{ module(id: \"{\\\"$gt\\\": \\\"\\\"}\") { id } }",
                json!({}),
            ),
        ),
        (
            "a page too large",
            json_ct,
            q("{ modules(first: 1000) { totalCount } }", json!({})),
        ),
        (
            "a negative page",
            json_ct,
            q("{ modules(first: -1) { totalCount } }", json!({})),
        ),
        (
            "a forged cursor",
            json_ct,
            q("{ modules(after: \"abc.def\") { totalCount } }", json!({})),
        ),
        (
            "a huge string",
            json_ct,
            q(
                "query($s: String) { module(slug: $s) { id } }",
                json!({ "s": huge_string }),
            ),
        ),
        (
            "a huge list",
            json_ct,
            q(
                "query($c: String) { modules(category: $c) { totalCount } }",
                json!({ "c": huge_list }),
            ),
        ),
        ("deep nesting", json_ct, q(&deep, json!({}))),
        ("an alias bomb", json_ct, q(&aliases, json!({}))),
        ("a directive bomb", json_ct, q(&directives, json!({}))),
        (
            "a fragment cycle",
            json_ct,
            q(
                "{ ...A } fragment A on Query { ...B } fragment B on Query { ...A }",
                json!({}),
            ),
        ),
        (
            "a mutation and a query without a name",
            json_ct,
            q(
                "query A { __typename } mutation B { __typename }",
                json!({}),
            ),
        ),
        (
            "a subscription",
            json_ct,
            q("subscription { __typename }", json!({})),
        ),
    ];

    for (what, content_type, body) in cases {
        let started = Instant::now();
        let (status, _, bytes) = app.post_raw(content_type, body, &[]).await;
        assert_clear_error(what, status, &bytes);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{what}: {:?}",
            started.elapsed()
        );
    }
    for (what, path) in [
        ("GET without a query", "/graphql?foo=1"),
        (
            "GET with bad variables",
            "/graphql?query=%7B__typename%7D&variables=nope",
        ),
        (
            "GET with a mutation",
            "/graphql?query=mutation%7B__typename%7D",
        ),
    ] {
        let resp = app.get_path(path).await;
        let status = resp.status();
        assert_clear_error(what, status, &resp.bytes().await.unwrap());
    }
    let (status, _, bytes) = app
        .post_raw(
            json_ct,
            q("{ __typename }", json!({})),
            &[("authorization", "Basic Zm9vOmJhcg==")],
        )
        .await;
    assert_clear_error("a non-bearer authorization", status, &bytes);
}

/// Bodies for the property test: raw bytes, JSON of any shape, and
/// GraphQL-looking text made from the language's own tokens.
fn request_bodies() -> impl Strategy<Value = Vec<u8>> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("(".to_string()),
        Just(")".to_string()),
        Just("...".to_string()),
        Just("query".to_string()),
        Just("mutation".to_string()),
        Just("fragment".to_string()),
        Just("on".to_string()),
        Just("modules".to_string()),
        Just("module".to_string()),
        Just("nodes".to_string()),
        Just("myProgress".to_string()),
        Just("first:".to_string()),
        Just("$v".to_string()),
        Just("@skip(if: true)".to_string()),
        Just("__typename".to_string()),
        "[a-zA-Z_][a-zA-Z0-9_]{0,8}",
        "-?[0-9]{1,12}",
        "\"[^\"\\\\]{0,12}\"",
    ];
    let variables = prop_oneof![
        Just(Value::Null),
        any::<i64>().prop_map(|n| json!({ "v": n })),
        ".{0,40}".prop_map(|s| json!({ "v": s })),
        proptest::collection::vec(any::<i32>(), 0..50).prop_map(|l| json!({ "v": l })),
    ];
    let graphql =
        (proptest::collection::vec(token, 0..60), variables).prop_map(|(tokens, vars)| {
            serde_json::to_vec(&json!({ "query": tokens.join(" "), "variables": vars })).unwrap()
        });
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300),
        ".{0,200}".prop_map(String::into_bytes),
        graphql.clone(),
        graphql,
    ]
}

#[test]
fn random_request_bodies_never_get_a_5xx_or_a_non_graphql_answer() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = rt.block_on(spawn_app());
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 96,
        failure_persistence: None,
        ..ProptestConfig::default()
    });

    let result = runner.run(&request_bodies(), |body| {
        let (status, _, bytes) =
            rt.block_on(app.post_raw(Some("application/json"), body.clone(), &[]));
        prop_assert!(
            status.as_u16() < 500,
            "{status} for {:?}",
            String::from_utf8_lossy(&body)
        );
        let answer: Value = serde_json::from_slice(&bytes).map_err(|_| {
            TestCaseError::fail(format!("not JSON for {:?}", String::from_utf8_lossy(&body)))
        })?;
        if let Some(errors) = answer["errors"].as_array() {
            prop_assert!(
                errors.iter().all(|e| e["extensions"]["code"].is_string()),
                "{answer}"
            );
        } else {
            prop_assert!(answer.get("data").is_some(), "{answer}");
        }
        Ok(())
    });

    result.unwrap();
}
