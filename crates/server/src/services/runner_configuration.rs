//! `gitpod.v1.RunnerConfigurationService`: host authentication tokens, the
//! runner's configuration schema, SCM integrations and environment classes.

use buffa::MessageField;
use chrono::Utc;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::config_schema::{check_environment_class, linux_host_schema, scm_entry};
use super::convert::{self, parse_ids};
use crate::auth::{Caller, UserCaller, caller};
use crate::authz::{runner_for, runner_visibility};
use crate::crypto;
use crate::domain::*;
use crate::errors::{invalid_field, store_error};
use crate::pagination::{page_request, page_response};
use crate::state::SharedState;
use crate::store::{StoreError, read_all};

pub struct RunnerConfiguration {
    state: SharedState,
}

/// Entries of an environment class configuration (`max_items` in the .proto).
const CONFIGURATION_MAX_ENTRIES: usize = 100;

impl RunnerConfiguration {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }

    /// The schema that governs `runner`'s configuration: the one it published,
    /// or, before it has, the schema of `corral runner`.
    fn schema_for(&self, runner: &Runner) -> api::RunnerConfigurationSchema {
        use buffa::Message;
        runner
            .config_schema
            .as_deref()
            .and_then(|bytes| match api::RunnerConfigurationSchema::decode_from_slice(bytes) {
                Ok(schema) => Some(schema),
                Err(err) => {
                    tracing::warn!(runner_id = %runner.id, %err, "stored configuration schema is unreadable; using the default");
                    None
                }
            })
            .unwrap_or_else(linux_host_schema)
    }

    /// A host token the calling user may manage: their own, or any in their
    /// organization for an org admin. Anything else does not exist for them.
    async fn host_token_for(&self, user: &UserCaller, id: &str) -> Result<HostToken, ConnectError> {
        let id = convert::parse_id("id", id)?;
        let not_found =
            || ConnectError::not_found(format!("host authentication token {id} not found"));
        let token = match self.state.store.get_host_token(id).await {
            Ok(token) => token,
            Err(StoreError::NotFound(_)) => return Err(not_found()),
            Err(err) => return Err(store_error(err)),
        };
        let own = token.user_id == user.user.id;
        let admin = user.role == OrgRole::Admin && token.org_id == user.org_id;
        if own || admin {
            Ok(token)
        } else {
            Err(not_found())
        }
    }

    /// An SCM integration on a runner the caller holds at least `needed` on.
    async fn integration_for(
        &self,
        caller: &Caller,
        id: &str,
        needed: RunnerRole,
    ) -> Result<ScmIntegration, ConnectError> {
        let id = convert::parse_id("id", id)?;
        let integration = match self.state.store.get_scm_integration(id).await {
            Ok(i) if i.org_id == caller.org_id() => i,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Err(ConnectError::not_found(format!(
                    "SCM integration {id} not found"
                )));
            }
            Err(err) => return Err(store_error(err)),
        };
        runner_for(
            self.state.store.as_ref(),
            caller,
            integration.runner_id,
            needed,
        )
        .await
        .map_err(|err| match err.code {
            connectrpc::ErrorCode::NotFound => {
                ConnectError::not_found(format!("SCM integration {id} not found"))
            }
            _ => err,
        })?;
        Ok(integration)
    }

    /// An environment class on a runner the caller holds at least `needed` on.
    async fn class_for(
        &self,
        caller: &Caller,
        id: &str,
        needed: RunnerRole,
    ) -> Result<EnvironmentClass, ConnectError> {
        let id = convert::parse_id("environment_class_id", id)?;
        let class = match self.state.store.get_environment_class(id).await {
            Ok(c) if c.org_id == caller.org_id() => c,
            Ok(_) | Err(StoreError::NotFound(_)) => {
                return Err(ConnectError::not_found(format!(
                    "environment class {id} not found"
                )));
            }
            Err(err) => return Err(store_error(err)),
        };
        runner_for(self.state.store.as_ref(), caller, class.runner_id, needed)
            .await
            .map_err(|err| match err.code {
                connectrpc::ErrorCode::NotFound => {
                    ConnectError::not_found(format!("environment class {id} not found"))
                }
                _ => err,
            })?;
        Ok(class)
    }

    /// Runner ids the caller may see among `requested` (all visible ones when
    /// empty); `None` means no restriction (an org admin asking for all).
    async fn visible_runner_ids(
        &self,
        caller: &Caller,
        requested: &[Uuid],
        filter: RunnerFilter,
    ) -> Result<Option<Vec<Uuid>>, ConnectError> {
        let store = self.state.store.as_ref();
        let visibility = runner_visibility(store, caller).await?;
        let restricted =
            visibility.is_some() || !filter.kinds.is_empty() || !filter.providers.is_empty();
        if !restricted {
            return Ok((!requested.is_empty()).then(|| requested.to_vec()));
        }
        let filter = RunnerFilter {
            visible: visibility,
            ..filter
        };
        let org_id = caller.org_id();
        let mut ids: Vec<Uuid> = read_all(|page| store.list_runners(org_id, &filter, page))
            .await
            .map_err(store_error)?
            .iter()
            .map(|r| r.id)
            .collect();
        if !requested.is_empty() {
            ids.retain(|id| requested.contains(id));
        }
        Ok(Some(ids))
    }

    fn seal_client_secret(runner: &Runner, secret: &str) -> Result<Vec<u8>, ConnectError> {
        let key = runner.status.public_key.as_ref().ok_or_else(|| {
            ConnectError::failed_precondition(format!(
                "runner {} has not connected yet, so there is no public key to seal the OAuth client secret to; start the runner first",
                runner.id
            ))
        })?;
        crypto::seal_to_runner(key, secret.as_bytes()).map_err(|err| {
            ConnectError::failed_precondition(format!("cannot seal to the runner's key: {err}"))
        })
    }
}

