//! The documents requests run: parsed once and kept by hash, registered by
//! clients through automatic persisted queries, or restricted to a manifest
//! of trusted documents.
//!
//! Every document is known by the SHA-256 of its text, the key of the
//! Apollo persisted-query protocol: a request sends
//! `extensions.persistedQuery = {version: 1, sha256Hash}` with or without
//! the text. The parsed-document cache uses the same key, so a client that
//! repeats a query (plain or persisted) skips parsing; validation still runs
//! for every request.
//!
//! - `PERSISTED_QUERIES=automatic`: a hash alone is looked up in this
//!   process and then in the shared cache (Redis first, memory fallback),
//!   so a query registered on one instance is known to every instance. An
//!   unknown hash answers `PersistedQueryNotFound`, and the client sends the
//!   text with the hash, which registers it.
//! - `off`: a request with a hash answers `PersistedQueryNotSupported`
//!   (clients then send text only).
//! - `allowlist`: only the operations of the manifest run, sent by hash or
//!   by their exact text; anything else is refused before parsing.

use std::{collections::HashMap, path::Path, sync::Arc, time::Duration};

use anyhow::{Context, bail};
use async_graphql::parser::types::{ExecutableDocument, OperationType};
use axum::http::StatusCode;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    cache::Cache,
    config::{GraphqlSettings, PersistedMode},
    error::Code,
};

/// The SHA-256 of a document's text.
pub type Hash = [u8; 32];

/// Documents longer than this are parsed every time rather than kept.
const MAX_KEPT_DOCUMENT: usize = 16 * 1024;

/// A parsed document.
pub struct Document {
    pub parsed: ExecutableDocument,
}

impl Document {
    /// The type of the operation a request selects: the one named, else
    /// the only one (None when it names none that exists).
    pub fn operation_type(&self, name: Option<&str>) -> Option<OperationType> {
        self.parsed
            .operations
            .iter()
            .find(|(op_name, _)| name.is_none() || op_name.map(|n| n.as_str()) == name)
            .map(|(_, op)| op.node.ty)
    }

    /// The name of the operation a request runs, for logs and metrics.
    pub fn operation_name(&self, name: Option<&str>) -> String {
        if let Some(name) = name {
            return name.to_string();
        }
        self.parsed
            .operations
            .iter()
            .next()
            .and_then(|(name, _)| name.map(|n| n.to_string()))
            .unwrap_or_default()
    }
}

/// Why a request's document was refused before parsing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The hash is not registered (yet): send the text with the hash.
    NotFound,
    /// Persisted queries are off: send the text alone.
    NotSupported,
    /// Trusted-documents mode: the operation is not in the manifest.
    NotInList,
    /// The text sent does not hash to the hash sent.
    HashMismatch,
    /// `extensions.persistedQuery` is not `{version: 1, sha256Hash}`.
    Malformed,
}

impl Refusal {
    /// Status, public code, message and the `extensions.reason` detail.
    ///
    /// The messages of the first two are the ones Apollo's persisted-query
    /// link looks for, and they answer 200 (as Apollo Server does), so a
    /// client goes on with the protocol; the codes stay within the
    /// contract's list.
    pub fn parts(self) -> (StatusCode, Code, &'static str, &'static str) {
        match self {
            Refusal::NotFound => (
                StatusCode::OK,
                Code::NotFound,
                "PersistedQueryNotFound",
                "PERSISTED_QUERY_NOT_FOUND",
            ),
            Refusal::NotSupported => (
                StatusCode::OK,
                Code::BadUserInput,
                "PersistedQueryNotSupported",
                "PERSISTED_QUERY_NOT_SUPPORTED",
            ),
            Refusal::NotInList => (
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                "only the operations of the trusted-documents manifest are accepted",
                "PERSISTED_QUERY_NOT_IN_LIST",
            ),
            Refusal::HashMismatch => (
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                "provided sha256Hash does not match the query",
                "PERSISTED_QUERY_HASH_MISMATCH",
            ),
            Refusal::Malformed => (
                StatusCode::BAD_REQUEST,
                Code::BadUserInput,
                "extensions.persistedQuery must be {\"version\": 1, \"sha256Hash\": <64 hex characters>}",
                "PERSISTED_QUERY_MALFORMED",
            ),
        }
    }
}

/// The documents of one process (see the module documentation).
pub struct Documents {
    mode: PersistedMode,
    /// Parsed documents by hash; None when GRAPHQL_DOCUMENT_CACHE_ENTRIES=0.
    parsed: Option<moka::sync::Cache<Hash, Arc<Document>>>,
    /// The trusted documents (allowlist mode).
    manifest: HashMap<Hash, Arc<str>>,
    cache: Arc<Cache>,
    ttl: Duration,
}

