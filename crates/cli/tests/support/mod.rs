//! Helpers shared by the end-to-end tests: child processes of the built
//! binary, a bare server, polling, and plain HTTP. PostgreSQL databases and
//! free ports come from `corral_testkit`.

// Each test file uses some of these.
#![allow(dead_code)]

use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use connectrpc::ConnectError;
use corral_api::gitpod::v1 as api;
use corral_testkit::free_port;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

pub const BIN: &str = env!("CARGO_BIN_EXE_corral");

/// How a test file waits: the overall limit for anything it waits for, and
/// the pause between two checks.
#[derive(Debug, Clone, Copy)]
pub struct Patience {
    pub timeout: Duration,
    pub poll: Duration,
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

/// A child process of the test. Dropping it SIGKILLs and reaps it; if the test
/// is failing, its output (stdout and stderr) is printed.
pub struct Proc {
    pub name: String,
    child: Child,
    output: PathBuf,
    status: Option<ExitStatus>,
}

impl Proc {
    /// Starts `corral ARGS…` with stdout and stderr going to `<dir>/<name>.log`.
    pub fn spawn(dir: &Path, name: &str, args: &[&str]) -> Proc {
        Self::spawn_program(dir, name, Path::new(BIN), args, &[])
    }

    /// Like [`Proc::spawn`], running `program` (e.g. a copy of the binary)
    /// with the environment variables `env` set.
    pub fn spawn_program(
        dir: &Path,
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Proc {
        let output = dir.join(format!("{name}.log"));
        let file = fs::File::create(&output).expect("creating the output file");
        let mut command = Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("cloning the output file"))
            .stderr(file);
        // Flags only: nothing from the environment of whoever runs the tests.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("CORRAL_") {
                command.env_remove(key);
            }
        }
        command.envs(env.iter().copied());
        // A binary a test has just written can be "busy" for a moment: a
        // child another test thread forked meanwhile holds the writer's
        // descriptor until it execs (close-on-exec). Only that is retried.
        let mut busy_tries = 0;
        let child = loop {
            match command.spawn() {
                Ok(child) => break child,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && busy_tries < 100 => {
                    busy_tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("starting {name} ({}): {e}", program.display()),
            }
        };
        Proc {
            name: name.to_string(),
            child,
            output,
            status: None,
        }
    }

    /// The exit status once the process has ended (reaps it).
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    fn signal(&mut self, signal: libc::c_int) {
        assert!(
            self.try_status().is_none(),
            "{} already exited ({:?}); cannot signal it",
            self.name,
            self.status
        );
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on our own child, which has not been reaped yet, so
        // the pid still names it.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {signal}): {}",
            std::io::Error::last_os_error()
        );
    }

    pub fn sigterm(&mut self) {
        self.signal(libc::SIGTERM);
    }

    /// SIGKILL, then reaps the process.
    pub fn sigkill(&mut self) {
        self.signal(libc::SIGKILL);
        self.status = Some(self.child.wait().expect("reaping"));
    }

    /// Waits for the process to exit.
    pub async fn wait_exit(&mut self, patience: Patience) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_status() {
                return status;
            }
            assert!(
                start.elapsed() < patience.timeout,
                "{} did not exit within {:?}",
                self.name,
                patience.timeout
            );
            tokio::time::sleep(patience.poll).await;
        }
    }

    /// SIGTERM, then waits for the process to exit.
    pub async fn stop(&mut self, patience: Patience) -> ExitStatus {
        self.sigterm();
        self.wait_exit(patience).await
    }

    /// What the process wrote so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.output).unwrap_or_default()
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        if std::thread::panicking() {
            eprintln!(
                "===== output of {} (exit: {:?}) =====\n{}===== end of {} =====",
                self.name,
                self.status,
                self.output(),
                self.name
            );
        }
    }
}

// ---------------------------------------------------------------------------
// A bare server
// ---------------------------------------------------------------------------

/// `corral serve` on SQLite with a data dir of its own, on a free port.
pub struct Served {
    pub proc: Proc,
    pub port: u16,
    pub data_dir: PathBuf,
    /// The admin's API token from the data dir.
    pub admin_token: String,
}

