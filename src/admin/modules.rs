//! Catalogue writes: validated module documents, and the writes that create,
//! change and delete them. Cache invalidation and the publish fan-out are
//! the resolvers' business (`admin::mod`); this file only talks to MongoDB.

use bson::{Bson, Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;

use crate::{
    catalogue::{Level, ModuleDoc, model::summary_projection},
    db::{Db, names},
    error::{ApiError, ApiResult, is_duplicate_key},
};

/// Longest slug; slugs are URL parts.
pub const MAX_SLUG: usize = 100;
pub const MAX_TITLE: usize = 200;
pub const MAX_SUMMARY: usize = 2_000;
/// The catalogue filter takes categories of at most this length.
pub const MAX_CATEGORY: usize = 100;
pub const MAX_TAGS: usize = 20;
pub const MAX_TAG: usize = 50;
pub const MAX_DURATION_MINUTES: i32 = 10_000;
/// Lesson bodies are tens of kilobytes; a megabyte is a mistake (and
/// MongoDB documents stop at 16 MB).
pub const MAX_CONTENT_BYTES: usize = 1_000_000;

/// A slug: 1–100 lowercase letters, digits and hyphens.
pub fn validate_slug(slug: &str) -> ApiResult<String> {
    let ok = !slug.is_empty()
        && slug.len() <= MAX_SLUG
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(slug.to_string())
    } else {
        Err(ApiError::bad_input(format!(
            "`slug` must be 1 to {MAX_SLUG} lowercase letters, digits or hyphens"
        )))
    }
}

/// A required text: trimmed, not empty, at most `max` characters.
fn required_text(field: &str, value: &str, max: usize) -> ApiResult<String> {
    let v = value.trim();
    if v.is_empty() {
        return Err(ApiError::bad_input(format!("`{field}` must not be empty")));
    }
    if v.chars().count() > max {
        return Err(ApiError::bad_input(format!(
            "`{field}` may be at most {max} characters"
        )));
    }
    Ok(v.to_string())
}

fn validate_tags(tags: &[String]) -> ApiResult<Vec<String>> {
    if tags.len() > MAX_TAGS {
        return Err(ApiError::bad_input(format!(
            "`tags` may hold at most {MAX_TAGS} tags"
        )));
    }
    tags.iter()
        .map(|t| required_text("tags", t, MAX_TAG))
        .collect()
}

fn validate_duration(minutes: i32) -> ApiResult<i32> {
    if (1..=MAX_DURATION_MINUTES).contains(&minutes) {
        Ok(minutes)
    } else {
        Err(ApiError::bad_input(format!(
            "`durationMinutes` must be between 1 and {MAX_DURATION_MINUTES}"
        )))
    }
}

fn validate_position(position: i32) -> ApiResult<i32> {
    if position >= 0 {
        Ok(position)
    } else {
        Err(ApiError::bad_input("`position` must be 0 or more"))
    }
}

fn validate_content(content: String) -> ApiResult<String> {
    if content.len() > MAX_CONTENT_BYTES {
        return Err(ApiError::bad_input(format!(
            "`content` may be at most {MAX_CONTENT_BYTES} bytes"
        )));
    }
    Ok(content)
}

/// Every field of a new module; [`NewModule::validate`] checks and
/// normalizes them.
#[derive(Debug, Clone)]
pub struct NewModule {
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub category: String,
    pub level: Level,
    pub tags: Vec<String>,
    pub duration_minutes: i32,
    pub position: i32,
    pub published: bool,
    pub content: String,
}

impl NewModule {
    /// The module with trimmed fields, or BAD_USER_INPUT naming the field.
    pub fn validate(self) -> ApiResult<Self> {
        let raw = self;
        Ok(NewModule {
            slug: validate_slug(&raw.slug)?,
            title: required_text("title", &raw.title, MAX_TITLE)?,
            summary: required_text("summary", &raw.summary, MAX_SUMMARY)?,
            category: required_text("category", &raw.category, MAX_CATEGORY)?,
            level: raw.level,
            tags: validate_tags(&raw.tags)?,
            duration_minutes: validate_duration(raw.duration_minutes)?,
            position: validate_position(raw.position)?,
            published: raw.published,
            content: validate_content(raw.content)?,
        })
    }
}

