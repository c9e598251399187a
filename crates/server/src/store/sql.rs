//! The SQL store: the one implementation of [`Store`], for SQLite and
//! PostgreSQL alike, over sqlx's `Any` driver. Queries are written once, with
//! `?` placeholders and only text and integer columns; [`Dialect`] supplies the
//! little that differs (placeholder style, how a writing transaction starts,
//! row locks, the JSON and substring functions). Opening each backend —
//! connection settings and its migrations — lives in `sqlite` and `postgres`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::any::{Any, AnyArguments};
use sqlx::query::{Query, QueryScalar};
use sqlx::{AnyConnection, AssertSqlSafe, Row};
use uuid::Uuid;

use super::batch::Batch;
use super::connections::{Connections, Lease, once_more_if_lost};
use super::direct_reads::DirectReads;
use super::group_commit::{Commit, WalSync, WriteQuery as _, WriteTx, Writer};
use super::recent::{RECENT_TTL, Recent};
use super::row::Row as ReadRow;
use super::{Mutation, Retryable, Store, StoreError, StoreResult};
use crate::domain::*;
use crate::expiring::Expiring;

/// What differs between the SQL databases the store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql` with its `?` placeholders in this dialect's style: unchanged for
    /// SQLite, `$1`, `$2`, … for PostgreSQL. A `?` inside a quoted literal stays.
    pub fn placeholders(self, sql: &str) -> String {
        if self == Dialect::Sqlite {
            return sql.to_string();
        }
        let mut out = String::with_capacity(sql.len() + 8);
        let (mut n, mut quoted) = (0, false);
        for c in sql.chars() {
            match c {
                '\'' => {
                    quoted = !quoted;
                    out.push(c);
                }
                '?' if !quoted => {
                    n += 1;
                    out.push_str(&format!("${n}"));
                }
                _ => out.push(c),
            }
        }
        out
    }

    /// How a transaction that reads and then writes starts. SQLite takes the
    /// write lock at once, so two such transactions run one after the other;
    /// PostgreSQL starts plainly and locks the rows it reads (`for_update`).
    fn write_begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// A page's `LIMIT n`, and the value to bind for it, if any. SQLite
    /// prepares a statement whose LIMIT is a parameter anew every time the
    /// parameter is bound (its plan may depend on the value): perf showed that
    /// at a seventh of ListRunners' CPU, so there the number is written into
    /// the statement (our own number from a handful of page sizes, so the
    /// statements stay few and cached). PostgreSQL keeps it a parameter: with
    /// the number written in, ListRunners' first page of a small table ran at
    /// a third of its rate.
    fn limit(self, n: usize) -> (String, Option<i64>) {
        match self {
            Dialect::Sqlite => (format!(" LIMIT {n}"), None),
            Dialect::Postgres => (" LIMIT ?".to_string(), Some(n as i64)),
        }
    }

    /// Ends a SELECT in a writing transaction: locks the rows read until commit.
    fn for_update(self) -> &'static str {
        match self {
            Dialect::Sqlite => "",
            Dialect::Postgres => " FOR UPDATE",
        }
    }

    /// Ends a SELECT over a join in a writing transaction: locks only the
    /// rows read from the table aliased `alias` until commit.
    fn for_update_of(self, alias: &str) -> String {
        match self {
            Dialect::Sqlite => String::new(),
            Dialect::Postgres => format!(" FOR UPDATE OF {alias}"),
        }
    }

    /// The values of text `column` over the rows, joined by commas, in no
    /// particular order (NULL when there are none).
    fn joined_ids(self, column: &str) -> String {
        match self {
            Dialect::Sqlite => format!("group_concat({column}, ',')"),
            Dialect::Postgres => format!("string_agg({column}, ',')"),
        }
    }

    /// The text of the top-level string field `key` of the JSON in `column`.
    fn json_text(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_extract({column}, '$.{key}')"),
            Dialect::Postgres => format!("({column}::jsonb ->> '{key}')"),
        }
    }

    /// The JSON in `column` without its top-level field `key`, as text.
    fn json_without(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_remove({column}, '$.{key}')"),
            Dialect::Postgres => format!("({column}::jsonb - '{key}')::text"),
        }
    }

    /// The JSON in `column` with the string field `key` set to a bound value.
    fn json_set_text(self, column: &str, key: &str) -> String {
        match self {
            Dialect::Sqlite => format!("json_set({column}, '$.{key}', ?)"),
            Dialect::Postgres => {
                format!("jsonb_set({column}::jsonb, '{{{key}}}', to_jsonb(?::text))::text")
            }
        }
    }

    /// True when `needle` occurs in `haystack` (plain substring, no wildcards).
    fn contains(self, haystack: &str, needle: &str) -> String {
        match self {
            Dialect::Sqlite => format!("instr({haystack}, {needle}) > 0"),
            Dialect::Postgres => format!("strpos({haystack}, {needle}) > 0"),
        }
    }
}

/// The store on open connections; see `sqlite` and `postgres` for opening them.
pub struct SqlStore {
    /// For reads.
    readers: Connections,
    /// For the hot reads on SQLite, where a file can be opened again: the
    /// same file read on the calling thread (see `direct_reads`).
    direct: Option<DirectReads>,
    /// For writes: on SQLite one connection, so that writers queue
    /// here, in order, instead of each holding a connection and sleeping in
    /// SQLite's busy handler until the file lock is free; on PostgreSQL
    /// connections of their own beside the readers'. Every write goes
    /// through it (see `group_commit`).
    writer: Writer,
    dialect: Dialect,
    /// Runners read recently (GetRunner is the hottest read); shared with
    /// the task that hears of writes made elsewhere, if any (`sqlite::watch`,
    /// `postgres::hear`).
    recent_runners: Arc<Recent<Uuid, Runner>>,
    /// That task, which stops with the store.
    watch: Option<AbortOnDrop>,
    /// Audit events of concurrent calls, written together.
    audit_rows: Batch<AuditRow, Result<Commit, String>>,
    /// Runner records changed by concurrent calls, written together.
    runner_rows: Batch<RunnerWrite, RunnerWrites>,
    /// Numbers the writes queued on `runner_rows`.
    runner_writes: AtomicU64,
    /// The last page query run (SQL in this dialect, its text binds, the
    /// limit if bound), for tests that check query plans.
    #[cfg(test)]
    last_page: std::sync::Mutex<Option<PageQuery>>,
}

/// A page query as run: SQL in the store's dialect, its text binds, the
/// limit if bound.
#[cfg(test)]
type PageQuery = (String, Vec<String>, Option<i64>);

/// What a page is read from: `select` (`SELECT … FROM …`, giving an `id`
/// column) and the column it is ordered and paged by (`key`, the id).
struct Rows<'a> {
    select: &'a str,
    key: &'a str,
}

/// A value for an indexed column.
enum Column {
    Text(String),
    Int(i64),
}

/// Reads the indexed columns (name, value) of a record, to keep them in step with `data`.
type IndexedColumns<T> = fn(&T) -> StoreResult<Vec<(&'static str, Column)>>;

fn internal(e: impl Into<anyhow::Error>) -> StoreError {
    StoreError::Internal(e.into())
}

/// Maps a unique-constraint violation to `AlreadyExists` with `what`.
fn on_unique(what: &str) -> impl FnOnce(sqlx::Error) -> StoreError + '_ {
    move |e| match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::AlreadyExists(what.to_string())
        }
        _ => internal(e),
    }
}

fn to_json<T: Serialize>(value: &T) -> StoreResult<String> {
    serde_json::to_string(value).map_err(internal)
}

fn from_json<T: DeserializeOwned>(data: &str) -> StoreResult<T> {
    serde_json::from_str(data).map_err(internal)
}

fn enum_name<T: Serialize>(value: &T) -> StoreResult<String> {
    Ok(to_json(value)?.trim_matches('"').to_string())
}

/// The inside of `IN (…)` for `n` values: `?, ?, ?`, or `NULL` (matches
/// nothing) when there are none, which both databases accept.
fn in_list(n: usize) -> String {
    if n == 0 {
        return "NULL".to_string();
    }
    vec!["?"; n].join(", ")
}

/// How many bytes of runner records (about: [`Runner::approximate_size`])
/// are kept in memory at most: 100,000 runners of a usual size.
pub const RUNNER_MEMORY: u64 = 128 << 20;

/// The usual memory of a runner record, which sizes the map's table.
const TYPICAL_RUNNER: u64 = 1 << 10;

/// A map of runner records within [`RUNNER_MEMORY`].
pub(super) fn runners_in_memory() -> Recent<Uuid, Runner> {
    Recent::in_map(Expiring::weighted(
        RUNNER_MEMORY,
        TYPICAL_RUNNER,
        RECENT_TTL,
        |runner| runner.approximate_size() as u64,
    ))
}

