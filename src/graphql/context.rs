//! What a resolver reaches through its `Context`, behind one extension
//! trait (as sui's `context_ext.rs`), so that resolvers never call
//! `data_unchecked` and this layer names no domain.
//!
//! - [`Services`]: the process-wide handles (database, cache, cursor and
//!   token keys, limits, events), registered once as schema data by
//!   `crate::schema::build`.
//! - [`RequestData`]: what belongs to one request (the viewer, the client
//!   address, the request's DataLoaders), attached by the transport.
//!
//! DataLoaders are created lazily, per request, by their type: a domain
//! adds one by implementing [`RequestLoader`] beside its resolvers, and
//! nothing else lists it, so there is no registry to forget (and no
//! request-time panic for a loader someone forgot).

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, Mutex},
};

use async_graphql::{Context, dataloader::DataLoader};

use crate::{
    auth::{Role, TokenService, Viewer},
    cache::Cache,
    db::Db,
    error::{ApiError, ApiResult},
    events::Events,
    graphql::pagination::CursorCodec,
    http::{metrics::Metrics, ratelimit::AuthLimiter},
    live::Live,
};

/// The process-wide handles every resolver may use; cheap to clone.
#[derive(Clone)]
pub struct Services {
    pub db: Db,
    /// Redis-first cache with the memory fallback.
    pub cache: Arc<Cache>,
    /// Signs and checks the cursors of every list.
    pub cursors: CursorCodec,
    /// Issues tokens (`login`, `register`); the transport checks them.
    pub tokens: TokenService,
    /// The per-address limit of `login` and `register`.
    pub auth_limiter: Arc<AuthLimiter>,
    /// This service's Prometheus recorder.
    pub metrics: Metrics,
    /// What domains tell each other after a write (a publish queues the
    /// notification fan-out).
    pub events: Events,
    /// Live events for subscriptions, on every instance.
    pub live: Live,
}

/// One request's own data: never shared with another request.
pub struct RequestData {
    /// The signed-in caller; `None` for anonymous requests.
    pub viewer: Option<Viewer>,
    /// The client's address (for per-address limits), when known.
    pub client: Option<IpAddr>,
    loaders: Mutex<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
}

impl RequestData {
    pub fn new(viewer: Option<Viewer>, client: Option<IpAddr>) -> Self {
        RequestData {
            viewer,
            client,
            loaders: Mutex::default(),
        }
    }
}

/// A DataLoader that lives for one request, built from the services and
/// the request's viewer the first time a resolver asks for it.
pub trait RequestLoader: Send + Sync + Sized + 'static {
    fn new(services: &Services, viewer: Option<Viewer>) -> Self;
}

/// Context accessors of every resolver.
pub trait ContextExt {
    /// The process-wide services.
    fn services(&self) -> &Services;
    /// The signed-in caller, if any.
    fn viewer(&self) -> Option<&Viewer>;
    /// The request's client address, when known.
    fn client_addr(&self) -> Option<IpAddr>;
    /// The request's DataLoader of type `L`, created on first use.
    fn loader<L: RequestLoader>(&self) -> Arc<DataLoader<L>>;
    /// Whether `field` is selected under the current field (look-ahead).
    fn selects(&self, field: &str) -> bool;

    fn db(&self) -> &Db {
        &self.services().db
    }
    fn cache(&self) -> &Cache {
        &self.services().cache
    }
    fn cursors(&self) -> &CursorCodec {
        &self.services().cursors
    }
    /// The signed-in caller, or UNAUTHENTICATED.
    fn require_viewer(&self) -> ApiResult<Viewer> {
        self.viewer().copied().ok_or_else(ApiError::unauthenticated)
    }
    /// Whether the caller is an admin.
    fn is_admin(&self) -> bool {
        self.viewer().is_some_and(|v| v.role == Role::Admin)
    }
}

impl ContextExt for Context<'_> {
    fn services(&self) -> &Services {
        // Registered by the one schema builder; a schema without it cannot
        // be built (see `crate::schema::build`).
        self.data_unchecked::<Services>()
    }

    fn viewer(&self) -> Option<&Viewer> {
        self.data_opt::<RequestData>()?.viewer.as_ref()
    }

    fn client_addr(&self) -> Option<IpAddr> {
        self.data_opt::<RequestData>()?.client
    }

    fn loader<L: RequestLoader>(&self) -> Arc<DataLoader<L>> {
        let make = |viewer| {
            Arc::new(DataLoader::new(
                L::new(self.services(), viewer),
                tokio::spawn,
            ))
        };
        let Some(data) = self.data_opt::<RequestData>() else {
            return make(None);
        };
        let mut loaders = data.loaders.lock().expect("request loaders poisoned");
        loaders
            .entry(TypeId::of::<L>())
            .or_insert_with(|| Arc::new(make(data.viewer)))
            .downcast_ref::<Arc<DataLoader<L>>>()
            .expect("entries are keyed by their type")
            .clone()
    }

    fn selects(&self, field: &str) -> bool {
        self.look_ahead().field(field).exists()
    }
}
