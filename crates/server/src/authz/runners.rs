//! [`Access`] to runners, their tokens and policies, putting them to work,
//! and a runner's access to itself (the runner protocol).

use chrono::Utc;
use connectrpc::ConnectError;
use uuid::Uuid;

use super::Target;
use super::access::{Access, missing, runner_change};
use super::policy::{Action, Resource};
use crate::crypto;
use crate::domain::*;
use crate::errors::store_error;
use crate::store::{Mutation, Retryable, StoreError, read_all};

/// How long a runner may take to trade in its exchange token.
const EXCHANGE_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::hours(24);

impl Access {
    // Runners.

    /// Creates `runner` and issues its first exchange token. Remote runners
    /// serve the whole organization: only organization admins create them,
    /// and the organization's members group gets USER on them (an admin may
    /// remove that policy to restrict the runner).
    pub async fn create_runner(&self, runner: &Runner) -> Result<String, ConnectError> {
        let org = Target::Org(runner.org_id);
        let what = format!("organization {}", runner.org_id);
        self.check(Resource::Runner, Action::Create, org, &what)?;
        let mut policies = Vec::new();
        if runner.kind == RunnerKind::Remote {
            self.check(Resource::RemoteRunner, Action::Create, org, &what)?;
            let members = self
                .store()
                .system_group(runner.org_id, SystemGroup::Members)
                .await
                .map_err(store_error)?;
            policies.push(RunnerPolicy {
                runner_id: runner.id,
                group_id: members.id,
                role: RunnerRole::User,
            });
        }
        self.store()
            .create_runner(runner, &policies)
            .await
            .map_err(store_error)?;
        self.note_change(runner_change(
            runner,
            ChangeOperation::Create,
            ResourceKind::Runner,
            runner.id,
        ));
        self.issue_exchange_token(runner).await
    }

    /// Runner `id`, when the caller may see it (a runner token: only itself).
    pub async fn runner(&self, id: Uuid) -> Result<Runner, ConnectError> {
        self.runner_for(id, Resource::Runner, Action::Read).await
    }

    /// A page of the runners the caller may see, filtered by `filter`.
    pub async fn list_runners(
        &self,
        mut filter: RunnerFilter,
        page: PageRequest,
    ) -> Result<Page<Runner>, ConnectError> {
        let org_id = self.org_id()?;
        let what = format!("organization {org_id}");
        self.check(Resource::Runner, Action::Read, Target::Unknown, what)?;
        filter.visible = self.runner_visibility()?;
        self.store()
            .list_runners(org_id, &filter, page)
            .await
            .map_err(store_error)
    }