impl Documents {
    /// Reads the manifest when one is configured; a missing or malformed
    /// manifest stops the start.
    pub fn new(settings: &GraphqlSettings, cache: Arc<Cache>) -> anyhow::Result<Self> {
        let manifest = match &settings.manifest {
            Some(path) => load_manifest(path)
                .with_context(|| format!("PERSISTED_QUERIES_MANIFEST={}", path.display()))?,
            None => HashMap::new(),
        };
        if settings.persisted == PersistedMode::Allowlist {
            tracing::info!(
                operations = manifest.len(),
                "trusted documents: only the manifest's operations run"
            );
        }
        Ok(Documents {
            mode: settings.persisted,
            parsed: (settings.document_cache_entries > 0)
                .then(|| moka::sync::Cache::new(settings.document_cache_entries)),
            manifest,
            cache,
            ttl: settings.persisted_ttl,
        })
    }

    /// Gives `request` its document and its parsed form. `Ok(None)` when
    /// the text does not parse: the executor then reports the syntax error.
    pub async fn prepare(
        &self,
        request: &mut async_graphql::Request,
    ) -> Result<Option<Arc<Document>>, Refusal> {
        let hash = persisted_hash(request)?;
        let has_text = !request.query.is_empty();
        match (self.mode, hash) {
            (PersistedMode::Off, Some(_)) => Err(Refusal::NotSupported),
            (PersistedMode::Off, None) | (PersistedMode::Automatic, None) => {
                let hash = sha256(&request.query);
                Ok(self.plain(request, hash))
            }
            (PersistedMode::Automatic, Some(hash)) if has_text => {
                if sha256(&request.query) != hash {
                    return Err(Refusal::HashMismatch);
                }
                let doc = self.plain(request, hash);
                if doc.is_some() {
                    // Registration: once per client and document.
                    self.cache
                        .put_immutable(
                            &apq_key(&hash),
                            request.query.clone().into_bytes(),
                            self.ttl,
                        )
                        .await;
                }
                Ok(doc)
            }
            (PersistedMode::Automatic, Some(hash)) => self.registered(request, hash).await,
            (PersistedMode::Allowlist, hash) => {
                let hash = match hash {
                    Some(hash) if has_text => {
                        if sha256(&request.query) != hash {
                            return Err(Refusal::HashMismatch);
                        }
                        hash
                    }
                    Some(hash) => {
                        let text = self.manifest.get(&hash).ok_or(Refusal::NotFound)?;
                        request.query = text.to_string();
                        hash
                    }
                    None => sha256(&request.query),
                };
                if !self.manifest.contains_key(&hash) {
                    return Err(Refusal::NotInList);
                }
                Ok(self.plain(request, hash))
            }
        }
    }

    /// A document sent as text, parsed or found parsed under its hash.
    fn plain(&self, request: &mut async_graphql::Request, hash: Hash) -> Option<Arc<Document>> {
        if let Some(doc) = self.parsed.as_ref().and_then(|p| p.get(&hash)) {
            request.set_parsed_query(doc.parsed.clone());
            return Some(doc);
        }
        let parsed = async_graphql::parser::parse_query(&request.query).ok()?;
        request.set_parsed_query(parsed.clone());
        let doc = Arc::new(Document { parsed });
        if let Some(p) = self
            .parsed
            .as_ref()
            .filter(|_| request.query.len() <= MAX_KEPT_DOCUMENT)
        {
            p.insert(hash, doc.clone());
        }
        Some(doc)
    }

    /// A hash sent alone (automatic mode): this process's parsed documents,
    /// then the shared cache.
    async fn registered(
        &self,
        request: &mut async_graphql::Request,
        hash: Hash,
    ) -> Result<Option<Arc<Document>>, Refusal> {
        if let Some(doc) = self.parsed.as_ref().and_then(|p| p.get(&hash)) {
            request.set_parsed_query(doc.parsed.clone());
            return Ok(Some(doc));
        }
        let text = self
            .cache
            .get_immutable(&apq_key(&hash))
            .await
            .and_then(|bytes| String::from_utf8(bytes).ok())
            // A shared store is only trusted as far as the hash goes.
            .filter(|text| sha256(text) == hash)
            .ok_or(Refusal::NotFound)?;
        request.query = text;
        Ok(self.plain(request, hash))
    }
}

