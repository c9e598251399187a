//! Opening the embedded SQLite store: one file in the data directory, WAL mode
//! so the CLI can write while the server runs, migrations applied on open.
//!
//! The database and its companion files (`-wal`, `-shm`, `-journal`) are
//! readable by the owner only: the file is created with mode 0600 before
//! SQLite opens it (SQLite gives the companions the database file's mode),
//! and existing files with a wider mode are narrowed on open.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::Context;
use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use uuid::Uuid;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{AnyConnection, Connection as _, Executor as _};

use super::connections::{Connections, Open};
use super::direct_reads::DirectReads;
use super::group_commit::WalSync;
use super::recent::Recent;
use super::sql::{Dialect, SqlStore, runners_in_memory};
use crate::domain::Runner;

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqlStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Self> {
        Self::open_sqlite_url(&url_of(path)?).await
    }

    /// Opens a `sqlite:` URL, e.g. `sqlite:/var/lib/corral/corral.db`; the file
    /// is created if missing unless the URL names another `mode`.
    pub async fn open_sqlite_url(url: &str) -> anyhow::Result<Self> {
        Self::open_sqlite_with(url, Synchronous::Full).await
    }

    /// [`Self::open_sqlite_url`], committing with `synchronous`.
    pub async fn open_sqlite_with(url: &str, synchronous: Synchronous) -> anyhow::Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("invalid SQLite URL {url}"))?;
        let mode = url.split_once('?').and_then(|(_, query)| {
            query
                .split('&')
                .find_map(|p| p.strip_prefix("mode="))
                .map(str::to_string)
        });
        let has_mode = mode.is_some();
        let file = options.get_filename();
        let in_memory = file.as_os_str().is_empty()
            || file == Path::new(":memory:")
            || mode.as_deref() == Some("memory");
        if !in_memory {
            make_private(file, matches!(mode.as_deref(), None | Some("rwc")));
        }
        let url = match (has_mode, url.contains('?')) {
            (true, _) => url.to_string(),
            (false, true) => format!("{url}&mode=rwc"),
            (false, false) => format!("{url}?mode=rwc"),
        };
        sqlx::any::install_default_drivers();
        // A file committing in full: SQLite writes each commit to the log and
        // the store flushes the log, one flush for all the commits that
        // finished meanwhile (`group_commit`); a commit is on disk before the
        // write returns, as with SQLite's own FULL.
        let wal = (!in_memory && synchronous == Synchronous::Full).then(|| WalSync::new(file));
        let pragma = if wal.is_some() {
            Synchronous::Normal
        } else {
            synchronous
        };
        // Writes queue for one connection of their own (see `SqlStore`);
        // the busy timeout covers other processes (`corral admin`).
        let writer = Connections::held(1, opener(url.clone(), pragma));
        {
            let mut conn = writer
                .acquire()
                .await
                .context("opening the SQLite database")?;
            MIGRATOR
                .run(&mut *conn)
                .await
                .context("migrating the SQLite database")?;
        }
        // An in-memory database exists once per connection: one for all.
        let readers = if in_memory {
            writer.clone()
        } else {
            let readers = Connections::held(READERS, opener(url, pragma));
            readers
                .acquire()
                .await
                .context("opening the SQLite database")?;
            readers
        };
        // Hot reads read the file on the calling thread (`direct_reads`);
        // an in-memory database cannot be opened twice.
        let direct = (!in_memory).then(|| DirectReads::open(file)).flatten();
        // Runners are kept in memory until written: by this store, which
        // forgets them itself, or by another process on the same file,
        // which the watch hears of (an in-memory database has no other).
        let recent = Arc::new(runners_in_memory());
        let watch = match in_memory {
            true => None,
            false => {
                let version = data_version(&writer)
                    .await
                    .context("reading the SQLite database")?;
                Some(tokio::spawn(watch(
                    writer.clone(),
                    version,
                    Arc::downgrade(&recent),
                )))
            }
        };
        Ok(Self::new(readers, writer, wal, Dialect::Sqlite)
            .with_direct_reads(direct)
            .keeping_runners_in(recent, watch))
    }
}

