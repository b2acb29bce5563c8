//! Index bootstrap: `indexes/<collection>.json` declares each collection's
//! indexes in the shape of MongoDB's `createIndexes` command; `apply`
//! creates what is missing and `check` reports drift without changing
//! anything.
//!
//! The declarations are compiled into the binary, so an operator can run
//! `kairos indexes apply` anywhere; `--dir` reads another folder instead.

use std::{fmt, path::Path};

use anyhow::{Context, bail};
use mongodb::bson::{Bson, Document, doc};
use serde::Deserialize;

use super::Db;

/// The declarations shipped with this build, one per collection.
pub const BUILTIN: [(&str, &str); 7] = [
    ("users", include_str!("../../indexes/users.json")),
    ("modules", include_str!("../../indexes/modules.json")),
    ("progress", include_str!("../../indexes/progress.json")),
    ("activity", include_str!("../../indexes/activity.json")),
    (
        "notifications",
        include_str!("../../indexes/notifications.json"),
    ),
    ("jobs", include_str!("../../indexes/jobs.json")),
    (
        "idempotency",
        include_str!("../../indexes/idempotency.json"),
    ),
];

/// One `indexes/<collection>.json` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Declaration {
    pub create_indexes: String,
    pub indexes: Vec<Document>,
}

/// What became of one declared (or found) index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Unchanged,
    /// Declared but absent (`check` only).
    Missing,
    /// Same name, other specification; left alone.
    Conflicting(String),
    /// On the server, not declared; left alone.
    Undeclared,
    /// The server does not support this kind of index (e.g. text indexes on
    /// a server without text search); the service falls back.
    Unsupported(String),
    /// Creating it failed for another reason.
    Failed(String),
}

