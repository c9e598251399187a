//! The client commands end to end: the real `corral` binary against a real
//! `corral serve` (SQLite, and PostgreSQL in the ignored variants) and a
//! real runner started with the command `runners create` prints. Checks the
//! tables (ids and times redacted), the JSON and YAML output parsed back,
//! the config file's modes, and the exit codes of failures.

use std::fs;
use std::future::Future;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_testkit::PostgresDatabase;
use serde_json::Value;

mod support;

use support::{BIN, Patience, Proc, Served, eventually};

const PATIENCE: Patience = Patience {
    timeout: Duration::from_secs(20),
    poll: Duration::from_millis(50),
};

corral_testkit::on_both_stores!(
    runners_from_login_to_deletion,
    groups_policies_classes_tokens_members_and_audit,
    admin_lists_disables_and_reissues_tokens_for_users,
);

async fn on_sqlite<Fut: Future<Output = ()>>(test: impl FnOnce(Option<PostgresDatabase>) -> Fut) {
    test(None).await;
}

async fn on_postgres<Fut: Future<Output = ()>>(test: impl FnOnce(Option<PostgresDatabase>) -> Fut) {
    test(Some(PostgresDatabase::create().await)).await;
}

/// A server on `database` (SQLite in its data dir when `None`).
async fn serve(dir: &Path, database: Option<&PostgresDatabase>) -> Served {
    serve_with(dir, database, &[]).await
}

async fn serve_with(dir: &Path, database: Option<&PostgresDatabase>, flags: &[&str]) -> Served {
    let mut extra = flags.to_vec();
    if let Some(database) = database {
        extra.extend(["--database-url", database.url()]);
    }
    Served::start(dir, "server", &extra, PATIENCE).await
}

/// What one run of the client printed, and how it ended.
#[derive(Debug)]
struct Ran {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Ran {
    /// Asserts success and returns stdout.
    fn ok(self) -> String {
        assert_eq!(self.code, 0, "expected success: {self:?}");
        self.stdout
    }

    fn json(self) -> Value {
        let out = self.ok();
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
    }

    /// Asserts the failure `code` with one line on stderr and no panic.
    fn fails(self, code: i32) -> String {
        assert_eq!(self.code, code, "expected exit code {code}: {self:?}");
        assert_eq!(self.stderr.lines().count(), 1, "one line: {self:?}");
        assert!(
            !self.stderr.contains("panicked") && !self.stderr.contains("backtrace"),
            "{self:?}"
        );
        self.stderr
    }
}

/// The client as one user sees it: a config dir of its own.
struct Client {
    config_home: PathBuf,
}

impl Client {
    fn new(dir: &Path, name: &str) -> Client {
        let config_home = dir.join(format!("{name}-config"));
        fs::create_dir_all(&config_home).unwrap();
        Client { config_home }
    }

    fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = Command::new(BIN);
        command.args(args).env("XDG_CONFIG_HOME", &self.config_home);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CORRAL_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        command
    }

    /// Runs `corral ARGS…` with `input` on stdin (a pipe, never a terminal).
    fn run_with(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Ran {
        let mut child = self
            .command(args, env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting corral");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        let output = child.wait_with_output().expect("running corral");
        Ran {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Ran {
        self.run_with(args, &[], "")
    }

    fn login(&self, url: &str, token: &str) {
        let out = self
            .run_with(
                &["login", "--url", url, "--token-stdin"],
                &[],
                &format!("{token}\n"),
            )
            .ok();
        assert!(out.contains("logged in to"), "{out}");
    }
}

/// A table with its ids (UUIDs, same width) and times (last column) redacted.
fn redact(table: &str) -> String {
    table
        .lines()
        .map(|line| {
            let mut out = String::new();
            for (i, word) in line.split(' ').enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                if uuid::Uuid::parse_str(word).is_ok() && word.len() == 36 {
                    out.push_str("xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx");
                } else if chrono::DateTime::parse_from_rfc3339(word).is_ok() {
                    out.push_str("<TIME>");
                } else {
                    out.push_str(word);
                }
            }
            out
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn field<'a>(value: &'a Value, path: &str) -> &'a Value {
    path.split('.')
        .fold(value, |v, key| v.get(key).unwrap_or(&Value::Null))
}

fn text(value: &Value, path: &str) -> String {
    field(value, path).as_str().unwrap_or_default().to_string()
}

async fn runners_from_login_to_deletion(database: Option<PostgresDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), database.as_ref()).await;
    let client = Client::new(dir.path(), "admin");

    // Login with the token on stdin; the config file is private.
    client.login(&server.url(), &server.admin_token);
    let config_dir = client.config_home.join("corral");
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&config_dir), 0o700);
    assert_eq!(mode(&config_dir.join("config.toml")), 0o600);
    let whoami = client.run(&["whoami"]).ok();
    assert!(whoami.contains("admin@localhost"), "{whoami}");
    let identity = client.run(&["whoami", "--output", "json"]).json();
    assert_eq!(
        text(&identity, "identity.subject.principal"),
        "PRINCIPAL_USER"
    );

