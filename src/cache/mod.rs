//! The cache in front of the resolvers: Redis first, an in-process memory
//! cache as the fallback, and invalidation that is exact rather than
//! approximately right.
//!
//! Resolvers use two calls: [`Cache::get_or_compute`] with a TTL class, a
//! key and the scopes the value depends on, and [`Cache::invalidate`] with
//! the scopes a write makes stale.
//!
//! **Generations.** Every scope (a learner, the catalogue, the dashboard)
//! has a generation counter; a global epoch sits above them all. A value is
//! stored with the generations it was computed under, and served only while
//! they are all still current. The value and its generations are read in
//! one `MGET`, so a hit is one Redis round trip. Invalidating a scope is one
//! `INCR`, which every instance sharing the Redis sees at once: no SCAN or
//! KEYS on the hot path, and pattern-like scopes ("everything of this
//! learner", "every module list") cost the same as one key. The
//! generations are read *before* computing, so a value computed while a
//! write lands is stored under stale generations and never served.
//!
//! **Failures.** Every Redis call is bounded by `REDIS_TIMEOUT_MS`. A
//! circuit breaker opens after repeated failures (or at once when an
//! invalidation cannot reach Redis); while it is open the memory cache
//! serves, and a background task probes Redis with a growing back-off. When
//! Redis answers again, the generation bumps it missed are replayed before
//! it is used (the global epoch when there were too many), so nothing this
//! instance invalidated during the outage is served from Redis after it. While Redis is configured but down, memory entries
//! live at most `CACHE_DEGRADED_TTL_SECS`, which bounds how long another
//! instance (that cannot see this one's writes) may serve an older value.
//!
//! **Stampedes.** Concurrent misses on one key wait on a per-key lock and
//! the first computes; the others then find its value.

mod breaker;
mod entities;
mod redis;
mod tagged;

pub use redis::one_request;
pub use tagged::Ticket;

use std::{
    collections::HashMap,
    future::Future,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use bson::oid::ObjectId;
use moka::{Expiry, future::Cache as MokaCache};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::{config::CacheSettings, error::ApiResult};
pub use breaker::BreakerState;

/// A kind of cached value: the key prefix (what `clearCache(prefix)`
/// matches and the metrics' `class` label) and where its TTL comes from.
/// Each domain declares its own classes beside the reads they cache.
#[derive(Debug, Clone, Copy)]
pub struct TtlClass {
    pub name: &'static str,
    ttl: fn(&CacheSettings) -> Duration,
}

impl TtlClass {
    pub const fn new(name: &'static str, ttl: fn(&CacheSettings) -> Duration) -> Self {
        TtlClass { name, ttl }
    }

    /// The key prefix of the class.
    pub fn name(self) -> &'static str {
        self.name
    }

    fn ttl(self, s: &CacheSettings) -> Duration {
        (self.ttl)(s)
    }
}

/// What a cached value depends on; a write invalidates scopes. A scope is
/// a kind (`"catalogue"`) and optionally one entity (a learner's id);
/// domains declare theirs beside the writes that invalidate them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Scope {
    kind: &'static str,
    id: Option<ObjectId>,
}

impl Scope {
    /// A scope that covers a whole kind of data.
    pub const fn named(kind: &'static str) -> Self {
        Scope { kind, id: None }
    }

    /// The scope of one entity (e.g. everything of one learner).
    pub const fn of(kind: &'static str, id: ObjectId) -> Self {
        Scope { kind, id: Some(id) }
    }

    fn gen_key(&self) -> String {
        match self.id {
            Some(id) => format!("gen:{}:{}", self.kind, id.to_hex()),
            None => format!("gen:{}", self.kind),
        }
    }
}

/// The class of whole responses (`graphql::response_cache`): composed of
/// every other class, dropped by any `clear`.
pub const RESPONSES_CLASS: &str = "responses";

/// The generation key above every scope.
const GLOBAL_GEN: &str = "gen:global";

/// A short, fixed-length digest of key parts (search text, cursors) so keys
/// stay small whatever users type.
pub fn digest(parts: &impl Serialize) -> String {
    let bytes = serde_json::to_vec(parts).unwrap_or_default();
    let hash = Sha256::digest(&bytes);
    hash[..12].iter().map(|b| format!("{b:02x}")).collect()
}