/// The raw fields of `ModuleUpdateInput`; `None` leaves a field as it is.
#[derive(Default)]
pub struct RawChanges {
    pub slug: Option<String>,
    pub title: Option<String>,
    pub summary: Option<String>,
    pub category: Option<String>,
    pub level: Option<Level>,
    pub tags: Option<Vec<String>>,
    pub duration_minutes: Option<i32>,
    pub position: Option<i32>,
    pub published: Option<bool>,
    pub content: Option<String>,
}

/// A validated update: the `$set` of the given fields.
#[derive(Debug, Clone)]
pub struct Changes {
    set: Document,
    /// Whether the update asks for `published: true`.
    pub publishes: bool,
}

impl Changes {
    pub fn parse(raw: RawChanges) -> ApiResult<Self> {
        let mut set = Document::new();
        if let Some(v) = raw.slug {
            set.insert("slug", validate_slug(&v)?);
        }
        if let Some(v) = raw.title {
            set.insert("title", required_text("title", &v, MAX_TITLE)?);
        }
        if let Some(v) = raw.summary {
            set.insert("summary", required_text("summary", &v, MAX_SUMMARY)?);
        }
        if let Some(v) = raw.category {
            set.insert("category", required_text("category", &v, MAX_CATEGORY)?);
        }
        if let Some(v) = raw.level {
            set.insert("level", v.as_str());
        }
        if let Some(v) = raw.tags {
            set.insert("tags", validate_tags(&v)?);
        }
        if let Some(v) = raw.duration_minutes {
            set.insert("duration_minutes", validate_duration(v)?);
        }
        if let Some(v) = raw.position {
            set.insert("position", validate_position(v)?);
        }
        if let Some(v) = raw.published {
            set.insert("published", v);
        }
        if let Some(v) = raw.content {
            set.insert("content", validate_content(v)?);
        }
        Ok(Changes {
            publishes: raw.published == Some(true),
            set,
        })
    }
}

fn slug_conflict() -> ApiError {
    ApiError::Conflict("a module with this slug already exists".into())
}

/// Inserts a module; a taken slug (unique index `slug_unique`) is CONFLICT.
#[tracing::instrument(skip_all)]
pub async fn create(db: &Db, m: NewModule) -> ApiResult<ModuleDoc> {
    let now = bson::DateTime::now();
    let doc = ModuleDoc {
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
    };
    match db
        .run_keep(db.collection::<ModuleDoc>(names::MODULES).insert_one(&doc))
        .await?
    {
        Ok(_) => Ok(ModuleDoc {
            content: None,
            ..doc
        }),
        Err(e) if is_duplicate_key(&e) => Err(slug_conflict()),
        Err(e) => Err(ApiError::from(e)),
    }
}

