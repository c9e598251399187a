//! What the in-process end-to-end tests share: a server on a free local
//! port over the real HTTP stack, driven with Connect's JSON encoding.

#![allow(dead_code)]

use std::net::SocketAddr;

use corral_server::bootstrap::{self, NewUser};
use corral_server::domain::OrgRole;
use corral_server::state::SharedState;
use corral_server::{ServeConfig, app, build_state};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A running server with its bootstrapped organization.
pub struct Server {
    _dir: tempfile::TempDir,
    pub addr: SocketAddr,
    pub state: SharedState,
    pub admin: Client,
    pub org_id: String,
}

impl Server {
    /// A server on SQLite in a temporary data dir.
    pub async fn start() -> Server {
        Self::start_on(None).await
    }

    /// A server on the database at `database_url` (SQLite in a temporary
    /// data dir when `None`).
    pub async fn start_on(database_url: Option<&str>) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let mut config = ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().to_path_buf());
        config.database_url = database_url.map(str::to_string);
        let state = build_state(&config).await.unwrap();
        let admin = bootstrap::bootstrap_if_empty(state.unrestricted_store().as_ref(), dir.path())
            .await
            .unwrap()
            .expect("an empty store is bootstrapped");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = app(state.clone());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Server {
            _dir: dir,
            addr,
            state,
            org_id: admin.user.org_id.to_string(),
            admin: Client {
                addr,
                token: admin.token,
            },
        }
    }

    pub fn client(&self, token: &str) -> Client {
        Client {
            addr: self.addr,
            token: token.to_string(),
        }
    }

    /// The admin's new LINUX_HOST runner named `name`: the CreateRunner
    /// answer (the runner, its exchange token).
    pub async fn create_runner(&self, name: &str) -> Value {
        self.admin
            .ok(
                "RunnerService/CreateRunner",
                json!({"name": name, "provider": "RUNNER_PROVIDER_LINUX_HOST"}),
            )
            .await
    }

    /// A new member (or admin) of the bootstrapped organization.
    pub async fn user(&self, email: &str, role: OrgRole) -> (String, Client) {
        let org_id = self.org_id.parse().unwrap();
        let NewUser { user, token } = bootstrap::create_user(
            self.state.unrestricted_store().as_ref(),
            org_id,
            email,
            role,
        )
        .await
        .unwrap();
        (user.id.to_string(), self.client(&token))
    }

    /// A second organization and its admin.
    pub async fn other_org(&self) -> (String, String, Client) {
        let (org, admin) = bootstrap::create_organization(
            self.state.unrestricted_store().as_ref(),
            "Other",
            "boss@other.example",
        )
        .await
        .unwrap();
        (
            org.id.to_string(),
            admin.user.id.to_string(),
            self.client(&admin.token),
        )
    }
}

/// A Connect error: its code (`not_found`, …) and message.
#[derive(Debug)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

pub struct Client {
    pub addr: SocketAddr,
    pub token: String,
}

impl Client {
    /// Calls `Service/Method` of `gitpod.v1` with a JSON body.
    pub async fn call(&self, method: &str, body: Value) -> Result<Value, Failure> {
        self.call_procedure(&format!("gitpod.v1.{method}"), body)
            .await
    }

    /// Calls `package.Service/Method` with a JSON body; without a token when
    /// the client's token is empty.
    pub async fn call_procedure(&self, procedure: &str, body: Value) -> Result<Value, Failure> {
        let body = body.to_string();
        let authorization = if self.token.is_empty() {
            String::new()
        } else {
            format!("Authorization: Bearer {}\r\n", self.token)
        };
        let request = format!(
            "POST /{procedure} HTTP/1.1\r\nHost: {}\r\n{authorization}\
             Content-Type: application/json\r\nConnect-Protocol-Version: 1\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        let mut stream = TcpStream::connect(self.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.unwrap();
        let text = String::from_utf8(raw).unwrap();
        let (head, mut payload) = text.split_once("\r\n\r\n").expect("an HTTP response");
        let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
        let decoded;
        if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            decoded = dechunk(payload);
            payload = &decoded;
        }
        let value: Value = if payload.is_empty() {
            json!({})
        } else {
            serde_json::from_str(payload).unwrap()
        };
        if status == 200 {
            Ok(value)
        } else {
            Err(Failure {
                code: value["code"].as_str().unwrap_or_default().to_string(),
                message: value["message"].as_str().unwrap_or_default().to_string(),
            })
        }
    }

    pub async fn ok(&self, method: &str, body: Value) -> Value {
        match self.call(method, body).await {
            Ok(value) => value,
            Err(failure) => panic!("{method} failed: {failure:?}"),
        }
    }

    /// Asserts that the call fails with `code`; returns the message.
    pub async fn fails(&self, code: &str, method: &str, body: Value) -> String {
        match self.call(method, body).await {
            Ok(value) => panic!("{method} succeeded, expected {code}: {value}"),
            Err(failure) => {
                assert_eq!(failure.code, code, "{method}: {}", failure.message);
                failure.message
            }
        }
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        s = &rest[size + 2..];
    }
    out
}
