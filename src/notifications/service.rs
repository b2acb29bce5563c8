//! A learner's notification pages through the cache, and the writes with
//! the scopes they make stale: marking read drops the learner's pages; a
//! fan-out batch drops every learner's (one generation bump per batch,
//! however many learners it told).

use bson::oid::ObjectId;

use super::{NotificationDoc, repo};
use crate::{
    cache::{Cache, Scope, TtlClass, digest},
    db::Db,
    error::ApiResult,
};

/// A learner's notification pages (`CACHE_TTL_PROGRESS_SECS`).
pub const NOTIFICATIONS: TtlClass = TtlClass::new("notifications", |s| s.ttl_progress);

/// One learner's notifications.
pub fn scope(user_id: ObjectId) -> Scope {
    Scope::of("notifications", user_id)
}

/// Every learner's notifications: bumped after each fan-out batch.
pub const FANNED_OUT: Scope = Scope::named("notifications_fanout");

/// One page (`limit + 1` items), newest first.
pub async fn page(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    unread_only: bool,
    after: Option<&repo::NotificationKey>,
    limit: i64,
) -> ApiResult<Vec<NotificationDoc>> {
    let key = format!(
        "{}:{}",
        user_id.to_hex(),
        digest(&(unread_only, after, limit))
    );
    cache
        .get_or_compute(NOTIFICATIONS, &key, &[scope(user_id), FANNED_OUT], || {
            repo::list(db, user_id, unread_only, after, limit)
        })
        .await
}

/// Marks the learner's notifications read; their pages are stale before
/// this returns (also after a failure: the write may have landed).
pub async fn mark_read(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    ids: Option<&[ObjectId]>,
) -> ApiResult<i64> {
    let changed = repo::mark_read(db, user_id, ids).await;
    cache.invalidate(&[scope(user_id)]).await;
    changed
}
