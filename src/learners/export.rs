//! `GET /exports/progress.csv?from=…&to=…[&category=…]`: learners'
//! progress as CSV for admins, one row per learner and module whose
//! progress was updated in [from, to).
//!
//! The rows come from one `find` on `progress` by `updated_at` (index
//! `updated`, in its order), read by a cursor 500 at a time; each chunk
//! of 500 takes its learners' names from one `find` on `users` by `_id`,
//! and the modules come from a map of the catalogue read once (its size
//! is the catalogue's, not the school's). The body is a stream of CSV
//! lines, never the whole file, so memory stays flat whatever the
//! export's size (see BENCHMARKS.md). (One aggregation with two
//! `$lookup`s was dropped: the surrogate computes a whole pipeline before
//! its first batch, past the operation deadline at 100k learners.)
//! Cells are quoted per RFC 4180 (the `csv` crate) and any text cell that a
//! spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or carriage
//! return first) is prefixed with `'`. The compression layer gzips the
//! stream when the client asks.

use axum::{
    body::Body,
    extract::{Query, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use std::{collections::HashMap, sync::Arc};

use bson::{Document, doc, oid::ObjectId};
use chrono::{DateTime, SecondsFormat, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;

use crate::{
    auth::{Role, TokenService},
    db::{Db, names},
    error::{ApiError, Code, error_response},
};

/// What the export handler needs: the database and the token checker.
#[derive(Clone)]
pub struct ExportState {
    pub db: Db,
    pub tokens: TokenService,
}

/// The query string.
#[derive(Debug, Deserialize)]
pub struct ExportParams {
    from: Option<String>,
    to: Option<String>,
    category: Option<String>,
}

/// The columns, in order.
pub const HEADER: [&str; 14] = [
    "user_id",
    "username",
    "display_name",
    "module_id",
    "module_slug",
    "module_title",
    "category",
    "status",
    "score",
    "time_spent_seconds",
    "attempts",
    "started_at",
    "completed_at",
    "updated_at",
];

/// One progress document, as the export reads it.
#[derive(Debug, Deserialize)]
struct Progress {
    user_id: ObjectId,
    module_id: ObjectId,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    score: Option<f64>,
    #[serde(default)]
    time_spent_seconds: i64,
    #[serde(default)]
    attempts: i64,
    #[serde(default)]
    started_at: Option<bson::DateTime>,
    #[serde(default)]
    completed_at: Option<bson::DateTime>,
    #[serde(default)]
    updated_at: Option<bson::DateTime>,
}

/// A learner's names.
#[derive(Debug, Deserialize)]
struct Learner {
    #[serde(rename = "_id")]
    id: ObjectId,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
}

/// A module's names.
#[derive(Debug, Clone, Deserialize)]
struct ModuleNames {
    #[serde(rename = "_id")]
    id: ObjectId,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

/// Progress rows read per chunk (one `users` find each).
const CHUNK: usize = 500;

/// A text cell a spreadsheet will not evaluate.
pub fn neutralise(cell: &str) -> String {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{cell}")
    } else {
        cell.to_string()
    }
}

fn date(d: Option<bson::DateTime>) -> String {
    d.map(|d| d.to_chrono().to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// One CSV record (with its CRLF), quoted as RFC 4180 says.
pub fn record<I, S>(cells: I) -> Vec<u8>
where
    I: IntoIterator<Item = S>,
    S: AsRef<[u8]>,
{
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::CRLF)
        .from_writer(Vec::new());
    // Writing to a Vec cannot fail.
    let _ = writer.write_record(cells);
    writer.into_inner().unwrap_or_default()
}

fn row_record(p: Progress, user: Option<&Learner>, module: Option<&ModuleNames>) -> Vec<u8> {
    let text = |s: Option<&String>| neutralise(s.map_or("", String::as_str));
    record([
        p.user_id.to_hex(),
        text(user.and_then(|u| u.username.as_ref())),
        text(user.and_then(|u| u.display_name.as_ref())),
        p.module_id.to_hex(),
        text(module.and_then(|m| m.slug.as_ref())),
        text(module.and_then(|m| m.title.as_ref())),
        text(module.and_then(|m| m.category.as_ref())),
        text(p.status.as_ref()),
        p.score.map(|s| s.to_string()).unwrap_or_default(),
        p.time_spent_seconds.to_string(),
        p.attempts.to_string(),
        date(p.started_at),
        date(p.completed_at),
        date(p.updated_at),
    ])
}

/// The export's filter on `progress` (its modules' only, when given).
pub fn filter(from: DateTime<Utc>, to: DateTime<Utc>, modules: Option<Vec<ObjectId>>) -> Document {
    let mut filter = doc! { "updated_at": {
        "$gte": bson::DateTime::from_chrono(from), "$lt": bson::DateTime::from_chrono(to),
    } };
    if let Some(ids) = modules {
        filter.insert("module_id", doc! { "$in": ids });
    }
    filter
}

/// The CSV lines of one chunk of progress: its learners' names in one
/// `find` by `_id`.
async fn chunk_lines(
    db: &Db,
    modules: &HashMap<ObjectId, ModuleNames>,
    chunk: Vec<Progress>,
) -> Result<Vec<u8>, ApiError> {
    let mut ids: Vec<ObjectId> = chunk.iter().map(|p| p.user_id).collect();
    ids.sort();
    ids.dedup();
    let cursor = db
        .run(
            db.collection::<Learner>(names::USERS)
                .find(doc! { "_id": { "$in": ids } })
                .projection(doc! { "username": 1, "display_name": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let learners: Vec<Learner> = db.run(cursor.try_collect()).await?;
    let learners: HashMap<ObjectId, Learner> = learners.into_iter().map(|l| (l.id, l)).collect();
    let mut lines = Vec::new();
    for p in chunk {
        let (user, module) = (learners.get(&p.user_id), modules.get(&p.module_id));
        lines.extend(row_record(p, user, module));
    }
    Ok(lines)
}

/// Every module's names (the catalogue, any publication state), or the
/// category's.
async fn module_names(
    db: &Db,
    category: Option<&str>,
) -> Result<HashMap<ObjectId, ModuleNames>, ApiError> {
    let filter = match category {
        Some(c) => doc! { "category": c },
        None => doc! {},
    };
    let cursor = db
        .run(
            db.collection::<ModuleNames>(names::MODULES)
                .find(filter)
                .projection(doc! { "slug": 1, "title": 1, "category": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let modules: Vec<ModuleNames> = db.run(cursor.try_collect()).await?;
    Ok(modules.into_iter().map(|m| (m.id, m)).collect())
}

fn bad_input(message: &str) -> Response {
    error_response(StatusCode::BAD_REQUEST, Code::BadUserInput, message)
}

fn public_error(e: ApiError) -> Response {
    let status = match e.code() {
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error_response(status, e.code(), e.message())
}

/// The handler: an admin token, a valid range, then the stream.
pub async fn progress_csv(
    State(state): State<ExportState>,
    headers: HeaderMap,
    Query(params): Query<ExportParams>,
) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    let Some(token) = token else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "sign in as an admin to export",
        );
    };
    let Some(viewer) = state.tokens.verify(token.trim()) else {
        return error_response(
            StatusCode::UNAUTHORIZED,
            Code::Unauthenticated,
            "invalid or expired token: sign in again",
        );
    };
    if viewer.role != Role::Admin {
        return error_response(StatusCode::FORBIDDEN, Code::Forbidden, "admins only");
    }
    #[allow(clippy::result_large_err)] // the error is the response itself
    let parse = |v: &Option<String>, name: &str| {
        v.as_deref()
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|d| d.with_timezone(&Utc))
            .ok_or_else(|| bad_input(&format!("`{name}` must be an RFC 3339 date-time")))
    };
    let (from, to) = match (parse(&params.from, "from"), parse(&params.to, "to")) {
        (Ok(f), Ok(t)) if f < t => (f, t),
        (Ok(_), Ok(_)) => return bad_input("`from` must be before `to`"),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let db = state.db;
    let modules = match module_names(&db, params.category.as_deref()).await {
        Ok(m) => Arc::new(m),
        Err(e) => return public_error(e),
    };
    let only = params
        .category
        .is_some()
        .then(|| modules.keys().copied().collect());
    // No `maxTimeMS`: on MongoDB it bounds the cursor's whole life, and a
    // large export legitimately streams for longer than one operation.
    let cursor = match db
        .run(
            db.collection::<Progress>(names::PROGRESS)
                .find(filter(from, to, only))
                .sort(doc! { "updated_at": 1, "_id": 1 })
                .projection(doc! {
                    "_id": 0, "user_id": 1, "module_id": 1, "status": 1, "score": 1,
                    "time_spent_seconds": 1, "attempts": 1, "started_at": 1,
                    "completed_at": 1, "updated_at": 1,
                })
                .batch_size(CHUNK as u32),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return public_error(e),
    };
    let header_line = futures::stream::once(async { Ok::<_, std::io::Error>(record(HEADER)) });
    let rows = cursor.try_chunks(CHUNK).then(move |chunk| {
        let (db, modules) = (db.clone(), modules.clone());
        async move {
            let lines = match chunk {
                Ok(chunk) => chunk_lines(&db, &modules, chunk).await,
                Err(e) => Err(ApiError::from(e.1)),
            };
            lines.map_err(|e| {
                // The status line is gone: cutting the body short is all
                // that is left to say it failed.
                tracing::error!(error = %e.message(), "progress export interrupted");
                std::io::Error::other("export interrupted")
            })
        }
    });
    let mut resp = Body::from_stream(header_line.chain(rows)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"progress.csv\""),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_quoted_as_rfc_4180_says() {
        let line = record(["plain", "a,b", "say \"hi\"", "two\nlines", ""]);
        assert_eq!(
            String::from_utf8(line).unwrap(),
            "plain,\"a,b\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }

    #[test]
    fn formula_like_cells_are_neutralised() {
        for cell in ["=1+1", "+SUM(A1)", "-2", "@cmd", "\tx"] {
            assert!(neutralise(cell).starts_with('\''), "{cell}");
        }
        assert_eq!(neutralise("Ada = great"), "Ada = great");
    }
}
