//! The policy table: every RPC, the resource and action it stands for, and
//! who may perform each action on each resource. `authz::Gate` applies it to
//! every call before the request is decoded; `authz::Access` applies it again
//! to every resource a handler touches. Nothing else decides.
//!
//! Two tables:
//! - [`PERMISSIONS`]: resource × action → who may ([`Who`]) and what a runner
//!   access token may reach ([`RunnerTokens`]). Read-only tokens may perform
//!   only [`Action::Read`].
//! - [`RPCS`]: procedure → the resource and action it stands for, and whether
//!   it leaves an audit event. [`Action::Read`] is exactly the RPCs the
//!   published contract marks `NO_SIDE_EFFECTS` (a test holds the two
//!   together), so a read-only token can call nothing else.

use crate::domain::{AuditKind, ResourceKind, RunnerRole};

/// What a policy protects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    /// The caller's own identity.
    Identity,
    /// A runner's one-time exchange token, traded for its access token.
    ExchangeToken,
    Organization,
    /// Members of an organization and their roles.
    OrgMember,
    User,
    PersonalAccessToken,
    Group,
    Membership,
    Runner,
    /// Creating a remote runner (one that serves the whole organization).
    RemoteRunner,
    /// Exchange tokens issued for a runner (CreateRunner, CreateRunnerToken).
    RunnerToken,
    RunnerLogsToken,
    RunnerPolicy,
    RunnerConfigurationSchema,
    HostToken,
    ScmIntegration,
    EnvironmentClass,
    AuditLog,
    /// Notifications of resource changes.
    Event,
    /// A runner acting on itself through the runner protocol (`corral.v1`).
    RunnerSelf,
    /// The public API schema, as server reflection hands it out.
    Schema,
}

/// What a caller does with a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Read,
    /// Follow changes as they happen (a stream).
    Watch,
    Create,
    Update,
    Delete,
    /// Put a runner to work for oneself (SCM requests, validation, host tokens).
    Use,
}

impl Action {
    /// Whether the action leaves everything as it was.
    pub fn is_read(self) -> bool {
        self == Action::Read
    }
}

/// Who may perform an action, besides runner tokens ([`RunnerTokens`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// No token at all: the request authenticates with what it carries.
    Anyone,
    /// Any valid user or runner token.
    Authenticated,
    /// Any user of the resource's organization.
    Member,
    /// Admins of the resource's organization.
    OrgAdmin,
    /// Users holding at least this role on the runner the resource belongs
    /// to. Org admins and the runner's creator hold ADMIN; a runner policy
    /// grants its group the policy's role. Without any role, the runner and
    /// what belongs to it do not exist for the caller.
    RunnerRole(RunnerRole),
    /// The user the resource belongs to, or an admin of its organization.
    /// To anyone else it does not exist.
    Owner,
    /// The runner itself, with its access token.
    TheRunner,
}

/// What a runner access token may reach on the public API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerTokens {
    Refused,
    /// Only the runner itself.
    Itself,
    /// Only the runner's own organization.
    OwnOrganization,
    /// Whatever the token names (its own identity).
    Allowed,
}

/// One cell row of the permission table.
#[derive(Debug, Clone, Copy)]
pub struct Permission {
    pub resource: Resource,
    pub action: Action,
    pub who: Who,
    pub runner_tokens: RunnerTokens,
    /// What the permission means, in a sentence (docs and errors).
    pub what: &'static str,
}

const fn allow(resource: Resource, action: Action, who: Who, what: &'static str) -> Permission {
    Permission {
        resource,
        action,
        who,
        runner_tokens: RunnerTokens::Refused,
        what,
    }
}

const fn with_runners(mut permission: Permission, runner_tokens: RunnerTokens) -> Permission {
    permission.runner_tokens = runner_tokens;
    permission
}

use Action as A;
use Resource as R;
use Who as W;

const RUNNER_USER: Who = W::RunnerRole(RunnerRole::User);
const RUNNER_ADMIN: Who = W::RunnerRole(RunnerRole::Admin);