    /// Changes runner `id`; the store may run `change` more than once, each
    /// time on a fresh read (see [`crate::store::Store::update_runner`]).
    pub async fn update_runner(
        &self,
        id: Uuid,
        change: Retryable<Runner>,
    ) -> Result<Runner, ConnectError> {
        let runner = self
            .runner_for(id, Resource::Runner, Action::Update)
            .await?;
        let updated = self
            .store()
            .update_runner(id, change)
            .await
            .map_err(missing(format!("runner {id}")))?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Update,
            ResourceKind::Runner,
            id,
        ));
        Ok(updated)
    }

    /// Deletes runner `id`: at once when `force` or when it never connected,
    /// otherwise it is DELETING until it confirms.
    pub async fn delete_runner(&self, id: Uuid, force: bool) -> Result<(), ConnectError> {
        let runner = self
            .runner_for(id, Resource::Runner, Action::Delete)
            .await?;
        if force || !runner.has_connected() {
            self.store()
                .delete_runner(id)
                .await
                .map_err(missing(format!("runner {id}")))?;
            self.note_change(runner_change(
                &runner,
                ChangeOperation::Delete,
                ResourceKind::Runner,
                id,
            ));
        } else {
            self.store()
                .update_runner(
                    id,
                    Box::new(|runner: &mut Runner| {
                        runner.spec.desired_phase = RunnerPhase::Deleted;
                        runner.status.phase = RunnerPhase::Deleting;
                        runner.updated_at = Utc::now();
                        Ok(())
                    }),
                )
                .await
                .map_err(missing(format!("runner {id}")))?;
            self.note_change(runner_change(
                &runner,
                ChangeOperation::Update,
                ResourceKind::Runner,
                id,
            ));
        }
        Ok(())
    }

    /// A new exchange token for runner `id` (CreateRunnerToken); trading it
    /// in revokes the runner's current access token.
    pub async fn create_runner_token(&self, id: Uuid) -> Result<String, ConnectError> {
        let runner = self
            .runner_for(id, Resource::RunnerToken, Action::Create)
            .await?;
        self.issue_exchange_token(&runner).await
    }

    async fn issue_exchange_token(&self, runner: &Runner) -> Result<String, ConnectError> {
        let token = crypto::new_token(TokenKind::Exchange);
        let now = Utc::now();
        self.store()
            .create_token(&ApiToken {
                id: new_id(),
                kind: TokenKind::Exchange,
                hash: crypto::token_hash(&token),
                org_id: runner.org_id,
                subject: Subject::Runner(runner.id),
                creator: self.caller()?.subject(),
                description: "runner exchange token".into(),
                read_only: false,
                created_at: now,
                expires_at: Some(now + EXCHANGE_TOKEN_LIFETIME),
                last_used: None,
                used_at: None,
            })
            .await
            .map_err(store_error)?;
        self.note_subject(runner.id);
        Ok(token)
    }

    /// Runner `id`, when the caller may have a logs token for it.
    pub async fn runner_for_logs(&self, id: Uuid) -> Result<Runner, ConnectError> {
        let runner = self
            .runner_for(id, Resource::RunnerLogsToken, Action::Create)
            .await?;
        self.note_subject(id);
        Ok(runner)
    }

    // Putting runners to work.

    /// Runner `id`, when the caller may have it work for them.
    pub async fn usable_runner(&self, id: Uuid) -> Result<Runner, ConnectError> {
        let runner = self.runner_for(id, Resource::Runner, Action::Use).await?;
        self.note_subject(id);
        Ok(runner)
    }

    /// A page of the runners the caller may have work for them that are
    /// reporting (ACTIVE or DEGRADED: neither set inactive nor silent).
    pub async fn usable_reporting_runners(
        &self,
        page: PageRequest,
    ) -> Result<Page<Runner>, ConnectError> {
        self.check(Resource::Runner, Action::Use, Target::Unknown, "runner")?;
        // Every runner a user sees, they hold at least USER on.
        let filter = Self::reporting(self.runner_visibility()?);
        self.store()
            .list_runners(self.org_id()?, &filter, page)
            .await
            .map_err(store_error)
    }

    /// The runners, among those `visible`, that are reporting.
    pub(super) fn reporting(visible: Option<Visibility>) -> RunnerFilter {
        RunnerFilter {
            phases: vec![RunnerPhase::Active, RunnerPhase::Degraded],
            visible,
            ..Default::default()
        }
    }

    // Runner policies.

    /// The policies of runner `runner_id`, in group id order.
    pub async fn runner_policies(
        &self,
        runner_id: Uuid,
    ) -> Result<Vec<RunnerPolicy>, ConnectError> {
        self.runner_for(runner_id, Resource::RunnerPolicy, Action::Read)
            .await?;
        self.store()
            .list_runner_policies(runner_id)
            .await
            .map_err(store_error)
    }

    /// Creates, updates (`action`) or deletes `policy`; the group must be
    /// one of the runner's organization.
    pub async fn change_runner_policy(
        &self,
        action: Action,
        policy: &RunnerPolicy,
    ) -> Result<(), ConnectError> {
        let runner = self
            .runner_for(policy.runner_id, Resource::RunnerPolicy, action)
            .await?;
        let group_id = policy.group_id;
        match self.store().get_group(group_id).await {
            Ok(group) if group.org_id == runner.org_id => {}
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Err(ConnectError::not_found(format!(
                    "group {group_id} not found"
                )));
            }
            Err(err) => return Err(store_error(err)),
        }
        let store = self.store();
        match action {
            Action::Create => store.create_runner_policy(policy).await,
            Action::Update => store.update_runner_policy(policy).await,
            Action::Delete => {
                store
                    .delete_runner_policy(policy.runner_id, policy.group_id)
                    .await
            }
            other => unreachable!("runner policies are not changed by {other:?}"),
        }
        .map_err(store_error)?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Update,
            ResourceKind::Runner,
            runner.id,
        ));
        Ok(())
    }

    // The runner protocol: a runner acting on itself.

    /// The calling runner.
    pub async fn this_runner(&self) -> Result<Runner, ConnectError> {
        let id = self.this_runner_id()?;
        self.runner_for(id, Resource::RunnerSelf, Action::Read)
            .await
    }

    /// Changes the calling runner's status (its key, reports); `change` runs
    /// inside the store's transaction and may change only the status (see
    /// [`crate::store::Store::update_runner_status`]). A change of phase is
    /// announced.
    pub async fn update_this_runner(
        &self,
        change: Mutation<Runner>,
    ) -> Result<Runner, ConnectError> {
        self.change_this_runner(ThisRunnerChange::Status(change))
            .await
    }

    /// Stores the configuration schema the calling runner publishes.
    pub async fn set_this_runner_schema(&self, encoded: Vec<u8>) -> Result<(), ConnectError> {
        let change = Box::new(move |runner: &mut Runner| {
            runner.config_schema = Some(encoded.clone());
            Ok(())
        });
        self.change_this_runner(ThisRunnerChange::Record(change))
            .await
            .map(|_| ())
    }

    /// Changes the calling runner: only its status (a small write), or its
    /// whole record.
    async fn change_this_runner(&self, change: ThisRunnerChange) -> Result<Runner, ConnectError> {
        let id = self.this_runner_id()?;
        let what = format!("runner {id}");
        let target = Target::Runner {
            org_id: self.org_id()?,
            runner_id: id,
            role: Some(RunnerRole::User),
        };
        self.check(Resource::RunnerSelf, Action::Update, target, &what)?;
        let before = std::sync::Arc::new(std::sync::Mutex::new(None));
        let seen = before.clone();
        let note = move |runner: &Runner| {
            *seen.lock().unwrap_or_else(|e| e.into_inner()) = Some(runner.status.phase);
        };
        let store = self.store();
        let updated = match change {
            ThisRunnerChange::Status(change) => {
                let change: Mutation<Runner> = Box::new(move |runner: &mut Runner| {
                    note(runner);
                    change(runner)
                });
                store.update_runner_status(id, change).await
            }
            ThisRunnerChange::Record(mut change) => {
                let change: Retryable<Runner> = Box::new(move |runner: &mut Runner| {
                    note(runner);
                    change(runner)
                });
                store.update_runner(id, change).await
            }
        }
        .map_err(missing(&what))?;
        let before = *before.lock().unwrap_or_else(|e| e.into_inner());
        if before != Some(updated.status.phase) {
            self.note_change(runner_change(
                &updated,
                ChangeOperation::UpdateStatus,
                ResourceKind::Runner,
                id,
            ));
        }
        Ok(updated)
    }

    /// The calling runner's environment classes.
    pub async fn this_runner_classes(&self) -> Result<Vec<EnvironmentClass>, ConnectError> {
        let runner = self.this_runner().await?;
        let filter = EnvironmentClassFilter {
            runner_ids: vec![runner.id],
            ..Default::default()
        };
        let store = self.store();
        read_all(|page| store.list_environment_classes(runner.org_id, &filter, page))
            .await
            .map_err(store_error)
    }

    /// The calling runner's SCM integrations.
    pub async fn this_runner_integrations(&self) -> Result<Vec<ScmIntegration>, ConnectError> {
        let runner = self.this_runner().await?;
        let store = self.store();
        let filter = ScmIntegrationFilter {
            host: None,
            runner_ids: vec![runner.id],
            runners: RunnerFilter::default(),
        };
        read_all(|page| store.list_scm_integrations(runner.org_id, &filter, page))
            .await
            .map_err(store_error)
    }

    /// The calling runner cleaned up after being told to delete itself: it
    /// is removed.
    pub async fn confirm_this_runner_deleted(&self) -> Result<(), ConnectError> {
        let id = self.this_runner_id()?;
        let runner = self
            .runner_for(id, Resource::RunnerSelf, Action::Delete)
            .await?;
        if runner.status.phase != RunnerPhase::Deleting {
            return Err(ConnectError::failed_precondition(
                "the runner is not being deleted",
            ));
        }
        self.store()
            .delete_runner(id)
            .await
            .map_err(missing(format!("runner {id}")))?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Delete,
            ResourceKind::Runner,
            id,
        ));
        Ok(())
    }

    /// The release offered to the calling runner: the highest version on the
    /// channel its spec follows.
    pub async fn this_runner_latest_release(&self) -> Result<Option<Release>, ConnectError> {
        let runner = self.this_runner().await?;
        crate::releases::latest(self.store(), runner.spec.config.release_channel)
            .await
            .map_err(store_error)
    }

    /// A published release's artifact, for the calling runner to download.
    /// Releases are the installation's, not secret: every runner reaches them.
    pub async fn release_download(&self, id: Uuid) -> Result<ReleaseDownload, ConnectError> {
        self.this_runner().await?;
        let release = self
            .store()
            .get_release(id)
            .await
            .map_err(missing(format!("release {id}")))?;
        Ok(ReleaseDownload {
            store: self.shared_store(),
            release,
            next: 0,
        })
    }
}

/// A release's artifact read chunk by chunk, so that a download never holds
/// the whole of it.
pub struct ReleaseDownload {
    store: std::sync::Arc<dyn crate::store::Store>,
    pub release: Release,
    next: u32,
}

impl ReleaseDownload {
    /// The next chunk, `None` after the last.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>, ConnectError> {
        let chunk = self
            .store
            .release_chunk(self.release.id, self.next)
            .await
            .map_err(store_error)?;
        self.next += 1;
        Ok(chunk)
    }
}

/// What [`Access::change_this_runner`] changes: the status alone, or the record.
enum ThisRunnerChange {
    Status(Mutation<Runner>),
    Record(Retryable<Runner>),
}
