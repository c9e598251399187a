//! Test support for the GitHub and Gitea provider tests (theirs alone): a local
//! server, hosts that point at it, and REST-style paging.

#![allow(dead_code)]

use std::collections::HashMap;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, Uri};
use corral_scm::host::ConfiguredHost;
use corral_scm::{Credentials, HostRegistry, Provider, ScmError, ScmHost, ScmKind, provider_for};

/// A fake SCM listening on 127.0.0.1.
pub struct Server {
    pub port: u16,
    /// `http://127.0.0.1:PORT`
    pub base: String,
}

impl Server {
    /// Binds a port, builds the router (which may need the base URL for
    /// `Link` headers and clone URLs) and serves it in the background.
    pub async fn start(router: impl FnOnce(String) -> Router) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let base = format!("http://127.0.0.1:{port}");
        let app = router(base.clone());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Server { port, base }
    }

    /// The host as a runner's SCM integration would configure it.
    pub fn host(&self, kind: ScmKind) -> ScmHost {
        let registry = HostRegistry::new([ConfiguredHost {
            kind,
            host: self.base.clone(),
            virtual_directory: None,
        }])
        .unwrap();
        registry
            .resolve(&format!("127.0.0.1:{}", self.port))
            .expect("the configured host resolves")
    }

    pub fn provider(&self, kind: ScmKind) -> Box<dyn Provider> {
        provider_for(self.host(kind), Duration::from_secs(10))
    }

    /// `host[:port]` as GitContext reports it.
    pub fn host_name(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

pub fn creds(token: &str) -> Credentials {
    Credentials {
        token: token.into(),
        username: None,
    }
}

/// Page and page size from a request's query, as the SCM reads them.
pub fn paging(
    query: &HashMap<String, String>,
    size_key: &str,
    default_size: usize,
    max_size: usize,
) -> (usize, usize) {
    let page = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(1);
    let size = query
        .get(size_key)
        .and_then(|p| p.parse().ok())
        .filter(|p| *p > 0)
        .unwrap_or(default_size)
        .min(max_size);
    (page, size)
}

/// One page of `items`, with the `Link` header GitHub and Gitea send
/// (`next`/`last` while more follow, `first`/`prev` after the first page)
/// and, when `total_header`, Gitea's `x-total-count`.
pub fn paginate<T: Clone>(
    base: &str,
    uri: &Uri,
    items: &[T],
    page: usize,
    size: usize,
    total_header: bool,
) -> (HeaderMap, Vec<T>) {
    let total = items.len();
    let pages = total.div_ceil(size).max(1);
    let start = ((page - 1) * size).min(total);
    let end = (start + size).min(total);
    let link_to = |p: usize| {
        let mut url = url::Url::parse(&format!("{base}{uri}")).unwrap();
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "page")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        url.query_pairs_mut()
            .clear()
            .extend_pairs(pairs)
            .append_pair("page", &p.to_string());
        url.to_string()
    };
    let mut links = Vec::new();
    if page < pages {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(pages)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", link_to(1)));
        links.push(format!(
            "<{}>; rel=\"prev\"",
            link_to((page - 1).min(pages))
        ));
    }
    let mut headers = HeaderMap::new();
    if !links.is_empty() {
        headers.insert("link", HeaderValue::from_str(&links.join(", ")).unwrap());
    }
    if total_header {
        headers.insert("x-total-count", HeaderValue::from(total));
    }
    (headers, items[start..end].to_vec())
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The error's Connect code, for compact assertions.
pub fn code(e: &ScmError) -> &'static str {
    e.code()
}
