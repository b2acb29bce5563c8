//! Learners: accounts, progress, one-pipeline statistics and history.
//!
//! `model` (documents) → `users`, `progress`, `stats`, `analytics`,
//! `leaderboard` (MongoDB, no GraphQL; `zone` counts days in time zones)
//! → `service` (cache rules and writes with what they invalidate) →
//! `graphql`, `analytics_graphql` (types and resolvers); `credentials`
//! validates what users type, `loaders` batch the lookups of a page.

pub mod analytics;
mod analytics_graphql;
pub mod credentials;
pub mod export;
mod graphql;
pub mod leaderboard;
pub mod loaders;
pub mod model;
pub mod progress;
pub mod service;
pub mod stats;
pub mod users;
pub mod zone;

pub use analytics_graphql::AnalyticsQuery;
pub use graphql::{
    AccountMutation, ActivityEntry, AuthMutation, LearnerQuery, Progress, ProgressMutation,
    ProgressStats, ProgressSubscription, User,
};
pub use leaderboard::Leaderboards;
pub use loaders::ProgressLoader;
pub use model::{ActivityKind, ProgressStatus, Role};
pub use service::{ALL_PROGRESS, scope};
