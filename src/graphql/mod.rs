//! Schema assembly: the merged Query and Mutation roots of every domain,
//! the limits, and the helpers resolvers use to reach per-request data.

pub mod documents;
pub mod graphiql;
pub mod http;
pub mod limits;
pub mod pagination;
pub mod scalars;

use async_graphql::{Context, EmptySubscription, ID, MergedObject, Schema};
use bson::oid::ObjectId;

use crate::{
    admin::{AdminMutation, AdminQuery},
    app::AppState,
    catalogue::CatalogueQuery,
    error::{ApiError, ApiResult},
    learners::{AuthMutation, LearnerQuery, ProgressMutation, Role, Viewer},
    notifications::{NotificationMutation, NotificationQuery},
};

/// The root query: one part per domain.
#[derive(MergedObject, Default)]
pub struct Query(CatalogueQuery, LearnerQuery, NotificationQuery, AdminQuery);

/// The root mutation: one part per domain.
#[derive(MergedObject, Default)]
pub struct Mutation(
    AuthMutation,
    ProgressMutation,
    NotificationMutation,
    AdminMutation,
);

pub type KairosSchema = Schema<Query, Mutation, EmptySubscription>;

/// Directives allowed on one field.
const MAX_DIRECTIVES_PER_FIELD: usize = 4;

/// Builds the schema with its limits. The app state is schema data (one
/// per process); the viewer and DataLoaders are added to each request.
pub fn build_schema(state: AppState) -> KairosSchema {
    let limits = state.settings.limits.clone();
    let mut builder = Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .extension(self::limits::DocumentLimits {
            max_fields: limits.query_complexity,
            max_depth: limits.query_depth,
        })
        .limit_complexity(limits.query_complexity)
        // The contract's directives (`@skip`, `@include`) make sense once
        // per field; thousands on one field are only work for the server.
        .limit_directives(MAX_DIRECTIVES_PER_FIELD)
        .data(state.clone());
    if !state.settings.introspection {
        // "Did you mean …" names fields a caller did not ask for: it reveals
        // the schema as surely as introspection does.
        builder = builder.disable_introspection().disable_suggestions();
    }
    builder.finish()
}

/// The complexity of a list field: its selection once per item asked for,
/// plus one for the field. `first` is clamped to the page range (a larger
/// value is refused by the resolver anyway), which also keeps the sum far
/// from overflowing. Without this, `modules(first: 100)` would cost as much
/// as `modules(first: 1)` and aliases of full pages would pass the limit.
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let items = first
        .unwrap_or(pagination::DEFAULT_PAGE)
        .clamp(0, pagination::MAX_PAGE) as usize;
    items
        .max(1)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// The schema without state, for exporting the SDL.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), EmptySubscription)
        .finish()
        .sdl()
}

/// The shared application state.
pub fn app<'a>(ctx: &'a Context<'_>) -> &'a AppState {
    ctx.data_unchecked::<AppState>()
}

/// The signed-in caller, if any.
pub fn viewer<'a>(ctx: &'a Context<'_>) -> Option<&'a Viewer> {
    ctx.data_opt::<Viewer>()
}

/// The signed-in caller, or UNAUTHENTICATED.
pub fn require_viewer<'a>(ctx: &'a Context<'_>) -> ApiResult<&'a Viewer> {
    viewer(ctx).ok_or_else(ApiError::unauthenticated)
}

/// An admin, or UNAUTHENTICATED (anonymous) / FORBIDDEN (learner).
pub fn require_admin<'a>(ctx: &'a Context<'_>) -> ApiResult<&'a Viewer> {
    let v = require_viewer(ctx)?;
    if v.role == Role::Admin {
        Ok(v)
    } else {
        Err(ApiError::forbidden())
    }
}

/// Whether the caller is an admin.
pub fn is_admin(ctx: &Context<'_>) -> bool {
    viewer(ctx).is_some_and(|v| v.role == Role::Admin)
}

/// Parses a public ID (24 hex characters) into an ObjectId.
pub fn parse_id(id: &ID, what: &str) -> ApiResult<ObjectId> {
    let s = id.as_str();
    if s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_input(format!(
            "`{what}` must be an ID of 24 hexadecimal characters"
        )));
    }
    ObjectId::parse_str(s).map_err(|_| ApiError::bad_input(format!("`{what}` is not a valid ID")))
}

/// The look-ahead check "is `field` selected under this field".
pub fn selects(ctx: &Context<'_>, field: &str) -> bool {
    ctx.look_ahead().field(field).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_24_hex_characters_make_an_id() {
        assert!(parse_id(&ID::from("6b01693b8a587308b42c39f9"), "id").is_ok());
        for bad in [
            "",
            "123",
            "zz01693b8a587308b42c39f9",
            "6b01693b8a587308b42c39f9a",
            "{\"$gt\":\"\"}",
        ] {
            assert!(matches!(
                parse_id(&ID::from(bad), "id"),
                Err(ApiError::BadUserInput(_))
            ));
        }
    }
}