impl Served {
    /// Starts `corral serve --listen 127.0.0.1:<free port> --data-dir <dir>/<name>-data EXTRA…`
    /// and waits until it answers its admin's token (so that it is this
    /// server that answers on the port, not another one that took it).
    pub async fn start(dir: &Path, name: &str, extra: &[&str], patience: Patience) -> Served {
        let data_dir = dir.join(format!("{name}-data"));
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_port();
            let listen = format!("127.0.0.1:{port}");
            let mut args = vec![
                "serve",
                "--listen",
                &listen,
                "--data-dir",
                data_dir.to_str().expect("a UTF-8 path"),
            ];
            args.extend_from_slice(extra);
            let mut proc = Proc::spawn(dir, &format!("{name}-{attempt}"), &args);
            let start = Instant::now();
            let ready = loop {
                if let Some(status) = proc.try_status() {
                    break Err(status);
                }
                let token = fs::read_to_string(data_dir.join("admin-token")).unwrap_or_default();
                let token = token.trim();
                if !token.is_empty() {
                    let identity = format!(
                        "http://{listen}/gitpod.v1.IdentityService/GetAuthenticatedIdentity\
                         ?connect=v1&encoding=json&message=%7B%7D"
                    );
                    if let Ok((200, _)) = http_get(&identity, Some(token), patience.timeout).await {
                        break Ok(token.to_string());
                    }
                }
                assert!(
                    start.elapsed() < patience.timeout,
                    "{name} did not come up within {:?}",
                    patience.timeout
                );
                tokio::time::sleep(patience.poll).await;
            };
            match ready {
                Ok(admin_token) => {
                    return Served {
                        proc,
                        port,
                        data_dir,
                        admin_token,
                    };
                }
                // The free port was taken between finding and binding it.
                Err(_) if attempt < 3 && proc.output().contains("binding") => {}
                Err(status) => panic!("{name} exited while starting: {status:?}"),
            }
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

// ---------------------------------------------------------------------------
// Small things
// ---------------------------------------------------------------------------

/// Polls `check` until it returns `Ok`, for at most `patience.timeout`; panics
/// with the last `Err` (what was seen instead). Returns the value and how long
/// it took.
pub async fn eventually<T, F, Fut>(patience: Patience, what: &str, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    let mut last = String::from("nothing checked yet");
    while start.elapsed() < patience.timeout {
        match check().await {
            Ok(value) => return (value, start.elapsed()),
            Err(seen) => last = seen,
        }
        tokio::time::sleep(patience.poll).await;
    }
    panic!(
        "timed out after {:?} waiting until {what}; last seen: {last}",
        patience.timeout
    );
}

pub fn describe(e: &ConnectError) -> String {
    format!(
        "{}: {}",
        e.code.as_str(),
        e.message.as_deref().unwrap_or("")
    )
}

pub fn phase(runner: &api::Runner) -> Option<api::RunnerPhase> {
    runner.status.as_option().and_then(|s| s.phase.as_known())
}

/// A plain HTTP/1.0 GET (no chunked encoding to undo), given `timeout`;
/// returns status and body.
pub async fn http_get(
    url: &str,
    bearer: Option<&str>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), String> {
    let uri: http::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri.authority().ok_or("no authority")?.as_str().to_string();
    let path = uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&authority).await?;
        let mut request = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\n");
        if let Some(token) = bearer {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).await?;
        Ok::<_, std::io::Error>(response)
    };
    let response = tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("GET {url} timed out"))?
        .map_err(|e| format!("GET {url}: {e}"))?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET {url}: no end of headers"))?;
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("GET {url}: bad status line in {head:?}"))?;
    Ok((code, response[split + 4..].to_vec()))
}

/// CreateRunner (LINUX_HOST) named `name` through `runners`; panics when refused.
pub async fn create_linux_host_runner(
    runners: &api::RunnerServiceClient<connectrpc::client::HttpClient>,
    name: &str,
) -> api::CreateRunnerResponse {
    runners
        .create_runner(api::CreateRunnerRequest {
            name: name.into(),
            provider: api::RunnerProvider::RUNNER_PROVIDER_LINUX_HOST.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("CreateRunner {name}: {}", describe(&e)))
        .into_owned()
}
