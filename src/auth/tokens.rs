//! HS256 tokens and the viewer they stand for.

use std::time::Duration;

use bson::oid::ObjectId;
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::Role;
use crate::{
    config::AuthSettings,
    error::{ApiError, ApiResult},
};

/// The signed-in caller of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Viewer {
    pub user_id: ObjectId,
    pub role: Role,
}

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    role: Role,
    iat: i64,
    exp: i64,
}

/// Issues and checks tokens.
#[derive(Clone)]
pub struct TokenService {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenService {
    pub fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(JwtAlgorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenService {
            encoding: EncodingKey::from_secret(settings.jwt_secret.expose_secret().as_bytes()),
            decoding: DecodingKey::from_secret(settings.jwt_secret.expose_secret().as_bytes()),
            validation,
            ttl: settings.token_ttl,
        }
    }

    /// A token for `viewer` and the moment it expires.
    pub fn issue(&self, viewer: Viewer) -> ApiResult<(String, chrono::DateTime<chrono::Utc>)> {
        let now = chrono::Utc::now();
        let expires =
            now + chrono::Duration::from_std(self.ttl).unwrap_or(chrono::Duration::hours(24));
        let claims = Claims {
            sub: viewer.user_id.to_hex(),
            role: viewer.role,
            iat: now.timestamp(),
            exp: expires.timestamp(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(JwtAlgorithm::HS256), &claims, &self.encoding)
                .map_err(|e| ApiError::internal("signing a token", e))?;
        Ok((token, expires))
    }

    /// The viewer a valid token stands for; any defect is an error.
    pub fn verify(&self, token: &str) -> Option<Viewer> {
        self.verify_until(token).map(|(viewer, _)| viewer)
    }

    /// The viewer of a valid token and when the token expires (a
    /// subscription socket is closed then).
    pub fn verify_until(&self, token: &str) -> Option<(Viewer, chrono::DateTime<chrono::Utc>)> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let user_id = ObjectId::parse_str(&data.claims.sub).ok()?;
        let expires = chrono::DateTime::from_timestamp(data.claims.exp, 0)?;
        let viewer = Viewer {
            user_id,
            role: data.claims.role,
        };
        Some((viewer, expires))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_forgeries_do_not() {
        let settings = AuthSettings {
            jwt_secret: "s".repeat(32).into(),
            token_ttl: Duration::from_secs(60),
        };
        let service = TokenService::new(&settings);
        let viewer = Viewer {
            user_id: ObjectId::new(),
            role: Role::Admin,
        };
        let (token, _) = service.issue(viewer).unwrap();
        assert_eq!(service.verify(&token), Some(viewer));
        let other = TokenService::new(&AuthSettings {
            jwt_secret: "t".repeat(32).into(),
            ..settings
        });
        assert!(other.verify(&token).is_none());
        assert!(service.verify("not.a.token").is_none());
    }
}