/// Resource × action → who. A pair that is not listed is refused to everyone.
#[rustfmt::skip]
pub static PERMISSIONS: &[Permission] = &[
    with_runners(allow(R::Identity, A::Read, W::Authenticated, "see who the token belongs to"), RunnerTokens::Allowed),
    allow(R::ExchangeToken, A::Use, W::Anyone, "trade a runner's exchange token for its access token"),
    with_runners(allow(R::Organization, A::Read, W::Member, "read the organization"), RunnerTokens::OwnOrganization),
    allow(R::OrgMember, A::Read, W::Member, "list the organization's members and their roles"),
    allow(R::OrgMember, A::Update, W::OrgAdmin, "change a member's organization role"),
    allow(R::User, A::Read, W::Member, "read a user of the organization"),
    allow(R::PersonalAccessToken, A::Read, W::Owner, "see personal access tokens (not their secrets)"),
    allow(R::PersonalAccessToken, A::Create, W::Owner, "issue a personal access token"),
    allow(R::PersonalAccessToken, A::Delete, W::Owner, "revoke a personal access token"),
    allow(R::Group, A::Read, W::Member, "read the organization's groups"),
    allow(R::Group, A::Create, W::OrgAdmin, "create a group"),
    allow(R::Group, A::Update, W::OrgAdmin, "rename or describe a group"),
    allow(R::Group, A::Delete, W::OrgAdmin, "delete a group"),
    allow(R::Membership, A::Read, W::Member, "see who belongs to a group"),
    allow(R::Membership, A::Create, W::OrgAdmin, "add someone to a group"),
    allow(R::Membership, A::Delete, W::OrgAdmin, "remove someone from a group"),
    with_runners(allow(R::Runner, A::Read, RUNNER_USER, "see a runner and its status"), RunnerTokens::Itself),
    allow(R::Runner, A::Create, W::Member, "create a local runner"),
    allow(R::Runner, A::Update, RUNNER_ADMIN, "change a runner's name, configuration or desired phase"),
    allow(R::Runner, A::Delete, RUNNER_ADMIN, "delete a runner"),
    allow(R::Runner, A::Use, RUNNER_USER, "have a runner do SCM work, validate against it, keep host tokens for it"),
    allow(R::RemoteRunner, A::Create, W::OrgAdmin, "create a remote runner, which serves the whole organization"),
    allow(R::RunnerToken, A::Create, RUNNER_ADMIN, "issue a runner's exchange token (revokes its access token once used)"),
    allow(R::RunnerLogsToken, A::Create, RUNNER_ADMIN, "issue a token that reads a runner's logs"),
    allow(R::RunnerPolicy, A::Read, RUNNER_USER, "see which groups hold a role on a runner"),
    allow(R::RunnerPolicy, A::Create, RUNNER_ADMIN, "grant a group a role on a runner"),
    allow(R::RunnerPolicy, A::Update, RUNNER_ADMIN, "change a group's role on a runner"),
    allow(R::RunnerPolicy, A::Delete, RUNNER_ADMIN, "take a group's role on a runner away"),
    allow(R::RunnerConfigurationSchema, A::Read, RUNNER_USER, "read what a runner's configuration may hold"),
    allow(R::HostToken, A::Read, W::Owner, "see host authentication tokens (never the secrets)"),
    allow(R::HostToken, A::Create, W::Owner, "keep an SCM token for a host on a runner"),
    allow(R::HostToken, A::Update, W::Owner, "replace an SCM token"),
    allow(R::HostToken, A::Delete, W::Owner, "delete an SCM token"),
    allow(R::HostToken, A::Use, W::Owner, "hand one's own SCM token to a runner for one's own request"),
    allow(R::ScmIntegration, A::Read, RUNNER_USER, "see a runner's SCM integrations (secrets stay sealed)"),
    allow(R::ScmIntegration, A::Create, RUNNER_ADMIN, "add an SCM integration to a runner"),
    allow(R::ScmIntegration, A::Update, RUNNER_ADMIN, "change an SCM integration"),
    allow(R::ScmIntegration, A::Delete, RUNNER_ADMIN, "remove an SCM integration"),
    allow(R::EnvironmentClass, A::Read, RUNNER_USER, "see a runner's environment classes"),
    allow(R::EnvironmentClass, A::Create, RUNNER_ADMIN, "add an environment class to a runner"),
    allow(R::EnvironmentClass, A::Update, RUNNER_ADMIN, "change or disable an environment class"),
    allow(R::AuditLog, A::Read, W::OrgAdmin, "read the organization's audit trail"),
    allow(R::Event, A::Watch, W::Member, "follow changes to what one may see"),
    allow(R::RunnerSelf, A::Read, W::TheRunner, "a runner reads its own spec, classes and integrations"),
    allow(R::RunnerSelf, A::Update, W::TheRunner, "a runner reports its key, schema and status, and answers requests"),
    allow(R::RunnerSelf, A::Delete, W::TheRunner, "a runner confirms that it cleaned up after deletion"),
    allow(R::Schema, A::Read, W::Anyone, "read the API schema (server reflection); it holds nothing secret"),
];

