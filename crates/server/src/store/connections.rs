//! Where the store's statements get a connection: [`Connections::acquire`]
//! lends one out as a [`Lease`].
//!
//! The store holds its connections itself rather than in sqlx's pool,
//! because that pool checks every connection handed back to it with a round
//! trip (a ping) before anyone may use it again, which costs more than it
//! tells:
//!
//! - **SQLite** ([`Connections::held`]): a connection lives in this process,
//!   with nothing to go stale between two statements, so it goes back as it
//!   is. perf showed the checks as a third of UpdateRunner's thread
//!   switches, and on the one writer connection each write waited for the
//!   check after the write before it.
//! - **PostgreSQL** ([`Connections::checked`]): a connection can find
//!   the server gone (restarted, or closed it while idle), and a statement
//!   cut off half-way (its call cancelled) can leave it out of step. Instead
//!   of a round trip after every use, the lease watches the statements run
//!   on it (it is their [`Executor`]): a connection goes back only if every
//!   statement ran to its end and none failed for want of a working
//!   connection; otherwise it is closed and another opened when needed. One
//!   idle for [`CHECK_WHEN_IDLE_FOR`] is pinged before it is lent again, and
//!   so is every idle one after a connection was found broken (a restarted
//!   server ends them all). Statements inside a transaction run on the
//!   connection itself, unseen; a transaction that does not commit is rolled
//!   back (below), and the rollback's outcome says whether the connection is
//!   sound, as sqlx's check after a transaction would.
//!
//! A lease dropped inside a transaction (its call was cancelled before it
//! committed) rolls the transaction back before the connection is lent again,
//! on both stores; see [`Lease::begin`].

use std::fmt;
use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex};
use std::task::{Poll, ready};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use sqlx::any::{AnyQueryResult, AnyRow, AnyStatement, AnyTypeInfo};
use sqlx::{Any, AnyConnection, Connection as _, Either, Execute, Executor, SqlStr};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How long a statement waits for a free connection (as sqlx's pool does).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// A [`Connections::checked`] connection idle at least this long is pinged
/// before it is lent again (the server may have restarted or dropped it).
pub const CHECK_WHEN_IDLE_FOR: Duration = Duration::from_secs(10);

/// Opens one more connection, set up as the others.
pub type Open = Arc<dyn Fn() -> BoxFuture<'static, sqlx::Result<AnyConnection>> + Send + Sync>;

/// Opens connections to `url` as they are, with nothing set up after.
pub fn connecting_to(url: &str) -> Open {
    let url = url.to_string();
    Arc::new(move || {
        let url = url.clone();
        Box::pin(async move { AnyConnection::connect(&url).await })
    })
}

/// Connections to lend, held here.
#[derive(Clone)]
pub struct Connections(Arc<Held>);

/// Up to `size` connections, opened when first needed. A permit stands for a
/// connection that is idle or not yet opened; it is given back only after
/// its connection is back in `idle` (or closed).
struct Held {
    idle: Mutex<Vec<Idle>>,
    permits: Arc<Semaphore>,
    size: u32,
    open: Open,
    /// Whether a connection goes back only when its statements left it sound
    /// (PostgreSQL), rather than as it is (SQLite).
    checked: bool,
    /// Connections opened so far, for tests.
    #[cfg(test)]
    opened: std::sync::atomic::AtomicU64,
}

struct Idle {
    conn: AnyConnection,
    since: Instant,
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let held = &self.0;
        f.debug_struct("Connections")
            .field("size", &held.size)
            .field("checked", &held.checked)
            .field("available", &held.permits.available_permits())
            .finish()
    }
}

impl Connections {
    /// Lends up to `size` connections, each opened by `open` when first
    /// needed and kept open until [`Self::close`]; a connection goes back as
    /// it is (SQLite).
    pub fn held(size: u32, open: Open) -> Self {
        Self::holding(size, open, false)
    }

    /// Lends up to `size` connections, each opened by `open` when first
    /// needed; one goes back only if the statements run on it left it sound,
    /// and one idle for [`CHECK_WHEN_IDLE_FOR`] is pinged first (PostgreSQL;
    /// see the module's documentation).
    pub fn checked(size: u32, open: Open) -> Self {
        Self::holding(size, open, true)
    }

