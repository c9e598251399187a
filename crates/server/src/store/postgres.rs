//! Opening the PostgreSQL store: connections to the server named by a
//! `postgres://` URL (held by `connections`), migrations applied on open. sqlx's PostgreSQL migrator
//! holds an advisory lock while it works, so replicas that start together
//! migrate one after the other and the later ones find nothing left to do.

use std::str::FromStr;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgConnectOptions;

use super::connections::{Connections, connecting_to};
use super::sql::{Dialect, SqlStore};

/// Connections that read at once.
const READERS: u32 = 8;

/// Connections that write at once.
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
        // Connections the store holds, which go back without the round trip
        // sqlx's pool spends checking each one handed back; a connection
        // whose statement was cut off or found it broken is closed instead
        // (see `connections`).
        let open = connecting_to(url);
        // Migrations on a pool of one connection of their own, closed after:
        // sqlx's migrator takes a pool, or a connection in a way that cannot
        // be shown `Send` for the store's spawned opens.
        let migrating = AnyPoolOptions::new()
            .max_connections(1)
            .connect(url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {target}"))?;
        MIGRATOR
            .run(&migrating)
            .await
            .with_context(|| format!("migrating the PostgreSQL database at {target}"))?;
        migrating.close().await;
        let readers = Connections::checked(READERS, open.clone());
        let writer = Connections::checked(WRITERS, open);
        Ok(Self::new(readers, writer, None, Dialect::Postgres))
    }
}
