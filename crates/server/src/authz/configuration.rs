//! [`Access`] to what configures a runner: host authentication tokens, its
//! configuration schema, SCM integrations and environment classes.

use connectrpc::ConnectError;
use uuid::Uuid;

use super::Target;
use super::access::{Access, missing, runner_change};
use super::policy::{Action, Resource};
use crate::domain::*;
use crate::errors::store_error;
use crate::services::scm_forwarding::host_key;
use crate::store::{Mutation, Store, StoreResult, read_all};

/// The change event of a host token: it belongs to its user, on a runner.
fn host_token_change(token: &HostToken, operation: ChangeOperation) -> ChangeEvent {
    ChangeEvent {
        org_id: token.org_id,
        operation,
        kind: ResourceKind::HostToken,
        id: token.id,
        creator_id: Some(token.user_id),
        runner_id: Some(token.runner_id),
        owner_id: Some(token.user_id),
    }
}

fn host_token_target(token: &HostToken) -> Target {
    Target::Owned {
        org_id: token.org_id,
        owner: token.user_id,
    }
}

impl Access {
    // Host authentication tokens.

    /// Stores `token` (the secrets already encrypted) for its user on its
    /// runner: the caller must be able to use the runner, and keeps tokens
    /// for themselves (admins: for anyone of the organization).
    pub async fn create_host_token(&self, token: &HostToken) -> Result<(), ConnectError> {
        let runner = self
            .runner_for(token.runner_id, Resource::Runner, Action::Use)
            .await?;
        let what = format!("user {}", token.user_id);
        self.check(
            Resource::HostToken,
            Action::Create,
            host_token_target(token),
            what,
        )?;
        if token.user_id != self.user()?.user.id {
            self.org_user(token.user_id).await?;
        }
        if let Some(integration_id) = token.integration_id {
            match self.store().get_scm_integration(integration_id).await {
                Ok(i) if i.runner_id == runner.id => {}
                _ => {
                    return Err(ConnectError::not_found(format!(
                        "SCM integration {integration_id} not found on runner {}",
                        runner.id
                    )));
                }
            }
        }
        self.store()
            .create_host_token(token)
            .await
            .map_err(store_error)?;
        self.note_change(host_token_change(token, ChangeOperation::Create));
        Ok(())
    }

    /// Host token `id`: the caller's own, or any of their organization for an admin.
    pub async fn host_token(&self, id: Uuid) -> Result<HostToken, ConnectError> {
        self.note_subject(id);
        let what = format!("host authentication token {id}");
        let token = self
            .store()
            .get_host_token(id)
            .await
            .map_err(missing(&what))?;
        self.check(
            Resource::HostToken,
            Action::Read,
            host_token_target(&token),
            &what,
        )?;
        Ok(token)
    }

    /// A page of host tokens matching `filter`; members see only their own.
    pub async fn list_host_tokens(
        &self,
        mut filter: HostTokenFilter,
        page: PageRequest,
    ) -> Result<Page<HostToken>, ConnectError> {
        let me = self.user()?;
        let target = Target::Owned {
            org_id: me.org_id,
            owner: filter.user_id.unwrap_or(me.user.id),
        };
        if self
            .check(Resource::HostToken, Action::Read, target, "user")
            .is_err()
        {
            // Someone else's tokens do not exist for a member.
            return Ok(Page {
                items: Vec::new(),
                next_after: None,
            });
        }
        if me.role != OrgRole::Admin {
            filter.user_id = Some(me.user.id);
        }
        self.store()
            .list_host_tokens(me.org_id, &filter, page)
            .await
            .map_err(store_error)
    }

    /// Changes host token `id`; `change` runs inside the store's transaction.
    pub async fn update_host_token(
        &self,
        id: Uuid,
        change: Mutation<HostToken>,
    ) -> Result<HostToken, ConnectError> {
        let token = self.host_token(id).await?;
        let what = format!("host authentication token {id}");
        self.check(
            Resource::HostToken,
            Action::Update,
            host_token_target(&token),
            &what,
        )?;
        let updated = self
            .store()
            .update_host_token(id, change)
            .await
            .map_err(missing(&what))?;
        self.note_change(host_token_change(&updated, ChangeOperation::Update));
        Ok(updated)
    }