/// `host` in canonical form, or `invalid_argument` naming `field`. A path
/// (Azure DevOps Server's virtual directory) only in an Azure DevOps
/// integration's host: pass its `scm_id`.
fn normalize_host(field: &str, host: &str, scm_id: Option<&str>) -> Result<String, ConnectError> {
    convert::scm_host(field, host, scm_id)
}

fn pairs(values: &[api::FieldValue]) -> Vec<(String, String)> {
    values
        .iter()
        .map(|v| (v.key.clone(), v.value.clone()))
        .collect()
}

fn configuration_error(errors: &[(String, String)]) -> ConnectError {
    let detail: Vec<String> = errors.iter().map(|(k, e)| format!("{k} {e}")).collect();
    invalid_field("configuration", detail.join("; "))
}

/// Problems with an SCM integration against the runner's schema.
fn check_scm_integration(
    schema: &api::RunnerConfigurationSchema,
    scm_id: &str,
    host: &str,
    pat: bool,
    oauth_client_id: Option<&str>,
    has_secret: bool,
) -> api::SCMIntegrationValidationResult {
    let mut result = api::SCMIntegrationValidationResult::default();
    if scm_entry(schema, scm_id).is_none() {
        let known: Vec<&str> = schema.scm.iter().map(|s| s.scm_id.as_str()).collect();
        result.scm_id_error = Some(format!(
            "unknown SCM {scm_id:?}; this runner supports {}",
            known.join(", ")
        ));
    }
    let paths = corral_contract::scm_host::PathRule::for_scm(scm_id);
    if let Err(e) = corral_contract::scm_host::ScmHost::parse(host, paths) {
        result.host_error = Some(e.to_string());
    }
    // A client id alone is kept (the secret can follow); a secret needs its id.
    let client_id = oauth_client_id.unwrap_or_default();
    if has_secret && client_id.is_empty() {
        result.oauth_error = Some("an OAuth client secret needs an OAuth client id".into());
    }
    if !pat && client_id.is_empty() {
        result.pat_error = Some("enable personal access tokens or configure an OAuth app".into());
    }
    result.valid = result.scm_id_error.is_none()
        && result.host_error.is_none()
        && result.oauth_error.is_none()
        && result.pat_error.is_none();
    result
}

