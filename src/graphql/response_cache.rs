//! The whole-response cache in front of execution.
//!
//! An operation is cacheable when it is a query and every root field it
//! selects is declared cacheable (besides `__typename`), with none of them
//! reading another user's data (`userId`). The domains declare those root
//! fields with the scopes everything under them depends on
//! (`crate::schema::cacheable_roots`), the same scopes their writes
//! already bump.
//!
//! - **Key**: the document's SHA-256 (its persisted-query hash), the
//!   variables, the operation name and the caller's scope (anonymous, or
//!   the viewer and their role): one caller's entry is never served to
//!   another.
//! - **Tags**: the generations of the plan's scopes, read *before* the
//!   execution whose response is stored (as every cached read does), so a
//!   write that lands meanwhile, or any later write, makes the entry stale
//!   at once on every instance; writes during a Redis outage follow the
//!   cache's epoch rules.
//! - **Hit**: the stored bytes, with no parsing, validation or execution.
//!   Responses with any error (partial results included) are never stored.
//! - **Plans**: which operations are cacheable is learnt from the parsed
//!   document on a document's first request in this process, and kept by
//!   hash and operation name.
//!
//! Cacheable GET responses carry an `ETag` (a digest of the body) and
//! `If-None-Match` gets a 304.

use std::sync::Arc;

use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use sha2::{Digest, Sha256};

use super::documents::{Document, Hash, sha256};
use crate::{
    auth::Viewer,
    cache::{Cache, Scope, Ticket, TtlClass},
};

/// Whole responses: exact through their tags, the TTL only bounds values
/// that change with time alone (streaks), as the shortest of the classes
/// they are computed from.
pub const RESPONSES: TtlClass = TtlClass::new(crate::cache::RESPONSES_CLASS, |s| {
    s.ttl_progress
        .min(s.ttl_stats)
        .min(s.ttl_modules)
        .min(s.ttl_history)
});

/// A root field whose whole answer may be cached, with the scopes that
/// everything it resolves (nested entities included) depends on.
pub struct CacheableRoot {
    pub field: &'static str,
    pub scopes: fn(Option<&Viewer>) -> Vec<Scope>,
}

/// What an operation may be cached as.
pub struct Plan {
    roots: Vec<&'static CacheableRoot>,
    /// The operation's name, for logs and metrics on a hit.
    pub operation: String,
}

impl Plan {
    /// The scopes the response of `viewer` depends on.
    pub fn scopes(&self, viewer: Option<&Viewer>) -> Vec<Scope> {
        let mut scopes: Vec<Scope> = Vec::new();
        for root in &self.roots {
            for s in (root.scopes)(viewer) {
                if !scopes.contains(&s) {
                    scopes.push(s);
                }
            }
        }
        scopes
    }
}

/// One stored response.
pub struct Stored {
    /// `Cache-Control` as computed for the response that was stored.
    pub cache_control: String,
    /// Weak validator of the body.
    pub etag: String,
    /// The actual cost of the operation (`graphql::cost`), charged to the
    /// caller's bucket on every hit as if it had run.
    pub cost: u64,
    pub body: Vec<u8>,
    /// Where `,"throttleStatus":{…}` goes in `body` (the end of the cost
    /// object), so that a hit splices it in without parsing the body.
    status_at: Option<usize>,
}

impl Stored {
    /// A response to keep: its `extensions.cost.throttleStatus` (the
    /// caller's bucket at that moment, stale on the next hit) is left out,
    /// so the body, and its `ETag`, are the same for every hit.
    pub fn new(cache_control: String, body: Vec<u8>) -> Self {
        let (body, cost, status_at) = without_throttle_status(body);
        Stored {
            cache_control,
            etag: etag_of(&body),
            cost,
            body,
            status_at,
        }
    }

    /// The body with `extensions.cost.throttleStatus` set to the caller's
    /// bucket now, as an executed response would carry it.
    pub fn body_with(&self, status: &crate::http::throttle::ThrottleStatus) -> Vec<u8> {
        let Some(at) = self.status_at.filter(|at| *at <= self.body.len()) else {
            return self.body.clone();
        };
        let status = format!(
            r#","throttleStatus":{{"maximumAvailable":{},"currentlyAvailable":{},"restoreRate":{}}}"#,
            status.maximum_available, status.currently_available, status.restore_rate
        );
        let mut out = Vec::with_capacity(self.body.len() + status.len());
        out.extend_from_slice(&self.body[..at]);
        out.extend_from_slice(status.as_bytes());
        out.extend_from_slice(&self.body[at..]);
        out
    }

