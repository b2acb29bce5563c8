//! GraphQL request handling: persisted queries and the parsed-document
//! cache.

use std::{path::PathBuf, time::Duration};

use anyhow::bail;

use super::{Source, parse_or, secs};

/// How persisted queries are handled (`PERSISTED_QUERIES`, default
/// `automatic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistedMode {
    /// `off`: any query text is accepted; no hash is ever looked up.
    Off,
    /// `automatic` or `apq` (the default): automatic persisted queries (the
    /// Apollo APQ protocol): a client registers a query by sending it with
    /// its SHA-256 once, then sends the hash alone. Query text is still
    /// accepted.
    Automatic,
    /// `allowlist`: trusted documents: only the operations of the manifest
    /// run, by hash or by their exact text.
    Allowlist,
}

/// GraphQL request handling.
#[derive(Debug, Clone)]
pub struct GraphqlSettings {
    /// `PERSISTED_QUERIES`, default `automatic`: whether clients may send a
    /// hash instead of the query text, and whether only known documents
    /// run.
    pub persisted: PersistedMode,
    /// `PERSISTED_QUERIES_MANIFEST`, default unset: the trusted-documents
    /// manifest, read at start; required in allowlist mode, where it is the
    /// list of what may run.
    pub manifest: Option<PathBuf>,
    /// `CACHE_TTL_PERSISTED_QUERIES_SECS`, default 604800 (7 days; at least
    /// 1): how long a registered APQ document is kept in the shared cache,
    /// so clients rarely have to register it again.
    pub persisted_ttl: Duration,
    /// `GRAPHQL_DOCUMENT_CACHE_ENTRIES`, default 1000: parsed documents kept
    /// per process, so a repeated query skips parsing (0 parses every
    /// request).
    pub document_cache_entries: u64,
}

impl GraphqlSettings {
    /// Reads the persisted-query mode, its manifest and the document cache
    /// size; allowlist mode without a manifest stops the start.
    pub fn from_source(src: &dyn Source) -> anyhow::Result<Self> {
        let persisted = match src.get("PERSISTED_QUERIES").as_deref().map(str::trim) {
            None | Some("automatic" | "apq") => PersistedMode::Automatic,
            Some("off") => PersistedMode::Off,
            Some("allowlist") => PersistedMode::Allowlist,
            Some(other) => {
                bail!("invalid PERSISTED_QUERIES={other:?}: expected automatic, off or allowlist")
            }
        };
        let manifest = src
            .get("PERSISTED_QUERIES_MANIFEST")
            .map(|p| PathBuf::from(p.trim()));
        if persisted == PersistedMode::Allowlist && manifest.is_none() {
            bail!(
                "PERSISTED_QUERIES=allowlist needs PERSISTED_QUERIES_MANIFEST (the manifest file)"
            );
        }
        let graphql = GraphqlSettings {
            persisted,
            manifest,
            persisted_ttl: secs(src, "CACHE_TTL_PERSISTED_QUERIES_SECS", 7 * 24 * 3600)?,
            document_cache_entries: parse_or(src, "GRAPHQL_DOCUMENT_CACHE_ENTRIES", 1_000u64)?,
        };
        if graphql.persisted_ttl.is_zero() {
            bail!("invalid CACHE_TTL_PERSISTED_QUERIES_SECS: must be at least 1");
        }
        Ok(graphql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_allowlist_needs_a_manifest() {
        let err = GraphqlSettings::from_source(&[("PERSISTED_QUERIES", "allowlist")]).unwrap_err();
        assert!(
            err.to_string().contains("PERSISTED_QUERIES_MANIFEST"),
            "{err}"
        );
        let s = GraphqlSettings::from_source(&[]).unwrap();
        assert_eq!(s.persisted, PersistedMode::Automatic);
    }
}
