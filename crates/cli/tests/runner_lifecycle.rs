//! The runner lifecycle with real processes: `corral serve` and `corral runner`
//! started from the built binary, each with its own temporary data dir, driven
//! through the typed Connect clients and the runner's own HTTP server.
//!
//! Every test runs twice, once per store: `on_sqlite::NAME`, and
//! `on_postgres::NAME` with the server on a PostgreSQL database of the test's
//! own (from `corral_testkit`), ignored unless asked for (`scripts/test` runs
//! it).
//!
//! Every test starts its own server (and runners) and kills them when it ends,
//! also when it fails; a failing test prints the stderr of every process it
//! started. Nothing here waits for a fixed time: conditions are polled with a
//! generous overall timeout, and the times the design names (ACTIVE soon after
//! start, configuration at the runner within a second) are printed, not
//! asserted.

use std::fs;
use std::future::Future;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use buffa::MessageField;
use connectrpc::client::{ClientConfig, HttpClient};
use connectrpc::{ConnectError, ErrorCode};
use corral_api::corral::v1 as runner_api;
use corral_api::gitpod::v1 as api;
use corral_testkit::{PostgresDatabase, free_port};

mod support;

use support::{
    BIN, Patience, Proc, create_linux_host_runner, describe, eventually, http_get, phase,
};

/// Overall limit for anything the tests wait for.
const TIMEOUT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);
const PATIENCE: Patience = Patience {
    timeout: TIMEOUT,
    poll: POLL,
};
/// Deadline of each RPC the tests make.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

const ACTIVE: api::RunnerPhase = api::RunnerPhase::RUNNER_PHASE_ACTIVE;
const INACTIVE: api::RunnerPhase = api::RunnerPhase::RUNNER_PHASE_INACTIVE;
const DEGRADED: api::RunnerPhase = api::RunnerPhase::RUNNER_PHASE_DEGRADED;

// ---------------------------------------------------------------------------
// Harness: processes
// ---------------------------------------------------------------------------

static SEQUENCE: AtomicUsize = AtomicUsize::new(0);

/// `name` with a number of its own: every process of the tests has its own
/// output file.
fn numbered(name: &str) -> String {
    format!("{name}-{}", SEQUENCE.fetch_add(1, Ordering::Relaxed))
}

/// Asserts that a call failed with `code`.
fn assert_code<T: std::fmt::Debug>(result: Result<T, ConnectError>, code: ErrorCode, what: &str) {
    match result {
        Ok(value) => panic!(
            "{what}: expected {}, got a success: {value:?}",
            code.as_str()
        ),
        Err(e) => assert_eq!(
            e.code,
            code,
            "{what}: expected {}, got {}",
            code.as_str(),
            describe(&e)
        ),
    }
}

// ---------------------------------------------------------------------------
// Harness: the stores
// ---------------------------------------------------------------------------

corral_testkit::on_both_stores!(
    runner_connects_and_reports_its_status,
    oversized_runner_reports_are_refused_and_nothing_is_stored,
    sigterm_makes_the_runner_inactive_and_it_resumes_from_its_data_dir,
    killed_runner_becomes_inactive_after_the_grace_period,
    configuration_changes_reach_the_runner,
    deleting_a_connected_runner_makes_it_clean_up_and_exit,
    forced_and_never_connected_deletions_are_immediate,
    exchanging_a_new_token_revokes_the_runners_old_access_token,
    a_used_exchange_token_is_refused_with_exit_code_3,
    runner_survives_a_server_restart,
    scm_client_secrets_are_sealed_to_the_runner,
    logs_and_support_bundle_need_a_logs_token_for_this_runner,
    runner_and_user_tokens_are_isolated,
    runner_is_degraded_while_its_data_dir_cannot_be_written,
    a_runner_updates_itself_only_when_allowed,
    status_names_capabilities_gateway_info_and_advertised_urls,
);

/// The metrics test needs Prometheus as the store tests need PostgreSQL: a
/// plain `cargo test` lists it as ignored; scripts/test runs it (and fails
/// when Prometheus is missing; `.ci/run` installs it).
mod with_prometheus {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs Prometheus (/usr/bin/prometheus): run through scripts/test (cargo test -- --include-ignored)"]
    async fn metrics_reach_prometheus_on_sqlite() {
        super::on_sqlite(super::metrics_reach_prometheus_and_follow_configuration_changes).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL and Prometheus: run through scripts/test (cargo test -- --include-ignored)"]
    async fn metrics_reach_prometheus_on_postgres() {
        super::on_postgres(super::metrics_reach_prometheus_and_follow_configuration_changes).await;
    }
}

/// The store a test's server runs on.
enum Store {
    /// SQLite in the server's data dir.
    Sqlite,
    /// A database of the test's own, dropped with this value.
    Postgres(PostgresDatabase),
}

impl Store {
    /// What the server's `--database-url` is, if it has one.
    fn database_url(&self) -> Option<&str> {
        match self {
            Store::Sqlite => None,
            Store::Postgres(database) => Some(database.url()),
        }
    }
}

async fn on_sqlite<Fut: Future<Output = ()>>(test: impl FnOnce(Store) -> Fut) {
    test(Store::Sqlite).await;
}

async fn on_postgres<Fut: Future<Output = ()>>(test: impl FnOnce(Store) -> Fut) {
    test(Store::Postgres(PostgresDatabase::create().await)).await;
}

// ---------------------------------------------------------------------------
// Harness: the management plane
// ---------------------------------------------------------------------------

type Runners = api::RunnerServiceClient<HttpClient>;
type Configs = api::RunnerConfigurationServiceClient<HttpClient>;
type Identity = api::IdentityServiceClient<HttpClient>;
type Interaction = runner_api::RunnerInteractionServiceClient<HttpClient>;

/// `corral serve` on a free port with its own data dir, on `store`.
struct Server {
    proc: Proc,
    logs: PathBuf,
    data_dir: PathBuf,
    port: u16,
    grace: String,
    /// Further `corral serve` flags.
    flags: Vec<String>,
    admin_token: String,
    /// Declared last: dropped after the process has been killed.
    store: Store,
}

impl Server {
    async fn start(tmp: &Path, grace: &str, store: Store) -> Server {
        Self::start_with(tmp, grace, store, &[]).await
    }

    /// Like [`Server::start`], with further `corral serve` flags.
    async fn start_with(tmp: &Path, grace: &str, store: Store, flags: &[&str]) -> Server {
        let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
        let data_dir = tmp.join("server-data");
        let port = free_port();
        let mut server = Server {
            proc: Self::spawn(tmp, &data_dir, port, grace, &flags, store.database_url()),
            logs: tmp.to_path_buf(),
            data_dir,
            port,
            grace: grace.to_string(),
            flags,
            admin_token: String::new(),
            store,
        };
        let mut attempt = 1;
        loop {
            match server.wait_ready().await {
                Ok(()) => return server,
                // The free port was taken between finding and binding it.
                Err(_) if attempt < 3 && server.proc.output().contains("binding") => {
                    eprintln!(
                        "port {} was taken before the server bound it; another one",
                        server.port
                    );
                    attempt += 1;
                    server.port = free_port();
                    server.proc = Self::spawn(
                        &server.logs,
                        &server.data_dir,
                        server.port,
                        &server.grace,
                        &server.flags,
                        server.store.database_url(),
                    );
                }
                Err(status) => panic!("{} exited while starting: {status:?}", server.proc.name),
            }
        }
    }

    fn spawn(
        logs: &Path,
        data_dir: &Path,
        port: u16,
        grace: &str,
        flags: &[String],
        database_url: Option<&str>,
    ) -> Proc {
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "serve",
            "--listen",
            &listen,
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--runner-grace",
            grace,
        ];
        if let Some(url) = database_url {
            args.extend(["--database-url", url]);
        }
        args.extend(flags.iter().map(String::as_str));
        Proc::spawn(logs, &numbered("server"), &args)
    }

