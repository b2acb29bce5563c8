//! GraphiQL served by the service itself, so that it works on a network
//! without internet access: the page and every file it loads come from
//! this binary.
//!
//! The vendored GraphiQL, React and ReactDOM builds live in
//! `assets/graphiql/` (refreshed by `scripts/vendor-graphiql`, which names
//! their versions and licences); our page bootstrap is beside this module.
//! All are embedded at build time and served under
//! `/graphiql/assets/<digest>/<name>`: the digest changes with the content,
//! so the files may be cached for a year while the page itself is always
//! revalidated. The page's Content-Security-Policy lets it run scripts
//! from this origin only (none inline) and connect nowhere else.

use std::sync::LazyLock;

use axum::{
    extract::{Path, State},
    http::StatusCode,
    response::Response,
};

use crate::{
    error::{Code, error_response},
    http::embedded::{self, Asset, short_digest},
};

/// Whether GraphiQL is served (`GRAPHIQL`): the state of the asset route.
#[derive(Clone, Copy)]
pub struct GraphiqlEnabled(pub bool);

/// Where the assets are served; the route is `{ASSETS_PATH}/{digest}/{name}`.
pub const ASSETS_PATH: &str = "/graphiql/assets";

/// What the page may load and where it may connect: this origin only. The
/// fonts of GraphiQL's stylesheet and the page's empty icon are `data:` URLs.
/// Scripts are this origin's files only; styles may also be inline, because
/// GraphiQL's dialogs lock scrolling with a `<style>` element they write at
/// run time (its content varies, so no hash fits, and the bundle offers no
/// way to hand it a nonce).
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self' 'unsafe-inline'; font-src 'self' data:; img-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Every file the page loads, in the order the page loads the scripts.
const FILES: [Asset; 6] = [
    Asset {
        name: "graphiql.min.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../../assets/graphiql/graphiql.min.css"),
    },
    Asset {
        name: "kairos-graphiql.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("graphiql/kairos-graphiql.css"),
    },
    Asset {
        name: "react.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/graphiql/react.production.min.js"),
    },
    Asset {
        name: "react-dom.production.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/graphiql/react-dom.production.min.js"),
    },
    Asset {
        name: "graphiql.min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../../assets/graphiql/graphiql.min.js"),
    },
    Asset {
        name: "kairos-graphiql.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("graphiql/kairos-graphiql.js"),
    },
];

/// The content digest of each of `FILES` (same order): the first 16 hex
/// digits of its SHA-256, computed once.
static DIGESTS: LazyLock<Vec<String>> =
    LazyLock::new(|| FILES.iter().map(|f| short_digest(f.bytes)).collect());

/// The versioned URL of the embedded file `name`.
fn url(name: &str) -> String {
    let i = FILES
        .iter()
        .position(|f| f.name == name)
        .expect("the page names only embedded files");
    format!("{ASSETS_PATH}/{}/{name}", DIGESTS[i])
}

/// The page, built once: our template naming the versioned asset URLs.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Kairos GraphiQL</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
<link rel="stylesheet" href="{kairos_css}">
</head>
<body>
<div id="graphiql" data-endpoint="/graphql">Loading GraphiQL…</div>
<script src="{react}"></script>
<script src="{react_dom}"></script>
<script src="{graphiql}"></script>
<script src="{kairos_js}"></script>
</body>
</html>
"#,
        css = url("graphiql.min.css"),
        kairos_css = url("kairos-graphiql.css"),
        react = url("react.production.min.js"),
        react_dom = url("react-dom.production.min.js"),
        graphiql = url("graphiql.min.js"),
        kairos_js = url("kairos-graphiql.js"),
    )
});

/// The answer when GraphiQL is turned off (production's default).
fn disabled() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        "GraphiQL is disabled; POST queries to /graphql",
    )
}

/// The GraphiQL page, or NOT_FOUND when `enabled` is false.
pub fn page(enabled: bool) -> Response {
    if !enabled {
        return disabled();
    }
    embedded::page(&PAGE, CONTENT_SECURITY_POLICY)
}

/// `GET /graphiql/assets/{digest}/{name}`: an embedded file, when GraphiQL
/// is enabled and the digest is the current one (an old page asking for an
/// old version gets NOT_FOUND rather than a mismatched file).
pub async fn asset(
    State(GraphiqlEnabled(enabled)): State<GraphiqlEnabled>,
    Path((digest, name)): Path<(String, String)>,
) -> Response {
    if !enabled {
        return disabled();
    }
    embedded::asset(&FILES, &DIGESTS, &digest, &name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_versioned_local_files() {
        let urls: Vec<&str> = PAGE
            .split(['"', '\''])
            .filter(|s| s.starts_with('/') || s.contains("://"))
            .collect();

        assert_eq!(urls.len(), FILES.len() + 1, "{urls:?}");
        for u in urls.iter().filter(|u| **u != "/graphql") {
            let rest = u.strip_prefix(ASSETS_PATH).expect("an asset URL");
            let (digest, name) = rest[1..].split_once('/').expect("digest/name");
            assert_eq!(digest.len(), 16, "{u}");
            assert!(FILES.iter().any(|f| f.name == name), "{u}");
        }
    }

    #[test]
    fn the_vendored_builds_are_embedded_without_source_map_comments() {
        for f in &FILES {
            let text = std::str::from_utf8(f.bytes).expect("text files");
            assert!(!text.is_empty(), "{}", f.name);
            assert!(!text.contains("sourceMappingURL="), "{}", f.name);
        }
    }
}
