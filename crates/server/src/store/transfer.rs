//! Moving an installation from one store to another (`corral admin
//! migrate-store`), e.g. from the embedded SQLite file to PostgreSQL.
//!
//! Both databases are opened the normal way (so the target's schema is
//! created or brought up to date). The target must hold no data. Every
//! application table is then copied in dependency order (parents before
//! children), in batches, inside one transaction on the target, while the
//! source is read in one transaction too (a consistent snapshot). The copy is
//! verbatim: every column is TEXT or INTEGER (checked), and values move as
//! such, so API tokens stay SHA-256 hashes and secrets stay encrypted with the
//! data key — the target installation needs the same data key.
//!
//! Before the target transaction commits, each table is verified: its row
//! count and a SHA-256 checksum over its rows in primary-key order, each value
//! rendered canonically ([`render`]), computed separately on the source and on
//! the target. Any difference rolls the copy back and names the table.
//!
//! Not copied: sqlx's `_sqlx_migrations` (each database keeps its own) and the
//! PostgreSQL replica bus (`replicas`, `runner_connections`,
//! `runner_messages`), which describes running processes, not the
//! installation. A source table in neither list stops the migration, so a
//! new table cannot be left behind silently.
//!
//! The catalog queries (which tables and columns exist) differ per backend
//! and live here, not in [`Dialect`]: they concern the schema, not records.

use std::fmt;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use sqlx::any::AnyRow;
use sqlx::{AnyConnection, AssertSqlSafe, Connection, Row};

use super::sql::{Dialect, SqlStore};

/// The tables copied, parents before children (foreign keys are checked row
/// by row). `server_secrets` holds secrets encrypted with the data key.
pub const COPIED_TABLES: &[&str] = &[
    "organizations",
    "users",
    "groups",
    "memberships",
    "api_tokens",
    "runners",
    "runner_status",
    "runner_policies",
    "host_tokens",
    "scm_integrations",
    "environment_classes",
    "server_secrets",
    "audit_events",
    "releases",
    "release_chunks",
];

/// Tables left alone: migration bookkeeping, the replica bus (state of
/// running PostgreSQL replicas, rebuilt as they start), and the marks of
/// completed OAuth sign-ins (each lives minutes).
pub const NOT_COPIED_TABLES: &[&str] = &[
    "_sqlx_migrations",
    "oauth_sign_ins",
    "replicas",
    "runner_connections",
    "runner_messages",
];

/// Rows per read and per INSERT (well below both databases' parameter limits).
const BATCH_ROWS: usize = 500;

/// Rows per batch of `table`: release artifacts are stored in 1 MiB chunks,
/// so their batches stay small to keep memory bounded.
fn batch_rows(table: &str) -> usize {
    if table == "release_chunks" {
        4
    } else {
        BATCH_ROWS
    }
}

/// What a migration or a verification found, table by table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub source: String,
    pub target: String,
    pub tables: Vec<TableCheck>,
}

/// One table on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub table: &'static str,
    pub source: TableSum,
    pub target: TableSum,
}

impl TableCheck {
    pub fn ok(&self) -> bool {
        self.source == self.target
    }
}

/// Row count and SHA-256 (hex) of a table's rows in primary-key order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSum {
    pub rows: u64,
    pub sha256: String,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.tables.iter().all(TableCheck::ok)
    }

    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|t| t.source.rows).sum()
    }

    /// The tables that differ, with what each side holds.
    fn mismatches(&self) -> String {
        self.tables
            .iter()
            .filter(|t| !t.ok())
            .map(|t| {
                format!(
                    "{}: source {} rows (sha256 {}), target {} rows (sha256 {})",
                    t.table,
                    t.source.rows,
                    prefix(&t.source.sha256),
                    t.target.rows,
                    prefix(&t.target.sha256)
                )
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

fn prefix(sha256: &str) -> &str {
    &sha256[..sha256.len().min(16)]
}

/// One line per table (name, rows, checksum prefix, ok), then a summary.
impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<22} {:>8}  {:<16}  check", "table", "rows", "sha256")?;
        for t in &self.tables {
            let verdict = if t.ok() {
                "ok".to_string()
            } else {
                format!(
                    "MISMATCH (target: {} rows, {})",
                    t.target.rows,
                    prefix(&t.target.sha256)
                )
            };
            writeln!(
                f,
                "{:<22} {:>8}  {:<16}  {verdict}",
                t.table,
                t.source.rows,
                prefix(&t.source.sha256)
            )?;
        }
        let verdict = if self.ok() {
            "row counts and checksums match"
        } else {
            "VERIFICATION FAILED"
        };
        write!(
            f,
            "{} rows in {} tables, {} → {}: {verdict}",
            self.rows(),
            self.tables.len(),
            self.source,
            self.target
        )
    }
}

