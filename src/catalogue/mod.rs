//! The catalogue: modules, their lists and details, and the admin's
//! writes to them.
//!
//! `model` (documents and projections) → `repo` (MongoDB, no GraphQL) →
//! `service` (cache rules and writes with what they invalidate) →
//! `graphql` (types and resolvers); `input` validates what admins send,
//! `loaders` batch the lookups of a page.

mod graphql;
pub mod input;
pub mod loaders;
pub mod model;
pub mod repo;
pub mod service;

pub use graphql::{CatalogueMutation, CatalogueQuery, Module};
pub use loaders::ModuleLoader;
pub use model::{Level, ModuleDoc};
