//! `gitpod.v1.GroupService`: groups of an organization and their members.
//!
//! Every member of an organization may read its groups; only its admins may
//! change them. The system-managed groups (admins, members) follow the
//! organization roles: they cannot be renamed or deleted, and their members
//! change only through `OrganizationService.SetRole`. Groups of other
//! organizations do not exist for the caller (`not_found`).

use buffa::MessageField;
use chrono::Utc;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::convert::{self, parse_id};
use super::organization::{org_user, own_org};
use crate::auth::caller;
use crate::domain::{Group, GroupFilter, MemberView, Membership, MembershipFilter, new_id};
use crate::errors::store_error;
use crate::pagination::{page_request, page_response};
use crate::state::SharedState;
use crate::store::{Store, StoreError};

const SYSTEM_MEMBERS: &str = "members of system-managed groups follow the organization role; use OrganizationService.SetRole";

/// A group of organization `org_id`; groups of other organizations are not found.
async fn org_group(store: &dyn Store, org_id: Uuid, group_id: Uuid) -> Result<Group, ConnectError> {
    match store.get_group(group_id).await {
        Ok(group) if group.org_id == org_id => Ok(group),
        Ok(_) | Err(StoreError::NotFound(_)) => Err(ConnectError::not_found(format!(
            "group {group_id} not found"
        ))),
        Err(err) => Err(store_error(err)),
    }
}

/// Name clashes get a message that names the group.
fn name_taken(err: StoreError) -> ConnectError {
    match err {
        StoreError::AlreadyExists(_) => ConnectError::already_exists(
            "a group with this name already exists in the organization",
        ),
        other => store_error(other),
    }
}

pub struct Groups {
    state: SharedState,
}

impl Groups {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    fn store(&self) -> &dyn Store {
        self.state.store.as_ref()
    }

    /// The wire group, with its member count.
    async fn wire_group(&self, group: &Group) -> Result<api::Group, ConnectError> {
        let count = self
            .store()
            .count_members(group.id)
            .await
            .map_err(store_error)?;
        Ok(convert::group(group, count))
    }
}

