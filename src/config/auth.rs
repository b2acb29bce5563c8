//! Token signing: the server secret and how long a token lives.

use std::time::Duration;

use anyhow::bail;
use secrecy::SecretString;

use super::{AppEnv, Source, secs};

/// The development JWT secret, used only outside production when none is set.
const DEV_JWT_SECRET: &str = "kairos-development-secret-do-not-use-in-production";

/// Token settings.
#[derive(Debug, Clone)]
pub struct AuthSettings {
    /// `JWT_SECRET`: signs tokens and keys the pagination cursors, so every
    /// instance of a deployment must share it. Required and at least 32
    /// bytes in production; a fixed development secret otherwise. A
    /// `SecretString` so that it never appears in `Debug` output or logs.
    pub jwt_secret: SecretString,
    /// `JWT_TTL_SECS`, default 86400 (one day): how long an issued token
    /// stays valid, as there is no revocation list.
    pub token_ttl: Duration,
}

impl AuthSettings {
    /// Reads `JWT_SECRET` and `JWT_TTL_SECS`; in production the secret must
    /// be set and long.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let production = AppEnv::from_source(src)? == AppEnv::Production;
        let jwt_secret = match src.get("JWT_SECRET") {
            Some(s) if production && s.len() < 32 => {
                bail!("invalid JWT_SECRET: must be at least 32 bytes when APP_ENV=production")
            }
            Some(s) => s,
            None if production => bail!("JWT_SECRET is required when APP_ENV=production"),
            None => DEV_JWT_SECRET.to_string(),
        };
        Ok(AuthSettings {
            jwt_secret: jwt_secret.into(),
            token_ttl: secs(src, "JWT_TTL_SECS", 24 * 3600)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::{super::Settings, *};

    #[test]
    fn production_requires_a_long_jwt_secret_and_hardens_defaults() {
        let base = ("MONGODB_URI", "mongodb://db:27017");
        let err = Settings::from_source(&[("APP_ENV", "production"), base]).unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        let err =
            Settings::from_source(&[("APP_ENV", "production"), base, ("JWT_SECRET", "short")])
                .unwrap_err();
        assert!(err.to_string().contains("JWT_SECRET"), "{err}");
        let s = Settings::from_source(&[
            ("APP_ENV", "production"),
            base,
            ("JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .unwrap();
        assert!(!s.graphiql && !s.introspection);
    }

    #[test]
    fn the_jwt_secret_never_appears_in_debug_output() {
        let secret = "a-distinctive-secret-of-more-than-32-bytes";
        let settings = Settings::from_source(&[("JWT_SECRET", secret)]).unwrap();
        assert_eq!(settings.auth.jwt_secret.expose_secret(), secret);

        let printed = format!("{settings:?}");

        assert!(!printed.contains(secret), "{printed}");
        assert!(printed.contains("jwt_secret"), "{printed}");
        let development = format!("{:?}", Settings::from_source(&[]).unwrap());
        assert!(!development.contains(DEV_JWT_SECRET), "{development}");
    }
}
