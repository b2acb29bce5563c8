//! `GET /exports/progress.csv?from=…&to=…[&category=…]`: learners'
//! progress as CSV for admins, one row per learner and module whose
//! progress was updated in [from, to).
//!
//! The rows come from ONE aggregation on `progress`, led by an indexed
//! `$match` on `updated_at` (index `updated`) and joined by equality to
//! the user and the module (`_id`), and go to the client as the cursor
//! yields them: the body is a stream of CSV lines, never the whole file,
//! so memory stays flat whatever the export's size (see BENCHMARKS.md).
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

/// One row as the pipeline returns it.
#[derive(Debug, Deserialize)]
struct Row {
    user_id: ObjectId,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    module_id: ObjectId,
    #[serde(default)]
    slug: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    category: Option<String>,
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

fn row_record(r: Row) -> Vec<u8> {
    let text = |s: Option<String>| neutralise(&s.unwrap_or_default());
    record([
        r.user_id.to_hex(),
        text(r.username),
        text(r.display_name),
        r.module_id.to_hex(),
        text(r.slug),
        text(r.title),
        text(r.category),
        text(r.status),
        r.score.map(|s| s.to_string()).unwrap_or_default(),
        r.time_spent_seconds.to_string(),
        r.attempts.to_string(),
        date(r.started_at),
        date(r.completed_at),
        date(r.updated_at),
    ])
}

/// The export pipeline, run on `progress`.
pub fn pipeline(
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    modules: Option<Vec<ObjectId>>,
) -> Vec<Document> {
    let mut filter = doc! { "updated_at": {
        "$gte": bson::DateTime::from_chrono(from), "$lt": bson::DateTime::from_chrono(to),
    } };
    if let Some(ids) = modules {
        filter.insert("module_id", doc! { "$in": ids });
    }
    vec![
        doc! { "$match": filter },
        doc! { "$sort": { "updated_at": 1, "_id": 1 } },
        doc! { "$lookup": { "from": names::USERS, "localField": "user_id", "foreignField": "_id", "as": "u" } },
        doc! { "$lookup": { "from": names::MODULES, "localField": "module_id", "foreignField": "_id", "as": "m" } },
        // At most one each (joined by `_id`); kept when the user or module
        // is gone.
        doc! { "$unwind": { "path": "$u", "preserveNullAndEmptyArrays": true } },
        doc! { "$unwind": { "path": "$m", "preserveNullAndEmptyArrays": true } },
        doc! { "$project": {
            "_id": 0, "user_id": 1, "module_id": 1, "status": 1, "score": 1,
            "time_spent_seconds": 1, "attempts": 1, "started_at": 1, "completed_at": 1, "updated_at": 1,
            "username": "$u.username",
            "display_name": "$u.display_name",
            "slug": "$m.slug",
            "title": "$m.title",
            "category": "$m.category",
        } },
    ]
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

/// The module ids of a category (any publication state).
async fn category_modules(db: &Db, category: &str) -> Result<Vec<ObjectId>, ApiError> {
    #[derive(Deserialize)]
    struct Id {
        #[serde(rename = "_id")]
        id: ObjectId,
    }
    let cursor = db
        .run(
            db.collection::<Id>(names::MODULES)
                .find(doc! { "category": category })
                .projection(doc! { "_id": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let ids: Vec<Id> = db.run(cursor.try_collect()).await?;
    Ok(ids.into_iter().map(|i| i.id).collect())
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
    let modules = match params.category.as_deref() {
        None => None,
        Some(c) => match category_modules(&db, c).await {
            Ok(ids) => Some(ids),
            Err(e) => return public_error(e),
        },
    };
    // No `maxTimeMS`: on MongoDB it bounds the cursor's whole life, and a
    // large export legitimately streams for longer than one operation.
    let cursor = match db
        .run(
            db.raw(names::PROGRESS)
                .aggregate(pipeline(from, to, modules))
                .batch_size(500)
                .with_type::<Row>(),
        )
        .await
    {
        Ok(c) => c,
        Err(e) => return public_error(e),
    };
    let header_line = futures::stream::once(async { Ok::<_, std::io::Error>(record(HEADER)) });
    let rows = cursor.map(|row| match row {
        Ok(r) => Ok(row_record(r)),
        Err(e) => {
            // The status line is gone: cutting the body short is all that
            // is left to say it failed.
            tracing::error!(error = %e, "progress export interrupted");
            Err(std::io::Error::other("export interrupted"))
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
