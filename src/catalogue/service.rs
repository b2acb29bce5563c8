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

impl Writer<'_> {
    /// Creates a module; a published one is announced (the notification
    /// fan-out is queued, not awaited).
    pub async fn create(&self, new: NewModule) -> ApiResult<ModuleDoc> {
        let created = repo::create(self.db, new).await?;
        self.cache.invalidate(&[CATALOGUE]).await;
        if created.published {
            self.announce(&created).await?;
        }
        Ok(created)
    }

    /// Applies `changes`; `None` for an unknown id. An update that
    /// publishes an unpublished module announces it.
    pub async fn update(&self, id: ObjectId, changes: Changes) -> ApiResult<Option<ModuleDoc>> {
        let publishes = changes.publishes;
        let updated = repo::update(self.db, id, changes).await;
        // Also after a failure: the write may have landed.
        self.cache.invalidate(&[CATALOGUE]).await;
        let Some((before, after)) = updated? else {
            return Ok(None);
        };
        if publishes && !before.published {
            self.announce(&after).await?;
        }
        Ok(Some(after))
    }

    /// Deletes a module with its progress and activity entries; `false`
    /// for an unknown id. Listeners hear of it before anything goes.
    pub async fn delete(&self, id: ObjectId) -> ApiResult<bool> {
        let deleting = self.events.emit(Event::ModuleDeleted { module_id: id });
        let deleted = repo::delete(self.db, id, deleting).await;
        // Notifications about it lose their module.
        let mut scopes = vec![
            CATALOGUE,
            learners::ALL_PROGRESS,
            crate::notifications::service::FANNED_OUT,
        ];
        if let Ok(Some(d)) = &deleted {
            // Their progress lists and histories held the module.
            scopes.extend(d.learners.iter().copied().map(learners::scope));
        }
        self.cache.invalidate(&scopes).await;
        Ok(deleted?.is_some())
    }

    async fn announce(&self, module: &ModuleDoc) -> ApiResult<()> {
        self.events
            .emit(Event::ModulePublished {
                module_id: module.id,
                title: module.title.clone(),
            })
            .await
    }
}
