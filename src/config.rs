//! Typed settings, read once from the environment (and an optional `.env`).
//!
//! Every variable is documented in `.env.example` with its default. A value
//! that does not parse stops the start with a message naming the variable, so
//! an operator never runs a service configured differently from what they
//! wrote.

use std::{net::SocketAddr, str::FromStr, time::Duration};

use anyhow::{Context, bail};

/// Where the service runs; `production` hardens the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    Development,
    Production,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Pretty,
    Json,
}

/// The development JWT secret, used only outside production when none is set.
const DEV_JWT_SECRET: &str = "kairos-development-secret-do-not-use-in-production";

/// All configuration of one Kairos process.
#[derive(Debug, Clone)]
pub struct Settings {
    pub app_env: AppEnv,
    pub bind_addr: SocketAddr,
    pub log_format: LogFormat,
    pub mongo: MongoSettings,
    pub auth: AuthSettings,
    pub limits: LimitSettings,
    pub cache: CacheSettings,
    pub jobs: JobSettings,
    pub graphql: GraphqlSettings,
    /// Serve GraphiQL on `GET /graphql` and `/` for browsers.
    pub graphiql: bool,
    /// Answer introspection queries (`__schema`, `__type`).
    pub introspection: bool,
    /// Serve the web app at `/app` (`WEB_APP`; off in production unless set).
    pub web_app: bool,
    /// How long activity entries are kept (TTL index on `activity.at`).
    pub activity_retention_days: u32,
}

/// MongoDB connection and pool settings (PRODUCT.md, "MongoDB client").
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// `None` only in development, where `mongodb://127.0.0.1:27017` is used.
    pub uri: String,
    pub database: String,
    pub max_pool_size: u32,
    pub min_pool_size: u32,
    pub max_idle_time: Duration,
    pub connect_timeout: Duration,
    /// The driver's default is 30 s whatever `connect_timeout` says; a client
    /// must learn that the database is gone much sooner than that.
    pub server_selection_timeout: Duration,
    /// Deadline of one database operation: sent as `maxTimeMS` and enforced
    /// on the client side too.
    pub operation_timeout: Duration,
    /// Wire compressors offered to the server, in preference order.
    pub compressors: Vec<String>,
    /// Where reads that may lag (the admin dashboard) go; `None` is the
    /// primary. With a replica set, `secondaryPreferred` keeps those heavy
    /// aggregations off the primary that serves writes.
    pub lagging_read_preference: Option<mongodb::options::ReadPreference>,
}

/// Token settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    pub jwt_secret: String,
    pub token_ttl: Duration,
}

/// Request limits.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    pub query_depth: usize,
    pub query_complexity: usize,
    pub body_limit_bytes: usize,
    pub rate_limit_per_second: u64,
    pub rate_limit_burst: u32,
    pub auth_rate_limit_per_minute: u32,
    /// Take the client address from `X-Forwarded-For` (only behind a proxy
    /// that sets it; otherwise any client could pick its own bucket).
    pub trust_proxy: bool,
    /// Longest a request may take before it is answered UNAVAILABLE; a
    /// backstop above the database deadlines, so no client waits forever.
    pub request_timeout: Duration,
    /// Origins allowed to call the API from a browser (`*` for any); empty
    /// means same-origin only.
    pub cors_allowed_origins: Vec<String>,
}

/// Cache settings (PRODUCT.md, "Cache").
#[derive(Debug, Clone)]
pub struct CacheSettings {
    pub redis_url: Option<String>,
    pub redis_timeout: Duration,
    pub memory_max_entries: u64,
    pub ttl_stats: Duration,
    pub ttl_modules: Duration,
    pub ttl_progress: Duration,
    pub ttl_history: Duration,
    pub ttl_dashboard: Duration,
    /// Longest life of a memory entry while Redis is configured but down:
    /// other instances cannot see this one's writes then.
    pub degraded_ttl: Duration,
    /// Namespace of every Redis key of this deployment.
    pub key_prefix: String,
    pub redis_pool_size: usize,
    /// Bypass the cache entirely (benchmarks' uncached baseline, debugging).
    pub disabled: bool,
}

/// The background fan-out of notifications: durable jobs in the `jobs`
/// collection, claimed by a worker in each instance.
#[derive(Debug, Clone)]
pub struct JobSettings {
    /// Run a worker in this instance (every instance may; each job is
    /// still done once).
    pub worker_enabled: bool,
    /// Notifications inserted per round: large enough to be quick, small
    /// enough that one round stays far inside the lease.
    pub batch_size: usize,
    /// How long a claimed job is reserved for its worker without news from
    /// it; a crashed worker's job is taken over when this passes.
    pub lease: Duration,
    /// How often an idle worker looks for work (a publish on the same
    /// instance wakes it at once).
    pub poll: Duration,
    /// Attempts before a job is given up as failed.
    pub max_attempts: u32,
    /// First retry delay; doubled per attempt, capped at five minutes.
    pub retry_base: Duration,
}

