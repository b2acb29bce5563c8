//! Reads and writes of a learner's notifications; every query starts with
//! the learner's id, served by `user_created` / `user_read_created`.

use bson::{Document, doc, oid::ObjectId};

use super::NotificationDoc;
use crate::{
    db::{Db, in_session, names, page},
    error::ApiResult,
};

/// Most ids `markNotificationsRead` takes at once.
pub const MAX_MARK_IDS: usize = 1_000;

/// The sort key of a learner's notifications: newest first.
pub type NotificationKey = (i64, String);

pub fn key_of(n: &NotificationDoc) -> NotificationKey {
    (n.created_at.timestamp_millis(), n.id.to_hex())
}

fn base_filter(user_id: ObjectId, unread_only: bool) -> Document {
    let mut f = doc! { "user_id": user_id };
    if unread_only {
        f.insert("read", false);
    }
    f
}

/// One page (`limit + 1` items), newest first.
pub async fn list(
    db: &Db,
    user_id: ObjectId,
    unread_only: bool,
    after: Option<&NotificationKey>,
    limit: i64,
) -> ApiResult<Vec<NotificationDoc>> {
    let filter = base_filter(user_id, unread_only);
    page::newest_first(db, names::NOTIFICATIONS, filter, "created_at", after, limit).await
}

/// Unread notifications of a learner (index `user_read_created`).
pub async fn unread_count(db: &Db, user_id: ObjectId) -> ApiResult<i64> {
    let n = db
        .run(
            db.raw(names::NOTIFICATIONS)
                .count_documents(base_filter(user_id, true))
                .max_time(db.op_timeout),
        )
        .await?;
    Ok(n as i64)
}

/// Marks the learner's notifications read (only the given ones when
/// `ids`); returns how many changed. Others' ids match nothing. An update
/// of many documents is not a retryable write: it runs as a unit
/// ([`Db::as_one_unit`]), run again whole after a transient error, so the
/// count is the one of the run that committed.
pub async fn mark_read(db: &Db, user_id: ObjectId, ids: Option<&[ObjectId]>) -> ApiResult<i64> {
    let mut filter = base_filter(user_id, true);
    if let Some(ids) = ids {
        filter.insert("_id", doc! { "$in": ids });
    }
    db.as_one_unit((db, &filter), |mut session, unit| {
        let (db, filter): (&Db, &Document) = *unit;
        Box::pin(async move {
            let r = in_session!(
                session,
                db.raw(names::NOTIFICATIONS)
                    .update_many(filter.clone(), doc! { "$set": { "read": true } })
            )?;
            Ok(r.modified_count as i64)
        })
    })
    .await
}
