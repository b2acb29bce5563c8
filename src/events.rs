//! What one domain tells the others after a write, without importing them:
//! the catalogue announces a publish or a deletion, and the notifications
//! domain (registered at start in `crate::app`) queues or cancels the
//! fan-out; progress and notification writes announce what they committed,
//! and the live hub (`crate::live`) tells the subscribers. Listeners run in
//! order, in the writer's task.
//!
//! Twice for a catalogue write: [`Events::in_unit`] inside the write's unit
//! (its transaction, `crate::db::Db::as_one_unit`), where a listener adds
//! its own writes (the fan-out job of a publish, the cancellation of a
//! deleted module's jobs) so that they are applied together with the
//! write or not at all; then [`Events::emit`] once it is committed, where an
//! error of one listener fails the write's answer (the write itself stands).

use std::sync::Arc;

use bson::oid::ObjectId;
use mongodb::ClientSession;

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
    /// After the write is committed.
    async fn on(&self, event: &Event) -> ApiResult<()>;

    /// Inside the write's unit, before it commits: the listener's own
    /// writes go through `session` (`None` on a deployment without
    /// transactions) and return the driver's errors unchanged, so that the
    /// unit runs again or fails whole.
    async fn in_unit(
        &self,
        _event: &Event,
        _session: &mut Option<&mut ClientSession>,
    ) -> mongodb::error::Result<()> {
        Ok(())
    }
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

    /// Hands `event` to every listener's [`Listener::in_unit`], inside the
    /// write's unit; the first error stops it (and fails the unit).
    pub async fn in_unit(
        &self,
        event: &Event,
        session: &mut Option<&mut ClientSession>,
    ) -> mongodb::error::Result<()> {
        for listener in self.listeners.iter() {
            listener.in_unit(event, session).await?;
        }
        Ok(())
    }

    /// Hands `event` to every listener in turn; the first error stops it.
    pub async fn emit(&self, event: Event) -> ApiResult<()> {
        for listener in self.listeners.iter() {
            listener.on(&event).await?;
        }
        Ok(())
    }
}
