//! The MongoDB connection: where it is, how large its pool is and how long
//! anything may take (PRODUCT.md, "MongoDB client").

use std::time::Duration;

use anyhow::bail;
use mongodb::options::{Acknowledgment, ReadConcern, ReadPreference, WriteConcern};

use super::{AppEnv, Source, millis, parse_bool, parse_or, secs};

/// MongoDB connection and pool settings (PRODUCT.md, "MongoDB client").
#[derive(Debug, Clone)]
pub struct MongoSettings {
    /// `MONGODB_URI`; required in production, `mongodb://127.0.0.1:27017` in
    /// development so that a fresh checkout runs against a local server.
    /// Must start with `mongodb://` or `mongodb+srv://`.
    pub uri: String,
    /// `MONGODB_DB`, default `kairos`: the database every collection lives
    /// in, so tests and deployments can share one server.
    pub database: String,
    /// `MONGODB_MAX_POOL_SIZE`, default 200 (PRODUCT.md): the most
    /// connections one process opens, so a burst queues in the pool instead
    /// of exhausting the server's connection limit.
    pub max_pool_size: u32,
    /// `MONGODB_MIN_POOL_SIZE`, default 20 (at most the maximum): connections
    /// kept open so a burst after a quiet spell does not pay the handshakes.
    pub min_pool_size: u32,
    /// `MONGODB_MAX_IDLE_SECS`, default 60: an idle connection is closed
    /// after this, so the pool shrinks back after a burst.
    pub max_idle_time: Duration,
    /// `MONGODB_CONNECT_TIMEOUT_MS`, default 5000: longest a new connection
    /// may take to open, so an unreachable server is noticed in seconds.
    pub connect_timeout: Duration,
    /// `MONGODB_SERVER_SELECTION_TIMEOUT_MS`, default 5000. The driver's
    /// default is 30 s whatever `connect_timeout` says; a client must learn
    /// that the database is gone much sooner than that.
    pub server_selection_timeout: Duration,
    /// `MONGODB_OPERATION_TIMEOUT_MS`, default 20000: deadline of one
    /// database operation, sent as `maxTimeMS` and enforced on the client
    /// side too, so no query runs on after its request has given up.
    pub operation_timeout: Duration,
    /// `MONGODB_COMPRESSORS`, default `zstd,snappy,zlib` (`none` disables):
    /// wire compressors offered to the server, in preference order, to cut
    /// the bytes of large replies; negotiated, so a server without
    /// compression still works.
    pub compressors: Vec<String>,
    /// `MONGODB_READ_PREFERENCE`, default `primary` (`None` here): where
    /// reads that may lag (the admin dashboard) go. With a replica set,
    /// `secondaryPreferred` keeps those heavy aggregations off the primary
    /// that serves writes.
    pub lagging_read_preference: Option<ReadPreference>,
    /// `MONGODB_WRITE_CONCERN` (`majority`, a number of members, or a
    /// replica-set tag name) with `MONGODB_WRITE_CONCERN_TIMEOUT_MS`: the
    /// write concern of progress and activity writes, so a recorded progress
    /// survives the loss of the primary (`majority`). Unset: the URI's `w`,
    /// else the server's default (`majority` since MongoDB 5.0 on a replica
    /// set).
    pub progress_write_concern: Option<WriteConcern>,
    /// `MONGODB_READ_CONCERN` (`local`, `available`, `majority`,
    /// `linearizable`, `snapshot`): the read concern of every read. Unset:
    /// the URI's `readConcernLevel`, else the server's default (`local`).
    pub read_concern: Option<ReadConcern>,
    /// `MONGODB_RETRY_WRITES`, default true: a write interrupted by a
    /// primary election is retried once on the new primary (replica sets
    /// and sharded clusters).
    pub retry_writes: bool,
    /// `MONGODB_RETRY_READS`, default true: the same for reads.
    pub retry_reads: bool,
}

