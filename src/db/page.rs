//! One page of a keyset-ordered list in ONE aggregate command: the items
//! (`limit + 1`, the extra one telling whether a next page exists) and,
//! when asked, the size of the whole filtered list.

use bson::{Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use serde::{Deserialize, de::DeserializeOwned};

use super::Db;
use crate::error::{ApiError, ApiResult};

/// What a list query is made of.
pub struct PageQuery<'a> {
    pub collection: &'a str,
    /// The list's filter (index-backed).
    pub filter: Document,
    /// The list's order, matching an index.
    pub sort: Document,
    /// "After the cursor", in the same order.
    pub after: Option<Document>,
    /// Fields to read; `None` reads whole documents.
    pub projection: Option<Document>,
    pub limit: i64,
    pub with_total: bool,
}

#[derive(Deserialize)]
#[serde(bound = "T: DeserializeOwned")]
struct Facet<T> {
    items: Vec<T>,
    #[serde(default)]
    total: Vec<Count>,
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

/// Runs the page: without a total, one `$match` (filter and cursor
/// together) served by the index in order; with one, the filtered list goes
/// through `$facet` so items and count share the command.
pub async fn fetch<T>(db: &Db, q: PageQuery<'_>) -> ApiResult<(Vec<T>, i64)>
where
    T: DeserializeOwned + Send + Sync,
{
    let coll = db.raw(q.collection);
    let sort = doc! { "$sort": q.sort };
    let project = q.projection.map(|p| doc! { "$project": p });
    if !q.with_total {
        let filter = match q.after {
            Some(after) => doc! { "$and": [q.filter, after] },
            None => q.filter,
        };
        let mut pipeline = vec![
            doc! { "$match": filter },
            sort,
            doc! { "$limit": q.limit + 1 },
        ];
        pipeline.extend(project);
        let cursor = db
            .run(
                coll.aggregate(pipeline)
                    .max_time(db.op_timeout)
                    .with_type::<T>(),
            )
            .await?;
        return Ok((db.run(cursor.try_collect()).await?, 0));
    }
    let mut items: Vec<Document> = q.after.map(|a| doc! { "$match": a }).into_iter().collect();
    items.push(doc! { "$limit": q.limit + 1 });
    let mut pipeline = vec![doc! { "$match": q.filter }, sort];
    pipeline.extend(project);
    pipeline.push(doc! { "$facet": { "items": items, "total": [ { "$count": "n" } ] } });
    let cursor = db
        .run(
            coll.aggregate(pipeline)
                .max_time(db.op_timeout)
                .with_type::<Facet<T>>(),
        )
        .await?;
    let pages: Vec<Facet<T>> = db.run(cursor.try_collect()).await?;
    Ok(pages.into_iter().next().map_or((Vec::new(), 0), |p| {
        (p.items, p.total.first().map_or(0, |c| c.n))
    }))
}

/// The sort key of a newest-first list: (time in ms, id).
pub type TimeKey = (i64, String);

/// "Before `key`" in (`field` desc, `_id` desc) order.
pub fn before_match(field: &str, key: &TimeKey) -> ApiResult<Document> {
    let id = ObjectId::parse_str(&key.1).map_err(|_| ApiError::bad_input("invalid cursor"))?;
    let t = bson::DateTime::from_millis(key.0);
    Ok(doc! { "$or": [
        { field: { "$lt": t } },
        { field: t, "_id": { "$lt": id } },
    ] })
}

/// One page (`limit + 1` items) of a newest-first list ordered by
/// (`field` desc, `_id` desc), after `after` when given: one `find`.
pub async fn newest_first<T>(
    db: &Db,
    collection: &str,
    filter: Document,
    field: &str,
    after: Option<&TimeKey>,
    limit: i64,
) -> ApiResult<Vec<T>>
where
    T: DeserializeOwned + Send + Sync,
{
    let filter = match after.map(|k| before_match(field, k)).transpose()? {
        Some(a) if filter.is_empty() => a,
        Some(a) => doc! { "$and": [filter, a] },
        None => filter,
    };
    let cursor = db
        .run(
            db.collection::<T>(collection)
                .find(filter)
                .sort(doc! { field: -1, "_id": -1 })
                .limit(limit + 1)
                .max_time(db.op_timeout),
        )
        .await?;
    db.run(cursor.try_collect()).await
}
