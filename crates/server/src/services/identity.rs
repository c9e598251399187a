//! `gitpod.v1.IdentityService`: who is calling, and exchange-token redemption.

use connectrpc::{RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;

use super::convert;
use crate::authz::access;

/// Needs nothing but the caller's access.
pub struct Identity;

#[protovalidate_buffa::connect_impl]
impl api::IdentityService for Identity {
    #[allow(refining_impl_trait)]
    async fn get_authenticated_identity(
        &self,
        ctx: RequestContext,
        _request: ServiceRequest<'_, api::GetAuthenticatedIdentityRequest>,
    ) -> ServiceResult<api::GetAuthenticatedIdentityResponse> {
        let caller = access(&ctx)?.caller()?;
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
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ExchangeTokenRequest>,
    ) -> ServiceResult<api::ExchangeTokenResponse> {
        let access_token = access(&ctx)?
            .redeem_exchange_token(request.exchange_token.trim())
            .await?;
        Response::ok(api::ExchangeTokenResponse {
            access_token,
            ..Default::default()
        })
    }
}
