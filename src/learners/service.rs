//! The learners' reads through the cache and their progress writes, each
//! with the scopes it depends on or makes stale, so that every writer goes
//! through the same rules.

use bson::oid::ObjectId;

use chrono::{DateTime, Utc};

use super::{
    analytics::{self, Day, Period},
    leaderboard,
    model::{ActivityDoc, ProgressDoc, UserDoc},
    progress::{self, ActivityKey, ProgressPage, Report, Written},
    stats, users,
};
use crate::{
    cache::{Cache, Scope, TtlClass, digest},
    catalogue::service::CATALOGUE,
    db::Db,
    error::{ApiError, ApiResult},
    events::{Event, Events},
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
    q: &ProgressPage,
) -> ApiResult<(Vec<ProgressDoc>, i64)> {
    let key = format!("{}:{}", user_id.to_hex(), digest(q));
    cache
        .get_or_compute(PROGRESS, &key, &[scope(user_id)], || {
            progress::list(db, user_id, q)
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

/// A learner's activity per day over [from, to) in their zone: one
/// aggregation on a miss, cached with the learner's data (and so exact
/// after their writes and after a change of zone).
pub async fn activity_series(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<Day>> {
    analytics::check_range(from, to)?;
    let key = format!("{}:series:{}", user_id.to_hex(), digest(&(from, to)));
    let computed = cache
        .get_or_compute(STATS, &key, &[scope(user_id)], || async move {
            let found = analytics::buckets(db, user_id, from, to, from).await?;
            Ok(found.map(|(tz, buckets)| analytics::series(tz, &buckets, from, to)))
        })
        .await?;
    computed.ok_or_else(stats::unknown_user)
}

/// A learner's figures over [from, to) and the range of the same length
/// before it: one aggregation on a miss, cached like the statistics.
pub async fn period_comparison(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<(Period, Period)> {
    analytics::check_range(from, to)?;
    let before = from - (to - from);
    let key = format!("{}:period:{}", user_id.to_hex(), digest(&(from, to)));
    let computed = cache
        .get_or_compute(STATS, &key, &[scope(user_id)], || async move {
            let found = analytics::buckets(db, user_id, before, to, from).await?;
            Ok(found.map(|(tz, buckets)| {
                (
                    analytics::period(tz, &buckets, true, from, to),
                    analytics::period(tz, &buckets, false, before, from),
                )
            }))
        })
        .await?;
    computed.ok_or_else(stats::unknown_user)
}

/// Applies a user's own settings. A new zone changes their days (stats,
/// series); a new opt-in changes who is on the leaderboards, which the
/// next read of any leaderboard must show.
pub async fn update_settings(
    db: &Db,
    cache: &Cache,
    user_id: ObjectId,
    settings: &users::Settings,
) -> ApiResult<UserDoc> {
    let updated = users::update_settings(db, user_id, settings).await;
    let mut stale = vec![scope(user_id)];
    if settings.leaderboard_opt_in.is_some() {
        stale.push(leaderboard::MEMBERS);
    }
    cache.invalidate(&stale).await;
    updated?.ok_or_else(stats::unknown_user)
}

/// Drops what a progress write makes stale: the learner's own data and
/// the school-wide figures.
async fn invalidate(cache: &Cache, user_id: ObjectId) {
    cache.invalidate(&[scope(user_id), ALL_PROGRESS]).await;
}

/// Tells the subscribers of `user_id` about a committed progress write,
/// once: called after the commit (the transaction's retries are behind
/// it), and not for a write that changed nothing (a started module, a
/// report answered from its idempotency key).
async fn announce(events: &Events, user_id: ObjectId, written: &ApiResult<Written>) {
    let Ok(Written {
        progress,
        changed: true,
    }) = written
    else {
        return;
    };
    if let Ok(progress) = bson::to_document(progress) {
        // The live hub never fails an emit.
        let _ = events
            .emit(Event::ProgressChanged { user_id, progress })
            .await;
    }
}

/// Starts a published module (idempotent).
pub async fn start(
    db: &Db,
    cache: &Cache,
    events: &Events,
    user_id: ObjectId,
    module_id: ObjectId,
) -> ApiResult<ProgressDoc> {
    if !progress::module_is_published(db, module_id).await? {
        return Err(ApiError::NotFound("no such module".into()));
    }
    let started = progress::start(db, user_id, module_id).await;
    // Also after a failure: on a standalone server part of it may stand.
    invalidate(cache, user_id).await;
    announce(events, user_id, &started).await;
    started.map(|w| w.progress)
}

/// Records a report on a published module.
pub async fn record(
    db: &Db,
    cache: &Cache,
    events: &Events,
    user_id: ObjectId,
    report: Report,
) -> ApiResult<ProgressDoc> {
    if !progress::module_is_published(db, report.module_id).await? {
        return Err(ApiError::NotFound("no such module".into()));
    }
    let recorded = progress::record(db, user_id, &report).await;
    // Also after a failure: on a standalone server part of it may stand.
    invalidate(cache, user_id).await;
    announce(events, user_id, &recorded).await;
    recorded.map(|w| w.progress)
}
