//! `gitpod.v1.RunnerService`: runners, their tokens and policies, and the SCM
//! requests that a connected runner answers.

use std::sync::Arc;

use buffa::MessageField;
use chrono::Utc;
use connectrpc::{ConnectError, RequestContext, Response, ServiceRequest, ServiceResult};
use corral_api::gitpod::v1 as api;
use uuid::Uuid;

use super::convert::{self, parse_ids};
use super::runner_answers::{RunnerAnswer, RunnerJson, RunnerPage};
use super::runner_interaction::{delete_request, spec_request};
use super::scm_forwarding::{ScmForwarding, url_host};
use crate::authz::policy::Action;
use crate::authz::{Access, access};
use crate::crypto::LogsGrant;
use crate::domain::*;
use crate::errors::invalid_field;
use crate::pagination::fill_from_query;
use crate::state::SharedState;
use corral_api::corral::v1::{respond_request::Result as Answer, scm_request::Call};

/// How long a logs token lets its bearer read a runner's logs.
const LOGS_TOKEN_LIFETIME: chrono::Duration = chrono::Duration::minutes(15);

pub struct Runners {
    state: SharedState,
    /// Runners' JSON, kept for GetRunner's and ListRunners' answers.
    json: Arc<RunnerJson>,
}

impl Runners {
    pub fn new(state: SharedState) -> Self {
        Self {
            state,
            json: Arc::default(),
        }
    }

    fn scm(&self) -> ScmForwarding<'_> {
        ScmForwarding { state: &self.state }
    }
}

/// Checks an update window and fills in the default end (start + 2 hours).
pub fn update_window(
    start: Option<u32>,
    end: Option<u32>,
) -> Result<Option<UpdateWindow>, ConnectError> {
    let field = "spec.configuration.update_window";
    let Some(start) = start else {
        if end.is_some() {
            return Err(invalid_field(
                &format!("{field}.start_hour"),
                "is required when end_hour is set",
            ));
        }
        return Ok(None);
    };
    if start > 23 {
        return Err(invalid_field(
            &format!("{field}.start_hour"),
            "must be between 0 and 23",
        ));
    }
    let end = end.unwrap_or((start + 2) % 24);
    if end > 23 {
        return Err(invalid_field(
            &format!("{field}.end_hour"),
            "must be between 0 and 23",
        ));
    }
    // Windows may wrap past midnight (22 to 2 is four hours long).
    let length = (end + 24 - start) % 24;
    if length < 2 {
        return Err(invalid_field(
            &format!("{field}.end_hour"),
            "the window must be at least 2 hours long",
        ));
    }
    Ok(Some(UpdateWindow {
        start_hour: start,
        end_hour: end,
    }))
}

fn known<E: buffa::Enumeration + Copy>(
    field: &str,
    value: buffa::EnumValue<E>,
) -> Result<E, ConnectError> {
    value
        .as_known()
        .ok_or_else(|| invalid_field(field, "value must be one of the defined enum values"))
}

/// The desired phases an admin may ask for; deletion goes through DeleteRunner.
fn desired_phase(value: buffa::EnumValue<api::RunnerPhase>) -> Result<RunnerPhase, ConnectError> {
    let phase = convert::runner_phase_from(known("spec.desired_phase", value)?);
    match phase {
        RunnerPhase::Active | RunnerPhase::Inactive | RunnerPhase::Unspecified => Ok(phase),
        _ => Err(invalid_field(
            "spec.desired_phase",
            "may be RUNNER_PHASE_ACTIVE or RUNNER_PHASE_INACTIVE; use DeleteRunner to delete",
        )),
    }
}

