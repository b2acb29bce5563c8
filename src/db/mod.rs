//! MongoDB access: the one `Client` of the process, its tuned options, the
//! per-operation deadline, and the typed collections the domains use.

pub mod changes;
pub mod indexes;
pub mod page;
pub mod txn;

pub use txn::Topology;
pub(crate) use txn::in_session;

use std::{
    collections::BTreeMap,
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context;
use mongodb::{
    Client, Collection, Database,
    bson::{Document, doc},
    event::{EventHandler, cmap::CmapEvent, command::CommandEvent},
    options::{ClientOptions, Compressor},
};

use crate::{
    config::MongoSettings,
    error::{ApiError, ApiResult},
};

/// Counts the commands this process sent, by name (`find`, `aggregate`, …).
///
/// Fed by the driver's command monitoring; read by `/metrics` and by tests
/// that prove a statistic costs exactly one database command. On request
/// ([`CommandCounter::keep_commands`]) it also keeps the command documents
/// themselves, so that a test can `explain` every query the service sends.
#[derive(Debug, Default)]
pub struct CommandCounter {
    counts: Mutex<BTreeMap<String, u64>>,
    keeping: std::sync::atomic::AtomicBool,
    kept: Mutex<Vec<Document>>,
}

impl CommandCounter {
    fn record(&self, name: &str, command: &Document) {
        let mut counts = self.counts.lock().expect("command counter poisoned");
        *counts.entry(name.to_string()).or_default() += 1;
        drop(counts);
        if self.keeping.load(std::sync::atomic::Ordering::Relaxed) {
            self.kept
                .lock()
                .expect("command counter poisoned")
                .push(command.clone());
        }
    }

    /// Starts keeping a copy of every command sent from now on (tests only:
    /// the copies are never dropped).
    pub fn keep_commands(&self) {
        self.keeping
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// The commands kept since [`CommandCounter::keep_commands`].
    pub fn kept(&self) -> Vec<Document> {
        self.kept.lock().expect("command counter poisoned").clone()
    }

    /// A copy of the counts so far.
    pub fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts
            .lock()
            .expect("command counter poisoned")
            .clone()
    }

    /// Commands sent so far, all names together, leaving out the driver's
    /// own monitoring and handshake traffic.
    pub fn total(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(name, _)| {
                !matches!(
                    name.as_str(),
                    "hello" | "isMaster" | "ismaster" | "ping" | "endSessions"
                )
            })
            .map(|(_, n)| n)
            .sum()
    }
}

/// Live state of the connection pool, fed by the driver's CMAP events.
#[derive(Debug, Default)]
pub struct PoolGauges {
    /// Connections open (created and not yet closed).
    pub open: std::sync::atomic::AtomicI64,
    /// Connections checked out by operations right now.
    pub in_use: std::sync::atomic::AtomicI64,
    /// Check-outs that failed (pool exhausted past the wait, or errors).
    pub checkout_failures: std::sync::atomic::AtomicU64,
}

/// The database handle shared by every request.
#[derive(Clone)]
pub struct Db {
    pub client: Client,
    pub db: Database,
    /// Deadline of one operation, enforced both as `maxTimeMS` and on the
    /// client side (so a server that stops answering cannot hang a request).
    pub op_timeout: Duration,
    pub commands: Arc<CommandCounter>,
    pub pool: Arc<PoolGauges>,
    /// Where reads that may lag (the dashboard) go; `None` is the primary.
    pub lagging_read_preference: Option<mongodb::options::ReadPreference>,
    /// The write concern of `progress` and `activity` writes
    /// (`MONGODB_WRITE_CONCERN`); `None` keeps the client's.
    pub progress_write_concern: Option<mongodb::options::WriteConcern>,
    /// Whether `modules` has a text index, so catalogue search may use
    /// `$text` (else an escaped regex). Found at start, refreshed by
    /// [`indexes::has_text_index`] callers.
    pub text_search: Arc<std::sync::atomic::AtomicBool>,
    /// Whether the deployment runs transactions and change streams, read
    /// from `hello` on first need ([`Db::topology`]).
    pub topology: Arc<tokio::sync::OnceCell<Topology>>,
}