/// A stored value with the generations it was computed under.
#[derive(Serialize, Deserialize)]
struct Envelope {
    gens: Vec<u64>,
    #[serde(with = "serde_bytes_compat")]
    payload: Vec<u8>,
}

/// MessagePack stores `Vec<u8>` as an array of integers unless told it is
/// binary; this keeps payloads compact.
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Vec<u8>, A::Error> {
                let mut out = Vec::new();
                while let Some(b) = seq.next_element::<u8>()? {
                    out.push(b);
                }
                Ok(out)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A memory entry: the envelope and how long it may live.
#[derive(Clone)]
struct MemEntry {
    envelope: Arc<Envelope>,
    ttl: Duration,
}

struct PerEntryTtl;

impl Expiry<String, MemEntry> for PerEntryTtl {
    fn expire_after_create(&self, _: &String, value: &MemEntry, _: Instant) -> Option<Duration> {
        Some(value.ttl)
    }
}

/// Hit and miss counters, per TTL class (by name, in the order first seen).
#[derive(Default)]
struct Counters {
    classes: std::sync::RwLock<Vec<(&'static str, Arc<ClassCounters>)>>,
    errors: AtomicU64,
}

#[derive(Default)]
struct ClassCounters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl Counters {
    /// The counters of `class`, registered on first use.
    fn of(&self, class: &'static str) -> Arc<ClassCounters> {
        if let Some((_, c)) = self
            .classes
            .read()
            .expect("cache counters poisoned")
            .iter()
            .find(|(n, _)| *n == class)
        {
            return c.clone();
        }
        let mut classes = self.classes.write().expect("cache counters poisoned");
        if let Some((_, c)) = classes.iter().find(|(n, _)| *n == class) {
            return c.clone();
        }
        let c = Arc::new(ClassCounters::default());
        classes.push((class, c.clone()));
        c
    }
}

/// Figures of `cacheStats` and `/metrics`.
#[derive(Debug, Clone, Serialize)]
pub struct CacheReport {
    pub backend: &'static str,
    pub redis_configured: bool,
    pub redis_available: bool,
    pub breaker: BreakerState,
    pub hits: u64,
    pub misses: u64,
    pub errors: u64,
    pub hit_rate: f64,
    pub memory_entries: u64,
    pub per_class: Vec<(&'static str, u64, u64)>,
}

/// Generations of the memory backend: a process-wide counter hands out
/// values never used before, so a forgotten scope can never make an old
/// entry valid again (the map is cleared together with the entries).
#[derive(Default)]
struct MemoryGens {
    gens: Mutex<HashMap<String, u64>>,
    next: AtomicU64,
}

/// Beyond this many scopes the memory generations (and entries) are reset.
const MAX_MEMORY_GENS: usize = 200_000;

impl MemoryGens {
    fn current(&self, keys: &[String]) -> Vec<u64> {
        let gens = self.gens.lock().expect("memory gens poisoned");
        keys.iter()
            .map(|k| gens.get(k).copied().unwrap_or(0))
            .collect()
    }

    /// Bumps the generations; true when the map had to be reset.
    fn bump(&self, keys: &[String]) -> bool {
        let mut gens = self.gens.lock().expect("memory gens poisoned");
        let reset = gens.len() > MAX_MEMORY_GENS;
        if reset {
            gens.clear();
        }
        for k in keys {
            let v = self.next.fetch_add(1, Ordering::Relaxed) + 1;
            gens.insert(k.clone(), v);
        }
        reset
    }
}

/// Invalidations Redis did not see, replayed before it is trusted again.
#[derive(Default)]
struct Missed {
    keys: std::collections::HashSet<String>,
    /// Too many to replay one by one: bump the global epoch instead.
    overflow: bool,
}

/// Beyond this many distinct missed scopes, recovery bumps the epoch.
const MAX_MISSED: usize = 10_000;

impl Missed {
    fn add(&mut self, keys: &[String]) {
        if self.overflow {
            return;
        }
        self.keys.extend(keys.iter().cloned());
        if self.keys.len() > MAX_MISSED {
            self.overflow = true;
            self.keys.clear();
        }
    }

    /// What recovery must increment.
    fn replay(&self) -> Vec<String> {
        if self.overflow {
            vec![GLOBAL_GEN.to_string()]
        } else {
            self.keys.iter().cloned().collect()
        }
    }
}

/// The shared cache of one process.
pub struct Cache {
    settings: CacheSettings,
    redis: Option<redis::RedisBackend>,
    memory: MokaCache<String, MemEntry>,
    memory_gens: MemoryGens,
    /// Per-key locks for single-flight computation.
    locks: moka::sync::Cache<String, Arc<tokio::sync::Mutex<()>>>,
    counters: Counters,
    /// Held by the probe across replay-and-close, so an invalidation either
    /// lands in the replay or reaches Redis after it.
    missed: tokio::sync::Mutex<Missed>,
    /// Redis has been used once: a later recovery follows an outage and
    /// bumps the global epoch.
    was_used: std::sync::atomic::AtomicBool,
}

/// Where a lookup went and the generations it saw.
struct Lookup {
    payload: Option<Vec<u8>>,
    gens: Vec<u64>,
    redis: bool,
}

impl Cache {
    /// Builds the cache; with `REDIS_URL`, connects in the background (a
    /// dead Redis never delays the start).
    pub fn new(settings: &CacheSettings) -> Arc<Self> {
        let memory = MokaCache::builder()
            .max_capacity(settings.memory_max_entries)
            .expire_after(PerEntryTtl)
            .build();
        let cache = Arc::new(Cache {
            redis: settings
                .redis_url
                .as_deref()
                .and_then(|url| redis::RedisBackend::new(url, settings)),
            settings: settings.clone(),
            memory,
            memory_gens: MemoryGens::default(),
            locks: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_idle(Duration::from_secs(60))
                .build(),
            counters: Counters::default(),
            missed: tokio::sync::Mutex::new(Missed::default()),
            was_used: Default::default(),
        });
        if let Some(redis) = &cache.redis {
            redis.watch_connections();
            redis::spawn_probe(Arc::downgrade(&cache));
        }
        cache
    }

    /// Waits (at most `limit`) until Redis is in use, so that an instance
    /// is coherent with the others from its first request; returns at once
    /// without Redis. A dead Redis costs the start at most `limit`.
    pub async fn wait_for_redis(&self, limit: Duration) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        let deadline = tokio::time::Instant::now() + limit;
        while !redis.breaker.allows() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            if !self.recover().await {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        true
    }

    /// Whether the cache is as coherent as it can be: Redis not configured,
    /// in use, or (after one more recovery attempt) really unreachable.
    /// `/ready` says 503 only while Redis answers but is not trusted yet.
    pub async fn coherent(&self) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        redis.breaker.allows() || self.recover().await || !redis.ping().await
    }

    /// One recovery attempt: when Redis answers, replay the generation
    /// bumps it missed (and, after an outage, the global epoch: a bump a
    /// dead primary acknowledged may be missing on its promoted replica),
    /// then close the breaker. Under the lock invalidations take while the
    /// breaker is open, so none falls between the replay and the closing.
    async fn recover(&self) -> bool {
        let Some(redis) = &self.redis else {
            return true;
        };
        if !redis.ping().await {
            redis.breaker.probe_failed();
            return false;
        }
        let mut missed = self.missed.lock().await;
        if redis.breaker.allows() {
            return true;
        }
        let mut replay = missed.replay();
        if self.was_used.load(Ordering::Relaxed) && !replay.iter().any(|k| k == GLOBAL_GEN) {
            replay.push(GLOBAL_GEN.to_string());
        }
        if replay.is_empty() || redis.incr_all(&replay).await.is_ok() {
            *missed = Default::default();
            self.on_redis_recovered();
            self.was_used.store(true, Ordering::Relaxed);
            redis.breaker.close();
            tracing::info!(
                replayed = replay.len(),
                "redis available: serving from redis"
            );
            true
        } else {
            redis.breaker.probe_failed();
            false
        }
    }

    /// Makes `classes` known, so that their counters are reported (at
    /// zero) before their first use.
    pub fn register(&self, classes: &[TtlClass]) {
        for class in classes {
            self.counters.of(class.name);
        }
    }

    /// Runs the Lua script `lua` on `key` (in this deployment's namespace)
    /// in Redis: one atomic round trip, within one hash slot. `None` while
    /// Redis is not configured, its breaker is open or the call fails; the
    /// caller then keeps its own per-instance state (as the cache falls
    /// back to memory).
    pub async fn eval<R: fred::types::FromValue>(
        &self,
        lua: &'static str,
        key: &str,
        args: Vec<String>,
    ) -> Option<R> {
        self.redis_usable()?.eval(lua, key, args).await.ok()
    }

    fn redis_usable(&self) -> Option<&redis::RedisBackend> {
        self.redis.as_ref().filter(|r| r.breaker.allows())
    }

    fn gen_keys(scopes: &[Scope]) -> Vec<String> {
        std::iter::once(GLOBAL_GEN.to_string())
            .chain(scopes.iter().map(Scope::gen_key))
            .collect()
    }

    async fn lookup(&self, key: &str, gen_keys: &[String]) -> Lookup {
        if let Some(redis) = self.redis_usable() {
            match redis.get_with_gens(key, gen_keys).await {
                Ok((value, gens)) => {
                    let payload = value
                        .and_then(|bytes| rmp_serde::from_slice::<Envelope>(&bytes).ok())
                        .filter(|env| env.gens == gens)
                        .map(|env| env.payload);
                    return Lookup {
                        payload,
                        gens,
                        redis: true,
                    };
                }
                Err(()) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let gens = self.memory_gens.current(gen_keys);
        let payload = self
            .memory
            .get(key)
            .await
            .filter(|e| e.envelope.gens == gens)
            .map(|e| e.envelope.payload.clone());
        Lookup {
            payload,
            gens,
            redis: false,
        }
    }

    async fn store(&self, key: &str, class: TtlClass, lookup: &Lookup, payload: Vec<u8>) {
        let envelope = Envelope {
            gens: lookup.gens.clone(),
            payload,
        };
        let mut ttl = class.ttl(&self.settings);
        if lookup.redis {
            if let (Some(redis), Ok(bytes)) = (&self.redis, rmp_serde::to_vec(&envelope)) {
                if redis.set(key, bytes, ttl).await.is_ok() {
                    return;
                }
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if self.redis.is_some() {
            ttl = ttl.min(self.settings.degraded_ttl);
        }
        let entry = MemEntry {
            envelope: Arc::new(envelope),
            ttl,
        };
        self.memory.insert(key.to_string(), entry).await;
    }

    /// The cached value of `key`, or `compute()`'s, stored for the class's
    /// TTL. Cache failures never reach the caller; only `compute` errors do.
    pub async fn get_or_compute<T, F, Fut>(
        &self,
        class: TtlClass,
        key: &str,
        scopes: &[Scope],
        compute: F,
    ) -> ApiResult<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = ApiResult<T>>,
    {
        if self.settings.disabled {
            return compute().await;
        }
        let key = format!("{}:{key}", class.name());
        let gen_keys = Self::gen_keys(scopes);
        if let Some(v) = self.decode::<T>(self.lookup(&key, &gen_keys).await.payload) {
            self.counters
                .of(class.name)
                .hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        // Single flight: the first miss computes, the others wait and read.
        let lock = self
            .locks
            .get_with(key.clone(), || Arc::new(tokio::sync::Mutex::new(())));
        let _guard = lock.lock().await;
        let lookup = self.lookup(&key, &gen_keys).await;
        if let Some(v) = self.decode::<T>(lookup.payload.clone()) {
            self.counters
                .of(class.name)
                .hits
                .fetch_add(1, Ordering::Relaxed);
            return Ok(v);
        }
        self.counters
            .of(class.name)
            .misses
            .fetch_add(1, Ordering::Relaxed);
        let value = compute().await?;
        if let Ok(payload) = rmp_serde::to_vec_named(&value) {
            self.store(&key, class, &lookup, payload).await;
        }
        Ok(value)
    }

    fn decode<T: DeserializeOwned>(&self, payload: Option<Vec<u8>>) -> Option<T> {
        payload.and_then(|p| rmp_serde::from_slice(&p).ok())
    }

    /// A value that never changes under its key (a persisted query by its
    /// hash): Redis first, else memory. No generations are involved.
    pub async fn get_immutable(&self, key: &str) -> Option<Vec<u8>> {
        if self.settings.disabled {
            return None;
        }
        if let Some(redis) = self.redis_usable() {
            match redis.get(key).await {
                Ok(Some(v)) => return Some(v),
                Ok(None) => {}
                Err(()) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        self.memory
            .get(key)
            .await
            .map(|e| e.envelope.payload.clone())
    }

    /// Stores an immutable value for `ttl` in Redis, where every instance
    /// sees it, else in memory.
    pub async fn put_immutable(&self, key: &str, value: Vec<u8>, ttl: Duration) {
        if self.settings.disabled {
            return;
        }
        if let Some(redis) = self.redis_usable() {
            if redis.set(key, value.clone(), ttl).await.is_ok() {
                return;
            }
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
        }
        let entry = MemEntry {
            envelope: Arc::new(Envelope {
                gens: Vec::new(),
                payload: value,
            }),
            ttl,
        };
        self.memory.insert(key.to_string(), entry).await;
    }

    /// Makes every value depending on `scopes` stale, on every instance,
    /// before returning. Never fails: an invalidation that cannot reach
    /// Redis opens the breaker, and Redis is flushed (by epoch) on return.
    pub async fn invalidate(&self, scopes: &[Scope]) {
        let keys: Vec<String> = scopes.iter().map(Scope::gen_key).collect();
        if self.memory_gens.bump(&keys) {
            self.memory.invalidate_all();
        }
        if let Some(redis) = &self.redis {
            if redis.breaker.allows() && redis.incr_all(&keys).await.is_ok() {
                return;
            }
            self.missed_by_redis(redis, &keys).await;
        }
    }

    /// Drops the entries whose key starts with `prefix` (all when `None`);
    /// returns how many were dropped. Whole responses are made of every
    /// other class, so any clear drops them too (counted only when the
    /// prefix names them). Admin-only, never on the hot path.
    pub async fn clear(&self, prefix: Option<&str>) -> u64 {
        let prefix = prefix.unwrap_or("");
        let responses = format!("{RESPONSES_CLASS}:");
        if !prefix.is_empty() && !responses.starts_with(prefix) && !prefix.starts_with(&responses) {
            Box::pin(self.clear(Some(&responses))).await;
        }
        let mut dropped = 0u64;
        let keys: Vec<String> = self
            .memory
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| (*k).clone())
            .collect();
        for k in &keys {
            self.memory.invalidate(k).await;
        }
        let memory_dropped = keys.len() as u64;
        if let Some(redis) = self.redis_usable() {
            match redis.delete_prefix(prefix).await {
                Ok(n) => dropped += n,
                Err(()) => dropped += memory_dropped,
            }
            if prefix.is_empty() {
                // Also everything in flight: bump the epoch.
                let global = [GLOBAL_GEN.to_string()];
                if redis.incr_all(&global).await.is_err() {
                    self.missed_by_redis(redis, &global).await;
                }
            }
        } else {
            dropped += memory_dropped;
        }
        if prefix.is_empty() {
            self.memory_gens.bump(&[GLOBAL_GEN.to_string()]);
        }
        dropped
    }

    /// Current figures.
    pub async fn report(&self) -> CacheReport {
        self.memory.run_pending_tasks().await;
        let redis_available = self.redis_usable().is_some();
        let per_class: Vec<(&'static str, u64, u64)> = self
            .counters
            .classes
            .read()
            .expect("cache counters poisoned")
            .iter()
            .map(|(name, c)| {
                (
                    *name,
                    c.hits.load(Ordering::Relaxed),
                    c.misses.load(Ordering::Relaxed),
                )
            })
            .collect();
        let hits: u64 = per_class.iter().map(|c| c.1).sum();
        let misses: u64 = per_class.iter().map(|c| c.2).sum();
        CacheReport {
            backend: if redis_available { "redis" } else { "memory" },
            redis_configured: self.redis.is_some(),
            redis_available,
            breaker: self
                .redis
                .as_ref()
                .map_or(BreakerState::Closed, |r| r.breaker.state()),
            hits,
            misses,
            errors: self.counters.errors.load(Ordering::Relaxed),
            hit_rate: if hits + misses > 0 {
                hits as f64 / (hits + misses) as f64
            } else {
                0.0
            },
            memory_entries: self.memory.entry_count(),
            per_class,
        }
    }

    /// Records generation bumps Redis did not get and opens the breaker.
    /// Under the lock, a breaker the probe closed meanwhile is retried
    /// first: the probe replays under the same lock, so nothing falls
    /// between its replay and its closing.
    async fn missed_by_redis(&self, redis: &redis::RedisBackend, keys: &[String]) {
        let mut missed = self.missed.lock().await;
        if redis.breaker.allows() && redis.incr_all(keys).await.is_ok() {
            return;
        }
        missed.add(keys);
        redis.breaker.trip();
    }

    /// Called by the probe when Redis answers again after an outage.
    fn on_redis_recovered(&self) {
        // Entries made while degraded may predate writes other instances
        // made through Redis; start the next outage with an empty memory.
        self.memory.invalidate_all();
    }

    /// Called when the breaker opens.
    fn on_redis_lost(&self) {
        // Memory entries from an earlier outage may be older than writes
        // made through Redis since.
        self.memory.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: TtlClass = TtlClass::new("stats", |s| s.ttl_stats);
    const MODULES: TtlClass = TtlClass::new("modules", |s| s.ttl_modules);

    fn settings() -> CacheSettings {
        crate::config::Settings::from_source(&[]).unwrap().cache
    }

    #[tokio::test]
    async fn a_second_read_is_a_hit_and_an_invalidation_makes_it_a_miss() {
        let cache = Cache::new(&settings());
        let learner = Scope::of("learner", ObjectId::new());
        let calls = AtomicU64::new(0);
        let compute = || async {
            calls.fetch_add(1, Ordering::Relaxed);
            Ok(vec![1, 2, 3])
        };
        let a: Vec<i32> = cache
            .get_or_compute(STATS, "k", &[learner], compute)
            .await
            .unwrap();
        let b: Vec<i32> = cache
            .get_or_compute(STATS, "k", &[learner], compute)
            .await
            .unwrap();
        assert_eq!((a, b), (vec![1, 2, 3], vec![1, 2, 3]));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
        cache.invalidate(&[learner]).await;
        let _: Vec<i32> = cache
            .get_or_compute(STATS, "k", &[learner], compute)
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        // Another scope's invalidation leaves it alone.
        cache
            .invalidate(&[Scope::of("learner", ObjectId::new())])
            .await;
        let _: Vec<i32> = cache
            .get_or_compute(STATS, "k", &[learner], compute)
            .await
            .unwrap();
        assert_eq!(calls.load(Ordering::Relaxed), 2);
        let r = cache.report().await;
        assert_eq!((r.hits, r.misses, r.backend), (2, 2, "memory"));
    }

    #[tokio::test]
    async fn concurrent_misses_on_one_key_compute_once() {
        let cache = Cache::new(&settings());
        let calls = Arc::new(AtomicU64::new(0));
        let reads = (0..16).map(|_| {
            let calls = calls.clone();
            let cache = cache.clone();
            async move {
                cache
                    .get_or_compute(
                        MODULES,
                        "hot",
                        &[Scope::named("catalogue")],
                        || async move {
                            calls.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(30)).await;
                            Ok(42u32)
                        },
                    )
                    .await
                    .unwrap()
            }
        });
        let values = futures::future::join_all(reads).await;
        assert!(values.iter().all(|v| *v == 42));
        assert_eq!(calls.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn the_memory_cache_stays_within_its_bound() {
        let mut s = settings();
        s.memory_max_entries = 100;
        let cache = Cache::new(&s);
        for i in 0..1_000 {
            let _: u32 = cache
                .get_or_compute(MODULES, &format!("k{i}"), &[], || async { Ok(1u32) })
                .await
                .unwrap();
        }
        let r = cache.report().await;
        assert!(r.memory_entries <= 100, "{}", r.memory_entries);
    }

    #[tokio::test]
    async fn clear_drops_entries_by_prefix() {
        let cache = Cache::new(&settings());
        for key in ["a1", "a2", "b1"] {
            let _: u32 = cache
                .get_or_compute(MODULES, key, &[], || async { Ok(1u32) })
                .await
                .unwrap();
        }
        assert_eq!(cache.clear(Some("modules:a")).await, 2);
        assert_eq!(cache.clear(None).await, 1);
    }
}