/// Copies the installation at `from` into the empty database at `to` and
/// verifies the copy; nothing is committed on the target unless every table
/// matches. URLs: `sqlite:PATH`, `sqlite:///abs/path`, `postgres://…`.
pub async fn migrate(from: &str, to: &str) -> anyhow::Result<Report> {
    let mut source = Database::open(from, Side::Source).await?;
    let mut target = Database::open(to, Side::Target).await?;
    let (source_dialect, target_dialect) = (source.dialect, target.dialect);
    check_known_tables(&mut source.conn, source_dialect).await?;

    let mut read = source
        .conn
        .begin_with(snapshot_begin(source_dialect))
        .await
        .context("starting a read transaction on the source")?;
    let mut write = target
        .conn
        .begin_with(write_begin(target_dialect))
        .await
        .context("starting a transaction on the target")?;
    if target_dialect == Dialect::Postgres {
        // A `corral serve` starting on the target waits until the copy is
        // committed, then finds the installation instead of bootstrapping one.
        // (The function returns `void`, which the Any driver cannot read.)
        sqlx::query("SELECT COUNT(*) FROM (SELECT pg_advisory_xact_lock($1)) AS locked")
            .bind(crate::duties::BOOTSTRAP_LOCK)
            .execute(&mut *write)
            .await
            .context("locking the target against bootstrapping")?;
    }

    let tables = shapes(&mut read, source_dialect, &mut write, target_dialect).await?;
    refuse_data(&mut write, &tables, &target.shown).await?;
    for table in &tables {
        copy_table(&mut read, source_dialect, &mut write, target_dialect, table)
            .await
            .with_context(|| format!("copying {}", table.name))?;
    }

    let report = Report {
        source: source.shown.clone(),
        target: target.shown.clone(),
        tables: compare(
            &mut read,
            source_dialect,
            &mut write,
            target_dialect,
            &tables,
        )
        .await?,
    };
    if !report.ok() {
        write.rollback().await.ok();
        bail!(
            "verification failed, nothing was written to the target: {}",
            report.mismatches()
        );
    }
    write
        .commit()
        .await
        .context("committing the copy on the target")?;
    read.rollback().await.ok();
    source.close().await;
    target.close().await;
    Ok(report)
}

/// Compares the application tables of `from` and `to` (row counts and
/// checksums) without changing either; an error names the tables that differ.
pub async fn verify(from: &str, to: &str) -> anyhow::Result<Report> {
    let mut source = Database::open(from, Side::Source).await?;
    let mut target = Database::open(to, Side::Target).await?;
    let (source_dialect, target_dialect) = (source.dialect, target.dialect);
    let mut read = source
        .conn
        .begin_with(snapshot_begin(source_dialect))
        .await
        .context("starting a read transaction on the source")?;
    let mut other = target
        .conn
        .begin_with(snapshot_begin(target_dialect))
        .await
        .context("starting a read transaction on the target")?;
    let tables = shapes(&mut read, source_dialect, &mut other, target_dialect).await?;
    let report = Report {
        source: source.shown.clone(),
        target: target.shown.clone(),
        tables: compare(
            &mut read,
            source_dialect,
            &mut other,
            target_dialect,
            &tables,
        )
        .await?,
    };
    read.rollback().await.ok();
    other.rollback().await.ok();
    source.close().await;
    target.close().await;
    if !report.ok() {
        bail!("verification failed: {}", report.mismatches());
    }
    Ok(report)
}

// ---------------------------------------------------------------------------
// Opening
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

/// One connection to a store's database, its schema up to date.
struct Database {
    conn: AnyConnection,
    dialect: Dialect,
    /// The URL without its password, for messages.
    shown: String,
}

