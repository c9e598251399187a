//! The `gitpod.v1` services, one module each, and the runner-facing
//! `corral.v1.RunnerInteractionService`. Handlers convert wire messages
//! with `convert` and reach the store only through `authz::Access`, which
//! decides every access by the policy table.

mod config_schema;
pub mod convert;
mod event;
mod group;
mod identity;
mod organization;
mod runner;
mod runner_answers;
mod runner_configuration;
mod runner_interaction;
pub mod scm_forwarding;
mod user;

use std::sync::Arc;

use connectrpc::Router;
use corral_api::gitpod::v1::{
    EventServiceExt, GroupServiceExt, OrganizationServiceExt, UserServiceExt,
};
use corral_api::gitpod::v1::{IdentityServiceExt, RunnerConfigurationServiceExt, RunnerServiceExt};

use corral_api::corral::v1::RunnerInteractionServiceExt;

use crate::state::SharedState;

/// Every service, registered on one Connect router, and server reflection.
pub fn router(state: SharedState) -> Router {
    let router = Router::new();
    let router = Arc::new(identity::Identity).register(router);
    let router = Arc::new(user::Users).register(router);
    let router = Arc::new(group::Groups).register(router);
    let router = Arc::new(organization::Organizations).register(router);
    let router = Arc::new(event::Events::new(state.clone())).register(router);
    let router = Arc::new(runner::Runners::new(state.clone())).register(router);
    let router = Arc::new(runner_configuration::RunnerConfiguration::new(
        state.clone(),
    ))
    .register(router);
    let router = Arc::new(runner_interaction::RunnerInteraction::new(state)).register(router);
    crate::reflection::register(router, crate::reflection::SchemaIndex::corral())
}
