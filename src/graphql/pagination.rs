//! Cursor pagination shared by every list.
//!
//! A cursor is `base64url(payload).base64url(mac)`: the payload names the
//! list and filters that produced it plus the sort key of the last item, and
//! the MAC (HMAC-SHA256 under a key derived from the server secret) makes a
//! forged or edited cursor detectable. A cursor used with another list or
//! other filters is rejected too, so a client never silently gets a page of
//! something else.

use std::{borrow::Cow, sync::Arc};

use async_graphql::{
    Object, ObjectType, OutputType, SimpleObject, TypeName, connection::EmptyFields,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sha2::{Digest, Sha256};

use crate::error::{ApiError, ApiResult};

/// Default page size of every list.
pub const DEFAULT_PAGE: i32 = 20;
/// Largest page a client may ask for.
pub const MAX_PAGE: i32 = 100;

/// Validates `first` (default 20, at most 100, never negative).
pub fn page_size(first: Option<i32>) -> ApiResult<i64> {
    match first.unwrap_or(DEFAULT_PAGE) {
        n if !(0..=MAX_PAGE).contains(&n) => Err(ApiError::bad_input(format!(
            "`first` must be between 0 and {MAX_PAGE}, got {n}"
        ))),
        n => Ok(i64::from(n)),
    }
}

/// Signs and checks cursors.
#[derive(Clone)]
pub struct CursorCodec {
    /// The MAC with its key already absorbed, cloned for each use.
    keyed: Hmac<Sha256>,
}

#[derive(Serialize, Deserialize)]
struct Envelope<K> {
    /// Which list and filters the cursor belongs to.
    s: String,
    /// The sort key of the last item of the page.
    k: K,
}

const MAC_LEN: usize = 16;

impl CursorCodec {
    /// Derives the cursor key from the server secret, so that cursors signed
    /// by one instance are valid on every instance.
    pub fn new(secret: &str) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"kairos-cursor-v1:");
        hasher.update(secret.as_bytes());
        let key: [u8; 32] = hasher.finalize().into();
        CursorCodec {
            keyed: Hmac::<Sha256>::new_from_slice(&key).expect("any key length works"),
        }
    }

    fn mac(&self, payload: &[u8]) -> Vec<u8> {
        let mut mac = self.keyed.clone();
        mac.update(payload);
        mac.finalize().into_bytes()[..MAC_LEN].to_vec()
    }

    /// The cursor of an item with sort key `key` in the list `scope`.
    pub fn encode<K: Serialize>(&self, scope: &str, key: &K) -> String {
        let payload = serde_json::to_vec(&Envelope {
            s: scope.to_string(),
            k: key,
        })
        .expect("cursor keys serialize");
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&payload),
            URL_SAFE_NO_PAD.encode(self.mac(&payload))
        )
    }

    /// The sort key in `cursor`, when it was signed here for `scope`.
    pub fn decode<K: DeserializeOwned>(&self, scope: &str, cursor: &str) -> ApiResult<K> {
        let invalid = || {
            ApiError::bad_input(
                "invalid cursor: pass `endCursor` of the previous page of the same list",
            )
        };
        let (payload, mac) = cursor.split_once('.').ok_or_else(invalid)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| invalid())?;
        let mac = URL_SAFE_NO_PAD.decode(mac).map_err(|_| invalid())?;
        // Constant-time comparison through the MAC type.
        let mut check = self.keyed.clone();
        check.update(&payload);
        check.verify_truncated_left(&mac).map_err(|_| invalid())?;
        if mac.len() != MAC_LEN {
            return Err(invalid());
        }
        let env: Envelope<K> = serde_json::from_slice(&payload).map_err(|_| invalid())?;
        if env.s != scope {
            return Err(ApiError::bad_input(
                "invalid cursor: it belongs to another list or other filters",
            ));
        }
        Ok(env.k)
    }
}

/// A cursor signed only when a client selects it: signing costs an HMAC,
/// and most pages are read through `nodes` or only `pageInfo.endCursor`.
#[derive(Clone)]
pub struct Cursor(Arc<dyn Fn() -> String + Send + Sync>);

impl Cursor {
    pub fn value(&self) -> String {
        (self.0)()
    }
}

/// Pagination information of the contract.
pub struct PageInfo {
    pub has_next_page: bool,
    pub end_cursor: Option<Cursor>,
}

/// Pagination information of the contract.
#[Object]
impl PageInfo {
    async fn has_next_page(&self) -> bool {
        self.has_next_page
    }
    async fn end_cursor(&self) -> Option<String> {
        self.end_cursor.as_ref().map(Cursor::value)
    }
}

/// A node type that is listed in pages: its name gives the contract's
/// `<Name>Edge` and `<Name>Connection` types (e.g. `ActivityEntry` is
/// listed as `ActivityConnection`).
pub trait Node: OutputType + Clone + Send + Sync + 'static {
    /// The list's name: `Module` for `ModuleConnection`.
    const LIST_NAME: &'static str;
}

