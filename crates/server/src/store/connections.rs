//! Where the store's statements get a connection: [`Connections::acquire`]
//! lends one out as a [`Lease`].
//!
//! On PostgreSQL that is sqlx's pool. On SQLite it is connections to the
//! file held here, because sqlx's pool checks every connection handed back
//! to it with a round trip to the connection's thread (a ping) before anyone
//! may use it again. perf showed those checks as a third of UpdateRunner's
//! thread switches, and on the one writer connection each write waited for
//! the check after the write before it. An SQLite connection lives in this
//! process, with nothing to go stale between two statements, so here it goes
//! back as it is. PostgreSQL keeps sqlx's pool with its check: there a
//! connection can find the server gone (restarted, or closed it while idle).
//!
//! A lease dropped inside a transaction (its call was cancelled before it
//! committed) rolls the transaction back before the connection is lent again,
//! on both stores; see [`Lease::begin`].

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, AnyPool, Connection as _, Executor as _};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a statement waits for a free connection (as sqlx's pool does).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens one more connection, set up as the others.
pub type Open = Arc<dyn Fn() -> BoxFuture<'static, sqlx::Result<AnyConnection>> + Send + Sync>;

/// Connections to lend: a sqlx pool, or SQLite connections held here.
#[derive(Clone)]
pub struct Connections(Source);

#[derive(Clone)]
enum Source {
    Pool(AnyPool),
    Held(Arc<Held>),
}

/// Up to `size` connections, opened when first needed. A permit stands for a
/// connection that is idle or not yet opened; it is given back only after
/// its connection is back in `idle`.
struct Held {
    idle: Mutex<Vec<AnyConnection>>,
    permits: Arc<Semaphore>,
    size: u32,
    open: Open,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Source::Pool(pool) => f.debug_tuple("Pool").field(pool).finish(),
            Source::Held(held) => f
                .debug_struct("Held")
                .field("size", &held.size)
                .field("available", &held.permits.available_permits())
                .finish(),
        }
    }
}

impl Connections {
    /// Lends connections from sqlx's `pool`.
    pub fn pool(pool: AnyPool) -> Self {
        Self(Source::Pool(pool))
    }

    /// Lends up to `size` connections, each opened by `open` when first
    /// needed and kept open until [`Self::close`].
    pub fn held(size: u32, open: Open) -> Self {
        let size = size.max(1);
        Self(Source::Held(Arc::new(Held {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
            open,
        })))
    }

    /// A connection of one's own until the lease is dropped; waits while all
    /// are lent, at most [`ACQUIRE_TIMEOUT`].
    pub async fn acquire(&self) -> sqlx::Result<Lease> {
        let leased = match &self.0 {
            Source::Pool(pool) => Leased::Pool(pool.acquire().await?),
            Source::Held(held) => {
                let permit =
                    tokio::time::timeout(ACQUIRE_TIMEOUT, held.permits.clone().acquire_owned())
                        .await
                        .map_err(|_| sqlx::Error::PoolTimedOut)?
                        .map_err(|_| sqlx::Error::PoolClosed)?;
                let idle = held.idle.lock().expect("idle connections").pop();
                let conn = match idle {
                    Some(conn) => conn,
                    None => (held.open)().await?,
                };
                Leased::Held {
                    conn,
                    held: held.clone(),
                    permit,
                }
            }
        };
        Ok(Lease {
            conn: Some(leased),
            in_transaction: false,
        })
    }

    /// Waits for the connections lent out to come back, then closes them
    /// all; later acquires fail.
    pub async fn close(&self) {
        match &self.0 {
            Source::Pool(pool) => pool.close().await,
            Source::Held(held) => {
                if let Ok(all) = held.permits.acquire_many(held.size).await {
                    all.forget();
                }
                held.permits.close();
                let idle = std::mem::take(&mut *held.idle.lock().expect("idle connections"));
                for conn in idle {
                    let _ = conn.close().await;
                }
            }
        }
    }
}

/// A connection lent by [`Connections::acquire`]; it goes back when dropped.
pub struct Lease {
    conn: Option<Leased>,
    /// Set from just before `BEGIN` is sent until `COMMIT` succeeded: while
    /// set, dropping the lease rolls back first.
    in_transaction: bool,
}

enum Leased {
    Pool(PoolConnection<Any>),
    Held {
        conn: AnyConnection,
        held: Arc<Held>,
        permit: OwnedSemaphorePermit,
    },
}

impl Lease {
    /// Starts a transaction with the statement `begin` (`BEGIN`, `BEGIN
    /// IMMEDIATE`, …). It ends with [`Self::commit`]; a lease dropped before
    /// that rolls it back.
    pub async fn begin(&mut self, begin: &'static str) -> sqlx::Result<()> {
        // Marked first: a call cancelled while BEGIN is on its way still
        // rolls back (a rollback with no transaction open is harmless).
        self.in_transaction = true;
        self.execute(begin).await?;
        Ok(())
    }

    /// Commits the transaction [`Self::begin`] started.
    pub async fn commit(&mut self) -> sqlx::Result<()> {
        self.execute("COMMIT").await?;
        self.in_transaction = false;
        Ok(())
    }
}

impl Leased {
    fn give_back(self) {
        match self {
            Leased::Pool(conn) => drop(conn),
            Leased::Held { conn, held, permit } => {
                held.idle.lock().expect("idle connections").push(conn);
                drop(permit);
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        if !self.in_transaction {
            conn.give_back();
            return;
        }
        // Rolling back takes a round trip: in a task of its own, the
        // connection lent again only after it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = conn.execute("ROLLBACK").await {
                    tracing::debug!(%error, "rolling back a dropped transaction");
                }
                conn.give_back();
            });
        }
        // Without a runtime (shutting down) the connection is closed; a held
        // one is opened again when next needed.
    }
}

impl Deref for Leased {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match self {
            Leased::Pool(conn) => conn,
            Leased::Held { conn, .. } => conn,
        }
    }
}

impl DerefMut for Leased {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match self {
            Leased::Pool(conn) => conn,
            Leased::Held { conn, .. } => conn,
        }
    }
}

impl Deref for Lease {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        self.conn.as_ref().expect("a lease holds its connection")
    }
}

impl DerefMut for Lease {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        self.conn.as_mut().expect("a lease holds its connection")
    }
}
