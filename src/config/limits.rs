//! What one client or one request may ask of the service: query limits,
//! body size, rate limits, the request deadline and the browser origins.

use std::time::Duration;

use anyhow::bail;

use super::{Source, millis, parse_bool, parse_or};

/// Request limits.
#[derive(Debug, Clone)]
pub struct LimitSettings {
    /// `QUERY_DEPTH_LIMIT`, default 12: deepest selection a query may nest,
    /// refused before anything executes.
    pub query_depth: usize,
    /// `QUERY_COMPLEXITY_LIMIT`, default 1000: highest cost one request may
    /// have under the cost model of `graphql::cost` (objects 1, scalars 0, a
    /// page `first` times one item), so one request cannot ask for unbounded
    /// work; it is also the most fields a document may name.
    pub query_complexity: usize,
    /// `QUERY_ALIAS_LIMIT`, default 100: most aliases one document may use.
    /// Scalars cost nothing, so a flood of aliased scalars (or `__typename`)
    /// is stopped by this cap rather than by the cost. Fields repeated
    /// under the same key in one selection are capped by it too.
    pub query_aliases: usize,
    /// `RATE_LIMIT_COST_BUCKET`, default 2000 (must be positive): points a
    /// caller (the user, or the client address when anonymous) may spend at
    /// once; a request costing more than what is left is refused with 429.
    pub cost_bucket: u32,
    /// `RATE_LIMIT_COST_RESTORE_PER_SECOND`, default 100 (must be
    /// positive): points given back to every caller's bucket a second.
    pub cost_restore_per_second: u32,
    /// `RATE_LIMIT_COST_LEASE`, default a tenth of the bucket: points an
    /// instance takes from a caller's shared bucket in Redis at once and
    /// spends locally for up to a second, so most requests cost no round
    /// trip (`0`: every request goes to Redis, exact across instances).
    pub cost_lease: u32,
    /// `BODY_LIMIT_BYTES`, default 65536 (64 KiB): larger request bodies are
    /// answered 413 before they are read into memory.
    pub body_limit_bytes: usize,
    /// `RATE_LIMIT_PER_SECOND`, default 100 (must be positive): `/graphql`
    /// requests a second per client address.
    pub rate_limit_per_second: u64,
    /// `RATE_LIMIT_BURST`, default 200 (must be positive): requests a client
    /// address may send at once before the per-second rate applies.
    pub rate_limit_burst: u32,
    /// `AUTH_RATE_LIMIT_PER_MINUTE`, default 10 (`0` turns it off): `login`
    /// and `register` attempts per client address, to slow password
    /// guessing.
    pub auth_rate_limit_per_minute: u32,
    /// `TRUST_PROXY`, default false: take the client address from
    /// `X-Forwarded-For` (only behind a proxy that sets it; otherwise any
    /// client could pick its own bucket).
    pub trust_proxy: bool,
    /// `REQUEST_TIMEOUT_MS`, default 30000 (must be positive): longest a
    /// request may take before it is answered UNAVAILABLE; a backstop above
    /// the database deadlines, so no client waits forever.
    pub request_timeout: Duration,
    /// `CORS_ALLOWED_ORIGINS`, comma-separated, default empty: origins
    /// allowed to call the API from a browser (`*` for any); empty means
    /// same-origin only. Trailing slashes are dropped.
    pub cors_allowed_origins: Vec<String>,
}

impl LimitSettings {
    /// Reads the limits; rates and the deadline must be positive and every
    /// origin must look like `https://app.example.org`.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let cost_bucket = parse_or(src, "RATE_LIMIT_COST_BUCKET", 2_000)?;
        let limits = LimitSettings {
            query_depth: parse_or(src, "QUERY_DEPTH_LIMIT", 12)?,
            query_complexity: parse_or(src, "QUERY_COMPLEXITY_LIMIT", 1_000)?,
            query_aliases: parse_or(src, "QUERY_ALIAS_LIMIT", 100)?,
            cost_bucket,
            cost_restore_per_second: parse_or(src, "RATE_LIMIT_COST_RESTORE_PER_SECOND", 100)?,
            cost_lease: parse_or(src, "RATE_LIMIT_COST_LEASE", cost_bucket / 10)?,
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
        if limits.cost_bucket == 0 || limits.cost_restore_per_second == 0 {
            bail!(
                "invalid RATE_LIMIT_COST_BUCKET/RATE_LIMIT_COST_RESTORE_PER_SECOND: must be positive"
            );
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::Settings;

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
}
