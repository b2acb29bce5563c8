//! What one domain tells the others after a write, without importing them:
//! the catalogue announces a publish or a deletion, and the notifications
//! domain (registered at start in `crate::app`) queues or cancels the
//! fan-out; progress and notification writes announce what they committed,
//! and the live hub (`crate::live`) tells the subscribers. Listeners run in order, in the writer's task, and an error of
//! one fails the write's answer (the write itself stands), as before the
//! events existed.

use std::sync::Arc;

use bson::oid::ObjectId;

use crate::error::ApiResult;

/// Something that happened, in plain data (no domain types).
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A module became published (created published, or published by an
    /// update).
    ModulePublished { module_id: ObjectId, title: String },
    /// A module was deleted.
    ModuleDeleted { module_id: ObjectId },
    /// A learner's progress on a module changed; the progress document as
    /// committed.
    ProgressChanged {
        user_id: ObjectId,
        progress: bson::Document,
    },
    /// Notifications were inserted: each learner with the document as
    /// committed (one event per batch of the fan-out).
    NotificationsAdded {
        notifications: Vec<(ObjectId, bson::Document)>,
    },
}

/// Reacts to events.
#[async_trait::async_trait]
pub trait Listener: Send + Sync {
    async fn on(&self, event: &Event) -> ApiResult<()>;
}

/// The listeners of this process; cheap to clone.
#[derive(Clone, Default)]
pub struct Events {
    listeners: Arc<Vec<Arc<dyn Listener>>>,
}

impl Events {
    pub fn new(listeners: Vec<Arc<dyn Listener>>) -> Self {
        Events {
            listeners: Arc::new(listeners),
        }
    }

    /// Hands `event` to every listener in turn; the first error stops it.
    pub async fn emit(&self, event: Event) -> ApiResult<()> {
        for listener in self.listeners.iter() {
            listener.on(&event).await?;
        }
        Ok(())
    }
}
