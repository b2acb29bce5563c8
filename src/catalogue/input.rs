//! What admins send to create or change a module: the GraphQL input types
//! are the raw form, and `parse` turns them into validated values (trimmed,
//! bounded, BAD_USER_INPUT naming the field), so raw and valid values never
//! share a type and nothing copies fields one by one.

use async_graphql::InputObject;
use bson::Document;

use super::model::Level;
use crate::error::{ApiError, ApiResult};

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

// A new module as sent (`createModule`); no doc comment, which would
// change the contract SDL.
#[derive(InputObject, Debug, Clone)]
pub struct ModuleInput {
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub category: String,
    pub level: Level,
    #[graphql(default_with = "Some(Vec::new())")]
    pub tags: Option<Vec<String>>,
    pub duration_minutes: i32,
    pub position: i32,
    #[graphql(default_with = "Some(false)")]
    pub published: Option<bool>,
    pub content: String,
}

// Changes as sent (`updateModule`); a missing field stays as it is.
#[derive(InputObject, Debug, Clone, Default)]
pub struct ModuleUpdateInput {
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

/// A validated new module.
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
    pub fn parse(raw: ModuleInput) -> ApiResult<Self> {
        Ok(NewModule {
            slug: validate_slug(&raw.slug)?,
            title: required_text("title", &raw.title, MAX_TITLE)?,
            summary: required_text("summary", &raw.summary, MAX_SUMMARY)?,
            category: required_text("category", &raw.category, MAX_CATEGORY)?,
            level: raw.level,
            tags: validate_tags(&raw.tags.unwrap_or_default())?,
            duration_minutes: validate_duration(raw.duration_minutes)?,
            position: validate_position(raw.position)?,
            published: raw.published.unwrap_or(false),
            content: validate_content(raw.content)?,
        })
    }
}

/// A validated update: the `$set` of the given fields.
#[derive(Debug, Clone)]
pub struct Changes {
    pub(crate) set: Document,
    /// Whether the update asks for `published: true`.
    pub publishes: bool,
}

impl Changes {
    pub fn parse(raw: ModuleUpdateInput) -> ApiResult<Self> {
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

#[cfg(test)]
mod tests {
    use bson::doc;

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

    fn raw() -> ModuleInput {
        ModuleInput {
            slug: "ok".into(),
            title: " Title ".into(),
            summary: "Summary".into(),
            category: "rust".into(),
            level: Level::Beginner,
            tags: Some(vec!["a".into()]),
            duration_minutes: 30,
            position: 0,
            published: Some(false),
            content: String::new(),
        }
    }

    #[test]
    fn a_new_module_is_trimmed_and_checked_field_by_field() {
        assert_eq!(NewModule::parse(raw()).unwrap().title, "Title");
        let cases: Vec<fn(&mut ModuleInput)> = vec![
            |r| r.title = "  ".into(),
            |r| r.summary = String::new(),
            |r| r.category = "x".repeat(101),
            |r| r.duration_minutes = 0,
            |r| r.duration_minutes = 10_001,
            |r| r.position = -1,
            |r| r.tags = Some(vec!["t".into(); 21]),
            |r| r.tags = Some(vec![String::new()]),
            |r| r.content = "x".repeat(MAX_CONTENT_BYTES + 1),
        ];
        for (i, change) in cases.into_iter().enumerate() {
            let mut r = raw();
            change(&mut r);
            assert!(
                matches!(NewModule::parse(r), Err(ApiError::BadUserInput(_))),
                "case {i}"
            );
        }
    }

    #[test]
    fn an_update_sets_only_the_given_fields() {
        let c = Changes::parse(ModuleUpdateInput {
            title: Some("New".into()),
            published: Some(true),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.set, doc! { "title": "New", "published": true });
        assert!(c.publishes);
        assert!(
            Changes::parse(ModuleUpdateInput {
                duration_minutes: Some(0),
                ..Default::default()
            })
            .is_err()
        );
    }
}
