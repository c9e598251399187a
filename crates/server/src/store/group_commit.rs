//! Group commit for the SQLite store: many commits share one `fsync`.
//!
//! With `PRAGMA synchronous = FULL` SQLite syncs the write-ahead log inside
//! every commit, while the single writer connection is held, so writes cost
//! one disk flush each, one after the other (about 0.4 ms here). Instead the
//! writer commits with `synchronous = NORMAL` (the log is written but not
//! flushed) and, before a write is reported done, [`WalSync::after_commit`]
//! flushes the log file itself. Commits that finish while a flush runs wait
//! for the next one and share it, and the writer connection is free for the
//! next write during the flush. A write is still on disk before it returns:
//! the guarantee of `FULL`.
//!
//! Why this is safe: in WAL mode every commit appends its pages to the `-wal`
//! file; after a power loss SQLite replays the frames up to the last valid
//! commit frame. A flush of that file that starts after a commit returned
//! covers all of the commit's frames. SQLite itself keeps the database
//! consistent in `NORMAL` mode (the log is flushed before each checkpoint and
//! the database after it), so a commit that was not yet flushed can only be
//! lost whole, and then its writer was never told it succeeded.
//!
//! One call may put its flushes off ([`deferring`]): the authorization gate
//! runs every unary RPC so, and waits for the flush once, after the audit
//! event is written ([`Deferred::settle`]), so that a change and its audit
//! event share one flush instead of waiting for two in a row. The answer
//! still leaves only once both are on disk.

use std::cell::RefCell;
use std::fs::File;
use std::ops::{Deref, DerefMut};
use std::os::unix::fs::MetadataExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::AnyConnection;
use sqlx::any::{Any, AnyArguments, AnyQueryResult, AnyRow};
use sqlx::query::Query;

use super::connections::{Connections, Lease};

/// The store's only way to write: the writer's connections, and on an
/// SQLite file the flush every write waits for before it returns.
/// Transactions end with [`WriteTx::commit`]; single statements run with
/// [`Writer::execute`].
#[derive(Debug, Clone)]
pub struct Writer {
    connections: Connections,
    wal: Option<Arc<WalSync>>,
}

impl Writer {
    /// Writes on `connections`; with `wal`, each write waits for its flush.
    pub fn new(connections: Connections, wal: Option<Arc<WalSync>>) -> Self {
        Self { connections, wal }
    }

    /// The group commit every write waits for, if any.
    pub fn wal_sync(&self) -> Option<&WalSync> {
        self.wal.as_deref()
    }

    /// The connections, for what is not a write (pragmas in tests, closing).
    pub fn connections(&self) -> &Connections {
        &self.connections
    }

    /// A transaction started with the statement `begin`.
    pub async fn begin_with(&self, begin: &'static str) -> sqlx::Result<WriteTx> {
        let mut lease = self.connections.acquire().await?;
        lease.begin(begin).await?;
        Ok(WriteTx {
            lease,
            wal: self.wal.clone(),
        })
    }

    /// A transaction started plainly.
    pub async fn begin(&self) -> sqlx::Result<WriteTx> {
        self.begin_with("BEGIN").await
    }

    /// Runs one statement on its own (it commits by itself) and waits until
    /// it is on disk.
    pub async fn execute(
        &self,
        query: Query<'_, Any, AnyArguments>,
    ) -> sqlx::Result<AnyQueryResult> {
        let done = query
            .execute(&mut self.connections.acquire().await?)
            .await?;
        durable(self.wal.as_ref()).await?;
        Ok(done)
    }

    /// Runs one statement on its own that writes for several calls (its
    /// rows, if it returns any), and returns without waiting for the disk:
    /// each call it wrote for waits with [`Commit::durable`], in its own
    /// task (so that a call that defers its flushes defers this one too).
    pub async fn fetch_all_shared(
        &self,
        query: Query<'_, Any, AnyArguments>,
    ) -> sqlx::Result<(Vec<AnyRow>, Commit)> {
        let rows = query
            .fetch_all(&mut self.connections.acquire().await?)
            .await?;
        Ok((rows, Commit::count(self.wal.as_ref())))
    }
}

/// A commit that finished; [`Self::durable`] waits until it is on disk.
#[derive(Debug, Clone)]
#[must_use = "a commit is on disk only once durable() returned"]
pub struct Commit {
    /// The log and the commit's number on it.
    on: Option<(Arc<WalSync>, u64)>,
}

impl Commit {
    /// Counts a commit that just finished on the writer.
    fn count(wal: Option<&Arc<WalSync>>) -> Self {
        Self {
            on: wal.map(|wal| (wal.clone(), wal.count_commit())),
        }
    }

