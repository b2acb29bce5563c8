//! GraphQL over HTTP: request parsing, the viewer from the bearer token,
//! per-request data, response shaping and GraphiQL.
//!
//! Requests that fail before GraphQL (malformed JSON, wrong content type,
//! oversized bodies) get a GraphQL-shaped body with `BAD_USER_INPUT`, never
//! a plain-text rejection.

use std::sync::Arc;

use async_graphql::{
    dataloader::DataLoader, http::GraphiQLSource, parser::types::ExecutableDocument,
    parser::types::OperationType,
};
use axum::{
    body::Bytes,
    extract::{RawQuery, State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
};
use serde_json::{Value, json};

use super::KairosSchema;
use crate::{
    app::AppState,
    catalogue::loaders::{ContentLoader, ModuleLoader},
    error::Code,
    http::{
        Outcome,
        client::{ClientAddr, Peer, client_ip},
    },
    learners::{Viewer, loaders::ProgressLoader},
};

/// State of the GraphQL routes.
#[derive(Clone)]
pub struct HttpState {
    pub app: AppState,
    pub schema: KairosSchema,
    /// Parsed documents by query text: a client repeating a query (what an
    /// SPA does) skips parsing; validation still runs every time.
    pub documents: DocumentCache,
}

/// A bounded cache of parsed GraphQL documents.
#[derive(Clone)]
pub struct DocumentCache(moka::sync::Cache<String, Arc<ExecutableDocument>>);

/// Queries longer than this are parsed every time rather than kept.
const MAX_CACHED_QUERY: usize = 16 * 1024;

impl Default for DocumentCache {
    fn default() -> Self {
        DocumentCache(moka::sync::Cache::new(1_000))
    }
}

impl DocumentCache {
    /// Gives `request` its parsed document, from the cache when the same
    /// text was parsed before; returns it (None when it does not parse).
    fn prepare(&self, request: &mut async_graphql::Request) -> Option<Arc<ExecutableDocument>> {
        if let Some(doc) = self.0.get(&request.query) {
            request.set_parsed_query((*doc).clone());
            return Some(doc);
        }
        let doc = Arc::new(request.parsed_query().ok()?.clone());
        if request.query.len() <= MAX_CACHED_QUERY {
            self.0.insert(request.query.clone(), doc.clone());
        }
        Some(doc)
    }
}

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// A response body of the GraphQL shape carrying one error.
pub fn error_response(status: StatusCode, code: Code, message: &str) -> Response {
    let body =
        json!({ "errors": [ { "message": message, "extensions": { "code": code.as_str() } } ] });
    let mut resp = (status, axum::Json(body)).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp.extensions_mut().insert(Outcome {
        operation: String::new(),
        codes: vec![code.as_str()],
    });
    resp
}

fn bad_request(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, Code::BadUserInput, message)
}

fn accepts(headers: &HeaderMap, media: &str) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|part| part.trim().starts_with(media)))
}

/// Which response media type the client asked for: the GraphQL one only
/// when it lists it; plain JSON for everyone else.
fn wants_graphql_response(headers: &HeaderMap) -> bool {
    accepts(headers, GRAPHQL_RESPONSE_JSON)
}

/// The viewer of a request: `Ok(None)` without a header, an error for a
/// header with a bad, forged or expired token.
fn viewer_of(app: &AppState, headers: &HeaderMap) -> Result<Option<Viewer>, Box<Response>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let unauthenticated = || {
        Box::new(error_response(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "invalid or expired token: sign in again",
        ))
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .ok_or_else(unauthenticated)?;
    app.tokens
        .verify(token)
        .map(Some)
        .ok_or_else(unauthenticated)
}

/// Runs one GraphQL request with its per-request data and shapes the reply.
async fn execute(
    http: &HttpState,
    headers: &HeaderMap,
    peer: Peer,
    request: async_graphql::Request,
) -> Response {
    let viewer = match viewer_of(&http.app, headers) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    let app = &http.app;
    // DataLoaders live for one request: they carry the viewer and must never
    // serve one caller's data to another.
    let mut request = request
        .data(DataLoader::new(
            ContentLoader::new(app.clone()),
            tokio::spawn,
        ))
        .data(DataLoader::new(
            ModuleLoader::new(app.clone()),
            tokio::spawn,
        ));
    if let Some(viewer) = viewer {
        request = request.data(viewer).data(DataLoader::new(
            ProgressLoader::new(app.clone(), viewer),
            tokio::spawn,
        ));
    }
    if let Some(ip) = client_ip(headers, peer.0, app.settings.limits.trust_proxy) {
        request = request.data(ClientAddr(ip));
    }
    let document = http.documents.prepare(&mut request);
    let operation = operation_name(&request, document.as_deref());
    let response = http.schema.execute(request).await;
    let mut resp = shape(response, wants_graphql_response(headers));
    if let Some(outcome) = resp.extensions_mut().get_mut::<Outcome>() {
        outcome.operation = operation;
    }
    resp
}

/// The name of the operation a request runs, for logs and metrics: the
/// `operationName` it gives, else the name of its only operation.
fn operation_name(request: &async_graphql::Request, doc: Option<&ExecutableDocument>) -> String {
    if let Some(name) = &request.operation_name {
        return name.clone();
    }
    let Some(doc) = doc else {
        return String::new();
    };
    doc.operations
        .iter()
        .next()
        .and_then(|(name, _)| name.map(|n| n.to_string()))
        .unwrap_or_default()
}