/// How persisted queries are handled (`PERSISTED_QUERIES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistedMode {
    /// Any query text is accepted; no hash is ever looked up.
    Off,
    /// Automatic persisted queries (the Apollo APQ protocol): a client
    /// registers a query by sending it with its SHA-256 once, then sends the
    /// hash alone. Query text is still accepted.
    Automatic,
    /// Trusted documents: only the operations of the manifest run, by hash
    /// or by their exact text.
    Allowlist,
}

/// GraphQL request handling.
#[derive(Debug, Clone)]
pub struct GraphqlSettings {
    pub persisted: PersistedMode,
    /// The trusted-documents manifest (`PERSISTED_QUERIES_MANIFEST`), read
    /// at start; required in allowlist mode.
    pub manifest: Option<std::path::PathBuf>,
    /// How long a registered APQ document is kept in the shared cache.
    pub persisted_ttl: Duration,
    /// Parsed documents kept per process (0 parses every request).
    pub document_cache_entries: u64,
}

/// A source of configuration values: the process environment in production,
/// a map in tests.
pub trait Source {
    fn get(&self, key: &str) -> Option<String>;
}

/// Reads the process environment.
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
fn parse_or<T: FromStr>(src: &dyn Source, key: &str, default: T) -> anyhow::Result<T>
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

fn parse_bool(src: &dyn Source, key: &str, default: bool) -> anyhow::Result<bool> {
    match src.get(key).as_deref().map(str::trim) {
        None => Ok(default),
        Some("1" | "true" | "TRUE" | "yes" | "on") => Ok(true),
        Some("0" | "false" | "FALSE" | "no" | "off") => Ok(false),
        Some(other) => bail!("invalid {key}={other:?}: expected true or false"),
    }
}

fn secs(src: &dyn Source, key: &str, default: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_secs(parse_or(src, key, default)?))
}

fn millis(src: &dyn Source, key: &str, default: u64) -> anyhow::Result<Duration> {
    Ok(Duration::from_millis(parse_or(src, key, default)?))
}

/// `MONGODB_READ_PREFERENCE` for reads that may lag; `primary` (the
/// default) means none is set.
fn read_preference(src: &dyn Source) -> anyhow::Result<Option<mongodb::options::ReadPreference>> {
    use mongodb::options::ReadPreference;
    Ok(
        match src.get("MONGODB_READ_PREFERENCE").as_deref().map(str::trim) {
            None | Some("primary") => None,
            Some("primaryPreferred") => Some(ReadPreference::PrimaryPreferred { options: None }),
            Some("secondary") => Some(ReadPreference::Secondary { options: None }),
            Some("secondaryPreferred") => {
                Some(ReadPreference::SecondaryPreferred { options: None })
            }
            Some("nearest") => Some(ReadPreference::Nearest { options: None }),
            Some(other) => bail!(
                "invalid MONGODB_READ_PREFERENCE={other:?}: expected primary, primaryPreferred, secondary, secondaryPreferred or nearest"
            ),
        },
    )
}

