//! Opening the PostgreSQL store: a pool on the server named by a
//! `postgres://` URL, migrations applied on open. sqlx's PostgreSQL migrator
//! holds an advisory lock while it works, so replicas that start together
//! migrate one after the other and the later ones find nothing left to do.

use std::str::FromStr;
use std::sync::Arc;

use anyhow::Context;
use sqlx::Connection as _;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgConnectOptions;

use super::connections::{CHECK_WHEN_IDLE_FOR, Connections, Open};
use super::sql::{Dialect, SqlStore};

/// Connections that read at once (the store's own, see `connections`).
const READERS: u32 = 8;

/// Connections that write at once (sqlx's pool).
const WRITERS: u32 = 10;

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
            .max_connections(WRITERS)
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
        // Reads run on connections the store holds, which go back without
        // the round trip sqlx's pool spends checking each one handed back
        // (see `connections`); writes keep the pool.
        let url = url.to_string();
        let open: Open = Arc::new(move || {
            let url = url.clone();
            Box::pin(async move { sqlx::AnyConnection::connect(&url).await })
        });
        Ok(Self::new(
            Connections::checked(READERS, open),
            Connections::pool(pool),
            None,
            Dialect::Postgres,
        ))
    }
}
