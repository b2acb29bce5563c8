//! Kairos: the GraphQL backend of a learning platform.
//!
//! Where a request goes, by folder:
//!
//! 1. `app` builds the process (settings, services, schema, router) and
//!    serves; `http` wraps every route in the middleware (request ids, CORS,
//!    compression, request log and metrics, panics, deadline, rate limits).
//! 2. `graphql::transport` speaks GraphQL over HTTP: it checks the bearer
//!    token (`auth`), resolves persisted documents (`graphql::documents`),
//!    attaches the request's own data (viewer, client address, DataLoaders:
//!    `graphql::context`) and runs the schema.
//! 3. `schema` merges one Query and Mutation part per domain, with the
//!    limits of `graphql::limits`.
//! 4. Each domain answers with its `graphql` resolvers, which call its
//!    `service` (cached reads, writes and the cache scopes they invalidate),
//!    which calls its repo files (MongoDB only):
//!    - `catalogue`: modules, their lists and details, the admin's writes;
//!    - `learners`: accounts, progress, one-pipeline statistics, history;
//!    - `notifications`: what learners are told, and the durable fan-out;
//!    - `admin`: dashboard, user list, cache controls, fan-out jobs.
//! 5. Below the domains: `cache` (Redis first, memory fallback, exact
//!    invalidation by scope generations), `db` (the one client, deadlines,
//!    indexes), `events` (what a domain tells the others after a write),
//!    `auth`, `config` (typed settings by section), `error` (the public
//!    codes).
//!
//!    Subscriptions come over WebSocket (`graphql::ws`); `live` carries the
//!    committed writes' events to the subscribers of every instance.
//!
//! Arrows point down: `graphql` knows no domain, domains know each other
//! only where the data does (a progress entry names a module). Beside the
//! request path: `seed` (deterministic demo data) and `webapp` (the
//! single-page app served at `/app`, sources in `web/`).

pub mod admin;
pub mod app;
pub mod auth;
pub mod cache;
pub mod catalogue;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod follow;
pub mod graphql;
pub mod http;
pub mod learners;
pub mod live;
pub mod notifications;
pub mod schema;
pub mod seed;
pub mod telemetry;
pub mod webapp;

/// mimalloc instead of the system allocator: a request allocates and frees
/// many small objects across worker threads, where glibc's malloc spent
/// about 15% of the CPU of a cached read (perf, BENCHMARKS.md) and grows
/// per-thread arenas it rarely returns.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