/// The permission for `resource` and `action`, if anyone has it.
pub fn permission(resource: Resource, action: Action) -> Option<&'static Permission> {
    PERMISSIONS
        .iter()
        .find(|p| p.resource == resource && p.action == action)
}

/// One RPC: the resource and action it stands for.
#[derive(Debug, Clone, Copy)]
pub struct Rpc {
    /// `package.Service/Method`.
    pub procedure: &'static str,
    pub resource: Resource,
    pub action: Action,
    /// Whether a call leaves an audit event, and of which kind.
    pub audit: Option<AuditKind>,
    /// Further permissions the RPC always needs (a host token is kept for a
    /// runner: the caller must be able to use that runner too).
    pub also: &'static [(Resource, Action)],
}

impl Rpc {
    /// The permission the RPC needs; every RPC's pair is in [`PERMISSIONS`]
    /// (a test checks it).
    pub fn permission(&self) -> Option<&'static Permission> {
        permission(self.resource, self.action)
    }

    /// The method's name (`UpdateRunner`).
    pub fn method(&self) -> &'static str {
        self.procedure.rsplit('/').next().unwrap_or(self.procedure)
    }

    /// What the audit trail names as the RPC's subject kind.
    pub fn subject_kind(&self) -> ResourceKind {
        subject_kind(self.resource)
    }
}

/// The resource kind audit events and change notifications name for what a
/// policy protects.
pub fn subject_kind(resource: Resource) -> ResourceKind {
    match resource {
        R::Organization => ResourceKind::Organization,
        R::OrgMember => ResourceKind::RoleAssignment,
        R::User | R::Identity => ResourceKind::User,
        R::PersonalAccessToken => ResourceKind::PersonalAccessToken,
        R::Group => ResourceKind::Group,
        R::Membership => ResourceKind::GroupMembership,
        R::HostToken => ResourceKind::HostToken,
        R::ScmIntegration => ResourceKind::ScmIntegration,
        R::EnvironmentClass => ResourceKind::EnvironmentClass,
        R::ExchangeToken
        | R::Runner
        | R::RemoteRunner
        | R::RunnerToken
        | R::RunnerLogsToken
        | R::RunnerPolicy
        | R::RunnerConfigurationSchema
        | R::RunnerSelf
        | R::AuditLog
        | R::Event
        | R::Schema => ResourceKind::Runner,
    }
}

const CHANGE: Option<AuditKind> = Some(AuditKind::ResourceChange);
const CREDENTIALS: Option<AuditKind> = Some(AuditKind::CredentialAccess);

const fn rpc(
    procedure: &'static str,
    resource: Resource,
    action: Action,
    audit: Option<AuditKind>,
) -> Rpc {
    Rpc {
        procedure,
        resource,
        action,
        audit,
        also: &[],
    }
}

const fn also(mut rpc: Rpc, needs: &'static [(Resource, Action)]) -> Rpc {
    rpc.also = needs;
    rpc
}

