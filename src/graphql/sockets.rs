//! The WebSocket sockets of one instance: their per-user and per-address
//! limits, their counts and metrics, and the shutdown signal that closes
//! them all. Held by the HTTP endpoint; used by [`super::ws`].

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use bson::oid::ObjectId;
use metrics::Label;
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use crate::{
    config::LiveSettings,
    http::metrics::{Metrics, names},
};

/// The sockets of this instance: their limits, their counts and the
/// shutdown signal that closes them all.
pub struct Sockets {
    pub(super) settings: LiveSettings,
    pub(super) metrics: Metrics,
    pub(super) per_user: Mutex<HashMap<ObjectId, usize>>,
    pub(super) per_address: Mutex<HashMap<IpAddr, usize>>,
    /// Turns true when the instance stops.
    pub(super) closing: watch::Sender<bool>,
    pub(super) open: AtomicUsize,
    /// Signalled whenever a socket ends (for the shutdown drain).
    ended: Notify,
}

impl Sockets {
    pub fn new(settings: LiveSettings, metrics: Metrics) -> Self {
        Sockets {
            settings,
            metrics,
            per_user: Mutex::default(),
            per_address: Mutex::default(),
            closing: watch::channel(false).0,
            open: AtomicUsize::new(0),
            ended: Notify::new(),
        }
    }

    /// Open sockets on this instance.
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Closes every socket with 1012 (Service Restart), so that clients
    /// reconnect to another instance, and waits up to `within` for them to
    /// go. New upgrades are refused from now on.
    pub async fn close_all(&self, within: Duration) {
        self.closing.send_replace(true);
        let deadline = Instant::now() + within;
        while self.open() > 0 {
            let ended = self.ended.notified();
            if self.open() == 0 || tokio::time::timeout_at(deadline, ended).await.is_err() {
                break;
            }
        }
        if self.open() > 0 {
            tracing::warn!(
                open = self.open(),
                "subscription sockets still open at shutdown"
            );
        }
    }

    pub(super) fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Takes one slot of `key` under `max`; `None` when full.
    pub(super) fn take<K: std::hash::Hash + Eq + Copy>(
        map: &Mutex<HashMap<K, usize>>,
        key: K,
        max: usize,
    ) -> Option<()> {
        let mut map = map.lock().expect("socket counts poisoned");
        let n = map.entry(key).or_default();
        if *n >= max {
            if *n == 0 {
                map.remove(&key);
            }
            return None;
        }
        *n += 1;
        Some(())
    }

    pub(super) fn give<K: std::hash::Hash + Eq + Copy>(map: &Mutex<HashMap<K, usize>>, key: K) {
        let mut map = map.lock().expect("socket counts poisoned");
        if let Some(n) = map.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                map.remove(&key);
            }
        }
    }

    pub(super) fn closed(&self, code: u16) {
        self.metrics
            .counter(names::WS_CLOSED, vec![Label::new("code", code.to_string())])
            .increment(1);
    }
}

/// What one open socket holds of the shared counts; released on drop.
pub(super) struct Slots {
    pub(super) sockets: Arc<Sockets>,
    pub(super) address: Option<IpAddr>,
    pub(super) user: Option<ObjectId>,
}

impl Drop for Slots {
    fn drop(&mut self) {
        if let Some(a) = self.address {
            Sockets::give(&self.sockets.per_address, a);
        }
        if let Some(u) = self.user {
            Sockets::give(&self.sockets.per_user, u);
        }
        self.sockets.open.fetch_sub(1, Ordering::Relaxed);
        self.sockets
            .metrics
            .gauge(names::WS_CONNECTIONS, vec![])
            .decrement(1.0);
        self.sockets.ended.notify_waiters();
    }
}
