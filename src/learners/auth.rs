//! Accounts: validation of what users type, argon2id password hashes (off
//! the async executor), HS256 tokens, and the viewer a token stands for.

use std::{sync::OnceLock, time::Duration};

use argon2::{
    Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version,
    password_hash::SaltString,
};
use bson::oid::ObjectId;
use jsonwebtoken::{Algorithm as JwtAlgorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};

use super::model::Role;
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
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation).ok()?;
        let user_id = ObjectId::parse_str(&data.claims.sub).ok()?;
        Some(Viewer {
            user_id,
            role: data.claims.role,
        })
    }
}

/// The argon2id parameters of new hashes (m=19456 KiB, t=2, p=1).
fn hasher() -> Argon2<'static> {
    let params = Params::new(19_456, 2, 1, None).expect("valid argon2 parameters");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password on the blocking pool, so hashing never stalls other
/// requests on the async executor.
pub async fn hash_password(password: String) -> ApiResult<String> {
    tokio::task::spawn_blocking(move || hash_password_blocking(&password))
        .await
        .map_err(|e| ApiError::internal("password hashing task", e))?
}

/// Hashes a password on the current thread (seeding, tools).
pub fn hash_password_blocking(password: &str) -> ApiResult<String> {
    let salt = SaltString::generate(&mut rand::rngs::OsRng);
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::internal("hashing a password", e))
}

/// A hash that matches no password, verified when the login is unknown so
/// that both failures take the same time.
fn decoy_hash() -> &'static str {
    static DECOY: OnceLock<String> = OnceLock::new();
    DECOY.get_or_init(|| {
        hash_password_blocking("decoy password that matches nothing").unwrap_or_default()
    })
}

/// Whether `password` matches `phc` (any valid argon2 PHC string); with no
/// hash, a decoy is verified to keep the timing alike.
pub async fn verify_password(password: String, phc: Option<String>) -> ApiResult<bool> {
    tokio::task::spawn_blocking(move || {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| decoy_hash().to_string());
        let ok = PasswordHash::new(&phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        known && ok
    })
    .await
    .map_err(|e| ApiError::internal("password verification task", e))
}

/// A plausible email: one `@`, a dotted domain, at most 254 characters.
pub fn validate_email(raw: &str) -> ApiResult<String> {
    let email = raw.trim();
    let invalid = || ApiError::bad_input("`email` must be a valid address such as ada@example.org");
    if email.is_empty()
        || email.len() > 254
        || email.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(invalid());
    }
    let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
    if local.is_empty() || domain.contains('@') || local.len() > 64 {
        return Err(invalid());
    }
    let labels: Vec<&str> = domain.split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        return Err(invalid());
    }
    Ok(email.to_string())
}

/// 3–32 characters of letters, digits, `_`, `.`, `-`.
pub fn validate_username(raw: &str) -> ApiResult<String> {
    let name = raw.trim();
    let ok = (3..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(name.to_string())
    } else {
        Err(ApiError::bad_input(
            "`username` must be 3 to 32 letters, digits, '_', '.' or '-'",
        ))
    }
}

/// At least 10 characters; at most 1024, so nobody makes us hash megabytes.
pub fn validate_password(raw: &str) -> ApiResult<()> {
    match raw.chars().count() {
        n if n < 10 => Err(ApiError::bad_input(
            "`password` must be at least 10 characters",
        )),
        n if n > 1024 => Err(ApiError::bad_input(
            "`password` may be at most 1024 characters",
        )),
        _ => Ok(()),
    }
}

/// An optional display name, trimmed, at most 100 characters.
pub fn validate_display_name(raw: Option<String>) -> ApiResult<Option<String>> {
    let name = raw.map(|n| n.trim().to_string()).filter(|n| !n.is_empty());
    if name
        .as_ref()
        .is_some_and(|n| n.chars().count() > 100 || n.chars().any(char::is_control))
    {
        return Err(ApiError::bad_input(
            "`displayName` must be at most 100 printable characters",
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plausible_emails_pass_and_others_are_bad_input() {
        assert_eq!(
            validate_email(" Ada@Example.org ").unwrap(),
            "Ada@Example.org"
        );
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.org",
            "ada@example",
            "a@b@c.org",
            "ada@.org",
            "a b@c.org",
        ] {
            assert!(validate_email(bad).is_err(), "{bad}");
        }
        assert!(validate_email(&format!("{}@example.org", "a".repeat(250))).is_err());
    }

    #[test]
    fn usernames_are_3_to_32_safe_characters() {
        assert!(validate_username("ada_l.ove-1").is_ok());
        for bad in ["ab", &"a".repeat(33), "ada love", "ada$", "{\"$gt\":\"\"}"] {
            assert!(validate_username(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn passwords_need_ten_characters() {
        assert!(validate_password("123456789").is_err());
        assert!(validate_password("1234567890").is_ok());
    }

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

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse".into()).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        assert!(
            verify_password("correct horse".into(), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !verify_password("wrong horse".into(), Some(hash))
                .await
                .unwrap()
        );
        assert!(!verify_password("anything".into(), None).await.unwrap());
    }
}