    /// `cache_control \n etag \n cost \n status_at \n body`.
    fn encode(&self) -> Vec<u8> {
        let cost = self.cost.to_string();
        let at = self.status_at.map(|a| a.to_string()).unwrap_or_default();
        let mut out = Vec::with_capacity(
            self.cache_control.len()
                + self.etag.len()
                + cost.len()
                + at.len()
                + 4
                + self.body.len(),
        );
        for line in [
            self.cache_control.as_bytes(),
            self.etag.as_bytes(),
            cost.as_bytes(),
            at.as_bytes(),
        ] {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
        out.extend_from_slice(&self.body);
        out
    }

    fn decode(mut bytes: Vec<u8>) -> Option<Self> {
        let mut ends = [0usize; 4];
        let mut from = 0;
        for end in &mut ends {
            *end = from + bytes[from..].iter().position(|b| *b == b'\n')?;
            from = *end + 1;
        }
        let text = |a: usize, b: usize| std::str::from_utf8(&bytes[a..b]).ok().map(str::to_string);
        let cache_control = text(0, ends[0])?;
        let etag = text(ends[0] + 1, ends[1])?;
        let cost = text(ends[1] + 1, ends[2])?.parse().ok()?;
        let status_at = text(ends[2] + 1, ends[3])?.parse().ok();
        let body = bytes.split_off(ends[3] + 1);
        Some(Stored {
            cache_control,
            etag,
            cost,
            body,
            status_at,
        })
    }
}

/// Stands for the throttle status while a body is stored: control
/// characters, which JSON escapes, so no answer can hold it.
const STATUS_MARK: &str = ",\"throttleStatus\":\"\\u0001kairos\\u0001\"";

/// The body without `extensions.cost.throttleStatus`, the actual cost it
/// reports (0 when it has none) and where the status goes back.
fn without_throttle_status(body: Vec<u8>) -> (Vec<u8>, u64, Option<usize>) {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&body) else {
        return (body, 0, None);
    };
    let Some(cost) = value
        .pointer_mut("/extensions/cost")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return (body, 0, None);
    };
    let actual = cost
        .get("actualQueryCost")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(0);
    // Serialised last (by insertion or by name), after a key of its own.
    cost.insert("throttleStatus".into(), "\u{1}kairos\u{1}".into());
    let Ok(marked) = serde_json::to_vec(&value) else {
        return (body, actual, None);
    };
    let mark = STATUS_MARK.as_bytes();
    let Some(at) = marked.windows(mark.len()).rposition(|w| w == mark) else {
        return (body, actual, None);
    };
    let mut stored = marked;
    stored.drain(at..at + mark.len());
    (stored, actual, Some(at))
}

