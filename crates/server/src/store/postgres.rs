//! Opening the PostgreSQL store: connections to the server named by a
//! `postgres://` URL (held by `connections`), migrations applied on open. sqlx's PostgreSQL migrator
//! holds an advisory lock while it works, so replicas that start together
//! migrate one after the other and the later ones find nothing left to do.

use std::str::FromStr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use anyhow::Context;
use sqlx::any::AnyPoolOptions;
use sqlx::postgres::{PgConnectOptions, PgListener};
use uuid::Uuid;

use super::connections::{Connections, connecting_to};
use super::recent::Recent;
use super::sql::{Dialect, SqlStore, runners_in_memory};
use crate::domain::Runner;

/// The channel on which the runners' tables name every runner changed, at
/// commit (migration 0011's triggers).
pub const RUNNERS_CHANNEL: &str = "corral_runners";

/// How long to wait before listening again after the connection was lost.
const LISTEN_AGAIN_AFTER: Duration = Duration::from_millis(500);

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
        // Runners are kept in memory until someone changes them: this
        // store forgets what it writes itself, and every change anyone
        // commits is heard of through the tables' notices.
        let recent = Arc::new(runners_in_memory());
        let listener = listen(url)
            .await
            .with_context(|| format!("listening for runner changes at {target}"))?;
        let hearing = tokio::spawn(hear(url.to_string(), listener, Arc::downgrade(&recent)));
        Ok(Self::new(readers, writer, None, Dialect::Postgres)
            .keeping_runners_in(recent, Some(hearing)))
    }
}

/// A connection of its own that listens on [`RUNNERS_CHANNEL`]; when it is
/// lost, [`PgListener::try_recv`] says so at once (it does not connect
/// again by itself: [`hear`] does, and knows when it listens again).
async fn listen(url: &str) -> sqlx::Result<PgListener> {
    let mut listener = PgListener::connect(url).await?;
    listener.eager_reconnect(false);
    listener.listen(RUNNERS_CHANNEL).await?;
    Ok(listener)
}

/// Forgets each runner named on [`RUNNERS_CHANNEL`] (changed by another
/// replica, `corral admin`, or this store: it has forgotten those already,
/// and forgets them again). Notices sent while the connection is down are
/// lost, so from its loss until it listens again `recent` keeps nothing
/// (`Recent::deafen`). Ends with the store.
async fn hear(url: String, mut listener: PgListener, recent: Weak<Recent<Uuid, Runner>>) {
    loop {
        let heard = listener.try_recv().await;
        let Some(kept) = recent.upgrade() else {
            return;
        };
        let lost = match heard {
            Ok(Some(notice)) => {
                match Uuid::parse_str(notice.payload()) {
                    Ok(id) => kept.forget(&id),
                    Err(_) => kept.forget_all(),
                }
                continue;
            }
            Ok(None) => "the connection was lost".to_string(),
            Err(err) => err.to_string(),
        };
        kept.deafen();
        drop(kept);
        tracing::warn!(
            err = %lost,
            "cannot hear of runner changes; runners are read from the database until it can again"
        );
        listener = loop {
            tokio::time::sleep(LISTEN_AGAIN_AFTER).await;
            if recent.strong_count() == 0 {
                return;
            }
            match listen(&url).await {
                Ok(listener) => break listener,
                Err(err) => tracing::debug!(%err, "listening for runner changes again"),
            }
        };
        if let Some(kept) = recent.upgrade() {
            kept.hear();
            tracing::info!("hearing of runner changes again");
        }
    }
}