/// The configuration given at creation.
fn initial_config(
    state: &SharedState,
    spec: Option<&api::RunnerSpec>,
) -> Result<(RunnerConfig, RunnerVariant), ConnectError> {
    let mut config = RunnerConfig {
        release_channel: ReleaseChannel::Stable,
        auto_update: true,
        log_level: LogLevel::Info,
        ..Default::default()
    };
    let Some(spec) = spec else {
        return Ok((config, RunnerVariant::Standard));
    };
    let variant = convert::variant_from(known("spec.variant", spec.variant)?);
    if let Some(c) = spec.configuration.as_option() {
        config.region = c.region.clone();
        let channel = convert::release_channel_from(known(
            "spec.configuration.release_channel",
            c.release_channel,
        )?);
        if channel != ReleaseChannel::Unspecified {
            config.release_channel = channel;
        }
        config.auto_update = c.auto_update;
        let level = convert::log_level_from(known("spec.configuration.log_level", c.log_level)?);
        if level != LogLevel::Unspecified {
            config.log_level = level;
        }
        config.devcontainer_image_cache_enabled = c.devcontainer_image_cache_enabled;
        config.continuous_profiling = c.continuous_profiling;
        if let Some(m) = c.metrics.as_option() {
            config.metrics = MetricsConfig {
                enabled: m.enabled,
                url: metrics_url("spec.configuration.metrics.url", &m.url)?,
                username: m.username.clone(),
                password_encrypted: (!m.password.is_empty())
                    .then(|| state.data_key.encrypt(m.password.as_bytes())),
                managed_metrics_enabled: m.managed_metrics_enabled,
                include_verbose_metrics: m.include_verbose_metrics,
            };
        }
        if let Some(w) = c.update_window.as_option() {
            config.update_window = update_window(w.start_hour, w.end_hour)?;
        }
    }
    Ok((config, variant))
}

/// A metrics collector's URL: empty, or http(s) with a host (the runner
/// POSTs remote-write requests to it).
fn metrics_url(field: &str, url: &str) -> Result<String, ConnectError> {
    if url.is_empty() {
        return Ok(String::new());
    }
    let host = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .map(|rest| rest.split(['/', '?', '#']).next().unwrap_or_default());
    match host {
        // Credentials go in username and password, which stay secret; a URL
        // is shown and logged.
        Some(host) if host.contains('@') => Err(invalid_field(
            field,
            "must not carry credentials: give them as metrics.username and metrics.password",
        )),
        Some(host)
            if !host.is_empty() && !url.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(url.to_string())
        }
        _ => Err(invalid_field(
            field,
            "must be an http:// or https:// URL of a remote-write receiver, e.g. http://prometheus:9090/api/v1/write",
        )),
    }
}

/// Applies the fields present in an UpdateRunner configuration.
fn apply_config_update(
    state: &SharedState,
    config: &mut RunnerConfig,
    update: &api::update_runner_request::RunnerConfiguration,
) -> Result<(), ConnectError> {
    if let Some(channel) = update.release_channel {
        config.release_channel =
            convert::release_channel_from(known("spec.configuration.release_channel", channel)?);
    }
    if let Some(auto_update) = update.auto_update {
        config.auto_update = auto_update;
    }
    if let Some(level) = update.log_level {
        config.log_level = convert::log_level_from(known("spec.configuration.log_level", level)?);
    }
    if let Some(enabled) = update.devcontainer_image_cache_enabled {
        config.devcontainer_image_cache_enabled = enabled;
    }
    if let Some(profiling) = update.continuous_profiling {
        config.continuous_profiling = profiling;
    }
    if let Some(key) = &update.honeycomb_api_key {
        config.honeycomb_api_key_encrypted =
            (!key.is_empty()).then(|| state.data_key.encrypt(key.as_bytes()));
    }
    if let Some(w) = update.update_window.as_option() {
        config.update_window = update_window(w.start_hour, w.end_hour)?;
    }
    if let Some(m) = update.metrics.as_option() {
        let metrics = &mut config.metrics;
        if let Some(enabled) = m.enabled {
            metrics.enabled = enabled;
        }
        if let Some(url) = &m.url {
            metrics.url = metrics_url("spec.configuration.metrics.url", url)?;
        }
        if let Some(username) = &m.username {
            metrics.username = username.clone();
        }
        if let Some(password) = &m.password {
            metrics.password_encrypted =
                (!password.is_empty()).then(|| state.data_key.encrypt(password.as_bytes()));
        }
        if let Some(managed) = m.managed_metrics_enabled {
            metrics.managed_metrics_enabled = managed;
        }
        if let Some(verbose) = m.include_verbose_metrics {
            metrics.include_verbose_metrics = verbose;
        }
    }
    Ok(())
}

