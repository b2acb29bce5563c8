//! Learners: accounts, progress, one-pipeline statistics and history.
//!
//! `model` (documents) → `users`, `progress`, `stats` (MongoDB, no
//! GraphQL) → `service` (cache rules and progress writes with what they
//! invalidate) → `graphql` (types and resolvers); `credentials` validates
//! what users type, `loaders` batch the lookups of a page.

pub mod credentials;
mod graphql;
pub mod loaders;
pub mod model;
pub mod progress;
pub mod service;
pub mod stats;
pub mod users;

pub use graphql::{
    ActivityEntry, AuthMutation, LearnerQuery, Progress, ProgressMutation, ProgressStats,
    ProgressSubscription, User,
};
pub use loaders::ProgressLoader;
pub use model::{ActivityKind, ProgressStatus, Role};
pub use service::{ALL_PROGRESS, scope};
