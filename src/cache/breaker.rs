//! The circuit breaker in front of Redis.
//!
//! Closed: Redis is used. After `FAILURE_THRESHOLD` consecutive failures
//! (timeouts included), or at once when an invalidation could not reach
//! Redis, it opens: requests go to the memory cache without waiting on
//! Redis, and the probe task pings Redis after a back-off that doubles up to
//! `MAX_BACKOFF` (or at once when the client reports a reconnection). A
//! successful probe replays the invalidations Redis missed
//! and closes it.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::Notify;

/// Consecutive failures that open the breaker.
pub const FAILURE_THRESHOLD: u32 = 3;
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Short: reconnection events make a probe due at once anyway, and a probe
/// is one `PING`.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The state shown in `/metrics` and `cacheStats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum BreakerState {
    Closed,
    Open,
}

#[derive(Debug)]
struct Inner {
    open: bool,
    failures: u32,
    next_probe: Instant,
    backoff: Duration,
    /// Set when the breaker opens; the cache reacts once.
    just_opened: bool,
}

#[derive(Debug)]
pub struct Breaker {
    inner: Mutex<Inner>,
    /// Wakes the probe task when the breaker opens or a probe is due now.
    wake: Notify,
}

impl Breaker {
    /// A breaker that starts open: Redis is used only once a probe has
    /// answered, so a dead Redis never delays the first requests.
    pub fn new_open() -> Self {
        Breaker {
            inner: Mutex::new(Inner {
                open: true,
                failures: 0,
                next_probe: Instant::now(),
                backoff: MIN_BACKOFF,
                just_opened: false,
            }),
            wake: Notify::new(),
        }
    }

    /// Until the breaker opens or a probe is due now (or `within`).
    pub async fn woken(&self, within: Duration) {
        let _ = tokio::time::timeout(within, self.wake.notified()).await;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("breaker poisoned")
    }

    pub fn allows(&self) -> bool {
        !self.lock().open
    }

    pub fn state(&self) -> BreakerState {
        if self.lock().open {
            BreakerState::Open
        } else {
            BreakerState::Closed
        }
    }

    pub fn success(&self) {
        self.lock().failures = 0;
    }

    /// Records a failure; true when it opened the breaker.
    pub fn failure(&self) -> bool {
        let mut s = self.lock();
        s.failures += 1;
        if !s.open && s.failures >= FAILURE_THRESHOLD {
            Self::open(&mut s);
            drop(s);
            self.wake.notify_one();
            return true;
        }
        false
    }

    /// An invalidation did not reach Redis: open now (the cache replays it
    /// before Redis is trusted again).
    pub fn trip(&self) {
        let mut s = self.lock();
        if !s.open {
            Self::open(&mut s);
            drop(s);
            self.wake.notify_one();
        }
    }

    fn open(s: &mut Inner) {
        s.open = true;
        s.just_opened = true;
        s.backoff = MIN_BACKOFF;
        s.next_probe = Instant::now() + MIN_BACKOFF;
    }

    /// Whether the cache has yet to react to the breaker opening.
    pub fn take_just_opened(&self) -> bool {
        std::mem::take(&mut self.lock().just_opened)
    }

    /// The client reconnected: probe now rather than after the back-off.
    pub fn probe_now(&self) {
        let mut s = self.lock();
        s.backoff = MIN_BACKOFF;
        s.next_probe = Instant::now();
        drop(s);
        self.wake.notify_one();
    }

    /// Whether a probe is due now.
    pub fn probe_due(&self) -> bool {
        let s = self.lock();
        s.open && Instant::now() >= s.next_probe
    }

    /// A probe failed: wait longer before the next.
    pub fn probe_failed(&self) {
        let mut s = self.lock();
        s.backoff = (s.backoff * 2).min(MAX_BACKOFF);
        s.next_probe = Instant::now() + s.backoff;
    }

    /// A probe succeeded (and missed invalidations were replayed): close.
    pub fn close(&self) {
        let mut s = self.lock();
        s.open = false;
        s.failures = 0;
        s.backoff = MIN_BACKOFF;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_opens_after_repeated_failures_and_closes_after_a_probe() {
        let b = Breaker::new_open();
        b.close();
        assert!(b.allows());
        assert!(!b.failure());
        assert!(!b.failure());
        assert!(b.failure());
        assert!(!b.allows());
        assert!(b.take_just_opened());
        assert!(!b.take_just_opened());
        b.probe_failed();
        assert!(!b.probe_due(), "back-off after a failed probe");
        b.close();
        assert!(b.allows());
    }

    #[test]
    fn a_missed_invalidation_opens_at_once() {
        let b = Breaker::new_open();
        b.close();
        b.trip();
        assert!(!b.allows());
    }
}
