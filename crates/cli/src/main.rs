//! `corral`: one binary for the management plane and its administration.

mod config;

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use corral_server::domain::{AuditFilter, OrgRole, PageRequest, ReleaseChannel, Subject};
use corral_server::store::transfer;
use corral_server::{bootstrap, open_store, releases};
use uuid::Uuid;

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
    about = "Self-hostable management plane for development-environment runners"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
    /// Tools for developers of corral.
    #[command(hide = true)]
    Debug {
        #[command(subcommand)]
        command: DebugCommand,
    },
}

/// Where the data lives; shared by `serve` and `admin`.
#[derive(Args, Clone)]
struct StoreArgs {
    /// Directory for the embedded database and the server's keys.
    #[arg(long, env = "CORRAL_DATA_DIR", default_value = "./corral-data")]
    data_dir: PathBuf,
    /// Database URL (e.g. sqlite:/path/corral.db); defaults to SQLite in the data dir.
    #[arg(long, env = "CORRAL_DATABASE_URL")]
    database_url: Option<String>,
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

#[derive(Args)]
struct RunnerArgs {
    /// Base URL of the management plane (e.g. http://127.0.0.1:8080); remembered in the data dir.
    /// Repeat it, or separate URLs with commas, to name several replicas: the runner
    /// uses them in order and moves to the next when one fails.
    #[arg(long, env = "CORRAL_SERVER", value_delimiter = ',')]
    server: Vec<String>,
    /// One-time token from CreateRunner or CreateRunnerToken; needed only the first time.
    #[arg(long, env = "CORRAL_EXCHANGE_TOKEN", hide_env_values = true)]
    exchange_token: Option<String>,
    /// Directory for the runner's credentials and key.
    #[arg(
        long,
        env = "CORRAL_RUNNER_DATA_DIR",
        default_value = "./corral-runner-data"
    )]
    data_dir: PathBuf,
    /// Address of the runner's own HTTP server (logs, support bundle); port 0 picks one.
    #[arg(long, env = "CORRAL_RUNNER_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Region to report (without it, the region hint in the runner's spec).
    #[arg(long, env = "CORRAL_REGION", default_value = "")]
    region: String,
    /// SCM requests (and OAuth code exchanges) worked on at once; one arriving while
    /// all are taken is refused at once as busy (resource_exhausted).
    #[arg(
        long,
        env = "CORRAL_RUNNER_MAX_SCM_REQUESTS",
        default_value_t = corral_runner::DEFAULT_MAX_SCM_REQUESTS,
        value_parser = clap::value_parser!(u16).range(1..).map(usize::from)
    )]
    max_scm_requests: usize,
    /// Base URL under which operators reach this runner's HTTP server (e.g. behind a
    /// proxy or NAT: https://runner-7.example.com); the reported log_url and
    /// support_bundle_url are built from it. Without it, the address the server is
    /// bound to (with the host name for 0.0.0.0).
    #[arg(long, env = "CORRAL_ADVERTISE_URL", value_parser = advertise_url)]
    advertise_url: Option<String>,
    /// A key=value the runner reports in its status (additional_info); repeat it for
    /// several (at most 31; keys up to 128 bytes, values up to 1 KiB; `update` is the
    /// runner's own). In the environment, separate entries with commas.
    #[arg(long = "info", env = "CORRAL_RUNNER_INFO", value_delimiter = ',', value_parser = info_entry)]
    info: Vec<(String, String)>,
    /// How often the runner pushes its metrics while its configuration enables them;
    /// clamped to 15s–60s. A changed metrics configuration is pushed at once.
    #[arg(long, env = "CORRAL_METRICS_INTERVAL", default_value = "30s", value_parser = humantime::parse_duration)]
    metrics_interval: std::time::Duration,
    /// How often to look for a new release on the runner's channel (besides at
    /// start and whenever its spec changes), e.g. 1h, 30s.
    #[arg(long, env = "CORRAL_UPDATE_CHECK_INTERVAL", default_value = "1h", value_parser = parse_positive_duration)]
    update_check_interval: std::time::Duration,
    /// PEM file of CA certificates to trust for an https:// server besides the
    /// public roots (a private CA, or the server's self-signed certificate).
    #[arg(long, env = "CORRAL_RUNNER_CA_CERT")]
    ca_cert: Option<PathBuf>,
}

fn advertise_url(url: &str) -> Result<String, String> {
    corral_runner::agent::advertised_base_url(url)
}

fn info_entry(entry: &str) -> Result<(String, String), String> {
    corral_runner::agent::parse_info(entry)
}