    // Create: the token and the exact command to start the runner.
    let created = client
        .run(&["runners", "create", "--name", "build host"])
        .ok();
    let start_line = created.lines().last().unwrap().trim().to_string();
    let expected_prefix = format!(
        "corral runner --server {} --exchange-token crl_ex_",
        server.url()
    );
    assert!(start_line.starts_with(&expected_prefix), "{created}");
    let exchange_token = start_line.rsplit(' ').next().unwrap().to_string();

    // The table, the JSON and the YAML of the list.
    let table = client.run(&["runners", "list"]).ok();
    assert_eq!(
        redact(table.trim_end()),
        "ID                                    NAME        PROVIDER    PHASE    DESIRED  VERSION  CREATED\n\
         xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx  build host  LINUX_HOST  CREATED  ACTIVE            <TIME>"
    );
    let listed = client.run(&["runners", "list", "--output", "json"]).json();
    let runners = listed["runners"].as_array().expect("a runners array");
    assert_eq!(runners.len(), 1, "{listed}");
    let id = text(&runners[0], "runnerId");
    assert_eq!(text(&runners[0], "name"), "build host");
    assert_eq!(text(&runners[0], "status.phase"), "RUNNER_PHASE_CREATED");
    let yaml: Value =
        serde_yaml::from_str(&client.run(&["runners", "list", "--output", "yaml"]).ok())
            .expect("YAML");
    assert_eq!(text(&yaml["runners"][0], "runnerId"), id);

    // Events: one line per change, while they happen.
    let watch_config = client.config_home.to_str().unwrap().to_string();
    let mut watch = Proc::spawn_program(
        dir.path(),
        "watch",
        Path::new(BIN),
        &["runners", "watch", "--runner", &id],
        &[("XDG_CONFIG_HOME", &watch_config)],
    );

    // `list --watch` prints the list again when a runner changes.
    let mut list_watch = Proc::spawn_program(
        dir.path(),
        "list-watch",
        Path::new(BIN),
        &["runners", "list", "--watch"],
        &[("XDG_CONFIG_HOME", &watch_config)],
    );
    let mut renames = 0;
    eventually(PATIENCE, "`list --watch` prints the new name", || {
        let output = list_watch.output();
        let seen = output.lines().any(|l| l.contains("  listed host  "));
        if !seen {
            renames += 1;
            let name = if renames % 2 == 0 {
                "listed host"
            } else {
                "listed"
            };
            client.run(&["runners", "update", &id, "--name", name]).ok();
        }
        async move { seen.then_some(()).ok_or(output) }
    })
    .await;
    list_watch.sigkill();

