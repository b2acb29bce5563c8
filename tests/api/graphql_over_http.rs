//! GraphQL over HTTP as its spec and real clients expect it: media types,
//! status codes, methods, persisted queries, HTTP caching hints, CORS and
//! the production hardening of the endpoint.

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use crate::{
    cache::two_instances_on_one_redis,
    helpers::{TestApp, code, module, spawn_app, spawn_app_with},
};

const GRAPHQL_JSON: &str = "application/graphql-response+json";
const PAGE: &str = "{ modules(first: 5) { totalCount edges { node { slug } } } }";

/// One POST with the given headers; status, headers and JSON body.
async fn post(
    app: &TestApp,
    body: &Value,
    headers: &[(&str, &str)],
) -> (StatusCode, header::HeaderMap, Value) {
    let mut req = app
        .client
        .post(format!("{}/graphql", app.address))
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.json().await.expect("a JSON body");
    (status, headers, body)
}

/// One GET of `/graphql` with the given query-string pairs.
async fn get(
    app: &TestApp,
    params: &[(&str, &str)],
    headers: &[(&str, &str)],
) -> (StatusCode, header::HeaderMap, Value) {
    let mut req = app
        .client
        .get(format!("{}/graphql", app.address))
        .query(params);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp.json().await.expect("a JSON body");
    (status, headers, body)
}

fn content_type(headers: &header::HeaderMap) -> &str {
    headers[header::CONTENT_TYPE].to_str().unwrap()
}

fn cache_control(headers: &header::HeaderMap) -> &str {
    headers
        .get(header::CACHE_CONTROL)
        .map(|v| v.to_str().unwrap())
        .unwrap_or("<none>")
}

fn hex_sha256(text: &str) -> String {
    kairos::graphql::documents::sha256(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

fn persisted(hash: &str) -> Value {
    json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } })
}

// ------------------------------------------------------------ media types

#[tokio::test]
async fn a_client_that_accepts_only_json_gets_json_and_200_for_request_errors() {
    let app = spawn_app().await;
    let accept = [("accept", "application/json")];

    let (ok_status, ok_headers, ok) = post(&app, &json!({ "query": PAGE }), &accept).await;
    let (bad_status, bad_headers, bad) = post(&app, &json!({ "query": "{ nope }" }), &accept).await;

    assert_eq!(ok_status, StatusCode::OK);
    assert_eq!(content_type(&ok_headers), "application/json");
    assert_eq!(ok["data"]["modules"]["totalCount"], 0);
    assert_eq!(bad_status, StatusCode::OK, "{bad:#}");
    assert_eq!(content_type(&bad_headers), "application/json");
    assert!(
        bad.get("data").is_none(),
        "no data before execution: {bad:#}"
    );
    assert_eq!(code(&bad), "BAD_USER_INPUT");
}

#[tokio::test]
async fn with_the_graphql_media_type_parse_and_validation_errors_are_400_without_data() {
    let app = spawn_app().await;
    let accept = [("accept", GRAPHQL_JSON)];

    let (ok_status, ok_headers, ok) = post(&app, &json!({ "query": PAGE }), &accept).await;
    assert_eq!(ok_status, StatusCode::OK);
    assert_eq!(content_type(&ok_headers), GRAPHQL_JSON);
    assert!(ok["data"]["modules"].is_object());

    for query in [
        "{ modules { ",
        "{ nope }",
        "{ modules(first: \"x\") { totalCount } }",
    ] {
        let (status, headers, body) = post(&app, &json!({ "query": query }), &accept).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body:#}");
        assert_eq!(content_type(&headers), GRAPHQL_JSON);
        assert!(body.get("data").is_none(), "{query}: {body:#}");
        assert_eq!(code(&body), "BAD_USER_INPUT", "{query}");
    }
}

