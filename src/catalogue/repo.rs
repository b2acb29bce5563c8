//! Catalogue queries. Each page is one database command: the items and,
//! when asked for, the total count come from one aggregation.

use bson::{Bson, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::{ClientSession, options::ReturnDocument};
use serde::Deserialize;

use super::{
    input::{Changes, NewModule},
    model::{Level, ModuleDoc, full_projection, summary_projection},
};
use crate::{
    db::{
        Db, in_session, names,
        page::{self, PageQuery},
    },
    error::{ApiError, ApiResult, is_duplicate_key},
};

/// Longest accepted search text; longer ones are certainly not a title.
pub const MAX_SEARCH_LEN: usize = 200;

/// The filters of `modules(...)`.
#[derive(Debug, Clone, Default)]
pub struct ModuleFilter {
    pub category: Option<String>,
    pub level: Option<Level>,
    pub search: Option<String>,
    /// Admins also see unpublished modules.
    pub include_unpublished: bool,
}

impl ModuleFilter {
    /// Trims and validates the user's filters.
    pub fn new(
        category: Option<String>,
        level: Option<Level>,
        search: Option<String>,
        include_unpublished: bool,
    ) -> ApiResult<Self> {
        let search = search
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        if search
            .as_ref()
            .is_some_and(|s| s.chars().count() > MAX_SEARCH_LEN)
        {
            return Err(ApiError::bad_input(format!(
                "`search` may be at most {MAX_SEARCH_LEN} characters"
            )));
        }
        if category.as_ref().is_some_and(|c| c.len() > 100) {
            return Err(ApiError::bad_input(
                "`category` may be at most 100 characters",
            ));
        }
        Ok(ModuleFilter {
            category,
            level,
            search,
            include_unpublished,
        })
    }

    /// The identity of the list these filters select, bound into cursors.
    pub fn scope(&self) -> String {
        serde_json::json!([
            "modules",
            self.include_unpublished,
            self.category,
            self.level.map(Level::as_str),
            self.search,
        ])
        .to_string()
    }

    /// The `$match` of this filter. With `text_index`, search uses `$text`;
    /// otherwise an escaped, case-insensitive regex over title, summary and
    /// tags (no user text ever becomes an operator or a pattern).
    pub fn to_match(&self, text_index: bool) -> Document {
        let mut m = Document::new();
        if !self.include_unpublished {
            m.insert("published", true);
        }
        if let Some(c) = &self.category {
            m.insert("category", c.as_str());
        }
        if let Some(l) = self.level {
            m.insert("level", l.as_str());
        }
        if let Some(s) = &self.search {
            if text_index {
                m.insert("$text", doc! { "$search": s.as_str() });
            } else {
                let pattern = regex::escape(s);
                let re = || doc! { "$regex": &pattern, "$options": "i" };
                m.insert(
                    "$or",
                    vec![
                        Bson::Document(doc! { "title": re() }),
                        Bson::Document(doc! { "summary": re() }),
                        Bson::Document(doc! { "tags": re() }),
                    ],
                );
            }
        }
        m
    }
}

/// The sort key of the catalogue order, (position, id).
pub type ModuleKey = (i32, String);

pub fn key_of(m: &ModuleDoc) -> ModuleKey {
    (m.position, m.id.to_hex())
}

/// The condition "after `key`" in (position, _id) order.
fn after_match(key: &ModuleKey) -> ApiResult<Document> {
    let id = ObjectId::parse_str(&key.1).map_err(|_| ApiError::bad_input("invalid cursor"))?;
    Ok(doc! { "$or": [
        { "position": { "$gt": key.0 } },
        { "position": key.0, "_id": { "$gt": id } },
    ] })
}

/// One page of modules in (position, id) order: up to `limit + 1` items
/// (the extra one says whether there is a next page) and, with
/// `with_total`, the size of the whole filtered list, in one command.
pub async fn list(
    db: &Db,
    filter: &ModuleFilter,
    text_index: bool,
    after: Option<&ModuleKey>,
    limit: i64,
    with_total: bool,
) -> ApiResult<(Vec<ModuleDoc>, i64)> {
    page::fetch(
        db,
        PageQuery {
            collection: names::MODULES,
            filter: filter.to_match(text_index),
            sort: doc! { "position": 1, "_id": 1 },
            after: after.map(after_match).transpose()?,
            projection: Some(summary_projection()),
            limit,
            with_total,
        },
    )
    .await
}

/// How to find one module.
#[derive(Debug, Clone)]
pub enum ModuleRef {
    Id(ObjectId),
    Slug(String),
}

/// One module, with its content only when `with_content`.
pub async fn find_one(db: &Db, by: &ModuleRef, with_content: bool) -> ApiResult<Option<ModuleDoc>> {
    let filter = match by {
        ModuleRef::Id(id) => doc! { "_id": id },
        ModuleRef::Slug(slug) => doc! { "slug": slug.as_str() },
    };
    let projection = if with_content {
        full_projection()
    } else {
        summary_projection()
    };
    db.run(
        db.collection::<ModuleDoc>(names::MODULES)
            .find_one(filter)
            .projection(projection)
            .max_time(db.op_timeout),
    )
    .await
}

/// Modules by id (published or not, without content), for joins.
pub async fn find_many(db: &Db, ids: &[ObjectId]) -> ApiResult<Vec<ModuleDoc>> {
    let cursor = db
        .run(
            db.collection::<ModuleDoc>(names::MODULES)
                .find(doc! { "_id": { "$in": ids } })
                .projection(summary_projection())
                .max_time(db.op_timeout),
        )
        .await?;
    db.run(cursor.try_collect()).await
}

#[derive(Deserialize)]
struct ContentOnly {
    #[serde(rename = "_id")]
    id: ObjectId,
    #[serde(default)]
    content: String,
}

/// The content of several modules in one round trip (lists that select
/// `content` read it here, never in the list query itself).
pub async fn contents(db: &Db, ids: &[ObjectId]) -> ApiResult<Vec<(ObjectId, String)>> {
    let cursor = db
        .run(
            db.collection::<ContentOnly>(names::MODULES)
                .find(doc! { "_id": { "$in": ids } })
                .projection(doc! { "content": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let docs: Vec<ContentOnly> = db.run(cursor.try_collect()).await?;
    Ok(docs.into_iter().map(|d| (d.id, d.content)).collect())
}

// Writes. Each runs in the caller's unit (`session`: a transaction where
// the deployment has them, see `crate::db::Db::as_one_unit`) and returns
// the driver's errors unchanged; answers decided here (a taken slug) go
// through `mongodb::error::Error::custom`.

fn slug_conflict() -> mongodb::error::Error {
    mongodb::error::Error::custom(ApiError::Conflict(
        "a module with this slug already exists".into(),
    ))
}

/// The document of a new module.
pub fn new_document(m: NewModule) -> ModuleDoc {
    let now = bson::DateTime::now();
    ModuleDoc {
        id: ObjectId::new(),
        slug: m.slug,
        title: m.title,
        summary: m.summary,
        category: m.category,
        level: m.level,
        tags: m.tags,
        duration_minutes: m.duration_minutes,
        position: m.position,
        published: m.published,
        created_at: now,
        updated_at: now,
        content: Some(m.content),
    }
}

/// Inserts a module; a taken slug (unique index `slug_unique`) is CONFLICT.
pub async fn insert(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    doc: &ModuleDoc,
) -> mongodb::error::Result<()> {
    let coll = db.collection::<ModuleDoc>(names::MODULES);
    match in_session!(session, coll.insert_one(doc)) {
        Ok(_) => Ok(()),
        Err(e) if is_duplicate_key(&e) => Err(slug_conflict()),
        Err(e) => Err(e),
    }
}

/// Applies `changes`; returns the module as it was before (without
/// content) and as it is after, or `None` for an unknown id. The before
/// image tells, atomically, whether this very update published it.
pub async fn update(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    id: ObjectId,
    changes: &Changes,
) -> mongodb::error::Result<Option<(ModuleDoc, ModuleDoc)>> {
    let coll = db.collection::<ModuleDoc>(names::MODULES);
    let mut set = changes.set.clone();
    set.insert("updated_at", bson::DateTime::now());
    let op = coll
        .find_one_and_update(doc! { "_id": id }, doc! { "$set": set.clone() })
        .projection(summary_projection())
        .return_document(ReturnDocument::Before)
        .max_time(db.op_timeout);
    let before = match in_session!(session, op) {
        Ok(Some(before)) => before,
        Ok(None) => return Ok(None),
        Err(e) if is_duplicate_key(&e) => return Err(slug_conflict()),
        Err(e) => return Err(e),
    };
    let after = apply(&before, &set).map_err(mongodb::error::Error::custom)?;
    Ok(Some((before, after)))
}

/// The module after a `$set` of validated fields (content left out: the
/// `content` field reads it back when selected).
fn apply(before: &ModuleDoc, set: &Document) -> ApiResult<ModuleDoc> {
    let mut d = bson::to_document(before).map_err(|e| ApiError::internal("module update", e))?;
    for (k, v) in set {
        if k != "content" {
            d.insert(k.clone(), v.clone());
        }
    }
    d.remove("content");
    bson::from_document(d).map_err(|e| ApiError::internal("module update", e))
}

/// What a deletion removed.
#[derive(Debug, Default, Clone)]
pub struct Deleted {
    /// Learners who had progress on the module: their cached progress,
    /// history and statistics are stale now.
    pub learners: Vec<ObjectId>,
}

/// Whether a module with this id exists.
pub async fn exists(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    id: ObjectId,
) -> mongodb::error::Result<bool> {
    let found = in_session!(
        session,
        db.raw(names::MODULES)
            .find_one(doc! { "_id": id })
            .projection(doc! { "_id": 1 })
            .max_time(db.op_timeout)
    )?;
    Ok(found.is_some())
}

/// Deletes a module with its progress and activity entries; notifications
/// that named it keep their text and lose the module. `None` for an
/// unknown id. Every step is index-backed (`module_status`, `module`).
pub async fn delete(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    id: ObjectId,
) -> mongodb::error::Result<Option<Deleted>> {
    let rows: Vec<Document> = match session.as_deref_mut() {
        Some(s) => {
            let mut cursor = db
                .raw(names::PROGRESS)
                .find(doc! { "module_id": id })
                .projection(doc! { "_id": 0, "user_id": 1 })
                .max_time(db.op_timeout)
                .session(&mut *s)
                .await?;
            cursor.stream(s).try_collect().await?
        }
        None => {
            db.raw(names::PROGRESS)
                .find(doc! { "module_id": id })
                .projection(doc! { "_id": 0, "user_id": 1 })
                .max_time(db.op_timeout)
                .await?
                .try_collect()
                .await?
        }
    };
    let learners = rows
        .iter()
        .filter_map(|d| d.get_object_id("user_id").ok())
        .collect();
    let removed = in_session!(
        session,
        db.raw(names::MODULES).delete_one(doc! { "_id": id })
    )?;
    in_session!(
        session,
        db.raw(names::PROGRESS)
            .delete_many(doc! { "module_id": id })
    )?;
    in_session!(
        session,
        db.raw(names::ACTIVITY)
            .delete_many(doc! { "module_id": id })
    )?;
    in_session!(
        session,
        db.raw(names::NOTIFICATIONS).update_many(
            doc! { "module_id": id },
            doc! { "$set": { "module_id": Bson::Null } },
        )
    )?;
    Ok((removed.deleted_count > 0).then_some(Deleted { learners }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_escaped_before_it_becomes_a_regex() {
        let f = ModuleFilter::new(None, None, Some("a.*(b[".into()), false).unwrap();
        let m = f.to_match(false);
        let or = m.get_array("$or").unwrap();
        let title = or[0].as_document().unwrap().get_document("title").unwrap();
        assert_eq!(title.get_str("$regex").unwrap(), r"a\.\*\(b\[");
        assert!(m.get_bool("published").unwrap());
    }

    #[test]
    fn operator_looking_input_stays_a_string() {
        let f = ModuleFilter::new(Some("{\"$gt\": \"\"}".into()), None, None, true).unwrap();
        let m = f.to_match(false);
        assert_eq!(m.get_str("category").unwrap(), "{\"$gt\": \"\"}");
        assert!(!m.contains_key("published"));
    }

    #[test]
    fn scopes_differ_with_their_filters() {
        let a = ModuleFilter::new(None, None, None, false).unwrap().scope();
        let b = ModuleFilter::new(Some("x".into()), None, None, false)
            .unwrap()
            .scope();
        let c = ModuleFilter::new(None, None, None, true).unwrap().scope();
        assert_ne!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn overlong_search_is_bad_input() {
        assert!(ModuleFilter::new(None, None, Some("x".repeat(201)), false).is_err());
        assert!(
            ModuleFilter::new(None, None, Some("   ".into()), false)
                .unwrap()
                .search
                .is_none()
        );
    }
}
