//! `corral runner`: the runner agent's flags, handed to `corral-runner`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;
use clap::builder::TypedValueParser as _;

#[derive(Args)]
pub struct RunnerArgs {
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

/// Runs the runner agent; exits 0 when stopped or deleted, else with the
/// error's exit code (3 when it needs new credentials).
pub async fn runner(args: RunnerArgs, log_format: crate::LogFormat) -> ! {
    let logging = match corral_runner::Logging::init(match log_format {
        crate::LogFormat::Text => corral_runner::LogFormat::Text,
        crate::LogFormat::Json => corral_runner::LogFormat::Json,
    }) {
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
