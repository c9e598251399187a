//! Opening the embedded SQLite store: one file in the data directory, WAL mode
//! so the CLI can write while the server runs, migrations applied on open.

use std::path::Path;
use std::str::FromStr;

use anyhow::Context;
use sqlx::Executor;
use sqlx::any::AnyPoolOptions;
use sqlx::sqlite::SqliteConnectOptions;

use super::sql::{Dialect, SqlStore};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

impl SqlStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open_sqlite(path: &Path) -> anyhow::Result<Self> {
        let path =
            std::path::absolute(path).with_context(|| format!("resolving {}", path.display()))?;
        let url = url::Url::from_file_path(&path)
            .map_err(|()| anyhow::anyhow!("{} cannot be a database path", path.display()))?;
        // file:///… (percent-encoded) → sqlite:///…, which sqlx decodes again.
        Self::open_sqlite_url(&format!("sqlite{}", &url.as_str()["file".len()..])).await
    }

    /// Opens a `sqlite:` URL, e.g. `sqlite:/var/lib/corral/corral.db`; the file
    /// is created if missing unless the URL names another `mode`.
    pub async fn open_sqlite_url(url: &str) -> anyhow::Result<Self> {
        SqliteConnectOptions::from_str(url).with_context(|| format!("invalid SQLite URL {url}"))?;
        let has_mode = url
            .split_once('?')
            .is_some_and(|(_, query)| query.split('&').any(|p| p.starts_with("mode=")));
        let url = match (has_mode, url.contains('?')) {
            (true, _) => url.to_string(),
            (false, true) => format!("{url}&mode=rwc"),
            (false, false) => format!("{url}?mode=rwc"),
        };
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| {
                Box::pin(async move {
                    // Foreign keys are on by sqlx's default. WAL lets readers
                    // and one writer work at once; it sticks to the file.
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .context("opening the SQLite database")?;
        MIGRATOR
            .run(&pool)
            .await
            .context("migrating the SQLite database")?;
        Ok(Self::new(pool, Dialect::Sqlite))
    }
}
