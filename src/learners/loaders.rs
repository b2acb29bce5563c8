//! The request-scoped loader behind `Module.myProgress`: it carries the
//! viewer, so it is created per request and never shared.

use std::collections::HashMap;

use async_graphql::dataloader::Loader;
use bson::oid::ObjectId;

use super::{model::ProgressDoc, progress};
use crate::{
    auth::Viewer,
    db::Db,
    error::ApiError,
    graphql::{RequestLoader, Services},
};

/// Loads the viewer's progress by module id (nothing for anonymous callers).
pub struct ProgressLoader {
    db: Db,
    viewer: Option<Viewer>,
}

impl RequestLoader for ProgressLoader {
    fn new(services: &Services, viewer: Option<Viewer>) -> Self {
        ProgressLoader {
            db: services.db.clone(),
            viewer,
        }
    }
}

impl Loader<ObjectId> for ProgressLoader {
    type Value = ProgressDoc;
    type Error = ApiError;

    async fn load(&self, keys: &[ObjectId]) -> Result<HashMap<ObjectId, ProgressDoc>, ApiError> {
        let Some(viewer) = self.viewer else {
            return Ok(HashMap::new());
        };
        Ok(progress::for_modules(&self.db, viewer.user_id, keys)
            .await?
            .into_iter()
            .map(|p| (p.module_id, p))
            .collect())
    }
}
