//! Module documents as stored in the `modules` collection, and the
//! projections that read them.

use async_graphql::Enum;
use bson::{Document, doc, oid::ObjectId};
use serde::{Deserialize, Serialize};

/// Difficulty of a module; stored lowercase.
#[derive(Enum, Serialize, Deserialize, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Beginner,
    Intermediate,
    Advanced,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Beginner => "beginner",
            Level::Intermediate => "intermediate",
            Level::Advanced => "advanced",
        }
    }
}

/// One catalogue entry. `content` is `None` unless it was projected in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub slug: String,
    pub title: String,
    #[serde(default)]
    pub summary: String,
    pub category: String,
    pub level: Level,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub duration_minutes: i32,
    #[serde(default)]
    pub position: i32,
    #[serde(default)]
    pub published: bool,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// Every field but `content`: what lists and most reads need.
pub fn summary_projection() -> Document {
    doc! {
        "slug": 1, "title": 1, "summary": 1, "category": 1, "level": 1, "tags": 1,
        "duration_minutes": 1, "position": 1, "published": 1, "created_at": 1, "updated_at": 1,
    }
}

/// Every field, `content` included: a module's detail page.
pub fn full_projection() -> Document {
    let mut p = summary_projection();
    p.insert("content", 1);
    p
}