/// Every RPC corral serves. A served method without a row is refused to
/// everyone (and a test fails).
#[rustfmt::skip]
pub static RPCS: &[Rpc] = &[
    // gitpod.v1.IdentityService
    rpc("gitpod.v1.IdentityService/GetAuthenticatedIdentity", R::Identity, A::Read, None),
    rpc("gitpod.v1.IdentityService/ExchangeToken", R::ExchangeToken, A::Use, CHANGE),
    // gitpod.v1.UserService
    rpc("gitpod.v1.UserService/GetAuthenticatedUser", R::User, A::Read, None),
    rpc("gitpod.v1.UserService/GetUser", R::User, A::Read, None),
    rpc("gitpod.v1.UserService/CreatePersonalAccessToken", R::PersonalAccessToken, A::Create, CHANGE),
    rpc("gitpod.v1.UserService/GetPersonalAccessToken", R::PersonalAccessToken, A::Read, None),
    rpc("gitpod.v1.UserService/ListPersonalAccessTokens", R::PersonalAccessToken, A::Read, None),
    rpc("gitpod.v1.UserService/DeletePersonalAccessToken", R::PersonalAccessToken, A::Delete, CHANGE),
    // gitpod.v1.GroupService
    rpc("gitpod.v1.GroupService/CreateGroup", R::Group, A::Create, CHANGE),
    rpc("gitpod.v1.GroupService/GetGroup", R::Group, A::Read, None),
    rpc("gitpod.v1.GroupService/ListGroups", R::Group, A::Read, None),
    rpc("gitpod.v1.GroupService/UpdateGroup", R::Group, A::Update, CHANGE),
    rpc("gitpod.v1.GroupService/DeleteGroup", R::Group, A::Delete, CHANGE),
    rpc("gitpod.v1.GroupService/CreateMembership", R::Membership, A::Create, CHANGE),
    rpc("gitpod.v1.GroupService/DeleteMembership", R::Membership, A::Delete, CHANGE),
    rpc("gitpod.v1.GroupService/GetMembership", R::Membership, A::Read, None),
    rpc("gitpod.v1.GroupService/ListMemberships", R::Membership, A::Read, None),
    // gitpod.v1.OrganizationService
    rpc("gitpod.v1.OrganizationService/GetOrganization", R::Organization, A::Read, None),
    rpc("gitpod.v1.OrganizationService/ListMembers", R::OrgMember, A::Read, None),
    rpc("gitpod.v1.OrganizationService/SetRole", R::OrgMember, A::Update, CHANGE),
    // gitpod.v1.RunnerService
    rpc("gitpod.v1.RunnerService/CreateRunner", R::Runner, A::Create, CHANGE),
    rpc("gitpod.v1.RunnerService/GetRunner", R::Runner, A::Read, None),
    rpc("gitpod.v1.RunnerService/ListRunners", R::Runner, A::Read, None),
    rpc("gitpod.v1.RunnerService/UpdateRunner", R::Runner, A::Update, CHANGE),
    rpc("gitpod.v1.RunnerService/DeleteRunner", R::Runner, A::Delete, CHANGE),
    rpc("gitpod.v1.RunnerService/CreateRunnerToken", R::RunnerToken, A::Create, CHANGE),
    rpc("gitpod.v1.RunnerService/CreateRunnerLogsToken", R::RunnerLogsToken, A::Create, CHANGE),
    rpc("gitpod.v1.RunnerService/ParseContextURL", R::Runner, A::Use, CREDENTIALS),
    rpc("gitpod.v1.RunnerService/SearchRepositories", R::Runner, A::Use, CREDENTIALS),
    rpc("gitpod.v1.RunnerService/ListSCMOrganizations", R::Runner, A::Use, CREDENTIALS),
    rpc("gitpod.v1.RunnerService/CheckAuthenticationForHost", R::Runner, A::Use, CREDENTIALS),
    rpc("gitpod.v1.RunnerService/CheckRepositoryAccess", R::Runner, A::Use, CREDENTIALS),
    rpc("gitpod.v1.RunnerService/ListRunnerPolicies", R::RunnerPolicy, A::Read, None),
    rpc("gitpod.v1.RunnerService/CreateRunnerPolicy", R::RunnerPolicy, A::Create, CHANGE),
    rpc("gitpod.v1.RunnerService/UpdateRunnerPolicy", R::RunnerPolicy, A::Update, CHANGE),
    rpc("gitpod.v1.RunnerService/DeleteRunnerPolicy", R::RunnerPolicy, A::Delete, CHANGE),
    // gitpod.v1.RunnerConfigurationService
    also(
        rpc("gitpod.v1.RunnerConfigurationService/CreateHostAuthenticationToken", R::HostToken, A::Create, CHANGE),
        &[(R::Runner, A::Use)],
    ),
    rpc("gitpod.v1.RunnerConfigurationService/GetHostAuthenticationToken", R::HostToken, A::Read, None),
    rpc("gitpod.v1.RunnerConfigurationService/ListHostAuthenticationTokens", R::HostToken, A::Read, None),
    rpc("gitpod.v1.RunnerConfigurationService/UpdateHostAuthenticationToken", R::HostToken, A::Update, CHANGE),
    rpc("gitpod.v1.RunnerConfigurationService/DeleteHostAuthenticationToken", R::HostToken, A::Delete, CHANGE),
    rpc("gitpod.v1.RunnerConfigurationService/GetRunnerConfigurationSchema", R::RunnerConfigurationSchema, A::Read, None),
    rpc("gitpod.v1.RunnerConfigurationService/CreateSCMIntegration", R::ScmIntegration, A::Create, CHANGE),
    rpc("gitpod.v1.RunnerConfigurationService/GetSCMIntegration", R::ScmIntegration, A::Read, None),
    rpc("gitpod.v1.RunnerConfigurationService/ListSCMIntegrations", R::ScmIntegration, A::Read, None),
    rpc("gitpod.v1.RunnerConfigurationService/UpdateSCMIntegration", R::ScmIntegration, A::Update, CHANGE),
    rpc("gitpod.v1.RunnerConfigurationService/DeleteSCMIntegration", R::ScmIntegration, A::Delete, CHANGE),
    rpc("gitpod.v1.RunnerConfigurationService/CreateEnvironmentClass", R::EnvironmentClass, A::Create, CHANGE),
    rpc("gitpod.v1.RunnerConfigurationService/GetEnvironmentClass", R::EnvironmentClass, A::Read, None),
    rpc("gitpod.v1.RunnerConfigurationService/ListEnvironmentClasses", R::EnvironmentClass, A::Read, None),
    rpc("gitpod.v1.RunnerConfigurationService/UpdateEnvironmentClass", R::EnvironmentClass, A::Update, CHANGE),
    rpc("gitpod.v1.RunnerConfigurationService/ValidateRunnerConfiguration", R::Runner, A::Use, None),
    // gitpod.v1.EventService
    rpc("gitpod.v1.EventService/ListAuditLogs", R::AuditLog, A::Read, None),
    rpc("gitpod.v1.EventService/GetAuditLog", R::AuditLog, A::Read, None),
    rpc("gitpod.v1.EventService/WatchEvents", R::Event, A::Watch, None),
    // corral.v1.RunnerInteractionService: the runner protocol
    rpc("corral.v1.RunnerInteractionService/SignUp", R::RunnerSelf, A::Update, CHANGE),
    rpc("corral.v1.RunnerInteractionService/UpdateConfigurationSchema", R::RunnerSelf, A::Update, CHANGE),
    rpc("corral.v1.RunnerInteractionService/ReportStatus", R::RunnerSelf, A::Update, None),
    rpc("corral.v1.RunnerInteractionService/WatchRequests", R::RunnerSelf, A::Read, None),
    rpc("corral.v1.RunnerInteractionService/Respond", R::RunnerSelf, A::Update, None),
    rpc("corral.v1.RunnerInteractionService/ConfirmDeletion", R::RunnerSelf, A::Delete, CHANGE),
    rpc("corral.v1.RunnerInteractionService/Disconnect", R::RunnerSelf, A::Update, None),
    rpc("corral.v1.RunnerInteractionService/ListEnvironmentClasses", R::RunnerSelf, A::Read, None),
    rpc("corral.v1.RunnerInteractionService/ListSCMIntegrations", R::RunnerSelf, A::Read, None),
    rpc("corral.v1.RunnerInteractionService/GetLatestRelease", R::RunnerSelf, A::Read, None),
    rpc("corral.v1.RunnerInteractionService/DownloadRelease", R::RunnerSelf, A::Read, None),
    // gRPC server reflection (the reflection module)
    rpc("grpc.reflection.v1.ServerReflection/ServerReflectionInfo", R::Schema, A::Read, None),
    rpc("grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", R::Schema, A::Read, None),
];