    pub async fn delete_host_token(&self, id: Uuid) -> Result<(), ConnectError> {
        let token = self.host_token(id).await?;
        let what = format!("host authentication token {id}");
        self.check(
            Resource::HostToken,
            Action::Delete,
            host_token_target(&token),
            &what,
        )?;
        self.store()
            .delete_host_token(id)
            .await
            .map_err(missing(&what))?;
        self.note_change(host_token_change(&token, ChangeOperation::Delete));
        Ok(())
    }

    /// The caller's own host tokens on `runner_id`, to hand to that runner
    /// for the caller's request (never anyone else's, admins included).
    pub async fn my_host_tokens(&self, runner_id: Uuid) -> Result<Vec<HostToken>, ConnectError> {
        let me = self.user()?;
        let target = Target::Owned {
            org_id: me.org_id,
            owner: me.user.id,
        };
        self.check(Resource::HostToken, Action::Use, target, "host token")?;
        let filter = HostTokenFilter {
            runner_id: Some(runner_id),
            user_id: Some(me.user.id),
        };
        let store = self.store();
        read_all(|page| store.list_host_tokens(me.org_id, &filter, page))
            .await
            .map_err(store_error)
    }

    /// Stores a token the runner obtained or refreshed for the caller.
    pub async fn save_my_host_credential(
        &self,
        runner_id: Uuid,
        credential: HostCredential,
    ) -> Result<Uuid, ConnectError> {
        let me = self.user()?;
        let target = Target::Owned {
            org_id: me.org_id,
            owner: me.user.id,
        };
        self.check(Resource::HostToken, Action::Update, target, "host token")?;
        let (id, token) =
            save_host_credential(self.store(), me.org_id, runner_id, me.user.id, credential)
                .await
                .map_err(store_error)?;
        self.note_change(host_token_change(&token, ChangeOperation::Update));
        Ok(id)
    }

    // The configuration schema.

    /// Runner `id`, whose configuration schema the caller may read.
    pub async fn runner_with_schema(&self, id: Uuid) -> Result<Runner, ConnectError> {
        self.runner_for(id, Resource::RunnerConfigurationSchema, Action::Read)
            .await
    }

    // SCM integrations.

    /// The runner an SCM integration is to be created on, when the caller may.
    pub async fn runner_for_new_integration(
        &self,
        runner_id: Uuid,
    ) -> Result<Runner, ConnectError> {
        self.runner_for(runner_id, Resource::ScmIntegration, Action::Create)
            .await
    }

