//! The API client commands (`corral login`, `corral runners list`, …): they
//! talk to a running server through the same Connect API the SDKs use, with
//! the generated clients of `corral-api`, and never open the database.
//!
//! Every command ends through [`run`], which prints one line on failure and
//! exits with a code scripts can rely on ([`Failure`]).

use std::future::Future;
use std::io::IsTerminal as _;
use std::time::Duration;

use clap::{Args, Subcommand};
use connectrpc::client::{ClientConfig, HttpClient};
use connectrpc::{ConnectError, ErrorCode};
use corral_api::gitpod::v1 as api;
use serde_json::Value;

pub mod audit;
pub mod completion;
pub mod config;
pub mod groups;
pub mod output;
pub mod runner_config;
pub mod runners;
pub mod scm;
pub mod users;

use output::Format;

/// The exit codes of the client commands (also in `corral --help`).
pub const EXIT_CODES_HELP: &str = "\
Exit codes of the client commands (login, whoami, runners, groups, …):
  0  success
  1  any other error (including an error answer from the server)
  2  usage error: unknown command or flag, malformed value
  3  not found: the id names nothing the caller can see
  4  not logged in, token expired or revoked, or permission denied
  5  server unreachable";

/// Deadline of every unary call.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed command: the line to print and the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: i32,
    pub message: String,
}