    // Update, and see it in `get`.
    client
        .run(&[
            "runners",
            "update",
            &id,
            "--name",
            "build host 2",
            "--log-level",
            "debug",
            "--auto-update",
            "false",
        ])
        .ok();
    let got = client
        .run(&["runners", "get", &id, "--output", "json"])
        .json();
    assert_eq!(text(&got, "runner.name"), "build host 2");
    assert_eq!(
        text(&got, "runner.spec.configuration.logLevel"),
        "LOG_LEVEL_DEBUG"
    );
    // The watch may subscribe after that update: rename until it prints one.
    let mut renames = 0;
    eventually(PATIENCE, "the watch prints an update", || {
        let output = watch.output();
        let seen = output
            .lines()
            .any(|l| l.contains(" UPDATE RUNNER ") && l.ends_with(id.as_str()));
        if !seen {
            renames += 1;
            let name = format!("build host {renames}");
            client
                .run(&["runners", "update", &id, "--name", &name])
                .ok();
        }
        async move { seen.then_some(()).ok_or(output) }
    })
    .await;
    watch.sigkill();
    let nothing = client.run(&["runners", "update", &id]).fails(2);
    assert!(nothing.contains("nothing to change"), "{nothing}");

    // A real runner, started with the printed command, becomes ACTIVE.
    let runner_data = dir.path().join("runner-data");
    let mut runner = Proc::spawn(
        dir.path(),
        "runner",
        &[
            "runner",
            "--server",
            &server.url(),
            "--exchange-token",
            &exchange_token,
            "--data-dir",
            runner_data.to_str().unwrap(),
        ],
    );
    eventually(PATIENCE, "the runner is ACTIVE in `runners get`", || {
        let got = client.run(&["runners", "get", &id, "--output", "json"]);
        async move {
            let value: Value =
                serde_json::from_str(&got.stdout).map_err(|e| format!("{e}: {got:?}"))?;
            let phase = text(&value, "runner.status.phase");
            (phase == "RUNNER_PHASE_ACTIVE").then_some(()).ok_or(phase)
        }
    })
    .await;
    let detail = client.run(&["runners", "get", &id]).ok();
    assert!(
        detail
            .lines()
            .any(|l| l.starts_with("PHASE") && l.ends_with("ACTIVE")),
        "{detail}"
    );

    // `get --watch` prints the runner again when it changes.
    let mut get_watch = Proc::spawn_program(
        dir.path(),
        "get-watch",
        Path::new(BIN),
        &["runners", "get", &id, "--watch"],
        &[("XDG_CONFIG_HOME", &watch_config)],
    );
    let mut renames = 0;
    eventually(PATIENCE, "`get --watch` prints the new name", || {
        let output = get_watch.output();
        let seen = output
            .lines()
            .any(|l| l.starts_with("NAME") && l.ends_with("watched host"));
        if !seen {
            renames += 1;
            let name = if renames % 2 == 0 {
                "watched host"
            } else {
                "watched"
            };
            client.run(&["runners", "update", &id, "--name", name]).ok();
        }
        async move { seen.then_some(()).ok_or(output) }
    })
    .await;
    get_watch.sigkill();
    let renders = get_watch
        .output()
        .lines()
        .filter(|l| l.starts_with("PHASE"))
        .count();
    assert!(
        renders >= 2,
        "the first and a later one: {}",
        get_watch.output()
    );

    // SCM calls go to the runner: without a token for the host it says so.
    let parse = client
        .run(&[
            "scm",
            "parse",
            "https://github.com/acme/app",
            "--runner",
            &id,
        ])
        .fails(1);
    assert!(parse.contains("failed_precondition"), "{parse}");

    // SCM integrations of the runner.
    let integration = client
        .run(&[
            "scm-integrations",
            "create",
            "--runner",
            &id,
            "--scm",
            "github",
            "--host",
            "github.com",
            "--pat",
            "--output",
            "json",
        ])
        .json();
    let integration_id = text(&integration, "id");
    let table = client
        .run(&["scm-integrations", "list", "--runner", &id])
        .ok();
    assert_eq!(
        redact(table.trim_end()),
        "ID                                    SCM     HOST        RUNNER                                PAT   OAUTH CLIENT\n\
         xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx  github  github.com  xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx  true"
    );
    // The server's answer to a bad change reaches the user as one line.
    let refused = client
        .run(&[
            "scm-integrations",
            "update",
            &integration_id,
            "--pat",
            "false",
        ])
        .fails(1);
    assert!(refused.contains("personal access tokens"), "{refused}");
    let got = client
        .run(&[
            "scm-integrations",
            "get",
            &integration_id,
            "--output",
            "json",
        ])
        .json();
    assert_eq!(text(&got, "integration.host"), "github.com");
    assert_eq!(got["integration"]["pat"], Value::Bool(true), "{got}");

