//! Domain types to `gitpod.v1` messages and back: the only place that knows both.

use buffa::{EnumValue, MessageField, ProtoBox};
use buffa_types::google::protobuf::{Duration as WireDuration, Timestamp as WireTimestamp};
use chrono::TimeZone;
use connectrpc::ConnectError;
use corral_api::gitpod::v1 as api;
use corral_contract::scm_host::{PathRule, ScmHost, check_virtual_directory};
use uuid::Uuid;

use crate::domain::{self, Subject, Timestamp};
use crate::errors::invalid_field;

pub fn timestamp<P: ProtoBox<WireTimestamp>>(at: Timestamp) -> MessageField<WireTimestamp, P> {
    MessageField::some(WireTimestamp {
        seconds: at.timestamp(),
        nanos: at.timestamp_subsec_nanos() as i32,
        ..Default::default()
    })
}

pub fn optional_timestamp<P: ProtoBox<WireTimestamp>>(
    at: Option<Timestamp>,
) -> MessageField<WireTimestamp, P> {
    at.map(timestamp).unwrap_or_default()
}

pub fn from_timestamp(field: &str, ts: &WireTimestamp) -> Result<Timestamp, ConnectError> {
    chrono::Utc
        .timestamp_opt(ts.seconds, ts.nanos.max(0) as u32)
        .single()
        .ok_or_else(|| invalid_field(field, "timestamp out of range"))
}

/// Parses an id the validation rules have already checked (or reports it).
pub fn parse_id(field: &str, value: &str) -> Result<Uuid, ConnectError> {
    Uuid::parse_str(value).map_err(|_| invalid_field(field, "value must be a valid UUID"))
}

/// Parses a list of ids that is a set: each id once, in first-seen order.
pub fn parse_ids(field: &str, values: &[String]) -> Result<Vec<Uuid>, ConnectError> {
    let ids = values
        .iter()
        .map(|v| parse_id(field, v))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(distinct(ids))
}

/// The items of a request list that is a set (enum filters, scopes), each
/// once, in first-seen order. Request lists are bounded (at most a few
/// hundred items), so comparing pairwise is cheap.
pub fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// An SCM host in canonical form (`corral_contract::scm_host`), or
/// `invalid_argument` naming `field`. `scm_id` is the integration's SCM when
/// the host is an integration's (only Azure DevOps hosts may carry a path).
pub fn scm_host(field: &str, host: &str, scm_id: Option<&str>) -> Result<String, ConnectError> {
    let paths = scm_id.map_or(PathRule::Refused, PathRule::for_scm);
    ScmHost::parse(host, paths)
        .map(|h| h.canonical())
        .map_err(|e| invalid_field(field, e))
}

/// An SCM integration's virtual directory as given (`None` when empty), once
/// checked to be plain path segments.
pub fn virtual_directory(field: &str, dir: Option<&str>) -> Result<Option<String>, ConnectError> {
    let Some(dir) = dir.filter(|d| !d.is_empty()) else {
        return Ok(None);
    };
    check_virtual_directory(dir).map_err(|e| invalid_field(field, e))?;
    Ok(Some(dir.to_string()))
}

pub fn subject<P: ProtoBox<api::Subject>>(s: Subject) -> MessageField<api::Subject, P> {
    let principal = match s {
        Subject::User(_) => api::Principal::PRINCIPAL_USER,
        Subject::Runner(_) => api::Principal::PRINCIPAL_RUNNER,
    };
    MessageField::some(api::Subject {
        id: s.id().to_string(),
        principal: EnumValue::Known(principal),
        ..Default::default()
    })
}

pub fn runner_kind(kind: domain::RunnerKind) -> api::RunnerKind {
    use domain::RunnerKind as K;
    match kind {
        K::Local => api::RunnerKind::RUNNER_KIND_LOCAL,
        K::Remote => api::RunnerKind::RUNNER_KIND_REMOTE,
        K::LocalConfiguration => api::RunnerKind::RUNNER_KIND_LOCAL_CONFIGURATION,
    }
}

pub fn runner_kind_from(kind: api::RunnerKind) -> Option<domain::RunnerKind> {
    use domain::RunnerKind as K;
    match kind {
        api::RunnerKind::RUNNER_KIND_UNSPECIFIED => None,
        api::RunnerKind::RUNNER_KIND_LOCAL => Some(K::Local),
        api::RunnerKind::RUNNER_KIND_REMOTE => Some(K::Remote),
        api::RunnerKind::RUNNER_KIND_LOCAL_CONFIGURATION => Some(K::LocalConfiguration),
    }
}

