//! `gitpod.v1.OrganizationService`: the caller's organization, its members and
//! their roles. Other organizations do not exist for the caller (`not_found`).

use buffa::MessageField;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::convert::{self, parse_id};
use crate::auth::caller;
use crate::domain::{OrgMemberFilter, User};
use crate::errors::store_error;
use crate::pagination::{page_request, page_response};
use crate::state::SharedState;
use crate::store::{Store, StoreError};

/// A user of organization `org_id`; users of other organizations are not found.
pub(super) async fn org_user(
    store: &dyn Store,
    org_id: Uuid,
    user_id: Uuid,
) -> Result<User, ConnectError> {
    match store.get_user(user_id).await {
        Ok(user) if user.org_id == org_id => Ok(user),
        Ok(_) | Err(StoreError::NotFound(_)) => {
            Err(ConnectError::not_found(format!("user {user_id} not found")))
        }
        Err(err) => Err(store_error(err)),
    }
}

/// The organization id a request names, which must be the caller's own.
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

pub struct Organizations {
    state: SharedState,
}

impl Organizations {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

#[protovalidate_buffa::connect_impl]
impl api::OrganizationService for Organizations {
    #[allow(refining_impl_trait)]
    async fn get_organization(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetOrganizationRequest>,
    ) -> ServiceResult<api::GetOrganizationResponse> {
        // Runners may read their own organization too.
        let caller = caller(&ctx)?;
        let org_id = own_org(caller.org_id(), "organization_id", request.organization_id)?;
        let org = self
            .state
            .store
            .get_organization(org_id)
            .await
            .map_err(store_error)?;
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
        let me = caller(&ctx)?.user()?;
        let request = request.to_owned_message();
        let org_id = own_org(me.org_id, "organization_id", &request.organization_id)?;
        let page = page_request(&ctx, request.pagination.as_option())?;
        let mut filter = OrgMemberFilter::default();
        if let Some(f) = request.filter.as_option() {
            let roles = known(&f.roles, |r| {
                convert::org_role_from("filter.roles", *r).ok()
            });
            let statuses = known(&f.statuses, |s| convert::user_status_from(*s));
            let (Some(roles), Some(statuses)) = (roles, statuses) else {
                return Response::ok(api::ListMembersResponse {
                    pagination: page_response(None),
                    ..Default::default()
                });
            };
            filter = OrgMemberFilter {
                search: f.search.clone(),
                email: f.email.clone(),
                user_ids: convert::parse_ids("filter.user_ids", &f.user_ids)?,
                roles,
                statuses,
                exclude_group_ids: convert::parse_ids(
                    "filter.exclude_group_ids",
                    &f.exclude_group_ids,
                )?,
                exclude_members_in_any_team: f.exclude_members_in_any_team,
            };
        }
        let members = self
            .state
            .store
            .list_org_members(org_id, &filter, page)
            .await
            .map_err(store_error)?;
        Response::ok(api::ListMembersResponse {
            pagination: page_response(members.next_after),
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
        let admin = caller(&ctx)?.org_admin()?;
        let org_id = own_org(admin.org_id, "organization_id", request.organization_id)?;
        let role = convert::org_role_from("role", request.role)?;
        let user_id = parse_id("user_id", request.user_id)?;
        let store = self.state.store.as_ref();
        let user = org_user(store, org_id, user_id).await?;
        // The store refuses to demote the last admin (failed_precondition).
        store
            .set_org_role(org_id, user.id, role)
            .await
            .map_err(store_error)?;
        Response::ok(api::SetRoleResponse::default())
    }
}
