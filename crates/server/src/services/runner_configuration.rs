//! `gitpod.v1.RunnerConfigurationService`: host authentication tokens, the
//! runner's configuration schema, SCM integrations and environment classes.

use buffa::MessageField;
use chrono::Utc;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;

use super::config_schema::{check_environment_class, linux_host_schema, scm_entry};
use super::convert::{self, parse_ids};
use crate::authz::access;
use crate::authz::policy::Action;
use crate::crypto;
use crate::domain::*;
use crate::errors::invalid_field;
use crate::state::SharedState;
use crate::store::StoreError;
use uuid::Uuid;

pub struct RunnerConfiguration {
    state: SharedState,
}

/// Entries of an environment class configuration (`max_items` in the .proto).
const CONFIGURATION_MAX_ENTRIES: usize = 100;

impl RunnerConfiguration {
    pub fn new(state: SharedState) -> Self {
        Self { state }
    }
}

/// The schema that governs `runner`'s configuration: the one it published,
/// or, before it has, the schema of `corral runner`.
fn schema_for(runner: &Runner) -> api::RunnerConfigurationSchema {
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

/// `host` in canonical form, or `invalid_argument` naming `field`. A path
/// (Azure DevOps Server's virtual directory) only in an Azure DevOps
/// integration's host: pass its `scm_id`.
fn normalize_host(field: &str, host: &str, scm_id: Option<&str>) -> Result<String, ConnectError> {
    convert::scm_host(field, host, scm_id)
}

/// `failed_precondition` when the runner's integration for `host` says
/// `pat: false`: such a host takes OAuth sign-ins only.
fn refuse_personal_tokens(integrations: &[ScmIntegration], host: &str) -> Result<(), ConnectError> {
    match pat_refused_by(integrations, host) {
        Some(i) => Err(ConnectError::failed_precondition(format!(
            "the runner's SCM integration for {} ({}) does not accept personal access tokens (pat is false); sign in with OAuth instead",
            i.host, i.id
        ))),
        None => Ok(()),
    }
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

/// An SCM integration as a request describes it, to be checked as a whole.
struct IntegrationDraft<'a> {
    /// The integration being changed (an update, or a validation naming it).
    id: Option<Uuid>,
    scm_id: &'a str,
    host: &'a str,
    pat: bool,
    oauth_client_id: Option<&'a str>,
    has_secret: bool,
    issuer_url: Option<&'a str>,
    virtual_directory: Option<&'a str>,
}

/// One thing wrong with a draft: the request field and what is wrong.
type Problem = (&'static str, String);

impl IntegrationDraft<'_> {
    /// Everything wrong with the draft against the runner's schema and the
    /// runner's other integrations (`existing`), in field order.
    fn problems(
        &self,
        schema: &api::RunnerConfigurationSchema,
        existing: &[ScmIntegration],
    ) -> Vec<Problem> {
        use corral_contract::scm_host::{self, PathRule, ScmHost};
        let mut problems = Vec::new();
        if scm_entry(schema, self.scm_id).is_none() {
            let known: Vec<&str> = schema.scm.iter().map(|s| s.scm_id.as_str()).collect();
            problems.push((
                "scm_id",
                format!(
                    "unknown SCM {:?}; this runner supports {}",
                    self.scm_id,
                    known.join(", ")
                ),
            ));
        }
        match ScmHost::parse(self.host, PathRule::for_scm(self.scm_id)) {
            Err(e) => problems.push(("host", e.to_string())),
            Ok(host) => {
                let key = scm_host::lookup_key(&host.canonical());
                if let Some(twin) = existing
                    .iter()
                    .find(|i| Some(i.id) != self.id && i.serves(&key))
                {
                    problems.push((
                        "host",
                        format!(
                            "the runner already has an SCM integration for {key} ({}); update that one instead",
                            twin.id
                        ),
                    ));
                }
            }
        }
        if let Some(dir) = self.virtual_directory.filter(|d| !d.is_empty()) {
            if self.scm_id != scm_host::AZURE_DEVOPS {
                problems.push((
                    "virtual_directory",
                    "is only for Azure DevOps Server integrations (scm_id azure-devops); leave it empty"
                        .into(),
                ));
            } else if let Err(e) = scm_host::check_virtual_directory(dir) {
                problems.push(("virtual_directory", e.to_string()));
            }
        }
        // A client id alone is kept (the secret can follow); a secret needs its id.
        let client_id = self.oauth_client_id.unwrap_or_default();
        if self.has_secret && client_id.is_empty() {
            problems.push((
                "oauth_client_id",
                "an OAuth client secret needs an OAuth client id".into(),
            ));
        }
        if let Some(issuer) = self.issuer_url.filter(|u| !u.is_empty())
            && let Err(e) = scm_host::check_issuer_url(issuer)
        {
            problems.push(("issuer_url", e.to_string()));
        }
        if !self.pat && client_id.is_empty() {
            problems.push((
                "pat",
                "enable personal access tokens or configure an OAuth app".into(),
            ));
        }
        problems
    }
}

/// Problems as ValidateRunnerConfiguration reports them: each in the slot
/// of its field (a virtual directory with the host, the issuer with OAuth).
fn validation_result(problems: &[Problem]) -> api::SCMIntegrationValidationResult {
    let mut result = api::SCMIntegrationValidationResult {
        valid: problems.is_empty(),
        ..Default::default()
    };
    for (field, message) in problems {
        // The response has no slot for these two: they go with their
        // neighbours, named.
        let (slot, message) = match *field {
            "scm_id" => (&mut result.scm_id_error, message.clone()),
            "host" => (&mut result.host_error, message.clone()),
            "virtual_directory" => (&mut result.host_error, format!("{field}: {message}")),
            "oauth_client_id" => (&mut result.oauth_error, message.clone()),
            "issuer_url" => (&mut result.oauth_error, format!("{field}: {message}")),
            _ => (&mut result.pat_error, message.clone()),
        };
        match slot {
            Some(text) => {
                text.push_str("; ");
                text.push_str(&message);
            }
            None => *slot = Some(message),
        }
    }
    result
}

/// The first problem, as the error a create answers with.
fn refuse_problems(problems: Vec<Problem>) -> Result<(), ConnectError> {
    match problems.into_iter().next() {
        Some((field, message)) => Err(invalid_field(field, message)),
        None => Ok(()),
    }
}

#[protovalidate_buffa::connect_impl]
impl api::RunnerConfigurationService for RunnerConfiguration {
    #[allow(refining_impl_trait)]
    async fn create_host_authentication_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateHostAuthenticationTokenRequest>,
    ) -> ServiceResult<api::CreateHostAuthenticationTokenResponse> {
        let access = access(&ctx)?;
        let me = access.user()?;
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        // A host token is a user's: the subject it is created with is a
        // user, and it is returned as that user (PRINCIPAL_USER).
        if let Some(subject) = req.subject.as_option()
            && !matches!(
                subject.principal.as_known(),
                Some(api::Principal::PRINCIPAL_USER | api::Principal::PRINCIPAL_UNSPECIFIED)
            )
        {
            return Err(invalid_field(
                "subject.principal",
                "a host authentication token belongs to a user: use PRINCIPAL_USER",
            ));
        }
        let owner = match req.subject.as_option().filter(|s| !s.id.is_empty()) {
            Some(subject) => convert::parse_id("subject.id", &subject.id)?,
            None if !req.user_id.is_empty() => convert::parse_id("user_id", &req.user_id)?,
            None => me.user.id,
        };
        let integration_id = if req.integration_id.is_empty() {
            None
        } else {
            Some(convert::parse_id("integration_id", &req.integration_id)?)
        };
        let expires_at = req
            .expires_at
            .as_option()
            .map(|t| convert::from_timestamp("expires_at", t))
            .transpose()?;
        let host = normalize_host("host", &req.host, None)?;
        let source = req
            .source
            .as_known()
            .and_then(convert::host_token_source_from);
        if HostTokenSource::is_personal(source) {
            refuse_personal_tokens(&access.integrations_of(&[runner_id]).await?, &host)?;
        }
        let token = HostToken {
            id: new_id(),
            org_id: me.org_id,
            runner_id,
            user_id: owner,
            host,
            source,
            token_encrypted: self.state.data_key.encrypt(req.token.as_bytes()),
            refresh_token_encrypted: (!req.refresh_token.is_empty())
                .then(|| self.state.data_key.encrypt(req.refresh_token.as_bytes())),
            expires_at,
            integration_id,
            scopes: convert::distinct(req.scopes.clone()),
            created_at: Utc::now(),
        };
        access.create_host_token(&token).await?;
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
        let id = convert::parse_id("id", request.id)?;
        let token = access(&ctx)?.host_token(id).await?;
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
        let access = access(&ctx)?;
        let mut req = request.to_owned_message();
        let paging = access.paging(&ctx, req.pagination.take(), &req)?;
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
        // Members see only their own tokens; others' do not exist for them.
        let tokens = access.list_host_tokens(filter, paging.request).await?;
        Response::ok(api::ListHostAuthenticationTokensResponse {
            pagination: paging.response(tokens.next_after),
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
        let access = access(&ctx)?;
        let req = request.to_owned_message();
        let id = convert::parse_id("id", &req.id)?;
        let expires_at = req
            .expires_at
            .as_option()
            .map(|t| convert::from_timestamp("expires_at", t))
            .transpose()?;
        // Encrypt before the transaction: only the fields given change.
        let key = &self.state.data_key;
        let token = req.token.as_ref().map(|t| key.encrypt(t.as_bytes()));
        let refresh = req
            .refresh_token
            .as_ref()
            .map(|r| (!r.is_empty()).then(|| key.encrypt(r.as_bytes())));
        let scopes = convert::distinct(req.scopes.clone());
        access
            .update_host_token(
                id,
                Box::new(move |t: &mut HostToken| {
                    if let Some(token) = token {
                        t.token_encrypted = token;
                    }
                    if let Some(refresh) = refresh {
                        t.refresh_token_encrypted = refresh;
                    }
                    if expires_at.is_some() {
                        t.expires_at = expires_at;
                    }
                    if !scopes.is_empty() {
                        t.scopes = scopes;
                    }
                    Ok(())
                }),
            )
            .await?;
        Response::ok(api::UpdateHostAuthenticationTokenResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn delete_host_authentication_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteHostAuthenticationTokenRequest>,
    ) -> ServiceResult<api::DeleteHostAuthenticationTokenResponse> {
        let id = convert::parse_id("id", request.id)?;
        access(&ctx)?.delete_host_token(id).await?;
        Response::ok(api::DeleteHostAuthenticationTokenResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn get_runner_configuration_schema(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetRunnerConfigurationSchemaRequest>,
    ) -> ServiceResult<api::GetRunnerConfigurationSchemaResponse> {
        let id = convert::parse_id("runner_id", request.runner_id)?;
        let runner = access(&ctx)?.runner_with_schema(id).await?;
        let mut schema = schema_for(&runner);
        // The runner knows only the callback's path; the SCM needs the
        // absolute URL browsers reach this server by.
        let callback = self.state.oauth_redirect_uri();
        for scm in &mut schema.scm {
            if let Some(oauth) = scm.oauth.as_option_mut() {
                oauth.callback_url = callback.clone();
            }
        }
        Response::ok(api::GetRunnerConfigurationSchemaResponse {
            schema: MessageField::some(schema),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn create_scm_integration(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateSCMIntegrationRequest>,
    ) -> ServiceResult<api::CreateSCMIntegrationResponse> {
        let access = access(&ctx)?;
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        let runner = access.runner_for_new_integration(runner_id).await?;
        let secret = req
            .oauth_plaintext_client_secret
            .clone()
            .filter(|s| !s.is_empty());
        // A second integration for the host is the store's to refuse
        // (already_exists), also when two requests race.
        let draft = IntegrationDraft {
            id: None,
            scm_id: &req.scm_id,
            host: &req.host,
            pat: req.pat,
            oauth_client_id: req.oauth_client_id.as_deref(),
            has_secret: secret.is_some(),
            issuer_url: req.issuer_url.as_deref(),
            virtual_directory: req.virtual_directory.as_deref(),
        };
        refuse_problems(draft.problems(&schema_for(&runner), &[]))?;
        let client_id = req.oauth_client_id.clone().unwrap_or_default();
        let oauth = if client_id.is_empty() {
            None
        } else {
            Some(OAuthApp {
                client_id,
                encrypted_client_secret: match secret {
                    Some(secret) => seal_client_secret(&runner, &secret)?,
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
        access.create_scm_integration(&integration).await?;
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
        let id = convert::parse_id("id", request.id)?;
        let (integration, _) = access(&ctx)?.scm_integration(id, Action::Read).await?;
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
        let access = access(&ctx)?;
        let mut req = request.to_owned_message();
        let paging = access.paging(&ctx, req.pagination.take(), &req)?;
        let requested = match req.filter.as_option() {
            Some(f) => parse_ids("filter.runner_ids", &f.runner_ids)?,
            None => Vec::new(),
        };
        let integrations = access
            .list_scm_integrations(&requested, paging.request)
            .await?;
        Response::ok(api::ListSCMIntegrationsResponse {
            pagination: paging.response(integrations.next_after),
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
        let access = access(&ctx)?;
        let req = request.to_owned_message();
        let id = convert::parse_id("id", &req.id)?;
        let (_, runner) = access.scm_integration(id, Action::Update).await?;
        // What the request gives is worked out here (sealing needs the
        // runner's key); it is applied to the record as it stands inside the
        // store's transaction, so concurrent partial updates all count.
        let sealed = match &req.oauth_plaintext_client_secret {
            Some(secret) if !secret.is_empty() => Some(seal_client_secret(&runner, secret)?),
            Some(_) => Some(Vec::new()),
            None => None,
        };
        let virtual_directory = req
            .virtual_directory
            .as_deref()
            .map(|dir| convert::virtual_directory("virtual_directory", Some(dir)))
            .transpose()?;
        let schema = schema_for(&runner);
        access
            .update_scm_integration(
                id,
                Box::new(move |i: &mut ScmIntegration| {
                    if let Some(pat) = req.pat {
                        i.pat = pat;
                    }
                    if let Some(dir) = virtual_directory {
                        i.virtual_directory = dir;
                    }
                    let current = i.oauth.take();
                    let client_id = req
                        .oauth_client_id
                        .clone()
                        .or_else(|| current.as_ref().map(|o| o.client_id.clone()))
                        .unwrap_or_default();
                    let issuer_url = req
                        .issuer_url
                        .clone()
                        .or_else(|| current.as_ref().map(|o| o.issuer_url.clone()))
                        .unwrap_or_default();
                    let sealed = sealed
                        .or_else(|| current.map(|o| o.encrypted_client_secret))
                        .unwrap_or_default();
                    let draft = IntegrationDraft {
                        id: Some(i.id),
                        scm_id: &i.scm_id,
                        host: &i.host,
                        pat: i.pat,
                        oauth_client_id: Some(&client_id),
                        has_secret: !sealed.is_empty(),
                        issuer_url: Some(&issuer_url),
                        virtual_directory: i.virtual_directory.as_deref(),
                    };
                    if let Some((field, message)) = draft.problems(&schema, &[]).into_iter().next()
                    {
                        return Err(StoreError::Invalid {
                            field: field.to_string(),
                            message,
                        });
                    }
                    i.oauth = (!client_id.is_empty()).then_some(OAuthApp {
                        client_id,
                        encrypted_client_secret: sealed,
                        issuer_url,
                    });
                    Ok(())
                }),
            )
            .await?;
        Response::ok(api::UpdateSCMIntegrationResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn delete_scm_integration(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteSCMIntegrationRequest>,
    ) -> ServiceResult<api::DeleteSCMIntegrationResponse> {
        let id = convert::parse_id("id", request.id)?;
        access(&ctx)?.delete_scm_integration(id).await?;
        Response::ok(api::DeleteSCMIntegrationResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn create_environment_class(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateEnvironmentClassRequest>,
    ) -> ServiceResult<api::CreateEnvironmentClassResponse> {
        let access = access(&ctx)?;
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        let runner = access.runner_for_new_class(runner_id).await?;
        let configuration = pairs(&req.configuration);
        let errors = check_environment_class(&schema_for(&runner), &configuration);
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
        access.create_environment_class(&class).await?;
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
        let id = convert::parse_id("environment_class_id", request.environment_class_id)?;
        let (class, _) = access(&ctx)?.environment_class(id, Action::Read).await?;
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
        let access = access(&ctx)?;
        let mut req = request.to_owned_message();
        let paging = access.paging(&ctx, req.pagination.take(), &req)?;
        let mut runners = RunnerFilter::default();
        let mut filter = EnvironmentClassFilter::default();
        let mut requested = Vec::new();
        if let Some(f) = req.filter.as_option() {
            requested = parse_ids("filter.runner_ids", &f.runner_ids)?;
            filter.enabled = f.enabled.or(f.can_create_environments.filter(|c| *c));
            for kind in &f.runner_kinds {
                let kind = kind.as_known().ok_or_else(|| {
                    invalid_field(
                        "filter.runner_kinds",
                        "value must be one of the defined enum values",
                    )
                })?;
                if let Some(kind) = convert::runner_kind_from(kind)
                    && !runners.kinds.contains(&kind)
                {
                    runners.kinds.push(kind);
                }
            }
            for provider in &f.runner_providers {
                let provider = provider.as_known().ok_or_else(|| {
                    invalid_field(
                        "filter.runner_providers",
                        "value must be one of the defined enum values",
                    )
                })?;
                if let Some(provider) = convert::runner_provider_from(provider)
                    && !runners.providers.contains(&provider)
                {
                    runners.providers.push(provider);
                }
            }
        }
        let classes = access
            .list_environment_classes(&requested, runners, filter, paging.request)
            .await?;
        Response::ok(api::ListEnvironmentClassesResponse {
            pagination: paging.response(classes.next_after),
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
        let access = access(&ctx)?;
        let req = request.to_owned_message();
        let id = convert::parse_id("environment_class_id", &req.environment_class_id)?;
        access
            .update_environment_class(
                id,
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
            .await?;
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
        let req = request.to_owned_message();
        let runner_id = convert::parse_id("runner_id", &req.runner_id)?;
        let access = access(&ctx)?;
        let runner = access.usable_runner(runner_id).await?;
        let schema = schema_for(&runner);
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
                let id = match scm.id.as_str() {
                    "" => None,
                    id => Some(convert::parse_id("scm_integration.id", id)?),
                };
                let existing = access.integrations_of(&[runner.id]).await?;
                let draft = IntegrationDraft {
                    id,
                    scm_id: &scm.scm_id,
                    host: &scm.host,
                    pat: scm.pat,
                    oauth_client_id: scm.oauth_client_id.as_deref(),
                    has_secret,
                    issuer_url: scm.issuer_url.as_deref(),
                    virtual_directory: scm.virtual_directory.as_deref(),
                };
                Outcome::ScmIntegration(Box::new(validation_result(
                    &draft.problems(&schema, &existing),
                )))
            }
        };
        Response::ok(api::ValidateRunnerConfigurationResponse {
            result: Some(result),
            ..Default::default()
        })
    }
}
