//! Notifications of learners (fan-out on publish arrives with the admin
//! issue; the types are part of the contract from the start).

use async_graphql::{Context, ID, Object};
use bson::oid::ObjectId;
use serde::{Deserialize, Serialize};

use crate::{
    catalogue::Module,
    error::{GqlResult, not_implemented},
    graphql::{pagination::NotificationConnection, scalars::DateTime},
};

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
}

/// A notification as its learner sees it.
#[derive(Clone, Debug)]
pub struct Notification(pub NotificationDoc);

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ID(self.0.id.to_hex())
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn read(&self) -> bool {
        self.0.read
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    /// The module the notification is about, if any.
    async fn module(&self, _ctx: &Context<'_>) -> GqlResult<Option<Module>> {
        Err(not_implemented())
    }
}

#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// Newest first.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn notifications(
        &self,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        #[graphql(default_with = "Some(false)")] unread_only: Option<bool>,
    ) -> GqlResult<NotificationConnection> {
        let _ = (first, after, unread_only);
        Err(not_implemented())
    }

    async fn unread_notification_count(&self) -> GqlResult<i64> {
        Err(not_implemented())
    }
}

#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Marks the given notifications read (all when ids is null); returns
    /// how many changed.
    async fn mark_notifications_read(&self, ids: Option<Vec<ID>>) -> GqlResult<i64> {
        let _ = ids;
        Err(not_implemented())
    }
}