    /// Returns once the commit is on disk; inside [`deferring`], at once,
    /// leaving the wait to the call's [`Deferred::settle`].
    pub async fn durable(self) -> sqlx::Result<()> {
        let Some((wal, number)) = self.on else {
            return Ok(());
        };
        if defer(&wal, number) {
            return Ok(());
        }
        wal.flush_through(number).await.map_err(sqlx::Error::Io)
    }
}

/// Runs a statement on its own through the [`Writer`] (see [`Writer::execute`]).
pub trait WriteQuery {
    fn write(self, writer: &Writer) -> impl Future<Output = sqlx::Result<AnyQueryResult>> + Send;
}

impl WriteQuery for Query<'_, Any, AnyArguments> {
    fn write(self, writer: &Writer) -> impl Future<Output = sqlx::Result<AnyQueryResult>> + Send {
        writer.execute(self)
    }
}

/// A writing transaction; dropped without [`Self::commit`], it rolls back.
pub struct WriteTx {
    lease: Lease,
    wal: Option<Arc<WalSync>>,
}

impl WriteTx {
    /// Commits, hands the connection back, and returns once the commit is
    /// on disk.
    pub async fn commit(mut self) -> sqlx::Result<()> {
        self.lease.commit().await?;
        drop(self.lease);
        durable(self.wal.as_ref()).await
    }
}

impl Deref for WriteTx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        &self.lease
    }
}

impl DerefMut for WriteTx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        &mut self.lease
    }
}

async fn durable(wal: Option<&Arc<WalSync>>) -> sqlx::Result<()> {
    Commit::count(wal).durable().await
}

tokio::task_local! {
    /// Inside [`deferring`]: the flush its commits still need.
    static DEFERRED: RefCell<Deferred>;
}

/// Commits whose flush a call put off; [`Self::settle`] waits for it.
#[derive(Debug, Default)]
#[must_use = "the deferred commits are on disk only once settled"]
pub struct Deferred {
    /// The log and the last commit counted on it.
    pending: Option<(Arc<WalSync>, u64)>,
}

impl Deferred {
    /// Returns once every deferred commit is on disk (at once when a later
    /// write's flush already covered them).
    pub async fn settle(self) -> std::io::Result<()> {
        match self.pending {
            Some((wal, through)) => wal.flush_through(through).await,
            None => Ok(()),
        }
    }
}

/// Runs `call` with the flushes of its writes put off: they return once
/// committed, and the returned [`Deferred`] must be settled before anyone
/// is told the writes succeeded.
pub async fn deferring<F: Future>(call: F) -> (F::Output, Deferred) {
    DEFERRED
        .scope(RefCell::new(Deferred::default()), async {
            let output = call.await;
            (
                output,
                DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut())),
            )
        })
        .await
}

/// Notes commit `mine` on `wal` as deferred, if the running call defers
/// (and has deferred nothing on another database).
fn defer(wal: &Arc<WalSync>, mine: u64) -> bool {
    DEFERRED
        .try_with(|deferred| {
            let mut deferred = deferred.borrow_mut();
            match &mut deferred.pending {
                None => {
                    deferred.pending = Some((wal.clone(), mine));
                    true
                }
                Some((same, through)) if Arc::ptr_eq(same, wal) => {
                    *through = (*through).max(mine);
                    true
                }
                Some(_) => false,
            }
        })
        .unwrap_or(false)
}

/// Flushes one database's write-ahead log for the commits before it.
#[derive(Debug)]
pub struct WalSync {
    wal_path: PathBuf,
    /// Commits that finished (and asked for a flush) so far.
    committed: AtomicU64,
    /// Every commit up to this count is on disk.
    flushed: AtomicU64,
    /// Flushes done.
    flushes: AtomicU64,
    /// The one flush in progress; its holder also owns the open log file.
    flusher: tokio::sync::Mutex<Option<File>>,
}

impl WalSync {
    /// For the database file at `database`; its log is `<database>-wal`.
    pub fn new(database: &std::path::Path) -> Arc<Self> {
        let mut wal_path = database.as_os_str().to_owned();
        wal_path.push("-wal");
        Arc::new(Self {
            wal_path: wal_path.into(),
            committed: AtomicU64::new(0),
            flushed: AtomicU64::new(0),
            flushes: AtomicU64::new(0),
            flusher: tokio::sync::Mutex::new(None),
        })
    }

    /// Returns once the commit that just finished is on disk. Call it after
    /// every commit on the writer, never while holding the writer.
    pub async fn after_commit(&self) -> std::io::Result<()> {
        self.flush_through(self.count_commit()).await
    }