#[tokio::test]
async fn variable_coercion_errors_are_request_errors_too() {
    let app = spawn_app().await;
    let query = "query($n: Int) { modules(first: $n) { totalCount } }";
    let bad_vars = json!({ "query": query, "variables": { "n": "ten" } });
    let missing = json!({
        "query": "query($n: Int!) { modules(first: $n) { totalCount } }",
        "variables": {}
    });

    for body in [&bad_vars, &missing] {
        let (status, _, reply) = post(&app, body, &[("accept", GRAPHQL_JSON)]).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reply:#}");
        assert!(reply.get("data").is_none(), "{reply:#}");
        assert_eq!(code(&reply), "BAD_USER_INPUT");
        let (status, _, reply) = post(&app, body, &[("accept", "application/json")]).await;
        assert_eq!(status, StatusCode::OK, "{reply:#}");
        assert!(reply.get("data").is_none(), "{reply:#}");
    }
    // A field error during execution keeps `data` and 200.
    let (status, _, reply) = post(
        &app,
        &json!({ "query": "{ module(id: \"123\") { slug } }" }),
        &[("accept", GRAPHQL_JSON)],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(reply.get("data").is_some(), "{reply:#}");
}

#[tokio::test]
async fn a_client_that_accepts_no_graphql_response_type_gets_406() {
    let app = spawn_app().await;
    for accept in ["application/xml", "text/html", "application/json;q=0"] {
        let (status, headers, body) =
            post(&app, &json!({ "query": PAGE }), &[("accept", accept)]).await;
        assert_eq!(status, StatusCode::NOT_ACCEPTABLE, "{accept}");
        assert_eq!(content_type(&headers), "application/json");
        assert_eq!(code(&body), "BAD_USER_INPUT");
    }
    let (status, _, _) = get(&app, &[("query", PAGE)], &[("accept", "image/png")]).await;
    assert_eq!(status, StatusCode::NOT_ACCEPTABLE);
    // Wildcards and no Accept at all mean JSON.
    for accept in ["*/*", "application/*"] {
        let (status, headers, _) =
            post(&app, &json!({ "query": PAGE }), &[("accept", accept)]).await;
        assert_eq!(status, StatusCode::OK, "{accept}");
        assert_eq!(content_type(&headers), "application/json");
    }
}

#[tokio::test]
async fn post_bodies_other_than_json_are_refused_with_415() {
    let app = spawn_app().await;
    let query = format!("query={}", PAGE);
    let cases: [(Option<&str>, Vec<u8>); 6] = [
        (
            Some("application/x-www-form-urlencoded"),
            query.clone().into_bytes(),
        ),
        (
            Some("multipart/form-data; boundary=x"),
            b"--x\r\nContent-Disposition: form-data; name=\"query\"\r\n\r\n{ me { id } }\r\n--x--\r\n"
                .to_vec(),
        ),
        (Some("text/plain"), json!({ "query": PAGE }).to_string().into_bytes()),
        (Some("application/graphql"), PAGE.as_bytes().to_vec()),
        (Some("application/json; charset=latin1"), json!({ "query": PAGE }).to_string().into_bytes()),
        (None, json!({ "query": PAGE }).to_string().into_bytes()),
    ];
    for (ct, body) in cases {
        let mut req = app
            .client
            .post(format!("{}/graphql", app.address))
            .body(body);
        if let Some(ct) = ct {
            req = req.header(header::CONTENT_TYPE, ct);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct:?}");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code(&body), "BAD_USER_INPUT", "{ct:?}");
    }
}

// ---------------------------------------------------------------- methods

#[tokio::test]
async fn get_serves_queries_and_refuses_mutations_with_405_allow_post() {
    let app = spawn_app().await;
    let (status, _, body) = get(&app, &[("query", PAGE)], &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["data"]["modules"]["totalCount"], 0);

    let mutation = "mutation { markAllNotificationsRead }";
    let (status, headers, body) = get(&app, &[("query", mutation)], &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
    assert_eq!(code(&body), "BAD_USER_INPUT");

    // The operation picked by name decides, not the first in the document.
    let both = "query Q { modules { totalCount } } mutation M { markAllNotificationsRead }";
    let (status, _, _) = get(&app, &[("query", both), ("operationName", "M")], &[]).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _, body) = get(&app, &[("query", both), ("operationName", "Q")], &[]).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");
}

#[tokio::test]
async fn other_methods_get_405_with_the_allowed_ones() {
    let app = spawn_app().await;
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let resp = app
            .client
            .request(method.clone(), format!("{}/graphql", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED, "{method}");
        assert_eq!(resp.headers()[header::ALLOW], "GET, POST");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(code(&body), "BAD_USER_INPUT");
    }
}

// ------------------------------------------------------ persisted queries

#[tokio::test]
async fn apq_registers_a_query_once_then_runs_it_by_hash_over_post_and_get() {
    let app = spawn_app().await;
    app.insert_modules(vec![module("apq", 1, bson::doc! {})])
        .await;
    let hash = hex_sha256(PAGE);
    let by_hash = json!({ "extensions": persisted(&hash) });

    let (status, headers, unknown) = post(&app, &by_hash, &[]).await;
    assert_eq!(status, StatusCode::OK, "{unknown:#}");
    assert_eq!(unknown["errors"][0]["message"], "PersistedQueryNotFound");
    assert_eq!(unknown["errors"][0]["extensions"]["code"], "NOT_FOUND");
    assert_eq!(
        unknown["errors"][0]["extensions"]["reason"],
        "PERSISTED_QUERY_NOT_FOUND"
    );
    assert_eq!(cache_control(&headers), "no-store");

    let register = json!({ "query": PAGE, "extensions": persisted(&hash) });
    let (status, _, registered) = post(&app, &register, &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(registered["data"]["modules"]["totalCount"], 1);

    let (_, _, again) = post(&app, &by_hash, &[]).await;
    assert_eq!(again["data"], registered["data"]);

    let ext = persisted(&hash).to_string();
    let (status, headers, over_get) = get(&app, &[("extensions", ext.as_str())], &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(over_get["data"], registered["data"]);
    assert_eq!(cache_control(&headers), "public, max-age=60");
}

#[tokio::test]
async fn a_persisted_mutation_is_still_refused_over_get() {
    let app = spawn_app().await;
    let (token, _) = app.register("apqget").await;
    let mutation = "mutation { markAllNotificationsRead }";
    let hash = hex_sha256(mutation);
    let bearer = format!("Bearer {token}");
    let register = json!({ "query": mutation, "extensions": persisted(&hash) });
    let (status, _, body) = post(&app, &register, &[("authorization", &bearer)]).await;
    assert_eq!(status, StatusCode::OK, "{body:#}");

    let ext = persisted(&hash).to_string();
    let (status, headers, _) = get(
        &app,
        &[("extensions", ext.as_str())],
        &[("authorization", &bearer)],
    )
    .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(headers[header::ALLOW], "POST");
}

#[tokio::test]
async fn a_hash_that_does_not_match_its_query_is_refused_and_never_registered() {
    let app = spawn_app().await;
    let wrong = hex_sha256("{ me { id } }");
    let (status, _, body) = post(
        &app,
        &json!({ "query": PAGE, "extensions": persisted(&wrong) }),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&body), "BAD_USER_INPUT");
    assert_eq!(
        body["errors"][0]["extensions"]["reason"],
        "PERSISTED_QUERY_HASH_MISMATCH"
    );
    let (_, _, later) = post(&app, &json!({ "extensions": persisted(&wrong) }), &[]).await;
    assert_eq!(later["errors"][0]["message"], "PersistedQueryNotFound");

    let (status, _, malformed) = post(
        &app,
        &json!({ "query": PAGE, "extensions": { "persistedQuery": { "version": 1, "sha256Hash": "xyz" } } }),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&malformed), "BAD_USER_INPUT");
}

#[tokio::test]
async fn a_query_registered_on_one_instance_runs_by_hash_on_another() {
    let (a, b, _redis, _admin) = two_instances_on_one_redis().await;
    let hash = hex_sha256(PAGE);

    let (_, _, registered) = post(
        &a,
        &json!({ "query": PAGE, "extensions": persisted(&hash) }),
        &[],
    )
    .await;
    let (_, _, on_b) = post(&b, &json!({ "extensions": persisted(&hash) }), &[]).await;

    assert!(registered.get("errors").is_none(), "{registered:#}");
    assert_eq!(on_b["data"], registered["data"], "{on_b:#}");
}

#[tokio::test]
async fn with_persisted_queries_off_a_hash_is_not_supported_and_text_still_runs() {
    let app = spawn_app_with(&[("PERSISTED_QUERIES", "off")]).await;
    let hash = hex_sha256(PAGE);
    let (status, _, body) = post(
        &app,
        &json!({ "query": PAGE, "extensions": persisted(&hash) }),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotSupported");
    let (_, _, plain) = post(&app, &json!({ "query": PAGE }), &[]).await;
    assert_eq!(plain["data"]["modules"]["totalCount"], 0);
}

#[tokio::test]
async fn the_allowlist_runs_only_the_manifest_operations() {
    let listed = "query Page { modules(first: 5) { totalCount } }";
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("persisted-query-manifest.json");
    std::fs::write(
        &manifest,
        json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": hex_sha256(listed), "name": "Page", "type": "query", "body": listed }]
        })
        .to_string(),
    )
    .unwrap();
    let app = spawn_app_with(&[
        ("PERSISTED_QUERIES", "allowlist"),
        ("PERSISTED_QUERIES_MANIFEST", manifest.to_str().unwrap()),
    ])
    .await;

    let (_, _, by_hash) = post(
        &app,
        &json!({ "extensions": persisted(&hex_sha256(listed)) }),
        &[],
    )
    .await;
    let (_, _, by_text) = post(&app, &json!({ "query": listed }), &[]).await;
    let free_form = "{ modules(first: 100) { totalCount } }";
    let (status, _, refused) = post(&app, &json!({ "query": free_form }), &[]).await;
    let (register_status, _, register) = post(
        &app,
        &json!({ "query": free_form, "extensions": persisted(&hex_sha256(free_form)) }),
        &[],
    )
    .await;

    assert_eq!(by_hash["data"]["modules"]["totalCount"], 0, "{by_hash:#}");
    assert_eq!(by_text["data"], by_hash["data"]);
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&refused), "BAD_USER_INPUT");
    assert_eq!(
        refused["errors"][0]["extensions"]["reason"],
        "PERSISTED_QUERY_NOT_IN_LIST"
    );
    assert_eq!(register_status, StatusCode::BAD_REQUEST);
    assert_eq!(
        register["errors"][0]["extensions"]["reason"],
        "PERSISTED_QUERY_NOT_IN_LIST"
    );
}

