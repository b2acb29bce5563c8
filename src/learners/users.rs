//! The `users` collection: registration, login lookups, availability.

use bson::{Document, doc, oid::ObjectId};
use serde::Deserialize;

use super::{
    model::{Role, UserDoc, user_projection},
    zone,
};
use crate::{
    db::{Db, in_session, names},
    error::{ApiError, ApiResult, is_duplicate_key},
};

/// What a new account is made of, already validated.
pub struct NewUser {
    pub email: String,
    pub username: String,
    pub display_name: Option<String>,
    pub password_hash: String,
    pub role: Role,
}

/// The document of a new user.
pub fn user_document(id: ObjectId, user: &NewUser, now: bson::DateTime) -> Document {
    doc! {
        "_id": id,
        "email": &user.email,
        "email_lower": user.email.to_lowercase(),
        "username": &user.username,
        "username_lower": user.username.to_lowercase(),
        "display_name": user.display_name.as_deref(),
        "password_hash": &user.password_hash,
        "role": user.role.as_str(),
        "created_at": now,
        "time_zone": zone::DEFAULT_ZONE,
        "leaderboard_opt_in": false,
    }
}

/// Inserts a user, mapping a unique-index violation to CONFLICT. One
/// insert, but run as a unit too: a write-concern error after the insert
/// then means "nothing", never "registered, yet answered UNAVAILABLE".
pub async fn register(db: &Db, user: NewUser) -> ApiResult<UserDoc> {
    let id = ObjectId::new();
    let now = bson::DateTime::now();
    let document = user_document(id, &user, now);
    db.as_one_unit((db, &document), |session, context| {
        let (db, document): (&Db, &Document) = *context;
        Box::pin(async move {
            let users = db.raw(names::USERS);
            let insert = users.insert_one(document);
            let inserted = match session {
                Some(s) => insert.session(s).await,
                None => insert.await,
            };
            match inserted {
                Ok(_) => Ok(()),
                Err(e) if is_duplicate_key(&e) => {
                    let which = if e.to_string().contains("email") {
                        "email"
                    } else {
                        "username"
                    };
                    Err(mongodb::error::Error::custom(ApiError::Conflict(format!(
                        "this {which} is already registered"
                    ))))
                }
                Err(e) => Err(e),
            }
        })
    })
    .await?;
    Ok(UserDoc {
        id,
        email: user.email,
        username: user.username,
        display_name: user.display_name,
        role: user.role,
        created_at: now,
        time_zone: zone::DEFAULT_ZONE.to_string(),
        leaderboard_opt_in: false,
    })
}

/// A user with the password hash: the login path, and only it.
#[derive(Deserialize)]
pub struct Credentials {
    #[serde(flatten)]
    pub user: UserDoc,
    #[serde(default)]
    pub password_hash: Option<String>,
}

/// Finds a user by email or username, case-insensitively.
pub async fn find_credentials(db: &Db, login: &str) -> ApiResult<Option<Credentials>> {
    let lower = login.trim().to_lowercase();
    let mut projection = user_projection();
    projection.insert("password_hash", 1);
    db.run(
        db.collection::<Credentials>(names::USERS)
            .find_one(doc! { "$or": [ { "email_lower": &lower }, { "username_lower": &lower } ] })
            .projection(projection)
            .max_time(db.op_timeout),
    )
    .await
}

/// A user by id, without secrets.
pub async fn find_by_id(db: &Db, id: ObjectId) -> ApiResult<Option<UserDoc>> {
    db.run(
        db.collection::<UserDoc>(names::USERS)
            .find_one(doc! { "_id": id })
            .projection(user_projection())
            .max_time(db.op_timeout),
    )
    .await
}

/// Whether a user with `field` equal to `value` exists (index-backed).
pub async fn exists(db: &Db, field: &str, value: &str) -> ApiResult<bool> {
    let found = db
        .run(
            db.raw(names::USERS)
                .find_one(doc! { field: value })
                .projection(doc! { "_id": 1 })
                .max_time(db.op_timeout),
        )
        .await?;
    Ok(found.is_some())
}

/// A validated `updateMe`: only the fields given change.
#[derive(Debug, Default, Clone)]
pub struct Settings {
    /// `Some(None)` clears the display name.
    pub display_name: Option<Option<String>>,
    pub time_zone: Option<String>,
    pub leaderboard_opt_in: Option<bool>,
}

/// Applies `settings` to a user in one atomic update and returns the user
/// as it is after it; `None` for an unknown user.
pub async fn update_settings(
    db: &Db,
    id: ObjectId,
    settings: &Settings,
) -> ApiResult<Option<UserDoc>> {
    let mut set = Document::new();
    if let Some(name) = &settings.display_name {
        set.insert("display_name", name.as_deref());
    }
    if let Some(zone) = &settings.time_zone {
        set.insert("time_zone", zone);
    }
    if let Some(opt_in) = settings.leaderboard_opt_in {
        set.insert("leaderboard_opt_in", opt_in);
        // When: the leaderboards lay the changes since they were built
        // over their rankings (see `leaderboard`).
        set.insert(
            "leaderboard_opt_in_at",
            bson::DateTime::from_chrono(chrono::Utc::now()),
        );
    }
    if set.is_empty() {
        return find_by_id(db, id).await;
    }
    // One document, so the driver retries it once; as a unit it is run
    // again (within the deadline) after a second transient error too.
    db.as_one_unit((db, &set), |mut session, unit| {
        let (db, set): (&Db, &Document) = *unit;
        Box::pin(async move {
            in_session!(
                session,
                db.collection::<UserDoc>(names::USERS)
                    .find_one_and_update(doc! { "_id": id }, doc! { "$set": set.clone() })
                    .projection(user_projection())
                    .return_document(mongodb::options::ReturnDocument::After)
                    .max_time(db.op_timeout)
            )
        })
    })
    .await
}
