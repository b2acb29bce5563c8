//! The one place that merges the domain roots into the schema and says
//! what each execution carries: the process-wide [`Services`] as schema
//! data, and per request the `RequestData` the transport attaches (viewer,
//! client address, lazily created DataLoaders; see `graphql::context`).

use async_graphql::{MergedObject, MergedSubscription, Schema};

use crate::{
    admin::{AdminMutation, AdminQuery},
    auth::Viewer,
    cache::Scope,
    catalogue::service::CATALOGUE,
    catalogue::{CatalogueMutation, CatalogueQuery},
    config::Settings,
    graphql::{Services, cost::QueryCost, limits::DocumentLimits, response_cache::CacheableRoot},
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
        max_aliases: limits.query_aliases,
        max_depth: limits.query_depth,
    })
    // Prices every request (subscription documents included), refuses what
    // costs more than the limit or than the caller has left, and reports
    // `extensions.cost`.
    .extension(QueryCost {
        limit: limits.query_complexity as u64,
    })
    // The contract's directives (`@skip`, `@include`) make sense once
    // per field; thousands on one field are only work for the server.
    .limit_directives(MAX_DIRECTIVES_PER_FIELD)
    // This instance's leaderboard rankings (see `learners::leaderboard`).
    .data(Leaderboards::new(
        services.db.clone(),
        services.cache.clone(),
        settings.leaderboard_refresh,
    ))
    .data(services);
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

/// The learner's own scope, when signed in.
fn own(viewer: Option<&Viewer>) -> Option<Scope> {
    viewer.map(|v| crate::learners::service::scope(v.user_id))
}

/// The root fields whose whole response may be cached
/// (`graphql::response_cache`), each with every scope what it resolves
/// depends on, nested fields included: modules read the catalogue (and a
/// signed-in caller's `myProgress` on them, their own scope); progress,
/// history and statistics the learner's scope and the modules they show;
/// notifications their own scopes and their modules.
pub fn cacheable_roots() -> Vec<&'static CacheableRoot> {
    static ROOTS: [CacheableRoot; 8] = [
        CacheableRoot {
            field: "modules",
            scopes: |v| [Some(CATALOGUE), own(v)].into_iter().flatten().collect(),
        },
        CacheableRoot {
            field: "module",
            scopes: |v| [Some(CATALOGUE), own(v)].into_iter().flatten().collect(),
        },
        CacheableRoot {
            field: "myProgress",
            scopes: |v| [Some(CATALOGUE), own(v)].into_iter().flatten().collect(),
        },
        CacheableRoot {
            field: "progressStats",
            scopes: |v| [Some(CATALOGUE), own(v)].into_iter().flatten().collect(),
        },
        CacheableRoot {
            field: "history",
            scopes: |v| [Some(CATALOGUE), own(v)].into_iter().flatten().collect(),
        },
        CacheableRoot {
            field: "activitySeries",
            scopes: |v| [Some(CATALOGUE), own(v)].into_iter().flatten().collect(),
        },
        CacheableRoot {
            field: "periodStats",
            scopes: |v| [Some(CATALOGUE), own(v)].into_iter().flatten().collect(),
        },
        CacheableRoot {
            field: "notifications",
            scopes: |v| {
                let mut s = vec![CATALOGUE, crate::notifications::service::FANNED_OUT];
                s.extend(v.map(|v| crate::notifications::service::scope(v.user_id)));
                s
            },
        },
    ];
    ROOTS.iter().collect()
}
