//! `gitpod.v1.IdentityService`: who is calling, and exchange-token redemption.

use chrono::Utc;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;

use super::convert;
use crate::auth::caller;
use crate::crypto;
use crate::domain::{ApiToken, Subject, TokenKind, new_id};
use crate::errors::store_error;
use crate::state::SharedState;

pub struct Identity {
    state: SharedState,
}

impl Identity {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

#[protovalidate_buffa::connect_impl]
impl api::IdentityService for Identity {
    #[allow(refining_impl_trait)]
    async fn get_authenticated_identity(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, api::GetAuthenticatedIdentityRequest>,
    ) -> ServiceResult<api::GetAuthenticatedIdentityResponse> {
        let caller = caller(&ctx)?;
        Response::ok(api::GetAuthenticatedIdentityResponse {
            subject: convert::subject(caller.subject()),
            organization_id: caller.org_id().to_string(),
            organization_tier: "ORGANIZATION_TIER_ENTERPRISE".into(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn exchange_token(
        &self,
        _ctx: RequestContext,
        request: ServiceRequest<'_, api::ExchangeTokenRequest>,
    ) -> ServiceResult<api::ExchangeTokenResponse> {
        let presented = request.exchange_token.trim();
        let rejected =
            || ConnectError::unauthenticated("exchange token is invalid, already used or expired");
        if crypto::token_kind(presented) != Some(TokenKind::Exchange) {
            return Err(rejected());
        }
        let store = self.state.store.as_ref();
        let exchange = store
            .find_token_by_hash(&crypto::token_hash(presented))
            .await
            .map_err(store_error)?
            .filter(|t| t.kind == TokenKind::Exchange)
            .ok_or_else(rejected)?;
        let Subject::Runner(runner_id) = exchange.subject else {
            return Err(rejected());
        };
        let now = Utc::now();
        let access_token = crypto::new_token(TokenKind::RunnerAccess);
        let access = ApiToken {
            id: new_id(),
            kind: TokenKind::RunnerAccess,
            hash: crypto::token_hash(&access_token),
            org_id: exchange.org_id,
            subject: Subject::Runner(runner_id),
            creator: exchange.creator,
            description: "runner access token".into(),
            read_only: false,
            created_at: now,
            expires_at: None,
            last_used: None,
            used_at: None,
        };
        store
            .redeem_exchange_token(exchange.id, &access, now)
            .await
            .map_err(|err| match err {
                crate::store::StoreError::Conflict(_) | crate::store::StoreError::NotFound(_) => {
                    rejected()
                }
                other => store_error(other),
            })?;
        Response::ok(api::ExchangeTokenResponse {
            access_token,
            ..Default::default()
        })
    }
}
