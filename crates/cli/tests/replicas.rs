//! Several `corral serve` replicas on one PostgreSQL, with real processes:
//! two replicas (A and B) on a database of their own, and a runner given both
//! URLs (A first).
//!
//! - Both replicas start at once; exactly one bootstraps the installation.
//! - The runner is created via A and connects to A; via B, UpdateRunner and
//!   an SCM RPC reach it (B passes them to A through PostgreSQL).
//! - While both are up, the liveness duty runs on exactly one of them.
//! - A is killed (SIGKILL): the runner moves to B and is ACTIVE there; it is
//!   never INACTIVE meanwhile, B takes over the duties if A had them, and the
//!   runner's gateway_info names B (`--replica-name`, URL).
//! - A rolling restart: A comes back, B stops (SIGTERM); the runner returns to
//!   A, again never INACTIVE, and A leads.
//! - Resolved callers are kept for an hour (`--caller-ttl 1h`), yet a personal
//!   access token deleted via A is refused at once by A and, as soon as B hears
//!   of it, by B: callers are forgotten on change, not when they expire.
//!
//! And moving an installation onto PostgreSQL: a server on SQLite gets a
//! runner and a host token; after `corral admin migrate-store` a server on
//! the new database, with the same data dir (data key), serves them to the
//! admin's old token, and a second migration into it is refused.
//!
//! Both tests need PostgreSQL, a database of their own from `corral_testkit`
//! (dropped at the end, also when the test fails), and are ignored unless
//! asked for: `scripts/test` runs them. Nothing waits for a fixed time: conditions are polled with
//! a generous timeout, and how long things took is printed, not asserted.

use std::fs;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use base64::Engine as _;
use buffa::MessageField;
use connectrpc::ConnectError;
use connectrpc::client::{ClientConfig, HttpClient};
use corral_api::gitpod::v1 as api;
use corral_testkit::{PostgresDatabase, free_port};
use sqlx::Connection as _;

mod support;

use support::{
    BIN, Patience, Proc, create_linux_host_runner, describe, eventually, http_get, phase,
};

/// Overall limit for anything the test waits for.
const TIMEOUT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(100);
const PATIENCE: Patience = Patience {
    timeout: TIMEOUT,
    poll: POLL,
};
/// Deadline of each RPC the test makes.
const CALL_TIMEOUT: Duration = Duration::from_secs(20);
/// The replicas' runner grace: long enough that a runner switching replicas
/// never goes silent for this long.
const GRACE: &str = "10s";

const ACTIVE: api::RunnerPhase = api::RunnerPhase::RUNNER_PHASE_ACTIVE;
const INACTIVE: api::RunnerPhase = api::RunnerPhase::RUNNER_PHASE_INACTIVE;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

/// How many rows `table` of the test database has.
async fn count(db: &PostgresDatabase, table: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let count = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    count
}

/// `N` random bytes (for keys).
fn random_bytes<const N: usize>() -> [u8; N] {
    use std::io::Read as _;
    let mut bytes = [0u8; N];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    bytes
}

/// A plain HTTP/1.0 GET; returns status and body (as text).
async fn http_get_text(url: &str, bearer: Option<&str>) -> Result<(u16, String), String> {
    let (code, body) = http_get(url, bearer, CALL_TIMEOUT).await?;
    Ok((code, String::from_utf8_lossy(&body).into_owned()))
}

/// What a replica's `/metrics` says.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Metrics {
    liveness_runs: u64,
    cleanup_runs: u64,
    leader: bool,
    runner_streams: u64,
}

fn metric(text: &str, name: &str) -> Result<u64, String> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .ok_or_else(|| format!("no {name} in the metrics"))?
        .trim()
        .parse()
        .map_err(|e| format!("{name}: {e}"))
}

type Runners = api::RunnerServiceClient<HttpClient>;
type Configs = api::RunnerConfigurationServiceClient<HttpClient>;
type Identity = api::IdentityServiceClient<HttpClient>;
type Users = api::UserServiceClient<HttpClient>;

/// One `corral serve` replica on the test database.
struct Replica {
    proc: Proc,
    name: String,
    port: u16,
    data_dir: PathBuf,
    tmp: PathBuf,
    database_url: String,
    /// How many processes this replica has had.
    starts: usize,
}

