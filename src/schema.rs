//! The one place that merges the domain roots into the schema and says
//! what each execution carries: the process-wide [`Services`] as schema
//! data, and per request the `RequestData` the transport attaches (viewer,
//! client address, lazily created DataLoaders; see `graphql::context`).

use async_graphql::{MergedObject, MergedSubscription, Schema};

use crate::{
    admin::{AdminMutation, AdminQuery},
    catalogue::{CatalogueMutation, CatalogueQuery},
    config::Settings,
    graphql::{Services, limits::DocumentLimits},
    learners::{
        AccountMutation, AnalyticsQuery, AuthMutation, Leaderboards, LearnerQuery,
        ProgressMutation, ProgressSubscription,
    },
    notifications::{NotificationMutation, NotificationQuery, NotificationSubscription},
};

/// The root query: one part per domain.
#[derive(MergedObject, Default)]
pub struct Query(
    CatalogueQuery,
    LearnerQuery,
    AnalyticsQuery,
    NotificationQuery,
    AdminQuery,
);

/// The root mutation: one part per domain.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AuthMutation,
    AccountMutation,
    ProgressMutation,
    NotificationMutation,
    CatalogueMutation,
    AdminMutation,
);

/// The root subscription (over WebSocket, `graphql::ws`): one part per
/// domain that has live updates.
#[derive(MergedSubscription, Default)]
pub struct Subscription(NotificationSubscription, ProgressSubscription);

pub type KairosSchema = Schema<Query, Mutation, Subscription>;

/// Directives allowed on one field.
const MAX_DIRECTIVES_PER_FIELD: usize = 4;

/// Builds the schema with its limits and the services every resolver
/// reaches (`ContextExt`): a schema cannot be built without them.
pub fn build(services: Services, settings: &Settings) -> KairosSchema {
    let limits = &settings.limits;
    let mut builder = Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .extension(DocumentLimits {
        max_fields: limits.query_complexity,
        max_depth: limits.query_depth,
    })
    .limit_complexity(limits.query_complexity)
    // The contract's directives (`@skip`, `@include`) make sense once
    // per field; thousands on one field are only work for the server.
    .limit_directives(MAX_DIRECTIVES_PER_FIELD)
    .data(services)
    // This instance's leaderboard rankings (see `learners::leaderboard`).
    .data(Leaderboards::default());
    if !settings.introspection {
        // "Did you mean …" names fields a caller did not ask for: it reveals
        // the schema as surely as introspection does.
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder.finish()
}

/// The schema without services, for exporting the SDL.
pub fn sdl() -> String {
    Schema::build(
        Query::default(),
        Mutation::default(),
        Subscription::default(),
    )
    .finish()
    .sdl()
}
