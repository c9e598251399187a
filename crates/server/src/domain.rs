//! The domain model: what corral stores and reasons about, free of wire types.
//!
//! Conversions to and from the `gitpod.v1` messages live in `services::convert`;
//! the store persists these types as they are.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub type Timestamp = DateTime<Utc>;

/// Bytes in stored records as base64 text (a third more than the bytes; an
/// array of numbers, as older versions stored them, is about four times
/// their size). Arrays of numbers still read, so old rows need no rewrite.
pub mod stored_bytes {
    use std::fmt;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::de::{self, Deserializer, SeqAccess, Visitor};
    use serde::ser::Serializer;

    pub fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u8>, D::Error> {
        deserializer.deserialize_any(Bytes)
    }

    /// Base64 text, or an array of numbers (as stored before).
    struct Bytes;

    impl<'de> Visitor<'de> for Bytes {
        type Value = Vec<u8>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("base64 text or an array of bytes")
        }

        fn visit_str<E: de::Error>(self, text: &str) -> Result<Vec<u8>, E> {
            STANDARD.decode(text).map_err(E::custom)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<u8>, A::Error> {
            let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            while let Some(byte) = seq.next_element::<u8>()? {
                bytes.push(byte);
            }
            Ok(bytes)
        }
    }

    /// The same for `Option<Vec<u8>>`: `null` is `None`.
    pub mod option {
        use super::*;

        pub fn serialize<S: Serializer>(
            bytes: &Option<Vec<u8>>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match bytes {
                Some(bytes) => serializer.serialize_some(&STANDARD.encode(bytes)),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Vec<u8>>, D::Error> {
            deserializer.deserialize_option(MaybeBytes)
        }

        struct MaybeBytes;

        impl<'de> Visitor<'de> for MaybeBytes {
            type Value = Option<Vec<u8>>;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("null, base64 text or an array of bytes")
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }

            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                super::deserialize(d).map(Some)
            }
        }
    }

    #[cfg(test)]
    mod tests {
        use serde::{Deserialize, Serialize};

        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Record {
            #[serde(with = "super")]
            key: Vec<u8>,
            #[serde(default, with = "super::option")]
            schema: Option<Vec<u8>>,
        }