impl Replica {
    fn spawn(tmp: &Path, name: &str, database_url: &str, keys: &[(&str, String)]) -> Replica {
        let data_dir = tmp.join(format!("{name}-data"));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&data_dir)
            .expect("creating a data dir");
        // Replicas share the server's keys, as an operator arranges.
        for (file, key) in keys {
            use std::io::Write as _;
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(data_dir.join(file))
                .and_then(|mut f| f.write_all(key.as_bytes()))
                .expect("writing a key");
        }
        let port = free_port();
        let proc = Self::launch(
            tmp,
            name,
            &format!("replica-{name}"),
            port,
            &data_dir,
            database_url,
        );
        Replica {
            proc,
            name: name.to_string(),
            port,
            data_dir,
            tmp: tmp.to_path_buf(),
            database_url: database_url.to_string(),
            starts: 1,
        }
    }

    /// `corral serve` as replica `replica` (its name in runners' gateway_info),
    /// output in `<tmp>/<name>.log`.
    fn launch(
        tmp: &Path,
        replica: &str,
        name: &str,
        port: u16,
        data_dir: &Path,
        database_url: &str,
    ) -> Proc {
        let listen = format!("127.0.0.1:{port}");
        Proc::spawn_program(
            tmp,
            name,
            Path::new(BIN),
            &[
                "serve",
                "--replica-name",
                replica,
                "--listen",
                &listen,
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--database-url",
                database_url,
                "--runner-grace",
                GRACE,
                // Only forgetting on change can make a change visible.
                "--caller-ttl",
                "1h",
            ],
            // Duty runs are logged at debug level; the test reads who ran them.
            &[("CORRAL_LOG", "info,corral_server::duties=debug")],
        )
    }

    /// Starts the replica again (same port, data dir and database) after it ended.
    async fn restart(&mut self) {
        assert!(self.proc.try_status().is_some(), "{} still runs", self.name);
        self.starts += 1;
        let name = format!("replica-{}-{}", self.name, self.starts);
        self.proc = Self::launch(
            &self.tmp,
            &self.name,
            &name,
            self.port,
            &self.data_dir,
            &self.database_url,
        );
        self.wait_healthy().await;
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `/healthz` answers (the server binds only after bootstrapping).
    async fn wait_healthy(&mut self) {
        let url = format!("{}/healthz", self.url());
        let start = Instant::now();
        loop {
            if let Some(status) = self.proc.try_status() {
                panic!("replica {} exited while starting: {status:?}", self.name);
            }
            if matches!(http_get_text(&url, None).await, Ok((200, _))) {
                return;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "replica {} did not come up within {TIMEOUT:?}",
                self.name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    fn admin_token(&self) -> Option<String> {
        fs::read_to_string(self.data_dir.join("admin-token"))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    async fn metrics(&self) -> Result<Metrics, String> {
        let (code, text) = http_get_text(&format!("{}/metrics", self.url()), None).await?;
        if code != 200 {
            return Err(format!("GET /metrics on {}: HTTP {code}", self.name));
        }
        Ok(Metrics {
            liveness_runs: metric(
                &text,
                "corral_background_duty_runs_total{duty=\"liveness\"}",
            )?,
            cleanup_runs: metric(&text, "corral_background_duty_runs_total{duty=\"cleanup\"}")?,
            leader: metric(&text, "corral_leader")? == 1,
            runner_streams: metric(&text, "corral_runner_streams")?,
        })
    }

    fn config(&self, token: &str) -> ClientConfig {
        ClientConfig::new(self.url().parse().unwrap())
            .with_default_timeout(CALL_TIMEOUT)
            .with_default_header("authorization", format!("Bearer {token}"))
    }

    fn runners(&self, token: &str) -> Runners {
        Runners::new(HttpClient::plaintext(), self.config(token))
    }

    fn users(&self, token: &str) -> Users {
        Users::new(HttpClient::plaintext(), self.config(token))
    }

    /// GetAuthenticatedIdentity, as a result.
    async fn try_identity(&self, token: &str) -> Result<(), ConnectError> {
        Identity::new(HttpClient::plaintext(), self.config(token))
            .get_authenticated_identity(api::GetAuthenticatedIdentityRequest::default())
            .await
            .map(|_| ())
    }

    fn configs(&self, token: &str) -> Configs {
        Configs::new(HttpClient::plaintext(), self.config(token))
    }

    /// GetAuthenticatedIdentity: the caller's id and organization.
    async fn identity(&self, token: &str) -> (String, String) {
        let response = Identity::new(HttpClient::plaintext(), self.config(token))
            .get_authenticated_identity(api::GetAuthenticatedIdentityRequest::default())
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "GetAuthenticatedIdentity via {}: {}",
                    self.name,
                    describe(&e)
                )
            })
            .into_owned();
        let subject = response.subject.into_option().unwrap_or_default();
        (subject.id, response.organization_id)
    }

    async fn get_runner(&self, token: &str, id: &str) -> Result<api::Runner, ConnectError> {
        let response = self
            .runners(token)
            .get_runner(api::GetRunnerRequest {
                runner_id: id.into(),
                ..Default::default()
            })
            .await?
            .into_owned();
        Ok(response.runner.into_option().unwrap_or_default())
    }

    /// CheckAuthenticationForHost on `runner_id` (answered by the runner).
    async fn check_authentication(
        &self,
        token: &str,
        runner_id: &str,
        host: &str,
    ) -> Result<api::CheckAuthenticationForHostResponse, ConnectError> {
        Ok(self
            .runners(token)
            .check_authentication_for_host(api::CheckAuthenticationForHostRequest {
                host: host.into(),
                runner_id: runner_id.into(),
                ..Default::default()
            })
            .await?
            .into_owned())
    }
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
async fn replicas_share_runners_and_run_duties_once() {
    // Declared first, dropped last: after every process is gone.
    let db = PostgresDatabase::create().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let base64 = base64::engine::general_purpose::STANDARD;
    // Replicas share the data key; the logs signing key they share through the database.
    let keys = [("data-key", base64.encode(random_bytes::<32>()))];

    // Both replicas start at once on the empty database: one bootstraps.
    let mut a = Replica::spawn(tmp.path(), "a", db.url(), &keys);
    let mut b = Replica::spawn(tmp.path(), "b", db.url(), &keys);
    a.wait_healthy().await;
    b.wait_healthy().await;
    let tokens: Vec<String> = [&a, &b].iter().filter_map(|r| r.admin_token()).collect();
    assert_eq!(tokens.len(), 1, "exactly one replica bootstrapped");
    assert_eq!(count(&db, "organizations").await, 1, "one organization");
    assert_eq!(count(&db, "users").await, 1, "one admin");
    let admin = tokens[0].clone();

    // A token both replicas resolved and keep, deleted via A.
    let (admin_id, _) = a.identity(&admin).await;
    let pat = a
        .users(&admin)
        .create_personal_access_token(api::CreatePersonalAccessTokenRequest {
            user_id: admin_id.clone(),
            description: "kept by both replicas".into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("CreatePersonalAccessToken via A: {}", describe(&e)))
        .into_owned()
        .token;
    a.identity(&pat).await;
    b.identity(&pat).await;
    let listed = a
        .users(&admin)
        .list_personal_access_tokens(api::ListPersonalAccessTokensRequest::default())
        .await
        .unwrap_or_else(|e| panic!("ListPersonalAccessTokens via A: {}", describe(&e)))
        .into_owned();
    let pat_id = listed
        .personal_access_tokens
        .iter()
        .find(|t| t.description == "kept by both replicas")
        .expect("the new token is listed")
        .id
        .clone();
    a.users(&admin)
        .delete_personal_access_token(api::DeletePersonalAccessTokenRequest {
            personal_access_token_id: pat_id,
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("DeletePersonalAccessToken via A: {}", describe(&e)));
    let refused = a.try_identity(&pat).await.expect_err("A refuses at once");
    assert_eq!(refused.code, connectrpc::ErrorCode::Unauthenticated);
    let deleted = Instant::now();
    eventually(PATIENCE, "B refuses the deleted token", || {
        let (b, pat) = (&b, &pat);
        async move {
            match b.try_identity(pat).await {
                Err(e) if e.code == connectrpc::ErrorCode::Unauthenticated => Ok(()),
                other => Err(format!("B answered {other:?}")),
            }
        }
    })
    .await;
    eprintln!(
        "[measured] B refused the deleted token {:?} after A deleted it",
        deleted.elapsed()
    );

    // A runner created via A, given both URLs (A first): it connects to A.
    let created = create_linux_host_runner(&a.runners(&admin), "replicated").await;
    let runner_id = created.runner.into_option().unwrap().runner_id;
    let runner_dir = tmp.path().join("runner-data");
    let (a_url, b_url) = (a.url(), b.url());
    let mut runner = Proc::spawn(
        tmp.path(),
        "runner",
        &[
            "runner",
            "--data-dir",
            runner_dir.to_str().unwrap(),
            "--server",
            &a_url,
            "--server",
            &b_url,
            "--exchange-token",
            &created.exchange_token,
        ],
    );
    let started = Instant::now();
    eventually(
        PATIENCE,
        "the runner is ACTIVE with its stream on A",
        || {
            let runner_exited = runner.try_status();
            let (a, b, admin, id) = (&a, &b, &admin, &runner_id);
            async move {
                if let Some(status) = runner_exited {
                    panic!("the runner exited: {status:?}");
                }
                let phase = phase(&a.get_runner(admin, id).await.map_err(|e| describe(&e))?);
                let (on_a, on_b) = (a.metrics().await?, b.metrics().await?);
                if phase == Some(ACTIVE) && on_a.runner_streams == 1 && on_b.runner_streams == 0 {
                    Ok(())
                } else {
                    Err(format!(
                        "phase {phase:?}, streams on A {}, on B {}",
                        on_a.runner_streams, on_b.runner_streams
                    ))
                }
            }
        },
    )
    .await;
    eprintln!(
        "[measured] runner ACTIVE on A {:?} after it started",
        started.elapsed()
    );

    // Via B: a configuration push reaches the runner on A. Its logs (read
    // with a logs token B signed) show the new level.
    b.runners(&admin)
        .update_runner(api::UpdateRunnerRequest {
            runner_id: runner_id.clone(),
            spec: MessageField::some(api::update_runner_request::Spec {
                configuration: MessageField::some(
                    api::update_runner_request::RunnerConfiguration {
                        log_level: Some(api::LogLevel::LOG_LEVEL_DEBUG.into()),
                        ..Default::default()
                    },
                ),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("UpdateRunner via B: {}", describe(&e)));
    let logs_token = b
        .runners(&admin)
        .create_runner_logs_token(api::CreateRunnerLogsTokenRequest {
            runner_id: runner_id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("CreateRunnerLogsToken via B: {}", describe(&e)))
        .into_owned()
        .access_token;
    let log_url = b
        .get_runner(&admin, &runner_id)
        .await
        .unwrap()
        .status
        .into_option()
        .unwrap()
        .log_url;
    let (_, took) = eventually(PATIENCE, "the runner logs the level set via B", || async {
        let (code, text) = http_get_text(&log_url, Some(&logs_token)).await?;
        if code != 200 {
            return Err(format!("GET {log_url}: HTTP {code}"));
        }
        if text.contains("log level LOG_LEVEL_DEBUG") {
            Ok(())
        } else {
            Err(format!(
                "{} log lines, none with the new level",
                text.lines().count()
            ))
        }
    })
    .await;
    eprintln!("[measured] UpdateRunner via B seen by the runner on A within {took:?}");

    // Via B: an SCM RPC goes to the runner on A, and its answer comes back.
    let answer = b
        .check_authentication(&admin, &runner_id, "github.com")
        .await
        .unwrap_or_else(|e| panic!("CheckAuthenticationForHost via B: {}", describe(&e)));
    assert!(!answer.authenticated, "no token for github.com yet");
    assert_eq!(answer.scm_id, "github");

    // The background duties ran, each on exactly one replica, while both were up.
    let ((on_a, on_b), _) = eventually(PATIENCE, "the duties ran", || async {
        let (on_a, on_b) = (a.metrics().await?, b.metrics().await?);
        if on_a.liveness_runs + on_b.liveness_runs > 0 && on_a.cleanup_runs + on_b.cleanup_runs > 0
        {
            Ok((on_a, on_b))
        } else {
            Err(format!("A {on_a:?}, B {on_b:?}"))
        }
    })
    .await;
    assert!(
        (on_a.liveness_runs > 0) != (on_b.liveness_runs > 0),
        "the liveness duty ran on exactly one replica: A {on_a:?}, B {on_b:?}"
    );
    assert!(
        (on_a.cleanup_runs > 0) != (on_b.cleanup_runs > 0),
        "the cleanup duty ran on exactly one replica: A {on_a:?}, B {on_b:?}"
    );
    assert!(
        on_a.leader != on_b.leader,
        "one leader: A {on_a:?}, B {on_b:?}"
    );
    assert_eq!(on_a.leader, on_a.liveness_runs > 0, "the leader ran them");
    let (leader, follower) = if on_a.leader { (&a, &b) } else { (&b, &a) };
    assert!(
        leader
            .proc
            .output()
            .contains("background duty ran: liveness")
            && !follower.proc.output().contains("background duty ran"),
        "only the leader logs its duties"
    );
    let a_led = on_a.leader;
    eprintln!(
        "[measured] leader {}: {} liveness runs; the other replica 0",
        leader.name,
        on_a.liveness_runs.max(on_b.liveness_runs)
    );

    // A dies. The runner moves to B and is ACTIVE there, never INACTIVE
    // meanwhile; B runs the duties from now on.
    a.proc.sigkill();
    let (phases, took) = switch_to(&mut runner, &b, &admin, &runner_id).await;
    eprintln!(
        "[measured] after killing A (leader: {a_led}): runner on B, B leading and sweeping, within {took:?}; phases seen via B: {phases:?}"
    );
    assert!(
        runner
            .output()
            .contains(&format!("moving to the management plane at {b_url}")),
        "the runner says it moved to B"
    );

    // A rolling restart: A comes back, then B stops gracefully. The runner
    // returns to A, never INACTIVE meanwhile; A leads again.
    a.restart().await;
    assert_eq!(count(&db, "organizations").await, 1, "no second bootstrap");
    let status = b.proc.stop(PATIENCE).await;
    assert!(status.success(), "B stopped cleanly: {status:?}");
    let (phases, took) = switch_to(&mut runner, &a, &admin, &runner_id).await;
    eprintln!(
        "[measured] after stopping B: runner on A, A leading and sweeping, within {took:?}; phases seen via A: {phases:?}"
    );
    assert!(
        runner
            .output()
            .contains(&format!("moving to the management plane at {a_url}")),
        "the runner says it moved back to A"
    );
}

/// Polls via `to` (the one replica left) until the runner's stream is there,
/// `to` leads and has swept a few times since, and an SCM RPC via `to`
/// reaches the runner. The runner must never be INACTIVE meanwhile. Returns
/// the phases seen and how long it took.
async fn switch_to(
    runner: &mut Proc,
    to: &Replica,
    admin: &str,
    runner_id: &str,
) -> (Vec<Option<api::RunnerPhase>>, Duration) {
    let phases_seen = std::cell::RefCell::new(Vec::new());
    let runs_since = std::cell::Cell::new(None);
    let (_, took) = eventually(
        PATIENCE,
        &format!("the runner is served by {}, which leads", to.name),
        || {
            let runner_exited = runner.try_status();
            let (phases_seen, runs_since) = (&phases_seen, &runs_since);
            async move {
                if let Some(status) = runner_exited {
                    panic!("the runner exited: {status:?}");
                }
                let seen = to
                    .get_runner(admin, runner_id)
                    .await
                    .map_err(|e| describe(&e))?;
                let phase = phase(&seen);
                if phases_seen.borrow().last() != Some(&phase) {
                    phases_seen.borrow_mut().push(phase);
                }
                assert_ne!(
                    phase,
                    Some(INACTIVE),
                    "the runner went INACTIVE while switching"
                );
                let metrics = to.metrics().await?;
                if phase != Some(ACTIVE) || metrics.runner_streams != 1 || !metrics.leader {
                    return Err(format!("phase {phase:?}, {} {metrics:?}", to.name));
                }
                // The runner's status names the replica it is connected to.
                let gateway = seen
                    .status
                    .as_option()
                    .and_then(|s| s.gateway_info.as_option())
                    .and_then(|g| g.gateway.as_option())
                    .map(|g| (g.name.clone(), g.url.clone()));
                if gateway != Some((to.name.clone(), to.url())) {
                    return Err(format!("gateway_info names {gateway:?}"));
                }
                to.check_authentication(admin, runner_id, "github.com")
                    .await
                    .map_err(|e| {
                        format!(
                            "CheckAuthenticationForHost via {}: {}",
                            to.name,
                            describe(&e)
                        )
                    })?;
                // Keep watching until the leader has swept a few times since.
                let since = runs_since.get().unwrap_or(metrics.liveness_runs);
                runs_since.set(Some(since));
                if metrics.liveness_runs < since + 3 {
                    return Err(format!(
                        "swept {} times since",
                        metrics.liveness_runs - since
                    ));
                }
                Ok(())
            }
        },
    )
    .await;
    (phases_seen.into_inner(), took)
}

/// `corral admin migrate-store` with `args`; returns how it ended and its output.
async fn migrate_store(tmp: &Path, name: &str, from: &str, to: &str) -> (ExitStatus, String) {
    let mut proc = Proc::spawn(
        tmp,
        name,
        &["admin", "migrate-store", "--from", from, "--to", to],
    );
    let (status, _) = eventually(PATIENCE, &format!("{} exits", proc.name), || {
        let status = proc.try_status();
        async move { status.ok_or_else(|| "still running".to_string()) }
    })
    .await;
    (status, proc.output())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
async fn an_installation_moves_from_sqlite_to_postgres() {
    // Declared first, dropped last: after every process is gone.
    let db = PostgresDatabase::create().await;
    let tmp = tempfile::tempdir().expect("temp dir");
    let keys = [(
        "data-key",
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>()),
    )];
    let sqlite = format!(
        "sqlite:{}",
        tmp.path().join("m-data").join("corral.db").display()
    );

    // A server on SQLite: a runner and a host token (a secret at rest).
    let mut server = Replica::spawn(tmp.path(), "m", &sqlite, &keys);
    server.wait_healthy().await;
    let admin = server.admin_token().expect("the server bootstrapped");
    let identity = server.identity(&admin).await;
    let runner = create_linux_host_runner(&server.runners(&admin), "moved")
        .await
        .runner
        .into_option()
        .expect("a runner");
    let host_token = server
        .configs(&admin)
        .create_host_authentication_token(api::CreateHostAuthenticationTokenRequest {
            runner_id: runner.runner_id.clone(),
            host: "github.com".into(),
            token: "ghp_kept-encrypted".into(),
            source: api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_PAT.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("CreateHostAuthenticationToken: {}", describe(&e)))
        .into_owned()
        .token
        .into_option()
        .expect("a host token");
    let status = server.proc.stop(PATIENCE).await;
    assert!(
        status.success(),
        "the SQLite server stopped cleanly: {status:?}"
    );

    let (status, output) = migrate_store(tmp.path(), "migrate-store", &sqlite, db.url()).await;
    assert!(
        status.success(),
        "migrate-store failed ({status:?}):\n{output}"
    );
    for expected in [
        "runners ",
        "host_tokens ",
        "api_tokens ",
        "row counts and checksums match",
        "same data key",
    ] {
        assert!(output.contains(expected), "no {expected:?} in:\n{output}");
    }
    eprintln!("{output}");

    // Once more into the same database: refused, nothing changes.
    let (status, output) =
        migrate_store(tmp.path(), "migrate-store-again", &sqlite, db.url()).await;
    assert!(!status.success(), "a second migration must fail:\n{output}");
    assert!(output.contains("already holds data"), "{output}");
    assert_eq!(count(&db, "runners").await, 1, "one runner");

    // A server on PostgreSQL with the same data dir: the old admin token
    // works and the runner and host token are there.
    server.database_url = db.url().to_string();
    server.restart().await;
    assert_eq!(count(&db, "organizations").await, 1, "no second bootstrap");
    assert_eq!(server.identity(&admin).await, identity, "the same admin");
    let moved = server
        .get_runner(&admin, &runner.runner_id)
        .await
        .unwrap_or_else(|e| panic!("GetRunner on PostgreSQL: {}", describe(&e)));
    assert_eq!(moved.name, "moved");
    assert_eq!(moved.created_at, runner.created_at);
    let stored = server
        .configs(&admin)
        .get_host_authentication_token(api::GetHostAuthenticationTokenRequest {
            id: host_token.id.clone(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("GetHostAuthenticationToken on PostgreSQL: {}", describe(&e)))
        .into_owned()
        .token
        .into_option()
        .expect("a host token");
    assert_eq!(stored, host_token);
    let status = server.proc.stop(PATIENCE).await;
    assert!(
        status.success(),
        "the PostgreSQL server stopped cleanly: {status:?}"
    );
}
