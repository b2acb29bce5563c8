//! The caches see every writer: the app-level [`ChangeHandler`] that turns
//! a change in a cached collection, made by this service or by any other
//! tool, into the invalidation of the scopes it makes stale.
//!
//! **Each instance follows** (rather than one elected follower): the memory
//! cache that serves while Redis is down belongs to one instance, and only
//! that instance can invalidate it, exactly when Redis cannot carry the
//! invalidation. A change stream is one cursor per instance; invalidating
//! twice (the writer's own and the follower's) costs an `INCR`.
//!
//! **One client.** The follower uses the process's one `Client` (a client
//! per process, as the driver asks: each one has its own pools, monitors
//! and threads). A change stream does not hold a pooled connection between
//! its `getMore`s (the driver pins one only behind a load balancer, and
//! then one), and each `getMore` waits at most 300 ms, so the follower
//! takes one connection of the pool at a time, briefly. Its commands
//! (`aggregate` to open, `getMore`, the token's `update` in `meta`) count
//! in `/metrics` with the others. With `CACHE_FOLLOW_CHANGES=false` nothing
//! of it is built.
//!
//! Notifications and jobs are never cached, so they are not followed.

use std::sync::Arc;

use bson::Bson;

use crate::{
    cache::{Cache, Scope},
    catalogue::service::CATALOGUE,
    db::{
        Db,
        changes::{Change, ChangeHandler, FollowState, Follower},
        names,
    },
    learners::{self, ALL_PROGRESS},
};

/// The collections whose documents end up in a cache.
pub const FOLLOWED: [&str; 4] = [
    names::MODULES,
    names::PROGRESS,
    names::ACTIVITY,
    names::USERS,
];

/// Invalidates what a change makes stale.
pub struct CacheFollower {
    pub cache: Arc<Cache>,
}

/// The scopes a change makes stale.
pub fn stale_scopes(change: &Change) -> Vec<Scope> {
    let user_of_document = || {
        change
            .document
            .as_ref()
            .and_then(|d| d.get_object_id("user_id").ok())
    };
    match change.collection.as_str() {
        names::MODULES => vec![CATALOGUE],
        names::PROGRESS | names::ACTIVITY => match user_of_document() {
            Some(user) => vec![learners::scope(user), ALL_PROGRESS],
            // A deletion names only the `_id`: the learner is unknown, so
            // the school-wide figures and every statistic (which depend on
            // the catalogue scope) go; that learner's progress and history
            // pages stay until their TTL.
            None => vec![ALL_PROGRESS, CATALOGUE],
        },
        names::USERS => match &change.id {
            Some(Bson::ObjectId(id)) => vec![learners::scope(*id), ALL_PROGRESS],
            _ => vec![ALL_PROGRESS],
        },
        _ => Vec::new(),
    }
}

#[async_trait::async_trait]
impl ChangeHandler for CacheFollower {
    async fn changed(&self, change: &Change) {
        let scopes = stale_scopes(change);
        if !scopes.is_empty() {
            self.cache.invalidate(&scopes).await;
        }
    }

    async fn missed(&self) {
        let dropped = self.cache.clear(None).await;
        tracing::info!(
            dropped,
            "changes may have been missed: the cache starts afresh"
        );
    }
}

/// This instance's follower of the cached collections.
pub fn follower(db: &Db, cache: Arc<Cache>, state: Arc<FollowState>) -> Follower {
    Follower {
        db: db.clone(),
        name: "cache-follower".into(),
        collections: FOLLOWED.to_vec(),
        handler: Arc::new(CacheFollower { cache }),
        state,
    }
}

#[cfg(test)]
mod tests {
    use bson::{doc, oid::ObjectId};

    use super::*;

    #[test]
    fn each_followed_collection_makes_its_scopes_stale() {
        let user = ObjectId::new();
        let change = |coll: &str, id: Bson, document| Change {
            collection: coll.into(),
            id: Some(id),
            document,
        };
        let progress = change(
            names::PROGRESS,
            ObjectId::new().into(),
            Some(doc! { "user_id": user }),
        );
        assert_eq!(
            stale_scopes(&progress),
            vec![learners::scope(user), ALL_PROGRESS]
        );
        let gone = change(names::ACTIVITY, ObjectId::new().into(), None);
        assert_eq!(stale_scopes(&gone), vec![ALL_PROGRESS, CATALOGUE]);
        let module = change(names::MODULES, ObjectId::new().into(), None);
        assert_eq!(stale_scopes(&module), vec![CATALOGUE]);
        let renamed = change(names::USERS, user.into(), None);
        assert_eq!(
            stale_scopes(&renamed),
            vec![learners::scope(user), ALL_PROGRESS]
        );
        assert!(stale_scopes(&change("jobs", Bson::Null, None)).is_empty());
    }
}
