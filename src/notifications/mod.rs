//! Notifications of learners: what they are told (`notifications`,
//! `unreadNotificationCount`, `markNotificationsRead`) and the durable
//! background fan-out that tells every learner when a module is published
//! ([`jobs`]).

mod graphql;
pub mod jobs;
pub mod repo;
pub mod service;

use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

pub use graphql::{
    Notification, NotificationMutation, NotificationQuery, NotificationSubscription,
};
pub use jobs::FanOut;

/// One `notifications` document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NotificationDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub user_id: ObjectId,
    pub message: String,
    #[serde(default)]
    pub module_id: Option<ObjectId>,
    #[serde(default)]
    pub read: bool,
    pub created_at: bson::DateTime,
    /// The fan-out job that wrote it, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub job_id: Option<ObjectId>,
}
