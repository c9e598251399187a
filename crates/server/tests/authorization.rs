//! Every RPC, called as every kind of caller, answers what the policy table
//! says (`docs/authorization.md`): the in-process server over HTTP, with two
//! organizations.
//!
//! Each call targets what an organization admin owns (their personal access
//! token and host token) or runner R, which an admin created and on which
//! one group holds USER and another ADMIN. A call that changed something
//! gets the next caller a fresh copy of everything.

mod support;

use std::collections::BTreeSet;

use base64::Engine;
use chrono::Utc;
use corral_server::authz::policy::{self, CallerKind, Outcome, RPCS};
use corral_server::bootstrap::{self, PersonalTokenSpec};
use corral_server::crypto;
use corral_server::domain::*;
use corral_server::store::Store;
use serde_json::{Value, json};
use support::{Client, Server};
use uuid::Uuid;

/// Everything one round of calls acts on.
struct Fixture {
    org_id: Uuid,
    admin_id: Uuid,
    member_id: Uuid,
    runner_user_id: Uuid,
    runner_id: Uuid,
    user_group: Uuid,
    group_id: Uuid,
    membership_id: Uuid,
    class_id: Uuid,
    integration_id: Uuid,
    host_token_id: Uuid,
    pat_id: Uuid,
    audit_id: Uuid,
    tokens: Vec<(CallerKind, String)>,
    /// Who each kind of caller is: (kind, user id, organization id).
    identities: Vec<(CallerKind, Uuid, Uuid)>,
}

impl Fixture {
    fn token(&self, kind: CallerKind) -> String {
        self.tokens
            .iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, t)| t.clone())
            .unwrap_or_default()
    }

    /// Ids `kind` must never be shown where the table limits it to its own
    /// things: the admin's tokens and the audit trail, and runner R's things
    /// unless it holds a role on R.
    fn private_ids(&self, kind: CallerKind) -> Vec<Uuid> {
        let mut ids = vec![self.host_token_id, self.pat_id, self.audit_id];
        if !matches!(kind, CallerKind::RunnerUser | CallerKind::RunnerAdmin) {
            ids.extend([self.runner_id, self.class_id, self.integration_id]);
        }
        ids
    }

    /// The user and organization behind `kind`'s token.
    fn identity(&self, kind: CallerKind) -> (Uuid, Uuid) {
        self.identities
            .iter()
            .find(|(k, _, _)| *k == kind)
            .map(|(_, user, org)| (*user, *org))
            .unwrap_or((self.admin_id, self.org_id))
    }
}

async fn user(store: &dyn Store, org: Uuid, email: &str, role: OrgRole) -> (Uuid, String) {
    let created = bootstrap::create_user(store, org, email, role)
        .await
        .unwrap();
    (created.user.id, created.token)
}

async fn group(store: &dyn Store, org: Uuid, name: &str, members: &[Uuid]) -> (Uuid, Vec<Uuid>) {
    let now = Utc::now();
    let group = Group {
        id: new_id(),
        org_id: org,
        name: name.into(),
        description: String::new(),
        system: None,
        created_at: now,
        updated_at: now,
    };
    store.create_group(&group).await.unwrap();
    let mut memberships = Vec::new();
    for &user_id in members {
        let membership = Membership {
            id: new_id(),
            group_id: group.id,
            user_id,
            created_at: now,
        };
        store.create_membership(&membership).await.unwrap();
        memberships.push(membership.id);
    }
    (group.id, memberships)
}

/// A runner access token for `runner`, the way a runner gets one.
async fn runner_token(store: &dyn Store, runner: &Runner) -> String {
    let now = Utc::now();
    let exchange = exchange_token(store, runner).await.1;
    let access_token = crypto::new_token(TokenKind::RunnerAccess);
    let access = ApiToken {
        id: new_id(),
        kind: TokenKind::RunnerAccess,
        hash: crypto::token_hash(&access_token),
        org_id: runner.org_id,
        subject: Subject::Runner(runner.id),
        creator: runner.creator,
        description: "runner access token".into(),
        read_only: false,
        created_at: now,
        expires_at: None,
        last_used: None,
        used_at: None,
    };
    store
        .redeem_exchange_token(exchange, &access, now)
        .await
        .unwrap();
    access_token
}

