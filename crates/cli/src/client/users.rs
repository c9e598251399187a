//! `corral whoami`, `corral users …`, `corral pats …` and `corral members …`:
//! IdentityService, UserService (users and personal access tokens) and
//! OrganizationService (members and their roles).

use buffa::MessageField;
use clap::{Subcommand, ValueEnum};
use corral_api::gitpod::v1 as api;
use serde_json::{Value, json as json_value};

use super::output::{self, Column, col, enum_col, flag_col};
use super::{Api, ClientOpts, Failure, Outcome, all_pages, confirm, json, json_items, next_token};

const USER_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("EMAIL", "email"),
    col("NAME", "name"),
    enum_col("STATUS", "status", "USER_STATUS_"),
    col("ORGANIZATION", "organizationId"),
    col("CREATED", "createdAt"),
];

const PAT_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("DESCRIPTION", "description"),
    flag_col("READ ONLY", "readOnly"),
    col("CREATED", "createdAt"),
    col("EXPIRES", "expiresAt"),
    col("LAST USED", "lastUsed"),
];

const MEMBER_COLUMNS: &[Column] = &[
    col("USER", "userId"),
    col("EMAIL", "email"),
    col("NAME", "fullName"),
    enum_col("ROLE", "role", "ORGANIZATION_ROLE_"),
    enum_col("STATUS", "status", "USER_STATUS_"),
    col("SINCE", "memberSince"),
];

#[derive(Subcommand)]
pub enum UserCommand {
    /// Show yourself (the user the token belongs to).
    #[command(after_help = "Example:\n  corral users whoami")]
    Whoami,
    /// Show a user of your organization.
    #[command(after_help = "Example:\n  corral users get USER_ID")]
    Get {
        #[arg(value_parser = super::parse_id)]
        user_id: String,
    },
}

#[derive(Subcommand)]
pub enum PatCommand {
    /// List your personal access tokens (never the tokens themselves).
    #[command(after_help = "Example:\n  corral pats list")]
    List {
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show one personal access token's details.
    #[command(after_help = "Example:\n  corral pats get PAT_ID")]
    Get {
        #[arg(value_parser = super::parse_id)]
        pat_id: String,
    },
    /// Create a personal access token and print it (last line; shown only now).
    #[command(
        after_help = "Examples:\n  corral pats create --description ci --valid-for 30d\n  \
        corral pats create --description dashboards --valid-for 90d --read-only"
    )]
    Create {
        #[arg(long, default_value = "")]
        description: String,
        /// How long it is valid (at most 90d), e.g. 24h, 30d.
        #[arg(long, value_parser = humantime::parse_duration)]
        valid_for: std::time::Duration,
        /// Only calls that change nothing.
        #[arg(long)]
        read_only: bool,
    },
    /// Delete (revoke) a personal access token.
    #[command(after_help = "Example:\n  corral pats delete PAT_ID --yes")]
    Delete {
        #[arg(value_parser = super::parse_id)]
        pat_id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OrgRole {
    Admin,
    Member,
}

#[derive(Subcommand)]
pub enum MemberCommand {
    /// List your organization's members.
    #[command(
        after_help = "Examples:\n  corral members list\n  corral members list --search alice"
    )]
    List {
        /// Only members whose name or email contains this.
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Make a member an organization admin or a plain member.
    #[command(after_help = "Example:\n  corral members set-role USER_ID admin")]
    SetRole {
        #[arg(value_parser = super::parse_id)]
        user_id: String,
        #[arg(value_enum)]
        role: OrgRole,
    },
}

/// The caller's identity, and their user when they are one.
pub async fn whoami(opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let identity = api
        .identity()
        .get_authenticated_identity(api::GetAuthenticatedIdentityRequest::default())
        .await
        .map_err(|e| api.failure("who am I", &e))?
        .into_owned();
    let is_user = identity
        .subject
        .as_option()
        .is_some_and(|s| s.principal.as_known() == Some(api::Principal::PRINCIPAL_USER));
    let user = if is_user {
        let response = api
            .users()
            .get_authenticated_user(api::GetAuthenticatedUserRequest::default())
            .await
            .map_err(|e| api.failure("who am I", &e))?
            .into_owned();
        json(&response.user)?
    } else {
        Value::Null
    };
    let identity = json(&identity)?;
    let columns = [
        col("SERVER", "server"),
        enum_col("PRINCIPAL", "identity.subject.principal", "PRINCIPAL_"),
        col("ID", "identity.subject.id"),
        col("EMAIL", "user.email"),
        col("NAME", "user.name"),
        col("ORGANIZATION", "identity.organizationId"),
    ];
    let shown = json_value!({"server": api.url(), "identity": identity, "user": user});
    match opts.output {
        output::Format::Table => {
            println!("{}", output::vertical(&shown, &columns));
            Ok(())
        }
        format => output::print_document(format, &shown),
    }
}

