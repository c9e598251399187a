//! Opening the PostgreSQL store: a pool on the server named by a
//! `postgres://` URL, migrations applied on open. sqlx's PostgreSQL migrator
//! holds an advisory lock while it works, so replicas that start together
//! migrate one after the other and the later ones find nothing left to do.

use std::str::FromStr;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::PgConnectOptions;

use super::sql::{Dialect, SqlStore};

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
            .connect(url)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {target}"))?;
        MIGRATOR
            .run(&pool)
            .await
            .with_context(|| format!("migrating the PostgreSQL database at {target}"))?;
        Ok(Self::new(pool.clone(), pool, None, Dialect::Postgres))
    }
}