/// The row for a request path (`/gitpod.v1.X/Y`, also under `/api/`).
pub fn rpc_for(path: &str) -> Option<&'static Rpc> {
    static BY_PROCEDURE: std::sync::LazyLock<std::collections::HashMap<&str, &Rpc>> =
        std::sync::LazyLock::new(|| RPCS.iter().map(|r| (r.procedure, r)).collect());
    let procedure = path.trim_start_matches('/');
    let procedure = procedure.strip_prefix("api/").unwrap_or(procedure);
    BY_PROCEDURE.get(procedure).copied()
}

/// The kinds of caller the operator docs (and the matrix test) tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallerKind {
    OrgAdmin,
    /// A member holding no role on the runner concerned.
    Member,
    /// A member whose group holds USER on the runner through a policy.
    RunnerUser,
    /// A member holding ADMIN on the runner (a policy, or its creator).
    RunnerAdmin,
    /// A read-only personal access token (of an org admin: what it may still do).
    ReadOnly,
    /// A runner's access token (of the runner concerned).
    RunnerToken,
    /// A user of another organization.
    OtherOrg,
    NoToken,
}

impl CallerKind {
    pub const ALL: [CallerKind; 8] = [
        CallerKind::OrgAdmin,
        CallerKind::Member,
        CallerKind::RunnerUser,
        CallerKind::RunnerAdmin,
        CallerKind::ReadOnly,
        CallerKind::RunnerToken,
        CallerKind::OtherOrg,
        CallerKind::NoToken,
    ];