    fn holding(size: u32, open: Open, checked: bool) -> Self {
        let size = size.max(1);
        Self(Arc::new(Held {
            idle: Mutex::new(Vec::new()),
            permits: Arc::new(Semaphore::new(size as usize)),
            size,
            open,
            checked,
            #[cfg(test)]
            opened: Default::default(),
        }))
    }

    /// A connection of one's own until the lease is dropped; waits while all
    /// are lent, at most [`ACQUIRE_TIMEOUT`].
    pub async fn acquire(&self) -> sqlx::Result<Lease> {
        let held = &self.0;
        let permit = tokio::time::timeout(ACQUIRE_TIMEOUT, held.permits.clone().acquire_owned())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
            .map_err(|_| sqlx::Error::PoolClosed)?;
        let leased = Leased {
            conn: held.lend().await?,
            held: held.clone(),
            permit,
        };
        Ok(Lease {
            conn: Some(leased),
            in_transaction: false,
            health: Health::Sound,
        })
    }

    /// Waits for the connections lent out to come back, then closes them
    /// all; later acquires fail.
    pub async fn close(&self) {
        let held = &self.0;
        if let Ok(all) = held.permits.acquire_many(held.size).await {
            all.forget();
        }
        held.permits.close();
        let idle = std::mem::take(&mut *held.idle.lock().expect("idle connections"));
        for idle in idle {
            let _ = idle.conn.close().await;
        }
    }

    /// Connections opened so far.
    #[cfg(test)]
    pub(crate) fn opened(&self) -> u64 {
        self.0.opened.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Held {
    /// After one connection was found broken, the idle ones are suspect too
    /// (a restarted server ends them all): each is checked before it is lent
    /// again, as if it had idled long.
    fn suspect_idle(&self) {
        let long_ago = Instant::now().checked_sub(CHECK_WHEN_IDLE_FOR);
        for idle in self.idle.lock().expect("idle connections").iter_mut() {
            idle.since = long_ago.unwrap_or(idle.since);
        }
    }

    /// An idle connection (checked first if it idled long), or a new one.
    async fn lend(&self) -> sqlx::Result<AnyConnection> {
        loop {
            let idle = self.idle.lock().expect("idle connections").pop();
            let Some(Idle { mut conn, since }) = idle else {
                break;
            };
            if !self.checked || since.elapsed() < CHECK_WHEN_IDLE_FOR {
                return Ok(conn);
            }
            match conn.ping().await {
                Ok(()) => return Ok(conn),
                Err(error) => tracing::debug!(%error, "closing a connection that idled"),
            }
        }
        #[cfg(test)]
        self.opened
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        (self.open)().await
    }
}

/// What the statements run on a lease left its connection in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Health {
    /// Every statement ran to its end (or none ran).
    Sound,
    /// A statement started and has not ended: if the lease goes back now,
    /// it was cut off half-way.
    InStatement,
    /// A statement failed for want of a working connection.
    Broken,
}

impl Health {
    /// Notes a statement's outcome (`None`: it ran to its end).
    fn after(&mut self, error: Option<&sqlx::Error>) {
        if *self == Health::Broken {
            return;
        }
        *self = match error {
            Some(error) if connection_failed(error) => Health::Broken,
            // A failed statement still ran to its end: the server answered
            // it, and sqlx reads whatever of the answer is left before the
            // connection's next statement.
            _ => Health::Sound,
        };
    }
}

/// Runs `attempt`, which takes a connection of its own; runs it once more,
/// so on another connection, when it failed because its connection had been
/// lost (a restart of PostgreSQL ends them all, and a connection idle less
/// than [`CHECK_WHEN_IDLE_FOR`] is lent unchecked). For statements that may
/// run twice: reads, and writes whose repetition is harmless.
pub async fn once_more_if_lost<T, F, Fut>(attempt: F) -> sqlx::Result<T>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = sqlx::Result<T>>,
{
    match attempt().await {
        Err(error) if connection_failed(&error) => {
            tracing::debug!(%error, "running again on another connection");
            attempt().await
        }
        done => done,
    }
}

/// Whether `error` says the connection itself no longer works (so it must
/// not be lent again), as opposed to the statement failing on a connection
/// that does.
pub fn connection_failed(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            // PostgreSQL's class 08 (connection exception) and 57P
            // (operator intervention: the server shutting down, the
            // session terminated) end the connection.
            let code = db.code();
            let code = code.as_deref().unwrap_or("");
            code.starts_with("08") || code.starts_with("57P")
        }
        sqlx::Error::RowNotFound
        | sqlx::Error::TypeNotFound { .. }
        | sqlx::Error::ColumnIndexOutOfBounds { .. }
        | sqlx::Error::ColumnNotFound(_)
        | sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Encode(_)
        | sqlx::Error::Decode(_) => false,
        _ => true,
    }
}