impl Database {
    /// Opens the store as `corral serve` would (creating or migrating the
    /// schema), then keeps one plain connection for copying.
    async fn open(url: &str, side: Side) -> anyhow::Result<Self> {
        let shown = shown(url);
        let what = match side {
            Side::Source => "source",
            Side::Target => "target",
        };
        let store = if url.starts_with("sqlite:") {
            if side == Side::Source {
                // Opening would create a missing file: a mistyped path would
                // migrate an empty installation.
                use std::str::FromStr as _;
                let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                    .with_context(|| format!("invalid SQLite URL {url}"))?;
                let path = options.get_filename();
                if !path.is_file() {
                    bail!("the source database {} does not exist", path.display());
                }
            }
            SqlStore::open_sqlite_url(url).await
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            SqlStore::open_postgres(url).await
        } else {
            bail!(
                "unsupported {what} URL scheme {:?}: use sqlite:PATH or postgres://USER@HOST/DATABASE",
                url.split(':').next().unwrap_or_default()
            )
        }
        .with_context(|| format!("opening the {what} {shown}"))?;
        let dialect = store.dialect();
        store.close().await;
        let conn = AnyConnection::connect(url)
            .await
            .with_context(|| format!("connecting to the {what} {shown}"))?;
        Ok(Self {
            conn,
            dialect,
            shown,
        })
    }

    async fn close(self) {
        let _ = self.conn.close().await;
    }
}

/// `url` without its password.
fn shown(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        _ => url.to_string(),
    }
}

/// Starts a transaction that sees one consistent state of the database.
fn snapshot_begin(dialect: Dialect) -> &'static str {
    match dialect {
        // A read transaction in WAL mode reads one snapshot.
        Dialect::Sqlite => "BEGIN",
        Dialect::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
    }
}

/// Starts the transaction that writes the copy.
fn write_begin(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => "BEGIN IMMEDIATE",
        Dialect::Postgres => "BEGIN",
    }
}

// ---------------------------------------------------------------------------
// Schema
// ---------------------------------------------------------------------------

/// The only column types the store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Text,
    Integer,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct ColumnShape {
    name: String,
    kind: Kind,
}

/// A table as both sides have it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TableShape {
    name: &'static str,
    /// Sorted by name: the canonical order of values in a row.
    columns: Vec<ColumnShape>,
    /// The primary key's columns, in key order.
    key: Vec<String>,
}

/// Tables of the source that are neither copied nor deliberately left alone.
async fn check_known_tables(conn: &mut AnyConnection, dialect: Dialect) -> anyhow::Result<()> {
    let sql = match dialect {
        Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'"
        }
        Dialect::Postgres => {
            "SELECT CAST(table_name AS TEXT) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        }
    };
    let names: Vec<String> = sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await
        .context("listing the source's tables")?;
    let unknown: Vec<_> = names
        .iter()
        .filter(|n| {
            !COPIED_TABLES.contains(&n.as_str()) && !NOT_COPIED_TABLES.contains(&n.as_str())
        })
        .collect();
    if !unknown.is_empty() {
        bail!(
            "the source has tables this version of corral does not know how to migrate: {unknown:?}"
        );
    }
    Ok(())
}

