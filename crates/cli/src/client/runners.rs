//! `corral runners …` and `corral policies …`: RunnerService's runner and
//! policy calls, the runner's logs (fetched from the runner with a logs
//! token) and its events (EventService.WatchEvents).

use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;

use buffa::MessageField;
use clap::{Subcommand, ValueEnum};
use corral_api::gitpod::v1 as api;

use super::config::read_secret;
use super::output::{self, Column, Format, col, enum_col, flag_col};
use super::{Api, ClientOpts, Failure, Outcome, all_pages, confirm, json, json_items, next_token};

const LIST_COLUMNS: &[Column] = &[
    col("ID", "runnerId"),
    col("NAME", "name"),
    enum_col("PROVIDER", "provider", "RUNNER_PROVIDER_"),
    enum_col("PHASE", "status.phase", "RUNNER_PHASE_"),
    enum_col("DESIRED", "spec.desiredPhase", "RUNNER_PHASE_"),
    col("VERSION", "status.version"),
    col("CREATED", "createdAt"),
];

const DETAIL_COLUMNS: &[Column] = &[
    col("ID", "runnerId"),
    col("NAME", "name"),
    enum_col("PROVIDER", "provider", "RUNNER_PROVIDER_"),
    enum_col("KIND", "kind", "RUNNER_KIND_"),
    enum_col("PHASE", "status.phase", "RUNNER_PHASE_"),
    col("MESSAGE", "status.message"),
    enum_col("DESIRED PHASE", "spec.desiredPhase", "RUNNER_PHASE_"),
    col("VERSION", "status.version"),
    col("REGION", "status.region"),
    enum_col(
        "RELEASE CHANNEL",
        "spec.configuration.releaseChannel",
        "RUNNER_RELEASE_CHANNEL_",
    ),
    flag_col("AUTO UPDATE", "spec.configuration.autoUpdate"),
    enum_col("LOG LEVEL", "spec.configuration.logLevel", "LOG_LEVEL_"),
    flag_col("METRICS", "spec.configuration.metrics.enabled"),
    col("LOG URL", "status.logUrl"),
    col("CREATOR", "creator.id"),
    col("CREATED", "createdAt"),
    col("UPDATED", "updatedAt"),
    col("STATUS UPDATED", "status.updatedAt"),
];

const POLICY_COLUMNS: &[Column] = &[
    col("GROUP", "groupId"),
    enum_col("ROLE", "role", "RUNNER_ROLE_"),
];

#[derive(Clone, Copy, ValueEnum)]
pub enum Provider {
    LinuxHost,
    AwsEc2,
    DesktopMac,
    Gcp,
    DevAgent,
}

