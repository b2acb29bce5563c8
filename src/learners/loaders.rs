//! The request-scoped loader behind `Module.myProgress`: it carries the
//! viewer, so it is created per request and never shared.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use bson::oid::ObjectId;

use super::{Viewer, model::ProgressDoc, progress};
use crate::{app::AppState, error::ApiError};

/// Loads the viewer's progress by module id.
pub struct ProgressLoader {
    app: AppState,
    viewer: Viewer,
}

impl ProgressLoader {
    pub fn new(app: AppState, viewer: Viewer) -> Self {
        ProgressLoader { app, viewer }
    }
}

impl Loader<ObjectId> for ProgressLoader {
    type Value = ProgressDoc;
    type Error = ApiError;

    async fn load(&self, keys: &[ObjectId]) -> Result<HashMap<ObjectId, ProgressDoc>, ApiError> {
        Ok(
            progress::for_modules(&self.app.db, self.viewer.user_id, keys)
                .await?
                .into_iter()
                .map(|p| (p.module_id, p))
                .collect(),
        )
    }
}