    // Host tokens: the secret comes from stdin and is never shown.
    let secret = "ghp_cli_test_secret_value";
    let created = client
        .run_with(
            &[
                "host-tokens",
                "create",
                "--runner",
                &id,
                "--host",
                "github.com",
                "--output",
                "json",
            ],
            &[],
            &format!("{secret}\n"),
        )
        .json();
    let token_id = text(&created, "token.id");
    let listed = client
        .run(&["host-tokens", "list", "--runner", &id, "--output", "json"])
        .ok();
    assert!(
        listed.contains(&token_id) && !listed.contains(secret),
        "{listed}"
    );
    let got = client.run(&["host-tokens", "get", &token_id]).ok();
    assert!(
        got.lines()
            .any(|l| l.starts_with("SOURCE") && l.ends_with("PAT")),
        "{got}"
    );
    client
        .run_with(&["host-tokens", "update", &token_id], &[], "ghp_another\n")
        .ok();
    client
        .run(&["host-tokens", "delete", &token_id, "--yes"])
        .ok();
    client.run(&["host-tokens", "get", &token_id]).fails(3);
    client
        .run(&["scm-integrations", "delete", &integration_id, "--yes"])
        .ok();
    client
        .run(&["scm-integrations", "get", &integration_id])
        .fails(3);

    // Its logs, fetched from the runner with a logs token.
    let logs = client.run(&["runners", "logs", &id]).ok();
    assert!(logs.contains("signed up as runner"), "{logs}");
    let log_file = dir.path().join("runner.log.txt");
    client
        .run(&["runners", "logs", &id, "-o", log_file.to_str().unwrap()])
        .ok();
    assert!(
        fs::read_to_string(&log_file)
            .unwrap()
            .contains("signed up as runner")
    );

    // Secrets of the configuration come from stdin and are not shown back.
    let secret = "metrics-password-not-to-show";
    client
        .run_with(
            &[
                "runners",
                "update",
                &id,
                "--metrics-enabled",
                "true",
                "--metrics-url",
                "http://127.0.0.1:9/api/v1/write",
                "--metrics-username",
                "pusher",
                "--metrics-password",
            ],
            &[],
            &format!("{secret}\n"),
        )
        .ok();
    let got = client
        .run(&["runners", "get", &id, "--output", "json"])
        .ok();
    assert!(!got.contains(secret), "{got}");
    let got: Value = serde_json::from_str(&got).unwrap();
    let metrics = field(&got, "runner.spec.configuration.metrics");
    assert_eq!(text(metrics, "url"), "http://127.0.0.1:9/api/v1/write");
    assert_eq!(text(metrics, "username"), "pusher");
    assert_eq!(metrics["enabled"], Value::Bool(true));

    // A new exchange token comes with the command again.
    let token = client.run(&["runners", "token", &id]).ok();
    assert!(
        token
            .lines()
            .last()
            .unwrap()
            .trim()
            .starts_with(&expected_prefix),
        "{token}"
    );