/// Applies `changes`; returns the module as it was before (without
/// content) and as it is after, or `None` for an unknown id. The before
/// image tells, atomically, whether this very update published it.
#[tracing::instrument(skip_all, fields(module = %id))]
pub async fn update(
    db: &Db,
    id: ObjectId,
    changes: Changes,
) -> ApiResult<Option<(ModuleDoc, ModuleDoc)>> {
    let coll = db.collection::<ModuleDoc>(names::MODULES);
    let mut set = changes.set;
    set.insert("updated_at", bson::DateTime::now());
    let op = coll
        .find_one_and_update(doc! { "_id": id }, doc! { "$set": set.clone() })
        .projection(summary_projection())
        .return_document(ReturnDocument::Before)
        .max_time(db.op_timeout);
    let before = match db.run_keep(op).await? {
        Ok(Some(before)) => before,
        Ok(None) => return Ok(None),
        Err(e) if is_duplicate_key(&e) => return Err(slug_conflict()),
        Err(e) => return Err(ApiError::from(e)),
    };
    let after = apply(&before, &set)?;
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

/// Deletes a module with its progress and activity entries; notifications
/// that named it keep their text and lose the module. `None` for an
/// unknown id. Every step is index-backed (`module_status`, `module`).
#[tracing::instrument(skip_all, fields(module = %id))]
pub async fn delete(db: &Db, id: ObjectId) -> ApiResult<Option<Deleted>> {
    let exists = db
        .run(
            db.raw(names::MODULES)
                .find_one(doc! { "_id": id })
                .projection(doc! { "_id": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    if exists.is_none() {
        return Ok(None);
    }
    // First: no fan-out goes on telling learners about a module that is gone.
    crate::notifications::jobs::cancel_for_module(db, id).await?;
    let cursor = db
        .run(
            db.raw(names::PROGRESS)
                .find(doc! { "module_id": id })
                .projection(doc! { "_id": 0, "user_id": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    let rows: Vec<Document> = db.run(cursor.try_collect()).await?;
    let learners = rows
        .iter()
        .filter_map(|d| d.get_object_id("user_id").ok())
        .collect();
    let removed = db
        .run(db.raw(names::MODULES).delete_one(doc! { "_id": id }))
        .await?;
    db.run(
        db.raw(names::PROGRESS)
            .delete_many(doc! { "module_id": id }),
    )
    .await?;
    db.run(
        db.raw(names::ACTIVITY)
            .delete_many(doc! { "module_id": id }),
    )
    .await?;
    db.run(db.raw(names::NOTIFICATIONS).update_many(
        doc! { "module_id": id },
        doc! { "$set": { "module_id": Bson::Null } },
    ))
    .await?;
    Ok((removed.deleted_count > 0).then_some(Deleted { learners }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_lowercase_letters_digits_and_hyphens() {
        for ok in ["a", "rust-101", "x".repeat(100).as_str()] {
            assert!(validate_slug(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "Rust",
            "a b",
            "a_b",
            "é",
            "{\"$gt\":\"\"}",
            &"x".repeat(101),
        ] {
            assert!(validate_slug(bad).is_err(), "{bad}");
        }
    }

    fn raw() -> NewModule {
        NewModule {
            slug: "ok".into(),
            title: " Title ".into(),
            summary: "Summary".into(),
            category: "rust".into(),
            level: Level::Beginner,
            tags: vec!["a".into()],
            duration_minutes: 30,
            position: 0,
            published: false,
            content: String::new(),
        }
    }

    #[test]
    fn a_new_module_is_trimmed_and_checked_field_by_field() {
        assert_eq!(raw().validate().unwrap().title, "Title");
        let cases: Vec<fn(&mut NewModule)> = vec![
            |r| r.title = "  ".into(),
            |r| r.summary = String::new(),
            |r| r.category = "x".repeat(101),
            |r| r.duration_minutes = 0,
            |r| r.duration_minutes = 10_001,
            |r| r.position = -1,
            |r| r.tags = vec!["t".into(); 21],
            |r| r.tags = vec![String::new()],
            |r| r.content = "x".repeat(MAX_CONTENT_BYTES + 1),
        ];
        for (i, change) in cases.into_iter().enumerate() {
            let mut r = raw();
            change(&mut r);
            assert!(
                matches!(r.validate(), Err(ApiError::BadUserInput(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn an_update_sets_only_the_given_fields() {
        let c = Changes::parse(RawChanges {
            title: Some("New".into()),
            published: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.set, doc! { "title": "New", "published": true });
        assert!(c.publishes);
        assert!(
            Changes::parse(RawChanges {
                duration_minutes: Some(0),
                ..Default::default()
            })
            .is_err()
        );
    }
}