/// `W/"<digest>"`: weak, as compression may re-encode the body.
fn etag_of(body: &[u8]) -> String {
    let hash = Sha256::digest(body);
    let hex: String = hash[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("W/\"{hex}\"")
}

/// Whether an `If-None-Match` value matches `etag` (weak comparison).
pub fn matches(if_none_match: &str, etag: &str) -> bool {
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_string();
    let etag = bare(etag);
    if_none_match
        .split(',')
        .any(|t| t.trim() == "*" || bare(t) == etag)
}

/// A request the cache may answer: its plan and key.
pub struct Probe {
    pub plan: Arc<Plan>,
    key: String,
}

/// What a lookup found.
pub enum Found {
    Hit(Stored),
    /// Store the response under this ticket if it succeeds.
    Miss(Ticket),
}

/// The response cache of one process.
pub struct ResponseCache {
    cache: Arc<Cache>,
    roots: Vec<&'static CacheableRoot>,
    /// Plans by document hash and operation name; `None`: not cacheable.
    plans: moka::sync::Cache<(Hash, Option<String>), Option<Arc<Plan>>>,
    /// Whether a hash sent without its text may be looked up (persisted
    /// queries on).
    hash_only: bool,
}

impl ResponseCache {
    pub fn new(cache: Arc<Cache>, roots: Vec<&'static CacheableRoot>, hash_only: bool) -> Self {
        cache.register(&[RESPONSES]);
        ResponseCache {
            cache,
            roots,
            plans: moka::sync::Cache::new(10_000),
            hash_only,
        }
    }

    /// The document hash of a request: its text's, else the persisted
    /// hash sent alone. `None` when they disagree (the document store
    /// refuses it) or there is neither.
    fn hash_of(&self, request: &async_graphql::Request) -> Option<Hash> {
        let sent = request
            .extensions
            .get("persistedQuery")
            .and_then(|pq| match pq {
                async_graphql::Value::Object(o) => o.get("sha256Hash"),
                _ => None,
            })
            .and_then(|h| match h {
                async_graphql::Value::String(s) => parse_hex(s),
                _ => None,
            });
        if request.query.is_empty() {
            return sent.filter(|_| self.hash_only);
        }
        let hash = sha256(&request.query);
        match sent {
            Some(sent) if sent != hash => None,
            _ => Some(hash),
        }
    }

    /// The plan and key of a request whose document is known to be
    /// cacheable; `None` otherwise (unknown yet, or not cacheable).
    pub fn probe(
        &self,
        request: &async_graphql::Request,
        viewer: Option<&Viewer>,
    ) -> Option<Probe> {
        let hash = self.hash_of(request)?;
        let plan = self
            .plans
            .get(&(hash, request.operation_name.clone()))
            .flatten()?;
        Some(Probe {
            key: key(&hash, request, viewer),
            plan,
        })
    }

    /// Learns whether the operation of a prepared request is cacheable;
    /// the probe when it is.
    pub fn learn(
        &self,
        request: &async_graphql::Request,
        document: &Document,
        viewer: Option<&Viewer>,
    ) -> Option<Probe> {
        let hash = self.hash_of(request)?;
        let name = request.operation_name.clone();
        let plan = self.plans.get_with((hash, name.clone()), || {
            self.plan(&document.parsed, name.as_deref()).map(Arc::new)
        })?;
        Some(Probe {
            key: key(&hash, request, viewer),
            plan,
        })
    }

    /// Looks the response of `probe` up.
    pub async fn lookup(&self, probe: &Probe, viewer: Option<&Viewer>) -> Option<Found> {
        let scopes = probe.plan.scopes(viewer);
        match self
            .cache
            .get_tagged(RESPONSES, &probe.key, &scopes)
            .await?
        {
            Ok(bytes) => Stored::decode(bytes).map(Found::Hit),
            Err(ticket) => Some(Found::Miss(ticket)),
        }
    }

    /// Stores a successful response for a miss.
    pub async fn store(&self, ticket: Ticket, stored: &Stored) {
        self.cache.put_tagged(ticket, stored.encode()).await;
    }

    fn plan(&self, doc: &ExecutableDocument, name: Option<&str>) -> Option<Plan> {
        let (op_name, op) = doc
            .operations
            .iter()
            .find(|(n, _)| name.is_none() || n.map(|n| n.as_str()) == name)?;
        if op.node.ty != OperationType::Query {
            return None;
        }
        let mut roots = Vec::new();
        self.collect(doc, &op.node.selection_set.node, &mut roots, 0)?;
        if roots.is_empty() {
            return None;
        }
        Some(Plan {
            roots,
            operation: name
                .map(str::to_string)
                .or_else(|| op_name.map(|n| n.to_string()))
                .unwrap_or_default(),
        })
    }

    /// The cacheable roots of a root selection set; `None` as soon as one
    /// is not.
    fn collect(
        &self,
        doc: &ExecutableDocument,
        set: &SelectionSet,
        roots: &mut Vec<&'static CacheableRoot>,
        depth: usize,
    ) -> Option<()> {
        if depth > 8 {
            return None;
        }
        for selection in &set.items {
            match &selection.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    let name = field.name.node.as_str();
                    if name == "__typename" {
                        continue;
                    }
                    // Another user's data: their own scopes, not the
                    // viewer's; never cached here.
                    if field
                        .arguments
                        .iter()
                        .any(|(n, _)| n.node.as_str() == "userId")
                    {
                        return None;
                    }
                    let root = self.roots.iter().find(|r| r.field == name)?;
                    if !roots.iter().any(|r| std::ptr::eq(*r, *root)) {
                        roots.push(root);
                    }
                }
                Selection::FragmentSpread(spread) => {
                    let fragment = doc.fragments.get(&spread.node.fragment_name.node)?;
                    self.collect(doc, &fragment.node.selection_set.node, roots, depth + 1)?;
                }
                Selection::InlineFragment(inline) => {
                    self.collect(doc, &inline.node.selection_set.node, roots, depth + 1)?;
                }
            }
        }
        Some(())
    }
}