    pub async fn create_scm_integration(
        &self,
        integration: &ScmIntegration,
    ) -> Result<(), ConnectError> {
        let runner = self
            .runner_for_new_integration(integration.runner_id)
            .await?;
        self.store()
            .create_scm_integration(integration)
            .await
            .map_err(store_error)?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Create,
            ResourceKind::ScmIntegration,
            integration.id,
        ));
        Ok(())
    }

    /// SCM integration `id` and its runner, when the caller may `action` it;
    /// one on a runner they hold no role on does not exist for them.
    pub async fn scm_integration(
        &self,
        id: Uuid,
        action: Action,
    ) -> Result<(ScmIntegration, Runner), ConnectError> {
        self.note_subject(id);
        let what = format!("SCM integration {id}");
        let integration = self
            .store()
            .get_scm_integration(id)
            .await
            .map_err(missing(&what))?;
        let runner = self
            .load_runner(integration.runner_id)
            .await
            .map_err(|_| ConnectError::not_found(format!("{what} not found")))?;
        let target = self.runner_target(&runner).await?;
        self.check(Resource::ScmIntegration, action, target, &what)?;
        Ok((integration, runner))
    }

    /// A page of the SCM integrations of `runner_ids` (every runner the
    /// caller may see when empty), leaving out runners they may not see.
    pub async fn list_scm_integrations(
        &self,
        runner_ids: &[Uuid],
        page: PageRequest,
    ) -> Result<Page<ScmIntegration>, ConnectError> {
        let org_id = self.org_id()?;
        self.check(
            Resource::ScmIntegration,
            Action::Read,
            Target::Unknown,
            "SCM integration",
        )?;
        let filter = self.integrations_visible(runner_ids)?;
        self.store()
            .list_scm_integrations(org_id, &filter, page)
            .await
            .map_err(store_error)
    }

    /// The SCM integrations of runners the caller may use (to pick a runner).
    pub async fn integrations_of(
        &self,
        runner_ids: &[Uuid],
    ) -> Result<Vec<ScmIntegration>, ConnectError> {
        let org_id = self.org_id()?;
        let filter = self.integrations_visible(runner_ids)?;
        let store = self.store();
        read_all(|page| store.list_scm_integrations(org_id, &filter, page))
            .await
            .map_err(store_error)
    }

    /// A page of the SCM integrations for `host` (its lookup key) on
    /// reporting runners the caller may use (to pick a runner).
    pub async fn usable_integrations_for_host(
        &self,
        host: &str,
        page: PageRequest,
    ) -> Result<Page<ScmIntegration>, ConnectError> {
        self.check(Resource::Runner, Action::Use, Target::Unknown, "runner")?;
        let filter = ScmIntegrationFilter {
            runner_ids: Vec::new(),
            host: Some(host.to_string()),
            runners: Self::reporting(self.runner_visibility()?),
        };
        self.store()
            .list_scm_integrations(self.org_id()?, &filter, page)
            .await
            .map_err(store_error)
    }

    /// The integrations of `runner_ids` (all when empty) on runners the
    /// caller may see.
    fn integrations_visible(
        &self,
        runner_ids: &[Uuid],
    ) -> Result<ScmIntegrationFilter, ConnectError> {
        Ok(ScmIntegrationFilter {
            host: None,
            runner_ids: runner_ids.to_vec(),
            runners: RunnerFilter {
                visible: self.runner_visibility()?,
                ..Default::default()
            },
        })
    }

    /// Changes SCM integration `id`; `change` runs inside the store's
    /// transaction, on the record as it is then.
    pub async fn update_scm_integration(
        &self,
        id: Uuid,
        change: Mutation<ScmIntegration>,
    ) -> Result<ScmIntegration, ConnectError> {
        let (_, runner) = self.scm_integration(id, Action::Update).await?;
        let updated = self
            .store()
            .update_scm_integration(id, change)
            .await
            .map_err(missing(format!("SCM integration {id}")))?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Update,
            ResourceKind::ScmIntegration,
            id,
        ));
        Ok(updated)
    }

    pub async fn delete_scm_integration(&self, id: Uuid) -> Result<(), ConnectError> {
        let (_, runner) = self.scm_integration(id, Action::Delete).await?;
        self.store()
            .delete_scm_integration(id)
            .await
            .map_err(missing(format!("SCM integration {id}")))?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Delete,
            ResourceKind::ScmIntegration,
            id,
        ));
        Ok(())
    }

    // Environment classes.

    /// The runner an environment class is to be created on, when the caller may.
    pub async fn runner_for_new_class(&self, runner_id: Uuid) -> Result<Runner, ConnectError> {
        self.runner_for(runner_id, Resource::EnvironmentClass, Action::Create)
            .await
    }

    pub async fn create_environment_class(
        &self,
        class: &EnvironmentClass,
    ) -> Result<(), ConnectError> {
        let runner = self.runner_for_new_class(class.runner_id).await?;
        self.store()
            .create_environment_class(class)
            .await
            .map_err(store_error)?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Create,
            ResourceKind::EnvironmentClass,
            class.id,
        ));
        Ok(())
    }

    /// Environment class `id`, when the caller may `action` it.
    pub async fn environment_class(
        &self,
        id: Uuid,
        action: Action,
    ) -> Result<(EnvironmentClass, Runner), ConnectError> {
        self.note_subject(id);
        let what = format!("environment class {id}");
        let class = self
            .store()
            .get_environment_class(id)
            .await
            .map_err(missing(&what))?;
        let runner = self
            .load_runner(class.runner_id)
            .await
            .map_err(|_| ConnectError::not_found(format!("{what} not found")))?;
        let target = self.runner_target(&runner).await?;
        self.check(Resource::EnvironmentClass, action, target, &what)?;
        Ok((class, runner))
    }

    /// A page of environment classes of the runners the caller may see
    /// among `runner_ids` (all when empty) that match `runners`.
    pub async fn list_environment_classes(
        &self,
        runner_ids: &[Uuid],
        runners: RunnerFilter,
        mut filter: EnvironmentClassFilter,
        page: PageRequest,
    ) -> Result<Page<EnvironmentClass>, ConnectError> {
        let org_id = self.org_id()?;
        self.check(
            Resource::EnvironmentClass,
            Action::Read,
            Target::Unknown,
            "environment class",
        )?;
        filter.runner_ids = runner_ids.to_vec();
        filter.runners = RunnerFilter {
            visible: self.runner_visibility()?,
            ..runners
        };
        self.store()
            .list_environment_classes(org_id, &filter, page)
            .await
            .map_err(store_error)
    }

    pub async fn update_environment_class(
        &self,
        id: Uuid,
        change: Mutation<EnvironmentClass>,
    ) -> Result<EnvironmentClass, ConnectError> {
        let (_, runner) = self.environment_class(id, Action::Update).await?;
        let updated = self
            .store()
            .update_environment_class(id, change)
            .await
            .map_err(missing(format!("environment class {id}")))?;
        self.note_change(runner_change(
            &runner,
            ChangeOperation::Update,
            ResourceKind::EnvironmentClass,
            id,
        ));
        Ok(updated)
    }
}

