//! Test plumbing that several of corral's crates need, kept in one place.
//! A dev-dependency (and a dependency of the benchmark suite, `corral-bench`,
//! which is never shipped either); it depends on none of corral's crates (the
//! unit tests of `corral-server` use it, and a dependency back on the server
//! would build the server twice).
//!
//! # PostgreSQL
//!
//! Every store behaviour runs on SQLite and on PostgreSQL. A test that needs
//! PostgreSQL creates a [`PostgresDatabase`]: a new, empty database of the
//! test's own on the server that `CORRAL_TEST_POSTGRES_URL` names (default
//! [`DEFAULT_POSTGRES_URL`]). The test connects to [`PostgresDatabase::url`];
//! dropping the value drops the database, also when the test panics. When the
//! server does not answer, creating the database panics and says so.
//!
//! Every such test is marked
//! `#[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]`,
//! so that a plain `cargo test` on a machine without PostgreSQL passes and
//! lists the PostgreSQL variants as ignored, never as passed. `scripts/test`
//! runs the workspace tests with `-- --include-ignored` (CI always has
//! PostgreSQL). [`on_both_stores!`] declares a test once per store, with the
//! PostgreSQL variant so marked.
//!
//! # Ports
//!
//! [`free_port`]: a loopback port for a server process a test starts.

use std::time::Duration;

use sqlx::{AssertSqlSafe, Connection as _, PgConnection};
use url::Url;

/// The environment variable that names the PostgreSQL server for tests: a
/// URL to connect to for creating and dropping the tests' databases.
pub const POSTGRES_URL_VARIABLE: &str = "CORRAL_TEST_POSTGRES_URL";

/// The server the tests use when [`POSTGRES_URL_VARIABLE`] is unset or empty.
pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// How long connecting to the server, or dropping a database, may take.
const DEADLINE: Duration = Duration::from_secs(30);

/// Declares each listed test twice: `on_sqlite::NAME` and `on_postgres::NAME`,
/// the latter ignored unless asked for (see the [crate] documentation).
///
/// Each name is an `async fn` of the calling module that takes whatever the
/// store set-up hands it. The calling module also defines two async functions
/// that do the set-up and run the test: `on_sqlite(test)` and
/// `on_postgres(test)`, the latter typically with a [`PostgresDatabase`]. The
/// tests run on a multi-threaded Tokio runtime with two workers, so the
/// calling crate depends on `tokio`.
///
/// ```text
/// corral_testkit::on_both_stores!(lists_page_in_creation_order, tokens_expire);
/// ```
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod on_sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::on_sqlite(super::$name).await;
                }
            )*
        }
        mod on_postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
                async fn $name() {
                    super::on_postgres(super::$name).await;
                }
            )*
        }
    };
}

/// A database that exists for one test, on the test PostgreSQL server.
/// Dropping it drops the database, ending any connection still open to it.
pub struct PostgresDatabase {
    server: Server,
    name: String,
    url: String,
}

impl PostgresDatabase {
    /// Creates a new, empty database with a name of its own
    /// (`corral_test_<random hex>`). Panics when the server does not answer.
    pub async fn create() -> PostgresDatabase {
        let server = Server::from_env();
        let name = format!("corral_test_{}", uuid::Uuid::new_v4().simple());
        let mut admin = server.connect().await.unwrap_or_else(|e| {
            panic!(
                "PostgreSQL at {} does not answer ({e}): start it, or run the PostgreSQL \
                 variants only through scripts/test (a plain `cargo test` leaves them out); \
                 {POSTGRES_URL_VARIABLE} names another server",
                server.shown()
            )
        });
        sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap_or_else(|e| panic!("creating database {name} on {}: {e}", server.shown()));
        let _ = admin.close().await;
        let url = server.database_url(&name);
        PostgresDatabase { server, name, url }
    }

    /// Where the test connects: the server's URL (user, password and
    /// parameters included) with this database as the path.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Ends every connection to the database, as a restart of the server
    /// would; returns how many it ended.
    pub async fn end_connections(&self) -> i64 {
        self.end_connections_whose_last_statement_starts("").await
    }

    /// Ends the connections to the database whose last statement began with
    /// `prefix` (all of them for ""), as a restart of the server would end
    /// them; returns how many it ended.
    pub async fn end_connections_whose_last_statement_starts(&self, prefix: &str) -> i64 {
        let mut admin = self
            .server
            .connect()
            .await
            .unwrap_or_else(|e| panic!("connecting to {}: {e}", self.server.shown()));
        let ended = sqlx::query_scalar(
            "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND starts_with(query, $2)) AS ended",
        )
        .bind(&self.name)
        .bind(prefix)
        .fetch_one(&mut admin)
        .await
        .unwrap_or_else(|e| panic!("ending the connections to {}: {e}", self.name));
        let _ = admin.close().await;
        ended
    }
}