    /// Counts a commit that just finished; its number.
    fn count_commit(&self) -> u64 {
        self.committed.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// Returns once commit number `mine` is on disk.
    async fn flush_through(&self, mine: u64) -> std::io::Result<()> {
        loop {
            if self.flushed.load(Ordering::SeqCst) >= mine {
                return Ok(());
            }
            let mut file = self.flusher.lock().await;
            // The flush we waited for may have covered us.
            if self.flushed.load(Ordering::SeqCst) >= mine {
                return Ok(());
            }
            // Every commit counted by now finished before this flush starts.
            let covered = self.committed.load(Ordering::SeqCst);
            let open = file.take();
            let path = self.wal_path.clone();
            let (kept, flushed) = tokio::task::spawn_blocking(move || flush(open, &path))
                .await
                .map_err(std::io::Error::other)?;
            *file = kept;
            flushed?;
            self.flushes.fetch_add(1, Ordering::SeqCst);
            self.flushed.fetch_max(covered, Ordering::SeqCst);
        }
    }
}

impl WalSync {
    /// Commits counted, commits known on disk, and flushes done.
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.committed.load(Ordering::SeqCst),
            self.flushed.load(Ordering::SeqCst),
            self.flushes.load(Ordering::SeqCst),
        )
    }
}

/// Flushes the log file, opening it anew when the file at `path` is not the
/// one held open (SQLite deletes the log when the last connection closes).
/// Returns the file to keep open and the outcome.
fn flush(open: Option<File>, path: &std::path::Path) -> (Option<File>, std::io::Result<()>) {
    let current = match std::fs::metadata(path) {
        Ok(meta) => meta,
        // No log: nothing was committed through it that is not in the
        // database file already (SQLite checkpoints before deleting it).
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (None, Ok(())),
        Err(e) => return (open, Err(e)),
    };
    let same = |file: &File| {
        file.metadata()
            .map(|m| m.ino() == current.ino() && m.dev() == current.dev())
            .unwrap_or(false)
    };
    let file = match open {
        Some(file) if same(&file) => file,
        _ => match File::open(path) {
            Ok(file) => file,
            Err(e) => return (None, Err(e)),
        },
    };
    let outcome = file.sync_data();
    (Some(file), outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A database's log with frames in it, in a temporary directory.
    fn log_with_frames() -> (tempfile::TempDir, Arc<WalSync>) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("corral.db-wal"), b"frames").unwrap();
        let wal = WalSync::new(&dir.path().join("corral.db"));
        (dir, wal)
    }

    #[tokio::test]
    async fn concurrent_commits_share_flushes_and_each_waits_for_one() {
        let (_dir, sync) = log_with_frames();
        let waiters: Vec<_> = (0..64)
            .map(|_| {
                let sync = sync.clone();
                tokio::spawn(async move { sync.after_commit().await })
            })
            .collect();
        for waiter in waiters {
            waiter.await.unwrap().unwrap();
        }
        let (committed, flushed, flushes) = sync.counts();
        assert_eq!((committed, flushed), (64, 64));
        assert!((1..=64).contains(&flushes));
    }

    #[tokio::test]
    async fn a_deferring_call_flushes_once_when_settled() {
        let (_dir, wal) = log_with_frames();
        let ((), deferred) = deferring(async {
            durable(Some(&wal)).await.unwrap();
            durable(Some(&wal)).await.unwrap();
        })
        .await;
        assert_eq!(wal.counts(), (2, 0, 0), "nothing flushed inside the call");
        deferred.settle().await.unwrap();
        assert_eq!(wal.counts(), (2, 2, 1), "one flush for both");

        // A write after the call waits for its own flush, which covers the
        // call's commits: settling then costs nothing.
        let ((), deferred) = deferring(async { durable(Some(&wal)).await.unwrap() }).await;
        durable(Some(&wal)).await.unwrap();
        assert_eq!(wal.counts(), (4, 4, 2));
        deferred.settle().await.unwrap();
        assert_eq!(wal.counts(), (4, 4, 2));

        // Outside a deferring call nothing is put off.
        durable(Some(&wal)).await.unwrap();
        assert_eq!(wal.counts(), (5, 5, 3));
    }

    #[tokio::test]
    async fn a_missing_log_needs_no_flush_and_a_new_one_is_opened() {
        let dir = tempfile::tempdir().unwrap();
        let database = dir.path().join("corral.db");
        let sync = WalSync::new(&database);
        sync.after_commit().await.unwrap();
        let wal = dir.path().join("corral.db-wal");
        std::fs::write(&wal, b"one").unwrap();
        sync.after_commit().await.unwrap();
        // Deleted and made again (the last connection closed, a new one opened).
        std::fs::remove_file(&wal).unwrap();
        std::fs::write(dir.path().join("other"), b"keep the inode busy").unwrap();
        std::fs::write(&wal, b"two").unwrap();
        sync.after_commit().await.unwrap();
        let second = sync
            .flusher
            .lock()
            .await
            .as_ref()
            .unwrap()
            .metadata()
            .unwrap()
            .ino();
        assert_eq!(second, std::fs::metadata(&wal).unwrap().ino());
    }
}