    fn heading(self) -> &'static str {
        match self {
            CallerKind::OrgAdmin => "org admin",
            CallerKind::Member => "member",
            CallerKind::RunnerUser => "runner USER",
            CallerKind::RunnerAdmin => "runner ADMIN",
            CallerKind::ReadOnly => "read-only token",
            CallerKind::RunnerToken => "runner token",
            CallerKind::OtherOrg => "other org",
            CallerKind::NoToken => "no token",
        }
    }
}

/// What a kind of caller gets from an RPC, acting on a resource of an
/// organization they are not in (other org) or on resources owned by an org
/// admin and runners created by one (everyone else).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Allowed,
    /// Allowed for what is the caller's own; others' do not exist for them
    /// (lists leave them out).
    OwnOnly,
    /// Allowed only on the runner itself / its own organization (runner tokens).
    ItselfOnly,
    /// `permission_denied`.
    Denied,
    /// `not_found` (lists: nothing of it is shown).
    Hidden,
    /// `unauthenticated`.
    Unauthenticated,
}

impl Outcome {
    fn severity(self) -> u8 {
        match self {
            Outcome::Allowed => 0,
            Outcome::OwnOnly | Outcome::ItselfOnly => 1,
            Outcome::Hidden => 2,
            Outcome::Denied => 3,
            Outcome::Unauthenticated => 4,
        }
    }

    fn mark(self) -> &'static str {
        match self {
            Outcome::Allowed => "yes",
            Outcome::OwnOnly => "own",
            Outcome::ItselfOnly => "itself",
            Outcome::Denied => "denied",
            Outcome::Hidden => "not found",
            Outcome::Unauthenticated => "unauthenticated",
        }
    }
}

/// The table's answer for `rpc` and `kind` (see [`Outcome`]): the worst of
/// what its permissions say.
pub fn outcome(rpc: &Rpc, kind: CallerKind) -> Outcome {
    let Some(p) = rpc.permission() else {
        return Outcome::Denied;
    };
    let mut worst = permission_outcome(p, kind);
    for &(resource, action) in rpc.also {
        let next =
            permission(resource, action).map_or(Outcome::Denied, |p| permission_outcome(p, kind));
        if next.severity() > worst.severity() {
            worst = next;
        }
    }
    worst
}

