//! Authorization for runners and what hangs off them, decided in one place.
//!
//! | who                                   | role on a runner |
//! |---------------------------------------|------------------|
//! | an admin of the runner's organization | ADMIN            |
//! | the runner's creator                  | ADMIN            |
//! | a member of a group with a policy     | the policy's role (best wins) |
//! | the runner itself                     | USER on itself   |
//! | anyone else                           | none: the runner does not exist for them (`not_found`) |
//!
//! USER may see and use a runner (read it, list its environment classes and
//! SCM integrations, parse context URLs, keep host tokens for it); ADMIN may
//! also update or delete it and manage its configuration and policies.

use connectrpc::ConnectError;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::{OrgRole, Runner, RunnerPhase, RunnerRole, Subject, Visibility};
use crate::errors::store_error;
use crate::store::Store;

/// The caller's role on `runner`, if any.
pub async fn runner_role(
    store: &dyn Store,
    caller: &Caller,
    runner: &Runner,
) -> Result<Option<RunnerRole>, ConnectError> {
    if caller.org_id() != runner.org_id {
        return Ok(None);
    }
    match caller {
        Caller::Runner(r) => Ok((r.runner_id == runner.id).then_some(RunnerRole::User)),
        Caller::User(u) => {
            if u.role == OrgRole::Admin || runner.creator == Subject::User(u.user.id) {
                return Ok(Some(RunnerRole::Admin));
            }
            let policies = store
                .list_runner_policies(runner.id)
                .await
                .map_err(store_error)?;
            Ok(policies
                .iter()
                .filter(|p| u.group_ids.contains(&p.group_id))
                .map(|p| p.role)
                .max())
        }
    }
}

/// Loads a runner the caller holds at least `needed` on. A runner the caller
/// cannot see at all (or a deleted one) is `not_found`; one they can see but
/// not change is `permission_denied`.
pub async fn runner_for(
    store: &dyn Store,
    caller: &Caller,
    runner_id: Uuid,
    needed: RunnerRole,
) -> Result<Runner, ConnectError> {
    let not_found = || ConnectError::not_found(format!("runner {runner_id} not found"));
    let runner = match store.get_runner(runner_id).await {
        Ok(runner) => runner,
        Err(crate::store::StoreError::NotFound(_)) => return Err(not_found()),
        Err(err) => return Err(store_error(err)),
    };
    if runner.status.phase == RunnerPhase::Deleted {
        return Err(not_found());
    }
    match runner_role(store, caller, &runner).await? {
        None => Err(not_found()),
        Some(role) if role < needed => Err(ConnectError::permission_denied(format!(
            "you need the ADMIN role on runner {runner_id} to do this"
        ))),
        Some(_) => Ok(runner),
    }
}

/// The runners a caller may list: `None` means all of the organization's.
pub async fn runner_visibility(
    store: &dyn Store,
    caller: &Caller,
) -> Result<Option<Visibility>, ConnectError> {
    match caller {
        Caller::Runner(r) => Ok(Some(Visibility {
            creator: None,
            runner_ids: vec![r.runner_id],
        })),
        Caller::User(u) if u.role == OrgRole::Admin => Ok(None),
        Caller::User(u) => {
            let granted = store
                .runners_granted_to_groups(&u.group_ids)
                .await
                .map_err(store_error)?;
            let mut runner_ids: Vec<Uuid> = granted.into_iter().map(|p| p.runner_id).collect();
            runner_ids.sort();
            runner_ids.dedup();
            Ok(Some(Visibility {
                creator: Some(u.user.id),
                runner_ids,
            }))
        }
    }
}
