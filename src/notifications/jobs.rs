//! Durable fan-out jobs: publishing a module inserts one document in `jobs`
//! in the same transaction as the publish (no published module without its
//! job, no job without its module; the mutation does nothing more, so it
//! never waits for the fan-out), and a worker in each service instance
//! does the rest.
//!
//! **Claiming.** A worker takes a job with one `findOneAndUpdate`: a queued
//! job whose retry time has come, or a running one whose lease has passed
//! (its worker died). The claim sets the worker's id and a lease; only the
//! owner's writes to the job match, so two workers never both advance one
//! job.
//!
//! **Batches.** Learners are read in `_id` order after the job's resume
//! cursor, `NOTIFY_BATCH_SIZE` at a time, and inserted unordered. After each
//! batch the job stores the last learner's id, renews the lease and adds the
//! batch to `notified`, in one update conditioned on ownership.
//!
//! **Idempotence.** A notification's `_id` is derived from (job, learner),
//! so a batch inserted twice (a worker died between the insert and the
//! cursor update, or lost its lease while inserting) only meets duplicate
//! keys, which are ignored: no learner is told twice, none is skipped.
//!
//! **Failures.** A failed round puts the job back in the queue with a
//! doubling delay; after `JOB_MAX_ATTEMPTS` it is `failed`. A worker asked
//! to stop finishes its round and hands the job back at once.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_graphql::Enum;
use bson::{Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use metrics::Label;
use mongodb::{ClientSession, options::ReturnDocument};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::{Notify, watch};

use crate::{
    auth::Role,
    config::{JobSettings, MongoSettings},
    db::{Db, in_session, names},
    error::{ApiError, ApiResult, only_duplicate_keys},
    events::{Event, Events, Listener},
    http::metrics::Metrics,
};

/// Where a job stands; stored lowercase.
#[derive(Enum, Serialize, Deserialize, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a worker (new, or back after a failed round).
    Queued,
    /// Claimed by a worker whose lease runs.
    Running,
    /// Every learner was notified.
    Done,
    /// Given up after the last attempt.
    Failed,
    /// The module was deleted before the fan-out finished.
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }
}

/// One `jobs` document: the fan-out of one publish.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobDoc {
    #[serde(rename = "_id")]
    pub id: ObjectId,
    pub module_id: ObjectId,
    /// The text every learner gets (fixed when the module was published).
    pub message: String,
    pub state: JobState,
    /// Claims so far (a worker that died mid-way counts as one).
    #[serde(default)]
    pub attempts: i32,
    /// Learners when the fan-out started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Learners covered so far (up to `resume_after`).
    #[serde(default)]
    pub notified: i64,
    /// The last learner covered; the next round starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_after: Option<ObjectId>,
    /// The worker holding the job.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<bson::DateTime>,
    pub next_attempt_at: bson::DateTime,
    pub created_at: bson::DateTime,
    pub updated_at: bson::DateTime,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<bson::DateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<bson::DateTime>,
    /// Why the last round failed (a short, public-safe text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// The message of a publish notification.
pub fn publish_message(title: &str) -> String {
    format!("New module published: {title}")
}

/// Queues the fan-out of a publish, in the publish's unit (`session`): the
/// job and the publish are applied together or not at all.
pub async fn queue(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    module_id: ObjectId,
    title: &str,
) -> mongodb::error::Result<ObjectId> {
    let now = bson::DateTime::now();
    let job = JobDoc {
        id: ObjectId::new(),
        module_id,
        message: publish_message(title),
        state: JobState::Queued,
        attempts: 0,
        total: None,
        notified: 0,
        resume_after: None,
        owner: None,
        lease_until: None,
        next_attempt_at: now,
        created_at: now,
        updated_at: now,
        started_at: None,
        finished_at: None,
        last_error: None,
    };
    in_session!(
        session,
        db.collection::<JobDoc>(names::JOBS).insert_one(&job)
    )?;
    Ok(job.id)
}

/// Queues the fan-out of a publish on its own (tools and tests; the
/// service queues it in the publish's unit, [`queue`]).
#[tracing::instrument(skip(db, title))]
pub async fn enqueue(db: &Db, module_id: ObjectId, title: &str) -> ApiResult<ObjectId> {
    crate::db::with_deadline(db.op_timeout, queue(db, &mut None, module_id, title)).await
}

