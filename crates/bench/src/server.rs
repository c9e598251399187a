//! The server under test: the release `corral` binary, started as its own
//! process on a fresh store, and what the bench reads about it (`/proc`).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use corral_server::store::sql::SqlStore;
use corral_testkit::PostgresDatabase;
use tokio::process::{Child, Command};

use crate::http::Http1;

/// Which store a server keeps its state in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub fn name(self) -> &'static str {
        match self {
            StoreKind::Sqlite => "SQLite",
            StoreKind::Postgres => "PostgreSQL",
        }
    }
}

/// A running `corral serve` with its data dir (and PostgreSQL database),
/// stopped when dropped.
pub struct Server {
    child: Child,
    pub pid: u32,
    pub port: u16,
    pub admin_token: String,
    pub kind: StoreKind,
    data_dir: PathBuf,
    database_url: Option<String>,
    // Dropped after the process (fields drop in order): the database goes last.
    _dir: TempDir,
    _database: Option<PostgresDatabase>,
}

/// Extra `corral serve` flags for one run.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub runner_grace: Option<Duration>,
    pub max_connections: Option<u32>,
}

impl Server {
    /// Starts `binary serve` on a fresh store and waits until `/healthz` answers
    /// and the admin token is written.
    pub async fn start(
        binary: &Path,
        kind: StoreKind,
        options: &ServeOptions,
    ) -> anyhow::Result<Server> {
        let dir = TempDir::new()?;
        let data_dir = dir.0.join("data");
        let database = match kind {
            StoreKind::Sqlite => None,
            StoreKind::Postgres => Some(PostgresDatabase::create().await),
        };
        let database_url = database.as_ref().map(|db| db.url().to_string());
        let port = corral_testkit::free_port();
        let mut command = Command::new(binary);
        command
            .arg("serve")
            .arg("--data-dir")
            .arg(&data_dir)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            // Quiet: the bench's own output is the report.
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.0.join("server.log"))?)
            .kill_on_drop(true);
        if let Some(url) = &database_url {
            command.arg("--database-url").arg(url);
        }
        if let Some(grace) = options.runner_grace {
            command
                .arg("--runner-grace")
                .arg(format!("{}ms", grace.as_millis()));
        }
        if let Some(max) = options.max_connections {
            command.arg("--max-connections").arg(max.to_string());
        }
        let child = command
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let pid = child.id().context("the server exited at once")?;
        let mut server = Server {
            child,
            pid,
            port,
            admin_token: String::new(),
            kind,
            data_dir,
            database_url,
            _dir: dir,
            _database: database,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let token_file = self.data_dir.join("admin-token");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "the server exited with {status}; see {}",
                    self.log_path().display()
                );
            }
            if let Ok(token) = std::fs::read_to_string(&token_file)
                && !token.trim().is_empty()
                && let Ok(mut client) = Http1::connect(self.port).await
                && client.get("/healthz").await.is_ok_and(|s| s.is_success())
            {
                self.admin_token = token.trim().to_string();
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the server did not come up within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn log_path(&self) -> PathBuf {
        self._dir.0.join("server.log")
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The same database the server uses, opened in this process for bulk
    /// loading through the public store API.
    pub async fn open_store(&self) -> anyhow::Result<SqlStore> {
        match &self.database_url {
            None => SqlStore::open_sqlite(&self.data_dir.join("corral.db")).await,
            Some(url) => SqlStore::open_postgres(url).await,
        }
    }

    /// Resident memory now (`VmRSS`), in bytes.
    pub fn rss_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))?;
        parse_vm_rss(&status).context("no VmRSS in /proc/PID/status")
    }

    /// CPU time used so far (user + system), from `/proc/PID/stat`.
    pub fn cpu_time(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid))?;
        let ticks = parse_cpu_ticks(&stat).context("malformed /proc/PID/stat")?;
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        Ok(Duration::from_secs_f64(ticks as f64 / per_second as f64))
    }

    /// Stops the server (SIGKILL; nothing it holds is kept).
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// `VmRSS:   123 kB` → bytes.
pub fn parse_vm_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`, in clock ticks. The
/// command name (field 2) may hold spaces, so fields count from its `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ")": field 3 (state) is index 0, so field N is index N - 3.
    let utime: u64 = fields.get(14 - 3)?.parse().ok()?;
    let stime: u64 = fields.get(15 - 3)?.parse().ok()?;
    Some(utime + stime)
}

/// A temporary directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> anyhow::Result<TempDir> {
        let path = std::env::temp_dir().join(format!("corral-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&path)?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Raises this process's open-files limit to its hard limit (children, the
/// server among them, inherit it); returns the limit now in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        limit.rlim_cur = limit.rlim_max;
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_are_read() {
        let status = "Name:\tcorral\nVmPeak:\t  9000 kB\nVmRSS:\t  4096 kB\n";
        assert_eq!(parse_vm_rss(status), Some(4096 * 1024));
        let stat = "42 (corral serve) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
    }
}
