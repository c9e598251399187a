//! Reads of the SQLite file on the calling thread, with no hand-off.
//!
//! sqlx runs each SQLite connection on a thread of its own: a statement is
//! sent there and its rows come back, two thread switches per statement.
//! perf showed those switches, with their wake-ups, as most of what a
//! GetRunner that misses the record cache costs (the sqlx threads alone took
//! a quarter of the server's CPU), while SQLite needs a few microseconds to
//! find a row by its key. So the store's hot reads (records by id, pages of
//! ids, pages of records) run here instead, on connections of their own,
//! right where the call is.
//!
//! That blocks the async worker thread for as long as SQLite reads, which is
//! safe only because a read in WAL mode does not wait for writers: it reads
//! the last commit from the file and the log. The one wait a reader can meet
//! (SQLite's busy handler, while another process recovers the log) is cut to
//! [`BUSY_WAIT`]; a read that meets it is retried by the caller on sqlx's
//! connections, which may wait on their own thread. The connections are
//! `query_only`: nothing read here can write.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, ffi};

use super::row::Row;
use super::{StoreError, StoreResult};

/// How long a read here waits for a lock before giving the read to sqlx.
const BUSY_WAIT: Duration = Duration::from_millis(20);

/// Idle connections kept; more are opened while more reads run at once
/// (at most one per thread of the runtime, as a read never awaits).
const MAX_IDLE: usize = 16;

/// Statements prepared and kept per connection.
const STATEMENTS: usize = 64;

pub struct DirectReads {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Set by [`Self::close`]: reads then go to sqlx, which refuses them.
    closed: AtomicBool,
    /// Reads done here, for tests that check which way a read went.
    done: AtomicU64,
}

/// Why a read did not happen here; the caller reads through sqlx instead.
#[derive(Debug)]
pub struct NotHere;

impl DirectReads {
    /// Reads of the database file at `path`, which exists and is in WAL
    /// mode; `None` (with the reason logged) if it cannot be opened so.
    pub fn open(path: &Path) -> Option<Self> {
        let reads = Self {
            path: path.to_path_buf(),
            idle: Mutex::new(Vec::new()),
            closed: AtomicBool::new(false),
            done: AtomicU64::new(0),
        };
        match reads.connect() {
            Ok(conn) => {
                reads.give_back(conn);
                Some(reads)
            }
            Err(err) => {
                tracing::info!(%err, "reads of {} go through sqlx", path.display());
                None
            }
        }
    }

    fn connect(&self) -> rusqlite::Result<Connection> {
        let conn = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        conn.busy_timeout(BUSY_WAIT)?;
        conn.pragma_update(None, "query_only", true)?;
        conn.set_prepared_statement_cache_capacity(STATEMENTS);
        Ok(conn)
    }

    fn give_back(&self, conn: Connection) {
        let mut idle = self.idle.lock().expect("idle readers");
        if idle.len() < MAX_IDLE {
            idle.push(conn);
        }
    }

    /// How many reads were done here.
    #[cfg(test)]
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Closes the idle connections (those in use close when their read
    /// ends) and reads no more.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
        self.idle.lock().expect("idle readers").clear();
    }

    /// The first `max` rows of `sql` (`?` placeholders: `binds`, then
    /// `limit` if any), each made a `T` by `decode`, read on this thread.
    /// `Err(NotHere)` when SQLite was busy, no connection could be opened
    /// or the reads were closed.
    pub fn read<T>(
        &self,
        sql: &str,
        binds: &[String],
        limit: Option<i64>,
        max: usize,
        decode: &dyn Fn(&dyn Row) -> StoreResult<T>,
    ) -> Result<StoreResult<Vec<T>>, NotHere> {
        if self.closed.load(Ordering::Relaxed) {
            return Err(NotHere);
        }
        let idle = self.idle.lock().expect("idle readers").pop();
        let conn = match idle {
            Some(conn) => conn,
            None => self.connect().map_err(|err| {
                tracing::warn!(%err, "could not open a reading connection");
                NotHere
            })?,
        };
        let read = read_on(&conn, sql, binds, limit, max, decode);
        self.give_back(conn);
        self.done.fetch_add(1, Ordering::Relaxed);
        match read {
            Err(Failed::Busy) => Err(NotHere),
            Err(Failed::Sqlite(err)) => Ok(Err(StoreError::Internal(err.into()))),
            Err(Failed::Decode(err)) => Ok(Err(err)),
            Ok(items) => Ok(Ok(items)),
        }
    }
}

enum Failed {
    /// SQLite would have waited on a lock before any row was decoded, so
    /// the read may be done again elsewhere (a decoder runs once per row).
    Busy,
    Sqlite(rusqlite::Error),
    Decode(StoreError),
}

impl From<rusqlite::Error> for Failed {
    fn from(err: rusqlite::Error) -> Self {
        if is_busy(&err) {
            Failed::Busy
        } else {
            Failed::Sqlite(err)
        }
    }
}

fn read_on<T>(
    conn: &Connection,
    sql: &str,
    binds: &[String],
    limit: Option<i64>,
    max: usize,
    decode: &dyn Fn(&dyn Row) -> StoreResult<T>,
) -> Result<Vec<T>, Failed> {
    let mut statement = conn.prepare_cached(sql)?;
    for (at, value) in binds.iter().enumerate() {
        statement.raw_bind_parameter(at + 1, value)?;
    }
    if let Some(limit) = limit {
        statement.raw_bind_parameter(binds.len() + 1, limit)?;
    }
    let mut rows = statement.raw_query();
    let mut items = Vec::new();
    while items.len() < max {
        let row = match rows.next() {
            Ok(Some(row)) => row,
            Ok(None) => break,
            // Rows were decoded already: not to be read again.
            Err(err) if !items.is_empty() => return Err(Failed::Sqlite(err)),
            Err(err) => return Err(err.into()),
        };
        items.push(decode(row).map_err(Failed::Decode)?);
    }
    Ok(items)
}

fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ffi::ErrorCode::DatabaseBusy | ffi::ErrorCode::DatabaseLocked)
    )
}

impl Row for rusqlite::Row<'_> {
    fn text(&self, column: &str) -> StoreResult<Option<&str>> {
        let value = self
            .get_ref(column)
            .map_err(|err| StoreError::Internal(err.into()))?;
        value
            .as_str_or_null()
            .map_err(|err| StoreError::Internal(anyhow::anyhow!("column {column}: {err}")))
    }

    fn int(&self, column: &str) -> StoreResult<i64> {
        self.get(column)
            .map_err(|err| StoreError::Internal(err.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let conn = Connection::open(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch(
            "CREATE TABLE t (id TEXT PRIMARY KEY, data TEXT, n INTEGER);
             INSERT INTO t VALUES ('a', 'one', 1), ('b', NULL, 2), ('c', 'three', 3);",
        )
        .unwrap();
        (dir, path)
    }

    fn pair(row: &dyn Row) -> StoreResult<(Option<String>, i64)> {
        Ok((row.text("data")?.map(str::to_string), row.int("n")?))
    }

    #[test]
    fn reads_rows_with_text_binds_and_a_limit() {
        let (_dir, path) = database();
        let reads = DirectReads::open(&path).unwrap();
        let all = reads
            .read("SELECT data, n FROM t ORDER BY id", &[], None, 10, &pair)
            .unwrap()
            .unwrap();
        assert_eq!(
            all,
            [
                (Some("one".into()), 1),
                (None, 2),
                (Some("three".into()), 3)
            ]
        );
        let some = reads
            .read(
                "SELECT data, n FROM t WHERE id > ? ORDER BY id LIMIT ?",
                &["a".into()],
                Some(1),
                10,
                &pair,
            )
            .unwrap()
            .unwrap();
        assert_eq!(some, [(None, 2)]);
        // At most `max` rows are decoded.
        let first = reads
            .read("SELECT data, n FROM t ORDER BY id", &[], None, 1, &pair)
            .unwrap()
            .unwrap();
        assert_eq!(first.len(), 1);
    }

    #[test]
    fn cannot_write_and_reports_errors_as_internal() {
        let (_dir, path) = database();
        let reads = DirectReads::open(&path).unwrap();
        let write = reads
            .read("DELETE FROM t RETURNING data, n", &[], None, 10, &pair)
            .unwrap();
        assert!(matches!(write, Err(StoreError::Internal(_))), "{write:?}");
        let missing = reads
            .read("SELECT nope FROM t", &[], None, 10, &pair)
            .unwrap();
        assert!(matches!(missing, Err(StoreError::Internal(_))));
        // A column the decoder asks for that the query lacks.
        let wrong = reads
            .read("SELECT data FROM t", &[], None, 10, &pair)
            .unwrap();
        assert!(matches!(wrong, Err(StoreError::Internal(_))));
        let rows: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 3, "nothing was deleted");
    }

    #[test]
    fn sees_what_another_connection_committed() {
        let (_dir, path) = database();
        let reads = DirectReads::open(&path).unwrap();
        let count = |reads: &DirectReads| {
            reads
                .read(
                    "SELECT count(*) AS n, NULL AS data FROM t",
                    &[],
                    None,
                    1,
                    &pair,
                )
                .unwrap()
                .unwrap()[0]
                .1
        };
        assert_eq!(count(&reads), 3);
        Connection::open(&path)
            .unwrap()
            .execute("INSERT INTO t VALUES ('d', 'four', 4)", [])
            .unwrap();
        assert_eq!(count(&reads), 4);
    }

    #[test]
    fn a_read_that_would_wait_for_a_lock_is_left_to_sqlx() {
        let (_dir, path) = database();
        let reads = DirectReads::open(&path).unwrap();
        // A connection in exclusive locking mode keeps the file to itself
        // from its first write until it closes.
        let holder = Connection::open(&path).unwrap();
        holder
            .pragma_update(None, "locking_mode", "EXCLUSIVE")
            .unwrap();
        holder
            .execute("INSERT INTO t VALUES ('d', 'four', 4)", [])
            .unwrap();
        let read = reads.read("SELECT data, n FROM t", &[], None, 10, &pair);
        assert!(read.is_err(), "busy: not read here");
        drop(holder);
        let read = reads.read("SELECT data, n FROM t", &[], None, 10, &pair);
        assert_eq!(read.unwrap().unwrap().len(), 4);
    }

    #[test]
    fn a_file_that_cannot_be_opened_leaves_reads_to_sqlx() {
        let dir = tempfile::tempdir().unwrap();
        assert!(DirectReads::open(&dir.path().join("missing/t.db")).is_none());
    }

    #[test]
    fn closed_reads_read_no_more() {
        let (_dir, path) = database();
        let reads = DirectReads::open(&path).unwrap();
        reads.close();
        assert!(
            reads
                .read("SELECT data, n FROM t", &[], None, 10, &pair)
                .is_err()
        );
    }
}
