//! The `gitpod.v1` services, one module each, and the runner-facing
//! `corral.v1.RunnerInteractionService`. Handlers convert wire messages
//! with `convert`, check access with `authz`, and call the store.

mod config_schema;
pub mod convert;
mod group;
mod identity;
mod organization;
mod runner;
mod runner_configuration;
mod runner_interaction;
pub mod scm_forwarding;
mod user;

use std::sync::Arc;

use connectrpc::Router;
use corral_api::gitpod::v1::{GroupServiceExt, OrganizationServiceExt, UserServiceExt};
use corral_api::gitpod::v1::{IdentityServiceExt, RunnerConfigurationServiceExt, RunnerServiceExt};

use corral_api::corral::v1::RunnerInteractionServiceExt;

use crate::state::SharedState;

/// Every service, registered on one Connect router.
pub fn router(state: SharedState) -> Router {
    let router = Router::new();
    let router = Arc::new(identity::Identity::new(state.clone())).register(router);
    let router = Arc::new(user::Users::new(state.clone())).register(router);
    let router = Arc::new(group::Groups::new(state.clone())).register(router);
    let router = Arc::new(organization::Organizations::new(state.clone())).register(router);
    let router = Arc::new(runner::Runners::new(state.clone())).register(router);
    let router = Arc::new(runner_configuration::RunnerConfiguration::new(
        state.clone(),
    ))
    .register(router);
    Arc::new(runner_interaction::RunnerInteraction::new(state)).register(router)
}
