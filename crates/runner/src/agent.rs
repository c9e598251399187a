//! The agent's life: get credentials, sign up, publish the schema, report
//! status, then heartbeat and watch for work until told to stop or to delete
//! itself.
//!
//! ```text
//! credentials (exchange or stored) ─► HTTP server for logs ─► register
//!   register = SignUp ─► UpdateConfigurationSchema ─► ReportStatus ─► ListSCMIntegrations
//!   then, concurrently until one ends:
//!     heartbeats: ReportStatus every heartbeat_interval_seconds
//!     updates:    GetLatestRelease at sign-up, on every spec, and every
//!                 --update-check-interval; a newer release (auto-update on,
//!                 inside the window) is downloaded, verified, put in place of
//!                 the executable, and the runner re-executes itself (`update`)
//!     watch:      WatchRequests; on error back off, move to the next server
//!                 (when given several), reconnect and register again
//!     shutdown:   SIGTERM/SIGINT ─► Disconnect ─► exit 0
//!   a `delete` request: remove credentials ─► ConfirmDeletion ─► exit 0
//! ```

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use buffa::MessageField;
use connectrpc::{ConnectError, ErrorCode};
use corral_api::corral::v1::{
    ConfirmDeletionRequest, DisconnectRequest, Failure, ListSCMIntegrationsRequest,
    ReportStatusRequest, RespondRequest, RunnerRequest, SignUpRequest,
    UpdateConfigurationSchemaRequest, WatchRequestsRequest, runner_request::Kind,
};
use corral_api::gitpod::v1::{FieldValue, LogLevel, RunnerCapability, RunnerPhase, RunnerSpec};
use corral_contract::{limits, schema};
use crypto_box::SecretKey;
use ed25519_dalek::VerifyingKey;
use serde_json::json;
use sha2::{Digest, Sha512};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{Instrument as _, debug, error, info, warn};

use crate::bundle::{self, BundleContents};
use crate::connection::{
    self, Backoff, Connection, is_exchange_rejection, is_outage, is_rejection,
};
use crate::credentials::{Credentials, DataDir};
use crate::logs::{LogBuffer, Logging};
use crate::metrics::{self, Metrics, ScmLabels};
use crate::scm_work::{SCM_TIMEOUT, ScmWork};
use crate::update::{self, Checked, UpdateError};
use crate::{Error, open_sealed_secret, system};

/// The runner's version, reported to the management plane.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Heartbeat interval until the management plane names one.
const DEFAULT_HEARTBEAT: Duration = Duration::from_secs(30);

/// SCM requests and OAuth code exchanges the runner works on at once, unless
/// configured otherwise.
pub const DEFAULT_MAX_SCM_REQUESTS: usize = 16;

/// How often, at most, the runner warns that it turned SCM work away.
const BUSY_WARNING_INTERVAL: Duration = Duration::from_secs(60);

/// What this runner can do beyond the basics: exactly the optional calls it
/// serves (`scm_work` answers ListSCMOrganizations and CheckRepositoryAccess).
/// It does not read SCM integrations from a local configuration
/// (FETCH_LOCAL_SCM_INTEGRATIONS): it lists the management plane's.
pub const CAPABILITIES: &[RunnerCapability] = &[
    RunnerCapability::RUNNER_CAPABILITY_LIST_SCM_ORGANIZATIONS,
    RunnerCapability::RUNNER_CAPABILITY_CHECK_REPOSITORY_ACCESS,
];

/// How the agent is started (the `corral runner` flags).
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL of the management plane, or several separated by commas (its
    /// replicas, in order of preference); may be omitted when stored
    /// credentials name them.
    pub server: Option<String>,
    /// One-time token from CreateRunner / CreateRunnerToken.
    pub exchange_token: Option<String>,
    pub data_dir: PathBuf,
    /// Address of the logs server (port 0 picks a free one).
    pub listen: SocketAddr,
    pub region: String,
    /// SCM requests and OAuth code exchanges worked on at once (at least 1);
    /// one arriving while all are taken is answered `resource_exhausted`.
    pub max_scm_requests: usize,
    /// Base URL under which operators reach the logs server (`--advertise-url`,
    /// checked by [`advertised_base_url`]); `None`: the bound address.
    pub advertise_url: Option<String>,
    /// Reported as the runner's additional_info (`--info key=value`, each
    /// checked by [`parse_info`]).
    pub info: Vec<(String, String)>,
    /// How often metrics are pushed while enabled; clamped to 15–60 s.
    pub metrics_interval: Duration,
    /// The runner's own executable, which a self-update replaces before the
    /// runner re-executes it; `None` never updates (the agent run as a library).
    pub executable: Option<PathBuf>,
    /// How often to look for a new release besides at sign-up and on spec changes.
    pub update_check_interval: Duration,
    /// PEM certificates trusted for `https://` servers besides the public roots
    /// (`--ca-cert`, e.g. a private CA or a self-signed certificate).
    pub ca_cert: Option<PathBuf>,
}

impl Config {
    /// A configuration with the defaults for everything but the essentials.
    pub fn new(server: Option<String>, exchange_token: Option<String>, data_dir: PathBuf) -> Self {
        Self {
            server,
            exchange_token,
            data_dir,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            region: String::new(),
            max_scm_requests: DEFAULT_MAX_SCM_REQUESTS,
            advertise_url: None,
            info: Vec::new(),
            metrics_interval: metrics::DEFAULT_INTERVAL,
            executable: None,
            update_check_interval: update::DEFAULT_CHECK_INTERVAL,
            ca_cert: None,
        }
    }
}

