//! Talking to the management plane: the Connect clients, the token exchange,
//! which errors are worth retrying, and the reconnect backoff.
//!
//! The management plane may be several replicas, each with its own URL: the
//! runner uses one at a time, in the order given, and moves to the next when
//! the current one fails ([`Connection::fail_over`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use connectrpc::client::{ClientConfig, HttpClient};
use connectrpc::{ConnectError, ErrorCode};
use corral_api::corral::v1::RunnerInteractionServiceClient;
use corral_api::gitpod::v1::{ExchangeTokenRequest, IdentityServiceClient};
use http::Uri;
use rand::Rng;

use crate::Error;

/// Deadline of every unary call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

pub type RunnerClient = RunnerInteractionServiceClient<HttpClient>;

/// Parses and checks the management plane's base URL (`http://host:port` or
/// `https://…`, optionally with a path prefix such as `/api`).
pub fn server_uri(url: &str) -> Result<Uri, Error> {
    let bad = |reason: &str| Error::ServerUrl {
        url: url.to_string(),
        reason: reason.to_string(),
    };
    let uri: Uri = url
        .trim()
        .parse()
        .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(bad("must start with http:// or https://")),
    }
    if uri.authority().is_none() {
        return Err(bad("has no host"));
    }
    Ok(uri)
}

/// Parses a list of management-plane URLs separated by commas (one URL is a
/// list of one); at least one is required.
pub fn server_uris(list: &str) -> Result<Vec<Uri>, Error> {
    let uris = split_servers(list)
        .map(server_uri)
        .collect::<Result<Vec<_>, _>>()?;
    if uris.is_empty() {
        return Err(Error::ServerUrl {
            url: list.to_string(),
            reason: "no URL given".into(),
        });
    }
    Ok(uris)
}

/// The URLs of a comma-separated list, trimmed, without trailing slashes.
pub fn split_servers(list: &str) -> impl Iterator<Item = &str> {
    list.split(',')
        .map(|url| url.trim().trim_end_matches('/'))
        .filter(|url| !url.is_empty())
}

/// Clients for the runner-facing service, authenticated with the access token,
/// one set per management-plane URL; calls go to the current one.
#[derive(Clone)]
pub struct Connection {
    servers: Arc<Vec<ServerClients>>,
    current: Arc<AtomicUsize>,
}

struct ServerClients {
    uri: Uri,
    /// For unary calls, with [`CALL_TIMEOUT`].
    client: RunnerClient,
    /// For the long-lived `WatchRequests` stream: no deadline.
    stream_client: RunnerClient,
}

/// The HTTP clients for management-plane URLs: plain for `http://`, TLS
/// for `https://`, trusting the web's public roots (webpki-roots) and any
/// extra roots the operator gave (`--ca-cert`).
#[derive(Clone)]
pub struct Transport {
    plaintext: HttpClient,
    tls: HttpClient,
}

/// A CA file larger than this is refused unread.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