fn apq_key(hash: &Hash) -> String {
    format!("apq:{}", hex(hash))
}

pub fn sha256(text: &str) -> Hash {
    Sha256::digest(text.as_bytes()).into()
}

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// The hash of `extensions.persistedQuery`, if the request has one.
fn persisted_hash(request: &async_graphql::Request) -> Result<Option<Hash>, Refusal> {
    use async_graphql::Value;
    let Some(ext) = request.extensions.get("persistedQuery") else {
        return Ok(None);
    };
    let Value::Object(ext) = ext else {
        return Err(Refusal::Malformed);
    };
    let version_ok = matches!(ext.get("version"), Some(Value::Number(n)) if n.as_u64() == Some(1));
    match ext.get("sha256Hash") {
        Some(Value::String(h)) if version_ok => parse_hex(&h.to_ascii_lowercase())
            .map(Some)
            .ok_or(Refusal::Malformed),
        _ => Err(Refusal::Malformed),
    }
}

/// A trusted-documents manifest: Apollo's persisted-query manifest
/// (`{"format": "apollo-persisted-query-manifest", "version": 1,
/// "operations": [{"id", "name", "type", "body"}]}`) or a plain object of
/// hash to document (graphql-codegen's persisted documents).
#[derive(Deserialize)]
#[serde(untagged)]
enum Manifest {
    Apollo { operations: Vec<ManifestOperation> },
    Map(HashMap<String, String>),
}

#[derive(Deserialize)]
struct ManifestOperation {
    id: String,
    body: String,
}

