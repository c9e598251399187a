//! `corral env-classes …`, `corral scm-integrations …` and
//! `corral host-tokens …`: RunnerConfigurationService. Secrets (OAuth client
//! secrets, host tokens) are read from standard input or a prompt that does
//! not echo, never from flags (which other users of the host can see).

use buffa::MessageField;
use clap::{Subcommand, ValueEnum};
use corral_api::gitpod::v1 as api;

use super::config::read_secret;
use super::output::{self, Column, col, enum_col, flag_col};
use super::{Api, ClientOpts, Failure, Outcome, all_pages, confirm, json, json_items, next_token};

const ENV_CLASS_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "displayName"),
    col("RUNNER", "runnerId"),
    flag_col("ENABLED", "enabled"),
    col("DESCRIPTION", "description"),
];

const SCM_INTEGRATION_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("SCM", "scmId"),
    col("HOST", "host"),
    col("RUNNER", "runnerId"),
    flag_col("PAT", "pat"),
    col("OAUTH CLIENT", "oauth.clientId"),
];

const HOST_TOKEN_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("HOST", "host"),
    col("RUNNER", "runnerId"),
    col("SUBJECT", "subject.id"),
    enum_col("SOURCE", "source", "HOST_AUTHENTICATION_TOKEN_SOURCE_"),
    col("EXPIRES", "expiresAt"),
];

/// `key=value`, as environment class configuration entries are given.
fn field_value(entry: &str) -> Result<api::FieldValue, String> {
    let (key, value) = entry
        .split_once('=')
        .ok_or_else(|| format!("{entry:?} is not KEY=VALUE"))?;
    Ok(api::FieldValue {
        key: key.to_string(),
        value: value.to_string(),
        ..Default::default()
    })
}

#[derive(Subcommand)]
pub enum EnvClassCommand {
    /// List environment classes (of one runner with --runner).
    #[command(
        after_help = "Examples:\n  corral env-classes list\n  corral env-classes list --runner RUNNER_ID"
    )]
    List {
        #[arg(long, value_parser = super::parse_id)]
        runner: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show an environment class.
    #[command(after_help = "Example:\n  corral env-classes get CLASS_ID")]
    Get {
        #[arg(value_parser = super::parse_id)]
        class_id: String,
    },
    /// Create an environment class on a runner.
    #[command(
        after_help = "Example:\n  corral env-classes create --runner RUNNER_ID --name small --description \"2 cores, 4 GiB\" --config cpu=2"
    )]
    Create {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        description: String,
        /// A configuration entry KEY=VALUE (as the runner's schema names them); repeatable.
        #[arg(long = "config", value_parser = field_value)]
        configuration: Vec<api::FieldValue>,
    },
    /// Change an environment class; flags not given stay as they are.
    #[command(after_help = "Example:\n  corral env-classes update CLASS_ID --enabled false")]
    Update {
        #[arg(value_parser = super::parse_id)]
        class_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        enabled: Option<bool>,
    },
}