/// One `--info key=value`: a non-empty key and a value within the caps on
/// additional_info.
pub fn parse_info(entry: &str) -> Result<(String, String), String> {
    let (key, value) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not key=value"))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(format!("{entry:?} has an empty key"));
    }
    if key.len() > limits::ADDITIONAL_INFO_KEY_MAX_BYTES {
        return Err(format!(
            "the key {key:?} is longer than {} bytes",
            limits::ADDITIONAL_INFO_KEY_MAX_BYTES
        ));
    }
    if value.len() > limits::ADDITIONAL_INFO_VALUE_MAX_BYTES {
        return Err(format!(
            "the value of {key:?} is longer than {} bytes",
            limits::ADDITIONAL_INFO_VALUE_MAX_BYTES
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

/// The additional_info key under which the runner says why it is not taking
/// an update; one entry of additional_info is kept free for it.
pub const UPDATE_INFO_KEY: &str = "update";

/// Checks a whole `--info` list: at most the entries additional_info holds
/// less the one for the update note, each key once.
pub fn check_info(info: &[(String, String)]) -> Result<(), String> {
    let most = limits::ADDITIONAL_INFO_MAX_ENTRIES - 1;
    if info.len() > most {
        return Err(format!("at most {most} --info entries, not {}", info.len()));
    }
    for (i, (key, _)) in info.iter().enumerate() {
        if key == UPDATE_INFO_KEY {
            return Err(format!(
                "--info {UPDATE_INFO_KEY} is taken: the runner reports its pending update there"
            ));
        }
        if info[..i].iter().any(|(k, _)| k == key) {
            return Err(format!("--info {key} is given twice"));
        }
    }
    Ok(())
}

/// The longest path the runner appends to its advertised URL.
const LONGEST_LOGS_PATH: &str = "/support-bundle";

/// An `--advertise-url`: an http(s) URL without query or fragment, short
/// enough for log_url and support_bundle_url; returned without a trailing `/`.
pub fn advertised_base_url(url: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| format!("{url:?} must start with http:// or https://"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("{url:?} names no host"));
    }
    if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!(
            "{url:?} must be a plain base URL (no query, fragment or spaces)"
        ));
    }
    if url.len() + LONGEST_LOGS_PATH.len() > limits::URL_MAX_BYTES {
        return Err(format!(
            "{url:?} is too long: log URLs are at most {} bytes",
            limits::URL_MAX_BYTES
        ));
    }
    Ok(url.to_string())
}

/// SCM work the server sends, run by [`Agent::start_scm_job`].
enum ScmJob {
    Call(Box<corral_api::corral::v1::ScmRequest>),
    CodeExchange(Box<corral_api::corral::v1::OAuthCodeExchange>),
}

/// How the agent ended without error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Stopped by a signal (or the caller's shutdown future) after disconnecting.
    Stopped,
    /// The management plane deleted the runner; its credentials are gone.
    Deleted,
}

/// A summary of one SCM integration, for the support bundle (no secrets).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScmIntegrationSummary {
    pub id: String,
    pub scm_id: String,
    pub host: String,
    pub pat: bool,
    pub oauth_client_id: Option<String>,
    /// Whether the sealed OAuth client secret opens with this runner's key.
    pub oauth_client_secret_opens: Option<bool>,
}

/// State shared between the agent and its logs server.
pub struct Shared {
    pub(crate) logs: LogBuffer,
    region: String,
    server_url: String,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    runner_id: Option<String>,
    logs_key: Option<VerifyingKey>,
    /// The key that signs releases, from sign-up.
    release_key: Option<VerifyingKey>,
    /// Why a newer release is not installed (pending, or failed), reported
    /// in the status.
    update_note: Option<String>,
    spec: Option<RunnerSpec>,
    scm_integrations: Vec<ScmIntegrationSummary>,
    heartbeat: Option<Duration>,
    healthy: Option<bool>,
    /// Round trip of the latest call to the current replica timed: SignUp,
    /// then each ReportStatus; sent as the next report's latency.
    status_round_trip: Option<Duration>,
}

impl Shared {
    fn new(logs: LogBuffer, region: String, server_url: String) -> Self {
        Self {
            logs,
            region,
            server_url,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn runner_id(&self) -> Option<String> {
        self.state().runner_id.clone()
    }

    /// The key that signs logs tokens and this runner's id, once signed up.
    pub fn logs_verifier(&self) -> Option<(VerifyingKey, String)> {
        let state = self.state();
        Some((state.logs_key?, state.runner_id.clone()?))
    }

    pub fn latest_spec(&self) -> Option<RunnerSpec> {
        self.state().spec.clone()
    }

    fn heartbeat_interval(&self) -> Duration {
        self.state().heartbeat.unwrap_or(DEFAULT_HEARTBEAT)
    }

    fn set_heartbeat_interval(&self, seconds: u32) {
        if seconds > 0 {
            self.state().heartbeat = Some(Duration::from_secs(seconds.into()));
        }
    }

    /// What goes into a support bundle right now.
    pub fn bundle_contents(&self) -> BundleContents {
        let state = self.state();
        let versions = format!(
            "corral-runner {}\nprotocol corral.v1.RunnerInteractionService\nconfiguration schema {}\nsystem {}\n",
            update::running_version(),
            schema::SCHEMA_VERSION,
            system::system_details()
        );
        let extra = json!({
            "region": self.region,
            "server_url": self.server_url,
            "heartbeat_interval_seconds": state.heartbeat.unwrap_or(DEFAULT_HEARTBEAT).as_secs(),
            "healthy": state.healthy,
            "scm_integrations": state.scm_integrations,
        });
        BundleContents {
            versions,
            configuration: bundle::configuration_json(
                state.runner_id.as_deref(),
                state.spec.as_ref(),
                extra,
            ),
            logs: self.logs.text(),
        }
    }
}

/// Runs the agent until SIGTERM/SIGINT, deletion, or a fatal error.
pub async fn run(config: Config, logging: Logging) -> Result<Outcome, Error> {
    run_until(config, logging, shutdown_signal()).await
}

/// Runs the agent until `shutdown` completes (then it disconnects), deletion,
/// or a fatal error.
pub async fn run_until(
    config: Config,
    logging: Logging,
    shutdown: impl Future<Output = ()>,
) -> Result<Outcome, Error> {
    let mut shutdown = std::pin::pin!(shutdown);
    let transport = connection::Transport::new(config.ca_cert.as_deref())?;
    let dir = DataDir::new(&config.data_dir);
    if let Some(old) = dir.make_private()? {
        info!(
            "made the data dir {} private: mode {old:04o} -> 0700",
            dir.path().display()
        );
    }
    let credentials = tokio::select! {
        credentials = obtain_credentials(&config, &dir, &transport) => credentials?,
        () = &mut shutdown => return Ok(Outcome::Stopped),
    };
    let servers = connection::server_uris(&credentials.server_url)?;
    let key = dir.load_or_create_secret_key()?;
    let shared = Arc::new(Shared::new(
        logging.buffer().clone(),
        config.region.clone(),
        credentials.server_url.clone(),
    ));
    if let Some(id) = &credentials.runner_id {
        shared.state().runner_id = Some(id.clone());
    }

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::io(format!("listening on {}", config.listen), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("reading the logs server address", e))?;
    let base_url = match &config.advertise_url {
        Some(url) => advertised_base_url(url).map_err(Error::Config)?,
        None => public_base_url(addr),
    };
    info!("serving logs at {base_url}/logs and a support bundle at {base_url}/support-bundle");
    let metrics = Arc::new(Metrics::new(VERSION));
    let router = crate::logs::router(shared.clone()).merge(metrics::router(metrics.clone()));
    let http = tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router).await {
            error!("logs server stopped: {e}");
        }
    });

    let metrics_interval = metrics::clamp_interval(config.metrics_interval);
    if metrics_interval != config.metrics_interval {
        warn!(
            "--metrics-interval {:?} is outside {:?}–{:?}: pushing metrics every {metrics_interval:?}",
            config.metrics_interval,
            metrics::MIN_INTERVAL,
            metrics::MAX_INTERVAL
        );
    }
    let (metrics_targets, targets) = tokio::sync::watch::channel(None);
    let (runner_id_tx, runner_id) =
        tokio::sync::watch::channel(credentials.runner_id.clone().unwrap_or_default());
    let pusher = tokio::spawn(
        metrics::Pusher {
            metrics: metrics.clone(),
            runner_id,
            interval: metrics_interval,
        }
        .run(targets),
    );

    let agent = Agent {
        conn: Connection::new(&servers, &credentials.access_token, &transport),
        dir,
        key: Arc::new(key),
        shared,
        logging,
        credentials: Arc::new(Mutex::new(credentials)),
        log_url: format!("{base_url}/logs"),
        support_bundle_url: format!("{base_url}/support-bundle"),
        region: config.region,
        info: config.info,
        metrics,
        metrics_targets: Arc::new(metrics_targets),
        runner_id: Arc::new(runner_id_tx),
        stream_suspect: Arc::new(tokio::sync::Notify::new()),
        scm_slots: Arc::new(Semaphore::new(config.max_scm_requests.max(1))),
        max_scm_requests: config.max_scm_requests.max(1),
        last_busy_warning: Arc::new(Mutex::new(None)),
        executable: config.executable.map(Arc::new),
        update_check_interval: config.update_check_interval,
        updating: Arc::new(tokio::sync::Mutex::new(())),
    };
    let outcome = tokio::select! {
        outcome = agent.main_loop() => outcome,
        () = &mut shutdown => {
            info!("stopping: telling the management plane");
            agent.disconnect().await;
            Ok(Outcome::Stopped)
        }
    };
    http.abort();
    pusher.abort();
    outcome
}