impl Transport {
    /// Clients trusting the public roots and the PEM certificates in `ca_cert`.
    pub fn new(ca_cert: Option<&std::path::Path>) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = ca_cert {
            let bad =
                |reason: String| Error::Config(format!("--ca-cert {}: {reason}", path.display()));
            let length = std::fs::metadata(path)
                .map_err(|e| bad(e.to_string()))?
                .len();
            if length > MAX_CA_FILE_BYTES {
                return Err(bad(format!("larger than {MAX_CA_FILE_BYTES} bytes")));
            }
            let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
            use rustls_pki_types::pem::PemObject as _;
            let mut added = 0;
            for certificate in rustls_pki_types::CertificateDer::pem_slice_iter(&pem) {
                let certificate = certificate.map_err(|e| bad(e.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|e| bad(format!("not a usable CA certificate: {e}")))?;
                added += 1;
            }
            if added == 0 {
                return Err(bad("holds no PEM certificate".into()));
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        Ok(Self {
            plaintext: HttpClient::plaintext(),
            tls: HttpClient::with_tls(Arc::new(config)),
        })
    }

    /// The client for `uri`'s scheme.
    pub fn client_for(&self, uri: &Uri) -> HttpClient {
        if uri.scheme_str() == Some("https") {
            self.tls.clone()
        } else {
            self.plaintext.clone()
        }
    }
}

impl Connection {
    /// Clients for `servers` (at least one), starting with the first.
    pub fn new(servers: &[Uri], access_token: &str, transport: &Transport) -> Self {
        assert!(!servers.is_empty(), "at least one server");
        let servers = servers
            .iter()
            .map(|uri| {
                let http = transport.client_for(uri);
                let config = ClientConfig::new(uri.clone())
                    .with_default_header("authorization", format!("Bearer {access_token}"));
                ServerClients {
                    uri: uri.clone(),
                    client: RunnerClient::new(
                        http.clone(),
                        config.clone().with_default_timeout(CALL_TIMEOUT),
                    ),
                    stream_client: RunnerClient::new(http.clone(), config),
                }
            })
            .collect();
        Self {
            servers: Arc::new(servers),
            current: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn current(&self) -> &ServerClients {
        &self.servers[self.position()]
    }

    /// Which server calls go to now (an index into the list given to [`Connection::new`]).
    pub fn position(&self) -> usize {
        self.current.load(Ordering::SeqCst)
    }

    /// For unary calls to the current server, with [`CALL_TIMEOUT`].
    pub fn client(&self) -> &RunnerClient {
        &self.current().client
    }

    /// For the long-lived `WatchRequests` stream: no deadline.
    pub fn stream_client(&self) -> &RunnerClient {
        &self.current().stream_client
    }

    /// The server calls go to now.
    pub fn server(&self) -> &Uri {
        &self.current().uri
    }

    /// Moves on from the server at `from` (a [`Connection::position`]) to the
    /// next one (after the last, the first again), and returns it; `None` when
    /// there is only one server, or when the connection already moved on from
    /// `from` (several calls that failed on the same server move it once).
    pub fn fail_over(&self, from: usize) -> Option<&Uri> {
        if self.servers.len() < 2 {
            return None;
        }
        let next = (from + 1) % self.servers.len();
        self.current
            .compare_exchange(from, next, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| &self.servers[next].uri)
    }
}

/// Trades a one-time exchange token for the runner's access token.
pub async fn exchange_token(
    server: &Uri,
    exchange_token: &str,
    transport: &Transport,
) -> Result<String, ConnectError> {
    let client = IdentityServiceClient::new(
        transport.client_for(server),
        ClientConfig::new(server.clone()).with_default_timeout(CALL_TIMEOUT),
    );
    let response = client
        .exchange_token(ExchangeTokenRequest {
            exchange_token: exchange_token.to_string(),
            ..Default::default()
        })
        .await?
        .into_owned();
    Ok(response.access_token)
}

/// Errors that retrying cannot fix: the management plane does not accept our
/// credentials.
pub fn is_rejection(error: &ConnectError) -> bool {
    matches!(
        error.code,
        ErrorCode::Unauthenticated | ErrorCode::PermissionDenied
    )
}

/// Errors that suggest the management plane (or the way to it) is down, rather
/// than a refusal of the request.
pub fn is_outage(error: &ConnectError) -> bool {
    matches!(
        error.code,
        ErrorCode::Unavailable | ErrorCode::DeadlineExceeded | ErrorCode::Unknown
    )
}

/// Errors from the token exchange that retrying cannot fix (used, expired or
/// unknown token; malformed request).
pub fn is_exchange_rejection(error: &ConnectError) -> bool {
    is_rejection(error)
        || matches!(
            error.code,
            ErrorCode::InvalidArgument
                | ErrorCode::NotFound
                | ErrorCode::FailedPrecondition
                | ErrorCode::AlreadyExists
        )
}

/// Exponential backoff with jitter: each delay is drawn from `[base/2, base]`,
/// where `base` starts at [`Backoff::INITIAL`] and doubles up to [`Backoff::MAX`].
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Backoff {
    pub const INITIAL: Duration = Duration::from_millis(200);
    pub const MAX: Duration = Duration::from_secs(5);

    pub fn new() -> Self {
        Self::capped(Self::MAX)
    }

    /// Like [`Backoff::new`], but growing up to `max` instead of [`Backoff::MAX`].
    pub fn capped(max: Duration) -> Self {
        Self {
            base: Self::INITIAL,
            max: max.max(Self::INITIAL),
        }
    }

    /// The next delay to wait; each call (until the cap) doubles the next base.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.base;
        self.base = (self.base * 2).min(self.max);
        let half = base / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=half)
    }

    /// Back to the initial delay (after a success).
    pub fn reset(&mut self) {
        self.base = Self::INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_the_cap_with_jitter_and_resets() {
        let mut backoff = Backoff::new();
        let first = backoff.next_delay();
        assert!(
            first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
            "{first:?}"
        );
        let second = backoff.next_delay();
        assert!(
            second >= Duration::from_millis(200) && second <= Duration::from_millis(400),
            "{second:?}"
        );
        for _ in 0..4 {
            assert!(backoff.next_delay() <= Backoff::MAX);
        }
        // From here on the base is capped: delays stay within [MAX/2, MAX].
        let delays: Vec<Duration> = (0..50).map(|_| backoff.next_delay()).collect();
        assert!(
            delays
                .iter()
                .all(|d| *d <= Backoff::MAX && *d >= Backoff::MAX / 2),
            "{delays:?}"
        );
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "jitter varies the delays"
        );
        backoff.reset();
        assert!(backoff.next_delay() <= Backoff::INITIAL);
    }

    #[test]
    fn server_urls_are_checked() {
        assert!(server_uri("http://127.0.0.1:8080").is_ok());
        assert_eq!(
            server_uri("http://corral.internal/api").unwrap().path(),
            "/api"
        );
        assert!(server_uri("https://corral.example.com").is_ok());
        assert!(server_uri("corral.example.com").is_err());
        assert!(server_uri("ftp://x").is_err());
    }

    #[test]
    fn server_lists_are_parsed_in_order() {
        let uris = server_uris(" http://a:1/, http://b:2 ,,").unwrap();
        let hosts: Vec<_> = uris
            .iter()
            .map(|u| u.authority().unwrap().as_str())
            .collect();
        assert_eq!(hosts, ["a:1", "b:2"]);
        assert!(server_uris(" , ").is_err());
        assert_eq!(server_uris("http://a, https://b").unwrap().len(), 2);
        assert!(server_uris("http://a, ftp://b").is_err());
    }

    #[test]
    fn extra_roots_must_be_pem_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "not a certificate").unwrap();
        let error = Transport::new(Some(&file)).err().unwrap().to_string();
        assert!(error.contains("holds no PEM certificate"), "{error}");
        let missing = dir.path().join("missing.pem");
        let error = Transport::new(Some(&missing)).err().unwrap().to_string();
        assert!(error.contains("missing.pem"), "{error}");
    }

