//! The HTTP protection and operations layer around the router: request ids,
//! CORS, compression, the request log and metrics, panic catching, the
//! request timeout and the rate limits.
//!
//! The order of the layers, outermost first, and why:
//! 1. request id: set (or kept from the caller) before anything logs;
//! 2. CORS: every answer, refusals included, carries the CORS headers, or
//!    the browser hides the error from the SPA;
//! 3. compression: of whatever the inner layers answer;
//! 4. request log and metrics: one line and one sample per request, with
//!    the final status (429, timeout and panic answers included);
//! 5. panic catching: a panic anywhere below becomes INTERNAL;
//! 6. request timeout: a GraphQL-shaped UNAVAILABLE past `REQUEST_TIMEOUT_MS`;
//! 7. (on `/graphql` only, in `app::router`) the HTTP rate limit and the
//!    body limit.

pub mod client;
pub mod embedded;
pub mod metrics;
pub mod ratelimit;
pub mod throttle;

use std::{any::Any, time::Instant};

use axum::{
    Router,
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, StatusCode, header},
    middleware::{self, Next},
    response::Response,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::{
        CompressionLayer,
        predicate::{NotForContentType, Predicate, SizeAbove},
    },
    cors::{AllowOrigin, CorsLayer},
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer},
};

use self::metrics::Metrics;
use crate::{
    config::LimitSettings,
    error::{Code, Outcome, error_response},
};

/// Responses smaller than this are sent as they are (PRODUCT.md: "500 bytes
/// or more are compressed").
const COMPRESS_FROM_BYTES: u16 = 500;

/// Wraps `router` in the layers described in the module documentation.
pub fn with_layers(router: Router, metrics: Metrics, limits: &LimitSettings) -> Router {
    let x_request_id = HeaderName::from_static("x-request-id");
    let timeout = limits.request_timeout;
    router.layer(
        ServiceBuilder::new()
            .layer(SetRequestIdLayer::new(
                x_request_id.clone(),
                MakeRequestUuid,
            ))
            .layer(PropagateRequestIdLayer::new(x_request_id))
            .layer(cors(&limits.cors_allowed_origins))
            .layer(
                CompressionLayer::new().gzip(true).br(true).compress_when(
                    SizeAbove::new(COMPRESS_FROM_BYTES).and(NotForContentType::IMAGES),
                ),
            )
            .layer(middleware::from_fn_with_state(metrics, log_and_measure))
            .layer(CatchPanicLayer::custom(panic_response))
            .layer(middleware::from_fn(move |req: Request, next: Next| {
                deadline(timeout, req, next)
            })),
    )
}

/// CORS for the SPA: only the configured origins (`*` for any), no
/// credentials (the token travels in `Authorization`, not in cookies).
fn cors(origins: &[String]) -> CorsLayer {
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
    };
    CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT,
            HeaderName::from_static("x-request-id"),
            // What Apollo Client sends with `clientAwareness`.
            HeaderName::from_static("apollographql-client-name"),
            HeaderName::from_static("apollographql-client-version"),
        ])
        .expose_headers([HeaderName::from_static("x-request-id"), header::RETRY_AFTER])
        .max_age(std::time::Duration::from_secs(3600))
}

/// One log line and the metrics of one request. Logs the path without its
/// query string and no header at all: a GET query string may carry
/// variables, and headers carry tokens.
async fn log_and_measure(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let request_id = req
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("-")
        .to_string();
    let resp = next.run(req).await;
    let elapsed = started.elapsed();
    let status = resp.status().as_u16();
    let outcome = resp.extensions().get::<Outcome>();
    let operation = outcome.map(|o| o.operation.as_str()).unwrap_or("");
    metrics.http_request(&route, status);
    if let Some(outcome) = outcome {
        metrics.graphql_request(operation, elapsed.as_secs_f64());
        for code in &outcome.codes {
            metrics.graphql_error(code);
        }
    }
    tracing::info!(
        target: "kairos::request",
        method = %method,
        path = %path,
        status,
        duration_ms = elapsed.as_secs_f64() * 1000.0,
        operation,
        request_id = %request_id,
        "request"
    );
    resp
}

/// A panic below becomes INTERNAL without any detail; the panic itself is
/// logged here, once.
fn panic_response(panic: Box<dyn Any + Send + 'static>) -> Response<Body> {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("(no message)");
    tracing::error!(panic = %detail, "a request handler panicked");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        Code::Internal,
        "internal error",
    )
}

/// Answers UNAVAILABLE when the request takes longer than `timeout`.
async fn deadline(timeout: std::time::Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => {
            tracing::warn!(timeout_ms = timeout.as_millis() as u64, "request timed out");
            let mut resp = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "the request took too long: retry later",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            resp
        }
    }
}

#[cfg(test)]
mod tests {
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;
    use crate::config::Settings;

    fn layered(router: Router) -> (Router, Metrics) {
        let settings = Settings::from_source(&[]).unwrap();
        let metrics = Metrics::new();
        (
            with_layers(router, metrics.clone(), &settings.limits),
            metrics,
        )
    }

    async fn body_json(resp: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_internal_without_details() {
        async fn boom() -> &'static str {
            panic!("secret detail: mongodb://user:pass@db")
        }
        let (app, _) = layered(Router::new().route("/boom", get(boom)));

        let resp = app
            .oneshot(Request::get("/boom").body(Body::empty()).unwrap())
            .await
            .unwrap();

        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(resp.headers().contains_key("x-request-id"));
        let body = body_json(resp).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "INTERNAL");
        assert_eq!(body["errors"][0]["message"], "internal error");
        assert!(!body.to_string().contains("secret"));
    }

    #[tokio::test]
    async fn a_request_past_the_timeout_answers_unavailable() {
        let settings = Settings::from_source(&[("REQUEST_TIMEOUT_MS", "50")]).unwrap();
        let never = || std::future::pending::<&'static str>();
        let app = with_layers(
            Router::new().route("/slow", get(never)),
            Metrics::new(),
            &settings.limits,
        );

        let resp = app
            .oneshot(Request::get("/slow").body(Body::empty()).unwrap())
            .await
            .unwrap();

        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            body_json(resp).await["errors"][0]["extensions"]["code"],
            "UNAVAILABLE"
        );
    }

    #[tokio::test]
    async fn a_request_id_from_the_caller_is_kept_and_echoed() {
        let (app, _) = layered(Router::new().route("/x", get(|| async { "ok" })));

        let resp = app
            .oneshot(
                Request::get("/x")
                    .header("x-request-id", "abc-123")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();

        assert_eq!(resp.headers()["x-request-id"], "abc-123");
    }
}