/// Creates or updates `user_id`'s host token for the credential's host on
/// `runner_id`. Shared by [`Access::save_my_host_credential`] and the OAuth
/// callback, which authenticates the user by its sealed state instead of a
/// token. Returns the token's id and record as stored.
pub async fn save_host_credential(
    store: &dyn Store,
    org_id: Uuid,
    runner_id: Uuid,
    user_id: Uuid,
    credential: HostCredential,
) -> StoreResult<(Uuid, HostToken)> {
    let filter = HostTokenFilter {
        runner_id: Some(runner_id),
        user_id: Some(user_id),
    };
    let existing = read_all(|page| store.list_host_tokens(org_id, &filter, page))
        .await?
        .into_iter()
        .find(|t| host_key(&t.host) == credential.host);
    if let Some(existing) = existing {
        let updated = store
            .update_host_token(
                existing.id,
                Box::new(move |t: &mut HostToken| {
                    t.token_encrypted = credential.token_encrypted;
                    if credential.refresh_token_encrypted.is_some() {
                        t.refresh_token_encrypted = credential.refresh_token_encrypted;
                    }
                    t.expires_at = credential.expires_at;
                    if credential.source.is_some() {
                        t.source = credential.source;
                    }
                    if !credential.scopes.is_empty() {
                        t.scopes = credential.scopes;
                    }
                    Ok(())
                }),
            )
            .await?;
        return Ok((existing.id, updated));
    }
    let token = HostToken {
        id: new_id(),
        org_id,
        runner_id,
        user_id,
        host: credential.host,
        source: credential.source,
        token_encrypted: credential.token_encrypted,
        refresh_token_encrypted: credential.refresh_token_encrypted,
        expires_at: credential.expires_at,
        integration_id: credential.integration_id,
        scopes: credential.scopes,
        created_at: chrono::Utc::now(),
    };
    store.create_host_token(&token).await?;
    Ok((token.id, token))
}