impl MongoSettings {
    /// Reads the `MONGODB_*` variables; in production `MONGODB_URI` must be
    /// set.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let production = AppEnv::from_source(src)? == AppEnv::Production;
        let uri = match src.get("MONGODB_URI") {
            Some(uri) => uri,
            None if production => bail!("MONGODB_URI is required when APP_ENV=production"),
            None => "mongodb://127.0.0.1:27017".to_string(),
        };
        if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
            bail!("invalid MONGODB_URI: must start with mongodb:// or mongodb+srv://");
        }
        let database = src.get("MONGODB_DB").unwrap_or_else(|| "kairos".into());
        if database.is_empty() || database.contains(['/', '\\', '.', ' ', '"', '$']) {
            bail!("invalid MONGODB_DB={database:?}: not a MongoDB database name");
        }
        let compressors: Vec<String> = src
            .get("MONGODB_COMPRESSORS")
            .unwrap_or_else(|| "zstd,snappy,zlib".into())
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty() && s != "none")
            .collect();
        if let Some(bad) = compressors
            .iter()
            .find(|c| !matches!(c.as_str(), "zstd" | "snappy" | "zlib"))
        {
            bail!("invalid MONGODB_COMPRESSORS: unknown compressor {bad:?}");
        }
        let mongo = MongoSettings {
            uri,
            database,
            max_pool_size: parse_or(src, "MONGODB_MAX_POOL_SIZE", 200)?,
            min_pool_size: parse_or(src, "MONGODB_MIN_POOL_SIZE", 20)?,
            max_idle_time: secs(src, "MONGODB_MAX_IDLE_SECS", 60)?,
            connect_timeout: millis(src, "MONGODB_CONNECT_TIMEOUT_MS", 5_000)?,
            server_selection_timeout: millis(src, "MONGODB_SERVER_SELECTION_TIMEOUT_MS", 5_000)?,
            operation_timeout: millis(src, "MONGODB_OPERATION_TIMEOUT_MS", 20_000)?,
            compressors,
            lagging_read_preference: read_preference(src)?,
            progress_write_concern: write_concern(src)?,
            read_concern: read_concern(src)?,
            retry_writes: parse_bool(src, "MONGODB_RETRY_WRITES", true)?,
            retry_reads: parse_bool(src, "MONGODB_RETRY_READS", true)?,
        };
        if mongo.min_pool_size > mongo.max_pool_size {
            bail!("invalid MONGODB_MIN_POOL_SIZE: larger than MONGODB_MAX_POOL_SIZE");
        }
        Ok(mongo)
    }
}

/// `MONGODB_READ_PREFERENCE` for reads that may lag; `primary` (the
/// default) means none is set.
fn read_preference(src: &dyn Source) -> anyhow::Result<Option<ReadPreference>> {
    Ok(
        match src.get("MONGODB_READ_PREFERENCE").as_deref().map(str::trim) {
            None | Some("primary") => None,
            Some("primaryPreferred") => Some(ReadPreference::PrimaryPreferred { options: None }),
            Some("secondary") => Some(ReadPreference::Secondary { options: None }),
            Some("secondaryPreferred") => {
                Some(ReadPreference::SecondaryPreferred { options: None })
            }
            Some("nearest") => Some(ReadPreference::Nearest { options: None }),
            Some(other) => bail!(
                "invalid MONGODB_READ_PREFERENCE={other:?}: expected primary, primaryPreferred, secondary, secondaryPreferred or nearest"
            ),
        },
    )
}

/// `MONGODB_WRITE_CONCERN` and `MONGODB_WRITE_CONCERN_TIMEOUT_MS`.
fn write_concern(src: &dyn Source) -> anyhow::Result<Option<WriteConcern>> {
    let timeout = match src.get("MONGODB_WRITE_CONCERN_TIMEOUT_MS") {
        None => None,
        Some(_) => Some(millis(src, "MONGODB_WRITE_CONCERN_TIMEOUT_MS", 0)?),
    };
    let w = match src.get("MONGODB_WRITE_CONCERN").as_deref().map(str::trim) {
        None | Some("") => {
            if timeout.is_some() {
                bail!("MONGODB_WRITE_CONCERN_TIMEOUT_MS needs MONGODB_WRITE_CONCERN");
            }
            return Ok(None);
        }
        Some("majority") => Acknowledgment::Majority,
        Some(n) if n.chars().all(|c| c.is_ascii_digit()) => match n.parse::<u32>() {
            Ok(0) | Err(_) => bail!(
                "invalid MONGODB_WRITE_CONCERN={n:?}: unacknowledged writes (0) are not supported"
            ),
            Ok(n) => Acknowledgment::Nodes(n),
        },
        Some(tag)
            if tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
        {
            Acknowledgment::Custom(tag.to_string())
        }
        Some(other) => bail!(
            "invalid MONGODB_WRITE_CONCERN={other:?}: expected majority, a number of members or a tag name"
        ),
    };
    Ok(Some(
        WriteConcern::builder().w(w).w_timeout(timeout).build(),
    ))
}

