//! The one service error type and the public codes it becomes.
//!
//! Every error a client sees carries `extensions.code`. Driver errors are
//! logged once, here, and never shown: INTERNAL and UNAVAILABLE messages
//! reveal no hostnames, driver text or stack traces.

use async_graphql::ErrorExtensions;
use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};

/// The public error codes of the contract (`schema.graphql`, Conventions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    Unauthenticated,
    Forbidden,
    BadUserInput,
    NotFound,
    Conflict,
    RateLimited,
    Unavailable,
    Internal,
}

impl Code {
    pub const ALL: [Code; 8] = [
        Code::Unauthenticated,
        Code::Forbidden,
        Code::BadUserInput,
        Code::NotFound,
        Code::Conflict,
        Code::RateLimited,
        Code::Unavailable,
        Code::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Code::Unauthenticated => "UNAUTHENTICATED",
            Code::Forbidden => "FORBIDDEN",
            Code::BadUserInput => "BAD_USER_INPUT",
            Code::NotFound => "NOT_FOUND",
            Code::Conflict => "CONFLICT",
            Code::RateLimited => "RATE_LIMITED",
            Code::Unavailable => "UNAVAILABLE",
            Code::Internal => "INTERNAL",
        }
    }
}

/// An error a resolver returns; its variant decides the public code.
///
/// Deliberately not `Display`: async-graphql converts any `Display` type
/// into an error without a code, and every error here must keep its code.
#[derive(Debug, Clone)]
pub enum ApiError {
    Unauthenticated(String),
    Forbidden(String),
    BadUserInput(String),
    NotFound(String),
    Conflict(String),
    RateLimited(String),
    /// A dependency (MongoDB) is down or too slow; the client may retry.
    Unavailable,
    /// Anything else; the cause was logged where it was converted.
    Internal,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn code(&self) -> Code {
        match self {
            ApiError::Unauthenticated(_) => Code::Unauthenticated,
            ApiError::Forbidden(_) => Code::Forbidden,
            ApiError::BadUserInput(_) => Code::BadUserInput,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::Conflict(_) => Code::Conflict,
            ApiError::RateLimited(_) => Code::RateLimited,
            ApiError::Unavailable => Code::Unavailable,
            ApiError::Internal => Code::Internal,
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> &str {
        match self {
            ApiError::Unauthenticated(m)
            | ApiError::Forbidden(m)
            | ApiError::BadUserInput(m)
            | ApiError::NotFound(m)
            | ApiError::Conflict(m)
            | ApiError::RateLimited(m) => m,
            ApiError::Unavailable => "the service is temporarily unavailable, please retry",
            ApiError::Internal => "internal error",
        }
    }

    pub fn bad_input(msg: impl Into<String>) -> Self {
        ApiError::BadUserInput(msg.into())
    }

    pub fn unauthenticated() -> Self {
        ApiError::Unauthenticated("sign in to use this field".into())
    }

    pub fn forbidden() -> Self {
        ApiError::Forbidden("you are not allowed to do this".into())
    }

    /// Logs an unexpected failure once and hides it behind INTERNAL.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "{context}");
        ApiError::Internal
    }
}

/// MongoDB's duplicate-key error code, raised by unique indexes.
pub const DUPLICATE_KEY: i32 = 11000;

/// Whether a driver error is a unique-index violation.
/// Whether an `insert_many` failed only on duplicate keys (the rest of an
/// unordered batch went in), or a single insert on one.
pub fn only_duplicate_keys(err: &mongodb::error::Error) -> bool {
    use mongodb::error::ErrorKind;
    match err.kind.as_ref() {
        ErrorKind::InsertMany(e) => {
            e.write_concern_error.is_none()
                && e.write_errors
                    .as_ref()
                    .is_some_and(|errs| errs.iter().all(|w| w.code == DUPLICATE_KEY))
        }
        _ => is_duplicate_key(err),
    }
}

pub fn is_duplicate_key(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    match err.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(e)) => e.code == DUPLICATE_KEY,
        ErrorKind::Command(e) => e.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(e) => e
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == DUPLICATE_KEY)),
        _ => false,
    }
}

/// Server error codes that say "not now" rather than "never": the node
/// stepped down, is shutting down or lost the network, the operation ran
/// out of time, or a transaction met a concurrent writer. An operation that
/// failed with one of them may succeed if retried.
pub const TRANSIENT_CODES: [i32; 15] = [
    6,     // HostUnreachable
    7,     // HostNotFound
    50,    // MaxTimeMSExpired (our own deadline)
    89,    // NetworkTimeout
    91,    // ShutdownInProgress
    112,   // WriteConflict
    189,   // PrimarySteppedDown
    262,   // ExceededTimeLimit
    9001,  // SocketException
    10107, // NotWritablePrimary
    11600, // InterruptedAtShutdown
    11602, // InterruptedDueToReplStateChange
    13435, // NotPrimaryNoSecondaryOk
    13436, // NotPrimaryOrSecondary
    251,   // NoSuchTransaction (the transaction was aborted under us)
];

/// Error labels under which MongoDB says an operation may be retried.
pub const TRANSIENT_LABELS: [&str; 5] = [
    mongodb::error::RETRYABLE_WRITE_ERROR,
    mongodb::error::TRANSIENT_TRANSACTION_ERROR,
    mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT,
    mongodb::error::RETRYABLE_ERROR,
    mongodb::error::SYSTEM_OVERLOADED_ERROR,
];

