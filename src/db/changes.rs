//! Following writes to the database, whoever makes them: one change stream
//! on the collections a caller names, resumed from a stored token after a
//! restart or a dropped stream, handing each change to a [`ChangeHandler`]
//! (the app registers one that invalidates cache scopes). Knows no domain.
//!
//! **Resuming.** The stream's resume token is stored, at most once a second
//! and when the follower stops, in the `meta` collection (one document per
//! follower name). A new stream resumes from it, so changes made while no
//! instance was following are still handed over. When there is no token, or
//! the server no longer has the history the token points into, the handler
//! is told it [`missed`](ChangeHandler::missed) changes (the cache then drops
//! everything) and the stream starts from now.
//!
//! **Where there are none.** A standalone `mongod` has no change streams:
//! the follower does not start and [`FollowState`] says so (`/ready`).

use std::{
    sync::{
        Arc,
        atomic::{AtomicU8, Ordering},
    },
    time::{Duration, Instant},
};

use mongodb::{
    bson::{Bson, Document, doc},
    change_stream::event::ResumeToken,
    options::FullDocumentType,
};
use tokio::sync::watch;

use super::Db;

/// The collection holding the followers' resume tokens.
pub const META: &str = "meta";

/// One write, in plain data.
#[derive(Debug, Clone)]
pub struct Change {
    /// The collection written to.
    pub collection: String,
    /// The written document's `_id`.
    pub id: Option<Bson>,
    /// The document after the write (inserts, replaces, updates; `None`
    /// for deletes and when it is gone already).
    pub document: Option<Document>,
}

/// What a follower hands changes to.
#[async_trait::async_trait]
pub trait ChangeHandler: Send + Sync {
    async fn changed(&self, change: &Change);
    /// Changes may have been missed (no stored token, or history lost).
    async fn missed(&self);
}

/// How the follower stands, for `/ready`.
#[derive(Debug, Default)]
pub struct FollowState(AtomicU8);

impl FollowState {
    // 0, the default, is "starting".
    const FOLLOWING: u8 = 1;
    const UNSUPPORTED: u8 = 2;
    const RECONNECTING: u8 = 3;
    const OFF: u8 = 4;

    fn set(&self, v: u8) {
        self.0.store(v, Ordering::Relaxed);
    }

    /// Not following (`CACHE_FOLLOW_CHANGES=false`).
    pub fn disabled(&self) {
        self.set(Self::OFF);
    }

    /// `following`, `reconnecting`, `starting`, `off`, or
    /// `unsupported (ttl only)` on a deployment without change streams.
    pub fn describe(&self) -> &'static str {
        match self.0.load(Ordering::Relaxed) {
            Self::FOLLOWING => "following",
            Self::UNSUPPORTED => "unsupported (ttl only)",
            Self::RECONNECTING => "reconnecting",
            Self::OFF => "off",
            _ => "starting",
        }
    }
}

/// A follower of some collections.
pub struct Follower {
    pub db: Db,
    /// Names the stored token (`meta` document `_id`).
    pub name: String,
    pub collections: Vec<&'static str>,
    pub handler: Arc<dyn ChangeHandler>,
    pub state: Arc<FollowState>,
}

/// How long one `getMore` waits for changes: bounds how late a change is
/// seen and how long stopping takes.
const AWAIT: Duration = Duration::from_millis(300);
/// Pause before opening a failed stream again.
const REOPEN_AFTER: Duration = Duration::from_secs(1);
/// Tokens are stored at most this often.
const STORE_EVERY: Duration = Duration::from_secs(1);

impl Follower {
    /// Follows until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let topology = loop {
            match self.db.topology().await {
                Ok(t) => break t,
                Err(_) => {
                    self.state.set(FollowState::RECONNECTING);
                    tokio::select! {
                        _ = tokio::time::sleep(REOPEN_AFTER) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        };
        if !topology.change_streams {
            tracing::warn!(
                "no change streams on this deployment: cached reads are fresh within their TTLs"
            );
            self.state.set(FollowState::UNSUPPORTED);
            return;
        }
        let mut token = self.load_token().await;
        if token.is_none() {
            self.handler.missed().await;
        }
        while !*stop.borrow() {
            let resumed = token.is_some();
            let stream = self.open(token.clone()).await;
            let mut stream = match stream {
                Ok(s) => s,
                Err(e) if resumed => {
                    // The history the token points into may be gone.
                    tracing::warn!(error = %e, "change stream could not resume; starting from now");
                    self.handler.missed().await;
                    token = None;
                    continue;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change stream could not open");
                    self.state.set(FollowState::RECONNECTING);
                    tokio::select! {
                        _ = tokio::time::sleep(REOPEN_AFTER) => {}
                        _ = stop.changed() => {}
                    }
                    continue;
                }
            };
            self.state.set(FollowState::FOLLOWING);
            let mut stored = Instant::now();
            loop {
                let next = tokio::select! {
                    n = stream.next_if_any() => n,
                    _ = stop.changed() => break,
                };
                match next {
                    Ok(Some(event)) => {
                        let change = Change {
                            collection: event.ns.and_then(|n| n.coll).unwrap_or_default(),
                            id: event.document_key.and_then(|mut k| k.remove("_id")),
                            document: event.full_document,
                        };
                        self.handler.changed(&change).await;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        // The driver resumed once already; open again from
                        // the last token seen.
                        tracing::warn!(error = %e, "change stream failed; reopening");
                        self.state.set(FollowState::RECONNECTING);
                        token = stream.resume_token().or(token);
                        tokio::time::sleep(REOPEN_AFTER).await;
                        break;
                    }
                }
                if let Some(t) = stream.resume_token() {
                    token = Some(t);
                }
                if stored.elapsed() >= STORE_EVERY {
                    self.store_token(token.as_ref()).await;
                    stored = Instant::now();
                }
            }
            if let Some(t) = stream.resume_token() {
                token = Some(t);
            }
            self.store_token(token.as_ref()).await;
        }
        self.state.set(FollowState::OFF);
    }

    async fn open(
        &self,
        token: Option<ResumeToken>,
    ) -> mongodb::error::Result<
        mongodb::change_stream::ChangeStream<
            mongodb::change_stream::event::ChangeStreamEvent<Document>,
        >,
    > {
        let names: Vec<Bson> = self
            .collections
            .iter()
            .map(|c| Bson::from(c.to_string()))
            .collect();
        let pipeline = [doc! { "$match": { "ns.coll": { "$in": names } } }];
        self.db
            .db
            .watch()
            .pipeline(pipeline)
            .full_document(FullDocumentType::UpdateLookup)
            .max_await_time(AWAIT)
            .resume_after(token)
            .await
    }

    async fn load_token(&self) -> Option<ResumeToken> {
        let found = self
            .db
            .raw(META)
            .find_one(doc! { "_id": &self.name })
            .await
            .ok()??;
        let token = found.get("token")?.clone();
        mongodb::bson::from_bson(token).ok()
    }

    async fn store_token(&self, token: Option<&ResumeToken>) {
        let Some(token) = token else { return };
        let Ok(value) = mongodb::bson::to_bson(token) else {
            return;
        };
        let stored = self
            .db
            .raw(META)
            .update_one(
                doc! { "_id": &self.name },
                doc! { "$set": { "token": value, "at": mongodb::bson::DateTime::now() } },
            )
            .upsert(true)
            .await;
        if let Err(e) = stored {
            tracing::debug!(error = %e, "storing the change stream token failed");
        }
    }
}