pub fn runner_provider(provider: domain::RunnerProvider) -> api::RunnerProvider {
    use domain::RunnerProvider as P;
    match provider {
        P::AwsEc2 => api::RunnerProvider::RUNNER_PROVIDER_AWS_EC2,
        P::LinuxHost => api::RunnerProvider::RUNNER_PROVIDER_LINUX_HOST,
        P::DesktopMac => api::RunnerProvider::RUNNER_PROVIDER_DESKTOP_MAC,
        P::Managed => api::RunnerProvider::RUNNER_PROVIDER_MANAGED,
        P::Gcp => api::RunnerProvider::RUNNER_PROVIDER_GCP,
        P::DevAgent => api::RunnerProvider::RUNNER_PROVIDER_DEV_AGENT,
    }
}

pub fn runner_provider_from(provider: api::RunnerProvider) -> Option<domain::RunnerProvider> {
    use domain::RunnerProvider as P;
    match provider {
        api::RunnerProvider::RUNNER_PROVIDER_UNSPECIFIED => None,
        api::RunnerProvider::RUNNER_PROVIDER_AWS_EC2 => Some(P::AwsEc2),
        api::RunnerProvider::RUNNER_PROVIDER_LINUX_HOST => Some(P::LinuxHost),
        api::RunnerProvider::RUNNER_PROVIDER_DESKTOP_MAC => Some(P::DesktopMac),
        api::RunnerProvider::RUNNER_PROVIDER_MANAGED => Some(P::Managed),
        api::RunnerProvider::RUNNER_PROVIDER_GCP => Some(P::Gcp),
        api::RunnerProvider::RUNNER_PROVIDER_DEV_AGENT => Some(P::DevAgent),
    }
}

pub fn runner_phase(phase: domain::RunnerPhase) -> api::RunnerPhase {
    use domain::RunnerPhase as P;
    match phase {
        P::Unspecified => api::RunnerPhase::RUNNER_PHASE_UNSPECIFIED,
        P::Created => api::RunnerPhase::RUNNER_PHASE_CREATED,
        P::Inactive => api::RunnerPhase::RUNNER_PHASE_INACTIVE,
        P::Active => api::RunnerPhase::RUNNER_PHASE_ACTIVE,
        P::Deleting => api::RunnerPhase::RUNNER_PHASE_DELETING,
        P::Deleted => api::RunnerPhase::RUNNER_PHASE_DELETED,
        P::Degraded => api::RunnerPhase::RUNNER_PHASE_DEGRADED,
    }
}

pub fn runner_phase_from(phase: api::RunnerPhase) -> domain::RunnerPhase {
    use domain::RunnerPhase as P;
    match phase {
        api::RunnerPhase::RUNNER_PHASE_UNSPECIFIED => P::Unspecified,
        api::RunnerPhase::RUNNER_PHASE_CREATED => P::Created,
        api::RunnerPhase::RUNNER_PHASE_INACTIVE => P::Inactive,
        api::RunnerPhase::RUNNER_PHASE_ACTIVE => P::Active,
        api::RunnerPhase::RUNNER_PHASE_DELETING => P::Deleting,
        api::RunnerPhase::RUNNER_PHASE_DELETED => P::Deleted,
        api::RunnerPhase::RUNNER_PHASE_DEGRADED => P::Degraded,
    }
}

pub fn log_level(level: domain::LogLevel) -> api::LogLevel {
    use domain::LogLevel as L;
    match level {
        L::Unspecified => api::LogLevel::LOG_LEVEL_UNSPECIFIED,
        L::Debug => api::LogLevel::LOG_LEVEL_DEBUG,
        L::Info => api::LogLevel::LOG_LEVEL_INFO,
        L::Warn => api::LogLevel::LOG_LEVEL_WARN,
        L::Error => api::LogLevel::LOG_LEVEL_ERROR,
    }
}

pub fn log_level_from(level: api::LogLevel) -> domain::LogLevel {
    use domain::LogLevel as L;
    match level {
        api::LogLevel::LOG_LEVEL_UNSPECIFIED => L::Unspecified,
        api::LogLevel::LOG_LEVEL_DEBUG => L::Debug,
        api::LogLevel::LOG_LEVEL_INFO => L::Info,
        api::LogLevel::LOG_LEVEL_WARN => L::Warn,
        api::LogLevel::LOG_LEVEL_ERROR => L::Error,
    }
}