/// Whether a driver error is a transient or state-change condition of the
/// deployment (after the driver's own retry), as opposed to a bug or a bad
/// request: network and server-selection failures, write-concern errors,
/// the codes of [`TRANSIENT_CODES`] and the labels of [`TRANSIENT_LABELS`].
pub fn is_transient(err: &mongodb::error::Error) -> bool {
    use mongodb::error::{ErrorKind, WriteFailure};
    if TRANSIENT_LABELS.iter().any(|l| err.contains_label(l)) {
        return true;
    }
    let code = match err.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Shutdown => return true,
        // The write may or may not be durable: the caller can only retry.
        ErrorKind::Write(WriteFailure::WriteConcernError(_)) => return true,
        ErrorKind::InsertMany(e) if e.write_concern_error.is_some() => return true,
        ErrorKind::Command(c) => Some(c.code),
        ErrorKind::Write(WriteFailure::WriteError(e)) => Some(e.code),
        _ => None,
    };
    code.is_some_and(|c| TRANSIENT_CODES.contains(&c))
        || std::error::Error::source(err)
            .and_then(|s| s.downcast_ref::<mongodb::error::Error>())
            .is_some_and(is_transient)
}

impl From<mongodb::error::Error> for ApiError {
    fn from(err: mongodb::error::Error) -> Self {
        if let Some(api) = err.get_custom::<ApiError>() {
            // An answer decided inside a transaction's callback.
            return api.clone();
        }
        if is_transient(&err) {
            tracing::warn!(error = %err, "database unavailable (transient)");
            return ApiError::Unavailable;
        }
        ApiError::internal("database error", err)
    }
}

impl From<tokio::time::error::Elapsed> for ApiError {
    fn from(_: tokio::time::error::Elapsed) -> Self {
        tracing::warn!("database operation passed its client-side deadline");
        ApiError::Unavailable
    }
}

impl From<ApiError> for async_graphql::Error {
    fn from(err: ApiError) -> Self {
        let code = err.code();
        async_graphql::Error::new(err.message())
            .extend_with(|_, ext| ext.set("code", code.as_str()))
    }
}

/// Resolver result type: async-graphql's error carrying our extensions.
pub type GqlResult<T> = async_graphql::Result<T>;

/// What a response carried, for the request log and the metrics: set by
/// the GraphQL transport (`graphql::transport`) and by every error body,
/// read by the middleware.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The operation name (empty for an anonymous or unparsed operation).
    pub operation: String,
    /// The `extensions.code` of every error in the body.
    pub codes: Vec<&'static str>,
}

/// A response body of the GraphQL shape carrying one error.
pub fn error_response(status: StatusCode, code: Code, message: &str) -> Response {
    error_response_with(status, code, message, json!({}))
}

/// [`error_response`] with more `extensions` entries.
pub fn error_response_with(
    status: StatusCode,
    code: Code,
    message: &str,
    extra: Value,
) -> Response {
    let mut extensions = json!({ "code": code.as_str() });
    if let (Some(ext), Value::Object(extra)) = (extensions.as_object_mut(), extra) {
        ext.extend(extra);
    }
    let body = json!({ "errors": [ { "message": message, "extensions": extensions } ] });
    let mut resp = (status, axum::Json(body)).into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp.extensions_mut().insert(Outcome {
        operation: String::new(),
        codes: vec![code.as_str()],
    });
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_public_code() {
        let err: async_graphql::Error = ApiError::bad_input("no").into();
        let code = err.extensions.unwrap().get("code").cloned();
        assert_eq!(code, Some(async_graphql::Value::from("BAD_USER_INPUT")));
        assert_eq!(ApiError::Unavailable.code().as_str(), "UNAVAILABLE");
        assert_eq!(ApiError::Internal.message(), "internal error");
    }

    fn command_error(code: i32) -> mongodb::error::Error {
        let c: mongodb::error::CommandError =
            bson::from_document(bson::doc! { "code": code, "codeName": "X", "errmsg": "x" })
                .unwrap();
        mongodb::error::ErrorKind::Command(c).into()
    }

    /// A write-concern error as the server sends it, labels included.
    fn write_concern_error(labels: &[&str]) -> mongodb::error::Error {
        let wce: mongodb::error::WriteConcernError = bson::from_document(bson::doc! {
            "code": 91, "codeName": "ShutdownInProgress", "errmsg": "x",
            "errorLabels": labels.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
        })
        .unwrap();
        mongodb::error::ErrorKind::Write(mongodb::error::WriteFailure::WriteConcernError(wce))
            .into()
    }

    fn code_of(err: mongodb::error::Error) -> Code {
        ApiError::from(err).code()
    }

    #[test]
    fn state_changes_and_network_failures_are_unavailable() {
        for code in [
            6, 7, 89, 91, 189, 262, 10107, 11600, 11602, 13435, 13436, 50,
        ] {
            assert_eq!(code_of(command_error(code)), Code::Unavailable, "{code}");
        }
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let err = mongodb::error::Error::from(mongodb::error::ErrorKind::Io(io.into()));
        assert_eq!(code_of(err), Code::Unavailable);
    }

    #[test]
    fn write_concern_errors_and_retry_labels_are_unavailable() {
        let err = write_concern_error(&["RetryableWriteError"]);
        assert!(err.contains_label("RetryableWriteError"));
        assert!(is_transient(&err));
        assert_eq!(code_of(err), Code::Unavailable);
        assert_eq!(code_of(write_concern_error(&[])), Code::Unavailable);
    }

    #[test]
    fn real_failures_stay_internal_and_decided_answers_pass_through() {
        // A malformed command (FailedToParse) is our bug, not the network.
        assert_eq!(code_of(command_error(9)), Code::Internal);
        assert_eq!(code_of(command_error(DUPLICATE_KEY)), Code::Internal);
        let decided = mongodb::error::Error::custom(ApiError::bad_input("key reused"));
        assert_eq!(code_of(decided), Code::BadUserInput);
    }
}