impl Failure {
    pub fn other(message: impl Into<String>) -> Self {
        Self {
            code: 1,
            message: message.into(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self {
            code: 2,
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self {
            code: 4,
            message: message.into(),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Self::other(format!("{e:#}"))
    }
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::other(e.to_string())
    }
}

pub type Outcome<T = ()> = Result<T, Failure>;

/// Options every client command takes (after the command or before it).
#[derive(Args, Clone, Debug)]
pub struct ClientOpts {
    /// How to print results: a table for people, or the Connect JSON of the
    /// response messages (json, or the same as yaml) for scripts.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
}

#[derive(Subcommand)]
pub enum ClientCommand {
    /// Log in to a corral server: the token is checked, then kept in
    /// $XDG_CONFIG_HOME/corral/config.toml (mode 0600).
    #[command(
        after_help = "Examples:\n  corral login --url http://127.0.0.1:8080\n  \
        corral admin user add --email me@example.com | tail -n1 | corral login --url http://127.0.0.1:8080 --token-stdin"
    )]
    Login(config::LoginArgs),
    /// Forget the saved server and token.
    #[command(after_help = "Example:\n  corral logout")]
    Logout,
    /// Show who the saved (or CORRAL_TOKEN) token belongs to.
    #[command(after_help = "Example:\n  corral whoami --output json")]
    Whoami {
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Runners: list, get, create, update, delete, tokens, logs, events (`corral runner` is the agent itself).
    Runners {
        #[command(subcommand)]
        command: runners::RunnerCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Runner policies: which groups may use a runner, and how.
    Policies {
        #[command(subcommand)]
        command: runners::PolicyCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Environment classes of a runner.
    EnvClasses {
        #[command(subcommand)]
        command: runner_config::EnvClassCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// SCM integrations of a runner (OAuth apps, PAT support per host).
    ScmIntegrations {
        #[command(subcommand)]
        command: runner_config::ScmIntegrationCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Host authentication tokens (a user's credentials for an SCM host).
    HostTokens {
        #[command(subcommand)]
        command: runner_config::HostTokenCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Ask a runner about source control: parse a context URL, search, check access.
    Scm {
        #[command(subcommand)]
        command: scm::ScmCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Groups and their members.
    Groups {
        #[command(subcommand)]
        command: groups::GroupCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Users: yourself, or another user of your organization.
    Users {
        #[command(subcommand)]
        command: users::UserCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Your personal access tokens.
    Pats {
        #[command(subcommand)]
        command: users::PatCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Members of your organization and their roles.
    Members {
        #[command(subcommand)]
        command: users::MemberCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// The audit trail of your organization (organization admins).
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
        #[command(flatten)]
        opts: ClientOpts,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  corral completion bash > /etc/bash_completion.d/corral\n  \
        corral completion zsh > \"${fpath[1]}/_corral\"\n  corral completion fish > ~/.config/fish/completions/corral.fish"
    )]
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

/// Runs a client command and exits: 0 on success, else one line on stderr
/// and the code of [`EXIT_CODES_HELP`].
pub async fn run(command: ClientCommand, root: clap::Command) -> ! {
    // Like other command-line tools, end quietly when the reader of the
    // output goes away (`corral runners list | head -1`) instead of failing
    // on the write (Rust ignores SIGPIPE by default).
    // SAFETY: setting a signal's disposition to the default has no
    // preconditions; no handler runs.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let outcome = match command {
        ClientCommand::Login(args) => config::login(args).await,
        ClientCommand::Logout => config::logout(),
        ClientCommand::Whoami { opts } => users::whoami(&opts).await,
        ClientCommand::Runners { command, opts } => runners::run(command, &opts).await,
        ClientCommand::Policies { command, opts } => runners::run_policy(command, &opts).await,
        ClientCommand::EnvClasses { command, opts } => {
            runner_config::run_env_class(command, &opts).await
        }
        ClientCommand::ScmIntegrations { command, opts } => {
            runner_config::run_scm_integration(command, &opts).await
        }
        ClientCommand::HostTokens { command, opts } => {
            runner_config::run_host_token(command, &opts).await
        }
        ClientCommand::Scm { command, opts } => scm::run(command, &opts).await,
        ClientCommand::Groups { command, opts } => groups::run(command, &opts).await,
        ClientCommand::Users { command, opts } => users::run_user(command, &opts).await,
        ClientCommand::Pats { command, opts } => users::run_pat(command, &opts).await,
        ClientCommand::Members { command, opts } => users::run_member(command, &opts).await,
        ClientCommand::Audit { command, opts } => audit::run(command, &opts).await,
        ClientCommand::Completion { shell } => completion::print(shell, root),
    };
    match outcome {
        Ok(()) => std::process::exit(0),
        Err(failure) => {
            eprintln!("corral: {}", failure.message);
            std::process::exit(failure.code)
        }
    }
}

/// Names a PEM file of CA certificates the client trusts besides the public roots.
pub const CA_CERT_ENV: &str = "CORRAL_CA_CERT";

/// The server a command talks to and the token it presents.
pub struct Api {
    url: String,
    http: HttpClient,
    config: ClientConfig,
}

impl Api {
    /// Clients for `url` presenting `token`.
    pub fn new(url: &str, token: &str) -> Outcome<Self> {
        let uri = config::server_uri(url)?;
        // https:// trusts the public roots, and the PEM certificates in
        // CORRAL_CA_CERT (a private CA, or a server's self-signed certificate).
        let ca_cert = std::env::var_os(CA_CERT_ENV).map(std::path::PathBuf::from);
        let transport = corral_runner::connection::Transport::new(ca_cert.as_deref())
            .map_err(|e| Failure::usage(format!("{CA_CERT_ENV}: {e}")))?;
        let http = transport.client_for(&uri);
        let config =
            ClientConfig::new(uri).with_default_header("authorization", format!("Bearer {token}"));
        Ok(Self {
            url: url.to_string(),
            http,
            config,
        })
    }

    /// Clients for the server and token of the environment or the config file.
    pub fn from_saved() -> Outcome<Self> {
        let login = config::current_login()?;
        Self::new(&login.url, &login.token)
    }

    /// The caller's organization.
    pub async fn organization_id(&self) -> Outcome<String> {
        Ok(self
            .identity()
            .get_authenticated_identity(api::GetAuthenticatedIdentityRequest::default())
            .await
            .map_err(|e| self.failure("who am I", &e))?
            .into_owned()
            .organization_id)
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn unary_config(&self) -> ClientConfig {
        self.config.clone().with_default_timeout(CALL_TIMEOUT)
    }

    pub fn runners(&self) -> api::RunnerServiceClient<HttpClient> {
        api::RunnerServiceClient::new(self.http.clone(), self.unary_config())
    }

    pub fn runner_config(&self) -> api::RunnerConfigurationServiceClient<HttpClient> {
        api::RunnerConfigurationServiceClient::new(self.http.clone(), self.unary_config())
    }

    pub fn identity(&self) -> api::IdentityServiceClient<HttpClient> {
        api::IdentityServiceClient::new(self.http.clone(), self.unary_config())
    }

    pub fn users(&self) -> api::UserServiceClient<HttpClient> {
        api::UserServiceClient::new(self.http.clone(), self.unary_config())
    }

    pub fn groups(&self) -> api::GroupServiceClient<HttpClient> {
        api::GroupServiceClient::new(self.http.clone(), self.unary_config())
    }

    pub fn organizations(&self) -> api::OrganizationServiceClient<HttpClient> {
        api::OrganizationServiceClient::new(self.http.clone(), self.unary_config())
    }

    pub fn events(&self) -> api::EventServiceClient<HttpClient> {
        api::EventServiceClient::new(self.http.clone(), self.unary_config())
    }

    /// For the long-lived `WatchEvents` stream: no deadline.
    pub fn event_stream(&self) -> api::EventServiceClient<HttpClient> {
        api::EventServiceClient::new(self.http.clone(), self.config.clone())
    }

    /// What a failed call means for the user, and the exit code.
    pub fn failure(&self, what: &str, e: &ConnectError) -> Failure {
        let detail = e.message.as_deref().unwrap_or("");
        match e.code {
            ErrorCode::NotFound => Failure {
                code: 3,
                message: format!("{what}: not found ({detail})"),
            },
            ErrorCode::Unauthenticated => Failure::unauthenticated(format!(
                "{what}: token expired or revoked ({detail}): run `corral login --url {}` again",
                self.url
            )),
            ErrorCode::PermissionDenied => Failure::unauthenticated(format!(
                "{what}: permission denied ({detail}): ask an organization admin"
            )),
            ErrorCode::Unavailable if from_transport(e) => Failure {
                code: 5,
                message: format!(
                    "server at {} unreachable: is `corral serve` running? ({detail})",
                    self.url
                ),
            },
            ErrorCode::InvalidArgument => Failure::other(format!("{what}: invalid: {detail}")),
            code => Failure::other(format!("{what}: {} ({detail})", code.as_str())),
        }
    }
}

/// Whether an error came from the transport (no connection, no answer)
/// rather than from a server that answered: the client's transport errors
/// carry their cause as the error's source, decoded answers never do.
fn from_transport(e: &ConnectError) -> bool {
    std::error::Error::source(e).is_some()
}

/// Parses an id argument: a malformed id is a usage error (exit code 2)
/// before anything is sent.
pub fn parse_id(id: &str) -> Result<String, String> {
    uuid::Uuid::parse_str(id)
        .map(|u| u.to_string())
        .map_err(|_| "not an id (a UUID such as 7c9e6679-7425-40de-944b-e07fc1f90ae7)".to_string())
}

/// Collects list pages until the last (or until `limit` items), each fetched
/// by `fetch(page request)` returning its items (as JSON) and next page token.
pub async fn all_pages<F, Fut>(limit: Option<usize>, mut fetch: F) -> Outcome<Vec<Value>>
where
    F: FnMut(api::PaginationRequest) -> Fut,
    Fut: Future<Output = Outcome<(Vec<Value>, String)>>,
{
    const MAX_PAGE: usize = 100;
    let mut items = Vec::new();
    let mut token = String::new();
    loop {
        let wanted = limit.map_or(MAX_PAGE, |l| (l - items.len()).min(MAX_PAGE));
        if wanted == 0 {
            break;
        }
        let (page, next) = fetch(api::PaginationRequest {
            page_size: wanted as i32,
            token: token.clone(),
            ..Default::default()
        })
        .await?;
        let got = page.len();
        items.extend(page);
        if let Some(limit) = limit {
            items.truncate(limit);
        }
        // An empty page with a token would loop forever on a broken server.
        if next.is_empty() || got == 0 {
            break;
        }
        token = next;
    }
    Ok(items)
}

/// The token of the page after this one ("" after the last).
pub fn next_token(pagination: Option<&api::PaginationResponse>) -> String {
    pagination.map(|p| p.next_token.clone()).unwrap_or_default()
}

/// The proto JSON of a message.
pub fn json<M: serde::Serialize>(message: &M) -> Outcome<Value> {
    serde_json::to_value(message).map_err(|e| Failure::other(format!("encoding the answer: {e}")))
}

/// The proto JSON of each message of a page.
pub fn json_items<M: serde::Serialize>(messages: &[M]) -> Outcome<Vec<Value>> {
    messages.iter().map(json).collect()
}

/// Asks "QUESTION [y/N]" on the terminal; without a terminal (or with `yes`)
/// it needs `--yes`.
pub fn confirm(question: &str, yes: bool) -> Outcome<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Failure::usage(format!(
            "{question}: not asking without a terminal; pass --yes to confirm"
        )));
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        Ok(())
    } else {
        Err(Failure::other("cancelled"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api() -> Api {
        Api::new("http://127.0.0.1:9", "crl_pat_test").unwrap()
    }

    #[test]
    fn error_codes_become_exit_codes() {
        let api = api();
        let code = |e: ConnectError| api.failure("doing it", &e).code;
        assert_eq!(code(ConnectError::not_found("no such runner")), 3);
        assert_eq!(code(ConnectError::unauthenticated("expired")), 4);
        assert_eq!(code(ConnectError::permission_denied("not yours")), 4);
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert_eq!(
            code(ConnectError::unavailable_from_transport("connect", refused)),
            5
        );
        // A server that answered "unavailable" was reached.
        assert_eq!(code(ConnectError::unavailable("busy")), 1);
        assert_eq!(code(ConnectError::invalid_argument("bad name")), 1);
    }

    #[test]
    fn messages_say_what_to_do_next() {
        let api = api();
        let expired = api.failure("listing runners", &ConnectError::unauthenticated("expired"));
        assert!(
            expired
                .message
                .contains("run `corral login --url http://127.0.0.1:9` again"),
            "{}",
            expired.message
        );
    }

    /// Pages of `sizes` items (numbered from 0), as a server would serve them.
    async fn paged(sizes: &[usize], limit: Option<usize>) -> (Vec<Value>, Vec<i32>) {
        let asked = std::sync::Mutex::new(Vec::new());
        let items = all_pages(limit, |page| {
            asked.lock().unwrap().push(page.page_size);
            let index: usize = page.token.parse().unwrap_or(0);
            let start: usize = sizes[..index].iter().sum();
            let items: Vec<Value> = (start..start + sizes[index])
                .map(|n| Value::from(n as u64))
                .collect();
            let next = if index + 1 < sizes.len() {
                (index + 1).to_string()
            } else {
                String::new()
            };
            async move { Ok((items, next)) }
        })
        .await
        .unwrap();
        (items, asked.into_inner().unwrap())
    }

    #[tokio::test]
    async fn lists_follow_page_tokens_up_to_the_limit() {
        let (items, asked) = paged(&[100, 100, 30], None).await;
        assert_eq!(items.len(), 230);
        assert_eq!(items[229], Value::from(229u64));
        assert_eq!(asked, [100, 100, 100]);

        let (items, asked) = paged(&[100, 100, 30], Some(150)).await;
        assert_eq!(items.len(), 150);
        assert_eq!(asked, [100, 50]);

        let (items, _) = paged(&[0, 5], None).await;
        assert!(items.is_empty(), "an empty page ends the list");
    }
}
