//! Live events for subscriptions: who is told what, on every instance.
//!
//! A write publishes [`LiveEvent`]s (one user, one topic, the document as
//! committed) once it is committed. The [`Live`] hub hands each event at
//! once to the subscribers of this instance (a tokio broadcast channel per
//! user and topic, created by the first subscriber and removed with the
//! last), and, when Redis is configured, publishes it on one Redis channel
//! that every instance listens to ([`redis`]).
//!
//! **Delivery is at most once.** Nothing is stored: an event published
//! while an instance is cut from Redis never reaches that instance's
//! subscribers, an event a slow subscriber could not take in time is
//! skipped (counted in `kairos_live_events_dropped_total`), and a client
//! that reconnects refetches what it shows. The writing instance delivers
//! locally before (and whatever) Redis says, and ignores its own messages
//! when they come back from Redis, so while Redis is down its own
//! subscribers still get their events, and none gets one twice.
//!
//! This module knows no domain: documents travel as BSON and each domain's
//! subscription resolver reads its own type back.

pub mod redis;

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex, Weak},
};

use bson::{Document, oid::ObjectId};
use futures::{Stream, StreamExt};
use metrics::Label;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::{
    config::{CacheSettings, LiveSettings},
    error::ApiResult,
    events::{Event, Listener},
    http::metrics::{Metrics, names},
};

/// What a subscription listens to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Topic {
    /// A notification was created for the user.
    Notification,
    /// The user's progress on a module changed.
    Progress,
}

/// One event for one user: the document as committed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LiveEvent {
    pub topic: Topic,
    pub user: ObjectId,
    pub doc: Document,
}

/// Channels per shard lock: subscribes and deliveries of different users
/// rarely wait on each other.
const SHARDS: usize = 64;

type Key = (Topic, ObjectId);
type Shard = Mutex<HashMap<Key, broadcast::Sender<Arc<Document>>>>;

struct Hub {
    shards: Box<[Shard]>,
    hasher: std::collections::hash_map::RandomState,
    /// Events queued per user and topic (`WS_EVENT_BUFFER`).
    capacity: usize,
    metrics: Metrics,
}

impl Hub {
    fn shard(&self, key: &Key) -> &Shard {
        &self.shards[self.hasher.hash_one(key) as usize % SHARDS]
    }

    /// Hands events to this instance's subscribers.
    fn deliver(&self, events: &[LiveEvent]) {
        for event in events {
            let key = (event.topic, event.user);
            let shard = self.shard(&key).lock().expect("live shard poisoned");
            if let Some(sender) = shard.get(&key) {
                // An error only means the last receiver just left.
                let _ = sender.send(Arc::new(event.doc.clone()));
            }
        }
    }
}

/// The live-event hub of this process; cheap to clone.
#[derive(Clone)]
pub struct Live {
    hub: Arc<Hub>,
    redis: Option<Arc<redis::Bridge>>,
}

impl Live {
    /// The hub; with `REDIS_URL`, also the Redis bridge (connecting in the
    /// background, like the cache).
    pub fn new(live: &LiveSettings, cache: &CacheSettings, metrics: Metrics) -> Self {
        let hub = Arc::new(Hub {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: Default::default(),
            capacity: live.event_buffer,
            metrics: metrics.clone(),
        });
        let redis = cache.redis_url.as_deref().and_then(|url| {
            redis::Bridge::start(url, cache, Arc::downgrade(&hub), metrics).map(Arc::new)
        });
        Live { hub, redis }
    }

    /// Publishes committed events: to this instance's subscribers now, to
    /// the others through Redis in the background (never waiting on it).
    pub fn publish(&self, events: Vec<LiveEvent>) {
        if events.is_empty() {
            return;
        }
        self.hub.deliver(&events);
        if let Some(redis) = &self.redis {
            redis.publish(events);
        }
    }

