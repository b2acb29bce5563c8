//! The application: shared state, router, middleware and the serve loop.
//!
//! `Application::build` binds the listener (port 0 in tests) and
//! `run_until_stopped` serves until SIGINT/SIGTERM or a test's shutdown
//! signal, finishing requests in flight.

use std::{
    future::Future,
    net::SocketAddr,
    ops::Deref,
    sync::{Arc, atomic::Ordering},
};

use anyhow::Context;
use axum::{
    Router,
    extract::{DefaultBodyLimit, State},
    http::StatusCode,
    response::{IntoResponse, Json, Response},
    routing::get,
};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;

use crate::{
    auth::TokenService,
    cache::Cache,
    config::Settings,
    db::{Db, indexes},
    events::Events,
    graphql::{
        Services,
        documents::Documents,
        graphiql::{self, GraphiqlEnabled},
        pagination::CursorCodec,
        response_cache::ResponseCache,
        transport::{self, Endpoint},
        ws::Sockets,
    },
    http::{
        metrics::{self, Metrics},
        ratelimit::AuthLimiter,
    },
    live::Live,
    notifications::jobs::{self, FanOut, JobSignal, WorkerDeps},
    schema::{self, KairosSchema},
};

/// Everything the process holds, built once.
pub struct App {
    pub settings: Settings,
    /// What resolvers reach (database, cache, keys, limits, events).
    pub services: Services,
    /// Wakes this instance's notification worker when a publish queued a
    /// fan-out job.
    pub jobs: Arc<JobSignal>,
    /// This instance's subscription sockets (closed at shutdown).
    pub sockets: Arc<Sockets>,
}

/// Cheap-to-clone handle on the one `App`.
#[derive(Clone)]
pub struct AppState(pub Arc<App>);

impl Deref for AppState {
    type Target = App;
    fn deref(&self) -> &App {
        &self.0
    }
}

/// A built service: state, schema and a bound listener.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: AppState,
}

impl Application {
    /// Connects to MongoDB, builds the schema and binds `BIND_ADDR`.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect(&settings.mongo).await?;
        // A startup ping tells the operator at once when the database is not
        // there; the service still starts (and says 503 on /ready) so that it
        // recovers by itself when MongoDB comes up.
        match db.ping().await {
            Ok(()) => tracing::info!(database = %settings.mongo.database, "connected to MongoDB"),
            Err(_) => {
                tracing::error!("MongoDB did not answer the startup ping; serving as unready")
            }
        }
        db.text_search
            .store(indexes::has_text_index(&db).await, Ordering::Relaxed);
        let cache = Cache::new(&settings.cache);
        cache.register(&[
            crate::catalogue::service::MODULES,
            crate::learners::service::STATS,
            crate::learners::service::PROGRESS,
            crate::learners::service::HISTORY,
            crate::admin::dashboard::DASHBOARD,
            crate::notifications::service::NOTIFICATIONS,
        ]);
        let jobs = Arc::new(JobSignal::default());
        let fan_out = FanOut {
            db: db.clone(),
            signal: jobs.clone(),
            cache: cache.clone(),
        };
        let metrics = Metrics::new();
        let live = Live::new(&settings.live, &settings.cache, metrics.clone());
        let services = Services {
            cursors: CursorCodec::new(settings.auth.jwt_secret.expose_secret()),
            tokens: TokenService::new(&settings.auth),
            auth_limiter: Arc::new(AuthLimiter::new(settings.limits.auth_rate_limit_per_minute)),
            events: Events::new(vec![Arc::new(fan_out), Arc::new(live.clone())]),
            metrics: metrics.clone(),
            live,
            cache,
            db,
        };
        let schema = schema::build(services.clone(), &settings);
        let documents = Arc::new(Documents::new(&settings.graphql, services.cache.clone())?);
        let state = AppState(Arc::new(App {
            sockets: Arc::new(Sockets::new(settings.live.clone(), metrics)),
            settings,
            services,
            jobs,
        }));
        let router = router(state.clone(), schema, documents);
        let listener = TcpListener::bind(state.settings.bind_addr)
            .await
            .with_context(|| format!("binding BIND_ADDR={}", state.settings.bind_addr))?;
        Ok(Application {
            listener,
            router,
            state,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serves until `shutdown` resolves, then drains requests in flight.
    /// The notification worker (when `WORKER_ENABLED`) runs alongside and
    /// is stopped with the server: it finishes its round and hands its job
    /// back, so another instance goes on at once.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        tracing::info!(addr = %self.local_addr(), "serving");
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let worker = self.state.settings.jobs.worker_enabled.then(|| {
            let deps = WorkerDeps {
                mongo: self.state.settings.mongo.clone(),
                settings: self.state.settings.jobs.clone(),
                metrics: self.state.services.metrics.clone(),
                signal: self.state.jobs.clone(),
                events: self.state.services.events.clone(),
            };
            tokio::spawn(jobs::run_worker(deps, stopped))
        });
        // Upgraded sockets are not requests the server drains: they are
        // closed (1012) as soon as the shutdown starts, so their clients
        // reconnect to another instance while this one finishes.
        let sockets = self.state.sockets.clone();
        let shutdown = async move {
            shutdown.await;
            sockets.close_all(SOCKET_CLOSE_GRACE).await;
        };
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(shutdown)
        .await
        .context("serving HTTP");
        let _ = stop.send(true);
        if let Some(worker) = worker {
            // A round is one batch; past this the lease covers the rest.
            let grace = self.state.settings.jobs.lease;
            if tokio::time::timeout(grace, worker).await.is_err() {
                tracing::warn!("the notification worker did not stop in time");
            }
        }
        served
    }

    /// Serves until SIGINT or SIGTERM.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(shutdown_signal()).await
    }
}

