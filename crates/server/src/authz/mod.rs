//! Authorization, decided in one place.
//!
//! - [`policy`]: the table. Every RPC names the resource and action it stands
//!   for ([`policy::RPCS`]); every resource × action names who may perform it
//!   ([`policy::PERMISSIONS`]). Its docs are `docs/authorization.md`, which a
//!   test holds equal to the table.
//! - [`Gate`]: the interceptor in front of every RPC. It resolves the bearer
//!   token (`auth`), looks the RPC up, refuses what the caller's kind of
//!   token may not do before the request is even decoded (read-only tokens
//!   write nothing; runner tokens reach only themselves and their
//!   organization; organization-admin RPCs), hands the handler an [`Access`],
//!   and afterwards records the audit event and announces the change.
//! - [`Access`]: the only way a handler reaches the store. Each of its
//!   methods is one resource × action: it loads the resource, decides with
//!   [`decide`] against the table, and only then reads or writes. Lists
//!   return only what the caller may see.
//!
//! Something the caller may not see at all (another organization's, or a
//! runner they hold no role on) does not exist for them: `not_found`.
//! Something they may see but not change: `permission_denied`.

mod access;
mod configuration;
mod events;
mod gate;
mod people;
pub mod policy;
mod runners;

pub use crate::pagination::Paging;
pub use access::{Access, access};
pub use configuration::save_host_credential;
pub use events::WatchVisibility;
pub use gate::{ClientAddress, Gate, RequestId};
pub use runners::ReleaseDownload;

use connectrpc::ConnectError;
use uuid::Uuid;

use crate::auth::Caller;
use crate::domain::{OrgRole, RunnerRole};
use policy::{Action, Permission, RunnerTokens, Who};

/// What is known about the resource when deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Nothing yet: the gate decides from the caller alone, before the
    /// request is decoded; the rest is decided once the resource is loaded.
    Unknown,
    /// Something that belongs to an organization as a whole.
    Org(Uuid),
    /// Something that belongs to a runner, with the caller's role on it.
    Runner {
        org_id: Uuid,
        runner_id: Uuid,
        role: Option<RunnerRole>,
    },
    /// Something that belongs to one user.
    Owned { org_id: Uuid, owner: Uuid },
}

impl Target {
    fn org_id(self) -> Option<Uuid> {
        match self {
            Target::Unknown => None,
            Target::Org(org_id) | Target::Runner { org_id, .. } | Target::Owned { org_id, .. } => {
                Some(org_id)
            }
        }
    }
}

/// Why a decision went against the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// No valid token.
    Unauthenticated,
    /// The resource does not exist for the caller (`not_found`).
    Hidden,
    /// The caller sees the resource but may not do this (`permission_denied`).
    Forbidden(String),
}

impl Denial {
    /// The Connect error; `what` names the resource for `not_found`
    /// ("runner 0190…").
    pub fn into_error(self, what: impl std::fmt::Display) -> ConnectError {
        match self {
            Denial::Unauthenticated => ConnectError::unauthenticated("missing or invalid token"),
            Denial::Hidden => ConnectError::not_found(format!("{what} not found")),
            Denial::Forbidden(why) => ConnectError::permission_denied(why),
        }
    }
}

/// Whether `caller` may perform `permission` on `target`.
pub fn decide(
    caller: Option<&Caller>,
    permission: &Permission,
    target: Target,
) -> Result<(), Denial> {
    if permission.who == Who::Anyone {
        return Ok(());
    }
    let caller = caller.ok_or(Denial::Unauthenticated)?;
    if target.org_id().is_some_and(|org| org != caller.org_id()) {
        return Err(Denial::Hidden);
    }
    match caller {
        Caller::Runner(runner) => {
            let itself = || match target {
                Target::Runner { runner_id, .. } if runner_id != runner.runner_id => {
                    Err(Denial::Hidden)
                }
                _ => Ok(()),
            };
            if permission.who == Who::TheRunner {
                return itself();
            }
            match permission.runner_tokens {
                RunnerTokens::Allowed | RunnerTokens::OwnOrganization => Ok(()),
                RunnerTokens::Itself => itself(),
                RunnerTokens::Refused => Err(Denial::Forbidden(format!(
                    "a runner access token may not {}; use a user token",
                    permission.what
                ))),
            }
        }
        Caller::User(user) => {
            if permission.who == Who::TheRunner {
                return Err(Denial::Forbidden(
                    "the runner interaction service takes a runner access token".into(),
                ));
            }
            if user.read_only && !permission.action.is_read() {
                return Err(Denial::Forbidden(format!(
                    "this token is read-only: it may call only RPCs that change nothing, not {}",
                    permission.what
                )));
            }
            let admin = user.role == OrgRole::Admin;
            match permission.who {
                Who::Anyone | Who::Authenticated | Who::Member | Who::TheRunner => Ok(()),
                Who::OrgAdmin if admin => Ok(()),
                Who::OrgAdmin => Err(Denial::Forbidden(format!(
                    "only organization admins may {}",
                    permission.what
                ))),
                Who::RunnerRole(needed) => match target {
                    Target::Runner {
                        role: None,
                        runner_id: _,
                        ..
                    } => Err(Denial::Hidden),
                    Target::Runner {
                        role: Some(role),
                        runner_id,
                        ..
                    } if role < needed => Err(Denial::Forbidden(format!(
                        "you need the {} role on runner {runner_id} to {}",
                        role_name(needed),
                        permission.what
                    ))),
                    _ => Ok(()),
                },
                Who::Owner => match target {
                    Target::Owned { owner, .. } if owner != user.user.id && !admin => {
                        if permission.action == Action::Create {
                            Err(Denial::Forbidden(format!(
                                "only organization admins may {} for another user",
                                permission.what
                            )))
                        } else {
                            Err(Denial::Hidden)
                        }
                    }
                    _ => Ok(()),
                },
            }
        }
    }
}

fn role_name(role: RunnerRole) -> &'static str {
    match role {
        RunnerRole::User => "USER",
        RunnerRole::Admin => "ADMIN",
    }
}

#[cfg(test)]
mod tests;
