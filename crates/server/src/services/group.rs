//! `gitpod.v1.GroupService`: groups of an organization and their members.
//!
//! Every member of an organization may read its groups; only its admins may
//! change them (`authz`). The system-managed groups (admins, members) follow
//! the organization roles: they cannot be renamed or deleted, and their
//! members change only through `OrganizationService.SetRole`. Groups of
//! other organizations do not exist for the caller (`not_found`).

use buffa::MessageField;
use chrono::Utc;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;

use super::convert::{self, parse_id, parse_ids};
use super::organization::own_org;
use crate::authz::{Access, access};
use crate::domain::{Group, GroupFilter, MembershipFilter, new_id};
use crate::store::StoreError;

const SYSTEM_MEMBERS: &str = "members of system-managed groups follow the organization role; use OrganizationService.SetRole";

/// Needs nothing but the caller's access.
pub struct Groups;

/// The wire group, with its member count.
async fn wire_group(access: &Access, group: &Group) -> Result<api::Group, ConnectError> {
    Ok(wire_groups(access, std::slice::from_ref(group))
        .await?
        .remove(0))
}

/// `groups` on the wire, with their member counts read at once.
async fn wire_groups(access: &Access, groups: &[Group]) -> Result<Vec<api::Group>, ConnectError> {
    let counts = access.member_counts(groups).await?;
    Ok(groups
        .iter()
        .zip(counts)
        .map(|(group, count)| convert::group(group, count))
        .collect())
}

#[protovalidate_buffa::connect_impl]
impl api::GroupService for Groups {
    #[allow(refining_impl_trait)]
    async fn create_group(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateGroupRequest>,
    ) -> ServiceResult<api::CreateGroupResponse> {
        let access = access(&ctx)?;
        let org_id = access.org_id()?;
        if !request.organization_id.is_empty() {
            own_org(org_id, "organization_id", request.organization_id)?;
        }
        let now = Utc::now();
        let group = Group {
            id: new_id(),
            org_id,
            name: request.name.to_string(),
            description: request.description.to_string(),
            system: None,
            created_at: now,
            updated_at: now,
        };
        access.create_group(&group).await?;
        Response::ok(api::CreateGroupResponse {
            group: MessageField::some(convert::group(&group, 0)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_group(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetGroupRequest>,
    ) -> ServiceResult<api::GetGroupResponse> {
        use api::__buffa::view::oneof::get_group_request::Group as Which;
        let access = access(&ctx)?;
        let group = match &request.group {
            Some(Which::Id(id)) => access.group(parse_id("id", id)?).await?,
            Some(Which::Name(name)) => access.group_by_name(name).await?,
            None if !request.group_id.is_empty() => {
                access
                    .group(parse_id("group_id", request.group_id)?)
                    .await?
            }
            None => {
                return Err(ConnectError::invalid_argument(
                    "id: a group id or name is required",
                ));
            }
        };
        Response::ok(api::GetGroupResponse {
            group: MessageField::some(wire_group(access, &group).await?),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_groups(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListGroupsRequest>,
    ) -> ServiceResult<api::ListGroupsResponse> {
        let access = access(&ctx)?;
        let mut request = request.to_owned_message();
        let paging = access.paging(&ctx, request.pagination.take(), &request)?;
        let mut filter = GroupFilter::default();
        if let Some(f) = request.filter.as_option() {
            // corral has no direct-share groups.
            if f.direct_share == Some(true) {
                return Response::ok(api::ListGroupsResponse {
                    pagination: paging.response(None),
                    ..Default::default()
                });
            }
            filter = GroupFilter {
                search: f.search.clone(),
                group_ids: parse_ids("filter.group_ids", &f.group_ids)?,
                system: f.system_managed,
            };
        }
        let groups = access.list_groups(&filter, paging.request).await?;
        let wire = wire_groups(access, &groups.items).await?;
        Response::ok(api::ListGroupsResponse {
            pagination: paging.response(groups.next_after),
            groups: wire,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_group(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::UpdateGroupRequest>,
    ) -> ServiceResult<api::UpdateGroupResponse> {
        let access = access(&ctx)?;
        let group_id = parse_id("group_id", request.group_id)?;
        let name = request.name.to_string();
        let description = request.description.to_string();
        let updated = access
            .update_group(
                group_id,
                Box::new(move |g: &mut Group| {
                    if g.system.is_some() && g.name != name {
                        return Err(StoreError::Conflict(
                            "system-managed groups cannot be renamed".into(),
                        ));
                    }
                    g.name = name;
                    g.description = description;
                    g.updated_at = Utc::now();
                    Ok(())
                }),
            )
            .await?;
        Response::ok(api::UpdateGroupResponse {
            group: MessageField::some(wire_group(access, &updated).await?),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn delete_group(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteGroupRequest>,
    ) -> ServiceResult<api::DeleteGroupResponse> {
        let access = access(&ctx)?;
        let group = access
            .group(parse_id("group_id", request.group_id)?)
            .await?;
        if group.system.is_some() {
            return Err(ConnectError::failed_precondition(
                "system-managed groups cannot be deleted",
            ));
        }
        // Memberships and runner policies of the group go with it.
        access.delete_group(&group).await?;
        Response::ok(api::DeleteGroupResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn create_membership(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateMembershipRequest>,
    ) -> ServiceResult<api::CreateMembershipResponse> {
        let access = access(&ctx)?;
        let request = request.to_owned_message();
        let group_id = parse_id("group_id", &request.group_id)?;
        let user_id = convert::user_subject("subject", request.subject.as_option())?;
        let group = access.group(group_id).await?;
        if group.system.is_some() {
            return Err(ConnectError::failed_precondition(SYSTEM_MEMBERS));
        }
        let member = access.create_membership(&group, user_id).await?;
        Response::ok(api::CreateMembershipResponse {
            member: MessageField::some(convert::membership(&member)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn delete_membership(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteMembershipRequest>,
    ) -> ServiceResult<api::DeleteMembershipResponse> {
        let access = access(&ctx)?;
        let id = parse_id("membership_id", request.membership_id)?;
        let (membership, group) = access.membership_by_id(id).await?;
        if group.system.is_some() {
            return Err(ConnectError::failed_precondition(SYSTEM_MEMBERS));
        }
        access.delete_membership(&membership, &group).await?;
        Response::ok(api::DeleteMembershipResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn get_membership(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetMembershipRequest>,
    ) -> ServiceResult<api::GetMembershipResponse> {
        let access = access(&ctx)?;
        let request = request.to_owned_message();
        let group_id = parse_id("group_id", &request.group_id)?;
        let user_id = convert::user_subject("subject", request.subject.as_option())?;
        let group = access.group(group_id).await?;
        let member = access.membership(&group, user_id).await?;
        Response::ok(api::GetMembershipResponse {
            member: MessageField::some(convert::membership(&member)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_memberships(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListMembershipsRequest>,
    ) -> ServiceResult<api::ListMembershipsResponse> {
        let access = access(&ctx)?;
        let mut request = request.to_owned_message();
        let paging = access.paging(&ctx, request.pagination.take(), &request)?;
        let group_id = parse_id("group_id", &request.group_id)?;
        let group = access.group(group_id).await?;
        let filter = MembershipFilter {
            search: request
                .filter
                .as_option()
                .map(|f| f.search.clone())
                .unwrap_or_default(),
        };
        let members = access
            .list_memberships(&group, &filter, paging.request)
            .await?;
        Response::ok(api::ListMembershipsResponse {
            pagination: paging.response(members.next_after),
            members: members.items.iter().map(convert::membership).collect(),
            ..Default::default()
        })
    }
}
