//! GraphQL over HTTP: request parsing, the viewer from the bearer token,
//! per-request data, response shaping and GraphiQL.
//!
//! Requests that fail before GraphQL (malformed JSON, wrong content type,
//! oversized bodies) get a GraphQL-shaped body with `BAD_USER_INPUT`, never
//! a plain-text rejection.

use std::sync::Arc;

use async_graphql::{Executor, parser::types::OperationType};
use axum::{
    body::Bytes,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

use super::{
    context::RequestData,
    documents::{Documents, Refusal},
    response_cache::{self, Found, ResponseCache, Stored},
    sockets::Sockets,
};
use crate::{
    auth::{TokenService, Viewer},
    error::{Code, Outcome, error_response, error_response_with},
    http::{
        client::{Peer, client_ip},
        metrics::Metrics,
        throttle::{CostThrottle, Reservation, caller_key},
    },
};

/// The GraphQL endpoint: the schema (any executor, so this layer names no
/// domain), the document store and what the transport checks itself.
pub struct Endpoint<E> {
    pub executor: E,
    /// Parsed, persisted and trusted documents.
    pub documents: Arc<Documents>,
    /// Checks the bearer token of each request.
    pub tokens: TokenService,
    /// Whether `X-Forwarded-For` names the client (behind a proxy).
    pub trust_proxy: bool,
    /// Whether `GET /graphql` from a browser gets GraphiQL.
    pub graphiql: bool,
    /// The subscription sockets of this instance (`graphql::ws`).
    pub sockets: Arc<Sockets>,
    /// Whole responses of cacheable operations (`graphql::response_cache`);
    /// `None` when the cache is off.
    pub responses: Option<Arc<ResponseCache>>,
    /// The callers' cost buckets, charged for stored responses too.
    pub throttle: Arc<CostThrottle>,
    pub metrics: Metrics,
}

/// The state of the GraphQL routes.
pub type EndpointState<E> = Arc<Endpoint<E>>;

const GRAPHQL_RESPONSE_JSON: &str = "application/graphql-response+json";

/// The media type of a GraphQL response, from the request's `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    /// `application/json`: every well-formed request gets 200 (the legacy
    /// behaviour every client understands).
    Json,
    /// `application/graphql-response+json`: a request that fails before
    /// execution gets a 4xx and no `data`.
    GraphqlResponse,
}

impl Media {
    fn as_str(self) -> &'static str {
        match self {
            Media::Json => "application/json",
            Media::GraphqlResponse => GRAPHQL_RESPONSE_JSON,
        }
    }
}

/// Content negotiation of the GraphQL over HTTP spec: the acceptable type
/// with the highest `q` (the first listed on a tie); no `Accept` header,
/// `*/*` and `application/*` mean `application/json`. `None` when nothing
/// acceptable is offered (406).
pub fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let mut offered = false;
    let mut best: Option<(f32, Media)> = None;
    for value in headers.get_all(header::ACCEPT) {
        let Ok(value) = value.to_str() else { continue };
        for range in value.split(',') {
            let mut parts = range.split(';');
            let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            if media.is_empty() {
                continue;
            }
            offered = true;
            let q = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let candidate = match media.as_str() {
                GRAPHQL_RESPONSE_JSON => Media::GraphqlResponse,
                "application/json" | "application/*" | "*/*" => Media::Json,
                _ => continue,
            };
            if q > 0.0 && best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, candidate));
            }
        }
    }
    match best {
        Some((_, media)) => Some(media),
        None if !offered => Some(Media::Json),
        None => None,
    }
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

/// The viewer of a request: `Ok(None)` without a header, an error for a
/// header with a bad, forged or expired token.
///
/// A blank header (empty or only whitespace) also means anonymous: Apollo's
/// documented auth link sends `authorization: ""` when the SPA has no token.
/// Anything else that is not a valid bearer token (`Bearer` alone, another
/// scheme) stays UNAUTHENTICATED.
fn viewer_of(tokens: &TokenService, headers: &HeaderMap) -> Result<Option<Viewer>, Box<Response>> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    if value.as_bytes().iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
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
    tokens.verify(token).map(Some).ok_or_else(unauthenticated)
}

/// How a request arrived; GET may only read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Get,
    Post,
}

