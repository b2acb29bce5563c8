//! Request-scoped DataLoaders of the catalogue: a page that selects
//! `content`, or a list of progress entries that selects `module`, costs one
//! round trip for the whole page.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;
use bson::oid::ObjectId;

use super::{ModuleDoc, repo};
use crate::{
    auth::Viewer,
    cache::Cache,
    db::Db,
    error::ApiError,
    graphql::{RequestLoader, Services},
};

/// Loads module contents by id.
pub struct ContentLoader {
    db: Db,
}

impl RequestLoader for ContentLoader {
    fn new(services: &Services, _: Option<Viewer>) -> Self {
        ContentLoader {
            db: services.db.clone(),
        }
    }
}

impl Loader<ObjectId> for ContentLoader {
    type Value = String;
    type Error = ApiError;

    async fn load(&self, keys: &[ObjectId]) -> Result<HashMap<ObjectId, String>, ApiError> {
        Ok(repo::contents(&self.db, keys).await?.into_iter().collect())
    }
}

/// Loads modules (without content) by id, published or not; callers decide
/// what a learner may see.
/// Through the entity cache: a page whose modules were all read before
/// costs no database command.
pub struct ModuleLoader {
    db: Db,
    cache: Arc<Cache>,
}

impl RequestLoader for ModuleLoader {
    fn new(services: &Services, _: Option<Viewer>) -> Self {
        ModuleLoader {
            db: services.db.clone(),
            cache: services.cache.clone(),
        }
    }
}

impl Loader<ObjectId> for ModuleLoader {
    type Value = ModuleDoc;
    type Error = ApiError;

    async fn load(&self, keys: &[ObjectId]) -> Result<HashMap<ObjectId, ModuleDoc>, ApiError> {
        super::service::find_many(&self.db, &self.cache, keys).await
    }
}
