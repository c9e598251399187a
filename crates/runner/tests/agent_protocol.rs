//! The agent against a scripted management plane: a mock of
//! `corral.v1.RunnerInteractionService` and `gitpod.v1.IdentityService` that
//! records what the runner sends and lets the test push requests down the
//! runner's stream (pings, unknown requests, deletion, floods of SCM work) —
//! things the real server does not send on demand.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use buffa::MessageField;
use connectrpc::{
    ConnectError, RequestContext, Response, ServiceRequest, ServiceResult, ServiceStream,
};
use corral_api::corral::v1::{self as runner_api, RunnerInteractionServiceExt};
use corral_api::gitpod::v1::{self as api, IdentityServiceExt};
use corral_runner::{Config, Error, Logging, Outcome};
use ed25519_dalek::{Signer, SigningKey};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::StreamExt as _;

const EXCHANGE_TOKEN: &str = "crl_ex_good";
const ACCESS_TOKEN: &str = "crl_rt_mock-access";
const RUNNER_ID: &str = "0190a000-0000-7000-8000-000000000001";
const CLIENT_SECRET: &[u8] = b"oauth-client-secret";

#[derive(Default)]
struct Recorded {
    exchanges: usize,
    sign_ups: usize,
    public_key: Vec<u8>,
    schema_version: Option<String>,
    statuses: Vec<runner_api::ReportStatusRequest>,
    watches: usize,
    responses: Vec<(String, Option<String>)>,
    /// Every answer in full, in the order they came.
    answers: Vec<runner_api::RespondRequest>,
    confirmed_deletion: bool,
    disconnected: bool,
    stream: Option<mpsc::UnboundedSender<runner_api::RunnerRequest>>,
    /// While set, ReportStatus fails as if the server were unreachable.
    fail_status: bool,
    failed_statuses: usize,
    /// The release GetLatestRelease offers, and the bytes DownloadRelease sends.
    release: Option<(runner_api::Release, Vec<u8>)>,
}

#[derive(Clone)]
struct Mock {
    recorded: Arc<Mutex<Recorded>>,
    logs_key: Arc<SigningKey>,
    release_key: Arc<SigningKey>,
}

impl Mock {
    fn new() -> Self {
        Self {
            recorded: Arc::default(),
            logs_key: Arc::new(SigningKey::from_bytes(&[9; 32])),
            release_key: Arc::new(SigningKey::from_bytes(&[11; 32])),
        }
    }

    fn rec(&self) -> std::sync::MutexGuard<'_, Recorded> {
        self.recorded.lock().unwrap()
    }

    fn authenticate(&self, ctx: &RequestContext) -> Result<(), ConnectError> {
        let expected = format!("Bearer {ACCESS_TOKEN}");
        match ctx.header("authorization").and_then(|v| v.to_str().ok()) {
            Some(value) if value == expected => Ok(()),
            _ => Err(ConnectError::unauthenticated(
                "runner access token required",
            )),
        }
    }

    fn send(&self, request: runner_api::RunnerRequest) {
        let sender = self.rec().stream.clone().expect("the runner is watching");
        sender.send(request).expect("stream open");
    }

    fn logs_token(&self, runner_id: &str, valid_for: chrono::Duration) -> String {
        let payload = serde_json::json!({
            "runner_id": runner_id,
            "subject_id": "0190a000-0000-7000-8000-0000000000aa",
            "expires_at": (chrono::Utc::now() + valid_for).to_rfc3339(),
        })
        .to_string();
        let signature = self.logs_key.sign(payload.as_bytes());
        format!(
            "crl_lt_{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        )
    }
}

impl api::IdentityService for Mock {
    #[allow(refining_impl_trait)]
    async fn get_authenticated_identity(
        &self,
        _ctx: RequestContext,
        _request: ServiceRequest<'_, api::GetAuthenticatedIdentityRequest>,
    ) -> ServiceResult<api::GetAuthenticatedIdentityResponse> {
        Err(ConnectError::unimplemented("not in the mock"))
    }