impl Outcome {
    /// Whether this outcome means the database differs from the declarations.
    pub fn is_drift(&self) -> bool {
        matches!(
            self,
            Outcome::Missing | Outcome::Conflicting(_) | Outcome::Undeclared | Outcome::Failed(_)
        )
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Created => write!(f, "created"),
            Outcome::Unchanged => write!(f, "unchanged"),
            Outcome::Missing => write!(f, "missing"),
            Outcome::Conflicting(why) => write!(f, "conflicting ({why})"),
            Outcome::Undeclared => write!(f, "undeclared"),
            Outcome::Unsupported(why) => write!(f, "unsupported by this server ({why})"),
            Outcome::Failed(why) => write!(f, "failed ({why})"),
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct ReportLine {
    pub collection: String,
    pub name: String,
    pub outcome: Outcome,
}

/// Loads the declarations, from `dir` when given, else the built-in ones.
/// `activity_ttl_secs` replaces the declared `expireAfterSeconds` of the
/// activity TTL index (ACTIVITY_RETENTION_DAYS).
pub fn load(dir: Option<&Path>, activity_ttl_secs: i64) -> anyhow::Result<Vec<Declaration>> {
    let mut out = Vec::new();
    for (collection, builtin) in BUILTIN {
        let text = match dir {
            Some(dir) => {
                let path = dir.join(format!("{collection}.json"));
                std::fs::read_to_string(&path)
                    .with_context(|| format!("reading {}", path.display()))?
            }
            None => builtin.to_string(),
        };
        let mut decl: Declaration = serde_json::from_str(&text)
            .with_context(|| format!("parsing the index declaration of {collection}"))?;
        if decl.create_indexes != collection {
            bail!(
                "indexes/{collection}.json declares collection {:?}",
                decl.create_indexes
            );
        }
        for index in &mut decl.indexes {
            if index.get_str("name").is_err() || index.get_document("key").is_err() {
                bail!("indexes/{collection}.json: every index needs a name and a key");
            }
            if collection == "activity" && index.contains_key("expireAfterSeconds") {
                index.insert("expireAfterSeconds", activity_ttl_secs);
            }
        }
        out.push(decl);
    }
    Ok(out)
}

/// Options that make two indexes with the same key different indexes.
const COMPARED_OPTIONS: [&str; 5] = [
    "unique",
    "sparse",
    "expireAfterSeconds",
    "partialFilterExpression",
    "collation",
];

fn is_text(spec: &Document) -> bool {
    spec.get_document("key")
        .map(|k| k.values().any(|v| v.as_str() == Some("text")) || k.contains_key("_fts"))
        .unwrap_or(false)
}

/// Numbers in a key or option compare by value whatever their BSON type.
fn normalize(value: &Bson) -> Bson {
    match value {
        Bson::Int32(n) => Bson::Double(f64::from(*n)),
        Bson::Int64(n) => Bson::Double(*n as f64),
        Bson::Document(d) => {
            Bson::Document(d.iter().map(|(k, v)| (k.clone(), normalize(v))).collect())
        }
        other => other.clone(),
    }
}

/// Why `existing` differs from `declared`, or `None` when they match.
pub fn difference(declared: &Document, existing: &Document) -> Option<String> {
    if is_text(declared) {
        // The server stores text indexes as `_fts`/`_ftsx` keys plus weights.
        return (!is_text(existing)).then(|| "expected a text index".to_string());
    }
    let key = |d: &Document| d.get("key").map(normalize);
    if key(declared) != key(existing) {
        return Some("other key".into());
    }
    for option in COMPARED_OPTIONS {
        let truthy = |d: &Document| match d.get(option) {
            None | Some(Bson::Boolean(false)) => None,
            Some(v) => Some(normalize(v)),
        };
        if truthy(declared) != truthy(existing) {
            return Some(format!("other {option}"));
        }
    }
    None
}

/// Whether a failed `createIndexes` means the server cannot build this kind
/// of index at all (rather than a real error).
fn unsupported(err: &mongodb::error::Error) -> Option<String> {
    use mongodb::error::ErrorKind;
    if let ErrorKind::Command(c) = err.kind.as_ref() {
        let msg = c.message.to_ascii_lowercase();
        if c.code == 67 || c.code == 115 || msg.contains("not supported") {
            return Some(c.message.clone());
        }
    }
    None
}

/// Whether the server can answer `$text` queries on `collection`; asked by a
/// read that changes nothing. A server with text search but no index says
/// IndexNotFound (27); one without text search rejects the operator.
async fn text_search_supported(db: &Db, collection: &str) -> bool {
    let probe = db
        .raw(collection)
        .find_one(doc! { "$text": { "$search": "kairos-probe" } })
        .await;
    match probe {
        Ok(_) => true,
        Err(e) => match e.kind.as_ref() {
            mongodb::error::ErrorKind::Command(c) => c.code == 27,
            _ => true,
        },
    }
}

async fn existing_indexes(db: &Db, collection: &str) -> anyhow::Result<Vec<Document>> {
    // The raw command keeps each index's options exactly as the server
    // stores them; a catalogue has few indexes, so the first batch is all.
    match db
        .db
        .run_command(doc! { "listIndexes": collection, "cursor": { "batchSize": 1000 } })
        .await
    {
        Ok(reply) => Ok(reply
            .get_document("cursor")
            .and_then(|c| c.get_array("firstBatch"))
            .map(|batch| {
                batch
                    .iter()
                    .filter_map(|b| b.as_document().cloned())
                    .collect()
            })
            .unwrap_or_default()),
        // NamespaceNotFound: the collection does not exist yet.
        Err(e) if matches!(e.kind.as_ref(), mongodb::error::ErrorKind::Command(c) if c.code == 26) => {
            Ok(Vec::new())
        }
        Err(e) => Err(e).with_context(|| format!("listing the indexes of {collection}")),
    }
}

/// Compares (and with `apply`, creates) every declared index.
pub async fn reconcile(
    db: &Db,
    decls: &[Declaration],
    apply: bool,
) -> anyhow::Result<Vec<ReportLine>> {
    let mut report = Vec::new();
    for decl in decls {
        let collection = &decl.create_indexes;
        let existing = existing_indexes(db, collection).await?;
        let find = |name: &str| {
            existing
                .iter()
                .find(|e| e.get_str("name").ok() == Some(name))
        };
        for spec in &decl.indexes {
            let name = spec.get_str("name").unwrap_or_default().to_string();
            let outcome = match find(&name) {
                Some(found) => match difference(spec, found) {
                    None => Outcome::Unchanged,
                    Some(why) => Outcome::Conflicting(why),
                },
                None if !apply => {
                    if is_text(spec) && !text_search_supported(db, collection).await {
                        Outcome::Unsupported("no text search".into())
                    } else {
                        Outcome::Missing
                    }
                }
                None => {
                    let cmd = doc! { "createIndexes": collection, "indexes": [spec.clone()] };
                    match db.db.run_command(cmd).await {
                        Ok(_) => Outcome::Created,
                        Err(e) => match unsupported(&e) {
                            Some(why) => Outcome::Unsupported(why),
                            None => Outcome::Failed(e.to_string()),
                        },
                    }
                }
            };
            report.push(ReportLine {
                collection: collection.clone(),
                name,
                outcome,
            });
        }
        for found in &existing {
            let name = found.get_str("name").unwrap_or_default();
            if name != "_id_"
                && !decl
                    .indexes
                    .iter()
                    .any(|d| d.get_str("name").ok() == Some(name))
            {
                report.push(ReportLine {
                    collection: collection.clone(),
                    name: name.to_string(),
                    outcome: Outcome::Undeclared,
                });
            }
        }
    }
    Ok(report)
}

/// Whether the modules collection has a text index, so `search` may use
/// `$text` instead of a case-insensitive match.
pub async fn has_text_index(db: &Db) -> bool {
    match existing_indexes(db, super::names::MODULES).await {
        Ok(indexes) => indexes.iter().any(is_text),
        Err(e) => {
            tracing::warn!(error = %e, "could not list module indexes; search uses regex");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_declarations_parse_and_name_every_index() {
        let decls = load(None, 86_400).unwrap();
        assert_eq!(decls.len(), 7);
        let activity = decls
            .iter()
            .find(|d| d.create_indexes == "activity")
            .unwrap();
        let ttl = activity
            .indexes
            .iter()
            .find(|i| i.contains_key("expireAfterSeconds"))
            .unwrap();
        assert_eq!(ttl.get_i64("expireAfterSeconds").unwrap(), 86_400);
    }

    #[test]
    fn numbers_of_other_bson_types_do_not_make_a_difference() {
        let declared = doc! { "key": { "a": 1_i32 }, "name": "a", "unique": true };
        let existing = doc! { "key": { "a": 1.0 }, "name": "a", "unique": true, "v": 2 };
        assert_eq!(difference(&declared, &existing), None);
    }

    #[test]
    fn another_key_or_option_is_a_conflict() {
        let declared = doc! { "key": { "a": 1 }, "name": "a", "unique": true };
        assert!(difference(&declared, &doc! { "key": { "a": -1 }, "unique": true }).is_some());
        assert!(difference(&declared, &doc! { "key": { "a": 1 } }).is_some());
        let ttl = doc! { "key": { "at": 1 }, "expireAfterSeconds": 60 };
        assert!(
            difference(
                &ttl,
                &doc! { "key": { "at": 1 }, "expireAfterSeconds": 120 }
            )
            .is_some()
        );
    }
}
