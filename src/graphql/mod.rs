//! GraphQL plumbing that knows no domain: the context extension trait and
//! per-request data ([`context`]), guards, the generic connection and its
//! signed cursors ([`pagination`]), scalars, document limits, query cost,
//! persisted
//! documents, the GraphQL-over-HTTP transport and GraphiQL. The domains
//! build on it; `crate::schema` merges them.

pub mod context;
pub mod cost;
pub mod documents;
pub mod graphiql;
pub mod guards;
pub mod limits;
pub mod pagination;
pub mod response_cache;
pub mod scalars;
pub mod sockets;
pub mod transport;
pub mod ws;

use async_graphql::ID;
use bson::oid::ObjectId;

pub use context::{ContextExt, RequestLoader, Services};

use crate::error::{ApiError, ApiResult};

/// Parses a public ID (24 hex characters) into an ObjectId.
pub fn parse_id(id: &ID, what: &str) -> ApiResult<ObjectId> {
    let s = id.as_str();
    if s.len() != 24 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::bad_input(format!(
            "`{what}` must be an ID of 24 hexadecimal characters"
        )));
    }
    ObjectId::parse_str(s).map_err(|_| ApiError::bad_input(format!("`{what}` is not a valid ID")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_24_hex_characters_make_an_id() {
        assert!(parse_id(&ID::from("6b01693b8a587308b42c39f9"), "id").is_ok());
        for bad in [
            "",
            "123",
            "zz01693b8a587308b42c39f9",
            "6b01693b8a587308b42c39f9a",
            "{\"$gt\":\"\"}",
        ] {
            assert!(matches!(
                parse_id(&ID::from(bad), "id"),
                Err(ApiError::BadUserInput(_))
            ));
        }
    }
}
