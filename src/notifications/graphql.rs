//! The notifications' GraphQL face: a learner's notifications, the unread
//! count, marking them read.

use async_graphql::{Context, ID, Object, Subscription};
use bson::oid::ObjectId;
use futures::{StreamExt, stream::BoxStream};

use super::{NotificationDoc, repo, service};
use crate::{
    catalogue::{Module, ModuleLoader},
    error::{ApiError, GqlResult},
    graphql::{
        ContextExt,
        pagination::{Connection, Node, page, page_size},
        parse_id,
        scalars::DateTime,
    },
};

/// A notification as its learner sees it.
#[derive(Clone, Debug)]
pub struct Notification(pub NotificationDoc);

impl Node for Notification {
    const LIST_NAME: &'static str = "Notification";
}

#[Object]
impl Notification {
    async fn id(&self) -> ID {
        ID(self.0.id.to_hex())
    }
    async fn message(&self) -> &str {
        &self.0.message
    }
    async fn read(&self) -> bool {
        self.0.read
    }
    async fn created_at(&self) -> DateTime {
        self.0.created_at.into()
    }
    /// The module the notification is about, if any: null once it is
    /// deleted (or, for a learner, unpublished again). One round trip for
    /// a whole page.
    async fn module(&self, ctx: &Context<'_>) -> GqlResult<Option<Module>> {
        let Some(id) = self.0.module_id else {
            return Ok(None);
        };
        Ok(ctx
            .loader::<ModuleLoader>()
            .load_one(id)
            .await?
            .filter(|m| m.published || ctx.is_admin())
            .map(Module::from))
    }
}

#[derive(Default)]
pub struct NotificationQuery;

#[Object]
impl NotificationQuery {
    /// Newest first.
    #[graphql(cache_control(no_cache))]
    #[tracing::instrument(skip_all)]
    async fn notifications(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 20)] first: Option<i32>,
        after: Option<String>,
        #[graphql(default_with = "Some(false)")] unread_only: Option<bool>,
    ) -> GqlResult<Connection<Notification>> {
        let viewer = ctx.require_viewer()?;
        let limit = page_size(first)?;
        let unread_only = unread_only.unwrap_or(false);
        let scope =
            serde_json::json!(["notifications", viewer.user_id.to_hex(), unread_only]).to_string();
        let after: Option<repo::NotificationKey> = after
            .map(|c| ctx.cursors().decode(&scope, &c))
            .transpose()?;
        // Cached per learner: marking read and every fan-out batch
        // invalidate (see `service`).
        let items = service::page(
            ctx.db(),
            ctx.cache(),
            viewer.user_id,
            unread_only,
            after.as_ref(),
            limit,
        )
        .await?;
        let items: Vec<Notification> = items.into_iter().map(Notification).collect();
        Ok(Connection::from_page(page(
            ctx.cursors(),
            &scope,
            items,
            limit,
            |n: &Notification| repo::key_of(&n.0),
        )))
    }

    /// The viewer's unread notifications (an index-backed count).
    #[graphql(cache_control(no_cache))]
    async fn unread_notification_count(&self, ctx: &Context<'_>) -> GqlResult<i64> {
        let viewer = ctx.require_viewer()?;
        Ok(repo::unread_count(ctx.db(), viewer.user_id).await?)
    }
}

/// Notifications as they are created.
#[derive(Default)]
pub struct NotificationSubscription;

#[Subscription]
impl NotificationSubscription {
    /// The signed-in user's notifications, as they are created.
    async fn notification_added(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<BoxStream<'static, Notification>> {
        let viewer = ctx.require_viewer()?;
        Ok(ctx
            .services()
            .live
            .subscribe(crate::live::Topic::Notification, viewer.user_id)
            .filter_map(|doc| {
                std::future::ready(
                    bson::from_document::<NotificationDoc>((*doc).clone())
                        .ok()
                        .map(Notification),
                )
            })
            .boxed())
    }
}

#[derive(Default)]
pub struct NotificationMutation;

#[Object]
impl NotificationMutation {
    /// Marks the given notifications read (all when ids is null); returns
    /// how many changed.
    async fn mark_notifications_read(
        &self,
        ctx: &Context<'_>,
        ids: Option<Vec<ID>>,
    ) -> GqlResult<i64> {
        let viewer = ctx.require_viewer()?;
        let ids = match ids {
            None => None,
            Some(ids) if ids.len() > repo::MAX_MARK_IDS => {
                return Err(ApiError::bad_input(format!(
                    "`ids` may hold at most {} ids",
                    repo::MAX_MARK_IDS
                ))
                .into());
            }
            Some(ids) => Some(
                ids.iter()
                    .map(|id| parse_id(id, "ids"))
                    .collect::<Result<Vec<ObjectId>, _>>()?,
            ),
        };
        Ok(service::mark_read(ctx.db(), ctx.cache(), viewer.user_id, ids.as_deref()).await?)
    }
}
