//! Admin fields: the dashboard (`dashboard`), the user list (`users`), the
//! cache controls and the state of the notification fan-out jobs (module
//! writes live with the catalogue). Every field here carries the
//! `AdminOnly` guard: UNAUTHENTICATED for anonymous callers, FORBIDDEN for
//! learners.

pub mod dashboard;
pub mod users;

use std::sync::Arc;

use async_graphql::{Context, ID, Object, SimpleObject};

use crate::{
    auth::Role,
    catalogue::Module,
    error::{ApiError, GqlResult},
    graphql::{
        ContextExt,
        cost::directive::cost,
        guards::AdminOnly,
        pagination::{Connection, PageInfo, TotalCount, page, page_size},
        scalars::DateTime,
    },
    learners::User,
    notifications::jobs::{self, JobDoc, JobState},
};

/// The declared cost of `adminDashboard`: on a miss it aggregates every
/// collection, which costs the server about what a page of 50 objects does.
const DASHBOARD_COST: u32 = 50;

/// One published module's figures on the dashboard.
pub struct ModuleStats(dashboard::ModuleFigures);

#[Object]
impl ModuleStats {
    async fn module(&self) -> Module {
        Module::from(self.0.module.clone())
    }
    async fn learners_started(&self) -> i64 {
        self.0.learners_started
    }
    async fn learners_completed(&self) -> i64 {
        self.0.learners_completed
    }
    /// learnersCompleted / learnersStarted.
    async fn completion_rate(&self) -> f64 {
        self.0.completion_rate
    }
    async fn average_score(&self) -> Option<f64> {
        self.0.average_score
    }
    async fn average_time_seconds(&self) -> Option<f64> {
        self.0.average_time_seconds
    }
}

/// The whole school at a glance: one aggregation on a miss, cached for
/// `CACHE_TTL_DASHBOARD_SECS` and dropped by progress and module writes.
pub struct AdminDashboard(Arc<dashboard::Figures>);

#[Object]
impl AdminDashboard {
    async fn users_total(&self) -> i64 {
        self.0.users_total
    }
    /// Users with at least one activity entry in the last 7 days.
    async fn active_users_last7_days(&self) -> i64 {
        self.0.active_users_last7_days
    }
    /// Every module, published or not.
    async fn modules_total(&self) -> i64 {
        self.0.modules_total
    }
    async fn modules_published(&self) -> i64 {
        self.0.modules_published
    }
    /// Completions of published modules.
    async fn completions_total(&self) -> i64 {
        self.0.completions_total
    }
    /// Mean of the non-null scores on published modules; null if none.
    async fn average_score(&self) -> Option<f64> {
        self.0.average_score
    }
    /// Published modules with the most learners started, best first
    /// (`limit` 1–50).
    async fn top_modules(
        &self,
        #[graphql(default = 5)] limit: Option<i32>,
    ) -> GqlResult<Vec<ModuleStats>> {
        let limit = limit.unwrap_or(5);
        if !(1..=dashboard::MAX_TOP).contains(&limit) {
            return Err(ApiError::bad_input(format!(
                "`limit` must be between 1 and {}",
                dashboard::MAX_TOP
            ))
            .into());
        }
        Ok(self
            .0
            .top_modules
            .iter()
            .take(limit as usize)
            .cloned()
            .map(ModuleStats)
            .collect())
    }
}

/// A notification fan-out job, as admins follow it.
pub struct NotificationJob(JobDoc);

