//! The Redis backend through `fred`: a small connection pool, every call
//! bounded by `REDIS_TIMEOUT_MS`, and the probe task behind the breaker.
//!
//! **Cluster.** With `redis-cluster://` every multi-key command stays in one
//! hash slot: a value and its generation keys are hashed on their own names
//! (so data spreads over every primary), grouped by slot with
//! `fred::util::group_by_hash_slot`, and read with one `MGET` per slot, all
//! groups in flight at once (one round trip of wall time, at most
//! 1 + scopes commands; on a single Redis or Sentinel, one `MGET`). A
//! single tag for every generation would make one primary serve every
//! read; per-learner tags would still leave the global epoch elsewhere.
//! `clearCache` scans every primary. fred follows MOVED/ASK and resyncs
//! the slot map on a topology change.
//!
//! **Failover.** A connection error on any client (a primary killed, a
//! Sentinel master lost) opens the breaker at once; a reconnection makes
//! the probe due at once. Recovery replays the missed invalidations *and*
//! bumps the global epoch: Redis replication is asynchronous, so a
//! generation bump acknowledged by a dead primary may be missing on the
//! promoted replica, and only a new epoch makes every older value
//! invalid.

use std::{
    cell::Cell,
    sync::{Arc, Weak},
    time::Duration,
};

use fred::{
    prelude::*,
    types::{Expiration, Key, config::ReconnectPolicy},
};
use futures::StreamExt;

use super::{Cache, breaker::Breaker};
use crate::config::CacheSettings;

/// Reconnection every [`RECONNECT_DELAY_MS`] with little jitter: fred's
/// default 100 ms of jitter spreads the pool's clients over 100 ms, and the
/// probe needs the pool back, not one client.
fn reconnect_policy() -> ReconnectPolicy {
    let mut policy = ReconnectPolicy::new_constant(0, RECONNECT_DELAY_MS);
    policy.set_jitter(RECONNECT_JITTER_MS);
    policy
}

/// Added at random to each reconnection delay, so that many clients do not
/// knock at once.
const RECONNECT_JITTER_MS: u32 = 20;

/// Pause between reconnection attempts: a promoted replica (or a Redis
/// back from a restart) is noticed within about this long. An attempt on a
/// refused port costs nothing, one on a silent host at most the connection
/// timeout.
const RECONNECT_DELAY_MS: u32 = 50;

pub struct RedisBackend {
    pool: Pool,
    /// `redis-cluster://`: multi-key commands are split by hash slot.
    clustered: bool,
    /// Key namespace of this deployment (CACHE_KEY_PREFIX).
    prefix: String,
    timeout: Duration,
    pub breaker: Arc<Breaker>,
}