    /// Waits until this server (not whatever else may hold the port) answers
    /// GetAuthenticatedIdentity with the admin token from its data dir; `Err`
    /// if the process ends first.
    async fn wait_ready(&mut self) -> Result<(), ExitStatus> {
        let token_file = self.data_dir.join("admin-token");
        let start = Instant::now();
        loop {
            if let Some(status) = self.proc.try_status() {
                return Err(status);
            }
            let token = fs::read_to_string(&token_file).unwrap_or_default();
            let token = token.trim();
            if !token.is_empty()
                && self
                    .identity_as(token)
                    .get_authenticated_identity(api::GetAuthenticatedIdentityRequest::default())
                    .await
                    .is_ok()
            {
                self.admin_token = token.to_string();
                return Ok(());
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "the server did not come up within {TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// SIGTERM; returns the exit status.
    async fn stop(&mut self) -> ExitStatus {
        self.proc.stop(PATIENCE).await
    }

    /// Starts the server again on the same port and data dir (after [`Server::stop`]).
    async fn restart(&mut self) {
        self.proc = Self::spawn(
            &self.logs,
            &self.data_dir,
            self.port,
            &self.grace,
            &self.flags,
            self.store.database_url(),
        );
        if let Err(status) = self.wait_ready().await {
            panic!("{} exited while starting again: {status:?}", self.proc.name);
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn config(&self, token: Option<&str>) -> ClientConfig {
        let config =
            ClientConfig::new(self.url().parse().unwrap()).with_default_timeout(CALL_TIMEOUT);
        match token {
            Some(token) => config.with_default_header("authorization", format!("Bearer {token}")),
            None => config,
        }
    }

    fn runners(&self) -> Runners {
        self.runners_as(&self.admin_token)
    }

    fn runners_as(&self, token: &str) -> Runners {
        Runners::new(HttpClient::plaintext(), self.config(Some(token)))
    }

    fn configs(&self) -> Configs {
        Configs::new(
            HttpClient::plaintext(),
            self.config(Some(&self.admin_token)),
        )
    }

    fn identity(&self) -> Identity {
        Identity::new(HttpClient::plaintext(), self.config(None))
    }

    fn identity_as(&self, token: &str) -> Identity {
        Identity::new(HttpClient::plaintext(), self.config(Some(token)))
    }

    fn interaction(&self, token: &str) -> Interaction {
        Interaction::new(HttpClient::plaintext(), self.config(Some(token)))
    }

    /// CreateRunner (LINUX_HOST) as the admin; returns its id and exchange token.
    async fn create_runner(&self, name: &str) -> (String, String) {
        let response = create_linux_host_runner(&self.runners(), name).await;
        let runner = response.runner.into_option().expect("a runner");
        assert!(
            response.exchange_token.starts_with("crl_ex_"),
            "an exchange token"
        );
        assert_eq!(
            phase(&runner),
            Some(api::RunnerPhase::RUNNER_PHASE_CREATED),
            "a new runner is CREATED"
        );
        (runner.runner_id, response.exchange_token)
    }

    async fn get_runner(&self, id: &str) -> Result<api::Runner, ConnectError> {
        let response = self
            .runners()
            .get_runner(api::GetRunnerRequest {
                runner_id: id.into(),
                ..Default::default()
            })
            .await?
            .into_owned();
        Ok(response.runner.into_option().unwrap_or_default())
    }

    /// Polls GetRunner until the runner is in `want`.
    async fn wait_phase(&self, id: &str, want: api::RunnerPhase) -> (api::Runner, Duration) {
        self.wait_runner(&format!("runner {id} is {want:?}"), id, |r| {
            phase(r) == Some(want)
        })
        .await
    }

    /// Polls GetRunner until `check` holds.
    async fn wait_runner(
        &self,
        what: &str,
        id: &str,
        check: impl Fn(&api::Runner) -> bool,
    ) -> (api::Runner, Duration) {
        self.wait_runner_within(PATIENCE, what, id, check).await
    }

    /// Like [`Server::wait_runner`], with `patience`.
    async fn wait_runner_within(
        &self,
        patience: Patience,
        what: &str,
        id: &str,
        check: impl Fn(&api::Runner) -> bool,
    ) -> (api::Runner, Duration) {
        let check = &check;
        eventually(patience, what, || async move {
            match self.get_runner(id).await {
                Ok(runner) if check(&runner) => Ok(runner),
                Ok(runner) => Err(format!(
                    "phase {:?}, message {:?}",
                    phase(&runner),
                    status(&runner).message
                )),
                Err(e) => Err(describe(&e)),
            }
        })
        .await
    }

    async fn wait_not_found(&self, id: &str) {
        eventually(PATIENCE, &format!("runner {id} is gone"), || async move {
            match self.get_runner(id).await {
                Err(e) if e.code == ErrorCode::NotFound => Ok(()),
                Err(e) => Err(describe(&e)),
                Ok(runner) => Err(format!("still there, phase {:?}", phase(&runner))),
            }
        })
        .await;
    }

    async fn logs_token(&self, id: &str) -> String {
        let token = self
            .runners()
            .create_runner_logs_token(api::CreateRunnerLogsTokenRequest {
                runner_id: id.into(),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("CreateRunnerLogsToken: {}", describe(&e)))
            .into_owned()
            .access_token;
        assert!(token.starts_with("crl_lt_"), "a logs token");
        token
    }

    /// UpdateRunner: log level and release channel.
    async fn update_configuration(
        &self,
        id: &str,
        level: api::LogLevel,
        channel: api::RunnerReleaseChannel,
    ) {
        self.runners()
            .update_runner(api::UpdateRunnerRequest {
                runner_id: id.into(),
                spec: MessageField::some(api::update_runner_request::Spec {
                    configuration: MessageField::some(
                        api::update_runner_request::RunnerConfiguration {
                            log_level: Some(level.into()),
                            release_channel: Some(channel.into()),
                            ..Default::default()
                        },
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("UpdateRunner: {}", describe(&e)));
    }

    async fn delete_runner(&self, id: &str, force: bool) -> Result<(), ConnectError> {
        self.runners()
            .delete_runner(api::DeleteRunnerRequest {
                runner_id: id.into(),
                force,
                ..Default::default()
            })
            .await
            .map(|_| ())
    }

    /// A call on the runner-facing service with `token`.
    async fn runner_call(
        &self,
        token: &str,
    ) -> Result<runner_api::ListEnvironmentClassesResponse, ConnectError> {
        Ok(self
            .interaction(token)
            .list_environment_classes(runner_api::ListEnvironmentClassesRequest::default())
            .await?
            .into_owned())
    }
}

fn status(runner: &api::Runner) -> api::RunnerStatus {
    runner.status.as_option().cloned().unwrap_or_default()
}

fn spec_configuration(runner: &api::Runner) -> api::RunnerConfiguration {
    runner
        .spec
        .as_option()
        .and_then(|s| s.configuration.as_option())
        .cloned()
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// Harness: runners
// ---------------------------------------------------------------------------

/// `corral runner --data-dir DIR [--server URL] [--exchange-token T] EXTRA…`.
fn start_runner(
    logs: &Path,
    server: Option<&Server>,
    data_dir: &Path,
    exchange_token: Option<&str>,
    extra: &[&str],
) -> Proc {
    let mut args = vec![
        "runner".to_string(),
        "--data-dir".to_string(),
        data_dir.to_str().unwrap().to_string(),
    ];
    if let Some(server) = server {
        args.extend(["--server".to_string(), server.url()]);
    }
    if let Some(token) = exchange_token {
        args.extend(["--exchange-token".to_string(), token.to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Proc::spawn(logs, &numbered("runner"), &args)
}

/// The access token in a runner's credentials file.
fn stored_access_token(data_dir: &Path) -> String {
    let path = data_dir.join("credentials.json");
    let json: serde_json::Value = serde_json::from_slice(
        &fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display())),
    )
    .expect("credentials.json is JSON");
    let token = json["access_token"]
        .as_str()
        .expect("credentials.json has access_token")
        .to_string();
    assert!(token.starts_with("crl_rt_"), "a runner access token");
    token
}

/// A server on `store` (runner grace `grace`) and one runner connected to it (ACTIVE).
/// Field order is drop order: processes go before the temp dir.
struct Connected {
    runner: Proc,
    server: Server,
    runner_id: String,
    data_dir: PathBuf,
    /// How long the runner took from process start to ACTIVE.
    took: Duration,
    tmp: tempfile::TempDir,
}

impl Connected {
    async fn start(store: Store, grace: &str) -> Connected {
        Self::start_with(store, grace, &[], &[]).await
    }

    /// Like [`Connected::start`], server and runner started with further flags.
    async fn start_with(
        store: Store,
        grace: &str,
        server_flags: &[&str],
        runner_flags: &[&str],
    ) -> Connected {
        let tmp = tempfile::tempdir().expect("temp dir");
        let server = Server::start_with(tmp.path(), grace, store, server_flags).await;
        let (runner_id, exchange_token) = server.create_runner("lifecycle").await;
        let data_dir = tmp.path().join("runner-data");
        let started = Instant::now();
        let mut flags = vec!["--region", "eu-test-1"];
        flags.extend_from_slice(runner_flags);
        let runner = start_runner(
            tmp.path(),
            Some(&server),
            &data_dir,
            Some(&exchange_token),
            &flags,
        );
        let mut connected = Connected {
            runner,
            server,
            runner_id,
            data_dir,
            took: Duration::ZERO,
            tmp,
        };
        connected.wait_active().await;
        connected.took = started.elapsed();
        connected
    }

    /// Waits for ACTIVE, failing early if the runner process ends.
    async fn wait_active(&mut self) -> api::Runner {
        let start = Instant::now();
        loop {
            if let Some(status) = self.runner.try_status() {
                panic!("{} exited before ACTIVE: {status:?}", self.runner.name);
            }
            if let Ok(runner) = self.server.get_runner(&self.runner_id).await
                && phase(&runner) == Some(ACTIVE)
            {
                return runner;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "runner {} not ACTIVE within {TIMEOUT:?}",
                self.runner_id
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn access_token(&self) -> String {
        stored_access_token(&self.data_dir)
    }

    async fn log_url(&self) -> String {
        let runner = self.server.get_runner(&self.runner_id).await.unwrap();
        status(&runner).log_url
    }

    /// Polls the runner's logs until a line contains `needle`; returns the line.
    async fn wait_log_line(&self, logs_token: &str, needle: &str) -> (String, Duration) {
        let url = self.log_url().await;
        eventually(
            PATIENCE,
            &format!("the runner's logs contain {needle:?}"),
            || async {
                let (code, body) = http_get(&url, Some(logs_token), CALL_TIMEOUT).await?;
                if code != 200 {
                    return Err(format!("GET {url}: HTTP {code}"));
                }
                let text = String::from_utf8_lossy(&body).into_owned();
                text.lines()
                    .find(|l| l.contains(needle))
                    .map(str::to_string)
                    .ok_or_else(|| format!("{} lines, none matches", text.lines().count()))
            },
        )
        .await
    }
}

/// The files of a gzip tar, by name.
fn untar_gz(bytes: &[u8]) -> Vec<(String, String)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = Vec::new();
    for entry in archive.entries().expect("a tar archive") {
        let mut entry = entry.expect("a tar entry");
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut text = String::new();
        entry.read_to_string(&mut text).expect("a UTF-8 file");
        files.push((name, text));
    }
    files
}

/// Occurrences of `crl_<kind>_<secret>` whose secret was not redacted.
fn unredacted_tokens(text: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("crl_") {
        let after = &rest[at + 4..];
        let kind = after.bytes().take_while(u8::is_ascii_lowercase).count();
        if kind > 0 && after.as_bytes().get(kind) == Some(&b'_') {
            let secret = &after[kind + 1..];
            let len = secret
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
                .count();
            if len > 0 {
                found.push(format!("crl_{}", &after[..kind + 1 + len]));
            }
        }
        rest = after;
    }
    found
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Wall-clock time of a runner log line (it starts with an RFC 3339 timestamp).
fn line_time(line: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    let stamp = line.split_whitespace().next()?;
    chrono::DateTime::parse_from_rfc3339(stamp)
        .ok()
        .map(|t| t.with_timezone(&chrono::Utc))
}

// ---------------------------------------------------------------------------
// 1. Connect and report
// ---------------------------------------------------------------------------

async fn runner_connects_and_reports_its_status(store: Store) {
    let c = Connected::start(store, "3s").await;
    eprintln!(
        "[measured] runner ACTIVE {:?} after its process started",
        c.took
    );
    let runner = c.server.get_runner(&c.runner_id).await.unwrap();
    let s = status(&runner);
    assert_eq!(s.version, corral_runner::agent::VERSION);
    assert_eq!(s.region, "eu-test-1");
    for part in ["kernel ", "CPU", "GiB memory"] {
        assert!(
            s.system_details.contains(part),
            "system details {:?} mention {part:?}",
            s.system_details
        );
    }
    assert_eq!(s.public_key.len(), 32, "an X25519 public key");
    assert!(
        s.log_url.starts_with("http://127.0.0.1:") && s.log_url.ends_with("/logs"),
        "log_url {:?}",
        s.log_url
    );
    assert!(
        s.support_bundle_url.starts_with("http://127.0.0.1:")
            && s.support_bundle_url.ends_with("/support-bundle"),
        "support_bundle_url {:?}",
        s.support_bundle_url
    );
    assert!(
        s.capabilities.iter().any(|c| c.as_known()
            == Some(api::RunnerCapability::RUNNER_CAPABILITY_CHECK_REPOSITORY_ACCESS)),
        "capabilities {:?}",
        s.capabilities
    );

    // The runner's state on disk is private.
    assert_eq!(mode(&c.data_dir.join("credentials.json")), 0o600);
    assert_eq!(mode(&c.data_dir.join("runner.key")), 0o600);
    assert_eq!(mode(&c.data_dir), 0o700);
    let credentials: serde_json::Value =
        serde_json::from_slice(&fs::read(c.data_dir.join("credentials.json")).unwrap()).unwrap();
    assert_eq!(credentials["server_url"], c.server.url());
    assert_eq!(credentials["runner_id"], c.runner_id.as_str());

    // The schema the runner uploaded is the one the API serves.
    let schema = c
        .server
        .configs()
        .get_runner_configuration_schema(api::GetRunnerConfigurationSchemaRequest {
            runner_id: c.runner_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("GetRunnerConfigurationSchema: {}", describe(&e)))
        .into_owned()
        .schema
        .into_option()
        .expect("a schema");
    assert_eq!(
        schema,
        as_served(
            corral_contract::schema::linux_host_schema(),
            &c.server.url()
        )
    );
    assert_eq!(schema.version, corral_contract::schema::SCHEMA_VERSION);
}

/// `schema` as the server answers it: each SCM's OAuth callback is the
/// absolute URL to register with the SCM, at the server's public URL.
fn as_served(
    mut schema: api::RunnerConfigurationSchema,
    server_url: &str,
) -> api::RunnerConfigurationSchema {
    for scm in &mut schema.scm {
        if let Some(oauth) = scm.oauth.as_option_mut() {
            oauth.callback_url = format!("{server_url}/auth/oauth2/callback");
        }
    }
    schema
}

// ---------------------------------------------------------------------------
// 2. Stop and resume
// ---------------------------------------------------------------------------

async fn sigterm_makes_the_runner_inactive_and_it_resumes_from_its_data_dir(store: Store) {
    let mut c = Connected::start(store, "3s").await;
    let key_before = fs::read(c.data_dir.join("runner.key")).unwrap();
    let public_key = status(&c.server.get_runner(&c.runner_id).await.unwrap()).public_key;

    c.runner.sigterm();
    let exit = c.runner.wait_exit(PATIENCE).await;
    assert_eq!(exit.code(), Some(0), "a stopped runner exits 0: {exit:?}");
    let (runner, took) = c.server.wait_phase(&c.runner_id, INACTIVE).await;
    eprintln!("[measured] INACTIVE observed {took:?} after the runner exited");
    assert!(
        !status(&runner).message.is_empty(),
        "an INACTIVE runner says why"
    );

    // Only the data dir: server URL and token come from the credentials file.
    c.runner = start_runner(c.tmp.path(), None, &c.data_dir, None, &[]);
    c.wait_active().await;
    assert_eq!(
        fs::read(c.data_dir.join("runner.key")).unwrap(),
        key_before,
        "the key is kept"
    );
    let runner = c.server.get_runner(&c.runner_id).await.unwrap();
    assert_eq!(status(&runner).public_key, public_key);
    assert_eq!(
        c.runner.try_status(),
        None,
        "the resumed runner keeps running"
    );
}

// ---------------------------------------------------------------------------
// 3. A killed runner goes INACTIVE after the grace period
// ---------------------------------------------------------------------------

async fn killed_runner_becomes_inactive_after_the_grace_period(store: Store) {
    let mut c = Connected::start(store, "2s").await;
    c.runner.sigkill();
    c.runner.wait_exit(PATIENCE).await;
    let (runner, took) = c.server.wait_phase(&c.runner_id, INACTIVE).await;
    eprintln!("[measured] INACTIVE {took:?} after SIGKILL (grace 2s)");
    assert!(
        status(&runner).message.contains("grace"),
        "message {:?}",
        status(&runner).message
    );
}

// ---------------------------------------------------------------------------
// 4. Configuration reaches the runner
// ---------------------------------------------------------------------------

async fn configuration_changes_reach_the_runner(store: Store) {
    let c = Connected::start(store, "3s").await;
    let logs_token = c.server.logs_token(&c.runner_id).await;
    let (line, _) = c
        .wait_log_line(&logs_token, "log level LOG_LEVEL_INFO")
        .await;
    assert!(line.contains("received spec"), "{line}");

    let sent_at = chrono::Utc::now();
    let sent = Instant::now();
    c.server
        .update_configuration(
            &c.runner_id,
            api::LogLevel::LOG_LEVEL_DEBUG,
            api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST,
        )
        .await;
    let (line, _) = c
        .wait_log_line(&logs_token, "log level LOG_LEVEL_DEBUG")
        .await;
    let observed = sent.elapsed();
    let applied = line_time(&line).map(|t| (t - sent_at).num_milliseconds());
    eprintln!(
        "[measured] new spec applied by the runner {applied:?} ms after UpdateRunner was sent \
         (runner's log timestamp); seen in its logs after {observed:?}"
    );

    // The runner now logs at debug level (heartbeats are logged at debug).
    let (line, _) = c.wait_log_line(&logs_token, " DEBUG corral_runner").await;
    eprintln!("first debug line: {line}");

    // The API shows the new configuration, and so does the runner's bundle.
    let runner = c.server.get_runner(&c.runner_id).await.unwrap();
    let configuration = spec_configuration(&runner);
    assert_eq!(configuration.log_level, api::LogLevel::LOG_LEVEL_DEBUG);
    assert_eq!(
        configuration.release_channel,
        api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST
    );
    let bundle_url = status(&runner).support_bundle_url;
    let (code, bundle) = http_get(&bundle_url, Some(&logs_token), CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(code, 200);
    let files = untar_gz(&bundle);
    let (_, configuration_json) = files
        .iter()
        .find(|(name, _)| name.contains("config"))
        .expect("configuration in the bundle");
    assert!(
        configuration_json.contains("RUNNER_RELEASE_CHANNEL_LATEST")
            && configuration_json.contains("LOG_LEVEL_DEBUG"),
        "the runner's spec has the new configuration: {configuration_json}"
    );
}

// ---------------------------------------------------------------------------
// 5. Deletion of a connected runner
// ---------------------------------------------------------------------------

async fn deleting_a_connected_runner_makes_it_clean_up_and_exit(store: Store) {
    let mut c = Connected::start(store, "3s").await;
    let old_token = c.access_token();
    c.server
        .delete_runner(&c.runner_id, false)
        .await
        .unwrap_or_else(|e| panic!("DeleteRunner: {}", describe(&e)));

    let exit = c.runner.wait_exit(PATIENCE).await;
    assert_eq!(exit.code(), Some(0), "a deleted runner exits 0: {exit:?}");
    assert!(!c.data_dir.join("credentials.json").exists());
    assert!(!c.data_dir.join("runner.key").exists());
    c.server.wait_not_found(&c.runner_id).await;
    assert_code(
        c.server.runner_call(&old_token).await,
        ErrorCode::Unauthenticated,
        "the deleted runner's access token",
    );
    let listed = c
        .server
        .runners()
        .list_runners(api::ListRunnersRequest::default())
        .await
        .unwrap()
        .into_owned();
    assert!(
        listed.runners.iter().all(|r| r.runner_id != c.runner_id),
        "a deleted runner is not listed"
    );
}

// ---------------------------------------------------------------------------
// 6. Forced deletion, and deletion of a runner that never connected
// ---------------------------------------------------------------------------

async fn forced_and_never_connected_deletions_are_immediate(store: Store) {
    let mut c = Connected::start(store, "3s").await;
    c.server.delete_runner(&c.runner_id, true).await.unwrap();
    assert_code(
        c.server.get_runner(&c.runner_id).await,
        ErrorCode::NotFound,
        "GetRunner right after a forced delete",
    );
    // The runner is told anyway, but a forced delete does not wait for it: it
    // either hears the news and cleans up (0), or finds its token already
    // revoked (3, "needs new credentials") when a heartbeat gets there first.
    let exit = c.runner.wait_exit(PATIENCE).await;
    match exit.code() {
        Some(0) => assert!(!c.data_dir.join("credentials.json").exists()),
        Some(3) => {}
        _ => panic!("unexpected exit after a forced delete: {exit:?}"),
    }

    let (never_connected, _exchange) = c.server.create_runner("never-connected").await;
    c.server
        .delete_runner(&never_connected, false)
        .await
        .unwrap();
    assert_code(
        c.server.get_runner(&never_connected).await,
        ErrorCode::NotFound,
        "GetRunner right after deleting a runner that never connected",
    );
}

// ---------------------------------------------------------------------------
// 7. A new token revokes the old one
// ---------------------------------------------------------------------------

async fn exchanging_a_new_token_revokes_the_runners_old_access_token(store: Store) {
    let mut c = Connected::start(store, "3s").await;
    let old_token = c.access_token();
    assert!(c.server.runner_call(&old_token).await.is_ok());

    let exchange = c
        .server
        .runners()
        .create_runner_token(api::CreateRunnerTokenRequest {
            runner_id: c.runner_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_owned()
        .exchange_token;
    let new_token = c
        .server
        .identity()
        .exchange_token(api::ExchangeTokenRequest {
            exchange_token: exchange,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("ExchangeToken: {}", describe(&e)))
        .into_owned()
        .access_token;
    assert_ne!(new_token, old_token);

    assert_code(
        c.server.runner_call(&old_token).await,
        ErrorCode::Unauthenticated,
        "the runner's previous access token",
    );
    assert!(
        c.server.runner_call(&new_token).await.is_ok(),
        "the new access token works"
    );

    // The running runner notices at its next heartbeat and stops: it needs new credentials.
    let exit = c.runner.wait_exit(PATIENCE).await;
    assert_eq!(exit.code(), Some(3), "{exit:?}");
    assert!(
        c.runner.output().contains("no longer accepts"),
        "stderr says why"
    );
}

// ---------------------------------------------------------------------------
// 8. A used exchange token
// ---------------------------------------------------------------------------

async fn a_used_exchange_token_is_refused_with_exit_code_3(store: Store) {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start(tmp.path(), "3s", store).await;
    let (_runner_id, exchange) = server.create_runner("used-token").await;
    server
        .identity()
        .exchange_token(api::ExchangeTokenRequest {
            exchange_token: exchange.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("ExchangeToken: {}", describe(&e)));

    let data_dir = tmp.path().join("fresh-runner");
    let mut runner = start_runner(tmp.path(), Some(&server), &data_dir, Some(&exchange), &[]);
    let exit = runner.wait_exit(PATIENCE).await;
    assert_eq!(exit.code(), Some(3), "{exit:?}");
    let stderr = runner.output();
    assert!(
        stderr.contains("refused the exchange token") && stderr.contains("CreateRunnerToken"),
        "stderr explains what to do: {stderr}"
    );
    assert!(
        !stderr.contains(&exchange),
        "the token itself is not printed"
    );
    assert!(!data_dir.join("credentials.json").exists());
}

// ---------------------------------------------------------------------------
// 9. The server restarts
// ---------------------------------------------------------------------------

async fn runner_survives_a_server_restart(store: Store) {
    let mut c = Connected::start(store, "3s").await;
    let exit = c.server.stop().await;
    assert!(
        exit.success(),
        "the server exits cleanly on SIGTERM: {exit:?}"
    );

    let restarted_at = chrono::Utc::now();
    c.server.restart().await;
    let (_, took) = c
        .server
        .wait_runner(
            "the runner reports to the restarted server",
            &c.runner_id,
            |r| {
                // Only the new server can have stored a report after this.
                let reported = status(r)
                    .updated_at
                    .as_option()
                    .and_then(|t| chrono::DateTime::from_timestamp(t.seconds, t.nanos as u32))
                    .is_some_and(|at| at > restarted_at);
                phase(r) == Some(ACTIVE) && reported
            },
        )
        .await;
    eprintln!("[measured] runner reported to the restarted server after {took:?}");
    assert_eq!(c.runner.try_status(), None, "the runner kept running");

    let logs_token = c.server.logs_token(&c.runner_id).await;
    let sent = Instant::now();
    c.server
        .update_configuration(
            &c.runner_id,
            api::LogLevel::LOG_LEVEL_DEBUG,
            api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST,
        )
        .await;
    c.wait_log_line(&logs_token, "log level LOG_LEVEL_DEBUG")
        .await;
    eprintln!(
        "[measured] configuration reached the runner after the restart in {:?}",
        sent.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 10. Secrets sealed to the runner
// ---------------------------------------------------------------------------

async fn scm_client_secrets_are_sealed_to_the_runner(store: Store) {
    let c = Connected::start(store, "3s").await;
    let id = c
        .server
        .configs()
        .create_scm_integration(api::CreateSCMIntegrationRequest {
            runner_id: c.runner_id.clone(),
            scm_id: "github".into(),
            host: "github.example.com".into(),
            pat: true,
            oauth_client_id: Some("cid".into()),
            oauth_plaintext_client_secret: Some("s3cret".into()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("CreateSCMIntegration: {}", describe(&e)))
        .into_owned()
        .id;
    let integration = c
        .server
        .configs()
        .get_scm_integration(api::GetSCMIntegrationRequest {
            id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_owned()
        .integration
        .into_option()
        .expect("an integration");
    let oauth = integration.oauth.as_option().expect("an OAuth config");
    assert_eq!(oauth.client_id, "cid");
    let sealed = &oauth.encrypted_client_secret;
    assert!(!sealed.is_empty());
    assert_ne!(sealed.as_slice(), b"s3cret");
    assert!(
        !sealed.windows(6).any(|w| w == b"s3cret"),
        "the plaintext is not in the ciphertext"
    );
    let opened = corral_runner::open_sealed_secret_in(&c.data_dir, sealed)
        .unwrap_or_else(|e| panic!("opening the sealed secret: {e}"));
    assert_eq!(opened, b"s3cret");

    // The runner itself fetches the integration and opens the secret.
    let logs_token = c.server.logs_token(&c.runner_id).await;
    c.wait_log_line(&logs_token, "sealed client secrets open: 1")
        .await;
}

// ---------------------------------------------------------------------------
// 11. Logs and support bundle behind a logs token
// ---------------------------------------------------------------------------

async fn logs_and_support_bundle_need_a_logs_token_for_this_runner(store: Store) {
    let c = Connected::start(store, "3s").await;
    let runner = c.server.get_runner(&c.runner_id).await.unwrap();
    let (log_url, bundle_url) = (status(&runner).log_url, status(&runner).support_bundle_url);
    let token = c.server.logs_token(&c.runner_id).await;

    let (code, logs) = http_get(&log_url, Some(&token), CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(code, 200);
    let logs = String::from_utf8(logs).unwrap();
    assert!(logs.contains("signed up as runner"), "logs: {logs}");

    let (code, bundle) = http_get(&bundle_url, Some(&token), CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(&bundle[..2], &[0x1f, 0x8b], "gzip");
    let files = untar_gz(&bundle);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for part in ["version", "config", "log"] {
        assert!(
            names.iter().any(|n| n.contains(part)),
            "the bundle has a {part} file: {names:?}"
        );
    }
    let access_token = c.access_token();
    for (name, text) in &files {
        assert!(!text.is_empty(), "{name} is empty");
        assert_eq!(
            unredacted_tokens(text),
            Vec::<String>::new(),
            "tokens in {name}"
        );
        assert!(!text.contains(&access_token) && !text.contains(&token));
        if text.contains("crl_") {
            eprintln!("note: {name} mentions crl_ (redacted)");
        }
    }

    // No token, a token that is no logs token, a token for another runner.
    for url in [&log_url, &bundle_url] {
        let (code, _) = http_get(url, None, CALL_TIMEOUT).await.unwrap();
        assert_eq!(code, 401, "{url} without a token");
        let (code, _) = http_get(url, Some(&c.server.admin_token), CALL_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(code, 401, "{url} with a user token");
    }
    let (other_id, _) = c.server.create_runner("other").await;
    let other_token = c.server.logs_token(&other_id).await;
    for url in [&log_url, &bundle_url] {
        let (code, body) = http_get(url, Some(&other_token), CALL_TIMEOUT)
            .await
            .unwrap();
        assert_eq!(
            code,
            401,
            "{url} with another runner's logs token: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A tampered token: same payload, another signature.
    let (payload, _) = token.rsplit_once('.').unwrap();
    let tampered = format!("{payload}.{}", "A".repeat(86));
    let (code, _) = http_get(&log_url, Some(&tampered), CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(code, 401, "a token with a bad signature");
}

// ---------------------------------------------------------------------------
// 12. Runner tokens and user tokens stay in their lanes
// ---------------------------------------------------------------------------

async fn runner_and_user_tokens_are_isolated(store: Store) {
    let c = Connected::start(store, "3s").await;
    let runner_token = c.access_token();
    let (other_id, _) = c.server.create_runner("other").await;

    assert_code(
        c.server
            .runners_as(&runner_token)
            .create_runner(api::CreateRunnerRequest {
                name: "from a runner".into(),
                provider: api::RunnerProvider::RUNNER_PROVIDER_LINUX_HOST.into(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_owned()),
        ErrorCode::PermissionDenied,
        "CreateRunner with a runner token",
    );
    assert_code(
        c.server
            .runners_as(&runner_token)
            .get_runner(api::GetRunnerRequest {
                runner_id: other_id.clone(),
                ..Default::default()
            })
            .await
            .map(|r| r.into_owned()),
        ErrorCode::NotFound,
        "GetRunner of another runner with a runner token",
    );
    assert_code(
        c.server
            .interaction(&c.server.admin_token)
            .sign_up(runner_api::SignUpRequest {
                public_key: vec![7; 32],
                ..Default::default()
            })
            .await
            .map(|r| r.into_owned()),
        ErrorCode::PermissionDenied,
        "SignUp with a user token",
    );

    // One environment class and one SCM integration on each runner.
    let mut classes = Vec::new();
    let mut integrations = Vec::new();
    for (runner_id, name) in [(&c.runner_id, "mine"), (&other_id, "other")] {
        let class = c
            .server
            .configs()
            .create_environment_class(api::CreateEnvironmentClassRequest {
                runner_id: runner_id.clone(),
                display_name: format!("{name} class"),
                description: "for the isolation test".into(),
                configuration: vec![api::FieldValue {
                    key: "cpu".into(),
                    value: "2".into(),
                    ..Default::default()
                }],
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("CreateEnvironmentClass: {}", describe(&e)))
            .into_owned()
            .id;
        classes.push(class);
        let integration = c
            .server
            .configs()
            .create_scm_integration(api::CreateSCMIntegrationRequest {
                runner_id: runner_id.clone(),
                scm_id: "github".into(),
                host: format!("{name}.example.com"),
                pat: true,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("CreateSCMIntegration: {}", describe(&e)))
            .into_owned()
            .id;
        integrations.push(integration);
    }

    let listed = c.server.runner_call(&runner_token).await.unwrap();
    let listed: Vec<&str> = listed
        .environment_classes
        .iter()
        .map(|class| class.id.as_str())
        .collect();
    assert_eq!(listed, vec![classes[0].as_str()], "only its own classes");
    let listed = c
        .server
        .interaction(&runner_token)
        .list_scm_integrations(runner_api::ListSCMIntegrationsRequest::default())
        .await
        .unwrap()
        .into_owned();
    let listed: Vec<(&str, &str)> = listed
        .integrations
        .iter()
        .map(|i| (i.id.as_str(), i.host.as_str()))
        .collect();
    assert_eq!(
        listed,
        vec![(integrations[0].as_str(), "mine.example.com")],
        "only its own integrations"
    );
}

// ---------------------------------------------------------------------------
// 13. DEGRADED while the data dir cannot be written
// ---------------------------------------------------------------------------

async fn runner_is_degraded_while_its_data_dir_cannot_be_written(store: Store) {
    let c = Connected::start(store, "3s").await;
    // The health probe writes and removes `<data dir>/.write-probe`. The tests
    // run as root, for whom permissions are no obstacle; a directory in the
    // probe file's place makes the write fail for anyone.
    let probe = c.data_dir.join(".write-probe");
    fs::create_dir(&probe).unwrap();
    let (runner, took) = c.server.wait_phase(&c.runner_id, DEGRADED).await;
    eprintln!("[measured] DEGRADED after {took:?}");
    let message = status(&runner).message;
    assert!(
        message.contains("not writable"),
        "DEGRADED says why: {message:?}"
    );

    fs::remove_dir(&probe).unwrap();
    let (runner, took) = c.server.wait_phase(&c.runner_id, ACTIVE).await;
    eprintln!("[measured] ACTIVE again after {took:?}");
    assert_eq!(status(&runner).message, "", "no problem reported any more");
}

// ---------------------------------------------------------------------------
// 14. What a runner reports has caps (docs/limits.md)
// ---------------------------------------------------------------------------

/// Asserts `invalid_argument` whose message names `field`.
fn assert_refused<T: std::fmt::Debug>(result: Result<T, ConnectError>, field: &str, what: &str) {
    match result {
        Ok(value) => panic!("{what}: expected invalid_argument, got a success: {value:?}"),
        Err(e) => {
            assert_eq!(
                e.code,
                ErrorCode::InvalidArgument,
                "{what}: {}",
                describe(&e)
            );
            let message = e.message.clone().unwrap_or_default();
            assert!(message.contains(field), "{what}: {message:?} names {field}");
            assert!(message.len() < 2048, "{what}: a short error, not an echo");
        }
    }
}

async fn oversized_runner_reports_are_refused_and_nothing_is_stored(store: Store) {
    use corral_contract::limits;

    let tmp = tempfile::tempdir().unwrap();
    // A grace long enough that liveness leaves the status alone meanwhile.
    let server = Server::start(tmp.path(), "120s", store).await;
    let (runner_id, exchange) = server.create_runner("oversized").await;
    let token = server
        .identity()
        .exchange_token(api::ExchangeTokenRequest {
            exchange_token: exchange,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("ExchangeToken: {}", describe(&e)))
        .into_owned()
        .access_token;
    let runner = server.interaction(&token);

    // A well-behaved runner: key, schema and a status at the caps.
    let key = vec![7u8; limits::PUBLIC_KEY_BYTES];
    runner
        .sign_up(runner_api::SignUpRequest {
            public_key: key.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("SignUp: {}", describe(&e)));
    let schema = corral_contract::schema::linux_host_schema();
    runner
        .update_configuration_schema(runner_api::UpdateConfigurationSchemaRequest {
            schema: MessageField::some(schema.clone()),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateConfigurationSchema: {}", describe(&e)));
    let report = runner_api::ReportStatusRequest {
        version: "v".repeat(limits::VERSION_MAX_BYTES),
        region: "r".repeat(limits::REGION_MAX_BYTES),
        system_details: "s".repeat(limits::SYSTEM_DETAILS_MAX_BYTES),
        message: "m".repeat(limits::MESSAGE_MAX_BYTES),
        log_url: "http://127.0.0.1:1/logs".into(),
        healthy: true,
        additional_info: vec![
            api::FieldValue {
                key: "k".repeat(limits::ADDITIONAL_INFO_KEY_MAX_BYTES),
                value: "v".repeat(limits::ADDITIONAL_INFO_VALUE_MAX_BYTES),
                ..Default::default()
            };
            limits::ADDITIONAL_INFO_MAX_ENTRIES
        ],
        ..Default::default()
    };
    runner
        .report_status(report.clone())
        .await
        .unwrap_or_else(|e| panic!("ReportStatus at the caps: {}", describe(&e)));
    let before = status(&server.get_runner(&runner_id).await.unwrap());
    assert_eq!(
        before.system_details.len(),
        limits::SYSTEM_DETAILS_MAX_BYTES
    );

    // One field over its cap at a time.
    type Oversize = fn(&mut runner_api::ReportStatusRequest);
    let oversized: [(&str, Oversize); 7] = [
        ("version", |r| r.version.push('v')),
        ("region", |r| r.region.push('r')),
        ("system_details", |r| r.system_details.push('s')),
        ("message", |r| r.message.push('m')),
        ("log_url", |r| {
            r.log_url = "u".repeat(limits::URL_MAX_BYTES + 1)
        }),
        ("additional_info", |r| {
            r.additional_info.push(api::FieldValue::default())
        }),
        ("additional_info", |r| r.additional_info[0].value.push('v')),
    ];
    for (field, oversize) in oversized {
        let mut bad = report.clone();
        bad.healthy = false;
        oversize(&mut bad);
        assert_refused(
            runner.report_status(bad).await.map(|r| r.into_owned()),
            field,
            &format!("ReportStatus with {field} over its cap"),
        );
    }
    assert_refused(
        runner
            .sign_up(runner_api::SignUpRequest {
                public_key: vec![8u8; limits::PUBLIC_KEY_BYTES + 1],
                ..Default::default()
            })
            .await
            .map(|r| r.into_owned()),
        "public_key",
        "SignUp with a 33-byte key",
    );

    // A schema whose fields are each within their caps but which is too big
    // as a whole, and one with a field over its cap.
    let mut big = schema.clone();
    for field in &mut big.environment_classes {
        field.description = "d".repeat(1024);
    }
    while big.environment_classes.len() < 100 {
        let mut field = big.environment_classes[3].clone();
        field.id = format!("setting_{}", big.environment_classes.len());
        if let Some(api::runner_configuration_schema::field::Type::Enum(e)) = field.r#type.as_mut()
        {
            e.possible_values = vec![
                api::runner_configuration_schema::enum_field::Value {
                    title: "t".into(),
                    detail: "x".repeat(1024),
                    ..Default::default()
                };
                10
            ];
        }
        big.environment_classes.push(field);
    }
    let encoded = buffa::Message::encode_to_vec(&big).len();
    assert!(
        encoded > limits::SCHEMA_MAX_BYTES && encoded < 4 * 1024 * 1024,
        "{encoded} bytes"
    );
    assert_refused(
        runner
            .update_configuration_schema(runner_api::UpdateConfigurationSchemaRequest {
                schema: MessageField::some(big),
                ..Default::default()
            })
            .await
            .map(|r| r.into_owned()),
        "schema",
        "UpdateConfigurationSchema over 256 KiB",
    );
    let mut long_field = schema.clone();
    long_field.environment_classes[0].id = "i".repeat(129);
    assert_refused(
        runner
            .update_configuration_schema(runner_api::UpdateConfigurationSchemaRequest {
                schema: MessageField::some(long_field),
                ..Default::default()
            })
            .await
            .map(|r| r.into_owned()),
        "schema.environment_classes.id",
        "UpdateConfigurationSchema with a field id over its cap",
    );

    // Nothing changed.
    let after = status(&server.get_runner(&runner_id).await.unwrap());
    assert_eq!(after, before, "refused reports leave the status alone");
    assert_eq!(after.public_key, key);
    let stored = server
        .configs()
        .get_runner_configuration_schema(api::GetRunnerConfigurationSchemaRequest {
            runner_id: runner_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("GetRunnerConfigurationSchema: {}", describe(&e)))
        .into_owned()
        .schema
        .into_option()
        .expect("a schema");
    assert_eq!(
        stored,
        as_served(schema, &server.url()),
        "refused schemas are not stored"
    );
}

// ---------------------------------------------------------------------------
// 15. Runner streams outlive the server's connection timeouts
// ---------------------------------------------------------------------------

/// Server flags with connection timeouts far shorter than a runner's life.
const SHORT_TIMEOUTS: &[&str] = &["--header-timeout", "1s", "--idle-timeout", "1s"];
/// How long the tests below watch a stream: several times those timeouts,
/// and longer than the idle timeout plus the 5 s a connection being closed
/// is given to go.
const WATCH_FOR: Duration = Duration::from_secs(8);

#[tokio::test]
async fn a_runner_stream_outlives_short_header_and_idle_timeouts() {
    // Heartbeats every 2 s (a third of the grace): their pooled connections
    // go idle, and are closed, between two heartbeats.
    let mut c = Connected::start_with(Store::Sqlite, "6s", SHORT_TIMEOUTS, &[]).await;
    let logs_token = c.server.logs_token(&c.runner_id).await;
    tokio::time::sleep(WATCH_FOR).await;

    let (runner, _) = c.server.wait_phase(&c.runner_id, ACTIVE).await;
    assert_eq!(status(&runner).message, "");
    let sent = Instant::now();
    c.server
        .update_configuration(
            &c.runner_id,
            api::LogLevel::LOG_LEVEL_DEBUG,
            api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST,
        )
        .await;
    c.wait_log_line(&logs_token, "log level LOG_LEVEL_DEBUG")
        .await;
    eprintln!(
        "[measured] after {WATCH_FOR:?} with 1 s timeouts, a new spec reached the runner in {:?}",
        sent.elapsed()
    );

    // The stream it opened at the start is the one that carried it.
    let output = c.runner.output();
    assert_eq!(
        output.matches("signed up as runner").count(),
        1,
        "the runner signed up again (its stream was cut): {output}"
    );
    for sign in [
        "request stream broke",
        "closed the request stream",
        "reopening the request stream",
        "could not open the request stream",
        "heartbeat failed",
    ] {
        assert!(!output.contains(sign), "the runner logged {sign:?}");
    }
    assert_eq!(c.runner.try_status(), None, "the runner keeps running");
}

#[tokio::test]
async fn an_http2_stream_outlives_short_header_and_idle_timeouts() {
    let tmp = tempfile::tempdir().unwrap();
    let server = Server::start_with(tmp.path(), "6s", Store::Sqlite, SHORT_TIMEOUTS).await;
    let (runner_id, exchange) = server.create_runner("h2c").await;
    let token = server
        .identity()
        .exchange_token(api::ExchangeTokenRequest {
            exchange_token: exchange,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("ExchangeToken: {}", describe(&e)))
        .into_owned()
        .access_token;
    // HTTP/2 with prior knowledge, as gRPC clients speak it; no deadline.
    let interaction = Interaction::new(
        HttpClient::plaintext_http2_only(),
        ClientConfig::new(server.url().parse().unwrap())
            .with_default_header("authorization", format!("Bearer {token}")),
    );
    interaction
        .sign_up(runner_api::SignUpRequest {
            public_key: vec![7; 32],
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("SignUp over HTTP/2: {}", describe(&e)));
    let mut stream = interaction
        .watch_requests(runner_api::WatchRequestsRequest::default())
        .await
        .unwrap_or_else(|e| panic!("WatchRequests over HTTP/2: {}", describe(&e)));
    let log_level = |request: runner_api::RunnerRequest| match request.kind {
        Some(runner_api::runner_request::Kind::Spec(spec)) => spec
            .configuration
            .as_option()
            .map(|c| c.log_level.as_known()),
        other => panic!("expected a spec, got {other:?}"),
    };
    let first = tokio::time::timeout(TIMEOUT, stream.message())
        .await
        .expect("the first spec in time")
        .unwrap_or_else(|e| panic!("reading the stream: {}", describe(&e)))
        .expect("a first message")
        .to_owned_message();
    assert_ne!(log_level(first), Some(Some(api::LogLevel::LOG_LEVEL_DEBUG)));

    tokio::time::sleep(WATCH_FOR).await;
    server
        .update_configuration(
            &runner_id,
            api::LogLevel::LOG_LEVEL_DEBUG,
            api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST,
        )
        .await;
    let next = tokio::time::timeout(TIMEOUT, stream.message())
        .await
        .expect("the new spec in time")
        .unwrap_or_else(|e| panic!("the stream broke: {}", describe(&e)))
        .expect("the stream is still open")
        .to_owned_message();
    assert_eq!(log_level(next), Some(Some(api::LogLevel::LOG_LEVEL_DEBUG)));
}

// ---------------------------------------------------------------------------
// 16. A busy runner turns SCM work away, and the caller hears it
// ---------------------------------------------------------------------------

/// A git server (smart HTTP) that holds every answer until released.
struct HeldGitServer {
    url: String,
    asked: std::sync::Arc<AtomicUsize>,
    release: tokio::sync::watch::Sender<bool>,
}

impl HeldGitServer {
    async fn start() -> Self {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let asked = std::sync::Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::watch::channel(false);
        let counter = asked.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
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
                    counter.fetch_add(1, Ordering::SeqCst);
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
}

#[tokio::test]
async fn a_busy_runner_answers_resource_exhausted_to_the_caller() {
    let c = Connected::start_with(Store::Sqlite, "3s", &[], &["--max-scm-requests", "1"]).await;
    let git = HeldGitServer::start().await;
    let check = |repository: &str| {
        let runners = c.server.runners();
        let request = api::CheckRepositoryAccessRequest {
            runner_id: c.runner_id.clone(),
            repository_url: format!("{}/team/{repository}.git", git.url),
            ..Default::default()
        };
        async move {
            runners
                .check_repository_access(request)
                .await
                .map(|r| r.into_owned())
        }
    };

    // ACTIVE comes with the runner's first report; its request stream opens
    // just after.
    let metrics = format!("{}/metrics", c.server.url());
    eventually(PATIENCE, "the runner's stream is open", || async {
        let (_, body) = http_get(&metrics, None, CALL_TIMEOUT).await?;
        let text = String::from_utf8_lossy(&body).into_owned();
        if text.contains("corral_runner_streams 1\n") {
            Ok(())
        } else {
            Err(text)
        }
    })
    .await;

    // The first takes the runner's only slot: the git server holds it.
    let first = tokio::spawn(check("first"));
    eventually(PATIENCE, "the runner asks the git server", || async {
        assert!(
            !first.is_finished(),
            "the first check ended before the runner asked the git server"
        );
        match git.asked.load(Ordering::SeqCst) {
            0 => Err("not yet".to_string()),
            n => Ok(n),
        }
    })
    .await;
    let refused = check("second").await;
    match &refused {
        Err(e) => assert!(
            e.code == ErrorCode::ResourceExhausted
                && e.message.as_deref().unwrap_or("").contains("busy"),
            "expected resource_exhausted (busy), got {}",
            describe(e)
        ),
        Ok(answer) => panic!("a second check while the runner was busy: {answer:?}"),
    }

    git.release.send(true).unwrap();
    let answer = first
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("the first check: {}", describe(&e)));
    assert!(answer.has_access, "{answer:?}");
    assert_eq!(git.asked.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------
// Status tells the truth
// ---------------------------------------------------------------------------

async fn status_names_capabilities_gateway_info_and_advertised_urls(store: Store) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    // Another spelling of the same address: the URLs must be built from it.
    let advertised = format!("http://localhost:{port}/");
    let c = Connected::start_with(
        store,
        "3s",
        &[
            "--replica-name",
            "replica-a",
            "--replica-region",
            "eu-gw-1",
            "--public-url",
            "http://gateway.test:9/",
        ],
        &[
            "--listen",
            &listen,
            "--advertise-url",
            &advertised,
            "--info",
            "team=platform",
            "--info",
            "rack=b7",
        ],
    )
    .await;

    // The latency is the round trip of the runner's previous call (sign-up,
    // then reports): there from the first report on.
    let (runner, _) = c
        .server
        .wait_runner("gateway_info with a latency", &c.runner_id, |r| {
            status(r)
                .gateway_info
                .as_option()
                .and_then(|g| g.latency.as_option())
                .is_some_and(|l| l.seconds > 0 || l.nanos > 0)
        })
        .await;
    let s = status(&runner);
    let gateway = s.gateway_info.gateway.as_option().expect("a gateway");
    assert_eq!(gateway.name, "replica-a");
    assert_eq!(gateway.url, "http://gateway.test:9");
    assert_eq!(gateway.region, "eu-gw-1");

    let mut capabilities: Vec<_> = s.capabilities.iter().map(|c| c.as_known()).collect();
    capabilities.sort_by_key(|c| c.map(|c| c as i32));
    assert_eq!(
        capabilities,
        [
            Some(api::RunnerCapability::RUNNER_CAPABILITY_LIST_SCM_ORGANIZATIONS),
            Some(api::RunnerCapability::RUNNER_CAPABILITY_CHECK_REPOSITORY_ACCESS),
        ],
        "exactly what the runner serves"
    );

    let info: Vec<_> = s
        .additional_info
        .iter()
        .map(|f| (f.key.as_str(), f.value.as_str()))
        .collect();
    assert_eq!(info, [("team", "platform"), ("rack", "b7")]);

    assert_eq!(s.log_url, format!("http://localhost:{port}/logs"));
    assert_eq!(
        s.support_bundle_url,
        format!("http://localhost:{port}/support-bundle")
    );
    let token = c.server.logs_token(&c.runner_id).await;
    for url in [&s.log_url, &s.support_bundle_url] {
        let (code, _) = http_get(url, Some(&token), CALL_TIMEOUT).await.unwrap();
        assert_eq!(code, 200, "GET {url}");
    }
}

#[tokio::test]
async fn bad_info_and_advertise_url_flags_are_refused_at_start() {
    let tmp = tempfile::tempdir().unwrap();
    let long_key = format!("{}=x", "k".repeat(129));
    let cases: [&[&str]; 5] = [
        &["--info", "no-equals-sign"],
        &["--info", "=empty-key"],
        &["--info", &long_key],
        &["--info", "a=1", "--info", "a=2"],
        &["--advertise-url", "ftp://example.com"],
    ];
    for (i, flags) in cases.into_iter().enumerate() {
        let data_dir = tmp.path().join(format!("runner-{i}"));
        let mut runner = start_runner(tmp.path(), None, &data_dir, Some("crl_ex_unused"), flags);
        let exit = runner.wait_exit(PATIENCE).await;
        assert_eq!(exit.code(), Some(2), "{flags:?}: {}", runner.output());
        assert!(
            !data_dir.exists(),
            "{flags:?}: nothing is created before the flags are checked"
        );
    }
}

// ---------------------------------------------------------------------------
// Metrics reach a real Prometheus
// ---------------------------------------------------------------------------

const PROMETHEUS: &str = "/usr/bin/prometheus";
const METRICS_USER: &str = "corral-metrics";

/// Prometheus with its remote-write receiver, behind basic auth, on a free
/// port with a temporary database; killed when dropped.
struct Prometheus {
    child: std::process::Child,
    url: String,
    password: String,
    log: PathBuf,
}

impl Prometheus {
    /// Panics when Prometheus is not installed (`.ci/run` installs it).
    async fn start(dir: &Path) -> Prometheus {
        assert!(
            Path::new(PROMETHEUS).exists(),
            "{PROMETHEUS} is not installed: apt-get install --no-install-recommends prometheus \
             (.ci/run does), or leave this test out (a plain `cargo test` ignores it)"
        );
        let password = format!("pw-{}", uuid::Uuid::new_v4());
        let hash = bcrypt::hash(&password, 4).unwrap();
        let web = dir.join("web.yml");
        fs::write(
            &web,
            format!("basic_auth_users:\n  {METRICS_USER}: '{hash}'\n"),
        )
        .unwrap();
        let config = dir.join("prometheus.yml");
        fs::write(&config, "scrape_configs: []\n").unwrap();
        let log = dir.join("prometheus.log");
        // A free port can be taken before Prometheus binds it: then another.
        for _attempt in 0..3 {
            let port = free_port();
            let file = fs::File::create(&log).unwrap();
            let child = std::process::Command::new(PROMETHEUS)
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--web.config.file={}", web.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join("tsdb").display()
                ))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--web.enable-remote-write-receiver")
                .stdin(std::process::Stdio::null())
                .stdout(file.try_clone().unwrap())
                .stderr(file)
                .spawn()
                .expect("starting prometheus");
            let mut prometheus = Prometheus {
                child,
                url: format!("http://127.0.0.1:{port}"),
                password: password.clone(),
                log: log.clone(),
            };
            if prometheus.wait_ready().await {
                return prometheus;
            }
            eprintln!(
                "prometheus exited while starting:\n{}",
                fs::read_to_string(&log).unwrap_or_default()
            );
        }
        panic!("prometheus did not start");
    }

    /// Waits until Prometheus answers `/-/ready`; `false` if it exits first.
    async fn wait_ready(&mut self) -> bool {
        let ready = format!("{}/-/ready", self.url);
        let start = Instant::now();
        loop {
            if self.child.try_wait().ok().flatten().is_some() {
                return false;
            }
            let answer = self
                .client()
                .get(&ready)
                .basic_auth(METRICS_USER, Some(&self.password))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return true;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "prometheus was not ready within {TIMEOUT:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .timeout(CALL_TIMEOUT)
            .build()
            .unwrap()
    }

    fn write_url(&self) -> String {
        format!("{}/api/v1/write", self.url)
    }

    /// The series an instant query returns: each one's labels and value.
    async fn query(&self, query: &str) -> Result<Vec<(serde_json::Value, f64)>, String> {
        let response = self
            .client()
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .basic_auth(METRICS_USER, Some(&self.password))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let body: serde_json::Value = response.json().await.map_err(|e| e.to_string())?;
        let results = body["data"]["result"]
            .as_array()
            .ok_or_else(|| format!("no result in {body}"))?;
        Ok(results
            .iter()
            .map(|r| {
                let value = r["value"][1].as_str().and_then(|v| v.parse().ok());
                (r["metric"].clone(), value.unwrap_or(f64::NAN))
            })
            .collect())
    }

    /// Waits until `query` returns at least one series.
    async fn wait_series(&self, query: &str) -> Vec<(serde_json::Value, f64)> {
        let (series, took) = eventually(PATIENCE, &format!("Prometheus has {query}"), || async {
            let series = self.query(query).await?;
            if series.is_empty() {
                Err("no series yet".to_string())
            } else {
                Ok(series)
            }
        })
        .await;
        eprintln!("[measured] {query} in Prometheus after {took:?}");
        series
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "===== prometheus =====\n{}",
                fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }
}

/// UpdateRunner: the metrics configuration.
async fn configure_metrics(
    server: &Server,
    id: &str,
    metrics: api::update_runner_request::MetricsConfiguration,
) {
    server
        .runners()
        .update_runner(api::UpdateRunnerRequest {
            runner_id: id.into(),
            spec: MessageField::some(api::update_runner_request::Spec {
                configuration: MessageField::some(
                    api::update_runner_request::RunnerConfiguration {
                        metrics: MessageField::some(metrics),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateRunner: {}", describe(&e)));
}

async fn metrics_reach_prometheus_and_follow_configuration_changes(store: Store) {
    let prometheus_dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(prometheus_dir.path()).await;
    let mut c = Connected::start(store, "3s").await;
    let logs_token = c.server.logs_token(&c.runner_id).await;

    // A collector that refuses: the runner keeps working and retries.
    let wrong = "wrong-password-1f3a";
    configure_metrics(
        &c.server,
        &c.runner_id,
        api::update_runner_request::MetricsConfiguration {
            enabled: Some(true),
            url: Some(prometheus.write_url()),
            username: Some(METRICS_USER.into()),
            password: Some(wrong.into()),
            ..Default::default()
        },
    )
    .await;
    let (line, _) = c.wait_log_line(&logs_token, "could not push metrics").await;
    assert!(line.contains("401"), "{line}");
    c.wait_active().await;

    // Some SCM work to count: an access check against a closed port.
    let closed = format!("http://127.0.0.1:{}/team/repo.git", free_port());
    let _ = c
        .server
        .runners()
        .check_repository_access(api::CheckRepositoryAccessRequest {
            runner_id: c.runner_id.clone(),
            repository_url: closed,
            ..Default::default()
        })
        .await;

    // A heartbeat has a lag to push. Two more reports: the runner has handled
    // the answer to the first of them (heartbeats go one after the other).
    for _ in 0..2 {
        let before = status(&c.server.get_runner(&c.runner_id).await.unwrap()).updated_at;
        c.server
            .wait_runner("a heartbeat", &c.runner_id, |r| {
                status(r).updated_at != before
            })
            .await;
    }

    // The right password: pushed at once, without a restart.
    configure_metrics(
        &c.server,
        &c.runner_id,
        api::update_runner_request::MetricsConfiguration {
            password: Some(prometheus.password.clone()),
            ..Default::default()
        },
    )
    .await;
    let selector = format!("{{runner_id=\"{}\"}}", c.runner_id);
    let info = prometheus
        .wait_series(&format!("corral_runner_info{selector}"))
        .await;
    assert_eq!(info[0].0["version"], corral_runner::agent::VERSION);
    assert_eq!(info[0].1, 1.0);
    let uptime = prometheus
        .wait_series(&format!("corral_runner_uptime_seconds{selector}"))
        .await;
    assert!(uptime[0].1 > 0.0, "{uptime:?}");
    prometheus
        .wait_series(&format!("corral_runner_stream_reconnects_total{selector}"))
        .await;
    let failures = prometheus
        .wait_series(&format!(
            "corral_runner_metrics_push_failures_total{selector}"
        ))
        .await;
    assert!(failures[0].1 >= 1.0, "the refused pushes: {failures:?}");
    let lag = prometheus
        .wait_series(&format!("corral_runner_heartbeat_lag_seconds{selector}"))
        .await;
    assert!(lag[0].1 >= 0.0 && lag[0].1 < 60.0, "{lag:?}");
    let scm = prometheus
        .wait_series(&format!("corral_runner_scm_requests_total{selector}"))
        .await;
    assert_eq!(scm.len(), 1, "{scm:?}");
    assert_eq!(scm[0].1, 1.0);
    assert!(scm[0].0["provider"].is_string() && scm[0].0["outcome"].is_string());
    assert!(
        scm[0].0.get("host").is_none(),
        "no per-host series: {scm:?}"
    );
    prometheus
        .wait_series(&format!(
            "corral_runner_scm_request_duration_seconds_count{selector}"
        ))
        .await;

    // Verbose: per-call series and histogram buckets.
    configure_metrics(
        &c.server,
        &c.runner_id,
        api::update_runner_request::MetricsConfiguration {
            include_verbose_metrics: Some(true),
            ..Default::default()
        },
    )
    .await;
    let buckets = prometheus
        .wait_series(&format!(
            "corral_runner_scm_request_duration_seconds_bucket{{runner_id=\"{}\",call=\"check_repository_access\",le=\"+Inf\"}}",
            c.runner_id
        ))
        .await;
    assert_eq!(buckets[0].1, 1.0);
    let host = buckets[0].0["host"].as_str().unwrap_or_default();
    assert!(host.starts_with("127.0.0.1"), "host {host:?}");

    // The password is nowhere the runner writes to, nor in the API.
    let (code, logs) = http_get(&c.log_url().await, Some(&logs_token), CALL_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(code, 200);
    let logs = String::from_utf8_lossy(&logs);
    let output = c.runner.output();
    for secret in [wrong, prometheus.password.as_str()] {
        assert!(!logs.contains(secret) && !output.contains(secret));
    }
    let runner = c.server.get_runner(&c.runner_id).await.unwrap();
    let metrics = spec_configuration(&runner).metrics.into_option().unwrap();
    assert!(metrics.enabled && metrics.include_verbose_metrics);
    assert_eq!(metrics.password, "", "write-only");
}

// ---------------------------------------------------------------------------
// Releases and self-update
// ---------------------------------------------------------------------------

/// `corral admin ARGS… --data-dir <server's> [--database-url …]`, run to its
/// end; returns whether it succeeded and what it printed.
async fn admin(server: &Server, logs: &Path, args: &[&str]) -> (bool, String) {
    let mut all: Vec<&str> = vec!["admin"];
    all.extend_from_slice(args);
    all.extend(["--data-dir", server.data_dir.to_str().unwrap()]);
    if let Some(url) = server.store.database_url() {
        all.extend(["--database-url", url]);
    }
    let mut proc = Proc::spawn(logs, &numbered("admin"), &all);
    let status = proc.wait_exit(RELEASE_PATIENCE).await;
    (status.success(), proc.output())
}

/// `corral admin release publish --channel stable --version VERSION --file FILE`.
async fn publish_stable(server: &Server, logs: &Path, version: &str, file: &str) -> (bool, String) {
    admin(
        server,
        logs,
        &[
            "release",
            "publish",
            "--channel",
            "stable",
            "--version",
            version,
            "--file",
            file,
        ],
    )
    .await
}

/// UpdateRunner: auto-update and the update window.
async fn set_update_policy(server: &Server, id: &str, auto_update: bool, window: (u32, u32)) {
    server
        .runners()
        .update_runner(api::UpdateRunnerRequest {
            runner_id: id.into(),
            spec: MessageField::some(api::update_runner_request::Spec {
                configuration: MessageField::some(
                    api::update_runner_request::RunnerConfiguration {
                        auto_update: Some(auto_update),
                        update_window: MessageField::some(api::UpdateWindow {
                            start_hour: Some(window.0),
                            end_hour: Some(window.1),
                            ..Default::default()
                        }),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateRunner: {}", describe(&e)));
}

/// For what moves a whole release (a debug build of ~100 MB) through the
/// store: publishing it, and a runner downloading and verifying it.
const RELEASE_PATIENCE: Patience = Patience {
    timeout: Duration::from_secs(300),
    poll: Duration::from_millis(200),
};

/// What the runner reports about a pending or failed update.
fn update_note(runner: &api::Runner) -> Option<String> {
    status(runner)
        .additional_info
        .iter()
        .find(|f| f.key == "update")
        .map(|f| f.value.clone())
}

fn sha256_file(path: &Path) -> String {
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Two builds that report different versions: a copy of the binary told (by
/// the test-only `CORRAL_TEST_VERSION_OVERRIDE`) that it is 0.0.1, and the
/// binary itself, published as its real version. The runner's clock is
/// pinned at 12:00 UTC (`CORRAL_TEST_UTC_HOUR`), so windows are open or
/// closed deterministically. Waits are on what the runner reports, never on
/// time.
async fn a_runner_updates_itself_only_when_allowed(store: Store) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let server = Server::start(tmp.path(), "90s", store).await;
    let real_version = env!("CARGO_PKG_VERSION");

    // Bad releases are refused and change nothing.
    let script = tmp.path().join("not-elf");
    fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
    let (ok, out) = publish_stable(&server, tmp.path(), "9.9.9", script.to_str().unwrap()).await;
    assert!(!ok && out.contains("not an ELF executable"), "{out}");
    let (ok, out) = publish_stable(&server, tmp.path(), "latest-and-greatest", BIN).await;
    assert!(!ok && out.contains("not a semantic version"), "{out}");
    let (ok, out) = admin(&server, tmp.path(), &["release", "list"]).await;
    assert!(
        ok && !out.contains("stable "),
        "nothing was published: {out}"
    );

    // The runner: a copy of the binary, reporting 0.0.1, with a window
    // (03-05) that is closed at its 12:00.
    let (runner_id, exchange_token) = server.create_runner("updating").await;
    set_update_policy(&server, &runner_id, true, (3, 5)).await;
    let bin_dir = tmp.path().join("bin");
    fs::create_dir(&bin_dir).unwrap();
    let exe = bin_dir.join("corral");
    fs::copy(BIN, &exe).unwrap();
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    let data_dir = tmp.path().join("runner-data");
    let url = server.url();
    let mut runner = Proc::spawn_program(
        tmp.path(),
        &numbered("runner"),
        &exe,
        &[
            "runner",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--server",
            &url,
            "--exchange-token",
            &exchange_token,
            "--update-check-interval",
            "1h",
        ],
        &[
            ("CORRAL_TEST_VERSION_OVERRIDE", "0.0.1"),
            ("CORRAL_TEST_UTC_HOUR", "12"),
        ],
    );
    server
        .wait_runner("the runner reports 0.0.1", &runner_id, |r| {
            phase(r) == Some(ACTIVE) && status(r).version == "0.0.1"
        })
        .await;

    // Publishing is seen at the next check: a spec change triggers one.
    let (ok, out) = publish_stable(&server, tmp.path(), real_version, BIN).await;
    assert!(ok, "{out}");
    assert!(out.contains(&sha256_file(Path::new(BIN))), "{out}");
    let (ok, out) = publish_stable(&server, tmp.path(), real_version, BIN).await;
    assert!(!ok && out.contains("already published"), "{out}");

    set_update_policy(&server, &runner_id, true, (4, 6)).await;
    let (r, _) = server
        .wait_runner("the update waits for its window", &runner_id, |r| {
            update_note(r).is_some_and(|n| n.contains("outside the update window 04:00-06:00 UTC"))
        })
        .await;
    assert_eq!(status(&r).version, "0.0.1");

    // Auto-update off never updates, whatever the window.
    set_update_policy(&server, &runner_id, false, (11, 13)).await;
    let (r, _) = server
        .wait_runner("the update waits for auto-update", &runner_id, |r| {
            update_note(r).is_some_and(|n| n.contains("auto-update is off"))
        })
        .await;
    assert_eq!(status(&r).version, "0.0.1");
    assert_ne!(sha256_file(&exe), "", "the executable is still there");

    // A failed update keeps the running version and says why: the file the
    // download goes to is taken (by a directory).
    let staging = bin_dir.join(format!(".corral.update-{}", runner.pid()));
    fs::create_dir(&staging).unwrap();
    set_update_policy(&server, &runner_id, true, (10, 13)).await;
    let (r, _) = server
        .wait_runner("the failed update is reported", &runner_id, |r| {
            update_note(r)
                .is_some_and(|n| n.starts_with(&format!("update to {real_version} failed")))
        })
        .await;
    eprintln!("reported: {:?}", update_note(&r));
    assert_eq!(status(&r).version, "0.0.1");
    assert!(runner.try_status().is_none(), "the runner keeps running");
    fs::remove_dir(&staging).unwrap();

    // Auto-update on and 12:00 inside 11-13: the runner downloads, verifies,
    // replaces its executable and restarts into it (same process id, same
    // data dir), reporting its real version.
    set_update_policy(&server, &runner_id, true, (11, 13)).await;
    let (r, took) = server
        .wait_runner_within(
            RELEASE_PATIENCE,
            "the runner runs the new version",
            &runner_id,
            |r| status(r).version == real_version && phase(r) == Some(ACTIVE),
        )
        .await;
    eprintln!("[measured] updated and back within {took:?}");
    assert_eq!(update_note(&r), None, "nothing pending after the update");
    assert!(
        runner.try_status().is_none(),
        "the runner re-executed itself instead of exiting"
    );
    assert_eq!(
        sha256_file(&exe),
        sha256_file(Path::new(BIN)),
        "the executable was replaced"
    );
    assert_eq!(
        fs::metadata(&exe).unwrap().permissions().mode() & 0o777,
        0o755
    );
    let leftovers: Vec<_> = fs::read_dir(&bin_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 1, "no staging file is left: {leftovers:?}");

    // Listing and withdrawing.
    let (ok, out) = admin(
        &server,
        tmp.path(),
        &["release", "list", "--channel", "stable"],
    )
    .await;
    assert!(ok && out.contains(real_version), "{out}");
    let (ok, out) = admin(
        &server,
        tmp.path(),
        &[
            "release",
            "withdraw",
            "--channel",
            "stable",
            "--version",
            real_version,
        ],
    )
    .await;
    assert!(ok, "{out}");
    let (ok, out) = admin(&server, tmp.path(), &["release", "list"]).await;
    assert!(ok && !out.contains(real_version), "{out}");
    let (ok, out) = admin(
        &server,
        tmp.path(),
        &[
            "release",
            "withdraw",
            "--channel",
            "stable",
            "--version",
            real_version,
        ],
    )
    .await;
    assert!(!ok && out.contains("no release"), "{out}");
    runner.stop(PATIENCE).await;
}
