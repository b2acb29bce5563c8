//! The catalogue's GraphQL face: the `Module` type, the catalogue queries
//! and the admin's module mutations. Data access is in `repo`, cache rules
//! and writes in `service`.

use std::sync::Arc;

use async_graphql::{Context, ID, Object};

use super::{
    input::{Changes, ModuleInput, ModuleUpdateInput, NewModule},
    loaders::ContentLoader,
    model::{Level, ModuleDoc},
    repo::{self, ModuleFilter, ModuleKey, ModuleRef},
    service,
};
use crate::{
    error::{ApiError, GqlResult},
    graphql::{
        ContextExt,
        guards::AdminOnly,
        pagination::{Connection, Node, TotalCount, page, page_size},
        parse_id,
        scalars::DateTime,
    },
    learners::{Progress, ProgressLoader},
};

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
        Ok(ctx
            .loader::<ContentLoader>()
            .load_one(self.0.id)
            .await?
            .unwrap_or_default())
    }
    /// The signed-in learner's progress on this module; null when not
    /// started or anonymous. One round trip for a whole page of modules.
    async fn my_progress(&self, ctx: &Context<'_>) -> GqlResult<Option<Progress>> {
        if ctx.viewer().is_none() {
            return Ok(None);
        }
        Ok(ctx
            .loader::<ProgressLoader>()
            .load_one(self.0.id)
            .await?
            .map(Progress::from))
    }
}

impl Node for Module {
    const LIST_NAME: &'static str = "Module";
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
    #[graphql(cache_control(max_age = 60))]
    async fn modules(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        category: Option<String>,
        level: Option<Level>,
        search: Option<String>,
    ) -> GqlResult<Connection<Module, TotalCount>> {
        let limit = page_size(first)?;
        let filter = ModuleFilter::new(category, level, search, ctx.is_admin())?;
        let scope = filter.scope();
        let after: Option<ModuleKey> = after
            .map(|c| ctx.cursors().decode(&scope, &c))
            .transpose()?;
        let with_total = ctx.selects("totalCount");
        let (items, total) = service::list(
            ctx.db(),
            ctx.cache(),
            &filter,
            after.as_ref(),
            limit,
            with_total,
        )
        .await?;
        let items: Vec<Module> = items.into_iter().map(Module::from).collect();
        Ok(Connection::with_total(
            page(ctx.cursors(), &scope, items, limit, |m: &Module| {
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
        let with_content = ctx.selects("content");
        let found = service::find(ctx.db(), ctx.cache(), &by, with_content).await?;
        match found {
            Some(m) if m.published || ctx.is_admin() => Ok(Some(Module::from(m))),
            _ => Err(ApiError::NotFound("no such module".into()).into()),
        }
    }
}

fn writer<'a>(ctx: &'a Context<'_>) -> service::Writer<'a> {
    let s = ctx.services();
    service::Writer {
        db: &s.db,
        cache: &s.cache,
        events: &s.events,
    }
}

fn no_such_module() -> async_graphql::Error {
    ApiError::NotFound("no such module".into()).into()
}

/// The admin's catalogue writes.
#[derive(Default)]
pub struct CatalogueMutation;

#[Object]
impl CatalogueMutation {
    /// Admin only. Publishing a module notifies every learner in the
    /// background.
    #[graphql(guard = "AdminOnly")]
    async fn create_module(&self, ctx: &Context<'_>, input: ModuleInput) -> GqlResult<Module> {
        let new = NewModule::parse(input)?;
        Ok(Module::from(writer(ctx).create(new).await?))
    }

    /// Admin only. An update that publishes an unpublished module notifies
    /// every learner in the background.
    #[graphql(guard = "AdminOnly")]
    async fn update_module(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: ModuleUpdateInput,
    ) -> GqlResult<Module> {
        let id = parse_id(&id, "id")?;
        let changes = Changes::parse(input)?;
        match writer(ctx).update(id, changes).await? {
            Some(after) => Ok(Module::from(after)),
            None => Err(no_such_module()),
        }
    }

    /// Admin only. Removes the module with its progress and activity
    /// entries; notifications that named it keep their text and lose it.
    #[graphql(guard = "AdminOnly")]
    async fn delete_module(&self, ctx: &Context<'_>, id: ID) -> GqlResult<bool> {
        let id = parse_id(&id, "id")?;
        if writer(ctx).delete(id).await? {
            Ok(true)
        } else {
            Err(no_such_module())
        }
    }
}
