//! Where the process runs and how it writes its logs: `APP_ENV` and
//! `LOG_FORMAT`, the two switches other sections consult.

use anyhow::bail;

use super::Source;

/// Where the service runs (`APP_ENV`, default `development`); `production`
/// hardens the defaults: no GraphiQL or introspection, and `MONGODB_URI`
/// and a long `JWT_SECRET` become required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppEnv {
    /// `development`, `dev` or `test` (the default): convenient defaults for
    /// a laptop or a test run.
    Development,
    /// `production` or `prod`: nothing insecure is defaulted.
    Production,
}

impl AppEnv {
    /// Reads `APP_ENV`; an unknown value stops the start.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        Ok(match src.get("APP_ENV").as_deref().map(str::trim) {
            None | Some("development" | "dev" | "test") => AppEnv::Development,
            Some("production" | "prod") => AppEnv::Production,
            Some(other) => {
                bail!("invalid APP_ENV={other:?}: expected development or production")
            }
        })
    }
}

/// How log lines are written (`LOG_FORMAT`, default `pretty`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// `pretty` (the default): readable in a terminal.
    Pretty,
    /// `json`: one object per line, for a log collector.
    Json,
}

impl LogFormat {
    /// Reads `LOG_FORMAT`; an unknown value stops the start.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        Ok(match src.get("LOG_FORMAT").as_deref().map(str::trim) {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => bail!("invalid LOG_FORMAT={other:?}: expected pretty or json"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_and_the_log_format_name_their_variable_when_unknown() {
        let err = AppEnv::from_source(&[("APP_ENV", "staging")]).unwrap_err();
        assert!(err.to_string().contains("APP_ENV"), "{err}");
        let err = LogFormat::from_source(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert!(err.to_string().contains("LOG_FORMAT"), "{err}");
        assert_eq!(AppEnv::from_source(&[]).unwrap(), AppEnv::Development);
        assert_eq!(LogFormat::from_source(&[]).unwrap(), LogFormat::Pretty);
    }
}