fn scm_validation_error(result: &api::SCMIntegrationValidationResult) -> ConnectError {
    let (field, message) = [
        ("scm_id", &result.scm_id_error),
        ("host", &result.host_error),
        ("oauth_client_id", &result.oauth_error),
        ("pat", &result.pat_error),
    ]
    .into_iter()
    .find_map(|(f, e)| e.as_ref().map(|e| (f, e.clone())))
    .unwrap_or(("scm_id", "is invalid".into()));
    invalid_field(field, message)
}

#[protovalidate_buffa::connect_impl]
impl api::RunnerConfigurationService for RunnerConfiguration {
    #[allow(refining_impl_trait)]
    async fn create_host_authentication_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateHostAuthenticationTokenRequest>,
    ) -> ServiceResult<api::CreateHostAuthenticationTokenResponse> {
        let caller = caller(&ctx)?;
        let user = caller.user()?;
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        let store = self.state.store.as_ref();
        let runner = runner_for(store, caller, runner_id, RunnerRole::User).await?;
        let owner = match req.subject.as_option().filter(|s| !s.id.is_empty()) {
            Some(subject) => convert::parse_id("subject.id", &subject.id)?,
            None if !req.user_id.is_empty() => convert::parse_id("user_id", &req.user_id)?,
            None => user.user.id,
        };
        if owner != user.user.id {
            if user.role != OrgRole::Admin {
                return Err(ConnectError::permission_denied(
                    "you may only keep host tokens for yourself",
                ));
            }
            match store.get_user(owner).await {
                Ok(u) if u.org_id == user.org_id => {}
                _ => return Err(ConnectError::not_found(format!("user {owner} not found"))),
            }
        }
        let integration_id = if req.integration_id.is_empty() {
            None
        } else {
            let id = convert::parse_id("integration_id", &req.integration_id)?;
            match store.get_scm_integration(id).await {
                Ok(i) if i.runner_id == runner.id => Some(id),
                _ => {
                    return Err(ConnectError::not_found(format!(
                        "SCM integration {id} not found on runner {}",
                        runner.id
                    )));
                }
            }
        };
        let expires_at = req
            .expires_at
            .as_option()
            .map(|t| convert::from_timestamp("expires_at", t))
            .transpose()?;
        let token = HostToken {
            id: new_id(),
            org_id: runner.org_id,
            runner_id: runner.id,
            user_id: owner,
            host: normalize_host("host", &req.host, None)?,
            source: req
                .source
                .as_known()
                .and_then(convert::host_token_source_from),
            token_encrypted: self.state.data_key.encrypt(req.token.as_bytes()),
            refresh_token_encrypted: (!req.refresh_token.is_empty())
                .then(|| self.state.data_key.encrypt(req.refresh_token.as_bytes())),
            expires_at,
            integration_id,
            scopes: convert::distinct(req.scopes.clone()),
            created_at: Utc::now(),
        };
        store.create_host_token(&token).await.map_err(store_error)?;
        Response::ok(api::CreateHostAuthenticationTokenResponse {
            token: MessageField::some(convert::host_token(&token)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_host_authentication_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetHostAuthenticationTokenRequest>,
    ) -> ServiceResult<api::GetHostAuthenticationTokenResponse> {
        let user = caller(&ctx)?.user()?;
        let token = self.host_token_for(user, request.id).await?;
        Response::ok(api::GetHostAuthenticationTokenResponse {
            token: MessageField::some(convert::host_token(&token)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_host_authentication_tokens(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListHostAuthenticationTokensRequest>,
    ) -> ServiceResult<api::ListHostAuthenticationTokensResponse> {
        let user = caller(&ctx)?.user()?;
        let req = request.to_owned_message();
        let page = page_request(&ctx, req.pagination.as_option())?;
        let mut filter = HostTokenFilter::default();
        if let Some(f) = req.filter.as_option() {
            if let Some(id) = &f.runner_id {
                filter.runner_id = Some(convert::parse_id("filter.runner_id", id)?);
            }
            let subject = f.subject_id.as_ref().or(f.user_id.as_ref());
            if let Some(id) = subject {
                filter.user_id = Some(convert::parse_id("filter.subject_id", id)?);
            }
        }
        if user.role != OrgRole::Admin {
            // Members see only their own tokens.
            if filter.user_id.is_some_and(|id| id != user.user.id) {
                return Response::ok(api::ListHostAuthenticationTokensResponse {
                    pagination: page_response(None),
                    ..Default::default()
                });
            }
            filter.user_id = Some(user.user.id);
        }
        let tokens = self
            .state
            .store
            .list_host_tokens(user.org_id, &filter, page)
            .await
            .map_err(store_error)?;
        Response::ok(api::ListHostAuthenticationTokensResponse {
            pagination: page_response(tokens.next_after),
            tokens: tokens.items.iter().map(convert::host_token).collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_host_authentication_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::UpdateHostAuthenticationTokenRequest>,
    ) -> ServiceResult<api::UpdateHostAuthenticationTokenResponse> {
        let user = caller(&ctx)?.user()?;
        let req = request.to_owned_message();
        let token = self.host_token_for(user, &req.id).await?;
        let expires_at = req
            .expires_at
            .as_option()
            .map(|t| convert::from_timestamp("expires_at", t))
            .transpose()?;
        let key = self.state.data_key.clone();
        self.state
            .store
            .update_host_token(
                token.id,
                Box::new(move |t: &mut HostToken| {
                    if let Some(secret) = &req.token {
                        t.token_encrypted = key.encrypt(secret.as_bytes());
                    }
                    if let Some(refresh) = &req.refresh_token {
                        t.refresh_token_encrypted =
                            (!refresh.is_empty()).then(|| key.encrypt(refresh.as_bytes()));
                    }
                    if expires_at.is_some() {
                        t.expires_at = expires_at;
                    }
                    if !req.scopes.is_empty() {
                        t.scopes = convert::distinct(req.scopes.clone());
                    }
                    Ok(())
                }),
            )
            .await
            .map_err(store_error)?;
        Response::ok(api::UpdateHostAuthenticationTokenResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn delete_host_authentication_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteHostAuthenticationTokenRequest>,
    ) -> ServiceResult<api::DeleteHostAuthenticationTokenResponse> {
        let user = caller(&ctx)?.user()?;
        let token = self.host_token_for(user, request.id).await?;
        self.state
            .store
            .delete_host_token(token.id)
            .await
            .map_err(store_error)?;
        Response::ok(api::DeleteHostAuthenticationTokenResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn get_runner_configuration_schema(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetRunnerConfigurationSchemaRequest>,
    ) -> ServiceResult<api::GetRunnerConfigurationSchemaResponse> {
        let caller = caller(&ctx)?;
        let id = convert::parse_id("runner_id", request.runner_id)?;
        let runner = runner_for(self.state.store.as_ref(), caller, id, RunnerRole::User).await?;
        Response::ok(api::GetRunnerConfigurationSchemaResponse {
            schema: MessageField::some(self.schema_for(&runner)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn create_scm_integration(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateSCMIntegrationRequest>,
    ) -> ServiceResult<api::CreateSCMIntegrationResponse> {
        let caller = caller(&ctx)?;
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        let runner = runner_for(
            self.state.store.as_ref(),
            caller,
            runner_id,
            RunnerRole::Admin,
        )
        .await?;
        let secret = req
            .oauth_plaintext_client_secret
            .clone()
            .filter(|s| !s.is_empty());
        let check = check_scm_integration(
            &self.schema_for(&runner),
            &req.scm_id,
            &req.host,
            req.pat,
            req.oauth_client_id.as_deref(),
            secret.is_some(),
        );
        if !check.valid {
            return Err(scm_validation_error(&check));
        }
        let client_id = req.oauth_client_id.clone().unwrap_or_default();
        let oauth = if client_id.is_empty() {
            None
        } else {
            Some(OAuthApp {
                client_id,
                encrypted_client_secret: match secret {
                    Some(secret) => Self::seal_client_secret(&runner, &secret)?,
                    None => Vec::new(),
                },
                issuer_url: req.issuer_url.clone().unwrap_or_default(),
            })
        };
        let integration = ScmIntegration {
            id: new_id(),
            org_id: runner.org_id,
            runner_id: runner.id,
            scm_id: req.scm_id.clone(),
            host: normalize_host("host", &req.host, Some(&req.scm_id))?,
            oauth,
            pat: req.pat,
            virtual_directory: convert::virtual_directory(
                "virtual_directory",
                req.virtual_directory.as_deref(),
            )?,
            created_at: Utc::now(),
        };
        self.state
            .store
            .create_scm_integration(&integration)
            .await
            .map_err(store_error)?;
        Response::ok(api::CreateSCMIntegrationResponse {
            id: integration.id.to_string(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_scm_integration(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetSCMIntegrationRequest>,
    ) -> ServiceResult<api::GetSCMIntegrationResponse> {
        let caller = caller(&ctx)?;
        let integration = self
            .integration_for(caller, request.id, RunnerRole::User)
            .await?;
        Response::ok(api::GetSCMIntegrationResponse {
            integration: MessageField::some(convert::scm_integration(&integration)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_scm_integrations(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListSCMIntegrationsRequest>,
    ) -> ServiceResult<api::ListSCMIntegrationsResponse> {
        let caller = caller(&ctx)?;
        let req = request.to_owned_message();
        let page = page_request(&ctx, req.pagination.as_option())?;
        let requested = match req.filter.as_option() {
            Some(f) => parse_ids("filter.runner_ids", &f.runner_ids)?,
            None => Vec::new(),
        };
        let runner_ids = self
            .visible_runner_ids(caller, &requested, RunnerFilter::default())
            .await?;
        let page = match &runner_ids {
            Some(ids) if ids.is_empty() => {
                return Response::ok(api::ListSCMIntegrationsResponse {
                    pagination: page_response(None),
                    ..Default::default()
                });
            }
            _ => page,
        };
        let integrations = self
            .state
            .store
            .list_scm_integrations(caller.org_id(), runner_ids.as_deref().unwrap_or(&[]), page)
            .await
            .map_err(store_error)?;
        Response::ok(api::ListSCMIntegrationsResponse {
            pagination: page_response(integrations.next_after),
            integrations: integrations
                .items
                .iter()
                .map(convert::scm_integration)
                .collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_scm_integration(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::UpdateSCMIntegrationRequest>,
    ) -> ServiceResult<api::UpdateSCMIntegrationResponse> {
        let caller = caller(&ctx)?;
        let req = request.to_owned_message();
        let current = self
            .integration_for(caller, &req.id, RunnerRole::Admin)
            .await?;
        let runner = self
            .state
            .store
            .get_runner(current.runner_id)
            .await
            .map_err(store_error)?;
        // Work out the result first and check it: bad input changes nothing.
        let mut updated = current.clone();
        if let Some(pat) = req.pat {
            updated.pat = pat;
        }
        if let Some(dir) = &req.virtual_directory {
            updated.virtual_directory = convert::virtual_directory("virtual_directory", Some(dir))?;
        }
        let client_id = req
            .oauth_client_id
            .clone()
            .or_else(|| updated.oauth.as_ref().map(|o| o.client_id.clone()))
            .unwrap_or_default();
        let issuer_url = req
            .issuer_url
            .clone()
            .or_else(|| updated.oauth.as_ref().map(|o| o.issuer_url.clone()))
            .unwrap_or_default();
        let sealed = match &req.oauth_plaintext_client_secret {
            Some(secret) if !secret.is_empty() => Self::seal_client_secret(&runner, secret)?,
            Some(_) => Vec::new(),
            None => updated
                .oauth
                .as_ref()
                .map(|o| o.encrypted_client_secret.clone())
                .unwrap_or_default(),
        };
        let has_secret = !sealed.is_empty();
        updated.oauth = (!client_id.is_empty()).then(|| OAuthApp {
            client_id: client_id.clone(),
            encrypted_client_secret: sealed,
            issuer_url,
        });
        let check = check_scm_integration(
            &self.schema_for(&runner),
            &updated.scm_id,
            &updated.host,
            updated.pat,
            Some(&client_id),
            has_secret,
        );
        if !check.valid {
            return Err(scm_validation_error(&check));
        }
        self.state
            .store
            .update_scm_integration(
                current.id,
                Box::new(move |i: &mut ScmIntegration| {
                    i.pat = updated.pat;
                    i.virtual_directory = updated.virtual_directory;
                    i.oauth = updated.oauth;
                    Ok(())
                }),
            )
            .await
            .map_err(store_error)?;
        Response::ok(api::UpdateSCMIntegrationResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn delete_scm_integration(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteSCMIntegrationRequest>,
    ) -> ServiceResult<api::DeleteSCMIntegrationResponse> {
        let caller = caller(&ctx)?;
        let integration = self
            .integration_for(caller, request.id, RunnerRole::Admin)
            .await?;
        self.state
            .store
            .delete_scm_integration(integration.id)
            .await
            .map_err(store_error)?;
        Response::ok(api::DeleteSCMIntegrationResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn create_environment_class(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateEnvironmentClassRequest>,
    ) -> ServiceResult<api::CreateEnvironmentClassResponse> {
        let caller = caller(&ctx)?;
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        let runner = runner_for(
            self.state.store.as_ref(),
            caller,
            runner_id,
            RunnerRole::Admin,
        )
        .await?;
        let schema = self.schema_for(&runner);
        let configuration = pairs(&req.configuration);
        let errors = check_environment_class(&schema, &configuration);
        if !errors.is_empty() {
            return Err(configuration_error(&errors));
        }
        let class = EnvironmentClass {
            id: new_id(),
            org_id: runner.org_id,
            runner_id: runner.id,
            display_name: req.display_name.clone(),
            description: req.description.clone(),
            configuration,
            enabled: true,
            created_at: Utc::now(),
        };
        self.state
            .store
            .create_environment_class(&class)
            .await
            .map_err(store_error)?;
        Response::ok(api::CreateEnvironmentClassResponse {
            id: class.id.to_string(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_environment_class(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetEnvironmentClassRequest>,
    ) -> ServiceResult<api::GetEnvironmentClassResponse> {
        let caller = caller(&ctx)?;
        let class = self
            .class_for(caller, request.environment_class_id, RunnerRole::User)
            .await?;
        Response::ok(api::GetEnvironmentClassResponse {
            environment_class: MessageField::some(convert::environment_class(&class)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_environment_classes(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListEnvironmentClassesRequest>,
    ) -> ServiceResult<api::ListEnvironmentClassesResponse> {
        let caller = caller(&ctx)?;
        let req = request.to_owned_message();
        let page = page_request(&ctx, req.pagination.as_option())?;
        let mut runner_filter = RunnerFilter::default();
        let mut filter = EnvironmentClassFilter::default();
        let mut requested = Vec::new();
        if let Some(f) = req.filter.as_option() {
            requested = parse_ids("filter.runner_ids", &f.runner_ids)?;
            filter.enabled = f.enabled.or(f.can_create_environments.filter(|c| *c));
            for kind in &f.runner_kinds {
                match kind.as_known() {
                    Some(k) => runner_filter.kinds.extend(convert::runner_kind_from(k)),
                    None => {
                        return Err(invalid_field(
                            "filter.runner_kinds",
                            "value must be one of the defined enum values",
                        ));
                    }
                }
            }
            for provider in &f.runner_providers {
                match provider.as_known() {
                    Some(p) => runner_filter
                        .providers
                        .extend(convert::runner_provider_from(p)),
                    None => {
                        return Err(invalid_field(
                            "filter.runner_providers",
                            "value must be one of the defined enum values",
                        ));
                    }
                }
            }
        }
        runner_filter.kinds = convert::distinct(runner_filter.kinds);
        runner_filter.providers = convert::distinct(runner_filter.providers);
        let runner_ids = self
            .visible_runner_ids(caller, &requested, runner_filter)
            .await?;
        if let Some(ids) = &runner_ids {
            if ids.is_empty() {
                return Response::ok(api::ListEnvironmentClassesResponse {
                    pagination: page_response(None),
                    ..Default::default()
                });
            }
            filter.runner_ids = ids.clone();
        }
        let classes = self
            .state
            .store
            .list_environment_classes(caller.org_id(), &filter, page)
            .await
            .map_err(store_error)?;
        Response::ok(api::ListEnvironmentClassesResponse {
            pagination: page_response(classes.next_after),
            environment_classes: classes
                .items
                .iter()
                .map(convert::environment_class)
                .collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_environment_class(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::UpdateEnvironmentClassRequest>,
    ) -> ServiceResult<api::UpdateEnvironmentClassResponse> {
        let caller = caller(&ctx)?;
        let req = request.to_owned_message();
        let class = self
            .class_for(caller, &req.environment_class_id, RunnerRole::Admin)
            .await?;
        self.state
            .store
            .update_environment_class(
                class.id,
                Box::new(move |c: &mut EnvironmentClass| {
                    if let Some(name) = req.display_name {
                        c.display_name = name;
                    }
                    if let Some(description) = req.description {
                        c.description = description;
                    }
                    if let Some(enabled) = req.enabled {
                        c.enabled = enabled;
                    }
                    Ok(())
                }),
            )
            .await
            .map_err(store_error)?;
        Response::ok(api::UpdateEnvironmentClassResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn validate_runner_configuration(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ValidateRunnerConfigurationRequest>,
    ) -> ServiceResult<api::ValidateRunnerConfigurationResponse> {
        use api::validate_runner_configuration_request::Config;
        use api::validate_runner_configuration_request::validate_scm_integration::OauthClientSecret;
        use api::validate_runner_configuration_response::Result as Outcome;
        let caller = caller(&ctx)?;
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        let runner = runner_for(
            self.state.store.as_ref(),
            caller,
            runner_id,
            RunnerRole::User,
        )
        .await?;
        let schema = self.schema_for(&runner);
        let result = match req.config {
            None => {
                return Err(invalid_field(
                    "config",
                    "give an environment_class or an scm_integration to validate",
                ));
            }
            Some(Config::EnvironmentClass(class)) => {
                // The declarative rules are off for this message; its one list is bounded here.
                if class.configuration.len() > CONFIGURATION_MAX_ENTRIES {
                    return Err(invalid_field(
                        "environment_class.configuration",
                        format!("list must contain at most {CONFIGURATION_MAX_ENTRIES} items"),
                    ));
                }
                let mut result = api::EnvironmentClassValidationResult::default();
                let name_len = class.display_name.chars().count();
                if !(3..=127).contains(&name_len) {
                    result.display_name_error = Some("must be between 3 and 127 characters".into());
                }
                let description_len = class.description.chars().count();
                if !(3..=200).contains(&description_len) {
                    result.description_error = Some("must be between 3 and 200 characters".into());
                }
                result.configuration_errors =
                    check_environment_class(&schema, &pairs(&class.configuration))
                        .into_iter()
                        .map(|(key, error)| api::FieldValidationError {
                            key,
                            error,
                            ..Default::default()
                        })
                        .collect();
                result.valid = result.display_name_error.is_none()
                    && result.description_error.is_none()
                    && result.configuration_errors.is_empty();
                Outcome::EnvironmentClass(Box::new(result))
            }
            Some(Config::ScmIntegration(scm)) => {
                let has_secret = match &scm.oauth_client_secret {
                    Some(OauthClientSecret::OauthPlaintextClientSecret(s)) => !s.is_empty(),
                    Some(OauthClientSecret::OauthEncryptedClientSecret(s)) => !s.is_empty(),
                    None => false,
                };
                Outcome::ScmIntegration(Box::new(check_scm_integration(
                    &schema,
                    &scm.scm_id,
                    &scm.host,
                    scm.pat,
                    scm.oauth_client_id.as_deref(),
                    has_secret,
                )))
            }
        };
        Response::ok(api::ValidateRunnerConfigurationResponse {
            result: Some(result),
            ..Default::default()
        })
    }
}