/// How often the store asks SQLite whether another process wrote the file:
/// how stale a kept record can be after `corral admin` (or another server
/// on the same file) changed it.
pub const WATCH_EVERY: Duration = Duration::from_millis(250);

/// SQLite's count of commits made to the file by connections other than
/// the one asked. Asked of the writer, the store's only connection that
/// writes, it changes exactly when another process committed.
async fn data_version(writer: &Connections) -> sqlx::Result<i64> {
    let mut conn = writer.acquire().await?;
    sqlx::query_scalar("PRAGMA data_version")
        .fetch_one(&mut *conn)
        .await
}

/// Every [`WATCH_EVERY`], forgets the runners kept in `recent` if another
/// process committed since `seen` (which records it changed is not known).
/// While the question cannot be answered, `recent` keeps nothing
/// (`Recent::deafen`). Ends with the store.
async fn watch(writer: Connections, mut seen: i64, recent: Weak<Recent<Uuid, Runner>>) {
    let mut failing = false;
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let Some(recent) = recent.upgrade() else {
            return;
        };
        match data_version(&writer).await {
            Ok(version) if failing => {
                recent.hear();
                tracing::info!("can tell again whether another process wrote the database");
                (seen, failing) = (version, false);
            }
            Ok(version) if version != seen => {
                recent.forget_all();
                seen = version;
            }
            Ok(_) => {}
            Err(err) => {
                recent.deafen();
                if !failing {
                    tracing::warn!(%err, "cannot tell whether another process wrote the database; \
                        runners are read from it until it can again");
                }
                failing = true;
            }
        }
    }
}

/// The `sqlite:` URL of the database file at `path`.
pub fn url_of(path: &Path) -> anyhow::Result<String> {
    let path =
        std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
    let url = url::Url::from_file_path(&path)
        .map_err(|()| anyhow::anyhow!("{} cannot be a database path", path.display()))?;
    // file:///… (percent-encoded) → sqlite:///…, which sqlx decodes again.
    Ok(format!("sqlite{}", &url.as_str()["file".len()..]))
}

/// Connections that read at once.
const READERS: u32 = 8;

/// How a commit reaches the disk (SQLite's `synchronous`, in WAL mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Synchronous {
    /// Every commit is on disk before it returns: survives a power loss.
    #[default]
    Full,
    /// Commits reach the disk at checkpoints: a crash of the process loses
    /// nothing and the database stays consistent, but a power loss or a crash
    /// of the machine may lose the last commits. Far faster writes.
    Normal,
}

impl std::str::FromStr for Synchronous {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(Self::Full),
            "normal" => Ok(Self::Normal),
            other => Err(format!("{other:?} is neither full nor normal")),
        }
    }
}

/// Opens a connection to `url` set up for the store: SQLite's busy
/// handler waits up to 10 s for another process's lock, WAL journal,
/// `synchronous` as given.
fn opener(url: String, synchronous: Synchronous) -> Open {
    let pragma = match synchronous {
        Synchronous::Full => "PRAGMA synchronous = FULL",
        Synchronous::Normal => "PRAGMA synchronous = NORMAL",
    };
    Arc::new(move || {
        let url = url.clone();
        Box::pin(async move {
            let mut conn = AnyConnection::connect(&url).await?;
            // Foreign keys are on by sqlx's default. WAL lets readers and
            // one writer work at once; it sticks to the file.
            conn.execute("PRAGMA busy_timeout = 10000").await?;
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute(pragma).await?;
            Ok(conn)
        })
    })
}