impl Drop for PostgresDatabase {
    fn drop(&mut self) {
        // Dropping the database takes a round trip to the server, and this
        // often runs inside the test's runtime, where nothing may block on a
        // future, or while that runtime unwinds a panic. So a thread of its
        // own, with a runtime of its own, does it, and this waits for it.
        // Nothing here panics: a panic while unwinding would abort the tests.
        let outcome = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| format!("no runtime: {e}"))?;
                    runtime.block_on(self.server.drop_database(&self.name))
                })
                .join()
        });
        let problem = match outcome {
            Ok(Ok(())) => return,
            Ok(Err(problem)) => problem,
            Err(_) => "the thread dropping it panicked".to_string(),
        };
        eprintln!(
            "could not drop the test database {} on {}: {problem}",
            self.name,
            self.server.shown()
        );
    }
}

/// The PostgreSQL server the tests create their databases on.
struct Server {
    url: Url,
}

impl Server {
    /// From [`POSTGRES_URL_VARIABLE`], or [`DEFAULT_POSTGRES_URL`].
    fn from_env() -> Server {
        let url = std::env::var(POSTGRES_URL_VARIABLE)
            .ok()
            .filter(|url| !url.is_empty())
            .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_string());
        let url = Url::parse(&url)
            .unwrap_or_else(|e| panic!("{POSTGRES_URL_VARIABLE} is not a URL ({e})"));
        Server { url }
    }

    /// The URL without its password, for messages.
    fn shown(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_password(None);
        url.to_string()
    }

    /// The URL of database `name` on this server.
    fn database_url(&self, name: &str) -> String {
        let mut url = self.url.clone();
        url.set_path(&format!("/{name}"));
        url.to_string()
    }

    async fn connect(&self) -> Result<PgConnection, String> {
        match tokio::time::timeout(DEADLINE, PgConnection::connect(self.url.as_str())).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no connection within {DEADLINE:?}")),
        }
    }

    async fn drop_database(&self, name: &str) -> Result<(), String> {
        let mut admin = self.connect().await?;
        let dropped = tokio::time::timeout(
            DEADLINE,
            sqlx::raw_sql(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut admin),
        )
        .await;
        let _ = admin.close().await;
        match dropped {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {DEADLINE:?}")),
        }
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on at the time of the call,
/// for a server the test starts. Another process may take it first; a test
/// that must not fail for that starts its server again on another port.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("a local address").port()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_url_keeps_the_server_user_and_parameters() {
        let server = Server {
            url: Url::parse("postgres://corral:secret@db.test:5433/postgres?sslmode=disable")
                .unwrap(),
        };
        assert_eq!(
            server.database_url("corral_test_1"),
            "postgres://corral:secret@db.test:5433/corral_test_1?sslmode=disable"
        );
        assert_eq!(
            server.shown(),
            "postgres://corral@db.test:5433/postgres?sslmode=disable"
        );
    }

    async fn exists(name: &str) -> bool {
        let server = Server::from_env();
        let mut admin = server.connect().await.unwrap();
        let found: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        let _ = admin.close().await;
        found == 1
    }

    /// The database is there for the test, and gone after it, also when the
    /// test panicked with a connection to it still open.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    #[ignore = "needs PostgreSQL: run through scripts/test (cargo test -- --include-ignored)"]
    async fn a_database_lives_as_long_as_its_test_even_one_that_panics() {
        let database = PostgresDatabase::create().await;
        let name = database.name().to_string();
        let mut connection = PgConnection::connect(database.url()).await.unwrap();
        sqlx::query("CREATE TABLE t (x int)")
            .execute(&mut connection)
            .await
            .unwrap();
        assert!(exists(&name).await);
        drop(database);
        assert!(!exists(&name).await, "{name} outlived its test");

        let (named, name) = tokio::sync::oneshot::channel();
        let failed = tokio::spawn(async move {
            let database = PostgresDatabase::create().await;
            let _connection = PgConnection::connect(database.url()).await.unwrap();
            named.send(database.name().to_string()).unwrap();
            panic!("a failing test");
        })
        .await;
        assert!(failed.unwrap_err().is_panic());
        let name = name.await.unwrap();
        assert!(!exists(&name).await, "{name} outlived its failed test");
    }
}
