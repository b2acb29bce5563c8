//! Raw entries tagged with scopes, for callers that keep bytes rather than
//! values (the whole-response cache): a lookup that misses hands back a
//! [`Ticket`] holding the generations it saw, and the value computed
//! after it is stored under those, so a write that lands meanwhile makes
//! it stale at once (the rule of [`Cache::get_or_compute`]).

use std::sync::atomic::Ordering;

use super::{Cache, Lookup, Scope, TtlClass};

/// A miss: where to store the value computed for it.
pub struct Ticket {
    key: String,
    class: TtlClass,
    lookup: Lookup,
}

impl Cache {
    /// The bytes stored under `key` while every generation of `scopes` is
    /// unchanged, or a ticket to store them. `None` when the cache is off.
    pub async fn get_tagged(
        &self,
        class: TtlClass,
        key: &str,
        scopes: &[Scope],
    ) -> Option<Result<Vec<u8>, Ticket>> {
        if self.settings.disabled {
            return None;
        }
        let key = format!("{}:{key}", class.name());
        let mut lookup = self.lookup(&key, &Self::gen_keys(scopes)).await;
        let counters = self.counters.of(class.name);
        if let Some(bytes) = lookup.payload.take() {
            counters.hits.fetch_add(1, Ordering::Relaxed);
            return Some(Ok(bytes));
        }
        counters.misses.fetch_add(1, Ordering::Relaxed);
        Some(Err(Ticket { key, class, lookup }))
    }

    /// Stores `bytes` for the miss of `ticket`.
    pub async fn put_tagged(&self, ticket: Ticket, bytes: Vec<u8>) {
        self.store(&ticket.key, ticket.class, &ticket.lookup, bytes)
            .await;
    }
}
