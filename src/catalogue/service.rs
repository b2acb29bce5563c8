//! The catalogue's reads through the cache and its writes, each with the
//! cache scopes it depends on or makes stale: every writer (a resolver, the
//! seeder, a tool) goes through here, so none has to rediscover what to
//! invalidate.

use std::{collections::HashMap, sync::atomic::Ordering};

use bson::oid::ObjectId;

use super::{
    input::{Changes, NewModule},
    model::ModuleDoc,
    repo::{self, ModuleFilter, ModuleKey, ModuleRef},
};
use crate::{
    cache::{Cache, Scope, TtlClass, digest},
    db::Db,
    error::ApiResult,
    events::{Event, Events},
    learners,
};

/// Module lists and details (`CACHE_TTL_MODULES_SECS`).
pub const MODULES: TtlClass = TtlClass::new("modules", |s| s.ttl_modules);

/// The catalogue: module lists and details, and whatever is computed from
/// the published catalogue (every learner's statistics, the dashboard).
pub const CATALOGUE: Scope = Scope::named("catalogue");

/// One page of modules, from the cache or one database command.
pub async fn list(
    db: &Db,
    cache: &Cache,
    filter: &ModuleFilter,
    after: Option<&ModuleKey>,
    limit: i64,
    with_total: bool,
) -> ApiResult<(Vec<ModuleDoc>, i64)> {
    let text = db.text_search.load(Ordering::Relaxed);
    let key = digest(&(filter.scope(), after, limit, with_total, text));
    cache
        .get_or_compute(MODULES, &key, &[CATALOGUE], || {
            repo::list(db, filter, text, after, limit, with_total)
        })
        .await
}

/// One module by id or slug (published or not; the caller decides who may
/// see it), with its content only when `with_content`.
pub async fn find(
    db: &Db,
    cache: &Cache,
    by: &ModuleRef,
    with_content: bool,
) -> ApiResult<Option<ModuleDoc>> {
    let key = match by {
        ModuleRef::Id(id) => format!("detail:id:{}:{with_content}", id.to_hex()),
        ModuleRef::Slug(slug) => format!("detail:slug:{}:{with_content}", digest(slug)),
    };
    cache
        .get_or_compute(MODULES, &key, &[CATALOGUE], || {
            repo::find_one(db, by, with_content)
        })
        .await
}

/// Modules (without content) by id, published or not, through the entity
/// cache: one multi-get for the whole list, one database command for the
/// ones not cached. Every module write bumps the catalogue, so none is
/// served stale after it.
pub async fn find_many(
    db: &Db,
    cache: &Cache,
    ids: &[ObjectId],
) -> ApiResult<HashMap<ObjectId, ModuleDoc>> {
    cache
        .get_many(MODULES, ids, &[CATALOGUE], |missing| async move {
            Ok(repo::find_many(db, &missing)
                .await?
                .into_iter()
                .map(|m| (m.id, m))
                .collect())
        })
        .await
}

/// The handles a catalogue write needs.
pub struct Writer<'a> {
    pub db: &'a Db,
    pub cache: &'a Cache,
    pub events: &'a Events,
}

/// What a catalogue write's unit works with (the body of
/// [`Db::as_one_unit`] may only borrow what outlives the session).
type Unit<'a, T> = (&'a Db, &'a Events, T);

impl Writer<'_> {
    /// Creates a module. A published one is announced: its notification
    /// fan-out job is queued in the same unit (transaction) as the module,
    /// so neither stands without the other; the fan-out is not awaited.
    pub async fn create(&self, new: NewModule) -> ApiResult<ModuleDoc> {
        let module = repo::new_document(new);
        let created = self
            .db
            .as_one_unit((self.db, self.events, &module), |mut session, unit| {
                let (db, events, module): Unit<&ModuleDoc> = *unit;
                Box::pin(async move {
                    repo::insert(db, &mut session, module).await?;
                    if module.published {
                        events.in_unit(&published(module), &mut session).await?;
                    }
                    Ok(())
                })
            })
            .await;
        // Also after a failure: a unit that timed out may still commit.
        self.cache.invalidate(&[CATALOGUE]).await;
        created?;
        if module.published {
            self.events.emit(published(&module)).await?;
        }
        Ok(ModuleDoc {
            content: None,
            ..module
        })
    }

    /// Applies `changes`; `None` for an unknown id. An update that
    /// publishes an unpublished module announces it, in the same unit.
    pub async fn update(&self, id: ObjectId, changes: Changes) -> ApiResult<Option<ModuleDoc>> {
        let updated = self
            .db
            .as_one_unit((self.db, self.events, &changes), |mut session, unit| {
                let (db, events, changes): Unit<&Changes> = *unit;
                Box::pin(async move {
                    let Some((before, after)) = repo::update(db, &mut session, id, changes).await?
                    else {
                        return Ok(None);
                    };
                    let publishes = changes.publishes && !before.published;
                    if publishes {
                        events.in_unit(&published(&after), &mut session).await?;
                    }
                    Ok(Some((after, publishes)))
                })
            })
            .await;
        // Also after a failure: the write may have landed.
        self.cache.invalidate(&[CATALOGUE]).await;
        let Some((after, publishes)) = updated? else {
            return Ok(None);
        };
        if publishes {
            self.events.emit(published(&after)).await?;
        }
        Ok(Some(after))
    }

    /// Deletes a module with its progress and activity entries, and
    /// cancels its unfinished fan-outs, all in one unit; `false` for an
    /// unknown id.
    pub async fn delete(&self, id: ObjectId) -> ApiResult<bool> {
        let deleted = self
            .db
            .as_one_unit((self.db, self.events, ()), |mut session, unit| {
                let (db, events, ()): Unit<()> = *unit;
                Box::pin(async move {
                    if !repo::exists(db, &mut session, id).await? {
                        return Ok(None);
                    }
                    // First (on a deployment without transactions, where
                    // the steps stand one by one): no fan-out goes on
                    // telling learners about a module that is going.
                    let event = Event::ModuleDeleted { module_id: id };
                    events.in_unit(&event, &mut session).await?;
                    repo::delete(db, &mut session, id).await
                })
            })
            .await;
        // (The notifications domain drops its pages on the event below.)
        let mut scopes = vec![CATALOGUE, learners::ALL_PROGRESS];
        if let Ok(Some(d)) = &deleted {
            // Their progress lists and histories held the module.
            scopes.extend(d.learners.iter().copied().map(learners::scope));
        }
        self.cache.invalidate(&scopes).await;
        if deleted?.is_none() {
            return Ok(false);
        }
        self.events
            .emit(Event::ModuleDeleted { module_id: id })
            .await?;
        Ok(true)
    }
}

/// The announcement of a publish.
fn published(module: &ModuleDoc) -> Event {
    Event::ModulePublished {
        module_id: module.id,
        title: module.title.clone(),
    }
}
