//! `gitpod.v1.UserService`: the caller, the users of their organization, and
//! personal access tokens.
//!
//! A token is visible to its owner and to the admins of the owner's
//! organization; to anyone else it does not exist (`not_found`).

use buffa::MessageField;
use chrono::{TimeDelta, Utc};
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::convert::{self, parse_id};
use super::organization::org_user;
use crate::auth::{UserCaller, caller};
use crate::bootstrap::{PersonalTokenSpec, create_personal_token};
use crate::domain::{ApiToken, OrgRole, Subject, TokenKind};
use crate::errors::{invalid_field, store_error};
use crate::pagination::{page_request, page_response};
use crate::state::SharedState;
use crate::store::StoreError;

/// How long a token lives when the request does not say.
const DEFAULT_VALIDITY: TimeDelta = TimeDelta::days(30);
/// The longest a token may live.
const MAX_VALIDITY: TimeDelta = TimeDelta::days(90);

pub struct Users {
    state: SharedState,
}

impl Users {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    /// A personal access token the caller may see: their own, or, for an
    /// admin, one of a user of their organization.
    async fn visible_token(&self, caller: &UserCaller, id: Uuid) -> Result<ApiToken, ConnectError> {
        let not_found = || ConnectError::not_found(format!("personal access token {id} not found"));
        let token = match self.state.store.get_token(id).await {
            Ok(token) => token,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(err) => return Err(store_error(err)),
        };
        let Subject::User(owner) = token.subject else {
            return Err(not_found());
        };
        let visible = token.kind == TokenKind::Personal
            && token.org_id == caller.org_id
            && (owner == caller.user.id || caller.role == OrgRole::Admin);
        if !visible {
            return Err(not_found());
        }
        Ok(token)
    }
}

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
        let me = caller(&ctx)?.user()?;
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
        let caller = caller(&ctx)?;
        let user_id = parse_id("user_id", request.user_id)?;
        let user = org_user(self.state.store.as_ref(), caller.org_id(), user_id).await?;
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
        let me = caller(&ctx)?.user()?;
        let request = request.to_owned_message();
        let store = self.state.store.as_ref();
        let target = if request.user_id.is_empty() {
            me.user.clone()
        } else {
            let user_id = parse_id("user_id", &request.user_id)?;
            if user_id == me.user.id {
                me.user.clone()
            } else if me.role == OrgRole::Admin {
                org_user(store, me.org_id, user_id).await?
            } else {
                return Err(ConnectError::permission_denied(
                    "only organization admins may create tokens for other users",
                ));
            }
        };
        if me.read_only && !request.read_only {
            return Err(ConnectError::permission_denied(
                "a read-only token can only create read-only tokens",
            ));
        }
        let expires_at = Utc::now() + validity(request.valid_for.as_option())?;
        let spec = PersonalTokenSpec {
            description: &request.description,
            read_only: request.read_only,
            expires_at: Some(expires_at),
        };
        let (_, token) = create_personal_token(store, &target, Subject::User(me.user.id), &spec)
            .await
            .map_err(store_error)?;
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
        let me = caller(&ctx)?.user()?;
        let id = parse_id("personal_access_token_id", request.personal_access_token_id)?;
        let token = self.visible_token(me, id).await?;
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
        let me = caller(&ctx)?.user()?;
        let request = request.to_owned_message();
        let page = page_request(&ctx, request.pagination.as_option())?;
        let store = self.state.store.as_ref();
        let requested = match request.filter.as_option() {
            Some(filter) => convert::parse_ids("filter.user_ids", &filter.user_ids)?,
            None => Vec::new(),
        };
        // Only the caller's own tokens, unless an admin asks for other users
        // of their organization; the others' tokens are not there for them.
        let mut user_ids = Vec::new();
        if requested.is_empty() {
            user_ids.push(me.user.id);
        }
        for id in requested {
            if user_ids.contains(&id) {
                continue;
            }
            if id == me.user.id {
                user_ids.push(id);
            } else if me.role == OrgRole::Admin {
                match org_user(store, me.org_id, id).await {
                    Ok(_) => user_ids.push(id),
                    Err(err) if err.code == connectrpc::ErrorCode::NotFound => {}
                    Err(err) => return Err(err),
                }
            }
        }
        if user_ids.is_empty() {
            return Response::ok(api::ListPersonalAccessTokensResponse {
                pagination: page_response(None),
                ..Default::default()
            });
        }
        let tokens = store
            .list_user_tokens(&user_ids, page)
            .await
            .map_err(store_error)?;
        Response::ok(api::ListPersonalAccessTokensResponse {
            pagination: page_response(tokens.next_after),
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
        let me = caller(&ctx)?.user()?;
        let id = parse_id("personal_access_token_id", request.personal_access_token_id)?;
        let token = self.visible_token(me, id).await?;
        self.state
            .store
            .delete_token(token.id)
            .await
            .map_err(store_error)?;
        Response::ok(api::DeletePersonalAccessTokenResponse::default())
    }
}