        #[test]
        fn bytes_are_stored_as_base64_and_old_arrays_still_read() {
            let record = Record {
                key: vec![0, 1, 255],
                schema: Some(vec![7; 4]),
            };
            let json = serde_json::to_string(&record).unwrap();
            assert_eq!(json, r#"{"key":"AAH/","schema":"BwcHBw=="}"#);
            assert_eq!(serde_json::from_str::<Record>(&json).unwrap(), record);
            let old = r#"{"key":[0,1,255],"schema":[7,7,7,7]}"#;
            assert_eq!(serde_json::from_str::<Record>(old).unwrap(), record);
            let none = Record {
                key: Vec::new(),
                schema: None,
            };
            for json in [r#"{"key":"","schema":null}"#, r#"{"key":[]}"#] {
                assert_eq!(serde_json::from_str::<Record>(json).unwrap(), none);
            }
            assert!(serde_json::from_str::<Record>(r#"{"key":"not base64!"}"#).is_err());
            assert!(serde_json::from_str::<Record>(r#"{"key":[256]}"#).is_err());
        }
    }
}

/// A fresh, time-ordered id: lists sorted by id are in creation order.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Organization {
    pub id: Uuid,
    pub name: String,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum OrgRole {
    Admin,
    Member,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum UserStatus {
    Active,
    Suspended,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct User {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub email: String,
    pub status: UserStatus,
    pub created_at: Timestamp,
}

/// The groups every organization has, kept by the system.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SystemGroup {
    Admins,
    Members,
}

impl SystemGroup {
    pub fn name(self) -> &'static str {
        match self {
            SystemGroup::Admins => "admins",
            SystemGroup::Members => "members",
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Group {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub description: String,
    pub system: Option<SystemGroup>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Membership {
    pub id: Uuid,
    pub group_id: Uuid,
    pub user_id: Uuid,
    pub created_at: Timestamp,
}

/// A membership with the member's display data, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct MemberView {
    pub membership: Membership,
    pub user: User,
}

/// An organization member with their role, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct OrgMember {
    pub user: User,
    pub role: OrgRole,
    pub member_since: Timestamp,
}

/// Who did something or owns something.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum Subject {
    User(Uuid),
    Runner(Uuid),
}

impl Subject {
    pub fn id(self) -> Uuid {
        match self {
            Subject::User(id) | Subject::Runner(id) => id,
        }
    }
}

/// The kinds of bearer token; the kind is also the token's visible prefix.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum TokenKind {
    /// A user's API token (personal access token or one issued by the CLI).
    Personal,
    /// A runner's access token, obtained by exchange.
    RunnerAccess,
    /// One-time token that becomes a runner access token.
    Exchange,
    /// A browser session: a user's token carried only in the dashboard's
    /// HttpOnly cookie, never as a bearer token (`browser_session`).
    Session,
}

impl TokenKind {
    pub fn prefix(self) -> &'static str {
        match self {
            TokenKind::Personal => "crl_pat_",
            TokenKind::RunnerAccess => "crl_rt_",
            TokenKind::Exchange => "crl_ex_",
            TokenKind::Session => "crl_ses_",
        }
    }
}

/// A bearer token as stored: only its hash, never the token itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ApiToken {
    pub id: Uuid,
    pub kind: TokenKind,
    pub hash: String,
    pub org_id: Uuid,
    /// Whom the token authenticates.
    pub subject: Subject,
    /// Who created it (differs from the subject for runner tokens).
    pub creator: Subject,
    pub description: String,
    pub read_only: bool,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub last_used: Option<Timestamp>,
    /// Exchange tokens only: when it was traded in.
    pub used_at: Option<Timestamp>,
}

impl ApiToken {
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum RunnerKind {
    Local,
    Remote,
    LocalConfiguration,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum RunnerProvider {
    AwsEc2,
    LinuxHost,
    DesktopMac,
    Managed,
    Gcp,
    DevAgent,
}

impl RunnerProvider {
    /// Cloud providers run remote runners; the rest run on a user's or team's host.
    pub fn kind(self) -> RunnerKind {
        match self {
            RunnerProvider::AwsEc2 | RunnerProvider::Gcp | RunnerProvider::Managed => {
                RunnerKind::Remote
            }
            RunnerProvider::LinuxHost | RunnerProvider::DesktopMac | RunnerProvider::DevAgent => {
                RunnerKind::Local
            }
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum RunnerPhase {
    #[default]
    Unspecified,
    Created,
    Inactive,
    Active,
    Deleting,
    Deleted,
    Degraded,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum LogLevel {
    #[default]
    Unspecified,
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum ReleaseChannel {
    #[default]
    Unspecified,
    Stable,
    Latest,
}

impl ReleaseChannel {
    /// The channel a runner follows: an unspecified one follows `stable`.
    pub fn followed(self) -> Self {
        match self {
            Self::Unspecified | Self::Stable => Self::Stable,
            Self::Latest => Self::Latest,
        }
    }

    /// The name operators use and the release signature binds.
    pub fn name(self) -> &'static str {
        match self.followed() {
            Self::Latest => "latest",
            _ => "stable",
        }
    }

    /// `stable` or `latest`.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "stable" => Some(Self::Stable),
            "latest" => Some(Self::Latest),
            _ => None,
        }
    }
}

/// A runner executable published on a channel (docs/releases.md). The
/// artifact's bytes are kept apart, in chunks.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub id: Uuid,
    pub channel: ReleaseChannel,
    /// A semantic version.
    pub version: String,
    /// The artifact's size in bytes.
    pub size: u64,
    /// The artifact's SHA-256, lowercase hex.
    pub sha256: String,
    /// Ed25519 signature by the release key over
    /// `corral_contract::release::signed_message`.
    #[serde(with = "stored_bytes")]
    pub signature: Vec<u8>,
    pub published_at: Timestamp,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub enum RunnerVariant {
    #[default]
    Unspecified,
    Standard,
    Enterprise,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct MetricsConfig {
    pub enabled: bool,
    pub url: String,
    pub username: String,
    /// Encrypted with the server's data key; never returned.
    #[serde(default, with = "stored_bytes::option")]
    pub password_encrypted: Option<Vec<u8>>,
    pub managed_metrics_enabled: bool,
    pub include_verbose_metrics: bool,
}

/// Hours (UTC, 0-23) in which the runner may update itself.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpdateWindow {
    pub start_hour: u32,
    pub end_hour: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunnerConfig {
    pub region: String,
    pub release_channel: ReleaseChannel,
    pub auto_update: bool,
    pub metrics: MetricsConfig,
    pub log_level: LogLevel,
    pub devcontainer_image_cache_enabled: bool,
    pub update_window: Option<UpdateWindow>,
    /// Encrypted with the server's data key.
    #[serde(default, with = "stored_bytes::option")]
    pub honeycomb_api_key_encrypted: Option<Vec<u8>>,
    pub continuous_profiling: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunnerSpec {
    pub desired_phase: RunnerPhase,
    pub config: RunnerConfig,
    pub variant: RunnerVariant,
}

/// What the runner reports about itself.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct RunnerStatus {
    pub phase: RunnerPhase,
    pub message: String,
    pub version: String,
    pub system_details: String,
    pub region: String,
    pub log_url: String,
    pub support_bundle_url: String,
    /// Capability numbers as the runner reported them.
    pub capabilities: Vec<i32>,
    pub additional_info: Vec<(String, String)>,
    /// The runner's X25519 public key (32 bytes) once it has signed up.
    #[serde(default, with = "stored_bytes::option")]
    pub public_key: Option<Vec<u8>>,
    pub updated_at: Option<Timestamp>,
    /// The replica that took the runner's latest status report (a runner
    /// talks to one replica at a time: its stream is there too); `None`
    /// before the first report and after the runner disconnected.
    #[serde(default)]
    pub gateway: Option<GatewayInfo>,
}

/// How many runners share a phase, provider and reported version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerCount {
    pub phase: RunnerPhase,
    pub provider: Option<RunnerProvider>,
    /// As the runners reported it; empty before their first report.
    pub version: String,
    pub count: u64,
}

/// A management-plane replica as runners see it (`--replica-name`,
/// `--public-url`, `--replica-region`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Gateway {
    pub name: String,
    pub url: String,
    pub region: String,
}

/// The replica a runner is connected to and the latency the runner measured
/// (the round trip of its previous call: sign-up or status report).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct GatewayInfo {
    pub gateway: Gateway,
    pub latency_micros: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Runner {
    pub id: Uuid,
    pub org_id: Uuid,
    pub name: String,
    pub kind: RunnerKind,
    pub provider: Option<RunnerProvider>,
    pub creator: Subject,
    pub runner_manager_id: Option<Uuid>,
    pub spec: RunnerSpec,
    /// Kept apart from the rest of the record by the store (a status report
    /// writes only the status); absent from a stored record on its own.
    #[serde(default)]
    pub status: RunnerStatus,
    /// The configuration schema the runner published, encoded as it sent it
    /// (a `gitpod.v1.RunnerConfigurationSchema`); `None` until it does.
    #[serde(default, with = "stored_bytes::option")]
    pub config_schema: Option<Vec<u8>>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// The status message of a runner an admin set inactive.
pub const CORDONED_MESSAGE: &str =
    "set inactive: the runner takes no work until it is set active again";

impl Runner {
    /// About the bytes the record takes in memory (what a cache of records
    /// counts): its own size, its strings and byte fields, and an allowance
    /// for the small parts of its configuration.
    pub fn approximate_size(&self) -> usize {
        let status = &self.status;
        std::mem::size_of::<Runner>()
            + 256
            + self.name.len()
            + status.message.len()
            + status.version.len()
            + status.system_details.len()
            + status.region.len()
            + status.log_url.len()
            + status.support_bundle_url.len()
            + status.capabilities.len() * std::mem::size_of::<i32>()
            + status
                .additional_info
                .iter()
                .map(|(key, value)| 48 + key.len() + value.len())
                .sum::<usize>()
            + status.public_key.as_ref().map_or(0, Vec::len)
            + self.config_schema.as_ref().map_or(0, Vec::len)
    }

    /// Whether the runner ever reported in.
    pub fn has_connected(&self) -> bool {
        self.status.updated_at.is_some()
    }

    /// Whether an admin set the runner inactive (`spec.desired_phase`): it
    /// takes no SCM work, and its status says so.
    pub fn is_cordoned(&self) -> bool {
        self.spec.desired_phase == RunnerPhase::Inactive
    }

    /// Brings the status phase in line with the desired phase after the spec
    /// changed: a runner set inactive is INACTIVE at once; one set active
    /// again is ACTIVE at once when it is `connected` (its next report says
    /// whether it is healthy), else INACTIVE until it reports.
    pub fn follow_desired_phase(&mut self, connected: bool) {
        let status = &mut self.status;
        let reporting = matches!(status.phase, RunnerPhase::Active | RunnerPhase::Degraded);
        if self.spec.desired_phase == RunnerPhase::Inactive && reporting {
            status.phase = RunnerPhase::Inactive;
            status.message = CORDONED_MESSAGE.into();
        } else if self.spec.desired_phase == RunnerPhase::Active
            && status.phase == RunnerPhase::Inactive
            && status.message == CORDONED_MESSAGE
        {
            if connected {
                status.phase = RunnerPhase::Active;
            }
            status.message.clear();
        }
    }

    /// The phase a status report puts the runner in.
    pub fn reported_phase(&self, healthy: bool) -> RunnerPhase {
        match self.status.phase {
            // A runner being deleted stays DELETING until it confirms.
            RunnerPhase::Deleting => RunnerPhase::Deleting,
            _ if self.is_cordoned() => RunnerPhase::Inactive,
            _ if healthy => RunnerPhase::Active,
            _ => RunnerPhase::Degraded,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
pub enum RunnerRole {
    /// May see and use the runner.
    User,
    /// May also change, delete and configure it.
    Admin,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunnerPolicy {
    pub runner_id: Uuid,
    pub group_id: Uuid,
    pub role: RunnerRole,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum HostTokenSource {
    OAuth,
    Pat,
}

/// A user's credential for one SCM host on one runner.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct HostToken {
    pub id: Uuid,
    pub org_id: Uuid,
    pub runner_id: Uuid,
    pub user_id: Uuid,
    pub host: String,
    pub source: Option<HostTokenSource>,
    /// Encrypted with the server's data key.
    #[serde(with = "stored_bytes")]
    pub token_encrypted: Vec<u8>,
    #[serde(default, with = "stored_bytes::option")]
    pub refresh_token_encrypted: Option<Vec<u8>>,
    pub expires_at: Option<Timestamp>,
    pub integration_id: Option<Uuid>,
    pub scopes: Vec<String>,
    pub created_at: Timestamp,
}

/// A token a runner obtained or refreshed for a user (secrets encrypted with
/// the data key), to be kept as their host token.
#[derive(Debug, Clone, PartialEq)]
pub struct HostCredential {
    /// `host[:port]`, as host tokens are looked up.
    pub host: String,
    pub token_encrypted: Vec<u8>,
    pub refresh_token_encrypted: Option<Vec<u8>>,
    pub expires_at: Option<Timestamp>,
    pub source: Option<HostTokenSource>,
    pub scopes: Vec<String>,
    pub integration_id: Option<Uuid>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct OAuthApp {
    pub client_id: String,
    /// Sealed to the runner's public key: only the runner can open it.
    #[serde(with = "stored_bytes")]
    pub encrypted_client_secret: Vec<u8>,
    pub issuer_url: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ScmIntegration {
    pub id: Uuid,
    pub org_id: Uuid,
    pub runner_id: Uuid,
    pub scm_id: String,
    pub host: String,
    pub oauth: Option<OAuthApp>,
    pub pat: bool,
    pub virtual_directory: Option<String>,
    pub created_at: Timestamp,
}

impl ScmIntegration {
    /// Whether this integration is for `host` (any spelling: compared by key).
    pub fn serves(&self, host: &str) -> bool {
        use corral_contract::scm_host::lookup_key;
        lookup_key(&self.host) == lookup_key(host)
    }
}

/// The integration among `integrations` that refuses personal access tokens
/// for `host` (`pat: false`): such tokens are neither accepted nor used there.
pub fn pat_refused_by<'a>(
    integrations: &'a [ScmIntegration],
    host: &str,
) -> Option<&'a ScmIntegration> {
    integrations.iter().find(|i| !i.pat && i.serves(host))
}

impl HostTokenSource {
    /// Whether a token of `source` counts as a personal access token: every
    /// token not obtained through the OAuth sign-in does.
    pub fn is_personal(source: Option<HostTokenSource>) -> bool {
        source != Some(HostTokenSource::OAuth)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EnvironmentClass {
    pub id: Uuid,
    pub org_id: Uuid,
    pub runner_id: Uuid,
    pub display_name: String,
    pub description: String,
    pub configuration: Vec<(String, String)>,
    pub enabled: bool,
    pub created_at: Timestamp,
}

/// One page of a list: the items and where the next page starts.
#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// The id after which the next page starts; `None` on the last page.
    pub next_after: Option<Uuid>,
}

/// Which page to read: items with ids after `after`, at most `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after: Option<Uuid>,
    pub limit: usize,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunnerFilter {
    pub creator_ids: Vec<Uuid>,
    pub kinds: Vec<RunnerKind>,
    pub providers: Vec<RunnerProvider>,
    /// When not empty, only runners whose status is in one of these phases.
    pub phases: Vec<RunnerPhase>,
    /// When set, only the runners the caller may see.
    pub visible: Option<Visibility>,
}

/// The runners a non-admin may see: those they created and those granted
/// to their groups; a runner sees itself. Kept as the caller's few ids, so
/// the store can join on policies (cost does not grow with the grants).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Visibility {
    /// Runners this user created.
    pub creator: Option<Uuid>,
    /// Runners on which one of these groups holds a role.
    pub group_ids: Vec<Uuid>,
    /// This runner.
    pub runner_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostTokenFilter {
    pub runner_id: Option<Uuid>,
    pub user_id: Option<Uuid>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvironmentClassFilter {
    pub runner_ids: Vec<Uuid>,
    pub enabled: Option<bool>,
    /// Only classes of runners that match (kinds, providers, visibility).
    pub runners: RunnerFilter,
}

/// Which SCM integrations of an organization to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ScmIntegrationFilter {
    /// When not empty, only integrations of these runners.
    pub runner_ids: Vec<Uuid>,
    /// When set, only integrations for this host (its lookup key).
    pub host: Option<String>,
    /// Only integrations of runners that match (visibility).
    pub runners: RunnerFilter,
}

/// Which groups of an organization to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupFilter {
    /// Case-insensitive substring of the name; empty matches every group.
    pub search: String,
    /// When not empty, only these groups.
    pub group_ids: Vec<Uuid>,
    /// When set, only system-managed (`true`) or only other groups (`false`).
    pub system: Option<bool>,
}

/// Which members of a group to list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MembershipFilter {
    /// Case-insensitive substring of the member's name or email; empty matches all.
    pub search: String,
}

/// Which members of an organization to list. Empty fields do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OrgMemberFilter {
    /// Case-insensitive substring of the name or email.
    pub search: String,
    /// Case-insensitive exact email.
    pub email: String,
    pub user_ids: Vec<Uuid>,
    pub roles: Vec<OrgRole>,
    pub statuses: Vec<UserStatus>,
    /// Users in none of these groups.
    pub exclude_group_ids: Vec<Uuid>,
    /// Users in no group other than the system-managed ones.
    pub exclude_members_in_any_team: bool,
}

/// What an audit event or a change notification is about, as the published
/// `gitpod.v1.ResourceType` names it (only the kinds corral has).
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    Runner,
    Organization,
    User,
    EnvironmentClass,
    ScmIntegration,
    HostToken,
    Group,
    PersonalAccessToken,
    /// A change of who belongs to a group (the subject is the group).
    GroupMembership,
    /// A change of someone's organization role (the subject is the user).
    RoleAssignment,
}

/// What happened to a resource, for change notifications.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum ChangeOperation {
    Create,
    Update,
    Delete,
    /// What the resource reports about itself changed (a runner's phase).
    UpdateStatus,
}

/// A change to a resource, told to `EventService.WatchEvents` watchers.
/// Carries what deciding who may see it needs, and nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ChangeEvent {
    pub org_id: Uuid,
    pub operation: ChangeOperation,
    pub kind: ResourceKind,
    pub id: Uuid,
    /// Who created the resource, when known (for creator filters).
    pub creator_id: Option<Uuid>,
    /// The runner a runner-scoped resource belongs to (classes, integrations,
    /// host tokens, the runner itself): visibility follows the runner.
    pub runner_id: Option<Uuid>,
    /// The user a personal resource belongs to (host tokens, tokens).
    pub owner_id: Option<Uuid>,
}

impl ChangeEvent {
    /// Whether the change may alter what a bearer token resolves to (its
    /// user, role or groups, or whether it is valid at all), so that callers
    /// resolved before it must be resolved again.
    pub fn changes_callers(&self) -> bool {
        match self.kind {
            ResourceKind::Organization
            | ResourceKind::User
            | ResourceKind::Group
            | ResourceKind::GroupMembership
            | ResourceKind::RoleAssignment
            | ResourceKind::PersonalAccessToken => true,
            // A deleted runner's tokens go with it.
            ResourceKind::Runner => self.operation == ChangeOperation::Delete,
            ResourceKind::EnvironmentClass
            | ResourceKind::ScmIntegration
            | ResourceKind::HostToken => false,
        }
    }
}

/// Why an audit event was recorded.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum AuditKind {
    /// Something was created, changed or deleted (or someone tried to).
    ResourceChange,
    /// A user's SCM credentials were handed to a runner for a request.
    CredentialAccess,
}

/// One entry of the audit trail: who did what to which resource, and how it
/// ended. Never holds a secret or a token, only ids.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AuditEvent {
    pub id: Uuid,
    pub org_id: Uuid,
    pub at: Timestamp,
    /// The user or runner that called; `None` for calls without a token
    /// (exchange-token redemption, whose actor is the runner it names).
    pub actor: Option<Subject>,
    /// The id (never the secret) of the token the actor used.
    pub token_id: Option<Uuid>,
    /// The RPC, as `Service/Method` (e.g. `gitpod.v1.RunnerService/UpdateRunner`).
    pub rpc: String,
    pub kind: AuditKind,
    pub subject_kind: ResourceKind,
    /// The resource acted on, when one was named or created.
    pub subject_id: Option<Uuid>,
    /// `ok`, or the Connect error code the call ended with (`permission_denied`, …).
    pub outcome: String,
    pub request_id: String,
    pub client_address: String,
}

impl AuditEvent {
    pub fn succeeded(&self) -> bool {
        self.outcome == "ok"
    }
}

/// Which audit events to list. Empty lists do not filter.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    pub actor_ids: Vec<Uuid>,
    /// Only events whose actor is of one of these kinds.
    pub actor_kinds: Vec<SubjectKind>,
    pub subject_ids: Vec<Uuid>,
    pub subject_kinds: Vec<ResourceKind>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    /// Newest first when true (the default order is oldest first).
    pub newest_first: bool,
}

/// Users or runners, without saying which one.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub enum SubjectKind {
    User,
    Runner,
}

impl Subject {
    pub fn kind(self) -> SubjectKind {
        match self {
            Subject::User(_) => SubjectKind::User,
            Subject::Runner(_) => SubjectKind::Runner,
        }
    }
}