/// A task that ends when its owner drops this.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SqlStore {
    /// A store reading on `readers` and writing on `writer`; with `wal`,
    /// every write waits until it is on disk (SQLite group commit).
    pub(super) fn new(
        readers: Connections,
        writer: Connections,
        wal: Option<std::sync::Arc<WalSync>>,
        dialect: Dialect,
    ) -> Self {
        Self {
            readers,
            direct: None,
            writer: Writer::new(writer, wal),
            dialect,
            // Keeps nothing until the store is given a way to hear of
            // writes made elsewhere (`keeping_runners_in`).
            recent_runners: Arc::new({
                let recent = runners_in_memory();
                recent.deafen();
                recent
            }),
            watch: None,
            audit_rows: Batch::default(),
            runner_rows: Batch::default(),
            runner_writes: AtomicU64::new(0),
            #[cfg(test)]
            last_page: std::sync::Mutex::new(None),
        }
    }

    /// Keeps runners in `recent` (built with [`runners_in_memory`]), which
    /// `watch` tells of writes made elsewhere (none: there is no elsewhere).
    pub(super) fn keeping_runners_in(
        mut self,
        recent: Arc<Recent<Uuid, Runner>>,
        watch: Option<tokio::task::JoinHandle<()>>,
    ) -> Self {
        self.recent_runners = recent;
        self.watch = watch.map(AbortOnDrop);
        self
    }

    /// Reads the hot reads with `direct` (SQLite) instead of `readers`.
    pub(super) fn with_direct_reads(mut self, direct: Option<DirectReads>) -> Self {
        self.direct = direct;
        self
    }

    /// Reads done on the calling thread (SQLite's `direct_reads`), if any.
    #[cfg(test)]
    pub(crate) fn direct_reads_done(&self) -> Option<u64> {
        self.direct.as_ref().map(DirectReads::done)
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// Closes the store: waits for the connections in use, closes them all.
    pub async fn close(&self) {
        if let Some(watch) = &self.watch {
            watch.0.abort();
        }
        if let Some(direct) = &self.direct {
            direct.close();
        }
        self.readers.close().await;
        self.writer.connections().close().await;
    }

    /// A connection to read on.
    async fn reader(&self) -> StoreResult<Lease> {
        self.readers.acquire().await.map_err(internal)
    }

    /// Whether the runner `id` is kept in memory.
    #[cfg(test)]
    pub(crate) fn keeps_runner(&self, id: Uuid) -> bool {
        self.recent_runners.get(&id).is_ok()
    }

    /// The group commit every write waits for (SQLite files committing in full).
    #[cfg(test)]
    pub(crate) fn wal_sync(&self) -> Option<&WalSync> {
        self.writer.wal_sync()
    }

    /// PRAGMA `name` as the reading and the writing connections see it.
    #[cfg(test)]
    pub(crate) async fn pragma(&self, name: &str) -> (i64, i64) {
        let sql = format!("PRAGMA {name}");
        let read: i64 = sqlx::query_scalar(AssertSqlSafe(sql.clone()))
            .fetch_one(&mut self.reader().await.unwrap())
            .await
            .unwrap();
        let written: i64 = sqlx::query_scalar(AssertSqlSafe(sql))
            .fetch_one(&mut *self.writer.connections().acquire().await.unwrap())
            .await
            .unwrap();
        (read, written)
    }

    /// Runs `script` (statements without parameters) as is: for tests that
    /// set up rows as an older version left them, and replay a migration.
    #[cfg(test)]
    pub(crate) async fn execute_script(&self, script: String) -> Result<(), sqlx::Error> {
        sqlx::raw_sql(AssertSqlSafe(script))
            .execute(&mut *self.writer.connections().acquire().await.unwrap())
            .await
            .map(|_| ())
    }

    /// How many rows of runner `id` and of its policies there are, read in
    /// one statement (one snapshot on both stores).
    #[cfg(test)]
    pub(crate) async fn runner_and_policy_rows(&self, id: Uuid) -> (i64, i64) {
        sqlx::query_as(AssertSqlSafe(self.dialect.placeholders(
            "SELECT (SELECT count(*) FROM runners WHERE id = ?), \
             (SELECT count(*) FROM runner_policies WHERE runner_id = ?)",
        )))
        .bind(id.to_string())
        .bind(id.to_string())
        .fetch_one(&mut self.reader().await.unwrap())
        .await
        .unwrap()
    }

    /// Forgets every runner kept in memory, so the next reads go to the database.
    #[cfg(test)]
    pub(crate) fn forget_recent_runners(&self) {
        self.recent_runners.forget_all();
    }

    /// The `host` column of every SCM integration, in id order.
    #[cfg(test)]
    pub(crate) async fn integration_host_column(&self) -> Vec<String> {
        sqlx::query_scalar(AssertSqlSafe(
            "SELECT host FROM scm_integrations ORDER BY id",
        ))
        .fetch_all(&mut self.reader().await.unwrap())
        .await
        .unwrap()
    }

    /// The stored record of runner `id` (`runners.data`) as text.
    #[cfg(test)]
    pub(crate) async fn runner_record_text(&self, id: Uuid) -> String {
        self.query_scalar("SELECT data FROM runners WHERE id = ?")
            .bind(id.to_string())
            .fetch_one(&mut self.reader().await.unwrap())
            .await
            .unwrap()
    }

    /// The plan of the last page query (see `last_page`), one line per
    /// step: SQLite's EXPLAIN QUERY PLAN details; PostgreSQL's EXPLAIN with
    /// sequential scans and sorts disabled, so that either shows up only
    /// when no index can serve the query.
    #[cfg(test)]
    pub(crate) async fn last_page_plan(&self) -> Vec<String> {
        use sqlx::Executor as _;
        let (sql, binds, limit) = self.last_page.lock().unwrap().clone().unwrap();
        let mut conn = self.readers.acquire().await.unwrap();
        let explain = match self.dialect {
            Dialect::Sqlite => format!("EXPLAIN QUERY PLAN {sql}"),
            Dialect::Postgres => {
                conn.execute("SET enable_seqscan = off").await.unwrap();
                conn.execute("SET enable_sort = off").await.unwrap();
                format!("EXPLAIN {sql}")
            }
        };
        let mut query = sqlx::query(AssertSqlSafe(explain));
        for b in binds {
            query = query.bind(b);
        }
        if let Some(n) = limit {
            query = query.bind(n);
        }
        let rows = query.fetch_all(&mut conn).await.unwrap();
        let column = match self.dialect {
            Dialect::Sqlite => "detail",
            Dialect::Postgres => "QUERY PLAN",
        };
        let plan = rows.iter().map(|r| r.get::<String, _>(column)).collect();
        if self.dialect == Dialect::Postgres {
            conn.execute("RESET ALL").await.unwrap();
        }
        plan
    }

    /// A query written with `?` placeholders, in this store's dialect.
    fn query<'q>(&self, sql: &str) -> Query<'q, Any, AnyArguments> {
        sqlx::query(AssertSqlSafe(self.dialect.placeholders(sql)))
    }

    fn query_scalar<'q, O>(&self, sql: &str) -> QueryScalar<'q, Any, O, AnyArguments>
    where
        (O,): for<'r> sqlx::FromRow<'r, sqlx::any::AnyRow>,
    {
        sqlx::query_scalar(AssertSqlSafe(self.dialect.placeholders(sql)))
    }

    /// Starts a transaction that reads, decides and writes; see [`Dialect::write_begin`].
    pub(super) async fn begin_write(&self) -> StoreResult<WriteTx> {
        self.writer
            .begin_with(self.dialect.write_begin())
            .await
            .map_err(internal)
    }

    async fn fetch_data<T: DeserializeOwned>(
        &self,
        sql: &str,
        binds: &[String],
        what: &'static str,
    ) -> StoreResult<T> {
        self.fetch_optional(sql, binds)
            .await?
            .ok_or(StoreError::NotFound(what))
    }

    async fn fetch_optional<T: DeserializeOwned>(
        &self,
        sql: &str,
        binds: &[String],
    ) -> StoreResult<Option<T>> {
        let rows = self
            .read_rows(sql, binds, None, 1, &|row| from_json(row.required("data")?))
            .await?;
        Ok(rows.into_iter().next())
    }

    /// The first `max` rows of the read `sql` (`?` placeholders: `binds`,
    /// then `bound_limit` if any), each made a `T` by `decode`, in order and
    /// once per row: on SQLite on this thread ([`DirectReads`]) unless that
    /// would wait, else on a reading connection.
    async fn read_rows<T>(
        &self,
        sql: &str,
        binds: &[String],
        bound_limit: Option<i64>,
        max: usize,
        decode: &(dyn Fn(&dyn ReadRow) -> StoreResult<T> + Sync),
    ) -> StoreResult<Vec<T>> {
        if let Some(direct) = &self.direct
            && let Ok(read) = direct.read(sql, binds, bound_limit, max, decode)
        {
            return read;
        }
        // A read changes nothing, so one that found its connection broken
        // (a restarted PostgreSQL, say) runs once more, on another one: the
        // broken one is not lent again (see `connections`).
        let rows = once_more_if_lost(|| async {
            let query = self.bound_query(sql, binds.to_vec(), bound_limit);
            let mut conn = self.readers.acquire().await?;
            if max == 1 {
                query.fetch_optional(&mut conn).await.map(Vec::from_iter)
            } else {
                query.fetch_all(&mut conn).await
            }
        })
        .await
        .map_err(internal)?;
        rows.iter().take(max).map(|row| decode(row)).collect()
    }

    /// Reads one page of `table` rows matching `condition` (with `binds`), in id order.
    async fn page<T: DeserializeOwned>(
        &self,
        table: &str,
        condition: &str,
        binds: Vec<String>,
        page: PageRequest,
    ) -> StoreResult<Page<T>> {
        self.page_in_order(table, condition, binds, page, false)
            .await
    }

    /// [`Self::page`], newest (highest id) first when `descending`.
    async fn page_in_order<T: DeserializeOwned>(
        &self,
        table: &str,
        condition: &str,
        binds: Vec<String>,
        page: PageRequest,
        descending: bool,
    ) -> StoreResult<Page<T>> {
        let select = format!("SELECT id, data FROM {table}");
        let rows = Rows {
            select: &select,
            key: "id",
        };
        self.page_rows(rows, condition, binds, page, descending, &|row| {
            from_json(row.required("data")?)
        })
        .await
    }

    /// One page of `rows` that match `condition`, in key order, each made an
    /// item by `decode`. `binds` holds the values of the select's
    /// placeholders, then the condition's.
    async fn page_rows<T>(
        &self,
        rows: Rows<'_>,
        condition: &str,
        binds: Vec<String>,
        page: PageRequest,
        descending: bool,
        decode: &(dyn Fn(&dyn ReadRow) -> StoreResult<T> + Sync),
    ) -> StoreResult<Page<T>> {
        let (sql, binds, bound_limit) = self.page_sql(rows, condition, binds, page, descending);
        // One row more than the page tells whether another page follows;
        // of that row only the id is read.
        let seen = AtomicUsize::new(0);
        let mut rows = self
            .read_rows(&sql, &binds, bound_limit, page.limit + 1, &|row| {
                let id = Uuid::parse_str(row.required("id")?).map_err(internal)?;
                let on_page = seen.fetch_add(1, Ordering::Relaxed) < page.limit;
                Ok((id, on_page.then(|| decode(row)).transpose()?))
            })
            .await?;
        let next_after = if rows.len() > page.limit {
            rows.truncate(page.limit);
            rows.last().map(|(id, _)| *id)
        } else {
            None
        };
        let items = rows.into_iter().filter_map(|(_, item)| item).collect();
        Ok(Page { items, next_after })
    }

    /// The ids of one page of `rows` (selecting just their key as `id`), in
    /// ascending order, like [`Self::page_rows`] but read as one row of
    /// text: through sqlx every row of a result is a message to pass on
    /// (on SQLite a hand-off between threads), and a page of ids would be
    /// mostly that.
    async fn page_ids(
        &self,
        rows: Rows<'_>,
        condition: &str,
        binds: Vec<String>,
        page: PageRequest,
    ) -> StoreResult<Page<Uuid>> {
        let (sql, binds, bound_limit) = self.page_sql(rows, condition, binds, page, false);
        let sql = format!(
            "SELECT {} AS ids FROM ({sql}) page",
            self.dialect.joined_ids("page.id")
        );
        let mut ids = self
            .read_rows(&sql, &binds, bound_limit, 1, &|row| {
                row.text("ids")?
                    .unwrap_or_default()
                    .split(',')
                    .filter(|id| !id.is_empty())
                    .map(|id| Uuid::parse_str(id).map_err(internal))
                    .collect::<StoreResult<Vec<Uuid>>>()
            })
            .await?
            .pop()
            .unwrap_or_default();
        // The aggregate keeps no order; ids are ordered as their text, which
        // for hyphenated lowercase UUIDs is the order of the UUIDs.
        ids.sort_unstable();
        let next_after = if ids.len() > page.limit {
            ids.truncate(page.limit);
            ids.last().copied()
        } else {
            None
        };
        Ok(Page {
            items: ids,
            next_after,
        })
    }

    /// `sql` with `binds`, then the bound LIMIT if any, bound in that order.
    fn bound_query<'q>(
        &self,
        sql: &str,
        binds: Vec<String>,
        bound_limit: Option<i64>,
    ) -> Query<'q, Any, AnyArguments> {
        let mut query = self.query(sql);
        for b in binds {
            query = query.bind(b);
        }
        if let Some(n) = bound_limit {
            query = query.bind(n);
        }
        query
    }

    /// The SQL of one page of `rows` (one more than the page, to tell
    /// whether another follows), its binds and its bound LIMIT, if any.
    fn page_sql(
        &self,
        rows: Rows<'_>,
        condition: &str,
        mut binds: Vec<String>,
        page: PageRequest,
        descending: bool,
    ) -> (String, Vec<String>, Option<i64>) {
        let key = rows.key;
        let (after, order) = if descending {
            ("<", "DESC")
        } else {
            (">", "ASC")
        };
        let mut sql = format!("{} WHERE {condition}", rows.select);
        if let Some(position) = page.after {
            sql.push_str(&format!(" AND {key} {after} ?"));
            binds.push(position.to_string());
        }
        let (limit, bound_limit) = self.dialect.limit(page.limit + 1);
        sql.push_str(&format!(" ORDER BY {key} {order}{limit}"));
        #[cfg(test)]
        {
            let sql = self.dialect.placeholders(&sql);
            *self.last_page.lock().unwrap() = Some((sql, binds.clone(), bound_limit));
        }
        (sql, binds, bound_limit)
    }

    /// Applies `change` to the record with `id` in one transaction that holds
    /// the record locked from the read to the write (see [`Dialect::write_begin`]),
    /// and stores it back, refreshing the indexed columns named by `columns`.
    async fn mutate<T: Serialize + DeserializeOwned + Send>(
        &self,
        table: &str,
        id: Uuid,
        what: &'static str,
        change: Mutation<T>,
        columns: IndexedColumns<T>,
    ) -> StoreResult<T> {
        let mut tx = self.begin_write().await?;
        let row = self
            .query(&format!(
                "SELECT data FROM {table} WHERE id = ?{}",
                self.dialect.for_update()
            ))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or(StoreError::NotFound(what))?;
        let mut value: T = from_json(row.get::<&str, _>("data"))?;
        change(&mut value)?;
        let cols = columns(&value)?;
        let mut sql = format!("UPDATE {table} SET data = ?");
        for (name, _) in &cols {
            sql.push_str(&format!(", {name} = ?"));
        }
        sql.push_str(" WHERE id = ?");
        let mut query = self.query(&sql).bind(to_json(&value)?);
        for (_, v) in cols {
            query = match v {
                Column::Text(text) => query.bind(text),
                Column::Int(n) => query.bind(n),
            };
        }
        query
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(on_unique(what))?;
        tx.commit().await.map_err(internal)?;
        Ok(value)
    }

    async fn delete_by_id(&self, table: &str, id: Uuid, what: &'static str) -> StoreResult<()> {
        let done = self
            .query(&format!("DELETE FROM {table} WHERE id = ?"))
            .bind(id.to_string())
            .write(&self.writer)
            .await
            .map_err(internal)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(what));
        }
        Ok(())
    }

    async fn insert_group(&self, conn: &mut AnyConnection, group: &Group) -> StoreResult<()> {
        let system = group.system.map(|s| enum_name(&s)).transpose()?;
        self.query("INSERT INTO groups (id, org_id, name, system, data) VALUES (?, ?, ?, ?, ?)")
            .bind(group.id.to_string())
            .bind(group.org_id.to_string())
            .bind(&group.name)
            .bind(system)
            .bind(to_json(group)?)
            .execute(conn)
            .await
            .map_err(on_unique("a group with this name already exists"))?;
        Ok(())
    }

    async fn insert_membership(
        &self,
        conn: &mut AnyConnection,
        membership: &Membership,
    ) -> StoreResult<()> {
        self.query("INSERT INTO memberships (id, group_id, user_id, data) VALUES (?, ?, ?, ?)")
            .bind(membership.id.to_string())
            .bind(membership.group_id.to_string())
            .bind(membership.user_id.to_string())
            .bind(to_json(membership)?)
            .execute(conn)
            .await
            .map_err(on_unique("the subject is already a member of this group"))?;
        Ok(())
    }

    async fn insert_token(&self, conn: &mut AnyConnection, token: &ApiToken) -> StoreResult<()> {
        self.query(
            "INSERT INTO api_tokens (id, hash, kind, subject_id, data) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(token.id.to_string())
        .bind(&token.hash)
        .bind(enum_name(&token.kind)?)
        .bind(token.subject.id().to_string())
        .bind(to_json(token)?)
        .execute(conn)
        .await
        .map_err(on_unique("token already exists"))?;
        Ok(())
    }

    async fn system_group_id(
        &self,
        conn: &mut AnyConnection,
        org_id: Uuid,
        which: SystemGroup,
        lock: bool,
    ) -> StoreResult<Uuid> {
        let lock = if lock { self.dialect.for_update() } else { "" };
        let row = self
            .query(&format!(
                "SELECT id FROM groups WHERE org_id = ? AND system = ?{lock}"
            ))
            .bind(org_id.to_string())
            .bind(enum_name(&which)?)
            .fetch_optional(conn)
            .await
            .map_err(internal)?
            .ok_or(StoreError::NotFound("system group"))?;
        Uuid::parse_str(row.get::<&str, _>("id")).map_err(internal)
    }
}