impl RedisBackend {
    /// Builds the pool and starts connecting in the background; `None` (and
    /// a logged error) for a URL fred cannot use.
    pub fn new(url: &str, settings: &CacheSettings) -> Option<Self> {
        let config = match Config::from_url(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "REDIS_URL is not usable; the memory cache serves alone");
                return None;
            }
        };
        let timeout = settings.redis_timeout;
        let clustered = config.server.is_clustered();
        let pool = Builder::from_config(config)
            .with_config(|c| c.fail_fast = false)
            .with_connection_config(|c| {
                // A connection attempt may take longer than one command, but
                // never as long as fred's 10 s default.
                c.connection_timeout = timeout.max(Duration::from_millis(500));
                c.internal_command_timeout = timeout.max(Duration::from_millis(500));
                c.max_command_attempts = 1;
            })
            .with_performance_config(|p| p.default_command_timeout = timeout)
            .set_policy(reconnect_policy())
            .build_pool(settings.redis_pool_size)
            .ok()?;
        // Dropping the handle detaches the connection task, which keeps
        // (re)connecting under the reconnect policy.
        drop(pool.connect());
        Some(RedisBackend {
            pool,
            clustered,
            prefix: settings.key_prefix.clone(),
            timeout,
            breaker: Arc::new(Breaker::new_open()),
        })
    }

    fn key(&self, k: &str) -> String {
        format!("{}{k}", self.prefix)
    }

    /// Runs one call under the timeout, feeding the breaker.
    async fn call<T>(
        &self,
        fut: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, ()> {
        if request_gave_up() {
            return Err(());
        }
        self.call_always(fut).await
    }

    /// [`Self::call`] even after the request gave up on Redis: for
    /// invalidations, which must reach Redis or be replayed (a skipped one
    /// would trip the breaker for nothing).
    async fn call_always<T>(
        &self,
        fut: impl Future<Output = Result<T, fred::error::Error>>,
    ) -> Result<T, ()> {
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                self.breaker.success();
                Ok(v)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis call failed");
                // fred's own command timeout is the same as ours.
                if *e.kind() == fred::error::ErrorKind::Timeout {
                    give_up_for_this_request();
                }
                self.breaker.failure();
                Err(())
            }
            Err(_) => {
                tracing::debug!("redis call timed out");
                give_up_for_this_request();
                self.breaker.failure();
                Err(())
            }
        }
    }

    /// The value of `key` and the current generations: one `MGET`, or on a
    /// cluster one `MGET` per hash slot, issued together.
    pub async fn get_with_gens(
        &self,
        key: &str,
        gen_keys: &[String],
    ) -> Result<(Option<Vec<u8>>, Vec<u64>), ()> {
        let mut keys: Vec<String> = Vec::with_capacity(gen_keys.len() + 1);
        keys.push(self.key(key));
        keys.extend(gen_keys.iter().map(|g| self.key(g)));
        let values = self.call(self.mget(&keys)).await?;
        let mut it = values.into_iter();
        let value = it.next().and_then(|v| v.as_bytes().map(<[u8]>::to_vec));
        let gens = it.map(|v| v.as_u64().unwrap_or(0)).collect();
        Ok((value, gens))
    }

    /// `MGET` of `keys` in their order, split by hash slot on a cluster.
    async fn mget(&self, keys: &[String]) -> Result<Vec<Value>, fred::error::Error> {
        if !self.clustered {
            return self.pool.mget(keys.to_vec()).await;
        }
        let groups = fred::util::group_by_hash_slot(keys.iter().map(String::as_str))?;
        let client = self.pool.next();
        let replies = futures::future::try_join_all(groups.into_values().map(|group| {
            let group: Vec<Key> = group.into_iter().collect();
            async move {
                let values: Vec<Value> = client.mget(group.clone()).await?;
                Ok::<_, fred::error::Error>(group.into_iter().zip(values))
            }
        }))
        .await?;
        let mut by_key: std::collections::HashMap<Key, Value> =
            replies.into_iter().flatten().collect();
        Ok(keys
            .iter()
            .map(|k| by_key.remove(&Key::from(k.as_str())).unwrap_or(Value::Null))
            .collect())
    }

    /// The value of `key`.
    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, ()> {
        let value: Value = self.call(self.pool.get(self.key(key))).await?;
        Ok(value.as_bytes().map(<[u8]>::to_vec))
    }

    pub async fn set(&self, key: &str, bytes: Vec<u8>, ttl: Duration) -> Result<(), ()> {
        let ex = Expiration::EX(ttl.as_secs().max(1) as i64);
        self.call(
            self.pool
                .set::<(), _, _>(self.key(key), bytes, Some(ex), None, false),
        )
        .await
    }

    /// The values of `keys` and the current generations: one `MGET`, or
    /// on a cluster one `MGET` per hash slot, all in flight together.
    pub async fn get_many_with_gens(
        &self,
        keys: &[String],
        gen_keys: &[String],
    ) -> Result<(Vec<Option<Vec<u8>>>, Vec<u64>), ()> {
        let all: Vec<String> = keys.iter().chain(gen_keys).map(|k| self.key(k)).collect();
        let values = self.call(self.mget(&all)).await?;
        let mut it = values.into_iter();
        let found = it
            .by_ref()
            .take(keys.len())
            .map(|v| v.as_bytes().map(<[u8]>::to_vec))
            .collect();
        let gens = it.map(|v| v.as_u64().unwrap_or(0)).collect();
        Ok((found, gens))
    }

    /// Stores several values with one TTL in one pipelined round trip.
    pub async fn set_many(&self, entries: Vec<(String, Vec<u8>)>, ttl: Duration) -> Result<(), ()> {
        if entries.is_empty() {
            return Ok(());
        }
        let ex = ttl.as_secs().max(1) as i64;
        let pipeline = self.pool.next().pipeline();
        for (k, bytes) in entries {
            let _: () = pipeline
                .set(self.key(&k), bytes, Some(Expiration::EX(ex)), None, false)
                .await
                .map_err(|_| ())?;
        }
        let _: Vec<Value> = self.call(pipeline.all()).await?;
        Ok(())
    }

    /// Increments generation keys (one pipelined round trip). Generation
    /// keys outlive every value (a day), so an expired one cannot make an
    /// old value valid again.
    pub async fn incr_all(&self, gen_keys: &[String]) -> Result<(), ()> {
        let pipeline = self.pool.next().pipeline();
        for g in gen_keys {
            let k = self.key(g);
            let _: () = pipeline.incr(&k).await.map_err(|_| ())?;
            let _: () = pipeline.expire(&k, 86_400, None).await.map_err(|_| ())?;
        }
        let _: Vec<Value> = self.call_always(pipeline.all()).await?;
        Ok(())
    }

    /// Deletes the value keys starting with `prefix` (never generation
    /// keys nor cost buckets); returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, ()> {
        let pattern = format!("{}{}*", glob_escape(&self.prefix), glob_escape(prefix));
        let gen_prefix = self.key("gen:");
        // The callers' cost buckets (`http::throttle`) are no cache values.
        let bucket_prefix = self.key("{bucket:");
        let client = self.pool.next();
        let mut keys: std::pin::Pin<Box<dyn futures::Stream<Item = _> + Send>> = if self.clustered {
            Box::pin(client.scan_cluster_buffered(pattern, Some(500), None))
        } else {
            Box::pin(client.scan_buffered(pattern, Some(500), None))
        };
        let mut batch: Vec<Key> = Vec::new();
        let mut deleted = 0u64;
        // Admin-only and bounded by the keyspace of this deployment; each
        // DEL batch still runs under the timeout.
        let limit = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Some(next)) = tokio::time::timeout_at(limit, keys.next()).await {
            let Ok(key) = next else { return Err(()) };
            if key
                .as_str()
                .is_some_and(|k| k.starts_with(&gen_prefix) || k.starts_with(&bucket_prefix))
            {
                continue;
            }
            batch.push(key);
            if batch.len() >= 500 {
                deleted += self.del(std::mem::take(&mut batch)).await?;
            }
        }
        if !batch.is_empty() {
            deleted += self.del(batch).await?;
        }
        Ok(deleted)
    }

    /// `DEL` of `keys`, one command per hash slot on a cluster.
    async fn del(&self, keys: Vec<Key>) -> Result<u64, ()> {
        if !self.clustered {
            return self.call(self.pool.del::<u64, _>(keys)).await;
        }
        let groups = fred::util::group_by_hash_slot(keys).map_err(|_| ())?;
        let client = self.pool.next();
        let counts = self
            .call(futures::future::try_join_all(groups.into_values().map(
                |group| client.del::<u64, _>(group.into_iter().collect::<Vec<Key>>()),
            )))
            .await?;
        Ok(counts.into_iter().sum())
    }

    /// Opens the breaker on every connection error and makes a probe due
    /// on every reconnection, for as long as the cache lives.
    pub fn watch_connections(&self) {
        for client in self.pool.clients() {
            let breaker = self.breaker.clone();
            client.on_error(move |(error, server)| {
                let breaker = breaker.clone();
                async move {
                    tracing::debug!(%error, server = ?server, "redis connection error");
                    breaker.trip();
                    Ok(())
                }
            });
            let breaker = self.breaker.clone();
            client.on_reconnect(move |server| {
                let breaker = breaker.clone();
                async move {
                    tracing::debug!(%server, "redis reconnected");
                    breaker.probe_now();
                    Ok(())
                }
            });
        }
    }

    /// Runs one Lua script on one key of this deployment, atomically and in
    /// one round trip. `EVAL` rather than `EVALSHA`: Redis keeps the
    /// compiled script by its digest, and a restarted Redis needs no reload.
    pub async fn eval<R: FromValue>(
        &self,
        lua: &'static str,
        key: &str,
        args: Vec<String>,
    ) -> Result<R, ()> {
        self.call(self.pool.eval::<R, _, _, _>(lua, vec![self.key(key)], args))
            .await
    }

    pub async fn ping(&self) -> bool {
        matches!(
            tokio::time::timeout(
                self.timeout.max(Duration::from_millis(200)),
                self.pool.ping::<String>(None)
            )
            .await,
            Ok(Ok(_))
        )
    }
}