#[derive(Subcommand)]
pub enum ScmIntegrationCommand {
    /// List SCM integrations (of one runner with --runner).
    #[command(after_help = "Example:\n  corral scm-integrations list --runner RUNNER_ID")]
    List {
        #[arg(long, value_parser = super::parse_id)]
        runner: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show an SCM integration.
    #[command(after_help = "Example:\n  corral scm-integrations get INTEGRATION_ID")]
    Get {
        #[arg(value_parser = super::parse_id)]
        integration_id: String,
    },
    /// Add an SCM integration to a runner. With --oauth-client-id, the client
    /// secret is read from standard input (or asked for).
    #[command(
        after_help = "Examples:\n  corral scm-integrations create --runner RUNNER_ID --scm github --host github.com --pat\n  \
        echo \"$SECRET\" | corral scm-integrations create --runner RUNNER_ID --scm gitlab --host gitlab.example.com --oauth-client-id ID"
    )]
    Create {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        /// The kind of SCM: github, gitlab, bitbucket, azure-devops, …
        #[arg(long)]
        scm: String,
        #[arg(long)]
        host: String,
        /// Users may sign in with personal access tokens.
        #[arg(long)]
        pat: bool,
        #[arg(long)]
        oauth_client_id: Option<String>,
        #[arg(long)]
        issuer_url: Option<String>,
        #[arg(long)]
        virtual_directory: Option<String>,
    },
    /// Change an SCM integration; flags not given stay as they are.
    #[command(after_help = "Example:\n  corral scm-integrations update INTEGRATION_ID --pat false")]
    Update {
        #[arg(value_parser = super::parse_id)]
        integration_id: String,
        #[arg(long)]
        pat: Option<bool>,
        #[arg(long)]
        oauth_client_id: Option<String>,
        /// Read a new OAuth client secret from standard input (or ask for it).
        #[arg(long)]
        oauth_client_secret: bool,
        #[arg(long)]
        issuer_url: Option<String>,
        #[arg(long)]
        virtual_directory: Option<String>,
    },
    /// Delete an SCM integration (asks first; --yes to skip the question).
    #[command(after_help = "Example:\n  corral scm-integrations delete INTEGRATION_ID --yes")]
    Delete {
        #[arg(value_parser = super::parse_id)]
        integration_id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum TokenSource {
    Pat,
    Oauth,
}

#[derive(Subcommand)]
pub enum HostTokenCommand {
    /// List host authentication tokens (never the tokens themselves).
    #[command(after_help = "Example:\n  corral host-tokens list --runner RUNNER_ID")]
    List {
        #[arg(long, value_parser = super::parse_id)]
        runner: Option<String>,
        /// Only the tokens of this user.
        #[arg(long, value_parser = super::parse_id)]
        user: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show a host authentication token's details.
    #[command(after_help = "Example:\n  corral host-tokens get TOKEN_ID")]
    Get {
        #[arg(value_parser = super::parse_id)]
        token_id: String,
    },
    /// Store your token for an SCM host on a runner; the token is read from
    /// standard input (or asked for).
    #[command(
        after_help = "Example:\n  echo \"$GITHUB_TOKEN\" | corral host-tokens create --runner RUNNER_ID --host github.com --source pat"
    )]
    Create {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long)]
        host: String,
        #[arg(long, value_enum, default_value_t = TokenSource::Pat)]
        source: TokenSource,
        /// Scopes the token holds; repeatable.
        #[arg(long = "scope")]
        scopes: Vec<String>,
    },
    /// Replace the token (read from standard input, or asked for).
    #[command(
        after_help = "Example:\n  echo \"$GITHUB_TOKEN\" | corral host-tokens update TOKEN_ID"
    )]
    Update {
        #[arg(value_parser = super::parse_id)]
        token_id: String,
    },
    /// Delete a host authentication token (asks first; --yes to skip the question).
    #[command(after_help = "Example:\n  corral host-tokens delete TOKEN_ID --yes")]
    Delete {
        #[arg(value_parser = super::parse_id)]
        token_id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

pub async fn run_env_class(command: EnvClassCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let client = api.runner_config();
    let format = opts.output;
    match command {
        EnvClassCommand::List { runner, limit } => {
            let runner_ids = runner;
            let classes = all_pages(limit, |page| {
                let (client, api) = (&client, &api);
                let request = api::ListEnvironmentClassesRequest {
                    pagination: MessageField::some(page),
                    filter: MessageField::some(api::list_environment_classes_request::Filter {
                        runner_ids: runner_ids.iter().cloned().collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .list_environment_classes(request)
                        .await
                        .map_err(|e| api.failure("listing environment classes", &e))?
                        .into_owned();
                    let items = json_items(&response.environment_classes)?;
                    Ok((items, next_token(response.pagination.as_option())))
                }
            })
            .await?;
            output::print_list(format, "environmentClasses", classes, ENV_CLASS_COLUMNS)
        }
        EnvClassCommand::Get { class_id } => {
            let id = class_id;
            let response = client
                .get_environment_class(api::GetEnvironmentClassRequest {
                    environment_class_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("environment class {id}"), &e))?
                .into_owned();
            output::print_item(
                format,
                &json(&response)?,
                "environmentClass",
                ENV_CLASS_COLUMNS,
            )
        }
        EnvClassCommand::Create {
            runner,
            name,
            description,
            configuration,
        } => {
            let runner_id = runner;
            let response = client
                .create_environment_class(api::CreateEnvironmentClassRequest {
                    runner_id,
                    display_name: name,
                    description,
                    configuration,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("creating the environment class", &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("environment class {} created", response.id),
            )
        }
        EnvClassCommand::Update {
            class_id,
            name,
            description,
            enabled,
        } => {
            let id = class_id;
            if name.is_none() && description.is_none() && enabled.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give --name, --description or --enabled",
                ));
            }
            let response = client
                .update_environment_class(api::UpdateEnvironmentClassRequest {
                    environment_class_id: id.clone(),
                    display_name: name,
                    description,
                    enabled,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("updating environment class {id}"), &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("environment class {id} updated"),
            )
        }
    }
}

pub async fn run_scm_integration(command: ScmIntegrationCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let client = api.runner_config();
    let format = opts.output;
    match command {
        ScmIntegrationCommand::List { runner, limit } => {
            let runner_ids = runner;
            let integrations = all_pages(limit, |page| {
                let (client, api) = (&client, &api);
                let request = api::ListSCMIntegrationsRequest {
                    pagination: MessageField::some(page),
                    filter: MessageField::some(api::list_scm_integrations_request::Filter {
                        runner_ids: runner_ids.iter().cloned().collect(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .list_scm_integrations(request)
                        .await
                        .map_err(|e| api.failure("listing SCM integrations", &e))?
                        .into_owned();
                    let items = json_items(&response.integrations)?;
                    Ok((items, next_token(response.pagination.as_option())))
                }
            })
            .await?;
            output::print_list(
                format,
                "integrations",
                integrations,
                SCM_INTEGRATION_COLUMNS,
            )
        }
        ScmIntegrationCommand::Get { integration_id } => {
            let id = integration_id;
            let response = client
                .get_scm_integration(api::GetSCMIntegrationRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("SCM integration {id}"), &e))?
                .into_owned();
            output::print_item(
                format,
                &json(&response)?,
                "integration",
                SCM_INTEGRATION_COLUMNS,
            )
        }
        ScmIntegrationCommand::Create {
            runner,
            scm,
            host,
            pat,
            oauth_client_id,
            issuer_url,
            virtual_directory,
        } => {
            let runner_id = runner;
            let secret = oauth_client_id
                .is_some()
                .then(|| read_secret("OAuth client secret", false))
                .transpose()?;
            let response = client
                .create_scm_integration(api::CreateSCMIntegrationRequest {
                    runner_id,
                    scm_id: scm,
                    host,
                    oauth_client_id,
                    oauth_plaintext_client_secret: secret,
                    pat,
                    issuer_url,
                    virtual_directory,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("creating the SCM integration", &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("SCM integration {} created", response.id),
            )
        }
        ScmIntegrationCommand::Update {
            integration_id,
            pat,
            oauth_client_id,
            oauth_client_secret,
            issuer_url,
            virtual_directory,
        } => {
            let id = integration_id;
            let secret = oauth_client_secret
                .then(|| read_secret("OAuth client secret", false))
                .transpose()?;
            let request = api::UpdateSCMIntegrationRequest {
                id: id.clone(),
                oauth_client_id,
                oauth_plaintext_client_secret: secret,
                pat,
                issuer_url,
                virtual_directory,
                ..Default::default()
            };
            if request
                == (api::UpdateSCMIntegrationRequest {
                    id: id.clone(),
                    ..Default::default()
                })
            {
                return Err(Failure::usage("nothing to change: give at least one flag"));
            }
            let response = client
                .update_scm_integration(request)
                .await
                .map_err(|e| api.failure(&format!("updating SCM integration {id}"), &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("SCM integration {id} updated"),
            )
        }
        ScmIntegrationCommand::Delete {
            integration_id,
            yes,
        } => {
            let id = integration_id;
            confirm(&format!("delete SCM integration {id}?"), yes)?;
            let response = client
                .delete_scm_integration(api::DeleteSCMIntegrationRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("deleting SCM integration {id}"), &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("SCM integration {id} deleted"),
            )
        }
    }
}

pub async fn run_host_token(command: HostTokenCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let client = api.runner_config();
    let format = opts.output;
    match command {
        HostTokenCommand::List {
            runner,
            user,
            limit,
        } => {
            let runner_id = runner;
            let subject_id = user;
            let tokens = all_pages(limit, |page| {
                let (client, api) = (&client, &api);
                let request = api::ListHostAuthenticationTokensRequest {
                    pagination: MessageField::some(page),
                    filter: MessageField::some(
                        api::list_host_authentication_tokens_request::Filter {
                            runner_id: runner_id.clone(),
                            subject_id: subject_id.clone(),
                            ..Default::default()
                        },
                    ),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .list_host_authentication_tokens(request)
                        .await
                        .map_err(|e| api.failure("listing host tokens", &e))?
                        .into_owned();
                    let items = json_items(&response.tokens)?;
                    Ok((items, next_token(response.pagination.as_option())))
                }
            })
            .await?;
            output::print_list(format, "tokens", tokens, HOST_TOKEN_COLUMNS)
        }
        HostTokenCommand::Get { token_id } => {
            let id = token_id;
            let response = client
                .get_host_authentication_token(api::GetHostAuthenticationTokenRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("host token {id}"), &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "token", HOST_TOKEN_COLUMNS)
        }
        HostTokenCommand::Create {
            runner,
            host,
            source,
            scopes,
        } => {
            let runner_id = runner;
            let token = read_secret("host token", false)?;
            let source = match source {
                TokenSource::Pat => {
                    api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
                }
                TokenSource::Oauth => {
                    api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
                }
            };
            let response = client
                .create_host_authentication_token(api::CreateHostAuthenticationTokenRequest {
                    runner_id,
                    host,
                    token,
                    source: source.into(),
                    scopes,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("creating the host token", &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "token", HOST_TOKEN_COLUMNS)
        }
        HostTokenCommand::Update { token_id } => {
            let id = token_id;
            let token = read_secret("host token", false)?;
            let response = client
                .update_host_authentication_token(api::UpdateHostAuthenticationTokenRequest {
                    id: id.clone(),
                    token: Some(token),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("updating host token {id}"), &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("host token {id} updated"),
            )
        }
        HostTokenCommand::Delete { token_id, yes } => {
            let id = token_id;
            confirm(&format!("delete host token {id}?"), yes)?;
            let response = client
                .delete_host_authentication_token(api::DeleteHostAuthenticationTokenRequest {
                    id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("deleting host token {id}"), &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("host token {id} deleted"),
            )
        }
    }
}