impl From<Provider> for api::RunnerProvider {
    fn from(p: Provider) -> Self {
        match p {
            Provider::LinuxHost => Self::RUNNER_PROVIDER_LINUX_HOST,
            Provider::AwsEc2 => Self::RUNNER_PROVIDER_AWS_EC2,
            Provider::DesktopMac => Self::RUNNER_PROVIDER_DESKTOP_MAC,
            Provider::Gcp => Self::RUNNER_PROVIDER_GCP,
            Provider::DevAgent => Self::RUNNER_PROVIDER_DEV_AGENT,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Channel {
    Stable,
    Latest,
}

impl From<Channel> for api::RunnerReleaseChannel {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Stable => Self::RUNNER_RELEASE_CHANNEL_STABLE,
            Channel::Latest => Self::RUNNER_RELEASE_CHANNEL_LATEST,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Level {
    Debug,
    Info,
    Warn,
    Error,
}

impl From<Level> for api::LogLevel {
    fn from(l: Level) -> Self {
        match l {
            Level::Debug => Self::LOG_LEVEL_DEBUG,
            Level::Info => Self::LOG_LEVEL_INFO,
            Level::Warn => Self::LOG_LEVEL_WARN,
            Level::Error => Self::LOG_LEVEL_ERROR,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Phase {
    Active,
    Inactive,
}

impl From<Phase> for api::RunnerPhase {
    fn from(p: Phase) -> Self {
        match p {
            Phase::Active => Self::RUNNER_PHASE_ACTIVE,
            Phase::Inactive => Self::RUNNER_PHASE_INACTIVE,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Role {
    Admin,
    User,
}

impl From<Role> for api::RunnerRole {
    fn from(r: Role) -> Self {
        match r {
            Role::Admin => Self::RUNNER_ROLE_ADMIN,
            Role::User => Self::RUNNER_ROLE_USER,
        }
    }
}

#[derive(Subcommand)]
pub enum RunnerCommand {
    /// List the runners you can see (every page, unless --limit).
    #[command(
        after_help = "Examples:\n  corral runners list\n  corral runners list --output json --limit 10\n  corral runners list --watch"
    )]
    List {
        /// At most this many runners.
        #[arg(long)]
        limit: Option<usize>,
        /// Print the list again whenever a runner changes (until interrupted).
        #[arg(long)]
        watch: bool,
    },
    /// Show one runner.
    #[command(
        after_help = "Examples:\n  corral runners get 0f8fad5b-d9cb-469f-a165-70867728950e\n  corral runners get RUNNER_ID --watch"
    )]
    Get {
        #[arg(value_parser = super::parse_id)]
        runner_id: String,
        /// Print it again whenever it changes (until interrupted).
        #[arg(long)]
        watch: bool,
    },
    /// Create a runner; prints its one-time exchange token and the command
    /// that starts it on its host.
    #[command(
        after_help = "Example:\n  corral runners create --name \"build host\" --release-channel stable --auto-update true"
    )]
    Create {
        /// The runner's name (3 to 127 characters).
        #[arg(long)]
        name: String,
        /// Where the runner runs.
        #[arg(long, value_enum, default_value_t = Provider::LinuxHost)]
        provider: Provider,
        /// Region hint for the runner.
        #[arg(long)]
        region: Option<String>,
        /// Which releases the runner installs when it updates itself.
        #[arg(long, value_enum)]
        release_channel: Option<Channel>,
        /// Whether the runner installs new releases of its channel by itself.
        #[arg(long)]
        auto_update: Option<bool>,
    },
    /// Change a runner's name or configuration; flags not given stay as they are.
    #[command(
        after_help = "Examples:\n  corral runners update RUNNER_ID --name \"build host 2\"\n  \
        corral runners update RUNNER_ID --log-level debug --release-channel latest --auto-update false\n  \
        corral runners update RUNNER_ID --update-window-start 2 --update-window-end 4"
    )]
    Update {
        #[arg(value_parser = super::parse_id)]
        runner_id: String,
        /// A new name (3 to 127 characters).
        #[arg(long)]
        name: Option<String>,
        /// Which releases the runner installs when it updates itself.
        #[arg(long, value_enum)]
        release_channel: Option<Channel>,
        /// Whether the runner installs new releases of its channel by itself.
        #[arg(long)]
        auto_update: Option<bool>,
        /// How much the runner logs.
        #[arg(long, value_enum)]
        log_level: Option<Level>,
        /// Ask the runner to become active or inactive.
        #[arg(long, value_enum)]
        desired_phase: Option<Phase>,
        /// Hour (0–23, UTC) at which the runner's update window opens.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..24))]
        update_window_start: Option<u32>,
        /// Hour (0–23, UTC) at which the runner's update window closes.
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..24))]
        update_window_end: Option<u32>,
        /// Push metrics (Prometheus remote write) to --metrics-url.
        #[arg(long)]
        metrics_enabled: Option<bool>,
        /// Where metrics go (a Prometheus remote-write endpoint).
        #[arg(long)]
        metrics_url: Option<String>,
        /// User name for the metrics endpoint.
        #[arg(long)]
        metrics_username: Option<String>,
        /// Read the metrics endpoint's password from standard input (or ask for it).
        #[arg(long)]
        metrics_password: bool,
        /// Read a Honeycomb API key from standard input (or ask for it).
        #[arg(long, conflicts_with = "metrics_password")]
        honeycomb_api_key: bool,
        #[arg(long)]
        devcontainer_image_cache: Option<bool>,
        #[arg(long)]
        continuous_profiling: Option<bool>,
    },
    /// Delete a runner (asks first; --yes to skip the question).
    #[command(after_help = "Example:\n  corral runners delete RUNNER_ID --yes")]
    Delete {
        #[arg(value_parser = super::parse_id)]
        runner_id: String,
        /// Do not ask.
        #[arg(long, short = 'y')]
        yes: bool,
        /// Delete at once, without waiting for the runner to clean up.
        #[arg(long)]
        force: bool,
    },
    /// A new one-time exchange token for a runner (e.g. after its credentials were lost).
    #[command(after_help = "Example:\n  corral runners token RUNNER_ID")]
    Token {
        #[arg(value_parser = super::parse_id)]
        runner_id: String,
    },
    /// Fetch a runner's recent logs from the runner itself.
    #[command(
        after_help = "Examples:\n  corral runners logs RUNNER_ID\n  corral runners logs RUNNER_ID -o runner.log"
    )]
    Logs {
        #[arg(value_parser = super::parse_id)]
        runner_id: String,
        /// Write the logs to FILE instead of standard output.
        #[arg(long = "file", short = 'o')]
        file: Option<PathBuf>,
    },
    /// Print one line per change of runners (of one runner with --runner) until interrupted.
    #[command(
        after_help = "Examples:\n  corral runners watch\n  corral runners watch --runner RUNNER_ID --output json"
    )]
    Watch {
        #[arg(long, value_parser = super::parse_id)]
        runner: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// List a runner's policies.
    #[command(after_help = "Example:\n  corral policies list --runner RUNNER_ID")]
    List {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Give a group a role on a runner.
    #[command(
        after_help = "Example:\n  corral policies create --runner RUNNER_ID --group GROUP_ID --role user"
    )]
    Create {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long, value_parser = super::parse_id)]
        group: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Change a group's role on a runner.
    #[command(
        after_help = "Example:\n  corral policies update --runner RUNNER_ID --group GROUP_ID --role admin"
    )]
    Update {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long, value_parser = super::parse_id)]
        group: String,
        #[arg(long, value_enum)]
        role: Role,
    },
    /// Take a group's role on a runner away.
    #[command(
        after_help = "Example:\n  corral policies delete --runner RUNNER_ID --group GROUP_ID"
    )]
    Delete {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long, value_parser = super::parse_id)]
        group: String,
    },
}

