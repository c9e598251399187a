//! [`Access`] to the audit trail, and deciding which change notifications a
//! watcher may see.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use connectrpc::ConnectError;
use uuid::Uuid;

use super::Target;
use super::access::{Access, missing};
use super::policy::{Action, Resource};
use crate::auth::Caller;
use crate::domain::*;
use crate::errors::store_error;

/// How long a watcher trusts what it worked out about its role on a runner.
const ROLE_MEMORY: Duration = Duration::from_secs(5);

impl Access {
    /// A page of the caller's organization's audit events (admins).
    pub async fn audit_events(
        &self,
        filter: &AuditFilter,
        page: PageRequest,
    ) -> Result<Page<AuditEvent>, ConnectError> {
        let org_id = self.org_id()?;
        let what = format!("organization {org_id}");
        self.check(Resource::AuditLog, Action::Read, Target::Org(org_id), what)?;
        self.store()
            .list_audit_events(Some(org_id), filter, page)
            .await
            .map_err(store_error)
    }

    /// Audit event `id` of the caller's organization (admins).
    pub async fn audit_event(&self, id: Uuid) -> Result<AuditEvent, ConnectError> {
        let what = format!("audit log entry {id}");
        let event = self
            .store()
            .get_audit_event(id)
            .await
            .map_err(missing(&what))?;
        self.check(
            Resource::AuditLog,
            Action::Read,
            Target::Org(event.org_id),
            &what,
        )?;
        Ok(event)
    }

    /// May the caller follow changes at all (the gate decided; this says
    /// so again for the stream's own sake).
    pub fn may_watch(&self) -> Result<(), ConnectError> {
        let org_id = self.org_id()?;
        let what = format!("organization {org_id}");
        self.check(Resource::Event, Action::Watch, Target::Org(org_id), what)
    }
}

/// Decides, event by event, what one watcher may see: what it could read.
/// Roles on runners are remembered briefly, so that a busy fleet does not
/// cost a query per event; a deleted runner is judged by what was last known.
pub struct WatchVisibility<'a> {
    access: &'a Access,
    roles: HashMap<Uuid, (Option<RunnerRole>, Instant)>,
}

impl<'a> WatchVisibility<'a> {
    pub fn new(access: &'a Access) -> Self {
        Self {
            access,
            roles: HashMap::new(),
        }
    }

    pub async fn may_see(&mut self, event: &ChangeEvent) -> bool {
        let Ok(caller) = self.access.caller() else {
            return false;
        };
        if caller.org_id() != event.org_id {
            return false;
        }
        let Caller::User(user) = caller else {
            return false;
        };
        let admin = user.role == OrgRole::Admin;
        match event.kind {
            ResourceKind::Organization
            | ResourceKind::User
            | ResourceKind::Group
            | ResourceKind::GroupMembership
            | ResourceKind::RoleAssignment => true,
            ResourceKind::HostToken | ResourceKind::PersonalAccessToken => {
                admin || event.owner_id == Some(user.user.id)
            }
            ResourceKind::Runner
            | ResourceKind::EnvironmentClass
            | ResourceKind::ScmIntegration => {
                // The runner's creator holds ADMIN on it and what belongs to it.
                if admin || event.creator_id == Some(user.user.id) {
                    return true;
                }
                match event.runner_id {
                    Some(runner_id) => self.role(runner_id).await.is_some(),
                    None => false,
                }
            }
        }
    }

    async fn role(&mut self, runner_id: Uuid) -> Option<RunnerRole> {
        if let Some((role, at)) = self.roles.get(&runner_id)
            && at.elapsed() < ROLE_MEMORY
        {
            return *role;
        }
        let role = match self.access.load_runner(runner_id).await {
            Ok(runner) => self.access.runner_role(&runner).await.ok().flatten(),
            // Gone: whatever was known last (a delete is seen by who saw it live).
            Err(_) => return self.roles.get(&runner_id).and_then(|(role, _)| *role),
        };
        self.roles.insert(runner_id, (role, Instant::now()));
        role
    }
}