impl Settings {
    /// Loads `.env` (when present) and then the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        let _ = dotenvy::dotenv();
        Self::from_source(&ProcessEnv)
    }

    /// Builds settings from any source, validating every value.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let app_env = match src.get("APP_ENV").as_deref().map(str::trim) {
            None | Some("development" | "dev" | "test") => AppEnv::Development,
            Some("production" | "prod") => AppEnv::Production,
            Some(other) => {
                bail!("invalid APP_ENV={other:?}: expected development or production")
            }
        };
        let production = app_env == AppEnv::Production;
        let log_format = match src.get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("invalid LOG_FORMAT={other:?}: expected pretty or json"),
        };
        let bind_addr = parse_or(src, "BIND_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?;

        let uri = match src.get("MONGODB_URI") {
            Some(uri) => uri,
            None if production => bail!("MONGODB_URI is required when APP_ENV=production"),
            None => "mongodb://127.0.0.1:27017".to_string(),
        };
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            bail!("invalid MONGODB_URI: must start with mongodb:// or mongodb+srv://");
        }
        let database = src.get("MONGODB_DB").unwrap_or_else(|| "kairos".into());
        if database.is_empty() || database.contains(['/', '\\', '.', ' ', '"', '$']) {
            bail!("invalid MONGODB_DB={database:?}: not a MongoDB database name");
        }
        let compressors: Vec<String> = src
            .get("MONGODB_COMPRESSORS")
            .unwrap_or_else(|| "zstd,snappy,zlib".into())
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && s != "none")
            .collect();
        if let Some(bad) = compressors
            .iter()
            .find(|c| !matches!(c.as_str(), "zstd" | "snappy" | "zlib"))
        {
            bail!("invalid MONGODB_COMPRESSORS: unknown compressor {bad:?}");
        }
        let mongo = MongoSettings {
            uri,
            database,
            max_pool_size: parse_or(src, "MONGODB_MAX_POOL_SIZE", 200)?,
            min_pool_size: parse_or(src, "MONGODB_MIN_POOL_SIZE", 20)?,
            max_idle_time: secs(src, "MONGODB_MAX_IDLE_SECS", 60)?,
            connect_timeout: millis(src, "MONGODB_CONNECT_TIMEOUT_MS", 5_000)?,
            server_selection_timeout: millis(src, "MONGODB_SERVER_SELECTION_TIMEOUT_MS", 5_000)?,
            operation_timeout: millis(src, "MONGODB_OPERATION_TIMEOUT_MS", 20_000)?,
            compressors,
            lagging_read_preference: read_preference(src)?,
        };
        if mongo.min_pool_size > mongo.max_pool_size {
            bail!("invalid MONGODB_MIN_POOL_SIZE: larger than MONGODB_MAX_POOL_SIZE");
        }

        let jwt_secret = match src.get("JWT_SECRET") {
            Some(s) if production && s.len() < 32 => {
                bail!("invalid JWT_SECRET: must be at least 32 bytes when APP_ENV=production")
            }
            Some(s) => s,
            None if production => bail!("JWT_SECRET is required when APP_ENV=production"),
            None => DEV_JWT_SECRET.to_string(),
        };
        let auth = AuthSettings {
            jwt_secret,
            token_ttl: secs(src, "JWT_TTL_SECS", 24 * 3600)?,
        };

        let limits = LimitSettings {
            query_depth: parse_or(src, "QUERY_DEPTH_LIMIT", 12)?,
            query_complexity: parse_or(src, "QUERY_COMPLEXITY_LIMIT", 1_000)?,
            body_limit_bytes: parse_or(src, "BODY_LIMIT_BYTES", 64 * 1024)?,
            rate_limit_per_second: parse_or(src, "RATE_LIMIT_PER_SECOND", 100)?,
            rate_limit_burst: parse_or(src, "RATE_LIMIT_BURST", 200)?,
            auth_rate_limit_per_minute: parse_or(src, "AUTH_RATE_LIMIT_PER_MINUTE", 10)?,
            trust_proxy: parse_bool(src, "TRUST_PROXY", false)?,
            request_timeout: millis(src, "REQUEST_TIMEOUT_MS", 30_000)?,
            cors_allowed_origins: src
                .get("CORS_ALLOWED_ORIGINS")
                .unwrap_or_default()
                .split(',')
                .map(|o| o.trim().trim_end_matches('/').to_string())
                .filter(|o| !o.is_empty())
                .collect(),
        };
        if limits.request_timeout.is_zero() {
            bail!("invalid REQUEST_TIMEOUT_MS: must be positive");
        }
        if let Some(bad) = limits.cors_allowed_origins.iter().find(|o| {
            *o != "*"
                && !((o.starts_with("http://") || o.starts_with("https://"))
                    && axum::http::HeaderValue::from_str(o).is_ok())
        }) {
            bail!(
                "invalid CORS_ALLOWED_ORIGINS: {bad:?} is not an origin like https://app.example.org"
            );
        }
        if limits.rate_limit_per_second == 0 || limits.rate_limit_burst == 0 {
            bail!("invalid RATE_LIMIT_PER_SECOND/RATE_LIMIT_BURST: must be positive");
        }

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
        let cache = CacheSettings {
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
        };

        let jobs = JobSettings {
            worker_enabled: parse_bool(src, "WORKER_ENABLED", true)?,
            batch_size: parse_or(src, "NOTIFY_BATCH_SIZE", 2_000usize)?,
            lease: secs(src, "JOB_LEASE_SECS", 30)?,
            poll: millis(src, "JOB_POLL_MS", 1_000)?,
            max_attempts: parse_or(src, "JOB_MAX_ATTEMPTS", 8u32)?,
            retry_base: millis(src, "JOB_RETRY_BASE_MS", 1_000)?,
        };
        if !(1..=10_000).contains(&jobs.batch_size) {
            bail!("invalid NOTIFY_BATCH_SIZE: must be between 1 and 10000");
        }
        if jobs.lease.is_zero() || jobs.poll.is_zero() || jobs.max_attempts == 0 {
            bail!("invalid JOB_LEASE_SECS/JOB_POLL_MS/JOB_MAX_ATTEMPTS: must be positive");
        }

        let persisted = match src.get("PERSISTED_QUERIES").as_deref().map(str::trim) {
            None | Some("automatic" | "apq") => PersistedMode::Automatic,
            Some("off") => PersistedMode::Off,
            Some("allowlist") => PersistedMode::Allowlist,
            Some(other) => {
                bail!("invalid PERSISTED_QUERIES={other:?}: expected automatic, off or allowlist")
            }
        };
        let manifest = src
            .get("PERSISTED_QUERIES_MANIFEST")
            .map(|p| std::path::PathBuf::from(p.trim()));
        if persisted == PersistedMode::Allowlist && manifest.is_none() {
            bail!(
                "PERSISTED_QUERIES=allowlist needs PERSISTED_QUERIES_MANIFEST (the manifest file)"
            );
        }
        let graphql = GraphqlSettings {
            persisted,
            manifest,
            persisted_ttl: secs(src, "CACHE_TTL_PERSISTED_QUERIES_SECS", 7 * 24 * 3600)?,
            document_cache_entries: parse_or(src, "GRAPHQL_DOCUMENT_CACHE_ENTRIES", 1_000u64)?,
        };
        if graphql.persisted_ttl.is_zero() {
            bail!("invalid CACHE_TTL_PERSISTED_QUERIES_SECS: must be at least 1");
        }

        let activity_retention_days = parse_or(src, "ACTIVITY_RETENTION_DAYS", 365u32)?;
        if activity_retention_days == 0 {
            bail!("invalid ACTIVITY_RETENTION_DAYS: must be at least 1");
        }

        Ok(Settings {
            app_env,
            bind_addr,
            log_format,
            mongo,
            auth,
            limits,
            cache,
            jobs,
            graphql,
            graphiql: parse_bool(src, "GRAPHIQL", !production)?,
            introspection: parse_bool(src, "INTROSPECTION", !production)?,
            web_app: parse_bool(src, "WEB_APP", !production)?,
            activity_retention_days,
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
    }

    #[test]
    fn job_settings_and_the_read_preference_are_validated() {
        let err = Settings::from_source(&[("NOTIFY_BATCH_SIZE", "0")]).unwrap_err();
        assert!(err.to_string().contains("NOTIFY_BATCH_SIZE"), "{err}");
        let err = Settings::from_source(&[("MONGODB_READ_PREFERENCE", "anywhere")]).unwrap_err();
        assert!(err.to_string().contains("MONGODB_READ_PREFERENCE"), "{err}");
        let s =
            Settings::from_source(&[("MONGODB_READ_PREFERENCE", "secondaryPreferred")]).unwrap();
        assert!(s.mongo.lagging_read_preference.is_some());
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

    #[test]
    fn cors_origins_and_the_request_timeout_are_validated() {
        let s = Settings::from_source(&[(
            "CORS_ALLOWED_ORIGINS",
            "https://app.example.org/, http://localhost:5173",
        )])
        .unwrap();
        assert_eq!(
            s.limits.cors_allowed_origins,
            ["https://app.example.org", "http://localhost:5173"]
        );
        assert_eq!(s.limits.request_timeout, Duration::from_secs(30));
        let err =
            Settings::from_source(&[("CORS_ALLOWED_ORIGINS", "app.example.org")]).unwrap_err();
        assert!(err.to_string().contains("CORS_ALLOWED_ORIGINS"), "{err}");
        let err = Settings::from_source(&[("REQUEST_TIMEOUT_MS", "0")]).unwrap_err();
        assert!(err.to_string().contains("REQUEST_TIMEOUT_MS"), "{err}");
    }

    #[test]
    fn production_requires_a_long_jwt_secret_and_hardens_defaults() {
        let base = ("MONGODB_URI", "mongodb://db:27017");
        let err = Settings::from_source(&[("APP_ENV", "production"), base]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        let err =
            Settings::from_source(&[("APP_ENV", "production"), base, ("JWT_SECRET", "short")])
                .unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        let s = Settings::from_source(&[
            ("APP_ENV", "production"),
            base,
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert!(!s.graphiql && !s.introspection);
    }
}
