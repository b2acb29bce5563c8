//! Typed settings, read once from the environment (and an optional `.env`).
//!
//! Every variable is documented in `.env.example` with its default, and on
//! the field it fills. Each section (`mongo`, `auth`, `limits`, `cache`,
//! `jobs`, `graphql`, `server`) reads its own variables in its own
//! `from_source`; [`Settings::from_source`] assembles them. A value that does
//! not parse stops the start with a message naming the variable, so an
//! operator never runs a service configured differently from what they
//! wrote.

mod auth;
mod cache;
mod graphql;
mod jobs;
mod limits;
mod live;
mod mongo;
mod server;

use std::{net::SocketAddr, str::FromStr, time::Duration};

use anyhow::{Context, bail};

pub use self::{
    auth::AuthSettings,
    cache::CacheSettings,
    graphql::{GraphqlSettings, PersistedMode},
    jobs::JobSettings,
    limits::LimitSettings,
    live::LiveSettings,
    mongo::MongoSettings,
    server::{AppEnv, LogFormat},
};

/// All configuration of one Kairos process.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `APP_ENV`, default `development`: `production` hardens the defaults.
    pub app_env: AppEnv,
    /// `BIND_ADDR`, default `127.0.0.1:8080`: where the HTTP listener binds;
    /// loopback by default so a development run is not exposed.
    pub bind_addr: SocketAddr,
    /// `LOG_FORMAT`, default `pretty`: `json` for a log collector.
    pub log_format: LogFormat,
    /// `SHUTDOWN_DRAIN_SECS`, default 5 in production and 0 otherwise: after
    /// SIGTERM, how long `/ready` says 503 while requests are still served,
    /// so a balancer or a Kubernetes endpoint update stops sending before
    /// the listener closes.
    pub shutdown_drain: Duration,
    /// The `MONGODB_*` variables.
    pub mongo: MongoSettings,
    /// `JWT_SECRET` and `JWT_TTL_SECS`.
    pub auth: AuthSettings,
    /// Query, body, rate and time limits, and CORS origins.
    pub limits: LimitSettings,
    /// The `REDIS_*` and `CACHE_*` variables.
    pub cache: CacheSettings,
    /// The notification fan-out worker.
    pub jobs: JobSettings,
    /// Persisted queries and the parsed-document cache.
    pub graphql: GraphqlSettings,
    /// Subscriptions over WebSocket (`WS_*`).
    pub live: LiveSettings,
    /// `GRAPHIQL`, default on outside production: serve GraphiQL on
    /// `GET /graphql` and `/` for browsers.
    pub graphiql: bool,
    /// `INTROSPECTION`, default on outside production: answer introspection
    /// queries (`__schema`, `__type`); off in production so the schema is
    /// not handed to anyone who asks.
    pub introspection: bool,
    /// `WEB_APP`, default on outside production: serve the web app at
    /// `/app` (production serves the API alone unless asked).
    pub web_app: bool,
    /// `ACTIVITY_RETENTION_DAYS`, default 365 (at least 1): how long activity
    /// entries are kept (TTL index on `activity.at`), so the collection does
    /// not grow forever.
    pub activity_retention_days: u32,
    /// `LEADERBOARD_REFRESH_SECS`, default 30 (1 to 30): a leaderboard
    /// ranking this old is rebuilt in the background; with a build bounded
    /// by the operation deadline, figures lag writes by under 60 s.
    pub leaderboard_refresh: Duration,
}

/// A source of configuration values: the process environment in production,
/// a map in tests.
pub trait Source {
    /// The value of `key`, or `None` when it is unset.
    fn get(&self, key: &str) -> Option<String>;
}

/// Reads the process environment; a blank value counts as unset.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, key: &str) -> Option<String> {
        std::env::var(key).ok().filter(|v| !v.trim().is_empty())
    }
}

impl<const N: usize> Source for [(&str, &str); N] {
    fn get(&self, key: &str) -> Option<String> {
        self.iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.to_string())
    }
}

/// Parses `key` with `FromStr`, or returns `default` when it is unset.
pub(crate) fn parse_or<T: FromStr>(src: &dyn Source, key: &str, default: T) -> anyhow::Result<T>
where
    T::Err: std::fmt::Display,
{
    match src.get(key) {
        None => Ok(default),
        Some(raw) => raw
            .trim()
            .parse::<T>()
            .map_err(|e| anyhow::anyhow!("invalid {key}={raw:?}: {e}")),
    }
}