    #[test]
    fn failing_over_cycles_through_the_servers() {
        let one = Connection::new(
            &server_uris("http://a").unwrap(),
            "t",
            &Transport::new(None).unwrap(),
        );
        assert_eq!(one.fail_over(one.position()), None);
        assert_eq!(one.server().host(), Some("a"));
        let three = Connection::new(
            &server_uris("http://a,http://b,http://c").unwrap(),
            "t",
            &Transport::new(None).unwrap(),
        );
        let clone = three.clone();
        assert_eq!(three.server().host(), Some("a"));
        let on_a = three.position();
        assert_eq!(three.fail_over(on_a).unwrap().host(), Some("b"));
        assert_eq!(clone.server().host(), Some("b"), "clones share the choice");
        assert_eq!(
            clone.fail_over(on_a),
            None,
            "a second failure on a moves nothing"
        );
        assert_eq!(three.fail_over(three.position()).unwrap().host(), Some("c"));
        assert_eq!(three.fail_over(three.position()).unwrap().host(), Some("a"));
    }

    #[test]
    fn rejections_are_told_apart_from_outages() {
        let unauthenticated = ConnectError::new(ErrorCode::Unauthenticated, "token used");
        let unavailable = ConnectError::new(ErrorCode::Unavailable, "connection refused");
        assert!(is_rejection(&unauthenticated));
        assert!(!is_rejection(&unavailable));
        assert!(is_exchange_rejection(&ConnectError::new(
            ErrorCode::InvalidArgument,
            "bad"
        )));
        assert!(!is_exchange_rejection(&unavailable));
        assert!(!is_exchange_rejection(&ConnectError::new(
            ErrorCode::Internal,
            "oops"
        )));
    }
}
