//! The web dashboard: hand-written HTML, CSS and ES modules from
//! `crates/server/dashboard/`, built into the binary (no build step, nothing
//! fetched at run time).
//!
//! `GET /` answers `index.html`; `GET /ui/{file}` answers one asset by name.
//! Every answer carries the dashboard's security headers ([`SECURITY_HEADERS`]:
//! a Content-Security-Policy that allows only this origin and no inline code).
//! The index is `no-cache`; the other assets carry an `ETag` of their content
//! and answer `304` to a matching `If-None-Match`. Unknown names are `404`.
//!
//! The dashboard talks to the same Connect API as every other client, with
//! the browser session of `/auth/session`; this module only serves files.

use std::sync::OnceLock;

use axum::extract::Path;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest as _, Sha256};

/// The page every dashboard answer is served with.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; \
     base-uri 'none'; form-action 'self'";

/// Headers on every dashboard answer, the 404 included.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("content-security-policy", CONTENT_SECURITY_POLICY),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "no-referrer"),
];

/// One embedded file.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:expr) => {
        Asset {
            name: $name,
            content_type: $content_type,
            body: include_bytes!(concat!("../dashboard/", $name)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Everything under `/ui/`, and the index.
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("favicon.svg", "image/svg+xml"),
    asset!("app.js", JS),
    asset!("api.js", JS),
    asset!("ui.js", JS),
    asset!("signin.js", JS),
    asset!("fleet.js", JS),
    asset!("runner.js", JS),
    asset!("scm.js", JS),
    asset!("access.js", JS),
    asset!("tokens.js", JS),
];

fn find(name: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.name == name)
}

/// The total size of the embedded assets, in bytes.
pub fn total_size() -> usize {
    ASSETS.iter().map(|a| a.body.len()).sum()
}

/// Each asset's ETag (a quoted prefix of its SHA-256), computed once.
fn etag(name: &str) -> Option<&'static str> {
    static TAGS: OnceLock<Vec<(&'static str, String)>> = OnceLock::new();
    let tags = TAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let digest = Sha256::digest(a.body);
                let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
                (a.name, format!("\"{hex}\""))
            })
            .collect()
    });
    tags.iter()
        .find(|(n, _)| *n == name)
        .map(|(_, tag)| tag.as_str())
}

fn with_security_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// `GET /`: the dashboard's single page, never cached without revalidation.
pub async fn index() -> Response {
    let asset = find("index.html").expect("index.html is embedded");
    with_security_headers(
        (
            [
                (header::CONTENT_TYPE, asset.content_type),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            asset.body,
        )
            .into_response(),
    )
}

/// `GET /ui/{file}`: one asset, with an ETag; 404 for names not embedded.
pub async fn asset(Path(file): Path<String>, request_headers: HeaderMap) -> Response {
    let (Some(asset), Some(tag)) = (find(&file), etag(&file)) else {
        return with_security_headers(
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                "no such dashboard file\n",
            )
                .into_response(),
        );
    };
    let matches = request_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == tag || t.trim() == "*"));
    let cache = [
        (header::ETAG, tag),
        (header::CACHE_CONTROL, "no-cache"),
        (header::CONTENT_TYPE, asset.content_type),
    ];
    let response = if matches {
        (StatusCode::NOT_MODIFIED, cache).into_response()
    } else {
        (cache, asset.body).into_response()
    };
    with_security_headers(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::routing::get;
    use http::Request;
    use http_body_util::BodyExt as _;
    use tower::ServiceExt as _;

    fn router() -> axum::Router {
        axum::Router::new()
            .route("/", get(index))
            .route("/ui/{file}", get(asset))
    }

    async fn fetch(path: &str, if_none_match: Option<&str>) -> (StatusCode, HeaderMap, Vec<u8>) {
        let mut request = Request::get(path);
        if let Some(tag) = if_none_match {
            request = request.header(header::IF_NONE_MATCH, tag);
        }
        let response = router()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        (status, headers, body.to_vec())
    }

    fn assert_security_headers(headers: &HeaderMap) {
        for (name, value) in SECURITY_HEADERS {
            assert_eq!(headers.get(name).unwrap(), value, "{name}");
        }
    }

    #[tokio::test]
    async fn index_is_html_never_cached_and_locked_down() {
        let (status, headers, body) = fetch("/", None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(headers[header::CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(headers[header::CACHE_CONTROL], "no-cache");
        assert_security_headers(&headers);
        let page = String::from_utf8(body).unwrap();
        assert!(page.contains("/ui/app.js"));
    }

    #[tokio::test]
    async fn assets_have_their_content_type_and_an_etag() {
        for (name, content_type) in [
            ("style.css", "text/css; charset=utf-8"),
            ("app.js", "text/javascript; charset=utf-8"),
            ("api.js", "text/javascript; charset=utf-8"),
            ("favicon.svg", "image/svg+xml"),
        ] {
            let (status, headers, body) = fetch(&format!("/ui/{name}"), None).await;
            assert_eq!(status, StatusCode::OK, "{name}");
            assert_eq!(headers[header::CONTENT_TYPE], content_type, "{name}");
            assert!(!body.is_empty());
            assert_security_headers(&headers);
            let tag = headers[header::ETAG].to_str().unwrap().to_string();
            assert!(tag.starts_with('"') && tag.ends_with('"'));
            let (status, headers, body) = fetch(&format!("/ui/{name}"), Some(&tag)).await;
            assert_eq!(status, StatusCode::NOT_MODIFIED, "{name}");
            assert!(body.is_empty());
            assert_security_headers(&headers);
            let (status, _, _) = fetch(&format!("/ui/{name}"), Some("\"other\"")).await;
            assert_eq!(status, StatusCode::OK);
        }
    }

    #[tokio::test]
    async fn unknown_files_are_not_found() {
        for path in ["/ui/nope.js", "/ui/..%2Fdashboard.rs", "/ui/Index.html"] {
            let (status, headers, _) = fetch(path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_security_headers(&headers);
        }
    }

    #[test]
    fn every_asset_is_small_and_has_a_known_type() {
        for asset in ASSETS {
            assert!(!asset.content_type.is_empty());
            assert!(!asset.body.is_empty(), "{} is empty", asset.name);
        }
        // The budget stated in README and docs/dashboard.md.
        assert!(
            total_size() < 150 * 1024,
            "assets are {} bytes",
            total_size()
        );
    }

    #[test]
    fn no_inline_scripts_or_styles_in_the_page() {
        let page = std::str::from_utf8(find("index.html").unwrap().body).unwrap();
        assert!(!page.contains("<script>"), "inline script");
        assert!(!page.contains("style="), "inline style");
        assert!(!page.contains("<style"), "inline style element");
        let handler = regex::Regex::new(r"\son[a-z]+=").unwrap();
        assert!(!handler.is_match(page), "inline event handler");
    }
}
