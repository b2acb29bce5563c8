//! Files embedded in the binary and the pages that load them (GraphiQL
//! and the web app): served under a digest of their content, cached for a
//! year, and their HTML page with its Content-Security-Policy.

use std::fmt::Write as _;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};

use crate::error::{Code, error_response};

/// One embedded file.
pub struct Asset {
    pub name: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
}

/// Hex of the first 8 bytes of the SHA-256 of `bytes`.
pub fn short_digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .take(8)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An HTML page naming the current digests (so always revalidated), with
/// its Content-Security-Policy.
pub fn page(html: &str, csp: &'static str) -> Response {
    let mut resp = html.to_string().into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The file of `files` named `name` when `digest` is its current one
/// (`digests` in the same order); an old page asking for an old version
/// gets NOT_FOUND rather than a mismatched file.
pub fn asset(files: &[Asset], digests: &[String], digest: &str, name: &str) -> Response {
    let Some((file, _)) = files
        .iter()
        .zip(digests)
        .find(|(f, d)| f.name == name && *d == digest)
    else {
        return error_response(StatusCode::NOT_FOUND, Code::NotFound, "no such asset");
    };
    let mut resp = file.bytes.into_response();
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(file.content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}
