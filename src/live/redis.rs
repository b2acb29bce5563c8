//! Live events between instances through Redis pub/sub.
//!
//! Every instance subscribes to one channel, `<CACHE_KEY_PREFIX>live`, with
//! fred's subscriber client (which subscribes again after every reconnect)
//! and publishes each batch of events there as one BSON message tagged
//! with its instance id; an instance skips its own messages, having
//! delivered them locally already.
//!
//! Plain `PUBLISH`/`SUBSCRIBE` on purpose: a single Redis and Sentinel
//! (through the master) need nothing more, and Redis Cluster forwards
//! classic pub/sub messages to every node, so a subscriber connected to any
//! node hears every publish. Sharded pub/sub (`SPUBLISH`) would spread the
//! load over the shards but pins one channel to one shard anyway; for one
//! deployment-wide channel it buys nothing.
//!
//! Publishing goes through a bounded queue and one task: a write never
//! waits on Redis, a dead Redis cannot pile up tasks, and what cannot be
//! published (queue full, Redis down) is dropped and counted.

use std::{sync::Weak, time::Duration};

use bson::oid::ObjectId;
use fred::{clients::SubscriberClient, prelude::*, types::config::ReconnectPolicy};
use metrics::Label;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use super::{Hub, LiveEvent};
use crate::{
    config::CacheSettings,
    http::metrics::{Metrics, names},
};

/// Batches waiting to be published; past this, events are dropped.
const BACKLOG: usize = 1_024;

/// One Redis message: a batch of events and the instance that wrote them.
#[derive(Serialize, Deserialize)]
struct Envelope {
    origin: ObjectId,
    events: Vec<LiveEvent>,
}

/// The publishing side of the bridge (the listening side runs in its own
/// task until the hub is dropped).
pub struct Bridge {
    queue: mpsc::Sender<Vec<LiveEvent>>,
    metrics: Metrics,
}

impl Bridge {
    /// Starts the publisher and the subscriber; `None` (and a logged
    /// error) for a URL fred cannot use.
    pub(super) fn start(
        url: &str,
        settings: &CacheSettings,
        hub: Weak<Hub>,
        metrics: Metrics,
    ) -> Option<Self> {
        let config = match Config::from_url(url) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "REDIS_URL is not usable; live events stay on this instance");
                return None;
            }
        };
        let timeout = settings.redis_timeout.max(Duration::from_millis(500));
        let builder = |fail_fast: bool| {
            let mut b = Builder::from_config(config.clone());
            b.with_config(|c| c.fail_fast = fail_fast)
                .with_connection_config(|c| {
                    c.connection_timeout = timeout;
                    c.internal_command_timeout = timeout;
                    c.max_command_attempts = 1;
                })
                .with_performance_config(|p| {
                    p.default_command_timeout = timeout;
                    // Messages the listening task has not read yet.
                    p.broadcast_channel_capacity = 4_096;
                })
                .set_policy(ReconnectPolicy::new_exponential(0, 100, 5_000, 2));
            b
        };
        // Fail fast: while Redis is down a publish fails at once instead of
        // queueing inside fred.
        let publisher = builder(true).build().ok()?;
        let subscriber = builder(false).build_subscriber_client().ok()?;
        drop(publisher.connect());
        drop(subscriber.connect());
        let channel = format!("{}live", settings.key_prefix);
        let origin = ObjectId::new();
        let (queue, rx) = mpsc::channel(BACKLOG);
        tokio::spawn(publish_loop(
            publisher,
            channel.clone(),
            origin,
            rx,
            metrics.clone(),
        ));
        tokio::spawn(listen(subscriber, channel, origin, hub));
        Some(Bridge { queue, metrics })
    }

    /// Queues a batch for the other instances.
    pub(super) fn publish(&self, events: Vec<LiveEvent>) {
        if let Err(e) = self.queue.try_send(events) {
            let n = match &e {
                mpsc::error::TrySendError::Full(v) | mpsc::error::TrySendError::Closed(v) => {
                    v.len()
                }
            };
            dropped(&self.metrics, "redis_backlog", n);
        }
    }
}

fn dropped(metrics: &Metrics, reason: &'static str, n: usize) {
    metrics
        .counter(names::LIVE_DROPPED, vec![Label::new("reason", reason)])
        .increment(n as u64);
}

async fn publish_loop(
    client: Client,
    channel: String,
    origin: ObjectId,
    mut rx: mpsc::Receiver<Vec<LiveEvent>>,
    metrics: Metrics,
) {
    while let Some(events) = rx.recv().await {
        let n = events.len();
        let envelope = Envelope { origin, events };
        let bytes = match bson::to_vec(&envelope) {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "a live event could not be encoded");
                continue;
            }
        };
        if let Err(e) = client.publish::<(), _, _>(&channel, bytes).await {
            tracing::debug!(error = %e, "live events not published to redis");
            dropped(&metrics, "redis_publish", n);
        }
    }
}

/// Delivers the other instances' events to this one's subscribers until
/// the hub is gone.
async fn listen(client: SubscriberClient, channel: String, origin: ObjectId, hub: Weak<Hub>) {
    // Re-subscribes after every reconnect.
    let _resubscribe = client.manage_subscriptions();
    let mut messages = client.message_rx();
    let mut subscribed = false;
    loop {
        if hub.strong_count() == 0 {
            let _ = client.quit().await;
            return;
        }
        if !subscribed {
            match client.subscribe(&channel).await {
                Ok(()) => {
                    subscribed = true;
                    tracing::info!("listening for live events on redis");
                }
                Err(e) => {
                    tracing::debug!(error = %e, "redis subscribe failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            }
        }
        let message = tokio::select! {
            m = messages.recv() => m,
            // Wakes now and then to notice a dropped hub.
            _ = tokio::time::sleep(Duration::from_secs(5)) => continue,
        };
        let message = match message {
            Ok(m) => m,
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                if let Some(hub) = hub.upgrade() {
                    dropped(&hub.metrics, "redis_lagged", n as usize);
                }
                continue;
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        };
        let Some(bytes) = message.value.as_bytes() else {
            continue;
        };
        let Ok(envelope) = bson::from_slice::<Envelope>(bytes) else {
            tracing::warn!("an unreadable live message on redis was skipped");
            continue;
        };
        if envelope.origin == origin {
            continue;
        }
        let Some(hub) = hub.upgrade() else { return };
        hub.deliver(&envelope.events);
    }
}
