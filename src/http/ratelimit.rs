//! Rate limits per client address (see `client`).
//!
//! Two limits, both in memory per instance:
//! - every request to `/graphql` passes tower_governor's token bucket
//!   (`RATE_LIMIT_PER_SECOND`, `RATE_LIMIT_BURST`); a refusal is HTTP 429
//!   with `Retry-After` and a GraphQL-shaped body coded RATE_LIMITED;
//! - `login` and `register` also pass a per-minute bucket
//!   (`AUTH_RATE_LIMIT_PER_MINUTE`), so that password guessing and account
//!   farming stay slow even below the HTTP limit; a refusal is a GraphQL
//!   error RATE_LIMITED on that field.

use std::{
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Weak},
    time::Duration,
};

use axum::{
    body::Body,
    http::{HeaderValue, Response, StatusCode, header},
};
use governor::{
    DefaultKeyedRateLimiter, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
};
use tower_governor::{GovernorError, GovernorLayer, governor::GovernorConfigBuilder};

use super::{client::ClientKey, metrics::Metrics};
use crate::{
    config::LimitSettings,
    error::{Code, error_response},
};

/// How often idle buckets are dropped, so that the limiters' memory follows
/// the number of recent clients, not of all clients ever seen.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The tower_governor layer of `/graphql`.
pub type HttpLimitLayer = GovernorLayer<
    ClientKey,
    governor::middleware::NoOpMiddleware<governor::clock::QuantaInstant>,
    Body,
>;

/// Builds the HTTP limit: `per_second` tokens a second, `burst` at most.
pub fn http_layer(limits: &LimitSettings, metrics: Metrics) -> HttpLimitLayer {
    let period = Duration::from_nanos((1_000_000_000 / limits.rate_limit_per_second).max(1));
    let config = GovernorConfigBuilder::default()
        .key_extractor(ClientKey {
            trust_proxy: limits.trust_proxy,
        })
        .period(period)
        .burst_size(limits.rate_limit_burst)
        .finish()
        .expect("the settings guarantee a positive rate and burst");
    prune_in_background(Arc::downgrade(config.limiter()), |l| l.retain_recent());
    GovernorLayer::new(config).error_handler(move |err| refusal(&metrics, err))
}

/// The answer to a request the HTTP limit refused.
fn refusal(metrics: &Metrics, err: GovernorError) -> Response<Body> {
    match err {
        GovernorError::TooManyRequests { wait_time, .. } => {
            metrics.rate_limited("http");
            let mut resp = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                Code::RateLimited,
                "too many requests from this address: retry after the delay in Retry-After",
            );
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait_time.max(1)));
            resp
        }
        // The address cannot be missing when serving through
        // `Application::run_until`; refuse rather than share one bucket.
        GovernorError::UnableToExtractKey | GovernorError::Other { .. } => {
            tracing::error!("rate limit: no client address for a request");
            error_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                Code::Internal,
                "internal error",
            )
        }
    }
}

/// Drops idle buckets every minute until the limiter is gone.
fn prune_in_background<T: Send + Sync + 'static>(limiter: Weak<T>, prune: fn(&T)) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(PRUNE_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            match limiter.upgrade() {
                Some(l) => prune(&l),
                None => break,
            }
        }
    });
}

/// The per-address limit of `login` and `register`.
pub struct AuthLimiter {
    /// `None` when `AUTH_RATE_LIMIT_PER_MINUTE=0` (no limit).
    limiter: Option<Arc<DefaultKeyedRateLimiter<IpAddr>>>,
}

impl AuthLimiter {
    pub fn new(per_minute: u32) -> Self {
        let limiter = NonZeroU32::new(per_minute).map(|n| {
            let limiter = Arc::new(RateLimiter::keyed(Quota::per_minute(n)));
            prune_in_background(Arc::downgrade(&limiter), |l| l.retain_recent());
            limiter
        });
        AuthLimiter { limiter }
    }

    /// Takes one attempt from `addr`'s bucket; the error says how long to wait.
    pub fn check(&self, addr: IpAddr) -> Result<(), Duration> {
        let Some(limiter) = &self.limiter else {
            return Ok(());
        };
        limiter
            .check_key(&addr)
            .map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_auth_limit_refuses_past_its_quota_per_address() {
        let limiter = AuthLimiter::new(2);
        let (a, b): (IpAddr, IpAddr) = ("192.0.2.1".parse().unwrap(), "192.0.2.2".parse().unwrap());
        assert!(limiter.check(a).is_ok());
        assert!(limiter.check(a).is_ok());
        let wait = limiter.check(a).unwrap_err();
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60));
        assert!(
            limiter.check(b).is_ok(),
            "another address has its own bucket"
        );
    }

    #[test]
    fn zero_attempts_per_minute_turns_the_auth_limit_off() {
        let limiter = AuthLimiter::new(0);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        assert!((0..100).all(|_| limiter.check(a).is_ok()));
    }
}