/// Runs one GraphQL request with its per-request data and shapes the reply.
async fn execute<E: Executor>(
    http: &Endpoint<E>,
    headers: &HeaderMap,
    peer: Peer,
    method: Method,
    media: Media,
    request: async_graphql::Request,
) -> Response {
    // However many Redis calls it makes, a request waits on a silent Redis
    // once at most.
    crate::cache::one_request(execute_once(http, headers, peer, method, media, request)).await
}

async fn execute_once<E: Executor>(
    http: &Endpoint<E>,
    headers_in: &HeaderMap,
    peer: Peer,
    method: Method,
    media: Media,
    mut request: async_graphql::Request,
) -> Response {
    let headers = headers_in;
    let viewer = match viewer_of(&http.tokens, headers) {
        Ok(v) => v,
        Err(resp) => return *resp,
    };
    // A cacheable operation: its stored response. Known by its request
    // before parsing; the first request of a document in this process
    // parses it first to learn whether it is cacheable.
    let mut probe = http
        .responses
        .as_ref()
        .and_then(|rc| rc.probe(&request, viewer.as_ref()));
    let mut document = None;
    if let (Some(rc), None) = (&http.responses, &probe) {
        let doc = match http.documents.prepare(&mut request).await {
            Ok(doc) => doc,
            Err(refusal) => return refused(refusal),
        };
        probe = doc
            .as_deref()
            .and_then(|d| rc.learn(&request, d, viewer.as_ref()));
        document = Some(doc);
    }
    let mut ticket = None;
    if let (Some(rc), Some(p)) = (&http.responses, &probe) {
        match rc.lookup(p, viewer.as_ref()).await {
            Some(Found::Hit(stored)) => {
                let client = client_ip(headers, peer.0, http.trust_proxy);
                let caller = caller_key(viewer.as_ref(), client);
                return hit(
                    http,
                    &caller,
                    stored,
                    &p.plan.operation,
                    headers,
                    method,
                    media,
                )
                .await;
            }
            Some(Found::Miss(t)) => ticket = Some(t),
            None => {}
        }
    }
    let document = match document {
        Some(doc) => doc,
        None => match http.documents.prepare(&mut request).await {
            Ok(doc) => doc,
            Err(refusal) => return refused(refusal),
        },
    };
    let op_type = document
        .as_deref()
        .and_then(|d| d.operation_type(request.operation_name.as_deref()));
    if method == Method::Get && op_type == Some(OperationType::Mutation) {
        let mut resp = error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            Code::BadUserInput,
            "mutations must be sent with POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    let operation = document
        .as_deref()
        .map(|d| d.operation_name(request.operation_name.as_deref()))
        .unwrap_or_default();
    let signed_in = viewer.is_some();
    // One request's own data: its viewer, its address and its DataLoaders,
    // never shared with another request.
    let client = client_ip(headers, peer.0, http.trust_proxy);
    request = request.data(RequestData::new(viewer, client));
    let response = http.executor.execute(request).await;
    let cache_control = cache_control(&response, op_type, signed_in);
    let succeeded = response.errors.is_empty();
    let mut resp = shape(response, media);
    if let (Some(rc), true, Some(p)) = (&http.responses, succeeded, &probe) {
        // Never an error nor a partial result: only complete answers.
        let body = std::mem::take(resp.body_mut());
        let bytes = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default()
            .to_vec();
        let mut stored = Stored::new(
            cache_control.to_str().unwrap_or(NO_STORE).to_string(),
            bytes.clone(),
        );
        if let Some(t) = ticket {
            rc.store(t, &stored).await;
        }
        // This caller gets the body as executed, with its bucket of now.
        stored.body = bytes;
        return cached_response(
            stored,
            &p.plan.operation,
            headers_in,
            method,
            media,
            signed_in,
        );
    }
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, cache_control);
    // A cache keyed on the URL alone must not hand an anonymous answer to a
    // signed-in caller, nor one media type to a client asking another.
    headers.append(
        header::VARY,
        HeaderValue::from_static("accept, authorization"),
    );
    if let Some(outcome) = resp.extensions_mut().get_mut::<Outcome>() {
        outcome.operation = operation;
    }
    resp
}