    /// The documents published for `user` on `topic` from now on. A
    /// subscriber that falls more than `WS_EVENT_BUFFER` events behind
    /// skips the oldest (counted as dropped).
    pub fn subscribe(
        &self,
        topic: Topic,
        user: ObjectId,
    ) -> impl Stream<Item = Arc<Document>> + Send + 'static {
        let key = (topic, user);
        let rx = {
            let mut shard = self.hub.shard(&key).lock().expect("live shard poisoned");
            shard
                .entry(key)
                .or_insert_with(|| broadcast::channel(self.hub.capacity).0)
                .subscribe()
        };
        let state = Subscription {
            rx,
            _leave: Leave {
                hub: Arc::downgrade(&self.hub),
                key,
            },
        };
        futures::stream::unfold(state, |mut s| async move {
            loop {
                match s.rx.recv().await {
                    Ok(doc) => return Some((doc, s)),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        if let Some(hub) = s._leave.hub.upgrade() {
                            hub.metrics
                                .counter(names::LIVE_DROPPED, vec![Label::new("reason", "lagged")])
                                .increment(n);
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .boxed()
    }
}

/// Committed progress and notification writes become live events.
#[async_trait::async_trait]
impl Listener for Live {
    async fn on(&self, event: &Event) -> ApiResult<()> {
        let events = match event {
            Event::ProgressChanged { user_id, progress } => vec![LiveEvent {
                topic: Topic::Progress,
                user: *user_id,
                doc: progress.clone(),
            }],
            Event::NotificationsAdded { notifications } => notifications
                .iter()
                .map(|(user, doc)| LiveEvent {
                    topic: Topic::Notification,
                    user: *user,
                    doc: doc.clone(),
                })
                .collect(),
            Event::ModulePublished { .. } | Event::ModuleDeleted { .. } => return Ok(()),
        };
        self.publish(events);
        Ok(())
    }
}

/// One subscriber's receiver; `rx` is dropped before `_leave` runs.
struct Subscription {
    rx: broadcast::Receiver<Arc<Document>>,
    _leave: Leave,
}

/// Removes the channel of a user and topic when its last subscriber goes,
/// so the map holds only what someone listens to.
struct Leave {
    hub: Weak<Hub>,
    key: Key,
}

impl Drop for Leave {
    fn drop(&mut self) {
        let Some(hub) = self.hub.upgrade() else {
            return;
        };
        let mut shard = hub.shard(&self.key).lock().expect("live shard poisoned");
        if shard
            .get(&self.key)
            .is_some_and(|s| s.receiver_count() == 0)
        {
            shard.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn live() -> Live {
        let settings = crate::config::Settings::from_source(&[("WS_EVENT_BUFFER", "2")]).unwrap();
        Live::new(&settings.live, &settings.cache, Metrics::new())
    }

    #[tokio::test]
    async fn a_subscriber_gets_only_its_users_events_of_its_topic() {
        let live = live();
        let (me, other) = (ObjectId::new(), ObjectId::new());
        let mut mine = live.subscribe(Topic::Progress, me);
        let event = |topic, user, n: i32| LiveEvent {
            topic,
            user,
            doc: bson::doc! { "n": n },
        };
        live.publish(vec![
            event(Topic::Progress, other, 1),
            event(Topic::Notification, me, 2),
            event(Topic::Progress, me, 3),
        ]);
        assert_eq!(mine.next().await.unwrap().get_i32("n").unwrap(), 3);
    }

    #[tokio::test]
    async fn the_last_subscriber_leaving_removes_the_channel() {
        let live = live();
        let me = ObjectId::new();
        let a = live.subscribe(Topic::Notification, me);
        let b = live.subscribe(Topic::Notification, me);
        let count = || {
            live.hub
                .shards
                .iter()
                .map(|s| s.lock().unwrap().len())
                .sum::<usize>()
        };
        assert_eq!(count(), 1);
        drop(a);
        assert_eq!(count(), 1);
        drop(b);
        assert_eq!(count(), 0);
    }

    #[tokio::test]
    async fn a_lagging_subscriber_skips_the_oldest_events() {
        let live = live();
        let me = ObjectId::new();
        let mut slow = live.subscribe(Topic::Progress, me);
        for n in 0..5 {
            live.publish(vec![LiveEvent {
                topic: Topic::Progress,
                user: me,
                doc: bson::doc! { "n": n },
            }]);
        }
        // Capacity 2: the first three were dropped.
        assert_eq!(slow.next().await.unwrap().get_i32("n").unwrap(), 3);
        assert_eq!(slow.next().await.unwrap().get_i32("n").unwrap(), 4);
    }
}