    #[allow(refining_impl_trait)]
    async fn exchange_token(
        &self,
        _ctx: RequestContext,
        request: ServiceRequest<'_, api::ExchangeTokenRequest>,
    ) -> ServiceResult<api::ExchangeTokenResponse> {
        let mut rec = self.rec();
        if request.exchange_token != EXCHANGE_TOKEN || rec.exchanges > 0 {
            return Err(ConnectError::unauthenticated(
                "exchange token is invalid, already used or expired",
            ));
        }
        rec.exchanges += 1;
        Response::ok(api::ExchangeTokenResponse {
            access_token: ACCESS_TOKEN.into(),
            ..Default::default()
        })
    }
}

impl runner_api::RunnerInteractionService for Mock {
    #[allow(refining_impl_trait)]
    async fn sign_up(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::SignUpRequest>,
    ) -> ServiceResult<runner_api::SignUpResponse> {
        self.authenticate(&ctx)?;
        let mut rec = self.rec();
        rec.sign_ups += 1;
        rec.public_key = request.public_key.to_vec();
        Response::ok(runner_api::SignUpResponse {
            runner_id: RUNNER_ID.into(),
            logs_token_public_key: self.logs_key.verifying_key().to_bytes().to_vec(),
            release_public_key: self.release_key.verifying_key().to_bytes().to_vec(),
            heartbeat_interval_seconds: 1,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_configuration_schema(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::UpdateConfigurationSchemaRequest>,
    ) -> ServiceResult<runner_api::UpdateConfigurationSchemaResponse> {
        self.authenticate(&ctx)?;
        let schema = request
            .to_owned_message()
            .schema
            .into_option()
            .unwrap_or_default();
        self.rec().schema_version = Some(schema.version);
        Response::ok(Default::default())
    }

    #[allow(refining_impl_trait)]
    async fn report_status(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::ReportStatusRequest>,
    ) -> ServiceResult<runner_api::ReportStatusResponse> {
        self.authenticate(&ctx)?;
        let mut rec = self.rec();
        if rec.fail_status {
            rec.failed_statuses += 1;
            return Err(ConnectError::unavailable("the mock is unreachable"));
        }
        rec.statuses.push(request.to_owned_message());
        Response::ok(runner_api::ReportStatusResponse {
            heartbeat_interval_seconds: 1,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn watch_requests(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::WatchRequestsRequest>,
    ) -> ServiceResult<ServiceStream<runner_api::RunnerRequest>> {
        self.authenticate(&ctx)?;
        let (sender, receiver) = mpsc::unbounded_channel();
        let spec = api::RunnerSpec {
            configuration: MessageField::some(api::RunnerConfiguration {
                log_level: api::LogLevel::LOG_LEVEL_DEBUG.into(),
                metrics: MessageField::some(api::MetricsConfiguration {
                    password: "metrics-password".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        sender
            .send(runner_api::RunnerRequest {
                kind: Some(runner_api::runner_request::Kind::Spec(Box::new(spec))),
                ..Default::default()
            })
            .unwrap();
        let mut rec = self.rec();
        rec.watches += 1;
        rec.stream = Some(sender);
        let stream = tokio_stream::wrappers::UnboundedReceiverStream::new(receiver).map(Ok);
        Response::stream_ok(stream)
    }

    #[allow(refining_impl_trait)]
    async fn respond(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, runner_api::RespondRequest>,
    ) -> ServiceResult<runner_api::RespondResponse> {
        self.authenticate(&ctx)?;
        let failure = request.failure.as_option().map(|f| f.code.to_string());
        let mut rec = self.rec();
        rec.responses
            .push((request.request_id.to_string(), failure));
        rec.answers.push(request.to_owned_message());
        Response::ok(Default::default())
    }

    #[allow(refining_impl_trait)]
    async fn confirm_deletion(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::ConfirmDeletionRequest>,
    ) -> ServiceResult<runner_api::ConfirmDeletionResponse> {
        self.authenticate(&ctx)?;
        self.rec().confirmed_deletion = true;
        Response::ok(Default::default())
    }

    #[allow(refining_impl_trait)]
    async fn disconnect(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::DisconnectRequest>,
    ) -> ServiceResult<runner_api::DisconnectResponse> {
        self.authenticate(&ctx)?;
        self.rec().disconnected = true;
        Response::ok(Default::default())
    }

    #[allow(refining_impl_trait)]
    async fn list_environment_classes(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::ListEnvironmentClassesRequest>,
    ) -> ServiceResult<runner_api::ListEnvironmentClassesResponse> {
        self.authenticate(&ctx)?;
        Response::ok(Default::default())
    }

    #[allow(refining_impl_trait)]
    async fn list_scm_integrations(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::ListSCMIntegrationsRequest>,
    ) -> ServiceResult<runner_api::ListSCMIntegrationsResponse> {
        self.authenticate(&ctx)?;
        let key: [u8; 32] = self.rec().public_key.clone().try_into().unwrap();
        let sealed = corral_runner::PublicKey::from(key)
            .seal(&mut crypto_box::aead::OsRng, CLIENT_SECRET)
            .unwrap();
        Response::ok(runner_api::ListSCMIntegrationsResponse {
            integrations: vec![api::SCMIntegration {
                id: "i-1".into(),
                scm_id: "github".into(),
                host: "github.com".into(),
                oauth: MessageField::some(api::SCMIntegrationOAuthConfig {
                    client_id: "client-id".into(),
                    encrypted_client_secret: sealed,
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_latest_release(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::GetLatestReleaseRequest>,
    ) -> ServiceResult<runner_api::GetLatestReleaseResponse> {
        self.authenticate(&ctx)?;
        let release = self.rec().release.as_ref().map(|(r, _)| r.clone());
        Response::ok(runner_api::GetLatestReleaseResponse {
            release: release.map_or_else(Default::default, MessageField::some),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn download_release(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, runner_api::DownloadReleaseRequest>,
    ) -> ServiceResult<ServiceStream<runner_api::ReleaseChunk>> {
        self.authenticate(&ctx)?;
        let Some((_, bytes)) = self.rec().release.clone() else {
            return Err(ConnectError::not_found("no release is published"));
        };
        let chunks: Vec<Result<runner_api::ReleaseChunk, ConnectError>> = bytes
            .chunks(3)
            .map(|data| {
                Ok(runner_api::ReleaseChunk {
                    data: data.to_vec(),
                    ..Default::default()
                })
            })
            .collect();
        Response::stream_ok(tokio_stream::iter(chunks))
    }
}

async fn start_mock() -> (Mock, String) {
    let mock = Mock::new();
    let router = connectrpc::Router::new();
    let router = <Mock as IdentityServiceExt>::register(Arc::new(mock.clone()), router);
    let router = <Mock as RunnerInteractionServiceExt>::register(Arc::new(mock.clone()), router);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router.into_axum_router())
            .await
            .unwrap()
    });
    (mock, format!("http://{addr}"))
}

fn config(server: &str, exchange_token: Option<&str>, data_dir: &Path) -> Config {
    Config {
        region: "test-region".into(),
        ..Config::new(
            Some(server.to_string()),
            exchange_token.map(str::to_string),
            data_dir.to_path_buf(),
        )
    }
}

/// Polls `check` until it holds (or fails the test after 10 s).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// A minimal HTTP/1.1 GET: (status, body bytes).
async fn http_get(url: &str, bearer: Option<&str>) -> (u16, Vec<u8>) {
    let rest = url.strip_prefix("http://").unwrap();
    let (authority, path) = rest.split_at(rest.find('/').unwrap());
    let addr: SocketAddr = authority.parse().unwrap();
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = bearer
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n{auth}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let head = String::from_utf8_lossy(&response[..head_end]).to_string();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let body = response[head_end + 4..].to_vec();
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{head}"
    );
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_signs_up_answers_requests_serves_logs_and_deletes_itself() {
    let (mock, server) = start_mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("runner");
    let agent = tokio::spawn(corral_runner::run_until(
        config(&server, Some(EXCHANGE_TOKEN), &data_dir),
        Logging::detached(),
        std::future::pending(),
    ));

    eventually("status report and stream", || {
        let rec = mock.rec();
        !rec.statuses.is_empty() && rec.stream.is_some()
    })
    .await;
    let status = mock.rec().statuses[0].clone();
    assert_eq!(
        mock.rec().schema_version.as_deref(),
        Some(corral_contract::schema::SCHEMA_VERSION)
    );
    assert_eq!(status.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(status.region, "test-region");
    assert!(status.healthy, "{}", status.message);
    assert!(
        status.system_details.contains("CPU"),
        "{}",
        status.system_details
    );
    assert!(status.log_url.ends_with("/logs"));
    assert!(status.support_bundle_url.ends_with("/support-bundle"));
    assert!(!status.capabilities.is_empty());

    // Stored credentials: token and key, owner-only.
    let credentials = corral_runner::DataDir::new(&data_dir)
        .load_credentials()
        .unwrap()
        .unwrap();
    assert_eq!(credentials.access_token, ACCESS_TOKEN);
    assert_eq!(credentials.runner_id.as_deref(), Some(RUNNER_ID));

    // Secrets sealed to the runner's public key open with its stored key.
    let key: [u8; 32] = mock.rec().public_key.clone().try_into().unwrap();
    let sealed = corral_runner::PublicKey::from(key)
        .seal(&mut crypto_box::aead::OsRng, b"sealed for the runner")
        .unwrap();
    assert_eq!(
        corral_runner::open_sealed_secret_in(&data_dir, &sealed).unwrap(),
        b"sealed for the runner"
    );

    // Heartbeats follow the server's interval (1 s here).
    eventually("a second heartbeat", || mock.rec().statuses.len() >= 2).await;

    // A ping is answered; a request of an unknown kind is refused as unimplemented.
    mock.send(runner_api::RunnerRequest {
        request_id: "ping-1".into(),
        kind: Some(runner_api::runner_request::Kind::Ping(Box::default())),
        ..Default::default()
    });
    mock.send(runner_api::RunnerRequest {
        request_id: "mystery-1".into(),
        ..Default::default()
    });
    eventually("two answers", || mock.rec().responses.len() >= 2).await;
    let responses = mock.rec().responses.clone();
    assert!(
        responses.contains(&("ping-1".into(), None)),
        "{responses:?}"
    );
    assert!(
        responses.contains(&("mystery-1".into(), Some("unimplemented".into()))),
        "{responses:?}"
    );

    // Logs and the support bundle need a valid logs token for this runner.
    let logs_url = status.log_url.clone();
    let (code, _) = http_get(&logs_url, None).await;
    assert_eq!(code, 401);
    let (code, body) = http_get(
        &logs_url,
        Some(&mock.logs_token(
            "0190a000-0000-7000-8000-000000000002",
            chrono::Duration::minutes(5),
        )),
    )
    .await;
    assert_eq!(
        (code, String::from_utf8_lossy(&body).trim()),
        (401, "logs token is for another runner")
    );
    let (code, _) = http_get(
        &logs_url,
        Some(&mock.logs_token(RUNNER_ID, chrono::Duration::seconds(-5))),
    )
    .await;
    assert_eq!(code, 401);
    let token = mock.logs_token(RUNNER_ID, chrono::Duration::minutes(5));
    let (code, _) = http_get(&logs_url, Some(&token)).await;
    assert_eq!(code, 200);
    let (code, _) = http_get(&format!("{logs_url}?token={token}"), None).await;
    assert_eq!(code, 200);
    let (code, bundle) = http_get(&status.support_bundle_url, Some(&token)).await;
    assert_eq!(code, 200);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bundle.as_slice()));
    let mut names = Vec::new();
    let mut everything = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        names.push(entry.path().unwrap().to_string_lossy().into_owned());
        std::io::Read::read_to_end(&mut entry, &mut everything).unwrap();
    }
    names.sort();
    assert_eq!(names, ["configuration.json", "logs.txt", "versions.txt"]);
    let everything = String::from_utf8_lossy(&everything);
    assert!(everything.contains(RUNNER_ID));
    assert!(
        everything.contains("LOG_LEVEL_DEBUG"),
        "the latest spec is in the bundle"
    );
    for secret in [ACCESS_TOKEN, "metrics-password", "oauth-client-secret"] {
        assert!(!everything.contains(secret), "bundle leaks {secret}");
    }
    assert!(
        everything.contains("\"oauth_client_secret_opens\": true"),
        "{everything}"
    );

    // Deletion: credentials gone, deletion confirmed, agent ends.
    mock.send(runner_api::RunnerRequest {
        kind: Some(runner_api::runner_request::Kind::Delete(Box::default())),
        ..Default::default()
    });
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Deleted);
    assert!(mock.rec().confirmed_deletion);
    assert!(!data_dir.join("credentials.json").exists());
    assert!(!data_dir.join("runner.key").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_data_dir_is_made_private_when_the_runner_starts() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let (mock, server) = start_mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("runner");
    std::fs::create_dir(&data_dir).unwrap();
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(corral_runner::run_until(
        config(&server, Some(EXCHANGE_TOKEN), &data_dir),
        Logging::detached(),
        async move {
            let _ = stopped.await;
        },
    ));
    eventually("the runner watches", || mock.rec().stream.is_some()).await;
    assert_eq!(mode(&data_dir), 0o700);
    assert_eq!(mode(&data_dir.join("credentials.json")), 0o600);
    assert_eq!(mode(&data_dir.join("runner.key")), 0o600);
    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Stopped);

    // Opened up again while stopped: narrowed again on the next start.
    std::fs::set_permissions(&data_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut resumed = config(&server, None, &data_dir);
    resumed.server = None;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(corral_runner::run_until(
        resumed,
        Logging::detached(),
        async move {
            let _ = stopped.await;
        },
    ));
    eventually("the runner watches again", || mock.rec().watches >= 2).await;
    assert_eq!(mode(&data_dir), 0o700);
    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_reconnects_resumes_and_disconnects_on_shutdown() {
    let (mock, server) = start_mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(corral_runner::run_until(
        config(&server, Some(EXCHANGE_TOKEN), tmp.path()),
        Logging::detached(),
        async move {
            let _ = stopped.await;
        },
    ));
    eventually("first stream", || mock.rec().watches == 1).await;

    // The server ends the stream: the runner signs up again and watches again.
    mock.rec().stream = None;
    eventually("second stream", || mock.rec().watches == 2).await;
    assert!(mock.rec().sign_ups >= 2);

    // A failed heartbeat makes the runner distrust its stream and reopen it.
    mock.rec().fail_status = true;
    eventually("a failed heartbeat", || mock.rec().failed_statuses >= 1).await;
    mock.rec().fail_status = false;
    eventually("third stream", || mock.rec().watches == 3).await;

    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Stopped);
    assert!(mock.rec().disconnected);

    // Restarting with only the data dir resumes without exchanging again.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let mut resumed = config(&server, None, tmp.path());
    resumed.server = None;
    let agent = tokio::spawn(corral_runner::run_until(
        resumed,
        Logging::detached(),
        async move {
            let _ = stopped.await;
        },
    ));
    eventually("fourth stream", || mock.rec().watches == 4).await;
    assert_eq!(mock.rec().exchanges, 1);
    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Stopped);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_exchange_token_is_fatal() {
    let (_mock, server) = start_mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        corral_runner::run_until(
            config(&server, Some("crl_ex_used"), tmp.path()),
            Logging::detached(),
            std::future::pending(),
        ),
    )
    .await
    .expect("no retrying forever");
    let error = result.unwrap_err();
    assert!(matches!(error, Error::ExchangeRejected(_)), "{error}");
    assert_eq!(error.exit_code(), 3);
    assert!(error.to_string().contains("already used"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_moves_to_the_next_server_when_one_is_down() {
    let (mock, server) = start_mock().await;
    // A port nothing listens on: the first server is down.
    let down = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", listener.local_addr().unwrap())
    };
    let tmp = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let agent = tokio::spawn(corral_runner::run_until(
        config(
            &format!("{down}, {server}/"),
            Some(EXCHANGE_TOKEN),
            tmp.path(),
        ),
        Logging::detached(),
        async move {
            let _ = stopped.await;
        },
    ));
    // The exchange, the sign-up and the stream all end up at the second server.
    eventually("a stream on the second server", || {
        let rec = mock.rec();
        rec.exchanges == 1 && !rec.statuses.is_empty() && rec.watches >= 1
    })
    .await;
    let credentials = corral_runner::DataDir::new(tmp.path())
        .load_credentials()
        .unwrap()
        .unwrap();
    assert_eq!(credentials.server_url, format!("{down},{server}"));
    stop.send(()).unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), agent)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome.unwrap(), Outcome::Stopped);
}

/// A git server that counts the ref advertisements asked of it and holds
/// every answer until the test releases them: an SCM that is slow for as
/// long as the test wants.
struct HeldGitServer {
    url: String,
    asked: Arc<std::sync::atomic::AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldGitServer {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let counter = asked.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else {
                    return;
                };
                let (counter, mut released) = (counter.clone(), released.clone());
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 1024];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        match stream.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => head.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if released.wait_for(|go| *go).await.is_err() {
                        return;
                    }
                    let body = "001e# service=git-upload-pack\n0000";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/x-git-upload-pack-advertisement\r\n\
                         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = stream.write_all(response.as_bytes()).await;
                });
            }
        });
        Self {
            url,
            asked,
            release,
        }
    }

    fn asked(&self) -> usize {
        self.asked.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// A CheckRepositoryAccess for a repository on `git` (no SCM API: the
/// runner asks git's smart HTTP).
fn access_check(request_id: &str, git: &HeldGitServer) -> runner_api::RunnerRequest {
    runner_api::RunnerRequest {
        request_id: request_id.into(),
        kind: Some(runner_api::runner_request::Kind::Scm(Box::new(
            runner_api::ScmRequest {
                user_id: "0190a000-0000-7000-8000-0000000000aa".into(),
                call: Some(runner_api::scm_request::Call::CheckRepositoryAccess(
                    Box::new(api::CheckRepositoryAccessRequest {
                        repository_url: format!("{}/team/repo.git", git.url),
                        ..Default::default()
                    }),
                )),
                ..Default::default()
            },
        ))),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scm_work_beyond_the_limit_is_turned_away_as_busy() {
    let git = HeldGitServer::start().await;
    let (mock, server) = start_mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let mut config = config(&server, Some(EXCHANGE_TOKEN), tmp.path());
    config.max_scm_requests = 2;
    let agent = tokio::spawn(corral_runner::run_until(
        config,
        Logging::detached(),
        std::future::pending(),
    ));
    eventually("the runner watches", || mock.rec().stream.is_some()).await;

    // A flood: the runner reads them one after another; the first two take
    // both slots (the git server holds their answers), the rest find none.
    const FLOOD: usize = 10;
    for i in 0..FLOOD {
        mock.send(access_check(&format!("scm-{i}"), &git));
    }
    let answers_to = |prefix: &str| -> Vec<runner_api::RespondRequest> {
        mock.rec()
            .answers
            .iter()
            .filter(|a| a.request_id.starts_with(prefix))
            .cloned()
            .collect()
    };
    eventually("every request beyond the limit is answered", || {
        answers_to("scm-").len() >= FLOOD - 2
    })
    .await;
    eventually("the git server is asked twice", || git.asked() >= 2).await;
    let busy = answers_to("scm-");
    assert_eq!(busy.len(), FLOOD - 2, "only the excess is answered yet");
    for answer in &busy {
        let failure = answer.failure.as_option().expect("a failure");
        assert_eq!(failure.code, "resource_exhausted", "{answer:?}");
        assert!(failure.message.contains("busy"), "{}", failure.message);
        assert!(
            !["scm-0", "scm-1"].contains(&answer.request_id.as_str()),
            "{} had a slot",
            answer.request_id
        );
    }
    assert_eq!(git.asked(), 2, "no more SCM work than the limit");

    // The held two finish and succeed.
    git.release.send(true).unwrap();
    eventually("the two held requests are answered", || {
        answers_to("scm-").len() == FLOOD
    })
    .await;
    for id in ["scm-0", "scm-1"] {
        let answer = answers_to(id).pop().unwrap();
        assert!(answer.failure.as_option().is_none(), "{answer:?}");
        match answer.result {
            Some(runner_api::respond_request::Result::CheckRepositoryAccess(access)) => {
                assert!(access.has_access, "{access:?}")
            }
            other => panic!("{id}: unexpected result {other:?}"),
        }
    }

    // With the slots free again, new work is taken.
    mock.send(access_check("again", &git));
    eventually("the next request is answered", || {
        !answers_to("again").is_empty()
    })
    .await;
    assert!(answers_to("again")[0].failure.as_option().is_none());
    assert_eq!(git.asked(), 3);
    agent.abort();
}

/// A release whose signature (by a key that is not the release key) or
/// checksum does not verify is not installed: the executable stays as it
/// was, and the status says why. Auto-update off installs nothing at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_does_not_verify_is_not_installed() {
    use sha2::Digest as _;
    let (mock, server) = start_mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let exe = bin.join("corral");
    std::fs::write(&exe, b"the running executable").unwrap();
    let new = b"\x7fELF the new executable".to_vec();
    let digest: [u8; 32] = sha2::Sha256::digest(&new).into();
    let signed = corral_contract::release::signed_message("stable", "99.0.0", &digest);
    let stranger = SigningKey::from_bytes(&[12; 32]);
    let release = runner_api::Release {
        id: "0190a000-0000-7000-8000-000000000099".into(),
        channel: "stable".into(),
        version: "99.0.0".into(),
        size: new.len() as u64,
        sha256: corral_contract::release::hex(&digest),
        signature: stranger.sign(&signed).to_bytes().to_vec(),
        ..Default::default()
    };
    mock.rec().release = Some((release.clone(), new.clone()));
    let mut config = config(&server, Some(EXCHANGE_TOKEN), &tmp.path().join("runner"));
    config.executable = Some(exe.clone());
    let agent = tokio::spawn(corral_runner::run_until(
        config,
        Logging::detached(),
        std::future::pending(),
    ));
    let note = |mock: &Mock| {
        mock.rec().statuses.last().and_then(|s| {
            s.additional_info
                .iter()
                .find(|f| f.key == "update")
                .map(|f| f.value.clone())
        })
    };
    // The mock's first spec leaves auto-update off.
    eventually("pending: auto-update is off", || {
        note(&mock).is_some_and(|n| n == "update to 99.0.0 pending: auto-update is off")
    })
    .await;

    let auto_update = || api::RunnerSpec {
        configuration: MessageField::some(api::RunnerConfiguration {
            auto_update: true,
            ..Default::default()
        }),
        ..Default::default()
    };
    mock.send(runner_api::RunnerRequest {
        kind: Some(runner_api::runner_request::Kind::Spec(Box::new(
            auto_update(),
        ))),
        ..Default::default()
    });
    eventually("the wrong signature is reported", || {
        note(&mock).is_some_and(|n| {
            n.starts_with("update to 99.0.0 failed") && n.contains("does not verify")
        })
    })
    .await;
    assert_eq!(std::fs::read(&exe).unwrap(), b"the running executable");

    // Signed by the release key, but the bytes are not the ones signed.
    let mut tampered = new.clone();
    tampered[5] ^= 1;
    mock.rec().release = Some((
        runner_api::Release {
            signature: mock.release_key.sign(&signed).to_bytes().to_vec(),
            ..release
        },
        tampered,
    ));
    mock.send(runner_api::RunnerRequest {
        kind: Some(runner_api::runner_request::Kind::Spec(Box::new(
            auto_update(),
        ))),
        ..Default::default()
    });
    eventually("the checksum mismatch is reported", || {
        note(&mock).is_some_and(|n| n.contains("checksum mismatch"))
    })
    .await;
    assert_eq!(std::fs::read(&exe).unwrap(), b"the running executable");
    let left: Vec<_> = std::fs::read_dir(&bin).unwrap().collect();
    assert_eq!(left.len(), 1, "no partial download is left");
    assert!(!agent.is_finished(), "the runner keeps running");
    agent.abort();
}

/// A spec pushed down the stream.
fn spec_with_phase(phase: api::RunnerPhase) -> runner_api::RunnerRequest {
    runner_api::RunnerRequest {
        kind: Some(runner_api::runner_request::Kind::Spec(Box::new(
            api::RunnerSpec {
                desired_phase: phase.into(),
                ..Default::default()
            },
        ))),
        ..Default::default()
    }
}

/// SCM work that reaches a runner after its spec set it inactive (it crossed
/// the change on the way) is refused without touching the SCM; set active
/// again, the runner works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_set_inactive_refuses_scm_work() {
    let git = HeldGitServer::start().await;
    git.release.send(true).unwrap();
    let (mock, server) = start_mock().await;
    let tmp = tempfile::tempdir().unwrap();
    let agent = tokio::spawn(corral_runner::run_until(
        config(&server, Some(EXCHANGE_TOKEN), tmp.path()),
        Logging::detached(),
        std::future::pending(),
    ));
    eventually("the runner watches", || mock.rec().stream.is_some()).await;
    let answer_to = |id: &str| {
        mock.rec()
            .answers
            .iter()
            .find(|a| a.request_id == id)
            .cloned()
    };

    // The stream is read in order: the spec applies before the work.
    mock.send(spec_with_phase(api::RunnerPhase::RUNNER_PHASE_INACTIVE));
    mock.send(access_check("while-inactive", &git));
    eventually("the work is answered", || {
        answer_to("while-inactive").is_some()
    })
    .await;
    let answer = answer_to("while-inactive").unwrap();
    let failure = answer.failure.as_option().expect("a failure");
    assert_eq!(failure.code, "failed_precondition", "{answer:?}");
    assert!(failure.message.contains("inactive"), "{}", failure.message);
    assert_eq!(git.asked(), 0, "the SCM was not asked");

    mock.send(spec_with_phase(api::RunnerPhase::RUNNER_PHASE_ACTIVE));
    mock.send(access_check("active-again", &git));
    eventually("the work is answered", || {
        answer_to("active-again").is_some()
    })
    .await;
    let answer = answer_to("active-again").unwrap();
    assert!(answer.failure.as_option().is_none(), "{answer:?}");
    assert_eq!(git.asked(), 1);
    agent.abort();
}
