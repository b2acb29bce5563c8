//! Kairos: the GraphQL backend of a learning platform.
//!
//! A request goes `app` (router) wrapped in `http` (request ids, CORS,
//! compression, request log and metrics, panic catching, timeout, rate
//! limits) → `graphql::http` (viewer from
//! the token, per-request DataLoaders) → the schema in `graphql`, whose
//! roots are merged from one part per domain:
//!
//! - `catalogue`: modules, their lists and details;
//! - `learners`: accounts, progress, one-pipeline statistics, history;
//! - `notifications`: what learners are told;
//! - `admin`: catalogue writes, dashboard, users, cache controls.
//!
//! Each domain keeps its GraphQL types next to its MongoDB access. `db`
//! owns the one client and the index bootstrap; `config` the typed
//! settings; `seed` the deterministic demo data.

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
pub mod notifications;
pub mod schema;
pub mod seed;
pub mod telemetry;

/// mimalloc instead of the system allocator: a request allocates and frees
/// many small objects across worker threads, where glibc's malloc spent
/// about 15% of the CPU of a cached read (perf, BENCHMARKS.md) and grows
/// per-thread arenas it rarely returns.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
