//! Opening the PostgreSQL store: a pool on the server named by a
//! `postgres://` URL, migrations applied on open. sqlx's PostgreSQL migrator
//! holds an advisory lock while it works, so replicas that start together
//! migrate one after the other and the later ones find nothing left to do.

use std::str::FromStr;

use anyhow::Context;
use sqlx::Connection as _;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgConnectOptions;

use super::connections::Connections;
use super::sql::{Dialect, SqlStore};

/// A pooled connection idle at least this long is pinged before it is used.
const CHECK_WHEN_IDLE_FOR: std::time::Duration = std::time::Duration::from_secs(10);

pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl SqlStore {
    /// Connects to `url` (`postgres://` or `postgresql://`) and brings the
    /// schema up to date. Errors name the server and database, never the password.
    pub async fn open_postgres(url: &str) -> anyhow::Result<Self> {
        let options = PgConnectOptions::from_str(url).context("invalid PostgreSQL URL")?;
        let target = format!(
            "{}:{}/{}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(default database)")
        );
        sqlx::any::install_default_drivers();
        let pool = AnyPoolOptions::new()
            .max_connections(10)
            // sqlx pings a pooled connection before every use by default: a
            // network round trip per query. Only one idle for a while is
            // checked (the server may have restarted or dropped it since).
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= CHECK_WHEN_IDLE_FOR {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect(url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {target}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("migrating the PostgreSQL database at {target}"))?;
        let connections = Connections::pool(pool);
        Ok(Self::new(
            connections.clone(),
            connections,
            None,
            Dialect::Postgres,
        ))
    }
}
