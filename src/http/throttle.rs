//! The cost bucket of each caller: a leaky bucket of points, as Shopify's
//! GraphQL API throttles its clients.
//!
//! Each caller (the signed-in user, or the client address when anonymous)
//! has `RATE_LIMIT_COST_BUCKET` points, given back at
//! `RATE_LIMIT_COST_RESTORE_PER_SECOND`. A request reserves its requested
//! cost before it runs (refused when fewer points are left) and is charged
//! its actual cost after (the difference is given back), so concurrent
//! requests can never spend the same points twice.
//!
//! The buckets live in Redis, shared by every instance: one Lua script per
//! step (one atomic round trip), on one hash-tagged key per caller (one
//! hash slot, so it runs on Redis Cluster), timed by Redis' own clock (so
//! instances with skewed clocks agree). While Redis is not configured or
//! the cache's breaker is open, each instance keeps its own buckets in
//! memory; they forget nothing but what other instances spent.
//!
//! **Leases.** A round trip per request would make Redis the floor of
//! every request, free ones included. So an instance takes points from a
//! caller's shared bucket a *lease* at a time (`RATE_LIMIT_COST_LEASE`,
//! a tenth of the bucket by default, or the request's cost when higher)
//! and spends them locally for up to [`LEASE_LIFE`]; what is left of a
//! lease goes back to the bucket with the next round trip. Points are
//! still never spent twice (a lease is taken out of the shared bucket),
//! and a caller's requests on one instance wait for one round trip
//! between them. What a lease changes is fairness at the edge: points
//! leased by one instance are not usable by another for up to a second,
//! and the `throttleStatus` an instance reports counts them as left. `0`
//! turns leases off: every request is then one round trip.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{auth::Viewer, cache::Cache, config::LimitSettings};

/// How long an instance spends a lease before going back to Redis: the
/// most its view of a caller's bucket may lag other instances.
pub const LEASE_LIFE: Duration = Duration::from_secs(1);

/// Whose bucket a request spends: the signed-in user's, else its address's.
pub fn caller_key(viewer: Option<&Viewer>, client: Option<std::net::IpAddr>) -> String {
    match (viewer, client) {
        (Some(viewer), _) => format!("user:{}", viewer.user_id.to_hex()),
        (None, Some(addr)) => format!("addr:{addr}"),
        (None, None) => "anonymous".to_string(),
    }
}

/// Refills the bucket by Redis' clock and takes back ARGV[3] leased points
/// (never above the capacity). Then, when ARGV[6] is `1` (a reservation),
/// takes ARGV[5] points (a lease, at least ARGV[4]) or whatever is left
/// when that is at least ARGV[4], else nothing; otherwise (a charge) takes
/// ARGV[4] points or whatever is left.
/// Returns `{taken (1|0), points left, points taken}`. The key expires once
/// the bucket would be full again: a missing key is a full bucket.
const TAKE_LUA: &str = r"
local cap = tonumber(ARGV[1])
local rate = tonumber(ARGV[2])
local give = tonumber(ARGV[3])
local want = tonumber(ARGV[4])
local lease = tonumber(ARGV[5])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local s = redis.call('HMGET', KEYS[1], 'l', 't')
local level = tonumber(s[1]) or cap
local last = tonumber(s[2]) or now
if now > last then level = math.min(cap, level + (now - last) * rate / 1000) end
level = math.min(cap, level + give)
local taken = 1
local take = want
if ARGV[6] == '1' then
  if want > level then taken = 0; take = 0 else take = math.min(level, math.max(want, lease)) end
end
level = math.max(0, math.min(cap, level - take))
redis.call('HSET', KEYS[1], 'l', tostring(level), 't', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil((cap - level) * 1000 / rate) + 1000)
return {taken, tostring(level), tostring(take)}
";

/// A caller's bucket as Shopify reports it in `extensions.cost`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThrottleStatus {
    pub maximum_available: u32,
    /// Points left now (whole points).
    pub currently_available: u32,
    pub restore_rate: u32,
}

/// The answer to a reservation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reservation {
    Granted(ThrottleStatus),
    /// Not enough points: the request must wait `retry_after`.
    Refused {
        status: ThrottleStatus,
        retry_after: Duration,
    },
}

/// A bucket kept in this instance's memory.
struct Level {
    points: f64,
    at: Instant,
}

