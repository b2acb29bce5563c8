//! Progress writes and reads. Every report is one atomic `findAndModify`
//! with update operators (`$inc`, `$max`, `$setOnInsert`), so concurrent
//! reports for one learner and module lose no time and no attempt;
//! completion is a second atomic transition that exactly one report wins.

use bson::{Document, doc, oid::ObjectId};
use futures::TryStreamExt;
use mongodb::options::ReturnDocument;

use super::model::{ActivityDoc, ActivityKind, ProgressDoc, ProgressStatus};
use crate::{
    db::{
        Db, names,
        page::{self, PageQuery, before_match},
    },
    error::{ApiError, ApiResult, is_duplicate_key},
};

/// Longest time one report may add: a day.
pub const MAX_REPORT_SECONDS: i64 = 86_400;

/// A validated `recordProgress` input.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub module_id: ObjectId,
    pub time_spent_seconds: i64,
    pub score: Option<f64>,
    pub completed: bool,
}

impl Report {
    pub fn new(
        module_id: ObjectId,
        time: i32,
        score: Option<f64>,
        completed: Option<bool>,
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
        Ok(Report {
            module_id,
            time_spent_seconds: time,
            score,
            completed: completed.unwrap_or(false),
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

/// Runs an upserting `findOneAndUpdate` and returns the document as it is
/// after this write. Whether this call inserted it is told by the `_id` the
/// caller put in `$setOnInsert`, which holds however the server reports
/// pre-images of racing upserts. Two first writes racing on the unique
/// (user, module) index may make one fail with a duplicate key; it is
/// retried and then updates the document the other inserted.
async fn upsert_after(db: &Db, filter: Document, update: Document) -> ApiResult<ProgressDoc> {
    let coll = db.collection::<ProgressDoc>(names::PROGRESS);
    for _ in 0..3 {
        let op = coll
            .find_one_and_update(filter.clone(), update.clone())
            .upsert(true)
            .return_document(ReturnDocument::After)
            .max_time(db.op_timeout);
        match db.run_keep(op).await? {
            Ok(Some(after)) => return Ok(after),
            // MongoDB always returns the document here. Some surrogates
            // answer null when the upsert lost an insert race and applied
            // itself as an update instead; the write happened, so read the
            // document rather than write again.
            Ok(None) => {
                let found = db
                    .run(coll.find_one(filter.clone()).max_time(db.op_timeout))
                    .await?;
                return found.ok_or_else(|| {
                    ApiError::internal("progress upsert", "no document after an upsert")
                });
            }
            Err(e) if is_duplicate_key(&e) => continue,
            Err(e) => return Err(ApiError::from(e)),
        }
    }
    Err(ApiError::internal(
        "progress upsert",
        "duplicate key three times in a row",
    ))
}

fn activity(
    user_id: ObjectId,
    module_id: ObjectId,
    kind: ActivityKind,
    at: bson::DateTime,
    time: i64,
    score: Option<f64>,
) -> ActivityDoc {
    ActivityDoc {
        id: ObjectId::new(),
        user_id,
        module_id,
        kind,
        at,
        time_spent_seconds: time,
        score,
    }
}

async fn append_activity(db: &Db, entries: Vec<ActivityDoc>) -> ApiResult<()> {
    db.run(
        db.collection::<ActivityDoc>(names::ACTIVITY)
            .insert_many(entries),
    )
    .await?;
    Ok(())
}

/// Starts a module for a learner; a started module is returned unchanged.
pub async fn start(db: &Db, user_id: ObjectId, module_id: ObjectId) -> ApiResult<ProgressDoc> {
    let now = bson::DateTime::now();
    let fresh = ProgressDoc {
        id: ObjectId::new(),
        user_id,
        module_id,
        status: ProgressStatus::InProgress,
        score: None,
        time_spent_seconds: 0,
        attempts: 0,
        started_at: now,
        completed_at: None,
        updated_at: now,
    };
    let update = doc! { "$setOnInsert": {
        "_id": fresh.id,
        "status": ProgressStatus::InProgress.as_str(),
        "time_spent_seconds": 0_i64,
        "attempts": 0_i64,
        "started_at": now,
        "updated_at": now,
    } };
    // No `score: null` or `completed_at: null`: `$max`/`$min` of later
    // reports compare with what is stored, and null sorts below everything.
    let after = upsert_after(
        db,
        doc! { "user_id": user_id, "module_id": module_id },
        update,
    )
    .await?;
    if after.id == fresh.id {
        append_activity(
            db,
            vec![activity(
                user_id,
                module_id,
                ActivityKind::Started,
                now,
                0,
                None,
            )],
        )
        .await?;
    }
    Ok(after)
}

/// Records one report: starts the module if needed, adds the time and an
/// attempt, keeps the best score, completion sticks; appends one activity
/// entry (preceded by `started` when this call started the module).
pub async fn record(db: &Db, user_id: ObjectId, report: Report) -> ApiResult<ProgressDoc> {
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
    let mut after = upsert_after(db, filter, update).await?;
    let started_now = after.id == new_id;

    // Completion is its own atomic transition: only the call that moves the
    // status to `completed` logs the completion, however many race.
    let mut first_completion = false;
    if report.completed && after.status != ProgressStatus::Completed {
        let claimed = db
            .run(
                db.collection::<ProgressDoc>(names::PROGRESS)
                    .find_one_and_update(
                        doc! { "_id": after.id, "status": { "$ne": ProgressStatus::Completed.as_str() } },
                        doc! { "$set": { "status": ProgressStatus::Completed.as_str(), "completed_at": now } },
                    )
                    .return_document(ReturnDocument::After)
                    .max_time(db.op_timeout),
            )
            .await?;
        match claimed {
            Some(doc) => {
                first_completion = true;
                after = doc;
            }
            // Another report completed it in between: read what it wrote.
            None => {
                if let Some(doc) = db
                    .run(
                        db.collection::<ProgressDoc>(names::PROGRESS)
                            .find_one(doc! { "_id": after.id }),
                    )
                    .await?
                {
                    after = doc;
                }
            }
        }
    }

    let mut entries = Vec::with_capacity(2);
    if started_now {
        entries.push(activity(
            user_id,
            report.module_id,
            ActivityKind::Started,
            now,
            0,
            None,
        ));
    }
    let kind = if first_completion {
        ActivityKind::Completed
    } else {
        ActivityKind::Progressed
    };
    entries.push(activity(
        user_id,
        report.module_id,
        kind,
        now,
        report.time_spent_seconds,
        report.score,
    ));
    append_activity(db, entries).await?;
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
        assert!(Report::new(id, -1, None, None).is_err());
        assert!(Report::new(id, 86_401, None, None).is_err());
        assert!(Report::new(id, 10, Some(100.5), None).is_err());
        assert!(Report::new(id, 10, Some(f64::NAN), None).is_err());
        assert!(Report::new(id, 86_400, Some(0.0), Some(true)).is_ok());
    }
}
