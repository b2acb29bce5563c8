//! The Kairos web app, the single-page app learners and admins use, served
//! at `/app` by the service itself, so that it works without internet
//! access: the page and every file it loads come from this binary.
//!
//! Its sources live in `web/`; `scripts/build-web` builds them (Vite) into
//! `assets/webapp/`, which is committed, so building the service needs no
//! node. `assets/webapp/BUILD` records the digest of the sources the build
//! came from; a test here recomputes it, so a change to `web/` without a
//! rebuild fails CI. The build also writes the app's trusted-documents
//! manifest (`assets/webapp/persisted-query-manifest.json`), which
//! `PERSISTED_QUERIES=allowlist` can point at.
//!
//! Like GraphiQL's, the files are served under
//! `/app/assets/<digest>/<name>` and cached for a year, while the page is
//! always revalidated; its Content-Security-Policy allows this origin only,
//! with no inline script or style. Served unless `WEB_APP=false`
//! (production's default).

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

/// Whether the web app is served (`WEB_APP`): the state of its routes.
#[derive(Clone, Copy)]
pub struct WebAppEnabled(pub bool);

/// Where the page is served.
pub const PATH: &str = "/app";

/// Where the assets are served; the route is `{ASSETS_PATH}/{digest}/{name}`.
pub const ASSETS_PATH: &str = "/app/assets";

/// This origin only: scripts and styles from its files (none inline),
/// requests to `/graphql`, images from itself or `data:` URLs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; \
     frame-ancestors 'none'";

/// The files the page loads.
const FILES: [Asset; 2] = [
    Asset {
        name: "app.css",
        content_type: "text/css; charset=utf-8",
        bytes: include_bytes!("../assets/webapp/app.css"),
    },
    Asset {
        name: "app.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("../assets/webapp/app.js"),
    },
];

/// The content digest of each of `FILES` (same order), computed once.
static DIGESTS: LazyLock<Vec<String>> =
    LazyLock::new(|| FILES.iter().map(|f| short_digest(f.bytes)).collect());

fn url(name: &str) -> String {
    let i = FILES
        .iter()
        .position(|f| f.name == name)
        .expect("the page names only embedded files");
    format!("{ASSETS_PATH}/{}/{name}", DIGESTS[i])
}

/// The page, built once. The script is a module, so it runs after the
/// document is parsed.
static PAGE: LazyLock<String> = LazyLock::new(|| {
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light">
<title>Kairos</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{css}">
<script type="module" src="{js}"></script>
</head>
<body>
<noscript>The Kairos web app needs JavaScript.</noscript>
<div id="app"></div>
</body>
</html>
"#,
        css = url("app.css"),
        js = url("app.js"),
    )
});

fn disabled() -> Response {
    error_response(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        "the web app is disabled (WEB_APP=false)",
    )
}

/// `GET /app`: the page, or NOT_FOUND when the web app is off.
pub async fn page(State(WebAppEnabled(enabled)): State<WebAppEnabled>) -> Response {
    if !enabled {
        return disabled();
    }
    embedded::page(&PAGE, CONTENT_SECURITY_POLICY)
}

/// `GET /app/assets/{digest}/{name}`: an embedded file when the digest is
/// the current one (an old page asking for an old version gets NOT_FOUND
/// rather than a mismatched file).
pub async fn asset(
    State(WebAppEnabled(enabled)): State<WebAppEnabled>,
    Path((digest, name)): Path<(String, String)>,
) -> Response {
    if !enabled {
        return disabled();
    }
    embedded::asset(&FILES, &DIGESTS, &digest, &name)
}

#[cfg(test)]
mod tests {
    use std::{
        fmt::Write as _,
        path::{Path, PathBuf},
    };

    use sha2::{Digest, Sha256};

    use super::*;

    fn root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
    }

    fn hex(bytes: &[u8]) -> String {
        Sha256::digest(bytes)
            .iter()
            .fold(String::new(), |mut s, b| {
                let _ = write!(s, "{b:02x}");
                s
            })
    }

    /// Every file under `dir`, as paths relative to `base` with `/`.
    fn files(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("readable web/") {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name();
            if dir == base && (name == "node_modules" || name == "dist") {
                continue;
            }
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                files(base, &path, out);
            } else if kind.is_file() {
                let rel = path.strip_prefix(base).unwrap();
                let parts: Vec<_> = rel.iter().map(|p| p.to_string_lossy()).collect();
                out.push(parts.join("/"));
            }
        }
    }

    /// The digest `web/build.mjs` and `scripts/build-web --check` compute:
    /// `sha256sum` of the `sha256sum` lines of the files sorted by path.
    fn sources_digest() -> String {
        let web = root().join("web");
        let mut paths = Vec::new();
        files(&web, &web, &mut paths);
        paths.sort();
        let lines = paths.iter().fold(String::new(), |mut s, p| {
            let bytes = std::fs::read(web.join(p)).unwrap();
            let _ = writeln!(s, "{}  {p}", hex(&bytes));
            s
        });
        hex(lines.as_bytes())
    }

    #[test]
    fn the_committed_build_was_made_from_the_sources_in_web() {
        let stamp = std::fs::read_to_string(root().join("assets/webapp/BUILD")).unwrap();
        let recorded = |key: &str| {
            stamp
                .lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(' '))
                .unwrap_or_else(|| panic!("assets/webapp/BUILD names {key}"))
                .to_string()
        };

        assert_eq!(
            recorded("sources"),
            sources_digest(),
            "web/ changed since assets/webapp was built: run scripts/build-web and commit the result"
        );
        for name in ["app.js", "app.css", "persisted-query-manifest.json"] {
            let bytes = std::fs::read(root().join("assets/webapp").join(name)).unwrap();
            assert_eq!(
                recorded(name),
                hex(&bytes),
                "assets/webapp/{name} is not what scripts/build-web wrote"
            );
        }
    }

    #[test]
    fn the_page_loads_only_versioned_local_files() {
        let urls: Vec<&str> = PAGE
            .split('"')
            .filter(|s| s.starts_with('/') || s.contains("://"))
            .collect();

        assert_eq!(urls.len(), FILES.len(), "{urls:?}");
        for u in urls {
            let rest = u.strip_prefix(ASSETS_PATH).expect("an asset URL");
            let (digest, name) = rest[1..].split_once('/').expect("digest/name");
            assert_eq!(digest.len(), 16, "{u}");
            assert!(FILES.iter().any(|f| f.name == name), "{u}");
        }
        assert!(!PAGE.contains("<script>") && !PAGE.contains("<style"));
    }

    #[test]
    fn the_embedded_build_has_no_source_map_comment_and_no_remote_url() {
        for f in &FILES {
            let text = std::str::from_utf8(f.bytes).expect("text files");
            assert!(!text.is_empty(), "{}", f.name);
            assert!(!text.contains("sourceMappingURL="), "{}", f.name);
            assert!(!text.contains("fonts.googleapis"), "{}", f.name);
        }
    }
}