/// Narrows the database file and its companions to mode 0600, creating the
/// database file first (empty, 0600) when `create` and it does not exist.
/// Problems are logged: SQLite reports any that keep it from opening.
fn make_private(database: &Path, create: bool) {
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    if create {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(database)
        {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => tracing::debug!("could not create {}: {e}", database.display()),
        }
    }
    for file in companions(database) {
        let mode = match std::fs::metadata(&file) {
            Ok(metadata) => metadata.permissions().mode() & 0o777,
            Err(_) => continue,
        };
        if mode & 0o077 == 0 {
            continue;
        }
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Ok(()) => tracing::info!("made {} private: mode {mode:04o} -> 0600", file.display()),
            Err(e) => tracing::warn!(
                "{} has mode {mode:04o} and could not be made private: {e}",
                file.display()
            ),
        }
    }
}

/// The database file and the files SQLite keeps next to it.
fn companions(database: &Path) -> Vec<PathBuf> {
    let mut files = vec![database.to_path_buf()];
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = database.as_os_str().to_owned();
        name.push(suffix);
        files.push(PathBuf::from(name));
    }
    files
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[tokio::test]
    async fn a_new_database_and_its_companions_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.db");
        let store = SqlStore::open_sqlite(&path).await.unwrap();
        // WAL mode: the companions exist while the database is open.
        for file in companions(&path).iter().filter(|f| f.exists()) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        assert!(companions(&path)[1].exists(), "a -wal file while open");
        store.close().await;
    }

    #[tokio::test]
    async fn existing_database_files_are_narrowed_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.db");
        SqlStore::open_sqlite(&path).await.unwrap().close().await;
        let files = companions(&path);
        for file in &files[..3] {
            if !file.exists() {
                std::fs::write(file, b"").unwrap();
            }
            std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        // An empty -wal/-shm is fine for SQLite: it rebuilds them.
        let url = format!("sqlite:{}", path.display());
        let store = SqlStore::open_sqlite_url(&url).await.unwrap();
        for file in files.iter().filter(|f| f.exists()) {
            assert_eq!(mode(file), 0o600, "{}", file.display());
        }
        store.close().await;
    }

    #[tokio::test]
    async fn commits_are_full_unless_asked_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let url = url_of(&dir.path().join("corral.db")).unwrap();
        // SQLite numbers them: NORMAL 1, FULL 2. In full, SQLite leaves the
        // flush to the store (group commit), which does it for every write.
        let store = SqlStore::open_sqlite_url(&url).await.unwrap();
        assert_eq!(store.pragma("synchronous").await, (1, 1));
        assert!(store.wal_sync().is_some());
        store.close().await;
        let store = SqlStore::open_sqlite_with(&url, Synchronous::Normal)
            .await
            .unwrap();
        assert_eq!(store.pragma("synchronous").await, (1, 1));
        assert!(store.wal_sync().is_none());
        store.close().await;
        assert_eq!("NORMAL".parse(), Ok(Synchronous::Normal));
        assert!("off".parse::<Synchronous>().is_err());
    }

    /// Every write through the store waits for a flush that started after
    /// its commit; writes made at once may share one.
    #[tokio::test]
    async fn every_write_waits_for_a_flush_of_the_log() {
        use crate::store::Store as _;
        let dir = tempfile::tempdir().unwrap();
        let url = url_of(&dir.path().join("corral.db")).unwrap();
        let store = std::sync::Arc::new(SqlStore::open_sqlite_url(&url).await.unwrap());
        let (before, _, _) = store.wal_sync().unwrap().counts();
        let writes: Vec<_> = (0..40)
            .map(|n| {
                let store = store.clone();
                tokio::spawn(async move {
                    store
                        .server_secret(&format!("secret-{n}"), "value")
                        .await
                        .unwrap()
                })
            })
            .collect();
        for write in writes {
            write.await.unwrap();
        }
        let (committed, flushed, flushes) = store.wal_sync().unwrap().counts();
        assert_eq!(committed - before, 40, "one flush asked for per write");
        assert_eq!(flushed, committed, "every write waited for its flush");
        assert!(flushes <= committed);
        store.close().await;
    }
}
