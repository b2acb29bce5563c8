//! Entities by id through the cache: the modules a cached progress page,
//! history page or notification page refers to are read here, in one
//! multi-get for a whole page, so that a repeated page costs no database
//! command at all.
//!
//! Every entity of one call depends on the same scopes (for modules, the
//! catalogue, which every module write bumps), so the values and the
//! generations are read together: one `MGET` on a single Redis or
//! Sentinel, one `MGET` per hash slot (issued together) on a cluster.
//! Absent entities are cached too (as absent), so a notification about a
//! deleted module does not reach the database on every read. Misses are
//! loaded in one call and stored under the generations read *before*
//! loading, as [`Cache::get_or_compute`] does, so a value loaded while a
//! write lands is never served.

use std::{collections::HashMap, future::Future, sync::atomic::Ordering};

use bson::oid::ObjectId;
use serde::{Serialize, de::DeserializeOwned};

use super::{Cache, Envelope, MemEntry, TtlClass};
use crate::error::ApiResult;

impl Cache {
    /// The entities of `ids` (those that exist), from the cache, and the
    /// missing ones from one `load` of their ids, then stored for the
    /// class's TTL under `scopes`. Cache failures never reach the caller.
    pub async fn get_many<T, F, Fut>(
        &self,
        class: TtlClass,
        ids: &[ObjectId],
        scopes: &[super::Scope],
        load: F,
    ) -> ApiResult<HashMap<ObjectId, T>>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(Vec<ObjectId>) -> Fut,
        Fut: Future<Output = ApiResult<Vec<(ObjectId, T)>>>,
    {
        let mut ids = ids.to_vec();
        ids.sort_unstable();
        ids.dedup();
        if self.settings.disabled || ids.is_empty() {
            return Ok(load(ids).await?.into_iter().collect());
        }
        let keys: Vec<String> = ids.iter().map(|id| entity_key(class, *id)).collect();
        let gen_keys = Self::gen_keys(scopes);
        let (payloads, gens, redis) = self.lookup_many(&keys, &gen_keys).await;

        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (id, payload) in ids.iter().zip(payloads) {
            match payload.and_then(|p| rmp_serde::from_slice::<Option<T>>(&p).ok()) {
                Some(Some(v)) => {
                    found.insert(*id, v);
                }
                Some(None) => {} // known to be absent
                None => missing.push(*id),
            }
        }
        let counters = self.counters.of(class.name);
        counters
            .hits
            .fetch_add((ids.len() - missing.len()) as u64, Ordering::Relaxed);
        if missing.is_empty() {
            return Ok(found);
        }
        counters
            .misses
            .fetch_add(missing.len() as u64, Ordering::Relaxed);
        let mut loaded: HashMap<ObjectId, T> = load(missing.clone()).await?.into_iter().collect();
        let mut entries = Vec::with_capacity(missing.len());
        for id in &missing {
            let value = loaded.remove(id);
            if let Ok(payload) = rmp_serde::to_vec_named(&value) {
                entries.push((entity_key(class, *id), payload));
            }
            if let Some(v) = value {
                found.insert(*id, v);
            }
        }
        self.store_many(class, entries, gens, redis).await;
        Ok(found)
    }

    /// The payloads of `keys` that are current under `gen_keys`, the
    /// generations, and whether Redis answered.
    async fn lookup_many(
        &self,
        keys: &[String],
        gen_keys: &[String],
    ) -> (Vec<Option<Vec<u8>>>, Vec<u64>, bool) {
        if let Some(redis) = self.redis_usable() {
            match redis.get_many_with_gens(keys, gen_keys).await {
                Ok((values, gens)) => {
                    let payloads = values
                        .into_iter()
                        .map(|v| {
                            v.and_then(|bytes| rmp_serde::from_slice::<Envelope>(&bytes).ok())
                                .filter(|env| env.gens == gens)
                                .map(|env| env.payload)
                        })
                        .collect();
                    return (payloads, gens, true);
                }
                Err(()) => {
                    self.counters.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
        let gens = self.memory_gens.current(gen_keys);
        let mut payloads = Vec::with_capacity(keys.len());
        for key in keys {
            payloads.push(
                self.memory
                    .get(key)
                    .await
                    .filter(|e| e.envelope.gens == gens)
                    .map(|e| e.envelope.payload.clone()),
            );
        }
        (payloads, gens, false)
    }

    async fn store_many(
        &self,
        class: TtlClass,
        entries: Vec<(String, Vec<u8>)>,
        gens: Vec<u64>,
        redis_answered: bool,
    ) {
        let mut ttl = class.ttl(&self.settings);
        if redis_answered {
            let Some(redis) = &self.redis else { return };
            let encoded: Vec<(String, Vec<u8>)> = entries
                .into_iter()
                .filter_map(|(k, payload)| {
                    let env = Envelope {
                        gens: gens.clone(),
                        payload,
                    };
                    rmp_serde::to_vec(&env).ok().map(|b| (k, b))
                })
                .collect();
            if redis.set_many(encoded, ttl).await.is_err() {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if self.redis.is_some() {
            ttl = ttl.min(self.settings.degraded_ttl);
        }
        for (key, payload) in entries {
            let entry = MemEntry {
                envelope: std::sync::Arc::new(Envelope {
                    gens: gens.clone(),
                    payload,
                }),
                ttl,
            };
            self.memory.insert(key, entry).await;
        }
    }
}

/// The key of one entity: the class (what `clearCache` matches), then the
/// id in braces, a hash tag of its own so a cluster spreads entities over
/// every primary while a caller may co-locate keys with the same tag.
fn entity_key(class: TtlClass, id: ObjectId) -> String {
    format!("{}:entity:{{{}}}", class.name(), id.to_hex())
}
