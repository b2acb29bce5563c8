//! What real clients do, driven by the node scripts of `tests/web`: GraphiQL
//! in headless Chromium with every non-loopback request blocked, and Apollo
//! Client under node (its `__typename`, Accept header, cache, GET for
//! queries, blank `authorization` while signed out and persisted queries).
//! Each test spawns the service and hands its URL to node.
//!
//! Those run only with `KAIROS_WEB_TESTS=1` (set by scripts/test, which
//! installs Chromium and the npm packages); then a missing prerequisite is
//! a failure, not a skip. The GraphiQL page and its assets are also checked
//! at the HTTP level, always.

use std::{io::Read, path::PathBuf, process::Stdio, time::Duration};

use bson::doc;
use reqwest::StatusCode;
use serde_json::json;
use tokio::process::Command;

use crate::helpers::{TestApp, module, spawn_app, spawn_app_with};

/// Longest a node script may run: Chromium's first start is slow.
const NODE_TIMEOUT: Duration = Duration::from_secs(180);

fn web_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/web")
}

/// The Chromium the browser test drives (Debian's package by default).
fn chromium() -> String {
    std::env::var("KAIROS_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into())
}

/// Whether the web tests run; panics with what to do when they were asked
/// for and something they need is missing.
fn enabled(test: &str, needs_browser: bool) -> bool {
    if std::env::var("KAIROS_WEB_TESTS").as_deref() != Ok("1") {
        eprintln!("{test}: skipped (set KAIROS_WEB_TESTS=1, as scripts/test does, to run it)");
        return false;
    }
    let modules = web_dir().join("node_modules");
    for package in ["playwright-core", "@apollo/client", "graphql"] {
        assert!(
            modules.join(package).is_dir(),
            "KAIROS_WEB_TESTS=1 but {} has no {package}: run `npm ci` in tests/web (scripts/test does)",
            modules.display()
        );
    }
    if needs_browser {
        let browser = chromium();
        assert!(
            std::path::Path::new(&browser).is_file(),
            "KAIROS_WEB_TESTS=1 but there is no Chromium at {browser}: `apt-get install -y chromium` \
             (scripts/test does) or point KAIROS_CHROMIUM at one"
        );
    }
    true
}

/// Runs `node --test tests/web/<script>` with `env`; panics with node's
/// output unless every test in it passed.
async fn run_node(script: &str, env: &[(&str, String)]) {
    let mut command = Command::new("node");
    command
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(script)
        .current_dir(web_dir())
        .env("KAIROS_CHROMIUM", chromium())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = tokio::time::timeout(NODE_TIMEOUT, command.output())
        .await
        .unwrap_or_else(|_| panic!("node {script} ran longer than {NODE_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("could not start node (is it installed?): {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "node {script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    println!("{stdout}");
}

/// Three published modules at positions 1–3, and one unpublished.
async fn seed(app: &TestApp) -> Vec<(String, String, String)> {
    let ids = app
        .insert_modules(vec![
            module(
                "web-alpha",
                1,
                doc! { "title": "Alpha of the web", "category": "web" },
            ),
            module(
                "web-beta",
                2,
                doc! { "title": "Beta of the web", "category": "web" },
            ),
            module(
                "web-gamma",
                3,
                doc! { "title": "Gamma of the web", "category": "data" },
            ),
            module("web-draft", 4, doc! { "published": false }),
        ])
        .await;
    ids.iter()
        .zip(["web-alpha", "web-beta", "web-gamma"])
        .zip(["Alpha of the web", "Beta of the web", "Gamma of the web"])
        .map(|((id, slug), title)| (id.to_hex(), slug.to_string(), title.to_string()))
        .collect()
}

fn modules_json(modules: &[(String, String, String)]) -> String {
    json!(
        modules
            .iter()
            .map(
                |(id, slug, title)| json!({ "id": id, "slug": slug, "title": title,
                "content": format!("Content of {slug}. ").repeat(100) })
            )
            .collect::<Vec<_>>()
    )
    .to_string()
}

#[tokio::test]
async fn graphiql_runs_a_query_in_headless_chromium_with_the_internet_blocked() {
    if !enabled("graphiql", true) {
        return;
    }
    let app = spawn_app().await;
    let modules = seed(&app).await;
    let (token, _) = app.register("graphiql_learner").await;

    run_node(
        "graphiql.test.mjs",
        &[
            ("KAIROS_URL", app.address.clone()),
            ("KAIROS_MODULES", modules_json(&modules)),
            ("KAIROS_TOKEN", token),
            ("KAIROS_USERNAME", "graphiql_learner".into()),
        ],
    )
    .await;
}

#[tokio::test]
async fn apollo_client_drives_the_api_like_an_spa() {
    if !enabled("apollo", false) {
        return;
    }
    let app = spawn_app().await;
    let modules = seed(&app).await;

    run_node(
        "apollo.test.mjs",
        &[
            ("KAIROS_URL", app.address.clone()),
            ("KAIROS_MODULES", modules_json(&modules)),
        ],
    )
    .await;
}

// ------------------------------------------------- GraphiQL page and assets

/// The asset URLs a GraphiQL page names, in order.
fn asset_urls(page: &str) -> Vec<String> {
    page.split('"')
        .filter(|s| s.starts_with("/graphiql/assets/"))
        .map(str::to_string)
        .collect()
}

async fn get(app: &TestApp, path: &str, accept: &str) -> reqwest::Response {
    app.client
        .get(format!("{}{path}", app.address))
        .header("accept", accept)
        .send()
        .await
        .expect("request")
}

/// The text of the GraphiQL page.
async fn graphiql_page(app: &TestApp) -> String {
    get(app, "/graphql", "text/html")
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn graphiql_is_our_page_with_a_strict_policy_naming_only_local_assets() {
    let app = spawn_app().await;

    let root = get(&app, "/", "text/html").await;
    let page = get(&app, "/graphql", "text/html,application/xhtml+xml").await;

    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    let body = page.text().await.unwrap();
    assert!(body.contains("<title>Kairos GraphiQL</title>"), "{body}");
    assert!(
        !body.contains("://"),
        "the page names no other origin: {body}"
    );
    assert!(!body.contains("<script>"), "no inline script: {body}");
    assert_eq!(asset_urls(&body).len(), 6, "{body}");
    assert_eq!(root.status(), StatusCode::OK);
    assert_eq!(root.text().await.unwrap(), body);
}

#[tokio::test]
async fn graphiql_assets_are_the_vendored_files_cached_for_a_year_and_compressed() {
    let app = spawn_app().await;
    let page = graphiql_page(&app).await;
    let vendored = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("assets/graphiql");

    for url in asset_urls(&page) {
        let resp = app
            .client
            .get(format!("{}{url}", app.address))
            .header("accept-encoding", "gzip")
            .send()
            .await
            .expect("request");

        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        let headers = resp.headers().clone();
        assert_eq!(
            headers["cache-control"], "public, max-age=31536000, immutable",
            "{url}"
        );
        assert_eq!(headers["x-content-type-options"], "nosniff", "{url}");
        let media = headers["content-type"].to_str().unwrap();
        let name = url.rsplit('/').next().unwrap();
        let expected = if name.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(media, expected, "{url}");
        let bytes = resp.bytes().await.unwrap();
        let body = if headers.get("content-encoding").is_some() {
            assert_eq!(headers["content-encoding"], "gzip", "{url}");
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut out)
                .unwrap();
            assert!(bytes.len() < out.len(), "{url} is compressed");
            out
        } else {
            assert!(bytes.len() < 500, "{url}: only small files go uncompressed");
            bytes.to_vec()
        };
        if let Ok(file) = std::fs::read(vendored.join(name)) {
            assert_eq!(body, file, "{url} is the vendored file");
        }
    }
}

#[tokio::test]
async fn an_unknown_asset_or_an_old_digest_is_not_found() {
    let app = spawn_app().await;
    let page = graphiql_page(&app).await;
    let current = asset_urls(&page).remove(0);
    let name = current.rsplit('/').next().unwrap();

    let old = get(
        &app,
        &format!("/graphiql/assets/0000000000000000/{name}"),
        "*/*",
    )
    .await;
    let unknown = get(&app, "/graphiql/assets/0000000000000000/secrets.js", "*/*").await;

    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_graphiql_off_neither_the_page_nor_its_assets_are_served() {
    let on = spawn_app().await;
    let page = graphiql_page(&on).await;
    let off = spawn_app_with(&[("GRAPHIQL", "false")]).await;

    let page_off = get(&off, "/", "text/html").await;
    let asset_off = get(&off, &asset_urls(&page)[0], "*/*").await;

    assert_eq!(page_off.status(), StatusCode::NOT_FOUND);
    assert_eq!(asset_off.status(), StatusCode::NOT_FOUND);
    let body: serde_json::Value = asset_off.json().await.unwrap();
    assert_eq!(body["errors"][0]["extensions"]["code"], "NOT_FOUND");
}

// ------------------------------------------------------------ the web app

/// The signing secret of the web-app test, so that it can forge an expired
/// token.
const WEB_APP_JWT_SECRET: &str = "web-app-test-secret-of-at-least-32-bytes";

/// Markdown of the first module: real formatting, and HTML injections that
/// must neither run nor load anything.
const INJECTED_MARKDOWN: &str = "## What you will learn\n\nTo render Markdown **safely**.\n\n\
    <script>window.__xss = 1</script>\n\n\
    <img src=\"https://evil.example/x.png\" onerror=\"window.__xss = 2\" alt=\"remote\">\n\n\
    [a link](javascript:window.__xss=3) and <iframe src=\"https://evil.example/\"></iframe>\n\n\
    <a href=\"#/catalogue\" onclick=\"window.__xss = 4\">back</a>\n";

/// Fourteen published modules over three categories and three levels (the
/// first with `INJECTED_MARKDOWN`), and one draft; returns the first's
/// (slug, title).
async fn seed_catalogue(app: &TestApp) -> (usize, String, String) {
    const NAMES: [&str; 14] = [
        "Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta", "Iota", "Kappa",
        "Lambda", "Mu", "Nu", "Xi",
    ];
    let mut docs: Vec<_> = NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let slug = format!("web-{}", name.to_lowercase());
            let category = ["web", "data", "ops"][i % 3];
            let level = ["beginner", "intermediate", "advanced"][(i / 3) % 3];
            let mut fields = doc! {
                "title": format!("{name} of the web"),
                "category": category,
                "level": level,
            };
            if i == 0 {
                fields.insert("content", INJECTED_MARKDOWN);
            }
            module(&slug, i as i32 + 1, fields)
        })
        .collect();
    docs.push(module("web-draft", 99, doc! { "published": false }));
    app.insert_modules(docs).await;
    (NAMES.len(), "web-alpha".into(), "Alpha of the web".into())
}

/// A token for `user_id` that expired an hour ago, signed like the
/// service's own.
fn expired_token(user_id: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let claims = json!({ "sub": user_id, "role": "learner", "iat": now - 7200, "exp": now - 3600 });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(WEB_APP_JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

fn webapp_manifest() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("assets/webapp/persisted-query-manifest.json")
        .display()
        .to_string()
}

#[tokio::test]
async fn the_web_app_serves_learners_and_admins_in_headless_chromium() {
    if !enabled("webapp", true) {
        return;
    }
    // The data is arranged through a second instance on the same database,
    // since the one the browser uses runs the app's manifest only.
    let arrange = spawn_app_with(&[("WORKER_ENABLED", "false")]).await;
    let (count, slug, title) = seed_catalogue(&arrange).await;
    arrange.admin_token().await;
    let (_, expiring) = arrange.register("expiring_learner").await;
    let database = arrange.state.settings.mongo.database.clone();
    let manifest = webapp_manifest();
    let app = spawn_app_with(&[
        ("MONGODB_DB", database.as_str()),
        ("PERSISTED_QUERIES", "allowlist"),
        ("PERSISTED_QUERIES_MANIFEST", manifest.as_str()),
        ("JWT_SECRET", WEB_APP_JWT_SECRET),
        ("JOB_POLL_MS", "200"),
    ])
    .await;
    let screenshots = std::env::var("KAIROS_SCREENSHOTS").unwrap_or_else(|_| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/web/screenshots")
            .display()
            .to_string()
    });

    run_node(
        "webapp.test.mjs",
        &[
            ("KAIROS_URL", app.address.clone()),
            ("KAIROS_MODULE_COUNT", count.to_string()),
            (
                "KAIROS_FIRST_MODULE",
                json!({ "slug": slug, "title": title }).to_string(),
            ),
            ("KAIROS_ADMIN_LOGIN", "root".into()),
            ("KAIROS_ADMIN_PASSWORD", "admin password 123".into()),
            ("KAIROS_EXPIRED_TOKEN", expired_token(&expiring)),
            ("KAIROS_SCREENSHOTS", screenshots),
        ],
    )
    .await;
}

/// The asset URLs the web app's page names.
fn webapp_asset_urls(page: &str) -> Vec<String> {
    page.split('"')
        .filter(|s| s.starts_with("/app/assets/"))
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn the_web_app_page_has_a_strict_policy_and_names_only_local_versioned_assets() {
    let app = spawn_app().await;

    let page = get(&app, "/app", "text/html").await;
    let slash = get(&app, "/app/", "text/html").await;

    assert_eq!(page.status(), StatusCode::OK);
    let headers = page.headers().clone();
    assert_eq!(headers["content-type"], "text/html; charset=utf-8");
    assert_eq!(headers["cache-control"], "no-cache");
    let csp = headers["content-security-policy"].to_str().unwrap();
    for directive in [
        "default-src 'none'",
        "script-src 'self';",
        "style-src 'self';",
        "connect-src 'self'",
    ] {
        assert!(csp.contains(directive), "{csp}");
    }
    let body = page.text().await.unwrap();
    assert!(body.contains("<title>Kairos</title>"), "{body}");
    assert!(!body.contains("://"), "no other origin: {body}");
    assert_eq!(slash.text().await.unwrap(), body);
    let urls = webapp_asset_urls(&body);
    assert_eq!(urls.len(), 2, "{body}");
    for url in urls {
        let resp = get(&app, &url, "*/*").await;
        assert_eq!(resp.status(), StatusCode::OK, "{url}");
        assert_eq!(
            resp.headers()["cache-control"],
            "public, max-age=31536000, immutable"
        );
        let old = url.replace(url.split('/').nth(3).unwrap(), "0000000000000000");
        assert_eq!(get(&app, &old, "*/*").await.status(), StatusCode::NOT_FOUND);
    }
}

#[tokio::test]
async fn the_web_app_is_off_in_production_unless_web_app_is_true() {
    let production = [
        ("APP_ENV", "production"),
        ("JWT_SECRET", WEB_APP_JWT_SECRET),
    ];
    let off = spawn_app_with(&production).await;
    let on = spawn_app_with(&[production[0], production[1], ("WEB_APP", "true")]).await;
    let dev_off = spawn_app_with(&[("WEB_APP", "false")]).await;

    let off_page = get(&off, "/app", "text/html").await;
    let on_page = get(&on, "/app", "text/html").await;
    let dev_off_page = get(&dev_off, "/app", "text/html").await;

    assert_eq!(off_page.status(), StatusCode::NOT_FOUND);
    assert_eq!(dev_off_page.status(), StatusCode::NOT_FOUND);
    assert_eq!(on_page.status(), StatusCode::OK);
    let asset = &webapp_asset_urls(&on_page.text().await.unwrap())[0];
    assert_eq!(
        get(&off, asset, "*/*").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_web_app_manifest_is_accepted_in_allowlist_mode_and_runs_its_queries_by_hash() {
    let manifest = webapp_manifest();
    let app = spawn_app_with(&[
        ("PERSISTED_QUERIES", "allowlist"),
        ("PERSISTED_QUERIES_MANIFEST", manifest.as_str()),
    ])
    .await;
    let ops: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&manifest).unwrap()).unwrap();
    let me = ops["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|op| op["name"] == "Me")
        .expect("the app asks who is signed in");
    let extensions = json!({ "persistedQuery": { "version": 1, "sha256Hash": me["id"] } });

    let resp = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(&[
            ("operationName", "Me"),
            ("extensions", &extensions.to_string()),
        ])
        .send()
        .await
        .unwrap();

    assert_eq!(resp.status(), StatusCode::OK);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body, json!({ "data": { "me": null } }));
}
