//! The application: shared state, router, middleware and the serve loop.
//!
//! `Application::build` binds the listener (port 0 in tests) and
//! `run_until_stopped` serves until SIGINT/SIGTERM or a test's shutdown
//! signal, draining (`/ready` 503) and finishing requests in flight.

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
    db::{Db, changes::FollowState, indexes},
    events::Events,
    graphql::{
        Services,
        documents::Documents,
        graphiql::{self, GraphiqlEnabled},
        pagination::CursorCodec,
        response_cache::ResponseCache,
        sockets::Sockets,
        transport::{self, Endpoint},
        ws,
    },
    http::{
        metrics::{self, Metrics},
        ratelimit::AuthLimiter,
        throttle::CostThrottle,
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
    /// Set when shutdown begins: `/ready` says 503 while requests are still
    /// served for `SHUTDOWN_DRAIN_SECS`.
    pub draining: std::sync::atomic::AtomicBool,
    /// How the follower of the cached collections stands (`crate::follow`).
    pub follow: Arc<FollowState>,
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
    /// Binds `BIND_ADDR` first (probes get an answer whatever the
    /// dependencies do), builds the MongoDB client (lazy: a database that is
    /// down delays nothing; `/ready` says 503 until it answers) and the
    /// schema, and waits briefly for Redis so the first request is coherent.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(settings.bind_addr)
            .await
            .with_context(|| format!("binding BIND_ADDR={}", settings.bind_addr))?;
        let db = Db::connect(&settings.mongo).await?;
        tokio::spawn(watch_database(db.clone(), settings.mongo.database.clone()));
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
            throttle: Arc::new(CostThrottle::new(&settings.limits, cache.clone())),
            events: Events::new(vec![Arc::new(fan_out), Arc::new(live.clone())]),
            metrics: metrics.clone(),
            live,
            cache,
            db,
        };
        let schema = schema::build(services.clone(), &settings);
        let documents = Arc::new(Documents::new(&settings.graphql, services.cache.clone())?);
        // A connection attempt's worth: long enough for a live Redis, short
        // enough that a dead one barely delays the start.
        if !services.cache.wait_for_redis(REDIS_START_WAIT).await {
            tracing::warn!("redis did not answer at start: serving from the memory cache");
        }
        let state = AppState(Arc::new(App {
            sockets: Arc::new(Sockets::new(settings.live.clone(), metrics)),
            settings,
            services,
            jobs,
            draining: Default::default(),
            follow: Arc::default(),
        }));
        let router = router(state.clone(), schema, documents);
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

    /// Serves until `shutdown` resolves; then `/ready` says 503 while the
    /// listener keeps serving for `SHUTDOWN_DRAIN_SECS` (a balancer polling
    /// readiness stops sending meanwhile), then it stops accepting and
    /// finishes the requests in flight. The notification worker (when
    /// `WORKER_ENABLED`) runs alongside and is stopped with the server: it
    /// finishes its round and hands its job back, so another instance goes
    /// on at once.
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
            tokio::spawn(jobs::run_worker(deps, stopped.clone()))
        });
        // The follower shares the process's one client (`crate::follow`
        // says why) and exists only when following is on.
        let following = self.state.settings.cache.follow_changes.then(|| {
            let services = &self.state.services;
            let follower = crate::follow::follower(
                &services.db,
                services.cache.clone(),
                self.state.follow.clone(),
            );
            tokio::spawn(follower.run(stopped))
        });
        if following.is_none() {
            self.state.follow.disabled();
        }
        let served = axum::serve(
            self.listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(drain(self.state.clone(), shutdown))
        .await
        .context("serving HTTP");
        let _ = stop.send(true);
        if let Some(following) = following {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), following).await;
        }
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

/// How long `build` waits for Redis before serving from memory.
const REDIS_START_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Resolves once `shutdown` has and the drain period is over, with `/ready`
/// saying 503 during it.
async fn drain(state: AppState, shutdown: impl Future<Output = ()>) {
    shutdown.await;
    state.draining.store(true, Ordering::Relaxed);
    let period = state.settings.shutdown_drain;
    tracing::info!(
        secs = period.as_secs_f64(),
        "draining: /ready says 503, requests still served"
    );
    // Upgraded sockets are not requests the server drains: they are closed
    // (1012) as soon as the shutdown starts, and new upgrades refused, so
    // their clients reconnect to another instance while this one drains.
    tokio::join!(
        state.sockets.close_all(SOCKET_CLOSE_GRACE),
        tokio::time::sleep(period)
    );
}

/// Follows the database in the background: logs when it comes and goes and
/// (re)decides on each return whether `search` may use a text index, so
/// neither a slow first ping nor an index listing holds the start.
async fn watch_database(db: Db, name: String) {
    let mut up = false;
    loop {
        let now_up = db.ping().await.is_ok();
        if now_up && !up {
            tracing::info!(database = %name, "connected to MongoDB");
            db.text_search
                .store(indexes::has_text_index(&db).await, Ordering::Relaxed);
            // Transactions and change streams, or a standalone (asked again
            // on first need if the server does not answer now).
            let _ = db.topology().await;
        } else if !now_up && up {
            tracing::error!("MongoDB does not answer; serving as unready");
        } else if !now_up {
            tracing::error!("MongoDB did not answer; serving as unready");
        }
        up = now_up;
        let pause = if up { 10 } else { 1 };
        tokio::time::sleep(std::time::Duration::from_secs(pause)).await;
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
        throttle: state.services.throttle.clone(),
        metrics: state.services.metrics.clone(),
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
            get(ws::get_graphql::<KairosSchema>)
                .post(transport::post_graphql::<KairosSchema>)
                .fallback(transport::other_method),
        )
        .route("/graphql/ws", get(ws::get_ws::<KairosSchema>))
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

/// Readiness: 200 when MongoDB answers a ping and the cache is coherent
/// with the other instances (Redis in use whenever it answers); 503 while
/// draining for shutdown or otherwise.
async fn ready(State(app): State<AppState>) -> impl IntoResponse {
    let services = &app.services;
    let draining = app.draining.load(Ordering::Relaxed);
    let mongo_ok = !draining && services.db.ping().await.is_ok();
    let coherent = !draining && services.cache.coherent().await;
    let status = if mongo_ok && coherent {
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
        "status": if draining { "draining" } else if status == StatusCode::OK { "ready" } else { "unavailable" },
        "mongodb": if mongo_ok { "up" } else { "down" },
        "redis": redis,
        "cache_backend": cache.backend,
        // Whether writes of other tools reach the cache within a second
        // (`following`) or only within the TTLs (`unsupported (ttl only)`).
        "cache_follow": app.follow.describe(),
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
