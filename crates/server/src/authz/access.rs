//! [`Access`]: the store as one caller may use it during one RPC.
//!
//! Handlers get it from the request ([`access`]) and have no other way to the
//! store. Its methods live beside the resources they guard (`people`,
//! `runners`, `configuration`); here are the pieces they share: deciding,
//! the caller's role on a runner, what a list may show, paging, and the notes
//! the gate turns into an audit event and change notifications.

use std::sync::{Arc, Mutex};

use buffa::Message;
use connectrpc::{ConnectError, RequestContext};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::policy::{self, Action, Resource, Rpc};
use super::{Target, decide};
use crate::auth::{Caller, UserCaller};
use crate::domain::*;
use crate::errors::store_error;
use crate::pagination::{PageKey, Paging};
use crate::store::{Store, StoreError};

/// The store, as the caller of one RPC may use it.
#[derive(Clone)]
pub struct Access {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn Store>,
    caller: Option<Caller>,
    rpc: &'static Rpc,
    page_key: PageKey,
    notes: Mutex<Notes>,
}

/// What a call did, for the audit trail and change notifications.
#[derive(Debug, Default)]
pub(crate) struct Notes {
    /// The resource the call acted on.
    pub subject: Option<Uuid>,
    /// Who acted, when the call came without a token (an exchange token
    /// names its runner): organization and actor.
    pub anonymous_actor: Option<(Uuid, Subject)>,
    pub changes: Vec<ChangeEvent>,
    /// The call changed what some bearer token resolves to: every replica
    /// must resolve its callers again.
    pub callers_changed: bool,
}

/// The [`Access`] the gate attached to this request.
pub fn access(ctx: &RequestContext) -> Result<&Access, ConnectError> {
    ctx.extensions().get::<Access>().ok_or_else(|| {
        tracing::error!("an RPC ran without passing the authorization gate");
        ConnectError::internal("authorization is missing")
    })
}