fn permission_outcome(p: &Permission, kind: CallerKind) -> Outcome {
    if p.who == Who::Anyone {
        return Outcome::Allowed;
    }
    let runner_role = |held: Option<RunnerRole>| match (p.who, held) {
        (Who::RunnerRole(_), None) => Outcome::Hidden,
        (Who::RunnerRole(needed), Some(role)) if role < needed => Outcome::Denied,
        (Who::RunnerRole(_), Some(_)) => Outcome::Allowed,
        (Who::OrgAdmin, _) => Outcome::Denied,
        (Who::Owner, _) => Outcome::OwnOnly,
        (Who::TheRunner, _) => Outcome::Denied,
        _ => Outcome::Allowed,
    };
    match kind {
        CallerKind::NoToken => Outcome::Unauthenticated,
        CallerKind::OtherOrg => match p.who {
            Who::TheRunner => Outcome::Denied,
            Who::Authenticated => Outcome::Allowed,
            _ => Outcome::Hidden,
        },
        CallerKind::RunnerToken => match (p.who, p.runner_tokens) {
            (Who::TheRunner, _) => Outcome::Allowed,
            (_, RunnerTokens::Refused) => Outcome::Denied,
            (_, RunnerTokens::Allowed) => Outcome::Allowed,
            (_, RunnerTokens::Itself | RunnerTokens::OwnOrganization) => Outcome::ItselfOnly,
        },
        CallerKind::OrgAdmin | CallerKind::ReadOnly => {
            if kind == CallerKind::ReadOnly && !p.action.is_read() {
                return Outcome::Denied;
            }
            match p.who {
                Who::TheRunner => Outcome::Denied,
                _ => Outcome::Allowed,
            }
        }
        CallerKind::Member => runner_role(None),
        CallerKind::RunnerUser => runner_role(Some(RunnerRole::User)),
        CallerKind::RunnerAdmin => runner_role(Some(RunnerRole::Admin)),
    }
}

fn who_text(who: Who) -> &'static str {
    match who {
        Who::Anyone => "anyone (no token)",
        Who::Authenticated => "any token",
        Who::Member => "members",
        Who::OrgAdmin => "org admins",
        Who::RunnerRole(RunnerRole::User) => "USER on the runner",
        Who::RunnerRole(RunnerRole::Admin) => "ADMIN on the runner",
        Who::Owner => "its owner, org admins",
        Who::TheRunner => "the runner itself",
    }
}

fn runner_tokens_text(tokens: RunnerTokens, who: Who) -> &'static str {
    match (who, tokens) {
        (Who::TheRunner, _) => "itself",
        (_, RunnerTokens::Refused) => "no",
        (_, RunnerTokens::Itself) => "itself",
        (_, RunnerTokens::OwnOrganization) => "own organization",
        (_, RunnerTokens::Allowed) => "yes",
    }
}

/// The two tables as Markdown, as `docs/authorization.md` shows them (a test
/// holds the file to this).
pub fn markdown() -> String {
    let mut out = String::new();
    out.push_str("| resource | action | who may | runner tokens | meaning |\n");
    out.push_str("|---|---|---|---|---|\n");
    for p in PERMISSIONS {
        out.push_str(&format!(
            "| {:?} | {:?} | {} | {} | {} |\n",
            p.resource,
            p.action,
            who_text(p.who),
            runner_tokens_text(p.runner_tokens, p.who),
            p.what
        ));
    }
    out.push_str("\n| RPC | resource | action | audited |");
    for kind in CallerKind::ALL {
        out.push_str(&format!(" {} |", kind.heading()));
    }
    out.push_str("\n|---|---|---|---|");
    for _ in CallerKind::ALL {
        out.push_str("---|");
    }
    out.push('\n');
    for rpc in RPCS {
        let audited = match rpc.audit {
            Some(AuditKind::ResourceChange) => "change",
            Some(AuditKind::CredentialAccess) => "credentials",
            None => "",
        };
        out.push_str(&format!(
            "| `{}` | {:?} | {:?} | {audited} |",
            rpc.procedure, rpc.resource, rpc.action
        ));
        for kind in CallerKind::ALL {
            out.push_str(&format!(" {} |", outcome(rpc, kind).mark()));
        }
        out.push('\n');
    }
    out
}