tokio::task_local! {
    /// Within one request: whether one of its Redis calls already waited
    /// out `REDIS_TIMEOUT_MS`.
    static GAVE_UP: Cell<bool>;
}

/// Runs one request so that it waits on a silent Redis once at most: after
/// one of its calls times out, its other reads, writes of values and cost
/// leases skip Redis (falling back as for any Redis failure) until the
/// request ends. Without this, a request that meets a Redis gone silent
/// before the breaker opens waits `REDIS_TIMEOUT_MS` for each of its calls
/// in turn (the cost lease, the response cache, each cached read, the
/// settlement). Invalidations are never skipped. Work the request hands to
/// other tasks (DataLoader batches) is not covered, and calls outside a
/// request (the probe, background jobs) behave as before.
pub async fn one_request<F: Future>(request: F) -> F::Output {
    GAVE_UP.scope(Cell::new(false), request).await
}

fn request_gave_up() -> bool {
    GAVE_UP.try_with(Cell::get).unwrap_or(false)
}

fn give_up_for_this_request() {
    let _ = GAVE_UP.try_with(|g| g.set(true));
}

/// Escapes Redis glob characters so a user's prefix matches literally.
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Watches the breaker: reacts when it opens, probes Redis while it is
/// open, and closes it when Redis answers (see [`Cache::recover`]). Ends
/// when the cache is dropped.
pub fn spawn_probe(cache: Weak<Cache>) {
    tokio::spawn(async move {
        let Some(breaker) = cache.upgrade().map(|c| {
            c.redis
                .as_ref()
                .expect("probe runs with Redis")
                .breaker
                .clone()
        }) else {
            return;
        };
        loop {
            let Some(cache) = cache.upgrade() else { return };
            let redis = cache.redis.as_ref().expect("probe runs with Redis");
            if redis.breaker.take_just_opened() {
                tracing::warn!("redis unavailable: serving from the memory cache");
                cache.on_redis_lost();
            }
            if redis.breaker.probe_due() {
                cache.recover().await;
            }
            drop(cache);
            // A reconnection or an opening wakes it at once; the tick
            // serves the back-off of failed probes.
            breaker.woken(Duration::from_millis(50)).await;
        }
    });
}