pub async fn run(command: RunnerCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let format = opts.output;
    match command {
        RunnerCommand::List { limit, watch } => {
            list(&api, format, limit).await?;
            if watch {
                watch_events(&api, None, |_| Box::pin(redraw(list(&api, format, limit)))).await?;
            }
        }
        RunnerCommand::Get { runner_id, watch } => {
            let id = runner_id;
            get(&api, format, &id).await?;
            if watch {
                let only = Some(id.clone());
                watch_events(&api, only, |_| Box::pin(redraw(get(&api, format, &id)))).await?;
            }
        }
        RunnerCommand::Create {
            name,
            provider,
            region,
            release_channel,
            auto_update,
        } => {
            let configuration = api::RunnerConfiguration {
                region: region.unwrap_or_default(),
                release_channel: release_channel
                    .map(|c| api::RunnerReleaseChannel::from(c).into())
                    .unwrap_or_default(),
                auto_update: auto_update.unwrap_or_default(),
                ..Default::default()
            };
            let response = api
                .runners()
                .create_runner(api::CreateRunnerRequest {
                    name,
                    provider: api::RunnerProvider::from(provider).into(),
                    spec: MessageField::some(api::RunnerSpec {
                        configuration: MessageField::some(configuration),
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("creating the runner", &e))?
                .into_owned();
            let id = response
                .runner
                .as_option()
                .map(|r| r.runner_id.clone())
                .unwrap_or_default();
            let sentence = start_instructions(
                &format!("runner {id} created"),
                api.url(),
                &response.exchange_token,
            );
            output::print_done(format, &json(&response)?, &sentence)?;
        }
        RunnerCommand::Update {
            runner_id,
            name,
            release_channel,
            auto_update,
            log_level,
            desired_phase,
            update_window_start,
            update_window_end,
            metrics_enabled,
            metrics_url,
            metrics_username,
            metrics_password,
            honeycomb_api_key,
            devcontainer_image_cache,
            continuous_profiling,
        } => {
            let id = runner_id;
            let metrics_password = metrics_password
                .then(|| read_secret("metrics password", false))
                .transpose()?;
            let honeycomb_api_key = honeycomb_api_key
                .then(|| read_secret("Honeycomb API key", false))
                .transpose()?;
            let metrics = (metrics_enabled.is_some()
                || metrics_url.is_some()
                || metrics_username.is_some()
                || metrics_password.is_some())
            .then(|| api::update_runner_request::MetricsConfiguration {
                enabled: metrics_enabled,
                url: metrics_url,
                username: metrics_username,
                password: metrics_password,
                ..Default::default()
            });
            let window =
                (update_window_start.is_some() || update_window_end.is_some()).then(|| {
                    api::UpdateWindow {
                        start_hour: update_window_start,
                        end_hour: update_window_end,
                        ..Default::default()
                    }
                });
            let configuration = api::update_runner_request::RunnerConfiguration {
                release_channel: release_channel.map(|c| api::RunnerReleaseChannel::from(c).into()),
                auto_update,
                metrics: metrics.into(),
                log_level: log_level.map(|l| api::LogLevel::from(l).into()),
                devcontainer_image_cache_enabled: devcontainer_image_cache,
                update_window: window.into(),
                continuous_profiling,
                honeycomb_api_key,
                ..Default::default()
            };
            let changes_configuration =
                configuration != api::update_runner_request::RunnerConfiguration::default();
            if name.is_none() && !changes_configuration && desired_phase.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give at least one flag (see `corral runners update --help`)",
                ));
            }
            let spec = (changes_configuration || desired_phase.is_some()).then(|| {
                api::update_runner_request::Spec {
                    configuration: if changes_configuration {
                        MessageField::some(configuration)
                    } else {
                        MessageField::none()
                    },
                    desired_phase: desired_phase.map(|p| api::RunnerPhase::from(p).into()),
                    ..Default::default()
                }
            });
            let response = api
                .runners()
                .update_runner(api::UpdateRunnerRequest {
                    runner_id: id.clone(),
                    name,
                    spec: spec.into(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("updating runner {id}"), &e))?
                .into_owned();
            output::print_done(format, &json(&response)?, &format!("runner {id} updated"))?;
        }
        RunnerCommand::Delete {
            runner_id,
            yes,
            force,
        } => {
            let id = runner_id;
            confirm(&format!("delete runner {id}?"), yes)?;
            let response = api
                .runners()
                .delete_runner(api::DeleteRunnerRequest {
                    runner_id: id.clone(),
                    force,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("deleting runner {id}"), &e))?
                .into_owned();
            output::print_done(format, &json(&response)?, &format!("runner {id} deleted"))?;
        }
        RunnerCommand::Token { runner_id } => {
            let id = runner_id;
            let response = api
                .runners()
                .create_runner_token(api::CreateRunnerTokenRequest {
                    runner_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("creating a token for runner {id}"), &e))?
                .into_owned();
            let sentence = start_instructions(
                &format!("new exchange token for runner {id}"),
                api.url(),
                &response.exchange_token,
            );
            output::print_done(format, &json(&response)?, &sentence)?;
        }
        RunnerCommand::Logs { runner_id, file } => {
            let id = runner_id;
            logs(&api, &id, file).await?;
        }
        RunnerCommand::Watch { runner } => {
            let only = runner;
            watch_events(&api, only, |event| {
                Box::pin(async move { print_event(format, &event) })
            })
            .await?;
        }
    }
    Ok(())
}

/// What to tell whoever created a runner or a token for it: the token (shown
/// once) and the command to run on the runner's host, as the last line.
fn start_instructions(what: &str, url: &str, exchange_token: &str) -> String {
    format!(
        "{what}.\nIts exchange token is shown only now and is valid for 24 hours.\n\
         Start the runner on its host with:\n  corral runner --server {url} --exchange-token {exchange_token}"
    )
}

async fn list(api: &Api, format: Format, limit: Option<usize>) -> Outcome {
    let client = api.runners();
    let runners = all_pages(limit, |page| {
        let client = &client;
        async move {
            let response = client
                .list_runners(api::ListRunnersRequest {
                    pagination: MessageField::some(page),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("listing runners", &e))?
                .into_owned();
            let next = next_token(response.pagination.as_option());
            let items = response.runners.iter().map(json).collect::<Outcome<_>>()?;
            Ok((items, next))
        }
    })
    .await?;
    output::print_list(format, "runners", runners, LIST_COLUMNS)
}

async fn get(api: &Api, format: Format, id: &str) -> Outcome {
    let response = api
        .runners()
        .get_runner(api::GetRunnerRequest {
            runner_id: id.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| api.failure(&format!("runner {id}"), &e))?
        .into_owned();
    output::print_item(format, &json(&response)?, "runner", DETAIL_COLUMNS)
}

/// Runs `draw` after clearing a terminal (or after a blank line elsewhere).
async fn redraw(draw: impl std::future::Future<Output = Outcome>) -> Outcome {
    if std::io::stdout().is_terminal() {
        print!("\x1b[2J\x1b[H");
    } else {
        println!();
    }
    draw.await
}

type EventFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + 'a>>;

/// Follows WatchEvents for runners (one runner if `only`), calling `on_event`
/// for each event, until the stream ends.
async fn watch_events<'a, F>(api: &Api, only: Option<String>, mut on_event: F) -> Outcome
where
    F: FnMut(api::WatchEventsResponse) -> EventFuture<'a>,
{
    let request = api::WatchEventsRequest {
        scope: Some(api::watch_events_request::Scope::Organization(true)),
        resource_type_filters: vec![api::watch_events_request::ResourceTypeFilter {
            resource_type: api::ResourceType::RESOURCE_TYPE_RUNNER.into(),
            resource_ids: only.into_iter().collect(),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut stream = api
        .event_stream()
        .watch_events(request)
        .await
        .map_err(|e| api.failure("watching events", &e))?;
    loop {
        match stream.message().await {
            Ok(Some(event)) => on_event(event.to_owned_message()).await?,
            Ok(None) => return Err(Failure::other("the server ended the event stream")),
            Err(e) => return Err(api.failure("watching events", &e)),
        }
    }
}

fn print_event(format: Format, event: &api::WatchEventsResponse) -> Outcome {
    let value = json(event)?;
    let line = match format {
        Format::Table => {
            let text = |key: &'static str, prefix: &'static str| {
                output::cell(&value, &output::enum_col("", key, prefix))
            };
            format!(
                "{} {} {} {}",
                chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                text("operation", "RESOURCE_OPERATION_"),
                text("resourceType", "RESOURCE_TYPE_"),
                text("resourceId", "")
            )
        }
        // One document per line: a stream, not one answer.
        _ => serde_json::to_string(&value).map_err(|e| Failure::other(e.to_string()))?,
    };
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    // Someone reads this as it happens (often through a pipe).
    stdout.flush()?;
    Ok(())
}

/// Fetches the runner's logs from its log URL with a fresh logs token.
async fn logs(api: &Api, id: &str, file: Option<PathBuf>) -> Outcome {
    let token = api
        .runners()
        .create_runner_logs_token(api::CreateRunnerLogsTokenRequest {
            runner_id: id.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| api.failure(&format!("a logs token for runner {id}"), &e))?
        .into_owned()
        .access_token;
    let runner = api
        .runners()
        .get_runner(api::GetRunnerRequest {
            runner_id: id.to_string(),
            ..Default::default()
        })
        .await
        .map_err(|e| api.failure(&format!("runner {id}"), &e))?
        .into_owned();
    let log_url = runner
        .runner
        .as_option()
        .and_then(|r| r.status.as_option())
        .map(|s| s.log_url.clone())
        .unwrap_or_default();
    if log_url.is_empty() {
        return Err(Failure::other(format!(
            "runner {id} has reported no log URL yet: is it running (`corral runners get {id}`)?"
        )));
    }
    let http = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(10))
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .map_err(|e| Failure::other(e.to_string()))?;
    let mut response = http
        .get(&log_url)
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| Failure {
            code: 5,
            message: format!("runner {id} at {log_url} unreachable: {e}"),
        })?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        let body: String = body.chars().take(300).collect();
        return Err(Failure::other(format!(
            "runner {id} refused the logs request ({status}): {}",
            body.trim()
        )));
    }
    let mut sink: Box<dyn std::io::Write> = match &file {
        Some(path) => Box::new(
            std::fs::File::create(path)
                .map_err(|e| Failure::other(format!("creating {}: {e}", path.display())))?,
        ),
        None => Box::new(std::io::stdout().lock()),
    };
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Failure::other(format!("reading the logs: {e}")))?
    {
        sink.write_all(&chunk)?;
    }
    sink.flush()?;
    if let Some(path) = file {
        eprintln!("wrote the logs of runner {id} to {}", path.display());
    }
    Ok(())
}

pub async fn run_policy(command: PolicyCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let format = opts.output;
    let client = api.runners();
    match command {
        PolicyCommand::List { runner, limit } => {
            let runner_id = runner;
            let policies = all_pages(limit, |page| {
                let (client, api, runner_id) = (&client, &api, runner_id.clone());
                async move {
                    let response = client
                        .list_runner_policies(api::ListRunnerPoliciesRequest {
                            pagination: MessageField::some(page),
                            runner_id,
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| api.failure("listing runner policies", &e))?
                        .into_owned();
                    let next = next_token(response.pagination.as_option());
                    let items = json_items(&response.policies)?;
                    Ok((items, next))
                }
            })
            .await?;
            output::print_list(format, "policies", policies, POLICY_COLUMNS)
        }
        PolicyCommand::Create {
            runner,
            group,
            role,
        } => {
            let (runner_id, group_id) = (runner, group);
            let response = client
                .create_runner_policy(api::CreateRunnerPolicyRequest {
                    runner_id,
                    group_id,
                    role: api::RunnerRole::from(role).into(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("creating the runner policy", &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "policy", POLICY_COLUMNS)
        }
        PolicyCommand::Update {
            runner,
            group,
            role,
        } => {
            let (runner_id, group_id) = (runner, group);
            let response = client
                .update_runner_policy(api::UpdateRunnerPolicyRequest {
                    runner_id,
                    group_id,
                    role: api::RunnerRole::from(role).into(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("updating the runner policy", &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "policy", POLICY_COLUMNS)
        }
        PolicyCommand::Delete { runner, group } => {
            let (runner_id, group_id) = (runner, group);
            let response = client
                .delete_runner_policy(api::DeleteRunnerPolicyRequest {
                    runner_id: runner_id.clone(),
                    group_id: group_id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("deleting the runner policy", &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("group {group_id} no longer has a role on runner {runner_id}"),
            )
        }
    }
}
