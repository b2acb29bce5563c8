//! The learners' reads through the cache and their progress writes, each
//! with the scopes it depends on or makes stale, so that every writer goes
//! through the same rules.

use bson::oid::ObjectId;

use super::{
    model::{ActivityDoc, ProgressDoc, ProgressStatus},
    progress::{self, ActivityKey, ProgressKey, Report},
    stats,
};
use crate::{
    cache::{Cache, Scope, TtlClass, digest},
    catalogue::service::CATALOGUE,
    db::Db,
    error::{ApiError, ApiResult},
};

/// A learner's statistics (`CACHE_TTL_STATS_SECS`).
pub const STATS: TtlClass = TtlClass::new("stats", |s| s.ttl_stats);
/// A learner's progress pages (`CACHE_TTL_PROGRESS_SECS`).
pub const PROGRESS: TtlClass = TtlClass::new("progress", |s| s.ttl_progress);
/// A learner's history pages (`CACHE_TTL_HISTORY_SECS`).
pub const HISTORY: TtlClass = TtlClass::new("history", |s| s.ttl_history);

/// Everything of one learner: statistics, progress pages, history.
pub fn scope(user_id: ObjectId) -> Scope {
    Scope::of("learner", user_id)
}

/// Every learner's progress at once: what school-wide figures (the admin
/// dashboard) are computed from. Its key keeps the name it had when the
/// dashboard owned it, so that instances of both versions agree.
pub const ALL_PROGRESS: Scope = Scope::named("dashboard");

/// One page of a learner's progress, most recently updated first.
pub async fn progress_page(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    status: Option<ProgressStatus>,
    after: Option<&ProgressKey>,
    limit: i64,
    with_total: bool,
) -> ApiResult<(Vec<ProgressDoc>, i64)> {
    let key = format!(
        "{}:{}",
        user_id.to_hex(),
        digest(&(status.map(|s| s.as_str()), after, limit, with_total))
    );
    cache
        .get_or_compute(PROGRESS, &key, &[scope(user_id)], || {
            progress::list(db, user_id, status, after, limit, with_total)
        })
        .await
}

/// A learner's statistics: one aggregation on a miss; NOT_FOUND for an
/// unknown user.
pub async fn statistics(db: &Db, cache: &Cache, user_id: ObjectId) -> ApiResult<stats::Stats> {
    let computed = cache
        .get_or_compute(
            STATS,
            &user_id.to_hex(),
            &[scope(user_id), CATALOGUE],
            || stats::compute(db, user_id),
        )
        .await?;
    computed.ok_or_else(stats::unknown_user)
}

/// One page of a learner's activity, newest first.
pub async fn history_page(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    after: Option<&ActivityKey>,
    limit: i64,
) -> ApiResult<Vec<ActivityDoc>> {
    let key = format!("{}:{}", user_id.to_hex(), digest(&(after, limit)));
    cache
        .get_or_compute(HISTORY, &key, &[scope(user_id)], || {
            progress::history(db, user_id, after, limit)
        })
        .await
}

/// Drops what a progress write makes stale: the learner's own data and
/// the school-wide figures.
async fn invalidate(cache: &Cache, user_id: ObjectId) {
    cache.invalidate(&[scope(user_id), ALL_PROGRESS]).await;
}

/// Starts a published module (idempotent).
pub async fn start(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    module_id: ObjectId,
) -> ApiResult<ProgressDoc> {
    if !progress::module_is_published(db, module_id).await? {
        return Err(ApiError::NotFound("no such module".into()));
    }
    let started = progress::start(db, user_id, module_id).await;
    // Also after a failure: on a standalone server part of it may stand.
    invalidate(cache, user_id).await;
    started
}

/// Records a report on a published module.
pub async fn record(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    report: Report,
) -> ApiResult<ProgressDoc> {
    if !progress::module_is_published(db, report.module_id).await? {
        return Err(ApiError::NotFound("no such module".into()));
    }
    let recorded = progress::record(db, user_id, &report).await;
    // Also after a failure: on a standalone server part of it may stand.
    invalidate(cache, user_id).await;
    recorded
}
