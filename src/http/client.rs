//! The client address of a request, the key of every per-client limit.
//!
//! It is the socket's peer address, or — only when `TRUST_PROXY=true` — the
//! address that the proxy in front of the service appended to
//! `X-Forwarded-For`. Without a trusted proxy that header is whatever the
//! client wrote, so honouring it would let anyone pick a fresh rate-limit
//! bucket for every request.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
};

use axum::{
    extract::{ConnectInfo, FromRequestParts},
    http::{HeaderMap, Request, request::Parts},
};
use tower_governor::{GovernorError, key_extractor::KeyExtractor};

/// The socket's peer address, when the server was started with connect info
/// (always, through `Application::run_until`).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// The client address from the peer and, behind a trusted proxy, the last
/// `X-Forwarded-For` entry: the one the proxy itself appended. Entries to its
/// left were sent by the client and prove nothing.
pub fn client_ip(headers: &HeaderMap, peer: Option<IpAddr>, trust_proxy: bool) -> Option<IpAddr> {
    if trust_proxy && let Some(forwarded) = last_forwarded_for(headers) {
        return Some(forwarded);
    }
    peer
}

fn last_forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|entry| entry.trim().parse::<IpAddr>().ok())
        .next_back()
}

/// The rate-limit key of tower_governor: the client address as above.
#[derive(Debug, Clone, Copy)]
pub struct ClientKey {
    pub trust_proxy: bool,
}

impl KeyExtractor for ClientKey {
    type Key = IpAddr;

    fn extract<T>(&self, req: &Request<T>) -> Result<Self::Key, GovernorError> {
        let peer = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip());
        client_ip(req.headers(), peer, self.trust_proxy).ok_or(GovernorError::UnableToExtractKey)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_forwarded_header_is_ignored_without_a_trusted_proxy() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let got = client_ip(&headers(&["203.0.113.9"]), Some(peer), false);
        assert_eq!(got, Some(peer));
    }

    #[test]
    fn behind_a_trusted_proxy_the_last_forwarded_entry_is_the_client() {
        let peer: IpAddr = "10.0.0.1".parse().unwrap();
        let h = headers(&["198.51.100.7, 203.0.113.9", "192.0.2.4"]);
        assert_eq!(
            client_ip(&h, Some(peer), true),
            Some("192.0.2.4".parse().unwrap())
        );
        let junk = headers(&["not an address"]);
        assert_eq!(client_ip(&junk, Some(peer), true), Some(peer));
    }
}