pub fn release_channel(channel: domain::ReleaseChannel) -> api::RunnerReleaseChannel {
    use domain::ReleaseChannel as C;
    match channel {
        C::Unspecified => api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_UNSPECIFIED,
        C::Stable => api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_STABLE,
        C::Latest => api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST,
    }
}

pub fn release_channel_from(channel: api::RunnerReleaseChannel) -> domain::ReleaseChannel {
    use domain::ReleaseChannel as C;
    match channel {
        api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_UNSPECIFIED => C::Unspecified,
        api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_STABLE => C::Stable,
        api::RunnerReleaseChannel::RUNNER_RELEASE_CHANNEL_LATEST => C::Latest,
    }
}

fn variant(v: domain::RunnerVariant) -> api::RunnerVariant {
    use domain::RunnerVariant as V;
    match v {
        V::Unspecified => api::RunnerVariant::RUNNER_VARIANT_UNSPECIFIED,
        V::Standard => api::RunnerVariant::RUNNER_VARIANT_STANDARD,
        V::Enterprise => api::RunnerVariant::RUNNER_VARIANT_ENTERPRISE,
    }
}

pub fn variant_from(v: api::RunnerVariant) -> domain::RunnerVariant {
    use domain::RunnerVariant as V;
    match v {
        api::RunnerVariant::RUNNER_VARIANT_UNSPECIFIED => V::Unspecified,
        api::RunnerVariant::RUNNER_VARIANT_STANDARD => V::Standard,
        api::RunnerVariant::RUNNER_VARIANT_ENTERPRISE => V::Enterprise,
    }
}

pub fn runner_role(role: domain::RunnerRole) -> api::RunnerRole {
    match role {
        domain::RunnerRole::Admin => api::RunnerRole::RUNNER_ROLE_ADMIN,
        domain::RunnerRole::User => api::RunnerRole::RUNNER_ROLE_USER,
    }
}

/// The role named in a request; UNSPECIFIED and unknown numbers are rejected.
pub fn runner_role_from(
    field: &str,
    role: EnumValue<api::RunnerRole>,
) -> Result<domain::RunnerRole, ConnectError> {
    match role.as_known() {
        Some(api::RunnerRole::RUNNER_ROLE_ADMIN) => Ok(domain::RunnerRole::Admin),
        Some(api::RunnerRole::RUNNER_ROLE_USER) => Ok(domain::RunnerRole::User),
        _ => Err(invalid_field(
            field,
            "must be RUNNER_ROLE_ADMIN or RUNNER_ROLE_USER",
        )),
    }
}

