//! `gitpod.v1.OrganizationService`: the caller's organization, its members and
//! their roles. Other organizations do not exist for the caller (`not_found`).

use buffa::MessageField;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::convert::{self, parse_id, parse_ids};
use crate::authz::access;
use crate::domain::OrgMemberFilter;

/// The organization id a request names, which must be the caller's own
/// (where the request creates something in it).
pub(super) fn own_org(caller_org: Uuid, field: &str, value: &str) -> Result<Uuid, ConnectError> {
    let id = parse_id(field, value)?;
    if id != caller_org {
        return Err(ConnectError::not_found(format!(
            "organization {id} not found"
        )));
    }
    Ok(id)
}

/// Enum values of a list filter mapped to ours: `None` when the filter names
/// values of which corral has none, so that nothing can match.
fn known<W, D: PartialEq>(values: &[W], map: impl Fn(&W) -> Option<D>) -> Option<Vec<D>> {
    let mapped = convert::distinct(values.iter().filter_map(map));
    (values.is_empty() || !mapped.is_empty()).then_some(mapped)
}

/// Needs nothing but the caller's access.
pub struct Organizations;

#[protovalidate_buffa::connect_impl]
impl api::OrganizationService for Organizations {
    #[allow(refining_impl_trait)]
    async fn get_organization(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetOrganizationRequest>,
    ) -> ServiceResult<api::GetOrganizationResponse> {
        // Runners may read their own organization too.
        let access = access(&ctx)?;
        let org_id = parse_id("organization_id", request.organization_id)?;
        let org = access.organization(org_id).await?;
        Response::ok(api::GetOrganizationResponse {
            organization: MessageField::some(convert::organization(&org)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_members(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListMembersRequest>,
    ) -> ServiceResult<api::ListMembersResponse> {
        let access = access(&ctx)?;
        let mut request = request.to_owned_message();
        let paging = access.paging(&ctx, request.pagination.take(), &request)?;
        let org_id = parse_id("organization_id", &request.organization_id)?;
        let mut filter = OrgMemberFilter::default();
        if let Some(f) = request.filter.as_option() {
            let roles = known(&f.roles, |r| {
                convert::org_role_from("filter.roles", *r).ok()
            });
            let statuses = known(&f.statuses, |s| convert::user_status_from(*s));
            let (Some(roles), Some(statuses)) = (roles, statuses) else {
                return Response::ok(api::ListMembersResponse {
                    pagination: paging.response(None),
                    ..Default::default()
                });
            };
            filter = OrgMemberFilter {
                search: f.search.clone(),
                email: f.email.clone(),
                user_ids: parse_ids("filter.user_ids", &f.user_ids)?,
                roles,
                statuses,
                exclude_group_ids: parse_ids("filter.exclude_group_ids", &f.exclude_group_ids)?,
                exclude_members_in_any_team: f.exclude_members_in_any_team,
            };
        }
        let members = access.list_members(org_id, &filter, paging.request).await?;
        Response::ok(api::ListMembersResponse {
            pagination: paging.response(members.next_after),
            members: members.items.iter().map(convert::org_member).collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn set_role(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::SetRoleRequest>,
    ) -> ServiceResult<api::SetRoleResponse> {
        let access = access(&ctx)?;
        let org_id = parse_id("organization_id", request.organization_id)?;
        let role = convert::org_role_from("role", request.role)?;
        let user_id = parse_id("user_id", request.user_id)?;
        access.set_role(org_id, user_id, role).await?;
        Response::ok(api::SetRoleResponse::default())
    }
}