/// A time as the store keeps it in columns: RFC 3339 in UTC with a fixed
/// format, so that text order is time order.
fn time_text(at: Timestamp) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

fn uuid_strings(ids: &[Uuid]) -> Vec<String> {
    ids.iter().map(Uuid::to_string).collect()
}

/// Appends to `condition` (on `runners` rows) what `filter` asks for.
fn runner_matches(
    org_id: Uuid,
    filter: &RunnerFilter,
    condition: &mut String,
    binds: &mut Vec<String>,
) -> StoreResult<()> {
    if !filter.creator_ids.is_empty() {
        condition.push_str(&format!(
            " AND creator_id IN ({})",
            in_list(filter.creator_ids.len())
        ));
        binds.extend(uuid_strings(&filter.creator_ids));
    }
    if !filter.kinds.is_empty() {
        condition.push_str(&format!(" AND kind IN ({})", in_list(filter.kinds.len())));
        for kind in &filter.kinds {
            binds.push(enum_name(kind)?);
        }
    }
    if !filter.providers.is_empty() {
        condition.push_str(&format!(
            " AND provider IN ({})",
            in_list(filter.providers.len())
        ));
        for provider in &filter.providers {
            binds.push(enum_name(provider)?);
        }
    }
    if !filter.phases.is_empty() {
        condition.push_str(&format!(
            " AND id IN (SELECT runner_id FROM runner_status WHERE phase IN ({}))",
            in_list(filter.phases.len())
        ));
        for phase in &filter.phases {
            binds.push(enum_name(phase)?);
        }
    }
    if let Some(visible) = &filter.visible {
        // The runners the caller may see, each part by an index: those
        // they created, itself (a runner), those granted to their groups.
        let mut any = Vec::new();
        if let Some(creator) = visible.creator {
            any.push("SELECT id FROM runners WHERE org_id = ? AND creator_id = ?".to_string());
            binds.push(org_id.to_string());
            binds.push(creator.to_string());
        }
        if let Some(runner_id) = visible.runner_id {
            any.push("SELECT ?".to_string());
            binds.push(runner_id.to_string());
        }
        if !visible.group_ids.is_empty() {
            any.push(format!(
                "SELECT runner_id FROM runner_policies WHERE group_id IN ({})",
                in_list(visible.group_ids.len())
            ));
            binds.extend(uuid_strings(&visible.group_ids));
        }
        if any.is_empty() {
            condition.push_str(" AND 1 = 0");
        } else {
            condition.push_str(&format!(" AND id IN ({})", any.join(" UNION ALL ")));
        }
    }
    Ok(())
}

/// Appends to `condition` (on rows with a `runner_id`) that the runner is one
/// of `org_id`'s that match `filter`; nothing when the filter is empty.
fn of_runners_matching(
    org_id: Uuid,
    filter: &RunnerFilter,
    condition: &mut String,
    binds: &mut Vec<String>,
) -> StoreResult<()> {
    if *filter == RunnerFilter::default() {
        return Ok(());
    }
    let mut runners = String::from("org_id = ?");
    binds.push(org_id.to_string());
    runner_matches(org_id, filter, &mut runners, binds)?;
    condition.push_str(&format!(
        " AND runner_id IN (SELECT id FROM runners WHERE {runners})"
    ));
    Ok(())
}