/// Kind and provider of a new runner: the kind follows from the provider.
fn kind_and_provider(
    kind: buffa::EnumValue<api::RunnerKind>,
    provider: buffa::EnumValue<api::RunnerProvider>,
) -> Result<(RunnerKind, Option<RunnerProvider>), ConnectError> {
    let kind = convert::runner_kind_from(known("kind", kind)?);
    let provider = convert::runner_provider_from(known("provider", provider)?);
    match (kind, provider) {
        (Some(_), Some(_)) => Err(invalid_field(
            "kind",
            "give either kind or provider, not both: the kind follows from the provider",
        )),
        (None, Some(provider)) => Ok((provider.kind(), Some(provider))),
        (Some(kind), None) => Ok((kind, None)),
        (None, None) => Ok((RunnerKind::Local, Some(RunnerProvider::LinuxHost))),
    }
}

#[protovalidate_buffa::connect_impl]
impl api::RunnerService for Runners {
    #[allow(refining_impl_trait)]
    async fn create_runner(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateRunnerRequest>,
    ) -> ServiceResult<api::CreateRunnerResponse> {
        let access = access(&ctx)?;
        let user = access.user()?;
        let req = request.to_owned_message();
        let (kind, provider) = kind_and_provider(req.kind, req.provider)?;
        if !req.runner_manager_id.is_empty() {
            // Only runners that Ona's own runner managers run have one; corral
            // has no runner managers, so the id could name nothing.
            return Err(invalid_field(
                "runner_manager_id",
                "corral has no runner managers: leave runner_manager_id empty",
            ));
        }
        let (config, variant) = initial_config(&self.state, req.spec.as_option())?;
        let now = Utc::now();
        let runner = Runner {
            id: new_id(),
            org_id: user.org_id,
            name: req.name.clone(),
            kind,
            provider,
            creator: Subject::User(user.user.id),
            runner_manager_id: None,
            spec: RunnerSpec {
                desired_phase: RunnerPhase::Active,
                config,
                variant,
            },
            status: RunnerStatus {
                phase: RunnerPhase::Created,
                ..Default::default()
            },
            config_schema: None,
            created_at: now,
            updated_at: now,
        };
        let exchange_token = access.create_runner(&runner).await?;
        Response::ok(api::CreateRunnerResponse {
            runner: MessageField::some(convert::runner(&runner)),
            exchange_token,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn get_runner(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::GetRunnerRequest>,
    ) -> ServiceResult<RunnerAnswer> {
        let id = convert::parse_id("runner_id", request.runner_id)?;
        let runner = access(&ctx)?.runner(id).await?;
        Response::ok(RunnerAnswer {
            runner,
            json: self.json.clone(),
        })
    }

    #[allow(refining_impl_trait)]
    async fn list_runners(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListRunnersRequest>,
    ) -> ServiceResult<RunnerPage> {
        let access = access(&ctx)?;
        let mut req = request.to_owned_message();
        let paging = access.paging(&ctx, req.pagination.take(), &req)?;
        let mut filter = RunnerFilter::default();
        if let Some(f) = req.filter.as_option() {
            filter.creator_ids = parse_ids("filter.creator_ids", &f.creator_ids)?;
            for kind in &f.kinds {
                let kind = convert::runner_kind_from(known("filter.kinds", *kind)?);
                if kind.is_some_and(|k| !filter.kinds.contains(&k)) {
                    filter.kinds.extend(kind);
                }
            }
            for provider in &f.providers {
                let provider = convert::runner_provider_from(known("filter.providers", *provider)?);
                if provider.is_some_and(|p| !filter.providers.contains(&p)) {
                    filter.providers.extend(provider);
                }
            }
        }
        let runners = access.list_runners(filter, paging.request).await?;
        Response::ok(RunnerPage {
            pagination: paging.response(runners.next_after),
            runners: runners.items,
            json: self.json.clone(),
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_runner(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::UpdateRunnerRequest>,
    ) -> ServiceResult<api::UpdateRunnerResponse> {
        let access = access(&ctx)?;
        let req = request.to_owned_message();
        let id = convert::parse_id("runner_id", &req.runner_id)?;
        // Check everything before changing anything: bad input changes nothing.
        let mut probe = RunnerConfig::default();
        let spec = req.spec.as_option().cloned();
        let desired = match spec.as_ref().and_then(|s| s.desired_phase) {
            Some(phase) => Some(desired_phase(phase)?),
            None => None,
        };
        if let Some(config) = spec.as_ref().and_then(|s| s.configuration.as_option()) {
            apply_config_update(&self.state, &mut probe, config)?;
        }
        let state = self.state.clone();
        let name = req.name.clone();
        // Whether the runner is connected matters only to a desired phase;
        // asking costs a round trip to the bus on PostgreSQL.
        let connected = match desired {
            Some(phase) if phase != RunnerPhase::Unspecified => {
                self.state.hub.is_connected(id).await
            }
            _ => false,
        };
        let updated = access
            .update_runner(
                id,
                Box::new(move |runner: &mut Runner| {
                    if let Some(name) = &name {
                        runner.name = name.clone();
                    }
                    if let Some(phase) = desired.filter(|p| *p != RunnerPhase::Unspecified) {
                        runner.spec.desired_phase = phase;
                        runner.follow_desired_phase(connected);
                    }
                    if let Some(config) = spec.as_ref().and_then(|s| s.configuration.as_option()) {
                        apply_config_update(&state, &mut runner.spec.config, config).map_err(
                            |e| crate::store::StoreError::Conflict(e.message.unwrap_or_default()),
                        )?;
                    }
                    runner.updated_at = Utc::now();
                    Ok(())
                }),
            )
            .await?;
        // A connected runner learns of the change at once; one that is not
        // gets its spec when it next connects.
        self.state
            .hub
            .notify(id, spec_request(&self.state, &updated))
            .await;
        Response::ok(api::UpdateRunnerResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn delete_runner(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteRunnerRequest>,
    ) -> ServiceResult<api::DeleteRunnerResponse> {
        let id = convert::parse_id("runner_id", request.runner_id)?;
        access(&ctx)?.delete_runner(id, request.force).await?;
        // A connected runner is told to clean up. When the runner is already
        // gone (forced), nobody waits for it; otherwise it stays DELETING
        // until it confirms.
        self.state.hub.notify(id, delete_request()).await;
        Response::ok(api::DeleteRunnerResponse::default())
    }

    #[allow(refining_impl_trait)]
    async fn create_runner_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateRunnerTokenRequest>,
    ) -> ServiceResult<api::CreateRunnerTokenResponse> {
        let id = convert::parse_id("runner_id", request.runner_id)?;
        let exchange_token = access(&ctx)?.create_runner_token(id).await?;
        Response::ok(api::CreateRunnerTokenResponse {
            exchange_token,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn create_runner_logs_token(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateRunnerLogsTokenRequest>,
    ) -> ServiceResult<api::CreateRunnerLogsTokenResponse> {
        let access = access(&ctx)?;
        let id = convert::parse_id("runner_id", request.runner_id)?;
        let runner = access.runner_for_logs(id).await?;
        let access_token = self.state.logs_signer.sign(&LogsGrant {
            runner_id: runner.id,
            subject_id: access.caller()?.subject().id(),
            expires_at: Utc::now() + LOGS_TOKEN_LIFETIME,
        });
        Response::ok(api::CreateRunnerLogsTokenResponse {
            access_token,
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn parse_context_url(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ParseContextURLRequest>,
    ) -> ServiceResult<api::ParseContextURLResponse> {
        let req = request.to_owned_message();
        let host = url_host(&req.context_url)
            .ok_or_else(|| invalid_field("context_url", "is not a URL with a host"))?;
        let runner_id = req.runner_id.clone();
        match self
            .scm()
            .forward(
                &ctx,
                &runner_id,
                Some(host),
                Call::ParseContextUrl(Box::new(req)),
            )
            .await?
        {
            Answer::ParseContextUrl(answer) => Response::ok(*answer),
            _ => Err(mismatched_answer()),
        }
    }

    #[allow(refining_impl_trait)]
    async fn search_repositories(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::SearchRepositoriesRequest>,
    ) -> ServiceResult<api::SearchRepositoriesResponse> {
        let mut req = request.to_owned_message();
        fill_from_query(&ctx, req.pagination.get_or_insert_default());
        if !req.scm_host.is_empty() {
            req.scm_host = convert::scm_host("scm_host", &req.scm_host, None)?;
        }
        let host = Some(req.scm_host.trim())
            .filter(|h| !h.is_empty())
            .map(super::scm_forwarding::host_key);
        let runner_id = req.runner_id.clone();
        match self
            .scm()
            .forward(
                &ctx,
                &runner_id,
                host,
                Call::SearchRepositories(Box::new(req)),
            )
            .await?
        {
            Answer::SearchRepositories(answer) => Response::ok(*answer),
            _ => Err(mismatched_answer()),
        }
    }

    #[allow(refining_impl_trait)]
    async fn list_scm_organizations(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListSCMOrganizationsRequest>,
    ) -> ServiceResult<api::ListSCMOrganizationsResponse> {
        let mut req = request.to_owned_message();
        fill_from_query(&ctx, req.pagination.get_or_insert_default());
        req.scm_host = convert::scm_host("scm_host", &req.scm_host, None)?;
        let host = Some(super::scm_forwarding::host_key(&req.scm_host));
        let runner_id = req.runner_id.clone();
        match self
            .scm()
            .forward(
                &ctx,
                &runner_id,
                host,
                Call::ListScmOrganizations(Box::new(req)),
            )
            .await?
        {
            Answer::ListScmOrganizations(answer) => Response::ok(*answer),
            _ => Err(mismatched_answer()),
        }
    }

    #[allow(refining_impl_trait)]
    async fn check_authentication_for_host(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CheckAuthenticationForHostRequest>,
    ) -> ServiceResult<api::CheckAuthenticationForHostResponse> {
        let mut req = request.to_owned_message();
        req.host = convert::scm_host("host", &req.host, None)?;
        let host = Some(super::scm_forwarding::host_key(&req.host));
        let runner_id = req.runner_id.clone();
        match self
            .scm()
            .forward(
                &ctx,
                &runner_id,
                host,
                Call::CheckAuthenticationForHost(Box::new(req)),
            )
            .await?
        {
            Answer::CheckAuthenticationForHost(answer) => Response::ok(*answer),
            _ => Err(mismatched_answer()),
        }
    }

    #[allow(refining_impl_trait)]
    async fn check_repository_access(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CheckRepositoryAccessRequest>,
    ) -> ServiceResult<api::CheckRepositoryAccessResponse> {
        let req = request.to_owned_message();
        let host = url_host(&req.repository_url)
            .ok_or_else(|| invalid_field("repository_url", "is not a URL with a host"))?;
        let runner_id = req.runner_id.clone();
        match self
            .scm()
            .forward(
                &ctx,
                &runner_id,
                Some(host),
                Call::CheckRepositoryAccess(Box::new(req)),
            )
            .await?
        {
            Answer::CheckRepositoryAccess(answer) => Response::ok(*answer),
            _ => Err(mismatched_answer()),
        }
    }

    #[allow(refining_impl_trait)]
    async fn list_runner_policies(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::ListRunnerPoliciesRequest>,
    ) -> ServiceResult<api::ListRunnerPoliciesResponse> {
        let access = access(&ctx)?;
        let mut req = request.to_owned_message();
        let paging = access.paging(&ctx, req.pagination.take(), &req)?;
        let page = paging.request;
        let id = convert::parse_id("runner_id", &req.runner_id)?;
        // Policies are few per runner; page over the group ids in order.
        let policies = access.runner_policies(id).await?;
        let remaining: Vec<_> = policies
            .into_iter()
            .filter(|p| page.after.is_none_or(|after| p.group_id > after))
            .collect();
        let next_after = (remaining.len() > page.limit).then(|| remaining[page.limit - 1].group_id);
        Response::ok(api::ListRunnerPoliciesResponse {
            pagination: paging.response(next_after),
            policies: remaining
                .iter()
                .take(page.limit)
                .map(convert::runner_policy)
                .collect(),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn create_runner_policy(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::CreateRunnerPolicyRequest>,
    ) -> ServiceResult<api::CreateRunnerPolicyResponse> {
        let policy = policy_of(request.runner_id, request.group_id, Some(request.role))?;
        change_policy(&ctx, Action::Create, &policy).await?;
        Response::ok(api::CreateRunnerPolicyResponse {
            policy: MessageField::some(convert::runner_policy(&policy)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn update_runner_policy(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::UpdateRunnerPolicyRequest>,
    ) -> ServiceResult<api::UpdateRunnerPolicyResponse> {
        let policy = policy_of(request.runner_id, request.group_id, Some(request.role))?;
        change_policy(&ctx, Action::Update, &policy).await?;
        Response::ok(api::UpdateRunnerPolicyResponse {
            policy: MessageField::some(convert::runner_policy(&policy)),
            ..Default::default()
        })
    }

    #[allow(refining_impl_trait)]
    async fn delete_runner_policy(
        &self,
        ctx: RequestContext,
        request: ServiceRequest<'_, api::DeleteRunnerPolicyRequest>,
    ) -> ServiceResult<api::DeleteRunnerPolicyResponse> {
        let policy = policy_of(request.runner_id, request.group_id, None)?;
        change_policy(&ctx, Action::Delete, &policy).await?;
        Response::ok(api::DeleteRunnerPolicyResponse::default())
    }
}

/// The policy a request names. Without a role, USER is assumed (deletions need none).
fn policy_of(
    runner_id: &str,
    group_id: &str,
    role: Option<buffa::EnumValue<api::RunnerRole>>,
) -> Result<RunnerPolicy, ConnectError> {
    let runner_id: Uuid = convert::parse_id("runner_id", runner_id)?;
    let group_id: Uuid = convert::parse_id("group_id", group_id)?;
    let role = role
        .map(|r| convert::runner_role_from("role", r))
        .transpose()?;
    Ok(RunnerPolicy {
        runner_id,
        group_id,
        role: role.unwrap_or(RunnerRole::User),
    })
}

async fn change_policy(
    ctx: &RequestContext,
    action: Action,
    policy: &RunnerPolicy,
) -> Result<(), ConnectError> {
    let access: &Access = access(ctx)?;
    access.change_runner_policy(action, policy).await
}

/// A runner answered with the result of another call than it was asked.
fn mismatched_answer() -> ConnectError {
    ConnectError::internal("the runner answered a different request")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn update_window_defaults_and_bounds() {
        assert_eq!(update_window(None, None).unwrap(), None);
        assert_eq!(
            update_window(Some(3), None).unwrap(),
            Some(UpdateWindow {
                start_hour: 3,
                end_hour: 5
            })
        );
        assert_eq!(
            update_window(Some(23), None).unwrap(),
            Some(UpdateWindow {
                start_hour: 23,
                end_hour: 1
            })
        );
        assert_eq!(
            update_window(Some(22), Some(4)).unwrap(),
            Some(UpdateWindow {
                start_hour: 22,
                end_hour: 4
            })
        );
        assert!(update_window(Some(24), None).is_err());
        assert!(update_window(Some(3), Some(4)).is_err());
        assert!(update_window(Some(3), Some(3)).is_err());
        assert!(update_window(Some(3), Some(24)).is_err());
        assert!(update_window(None, Some(4)).is_err());
    }

    #[test]
    fn kind_follows_provider() {
        use api::{RunnerKind as K, RunnerProvider as P};
        use buffa::EnumValue::Known;
        let unspecified_kind = Known(K::RUNNER_KIND_UNSPECIFIED);
        assert_eq!(
            kind_and_provider(unspecified_kind, Known(P::RUNNER_PROVIDER_AWS_EC2)).unwrap(),
            (RunnerKind::Remote, Some(RunnerProvider::AwsEc2))
        );
        assert_eq!(
            kind_and_provider(unspecified_kind, Known(P::RUNNER_PROVIDER_LINUX_HOST)).unwrap(),
            (RunnerKind::Local, Some(RunnerProvider::LinuxHost))
        );
        assert!(
            kind_and_provider(Known(K::RUNNER_KIND_LOCAL), Known(P::RUNNER_PROVIDER_GCP)).is_err()
        );
        assert!(kind_and_provider(unspecified_kind, buffa::EnumValue::Unknown(99)).is_err());
    }
}