/// How long the shutdown waits for subscription sockets to close.
const SOCKET_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(3);

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal received, draining requests");
}

/// The HTTP surface; the layers around it and their order are explained in
/// `crate::http`.
fn router(state: AppState, schema: KairosSchema, documents: Arc<Documents>) -> Router {
    let settings = &state.settings;
    let limits = &settings.limits;
    let metrics = state.services.metrics.clone();
    let endpoint = Arc::new(Endpoint {
        executor: schema,
        documents,
        tokens: state.services.tokens.clone(),
        trust_proxy: limits.trust_proxy,
        graphiql: settings.graphiql,
        sockets: state.sockets.clone(),
        responses: (settings.cache.responses && !settings.cache.disabled).then(|| {
            Arc::new(ResponseCache::new(
                state.services.cache.clone(),
                crate::schema::cacheable_roots(),
                settings.graphql.persisted != crate::config::PersistedMode::Off,
            ))
        }),
    });
    let graphql_routes = Router::new()
        .route(
            "/graphql",
            get(transport::get_graphql::<KairosSchema>)
                .post(transport::post_graphql::<KairosSchema>)
                .fallback(transport::other_method),
        )
        .route("/graphql/ws", get(transport::get_ws::<KairosSchema>))
        // Only the API is rate limited: probes and scrapes must get through.
        .route_layer(crate::http::ratelimit::http_layer(limits, metrics.clone()))
        .route("/", get(transport::graphiql_root::<KairosSchema>))
        .with_state(endpoint);
    let assets = Router::new()
        .route(
            &format!("{}/{{digest}}/{{name}}", graphiql::ASSETS_PATH),
            get(graphiql::asset),
        )
        .with_state(GraphiqlEnabled(settings.graphiql));
    let web_app = Router::new()
        .route(crate::webapp::PATH, get(crate::webapp::page))
        .route("/app/", get(crate::webapp::page))
        .route("/app/assets/{digest}/{name}", get(crate::webapp::asset))
        .with_state(crate::webapp::WebAppEnabled(settings.web_app));
    let probes = Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics_endpoint))
        .with_state(state.clone());
    let exports = Router::new()
        .route(
            "/exports/progress.csv",
            get(crate::learners::export::progress_csv),
        )
        .with_state(crate::learners::export::ExportState {
            db: state.services.db.clone(),
            tokens: state.services.tokens.clone(),
        });
    let routes = Router::new()
        .merge(graphql_routes)
        .merge(exports)
        .merge(assets)
        .merge(web_app)
        .merge(probes)
        // Larger bodies get 413 before any parsing.
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes));
    crate::http::with_layers(routes, metrics, limits)
}

/// Liveness: the process answers; no dependency is asked.
async fn health() -> impl IntoResponse {
    Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: 200 when MongoDB answers a ping, 503 otherwise.
async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    let services = &app.services;
    let mongo_ok = services.db.ping().await.is_ok();
    let status = if mongo_ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let cache = services.cache.report().await;
    // Redis down is degraded, not unready: the memory cache serves.
    let redis = match (cache.redis_configured, cache.redis_available) {
        (false, _) => "not configured",
        (true, true) => "up",
        (true, false) => "down",
    };
    let body = serde_json::json!({
        "status": if mongo_ok { "ready" } else { "unavailable" },
        "mongodb": if mongo_ok { "up" } else { "down" },
        "redis": redis,
        "cache_backend": cache.backend,
    });
    (status, Json(body))
}

/// `GET /metrics`: this service's figures in the Prometheus text format.
async fn metrics_endpoint(State(app): State<AppState>) -> Response {
    let mongo = &app.settings.mongo;
    let services = &app.services;
    let cache = services.cache.report().await;
    let text = services.metrics.render(
        &services.db,
        (mongo.max_pool_size, mongo.min_pool_size),
        &cache,
    );
    metrics::text_response(text)
}
