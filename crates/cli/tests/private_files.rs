//! The server's files are its own: the data dir is 0700 and the database
//! with its companions (`-wal`, `-shm`) 0600, also when they existed before
//! with wider modes, for `corral serve` and for `corral admin`, in the data
//! dir or where `--database-url` points.

use std::fs;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

mod support;

use support::{Patience, Proc, Served};

const PATIENCE: Patience = Patience {
    timeout: Duration::from_secs(30),
    poll: Duration::from_millis(50),
};

fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

fn set_mode(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// The database file and those of its companions that exist now.
fn database_files(database: &Path) -> Vec<PathBuf> {
    let mut files = vec![database.to_path_buf()];
    for suffix in ["-wal", "-shm"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        let file = PathBuf::from(name);
        if file.exists() {
            files.push(file);
        }
    }
    files
}

fn assert_private(dir: &Path, database: &Path, when: &str) {
    assert_eq!(mode(dir), 0o700, "{} {when}", dir.display());
    let files = database_files(database);
    for file in &files {
        assert_eq!(mode(file), 0o600, "{} {when}", file.display());
    }
    eprintln!(
        "{when}: {} is 0700; 0600: {:?}",
        dir.display(),
        files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect::<Vec<_>>()
    );
}

/// What every attempt at starting `name` wrote (`NAME-<attempt>.log`).
fn every_log_of(dir: &Path, name: &str) -> String {
    let mut logs: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.extension().is_some_and(|e| e == "log")
                && path
                    .file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with(&format!("{name}-")))
        })
        .collect();
    logs.sort();
    logs.iter()
        .map(|path| fs::read_to_string(path).unwrap_or_default())
        .collect()
}

/// Runs `corral ARGS…` to its end; panics unless it succeeds.
async fn corral(dir: &Path, name: &str, args: &[&str]) -> String {
    let mut proc = Proc::spawn(dir, name, args);
    let status = proc.wait_exit(PATIENCE).await;
    assert!(status.success(), "{name}: {status:?}\n{}", proc.output());
    proc.output()
}

#[tokio::test]
async fn an_open_data_dir_and_database_are_made_private() {
    let tmp = tempfile::tempdir().unwrap();
    let data_dir = tmp.path().join("server-data");
    let database = data_dir.join("corral.db");
    // As an older version, or an operator, may have left them.
    fs::create_dir(&data_dir).unwrap();
    set_mode(&data_dir, 0o755);
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&database)
        .unwrap();
    set_mode(&database, 0o644);

    let mut server = Served::start(tmp.path(), "server", &[], PATIENCE).await;
    assert_private(&data_dir, &database, "with the server running");
    for file in ["data-key", "admin-token"] {
        assert_eq!(mode(&data_dir.join(file)), 0o600, "{file}");
    }
    // From the first attempt: a start retried on another port (its free
    // port was taken meanwhile) finds the files already narrowed.
    let output = every_log_of(tmp.path(), "server");
    assert!(output.contains("mode 0755 -> 0700"), "{output}");
    assert!(output.contains("mode 0644 -> 0600"), "{output}");

    // The admin commands open the same store while the server runs.
    let data_dir_arg = data_dir.to_str().unwrap();
    corral(
        tmp.path(),
        "admin-user",
        &[
            "admin",
            "user",
            "add",
            "--email",
            "dev@example.com",
            "--data-dir",
            data_dir_arg,
        ],
    )
    .await;
    assert_private(&data_dir, &database, "after `admin user add`");
    assert!(server.proc.stop(PATIENCE).await.success());

    // Opened up again while nothing runs: an admin command narrows them.
    set_mode(&data_dir, 0o755);
    for file in database_files(&database) {
        set_mode(&file, 0o644);
    }
    let output = corral(
        tmp.path(),
        "admin-org",
        &[
            "admin",
            "org",
            "add",
            "--name",
            "Platform",
            "--admin-email",
            "lead@example.com",
            "--data-dir",
            data_dir_arg,
        ],
    )
    .await;
    assert!(output.contains("mode 0755 -> 0700"), "{output}");
    assert_private(&data_dir, &database, "after `admin org add`");
}

#[tokio::test]
async fn a_database_named_by_url_is_private() {
    let tmp = tempfile::tempdir().unwrap();
    let elsewhere = tmp.path().join("databases");
    fs::create_dir(&elsewhere).unwrap();
    set_mode(&elsewhere, 0o755);
    let database = elsewhere.join("custom.db");
    let url = format!("sqlite:{}", database.display());

    let server = Served::start(tmp.path(), "server", &["--database-url", &url], PATIENCE).await;
    assert!(
        database_files(&database).len() == 3,
        "the server runs in WAL mode: {:?}",
        database_files(&database)
    );
    for file in database_files(&database) {
        assert_eq!(mode(&file), 0o600, "{}", file.display());
    }
    assert_eq!(mode(&server.data_dir), 0o700);
    // Only the database lives there: that directory is the operator's.
    assert_eq!(mode(&elsewhere), 0o755);
}