fn load_manifest(path: &Path) -> anyhow::Result<HashMap<Hash, Arc<str>>> {
    let bytes = std::fs::read(path).context("reading the manifest")?;
    let manifest: Manifest = serde_json::from_slice(&bytes).context(
        "the manifest must be Apollo's persisted-query manifest or an object of sha256 to document",
    )?;
    let entries: Vec<(String, String)> = match manifest {
        Manifest::Apollo { operations } => {
            operations.into_iter().map(|op| (op.id, op.body)).collect()
        }
        Manifest::Map(map) => map.into_iter().collect(),
    };
    let mut out = HashMap::with_capacity(entries.len());
    for (id, body) in entries {
        let Some(hash) = parse_hex(&id.to_ascii_lowercase()) else {
            bail!("manifest id {id:?} is not a sha256 in hex");
        };
        if sha256(&body) != hash {
            bail!("manifest id {id} is not the sha256 of its document");
        }
        if let Err(e) = async_graphql::parser::parse_query(&body) {
            bail!("manifest document {id} does not parse: {e}");
        }
        out.insert(hash, Arc::from(body));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;

    const QUERY: &str = "{ modules { totalCount } }";

    fn documents(envs: &[(&str, &str)]) -> Documents {
        let mut all: Vec<(&str, &str)> = envs.to_vec();
        all.push(("CACHE_DISABLED", "false"));
        let settings = Settings::from_source(&Env(all)).unwrap();
        Documents::new(&settings.graphql, Cache::new(&settings.cache)).unwrap()
    }

    struct Env<'a>(Vec<(&'a str, &'a str)>);
    impl crate::config::Source for Env<'_> {
        fn get(&self, key: &str) -> Option<String> {
            self.0
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.to_string())
        }
    }

    fn with_hash(query: &str, hash: &str) -> async_graphql::Request {
        let ext = async_graphql::value!({ "version": 1, "sha256Hash": hash });
        let mut r = async_graphql::Request::new(query);
        r.extensions.insert("persistedQuery".into(), ext);
        r
    }

    #[tokio::test]
    async fn a_repeated_query_is_parsed_once_and_a_broken_one_is_not_kept() {
        let docs = documents(&[]);
        let a = docs
            .prepare(&mut async_graphql::Request::new(QUERY))
            .await
            .unwrap()
            .expect("parses");
        let b = docs
            .prepare(&mut async_graphql::Request::new(QUERY))
            .await
            .unwrap()
            .expect("parses");
        assert!(Arc::ptr_eq(&a, &b), "the second request reuses the parse");
        let broken = docs
            .prepare(&mut async_graphql::Request::new("{ modules { "))
            .await
            .unwrap();
        assert!(broken.is_none());
        let parsed = docs.parsed.as_ref().unwrap();
        parsed.run_pending_tasks();
        assert_eq!(parsed.entry_count(), 1);
    }

    #[tokio::test]
    async fn apq_registers_a_query_then_serves_its_hash_alone() {
        let docs = documents(&[]);
        let hash = hex(&sha256(QUERY));

        let mut unknown = with_hash("", &hash);
        assert_eq!(
            docs.prepare(&mut unknown).await.err(),
            Some(Refusal::NotFound)
        );

        let mut register = with_hash(QUERY, &hash);
        assert!(docs.prepare(&mut register).await.unwrap().is_some());

        // Another process sharing the cache knows it too; this process's
        // parsed documents are skipped by clearing them.
        docs.parsed.as_ref().unwrap().invalidate_all();
        let mut by_hash = with_hash("", &hash.to_uppercase());
        assert!(docs.prepare(&mut by_hash).await.unwrap().is_some());
        assert_eq!(by_hash.query, QUERY);
    }

    #[tokio::test]
    async fn a_hash_that_does_not_match_its_text_is_refused_and_not_stored() {
        let docs = documents(&[]);
        let wrong = hex(&sha256("{ me { id } }"));
        let mut r = with_hash(QUERY, &wrong);
        assert_eq!(
            docs.prepare(&mut r).await.err(),
            Some(Refusal::HashMismatch)
        );
        let mut later = with_hash("", &wrong);
        assert_eq!(
            docs.prepare(&mut later).await.err(),
            Some(Refusal::NotFound)
        );
    }

    #[tokio::test]
    async fn malformed_extensions_and_the_off_mode_are_refused() {
        let docs = documents(&[]);
        for bad in [
            async_graphql::value!({ "version": 2, "sha256Hash": hex(&sha256(QUERY)) }),
            async_graphql::value!({ "version": 1, "sha256Hash": "abc" }),
            async_graphql::value!({ "version": 1 }),
            async_graphql::value!("x"),
        ] {
            let mut r = async_graphql::Request::new(QUERY);
            r.extensions.insert("persistedQuery".into(), bad);
            assert_eq!(docs.prepare(&mut r).await.err(), Some(Refusal::Malformed));
        }
        let off = documents(&[("PERSISTED_QUERIES", "off")]);
        let mut r = with_hash(QUERY, &hex(&sha256(QUERY)));
        assert_eq!(off.prepare(&mut r).await.err(), Some(Refusal::NotSupported));
        assert!(
            off.prepare(&mut async_graphql::Request::new(QUERY))
                .await
                .unwrap()
                .is_some()
        );
    }

    #[tokio::test]
    async fn the_allowlist_runs_only_its_documents_by_hash_or_exact_text() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.json");
        let manifest = serde_json::json!({
            "format": "apollo-persisted-query-manifest",
            "version": 1,
            "operations": [{ "id": hex(&sha256(QUERY)), "name": "M", "type": "query", "body": QUERY }]
        });
        std::fs::write(&path, manifest.to_string()).unwrap();
        let docs = documents(&[
            ("PERSISTED_QUERIES", "allowlist"),
            ("PERSISTED_QUERIES_MANIFEST", path.to_str().unwrap()),
        ]);

        let mut by_hash = with_hash("", &hex(&sha256(QUERY)));
        assert!(docs.prepare(&mut by_hash).await.unwrap().is_some());
        assert_eq!(by_hash.query, QUERY);
        let mut by_text = async_graphql::Request::new(QUERY);
        assert!(docs.prepare(&mut by_text).await.unwrap().is_some());

        let other = "{ me { id } }";
        let mut free_form = async_graphql::Request::new(other);
        assert_eq!(
            docs.prepare(&mut free_form).await.err(),
            Some(Refusal::NotInList)
        );
        // Registering through APQ is no way around the list.
        let mut register = with_hash(other, &hex(&sha256(other)));
        assert_eq!(
            docs.prepare(&mut register).await.err(),
            Some(Refusal::NotInList)
        );
        let mut unknown = with_hash("", &hex(&sha256(other)));
        assert_eq!(
            docs.prepare(&mut unknown).await.err(),
            Some(Refusal::NotFound)
        );
    }

    #[test]
    fn a_manifest_whose_ids_are_not_the_hashes_of_its_documents_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        std::fs::write(
            &path,
            serde_json::json!({ hex(&sha256("{ a }")): "{ b }" }).to_string(),
        )
        .unwrap();
        let err = load_manifest(&path).unwrap_err().to_string();
        assert!(err.contains("not the sha256"), "{err}");
        std::fs::write(&path, "[1, 2]").unwrap();
        assert!(load_manifest(&path).is_err());
        let good = serde_json::json!({ hex(&sha256(QUERY)): QUERY }).to_string();
        std::fs::write(&path, good).unwrap();
        assert_eq!(load_manifest(&path).unwrap().len(), 1);
    }
}