fn parse_positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if d.is_zero() => Err("must be longer than zero".into()),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Users of an organization.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Organizations.
    Org {
        #[command(subcommand)]
        command: OrgCommand,
    },
    /// Print the audit trail: who changed what, and how it ended (newest first).
    Audit {
        /// Only this organization's events; every organization's by default.
        #[arg(long)]
        org: Option<Uuid>,
        /// Only events of the last DURATION (e.g. 24h, 7d).
        #[arg(long, value_parser = humantime::parse_duration)]
        since: Option<std::time::Duration>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Runner releases: executables runners with auto-update install (docs/releases.md).
    Release {
        #[command(subcommand)]
        command: ReleaseCommand,
    },
    /// Copy an installation into a new, empty database and verify the copy
    /// (row counts and a checksum per table). Stop every server first. The
    /// copy keeps tokens hashed and secrets encrypted: the new installation
    /// needs the same data key (<data-dir>/data-key or CORRAL_DATA_KEY).
    MigrateStore {
        /// The installation's database: sqlite:PATH, sqlite:///abs/path or postgres://….
        #[arg(long, env = "CORRAL_MIGRATE_FROM", hide_env_values = true)]
        from: String,
        /// The new database (created or migrated; must hold no data): sqlite:PATH or postgres://….
        #[arg(long, env = "CORRAL_MIGRATE_TO", hide_env_values = true)]
        to: String,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user and print their new API token (last line of output).
    Add {
        #[arg(long)]
        email: String,
        /// Make the user an organization admin.
        #[arg(long)]
        admin: bool,
        /// Organization id; defaults to the first organization.
        #[arg(long)]
        org: Option<Uuid>,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Subcommand)]
enum OrgCommand {
    /// Add an organization with its admin and print the admin's API token (last line).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long)]
        admin_email: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Channel {
    Stable,
    Latest,
}

impl From<Channel> for ReleaseChannel {
    fn from(channel: Channel) -> Self {
        match channel {
            Channel::Stable => ReleaseChannel::Stable,
            Channel::Latest => ReleaseChannel::Latest,
        }
    }
}

#[derive(Subcommand)]
enum ReleaseCommand {
    /// Publish a runner executable (an ELF file with exec bits) as VERSION on a
    /// channel: stored with its SHA-256 and signed with the release key.
    Publish {
        #[arg(long, value_enum)]
        channel: Channel,
        /// A semantic version, e.g. 1.4.0 or 1.5.0-rc.1.
        #[arg(long)]
        version: String,
        /// The executable (e.g. a `corral` binary built for the runners' hosts).
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List published releases (every channel unless one is named).
    List {
        #[arg(long, value_enum)]
        channel: Option<Channel>,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Withdraw a release: it is deleted and no longer offered to runners.
    Withdraw {
        #[arg(long, value_enum)]
        channel: Channel,
        #[arg(long)]
        version: String,
        #[command(flatten)]
        store: StoreArgs,
    },
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
        runner(args).await
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CORRAL_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only for people; log files and collectors get plain text.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Runner(_) => unreachable!("handled above"),
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
        Command::Admin { command } => admin(command).await,
        Command::Debug {
            command: DebugCommand::DescriptorSet { out },
        } => std::fs::write(&out, corral_api::DESCRIPTOR_SET)
            .with_context(|| format!("writing {}", out.display())),
    }
}

/// Runs the runner agent; exits 0 when stopped or deleted, else with the
/// error's exit code (3 when it needs new credentials).
async fn runner(args: RunnerArgs) -> ! {
    let logging = match corral_runner::Logging::init() {
        Ok(logging) => logging,
        Err(e) => {
            eprintln!("corral runner: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = corral_runner::agent::check_info(&args.info) {
        eprintln!("corral runner: {e}");
        std::process::exit(2);
    }
    let config = corral_runner::Config {
        server: (!args.server.is_empty()).then(|| args.server.join(",")),
        exchange_token: args.exchange_token,
        data_dir: args.data_dir,
        listen: args.listen,
        region: args.region,
        max_scm_requests: args.max_scm_requests,
        advertise_url: args.advertise_url,
        info: args.info,
        metrics_interval: args.metrics_interval,
        // Read now: once a self-update replaces the file, /proc/self/exe
        // names it "(deleted)".
        executable: std::env::current_exe().ok(),
        update_check_interval: args.update_check_interval,
        ca_cert: args.ca_cert,
    };
    match corral_runner::run(config, logging).await {
        Ok(outcome) => {
            tracing::info!("runner ended: {outcome:?}");
            std::process::exit(0)
        }
        Err(e) => {
            eprintln!("corral runner: {e}");
            std::process::exit(e.exit_code())
        }
    }
}

async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::User {
            command:
                UserCommand::Add {
                    email,
                    admin,
                    org,
                    store,
                },
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let org_id = match org {
                Some(id) => store.get_organization(id).await.context("no such organization")?.id,
                None => {
                    store
                        .first_organization()
                        .await?
                        .context("the store has no organization yet; start `corral serve` once or use `corral admin org add`")?
                        .id
                }
            };
            let role = if admin {
                OrgRole::Admin
            } else {
                OrgRole::Member
            };
            let created = bootstrap::create_user(store.as_ref(), org_id, &email, role).await?;
            println!(
                "user {} ({}) added to organization {org_id}",
                created.user.id, created.user.email
            );
            println!("{}", created.token);
        }
        AdminCommand::Org {
            command:
                OrgCommand::Add {
                    name,
                    admin_email,
                    store,
                },
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let (org, admin) =
                bootstrap::create_organization(store.as_ref(), &name, &admin_email).await?;
            println!(
                "organization {} ({}) added with admin {} ({})",
                org.id, org.name, admin.user.id, admin.user.email
            );
            println!("{}", admin.token);
        }
        AdminCommand::Audit {
            org,
            since,
            limit,
            json,
            store,
        } => {
            let store = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let filter = AuditFilter {
                from: since
                    .map(|d| chrono::Duration::from_std(d).map(|d| chrono::Utc::now() - d))
                    .transpose()
                    .context("--since is too long")?,
                newest_first: true,
                ..Default::default()
            };
            let mut shown = 0;
            let mut page = PageRequest {
                after: None,
                limit: limit.clamp(1, 500),
            };
            if !json {
                println!(
                    "{:<27} {:<8} {:<36} {:<55} {:<36} {:<20} {:<36} CLIENT",
                    "TIME", "ACTOR", "ACTOR ID", "RPC", "SUBJECT", "OUTCOME", "REQUEST"
                );
            }
            'pages: loop {
                let events = store.list_audit_events(org, &filter, page).await?;
                for event in &events.items {
                    if shown == limit {
                        break 'pages;
                    }
                    shown += 1;
                    if json {
                        println!("{}", serde_json::to_string(event)?);
                        continue;
                    }
                    let (kind, id) = match event.actor {
                        Some(Subject::User(id)) => ("user", id.to_string()),
                        Some(Subject::Runner(id)) => ("runner", id.to_string()),
                        None => ("-", String::new()),
                    };
                    println!(
                        "{:<27} {:<8} {:<36} {:<55} {:<36} {:<20} {:<36} {}",
                        event
                            .at
                            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                        kind,
                        id,
                        event.rpc,
                        event.subject_id.map(|s| s.to_string()).unwrap_or_default(),
                        event.outcome,
                        event.request_id,
                        event.client_address
                    );
                }
                match events.next_after {
                    Some(after) => page.after = Some(after),
                    None => break,
                }
            }
        }
        AdminCommand::Release { command } => release(command).await?,
        AdminCommand::MigrateStore { from, to } => {
            let report = transfer::migrate(&from, &to)
                .await
                .context("migrate-store failed; no rows were committed to the target")?;
            println!("{report}");
            println!(
                "API tokens are copied as hashes and secrets stay encrypted with the data key: \
                 start the new installation with the same data key (the data-key file of the \
                 data dir, or CORRAL_DATA_KEY)."
            );
        }
    }
    Ok(())
}

async fn release(command: ReleaseCommand) -> anyhow::Result<()> {
    match command {
        ReleaseCommand::Publish {
            channel,
            version,
            file,
            store,
        } => {
            let signer = release_signer(&store).await?;
            let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let release = releases::publish(db.as_ref(), &signer, channel.into(), &version, &file)
                .await
                .context("the release was not published")?;
            println!(
                "published {} on {} ({} bytes, sha256 {}) as release {}",
                release.version,
                release.channel.name(),
                release.size,
                release.sha256,
                release.id
            );
        }
        ReleaseCommand::List { channel, store } => {
            let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let releases = db.list_releases(channel.map(Into::into)).await?;
            println!(
                "{:<36} {:<7} {:<24} {:>12} {:<64} PUBLISHED",
                "ID", "CHANNEL", "VERSION", "BYTES", "SHA256"
            );
            for r in releases {
                println!(
                    "{:<36} {:<7} {:<24} {:>12} {:<64} {}",
                    r.id,
                    r.channel.name(),
                    r.version,
                    r.size,
                    r.sha256,
                    r.published_at
                        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
                );
            }
        }
        ReleaseCommand::Withdraw {
            channel,
            version,
            store,
        } => {
            let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
            let channel = ReleaseChannel::from(channel);
            let found = db
                .list_releases(Some(channel))
                .await?
                .into_iter()
                .find(|r| r.version == version)
                .with_context(|| {
                    format!("no release {version} is published on {}", channel.name())
                })?;
            let withdrawn = releases::withdraw(db.as_ref(), found.id).await?;
            println!(
                "withdrew {} from {} (release {})",
                withdrawn.version,
                withdrawn.channel.name(),
                withdrawn.id
            );
        }
    }
    Ok(())
}

/// The release key, as the servers of this installation use it: it needs the
/// installation's data key.
async fn release_signer(store: &StoreArgs) -> anyhow::Result<corral_server::crypto::ReleaseSigner> {
    let data_key = corral_server::crypto::DataKey::load(
        &store.data_dir,
        std::env::var("CORRAL_DATA_KEY").ok().as_deref(),
    )?;
    let db = open_store(&store.data_dir, store.database_url.as_deref()).await?;
    corral_server::crypto::ReleaseSigner::shared(db.as_ref(), &data_key).await
}
