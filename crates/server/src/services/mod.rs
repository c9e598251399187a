//! The `gitpod.v1` services, one module each. Handlers convert wire messages
//! with `convert`, check access with `authz`, and call the store.

pub mod convert;
mod identity;

use connectrpc::Router;

use crate::state::SharedState;

/// Every service, registered on one Connect router.
pub fn router(state: SharedState) -> Router {
    use corral_api::gitpod::v1::IdentityServiceExt;
    let router = Router::new();
    std::sync::Arc::new(identity::Identity::new(state.clone())).register(router)
}
