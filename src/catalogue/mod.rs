//! The catalogue: modules, their lists and details.

pub mod loaders;
pub mod model;
pub mod repo;

use std::sync::{Arc, atomic::Ordering};

use async_graphql::{Context, ID, Object, dataloader::DataLoader};

pub use model::{Level, ModuleDoc};
use repo::{ModuleFilter, ModuleKey, ModuleRef};

use crate::{
    cache::{Scope, TtlClass, digest},
    error::{ApiError, GqlResult},
    graphql::{
        app, is_admin,
        pagination::{ModuleConnection, page, page_size},
        parse_id,
        scalars::DateTime,
    },
    learners::{Progress, loaders::ProgressLoader},
};
use loaders::ContentLoader;

/// A module as the API shows it.
#[derive(Clone, Debug)]
pub struct Module(pub Arc<ModuleDoc>);

impl From<ModuleDoc> for Module {
    fn from(doc: ModuleDoc) -> Self {
        Module(Arc::new(doc))
    }
}

#[Object]
impl Module {
    async fn id(&self) -> ID {
        ID(self.0.id.to_hex())
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    async fn title(&self) -> &str {
        &self.0.title
    }
    async fn summary(&self) -> &str {
        &self.0.summary
    }
    async fn category(&self) -> &str {
        &self.0.category
    }
    async fn level(&self) -> Level {
        self.0.level
    }
    async fn tags(&self) -> &[String] {
        &self.0.tags
    }
    async fn duration_minutes(&self) -> i32 {
        self.0.duration_minutes
    }
    /// Position in the catalogue; lists are ordered by (position, id).
    async fn position(&self) -> i32 {
        self.0.position
    }
    async fn published(&self) -> bool {
        self.0.published
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    async fn updated_at(&self) -> DateTime {
        self.0.updated_at.into()
    }
    /// The full lesson body, read from the database only when selected.
    async fn content(&self, ctx: &Context<'_>) -> GqlResult<String> {
        if let Some(content) = &self.0.content {
            return Ok(content.clone());
        }
        let loader = ctx.data_unchecked::<DataLoader<ContentLoader>>();
        Ok(loader.load_one(self.0.id).await?.unwrap_or_default())
    }
    /// The signed-in learner's progress on this module; null when not
    /// started or anonymous. One round trip for a whole page of modules.
    async fn my_progress(&self, ctx: &Context<'_>) -> GqlResult<Option<Progress>> {
        let Some(loader) = ctx.data_opt::<DataLoader<ProgressLoader>>() else {
            return Ok(None);
        };
        Ok(loader.load_one(self.0.id).await?.map(Progress::from))
    }
}

/// Catalogue queries.
#[derive(Default)]
pub struct CatalogueQuery;

#[Object]
impl CatalogueQuery {
    /// Published modules (admins also see unpublished ones), ordered by
    /// (position, id). `search` matches title, summary and tags,
    /// case-insensitively.
    #[allow(clippy::too_many_arguments)]
    #[graphql(
        complexity = "crate::graphql::page_cost(first, child_complexity)",
        cache_control(max_age = 60)
    )]
    async fn modules(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        category: Option<String>,
        level: Option<Level>,
        search: Option<String>,
    ) -> GqlResult<ModuleConnection> {
        let app = app(ctx);
        let limit = page_size(first)?;
        let filter = ModuleFilter::new(category, level, search, is_admin(ctx))?;
        let scope = filter.scope();
        let after: Option<ModuleKey> = after.map(|c| app.cursors.decode(&scope, &c)).transpose()?;
        let with_total = crate::graphql::selects(ctx, "totalCount");
        let text = app.text_search.load(Ordering::Relaxed);
        let key = digest(&(&scope, &after, limit, with_total, text));
        let (items, total) = app
            .cache
            .get_or_compute(TtlClass::Modules, &key, &[Scope::Catalogue], || {
                repo::list(&app.db, &filter, text, after.as_ref(), limit, with_total)
            })
            .await?;
        let items: Vec<Module> = items.into_iter().map(Module::from).collect();
        Ok(ModuleConnection::from_page(
            page(&app.cursors, &scope, items, limit, |m: &Module| {
                repo::key_of(&m.0)
            }),
            total,
        ))
    }

    /// Exactly one of id or slug must be given. Unpublished modules are
    /// NOT_FOUND for non-admins.
    #[graphql(cache_control(max_age = 60))]
    async fn module(
        &self,
        ctx: &Context<'_>,
        id: Option<ID>,
        slug: Option<String>,
    ) -> GqlResult<Option<Module>> {
        let by = match (id, slug) {
            (Some(id), None) => ModuleRef::Id(parse_id(&id, "id")?),
            (None, Some(slug)) if !slug.is_empty() && slug.len() <= 200 => ModuleRef::Slug(slug),
            (None, Some(_)) => {
                return Err(ApiError::bad_input("`slug` must be 1 to 200 characters").into());
            }
            _ => return Err(ApiError::bad_input("give exactly one of `id` or `slug`").into()),
        };
        let app = app(ctx);
        let with_content = crate::graphql::selects(ctx, "content");
        let key = match &by {
            ModuleRef::Id(id) => format!("detail:id:{}:{with_content}", id.to_hex()),
            ModuleRef::Slug(slug) => format!("detail:slug:{}:{with_content}", digest(slug)),
        };
        let found = app
            .cache
            .get_or_compute(TtlClass::Modules, &key, &[Scope::Catalogue], || {
                repo::find_one(&app.db, &by, with_content)
            })
            .await?;
        match found {
            Some(m) if m.published || is_admin(ctx) => Ok(Some(Module::from(m))),
            _ => Err(ApiError::NotFound("no such module".into()).into()),
        }
    }
}
