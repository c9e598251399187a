//! `corral groups …`: GroupService's groups and their memberships.

use buffa::MessageField;
use clap::Subcommand;
use corral_api::gitpod::v1 as api;

use super::output::{self, Column, col, count_col, enum_col, flag_col};
use super::{Api, ClientOpts, Failure, Outcome, all_pages, confirm, json, json_items, next_token};

const GROUP_COLUMNS: &[Column] = &[
    col("ID", "id"),
    col("NAME", "name"),
    count_col("MEMBERS", "memberCount"),
    flag_col("SYSTEM", "systemManaged"),
    col("DESCRIPTION", "description"),
    col("CREATED", "createdAt"),
];

const MEMBERSHIP_COLUMNS: &[Column] = &[
    col("MEMBERSHIP", "id"),
    col("SUBJECT", "subject.id"),
    enum_col("PRINCIPAL", "subject.principal", "PRINCIPAL_"),
    col("NAME", "name"),
];

#[derive(Subcommand)]
pub enum GroupCommand {
    /// List the groups of your organization.
    #[command(
        after_help = "Examples:\n  corral groups list\n  corral groups list --search platform"
    )]
    List {
        #[arg(long)]
        search: Option<String>,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Show a group.
    #[command(after_help = "Example:\n  corral groups get GROUP_ID")]
    Get {
        #[arg(value_parser = super::parse_id)]
        group_id: String,
    },
    /// Create a group.
    #[command(
        after_help = "Example:\n  corral groups create --name platform --description \"Platform team\""
    )]
    Create {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Rename a group or change its description.
    #[command(after_help = "Example:\n  corral groups update GROUP_ID --name platform-team")]
    Update {
        #[arg(value_parser = super::parse_id)]
        group_id: String,
        #[arg(long)]
        name: Option<String>,
        #[arg(long)]
        description: Option<String>,
    },
    /// Delete a group (asks first; --yes to skip the question).
    #[command(after_help = "Example:\n  corral groups delete GROUP_ID --yes")]
    Delete {
        #[arg(value_parser = super::parse_id)]
        group_id: String,
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// List a group's members.
    #[command(after_help = "Example:\n  corral groups members GROUP_ID")]
    Members {
        #[arg(value_parser = super::parse_id)]
        group_id: String,
        #[arg(long)]
        limit: Option<usize>,
    },
    /// Add a user to a group.
    #[command(after_help = "Example:\n  corral groups add-member GROUP_ID --user USER_ID")]
    AddMember {
        #[arg(value_parser = super::parse_id)]
        group_id: String,
        #[arg(long, value_parser = super::parse_id)]
        user: String,
    },
    /// Remove a user from a group.
    #[command(after_help = "Example:\n  corral groups remove-member GROUP_ID --user USER_ID")]
    RemoveMember {
        #[arg(value_parser = super::parse_id)]
        group_id: String,
        #[arg(long, value_parser = super::parse_id)]
        user: String,
    },
}

fn user_subject(user_id: String) -> api::Subject {
    api::Subject {
        id: user_id,
        principal: api::Principal::PRINCIPAL_USER.into(),
        ..Default::default()
    }
}

async fn get_group(api: &Api, id: &str) -> Outcome<api::GetGroupResponse> {
    Ok(api
        .groups()
        .get_group(api::GetGroupRequest {
            group: Some(api::get_group_request::Group::Id(id.to_string())),
            ..Default::default()
        })
        .await
        .map_err(|e| api.failure(&format!("group {id}"), &e))?
        .into_owned())
}

pub async fn run(command: GroupCommand, opts: &ClientOpts) -> Outcome {
    let api = Api::from_saved()?;
    let client = api.groups();
    let format = opts.output;
    match command {
        GroupCommand::List { search, limit } => {
            let groups = all_pages(limit, |page| {
                let (client, api) = (&client, &api);
                let request = api::ListGroupsRequest {
                    pagination: MessageField::some(page),
                    filter: MessageField::some(api::list_groups_request::Filter {
                        search: search.clone().unwrap_or_default(),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                async move {
                    let response = client
                        .list_groups(request)
                        .await
                        .map_err(|e| api.failure("listing groups", &e))?
                        .into_owned();
                    let next = next_token(response.pagination.as_option());
                    let items = json_items(&response.groups)?;
                    Ok((items, next))
                }
            })
            .await?;
            output::print_list(format, "groups", groups, GROUP_COLUMNS)
        }
        GroupCommand::Get { group_id } => {
            let id = group_id;
            let response = get_group(&api, &id).await?;
            output::print_item(format, &json(&response)?, "group", GROUP_COLUMNS)
        }
        GroupCommand::Create { name, description } => {
            let organization_id = api.organization_id().await?;
            let response = client
                .create_group(api::CreateGroupRequest {
                    organization_id,
                    name,
                    description,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure("creating the group", &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "group", GROUP_COLUMNS)
        }
        GroupCommand::Update {
            group_id,
            name,
            description,
        } => {
            let id = group_id;
            if name.is_none() && description.is_none() {
                return Err(Failure::usage(
                    "nothing to change: give --name or --description",
                ));
            }
            // UpdateGroup sets both fields: keep the one not given as it is.
            let current = get_group(&api, &id)
                .await?
                .group
                .into_option()
                .unwrap_or_default();
            let response = client
                .update_group(api::UpdateGroupRequest {
                    group_id: id.clone(),
                    name: name.unwrap_or(current.name),
                    description: description.unwrap_or(current.description),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("updating group {id}"), &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "group", GROUP_COLUMNS)
        }
        GroupCommand::Delete { group_id, yes } => {
            let id = group_id;
            confirm(&format!("delete group {id}?"), yes)?;
            let response = client
                .delete_group(api::DeleteGroupRequest {
                    group_id: id.clone(),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("deleting group {id}"), &e))?
                .into_owned();
            output::print_done(format, &json(&response)?, &format!("group {id} deleted"))
        }
        GroupCommand::Members { group_id, limit } => {
            let id = group_id;
            let members = all_pages(limit, |page| {
                let (client, api, id) = (&client, &api, id.clone());
                async move {
                    let response = client
                        .list_memberships(api::ListMembershipsRequest {
                            pagination: MessageField::some(page),
                            group_id: id.clone(),
                            ..Default::default()
                        })
                        .await
                        .map_err(|e| api.failure(&format!("members of group {id}"), &e))?
                        .into_owned();
                    let next = next_token(response.pagination.as_option());
                    let items = json_items(&response.members)?;
                    Ok((items, next))
                }
            })
            .await?;
            output::print_list(format, "members", members, MEMBERSHIP_COLUMNS)
        }
        GroupCommand::AddMember { group_id, user } => {
            let (id, user_id) = (group_id, user);
            let response = client
                .create_membership(api::CreateMembershipRequest {
                    group_id: id.clone(),
                    subject: MessageField::some(user_subject(user_id)),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("adding a member to group {id}"), &e))?
                .into_owned();
            output::print_item(format, &json(&response)?, "member", MEMBERSHIP_COLUMNS)
        }
        GroupCommand::RemoveMember { group_id, user } => {
            let (id, user_id) = (group_id, user);
            let membership = client
                .get_membership(api::GetMembershipRequest {
                    group_id: id.clone(),
                    subject: MessageField::some(user_subject(user_id.clone())),
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("user {user_id} in group {id}"), &e))?
                .into_owned();
            let membership_id = membership
                .member
                .as_option()
                .map(|m| m.id.clone())
                .unwrap_or_default();
            let response = client
                .delete_membership(api::DeleteMembershipRequest {
                    membership_id,
                    ..Default::default()
                })
                .await
                .map_err(|e| api.failure(&format!("removing user {user_id} from group {id}"), &e))?
                .into_owned();
            output::print_done(
                format,
                &json(&response)?,
                &format!("user {user_id} removed from group {id}"),
            )
        }
    }
}
