//! Field guards, declared on the field they protect
//! (`#[graphql(guard = "AdminOnly")]`), so that a new admin field cannot
//! silently skip the check inside its body.

use async_graphql::{Context, Guard, Result};

use super::context::ContextExt;
use crate::{auth::Role, error::ApiError};

/// Admins only: UNAUTHENTICATED for anonymous callers, FORBIDDEN for
/// learners.
pub struct AdminOnly;

impl Guard for AdminOnly {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match ctx.viewer() {
            None => Err(ApiError::unauthenticated().into()),
            Some(v) if v.role == Role::Admin => Ok(()),
            Some(_) => Err(ApiError::forbidden().into()),
        }
    }
}

/// Signed-in callers only: UNAUTHENTICATED otherwise.
pub struct SignedIn;

impl Guard for SignedIn {
    async fn check(&self, ctx: &Context<'_>) -> Result<()> {
        match ctx.viewer() {
            Some(_) => Ok(()),
            None => Err(ApiError::unauthenticated().into()),
        }
    }
}