#[protovalidate_buffa::connect_impl]
impl api::GroupService for Groups {
    #[allow(refining_impl_trait)]
    async fn create_group(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateGroupRequest>,
    ) -> ServiceResult<api::CreateGroupResponse> {
        let admin = caller(&ctx)?.org_admin()?;
        if !request.organization_id.is_empty() {
            own_org(admin.org_id, "organization_id", request.organization_id)?;
        }
        let now = Utc::now();
        let group = Group {
            id: new_id(),
            org_id: admin.org_id,
            name: request.name.to_string(),
            description: request.description.to_string(),
            system: None,
            created_at: now,
            updated_at: now,
        };
        self.store()
            .create_group(&group)
            .await
            .map_err(name_taken)?;
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
        let me = caller(&ctx)?.user()?;
        let store = self.store();
        let group = match &request.group {
            Some(Which::Id(id)) => org_group(store, me.org_id, parse_id("id", id)?).await?,
            Some(Which::Name(name)) => match store.get_group_by_name(me.org_id, name).await {
                Ok(group) => group,
                Err(StoreError::NotFound(_)) => {
                    return Err(ConnectError::not_found(format!("group {name:?} not found")));
                }
                Err(err) => return Err(store_error(err)),
            },
            None if !request.group_id.is_empty() => {
                org_group(store, me.org_id, parse_id("group_id", request.group_id)?).await?
            }
            None => {
                return Err(ConnectError::invalid_argument(
                    "id: a group id or name is required",
                ));
            }
        };
        Response::ok(api::GetGroupResponse {
            group: MessageField::some(self.wire_group(&group).await?),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_groups(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListGroupsRequest>,
    ) -> ServiceResult<api::ListGroupsResponse> {
        let me = caller(&ctx)?.user()?;
        let request = request.to_owned_message();
        let page = page_request(&ctx, request.pagination.as_option())?;
        let mut filter = GroupFilter::default();
        if let Some(f) = request.filter.as_option() {
            // corral has no direct-share groups.
            if f.direct_share == Some(true) {
                return Response::ok(api::ListGroupsResponse {
                    pagination: page_response(None),
                    ..Default::default()
                });
            }
            filter = GroupFilter {
                search: f.search.clone(),
                group_ids: convert::parse_ids("filter.group_ids", &f.group_ids)?,
                system: f.system_managed,
            };
        }
        let groups = self
            .store()
            .list_groups(me.org_id, &filter, page)
            .await
            .map_err(store_error)?;
        let mut wire = Vec::with_capacity(groups.items.len());
        for group in &groups.items {
            wire.push(self.wire_group(group).await?);
        }
        Response::ok(api::ListGroupsResponse {
            pagination: page_response(groups.next_after),
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
        let admin = caller(&ctx)?.org_admin()?;
        let group_id = parse_id("group_id", request.group_id)?;
        let group = org_group(self.store(), admin.org_id, group_id).await?;
        let name = request.name.to_string();
        let description = request.description.to_string();
        if group.system.is_some() && name != group.name {
            return Err(ConnectError::failed_precondition(
                "system-managed groups cannot be renamed",
            ));
        }
        let updated = self
            .store()
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
            .await
            .map_err(name_taken)?;
        Response::ok(api::UpdateGroupResponse {
            group: MessageField::some(self.wire_group(&updated).await?),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn delete_group(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteGroupRequest>,
    ) -> ServiceResult<api::DeleteGroupResponse> {
        let admin = caller(&ctx)?.org_admin()?;
        let group_id = parse_id("group_id", request.group_id)?;
        let group = org_group(self.store(), admin.org_id, group_id).await?;
        if group.system.is_some() {
            return Err(ConnectError::failed_precondition(
                "system-managed groups cannot be deleted",
            ));
        }
        // Memberships and runner policies of the group go with it.
        self.store()
            .delete_group(group.id)
            .await
            .map_err(store_error)?;
        Response::ok(api::DeleteGroupResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn create_membership(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateMembershipRequest>,
    ) -> ServiceResult<api::CreateMembershipResponse> {
        let admin = caller(&ctx)?.org_admin()?;
        let request = request.to_owned_message();
        let group_id = parse_id("group_id", &request.group_id)?;
        let user_id = convert::user_subject("subject", request.subject.as_option())?;
        let store = self.store();
        let group = org_group(store, admin.org_id, group_id).await?;
        if group.system.is_some() {
            return Err(ConnectError::failed_precondition(SYSTEM_MEMBERS));
        }
        let user = org_user(store, admin.org_id, user_id).await?;
        let membership = Membership {
            id: new_id(),
            group_id: group.id,
            user_id: user.id,
            created_at: Utc::now(),
        };
        store
            .create_membership(&membership)
            .await
            .map_err(store_error)?;
        Response::ok(api::CreateMembershipResponse {
            member: MessageField::some(convert::membership(&MemberView { membership, user })),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn delete_membership(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteMembershipRequest>,
    ) -> ServiceResult<api::DeleteMembershipResponse> {
        let admin = caller(&ctx)?.org_admin()?;
        let id = parse_id("membership_id", request.membership_id)?;
        let store = self.store();
        let not_found = || ConnectError::not_found(format!("membership {id} not found"));
        let membership = match store.get_membership(id).await {
            Ok(membership) => membership,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(err) => return Err(store_error(err)),
        };
        let group = org_group(store, admin.org_id, membership.group_id)
            .await
            .map_err(|_| not_found())?;
        if group.system.is_some() {
            return Err(ConnectError::failed_precondition(SYSTEM_MEMBERS));
        }
        store.delete_membership(id).await.map_err(store_error)?;
        Response::ok(api::DeleteMembershipResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn get_membership(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetMembershipRequest>,
    ) -> ServiceResult<api::GetMembershipResponse> {
        let me = caller(&ctx)?.user()?;
        let request = request.to_owned_message();
        let group_id = parse_id("group_id", &request.group_id)?;
        let user_id = convert::user_subject("subject", request.subject.as_option())?;
        let store = self.store();
        let group = org_group(store, me.org_id, group_id).await?;
        let not_member = || {
            ConnectError::not_found(format!(
                "user {user_id} is not a member of group {group_id}"
            ))
        };
        let membership = store
            .find_membership(group.id, user_id)
            .await
            .map_err(store_error)?
            .ok_or_else(not_member)?;
        let user = org_user(store, me.org_id, user_id)
            .await
            .map_err(|_| not_member())?;
        Response::ok(api::GetMembershipResponse {
            member: MessageField::some(convert::membership(&MemberView { membership, user })),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_memberships(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListMembershipsRequest>,
    ) -> ServiceResult<api::ListMembershipsResponse> {
        let me = caller(&ctx)?.user()?;
        let request = request.to_owned_message();
        let group_id = parse_id("group_id", &request.group_id)?;
        let page = page_request(&ctx, request.pagination.as_option())?;
        let store = self.store();
        let group = org_group(store, me.org_id, group_id).await?;
        let filter = MembershipFilter {
            search: request
                .filter
                .as_option()
                .map(|f| f.search.clone())
                .unwrap_or_default(),
        };
        let members = store
            .list_memberships(group.id, &filter, page)
            .await
            .map_err(store_error)?;
        Response::ok(api::ListMembershipsResponse {
            pagination: page_response(members.next_after),
            members: members.items.iter().map(convert::membership).collect(),
            ..Default::default()
        })
    }
}