/// Stops the unfinished fan-outs of a module that is being deleted, in
/// the deletion's unit.
pub async fn cancel_for_module(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    module_id: ObjectId,
) -> mongodb::error::Result<u64> {
    let now = bson::DateTime::now();
    let r = in_session!(
        session,
        db.raw(names::JOBS).update_many(
            doc! { "module_id": module_id, "state": { "$in": ["queued", "running"] } },
            doc! {
                "$set": { "state": JobState::Cancelled.as_str(), "updated_at": now, "finished_at": now },
                "$unset": { "owner": "", "lease_until": "" },
            },
        )
    )?;
    Ok(r.modified_count)
}

/// The sort key of the admin list: newest first.
pub type JobKey = (i64, String);

pub fn job_key(j: &JobDoc) -> JobKey {
    (j.created_at.timestamp_millis(), j.id.to_hex())
}

/// One page of jobs, newest first (`limit + 1` items).
pub async fn list(db: &Db, after: Option<&JobKey>, limit: i64) -> ApiResult<Vec<JobDoc>> {
    crate::db::page::newest_first(db, names::JOBS, Document::new(), "created_at", after, limit)
        .await
}

/// The id of the notification of `user` from `job`: the job's second (so
/// ids still sort roughly by time) and 8 bytes of a hash of both ids. The
/// same pair always gives the same id, which makes re-inserting a batch
/// harmless.
pub fn notification_id(job: ObjectId, created: bson::DateTime, user: ObjectId) -> ObjectId {
    let mut hasher = Sha256::new();
    hasher.update(job.bytes());
    hasher.update(user.bytes());
    let hash = hasher.finalize();
    let mut bytes = [0u8; 12];
    let secs = (created.timestamp_millis() / 1000).clamp(0, i64::from(u32::MAX)) as u32;
    bytes[..4].copy_from_slice(&secs.to_be_bytes());
    bytes[4..].copy_from_slice(&hash[..8]);
    ObjectId::from_bytes(bytes)
}

/// The documents of an unordered batch that did go in: all but those
/// whose index failed on a duplicate key.
fn without_duplicates(docs: Vec<Document>, err: &mongodb::error::Error) -> Vec<Document> {
    use mongodb::error::ErrorKind;
    let failed: std::collections::HashSet<usize> = match err.kind.as_ref() {
        ErrorKind::InsertMany(e) => e.write_errors.iter().flatten().map(|w| w.index).collect(),
        // A single duplicate without indexes: tell nobody rather than twice.
        _ => return Vec::new(),
    };
    docs.into_iter()
        .enumerate()
        .filter(|(i, _)| !failed.contains(i))
        .map(|(_, d)| d)
        .collect()
}

/// The delay before retry number `attempts` (1-based): `base`, doubled per
/// attempt, at most five minutes.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    base.saturating_mul(1u32 << exp.min(16))
        .min(Duration::from_secs(300))
}

fn later(d: Duration) -> bson::DateTime {
    bson::DateTime::from_millis(
        bson::DateTime::now()
            .timestamp_millis()
            .saturating_add(d.as_millis() as i64),
    )
}

/// Names of the job metrics (`/metrics`).
mod metric_names {
    pub use crate::http::metrics::names::{
        NOTIFICATION_JOB_RETRIES as RETRIES, NOTIFICATION_JOBS as JOBS,
        NOTIFICATION_JOBS_FINISHED as FINISHED, NOTIFICATIONS_FANNED_OUT as SENT,
    };
}

/// The handle the rest of the app holds: wakes this instance's worker when
/// a publish queued a job, so it does not wait for its next poll.
#[derive(Default)]
pub struct JobSignal {
    wake: Notify,
}

impl JobSignal {
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The catalogue's events as fan-out jobs: a publish queues one in its own
/// unit and, once committed, wakes this instance's worker; a deletion
/// cancels the module's unfinished ones in its unit.
pub struct FanOut {
    pub db: Db,
    pub signal: Arc<JobSignal>,
    /// Drops the notification pages a batch made stale.
    pub cache: Arc<crate::cache::Cache>,
}

#[async_trait::async_trait]
impl Listener for FanOut {
    async fn in_unit(
        &self,
        event: &Event,
        session: &mut Option<&mut ClientSession>,
    ) -> mongodb::error::Result<()> {
        match event {
            Event::ModulePublished { module_id, title } => {
                queue(&self.db, session, *module_id, title).await?;
            }
            Event::ModuleDeleted { module_id } => {
                cancel_for_module(&self.db, session, *module_id).await?;
            }
            Event::ProgressChanged { .. } | Event::NotificationsAdded { .. } => {}
        }
        Ok(())
    }