/// Reads a switch: `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`.
pub(crate) fn parse_bool(src: &dyn Source, key: &str, default: bool) -> anyhow::Result<bool> {
    match src.get(key).as_deref().map(str::trim) {
        None => Ok(default),
        Some("1" | "true" | "TRUE" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "FALSE" | "no" | "off") => Ok(false),
        Some(other) => bail!("invalid {key}={other:?}: expected true or false"),
    }
}

/// Reads a whole number of seconds.
pub(crate) fn secs(src: &dyn Source, key: &str, default: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_secs(parse_or(src, key, default)?))
}

/// Reads a whole number of milliseconds.
pub(crate) fn millis(src: &dyn Source, key: &str, default: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_millis(parse_or(src, key, default)?))
}

impl Settings {
    /// Loads `.env` (when present) and then the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let _ = dotenvy::dotenv();
        Self::from_source(&ProcessEnv)
    }

    /// Builds settings from any source, validating every value; the first
    /// bad one stops it, named.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let app_env = AppEnv::from_source(src)?;
        let production = app_env == AppEnv::Production;
        let log_format = LogFormat::from_source(src)?;
        let bind_addr = parse_or(src, "BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?;
        let mongo = MongoSettings::from_source(src)?;
        let auth = AuthSettings::from_source(src)?;
        let limits = LimitSettings::from_source(src)?;
        let cache = CacheSettings::from_source(src)?;
        let jobs = JobSettings::from_source(src)?;
        let graphql = GraphqlSettings::from_source(src)?;
        let live = LiveSettings::from_source(src)?;

        let activity_retention_days = parse_or(src, "ACTIVITY_RETENTION_DAYS", 365u32)?;
        if activity_retention_days == 0 {
            bail!("invalid ACTIVITY_RETENTION_DAYS: must be at least 1");
        }

        let leaderboard_refresh = parse_or(src, "LEADERBOARD_REFRESH_SECS", 30u64)?;
        if !(1..=30).contains(&leaderboard_refresh) {
            bail!("invalid LEADERBOARD_REFRESH_SECS: must be between 1 and 30");
        }

        Ok(Settings {
            app_env,
            bind_addr,
            log_format,
            shutdown_drain: secs(src, "SHUTDOWN_DRAIN_SECS", if production { 5 } else { 0 })?,
            mongo,
            auth,
            limits,
            cache,
            jobs,
            graphql,
            live,
            graphiql: parse_bool(src, "GRAPHIQL", !production)?,
            introspection: parse_bool(src, "INTROSPECTION", !production)?,
            web_app: parse_bool(src, "WEB_APP", !production)?,
            activity_retention_days,
            leaderboard_refresh: Duration::from_secs(leaderboard_refresh),
        })
    }

    /// Settings for tests and tools: development defaults with the given URI
    /// and database.
    pub fn for_database(uri: &str, database: &str) -> anyhow::Result<Self> {
        Self::from_source(&[("MONGODB_URI", uri), ("MONGODB_DB", database)])
            .context("building settings")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_product_spec() {
        let s = Settings::from_source(&[]).unwrap();
        assert_eq!(s.bind_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.mongo.database, "kairos");
        assert_eq!(s.mongo.max_pool_size, 200);
        assert_eq!(s.mongo.min_pool_size, 20);
        assert_eq!(s.mongo.server_selection_timeout, Duration::from_secs(5));
        assert_eq!(s.mongo.compressors, ["zstd", "snappy", "zlib"]);
        assert_eq!(s.cache.redis_timeout, Duration::from_millis(50));
        assert_eq!(s.cache.memory_max_entries, 10_000);
        assert_eq!(s.limits.auth_rate_limit_per_minute, 10);
        assert_eq!(s.limits.query_depth, 12);
        assert!(s.graphiql && s.introspection);
        assert!(s.mongo.lagging_read_preference.is_none());
        assert_eq!(s.jobs.batch_size, 2_000);
        assert!(s.jobs.worker_enabled);
        assert_eq!(s.shutdown_drain, Duration::ZERO);
        let prod = [
            ("APP_ENV", "production"),
            ("MONGODB_URI", "mongodb://db"),
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef0123456789"),
        ];
        let s = Settings::from_source(&prod).unwrap();
        assert_eq!(s.shutdown_drain, Duration::from_secs(5));
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = Settings::from_source(&[("REDIS_TIMEOUT_MS", "soon")]).unwrap_err();
        assert!(err.to_string().contains("REDIS_TIMEOUT_MS"), "{err}");
        let err = Settings::from_source(&[("BIND_ADDR", "nowhere")]).unwrap_err();
        assert!(err.to_string().contains("BIND_ADDR"), "{err}");
        let err = Settings::from_source(&[("MONGODB_URI", "postgres://x")]).unwrap_err();
        assert!(err.to_string().contains("MONGODB_URI"), "{err}");
    }
}