    // Deleting asks; without a terminal it needs --yes.
    let refused = client.run(&["runners", "delete", &id]).fails(2);
    assert!(refused.contains("--yes"), "{refused}");
    client.run(&["runners", "delete", &id, "--yes"]).ok();
    runner.wait_exit(PATIENCE).await;
    eventually(PATIENCE, "the deleted runner is gone", || {
        let got = client.run(&["runners", "get", &id]);
        async move {
            if got.code == 3 {
                Ok(got)
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await
    .0
    .fails(3);
}

async fn groups_policies_classes_tokens_members_and_audit(database: Option<PostgresDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), database.as_ref()).await;
    let client = Client::new(dir.path(), "admin");
    client.login(&server.url(), &server.admin_token);
    let me = text(
        &client.run(&["whoami", "--output", "json"]).json(),
        "identity.subject.id",
    );
    let created = client
        .run(&[
            "runners",
            "create",
            "--name",
            "policy host",
            "--output",
            "json",
        ])
        .json();
    let runner = text(&created, "runner.runnerId");

    // Groups and memberships.
    let group = client
        .run(&[
            "groups",
            "create",
            "--name",
            "platform",
            "--description",
            "Platform team",
            "--output",
            "json",
        ])
        .json();
    let group_id = text(&group, "group.id");
    let groups = client.run(&["groups", "list", "--output", "json"]).json();
    assert!(
        groups["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| text(g, "id") == group_id),
        "{groups}"
    );
    client
        .run(&["groups", "update", &group_id, "--description", "the team"])
        .ok();
    let got = client
        .run(&["groups", "get", &group_id, "--output", "yaml"])
        .ok();
    let got: Value = serde_yaml::from_str(&got).unwrap();
    assert_eq!(text(&got, "group.description"), "the team");
    assert_eq!(text(&got, "group.name"), "platform");
    client
        .run(&["groups", "add-member", &group_id, "--user", &me])
        .ok();
    let members = client.run(&["groups", "members", &group_id]).ok();
    assert!(
        members.lines().skip(1).any(|l| l.contains(&me)),
        "{members}"
    );
    client
        .run(&["groups", "remove-member", &group_id, "--user", &me])
        .ok();
    let members = client
        .run(&["groups", "members", &group_id, "--output", "json"])
        .json();
    assert_eq!(members["members"].as_array().unwrap().len(), 0, "{members}");

    // Runner policies.
    client
        .run(&[
            "policies", "create", "--runner", &runner, "--group", &group_id, "--role", "user",
        ])
        .ok();
    client
        .run(&[
            "policies", "update", "--runner", &runner, "--group", &group_id, "--role", "admin",
        ])
        .ok();
    let policies = client.run(&["policies", "list", "--runner", &runner]).ok();
    assert_eq!(
        redact(policies.trim_end()),
        "GROUP                                 ROLE\nxxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx  ADMIN"
    );
    client
        .run(&[
            "policies", "delete", "--runner", &runner, "--group", &group_id,
        ])
        .ok();
    let policies = client
        .run(&["policies", "list", "--runner", &runner, "--output", "json"])
        .json();
    assert_eq!(
        policies["policies"].as_array().unwrap().len(),
        0,
        "{policies}"
    );
    client.run(&["groups", "delete", &group_id, "--yes"]).ok();
    client.run(&["groups", "get", &group_id]).fails(3);

    // Environment classes.
    let class = client
        .run(&[
            "env-classes",
            "create",
            "--runner",
            &runner,
            "--name",
            "small",
            "--description",
            "two cores",
            "--output",
            "json",
        ])
        .json();
    let class_id = text(&class, "id");
    client
        .run(&["env-classes", "update", &class_id, "--enabled", "false"])
        .ok();
    let got = client
        .run(&["env-classes", "get", &class_id, "--output", "json"])
        .json();
    assert_eq!(text(&got, "environmentClass.displayName"), "small");
    assert_eq!(
        got["environmentClass"].get("enabled"),
        None,
        "disabled: {got}"
    );
    let classes = client
        .run(&["env-classes", "list", "--runner", &runner])
        .ok();
    assert_eq!(classes.lines().count(), 2, "{classes}");

    // Personal access tokens: the new token works, and stops working once deleted.
    let pat = client
        .run(&["pats", "create", "--description", "ci", "--valid-for", "1d"])
        .ok();
    let pat_token = pat.lines().last().unwrap().trim().to_string();
    let pats = client.run(&["pats", "list", "--output", "json"]).json();
    let pat_id = pats["personalAccessTokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| text(p, "description") == "ci")
        .map(|p| text(p, "id"))
        .expect("the new token is listed");
    let got = client
        .run(&["pats", "get", &pat_id, "--output", "json"])
        .json();
    assert_eq!(text(&got, "pat.userId"), me);
    let as_pat = [("CORRAL_URL", server.url()), ("CORRAL_TOKEN", pat_token)];
    let as_pat: Vec<(&str, &str)> = as_pat.iter().map(|(k, v)| (*k, v.as_str())).collect();
    client.run_with(&["whoami"], &as_pat, "").ok();
    client.run(&["pats", "delete", &pat_id, "--yes"]).ok();
    let revoked = client.run_with(&["runners", "list"], &as_pat, "").fails(4);
    assert!(revoked.contains("corral login"), "{revoked}");

    // Members and roles.
    let members = client.run(&["members", "list", "--output", "json"]).json();
    assert!(
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| text(m, "userId") == me),
        "{members}"
    );

    // The audit trail holds what was done, newest first.
    let audit = client
        .run(&["audit", "list", "--limit", "50", "--output", "json"])
        .json();
    let entries = audit["entries"].as_array().unwrap();
    let actions: Vec<String> = entries.iter().map(|e| text(e, "action")).collect();
    let position = |action: &str| actions.iter().position(|a| a == action);
    let (deleted, created) = (
        position("GroupService.DeleteGroup").expect("DeleteGroup audited"),
        position("GroupService.CreateGroup").expect("CreateGroup audited"),
    );
    assert!(deleted < created, "newest first: {actions:?}");
    let entry_id = text(&entries[0], "id");
    let got = client
        .run(&["audit", "get", &entry_id, "--output", "json"])
        .json();
    assert_eq!(text(&got, "entry.id"), entry_id);
    let filtered = client
        .run(&["audit", "list", "--subject", &runner, "--output", "json"])
        .json();
    assert!(
        filtered["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| text(e, "subjectId") == runner),
        "{filtered}"
    );
    let limited = client
        .run(&["audit", "list", "--limit", "2", "--output", "json"])
        .json();
    assert_eq!(limited["entries"].as_array().unwrap().len(), 2);
}

async fn admin_lists_disables_and_reissues_tokens_for_users(database: Option<PostgresDatabase>) {
    let dir = tempfile::tempdir().unwrap();
    // Every call resolves its token afresh: store changes count at once.
    let server = serve_with(dir.path(), database.as_ref(), &["--caller-ttl", "0s"]).await;
    let client = Client::new(dir.path(), "dev");
    let data_dir = server.data_dir.to_str().unwrap().to_string();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "user"];
        all.extend_from_slice(args);
        all.extend(["--data-dir", &data_dir]);
        if let Some(database) = &database {
            all.extend(["--database-url", database.url()]);
        }
        client.run(&all)
    };
    let added = admin(&["add", "--email", "dev@example.com"]).ok();
    let first_token = added.lines().last().unwrap().trim().to_string();
    let listed = admin(&["list"]).ok();
    let dev_line = listed
        .lines()
        .find(|l| l.contains("dev@example.com"))
        .unwrap_or_else(|| panic!("dev is listed: {listed}"));
    assert!(
        dev_line.contains(" member ") && dev_line.contains(" active "),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|l| l.contains("admin@localhost") && l.contains(" admin "))
    );
    let dev_id = dev_line.split_whitespace().next().unwrap().to_string();

    // A new token, by email; the old one keeps working.
    let reset = admin(&["reset-token", "dev@example.com"]).ok();
    let new_token = reset.lines().last().unwrap().trim().to_string();
    assert!(new_token.starts_with("crl_pat_"), "{reset}");
    assert_ne!(new_token, first_token);
    client.login(&server.url(), &new_token);
    let me = client.run(&["whoami", "--output", "json"]).json();
    assert_eq!(text(&me, "user.email"), "dev@example.com");

    // Disabled (by id): every token of the user is refused.
    let disabled = admin(&["disable", &dev_id]).ok();
    assert!(disabled.contains("suspended"), "{disabled}");
    client.run(&["whoami"]).fails(4);
    assert!(
        admin(&["list"])
            .ok()
            .lines()
            .any(|l| l.contains("dev@example.com") && l.contains(" suspended "))
    );
    admin(&["enable", "dev@example.com"]).ok();
    client.run(&["whoami"]).ok();

    // The organization's admin makes dev an admin through the API.
    let url = server.url();
    let as_admin = [
        ("CORRAL_URL", url.as_str()),
        ("CORRAL_TOKEN", server.admin_token.as_str()),
    ];
    let got = client
        .run_with(
            &["users", "get", &dev_id, "--output", "json"],
            &as_admin,
            "",
        )
        .json();
    assert_eq!(text(&got, "user.email"), "dev@example.com");
    client
        .run_with(&["members", "set-role", &dev_id, "admin"], &as_admin, "")
        .ok();
    let members = client.run(&["members", "list", "--search", "dev@"]).ok();
    assert_eq!(
        redact(members.trim_end()),
        "USER                                  EMAIL            NAME  ROLE   STATUS  SINCE\n\
         xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx  dev@example.com  dev   ADMIN  ACTIVE  <TIME>"
    );

    let missing = admin(&["disable", "nobody@example.com"]);
    assert_eq!(missing.code, 1, "{missing:?}");
    assert!(missing.stderr.contains("no user with email"), "{missing:?}");
}

/// Failures the store does not change: SQLite only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_one_line_and_an_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let client = Client::new(dir.path(), "nobody");