/// Points this instance took from a caller's shared bucket, and what the
/// shared bucket held after.
struct Lease {
    points: f64,
    shared_left: f64,
    /// When it was taken; `None` when there is none to spend.
    at: Option<Instant>,
}

/// What one step of a shared bucket answered.
struct Shared {
    taken: bool,
    left: f64,
    took: f64,
}

/// The cost buckets of every caller.
pub struct CostThrottle {
    capacity: f64,
    restore_per_second: f64,
    lease: f64,
    cache: Arc<Cache>,
    /// Buckets while Redis cannot be used. An idle bucket is dropped once
    /// it would be full again, which is what a missing bucket means.
    local: moka::sync::Cache<String, Arc<Mutex<Level>>>,
    /// Leases from the shared buckets, one per caller; the lock makes a
    /// caller's concurrent requests share one round trip.
    leases: moka::sync::Cache<String, Arc<tokio::sync::Mutex<Lease>>>,
}

impl CostThrottle {
    pub fn new(limits: &LimitSettings, cache: Arc<Cache>) -> Self {
        let capacity = f64::from(limits.cost_bucket);
        let restore_per_second = f64::from(limits.cost_restore_per_second);
        let idle = Duration::from_secs_f64(capacity / restore_per_second + 1.0);
        CostThrottle {
            capacity,
            restore_per_second,
            lease: f64::from(limits.cost_lease).min(capacity),
            cache,
            local: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(idle)
                .build(),
            leases: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// Takes `cost` points from `caller`'s bucket if that many are left. A
    /// cost above the whole bucket waits for a full bucket rather than
    /// forever.
    pub async fn reserve(&self, caller: &str, cost: u64) -> Reservation {
        let cost = (cost as f64).min(self.capacity);
        let lease = self.lease_of(caller);
        let mut lease = lease.lock().await;
        let now = Instant::now();
        let (taken, left) = if self.spendable(&lease, now) && lease.points >= cost {
            lease.points -= cost;
            (true, self.available(&lease, now))
        } else {
            let want = cost.max(self.lease);
            match self.shared(caller, lease.points, cost, want, true).await {
                Some(shared) => {
                    let spare = if shared.taken {
                        shared.took - cost
                    } else {
                        0.0
                    };
                    *lease = Lease {
                        points: spare,
                        shared_left: shared.left,
                        at: Some(now),
                    };
                    (shared.taken, shared.left + spare)
                }
                None => {
                    lease.at = None;
                    lease.points = 0.0;
                    self.take_locally(caller, cost, true)
                }
            }
        };
        let status = self.status(left);
        if taken {
            Reservation::Granted(status)
        } else {
            let wait = ((cost - left) / self.restore_per_second).ceil().max(1.0);
            Reservation::Refused {
                status,
                retry_after: Duration::from_secs_f64(wait),
            }
        }
    }

    /// Charges the `actual` cost of a request that reserved its
    /// `requested` cost: gives back what it did not use (or takes the
    /// excess, whatever is left); returns the bucket after. With both 0,
    /// only reads the bucket.
    pub async fn settle(&self, caller: &str, requested: u64, actual: u64) -> ThrottleStatus {
        let reserved = (requested as f64).min(self.capacity);
        let charged = (actual as f64).min(self.capacity);
        let lease = self.lease_of(caller);
        let mut lease = lease.lock().await;
        let now = Instant::now();
        let extra = charged - reserved;
        if self.spendable(&lease, now) && lease.points >= extra {
            lease.points -= extra;
            return self.status(self.available(&lease, now));
        }
        // No lease to settle against (the reservation went to the memory
        // bucket, or the request outlived its lease): straight to the
        // bucket, with what remains of a lease.
        let extra = extra - lease.points.max(0.0);
        lease.points = 0.0;
        let left = match self.shared(caller, 0.0, extra, 0.0, false).await {
            Some(shared) => {
                lease.shared_left = shared.left;
                lease.at = Some(now);
                shared.left
            }
            None => {
                lease.at = None;
                self.take_locally(caller, extra, false).1
            }
        };
        self.status(left)
    }

    fn lease_of(&self, caller: &str) -> Arc<tokio::sync::Mutex<Lease>> {
        self.leases.get_with_by_ref(caller, || {
            Arc::new(tokio::sync::Mutex::new(Lease {
                points: 0.0,
                shared_left: 0.0,
                at: None,
            }))
        })
    }

    /// Whether `lease` may be spent without a round trip.
    fn spendable(&self, lease: &Lease, now: Instant) -> bool {
        self.lease > 0.0
            && lease
                .at
                .is_some_and(|at| now.duration_since(at) < LEASE_LIFE)
    }

    /// Points left as this instance sees them: the shared bucket when the
    /// lease was taken, refilled since, and the lease.
    fn available(&self, lease: &Lease, now: Instant) -> f64 {
        let since = lease
            .at
            .map_or(0.0, |at| now.duration_since(at).as_secs_f64());
        (lease.shared_left + since * self.restore_per_second).min(self.capacity) + lease.points
    }

    fn status(&self, left: f64) -> ThrottleStatus {
        ThrottleStatus {
            maximum_available: self.capacity as u32,
            currently_available: left.clamp(0.0, self.capacity).floor() as u32,
            restore_rate: self.restore_per_second as u32,
        }
    }

    /// One step of `caller`'s shared bucket (see [`TAKE_LUA`]); `None` when
    /// Redis cannot be used.
    async fn shared(
        &self,
        caller: &str,
        give: f64,
        want: f64,
        lease: f64,
        strict: bool,
    ) -> Option<Shared> {
        let args = vec![
            self.capacity.to_string(),
            self.restore_per_second.to_string(),
            give.max(0.0).to_string(),
            want.to_string(),
            lease.to_string(),
            if strict { "1" } else { "0" }.to_string(),
        ];
        // The hash tag keeps every key of a bucket in one slot.
        let key = format!("{{bucket:{caller}}}");
        let (taken, left, took): (i64, String, String) =
            self.cache.eval(TAKE_LUA, &key, args).await?;
        Some(Shared {
            taken: taken == 1,
            left: left.parse().ok()?,
            took: took.parse().ok()?,
        })
    }

    fn take_locally(&self, caller: &str, cost: f64, strict: bool) -> (bool, f64) {
        let capacity = self.capacity;
        let bucket = self.local.get_with_by_ref(caller, || {
            Arc::new(Mutex::new(Level {
                points: capacity,
                at: Instant::now(),
            }))
        });
        let mut level = bucket.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let elapsed = now.duration_since(level.at).as_secs_f64();
        level.points = (level.points + elapsed * self.restore_per_second).min(capacity);
        level.at = now;
        if strict && cost > level.points {
            return (false, level.points);
        }
        level.points = (level.points - cost).clamp(0.0, capacity);
        (true, level.points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    fn throttle<const N: usize>(vars: [(&str, &str); N]) -> CostThrottle {
        let settings = Settings::from_source(&vars).unwrap();
        CostThrottle::new(&settings.limits, Cache::new(&settings.cache))
    }

    #[tokio::test]
    async fn without_redis_each_caller_has_its_own_bucket_in_memory() {
        let t = throttle([
            ("RATE_LIMIT_COST_BUCKET", "100"),
            ("RATE_LIMIT_COST_RESTORE_PER_SECOND", "10"),
        ]);

        let first = t.reserve("user:a", 80).await;
        let second = t.reserve("user:a", 30).await;
        let other = t.reserve("user:b", 30).await;

        assert!(matches!(first, Reservation::Granted(s) if s.currently_available == 20));
        let Reservation::Refused {
            status,
            retry_after,
        } = second
        else {
            panic!("{second:?}")
        };
        assert_eq!(status.maximum_available, 100);
        assert_eq!(retry_after, Duration::from_secs(1));
        assert!(matches!(other, Reservation::Granted(_)));
    }

    #[tokio::test]
    async fn settling_gives_back_what_a_request_did_not_use() {
        let t = throttle([("RATE_LIMIT_COST_BUCKET", "100")]);

        t.reserve("addr:192.0.2.1", 90).await;
        let after = t.settle("addr:192.0.2.1", 90, 30).await;

        assert!((70..=71).contains(&after.currently_available), "{after:?}");
        assert!(matches!(
            t.reserve("addr:192.0.2.1", 60).await,
            Reservation::Granted(_)
        ));
    }

    #[tokio::test]
    async fn a_cost_above_the_whole_bucket_waits_for_a_full_bucket() {
        let t = throttle([("RATE_LIMIT_COST_BUCKET", "100")]);

        assert!(matches!(
            t.reserve("user:a", 5_000).await,
            Reservation::Granted(s) if s.currently_available == 0
        ));
    }
}
