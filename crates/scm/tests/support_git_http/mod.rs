//! A real git smart-HTTP server for tests: the installed `git http-backend`
//! run as a CGI program behind HTTP Basic authentication, over bare
//! repositories in a temporary directory.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use tokio::io::AsyncWriteExt;

/// A directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path =
            std::env::temp_dir().join(format!("corral-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `git` with no system or global configuration.
pub fn git() -> std::process::Command {
    let mut cmd = std::process::Command::new("git");
    cmd.env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "Corral Test")
        .env("GIT_AUTHOR_EMAIL", "test@corral.invalid")
        .env("GIT_COMMITTER_NAME", "Corral Test")
        .env("GIT_COMMITTER_EMAIL", "test@corral.invalid");
    cmd
}

/// Runs `cmd` (with `input` on its stdin), asserts it succeeded, returns its
/// trimmed output.
pub fn run(cmd: &mut std::process::Command, input: Option<&str>) -> String {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = input {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A bare repository at `root/path` with one commit on `main`; returns the commit id.
pub fn bare_repo_with_commit(root: &Path, path: &str) -> String {
    let dir = root.join(path);
    run(
        git()
            .args(["init", "--quiet", "--bare", "--initial-branch=main"])
            .arg(&dir),
        None,
    );
    let git_dir = |c: &mut std::process::Command| {
        c.arg("--git-dir").arg(&dir);
    };
    let mut cmd = git();
    git_dir(&mut cmd);
    let blob = run(
        cmd.args(["hash-object", "-w", "--stdin"]),
        Some("hello from corral\n"),
    );
    let mut cmd = git();
    git_dir(&mut cmd);
    let tree = run(
        cmd.arg("mktree"),
        Some(&format!("100644 blob {blob}\tREADME.md\n")),
    );
    let mut cmd = git();
    git_dir(&mut cmd);
    let commit = run(cmd.args(["commit-tree", &tree, "-m", "First commit"]), None);
    let mut cmd = git();
    git_dir(&mut cmd);
    run(cmd.args(["update-ref", "refs/heads/main", &commit]), None);
    commit
}

struct Bridge {
    backend: PathBuf,
    root: PathBuf,
    /// user → password
    users: HashMap<String, String>,
    /// (user, first path segment) pairs that get 403.
    denied: Vec<(String, String)>,
}

pub struct GitServer {
    pub port: u16,
    pub root: TempDir,
}

impl GitServer {
    pub fn url(&self, path: &str) -> String {
        format!(
            "http://127.0.0.1:{}/{}",
            self.port,
            path.trim_start_matches('/')
        )
    }
}

/// Serves the bare repositories below `root` to `users` (name, password);
/// `denied` users get 403 for repositories below the named top-level directory.
pub async fn start(root: TempDir, users: &[(&str, &str)], denied: &[(&str, &str)]) -> GitServer {
    start_with(root, users, denied, Router::new()).await
}

/// Like [`start`], with `api` answering the paths it routes (an SCM's REST
/// API on the same host as its repositories) and git the rest.
pub async fn start_with(
    root: TempDir,
    users: &[(&str, &str)],
    denied: &[(&str, &str)],
    api: Router,
) -> GitServer {
    let exec_path = run(git().arg("--exec-path"), None);
    let backend = Path::new(&exec_path).join("git-http-backend");
    assert!(
        backend.exists(),
        "git-http-backend not found at {backend:?}"
    );
    let bridge = Arc::new(Bridge {
        backend,
        root: root.0.clone(),
        users: users
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect(),
        denied: denied
            .iter()
            .map(|(u, d)| (u.to_string(), d.to_string()))
            .collect(),
    });
    let app = api.merge(Router::new().fallback(cgi).with_state(bridge));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    GitServer { port, root }
}

fn basic_user(request: &Request) -> Option<(String, String)> {
    let value = request.headers().get("authorization")?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ")?)
        .ok()?;
    let (user, pass) = String::from_utf8(decoded)
        .ok()?
        .split_once(':')
        .map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some((user, pass))
}

async fn cgi(State(bridge): State<Arc<Bridge>>, request: Request) -> Response {
    let challenge = || {
        (
            StatusCode::UNAUTHORIZED,
            [("www-authenticate", "Basic realm=\"git\"")],
            "authentication required\n",
        )
            .into_response()
    };
    let Some((user, pass)) = basic_user(&request) else {
        return challenge();
    };
    if bridge.users.get(&user) != Some(&pass) {
        return challenge();
    }
    let path = request.uri().path().to_string();
    let top = path
        .trim_start_matches('/')
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    if bridge.denied.iter().any(|(u, d)| *u == user && *d == top) {
        return (StatusCode::FORBIDDEN, "access denied\n").into_response();
    }

    let (method, query) = (
        request.method().to_string(),
        request.uri().query().unwrap_or_default().to_string(),
    );
    let [content_type, git_protocol, encoding] =
        ["content-type", "git-protocol", "content-encoding"].map(|name| {
            request
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        });
    let body = to_bytes(request.into_body(), 64 << 20).await.unwrap();

    let mut child = tokio::process::Command::new(&bridge.backend)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_PROJECT_ROOT", &bridge.root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .env("REQUEST_METHOD", method)
        .env("PATH_INFO", &path)
        .env("QUERY_STRING", query)
        .env("CONTENT_TYPE", content_type)
        .env("CONTENT_LENGTH", body.len().to_string())
        .env("REMOTE_USER", &user)
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GIT_PROTOCOL", git_protocol)
        .env("HTTP_CONTENT_ENCODING", encoding)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&body).await.unwrap();
    drop(stdin);
    let out = child.wait_with_output().await.unwrap();
    cgi_response(&out.stdout)
}

/// A CGI program's output (headers, a blank line, the body) as an HTTP response.
fn cgi_response(out: &[u8]) -> Response {
    let (head_end, body_start) = match out.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => (i, i + 4),
        None => match out.windows(2).position(|w| w == b"\n\n") {
            Some(i) => (i, i + 2),
            None => {
                return (StatusCode::BAD_GATEWAY, "the CGI program sent no headers")
                    .into_response();
            }
        },
    };
    let head = String::from_utf8_lossy(&out[..head_end]).to_string();
    let mut response = Response::new(Body::from(out[body_start..].to_vec()));
    for line in head.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("status") {
            let code = value
                .split_whitespace()
                .next()
                .and_then(|c| c.parse().ok())
                .unwrap_or(500);
            *response.status_mut() =
                StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        } else if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}