pub async fn run_user(command: UserCommand, opts: &ClientOpts) -> Outcome {
    match command {
        UserCommand::Whoami => whoami(opts).await,
        UserCommand::Get { user_id } => {
            let id = user_id;
            let api = Api::from_saved()?;
            let response = api
                .users()
                .get_user(api::GetUserRequest {
                    user_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("user {id}"), &e))?
                .into_owned();
            output::print_item(opts.output, &json(&response)?, "user", USER_COLUMNS)
        }
    }
}

pub async fn run_pat(command: PatCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let client = api.users();
    let format = opts.output;
    match command {
        PatCommand::List { limit } => {
            let pats = all_pages(limit, |page| {
                let client = &client;
                let api = &api;
                async move {
                    let response = client
                        .list_personal_access_tokens(api::ListPersonalAccessTokensRequest {
                            pagination: MessageField::some(page),
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| api.failure("listing personal access tokens", &e))?
                        .into_owned();
                    let next = next_token(response.pagination.as_option());
                    let items = json_items(&response.personal_access_tokens)?;
                    Ok((items, next))
                }
            })
            .await?;
            output::print_list(format, "personalAccessTokens", pats, PAT_COLUMNS)
        }
        PatCommand::Get { pat_id } => {
            let id = pat_id;
            let response = client
                .get_personal_access_token(api::GetPersonalAccessTokenRequest {
                    personal_access_token_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("personal access token {id}"), &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "pat", PAT_COLUMNS)
        }
        PatCommand::Create {
            description,
            valid_for,
            read_only,
        } => {
            let seconds = i64::try_from(valid_for.as_secs())
                .map_err(|_| Failure::usage("--valid-for is too long"))?;
            // The token is for the caller: the API wants their user id.
            let me = client
                .get_authenticated_user(api::GetAuthenticatedUserRequest::default())
                .await
                .map_err(|e| api.failure("who am I", &e))?
                .into_owned();
            let user_id = me
                .user
                .as_option()
                .map(|u| u.id.clone())
                .unwrap_or_default();
            let response = client
                .create_personal_access_token(api::CreatePersonalAccessTokenRequest {
                    user_id,
                    description,
                    valid_for: MessageField::some(buffa_types::google::protobuf::Duration {
                        seconds,
                        ..Default::default()
                    }),
                    read_only,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("creating the personal access token", &e))?
                .into_owned();
            let sentence = format!(
                "personal access token created; it is shown only now:\n{}",
                response.token
            );
            output::print_done(format, &json(&response)?, &sentence)
        }
        PatCommand::Delete { pat_id, yes } => {
            let id = pat_id;
            confirm(&format!("delete personal access token {id}?"), yes)?;
            let response = client
                .delete_personal_access_token(api::DeletePersonalAccessTokenRequest {
                    personal_access_token_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("deleting personal access token {id}"), &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("personal access token {id} deleted"),
            )
        }
    }
}

pub async fn run_member(command: MemberCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let organization_id = api.organization_id().await?;
    let client = api.organizations();
    let format = opts.output;
    match command {
        MemberCommand::List { search, limit } => {
            let members = all_pages(limit, |page| {
                let (client, api) = (&client, &api);
                let request = api::ListMembersRequest {
                    pagination: MessageField::some(page),
                    organization_id: organization_id.clone(),
                    filter: MessageField::some(api::list_members_request::Filter {
                        search: search.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .list_members(request)
                        .await
                        .map_err(|e| api.failure("listing members", &e))?
                        .into_owned();
                    let next = next_token(response.pagination.as_option());
                    let items = json_items(&response.members)?;
                    Ok((items, next))
                }
            })
            .await?;
            output::print_list(format, "members", members, MEMBER_COLUMNS)
        }
        MemberCommand::SetRole { user_id, role } => {
            let id = user_id;
            let proto = match role {
                OrgRole::Admin => api::OrganizationRole::ORGANIZATION_ROLE_ADMIN,
                OrgRole::Member => api::OrganizationRole::ORGANIZATION_ROLE_MEMBER,
            };
            let response = client
                .set_role(api::SetRoleRequest {
                    organization_id,
                    user_id: id.clone(),
                    role: proto.into(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("setting the role of user {id}"), &e))?
                .into_owned();
            let role = match role {
                OrgRole::Admin => "admin",
                OrgRole::Member => "member",
            };
            output::print_done(
                format,
                &json(&response)?,
                &format!("user {id} is now {role}"),
            )
        }
    }
}