#[Object]
impl NotificationJob {
    async fn id(&self) -> ID {
        ID(self.0.id.to_hex())
    }
    async fn state(&self) -> JobState {
        self.0.state
    }
    /// The published module (its id stays when the module is deleted).
    async fn module_id(&self) -> ID {
        ID(self.0.module_id.to_hex())
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    /// Learners when the fan-out started; null until a worker claimed it.
    async fn total(&self) -> Option<i64> {
        self.0.total
    }
    /// Learners notified so far.
    async fn notified(&self) -> i64 {
        self.0.notified
    }
    /// Claims so far; more than one after a retry or a worker's crash.
    async fn attempts(&self) -> i32 {
        self.0.attempts
    }
    /// Why the last round failed, if it did.
    async fn last_error(&self) -> Option<&str> {
        self.0.last_error.as_deref()
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
    async fn started_at(&self) -> Option<DateTime> {
        self.0.started_at.map(Into::into)
    }
    async fn finished_at(&self) -> Option<DateTime> {
        self.0.finished_at.map(Into::into)
    }
}

/// One job with its cursor.
#[derive(SimpleObject)]
pub struct NotificationJobEdge {
    cursor: String,
    node: NotificationJob,
}

/// A page of jobs, newest first.
#[derive(SimpleObject)]
pub struct NotificationJobConnection {
    edges: Vec<NotificationJobEdge>,
    page_info: PageInfo,
}

#[derive(SimpleObject)]
pub struct CacheStats {
    /// "redis" while Redis serves the cache, "memory" while the in-process
    /// fallback does.
    backend: String,
    redis_configured: bool,
    redis_available: bool,
    hits: i64,
    misses: i64,
    /// hits / (hits + misses), 0 when there were none.
    hit_rate: f64,
    memory_entries: i64,
    /// The Redis circuit breaker: "CLOSED" (Redis used) or "OPEN".
    breaker: String,
    /// Redis calls that failed or timed out (each answered from memory).
    errors: i64,
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Admin only.
    #[graphql(
        guard = "AdminOnly",
        cache_control(no_cache),
        // Aggregations over every collection on a miss: priced as a page.
        directive = cost::apply(DASHBOARD_COST)
    )]
    async fn admin_dashboard(&self, ctx: &Context<'_>) -> GqlResult<AdminDashboard> {
        let figures = dashboard::cached(ctx.db(), ctx.cache()).await?;
        Ok(AdminDashboard(Arc::new(figures)))
    }

    /// Admin only. `search` matches email or username prefix,
    /// case-insensitively.
    #[graphql(guard = "AdminOnly", cache_control(no_cache))]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
        role: Option<Role>,
    ) -> GqlResult<Connection<User, TotalCount>> {
        let limit = page_size(first)?;
        let filter = users::UserFilter::new(search, role)?;
        let scope = filter.scope();
        let after: Option<String> = after
            .map(|c| ctx.cursors().decode(&scope, &c))
            .transpose()?;
        let with_total = ctx.selects("totalCount");
        let (items, total) =
            users::list(ctx.db(), &filter, after.as_deref(), limit, with_total).await?;
        let items: Vec<User> = items.into_iter().map(User).collect();
        Ok(Connection::with_total(
            page(ctx.cursors(), &scope, items, limit, |u: &User| {
                u.0.id.to_hex()
            }),
            total,
        ))
    }

    /// Admin only. The notification fan-out jobs, newest first: state,
    /// counts and attempts.
    #[graphql(guard = "AdminOnly")]
    async fn notification_jobs(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<NotificationJobConnection> {
        let limit = page_size(first)?;
        let scope = "[\"notificationJobs\"]";
        let after: Option<jobs::JobKey> =
            after.map(|c| ctx.cursors().decode(scope, &c)).transpose()?;
        let items = jobs::list(ctx.db(), after.as_ref(), limit).await?;
        let p = page(ctx.cursors(), scope, items, limit, jobs::job_key);
        Ok(NotificationJobConnection {
            edges: p
                .cursors
                .into_iter()
                .zip(p.nodes)
                .map(|(cursor, node)| NotificationJobEdge {
                    cursor: cursor.value(),
                    node: NotificationJob(node),
                })
                .collect(),
            page_info: p.page_info,
        })
    }

    /// Admin only.
    #[graphql(guard = "AdminOnly", cache_control(no_cache))]
    async fn cache_stats(&self, ctx: &Context<'_>) -> GqlResult<CacheStats> {
        let r = ctx.cache().report().await;
        Ok(CacheStats {
            backend: r.backend.to_string(),
            redis_configured: r.redis_configured,
            redis_available: r.redis_available,
            hits: r.hits as i64,
            misses: r.misses as i64,
            hit_rate: r.hit_rate,
            memory_entries: r.memory_entries as i64,
            breaker: format!("{:?}", r.breaker).to_uppercase(),
            errors: r.errors as i64,
        })
    }
}

#[derive(Default)]
pub struct AdminMutation;

#[Object]
impl AdminMutation {
    /// Admin only. Drops cached entries whose key starts with the prefix
    /// (all when null); returns how many were dropped.
    #[graphql(guard = "AdminOnly")]
    async fn clear_cache(&self, ctx: &Context<'_>, prefix: Option<String>) -> GqlResult<i64> {
        if prefix.as_ref().is_some_and(|p| p.len() > 200) {
            return Err(ApiError::bad_input("`prefix` may be at most 200 characters").into());
        }
        Ok(ctx.cache().clear(prefix.as_deref()).await as i64)
    }
}
