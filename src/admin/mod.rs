//! Admin fields: catalogue writes, the dashboard, users and the cache
//! controls. Built by the admin and cache issues; the contract is complete
//! from the start.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};

use crate::{
    catalogue::{Level, Module},
    error::{ApiError, GqlResult, not_implemented},
    graphql::{app, pagination::UserConnection, require_admin},
    learners::Role,
};

#[derive(SimpleObject)]
pub struct ModuleStats {
    module: Module,
    learners_started: i64,
    learners_completed: i64,
    completion_rate: f64,
    average_score: Option<f64>,
    average_time_seconds: Option<f64>,
}

pub struct AdminDashboard;

#[Object]
impl AdminDashboard {
    async fn users_total(&self) -> GqlResult<i64> {
        Err(not_implemented())
    }
    /// Users with at least one activity entry in the last 7 days.
    async fn active_users_last7_days(&self) -> GqlResult<i64> {
        Err(not_implemented())
    }
    async fn modules_total(&self) -> GqlResult<i64> {
        Err(not_implemented())
    }
    async fn modules_published(&self) -> GqlResult<i64> {
        Err(not_implemented())
    }
    async fn completions_total(&self) -> GqlResult<i64> {
        Err(not_implemented())
    }
    async fn average_score(&self) -> GqlResult<Option<f64>> {
        Err(not_implemented())
    }
    /// Published modules with the most learners started, best first.
    #[graphql(complexity = "crate::graphql::page_cost(limit, child_complexity)")]
    async fn top_modules(
        &self,
        #[graphql(default = 5)] limit: Option<i32>,
    ) -> GqlResult<Vec<ModuleStats>> {
        let _ = limit;
        Err(not_implemented())
    }
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

#[derive(InputObject)]
pub struct ModuleInput {
    slug: String,
    title: String,
    summary: String,
    category: String,
    level: Level,
    #[graphql(default_with = "Some(Vec::new())")]
    tags: Option<Vec<String>>,
    duration_minutes: i32,
    position: i32,
    #[graphql(default_with = "Some(false)")]
    published: Option<bool>,
    content: String,
}

#[derive(InputObject)]
pub struct ModuleUpdateInput {
    slug: Option<String>,
    title: Option<String>,
    summary: Option<String>,
    category: Option<String>,
    level: Option<Level>,
    tags: Option<Vec<String>>,
    duration_minutes: Option<i32>,
    position: Option<i32>,
    published: Option<bool>,
    content: Option<String>,
}

#[derive(Default)]
pub struct AdminQuery;

#[Object]
impl AdminQuery {
    /// Admin only.
    async fn admin_dashboard(&self, ctx: &Context<'_>) -> GqlResult<AdminDashboard> {
        require_admin(ctx)?;
        Ok(AdminDashboard)
    }

    /// Admin only. `search` matches email or username prefix,
    /// case-insensitively.
    #[graphql(complexity = "crate::graphql::page_cost(first, child_complexity)")]
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
        role: Option<Role>,
    ) -> GqlResult<UserConnection> {
        require_admin(ctx)?;
        let _ = (first, after, search, role);
        Err(not_implemented())
    }

    /// Admin only.
    async fn cache_stats(&self, ctx: &Context<'_>) -> GqlResult<CacheStats> {
        require_admin(ctx)?;
        let r = app(ctx).cache.report().await;
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
    /// Admin only. Publishing a module notifies every learner in the
    /// background.
    async fn create_module(&self, ctx: &Context<'_>, input: ModuleInput) -> GqlResult<Module> {
        require_admin(ctx)?;
        let _ = input;
        Err(not_implemented())
    }

    async fn update_module(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ModuleUpdateInput,
    ) -> GqlResult<Module> {
        require_admin(ctx)?;
        let _ = (id, input);
        Err(not_implemented())
    }

    async fn delete_module(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        require_admin(ctx)?;
        let _ = id;
        Err(not_implemented())
    }

    /// Admin only. Drops cached entries whose key starts with the prefix
    /// (all when null); returns how many were dropped.
    async fn clear_cache(&self, ctx: &Context<'_>, prefix: Option<String>) -> GqlResult<i64> {
        require_admin(ctx)?;
        if prefix.as_ref().is_some_and(|p| p.len() > 200) {
            return Err(ApiError::bad_input("`prefix` may be at most 200 characters").into());
        }
        Ok(app(ctx).cache.clear(prefix.as_deref()).await as i64)
    }
}