/// Serializes a GraphQL response: every error gets a code (errors raised by
/// parsing, validation and coercion have none and are the client's), and a
/// request that never executed is a 400 for clients of the GraphQL media type.
fn shape(response: async_graphql::Response, graphql_media: bool) -> Response {
    if response.errors.is_empty() {
        // The hot path: serialize once, straight to bytes.
        let media = if graphql_media {
            GRAPHQL_RESPONSE_JSON
        } else {
            "application/json"
        };
        let bytes = serde_json::to_vec(&response).unwrap_or_default();
        let mut resp = (StatusCode::OK, bytes).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
        resp.extensions_mut().insert(Outcome {
            operation: String::new(),
            codes: Vec::new(),
        });
        return resp;
    }
    let mut body = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
    let mut request_error = false;
    let mut codes = Vec::new();
    if let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) {
        request_error = response.data == async_graphql::Value::Null
            && errors.iter().all(|e| e.get("path").is_none());
        for error in errors {
            let ext = error
                .as_object_mut()
                .map(|o| o.entry("extensions").or_insert_with(|| json!({})));
            if let Some(Value::Object(ext)) = ext {
                let code = ext
                    .entry("code")
                    .or_insert_with(|| json!(Code::BadUserInput.as_str()));
                codes.push(public_code(code.as_str().unwrap_or_default()));
            }
        }
    }
    let (status, media) = if graphql_media {
        if request_error {
            if let Some(o) = body.as_object_mut() {
                o.remove("data");
            }
            (StatusCode::BAD_REQUEST, GRAPHQL_RESPONSE_JSON)
        } else {
            (StatusCode::OK, GRAPHQL_RESPONSE_JSON)
        }
    } else {
        (StatusCode::OK, "application/json")
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(media));
    resp.extensions_mut().insert(Outcome {
        operation: String::new(),
        codes,
    });
    resp
}

/// The public code named `code`, as a static label (INTERNAL for anything
/// unknown, which would be a bug worth seeing in the metrics).
fn public_code(code: &str) -> &'static str {
    [
        Code::Unauthenticated,
        Code::Forbidden,
        Code::BadUserInput,
        Code::NotFound,
        Code::Conflict,
        Code::RateLimited,
        Code::Unavailable,
        Code::Internal,
    ]
    .into_iter()
    .map(Code::as_str)
    .find(|c| *c == code)
    .unwrap_or(Code::Internal.as_str())
}

/// `POST /graphql`: a JSON body `{query, variables?, operationName?}`.
pub async fn post_graphql(
    State(http): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                "request body too large"
            } else {
                "could not read the request body"
            };
            return error_response(status, Code::BadUserInput, message);
        }
    };
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if !(content_type.starts_with("application/json")
        || content_type.starts_with(GRAPHQL_RESPONSE_JSON)
        || content_type.starts_with("application/graphql+json"))
    {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BadUserInput,
            "POST bodies must be application/json",
        );
    }
    let value: Value = match serde_json::from_slice(&body) {
        Ok(v) => v,
        Err(_) => return bad_request("the body is not valid JSON"),
    };
    if value.is_array() {
        return bad_request("batched requests are not supported: send one operation per request");
    }
    let request: async_graphql::Request = match serde_json::from_value(value) {
        Ok(r) => r,
        Err(_) => {
            return bad_request(
                "the body must be an object with a string `query`, optional `variables` object and `operationName`",
            );
        }
    };
    execute(&http, &headers, peer, request).await
}

/// `GET /graphql`: GraphiQL for a browser, else a query from the URL.
pub async fn get_graphql(
    State(http): State<HttpState>,
    peer: Peer,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    if query.is_empty() && accepts(&headers, "text/html") {
        return graphiql(&http);
    }
    let request = match async_graphql::http::parse_query_string(&query) {
        Ok(r) => r,
        Err(_) => {
            return bad_request(
                "GET requests need `query` (and optional `variables` as JSON, `operationName`)",
            );
        }
    };
    if is_mutation(&request) {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::BadUserInput,
            "mutations must be sent with POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    execute(&http, &headers, peer, request).await
}

/// Whether the operation a request selects is a mutation (an unparsable
/// document is left to the executor to report).
fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    let name = request.operation_name.as_deref();
    doc.operations.iter().any(|(op_name, op)| {
        (name.is_none() || op_name.map(|n| n.as_str()) == name)
            && op.node.ty == OperationType::Mutation
    })
}

/// `GET /`: GraphiQL when enabled, else a pointer to the endpoint.
pub async fn graphiql_root(State(http): State<HttpState>) -> Response {
    graphiql(&http)
}

fn graphiql(http: &HttpState) -> Response {
    if !http.app.settings.graphiql {
        return error_response(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "GraphiQL is disabled; POST queries to /graphql",
        );
    }
    Html(
        GraphiQLSource::build()
            .endpoint("/graphql")
            .title("Kairos GraphiQL")
            .finish(),
    )
    .into_response()
}

#[cfg(test)]
mod document_cache_tests {
    use super::*;

    #[test]
    fn a_repeated_query_is_parsed_once_and_a_broken_one_is_not_kept() {
        let cache = DocumentCache::default();
        let mut first = async_graphql::Request::new("{ modules { totalCount } }");
        let mut second = async_graphql::Request::new("{ modules { totalCount } }");
        let a = cache.prepare(&mut first).expect("parses");
        let b = cache.prepare(&mut second).expect("parses");
        assert!(
            Arc::ptr_eq(&a, &b),
            "the second request reuses the parsed document"
        );
        let mut broken = async_graphql::Request::new("{ modules { ");
        assert!(cache.prepare(&mut broken).is_none());
        cache.0.run_pending_tasks();
        assert_eq!(cache.0.entry_count(), 1);
    }
}