// ------------------------------------------------------------ HTTP caching

#[tokio::test]
async fn anonymous_catalogue_reads_are_public_and_anything_per_user_is_not() {
    let app = spawn_app().await;
    let ids = app
        .insert_modules(vec![module("cached", 1, bson::doc! {})])
        .await;
    let (token, _) = app.register("cachectl").await;
    let bearer = format!("Bearer {token}");
    let detail = format!(
        "{{ module(id: \"{}\") {{ slug content }} }}",
        ids[0].to_hex()
    );
    let cc = |headers: header::HeaderMap| cache_control(&headers).to_string();

    let page = cc(post(&app, &json!({ "query": PAGE }), &[]).await.1);
    let one = cc(post(&app, &json!({ "query": detail }), &[]).await.1);
    let by_get = cc(get(&app, &[("query", PAGE)], &[]).await.1);
    let availability = "{ availability(username: \"someone\") { usernameAvailable } }";
    let public_fields = cc(post(&app, &json!({ "query": availability }), &[]).await.1);
    let mixed = "{ modules { totalCount } availability(username: \"x1y\") { usernameAvailable } }";
    let mixed = cc(post(&app, &json!({ "query": mixed }), &[]).await.1);
    let signed_in = cc(post(
        &app,
        &json!({ "query": PAGE }),
        &[("authorization", &bearer)],
    )
    .await
    .1);
    let unknown = cc(post(
        &app,
        &json!({ "query": "{ module(slug: \"missing\") { slug } }" }),
        &[],
    )
    .await
    .1);
    let mutation = cc(post(
        &app,
        &json!({ "query": "mutation { markAllNotificationsRead }" }),
        &[("authorization", &bearer)],
    )
    .await
    .1);
    let invalid = cc(post(&app, &json!({ "query": "{ nope }" }), &[]).await.1);

    let vary = post(&app, &json!({ "query": PAGE }), &[]).await.1;
    let vary: Vec<String> = vary
        .get_all(header::VARY)
        .iter()
        .map(|v| v.to_str().unwrap().to_lowercase())
        .collect();
    assert!(
        vary.iter().any(|v| v.contains("authorization"))
            && vary.iter().any(|v| v.contains("accept")),
        "{vary:?}"
    );
    assert_eq!(page, "public, max-age=60");
    assert_eq!(one, "public, max-age=60");
    assert_eq!(by_get, "public, max-age=60");
    assert_eq!(public_fields, "no-store");
    assert_eq!(mixed, "no-store");
    assert_eq!(signed_in, "private, no-store");
    assert_eq!(unknown, "no-store");
    assert_eq!(mutation, "private, no-store");
    assert_eq!(invalid, "no-store");
}