/// A stored response served without executing: its cost is still charged
/// to the caller's bucket, which may refuse it (429) as it would refuse the
/// execution.
async fn hit<E>(
    http: &Endpoint<E>,
    caller: &str,
    stored: Stored,
    operation: &str,
    headers: &HeaderMap,
    method: Method,
    media: Media,
) -> Response {
    let status = match http.throttle.reserve(caller, stored.cost).await {
        Reservation::Granted(status) => status,
        Reservation::Refused {
            status,
            retry_after,
        } => {
            http.metrics.cost_refused("throttled");
            http.metrics.rate_limited("cost");
            let seconds = retry_after.as_secs();
            let message = format!(
                "the query costs {} points and {} are left: retry after {seconds} s",
                stored.cost, status.currently_available
            );
            // As the execution's refusal: the error, and the bucket in
            // `extensions.cost`.
            let body = json!({
                "errors": [{
                    "message": message,
                    "extensions": { "code": Code::RateLimited.as_str(), "retryAfterSeconds": seconds },
                }],
                "extensions": { "cost": {
                    "requestedQueryCost": stored.cost,
                    "actualQueryCost": 0,
                    "throttleStatus": {
                        "maximumAvailable": status.maximum_available,
                        "currentlyAvailable": status.currently_available,
                        "restoreRate": status.restore_rate,
                    },
                }},
            });
            let mut resp = (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
            resp.extensions_mut().insert(Outcome {
                operation: operation.to_string(),
                codes: vec![Code::RateLimited.as_str()],
            });
            return resp;
        }
    };
    // The body as stored, with the caller's bucket of now; the ETag stays
    // the stored body's (weak: the same answer).
    let mut stored = stored;
    stored.body = stored.body_with(&status);
    let signed_in = caller.starts_with("user:");
    cached_response(stored, operation, headers, method, media, signed_in)
}

/// A response of a cacheable operation (stored, or just computed): the
/// body, its `ETag` on GET, and 304 when `If-None-Match` has it. GET
/// answers of a signed-in caller may be kept by the browser but are
/// revalidated every time (`private, no-cache`).
fn cached_response(
    stored: Stored,
    operation: &str,
    request_headers: &HeaderMap,
    method: Method,
    media: Media,
    signed_in: bool,
) -> Response {
    let cache_control = if method == Method::Get && signed_in {
        HeaderValue::from_static("private, no-cache")
    } else {
        HeaderValue::from_str(&stored.cache_control).unwrap_or(HeaderValue::from_static(NO_STORE))
    };
    let not_modified = method == Method::Get
        && request_headers
            .get_all(header::IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| response_cache::matches(v, &stored.etag));
    let etag = HeaderValue::from_str(&stored.etag).ok();
    let mut resp = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut resp = (StatusCode::OK, stored.body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(media.as_str()),
        );
        resp
    };
    let headers = resp.headers_mut();
    headers.insert(header::CACHE_CONTROL, cache_control);
    headers.append(
        header::VARY,
        HeaderValue::from_static("accept, authorization"),
    );
    if method == Method::Get
        && let Some(etag) = etag
    {
        headers.insert(header::ETAG, etag);
    }
    resp.extensions_mut().insert(Outcome {
        operation: operation.to_string(),
        codes: Vec::new(),
    });
    resp
}

/// A document refused before parsing (persisted queries).
fn refused(refusal: Refusal) -> Response {
    let (status, code, message, reason) = refusal.parts();
    error_response_with(status, code, message, json!({ "reason": reason }))
}

const NO_STORE: &str = "no-store";

/// The `Cache-Control` of a GraphQL response, from the schema's cache
/// hints: `public, max-age` only for an anonymous query that succeeded and
/// selected nothing but hinted public fields (the catalogue); `private,
/// no-store` for anything a signed-in caller reads (per-user data must never
/// be served stale after a write); `no-store` otherwise (mutations, errors,
/// fields hinted `no_cache`).
fn cache_control(
    response: &async_graphql::Response,
    op_type: Option<OperationType>,
    signed_in: bool,
) -> HeaderValue {
    let hints = response.cache_control;
    if signed_in {
        HeaderValue::from_static("private, no-store")
    } else if op_type == Some(OperationType::Query)
        && response.errors.is_empty()
        && hints.public
        && hints.max_age > 0
    {
        HeaderValue::from_str(&format!("public, max-age={}", hints.max_age))
            .unwrap_or(HeaderValue::from_static(NO_STORE))
    } else {
        HeaderValue::from_static(NO_STORE)
    }
}