/// One item of a list with its cursor (`<Name>Edge`).
pub struct Edge<N> {
    cursor: Cursor,
    node: N,
}

impl<N: Node> TypeName for Edge<N> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Edge", N::LIST_NAME).into()
    }
}

/// One item of a list with its cursor.
#[Object(name_type)]
impl<N: Node> Edge<N> {
    async fn cursor(&self) -> String {
        self.cursor.value()
    }
    async fn node(&self) -> &N {
        &self.node
    }
}

/// The `totalCount` of a connection whose lists can say their size.
#[derive(SimpleObject)]
pub struct TotalCount {
    /// Size of the whole filtered list (computed only when selected).
    total_count: i64,
}

/// A page of a list (`<Name>Connection`): edges (built only when
/// selected), nodes, page info and, with `TotalCount`, the list's size.
pub struct Connection<N, F = EmptyFields> {
    cursors: Vec<Cursor>,
    nodes: Vec<N>,
    page_info: PageInfo,
    fields: F,
}

impl<N: Node, F: ObjectType + Send + Sync> TypeName for Connection<N, F> {
    fn type_name() -> Cow<'static, str> {
        format!("{}Connection", N::LIST_NAME).into()
    }
}

/// A page of a list.
#[Object(name_type)]
impl<N: Node, F: ObjectType + Send + Sync> Connection<N, F> {
    async fn edges(&self) -> Vec<Edge<N>> {
        self.cursors
            .iter()
            .zip(&self.nodes)
            .map(|(cursor, node)| Edge {
                cursor: cursor.clone(),
                node: node.clone(),
            })
            .collect()
    }
    async fn nodes(&self) -> &[N] {
        &self.nodes
    }
    async fn page_info(&self) -> &PageInfo {
        &self.page_info
    }
    #[graphql(flatten)]
    async fn fields(&self) -> &F {
        &self.fields
    }
}

impl<N> Connection<N, EmptyFields> {
    /// A connection of the page's items.
    pub fn from_page(page: Page<N>) -> Self {
        Connection {
            cursors: page.cursors,
            nodes: page.nodes,
            page_info: page.page_info,
            fields: EmptyFields,
        }
    }
}

impl<N> Connection<N, TotalCount> {
    /// A connection of the page's items and the list's size.
    pub fn with_total(page: Page<N>, total_count: i64) -> Self {
        Connection {
            cursors: page.cursors,
            nodes: page.nodes,
            page_info: page.page_info,
            fields: TotalCount { total_count },
        }
    }
}

/// The parts of a page: cursors, nodes and page info.
pub struct Page<T> {
    pub cursors: Vec<Cursor>,
    pub nodes: Vec<T>,
    pub page_info: PageInfo,
}

/// Builds a page from `items` fetched with `limit + 1` (the extra item only
/// tells whether another page exists).
pub fn page<T, K: Serialize + Send + Sync + 'static>(
    codec: &CursorCodec,
    scope: &str,
    mut items: Vec<T>,
    limit: i64,
    key_of: impl Fn(&T) -> K,
) -> Page<T> {
    let has_next_page = items.len() as i64 > limit;
    items.truncate(limit as usize);
    let scope: Arc<str> = Arc::from(scope);
    let cursors: Vec<Cursor> = items
        .iter()
        .map(|item| {
            let (codec, scope, key) = (codec.clone(), scope.clone(), key_of(item));
            Cursor(Arc::new(move || codec.encode(&scope, &key)))
        })
        .collect();
    let page_info = PageInfo {
        has_next_page,
        end_cursor: cursors.last().cloned(),
    };
    Page {
        cursors,
        nodes: items,
        page_info,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_round_trips_within_its_scope() {
        let codec = CursorCodec::new("secret");
        let c = codec.encode("modules|all", &(3, "abc"));
        let k: (i32, String) = codec.decode("modules|all", &c).unwrap();
        assert_eq!(k, (3, "abc".to_string()));
    }

    #[test]
    fn forged_edited_and_foreign_cursors_are_bad_input() {
        let codec = CursorCodec::new("secret");
        let c = codec.encode("modules|all", &(3, "abc"));
        for bad in [
            "",
            "abc",
            "a.b",
            "....",
            &format!("{c}x"),
            &c.replace('.', ""),
        ] {
            let err = codec
                .decode::<(i32, String)>("modules|all", bad)
                .unwrap_err();
            assert!(matches!(err, ApiError::BadUserInput(_)), "{bad}");
        }
        let other = CursorCodec::new("other secret").encode("modules|all", &(3, "abc"));
        assert!(
            codec
                .decode::<(i32, String)>("modules|all", &other)
                .is_err()
        );
        assert!(
            codec
                .decode::<(i32, String)>("modules|category=x", &c)
                .is_err()
        );
    }

    #[test]
    fn page_sizes_outside_0_to_100_are_bad_input() {
        assert_eq!(page_size(None).unwrap(), 20);
        assert_eq!(page_size(Some(100)).unwrap(), 100);
        assert!(page_size(Some(101)).is_err());
        assert!(page_size(Some(-1)).is_err());
    }
}