/// A connection lent by [`Connections::acquire`]; it goes back when dropped.
/// Statements run on it as their [`Executor`] are watched (see the module's
/// documentation); ones run on the connection it derefs to are not.
pub struct Lease {
    conn: Option<Leased>,
    /// Set from just before `BEGIN` is sent until `COMMIT` succeeded: while
    /// set, dropping the lease rolls back first.
    in_transaction: bool,
    health: Health,
}

/// A lent connection, and what to give it back to.
struct Leased {
    conn: AnyConnection,
    held: Arc<Held>,
    permit: OwnedSemaphorePermit,
}

impl fmt::Debug for Lease {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("in_transaction", &self.in_transaction)
            .field("health", &self.health)
            .finish_non_exhaustive()
    }
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

    /// The connection and the health of the statement about to run on it.
    fn statement(&mut self) -> (&mut AnyConnection, &mut Health) {
        if self.health == Health::Sound {
            self.health = Health::InStatement;
        }
        let conn = self.conn.as_mut().expect("a lease holds its connection");
        (conn, &mut self.health)
    }
}

impl Leased {
    fn give_back(self, health: Health) {
        let Leased { conn, held, permit } = self;
        if held.checked && health != Health::Sound {
            // Closed by dropping it; its permit lets another open.
            drop(conn);
            if health == Health::Broken {
                held.suspect_idle();
            }
        } else {
            let since = Instant::now();
            held.idle
                .lock()
                .expect("idle connections")
                .push(Idle { conn, since });
        }
        drop(permit);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let health = self.health;
        if !self.in_transaction || health == Health::Broken {
            conn.give_back(health);
            return;
        }
        // Rolling back takes a round trip: in a task of its own, the
        // connection lent again only after it.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let health = match conn.execute("ROLLBACK").await {
                    Ok(_) => Health::Sound,
                    Err(error) => {
                        tracing::debug!(%error, "rolling back a dropped transaction");
                        let mut health = Health::Sound;
                        health.after(Some(&error));
                        health
                    }
                };
                conn.give_back(health);
            });
        }
        // Without a runtime (shutting down) the connection is closed; a held
        // one is opened again when needed.
    }
}

/// Statements run on `&mut lease` are watched: see [`Lease`].
impl<'c> Executor<'c> for &'c mut Lease {
    type Database = Any;

    fn fetch_many<'e, 'q: 'e, E>(
        self,
        query: E,
    ) -> BoxStream<'e, sqlx::Result<Either<AnyQueryResult, AnyRow>>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let (conn, health) = self.statement();
        let mut results = conn.fetch_many(query);
        Box::pin(futures_util::stream::poll_fn(move |cx| {
            let next = ready!(results.poll_next_unpin(cx));
            match &next {
                None => health.after(None),
                Some(Err(error)) => health.after(Some(error)),
                Some(Ok(_)) => {}
            }
            Poll::Ready(next)
        }))
    }

    fn fetch_optional<'e, 'q: 'e, E>(self, query: E) -> BoxFuture<'e, sqlx::Result<Option<AnyRow>>>
    where
        'c: 'e,
        E: 'q + Execute<'q, Any>,
    {
        let (conn, health) = self.statement();
        Box::pin(async move {
            let row = conn.fetch_optional(query).await;
            health.after(row.as_ref().err());
            row
        })
    }

    fn prepare_with<'e>(
        self,
        sql: SqlStr,
        parameters: &'e [AnyTypeInfo],
    ) -> BoxFuture<'e, sqlx::Result<AnyStatement>>
    where
        'c: 'e,
    {
        let (conn, health) = self.statement();
        Box::pin(async move {
            let statement = conn.prepare_with(sql, parameters).await;
            health.after(statement.as_ref().err());
            statement
        })
    }

    // sqlx's query macros use it (its `offline` feature, on in this build).
    fn describe<'e>(self, sql: SqlStr) -> BoxFuture<'e, sqlx::Result<sqlx::Describe<Any>>>
    where
        'c: 'e,
    {
        let (conn, health) = self.statement();
        Box::pin(async move {
            let described = conn.describe(sql).await;
            health.after(described.as_ref().err());
            described
        })
    }
}