/// A runner with its status: the record (`runners.data`) and the status
/// (`runner_status.data`) live apart, so that a status report writes a small
/// row. Selects `id`, `data` (the record) and `status`. A macro, so that
/// [`RUNNER_BY_ID`] is written once at compile time, not formatted per read.
macro_rules! runner_select {
    () => {
        "SELECT r.id AS id, r.data AS data, s.data AS status \
         FROM runners r LEFT JOIN runner_status s ON s.runner_id = r.id"
    };
}
const RUNNER_SELECT: &str = runner_select!();
/// One runner by its id.
const RUNNER_BY_ID: &str = concat!(runner_select!(), " WHERE r.id = ?");

/// An audit event as the columns of its row.
struct AuditRow {
    id: String,
    org_id: String,
    at: String,
    actor_id: Option<String>,
    actor_kind: Option<String>,
    subject_id: Option<String>,
    subject_kind: String,
    data: String,
}

impl AuditRow {
    fn of(event: &AuditEvent) -> StoreResult<Self> {
        Ok(Self {
            id: event.id.to_string(),
            org_id: event.org_id.to_string(),
            at: time_text(event.at),
            actor_id: event.actor.map(|a| a.id().to_string()),
            actor_kind: event.actor.map(|a| enum_name(&a.kind())).transpose()?,
            subject_id: event.subject_id.map(|id| id.to_string()),
            subject_kind: enum_name(&event.subject_kind)?,
            data: to_json(event)?,
        })
    }
}

/// `rows` rows of `columns` placeholders each, for a `VALUES` list.
fn value_rows(rows: usize, columns: usize) -> String {
    let row = format!("({})", vec!["?"; columns].join(", "));
    vec![row; rows].join(", ")
}

/// Writes audit events of several calls in one statement (see
/// [`super::batch`]); each call waits for the commit to be durable itself.
async fn insert_audit_rows(
    writer: Writer,
    dialect: Dialect,
    rows: Vec<AuditRow>,
) -> Result<Commit, String> {
    let values = value_rows(rows.len(), 8);
    let sql = format!(
        "INSERT INTO audit_events \
         (id, org_id, at, actor_id, actor_kind, subject_id, subject_kind, data) VALUES {values}"
    );
    let mut query = sqlx::query(AssertSqlSafe(dialect.placeholders(&sql)));
    for row in rows {
        query = query
            .bind(row.id)
            .bind(row.org_id)
            .bind(row.at)
            .bind(row.actor_id)
            .bind(row.actor_kind)
            .bind(row.subject_id)
            .bind(row.subject_kind)
            .bind(row.data);
    }
    match writer.fetch_all_shared(query).await {
        Ok((_, commit)) => Ok(commit),
        Err(e) => Err(e.to_string()),
    }
}

/// A change of one runner's record, conditional on the record and status
/// it was made from (see [`update_runner_rows`]).
struct RunnerWrite {
    /// Unique among the writes queued: tells the one written apart from
    /// another change of the same runner in the same batch.
    number: u64,
    id: String,
    record: String,
    old_record: String,
    old_status: String,
}

/// The outcome of a batch of [`RunnerWrite`]s: the numbers of those
/// written, and their commit.
type RunnerWrites = Result<(Arc<[u64]>, Commit), String>;

/// Writes the runner records changed by several calls in one statement
/// (see [`super::batch`]). Each is written only if the runner's record and
/// status are still what the change was made from; the answer numbers the
/// writes that were. Of two changes of one runner in a batch only the
/// first is tried: the second was made from the same record, so it would
/// lose anyway, and its caller retries under a lock.
async fn update_runner_rows(
    writer: Writer,
    dialect: Dialect,
    mut rows: Vec<RunnerWrite>,
) -> RunnerWrites {
    let mut seen = std::collections::HashSet::with_capacity(rows.len());
    rows.retain(|row| seen.insert(row.id.clone()));
    let values = value_rows(rows.len(), 4);
    let sql = format!(
        "WITH w (id, data, old, status) AS (VALUES {values}) \
         UPDATE runners SET data = w.data FROM w \
         WHERE runners.id = w.id AND runners.data = w.old \
         AND (SELECT data FROM runner_status WHERE runner_id = w.id) = w.status \
         RETURNING runners.id"
    );
    let numbered: Vec<(String, u64)> = rows.iter().map(|r| (r.id.clone(), r.number)).collect();
    let mut query = sqlx::query(AssertSqlSafe(dialect.placeholders(&sql)));
    for row in rows {
        query = query
            .bind(row.id)
            .bind(row.record)
            .bind(row.old_record)
            .bind(row.old_status);
    }
    let (updated, commit) = writer
        .fetch_all_shared(query)
        .await
        .map_err(|e| e.to_string())?;
    let updated: std::collections::HashSet<String> =
        updated.iter().map(|row| row.get::<String, _>(0)).collect();
    let written = numbered
        .into_iter()
        .filter(|(id, _)| updated.contains(id))
        .map(|(_, number)| number)
        .collect();
    Ok((written, commit))
}

/// A runner from a row of [`RUNNER_SELECT`].
fn runner_from_row(row: &dyn ReadRow) -> StoreResult<Runner> {
    let mut runner: Runner = from_json(row.required("data")?)?;
    if let Some(status) = row.text("status")? {
        runner.status = from_json(status)?;
    }
    Ok(runner)
}

/// The runner's record as `runners.data` keeps it: all but the status.
pub(super) fn runner_record_json(runner: &Runner) -> StoreResult<String> {
    let mut value = serde_json::to_value(runner).map_err(internal)?;
    if let Some(record) = value.as_object_mut() {
        record.remove("status");
    }
    to_json(&value)
}

fn no_columns<T>(_: &T) -> StoreResult<Vec<(&'static str, Column)>> {
    Ok(Vec::new())
}

impl SqlStore {
    /// The runners with `ids`, in that order: kept ones from
    /// `recent_runners`, the rest in one query (and then kept). A runner
    /// deleted since its id was read is left out.
    async fn runners_by_id(&self, ids: &[Uuid]) -> StoreResult<Vec<Runner>> {
        let mut runners = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for id in ids {
            match self.recent_runners.get(id) {
                Ok(runner) => runners.push(Some(runner)),
                Err(ticket) => {
                    missing.push((runners.len(), *id, ticket));
                    runners.push(None);
                }
            }
        }
        if !missing.is_empty() {
            let sql = format!("{RUNNER_SELECT} WHERE r.id IN ({})", in_list(missing.len()));
            let binds: Vec<String> = missing.iter().map(|(_, id, _)| id.to_string()).collect();
            let mut read: std::collections::HashMap<Uuid, Runner> = self
                .read_rows(&sql, &binds, None, missing.len(), &runner_from_row)
                .await?
                .into_iter()
                .map(|runner| (runner.id, runner))
                .collect();
            for (at, id, ticket) in missing {
                if let Some(runner) = read.remove(&id) {
                    self.recent_runners.keep(ticket, id, runner.clone());
                    runners[at] = Some(runner);
                }
            }
        }
        Ok(runners.into_iter().flatten().collect())
    }

    /// Stores `runner`'s status in its row (creating it if missing), with the
    /// columns the liveness sweep reads.
    async fn write_runner_status(
        &self,
        conn: &mut AnyConnection,
        runner: &Runner,
    ) -> StoreResult<()> {
        self.query(
            "INSERT INTO runner_status (runner_id, phase, last_seen, data) VALUES (?, ?, ?, ?) \
             ON CONFLICT (runner_id) DO UPDATE SET phase = excluded.phase, \
             last_seen = excluded.last_seen, data = excluded.data",
        )
        .bind(runner.id.to_string())
        .bind(enum_name(&runner.status.phase)?)
        .bind(runner.status.updated_at.map(time_text))
        .bind(to_json(&runner.status)?)
        .execute(conn)
        .await
        .map_err(internal)?;
        Ok(())
    }