/// Serializes a GraphQL response: every error gets a code (errors raised by
/// parsing, validation and coercion have none and are the client's). A
/// request that never executed has no `data` and, for clients of the
/// GraphQL media type, a 400; one refused by the caller's cost bucket gets
/// 429 whatever the media type, with the `Retry-After` the schema set.
fn shape(mut response: async_graphql::Response, media: Media) -> Response {
    let content_type = HeaderValue::from_static(media.as_str());
    let http_headers = std::mem::take(&mut response.http_headers);
    if response.errors.is_empty() {
        // The hot path: serialize once, straight to bytes.
        let bytes = serde_json::to_vec(&response).unwrap_or_default();
        let mut resp = (StatusCode::OK, bytes).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
        resp.extensions_mut().insert(Outcome::default());
        return resp;
    }
    let mut body = serde_json::to_value(&response).unwrap_or_else(|_| json!({}));
    let mut request_error = false;
    let mut codes = Vec::new();
    if let Some(errors) = body.get_mut("errors").and_then(Value::as_array_mut) {
        request_error = response.data == async_graphql::Value::Null
            && errors.iter().all(|e| e.get("path").is_none());
        codes = code_errors(errors);
    }
    let status = if request_error {
        // "Before execution" (syntax, validation, variable coercion): the
        // response has no `data` entry, whatever the media type.
        if let Some(o) = body.as_object_mut() {
            o.remove("data");
        }
        match media {
            _ if codes == [Code::RateLimited.as_str()] => StatusCode::TOO_MANY_REQUESTS,
            Media::GraphqlResponse => StatusCode::BAD_REQUEST,
            Media::Json => StatusCode::OK,
        }
    } else {
        StatusCode::OK
    };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    let mut resp = (status, bytes).into_response();
    resp.headers_mut().extend(http_headers);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    resp.extensions_mut().insert(Outcome {
        operation: String::new(),
        codes,
    });
    resp
}

/// Gives every error an `extensions.code` (errors raised by parsing,
/// validation and coercion have none and are the client's); returns the
/// codes.
pub(super) fn code_errors(errors: &mut [Value]) -> Vec<&'static str> {
    let mut codes = Vec::with_capacity(errors.len());
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
    codes
}

/// The public code named `code`, as a static label (INTERNAL for anything
/// unknown, which would be a bug worth seeing in the metrics).
fn public_code(code: &str) -> &'static str {
    Code::ALL
        .into_iter()
        .map(Code::as_str)
        .find(|c| *c == code)
        .unwrap_or(Code::Internal.as_str())
}

/// 406 for a client that accepts none of the GraphQL response types.
fn not_acceptable() -> Response {
    error_response(
        StatusCode::NOT_ACCEPTABLE,
        Code::BadUserInput,
        "Accept must allow application/graphql-response+json or application/json",
    )
}

/// `POST /graphql`: a JSON body `{query, variables?, operationName?,
/// extensions?}`. Other body types (forms, multipart, text/plain: what a
/// cross-site page can send without a preflight) are refused with 415.
pub async fn post_graphql<E: Executor>(
    State(http): State<EndpointState<E>>,
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
    if !is_json_body(&headers) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::BadUserInput,
            "POST bodies must be application/json (charset utf-8)",
        );
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
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
    execute(&*http, &headers, peer, Method::Post, media, request).await
}

/// Whether the body is declared JSON: `application/json` (or the GraphQL
/// JSON types) with no charset or utf-8.
fn is_json_body(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
    let charset_ok = parts.all(|p| {
        let p = p.trim().to_ascii_lowercase();
        match p.strip_prefix("charset=") {
            Some(cs) => matches!(cs.trim_matches('"'), "utf-8" | "utf8"),
            None => true,
        }
    });
    charset_ok
        && matches!(
            media.as_str(),
            "application/json" | GRAPHQL_RESPONSE_JSON | "application/graphql+json"
        )
}

