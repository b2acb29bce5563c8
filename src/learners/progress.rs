//! Progress writes and reads. A report updates its progress document with
//! update operators (`$inc`, `$max`, `$setOnInsert`), so concurrent
//! reports for one learner and module lose no time and no attempt;
//! completion is a second atomic transition that exactly one report wins.
//! The progress writes, the activity entries and the idempotency key's
//! answer of one report are one transaction where the deployment has them.

use bson::{Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::{ClientSession, options::ReturnDocument};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::model::{ActivityDoc, ActivityKind, ProgressDoc, ProgressStatus};
use crate::{
    db::{
        Db, names,
        page::{self, PageQuery, before_match},
    },
    error::{ApiError, ApiResult, is_duplicate_key, only_duplicate_keys},
};

/// Longest time one report may add: a day.
pub const MAX_REPORT_SECONDS: i64 = 86_400;

/// How long an idempotency key is remembered: 24 hours (the TTL index of
/// `indexes/idempotency.json` says the same).
pub const KEY_LIFETIME_SECS: i64 = 86_400;

/// Longest idempotency key, in characters.
pub const MAX_KEY_CHARS: usize = 64;

/// A validated `recordProgress` input.
#[derive(Debug, Clone)]
pub struct Report {
    pub module_id: ObjectId,
    pub time_spent_seconds: i64,
    pub score: Option<f64>,
    pub completed: bool,
    /// The client's idempotency key, 1–64 characters.
    pub key: Option<String>,
}

impl Report {
    pub fn new(
        module_id: ObjectId,
        time: i32,
        score: Option<f64>,
        completed: Option<bool>,
        key: Option<String>,
    ) -> ApiResult<Self> {
        let time = i64::from(time);
        if !(0..=MAX_REPORT_SECONDS).contains(&time) {
            return Err(ApiError::bad_input(
                "`timeSpentSeconds` must be between 0 and 86400",
            ));
        }
        if score.is_some_and(|s| !s.is_finite() || !(0.0..=100.0).contains(&s)) {
            return Err(ApiError::bad_input("`score` must be between 0 and 100"));
        }
        if key
            .as_ref()
            .is_some_and(|k| k.is_empty() || k.chars().count() > MAX_KEY_CHARS)
        {
            return Err(ApiError::bad_input(
                "`idempotencyKey` must be 1 to 64 characters",
            ));
        }
        Ok(Report {
            module_id,
            time_spent_seconds: time,
            score,
            completed: completed.unwrap_or(false),
            key,
        })
    }
}

/// Whether a published module with this id exists.
pub async fn module_is_published(db: &Db, module_id: ObjectId) -> ApiResult<bool> {
    let found = db
        .run(
            db.raw(names::MODULES)
                .find_one(doc! { "_id": module_id, "published": true })
                .projection(doc! { "_id": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    Ok(found.is_some())
}

use crate::db::in_session as exec;

/// Runs an upserting `findOneAndUpdate` and returns the document as it is
/// after this write. Whether this call inserted it is told by the `_id` the
/// caller put in `$setOnInsert`, which holds however the server reports
/// pre-images of racing upserts. Two first writes racing on the unique
/// (user, module) index may make one fail with a duplicate key: inside a
/// transaction the whole transaction runs again; outside, the upsert is
/// retried and then updates the document the other inserted.
async fn upsert_after(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    filter: &Document,
    update: &Document,
) -> mongodb::error::Result<ProgressDoc> {
    let coll = db.collection::<ProgressDoc>(names::PROGRESS);
    let mut attempt = 0;
    loop {
        attempt += 1;
        let op = coll
            .find_one_and_update(filter.clone(), update.clone())
            .upsert(true)
            .return_document(ReturnDocument::After)
            .max_time(db.op_timeout);
        match exec!(session, op) {
            Ok(Some(after)) => return Ok(after),
            // MongoDB always returns the document here. Some surrogates
            // answer null when the upsert lost an insert race and applied
            // itself as an update instead; the write happened, so read the
            // document rather than write again.
            Ok(None) => {
                let found = exec!(
                    session,
                    coll.find_one(filter.clone()).max_time(db.op_timeout)
                )?;
                return found.ok_or_else(|| {
                    mongodb::error::Error::custom(ApiError::internal(
                        "progress upsert",
                        "no document after an upsert",
                    ))
                });
            }
            Err(e) if is_duplicate_key(&e) && session.is_none() && attempt < 3 => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The id of a report's activity entry of `kind`. With an idempotency key
/// it is derived from (learner, key, kind), so that the same report can
/// never log an entry twice, whatever order of writes a standalone server
/// left behind; without one it is fresh. (Only a tie-breaker in `history`'s
/// order, which sorts by `at` first.)
fn entry_id(user_id: ObjectId, key: Option<&str>, kind: ActivityKind) -> ObjectId {
    let Some(key) = key else {
        return ObjectId::new();
    };
    let mut hasher = Sha256::new();
    hasher.update(user_id.bytes());
    hasher.update(key.as_bytes());
    hasher.update(kind_tag(kind).as_bytes());
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&hasher.finalize()[..12]);
    ObjectId::from_bytes(bytes)
}

fn kind_tag(kind: ActivityKind) -> &'static str {
    match kind {
        ActivityKind::Started => "started",
        ActivityKind::Progressed => "progressed",
        ActivityKind::Completed => "completed",
    }
}

#[allow(clippy::too_many_arguments)]
fn activity(
    user_id: ObjectId,
    module_id: ObjectId,
    key: Option<&str>,
    kind: ActivityKind,
    at: bson::DateTime,
    time: i64,
    score: Option<f64>,
) -> ActivityDoc {
    ActivityDoc {
        id: entry_id(user_id, key, kind),
        user_id,
        module_id,
        kind,
        at,
        time_spent_seconds: time,
        score,
    }
}

/// The entries one report logs: `started` when it started the module,
/// then `completed` when it completed it, else `progressed`.
fn report_entries(
    user_id: ObjectId,
    report: &Report,
    key: Option<&str>,
    started: bool,
    completed: bool,
    at: bson::DateTime,
) -> Vec<ActivityDoc> {
    let mut entries = Vec::with_capacity(2);
    if started {
        let kind = ActivityKind::Started;
        entries.push(activity(user_id, report.module_id, key, kind, at, 0, None));
    }
    let kind = if completed {
        ActivityKind::Completed
    } else {
        ActivityKind::Progressed
    };
    let (time, score) = (report.time_spent_seconds, report.score);
    entries.push(activity(
        user_id,
        report.module_id,
        key,
        kind,
        at,
        time,
        score,
    ));
    entries
}

async fn append_activity(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    entries: Vec<ActivityDoc>,
) -> mongodb::error::Result<()> {
    let coll = db.collection::<ActivityDoc>(names::ACTIVITY);
    exec!(session, coll.insert_many(entries))?;
    Ok(())
}

/// What a write left: the progress document as committed, and whether
/// this call changed anything (a started module, or a report answered
/// from its idempotency key, changes nothing).
#[derive(Debug, Clone)]
pub struct Written {
    pub progress: ProgressDoc,
    pub changed: bool,
}

/// A progress document as `startModule` creates it. No `score: null` or
/// `completed_at: null`: `$max`/`$min` of later reports compare with what
/// is stored, and null sorts below everything.
fn started(id: ObjectId, now: bson::DateTime) -> Document {
    doc! {
        "_id": id,
        "status": ProgressStatus::InProgress.as_str(),
        "time_spent_seconds": 0_i64,
        "attempts": 0_i64,
        "started_at": now,
        "updated_at": now,
    }
}

/// Starts a module for a learner; a started module is returned unchanged.
/// The progress document and its `started` entry are written together (in
/// a transaction; without transactions, see `start_without_transaction`).
pub async fn start(db: &Db, user_id: ObjectId, module_id: ObjectId) -> ApiResult<Written> {
    // The handles travel in the context: the body's future may only borrow
    // what outlives the session's borrow.
    db.as_one_unit(db, |mut session, db| {
        let db: &Db = db;
        Box::pin(async move {
            if session.is_none() {
                return start_without_transaction(db, user_id, module_id).await;
            }
            let now = bson::DateTime::now();
            let new_id = ObjectId::new();
            let update = doc! { "$setOnInsert": started(new_id, now) };
            let filter = doc! { "user_id": user_id, "module_id": module_id };
            let after = upsert_after(db, &mut session, &filter, &update).await?;
            if after.id == new_id {
                let entry = activity(
                    user_id,
                    module_id,
                    None,
                    ActivityKind::Started,
                    now,
                    0,
                    None,
                );
                append_activity(db, &mut session, vec![entry]).await?;
            }
            Ok(Written {
                changed: after.id == new_id,
                progress: after,
            })
        })
    })
    .await
}

/// Marks a progress document whose `started` entry is not logged yet, on
/// a deployment without transactions.
const STARTED_UNLOGGED: &str = "started_unlogged";

/// [`start`] where there are no transactions: the progress document is
/// inserted marked [`STARTED_UNLOGGED`], then the `started` entry (its id
/// derived from the learner and the module, which are started once) is
/// logged, then the mark is removed. A fault between them leaves the mark;
/// `startModule` sent again finds it and finishes the job, logging the
/// entry once.
async fn start_without_transaction(
    db: &Db,
    user_id: ObjectId,
    module_id: ObjectId,
) -> mongodb::error::Result<Written> {
    let coll = db.raw(names::PROGRESS);
    let now = bson::DateTime::now();
    let new_id = ObjectId::new();
    let filter = doc! { "user_id": user_id, "module_id": module_id };
    let mut fields = started(new_id, now);
    fields.insert(STARTED_UNLOGGED, true);
    let update = doc! { "$setOnInsert": fields };
    let mut attempt = 0;
    let mut raw = loop {
        attempt += 1;
        let written = coll
            .find_one_and_update(filter.clone(), update.clone())
            .upsert(true)
            .return_document(ReturnDocument::After)
            .max_time(db.op_timeout)
            .await;
        match written {
            Ok(Some(d)) => break d,
            Ok(None) => {
                if let Some(d) = coll.find_one(filter.clone()).await? {
                    break d;
                }
            }
            Err(e) if is_duplicate_key(&e) && attempt < 3 => {}
            Err(e) => return Err(e),
        }
        if attempt >= 3 {
            return Err(mongodb::error::Error::custom(ApiError::internal(
                "progress upsert",
                "no document after an upsert",
            )));
        }
    };
    let inserted = raw.get_object_id("_id").is_ok_and(|id| id == new_id);
    let logged = log_unlogged_start(db, &mut raw, user_id, module_id, now).await?;
    let progress = bson::from_document::<ProgressDoc>(raw)
        .map_err(|e| mongodb::error::Error::custom(ApiError::internal("progress document", e)))?;
    Ok(Written {
        progress,
        changed: inserted || logged,
    })
}

/// Logs the `started` entry of a progress document still marked
/// [`STARTED_UNLOGGED`] (its id derived from the learner and the module,
/// so it is logged once however often this runs), then removes the mark;
/// whether this call logged it.
async fn log_unlogged_start(
    db: &Db,
    raw: &mut Document,
    user_id: ObjectId,
    module_id: ObjectId,
    now: bson::DateTime,
) -> mongodb::error::Result<bool> {
    if raw.get_bool(STARTED_UNLOGGED) != Ok(true) {
        return Ok(false);
    }
    let mut hasher = Sha256::new();
    hasher.update(user_id.bytes());
    hasher.update(module_id.bytes());
    hasher.update(b"started");
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&hasher.finalize()[..12]);
    let entry = ActivityDoc {
        id: ObjectId::from_bytes(bytes),
        user_id,
        module_id,
        kind: ActivityKind::Started,
        at: raw.get_datetime("started_at").copied().unwrap_or(now),
        time_spent_seconds: 0,
        score: None,
    };
    let inserted = db
        .collection::<ActivityDoc>(names::ACTIVITY)
        .insert_one(&entry)
        .await;
    let logged = match inserted {
        Ok(_) => true,
        // Logged by an earlier attempt.
        Err(e) if is_duplicate_key(&e) => false,
        Err(e) => return Err(e),
    };
    db.raw(names::PROGRESS)
        .update_one(
            doc! { "_id": raw.get("_id").cloned() },
            doc! { "$unset": { STARTED_UNLOGGED: "" } },
        )
        .await?;
    raw.remove(STARTED_UNLOGGED);
    Ok(logged)
}

/// A fingerprint of what a report says, stored with its idempotency key so
/// that a key reused for another report is recognised.
fn report_hash(report: &Report) -> String {
    let mut hasher = Sha256::new();
    hasher.update(report.module_id.bytes());
    hasher.update(report.time_spent_seconds.to_be_bytes());
    hasher.update(report.score.map_or(u64::MAX, f64::to_bits).to_be_bytes());
    hasher.update([u8::from(report.completed)]);
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One `idempotency` document: a key a learner used, what the report said
/// and the answer it got.
#[derive(Debug, Serialize, Deserialize)]
struct IdempotencyDoc {
    user_id: ObjectId,
    key: String,
    hash: String,
    progress: ProgressDoc,
    created_at: bson::DateTime,
}

/// The first answer to a report sent with `key` within the last 24 hours;
/// BAD_USER_INPUT if that report said something else.
async fn first_answer(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    user_id: ObjectId,
    key: &str,
    hash: &str,
) -> mongodb::error::Result<Option<ProgressDoc>> {
    let coll = db.collection::<IdempotencyDoc>(names::IDEMPOTENCY);
    let found = exec!(
        session,
        coll.find_one(doc! { "user_id": user_id, "key": key })
            .max_time(db.op_timeout)
    )?;
    let cutoff = bson::DateTime::from_millis(
        bson::DateTime::now().timestamp_millis() - KEY_LIFETIME_SECS * 1000,
    );
    match found {
        // The TTL monitor removes expired keys about once a minute.
        Some(first) if first.created_at < cutoff => Ok(None),
        Some(first) if first.hash != hash => Err(mongodb::error::Error::custom(
            ApiError::bad_input("this `idempotencyKey` was already used for a different report"),
        )),
        Some(first) => Ok(Some(first.progress)),
        None => Ok(None),
    }
}

/// Records one report: starts the module if needed, adds the time and an
/// attempt, keeps the best score, completion sticks; appends one activity
/// entry (preceded by `started` when this call started the module) and,
/// with a key, remembers the answer.
///
/// **One unit.** Where the deployment has transactions, all of it is one
/// transaction: a fault at any point leaves nothing or everything. On a
/// standalone server the writes go in this order: the progress update, the
/// activity entries, the key's answer. A fault between them can leave the
/// time counted without its entries (the report answered UNAVAILABLE)
/// until the report is sent again with its key, which completes it without
/// counting anything twice (`apply_keyed_without_transaction`). See the
/// README's failure section.
///
/// **Idempotence.** A report with a key already answered returns that
/// answer and writes nothing. Two copies racing each other meet on the
/// unique (user, key) index: the loser's transaction runs again and finds
/// the winner's answer.
pub async fn record(db: &Db, user_id: ObjectId, report: &Report) -> ApiResult<Written> {
    let hash = report.key.as_ref().map(|_| report_hash(report));
    db.as_one_unit((db, report), |mut session, context| {
        let (db, report): (&Db, &Report) = *context;
        let hash = hash.clone();
        Box::pin(async move {
            let key = report.key.as_deref();
            if let (Some(key), Some(hash)) = (key, hash.as_deref())
                && let Some(first) = first_answer(db, &mut session, user_id, key, hash).await?
            {
                return Ok(Written {
                    progress: first,
                    changed: false,
                });
            }
            let after = match (&session, key) {
                (None, Some(key)) => {
                    apply_keyed_without_transaction(db, user_id, report, key).await?
                }
                _ => apply_report(db, &mut session, user_id, report).await?,
            };
            if let (Some(key), Some(hash)) = (key, hash) {
                let remembered = IdempotencyDoc {
                    user_id,
                    key: key.to_string(),
                    hash,
                    progress: after.clone(),
                    created_at: bson::DateTime::now(),
                };
                let coll = db.collection::<IdempotencyDoc>(names::IDEMPOTENCY);
                // Replaces a key that expired but is not yet removed.
                exec!(
                    session,
                    coll.replace_one(doc! { "user_id": user_id, "key": key }, &remembered)
                        .upsert(true)
                )?;
            }
            Ok(Written {
                progress: after,
                changed: true,
            })
        })
    })
    .await
}

/// How many keys of reports a progress document remembers on a
/// deployment without transactions (a resend comes soon after its report).
const OPS_KEPT: i32 = 16;

/// The mark a keyed report leaves on its progress document.
fn op_id(user_id: ObjectId, key: &str) -> ObjectId {
    let mut hasher = Sha256::new();
    hasher.update(user_id.bytes());
    hasher.update(key.as_bytes());
    hasher.update(b"op");
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&hasher.finalize()[..12]);
    ObjectId::from_bytes(bytes)
}

/// The writes of a keyed report where there are no transactions, each one
/// idempotent so that the report sent again after a fault between them
/// completes what the first attempt left, counting nothing twice:
///
/// 1. the progress update carries the report's mark (`ops`, the last
///    [`OPS_KEPT`]), and is skipped when the document has it already; the
///    mark also goes to `started_by` when this update inserts the document;
/// 2. the completion transition writes the mark to `completed_by`;
/// 3. the activity entries have ids derived from the key, and those already
///    logged are skipped (duplicate keys);
/// 4. then the key's answer ([`record`]).
///
/// So which entries the report logs (`started`, `completed`) is read from
/// the marks, the same on every attempt.
async fn apply_keyed_without_transaction(
    db: &Db,
    user_id: ObjectId,
    report: &Report,
    key: &str,
) -> mongodb::error::Result<ProgressDoc> {
    let coll = db.raw(names::PROGRESS);
    let op = op_id(user_id, key);
    let now = bson::DateTime::now();
    let filter = doc! { "user_id": user_id, "module_id": report.module_id };
    let marked = |d: &Document| {
        d.get_array("ops")
            .is_ok_and(|ops| ops.iter().any(|o| o.as_object_id() == Some(op)))
    };
    let mut attempt = 0;
    let mut raw = loop {
        attempt += 1;
        let current = coll
            .find_one(filter.clone())
            .max_time(db.op_timeout)
            .await?;
        if let Some(d) = current.filter(|d| marked(d)) {
            // Applied by an earlier attempt.
            break d;
        }
        let mut update = doc! {
            "$inc": { "time_spent_seconds": report.time_spent_seconds, "attempts": 1_i64 },
            "$set": { "updated_at": now },
            "$setOnInsert": {
                "_id": ObjectId::new(),
                "started_at": now,
                "status": ProgressStatus::InProgress.as_str(),
                "started_by": op,
            },
            "$push": { "ops": { "$each": [op], "$slice": -OPS_KEPT } },
        };
        if let Some(score) = report.score {
            update.insert("$max", doc! { "score": score });
        }
        let mut unmarked = filter.clone();
        unmarked.insert("ops", doc! { "$ne": op });
        let written = coll
            .find_one_and_update(unmarked, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .max_time(db.op_timeout)
            .await;
        match written {
            Ok(Some(d)) => break d,
            // Read what the write left (see `upsert_after`).
            Ok(None) if attempt < 3 => continue,
            // A copy of this report marked the document first (the filter
            // then matched nothing and the upsert met the unique index), or
            // another report inserted it: read it again.
            Err(e) if is_duplicate_key(&e) && attempt < 3 => continue,
            Ok(None) => {
                return Err(mongodb::error::Error::custom(ApiError::internal(
                    "progress upsert",
                    "no document after an upsert",
                )));
            }
            Err(e) => return Err(e),
        }
    };
    // A `startModule` that stopped half-way: its entry first.
    log_unlogged_start(db, &mut raw, user_id, report.module_id, now).await?;
    let progress = |d: &Document| {
        bson::from_document::<ProgressDoc>(d.clone())
            .map_err(|e| mongodb::error::Error::custom(ApiError::internal("progress document", e)))
    };
    if report.completed && progress(&raw)?.status != ProgressStatus::Completed {
        let claimed = coll
            .find_one_and_update(
                doc! { "_id": raw.get("_id").cloned(), "status": { "$ne": ProgressStatus::Completed.as_str() } },
                doc! { "$set": {
                    "status": ProgressStatus::Completed.as_str(),
                    "completed_at": now,
                    "completed_by": op,
                } },
            )
            .return_document(ReturnDocument::After)
            .max_time(db.op_timeout)
            .await?;
        raw = match claimed {
            Some(d) => d,
            None => coll
                .find_one(filter.clone())
                .max_time(db.op_timeout)
                .await?
                .unwrap_or(raw),
        };
    }
    let by_this = |field: &str| raw.get_object_id(field).is_ok_and(|id| id == op);
    let entries = report_entries(
        user_id,
        report,
        Some(key),
        by_this("started_by"),
        by_this("completed_by"),
        now,
    );
    let logged = db
        .collection::<ActivityDoc>(names::ACTIVITY)
        .insert_many(entries)
        .ordered(false)
        .await;
    match logged {
        // Logged by an earlier attempt.
        Err(e) if only_duplicate_keys(&e) => {}
        other => {
            other?;
        }
    }
    progress(&raw)
}

/// The writes of one report (see [`record`]).
async fn apply_report(
    db: &Db,
    session: &mut Option<&mut ClientSession>,
    user_id: ObjectId,
    report: &Report,
) -> mongodb::error::Result<ProgressDoc> {
    let now = bson::DateTime::now();
    let new_id = ObjectId::new();
    let mut update = doc! {
        "$inc": { "time_spent_seconds": report.time_spent_seconds, "attempts": 1_i64 },
        "$set": { "updated_at": now },
        "$setOnInsert": {
            "_id": new_id,
            "started_at": now,
            "status": ProgressStatus::InProgress.as_str(),
        },
    };
    if let Some(score) = report.score {
        update.insert("$max", doc! { "score": score });
    }
    let filter = doc! { "user_id": user_id, "module_id": report.module_id };
    let mut after = upsert_after(db, session, &filter, &update).await?;
    let started_now = after.id == new_id;

    // Completion is its own atomic transition: only the call that moves the
    // status to `completed` logs the completion, however many race.
    let mut first_completion = false;
    if report.completed && after.status != ProgressStatus::Completed {
        let coll = db.collection::<ProgressDoc>(names::PROGRESS);
        let claimed = exec!(
            session,
            coll.find_one_and_update(
                doc! { "_id": after.id, "status": { "$ne": ProgressStatus::Completed.as_str() } },
                doc! { "$set": { "status": ProgressStatus::Completed.as_str(), "completed_at": now } },
            )
            .return_document(ReturnDocument::After)
            .max_time(db.op_timeout)
        )?;
        match claimed {
            Some(doc) => {
                first_completion = true;
                after = doc;
            }
            // Another report completed it in between: read what it wrote.
            None => {
                if let Some(doc) = exec!(session, coll.find_one(doc! { "_id": after.id }))? {
                    after = doc;
                }
            }
        }
    }

    let entries = report_entries(
        user_id,
        report,
        report.key.as_deref(),
        started_now,
        first_completion,
        now,
    );
    append_activity(db, session, entries).await?;
    Ok(after)
}

/// The sort key of `myProgress`: most recently updated first.
pub type ProgressKey = (i64, String);

pub fn progress_key(p: &ProgressDoc) -> ProgressKey {
    (p.updated_at.timestamp_millis(), p.id.to_hex())
}

/// Which page of a learner's progress list (`myProgress`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProgressPage {
    pub status: Option<ProgressStatus>,
    pub after: Option<ProgressKey>,
    pub limit: i64,
    /// Whether the size of the whole list is wanted too.
    pub with_total: bool,
}

/// One page of a learner's progress, newest update first, and the total
/// when asked, in one command.
pub async fn list(
    db: &Db,
    user_id: ObjectId,
    q: &ProgressPage,
) -> ApiResult<(Vec<ProgressDoc>, i64)> {
    let ProgressPage {
        status,
        after,
        limit,
        with_total,
    } = q;
    let (limit, with_total) = (*limit, *with_total);
    let mut filter = doc! { "user_id": user_id };
    if let Some(s) = status {
        filter.insert("status", s.as_str());
    }
    page::fetch(
        db,
        PageQuery {
            collection: names::PROGRESS,
            filter,
            sort: doc! { "updated_at": -1, "_id": -1 },
            after: after
                .as_ref()
                .map(|k| before_match("updated_at", k))
                .transpose()?,
            projection: None,
            limit,
            with_total,
        },
    )
    .await
}

/// The viewer's progress on several modules in one round trip.
pub async fn for_modules(
    db: &Db,
    user_id: ObjectId,
    module_ids: &[ObjectId],
) -> ApiResult<Vec<ProgressDoc>> {
    let cursor = db
        .run(
            db.collection::<ProgressDoc>(names::PROGRESS)
                .find(doc! { "user_id": user_id, "module_id": { "$in": module_ids } })
                .max_time(db.op_timeout),
        )
        .await?;
    db.run(cursor.try_collect()).await
}

/// The sort key of `history`: newest first.
pub type ActivityKey = (i64, String);

pub fn activity_key(a: &ActivityDoc) -> ActivityKey {
    (a.at.timestamp_millis(), a.id.to_hex())
}

/// One page of a learner's activity, newest first.
pub async fn history(
    db: &Db,
    user_id: ObjectId,
    after: Option<&ActivityKey>,
    limit: i64,
) -> ApiResult<Vec<ActivityDoc>> {
    page::newest_first(
        db,
        names::ACTIVITY,
        doc! { "user_id": user_id },
        "at",
        after,
        limit,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_out_of_range_are_bad_input() {
        let id = ObjectId::new();
        assert!(Report::new(id, -1, None, None, None).is_err());
        assert!(Report::new(id, 86_401, None, None, None).is_err());
        assert!(Report::new(id, 10, Some(100.5), None, None).is_err());
        assert!(Report::new(id, 10, Some(f64::NAN), None, None).is_err());
        assert!(Report::new(id, 86_400, Some(0.0), Some(true), None).is_ok());
        assert!(Report::new(id, 1, None, None, Some(String::new())).is_err());
        assert!(Report::new(id, 1, None, None, Some("é".repeat(64))).is_ok());
        assert!(Report::new(id, 1, None, None, Some("k".repeat(65))).is_err());
    }

    #[test]
    fn a_report_fingerprint_covers_every_field() {
        let id = ObjectId::new();
        let base = Report::new(id, 10, Some(50.0), Some(false), Some("k".into())).unwrap();
        let hash = report_hash(&base);
        let other_key = Report {
            key: Some("j".into()),
            ..base.clone()
        };
        assert_eq!(report_hash(&other_key), hash, "the key is not the report");
        for changed in [
            Report {
                time_spent_seconds: 11,
                ..base.clone()
            },
            Report {
                score: None,
                ..base.clone()
            },
            Report {
                completed: true,
                ..base.clone()
            },
            Report {
                module_id: ObjectId::new(),
                ..base.clone()
            },
        ] {
            assert_ne!(report_hash(&changed), hash);
        }
    }

    #[test]
    fn keyed_entries_have_stable_ids() {
        let u = ObjectId::new();
        let a = entry_id(u, Some("k"), ActivityKind::Progressed);
        assert_eq!(a, entry_id(u, Some("k"), ActivityKind::Progressed));
        assert_ne!(a, entry_id(u, Some("k"), ActivityKind::Started));
        assert_ne!(a, entry_id(u, Some("j"), ActivityKind::Progressed));
        assert_ne!(
            a,
            entry_id(ObjectId::new(), Some("k"), ActivityKind::Progressed)
        );
    }
}