/// The shape of `table` in one database; `None` when it has no such table.
async fn shape(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &'static str,
) -> anyhow::Result<Option<TableShape>> {
    let (columns, key): (Vec<(String, String)>, Vec<String>) = match dialect {
        Dialect::Sqlite => {
            let rows: Vec<(String, String, i64)> =
                sqlx::query_as("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid")
                    .bind(table)
                    .fetch_all(&mut *conn)
                    .await?;
            let mut key: Vec<_> = rows.iter().filter(|r| r.2 > 0).collect();
            key.sort_by_key(|r| r.2);
            let key = key.into_iter().map(|r| r.0.clone()).collect();
            (rows.into_iter().map(|(n, t, _)| (n, t)).collect(), key)
        }
        Dialect::Postgres => {
            let columns: Vec<(String, String)> = sqlx::query_as(
                "SELECT CAST(column_name AS TEXT), CAST(data_type AS TEXT) \
                 FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 \
                 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
            let key: Vec<String> = sqlx::query_scalar(
                "SELECT CAST(k.column_name AS TEXT) \
                 FROM information_schema.table_constraints c \
                 JOIN information_schema.key_column_usage k \
                   ON k.constraint_schema = c.constraint_schema \
                  AND k.constraint_name = c.constraint_name \
                  AND k.table_name = c.table_name \
                 WHERE c.constraint_type = 'PRIMARY KEY' \
                   AND c.table_schema = current_schema() AND c.table_name = $1 \
                 ORDER BY k.ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await?;
            (columns, key)
        }
    };
    if columns.is_empty() {
        return Ok(None);
    }
    if key.is_empty() {
        bail!("table {table} has no primary key");
    }
    let mut shaped = Vec::with_capacity(columns.len());
    for (name, declared) in columns {
        let kind = match declared.to_ascii_lowercase().as_str() {
            "text" => Kind::Text,
            "integer" | "int" | "bigint" | "smallint" => Kind::Integer,
            other => bail!(
                "column {table}.{name} has type {other}; only TEXT and INTEGER columns can be migrated"
            ),
        };
        shaped.push(ColumnShape { name, kind });
    }
    shaped.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Some(TableShape {
        name: table,
        columns: shaped,
        key,
    }))
}

/// The copied tables as both sides have them; they must agree. A table
/// missing on both sides (an older schema) is left out.
async fn shapes(
    source: &mut AnyConnection,
    source_dialect: Dialect,
    target: &mut AnyConnection,
    target_dialect: Dialect,
) -> anyhow::Result<Vec<TableShape>> {
    let mut tables = Vec::new();
    for &name in COPIED_TABLES {
        let on_source = shape(source, source_dialect, name)
            .await
            .with_context(|| format!("reading the source's schema of {name}"))?;
        let on_target = shape(target, target_dialect, name)
            .await
            .with_context(|| format!("reading the target's schema of {name}"))?;
        match (on_source, on_target) {
            (None, None) => {}
            (Some(s), Some(t)) if s == t => tables.push(s),
            (s, t) => bail!(
                "table {name} differs between the source ({}) and the target ({}): \
                 run the same corral version on both",
                describe_shape(s.as_ref()),
                describe_shape(t.as_ref())
            ),
        }
    }
    Ok(tables)
}

fn describe_shape(shape: Option<&TableShape>) -> String {
    match shape {
        None => "no such table".to_string(),
        Some(s) => s
            .columns
            .iter()
            .map(|c| format!("{} {:?}", c.name, c.kind))
            .collect::<Vec<_>>()
            .join(", "),
    }
}

// ---------------------------------------------------------------------------
// Copying
// ---------------------------------------------------------------------------

/// A stored value.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Null,
    Text(String),
    Integer(i64),
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// Refuses a target that holds any row in a copied table.
async fn refuse_data(
    conn: &mut AnyConnection,
    tables: &[TableShape],
    shown: &str,
) -> anyhow::Result<()> {
    let mut found = Vec::new();
    for table in tables {
        let rows = count(conn, table).await?;
        if rows > 0 {
            found.push(format!("{} rows in {}", rows, table.name));
        }
    }
    if !found.is_empty() {
        bail!(
            "the target {shown} already holds data ({}): migrate-store copies only into an \
             empty database; point --to at a new one",
            found.join(", ")
        );
    }
    Ok(())
}

async fn count(conn: &mut AnyConnection, table: &TableShape) -> anyhow::Result<u64> {
    let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT COUNT(*) FROM {}",
        quote(table.name)
    )))
    .fetch_one(&mut *conn)
    .await
    .with_context(|| format!("counting the rows of {}", table.name))?;
    Ok(u64::try_from(n)?)
}