impl Access {
    pub(super) fn new(
        store: Arc<dyn Store>,
        caller: Option<Caller>,
        rpc: &'static Rpc,
        page_key: PageKey,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                caller,
                rpc,
                page_key,
                notes: Mutex::new(Notes::default()),
            }),
        }
    }

    /// The store, for the methods of this module's siblings only.
    pub(super) fn store(&self) -> &dyn Store {
        self.inner.store.as_ref()
    }

    /// The store itself, for what outlives the call's borrow (a stream the
    /// caller was authorized for).
    pub(super) fn shared_store(&self) -> Arc<dyn Store> {
        self.inner.store.clone()
    }

    pub fn rpc(&self) -> &'static Rpc {
        self.inner.rpc
    }

    /// Who is calling (every RPC but token redemption has a caller).
    pub fn caller(&self) -> Result<&Caller, ConnectError> {
        self.inner
            .caller
            .as_ref()
            .ok_or_else(|| ConnectError::unauthenticated("missing bearer token"))
    }

    /// The calling user; runner tokens never reach user RPCs (the gate), but
    /// say so plainly should one try.
    pub fn user(&self) -> Result<&UserCaller, ConnectError> {
        match self.caller()? {
            Caller::User(user) => Ok(user),
            Caller::Runner(_) => Err(ConnectError::permission_denied(
                "runner access tokens cannot call this RPC; use a user token",
            )),
        }
    }

    /// The id of the calling runner (runner protocol).
    pub fn this_runner_id(&self) -> Result<Uuid, ConnectError> {
        match self.caller()? {
            Caller::Runner(runner) => Ok(runner.runner_id),
            Caller::User(_) => Err(ConnectError::permission_denied(
                "the runner interaction service takes a runner access token",
            )),
        }
    }

    pub fn org_id(&self) -> Result<Uuid, ConnectError> {
        Ok(self.caller()?.org_id())
    }

    /// Decides `action` on `resource` for `target`; `what` names the resource
    /// in a `not_found` ("runner 0190…").
    pub(super) fn check(
        &self,
        resource: Resource,
        action: Action,
        target: Target,
        what: impl std::fmt::Display,
    ) -> Result<(), ConnectError> {
        let permission = policy::permission(resource, action).ok_or_else(|| {
            ConnectError::permission_denied(format!(
                "nobody may do this ({resource:?} {action:?} has no policy)"
            ))
        })?;
        decide(self.inner.caller.as_ref(), permission, target).map_err(|d| d.into_error(what))
    }

    /// The caller's role on `runner`: org admins and the creator hold ADMIN,
    /// a policy grants its group's role (the best one wins), a runner holds
    /// USER on itself.
    pub(super) async fn runner_role(
        &self,
        runner: &Runner,
    ) -> Result<Option<RunnerRole>, ConnectError> {
        let Some(caller) = &self.inner.caller else {
            return Ok(None);
        };
        if caller.org_id() != runner.org_id {
            return Ok(None);
        }
        match caller {
            Caller::Runner(r) => Ok((r.runner_id == runner.id).then_some(RunnerRole::User)),
            Caller::User(u) => {
                if u.role == OrgRole::Admin || runner.creator == Subject::User(u.user.id) {
                    return Ok(Some(RunnerRole::Admin));
                }
                let policies = self
                    .store()
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

    /// What the decision about something of `runner` rests on.
    pub(super) async fn runner_target(&self, runner: &Runner) -> Result<Target, ConnectError> {
        Ok(Target::Runner {
            org_id: runner.org_id,
            runner_id: runner.id,
            role: self.runner_role(runner).await?,
        })
    }

    /// A runner that exists (deleted ones do not), before any decision.
    pub(super) async fn load_runner(&self, id: Uuid) -> Result<Runner, ConnectError> {
        let not_found = || ConnectError::not_found(format!("runner {id} not found"));
        match self.store().get_runner(id).await {
            Ok(runner) if runner.status.phase == RunnerPhase::Deleted => Err(not_found()),
            Ok(runner) => Ok(runner),
            Err(StoreError::NotFound(_)) => Err(not_found()),
            Err(err) => Err(store_error(err)),
        }
    }

    /// Loads runner `id` and decides `action` on `resource` (something of
    /// that runner) for it. Names the runner in the `not_found`.
    pub(super) async fn runner_for(
        &self,
        id: Uuid,
        resource: Resource,
        action: Action,
    ) -> Result<Runner, ConnectError> {
        self.note_subject(id);
        let runner = self.load_runner(id).await?;
        let target = self.runner_target(&runner).await?;
        self.check(resource, action, target, format_args!("runner {id}"))?;
        Ok(runner)
    }

    /// The runners a list may show the caller: `None` means all of the
    /// organization's (admins); a runner token sees only itself.
    pub(super) fn runner_visibility(&self) -> Result<Option<Visibility>, ConnectError> {
        match self.caller()? {
            Caller::Runner(r) => Ok(Some(Visibility {
                runner_id: Some(r.runner_id),
                ..Default::default()
            })),
            Caller::User(u) if u.role == OrgRole::Admin => Ok(None),
            Caller::User(u) => Ok(Some(Visibility {
                creator: Some(u.user.id),
                group_ids: u.group_ids.clone(),
                runner_id: None,
            })),
        }
    }

    /// The paging of a list request: `query` is the request with its
    /// pagination taken out, so that a page token stays valid only for the
    /// same RPC, caller and filters.
    pub fn paging<M: Message>(
        &self,
        ctx: &RequestContext,
        pagination: Option<api::PaginationRequest>,
        query: &M,
    ) -> Result<Paging, ConnectError> {
        let caller = self.caller()?.subject().id();
        Paging::new(
            ctx,
            &self.inner.page_key,
            self.inner.rpc.procedure,
            caller,
            &query.encode_to_vec(),
            pagination.as_ref(),
        )
    }

    /// Records a resource the call names: the audit event's subject unless
    /// the call goes on to change something of the RPC's own kind.
    pub(super) fn note_subject(&self, id: Uuid) {
        self.notes().subject.get_or_insert(id);
    }

    /// Records who acted on a call that came without a token.
    pub(super) fn note_anonymous_actor(&self, org_id: Uuid, actor: Subject) {
        self.notes().anonymous_actor = Some((org_id, actor));
    }

    /// Records a change to announce once the call succeeds. A change of the
    /// kind the RPC is about is the audit event's subject.
    pub(super) fn note_change(&self, change: ChangeEvent) {
        let mut notes = self.notes();
        if change.kind == self.inner.rpc.subject_kind() {
            notes.subject = Some(change.id);
        }
        notes.callers_changed |= change.changes_callers();
        notes.changes.push(change);
    }

    /// Records that the call changed what some bearer token resolves to,
    /// when no change event says so (a runner's tokens were replaced).
    pub(super) fn note_callers_changed(&self) {
        self.notes().callers_changed = true;
    }

    fn notes(&self) -> std::sync::MutexGuard<'_, Notes> {
        self.inner.notes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes what the call noted (the gate, once the handler is done).
    pub(super) fn take_notes(&self) -> Notes {
        std::mem::take(&mut *self.notes())
    }
}

/// A change event for something of `runner`.
pub(super) fn runner_change(
    runner: &Runner,
    operation: ChangeOperation,
    kind: ResourceKind,
    id: Uuid,
) -> ChangeEvent {
    ChangeEvent {
        org_id: runner.org_id,
        operation,
        kind,
        id,
        creator_id: Some(runner.creator.id()),
        runner_id: Some(runner.id),
        owner_id: None,
    }
}

/// Maps a store `NotFound` to the resource's own `not_found` message.
pub(super) fn missing(what: impl std::fmt::Display) -> impl FnOnce(StoreError) -> ConnectError {
    move |err| match err {
        StoreError::NotFound(_) => ConnectError::not_found(format!("{what} not found")),
        other => store_error(other),
    }
}