/// A fresh exchange token for `runner`: (the token, its id).
async fn exchange_token(store: &dyn Store, runner: &Runner) -> (String, Uuid) {
    let now = Utc::now();
    let token = crypto::new_token(TokenKind::Exchange);
    let record = ApiToken {
        id: new_id(),
        kind: TokenKind::Exchange,
        hash: crypto::token_hash(&token),
        org_id: runner.org_id,
        subject: Subject::Runner(runner.id),
        creator: runner.creator,
        description: "exchange".into(),
        read_only: false,
        created_at: now,
        expires_at: Some(now + chrono::Duration::hours(1)),
        last_used: None,
        used_at: None,
    };
    store.create_token(&record).await.unwrap();
    (token, record.id)
}

async fn fixture(store: &dyn Store, round: usize) -> Fixture {
    let (org, admin) = bootstrap::create_organization(
        store,
        &format!("Org A {round}"),
        &format!("admin{round}@a.test"),
    )
    .await
    .unwrap();
    let admin_id = admin.user.id;
    let (member_id, member) = user(
        store,
        org.id,
        &format!("member{round}@a.test"),
        OrgRole::Member,
    )
    .await;
    let (runner_user_id, runner_user) = user(
        store,
        org.id,
        &format!("user{round}@a.test"),
        OrgRole::Member,
    )
    .await;
    let (runner_admin_id, runner_admin) = user(
        store,
        org.id,
        &format!("radmin{round}@a.test"),
        OrgRole::Member,
    )
    .await;
    let (_, read_only) = bootstrap::create_personal_token(
        store,
        &admin.user,
        Subject::User(admin_id),
        &PersonalTokenSpec {
            description: "read-only",
            read_only: true,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let (pat, _) = bootstrap::create_personal_token(
        store,
        &admin.user,
        Subject::User(admin_id),
        &PersonalTokenSpec {
            description: "the admin's",
            read_only: false,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    let (user_group, _) = group(store, org.id, "runner users", &[runner_user_id]).await;
    let (admin_group, _) = group(store, org.id, "runner admins", &[runner_admin_id]).await;
    let (group_id, memberships) = group(store, org.id, "plain", &[member_id]).await;
    let now = Utc::now();
    let runner = Runner {
        id: new_id(),
        org_id: org.id,
        name: "R".into(),
        kind: RunnerKind::Local,
        provider: Some(RunnerProvider::LinuxHost),
        creator: Subject::User(admin_id),
        runner_manager_id: None,
        spec: RunnerSpec::default(),
        status: RunnerStatus {
            phase: RunnerPhase::Created,
            ..Default::default()
        },
        config_schema: None,
        created_at: now,
        updated_at: now,
    };
    store
        .create_runner(
            &runner,
            &[
                RunnerPolicy {
                    runner_id: runner.id,
                    group_id: user_group,
                    role: RunnerRole::User,
                },
                RunnerPolicy {
                    runner_id: runner.id,
                    group_id: admin_group,
                    role: RunnerRole::Admin,
                },
            ],
        )
        .await
        .unwrap();
    let runner_access = runner_token(store, &runner).await;
    let class = EnvironmentClass {
        id: new_id(),
        org_id: org.id,
        runner_id: runner.id,
        display_name: "class".into(),
        description: "a class".into(),
        configuration: Vec::new(),
        enabled: true,
        created_at: now,
    };
    store.create_environment_class(&class).await.unwrap();
    let integration = ScmIntegration {
        id: new_id(),
        org_id: org.id,
        runner_id: runner.id,
        scm_id: "github".into(),
        host: "github.example.com".into(),
        oauth: None,
        pat: true,
        virtual_directory: None,
        created_at: now,
    };
    store.create_scm_integration(&integration).await.unwrap();
    let host_token = HostToken {
        id: new_id(),
        org_id: org.id,
        runner_id: runner.id,
        user_id: admin_id,
        host: "github.example.com".into(),
        source: Some(HostTokenSource::Pat),
        token_encrypted: vec![1, 2, 3],
        refresh_token_encrypted: None,
        expires_at: None,
        integration_id: None,
        scopes: Vec::new(),
        created_at: now,
    };
    store.create_host_token(&host_token).await.unwrap();
    let audit = AuditEvent {
        id: new_id(),
        org_id: org.id,
        at: now,
        actor: Some(Subject::User(admin_id)),
        token_id: None,
        rpc: "gitpod.v1.RunnerService/CreateRunner".into(),
        kind: AuditKind::ResourceChange,
        subject_kind: ResourceKind::Runner,
        subject_id: Some(runner.id),
        outcome: "ok".into(),
        request_id: String::new(),
        client_address: String::new(),
    };
    store.record_audit_event(&audit).await.unwrap();
    let (_, other) = bootstrap::create_organization(
        store,
        &format!("Org B {round}"),
        &format!("admin{round}@b.test"),
    )
    .await
    .unwrap();
    Fixture {
        org_id: org.id,
        admin_id,
        member_id,
        runner_user_id,
        runner_id: runner.id,
        user_group,
        group_id,
        membership_id: memberships[0],
        class_id: class.id,
        integration_id: integration.id,
        host_token_id: host_token.id,
        pat_id: pat.id,
        audit_id: audit.id,
        tokens: vec![
            (CallerKind::OrgAdmin, admin.token),
            (CallerKind::Member, member),
            (CallerKind::RunnerUser, runner_user),
            (CallerKind::RunnerAdmin, runner_admin),
            (CallerKind::ReadOnly, read_only),
            (CallerKind::RunnerToken, runner_access),
            (CallerKind::OtherOrg, other.token),
            (CallerKind::NoToken, String::new()),
        ],
        identities: vec![
            (CallerKind::Member, member_id, org.id),
            (CallerKind::RunnerUser, runner_user_id, org.id),
            (CallerKind::RunnerAdmin, runner_admin_id, org.id),
            (CallerKind::OtherOrg, other.user.id, other.user.org_id),
        ],
    }
}

/// What a call names, which decides what "not found" means for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Names {
    /// Nothing of organization A: it lists or creates in the caller's own scope.
    Nothing,
    /// Something the organization admin owns (a token of theirs).
    AdminsOwn,
    /// Runner R or something of it.
    Runner,
    /// Organization A itself, or a group, user or event of it.
    Org,
}

/// The request body for `method` as `kind` sends it, and what it names.
async fn request(
    store: &dyn Store,
    f: &Fixture,
    kind: CallerKind,
    method: &str,
    n: usize,
) -> (Value, Names) {
    let r = f.runner_id.to_string();
    let (me, my_org) = f.identity(kind);
    let subject = |id: Uuid| json!({"id": id.to_string(), "principal": "PRINCIPAL_USER"});
    match method {
        "GetAuthenticatedIdentity"
        | "GetAuthenticatedUser"
        | "ListPersonalAccessTokens"
        | "ListGroups"
        | "ListRunners"
        | "ListHostAuthenticationTokens"
        | "ListSCMIntegrations"
        | "ListEnvironmentClasses"
        | "ListAuditLogs"
        | "UpdateConfigurationSchema"
        | "ConfirmDeletion"
        | "Disconnect"
        | "GetLatestRelease" => {
            let body = if method == "UpdateConfigurationSchema" {
                json!({"schema": {}})
            } else {
                json!({})
            };
            (body, Names::Nothing)
        }
        "ExchangeToken" => {
            let runner = store.get_runner(f.runner_id).await.unwrap();
            let (token, _) = exchange_token(store, &runner).await;
            (json!({"exchangeToken": token}), Names::Nothing)
        }
        "GetUser" => (json!({"userId": f.admin_id.to_string()}), Names::Org),
        "CreatePersonalAccessToken" => (
            json!({"userId": me.to_string(), "description": format!("t{n}"), "validFor": "3600s"}),
            Names::Nothing,
        ),
        "GetPersonalAccessToken" | "DeletePersonalAccessToken" => (
            json!({"personalAccessTokenId": f.pat_id.to_string()}),
            Names::AdminsOwn,
        ),
        "CreateGroup" => (
            json!({"organizationId": my_org.to_string(), "name": format!("group {n}")}),
            Names::Nothing,
        ),
        "GetGroup" => (json!({"id": f.group_id.to_string()}), Names::Org),
        "UpdateGroup" => (
            json!({"groupId": f.group_id.to_string(), "name": format!("renamed {n}"), "description": "d"}),
            Names::Org,
        ),
        "DeleteGroup" | "ListMemberships" => {
            (json!({"groupId": f.group_id.to_string()}), Names::Org)
        }
        "CreateMembership" => (
            json!({"groupId": f.group_id.to_string(), "subject": subject(f.runner_user_id)}),
            Names::Org,
        ),
        "DeleteMembership" => (
            json!({"membershipId": f.membership_id.to_string()}),
            Names::Org,
        ),
        "GetMembership" => (
            json!({"groupId": f.group_id.to_string(), "subject": subject(f.member_id)}),
            Names::Org,
        ),
        "GetOrganization" | "ListMembers" => {
            (json!({"organizationId": f.org_id.to_string()}), Names::Org)
        }
        "SetRole" => (
            json!({"organizationId": f.org_id.to_string(), "userId": f.member_id.to_string(), "role": "ORGANIZATION_ROLE_MEMBER"}),
            Names::Org,
        ),
        "CreateRunner" => (
            json!({"name": format!("runner {n}"), "provider": "RUNNER_PROVIDER_LINUX_HOST"}),
            Names::Nothing,
        ),
        "GetRunner"
        | "DeleteRunner"
        | "CreateRunnerToken"
        | "CreateRunnerLogsToken"
        | "ListRunnerPolicies"
        | "GetRunnerConfigurationSchema" => (json!({"runnerId": r}), Names::Runner),
        "UpdateRunner" => (
            json!({"runnerId": r, "name": format!("renamed {n}")}),
            Names::Runner,
        ),
        "ParseContextURL" => (
            json!({"runnerId": r, "contextUrl": "https://github.example.com/o/r"}),
            Names::Runner,
        ),
        "SearchRepositories" => (json!({"runnerId": r, "searchString": "x"}), Names::Runner),
        "ListSCMOrganizations" => (
            json!({"runnerId": r, "scmHost": "github.example.com"}),
            Names::Runner,
        ),
        "CheckAuthenticationForHost" => (
            json!({"runnerId": r, "host": "github.example.com"}),
            Names::Runner,
        ),
        "CheckRepositoryAccess" => (
            json!({"runnerId": r, "repositoryUrl": "https://github.example.com/o/r"}),
            Names::Runner,
        ),
        "CreateRunnerPolicy" => (
            json!({"runnerId": r, "groupId": f.group_id.to_string(), "role": "RUNNER_ROLE_USER"}),
            Names::Runner,
        ),
        "UpdateRunnerPolicy" => (
            json!({"runnerId": r, "groupId": f.user_group.to_string(), "role": "RUNNER_ROLE_ADMIN"}),
            Names::Runner,
        ),
        "DeleteRunnerPolicy" => (
            json!({"runnerId": r, "groupId": f.user_group.to_string()}),
            Names::Runner,
        ),
        "CreateHostAuthenticationToken" => (
            json!({"runnerId": r, "host": format!("gitlab{n}.example.com"), "token": "glpat-x", "source": "HOST_AUTHENTICATION_TOKEN_SOURCE_PAT"}),
            Names::Runner,
        ),
        "GetHostAuthenticationToken" | "DeleteHostAuthenticationToken" => {
            (json!({"id": f.host_token_id.to_string()}), Names::AdminsOwn)
        }
        "UpdateHostAuthenticationToken" => (
            json!({"id": f.host_token_id.to_string(), "token": "ghp-new"}),
            Names::AdminsOwn,
        ),
        "CreateSCMIntegration" => (
            json!({"runnerId": r, "scmId": "gitlab", "host": format!("gitlab{n}.example.com"), "pat": true}),
            Names::Runner,
        ),
        "GetSCMIntegration" | "DeleteSCMIntegration" => {
            (json!({"id": f.integration_id.to_string()}), Names::Runner)
        }
        "UpdateSCMIntegration" => (
            json!({"id": f.integration_id.to_string(), "pat": true}),
            Names::Runner,
        ),
        "CreateEnvironmentClass" => (
            json!({"runnerId": r, "displayName": format!("class {n}"), "description": "a class", "configuration": [{"key": "cpu", "value": "2"}]}),
            Names::Runner,
        ),
        "GetEnvironmentClass" => (
            json!({"environmentClassId": f.class_id.to_string()}),
            Names::Runner,
        ),
        "UpdateEnvironmentClass" => (
            json!({"environmentClassId": f.class_id.to_string(), "enabled": false}),
            Names::Runner,
        ),
        "ValidateRunnerConfiguration" => (
            json!({"runnerId": r, "environmentClass": {"displayName": "class", "description": "a class"}}),
            Names::Runner,
        ),
        "GetAuditLog" => (
            json!({"auditLogEntryId": f.audit_id.to_string()}),
            Names::Org,
        ),
        "SignUp" => (
            json!({"publicKey": base64::engine::general_purpose::STANDARD.encode([7u8; 32])}),
            Names::Nothing,
        ),
        "ReportStatus" => (json!({"version": "test", "healthy": true}), Names::Nothing),
        "Respond" => (json!({"requestId": "nobody-waits"}), Names::Nothing),
        other => panic!("no request written for {other}"),
    }
}

/// The codes an allowed call may still end with (work that cannot be done
/// here, not a refusal).
fn allowed_codes(method: &str) -> &'static [&'static str] {
    match method {
        // The runner is not connected.
        "ParseContextURL"
        | "SearchRepositories"
        | "ListSCMOrganizations"
        | "CheckAuthenticationForHost"
        | "CheckRepositoryAccess" => &["unavailable"],
        "ConfirmDeletion" => &["failed_precondition"],
        "Respond" => &["not_found"],
        _ => &[],
    }
}

/// What the table says this call must end with: `None` for success.
fn expected(outcome: Outcome, names: Names) -> Option<&'static str> {
    match outcome {
        Outcome::Allowed | Outcome::ItselfOnly => None,
        Outcome::OwnOnly if names == Names::AdminsOwn => Some("not_found"),
        Outcome::OwnOnly => None,
        Outcome::Hidden if names == Names::Nothing => None,
        Outcome::Hidden => Some("not_found"),
        Outcome::Denied => Some("permission_denied"),
        Outcome::Unauthenticated => Some("unauthenticated"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rpc_answers_every_kind_of_caller_as_the_table_says() {
    let server = Server::start().await;
    let store = server.state.unrestricted_store().clone();
    let mut round = 0;
    let mut f = fixture(store.as_ref(), round).await;
    let mut checked = BTreeSet::new();
    let mut problems = Vec::new();
    // The least privileged first: a refusal changes nothing, so the same
    // fixture serves until a call succeeds in changing something.
    let order = [
        CallerKind::NoToken,
        CallerKind::OtherOrg,
        CallerKind::RunnerToken,
        CallerKind::ReadOnly,
        CallerKind::Member,
        CallerKind::RunnerUser,
        CallerKind::RunnerAdmin,
        CallerKind::OrgAdmin,
    ];
    for rpc in RPCS {
        let method = rpc.method();
        if matches!(
            method,
            "WatchEvents" | "WatchRequests" | "DownloadRelease" | "ServerReflectionInfo"
        ) {
            // Streams: tested on their own (reflection, which takes no token:
            // crates/cli/tests/reflection.rs and open_streams.rs).
            continue;
        }
        for kind in order {
            let outcome = policy::outcome(rpc, kind);
            let n = round * 100 + checked.len();
            let (body, names) = request(store.as_ref(), &f, kind, method, n).await;
            let client = Client {
                addr: server.addr,
                token: f.token(kind),
            };
            let result = client.call_procedure(rpc.procedure, body).await;
            let want = expected(outcome, names);
            match (&result, want) {
                (Ok(response), None) => {
                    if matches!(outcome, Outcome::Hidden | Outcome::OwnOnly) {
                        let text = response.to_string();
                        for id in f.private_ids(kind) {
                            if text.contains(&id.to_string()) {
                                problems.push(format!(
                                    "{} as {kind:?}: shows {id}, which it may not see",
                                    rpc.procedure
                                ));
                            }
                        }
                    }
                }
                (Err(failure), None) if allowed_codes(method).contains(&failure.code.as_str()) => {}
                (Err(failure), Some(code)) if failure.code == code => {}
                (got, want) => problems.push(format!(
                    "{} as {kind:?}: table says {outcome:?} → {}, got {}",
                    rpc.procedure,
                    want.unwrap_or("success"),
                    match got {
                        Ok(_) => "success".to_string(),
                        Err(failure) => format!("{} ({})", failure.code, failure.message),
                    }
                )),
            }
            checked.insert(rpc.procedure);
            let changed = result.is_ok() && !rpc.action.is_read();
            if changed {
                round += 1;
                f = fixture(store.as_ref(), round).await;
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
    let unchecked: Vec<&str> = RPCS
        .iter()
        .map(|r| r.procedure)
        .filter(|p| !checked.contains(p))
        .collect();
    assert_eq!(
        unchecked,
        [
            "gitpod.v1.EventService/WatchEvents",
            "corral.v1.RunnerInteractionService/WatchRequests",
            "corral.v1.RunnerInteractionService/DownloadRelease",
            "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ],
        "only the streams are left to their own tests"
    );
    println!(
        "{} RPCs × {} kinds of caller checked, {round} fresh fixtures",
        checked.len(),
        order.len()
    );
}