/// Collection names, in one place.
pub mod names {
    pub const USERS: &str = "users";
    pub const MODULES: &str = "modules";
    pub const PROGRESS: &str = "progress";
    pub const ACTIVITY: &str = "activity";
    pub const NOTIFICATIONS: &str = "notifications";
    /// Durable background jobs (the notification fan-out of a publish).
    pub const JOBS: &str = "jobs";
    /// Idempotency keys of progress reports and their first answers (24 h).
    pub const IDEMPOTENCY: &str = "idempotency";
    /// Every collection that `indexes/` declares.
    pub const ALL: [&str; 7] = [
        USERS,
        MODULES,
        PROGRESS,
        ACTIVITY,
        NOTIFICATIONS,
        JOBS,
        IDEMPOTENCY,
    ];
}

impl Db {
    /// Builds the client from settings. Connecting is lazy: this fails only
    /// on a malformed URI, never because the server is down.
    pub async fn connect(settings: &MongoSettings) -> anyhow::Result<Self> {
        let mut opts = ClientOptions::parse(&settings.uri)
            .await
            .context("invalid MONGODB_URI")?;
        opts.app_name.get_or_insert_with(|| "kairos".to_string());
        opts.max_pool_size = Some(settings.max_pool_size);
        opts.min_pool_size = Some(settings.min_pool_size);
        opts.max_idle_time = Some(settings.max_idle_time);
        opts.connect_timeout = Some(settings.connect_timeout);
        opts.server_selection_timeout = Some(settings.server_selection_timeout);
        opts.retry_reads = Some(settings.retry_reads);
        opts.retry_writes = Some(settings.retry_writes);
        if let Some(rc) = &settings.read_concern {
            opts.read_concern = Some(rc.clone());
        }
        // Polling monitors, unless the URI says otherwise: after a
        // state-change or network error the driver marks the server unknown
        // and asks its monitor to check again at once, but a streaming
        // monitor sits in an awaitable `hello` that the server holds for
        // the whole heartbeat period (10 s) unless its topology changes;
        // a primary that refused a write without stepping down (or a proxy
        // in between) then left every request waiting for server selection
        // that long. A polling monitor checks within 500 ms of the request.
        opts.server_monitoring_mode
            .get_or_insert(mongodb::options::ServerMonitoringMode::Poll);
        if opts.compressors.is_none() && !settings.compressors.is_empty() {
            opts.compressors = Some(
                settings
                    .compressors
                    .iter()
                    .map(|c| match c.as_str() {
                        "zstd" => Compressor::Zstd { level: None },
                        "snappy" => Compressor::Snappy,
                        _ => Compressor::Zlib { level: None },
                    })
                    .collect(),
            );
        }
        let commands = Arc::new(CommandCounter::default());
        let counter = commands.clone();
        opts.command_event_handler = Some(EventHandler::callback(move |ev: CommandEvent| {
            if let CommandEvent::Started(started) = ev {
                counter.record(&started.command_name, &started.command);
            }
        }));
        let pool = Arc::new(PoolGauges::default());
        let gauges = pool.clone();
        opts.cmap_event_handler = Some(EventHandler::callback(move |ev: CmapEvent| {
            use std::sync::atomic::Ordering::Relaxed;
            match ev {
                CmapEvent::ConnectionCreated(_) => {
                    gauges.open.fetch_add(1, Relaxed);
                }
                CmapEvent::ConnectionClosed(_) => {
                    gauges.open.fetch_sub(1, Relaxed);
                }
                CmapEvent::ConnectionCheckedOut(_) => {
                    gauges.in_use.fetch_add(1, Relaxed);
                }
                CmapEvent::ConnectionCheckedIn(_) => {
                    gauges.in_use.fetch_sub(1, Relaxed);
                }
                CmapEvent::ConnectionCheckoutFailed(_) => {
                    gauges.checkout_failures.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }));
        let client = Client::with_options(opts).context("building the MongoDB client")?;
        let db = client.database(&settings.database);
        Ok(Db {
            client,
            db,
            op_timeout: settings.operation_timeout,
            commands,
            pool,
            lagging_read_preference: settings.lagging_read_preference.clone(),
            progress_write_concern: settings.progress_write_concern.clone(),
            text_search: Arc::default(),
            topology: Arc::default(),
        })
    }

    /// Closes the client's pools and stops its background tasks, waiting
    /// for them. Short-lived commands (`seed`, `indexes`) call it before the
    /// runtime shuts down: dropping the client with its pool workers still
    /// running made the driver panic in its connection requester
    /// (`SendError`) at exit.
    pub async fn shutdown(self) {
        let Db { client, db, .. } = self;
        drop(db);
        client.shutdown().await;
    }

    /// One round trip to the server; used at start and by `/ready`.
    pub async fn ping(&self) -> ApiResult<()> {
        self.run(self.db.run_command(doc! { "ping": 1 })).await?;
        Ok(())
    }

    /// A collection handle; `progress` and `activity` carry
    /// `MONGODB_WRITE_CONCERN` when it is set.
    pub fn collection<T: Send + Sync>(&self, name: &str) -> Collection<T> {
        match &self.progress_write_concern {
            Some(wc) if name == names::PROGRESS || name == names::ACTIVITY => {
                self.db.collection_with_options(
                    name,
                    mongodb::options::CollectionOptions::builder()
                        .write_concern(wc.clone())
                        .build(),
                )
            }
            _ => self.db.collection(name),
        }
    }

    pub fn raw(&self, name: &str) -> Collection<Document> {
        self.collection(name)
    }

    /// Runs one driver operation under the client-side deadline and maps its
    /// failure to the public error.
    pub async fn run<T>(
        &self,
        op: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> ApiResult<T> {
        with_deadline(self.op_timeout, op.into_future()).await
    }
}

impl Db {
    /// Like [`Db::run`], but hands the driver's error back to the caller,
    /// for the few places that act on a specific one (duplicate keys).
    pub async fn run_keep<T>(
        &self,
        op: impl std::future::IntoFuture<Output = mongodb::error::Result<T>>,
    ) -> ApiResult<mongodb::error::Result<T>> {
        tokio::time::timeout(
            self.op_timeout + Duration::from_millis(500),
            op.into_future(),
        )
        .await
        .map_err(ApiError::from)
    }
}

/// Awaits `fut` for at most `deadline` plus a small grace (the server's own
/// `maxTimeMS` should fire first and say so).
pub async fn with_deadline<T>(
    deadline: Duration,
    fut: impl Future<Output = mongodb::error::Result<T>>,
) -> ApiResult<T> {
    match tokio::time::timeout(deadline + Duration::from_millis(500), fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(ApiError::from(e)),
        Err(elapsed) => Err(ApiError::from(elapsed)),
    }
}

#[cfg(test)]
mod tests {
    use mongodb::options::{Acknowledgment, ClientOptions};

    use super::*;

    #[tokio::test]
    async fn a_replica_set_uri_and_the_progress_write_concern_reach_the_client() {
        let settings = crate::config::Settings::from_source(&[
            (
                "MONGODB_URI",
                "mongodb://db1:27017,db2:27017,db3:27017/?replicaSet=rs0&w=1",
            ),
            ("MONGODB_WRITE_CONCERN", "majority"),
            ("MONGODB_READ_CONCERN", "majority"),
        ])
        .unwrap();
        let opts = ClientOptions::parse(&settings.mongo.uri).await.unwrap();
        assert_eq!(opts.repl_set_name.as_deref(), Some("rs0"));
        assert_eq!(opts.hosts.len(), 3);
        // Connecting is lazy: nothing needs to answer.
        let db = Db::connect(&settings.mongo).await.unwrap();
        for name in [names::PROGRESS, names::ACTIVITY] {
            let wc = db.raw(name).write_concern().cloned().unwrap();
            assert_eq!(wc.w, Some(Acknowledgment::Majority), "{name}");
        }
        // Other collections keep the URI's.
        assert_eq!(
            db.raw(names::USERS)
                .write_concern()
                .and_then(|w| w.w.clone()),
            Some(Acknowledgment::Nodes(1))
        );
        assert_eq!(
            db.raw(names::USERS).read_concern().map(|r| r.level.clone()),
            Some(mongodb::options::ReadConcernLevel::Majority)
        );
        db.shutdown().await;
    }
}
