//! The Redis backend through `fred`: a small connection pool, every call
//! bounded by `REDIS_TIMEOUT_MS`, and the probe task behind the breaker.

use std::{sync::Weak, time::Duration};

use fred::{
    prelude::*,
    types::{Expiration, Key, config::ReconnectPolicy},
};
use futures::StreamExt;

use super::{Cache, breaker::Breaker};
use crate::config::CacheSettings;

pub struct RedisBackend {
    pool: Pool,
    /// Key namespace of this deployment (CACHE_KEY_PREFIX).
    prefix: String,
    timeout: Duration,
    pub breaker: Breaker,
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
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2))
            .build_pool(settings.redis_pool_size)
            .ok()?;
        // Dropping the handle detaches the connection task, which keeps
        // (re)connecting under the reconnect policy.
        drop(pool.connect());
        Some(RedisBackend {
            pool,
            prefix: settings.key_prefix.clone(),
            timeout,
            breaker: Breaker::new_open(),
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
        match tokio::time::timeout(self.timeout, fut).await {
            Ok(Ok(v)) => {
                self.breaker.success();
                Ok(v)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "redis call failed");
                self.breaker.failure();
                Err(())
            }
            Err(_) => {
                tracing::debug!("redis call timed out");
                self.breaker.failure();
                Err(())
            }
        }
    }

    /// The value of `key` and the current generations, in one `MGET`.
    pub async fn get_with_gens(
        &self,
        key: &str,
        gen_keys: &[String],
    ) -> Result<(Option<Vec<u8>>, Vec<u64>), ()> {
        let mut keys: Vec<Key> = Vec::with_capacity(gen_keys.len() + 1);
        keys.push(self.key(key).into());
        keys.extend(gen_keys.iter().map(|g| Key::from(self.key(g))));
        let values: Vec<Value> = self.call(self.pool.mget(keys)).await?;
        let mut it = values.into_iter();
        let value = it.next().and_then(|v| v.as_bytes().map(<[u8]>::to_vec));
        let gens = it.map(|v| v.as_u64().unwrap_or(0)).collect();
        Ok((value, gens))
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
        let values = self.call(self.mget_by_slot(&all)).await?;
        let mut it = values.into_iter();
        let found = it
            .by_ref()
            .take(keys.len())
            .map(|v| v.as_bytes().map(<[u8]>::to_vec))
            .collect();
        let gens = it.map(|v| v.as_u64().unwrap_or(0)).collect();
        Ok((found, gens))
    }

    /// `MGET` of `keys` (prefixed) in their order, split by hash slot on a
    /// cluster.
    async fn mget_by_slot(&self, keys: &[String]) -> Result<Vec<Value>, fred::error::Error> {
        let client = self.pool.next();
        if !client.is_clustered() {
            return client.mget(keys.to_vec()).await;
        }
        let groups = fred::util::group_by_hash_slot(keys.iter().map(String::as_str))?;
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
        let _: Vec<Value> = self.call(pipeline.all()).await?;
        Ok(())
    }

    /// Deletes the value keys starting with `prefix` (never generation
    /// keys); returns how many.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, ()> {
        let pattern = format!("{}{}*", glob_escape(&self.prefix), glob_escape(prefix));
        let gen_prefix = self.key("gen:");
        let mut keys = self.pool.next().scan_buffered(pattern, Some(500), None);
        let mut batch: Vec<Key> = Vec::new();
        let mut deleted = 0u64;
        // Admin-only and bounded by the keyspace of this deployment; each
        // DEL batch still runs under the timeout.
        let limit = tokio::time::Instant::now() + Duration::from_secs(10);
        while let Ok(Some(next)) = tokio::time::timeout_at(limit, keys.next()).await {
            let Ok(key) = next else { return Err(()) };
            if key.as_str().is_some_and(|k| k.starts_with(&gen_prefix)) {
                continue;
            }
            batch.push(key);
            if batch.len() >= 500 {
                deleted += self
                    .call(self.pool.del::<u64, _>(std::mem::take(&mut batch)))
                    .await?;
            }
        }
        if !batch.is_empty() {
            deleted += self.call(self.pool.del::<u64, _>(batch)).await?;
        }
        Ok(deleted)
    }

    async fn ping(&self) -> bool {
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
/// open, and closes it (after bumping the epoch when needed) when Redis
/// answers. Ends when the cache is dropped.
pub fn spawn_probe(cache: Weak<Cache>) {
    tokio::spawn(async move {
        loop {
            let Some(cache) = cache.upgrade() else { return };
            let redis = cache.redis.as_ref().expect("probe runs with Redis");
            if redis.breaker.take_just_opened() {
                tracing::warn!("redis unavailable: serving from the memory cache");
                cache.on_redis_lost();
            }
            if redis.breaker.probe_due() {
                if redis.ping().await {
                    // Replay what Redis missed, then close, under the lock
                    // that invalidations take while the breaker is open.
                    let mut missed = cache.missed.lock().await;
                    let replay = missed.replay();
                    if replay.is_empty() || redis.incr_all(&replay).await.is_ok() {
                        *missed = Default::default();
                        cache.on_redis_recovered();
                        redis.breaker.close();
                        tracing::info!(
                            replayed = replay.len(),
                            "redis available: serving from redis"
                        );
                    } else {
                        redis.breaker.probe_failed();
                    }
                } else {
                    redis.breaker.probe_failed();
                }
            }
            drop(cache);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
}