impl Deref for Leased {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.conn
    }
}

impl DerefMut for Leased {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.conn
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use corral_testkit::PostgresDatabase;
    use sqlx::{AnyConnection, Connection as _, Executor as _};

    use super::{Connections, connecting_to, connection_failed};

    fn checked(database: &PostgresDatabase, size: u32) -> Connections {
        sqlx::any::install_default_drivers();
        Connections::checked(size, connecting_to(database.url()))
    }

    async fn backend_pid(connections: &Connections) -> i32 {
        sqlx::query_scalar("SELECT pg_backend_pid()")
            .fetch_one(&mut connections.acquire().await.unwrap())
            .await
            .unwrap()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_checked_connection_is_lent_again_after_statements_that_ended() {
        let database = PostgresDatabase::create().await;
        let connections = checked(&database, 2);
        let first = backend_pid(&connections).await;
        for _ in 0..20 {
            assert_eq!(backend_pid(&connections).await, first);
        }
        // A statement the server refused still ran to its end.
        let refused = sqlx::query_scalar::<_, i32>("SELECT 1 / 0")
            .fetch_one(&mut connections.acquire().await.unwrap())
            .await
            .unwrap_err();
        assert!(!connection_failed(&refused), "{refused}");
        let mut lease = connections.acquire().await.unwrap();
        assert!(lease.execute("SELECT no_such_column").await.is_err());
        drop(lease);
        assert_eq!(backend_pid(&connections).await, first);
        assert_eq!(connections.opened(), 1);
        connections.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_statement_cut_off_half_way_closes_its_connection() {
        let database = PostgresDatabase::create().await;
        let connections = checked(&database, 1);
        let first = backend_pid(&connections).await;
        let mut lease = connections.acquire().await.unwrap();
        let cut_off = tokio::time::timeout(
            Duration::from_millis(200),
            lease.execute("SELECT pg_sleep(30)"),
        )
        .await;
        assert!(cut_off.is_err(), "the sleep ended early");
        drop(lease);
        // The one connection the set may hold is a new one, and it works.
        let second = backend_pid(&connections).await;
        assert_ne!(second, first);
        assert_eq!(connections.opened(), 2);
        connections.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_connection_the_server_ended_is_not_lent_again() {
        let database = PostgresDatabase::create().await;
        let connections = checked(&database, 1);
        let first = backend_pid(&connections).await;
        let mut admin = AnyConnection::connect(database.url()).await.unwrap();
        let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
            .bind(first)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert!(ended);
        // Lent once more, unchecked (it idled briefly): the statement fails
        // for want of a connection, and the connection is closed.
        let failed = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut connections.acquire().await.unwrap())
            .await
            .unwrap_err();
        assert!(connection_failed(&failed), "{failed}");
        let second = backend_pid(&connections).await;
        assert_ne!(second, first);
        assert_eq!(connections.opened(), 2);
        let _ = admin.close().await;
        connections.close().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_broken_connection_has_the_idle_ones_checked_before_they_are_lent() {
        let database = PostgresDatabase::create().await;
        let connections = checked(&database, 2);
        // Two connections open, both idle.
        let (a, b) = (
            connections.acquire().await.unwrap(),
            connections.acquire().await.unwrap(),
        );
        drop((a, b));
        assert_eq!(connections.opened(), 2);
        // The server ends both (as a restart would).
        assert_eq!(database.end_connections().await, 2);
        // The first one lent fails its statement; the other, lent next, is
        // checked first, found ended too and replaced: one failure, not two.
        let failed = sqlx::query_scalar::<_, i32>("SELECT 1")
            .fetch_one(&mut connections.acquire().await.unwrap())
            .await
            .unwrap_err();
        assert!(connection_failed(&failed), "{failed}");
        let answered: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&mut connections.acquire().await.unwrap())
            .await
            .unwrap();
        assert_eq!(answered, 1);
        assert_eq!(connections.opened(), 3);
        connections.close().await;
    }
}