/// The entry key: document, variables, operation name and caller.
fn key(hash: &Hash, request: &async_graphql::Request, viewer: Option<&Viewer>) -> String {
    let mut h = Sha256::new();
    h.update(hash);
    h.update(serde_json::to_vec(&request.variables).unwrap_or_default());
    h.update([0]);
    h.update(request.operation_name.as_deref().unwrap_or("").as_bytes());
    h.update([0]);
    let caller = match viewer {
        Some(v) => format!("{}:{}", v.user_id.to_hex(), v.role.as_str()),
        None => "anonymous".to_string(),
    };
    let digest: String = h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    // `v2`: the stored format (with the status offset).
    format!("v2:{caller}:{digest}")
}

fn parse_hex(s: &str) -> Option<Hash> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        let hex = std::str::from_utf8(chunk).ok()?;
        out[i] = u8::from_str_radix(hex, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_response_keeps_its_cost_but_not_the_bucket_of_that_moment() {
        let body = br#"{"data":{"a":1},"extensions":{"cost":{"requestedQueryCost":12,"actualQueryCost":7,"throttleStatus":{"maximumAvailable":2000,"currentlyAvailable":1988,"restoreRate":100}}}}"#;
        let s = Stored::new("private, no-store".into(), body.to_vec());
        assert_eq!(s.cost, 7);
        let kept: serde_json::Value = serde_json::from_slice(&s.body).unwrap();
        assert_eq!(
            kept,
            serde_json::json!({"data":{"a":1},"extensions":{"cost":{"requestedQueryCost":12,"actualQueryCost":7}}})
        );
        let back = Stored::decode(s.encode()).unwrap();
        assert_eq!(
            (back.cost, &back.body, &back.etag, back.status_at),
            (7, &s.body, &s.etag, s.status_at)
        );
        let now = crate::http::throttle::ThrottleStatus {
            maximum_available: 2000,
            currently_available: 1500,
            restore_rate: 100,
        };
        let served: serde_json::Value = serde_json::from_slice(&s.body_with(&now)).unwrap();
        assert_eq!(
            served["extensions"]["cost"]["throttleStatus"]["currentlyAvailable"],
            1500
        );
        assert_eq!(served["extensions"]["cost"]["actualQueryCost"], 7);
        // The same answer at another moment of the bucket: the same ETag.
        let later = String::from_utf8(body.to_vec())
            .unwrap()
            .replace("1988", "1500");
        assert_eq!(Stored::new("x".into(), later.into_bytes()).etag, s.etag);
    }

    #[test]
    fn a_stored_response_reads_back_and_etags_compare_weakly() {
        let s = Stored::new(
            "public, max-age=60".into(),
            b"{\"data\":{\"a\":\"x\\ny\"}}".to_vec(),
        );
        let back = Stored::decode(s.encode()).unwrap();
        assert_eq!(back.cache_control, "public, max-age=60");
        assert_eq!(back.etag, s.etag);
        assert_eq!(back.body, s.body);
        assert_eq!(back.cost, 0);
        assert_eq!(
            back.body_with(&crate::http::throttle::ThrottleStatus {
                maximum_available: 1,
                currently_available: 1,
                restore_rate: 1,
            }),
            s.body,
            "no cost object: served as stored"
        );
        assert!(matches(&s.etag, &s.etag));
        assert!(matches(
            &format!("\"x\", {}", s.etag.trim_start_matches("W/")),
            &s.etag
        ));
        assert!(matches("*", &s.etag));
        assert!(!matches("W/\"other\"", &s.etag));
    }
}