pub fn runner(r: &domain::Runner) -> api::Runner {
    let config = &r.spec.config;
    let metrics = &config.metrics;
    api::Runner {
        runner_id: r.id.to_string(),
        created_at: timestamp(r.created_at),
        updated_at: timestamp(r.updated_at),
        name: r.name.clone(),
        spec: MessageField::some(api::RunnerSpec {
            desired_phase: EnumValue::Known(runner_phase(r.spec.desired_phase)),
            configuration: MessageField::some(api::RunnerConfiguration {
                region: config.region.clone(),
                release_channel: EnumValue::Known(release_channel(config.release_channel)),
                auto_update: config.auto_update,
                metrics: MessageField::some(api::MetricsConfiguration {
                    enabled: metrics.enabled,
                    url: metrics.url.clone(),
                    username: metrics.username.clone(),
                    // Write-only: the password is kept encrypted and never returned.
                    password: String::new(),
                    managed_metrics_enabled: metrics.managed_metrics_enabled,
                    include_verbose_metrics: metrics.include_verbose_metrics,
                    ..Default::default()
                }),
                log_level: EnumValue::Known(log_level(config.log_level)),
                devcontainer_image_cache_enabled: config.devcontainer_image_cache_enabled,
                update_window: config
                    .update_window
                    .map(|w| {
                        MessageField::some(api::UpdateWindow {
                            start_hour: Some(w.start_hour),
                            end_hour: Some(w.end_hour),
                            ..Default::default()
                        })
                    })
                    .unwrap_or_default(),
                encrypted_honeycomb_api_key: Vec::new(),
                continuous_profiling: config.continuous_profiling,
                ..Default::default()
            }),
            variant: EnumValue::Known(variant(r.spec.variant)),
            ..Default::default()
        }),
        status: MessageField::some(runner_status(&r.status)),
        creator: subject(r.creator),
        kind: EnumValue::Known(runner_kind(r.kind)),
        provider: EnumValue::Known(
            r.provider
                .map(runner_provider)
                .unwrap_or(api::RunnerProvider::RUNNER_PROVIDER_UNSPECIFIED),
        ),
        runner_manager_id: r
            .runner_manager_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn runner_status(s: &domain::RunnerStatus) -> api::RunnerStatus {
    api::RunnerStatus {
        updated_at: optional_timestamp(s.updated_at),
        version: s.version.clone(),
        system_details: s.system_details.clone(),
        phase: EnumValue::Known(runner_phase(s.phase)),
        log_url: s.log_url.clone(),
        message: s.message.clone(),
        region: s.region.clone(),
        additional_info: field_values(&s.additional_info),
        capabilities: s
            .capabilities
            .iter()
            .map(|c| {
                <api::RunnerCapability as buffa::Enumeration>::from_i32(*c)
                    .map(EnumValue::Known)
                    .unwrap_or(EnumValue::Unknown(*c))
            })
            .collect(),
        public_key: s.public_key.clone().unwrap_or_default(),
        support_bundle_url: s.support_bundle_url.clone(),
        gateway_info: s
            .gateway
            .as_ref()
            .map(|g| MessageField::some(gateway_info(g)))
            .unwrap_or_default(),
        ..Default::default()
    }
}

fn gateway_info(info: &domain::GatewayInfo) -> api::GatewayInfo {
    let micros = i64::from(info.latency_micros);
    api::GatewayInfo {
        gateway: MessageField::some(api::Gateway {
            name: info.gateway.name.clone(),
            url: info.gateway.url.clone(),
            region: info.gateway.region.clone(),
            ..Default::default()
        }),
        latency: MessageField::some(WireDuration {
            seconds: micros / 1_000_000,
            nanos: ((micros % 1_000_000) * 1000) as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn field_values(pairs: &[(String, String)]) -> Vec<api::FieldValue> {
    pairs
        .iter()
        .map(|(key, value)| api::FieldValue {
            key: key.clone(),
            value: value.clone(),
            ..Default::default()
        })
        .collect()
}

pub fn runner_policy(p: &domain::RunnerPolicy) -> api::RunnerPolicy {
    api::RunnerPolicy {
        group_id: p.group_id.to_string(),
        role: EnumValue::Known(runner_role(p.role)),
        ..Default::default()
    }
}

pub fn host_token_source(s: Option<domain::HostTokenSource>) -> api::HostAuthenticationTokenSource {
    match s {
        None => api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_UNSPECIFIED,
        Some(domain::HostTokenSource::OAuth) => {
            api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
        }
        Some(domain::HostTokenSource::Pat) => {
            api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        }
    }
}

pub fn host_token_source_from(
    s: api::HostAuthenticationTokenSource,
) -> Option<domain::HostTokenSource> {
    match s {
        api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_UNSPECIFIED => None,
        api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH => {
            Some(domain::HostTokenSource::OAuth)
        }
        api::HostAuthenticationTokenSource::HOST_AUTHENTICATION_TOKEN_SOURCE_PAT => {
            Some(domain::HostTokenSource::Pat)
        }
    }
}

/// The public view of a host token: everything but the secrets.
pub fn host_token(t: &domain::HostToken) -> api::HostAuthenticationToken {
    api::HostAuthenticationToken {
        id: t.id.to_string(),
        runner_id: t.runner_id.to_string(),
        user_id: t.user_id.to_string(),
        host: t.host.clone(),
        source: EnumValue::Known(host_token_source(t.source)),
        expires_at: optional_timestamp(t.expires_at),
        integration_id: t
            .integration_id
            .map(|id| id.to_string())
            .unwrap_or_default(),
        scopes: t.scopes.clone(),
        subject: subject(Subject::User(t.user_id)),
        ..Default::default()
    }
}

pub fn scm_integration(i: &domain::ScmIntegration) -> api::SCMIntegration {
    api::SCMIntegration {
        id: i.id.to_string(),
        scm_id: i.scm_id.clone(),
        host: i.host.clone(),
        oauth: i
            .oauth
            .as_ref()
            .map(|o| {
                MessageField::some(api::SCMIntegrationOAuthConfig {
                    client_id: o.client_id.clone(),
                    encrypted_client_secret: o.encrypted_client_secret.clone(),
                    issuer_url: o.issuer_url.clone(),
                    ..Default::default()
                })
            })
            .unwrap_or_default(),
        pat: i.pat,
        runner_id: i.runner_id.to_string(),
        virtual_directory: i.virtual_directory.clone(),
        ..Default::default()
    }
}

pub fn environment_class(c: &domain::EnvironmentClass) -> api::EnvironmentClass {
    api::EnvironmentClass {
        id: c.id.to_string(),
        display_name: c.display_name.clone(),
        description: c.description.clone(),
        configuration: field_values(&c.configuration),
        runner_id: c.runner_id.to_string(),
        enabled: c.enabled,
        ..Default::default()
    }
}

pub fn user(u: &domain::User) -> api::User {
    api::User {
        id: u.id.to_string(),
        organization_id: u.org_id.to_string(),
        name: u.name.clone(),
        created_at: timestamp(u.created_at),
        status: EnumValue::Known(user_status(u.status)),
        email: u.email.clone(),
        ..Default::default()
    }
}

fn user_status(s: domain::UserStatus) -> api::UserStatus {
    match s {
        domain::UserStatus::Active => api::UserStatus::USER_STATUS_ACTIVE,
        domain::UserStatus::Suspended => api::UserStatus::USER_STATUS_SUSPENDED,
    }
}

pub fn org_role(role: domain::OrgRole) -> api::OrganizationRole {
    match role {
        domain::OrgRole::Admin => api::OrganizationRole::ORGANIZATION_ROLE_ADMIN,
        domain::OrgRole::Member => api::OrganizationRole::ORGANIZATION_ROLE_MEMBER,
    }
}

pub fn organization(o: &domain::Organization) -> api::Organization {
    api::Organization {
        id: o.id.to_string(),
        name: o.name.clone(),
        created_at: timestamp(o.created_at),
        updated_at: timestamp(o.updated_at),
        tier: EnumValue::Known(api::OrganizationTier::ORGANIZATION_TIER_ENTERPRISE),
        ..Default::default()
    }
}

pub fn org_member(m: &domain::OrgMember) -> api::OrganizationMember {
    api::OrganizationMember {
        user_id: m.user.id.to_string(),
        role: EnumValue::Known(org_role(m.role)),
        member_since: timestamp(m.member_since),
        full_name: m.user.name.clone(),
        email: m.user.email.clone(),
        status: EnumValue::Known(user_status(m.user.status)),
        login_provider: "corral".into(),
        ..Default::default()
    }
}

pub fn group(g: &domain::Group, member_count: i64) -> api::Group {
    api::Group {
        id: g.id.to_string(),
        organization_id: g.org_id.to_string(),
        name: g.name.clone(),
        system_managed: g.system.is_some(),
        created_at: timestamp(g.created_at),
        updated_at: timestamp(g.updated_at),
        description: g.description.clone(),
        member_count: member_count.try_into().unwrap_or(i32::MAX),
        ..Default::default()
    }
}

pub fn membership(m: &domain::MemberView) -> api::GroupMembership {
    api::GroupMembership {
        id: m.membership.id.to_string(),
        subject: subject(Subject::User(m.user.id)),
        group_id: m.membership.group_id.to_string(),
        name: m.user.name.clone(),
        ..Default::default()
    }
}

pub fn personal_access_token(t: &domain::ApiToken) -> api::PersonalAccessToken {
    api::PersonalAccessToken {
        id: t.id.to_string(),
        user_id: t.subject.id().to_string(),
        description: t.description.clone(),
        creator: subject(t.creator),
        created_at: timestamp(t.created_at),
        expires_at: optional_timestamp(t.expires_at),
        last_used: optional_timestamp(t.last_used),
        read_only: t.read_only,
        ..Default::default()
    }
}

/// The role named in a request; UNSPECIFIED and unknown numbers are rejected.
pub fn org_role_from(
    field: &str,
    role: EnumValue<api::OrganizationRole>,
) -> Result<domain::OrgRole, ConnectError> {
    match role.as_known() {
        Some(api::OrganizationRole::ORGANIZATION_ROLE_ADMIN) => Ok(domain::OrgRole::Admin),
        Some(api::OrganizationRole::ORGANIZATION_ROLE_MEMBER) => Ok(domain::OrgRole::Member),
        _ => Err(invalid_field(
            field,
            "must be ORGANIZATION_ROLE_ADMIN or ORGANIZATION_ROLE_MEMBER",
        )),
    }
}

/// The status a list filter names, if corral has it (it has no LEFT users).
pub fn user_status_from(status: EnumValue<api::UserStatus>) -> Option<domain::UserStatus> {
    match status.as_known() {
        Some(api::UserStatus::USER_STATUS_ACTIVE) => Some(domain::UserStatus::Active),
        Some(api::UserStatus::USER_STATUS_SUSPENDED) => Some(domain::UserStatus::Suspended),
        _ => None,
    }
}

/// The user a request's `subject` names; subjects that are not users are rejected.
pub fn user_subject(field: &str, s: Option<&api::Subject>) -> Result<Uuid, ConnectError> {
    let s = s.ok_or_else(|| invalid_field(field, "value is required"))?;
    if s.principal.as_known() != Some(api::Principal::PRINCIPAL_USER) {
        return Err(invalid_field(
            &format!("{field}.principal"),
            "only users (PRINCIPAL_USER) can be group members",
        ));
    }
    if s.id.is_empty() {
        return Err(invalid_field(&format!("{field}.id"), "value is required"));
    }
    parse_id(&format!("{field}.id"), &s.id)
}

/// A credential a runner obtained for a user, ready to keep: host as host
/// tokens are looked up, secrets encrypted with the data key.
pub fn host_credential(
    key: &crate::crypto::DataKey,
    credential: &corral_api::corral::v1::HostCredential,
) -> domain::HostCredential {
    domain::HostCredential {
        host: super::scm_forwarding::host_key(&credential.host),
        token_encrypted: key.encrypt(credential.token.as_bytes()),
        refresh_token_encrypted: (!credential.refresh_token.is_empty())
            .then(|| key.encrypt(credential.refresh_token.as_bytes())),
        expires_at: (credential.expires_at != 0)
            .then(|| chrono::Utc.timestamp_opt(credential.expires_at, 0).single())
            .flatten(),
        source: credential
            .source
            .as_known()
            .and_then(host_token_source_from),
        scopes: distinct(credential.scopes.clone()),
        integration_id: Uuid::parse_str(&credential.integration_id).ok(),
    }
}

pub fn resource_type(kind: domain::ResourceKind) -> api::ResourceType {
    use api::ResourceType as T;
    use domain::ResourceKind as K;
    match kind {
        K::Runner => T::RESOURCE_TYPE_RUNNER,
        K::Organization => T::RESOURCE_TYPE_ORGANIZATION,
        K::User => T::RESOURCE_TYPE_USER,
        K::EnvironmentClass => T::RESOURCE_TYPE_ENVIRONMENT_CLASS,
        K::ScmIntegration => T::RESOURCE_TYPE_RUNNER_SCM_INTEGRATION,
        K::HostToken => T::RESOURCE_TYPE_HOST_AUTHENTICATION_TOKEN,
        K::Group => T::RESOURCE_TYPE_GROUP,
        K::PersonalAccessToken => T::RESOURCE_TYPE_PERSONAL_ACCESS_TOKEN,
        K::GroupMembership => T::RESOURCE_TYPE_GROUP_MEMBERSHIP_CHANGED,
        K::RoleAssignment => T::RESOURCE_TYPE_ROLE_ASSIGNMENT_CHANGED,
    }
}

/// The resource kind a published type names, when corral has such resources.
pub fn resource_kind_from(t: api::ResourceType) -> Option<domain::ResourceKind> {
    use api::ResourceType as T;
    use domain::ResourceKind as K;
    Some(match t {
        T::RESOURCE_TYPE_RUNNER => K::Runner,
        T::RESOURCE_TYPE_ORGANIZATION => K::Organization,
        T::RESOURCE_TYPE_USER => K::User,
        T::RESOURCE_TYPE_ENVIRONMENT_CLASS => K::EnvironmentClass,
        T::RESOURCE_TYPE_RUNNER_SCM_INTEGRATION => K::ScmIntegration,
        T::RESOURCE_TYPE_HOST_AUTHENTICATION_TOKEN => K::HostToken,
        T::RESOURCE_TYPE_GROUP => K::Group,
        T::RESOURCE_TYPE_PERSONAL_ACCESS_TOKEN => K::PersonalAccessToken,
        T::RESOURCE_TYPE_GROUP_MEMBERSHIP_CHANGED => K::GroupMembership,
        T::RESOURCE_TYPE_ROLE_ASSIGNMENT_CHANGED => K::RoleAssignment,
        _ => return None,
    })
}

pub fn resource_operation(op: domain::ChangeOperation) -> api::ResourceOperation {
    use api::ResourceOperation as O;
    use domain::ChangeOperation as C;
    match op {
        C::Create => O::RESOURCE_OPERATION_CREATE,
        C::Update => O::RESOURCE_OPERATION_UPDATE,
        C::Delete => O::RESOURCE_OPERATION_DELETE,
        C::UpdateStatus => O::RESOURCE_OPERATION_UPDATE_STATUS,
    }
}

/// An audit event as the published API lists it. The outcome of a call that
/// did not succeed is told in the action: `Service.Method (failed: CODE)`.
pub fn audit_entry(e: &domain::AuditEvent) -> api::list_audit_logs_response::AuditLogEntry {
    let method = e
        .rpc
        .rsplit_once('.')
        .map(|(_, service_and_method)| service_and_method.replace('/', "."))
        .unwrap_or_else(|| e.rpc.clone());
    let action = if e.succeeded() {
        method
    } else {
        format!("{method} (failed: {})", e.outcome)
    };
    api::list_audit_logs_response::AuditLogEntry {
        id: e.id.to_string(),
        actor_id: e.actor.map(|a| a.id().to_string()).unwrap_or_default(),
        actor_principal: EnumValue::Known(match e.actor {
            Some(Subject::User(_)) => api::Principal::PRINCIPAL_USER,
            Some(Subject::Runner(_)) => api::Principal::PRINCIPAL_RUNNER,
            None => api::Principal::PRINCIPAL_UNSPECIFIED,
        }),
        subject_id: e.subject_id.map(|id| id.to_string()).unwrap_or_default(),
        subject_type: EnumValue::Known(resource_type(e.subject_kind)),
        action,
        created_at: timestamp(e.at),
        kind: EnumValue::Known(match e.kind {
            domain::AuditKind::ResourceChange => {
                api::AuditLogEntryKind::AUDIT_LOG_ENTRY_KIND_RESOURCE_CHANGE
            }
            domain::AuditKind::CredentialAccess => {
                api::AuditLogEntryKind::AUDIT_LOG_ENTRY_KIND_CREDENTIAL_ACCESS
            }
        }),
        ..Default::default()
    }
}

/// A release as runners see it (the artifact itself is downloaded apart).
pub fn release(release: &domain::Release) -> corral_api::corral::v1::Release {
    corral_api::corral::v1::Release {
        id: release.id.to_string(),
        channel: release.channel.name().into(),
        version: release.version.clone(),
        size: release.size,
        sha256: release.sha256.clone(),
        signature: release.signature.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_sets_keep_each_id_once_in_order() {
        let a = "0190a000-0000-7000-8000-000000000001".to_string();
        let b = "0190a000-0000-7000-8000-000000000002".to_string();
        let ids = parse_ids("filter.user_ids", &[b.clone(), a.clone(), b.clone(), a]).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(ids[0].to_string(), b);
        let err = parse_ids("filter.user_ids", &[b, "nope".into()]).unwrap_err();
        assert!(
            err.message
                .unwrap_or_default()
                .starts_with("filter.user_ids:")
        );
    }

    #[test]
    fn hosts_are_canonical_or_refused_naming_the_field() {
        assert_eq!(scm_host("host", "GitHub.com/", None).unwrap(), "github.com");
        assert_eq!(
            scm_host("host", "https://tfs.example.com/tfs/", Some("azure-devops")).unwrap(),
            "tfs.example.com/tfs"
        );
        let err = scm_host("host", "https://tfs.example.com/tfs", Some("github")).unwrap_err();
        assert_eq!(err.code, connectrpc::ErrorCode::InvalidArgument);
        assert!(
            err.message
                .unwrap_or_default()
                .starts_with("host: must not contain a path")
        );
        assert_eq!(
            virtual_directory("virtual_directory", Some("")).unwrap(),
            None
        );
        assert_eq!(
            virtual_directory("virtual_directory", Some("/scm"))
                .unwrap()
                .as_deref(),
            Some("/scm")
        );
        assert!(virtual_directory("virtual_directory", Some("/../x")).is_err());
    }
}
