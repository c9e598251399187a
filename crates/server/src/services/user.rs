//! `gitpod.v1.UserService`: the caller, the users of their organization, and
//! personal access tokens.
//!
//! A token is visible to its owner and to the admins of the owner's
//! organization; to anyone else it does not exist (`not_found`).

use buffa::MessageField;
use chrono::{TimeDelta, Utc};
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;

use super::convert::{self, parse_id, parse_ids};
use crate::authz::access;
use crate::bootstrap::PersonalTokenSpec;
use crate::errors::invalid_field;

/// How long a token lives when the request does not say.
const DEFAULT_VALIDITY: TimeDelta = TimeDelta::days(30);
/// The longest a token may live.
const MAX_VALIDITY: TimeDelta = TimeDelta::days(90);

/// Needs nothing but the caller's access.
pub struct Users;

/// The lifetime a create request asks for: unset or zero means the default.
fn validity(
    valid_for: Option<&buffa_types::google::protobuf::Duration>,
) -> Result<TimeDelta, ConnectError> {
    let Some(d) = valid_for else {
        return Ok(DEFAULT_VALIDITY);
    };
    let too_long = || invalid_field("valid_for", "value must be at most 90 days");
    if d.seconds < 0 || d.nanos < 0 {
        return Err(invalid_field("valid_for", "value must not be negative"));
    }
    if d.seconds > MAX_VALIDITY.num_seconds() {
        return Err(too_long());
    }
    let span = TimeDelta::seconds(d.seconds) + TimeDelta::nanoseconds(d.nanos.into());
    if span > MAX_VALIDITY {
        return Err(too_long());
    }
    Ok(if span.is_zero() {
        DEFAULT_VALIDITY
    } else {
        span
    })
}

#[protovalidate_buffa::connect_impl]
impl api::UserService for Users {
    #[allow(refining_impl_trait)]
    async fn get_authenticated_user(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, api::GetAuthenticatedUserRequest>,
    ) -> ServiceResult<api::GetAuthenticatedUserResponse> {
        let me = access(&ctx)?.user()?;
        Response::ok(api::GetAuthenticatedUserResponse {
            user: MessageField::some(convert::user(&me.user)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_user(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetUserRequest>,
    ) -> ServiceResult<api::GetUserResponse> {
        let user_id = parse_id("user_id", request.user_id)?;
        let user = access(&ctx)?.org_user(user_id).await?;
        Response::ok(api::GetUserResponse {
            user: MessageField::some(convert::user(&user)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn create_personal_access_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreatePersonalAccessTokenRequest>,
    ) -> ServiceResult<api::CreatePersonalAccessTokenResponse> {
        let access = access(&ctx)?;
        let request = request.to_owned_message();
        let owner = if request.user_id.is_empty() {
            None
        } else {
            Some(parse_id("user_id", &request.user_id)?)
        };
        let expires_at = Utc::now() + validity(request.valid_for.as_option())?;
        let spec = PersonalTokenSpec {
            description: &request.description,
            read_only: request.read_only,
            expires_at: Some(expires_at),
        };
        let (_, token) = access.create_personal_token(owner, &spec).await?;
        Response::ok(api::CreatePersonalAccessTokenResponse {
            token,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_personal_access_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetPersonalAccessTokenRequest>,
    ) -> ServiceResult<api::GetPersonalAccessTokenResponse> {
        let id = parse_id("personal_access_token_id", request.personal_access_token_id)?;
        let token = access(&ctx)?.personal_token(id).await?;
        Response::ok(api::GetPersonalAccessTokenResponse {
            pat: MessageField::some(convert::personal_access_token(&token)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_personal_access_tokens(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListPersonalAccessTokensRequest>,
    ) -> ServiceResult<api::ListPersonalAccessTokensResponse> {
        let access = access(&ctx)?;
        let mut request = request.to_owned_message();
        let paging = access.paging(&ctx, request.pagination.take(), &request)?;
        let requested = match request.filter.as_option() {
            Some(filter) => parse_ids("filter.user_ids", &filter.user_ids)?,
            None => Vec::new(),
        };
        // Tokens of users the caller may not see are simply not there.
        let tokens = access
            .list_personal_tokens(&requested, paging.request)
            .await?;
        Response::ok(api::ListPersonalAccessTokensResponse {
            pagination: paging.response(tokens.next_after),
            personal_access_tokens: tokens
                .items
                .iter()
                .map(convert::personal_access_token)
                .collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn delete_personal_access_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeletePersonalAccessTokenRequest>,
    ) -> ServiceResult<api::DeletePersonalAccessTokenResponse> {
        let id = parse_id("personal_access_token_id", request.personal_access_token_id)?;
        access(&ctx)?.delete_personal_token(id).await?;
        Response::ok(api::DeletePersonalAccessTokenResponse::default())
    }
}
