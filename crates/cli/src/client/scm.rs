//! `corral scm …`: the RunnerService calls a runner answers about source
//! control (ParseContextURL, SearchRepositories, ListSCMOrganizations,
//! CheckAuthenticationForHost, CheckRepositoryAccess), with your host token.

use buffa::MessageField;
use clap::Subcommand;
use corral_api::gitpod::v1 as api;
use serde_json::Value;

use super::output::{self, Column, col, flag_col};
use super::{Api, ClientOpts, Outcome, all_pages, json, json_items, next_token};

const REPOSITORY_COLUMNS: &[Column] = &[col("NAME", "name"), col("URL", "url")];

const CONTEXT_COLUMNS: &[Column] = &[
    col("URL", "originalContextUrl"),
    col("SCM", "scmId"),
    col("HOST", "git.host"),
    col("OWNER", "git.owner"),
    col("REPOSITORY", "git.repo"),
    col("CLONE URL", "git.cloneUrl"),
    col("BRANCH", "git.branch"),
    col("COMMIT", "git.commit"),
    col("TAG", "git.tag"),
    col("PULL REQUEST", "pullRequest.id"),
    col("ISSUE", "issue.id"),
];

const AUTH_COLUMNS: &[Column] = &[
    flag_col("AUTHENTICATED", "authenticated"),
    col("SCM", "scmId"),
    col("NAME", "scmName"),
    col("OAUTH URL", "supportsOauth2.authUrl"),
    col("PAT CREATE URL", "supportsPat.createUrl"),
];

const ACCESS_COLUMNS: &[Column] = &[
    flag_col("ACCESS", "hasAccess"),
    col("ERROR", "errorMessage"),
];

#[derive(Subcommand)]
pub enum ScmCommand {
    /// What a context URL (repository, branch, commit, pull request …) points to.
    #[command(
        after_help = "Example:\n  corral scm parse https://github.com/acme/app/pull/7 --runner RUNNER_ID"
    )]
    Parse {
        url: String,
        /// The runner to ask (default: the server picks one).
        #[arg(long, value_parser = super::parse_id)]
        runner: Option<String>,
    },
    /// Search repositories on an SCM host.
    #[command(
        after_help = "Example:\n  corral scm search app --runner RUNNER_ID --host github.com"
    )]
    Search {
        query: String,
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long, default_value = "")]
        host: String,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// List your organizations on an SCM host.
    #[command(after_help = "Example:\n  corral scm orgs --runner RUNNER_ID --host github.com")]
    Orgs {
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
        #[arg(long)]
        host: String,
        #[arg(long, default_value = "")]
        query: String,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Whether you are signed in to an SCM host, and how to sign in.
    #[command(after_help = "Example:\n  corral scm check-auth github.com --runner RUNNER_ID")]
    CheckAuth {
        host: String,
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
    },
    /// Whether you may read a repository.
    #[command(
        after_help = "Example:\n  corral scm check-access https://github.com/acme/app --runner RUNNER_ID"
    )]
    CheckAccess {
        repository_url: String,
        #[arg(long, value_parser = super::parse_id)]
        runner: String,
    },
}

/// Prints a response message as a vertical table, or as the document.
fn print_response(format: output::Format, response: &Value, columns: &[Column]) -> Outcome {
    match format {
        output::Format::Table => {
            println!("{}", output::vertical(response, columns));
            Ok(())
        }
        _ => output::print_document(format, response),
    }
}

pub async fn run(command: ScmCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let client = api.runners();
    let format = opts.output;
    match command {
        ScmCommand::Parse { url, runner } => {
            let runner_id = runner.unwrap_or_default();
            let response = client
                .parse_context_url(api::ParseContextURLRequest {
                    runner_id,
                    context_url: url.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("parsing {url}"), &e))?
                .into_owned();
            print_response(format, &json(&response)?, CONTEXT_COLUMNS)
        }
        ScmCommand::Search {
            query,
            runner,
            host,
            limit,
        } => {
            let runner_id = runner;
            let repositories = all_pages(limit, |page| {
                let (client, api) = (&client, &api);
                let request = api::SearchRepositoriesRequest {
                    runner_id: runner_id.clone(),
                    search_string: query.clone(),
                    scm_host: host.clone(),
                    pagination: MessageField::some(page),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .search_repositories(request)
                        .await
                        .map_err(|e| api.failure("searching repositories", &e))?
                        .into_owned();
                    let items = json_items(&response.repositories)?;
                    Ok((items, next_token(response.pagination.as_option())))
                }
            })
            .await?;
            output::print_list(format, "repositories", repositories, REPOSITORY_COLUMNS)
        }
        ScmCommand::Orgs {
            runner,
            host,
            query,
            limit,
        } => {
            let runner_id = runner;
            let organizations = all_pages(limit, |page| {
                let (client, api) = (&client, &api);
                let request = api::ListSCMOrganizationsRequest {
                    runner_id: runner_id.clone(),
                    scm_host: host.clone(),
                    query: query.clone(),
                    pagination: MessageField::some(page),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .list_scm_organizations(request)
                        .await
                        .map_err(|e| api.failure("listing SCM organizations", &e))?
                        .into_owned();
                    let items = json_items(&response.organizations)?;
                    Ok((items, next_token(response.pagination.as_option())))
                }
            })
            .await?;
            output::print_list(format, "organizations", organizations, REPOSITORY_COLUMNS)
        }
        ScmCommand::CheckAuth { host, runner } => {
            let runner_id = runner;
            let response = client
                .check_authentication_for_host(api::CheckAuthenticationForHostRequest {
                    runner_id,
                    host: host.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("checking authentication for {host}"), &e))?
                .into_owned();
            print_response(format, &json(&response)?, AUTH_COLUMNS)
        }
        ScmCommand::CheckAccess {
            repository_url,
            runner,
        } => {
            let runner_id = runner;
            let response = client
                .check_repository_access(api::CheckRepositoryAccessRequest {
                    runner_id,
                    repository_url: repository_url.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("checking access to {repository_url}"), &e))?
                .into_owned();
            print_response(format, &json(&response)?, ACCESS_COLUMNS)
        }
    }
}