    /// [`Store::update_runner`] holding the record and its status locked
    /// from the read to the write.
    async fn update_runner_locked(
        &self,
        id: Uuid,
        change: &mut Retryable<Runner>,
    ) -> StoreResult<Runner> {
        let mut tx = self.begin_write().await?;
        let (record, status): (String, Option<String>) = match self.dialect {
            // The transaction holds the write lock already: both rows in one
            // statement, one hand-off to the SQLite thread instead of two.
            Dialect::Sqlite => {
                let row = self
                    .query(RUNNER_BY_ID)
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?
                    .ok_or(StoreError::NotFound("runner"))?;
                (row.get("data"), row.get("status"))
            }
            // The record before the status: whoever locks both takes them
            // in this order (update_runner_status locks only the status).
            Dialect::Postgres => {
                let record = self
                    .query_scalar(&format!(
                        "SELECT data FROM runners WHERE id = ?{}",
                        self.dialect.for_update()
                    ))
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?
                    .ok_or(StoreError::NotFound("runner"))?;
                let status = self
                    .query_scalar(&format!(
                        "SELECT data FROM runner_status WHERE runner_id = ?{}",
                        self.dialect.for_update()
                    ))
                    .bind(id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(internal)?;
                (record, status)
            }
        };
        let mut runner: Runner = from_json(&record)?;
        if let Some(status) = &status {
            runner.status = from_json(status)?;
        }
        change(&mut runner)?;
        // Each part is written only when it changed.
        let new_record = runner_record_json(&runner)?;
        if new_record != record {
            self.query("UPDATE runners SET data = ? WHERE id = ?")
                .bind(new_record)
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        if status.as_deref() != Some(to_json(&runner.status)?.as_str()) {
            self.write_runner_status(&mut tx, &runner).await?;
        }
        tx.commit().await.map_err(internal)?;
        self.recent_runners.forget(&id);
        Ok(runner)
    }

    /// One optimistic try of [`Store::update_runner`]: takes the runner as
    /// [`Store::get_runner`] has it (from memory when it was read in the last
    /// second, the read an authorization check just made), applies `change`,
    /// and when only the record changed, writes it in one statement on
    /// condition that the stored record and status are still the ones it
    /// started from (as the store writes them; a stale or differently
    /// spelled copy loses and the caller locks). The writer is held for that
    /// one statement: on SQLite every statement of a transaction is a round
    /// trip to the database thread, all of them with the write lock held.
    /// The runner as written is kept in memory (`Recent::written`): the
    /// read after an update, often the caller's own, finds it there.
    /// `None`: the change needs the rows locked, or lost a race.
    async fn update_runner_record(
        &self,
        id: Uuid,
        change: &mut Retryable<Runner>,
    ) -> StoreResult<Option<Runner>> {
        let mut runner = self.get_runner(id).await?;
        let (record, status) = (runner_record_json(&runner)?, to_json(&runner.status)?);
        change(&mut runner)?;
        let new_record = runner_record_json(&runner)?;
        // A change of the status takes both rows locked; so does no change
        // at all, which only a fresh read may conclude.
        if to_json(&runner.status)? != status || new_record == record {
            return Ok(None);
        }
        let ticket = self.recent_runners.ticket(&id);
        let row = RunnerWrite {
            number: self.runner_writes.fetch_add(1, Ordering::Relaxed),
            id: id.to_string(),
            record: new_record,
            old_record: record,
            old_status: status,
        };
        let number = row.number;
        let (writer, dialect) = (self.writer.clone(), self.dialect);
        let (written, commit) = self
            .runner_rows
            .write(row, move |rows| {
                update_runner_rows(writer.clone(), dialect, rows)
            })
            .await
            .map_err(internal)?
            .map_err(|e| internal(anyhow::anyhow!("updating runners: {e}")))?;
        if !written.contains(&number) {
            // Another write came first.
            return Ok(None);
        }
        commit.durable().await.map_err(internal)?;
        // What was written is what a read would now find (the record as
        // written, the status as it was, the statement's condition).
        self.recent_runners.written(ticket, id, runner.clone());
        Ok(Some(runner))
    }

    /// A condition on `users` rows: the name (in the JSON `data`) or the email
    /// contains the search term, case-insensitively. Binds the term twice.
    fn user_matches(&self) -> String {
        let d = self.dialect;
        format!(
            "({} OR {})",
            d.contains(
                &format!("lower({})", d.json_text("data", "name")),
                "lower(?)"
            ),
            d.contains("lower(email)", "lower(?)")
        )
    }
}

#[async_trait]
impl Store for SqlStore {
    async fn create_organization(&self, org: &Organization) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.query("INSERT INTO organizations (id, data) VALUES (?, ?)")
            .bind(org.id.to_string())
            .bind(to_json(org)?)
            .execute(&mut *tx)
            .await
            .map_err(on_unique("organization already exists"))?;
        for which in [SystemGroup::Admins, SystemGroup::Members] {
            let group = Group {
                id: new_id(),
                org_id: org.id,
                name: which.name().to_string(),
                description: match which {
                    SystemGroup::Admins => "Administrators of the organization".into(),
                    SystemGroup::Members => "Every member of the organization".into(),
                },
                system: Some(which),
                created_at: org.created_at,
                updated_at: org.created_at,
            };
            self.insert_group(&mut tx, &group).await?;
        }
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn get_organization(&self, id: Uuid) -> StoreResult<Organization> {
        self.fetch_data(
            "SELECT data FROM organizations WHERE id = ?",
            &[id.to_string()],
            "organization",
        )
        .await
    }

    async fn first_organization(&self) -> StoreResult<Option<Organization>> {
        self.fetch_optional("SELECT data FROM organizations ORDER BY id LIMIT 1", &[])
            .await
    }

    async fn create_user(&self, user: &User, role: OrgRole) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.query("INSERT INTO users (id, org_id, email, data) VALUES (?, ?, ?, ?)")
            .bind(user.id.to_string())
            .bind(user.org_id.to_string())
            .bind(&user.email)
            .bind(to_json(user)?)
            .execute(&mut *tx)
            .await
            .map_err(on_unique(
                "a user with this email already exists in the organization",
            ))?;
        let mut groups = vec![SystemGroup::Members];
        if role == OrgRole::Admin {
            groups.push(SystemGroup::Admins);
        }
        for which in groups {
            let group_id = self
                .system_group_id(&mut tx, user.org_id, which, false)
                .await?;
            let membership = Membership {
                id: new_id(),
                group_id,
                user_id: user.id,
                created_at: user.created_at,
            };
            self.insert_membership(&mut tx, &membership).await?;
        }
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn get_user(&self, id: Uuid) -> StoreResult<User> {
        self.fetch_data(
            "SELECT data FROM users WHERE id = ?",
            &[id.to_string()],
            "user",
        )
        .await
    }

    async fn update_user(&self, id: Uuid, change: Mutation<User>) -> StoreResult<User> {
        self.mutate("users", id, "user", change, |u| {
            Ok(vec![("email", Column::Text(u.email.clone()))])
        })
        .await
    }

    async fn org_role(&self, org_id: Uuid, user_id: Uuid) -> StoreResult<Option<OrgRole>> {
        let rows = self
            .query(
                "SELECT g.system FROM memberships m JOIN groups g ON g.id = m.group_id \
             WHERE g.org_id = ? AND m.user_id = ? AND g.system IS NOT NULL",
            )
            .bind(org_id.to_string())
            .bind(user_id.to_string())
            .fetch_all(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        let systems: Vec<String> = rows.iter().map(|r| r.get("system")).collect();
        let admins = enum_name(&SystemGroup::Admins)?;
        Ok(if systems.contains(&admins) {
            Some(OrgRole::Admin)
        } else if systems.is_empty() {
            None
        } else {
            Some(OrgRole::Member)
        })
    }

    async fn set_org_role(&self, org_id: Uuid, user_id: Uuid, role: OrgRole) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        // Locks the admins group: role changes in one organization take turns,
        // so two demotions cannot each leave the other as the last admin.
        let admins = self
            .system_group_id(&mut tx, org_id, SystemGroup::Admins, true)
            .await?;
        match role {
            OrgRole::Admin => {
                let existing: i64 = self
                    .query_scalar(
                        "SELECT COUNT(*) FROM memberships WHERE group_id = ? AND user_id = ?",
                    )
                    .bind(admins.to_string())
                    .bind(user_id.to_string())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(internal)?;
                if existing == 0 {
                    let membership = Membership {
                        id: new_id(),
                        group_id: admins,
                        user_id,
                        created_at: chrono::Utc::now(),
                    };
                    self.insert_membership(&mut tx, &membership).await?;
                }
            }
            OrgRole::Member => {
                let remaining: i64 = self
                    .query_scalar(
                        "SELECT COUNT(*) FROM memberships WHERE group_id = ? AND user_id != ?",
                    )
                    .bind(admins.to_string())
                    .bind(user_id.to_string())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(internal)?;
                if remaining == 0 {
                    return Err(StoreError::Conflict(
                        "the organization must keep at least one admin".into(),
                    ));
                }
                self.query("DELETE FROM memberships WHERE group_id = ? AND user_id = ?")
                    .bind(admins.to_string())
                    .bind(user_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(internal)?;
            }
        }
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn list_org_members(
        &self,
        org_id: Uuid,
        filter: &OrgMemberFilter,
        page: PageRequest,
    ) -> StoreResult<Page<OrgMember>> {
        // Whether each member is an admin, in the same query.
        let select = "SELECT id, data, (SELECT COUNT(*) FROM memberships m \
             JOIN groups g ON g.id = m.group_id \
             WHERE m.user_id = users.id AND g.org_id = ? AND g.system = ?) AS admin FROM users";
        let admins = enum_name(&SystemGroup::Admins)?;
        let mut condition = String::from("org_id = ?");
        let mut binds = vec![org_id.to_string(), admins, org_id.to_string()];
        if !filter.search.is_empty() {
            condition.push_str(&format!(" AND {}", self.user_matches()));
            binds.extend([filter.search.clone(), filter.search.clone()]);
        }
        if !filter.email.is_empty() {
            condition.push_str(" AND lower(email) = lower(?)");
            binds.push(filter.email.clone());
        }
        if !filter.user_ids.is_empty() {
            condition.push_str(&format!(" AND id IN ({})", in_list(filter.user_ids.len())));
            binds.extend(uuid_strings(&filter.user_ids));
        }
        if !filter.statuses.is_empty() {
            // Each status once: a status repeated in the request must not
            // grow the query (SQLite refuses more than 32766 parameters,
            // and parsing an IN list that long costs tens of MB).
            let mut statuses: Vec<&UserStatus> = Vec::new();
            for status in &filter.statuses {
                if !statuses.contains(&status) {
                    statuses.push(status);
                }
            }
            condition.push_str(&format!(
                " AND {} IN ({})",
                self.dialect.json_text("data", "status"),
                in_list(statuses.len())
            ));
            for status in statuses {
                binds.push(enum_name(status)?);
            }
        }
        let admins = filter.roles.contains(&OrgRole::Admin);
        let members = filter.roles.contains(&OrgRole::Member);
        if admins != members {
            condition.push_str(&format!(
                " AND id {} (SELECT m.user_id FROM memberships m JOIN groups g ON g.id = m.group_id \
                 WHERE g.org_id = ? AND g.system = ?)",
                if admins { "IN" } else { "NOT IN" }
            ));
            binds.extend([org_id.to_string(), enum_name(&SystemGroup::Admins)?]);
        }
        if !filter.exclude_group_ids.is_empty() {
            condition.push_str(&format!(
                " AND id NOT IN (SELECT user_id FROM memberships WHERE group_id IN ({}))",
                in_list(filter.exclude_group_ids.len())
            ));
            binds.extend(uuid_strings(&filter.exclude_group_ids));
        }
        if filter.exclude_members_in_any_team {
            condition.push_str(
                " AND id NOT IN (SELECT m.user_id FROM memberships m JOIN groups g ON g.id = m.group_id \
                 WHERE g.system IS NULL)",
            );
        }
        let rows = Rows { select, key: "id" };
        self.page_rows(rows, &condition, binds, page, false, &|row| {
            let user: User = from_json(row.required("data")?)?;
            let role = if row.int("admin")? > 0 {
                OrgRole::Admin
            } else {
                OrgRole::Member
            };
            Ok(OrgMember {
                member_since: user.created_at,
                user,
                role,
            })
        })
        .await
    }

    async fn create_group(&self, group: &Group) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.insert_group(&mut tx, group).await?;
        tx.commit().await.map_err(internal)
    }

    async fn get_group(&self, id: Uuid) -> StoreResult<Group> {
        self.fetch_data(
            "SELECT data FROM groups WHERE id = ?",
            &[id.to_string()],
            "group",
        )
        .await
    }

    async fn get_group_by_name(&self, org_id: Uuid, name: &str) -> StoreResult<Group> {
        self.fetch_data(
            "SELECT data FROM groups WHERE org_id = ? AND name = ?",
            &[org_id.to_string(), name.to_string()],
            "group",
        )
        .await
    }

    async fn system_group(&self, org_id: Uuid, which: SystemGroup) -> StoreResult<Group> {
        self.fetch_data(
            "SELECT data FROM groups WHERE org_id = ? AND system = ?",
            &[org_id.to_string(), enum_name(&which)?],
            "group",
        )
        .await
    }

    async fn list_groups(
        &self,
        org_id: Uuid,
        filter: &GroupFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Group>> {
        let mut condition = String::from("org_id = ?");
        let mut binds = vec![org_id.to_string()];
        if !filter.search.is_empty() {
            condition.push_str(&format!(
                " AND {}",
                self.dialect.contains("lower(name)", "lower(?)")
            ));
            binds.push(filter.search.clone());
        }
        if !filter.group_ids.is_empty() {
            condition.push_str(&format!(" AND id IN ({})", in_list(filter.group_ids.len())));
            binds.extend(uuid_strings(&filter.group_ids));
        }
        match filter.system {
            Some(true) => condition.push_str(" AND system IS NOT NULL"),
            Some(false) => condition.push_str(" AND system IS NULL"),
            None => {}
        }
        self.page("groups", &condition, binds, page).await
    }

    async fn update_group(&self, id: Uuid, change: Mutation<Group>) -> StoreResult<Group> {
        self.mutate("groups", id, "group", change, |g| {
            Ok(vec![("name", Column::Text(g.name.clone()))])
        })
        .await
    }

    async fn delete_group(&self, id: Uuid) -> StoreResult<()> {
        self.delete_by_id("groups", id, "group").await
    }

    async fn count_members(
        &self,
        group_ids: &[Uuid],
    ) -> StoreResult<std::collections::HashMap<Uuid, i64>> {
        if group_ids.is_empty() {
            return Ok(Default::default());
        }
        let sql = format!(
            "SELECT group_id, COUNT(*) AS members FROM memberships \
             WHERE group_id IN ({}) GROUP BY group_id",
            in_list(group_ids.len())
        );
        let mut query = self.query(&sql);
        for id in group_ids {
            query = query.bind(id.to_string());
        }
        let rows = query
            .fetch_all(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        rows.iter()
            .map(|r| {
                let id = Uuid::parse_str(r.get::<&str, _>("group_id")).map_err(internal)?;
                Ok((id, r.get::<i64, _>("members")))
            })
            .collect()
    }

    async fn create_membership(&self, membership: &Membership) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.insert_membership(&mut tx, membership).await?;
        tx.commit().await.map_err(internal)
    }

    async fn get_membership(&self, id: Uuid) -> StoreResult<Membership> {
        self.fetch_data(
            "SELECT data FROM memberships WHERE id = ?",
            &[id.to_string()],
            "membership",
        )
        .await
    }

    async fn find_membership(
        &self,
        group_id: Uuid,
        user_id: Uuid,
    ) -> StoreResult<Option<Membership>> {
        self.fetch_optional(
            "SELECT data FROM memberships WHERE group_id = ? AND user_id = ?",
            &[group_id.to_string(), user_id.to_string()],
        )
        .await
    }

    async fn delete_membership(&self, id: Uuid) -> StoreResult<()> {
        self.delete_by_id("memberships", id, "membership").await
    }

    async fn list_memberships(
        &self,
        group_id: Uuid,
        filter: &MembershipFilter,
        page: PageRequest,
    ) -> StoreResult<Page<MemberView>> {
        let mut condition = String::from("group_id = ?");
        let mut binds = vec![group_id.to_string()];
        if !filter.search.is_empty() {
            condition.push_str(&format!(
                " AND user_id IN (SELECT id FROM users WHERE {})",
                self.user_matches()
            ));
            binds.extend([filter.search.clone(), filter.search.clone()]);
        }
        // Each member's record in the same query.
        let rows = Rows {
            select: "SELECT m.id AS id, m.data AS data, u.data AS user_data \
                     FROM memberships m JOIN users u ON u.id = m.user_id",
            key: "m.id",
        };
        self.page_rows(rows, &condition, binds, page, false, &|row| {
            Ok(MemberView {
                membership: from_json(row.required("data")?)?,
                user: from_json(row.required("user_data")?)?,
            })
        })
        .await
    }

    async fn groups_of_user(&self, user_id: Uuid) -> StoreResult<Vec<Uuid>> {
        let rows = self
            .query("SELECT group_id FROM memberships WHERE user_id = ?")
            .bind(user_id.to_string())
            .fetch_all(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        rows.iter()
            .map(|r| Uuid::parse_str(r.get::<&str, _>("group_id")).map_err(internal))
            .collect()
    }

    async fn create_token(&self, token: &ApiToken) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.insert_token(&mut tx, token).await?;
        tx.commit().await.map_err(internal)
    }

    async fn find_token_by_hash(&self, hash: &str) -> StoreResult<Option<ApiToken>> {
        self.fetch_optional(
            "SELECT data FROM api_tokens WHERE hash = ?",
            &[hash.to_string()],
        )
        .await
    }

    async fn get_token(&self, id: Uuid) -> StoreResult<ApiToken> {
        self.fetch_data(
            "SELECT data FROM api_tokens WHERE id = ?",
            &[id.to_string()],
            "token",
        )
        .await
    }

    async fn list_user_tokens(
        &self,
        user_ids: &[Uuid],
        page: PageRequest,
    ) -> StoreResult<Page<ApiToken>> {
        let condition = format!("kind = ? AND subject_id IN ({})", in_list(user_ids.len()));
        let mut binds = vec![enum_name(&TokenKind::Personal)?];
        binds.extend(uuid_strings(user_ids));
        self.page("api_tokens", &condition, binds, page).await
    }

    async fn delete_token(&self, id: Uuid) -> StoreResult<()> {
        self.delete_by_id("api_tokens", id, "token").await
    }

    async fn record_token_uses(&self, uses: &[(Uuid, Timestamp)]) -> StoreResult<()> {
        if uses.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "UPDATE api_tokens SET data = {} WHERE id = ?",
            self.dialect.json_set_text("data", "last_used")
        );
        let mut tx = self.writer.begin().await.map_err(internal)?;
        for (id, at) in uses {
            self.query(&sql)
                .bind(to_json(at)?.trim_matches('"').to_string())
                .bind(id.to_string())
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn purge_spent_tokens(&self, cutoff: Timestamp) -> StoreResult<u64> {
        // Exchange tokens and sessions are few and short-lived: decide in
        // Rust, the same on both databases.
        let rows = self
            .query("SELECT id, data FROM api_tokens WHERE kind IN (?, ?)")
            .bind(enum_name(&TokenKind::Exchange)?)
            .bind(enum_name(&TokenKind::Session)?)
            .fetch_all(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        let mut purged = 0;
        for row in rows {
            let token: ApiToken = from_json(row.get::<&str, _>("data"))?;
            let spent = token.used_at.is_some_and(|at| at < cutoff)
                || token.expires_at.is_some_and(|at| at < cutoff);
            if spent {
                purged += self
                    .query("DELETE FROM api_tokens WHERE id = ?")
                    .bind(row.get::<String, _>("id"))
                    .write(&self.writer)
                    .await
                    .map_err(internal)?
                    .rows_affected();
            }
        }
        Ok(purged)
    }

    async fn log_flushes(&self) -> StoreResult<Option<super::LogFlushes>> {
        Ok(self.writer.wal_sync().map(|wal| {
            let (commits, durable, flushes) = wal.counts();
            super::LogFlushes {
                commits,
                durable,
                flushes,
            }
        }))
    }

    async fn claim_oauth_sign_in(&self, id: Uuid, expires_at: Timestamp) -> StoreResult<bool> {
        let mut tx = self.begin_write().await?;
        self.query("DELETE FROM oauth_sign_ins WHERE expires_at < ?")
            .bind(time_text(chrono::Utc::now()))
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        let claimed = self
            .query(
                "INSERT INTO oauth_sign_ins (id, expires_at) VALUES (?, ?) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(id.to_string())
            .bind(time_text(expires_at))
            .execute(&mut *tx)
            .await
            .map_err(internal)?
            .rows_affected();
        tx.commit().await.map_err(internal)?;
        Ok(claimed == 1)
    }

    async fn server_secret(&self, name: &str, initial: &str) -> StoreResult<String> {
        self.query(
            "INSERT INTO server_secrets (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING",
        )
        .bind(name.to_string())
        .bind(initial.to_string())
        .write(&self.writer)
        .await
        .map_err(internal)?;
        self.query_scalar("SELECT value FROM server_secrets WHERE name = ?")
            .bind(name.to_string())
            .fetch_one(&mut self.reader().await?)
            .await
            .map_err(internal)
    }

    async fn redeem_exchange_token(
        &self,
        exchange_id: Uuid,
        access: &ApiToken,
        now: Timestamp,
    ) -> StoreResult<()> {
        let mut tx = self.begin_write().await?;
        let row = self
            .query(&format!(
                "SELECT data FROM api_tokens WHERE id = ?{}",
                self.dialect.for_update()
            ))
            .bind(exchange_id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or(StoreError::NotFound("exchange token"))?;
        let mut exchange: ApiToken = from_json(row.get::<&str, _>("data"))?;
        if exchange.used_at.is_some() {
            return Err(StoreError::Conflict(
                "the exchange token was already used".into(),
            ));
        }
        if exchange.is_expired(now) {
            return Err(StoreError::Conflict(
                "the exchange token has expired".into(),
            ));
        }
        exchange.used_at = Some(now);
        self.query("UPDATE api_tokens SET data = ? WHERE id = ?")
            .bind(to_json(&exchange)?)
            .bind(exchange_id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        self.query("DELETE FROM api_tokens WHERE kind = ? AND subject_id = ?")
            .bind(enum_name(&TokenKind::RunnerAccess)?)
            .bind(access.subject.id().to_string())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        self.insert_token(&mut tx, access).await?;
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn create_runner(&self, runner: &Runner, policies: &[RunnerPolicy]) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.query(
            "INSERT INTO runners (id, org_id, creator_id, kind, provider, data) \
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(runner.id.to_string())
        .bind(runner.org_id.to_string())
        .bind(runner.creator.id().to_string())
        .bind(enum_name(&runner.kind)?)
        .bind(runner.provider.map(|p| enum_name(&p)).transpose()?)
        .bind(runner_record_json(runner)?)
        .execute(&mut *tx)
        .await
        .map_err(on_unique("runner already exists"))?;
        self.write_runner_status(&mut tx, runner).await?;
        for policy in policies {
            self.query("INSERT INTO runner_policies (runner_id, group_id, role) VALUES (?, ?, ?)")
                .bind(policy.runner_id.to_string())
                .bind(policy.group_id.to_string())
                .bind(enum_name(&policy.role)?)
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)?;
        Ok(())
    }

    async fn get_runner(&self, id: Uuid) -> StoreResult<Runner> {
        let ticket = match self.recent_runners.get(&id) {
            Ok(runner) => return Ok(runner),
            Err(ticket) => ticket,
        };
        let runner = self
            .read_rows(RUNNER_BY_ID, &[id.to_string()], None, 1, &runner_from_row)
            .await?
            .pop()
            .ok_or(StoreError::NotFound("runner"))?;
        self.recent_runners.keep(ticket, id, runner.clone());
        Ok(runner)
    }

    async fn list_runners(
        &self,
        org_id: Uuid,
        filter: &RunnerFilter,
        page: PageRequest,
    ) -> StoreResult<Page<Runner>> {
        let mut condition = String::from("org_id = ?");
        let mut binds = vec![org_id.to_string()];
        runner_matches(org_id, filter, &mut condition, &mut binds)?;
        // Which runners, in which order, is always the database's answer;
        // the records themselves come from `recent_runners` where kept
        // (the rule GetRunner reads by), so a polled page costs one query
        // of ids instead of decoding every record on it.
        let rows = Rows {
            select: "SELECT r.id AS id FROM runners r",
            key: "r.id",
        };
        let ids = self.page_ids(rows, &condition, binds, page).await?;
        Ok(Page {
            items: self.runners_by_id(&ids.items).await?,
            next_after: ids.next_after,
        })
    }

    async fn update_runner(&self, id: Uuid, mut change: Retryable<Runner>) -> StoreResult<Runner> {
        match self.update_runner_record(id, &mut change).await? {
            Some(runner) => Ok(runner),
            // Not again when the write lost a race: the runner is being
            // written right now.
            None => self.update_runner_locked(id, &mut change).await,
        }
    }

    async fn update_runner_status(
        &self,
        id: Uuid,
        change: Mutation<Runner>,
    ) -> StoreResult<Runner> {
        let mut tx = self.begin_write().await?;
        // The record without its configuration schema (up to 256 KiB),
        // which no status change needs.
        let row = self
            .query(&format!(
                "SELECT {} AS data, s.data AS status \
                 FROM runner_status s JOIN runners r ON r.id = s.runner_id \
                 WHERE s.runner_id = ?{}",
                self.dialect.json_without("r.data", "config_schema"),
                self.dialect.for_update_of("s")
            ))
            .bind(id.to_string())
            .fetch_optional(&mut *tx)
            .await
            .map_err(internal)?
            .ok_or(StoreError::NotFound("runner"))?;
        let mut runner = runner_from_row(&row)?;
        let mut before = runner.clone();
        change(&mut runner)?;
        // The record is not locked here: a change to it would race UpdateRunner.
        before.status = runner.status.clone();
        if before != runner {
            return Err(internal(anyhow::anyhow!(
                "a status update of runner {id} changed more than its status"
            )));
        }
        if row.get::<&str, _>("status") != to_json(&runner.status)? {
            self.write_runner_status(&mut tx, &runner).await?;
        }
        tx.commit().await.map_err(internal)?;
        self.recent_runners.forget(&id);
        Ok(runner)
    }

    async fn stale_runners(&self, cutoff: Timestamp) -> StoreResult<Vec<Uuid>> {
        let rows = self
            .query(
                "SELECT runner_id FROM runner_status \
             WHERE phase IN (?, ?) AND (last_seen IS NULL OR last_seen < ?)",
            )
            .bind(enum_name(&RunnerPhase::Active)?)
            .bind(enum_name(&RunnerPhase::Degraded)?)
            .bind(time_text(cutoff))
            .fetch_all(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        rows.iter()
            .map(|r| Uuid::parse_str(r.get::<&str, _>("runner_id")).map_err(internal))
            .collect()
    }

    async fn count_runners(&self) -> StoreResult<Vec<RunnerCount>> {
        let sql = format!(
            "SELECT s.phase AS phase, r.provider AS provider, \
             COALESCE({}, '') AS runner_version, COUNT(*) AS runners \
             FROM runner_status s JOIN runners r ON r.id = s.runner_id \
             GROUP BY s.phase, r.provider, runner_version",
            self.dialect.json_text("s.data", "version")
        );
        let rows = self
            .query(&sql)
            .fetch_all(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        rows.iter()
            .map(|r| {
                Ok(RunnerCount {
                    phase: from_json(&format!("\"{}\"", r.get::<&str, _>("phase")))?,
                    provider: r
                        .get::<Option<&str>, _>("provider")
                        .map(|p| from_json(&format!("\"{p}\"")))
                        .transpose()?,
                    version: r.get::<String, _>("runner_version"),
                    count: u64::try_from(r.get::<i64, _>("runners")).unwrap_or(0),
                })
            })
            .collect()
    }

    async fn delete_runner(&self, id: Uuid) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.query("DELETE FROM api_tokens WHERE subject_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        let done = self
            .query("DELETE FROM runners WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("runner"));
        }
        tx.commit().await.map_err(internal)?;
        self.recent_runners.forget(&id);
        Ok(())
    }

    async fn list_runner_policies(&self, runner_id: Uuid) -> StoreResult<Vec<RunnerPolicy>> {
        let rows = self
            .query(
                "SELECT group_id, role FROM runner_policies WHERE runner_id = ? ORDER BY group_id",
            )
            .bind(runner_id.to_string())
            .fetch_all(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        rows.iter()
            .map(|r| {
                Ok(RunnerPolicy {
                    runner_id,
                    group_id: Uuid::parse_str(r.get::<&str, _>("group_id")).map_err(internal)?,
                    role: from_json(&format!("\"{}\"", r.get::<&str, _>("role")))?,
                })
            })
            .collect()
    }

    async fn create_runner_policy(&self, policy: &RunnerPolicy) -> StoreResult<()> {
        self.query("INSERT INTO runner_policies (runner_id, group_id, role) VALUES (?, ?, ?)")
            .bind(policy.runner_id.to_string())
            .bind(policy.group_id.to_string())
            .bind(enum_name(&policy.role)?)
            .write(&self.writer)
            .await
            .map_err(on_unique("the group already has a policy on this runner"))?;
        Ok(())
    }

    async fn update_runner_policy(&self, policy: &RunnerPolicy) -> StoreResult<()> {
        let done = self
            .query("UPDATE runner_policies SET role = ? WHERE runner_id = ? AND group_id = ?")
            .bind(enum_name(&policy.role)?)
            .bind(policy.runner_id.to_string())
            .bind(policy.group_id.to_string())
            .write(&self.writer)
            .await
            .map_err(internal)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("runner policy"));
        }
        Ok(())
    }

    async fn delete_runner_policy(&self, runner_id: Uuid, group_id: Uuid) -> StoreResult<()> {
        let done = self
            .query("DELETE FROM runner_policies WHERE runner_id = ? AND group_id = ?")
            .bind(runner_id.to_string())
            .bind(group_id.to_string())
            .write(&self.writer)
            .await
            .map_err(internal)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("runner policy"));
        }
        Ok(())
    }

    async fn create_host_token(&self, token: &HostToken) -> StoreResult<()> {
        self.query(
            "INSERT INTO host_tokens (id, org_id, runner_id, user_id, host, data) VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(token.id.to_string())
        .bind(token.org_id.to_string())
        .bind(token.runner_id.to_string())
        .bind(token.user_id.to_string())
        .bind(&token.host)
        .bind(to_json(token)?)
        .write(&self.writer)
        .await
        .map_err(on_unique("the user already has a token for this host on this runner"))?;
        Ok(())
    }

    async fn get_host_token(&self, id: Uuid) -> StoreResult<HostToken> {
        self.fetch_data(
            "SELECT data FROM host_tokens WHERE id = ?",
            &[id.to_string()],
            "host authentication token",
        )
        .await
    }

    async fn list_host_tokens(
        &self,
        org_id: Uuid,
        filter: &HostTokenFilter,
        page: PageRequest,
    ) -> StoreResult<Page<HostToken>> {
        let mut condition = String::from("org_id = ?");
        let mut binds = vec![org_id.to_string()];
        if let Some(runner_id) = filter.runner_id {
            condition.push_str(" AND runner_id = ?");
            binds.push(runner_id.to_string());
        }
        if let Some(user_id) = filter.user_id {
            condition.push_str(" AND user_id = ?");
            binds.push(user_id.to_string());
        }
        self.page("host_tokens", &condition, binds, page).await
    }

    async fn update_host_token(
        &self,
        id: Uuid,
        change: Mutation<HostToken>,
    ) -> StoreResult<HostToken> {
        self.mutate(
            "host_tokens",
            id,
            "host authentication token",
            change,
            no_columns,
        )
        .await
    }

    async fn delete_host_token(&self, id: Uuid) -> StoreResult<()> {
        self.delete_by_id("host_tokens", id, "host authentication token")
            .await
    }

    async fn create_scm_integration(&self, integration: &ScmIntegration) -> StoreResult<()> {
        self.query(
            "INSERT INTO scm_integrations (id, org_id, runner_id, host, data) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(integration.id.to_string())
        .bind(integration.org_id.to_string())
        .bind(integration.runner_id.to_string())
        // The column holds the key, so every spelling of one host is one row.
        .bind(corral_contract::scm_host::lookup_key(&integration.host))
        .bind(to_json(integration)?)
        .write(&self.writer)
        .await
        .map_err(on_unique("the runner already has an SCM integration for this host"))?;
        Ok(())
    }

    async fn get_scm_integration(&self, id: Uuid) -> StoreResult<ScmIntegration> {
        self.fetch_data(
            "SELECT data FROM scm_integrations WHERE id = ?",
            &[id.to_string()],
            "SCM integration",
        )
        .await
    }

    async fn list_scm_integrations(
        &self,
        org_id: Uuid,
        filter: &ScmIntegrationFilter,
        page: PageRequest,
    ) -> StoreResult<Page<ScmIntegration>> {
        let mut condition = String::from("org_id = ?");
        let mut binds = vec![org_id.to_string()];
        if !filter.runner_ids.is_empty() {
            condition.push_str(&format!(
                " AND runner_id IN ({})",
                in_list(filter.runner_ids.len())
            ));
            binds.extend(uuid_strings(&filter.runner_ids));
        }
        if let Some(host) = &filter.host {
            condition.push_str(" AND host = ?");
            binds.push(host.clone());
        }
        of_runners_matching(org_id, &filter.runners, &mut condition, &mut binds)?;
        self.page("scm_integrations", &condition, binds, page).await
    }

    async fn update_scm_integration(
        &self,
        id: Uuid,
        change: Mutation<ScmIntegration>,
    ) -> StoreResult<ScmIntegration> {
        self.mutate(
            "scm_integrations",
            id,
            "SCM integration",
            change,
            no_columns,
        )
        .await
    }

    async fn delete_scm_integration(&self, id: Uuid) -> StoreResult<()> {
        self.delete_by_id("scm_integrations", id, "SCM integration")
            .await
    }

    async fn create_environment_class(&self, class: &EnvironmentClass) -> StoreResult<()> {
        self.query(
            "INSERT INTO environment_classes (id, org_id, runner_id, enabled, data) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(class.id.to_string())
        .bind(class.org_id.to_string())
        .bind(class.runner_id.to_string())
        .bind(i64::from(class.enabled))
        .bind(to_json(class)?)
        .write(&self.writer)
        .await
        .map_err(internal)?;
        Ok(())
    }

    async fn get_environment_class(&self, id: Uuid) -> StoreResult<EnvironmentClass> {
        self.fetch_data(
            "SELECT data FROM environment_classes WHERE id = ?",
            &[id.to_string()],
            "environment class",
        )
        .await
    }

    async fn list_environment_classes(
        &self,
        org_id: Uuid,
        filter: &EnvironmentClassFilter,
        page: PageRequest,
    ) -> StoreResult<Page<EnvironmentClass>> {
        let mut condition = String::from("org_id = ?");
        let mut binds = vec![org_id.to_string()];
        if !filter.runner_ids.is_empty() {
            condition.push_str(&format!(
                " AND runner_id IN ({})",
                in_list(filter.runner_ids.len())
            ));
            binds.extend(uuid_strings(&filter.runner_ids));
        }
        if let Some(enabled) = filter.enabled {
            condition.push_str(if enabled {
                " AND enabled = 1"
            } else {
                " AND enabled = 0"
            });
        }
        of_runners_matching(org_id, &filter.runners, &mut condition, &mut binds)?;
        self.page("environment_classes", &condition, binds, page)
            .await
    }

    async fn update_environment_class(
        &self,
        id: Uuid,
        change: Mutation<EnvironmentClass>,
    ) -> StoreResult<EnvironmentClass> {
        self.mutate(
            "environment_classes",
            id,
            "environment class",
            change,
            |c| Ok(vec![("enabled", Column::Int(i64::from(c.enabled)))]),
        )
        .await
    }

    async fn record_audit_event(&self, event: &AuditEvent) -> StoreResult<()> {
        let (writer, dialect) = (self.writer.clone(), self.dialect);
        let commit = self
            .audit_rows
            .write(AuditRow::of(event)?, move |rows| {
                insert_audit_rows(writer.clone(), dialect, rows)
            })
            .await
            .map_err(internal)?
            .map_err(|e| internal(anyhow::anyhow!("writing audit events: {e}")))?;
        commit.durable().await.map_err(internal)
    }

    async fn get_audit_event(&self, id: Uuid) -> StoreResult<AuditEvent> {
        self.fetch_data(
            "SELECT data FROM audit_events WHERE id = ?",
            &[id.to_string()],
            "audit event",
        )
        .await
    }

    async fn list_audit_events(
        &self,
        org_id: Option<Uuid>,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> StoreResult<Page<AuditEvent>> {
        let mut condition = String::from("1 = 1");
        let mut binds = Vec::new();
        if let Some(org_id) = org_id {
            condition.push_str(" AND org_id = ?");
            binds.push(org_id.to_string());
        }
        if !filter.actor_ids.is_empty() {
            condition.push_str(&format!(
                " AND actor_id IN ({})",
                in_list(filter.actor_ids.len())
            ));
            binds.extend(uuid_strings(&filter.actor_ids));
        }
        if !filter.actor_kinds.is_empty() {
            condition.push_str(&format!(
                " AND actor_kind IN ({})",
                in_list(filter.actor_kinds.len())
            ));
            for kind in &filter.actor_kinds {
                binds.push(enum_name(kind)?);
            }
        }
        if !filter.subject_ids.is_empty() {
            condition.push_str(&format!(
                " AND subject_id IN ({})",
                in_list(filter.subject_ids.len())
            ));
            binds.extend(uuid_strings(&filter.subject_ids));
        }
        if !filter.subject_kinds.is_empty() {
            condition.push_str(&format!(
                " AND subject_kind IN ({})",
                in_list(filter.subject_kinds.len())
            ));
            for kind in &filter.subject_kinds {
                binds.push(enum_name(kind)?);
            }
        }
        if let Some(from) = filter.from {
            condition.push_str(" AND at >= ?");
            binds.push(time_text(from));
        }
        if let Some(to) = filter.to {
            condition.push_str(" AND at < ?");
            binds.push(time_text(to));
        }
        self.page_in_order("audit_events", &condition, binds, page, filter.newest_first)
            .await
    }

    async fn prune_audit_events(&self, before: Timestamp) -> StoreResult<u64> {
        let done = self
            .query("DELETE FROM audit_events WHERE at < ?")
            .bind(time_text(before))
            .write(&self.writer)
            .await
            .map_err(internal)?;
        Ok(done.rows_affected())
    }

    async fn create_release(
        &self,
        release: &Release,
        chunks: &mut (dyn Iterator<Item = std::io::Result<Vec<u8>>> + Send),
    ) -> StoreResult<()> {
        use base64::Engine;
        let channel = release.channel.name();
        let mut tx = self.begin_write().await?;
        let published: i64 = self
            .query_scalar("SELECT COUNT(*) FROM releases WHERE channel = ?")
            .bind(channel.to_string())
            .fetch_one(&mut *tx)
            .await
            .map_err(internal)?;
        if published as usize >= corral_contract::release::MAX_RELEASES_PER_CHANNEL {
            return Err(StoreError::Conflict(format!(
                "the {channel} channel already holds {published} releases; withdraw old ones first"
            )));
        }
        self.query("INSERT INTO releases (id, channel, version, data) VALUES (?, ?, ?, ?)")
            .bind(release.id.to_string())
            .bind(channel.to_string())
            .bind(release.version.clone())
            .bind(to_json(release)?)
            .execute(&mut *tx)
            .await
            .map_err(on_unique(&format!(
                "version {} is already published on {channel}",
                release.version
            )))?;
        for (seq, chunk) in chunks.enumerate() {
            let chunk = chunk.map_err(|e| StoreError::Invalid {
                field: "artifact".into(),
                message: e.to_string(),
            })?;
            self.query("INSERT INTO release_chunks (release_id, seq, data) VALUES (?, ?, ?)")
                .bind(release.id.to_string())
                .bind(seq as i64)
                .bind(base64::engine::general_purpose::STANDARD.encode(&chunk))
                .execute(&mut *tx)
                .await
                .map_err(internal)?;
        }
        tx.commit().await.map_err(internal)
    }

    async fn list_releases(&self, channel: Option<ReleaseChannel>) -> StoreResult<Vec<Release>> {
        let rows: Vec<String> = match channel {
            Some(channel) => {
                self.query_scalar("SELECT data FROM releases WHERE channel = ? ORDER BY id")
                    .bind(channel.name().to_string())
                    .fetch_all(&mut self.reader().await?)
                    .await
            }
            None => {
                self.query_scalar("SELECT data FROM releases ORDER BY id")
                    .fetch_all(&mut self.reader().await?)
                    .await
            }
        }
        .map_err(internal)?;
        rows.iter().map(|data| from_json(data)).collect()
    }

    async fn get_release(&self, id: Uuid) -> StoreResult<Release> {
        self.fetch_data(
            "SELECT data FROM releases WHERE id = ?",
            &[id.to_string()],
            "release",
        )
        .await
    }

    async fn release_chunk(&self, id: Uuid, seq: u32) -> StoreResult<Option<Vec<u8>>> {
        use base64::Engine;
        let data: Option<String> = self
            .query_scalar("SELECT data FROM release_chunks WHERE release_id = ? AND seq = ?")
            .bind(id.to_string())
            .bind(i64::from(seq))
            .fetch_optional(&mut self.reader().await?)
            .await
            .map_err(internal)?;
        data.map(|text| {
            base64::engine::general_purpose::STANDARD
                .decode(text)
                .map_err(|e| {
                    internal(anyhow::anyhow!(
                        "release chunk {seq} of {id} is not base64: {e}"
                    ))
                })
        })
        .transpose()
    }

    async fn delete_release(&self, id: Uuid) -> StoreResult<()> {
        let mut tx = self.writer.begin().await.map_err(internal)?;
        self.query("DELETE FROM release_chunks WHERE release_id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        let done = self
            .query("DELETE FROM releases WHERE id = ?")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await
            .map_err(internal)?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound("release"));
        }
        tx.commit().await.map_err(internal)
    }
}

#[cfg(test)]
mod tests {
    use super::{Dialect, value_rows};

    #[test]
    fn value_rows_has_a_placeholder_per_column_of_each_row() {
        assert_eq!(value_rows(2, 3), "(?, ?, ?), (?, ?, ?)");
        assert_eq!(value_rows(1, 1), "(?)");
    }

    #[test]
    fn placeholders_are_numbered_for_postgres_outside_literals() {
        let sql = "SELECT data FROM t WHERE a = ? AND b = '?' AND c IN (?, ?)";
        assert_eq!(Dialect::Sqlite.placeholders(sql), sql);
        assert_eq!(
            Dialect::Postgres.placeholders(sql),
            "SELECT data FROM t WHERE a = $1 AND b = '?' AND c IN ($2, $3)"
        );
    }
}