/// `GET /graphql` without an upgrade: GraphiQL for a browser, else a
/// query from the URL ([`super::ws::get_graphql`] routes upgrades).
pub async fn get_query<E: Executor>(
    http: EndpointState<E>,
    peer: Peer,
    headers: HeaderMap,
    query: Option<String>,
) -> Response {
    let query = query.unwrap_or_default();
    if query.is_empty() && accepts(&headers, "text/html") {
        return graphiql(&http);
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let request = match parse_get(&query) {
        Some(r) => r,
        None => {
            return bad_request(
                "GET requests need `query` or a persisted-query hash in `extensions` (with optional `variables` and `extensions` as JSON, and `operationName`)",
            );
        }
    };
    execute(&*http, &headers, peer, Method::Get, media, request).await
}

/// The request of a GET query string: `query`, `operationName`, and
/// `variables` and `extensions` as JSON (async-graphql's own parser reads
/// `operation_name`, which no client sends).
fn parse_get(query_string: &str) -> Option<async_graphql::Request> {
    #[derive(serde::Deserialize)]
    struct Params {
        #[serde(default)]
        query: String,
        #[serde(rename = "operationName")]
        operation_name: Option<String>,
        variables: Option<String>,
        extensions: Option<String>,
    }
    let params: Params = serde_urlencoded::from_str(query_string).ok()?;
    let mut request = async_graphql::Request::new(params.query);
    request.operation_name = params.operation_name.filter(|n| !n.is_empty());
    if let Some(vars) = params.variables.filter(|v| !v.is_empty()) {
        request.variables = serde_json::from_str(&vars).ok()?;
    }
    if let Some(ext) = params.extensions.filter(|e| !e.is_empty()) {
        request.extensions = serde_json::from_str(&ext).ok()?;
    }
    Some(request)
}

/// Any other method on `/graphql`: 405 with the methods it takes.
pub async fn other_method() -> Response {
    let mut resp = error_response(
        StatusCode::METHOD_NOT_ALLOWED,
        Code::BadUserInput,
        "use POST (or GET for queries)",
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
    resp
}

/// `GET /`: GraphiQL when enabled, else a pointer to the endpoint.
pub async fn graphiql_root<E: Executor>(State(http): State<EndpointState<E>>) -> Response {
    graphiql(&http)
}

fn graphiql<E>(http: &Endpoint<E>) -> Response {
    super::graphiql::page(http.graphiql)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(name.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn negotiation_follows_the_graphql_over_http_spec() {
        let accept = |v: &[&str]| negotiate(&with(header::ACCEPT, v));
        assert_eq!(accept(&[]), Some(Media::Json));
        assert_eq!(accept(&["application/json"]), Some(Media::Json));
        assert_eq!(accept(&["*/*"]), Some(Media::Json));
        assert_eq!(
            accept(&["application/graphql-response+json, application/json;q=0.9"]),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            accept(&["application/json;q=0.5, application/graphql-response+json"]),
            Some(Media::GraphqlResponse)
        );
        assert_eq!(
            accept(&[
                "application/graphql-response+json;q=0.1",
                "application/json"
            ]),
            Some(Media::Json)
        );
        assert_eq!(
            accept(&["application/json; charset=utf-8"]),
            Some(Media::Json)
        );
        assert_eq!(accept(&["text/html"]), None);
        assert_eq!(accept(&["application/xml, text/plain;q=0.5"]), None);
        assert_eq!(accept(&["application/json;q=0"]), None);
    }

    #[test]
    fn a_get_query_string_gives_query_operation_variables_and_extensions() {
        let r = parse_get(
            "query=query%20Q(%24n%3A%20Int)%20%7B%20a%20%7D&operationName=Q&variables=%7B%22n%22%3A3%7D&extensions=%7B%7D",
        )
        .unwrap();
        assert_eq!(r.query, "query Q($n: Int) { a }");
        assert_eq!(r.operation_name.as_deref(), Some("Q"));
        assert_eq!(r.variables.get("n"), Some(&async_graphql::Value::from(3)));
        assert!(parse_get("query=%7Ba%7D&variables=not-json").is_none());
        assert!(parse_get("query=%7Ba%7D&extensions=%5B").is_none());
        assert_eq!(parse_get("").unwrap().query, "");
    }

    #[test]
    fn only_json_bodies_in_utf_8_are_taken() {
        let ok = |v: &str| is_json_body(&with(header::CONTENT_TYPE, &[v]));
        assert!(ok("application/json"));
        assert!(ok("Application/JSON; charset=UTF-8"));
        assert!(ok("application/graphql-response+json"));
        assert!(!ok("application/json; charset=latin1"));
        assert!(!ok("text/plain"));
        assert!(!ok("application/x-www-form-urlencoded"));
        assert!(!ok("multipart/form-data; boundary=x"));
        assert!(!ok("application/jsonp"));
        assert!(!is_json_body(&HeaderMap::new()));
    }
}