/// Up to `limit` rows of `table` from `offset`, in primary-key order (text
/// compared bytewise on both databases), values in canonical column order.
async fn read_page(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &TableShape,
    offset: usize,
    limit: usize,
) -> anyhow::Result<Vec<Vec<Value>>> {
    let columns: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let order: Vec<String> = table
        .key
        .iter()
        .map(|k| {
            let text = table
                .columns
                .iter()
                .any(|c| &c.name == k && c.kind == Kind::Text);
            match (text, dialect) {
                (false, _) => quote(k),
                (true, Dialect::Sqlite) => format!("{} COLLATE BINARY", quote(k)),
                (true, Dialect::Postgres) => format!("{} COLLATE \"C\"", quote(k)),
            }
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM {} ORDER BY {} LIMIT {limit} OFFSET {offset}",
        columns.join(", "),
        quote(table.name),
        order.join(", ")
    );
    let rows = sqlx::query(AssertSqlSafe(sql))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(|row| values(row, table)).collect()
}

fn values(row: &AnyRow, table: &TableShape) -> anyhow::Result<Vec<Value>> {
    table
        .columns
        .iter()
        .enumerate()
        .map(|(i, column)| {
            let value = match column.kind {
                Kind::Text => row
                    .try_get::<Option<String>, _>(i)
                    .map(|v| v.map(Value::Text)),
                Kind::Integer => row
                    .try_get::<Option<i64>, _>(i)
                    .map(|v| v.map(Value::Integer)),
            };
            Ok(value
                .with_context(|| format!("reading {}.{}", table.name, column.name))?
                .unwrap_or(Value::Null))
        })
        .collect()
}

/// Copies every row of `table`, in batches, within the open transactions.
async fn copy_table(
    source: &mut AnyConnection,
    source_dialect: Dialect,
    target: &mut AnyConnection,
    target_dialect: Dialect,
    table: &TableShape,
) -> anyhow::Result<()> {
    let limit = batch_rows(table.name);
    let columns: Vec<String> = table.columns.iter().map(|c| quote(&c.name)).collect();
    let one_row = format!("({})", vec!["?"; columns.len()].join(", "));
    let mut offset = 0;
    loop {
        let rows = read_page(source, source_dialect, table, offset, limit).await?;
        if rows.is_empty() {
            return Ok(());
        }
        let sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote(table.name),
            columns.join(", "),
            vec![one_row.as_str(); rows.len()].join(", ")
        );
        let sql = target_dialect.placeholders(&sql);
        let mut insert = sqlx::query(AssertSqlSafe(sql));
        for row in &rows {
            for (value, column) in row.iter().zip(&table.columns) {
                insert = match (value, column.kind) {
                    (Value::Text(s), _) => insert.bind(s.clone()),
                    (Value::Integer(i), _) => insert.bind(*i),
                    (Value::Null, Kind::Text) => insert.bind(None::<String>),
                    (Value::Null, Kind::Integer) => insert.bind(None::<i64>),
                };
            }
        }
        insert.execute(&mut *target).await?;
        if rows.len() < limit {
            return Ok(());
        }
        offset += rows.len();
    }
}

// ---------------------------------------------------------------------------
// Verifying
// ---------------------------------------------------------------------------

/// Appends one value to `out` so that different rows never render alike:
/// `n` for NULL, `i<decimal>;` for an integer, `t<byte length>:<UTF-8>` for text.
fn render(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.push(b'n'),
        Value::Integer(i) => out.extend(format!("i{i};").as_bytes()),
        Value::Text(s) => {
            out.extend(format!("t{}:", s.len()).as_bytes());
            out.extend(s.as_bytes());
        }
    }
}

/// Count and checksum of `table` in one database. The checksum covers the
/// table name, the column names (canonical order), then every row in
/// primary-key order.
async fn table_sum(
    conn: &mut AnyConnection,
    dialect: Dialect,
    table: &TableShape,
) -> anyhow::Result<TableSum> {
    let rows = count(conn, table).await?;
    let mut hasher = Sha256::new();
    let mut header = Vec::new();
    render(&Value::Text(table.name.to_string()), &mut header);
    for column in &table.columns {
        render(&Value::Text(column.name.clone()), &mut header);
    }
    hasher.update(&header);
    let (mut offset, mut hashed) = (0, 0u64);
    loop {
        let page = read_page(conn, dialect, table, offset, batch_rows(table.name))
            .await
            .with_context(|| format!("reading {}", table.name))?;
        let mut bytes = Vec::new();
        for row in &page {
            bytes.push(b'(');
            for value in row {
                render(value, &mut bytes);
            }
            bytes.push(b')');
        }
        hasher.update(&bytes);
        hashed += page.len() as u64;
        if page.len() < batch_rows(table.name) {
            break;
        }
        offset += page.len();
    }
    if hashed != rows {
        bail!(
            "{} changed while it was read ({rows} rows counted, {hashed} read)",
            table.name
        );
    }
    Ok(TableSum {
        rows,
        sha256: hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    })
}

