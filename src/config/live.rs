//! Live updates: the limits of GraphQL subscriptions over WebSocket.

use std::time::Duration;

use anyhow::bail;

use super::{Source, parse_or, secs};

/// Subscriptions over WebSocket (PRODUCT.md, "Subscriptions").
#[derive(Debug, Clone)]
pub struct LiveSettings {
    /// `WS_KEEPALIVE_SECS`, default 25 (1 to 55): how often the server pings
    /// an open socket, well inside the 60 s idle timeout of common proxies
    /// and load balancers, so a quiet subscription is not cut.
    pub keepalive: Duration,
    /// `WS_CONNECTION_INIT_TIMEOUT_SECS`, default 10: how long a socket may
    /// stay open without `connection_init` (protocol close 4408), so idle
    /// unauthenticated sockets do not pile up.
    pub init_timeout: Duration,
    /// `WS_MAX_SUBSCRIPTIONS_PER_CONNECTION`, default 20: active operations
    /// on one socket; a web app needs a handful.
    pub max_subscriptions_per_connection: usize,
    /// `WS_MAX_CONNECTIONS_PER_USER`, default 10: open sockets of one user
    /// on one instance (tabs and devices), so one account cannot hold
    /// thousands.
    pub max_connections_per_user: usize,
    /// `WS_MAX_CONNECTIONS_PER_ADDRESS`, default 200: open sockets from one
    /// client address on one instance (signed in or not yet), generous for
    /// offices behind one NAT.
    pub max_connections_per_address: usize,
    /// `WS_SEND_BUFFER`, default 64 (at least 1): messages queued for one
    /// socket; a client that lets it fill (it does not read) is closed
    /// with 1008, so memory per socket stays bounded.
    pub send_buffer: usize,
    /// `WS_EVENT_BUFFER`, default 32 (at least 1): events queued per user
    /// and topic on this instance before the slowest of that user's
    /// subscriptions misses some (counted as dropped).
    pub event_buffer: usize,
}

impl LiveSettings {
    /// Reads the `WS_*` variables; zero limits and a keepalive outside
    /// 1..=55 s are refused.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let live = LiveSettings {
            keepalive: secs(src, "WS_KEEPALIVE_SECS", 25)?,
            init_timeout: secs(src, "WS_CONNECTION_INIT_TIMEOUT_SECS", 10)?,
            max_subscriptions_per_connection: parse_or(
                src,
                "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
                20usize,
            )?,
            max_connections_per_user: parse_or(src, "WS_MAX_CONNECTIONS_PER_USER", 10usize)?,
            max_connections_per_address: parse_or(src, "WS_MAX_CONNECTIONS_PER_ADDRESS", 200usize)?,
            send_buffer: parse_or(src, "WS_SEND_BUFFER", 64usize)?,
            event_buffer: parse_or(src, "WS_EVENT_BUFFER", 32usize)?,
        };
        if !(1..=55).contains(&live.keepalive.as_secs()) {
            bail!("invalid WS_KEEPALIVE_SECS: must be between 1 and 55");
        }
        if live.init_timeout.is_zero() {
            bail!("invalid WS_CONNECTION_INIT_TIMEOUT_SECS: must be positive");
        }
        for (name, v) in [
            (
                "WS_MAX_SUBSCRIPTIONS_PER_CONNECTION",
                live.max_subscriptions_per_connection,
            ),
            ("WS_MAX_CONNECTIONS_PER_USER", live.max_connections_per_user),
            (
                "WS_MAX_CONNECTIONS_PER_ADDRESS",
                live.max_connections_per_address,
            ),
            ("WS_SEND_BUFFER", live.send_buffer),
            ("WS_EVENT_BUFFER", live.event_buffer),
        ] {
            if v == 0 {
                bail!("invalid {name}: must be at least 1");
            }
        }
        Ok(live)
    }
}

#[cfg(test)]
mod tests {
    use super::super::Settings;

    #[test]
    fn live_limits_are_validated() {
        let s = Settings::from_source(&[]).unwrap();
        assert_eq!(s.live.keepalive.as_secs(), 25);
        assert_eq!(s.live.max_subscriptions_per_connection, 20);
        let err = Settings::from_source(&[("WS_KEEPALIVE_SECS", "90")]).unwrap_err();
        assert!(err.to_string().contains("WS_KEEPALIVE_SECS"), "{err}");
        let err = Settings::from_source(&[("WS_SEND_BUFFER", "0")]).unwrap_err();
        assert!(err.to_string().contains("WS_SEND_BUFFER"), "{err}");
    }
}
