//! `corral serve --config FILE` with the real binary: which setting wins
//! (flag, then environment, then file, then default), errors that name the
//! key and the file, `--print-config` printing a file that gives the same
//! configuration back without secrets, and a server that listens where its
//! file says.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

mod support;

use support::{BIN, Patience, Proc, eventually, http_get};

const PATIENCE: Patience = Patience {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(50),
};

/// `corral ARGS…` with exactly the `CORRAL_*` variables in `env`.
fn corral(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(BIN);
    command.args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CORRAL_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied());
    command.output().expect("running corral")
}

/// The effective settings `--print-config` shows, parsed.
fn print_config(args: &[&str], env: &[(&str, &str)]) -> (String, toml::Table) {
    let mut all = vec!["serve", "--print-config"];
    all.extend_from_slice(args);
    let output = corral(&all, env);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "--print-config failed: {stderr}");
    let text = String::from_utf8(output.stdout).unwrap();
    let table = text.parse::<toml::Table>().expect("the output is TOML");
    (text, table)
}

fn setting<'a>(table: &'a toml::Table, key: &str) -> &'a str {
    table
        .get(key)
        .and_then(|v| v.as_str())
        .unwrap_or_else(|| panic!("no {key} in {table:?}"))
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn flags_override_the_environment_which_overrides_the_file_which_overrides_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "corral.toml",
        r#"
replica-region = "from-file"
replica-name = "from-file"
runner-grace = "2m"
max-connections = 77
caller-ttl = "1s"
"#,
    );
    let (_, only_file) = print_config(&["--config", &file], &[]);
    assert_eq!(setting(&only_file, "replica-region"), "from-file");
    assert_eq!(setting(&only_file, "replica-name"), "from-file");
    assert_eq!(setting(&only_file, "runner-grace"), "2m");
    assert_eq!(setting(&only_file, "max-connections"), "77");
    // Not in the file: the default.
    assert_eq!(setting(&only_file, "audit-retention"), "90d");

    let env = [
        ("CORRAL_CONFIG", file.as_str()),
        ("CORRAL_REPLICA_REGION", "from-env"),
        ("CORRAL_REPLICA_NAME", "from-env"),
        ("CORRAL_RUNNER_GRACE", "3m"),
    ];
    let (_, layered) = print_config(
        &["--replica-region", "from-flag", "--runner-grace", "4m"],
        &env,
    );
    assert_eq!(setting(&layered, "replica-region"), "from-flag");
    assert_eq!(setting(&layered, "runner-grace"), "4m");
    assert_eq!(setting(&layered, "replica-name"), "from-env");
    assert_eq!(setting(&layered, "caller-ttl"), "1s");
    assert_eq!(setting(&layered, "max-connections"), "77");
    assert_eq!(setting(&layered, "idle-timeout"), "60s");
}

#[test]
fn print_config_prints_a_file_that_gives_the_same_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "first.toml",
        "public-url = \"https://corral.example.com\"\nbody-timeout = \"45s\"\n",
    );
    let (printed, _) = print_config(
        &["--config", &file, "--sqlite-synchronous", "normal"],
        &[("CORRAL_IDLE_TIMEOUT", "2m")],
    );
    let copy = write(dir.path(), "printed.toml", &printed);
    let (again, table) = print_config(&["--config", &copy], &[]);
    assert_eq!(printed, again);
    assert_eq!(setting(&table, "public-url"), "https://corral.example.com");
    assert_eq!(setting(&table, "sqlite-synchronous"), "normal");
    assert_eq!(setting(&table, "idle-timeout"), "2m");
}

#[test]
fn print_config_shows_no_secrets() {
    let data_key = "c2VjcmV0LWtleS1vZi10aGlydHktdHdvLWJ5dGVzISE=";
    let (printed, table) = print_config(
        &[],
        &[
            ("CORRAL_DATA_KEY", data_key),
            (
                "CORRAL_DATABASE_URL",
                "postgres://corral:hunter2@db.internal/corral",
            ),
        ],
    );
    assert!(!printed.contains(data_key), "{printed}");
    assert!(!printed.contains("hunter2"), "{printed}");
    assert_eq!(
        setting(&table, "database-url"),
        "postgres://corral:REDACTED@db.internal/corral"
    );
}

#[test]
fn unknown_keys_and_bad_values_are_errors_naming_key_and_file() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text, expected) in [
        (
            "typo.toml",
            "runer-grace = \"2m\"\n",
            "unknown key `runer-grace`",
        ),
        (
            "snake.toml",
            "runner_grace = \"2m\"\n",
            "unknown key `runner_grace`",
        ),
        (
            "config.toml",
            "config = \"other.toml\"\n",
            "unknown key `config`",
        ),
        ("value.toml", "runner-grace = \"soon\"\n", "`runner-grace`"),
        (
            "type.toml",
            "listen = true\n",
            "`listen` must be a string or an integer",
        ),
        ("range.toml", "max-connections = 0\n", "`max-connections`"),
        ("syntax.toml", "listen = \n", "is not valid TOML"),
    ] {
        let file = write(dir.path(), name, text);
        let output = corral(&["serve", "--config", &file, "--print-config"], &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&file),
            "{name}: the file is not named: {stderr}"
        );
        assert!(stderr.contains(expected), "{name}: {stderr}");
        assert!(output.stdout.is_empty(), "{name}: printed a configuration");
    }
    let missing = dir.path().join("missing.toml");
    let output = corral(
        &[
            "serve",
            "--config",
            missing.to_str().unwrap(),
            "--print-config",
        ],
        &[],
    );
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing.toml"));
}

#[tokio::test]
async fn the_server_listens_where_its_file_says() {
    let dir = tempfile::tempdir().unwrap();
    let port = corral_testkit::free_port();
    let data_dir = dir.path().join("data");
    let file = write(
        dir.path(),
        "corral.toml",
        &format!(
            "listen = \"127.0.0.1:{port}\"\ndata-dir = \"{}\"\n",
            data_dir.display()
        ),
    );
    let _server = Proc::spawn(dir.path(), "server", &["serve", "--config", &file]);
    let url = format!("http://127.0.0.1:{port}/healthz");
    eventually(
        PATIENCE,
        "the server answers on the file's address",
        || async {
            match http_get(&url, None, PATIENCE.timeout).await {
                Ok((200, body)) if body == b"ok" => Ok(()),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
    assert!(
        data_dir.join("admin-token").exists(),
        "the file's data dir is used"
    );
}