/// Count and checksum of every table, separately on each side.
async fn compare(
    source: &mut AnyConnection,
    source_dialect: Dialect,
    target: &mut AnyConnection,
    target_dialect: Dialect,
    tables: &[TableShape],
) -> anyhow::Result<Vec<TableCheck>> {
    let mut checks = Vec::with_capacity(tables.len());
    for table in tables {
        checks.push(TableCheck {
            table: table.name,
            source: table_sum(source, source_dialect, table)
                .await
                .with_context(|| format!("checksumming {} on the source", table.name))?,
            target: table_sum(target, target_dialect, table)
                .await
                .with_context(|| format!("checksumming {} on the target", table.name))?,
        });
    }
    Ok(checks)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use chrono::Utc;
    use sqlx::Connection as _;
    use uuid::Uuid;

    use super::*;
    use crate::bootstrap;
    use crate::crypto::{self, DataKey};
    use crate::domain::*;
    use crate::store::Store;
    use crate::store::conformance::{
        ALL, group, join, new_class, new_host_token, new_integration, new_token, runner,
    };
    use corral_testkit::PostgresDatabase;

    /// What a realistic installation holds, and the secrets only its users know.
    #[derive(Clone)]
    struct Installation {
        orgs: Vec<Uuid>,
        users: Vec<Uuid>,
        runners: Vec<Uuid>,
        /// API tokens as their holders have them (the store keeps hashes).
        tokens: Vec<String>,
        host_token: Uuid,
    }

    const GITHUB_TOKEN: &[u8] = b"ghp_only-the-data-key-opens-this";

    /// Two organizations with admins and members, a group with a member, two
    /// runners (one reporting) with policies, runner and exchange tokens, an
    /// encrypted host token, an SCM integration, environment classes, and a
    /// server secret; text with quotes and non-ASCII on the way.
    async fn fill(store: &dyn Store, key: &DataKey) -> Installation {
        let (acme, admin) =
            bootstrap::create_organization(store, "Acme \"Ünïcode\" 'quoted' ✓", "admin@acme.test")
                .await
                .unwrap();
        let dev = bootstrap::create_user(store, acme.id, "dev@acme.test", OrgRole::Member)
            .await
            .unwrap();
        let (other, other_admin) =
            bootstrap::create_organization(store, "Other", "root@other.test")
                .await
                .unwrap();
        let platform = group(store, acme.id, "platform; DROP TABLE users; --").await;
        join(store, &platform, &dev.user).await;
        let linux = runner(store, &admin.user, "linux", &[&platform]).await;
        let spare = runner(store, &other_admin.user, "spare", &[]).await;
        store
            .update_runner(
                linux.id,
                Box::new(|r: &mut Runner| {
                    r.status.phase = RunnerPhase::Active;
                    r.status.updated_at = Some(Utc::now());
                    r.status.public_key = Some(vec![9; 32]);
                    Ok(())
                }),
            )
            .await
            .unwrap();
        store
            .create_token(&new_token(
                TokenKind::RunnerAccess,
                Subject::Runner(linux.id),
                &admin.user,
            ))
            .await
            .unwrap();
        store
            .create_token(&new_token(
                TokenKind::Exchange,
                Subject::Runner(spare.id),
                &other_admin.user,
            ))
            .await
            .unwrap();
        let mut host_token = new_host_token(&linux, &dev.user, "github.com");
        host_token.token_encrypted = key.encrypt(GITHUB_TOKEN);
        store.create_host_token(&host_token).await.unwrap();
        store
            .create_scm_integration(&new_integration(&linux, "git.acme.test"))
            .await
            .unwrap();
        store
            .create_environment_class(&new_class(&linux, "small", true))
            .await
            .unwrap();
        store
            .create_environment_class(&new_class(&linux, "large", false))
            .await
            .unwrap();
        store
            .server_secret("logs-signing-key", &STANDARD.encode(key.encrypt(&[3; 32])))
            .await
            .unwrap();
        store
            .record_audit_event(&AuditEvent {
                id: new_id(),
                org_id: acme.id,
                at: chrono::Utc::now(),
                actor: Some(Subject::User(admin.user.id)),
                token_id: None,
                rpc: "gitpod.v1.RunnerService/CreateRunner".into(),
                kind: AuditKind::ResourceChange,
                subject_kind: ResourceKind::Runner,
                subject_id: Some(linux.id),
                outcome: "ok".into(),
                request_id: "r-1".into(),
                client_address: "192.0.2.1".into(),
            })
            .await
            .unwrap();
        // A release of more chunks than one batch of release_chunks holds.
        let release = Release {
            id: new_id(),
            channel: ReleaseChannel::Stable,
            version: "1.2.3".into(),
            size: 6,
            sha256: "00".repeat(32),
            signature: vec![1; 64],
            published_at: chrono::Utc::now(),
        };
        let chunks: Vec<std::io::Result<Vec<u8>>> =
            (0..6u8).map(|i| Ok(vec![i, 255 - i])).collect();
        store
            .create_release(&release, &mut chunks.into_iter())
            .await
            .unwrap();
        Installation {
            orgs: vec![acme.id, other.id],
            users: vec![admin.user.id, dev.user.id, other_admin.user.id],
            runners: vec![linux.id, spare.id],
            tokens: vec![admin.token, dev.token, other_admin.token],
            host_token: host_token.id,
        }
    }

    /// Everything `installation` holds, read through the Store.
    async fn read_back(store: &dyn Store, installation: &Installation) -> String {
        let mut seen = Vec::new();
        for &org in &installation.orgs {
            seen.push(format!("{:?}", store.get_organization(org).await.unwrap()));
            let members = store
                .list_org_members(org, &OrgMemberFilter::default(), ALL)
                .await
                .unwrap();
            seen.push(format!("{members:?}"));
            let groups = store
                .list_groups(org, &GroupFilter::default(), ALL)
                .await
                .unwrap();
            for g in &groups.items {
                let members = store
                    .list_memberships(g.id, &MembershipFilter::default(), ALL)
                    .await
                    .unwrap();
                seen.push(format!("{members:?}"));
            }
            seen.push(format!("{groups:?}"));
            let runners = store
                .list_runners(org, &RunnerFilter::default(), ALL)
                .await
                .unwrap();
            seen.push(format!("{runners:?}"));
            let host_tokens = store
                .list_host_tokens(org, &HostTokenFilter::default(), ALL)
                .await
                .unwrap();
            seen.push(format!("{host_tokens:?}"));
            let integrations = store
                .list_scm_integrations(
                    org,
                    &ScmIntegrationFilter {
                        runner_ids: installation.runners.clone(),
                        ..Default::default()
                    },
                    ALL,
                )
                .await
                .unwrap();
            seen.push(format!("{integrations:?}"));
            let classes = store
                .list_environment_classes(org, &EnvironmentClassFilter::default(), ALL)
                .await
                .unwrap();
            seen.push(format!("{classes:?}"));
            let events = store
                .list_audit_events(Some(org), &AuditFilter::default(), ALL)
                .await
                .unwrap();
            seen.push(format!("{events:?}"));
        }
        for release in store.list_releases(None).await.unwrap() {
            for seq in 0..7 {
                seen.push(format!(
                    "{:?}",
                    store.release_chunk(release.id, seq).await.unwrap()
                ));
            }
            seen.push(format!("{release:?}"));
        }
        for &user in &installation.users {
            seen.push(format!("{:?}", store.get_user(user).await.unwrap()));
            seen.push(format!("{:?}", store.groups_of_user(user).await.unwrap()));
        }
        let tokens = store
            .list_user_tokens(&installation.users, ALL)
            .await
            .unwrap();
        seen.push(format!("{tokens:?}"));
        for &runner in &installation.runners {
            seen.push(format!("{:?}", store.get_runner(runner).await.unwrap()));
            seen.push(format!(
                "{:?}",
                store.list_runner_policies(runner).await.unwrap()
            ));
        }
        for token in &installation.tokens {
            let found = store
                .find_token_by_hash(&crypto::token_hash(token))
                .await
                .unwrap()
                .expect("an API token still authenticates");
            seen.push(format!("{found:?}"));
        }
        seen.push(
            store
                .server_secret("logs-signing-key", "not this one")
                .await
                .unwrap(),
        );
        seen.join("\n")
    }

    fn sqlite_url(path: &Path) -> String {
        format!("sqlite:{}", path.display())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn an_installation_moves_from_sqlite_to_postgres() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("corral.db");
        let key = DataKey::from_bytes([7; 32]);
        let source = SqlStore::open_sqlite(&path).await.unwrap();
        let installation = fill(&source, &key).await;
        let before = read_back(&source, &installation).await;
        source.close().await;
        let from = sqlite_url(&path);
        let database = PostgresDatabase::create().await;
        let to = database.url().to_string();
        let report = migrate(&from, &to).await.unwrap();
        println!("{report}");
        assert!(report.ok());
        let rows: Vec<(&str, u64)> = report
            .tables
            .iter()
            .map(|t| (t.table, t.target.rows))
            .collect();
        assert_eq!(
            rows,
            [
                ("organizations", 2),
                ("users", 3),
                // Each organization's admins and members, and "platform".
                ("groups", 5),
                // Three members, two admins, one member of "platform".
                ("memberships", 6),
                ("api_tokens", 5),
                ("runners", 2),
                ("runner_status", 2),
                ("runner_policies", 1),
                ("host_tokens", 1),
                ("scm_integrations", 1),
                ("environment_classes", 2),
                ("server_secrets", 1),
                ("audit_events", 1),
                ("releases", 1),
                ("release_chunks", 6),
            ]
        );
        assert!(
            report
                .to_string()
                .ends_with("row counts and checksums match")
        );

        // Through the target's Store: the same installation; tokens
        // still authenticate, secrets open with the same data key.
        let target = SqlStore::open_postgres(&to).await.unwrap();
        assert_eq!(read_back(&target, &installation).await, before);
        let host_token = target
            .get_host_token(installation.host_token)
            .await
            .unwrap();
        assert_eq!(
            key.decrypt(&host_token.token_encrypted).unwrap(),
            GITHUB_TOKEN
        );
        target.close().await;

        // Verifying again, independently, finds the same.
        assert_eq!(verify(&from, &to).await.unwrap().tables, report.tables);

        // A second migration into the now non-empty target is refused
        // and changes nothing.
        let refused = format!("{:#}", migrate(&from, &to).await.unwrap_err());
        assert!(refused.contains("already holds data"), "{refused}");
        assert!(refused.contains("2 rows in organizations"), "{refused}");
        assert_eq!(verify(&from, &to).await.unwrap().tables, report.tables);

        // A changed row on the target is found, and its table named.
        let mut conn = sqlx::PgConnection::connect(&to).await.unwrap();
        sqlx::query("UPDATE users SET email = 'mallory@acme.test' WHERE email = 'dev@acme.test'")
            .execute(&mut conn)
            .await
            .unwrap();
        let _ = conn.close().await;
        let failed = format!("{:#}", verify(&from, &to).await.unwrap_err());
        assert!(failed.contains("verification failed: users:"), "{failed}");
        assert!(!failed.contains("organizations"), "{failed}");
    }

    /// SQLite to SQLite works alike (no PostgreSQL needed), and a missing
    /// source or an unknown scheme is refused before anything is written.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_installation_moves_between_sqlite_files() {
        let dir = tempfile::tempdir().unwrap();
        let (from_path, to_path) = (dir.path().join("from.db"), dir.path().join("to.db"));
        let key = DataKey::from_bytes([8; 32]);
        let source = SqlStore::open_sqlite(&from_path).await.unwrap();
        let installation = fill(&source, &key).await;
        let before = read_back(&source, &installation).await;
        source.close().await;
        let (from, to) = (
            sqlite_url(&from_path),
            format!("sqlite://{}", to_path.display()),
        );

        let missing = sqlite_url(&dir.path().join("typo.db"));
        let refused = format!("{:#}", migrate(&missing, &to).await.unwrap_err());
        assert!(refused.contains("does not exist"), "{refused}");
        assert!(!dir.path().join("typo.db").exists());
        let refused = format!(
            "{:#}",
            migrate(&from, "mysql://db/corral").await.unwrap_err()
        );
        assert!(
            refused.contains("unsupported target URL scheme"),
            "{refused}"
        );

        let report = migrate(&from, &to).await.unwrap();
        assert!(report.ok() && report.rows() > 20, "{report}");
        let target = SqlStore::open_sqlite(&to_path).await.unwrap();
        assert_eq!(read_back(&target, &installation).await, before);
        target.close().await;
        let refused = format!("{:#}", migrate(&from, &to).await.unwrap_err());
        assert!(refused.contains("already holds data"), "{refused}");
    }

    #[test]
    fn rendering_is_unambiguous() {
        let rendered = |values: &[Value]| {
            let mut out = Vec::new();
            for v in values {
                render(v, &mut out);
            }
            out
        };
        let pairs = [
            (
                vec![Value::Text("ab".into()), Value::Text("c".into())],
                vec![Value::Text("a".into()), Value::Text("bc".into())],
            ),
            (vec![Value::Null], vec![Value::Text(String::new())]),
            (vec![Value::Integer(1)], vec![Value::Text("1".into())]),
            (
                vec![Value::Integer(12), Value::Integer(3)],
                vec![Value::Integer(1), Value::Integer(23)],
            ),
        ];
        for (a, b) in pairs {
            assert_ne!(rendered(&a), rendered(&b), "{a:?} vs {b:?}");
        }
    }
}