/// `MONGODB_READ_CONCERN`.
fn read_concern(src: &dyn Source) -> anyhow::Result<Option<ReadConcern>> {
    Ok(
        match src.get("MONGODB_READ_CONCERN").as_deref().map(str::trim) {
            None | Some("") => None,
            Some("local") => Some(ReadConcern::local()),
            Some("available") => Some(ReadConcern::available()),
            Some("majority") => Some(ReadConcern::majority()),
            Some("linearizable") => Some(ReadConcern::linearizable()),
            Some("snapshot") => Some(ReadConcern::snapshot()),
            Some(other) => bail!(
                "invalid MONGODB_READ_CONCERN={other:?}: expected local, available, majority, linearizable or snapshot"
            ),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::super::Settings;

    #[test]
    fn the_read_preference_is_validated() {
        let err = Settings::from_source(&[("MONGODB_READ_PREFERENCE", "anywhere")]).unwrap_err();
        assert!(err.to_string().contains("MONGODB_READ_PREFERENCE"), "{err}");
        let s =
            Settings::from_source(&[("MONGODB_READ_PREFERENCE", "secondaryPreferred")]).unwrap();
        assert!(s.mongo.lagging_read_preference.is_some());
    }

    #[test]
    fn replica_set_options_are_parsed_and_validated() {
        use mongodb::options::{Acknowledgment, ReadConcernLevel};
        let s = Settings::from_source(&[]).unwrap();
        assert!(s.mongo.progress_write_concern.is_none());
        assert!(s.mongo.read_concern.is_none());
        assert!(s.mongo.retry_writes && s.mongo.retry_reads);

        let s = Settings::from_source(&[
            (
                "MONGODB_URI",
                "mongodb+srv://kairos:secret@cluster0.example.mongodb.net/?retryWrites=true",
            ),
            ("MONGODB_WRITE_CONCERN", "majority"),
            ("MONGODB_WRITE_CONCERN_TIMEOUT_MS", "2500"),
            ("MONGODB_READ_CONCERN", "majority"),
            ("MONGODB_READ_PREFERENCE", "secondaryPreferred"),
            ("MONGODB_RETRY_WRITES", "false"),
        ])
        .unwrap();
        let wc = s.mongo.progress_write_concern.unwrap();
        assert_eq!(wc.w, Some(Acknowledgment::Majority));
        assert_eq!(wc.w_timeout, Some(std::time::Duration::from_millis(2500)));
        assert_eq!(
            s.mongo.read_concern.unwrap().level,
            ReadConcernLevel::Majority
        );
        assert!(!s.mongo.retry_writes);

        let nodes = Settings::from_source(&[("MONGODB_WRITE_CONCERN", "2")]).unwrap();
        assert_eq!(
            nodes.mongo.progress_write_concern.unwrap().w,
            Some(Acknowledgment::Nodes(2))
        );
        let tag = Settings::from_source(&[("MONGODB_WRITE_CONCERN", "multiDC")]).unwrap();
        assert_eq!(
            tag.mongo.progress_write_concern.unwrap().w,
            Some(Acknowledgment::Custom("multiDC".into()))
        );
        for (key, value) in [
            ("MONGODB_WRITE_CONCERN", "0"),
            ("MONGODB_WRITE_CONCERN", "w=1"),
            ("MONGODB_WRITE_CONCERN_TIMEOUT_MS", "100"),
            ("MONGODB_READ_CONCERN", "strong"),
            ("MONGODB_RETRY_READS", "maybe"),
        ] {
            let err = Settings::from_source(&[(key, value)]).unwrap_err();
            assert!(err.to_string().contains(key), "{key}={value}: {err}");
        }
    }
}
