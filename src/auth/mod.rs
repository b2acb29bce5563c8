//! Who is calling: the [`Viewer`] a bearer token stands for, its [`Role`],
//! the HS256 [`TokenService`] that issues and checks tokens, and argon2id
//! password hashes ([`password`]). A leaf: it knows no domain and no
//! GraphQL plumbing, so the transport, the guards and every domain can use
//! it.

pub mod password;
mod tokens;

use async_graphql::Enum;
use serde::{Deserialize, Serialize};

pub use tokens::{TokenService, Viewer};

/// A user's role; stored lowercase.
#[derive(Enum, Serialize, Deserialize, Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Learner,
    Admin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Learner => "learner",
            Role::Admin => "admin",
        }
    }
}