// ------------------------------------------------------------------- CORS

#[tokio::test]
async fn cors_answers_the_configured_origins_on_real_requests_too() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "https://app.example.org")]).await;
    let send = |origin: &'static str| {
        app.client
            .post(format!("{}/graphql", app.address))
            .header("origin", origin)
            .header(header::CONTENT_TYPE, "application/json")
            .body(json!({ "query": PAGE }).to_string())
            .send()
    };

    let allowed = send("https://app.example.org").await.unwrap();
    let other = send("https://evil.example.com").await.unwrap();

    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "https://app.example.org"
    );
    let exposed = allowed.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(exposed.contains("x-request-id") && exposed.contains("retry-after"));
    assert!(
        allowed
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(other.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_wildcard_origin_never_allows_credentials() {
    let app = spawn_app_with(&[("CORS_ALLOWED_ORIGINS", "*")]).await;
    let preflight = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/graphql", app.address))
        .header("origin", "https://anywhere.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();

    assert!(preflight.status().is_success());
    assert_eq!(preflight.headers()["access-control-allow-origin"], "*");
    assert!(
        preflight
            .headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let methods = preflight.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_uppercase();
    assert!(methods.contains("POST") && methods.contains("GET"));
}

// ------------------------------------------------------------- production

const PROD: [(&str, &str); 2] = [
    ("APP_ENV", "production"),
    ("JWT_SECRET", "0123456789abcdef0123456789abcdef-prod"),
];

#[tokio::test]
async fn production_suggests_no_field_names_and_refuses_batches_and_directive_floods() {
    let dev = spawn_app().await;
    let prod = spawn_app_with(&PROD).await;
    let typo = json!({ "query": "{ modulez { totalCount } }" });

    let (_, _, dev_typo) = post(&dev, &typo, &[]).await;
    let (_, _, prod_typo) = post(&prod, &typo, &[]).await;
    let batch = json!([{ "query": PAGE }, { "query": PAGE }]);
    let (batch_status, _, batch_body) = post(&prod, &batch, &[]).await;
    let flood = format!(
        "{{ modules {{ totalCount {} }} }}",
        "@include(if: true) ".repeat(20)
    );
    let (_, _, flood_body) = post(&prod, &json!({ "query": flood }), &[]).await;

    assert!(
        dev_typo.to_string().contains("Did you mean"),
        "development keeps suggestions: {dev_typo:#}"
    );
    assert_eq!(code(&prod_typo), "BAD_USER_INPUT");
    assert!(
        !prod_typo.to_string().contains("Did you mean")
            && !prod_typo.to_string().contains("modules"),
        "{prod_typo:#}"
    );
    assert_eq!(batch_status, StatusCode::BAD_REQUEST);
    assert_eq!(code(&batch_body), "BAD_USER_INPUT");
    assert_eq!(code(&flood_body), "BAD_USER_INPUT", "{flood_body:#}");
    assert!(flood_body.get("data").is_none());
}

// ---------------------------------------------------------- authorization

#[tokio::test]
async fn a_blank_authorization_header_is_anonymous_and_a_malformed_one_is_not() {
    let app = spawn_app().await;
    app.insert_modules(vec![module("blank", 1, bson::doc! {})])
        .await;
    let page = json!({ "query": PAGE });
    let private = json!({ "query": "{ progressStats { modulesTotal } }" });

    // What Apollo's auth link sends without a token, and its whitespace kin.
    let (empty_status, empty_headers, empty) = post(&app, &page, &[("authorization", "")]).await;
    let (_, _, spaces) = post(&app, &page, &[("authorization", " \t ")]).await;
    let (private_status, _, blank_private) = post(&app, &private, &[("authorization", "")]).await;
    let mut malformed = Vec::new();
    for value in [
        "Bearer",
        "Bearer ",
        "Basic a2Fpcm9zOmthaXJvcw==",
        "Token abc",
        "x",
    ] {
        let (status, _, body) = post(&app, &page, &[("authorization", value)]).await;
        malformed.push((value, status, body));
    }

    assert_eq!(empty_status, StatusCode::OK, "{empty:#}");
    assert_eq!(empty["data"]["modules"]["totalCount"], 1);
    assert_eq!(
        cache_control(&empty_headers),
        "public, max-age=60",
        "served as to any anonymous caller"
    );
    assert_eq!(spaces["data"], empty["data"]);
    assert_eq!(private_status, StatusCode::OK, "anonymous, not a bad token");
    assert_eq!(code(&blank_private), "UNAUTHENTICATED");
    assert!(blank_private.get("data").is_some(), "{blank_private:#}");
    for (value, status, body) in malformed {
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value:?}: {body:#}");
        assert_eq!(code(&body), "UNAUTHENTICATED", "{value:?}");
        assert!(body.get("data").is_none(), "{value:?}: {body:#}");
    }
}