    // Before login.
    let not_logged_in = client.run(&["runners", "list"]).fails(4);
    assert!(
        not_logged_in.contains("corral login --url"),
        "{not_logged_in}"
    );
    // Usage errors (clap's code 2).
    let unknown = client.run(&["frobnicators", "list"]);
    assert_eq!(unknown.code, 2, "{unknown:?}");
    // A malformed id is refused before anything is sent.
    let malformed = client.run(&["runners", "get", "not-an-id"]);
    assert_eq!(malformed.code, 2, "{malformed:?}");
    assert!(malformed.stderr.contains("not an id"), "{malformed:?}");
    // Nobody listens on the port: unreachable.
    let port = corral_testkit::free_port();
    let unreachable = client
        .run_with(
            &[
                "login",
                "--url",
                &format!("http://127.0.0.1:{port}"),
                "--token-stdin",
            ],
            &[],
            "crl_pat_whatever\n",
        )
        .fails(5);
    assert!(unreachable.contains("unreachable"), "{unreachable}");
    assert!(
        !client.config_home.join("corral/config.toml").exists(),
        "nothing saved"
    );
    client
        .run_with(
            &["login", "--url", "ftp://example.invalid", "--token-stdin"],
            &[],
            "t\n",
        )
        .fails(2);

    let server = Served::start(dir.path(), "server", &[], PATIENCE).await;
    // A wrong token is not saved.
    client
        .run_with(
            &["login", "--url", &server.url(), "--token-stdin"],
            &[],
            "crl_pat_wrong\n",
        )
        .fails(4);
    assert!(
        !client.config_home.join("corral/config.toml").exists(),
        "nothing saved"
    );
    client.login(&server.url(), &server.admin_token);
    let missing = client
        .run(&["runners", "get", "0f8fad5b-d9cb-469f-a165-70867728950e"])
        .fails(3);
    assert!(missing.contains("not found"), "{missing}");
    client
        .run(&["groups", "get", "0f8fad5b-d9cb-469f-a165-70867728950e"])
        .fails(3);
    // The environment overrides the file.
    let url = server.url();
    client
        .run_with(
            &["runners", "list"],
            &[("CORRAL_URL", &url), ("CORRAL_TOKEN", "crl_pat_x")],
            "",
        )
        .fails(4);
    // Logout forgets the login.
    client.run(&["logout"]).ok();
    client.run(&["whoami"]).fails(4);

    // Completions for each shell.
    for shell in ["bash", "zsh", "fish"] {
        let script = client.run(&["completion", shell]).ok();
        assert!(script.contains("runners"), "{shell}: {script}");
    }
    // Every command has an example in its help.
    for command in [
        &["runners", "create"][..],
        &["groups", "list"],
        &["audit", "list"],
        &["login"],
    ] {
        let mut args = command.to_vec();
        args.push("--help");
        let help = client.run(&args).ok();
        assert!(help.contains("Example"), "{command:?}: {help}");
    }
    let help = client.run(&["--help"]).ok();
    assert!(help.contains("Exit codes"), "{help}");
}
