//! Documents of the `users`, `progress` and `activity` collections.

use async_graphql::Enum;
use bson::{Document, doc, oid::ObjectId};
use serde::{Deserialize, Serialize};

pub use crate::auth::Role;

/// A user without secrets: what every read but the login path loads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub email: String,
    pub username: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub role: Role,
    pub created_at: bson::DateTime,
    /// IANA zone name; documents written by other tools may lack it.
    #[serde(default = "default_zone")]
    pub time_zone: String,
    /// Whether the user appears on leaderboards; false when absent.
    #[serde(default)]
    pub leaderboard_opt_in: bool,
}

fn default_zone() -> String {
    super::zone::DEFAULT_ZONE.to_string()
}

impl UserDoc {
    /// The name leaderboards show: the display name, else the username.
    pub fn public_name(&self) -> &str {
        self.display_name
            .as_deref()
            .filter(|n| !n.is_empty())
            .unwrap_or(&self.username)
    }
}

/// The projection of [`UserDoc`]: never `password_hash`.
pub fn user_projection() -> Document {
    doc! {
        "email": 1, "username": 1, "display_name": 1, "role": 1, "created_at": 1,
        "time_zone": 1, "leaderboard_opt_in": 1,
    }
}

/// A learner's state on one module.
#[derive(Enum, Serialize, Deserialize, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ProgressStatus {
    NotStarted,
    InProgress,
    Completed,
}

impl ProgressStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProgressStatus::NotStarted => "not_started",
            ProgressStatus::InProgress => "in_progress",
            ProgressStatus::Completed => "completed",
        }
    }
}

/// One `progress` document: unique per (user_id, module_id).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProgressDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: ObjectId,
    pub module_id: ObjectId,
    pub status: ProgressStatus,
    #[serde(default)]
    pub score: Option<f64>,
    #[serde(default)]
    pub time_spent_seconds: i64,
    #[serde(default)]
    pub attempts: i64,
    pub started_at: bson::DateTime,
    #[serde(default)]
    pub completed_at: Option<bson::DateTime>,
    pub updated_at: bson::DateTime,
}

/// What happened in one activity entry.
#[derive(Enum, Serialize, Deserialize, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum ActivityKind {
    Started,
    Progressed,
    Completed,
}

/// One `activity` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ActivityDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: ObjectId,
    pub module_id: ObjectId,
    pub kind: ActivityKind,
    pub at: bson::DateTime,
    #[serde(default)]
    pub time_spent_seconds: i64,
    #[serde(default)]
    pub score: Option<f64>,
}
