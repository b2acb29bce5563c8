//! The response cache: Redis first, in-process memory as the fallback
//! (PRODUCT.md, "Cache").

use std::time::Duration;

use anyhow::bail;

use super::{Source, millis, parse_bool, parse_or, secs};

/// Cache settings (PRODUCT.md, "Cache").
#[derive(Debug, Clone)]
pub struct CacheSettings {
    /// `REDIS_URL`, default unset (memory cache only): the Redis shared by
    /// every instance, so that one instance's invalidations reach the
    /// others. `redis://`, `rediss://`, `redis-sentinel://` or
    /// `redis-cluster://`.
    pub redis_url: Option<String>,
    /// `REDIS_TIMEOUT_MS`, default 50: longest a request waits on Redis, so
    /// a slow or dead Redis costs latency within this bound, never errors.
    pub redis_timeout: Duration,
    /// `CACHE_MEMORY_MAX_ENTRIES`, default 10000: bound of the in-process
    /// cache, so the fallback cannot grow without limit.
    pub memory_max_entries: u64,
    /// `CACHE_TTL_STATS_SECS`, default 300: life of a learner's progress
    /// statistics.
    pub ttl_stats: Duration,
    /// `CACHE_TTL_MODULES_SECS`, default 600: life of module lists and module
    /// details, which change rarely.
    pub ttl_modules: Duration,
    /// `CACHE_TTL_PROGRESS_SECS`, default 300: life of a learner's progress.
    pub ttl_progress: Duration,
    /// `CACHE_TTL_HISTORY_SECS`, default 600: life of a learner's history.
    pub ttl_history: Duration,
    /// `CACHE_TTL_DASHBOARD_SECS`, default 60: life of the admin dashboard,
    /// short because it aggregates everyone's activity.
    pub ttl_dashboard: Duration,
    /// `CACHE_FOLLOW_CHANGES`, default true: follow the cached collections
    /// with a change stream where the deployment has them, so that other
    /// tools' writes reach the cache within a second (`crate::follow`).
    pub follow_changes: bool,
    /// `CACHE_DEGRADED_TTL_SECS`, default 5: longest life of a memory entry
    /// while Redis is configured but down: other instances cannot see this
    /// one's writes then.
    pub degraded_ttl: Duration,
    /// `CACHE_KEY_PREFIX`, default `kairos:`: namespace of every Redis key
    /// of this deployment, so deployments may share one Redis.
    pub key_prefix: String,
    /// `REDIS_POOL_SIZE`, default 4 (at least 1): Redis connections per
    /// process, so one slow reply does not queue every other command.
    pub redis_pool_size: usize,
    /// `CACHE_DISABLED`, default false: bypass the cache entirely
    /// (benchmarks' uncached baseline, debugging).
    pub disabled: bool,
    /// `CACHE_RESPONSES`, default true: the whole-response cache in front
    /// of GraphQL execution (`graphql::response_cache`); off, cached
    /// operations still read their parts from the cache.
    pub responses: bool,
}

impl CacheSettings {
    /// Reads `REDIS_*` and `CACHE_*`; a `REDIS_URL` of another scheme stops
    /// the start.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let redis_url = src.get("REDIS_URL");
        if let Some(url) = &redis_url
            && ![
                "redis://",
                "rediss://",
                "redis-sentinel://",
                "redis-cluster://",
            ]
            .iter()
            .any(|scheme| url.starts_with(scheme))
        {
            bail!("invalid REDIS_URL: must start with redis:// or rediss://");
        }
        Ok(CacheSettings {
            redis_url,
            redis_timeout: millis(src, "REDIS_TIMEOUT_MS", 50)?,
            memory_max_entries: parse_or(src, "CACHE_MEMORY_MAX_ENTRIES", 10_000)?,
            ttl_stats: secs(src, "CACHE_TTL_STATS_SECS", 300)?,
            ttl_modules: secs(src, "CACHE_TTL_MODULES_SECS", 600)?,
            ttl_progress: secs(src, "CACHE_TTL_PROGRESS_SECS", 300)?,
            ttl_history: secs(src, "CACHE_TTL_HISTORY_SECS", 600)?,
            ttl_dashboard: secs(src, "CACHE_TTL_DASHBOARD_SECS", 60)?,
            degraded_ttl: secs(src, "CACHE_DEGRADED_TTL_SECS", 5)?,
            key_prefix: src
                .get("CACHE_KEY_PREFIX")
                .unwrap_or_else(|| "kairos:".into()),
            redis_pool_size: parse_or(src, "REDIS_POOL_SIZE", 4usize)?.max(1),
            disabled: parse_bool(src, "CACHE_DISABLED", false)?,
            follow_changes: parse_bool(src, "CACHE_FOLLOW_CHANGES", true)?,
            responses: parse_bool(src, "CACHE_RESPONSES", true)?,
        })
    }
}
