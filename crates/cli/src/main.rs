//! `corral`: one binary for the management plane and its administration.

mod config;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, CommandFactory as _, Parser, Subcommand};

mod admin;
mod client;
mod runner_cmd;

use admin::AdminCommand;
use runner_cmd::RunnerArgs;

/// The version and the commit built from (`unknown` outside a git checkout).
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CORRAL_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "corral",
    version = VERSION,
    about = "Self-hostable management plane for development-environment runners",
    after_long_help = client::EXIT_CODES_HELP
)]
struct Cli {
    /// How `serve` and `runner` write log lines to stderr: `text`, or `json` (one
    /// object per line, for log collectors). CORRAL_LOG sets the levels either way.
    #[arg(
        long,
        global = true,
        env = "CORRAL_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (Connect, gRPC and gRPC-Web on one port).
    Serve(ServeArgs),
    /// Run a runner agent on this host: dial out to a management plane.
    Runner(RunnerArgs),
    /// Administer an installation directly through its store (works while the server runs).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Tools for developers of corral.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

/// Where the data lives; shared by `serve` and `admin`.
#[derive(Args, Clone)]
pub struct StoreArgs {
    /// Directory for the embedded database and the server's keys.
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "./corral-data")]
    pub data_dir: PathBuf,
    /// Database URL (e.g. sqlite:/path/corral.db); defaults to SQLite in the data dir.
    #[arg(long, env = "CORRAL_DATABASE_URL")]
    pub database_url: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// A TOML file of settings: the flags below by their long names
    /// (`runner-grace = "2m"`). Flags and environment variables override it.
    #[arg(long, env = "CORRAL_CONFIG")]
    config: Option<PathBuf>,
    /// Print the effective configuration (flags, environment, file, defaults) as
    /// a configuration file, secrets redacted, and exit.
    #[arg(long)]
    print_config: bool,
    /// Address to listen on.
    #[arg(long, env = "CORRAL_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// A runner silent for this long becomes INACTIVE (e.g. 90s, 2m).
    #[arg(long, env = "CORRAL_RUNNER_GRACE", default_value = "90s", value_parser = humantime::parse_duration)]
    runner_grace: std::time::Duration,
    /// URL where browsers reach this server (OAuth callbacks); default http://<listen>.
    #[arg(long, env = "CORRAL_PUBLIC_URL")]
    public_url: Option<String>,
    /// This replica's name in the gateway_info of the runners connected to it;
    /// default: the host name.
    #[arg(long, env = "CORRAL_REPLICA_NAME", value_parser = bounded::<128>)]
    replica_name: Option<String>,
    /// This replica's region in the gateway_info of the runners connected to it.
    #[arg(long, env = "CORRAL_REPLICA_REGION", default_value = "", value_parser = bounded::<64>)]
    replica_region: String,
    /// How long audit events are kept (e.g. 90d, 4w); older ones are deleted.
    #[arg(long, env = "CORRAL_AUDIT_RETENTION", default_value = "90d", value_parser = humantime::parse_duration)]
    audit_retention: std::time::Duration,
    /// A connection's first request head (on HTTP/1.1, every request head, counted
    /// from when the connection waits for it) must arrive in full within this time.
    #[arg(long, env = "CORRAL_HEADER_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    header_timeout: std::time::Duration,
    /// A connection with no request in flight is closed after this long.
    #[arg(long, env = "CORRAL_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: std::time::Duration,
    /// Open connections at most; further ones wait in the listen backlog until one
    /// closes. Default: the open-files limit (RLIMIT_NOFILE) less 64, at most 25000.
    #[arg(long, env = "CORRAL_MAX_CONNECTIONS", value_parser = clap::value_parser!(u32).range(1..))]
    max_connections: Option<u32>,
    /// A request body must arrive in full within this time of its request head.
    #[arg(long, env = "CORRAL_BODY_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    body_timeout: std::time::Duration,
    /// How long a resolved bearer token (user, role, groups) is reused. Changes made
    /// through the API take effect at once on every replica; changes made with
    /// `corral admin` directly on the store within this time. 0s: resolve every call.
    #[arg(long, env = "CORRAL_CALLER_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    caller_ttl: std::time::Duration,
    /// How the SQLite store commits: `full` (each commit on disk before it returns;
    /// survives power loss) or `normal` (on disk at checkpoints: a process crash loses
    /// nothing, a power loss may lose the last commits; writes are many times faster).
    #[arg(long, env = "CORRAL_SQLITE_SYNCHRONOUS", default_value = "full")]
    sqlite_synchronous: corral_server::Synchronous,
    /// Serve HTTPS (HTTP/2 and HTTP/1.1) with this PEM certificate chain; needs
    /// --tls-key. Both files are read again on SIGHUP.
    #[arg(long, env = "CORRAL_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "CORRAL_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    #[command(flatten)]
    store: StoreArgs,
}

/// A flag's text of at most `MAX` bytes.
fn bounded<const MAX: usize>(value: &str) -> Result<String, String> {
    if value.len() > MAX {
        return Err(format!("at most {MAX} bytes, not {}", value.len()));
    }
    Ok(value.to_string())
}

#[derive(Subcommand)]
enum DebugCommand {
    /// Write the compiled FileDescriptorSet of corral's .proto files.
    DescriptorSet { out: PathBuf },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli: Cli = config::parse();
    if let Command::Runner(args) = cli.command {
        runner_cmd::runner(args, cli.log_format).await
    }
    // The client commands print their own one-line errors and exit codes.
    if let Command::Client(command) = cli.command {
        client::run(command, Cli::command()).await
    }
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        // Colours only for people; log files and collectors get plain text.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    match cli.command {
        Command::Runner(_) | Command::Client(_) => unreachable!("handled above"),
        Command::Serve(args) => {
            let defaults = corral_server::ServeConfig::new(args.listen, args.store.data_dir);
            corral_server::serve(corral_server::ServeConfig {
                database_url: args.store.database_url,
                data_key: std::env::var("CORRAL_DATA_KEY").ok(),
                runner_grace: args.runner_grace,
                public_url: args.public_url,
                replica_name: args.replica_name,
                replica_region: args.replica_region,
                audit_retention: args.audit_retention,
                header_timeout: args.header_timeout,
                idle_timeout: args.idle_timeout,
                max_connections: args
                    .max_connections
                    .map_or(defaults.max_connections, |n| n as usize),
                body_timeout: args.body_timeout,
                caller_ttl: args.caller_ttl,
                sqlite_synchronous: args.sqlite_synchronous,
                tls: args
                    .tls_cert
                    .zip(args.tls_key)
                    .map(|(cert, key)| corral_server::tls::TlsFiles { cert, key }),
                ..defaults
            })
            .await
        }
        Command::Admin { command } => admin::admin(command).await,
        Command::Debug {
            command: DebugCommand::DescriptorSet { out },
        } => std::fs::write(&out, corral_api::DESCRIPTOR_SET)
            .with_context(|| format!("writing {}", out.display())),
    }
}