    async fn on(&self, event: &Event) -> ApiResult<()> {
        match event {
            Event::ModulePublished { .. } => self.signal.wake(),
            Event::NotificationsAdded { notifications } if !notifications.is_empty() => {
                self.cache.invalidate(&[super::service::FANNED_OUT]).await;
            }
            // Notifications about a deleted module lose their module.
            Event::ModuleDeleted { .. } => {
                self.cache.invalidate(&[super::service::FANNED_OUT]).await;
            }
            Event::ProgressChanged { .. } | Event::NotificationsAdded { .. } => {}
        }
        Ok(())
    }
}

/// What a worker runs with.
pub struct WorkerDeps {
    /// The database settings; the worker builds its own small client.
    pub mongo: MongoSettings,
    pub settings: JobSettings,
    pub metrics: Metrics,
    /// Wakes the worker when this instance queued a job.
    pub signal: Arc<JobSignal>,
    /// Announces each batch of notifications inserted (live updates).
    pub events: Events,
}

/// How one claimed job ended for this worker.
enum Round {
    /// Finished (done) or cancelled or taken over: look for more work.
    Over,
    /// Asked to stop: the job was handed back.
    Stopped,
}

/// One worker: its own database client (a fan-out never takes connections
/// from the pool that serves requests, nor counts in its command figures).
struct Worker {
    settings: JobSettings,
    metrics: Metrics,
    signal: Arc<JobSignal>,
    events: Events,
    db: Db,
    owner: String,
    stop: watch::Receiver<bool>,
    last_gauges: Option<Instant>,
}

/// Runs this instance's worker until `stop` turns true (or its sender is
/// dropped). Never panics on database trouble: it logs, waits and retries.
pub async fn run_worker(deps: WorkerDeps, stop: watch::Receiver<bool>) {
    let mut settings = deps.mongo.clone();
    settings.min_pool_size = 0;
    settings.max_pool_size = 4;
    let db = match Db::connect(&settings).await {
        Ok(db) => db,
        Err(e) => {
            tracing::error!(error = %e, "the notification worker could not build its client");
            return;
        }
    };
    let mut worker = Worker {
        owner: format!("worker-{}", ObjectId::new().to_hex()),
        settings: deps.settings,
        metrics: deps.metrics,
        signal: deps.signal,
        events: deps.events,
        db,
        stop,
        last_gauges: None,
    };
    tracing::info!(owner = %worker.owner, "notification worker started");
    worker.run().await;
    tracing::info!(owner = %worker.owner, "notification worker stopped");
}

impl Worker {
    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    async fn run(&mut self) {
        let signal: Arc<JobSignal> = self.signal.clone();
        loop {
            if self.stopping() {
                return;
            }
            match self.claim().await {
                Ok(Some(job)) => {
                    self.refresh_gauges(true).await;
                    match self.process(job).await {
                        Round::Over => continue,
                        Round::Stopped => return,
                    }
                }
                Ok(None) => {}
                // Already logged where the driver error was converted.
                Err(_) => {}
            }
            self.refresh_gauges(false).await;
            let poll = self.settings.poll;
            tokio::select! {
                _ = signal.wake.notified() => {}
                _ = tokio::time::sleep(poll) => {}
                changed = self.stop.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Takes the oldest job that is due, or one whose worker died.
    async fn claim(&self) -> ApiResult<Option<JobDoc>> {
        let now = bson::DateTime::now();
        let lease = later(self.settings.lease);
        let jobs = self.db.collection::<JobDoc>(names::JOBS);
        let op = jobs
            .find_one_and_update(
                doc! { "$or": [
                    { "state": "queued", "next_attempt_at": { "$lte": now } },
                    { "state": "running", "lease_until": { "$lt": now } },
                ] },
                doc! {
                    "$set": { "state": "running", "owner": &self.owner, "lease_until": lease, "updated_at": now },
                    "$inc": { "attempts": 1 },
                    "$min": { "started_at": now },
                },
            )
            .sort(doc! { "created_at": 1, "_id": 1 })
            .return_document(ReturnDocument::After)
            .max_time(self.db.op_timeout);
        self.db.run(op).await
    }

    /// The filter that matches the job only while this worker holds it.
    fn mine(&self, job: &JobDoc) -> Document {
        doc! { "_id": job.id, "owner": &self.owner, "state": "running" }
    }

    async fn process(&mut self, mut job: JobDoc) -> Round {
        tracing::info!(job = %job.id, module = %job.module_id, attempt = job.attempts, "fan-out claimed");
        match self.fan_out(&mut job).await {
            Ok(round) => round,
            Err(e) => {
                self.retry_later(&job, &e).await;
                Round::Over
            }
        }
    }

    async fn fan_out(&mut self, job: &mut JobDoc) -> ApiResult<Round> {
        let db = self.db.clone();
        let batch = self.settings.batch_size as i64;
        let lease = self.settings.lease;
        if job.total.is_none() {
            let total = db
                .run(
                    db.raw(names::USERS)
                        .count_documents(doc! { "role": Role::Learner.as_str() })
                        .max_time(db.op_timeout),
                )
                .await? as i64;
            db.run(
                db.raw(names::JOBS)
                    .update_one(self.mine(job), doc! { "$set": { "total": total } }),
            )
            .await?;
            job.total = Some(total);
        }
        loop {
            if self.stopping() {
                self.hand_back(job).await;
                return Ok(Round::Stopped);
            }
            let mut filter = doc! { "role": Role::Learner.as_str() };
            if let Some(after) = job.resume_after {
                filter.insert("_id", doc! { "$gt": after });
            }
            let cursor = db
                .run(
                    db.raw(names::USERS)
                        .find(filter)
                        .sort(doc! { "_id": 1 })
                        .limit(batch)
                        .projection(doc! { "_id": 1 })
                        .max_time(db.op_timeout),
                )
                .await?;
            let learners: Vec<Document> = db.run(cursor.try_collect()).await?;
            let ids: Vec<ObjectId> = learners
                .iter()
                .filter_map(|d| d.get_object_id("_id").ok())
                .collect();
            let Some(&last) = ids.last() else {
                return self.finish(job).await;
            };
            let docs: Vec<Document> = ids
                .iter()
                .map(|&user| {
                    doc! {
                        "_id": notification_id(job.id, job.created_at, user),
                        "user_id": user,
                        "message": &job.message,
                        "module_id": job.module_id,
                        "job_id": job.id,
                        "read": false,
                        "created_at": job.created_at,
                    }
                })
                .collect();
            let inserted = match db
                .run_keep(
                    db.raw(names::NOTIFICATIONS)
                        .insert_many(docs.clone())
                        .ordered(false),
                )
                .await?
            {
                Ok(_) => docs,
                Err(e) if only_duplicate_keys(&e) => {
                    tracing::info!(job = %job.id, "a batch was partly inserted before; duplicates skipped");
                    without_duplicates(docs, &e)
                }
                Err(e) => return Err(ApiError::from(e)),
            };
            let advanced = db
                .run(db.raw(names::JOBS).update_one(
                    self.mine(job),
                    doc! {
                        "$set": { "resume_after": last, "lease_until": later(lease), "updated_at": bson::DateTime::now() },
                        "$inc": { "notified": ids.len() as i64 },
                    },
                ))
                .await?;
            if advanced.matched_count == 0 {
                return self.lost(job).await;
            }
            job.resume_after = Some(last);
            job.notified += ids.len() as i64;
            // Only the notifications this round inserted: a learner told
            // in an earlier, interrupted round is not told twice.
            let notifications = inserted
                .into_iter()
                .filter_map(|d| Some((d.get_object_id("user_id").ok()?, d)))
                .collect();
            let _ = self
                .events
                .emit(Event::NotificationsAdded { notifications })
                .await;
            self.metrics
                .counter(metric_names::SENT, vec![])
                .increment(ids.len() as u64);
        }
    }

    /// Marks the job done.
    async fn finish(&mut self, job: &JobDoc) -> ApiResult<Round> {
        let now = bson::DateTime::now();
        let r = self
            .db
            .run(self.db.raw(names::JOBS).update_one(
                self.mine(job),
                doc! {
                    "$set": { "state": "done", "updated_at": now, "finished_at": now },
                    "$unset": { "lease_until": "", "last_error": "" },
                },
            ))
            .await?;
        if r.matched_count == 0 {
            return self.lost(job).await;
        }
        self.count_finished(JobState::Done);
        tracing::info!(job = %job.id, notified = job.notified, "fan-out done");
        Ok(Round::Over)
    }

    /// The job is no longer ours: cancelled (its module was deleted) or
    /// taken over after the lease passed. A cancelled job's notifications
    /// must not point at the deleted module, including the ones of the
    /// round that raced the deletion.
    async fn lost(&mut self, job: &JobDoc) -> ApiResult<Round> {
        let now = self
            .db
            .run(
                self.db
                    .collection::<JobDoc>(names::JOBS)
                    .find_one(doc! { "_id": job.id }),
            )
            .await?;
        if now.as_ref().is_some_and(|j| j.state == JobState::Cancelled) {
            self.db
                .run(self.db.raw(names::NOTIFICATIONS).update_many(
                    doc! { "module_id": job.module_id },
                    doc! { "$set": { "module_id": null } },
                ))
                .await?;
            self.count_finished(JobState::Cancelled);
            tracing::info!(job = %job.id, "fan-out cancelled: the module was deleted");
        } else {
            tracing::warn!(job = %job.id, "fan-out lease lost to another worker");
        }
        Ok(Round::Over)
    }

    /// Asked to stop: hands the job back so another worker takes it now
    /// rather than after the lease.
    async fn hand_back(&self, job: &JobDoc) {
        let _ = self
            .db
            .run(self.db.raw(names::JOBS).update_one(
                self.mine(job),
                doc! {
                    "$set": { "state": "queued", "next_attempt_at": bson::DateTime::now(), "updated_at": bson::DateTime::now() },
                    "$unset": { "owner": "", "lease_until": "" },
                },
            ))
            .await;
        tracing::info!(job = %job.id, "fan-out handed back at shutdown");
    }

    /// A round failed: back to the queue with a growing delay, or failed
    /// for good after the last attempt.
    async fn retry_later(&self, job: &JobDoc, err: &ApiError) {
        let give_up = job.attempts >= self.settings.max_attempts as i32;
        let now = bson::DateTime::now();
        let message = format!("attempt {} failed: {}", job.attempts, err.message());
        let mut set = doc! { "updated_at": now, "last_error": message };
        if give_up {
            set.insert("state", "failed");
            set.insert("finished_at", now);
        } else {
            set.insert("state", "queued");
            set.insert(
                "next_attempt_at",
                later(backoff(self.settings.retry_base, job.attempts)),
            );
        }
        let _ = self
            .db
            .run(self.db.raw(names::JOBS).update_one(
                self.mine(job),
                doc! { "$set": set, "$unset": { "owner": "", "lease_until": "" } },
            ))
            .await;
        if give_up {
            self.count_finished(JobState::Failed);
            tracing::error!(job = %job.id, attempts = job.attempts, "fan-out failed for good");
        } else {
            self.metrics
                .counter(metric_names::RETRIES, vec![])
                .increment(1);
            tracing::warn!(job = %job.id, attempts = job.attempts, "fan-out round failed; retrying later");
        }
    }

    fn count_finished(&self, state: JobState) {
        self.metrics
            .counter(
                metric_names::FINISHED,
                vec![Label::new("state", state.as_str())],
            )
            .increment(1);
    }

    /// Jobs per live state as gauges, from one aggregation, at most every
    /// few seconds (or at once when `now`).
    async fn refresh_gauges(&mut self, now: bool) {
        if !now
            && self
                .last_gauges
                .is_some_and(|t| t.elapsed() < Duration::from_secs(5))
        {
            return;
        }
        self.last_gauges = Some(Instant::now());
        #[derive(Deserialize)]
        struct Row {
            #[serde(rename = "_id")]
            state: JobState,
            n: i64,
        }
        let live = [JobState::Queued, JobState::Running, JobState::Failed];
        let pipeline = vec![
            doc! { "$match": { "state": { "$in": live.iter().map(|s| s.as_str()).collect::<Vec<_>>() } } },
            doc! { "$group": { "_id": "$state", "n": { "$sum": 1 } } },
        ];
        let Ok(cursor) = self
            .db
            .run(
                self.db
                    .raw(names::JOBS)
                    .aggregate(pipeline)
                    .with_type::<Row>(),
            )
            .await
        else {
            return;
        };
        let Ok(rows) = self.db.run(cursor.try_collect::<Vec<Row>>()).await else {
            return;
        };
        for state in live {
            let n = rows.iter().find(|r| r.state == state).map_or(0, |r| r.n);
            self.metrics
                .gauge(
                    metric_names::JOBS,
                    vec![Label::new("state", state.as_str())],
                )
                .set(n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_notification_id_depends_only_on_its_job_and_learner() {
        let (job, a, b) = (ObjectId::new(), ObjectId::new(), ObjectId::new());
        let t = bson::DateTime::from_millis(1_800_000_000_000);
        assert_eq!(notification_id(job, t, a), notification_id(job, t, a));
        assert_ne!(notification_id(job, t, a), notification_id(job, t, b));
        assert_ne!(
            notification_id(job, t, a),
            notification_id(ObjectId::new(), t, a)
        );
        assert_eq!(
            notification_id(job, t, a).timestamp().timestamp_millis(),
            1_800_000_000_000
        );
    }

    #[test]
    fn the_retry_delay_doubles_and_is_capped() {
        let base = Duration::from_secs(1);
        assert_eq!(backoff(base, 1), Duration::from_secs(1));
        assert_eq!(backoff(base, 2), Duration::from_secs(2));
        assert_eq!(backoff(base, 4), Duration::from_secs(8));
        assert_eq!(backoff(base, 30), Duration::from_secs(300));
    }
}