/// Waits for SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                warn!("cannot watch for SIGTERM: {e}");
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
        };
    tokio::select! {
        _ = terminate.recv() => info!("received SIGTERM"),
        _ = tokio::signal::ctrl_c() => info!("received SIGINT"),
    }
}

/// The URL under which the logs server is reachable: the bound address, with
/// the host name in place of an unspecified (all-interfaces) address.
fn public_base_url(addr: SocketAddr) -> String {
    if addr.ip().is_unspecified() {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        format!("http://{host}:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

fn token_fingerprint(token: &str) -> String {
    Sha512::digest(token.trim().as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Credentials from the exchange token if given, else from the data dir.
///
/// An exchange token this data dir already exchanged (same fingerprint) is not
/// exchanged again, so a service unit that keeps `--exchange-token` restarts.
async fn obtain_credentials(
    config: &Config,
    dir: &DataDir,
    transport: &connection::Transport,
) -> Result<Credentials, Error> {
    let stored = dir.load_credentials()?;
    let server_url = match (&config.server, &stored) {
        // Several URLs are kept as one comma-separated list.
        (Some(urls), _) => connection::split_servers(urls)
            .collect::<Vec<_>>()
            .join(","),
        (None, Some(stored)) => stored.server_url.clone(),
        (None, None) => return Err(Error::NotRegistered(dir.path().to_path_buf())),
    };
    let servers = connection::server_uris(&server_url)?;

    if let Some(exchange_token) = &config.exchange_token {
        let fingerprint = token_fingerprint(exchange_token);
        if let Some(stored) = stored.as_ref().filter(|c| {
            c.exchanged_token.as_deref() == Some(fingerprint.as_str())
                && shares_a_server(&c.server_url, &server_url)
        }) {
            info!(
                "this exchange token was already exchanged; resuming with the stored credentials"
            );
            let mut stored = stored.clone();
            if stored.server_url != server_url {
                stored.server_url = server_url;
                dir.save_credentials(&stored)?;
            }
            return Ok(stored);
        }
        // The token works once: make sure the access token can be kept first.
        DataDir::create(dir.path())?.probe_writable()?;
        let mut backoff = Backoff::new();
        let mut attempt = 0;
        let access_token = loop {
            // Each server in turn: any replica of the management plane can exchange it.
            let server = &servers[attempt % servers.len()];
            attempt += 1;
            match connection::exchange_token(server, exchange_token, transport).await {
                Ok(token) => break token,
                Err(e) if is_exchange_rejection(&e) => {
                    return Err(Error::ExchangeRejected(describe(&e)));
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(
                        "could not exchange the token at {server} ({}); retrying in {delay:?}",
                        describe(&e)
                    );
                    tokio::time::sleep(delay).await;
                }
            }
        };
        let credentials = Credentials {
            server_url,
            runner_id: None,
            access_token,
            exchanged_token: Some(fingerprint),
        };
        dir.save_credentials(&credentials)?;
        info!(
            "exchanged the token; credentials stored in {}",
            dir.credentials_path().display()
        );
        return Ok(credentials);
    }

    match stored {
        Some(mut credentials) => {
            if credentials.server_url != server_url {
                credentials.server_url = server_url;
                dir.save_credentials(&credentials)?;
            }
            info!(
                "resuming with the credentials in {}",
                dir.credentials_path().display()
            );
            Ok(credentials)
        }
        None => Err(Error::NotRegistered(dir.path().to_path_buf())),
    }
}

/// Whether two comma-separated lists of server URLs name a server in common.
fn shares_a_server(a: &str, b: &str) -> bool {
    connection::split_servers(a).any(|x| connection::split_servers(b).any(|y| x == y))
}

/// How an answer went, for metrics: `ok` or the failure's code.
fn outcome(answer: &RespondRequest) -> String {
    answer
        .failure
        .as_option()
        .map(|f| f.code.clone())
        .unwrap_or_else(|| "ok".into())
}

/// A ConnectError as one line (code and message), with the causes the
/// message leaves out (a transport failure's "client error (connect)" has
/// the TLS or socket error beneath it).
fn describe(e: &ConnectError) -> String {
    let mut line = match &e.message {
        Some(message) => format!("{}: {message}", e.code.as_str()),
        None => e.code.as_str().to_string(),
    };
    let mut cause = std::error::Error::source(e);
    while let Some(error) = cause {
        let text = error.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        cause = error.source();
    }
    line
}

#[derive(Clone)]
struct Agent {
    conn: Connection,
    dir: DataDir,
    key: Arc<SecretKey>,
    shared: Arc<Shared>,
    logging: Logging,
    credentials: Arc<Mutex<Credentials>>,
    log_url: String,
    support_bundle_url: String,
    region: String,
    info: Vec<(String, String)>,
    metrics: Arc<Metrics>,
    /// Where metrics go (from the spec); the pusher task watches it.
    metrics_targets: Arc<tokio::sync::watch::Sender<Option<metrics::Target>>>,
    /// The runner id for the metrics' labels.
    runner_id: Arc<tokio::sync::watch::Sender<String>>,
    /// Signalled when a heartbeat cannot reach the management plane: the
    /// request stream may be dead without having noticed (e.g. a network
    /// partition), so the watch loop reopens it.
    stream_suspect: Arc<tokio::sync::Notify>,
    /// One permit per SCM request or OAuth code exchange being worked on.
    scm_slots: Arc<Semaphore>,
    max_scm_requests: usize,
    /// When the runner last warned that it turned SCM work away.
    last_busy_warning: Arc<Mutex<Option<Instant>>>,
    /// The executable a self-update replaces; `None`: no self-updates.
    executable: Option<Arc<PathBuf>>,
    update_check_interval: Duration,
    /// Held while looking for (and installing) an update: one at a time.
    updating: Arc<tokio::sync::Mutex<()>>,
}

impl Agent {
    async fn main_loop(&self) -> Result<Outcome, Error> {
        let mut backoff = Backoff::new();
        loop {
            let server = self.conn.position();
            match self.register().await {
                Ok(()) => break,
                Err(e) if is_rejection(&e) => return Err(Error::AccessRejected(describe(&e))),
                Err(e) => {
                    let delay = backoff.next_delay();
                    warn!(
                        "could not sign up with the management plane at {} ({}); retrying in {delay:?}",
                        self.conn.server(),
                        describe(&e)
                    );
                    self.fail_over(server);
                    tokio::time::sleep(delay).await;
                }
            }
        }
        tokio::select! {
            outcome = self.heartbeat_loop() => outcome,
            outcome = self.watch_loop() => outcome,
            outcome = self.update_loop() => outcome,
        }
    }

    /// SignUp, UpdateConfigurationSchema, ReportStatus, then a look at the
    /// SCM integrations.
    async fn register(&self) -> Result<(), ConnectError> {
        let sent = Instant::now();
        let response = self
            .conn
            .client()
            .sign_up(SignUpRequest {
                public_key: self.key.public_key().as_bytes().to_vec(),
                ..Default::default()
            })
            .await?
            .into_owned();
        // The first report's latency: no report has been timed on this replica yet.
        self.shared.state().status_round_trip = Some(sent.elapsed());
        let logs_key = <[u8; 32]>::try_from(response.logs_token_public_key.as_slice())
            .ok()
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok());
        if logs_key.is_none() {
            warn!("the management plane sent no valid logs token key; logs cannot be served");
        }
        let release_key = <[u8; 32]>::try_from(response.release_public_key.as_slice())
            .ok()
            .and_then(|bytes| VerifyingKey::from_bytes(&bytes).ok());
        if release_key.is_none() {
            warn!(
                "the management plane sent no valid release key; the runner cannot update itself"
            );
        }
        {
            let mut state = self.shared.state();
            state.runner_id = Some(response.runner_id.clone());
            state.logs_key = logs_key;
            state.release_key = release_key;
        }
        self.shared
            .set_heartbeat_interval(response.heartbeat_interval_seconds);
        self.remember_runner_id(&response.runner_id);
        self.runner_id.send_replace(response.runner_id.clone());
        info!(
            "signed up as runner {} (heartbeat every {}s)",
            response.runner_id,
            self.shared.heartbeat_interval().as_secs()
        );

        let schema = UpdateConfigurationSchemaRequest {
            schema: MessageField::some(schema::linux_host_schema()),
            ..Default::default()
        };
        match self.conn.client().update_configuration_schema(schema).await {
            Ok(_) => debug!("configuration schema {} uploaded", schema::SCHEMA_VERSION),
            Err(e) if e.code == ErrorCode::Unimplemented => {
                warn!("the management plane does not take configuration schemas")
            }
            Err(e) => return Err(e),
        }
        self.report_status().await?;
        let agent = self.clone();
        tokio::spawn(async move { agent.check_scm_integrations().await });
        let agent = self.clone();
        tokio::spawn(async move { agent.check_for_update().await });
        Ok(())
    }

    /// Moves on from the management-plane URL at `from` (a position of
    /// `self.conn`) to the next, when there are several.
    fn fail_over(&self, from: usize) {
        if let Some(next) = self.conn.fail_over(from) {
            info!("moving to the management plane at {next}");
        }
    }

    fn remember_runner_id(&self, runner_id: &str) {
        let mut credentials = self.credentials.lock().unwrap_or_else(|e| e.into_inner());
        if credentials.runner_id.as_deref() == Some(runner_id) {
            return;
        }
        credentials.runner_id = Some(runner_id.to_string());
        if let Err(e) = self.dir.save_credentials(&credentials) {
            warn!("could not store the runner id: {e}");
        }
    }

    /// One status report; also the heartbeat. Checks that the data dir is
    /// writable and reports unhealthy (DEGRADED) if not.
    /// The region to report: `--region`, else the spec's region hint (an
    /// operator who set it knows better than nothing).
    fn reported_region(&self) -> String {
        if !self.region.is_empty() {
            return self.region.clone();
        }
        self.shared
            .state()
            .spec
            .as_ref()
            .and_then(|spec| spec.configuration.as_option())
            .map(|c| c.region.clone())
            .unwrap_or_default()
    }

    async fn report_status(&self) -> Result<(), ConnectError> {
        let update_note = self.shared.state().update_note.clone();
        let (healthy, message) = match self.dir.probe_writable() {
            // A healthy runner's message says what holds an update back.
            Ok(()) => (true, update_note.clone().unwrap_or_default()),
            Err(e) => (false, e.to_string()),
        };
        let was_healthy = self.shared.state().healthy.replace(healthy);
        match (was_healthy, healthy) {
            (Some(true) | None, false) => warn!("reporting unhealthy: {message}"),
            (Some(false), true) => info!("healthy again"),
            _ => {}
        }
        let latency_micros = self
            .shared
            .state()
            .status_round_trip
            .map(|d| u32::try_from(d.as_micros()).unwrap_or(u32::MAX))
            .unwrap_or(0);
        let region = self.reported_region();
        let mut request = ReportStatusRequest {
            version: update::running_version().into(),
            region,
            system_details: system::system_details(),
            capabilities: CAPABILITIES.iter().map(|c| (*c).into()).collect(),
            log_url: self.log_url.clone(),
            support_bundle_url: self.support_bundle_url.clone(),
            healthy,
            message,
            // The update note first: it is ours, the rest are the operator's
            // (`check_info` leaves it a slot).
            additional_info: update_note
                .map(|note| FieldValue {
                    key: UPDATE_INFO_KEY.into(),
                    value: note,
                    ..Default::default()
                })
                .into_iter()
                .chain(self.info.iter().map(|(key, value)| FieldValue {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                }))
                .collect(),
            latency_micros,
            ..Default::default()
        };
        // Shortened rather than refused when something runs long (an error
        // message, an unusual host summary).
        limits::fit_status_report(&mut request);
        let sent = Instant::now();
        let response = self
            .conn
            .client()
            .report_status(request)
            .await?
            .into_owned();
        self.shared.state().status_round_trip = Some(sent.elapsed());
        self.shared
            .set_heartbeat_interval(response.heartbeat_interval_seconds);
        Ok(())
    }

    /// Reports status every heartbeat interval; ends only on a rejection.
    async fn heartbeat_loop(&self) -> Result<Outcome, Error> {
        loop {
            let due = Instant::now() + self.shared.heartbeat_interval();
            tokio::time::sleep_until(due.into()).await;
            match self.report_status().await {
                Ok(()) => {
                    debug!("heartbeat sent");
                    self.metrics
                        .record_heartbeat_lag(Instant::now().saturating_duration_since(due));
                    // Integrations change without a new spec: look again.
                    let agent = self.clone();
                    tokio::spawn(async move { agent.check_scm_integrations().await });
                }
                Err(e) if is_rejection(&e) => return Err(Error::AccessRejected(describe(&e))),
                Err(e) => {
                    warn!("heartbeat failed: {}", describe(&e));
                    if is_outage(&e) {
                        self.stream_suspect.notify_waiters();
                    }
                }
            }
        }
    }

    /// Looks for an update every `update_check_interval`; never ends.
    async fn update_loop(&self) -> Result<Outcome, Error> {
        loop {
            tokio::time::sleep(self.update_check_interval).await;
            self.check_for_update().await;
        }
    }

    /// Looks for a newer release and installs it when the spec allows (then
    /// the process re-executes itself and this never returns). Records why
    /// not, and reports it at once when that changed.
    async fn check_for_update(&self) {
        let Some(exe) = self.executable.clone() else {
            return;
        };
        let _one_at_a_time = self.updating.lock().await;
        let (key, spec) = {
            let state = self.shared.state();
            (state.release_key, state.spec.clone())
        };
        // Without the spec (it comes first on the stream) the runner cannot
        // know its channel; the spec's arrival checks again.
        let (Some(key), Some(spec)) = (key, spec) else {
            return;
        };
        let policy = update::Policy::from_spec(&spec);
        let note = match update::check(&self.conn, &key, &policy, &exe).await {
            Ok(Checked::UpToDate) => None,
            Ok(Checked::Pending(why)) => Some(why),
            Ok(Checked::Installed { version }) => {
                info!("installed corral-runner {version}; restarting into it");
                let error = update::restart(&exe);
                Some(format!(
                    "update to {version} installed but the restart failed: {error}"
                ))
            }
            Err(UpdateError::Lookup(why)) => {
                debug!("could not look for updates: {why}");
                return;
            }
            Err(e) => Some(e.to_string()),
        };
        let changed = {
            let mut state = self.shared.state();
            let changed = state.update_note != note;
            state.update_note = note.clone();
            changed
        };
        if changed {
            match &note {
                Some(note) => warn!("{note}"),
                None => info!("no update pending"),
            }
            if let Err(e) = self.report_status().await {
                debug!("could not report the update status: {}", describe(&e));
            }
        }
    }

    /// Keeps WatchRequests open, reconnecting (and registering again) with
    /// backoff after errors; ends on deletion or a rejection.
    async fn watch_loop(&self) -> Result<Outcome, Error> {
        let mut backoff = Backoff::new();
        let mut reconnecting = false;
        loop {
            let server = self.conn.position();
            if reconnecting {
                match self.register().await {
                    Ok(()) => info!(
                        "reconnected to the management plane at {}",
                        self.conn.server()
                    ),
                    Err(e) if is_rejection(&e) => return Err(Error::AccessRejected(describe(&e))),
                    Err(e) => {
                        let delay = backoff.next_delay();
                        warn!(
                            "could not reconnect to {} ({}); retrying in {delay:?}",
                            self.conn.server(),
                            describe(&e)
                        );
                        self.fail_over(server);
                        tokio::time::sleep(delay).await;
                        continue;
                    }
                }
            }
            if reconnecting {
                self.metrics.record_stream_reconnect();
            }
            reconnecting = true;
            match self
                .conn
                .stream_client()
                .watch_requests(WatchRequestsRequest::default())
                .await
            {
                Ok(mut stream) => {
                    debug!("watching for requests");
                    self.metrics.record_connected(true);
                    // However the loop ends, the stream is gone.
                    let _disconnected = OnDrop(|| self.metrics.record_connected(false));
                    loop {
                        let next = tokio::select! {
                            next = stream.message() => next,
                            () = self.stream_suspect.notified() => {
                                info!("reopening the request stream after a failed heartbeat");
                                break;
                            }
                        };
                        match next {
                            Ok(Some(message)) => {
                                backoff.reset();
                                let request: RunnerRequest = message.to_owned_message();
                                if let Some(outcome) = self.handle(request).await {
                                    return Ok(outcome);
                                }
                            }
                            Ok(None) => {
                                info!("the management plane closed the request stream");
                                break;
                            }
                            Err(e) if is_rejection(&e) => {
                                return Err(Error::AccessRejected(describe(&e)));
                            }
                            Err(e) => {
                                warn!("request stream broke: {}", describe(&e));
                                break;
                            }
                        }
                    }
                }
                Err(e) if is_rejection(&e) => return Err(Error::AccessRejected(describe(&e))),
                Err(e) => warn!("could not open the request stream: {}", describe(&e)),
            }
            // The stream failed or ended (a replica stopping ends it): another
            // replica, if there are several, is the better bet.
            self.fail_over(server);
            let delay = backoff.next_delay();
            debug!("reconnecting in {delay:?}");
            tokio::time::sleep(delay).await;
        }
    }

    /// Handles one request from the stream; `Some` ends the agent. Its log
    /// lines (also of work it spawns) carry the request's id and the id of
    /// the API request that caused it, as the server logs it.
    async fn handle(&self, request: RunnerRequest) -> Option<Outcome> {
        let span = tracing::info_span!(
            "runner_request",
            request_id = tracing::field::Empty,
            origin_request_id = tracing::field::Empty,
        );
        // Pushes (a spec, a deletion) have no ids: their lines stay short.
        for (field, id) in [
            ("request_id", &request.request_id),
            ("origin_request_id", &request.origin_request_id),
        ] {
            if !id.is_empty() {
                span.record(field, id.as_str());
            }
        }
        self.handle_in_span(request).instrument(span).await
    }

    async fn handle_in_span(&self, request: RunnerRequest) -> Option<Outcome> {
        self.metrics.record_request(match &request.kind {
            Some(Kind::Spec(_)) => "spec",
            Some(Kind::Ping(_)) => "ping",
            Some(Kind::Delete(_)) => "delete",
            Some(Kind::Scm(_)) => "scm",
            Some(Kind::OauthCodeExchange(_)) => "oauth_code_exchange",
            None => "unknown",
        });
        let request_id = request.request_id;
        match request.kind {
            Some(Kind::Spec(spec)) => {
                let region_before = self.reported_region();
                self.apply_spec(*spec, &request.sealed_metrics_password);
                if !request_id.is_empty() {
                    self.respond(request_id, None).await;
                }
                if self.reported_region() != region_before {
                    // The region hint is what this runner reports: say so now,
                    // not a heartbeat later.
                    let agent = self.clone();
                    tokio::spawn(async move {
                        if let Err(e) = agent.report_status().await {
                            debug!(
                                "status report after a new region hint failed: {}",
                                describe(&e)
                            );
                        }
                    });
                }
                let agent = self.clone();
                tokio::spawn(async move { agent.check_scm_integrations().await });
                // Auto-update, channel or window may have changed.
                let agent = self.clone();
                tokio::spawn(async move { agent.check_for_update().await });
                None
            }
            Some(Kind::Ping(_)) => {
                debug!("ping {request_id}");
                self.respond(request_id, None).await;
                None
            }
            Some(Kind::Delete(_)) => {
                self.delete().await;
                Some(Outcome::Deleted)
            }
            Some(Kind::Scm(work)) => {
                self.start_scm_job(request_id, ScmJob::Call(work)).await;
                None
            }
            Some(Kind::OauthCodeExchange(exchange)) => {
                self.start_scm_job(request_id, ScmJob::CodeExchange(exchange))
                    .await;
                None
            }
            None => {
                if request_id.is_empty() {
                    debug!("ignoring a request of a kind this runner does not know");
                } else {
                    info!(
                        "request {request_id} is of a kind this runner does not know; answering unimplemented"
                    );
                    let failure = Failure {
                        code: "unimplemented".into(),
                        message: format!("corral-runner {VERSION} does not implement this request"),
                        ..Default::default()
                    };
                    self.respond(request_id, Some(failure)).await;
                }
                None
            }
        }
    }

    /// Whether the latest spec sets this runner inactive; if so, answers the
    /// request `failed_precondition`. The management plane does not send work
    /// to such a runner, but a request can cross a spec change on the way.
    /// Runs SCM work (a call or an OAuth code exchange) in a task of its own,
    /// since it can take seconds: the stream keeps being read meanwhile.
    /// Refused while cordoned, answered as busy when every slot is taken.
    async fn start_scm_job(&self, request_id: String, job: ScmJob) {
        if self.refuse_if_cordoned(&request_id).await {
            return;
        }
        let Some(slot) = self.scm_slot(&request_id).await else {
            return; // answered as busy
        };
        let agent = self.clone();
        tokio::spawn(
            async move {
                let _slot = slot;
                let integrations = agent.scm_integrations().await;
                let worker = ScmWork {
                    integrations: &integrations,
                    key: &agent.key,
                    timeout: SCM_TIMEOUT,
                };
                let labels = match &job {
                    ScmJob::Call(work) => worker.metric_labels(work),
                    ScmJob::CodeExchange(exchange) => worker.exchange_labels(exchange),
                };
                let started = Instant::now();
                let answer = match &job {
                    ScmJob::Call(work) => worker.execute(work).await,
                    ScmJob::CodeExchange(exchange) => worker.exchange_code(exchange).await,
                };
                agent.finish_scm(request_id, labels, started, answer).await;
            }
            .in_current_span(),
        );
    }

    async fn refuse_if_cordoned(&self, request_id: &str) -> bool {
        let cordoned = self.shared.state().spec.as_ref().is_some_and(|spec| {
            spec.desired_phase.as_known() == Some(RunnerPhase::RUNNER_PHASE_INACTIVE)
        });
        if cordoned {
            debug!("request {request_id} turned away: the runner is set inactive");
            let failure = Failure {
                code: "failed_precondition".into(),
                message:
                    "the runner is set inactive: it takes no work until it is set active again"
                        .into(),
                ..Default::default()
            };
            self.respond(request_id.to_string(), Some(failure)).await;
        }
        cordoned
    }

    /// A slot for one piece of SCM work; when all are taken, answers the
    /// request at once as `resource_exhausted` and returns `None`.
    async fn scm_slot(&self, request_id: &str) -> Option<OwnedSemaphorePermit> {
        if let Ok(slot) = self.scm_slots.clone().try_acquire_owned() {
            return Some(slot);
        }
        let limit = self.max_scm_requests;
        {
            let mut last = self
                .last_busy_warning
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|at| at.elapsed() >= BUSY_WARNING_INTERVAL) {
                *last = Some(Instant::now());
                warn!(
                    "busy: already working on {limit} SCM requests (--max-scm-requests); \
                     turning further ones away until one finishes"
                );
            }
        }
        debug!("request {request_id} turned away: busy");
        let failure = Failure {
            code: "resource_exhausted".into(),
            message: format!(
                "the runner is busy: it is already working on {limit} SCM requests; try again shortly"
            ),
            ..Default::default()
        };
        self.respond(request_id.to_string(), Some(failure)).await;
        None
    }

    fn apply_spec(&self, spec: RunnerSpec, sealed_metrics_password: &[u8]) {
        self.apply_metrics(&spec, sealed_metrics_password);
        let level = spec
            .configuration
            .as_option()
            .and_then(|c| c.log_level.as_known())
            .unwrap_or(LogLevel::LOG_LEVEL_UNSPECIFIED);
        self.logging.set_level(level);
        info!(
            "received spec: desired phase {:?}, log level {level:?}",
            spec.desired_phase.as_known()
        );
        self.shared.state().spec = Some(spec);
    }

    /// Hands the spec's metrics configuration to the pusher (which pushes at
    /// once when it changed).
    fn apply_metrics(&self, spec: &RunnerSpec, sealed_password: &[u8]) {
        let config = spec
            .configuration
            .as_option()
            .and_then(|c| c.metrics.as_option());
        let target = config.filter(|m| m.enabled).and_then(|m| {
            if m.managed_metrics_enabled {
                debug!("managed metrics do not apply to corral: pushing to metrics.url only");
            }
            if m.url.is_empty() {
                warn!("metrics are enabled but metrics.url is empty: not pushing");
                return None;
            }
            let password = if sealed_password.is_empty() {
                String::new()
            } else {
                match open_sealed_secret(&self.key, sealed_password)
                    .ok()
                    .and_then(|p| String::from_utf8(p).ok())
                {
                    Some(password) => password,
                    None => {
                        warn!(
                            "the metrics password does not open with this runner's key: not pushing"
                        );
                        return None;
                    }
                }
            };
            Some(metrics::Target {
                url: m.url.clone(),
                username: m.username.clone(),
                password,
                verbose: m.include_verbose_metrics,
            })
        });
        self.metrics_targets.send_if_modified(|current| {
            if *current == target {
                return false;
            }
            match &target {
                Some(t) => info!("pushing metrics to {} (verbose: {})", t.url, t.verbose),
                None if current.is_some() => info!("metrics push disabled"),
                None => {}
            }
            *current = target;
            true
        });
    }

    async fn respond(&self, request_id: String, failure: Option<Failure>) {
        let request = RespondRequest {
            failure: failure.map(MessageField::some).unwrap_or_default(),
            ..Default::default()
        };
        self.answer(request_id, request).await;
    }

    /// The management plane deleted this runner: forget the credentials and confirm.
    async fn delete(&self) {
        info!("the runner was deleted: removing its credentials");
        if let Err(e) = self.dir.remove_credentials() {
            error!("could not remove the credentials: {e}");
        }
        let mut backoff = Backoff::new();
        for attempt in 1..=5 {
            match self
                .conn
                .client()
                .confirm_deletion(ConfirmDeletionRequest::default())
                .await
            {
                Ok(_) => {
                    info!("deletion confirmed");
                    return;
                }
                Err(e) if is_rejection(&e) => {
                    // A forced deletion removes the runner's tokens at once.
                    info!(
                        "the management plane already removed the runner ({})",
                        describe(&e)
                    );
                    return;
                }
                Err(e) if attempt == 5 => {
                    warn!("could not confirm the deletion: {}", describe(&e));
                    return;
                }
                Err(e) => {
                    debug!(
                        "confirming the deletion failed ({}); retrying",
                        describe(&e)
                    );
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }

    /// Tells the management plane the runner stops (INACTIVE at once).
    async fn disconnect(&self) {
        let call = self.conn.client().disconnect(DisconnectRequest::default());
        match tokio::time::timeout(Duration::from_secs(5), call).await {
            Ok(Ok(_)) => info!("disconnected"),
            Ok(Err(e)) => warn!("could not disconnect cleanly: {}", describe(&e)),
            Err(_) => warn!("could not disconnect cleanly: timed out"),
        }
    }

    /// The runner's SCM integrations as the management plane has them now
    /// (empty when they cannot be listed: requests then see only public hosts).
    async fn scm_integrations(&self) -> Vec<corral_api::gitpod::v1::SCMIntegration> {
        match self
            .conn
            .client()
            .list_scm_integrations(ListSCMIntegrationsRequest::default())
            .await
        {
            Ok(response) => response.into_owned().integrations,
            Err(e) => {
                warn!("could not list SCM integrations: {}", describe(&e));
                Vec::new()
            }
        }
    }

    /// Counts, logs and sends the answer of SCM work that began at `started`.
    async fn finish_scm(
        &self,
        request_id: String,
        labels: ScmLabels,
        started: Instant,
        answer: RespondRequest,
    ) {
        let took = started.elapsed();
        let outcome = outcome(&answer);
        info!(
            provider = %labels.provider,
            call = %labels.call,
            outcome = %outcome,
            took_ms = took.as_millis() as u64,
            "answered an SCM request"
        );
        self.metrics
            .record_scm(ScmLabels { outcome, ..labels }, took);
        self.answer(request_id, answer).await;
    }

    /// Sends a full answer (result or failure) for `request_id`. Any replica
    /// of the management plane takes it: when the current one cannot be
    /// reached, the answer goes to the next (and the stream follows).
    async fn answer(&self, request_id: String, mut answer: RespondRequest) {
        answer.request_id = request_id.clone();
        let server = self.conn.position();
        let mut result = self.conn.client().respond(answer.clone()).await;
        if let Err(e) = &result
            && is_outage(e)
            && self.conn.fail_over(server).is_some()
        {
            info!(
                "could not answer request {request_id} ({}); trying {}",
                describe(e),
                self.conn.server()
            );
            self.stream_suspect.notify_waiters();
            result = self.conn.client().respond(answer).await;
        }
        if let Err(e) = result {
            warn!("could not answer request {request_id}: {}", describe(&e));
        }
    }

    /// Lists the runner's SCM integrations and opens their sealed OAuth client
    /// secrets, proving the management plane sealed them to this runner's key.
    async fn check_scm_integrations(&self) {
        let response = match self
            .conn
            .client()
            .list_scm_integrations(ListSCMIntegrationsRequest::default())
            .await
        {
            Ok(response) => response.into_owned(),
            Err(e) if e.code == ErrorCode::Unimplemented => {
                debug!("the management plane does not list SCM integrations to runners");
                return;
            }
            Err(e) => {
                warn!("could not list SCM integrations: {}", describe(&e));
                return;
            }
        };
        let mut summaries = Vec::new();
        for integration in response.integrations {
            let oauth = integration.oauth.as_option();
            let opens = oauth
                .map(|o| o.encrypted_client_secret.as_slice())
                .filter(|sealed| !sealed.is_empty())
                .map(|sealed| open_sealed_secret(&self.key, sealed).is_ok());
            summaries.push(ScmIntegrationSummary {
                id: integration.id.clone(),
                scm_id: integration.scm_id.clone(),
                host: integration.host.clone(),
                pat: integration.pat,
                oauth_client_id: oauth.map(|o| o.client_id.clone()),
                oauth_client_secret_opens: opens,
            });
        }
        let mut state = self.shared.state();
        if state.scm_integrations == summaries {
            return;
        }
        for summary in summaries
            .iter()
            .filter(|s| s.oauth_client_secret_opens == Some(false))
        {
            warn!(
                "SCM integration {}: the OAuth client secret was not sealed to this runner's key",
                summary.host
            );
        }
        let hosts: Vec<&str> = summaries.iter().map(|s| s.host.as_str()).collect();
        info!(
            "{} SCM integration(s) configured: [{}]; sealed client secrets open: {}",
            summaries.len(),
            hosts.join(", "),
            summaries
                .iter()
                .filter(|s| s.oauth_client_secret_opens == Some(true))
                .count()
        );
        state.scm_integrations = summaries;
    }
}

/// Runs its closure when dropped.
struct OnDrop<F: FnMut()>(F);

impl<F: FnMut()> Drop for OnDrop<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_url_names_a_reachable_host() {
        assert_eq!(
            public_base_url("127.0.0.1:4000".parse().unwrap()),
            "http://127.0.0.1:4000"
        );
        assert_eq!(
            public_base_url("[::1]:4000".parse().unwrap()),
            "http://[::1]:4000"
        );
        let any = public_base_url("0.0.0.0:4000".parse().unwrap());
        assert!(
            any.starts_with("http://") && any.ends_with(":4000") && !any.contains("0.0.0.0"),
            "{any}"
        );
    }

    #[test]
    fn info_entries_are_key_value_within_the_caps() {
        assert_eq!(
            parse_info("team=platform=core"),
            Ok(("team".into(), "platform=core".into()))
        );
        assert_eq!(parse_info(" rack =b7"), Ok(("rack".into(), "b7".into())));
        assert_eq!(parse_info("empty="), Ok(("empty".into(), String::new())));
        for bad in [
            "no-equals".to_string(),
            "=value".into(),
            format!(
                "{}=v",
                "k".repeat(limits::ADDITIONAL_INFO_KEY_MAX_BYTES + 1)
            ),
            format!(
                "k={}",
                "v".repeat(limits::ADDITIONAL_INFO_VALUE_MAX_BYTES + 1)
            ),
        ] {
            assert!(parse_info(&bad).is_err(), "{bad}");
        }
        let entry = |k: &str| (k.to_string(), String::new());
        assert!(check_info(&[entry("a"), entry("b")]).is_ok());
        assert!(check_info(&[entry("a"), entry("a")]).is_err());
        let many: Vec<_> = (0..=limits::ADDITIONAL_INFO_MAX_ENTRIES)
            .map(|i| entry(&i.to_string()))
            .collect();
        assert!(
            check_info(&many[1..]).is_err(),
            "one entry is kept for the update note"
        );
        assert!(check_info(&many[2..]).is_ok());
        assert!(check_info(&[entry(UPDATE_INFO_KEY)]).is_err());
    }

    #[test]
    fn advertised_urls_are_plain_http_base_urls() {
        assert_eq!(
            advertised_base_url("https://runner-7.example.com/corral/"),
            Ok("https://runner-7.example.com/corral".into())
        );
        assert_eq!(
            advertised_base_url("http://10.0.0.7:7070"),
            Ok("http://10.0.0.7:7070".into())
        );
        let long = format!("http://h/{}", "p".repeat(limits::URL_MAX_BYTES));
        for bad in [
            "ftp://example.com",
            "example.com",
            "http://",
            "http:///path",
            "http://h/?q=1",
            "http://h/#x",
            "http://h/a b",
            long.as_str(),
        ] {
            assert!(advertised_base_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fingerprints_are_stable_and_do_not_reveal_the_token() {
        let a = token_fingerprint("crl_ex_abc");
        assert_eq!(a, token_fingerprint(" crl_ex_abc\n"));
        assert_ne!(a, token_fingerprint("crl_ex_abd"));
        assert_eq!(a.len(), 32);
        assert!(!a.contains("abc"));
    }

    #[tokio::test]
    async fn starting_without_credentials_or_token_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let config = Config::new(
            Some("http://127.0.0.1:9".into()),
            None,
            tmp.path().to_path_buf(),
        );
        let result = run_until(config, Logging::detached(), std::future::pending()).await;
        let error = result.unwrap_err();
        assert!(matches!(error, Error::NotRegistered(_)));
        assert_eq!(error.exit_code(), 3);
    }

    #[test]
    fn bundle_contents_carry_no_credentials() {
        let shared = Shared::new(
            LogBuffer::new(10),
            "eu".into(),
            "http://127.0.0.1:8080".into(),
        );
        shared.state().runner_id = Some("r-1".into());
        let contents = shared.bundle_contents();
        assert!(contents.versions.contains(VERSION));
        assert_eq!(contents.configuration["runner_id"], "r-1");
        assert_eq!(contents.configuration["region"], "eu");
        let text = contents.configuration.to_string();
        assert!(!text.contains("access_token") && !text.contains("crl_"));
    }
}
