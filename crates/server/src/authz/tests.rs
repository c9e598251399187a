//! The policy table against the served API, the published contract and the
//! operator docs; and [`decide`] case by case.

use std::collections::{BTreeMap, BTreeSet};

use buffa::Message;
use buffa_descriptor::generated::descriptor::FileDescriptorSet;
use buffa_descriptor::generated::descriptor::method_options::IdempotencyLevel;
use uuid::Uuid;

use super::policy::{self, Action, RPCS, Resource, Who};
use super::{Denial, Target, decide};
use crate::auth::{Caller, RunnerCaller, UserCaller};
use crate::domain::*;

/// Every method of our services in the compiled descriptor set, with
/// whether it is marked NO_SIDE_EFFECTS.
fn described_methods() -> BTreeMap<String, bool> {
    let set = FileDescriptorSet::decode_from_slice(corral_api::DESCRIPTOR_SET).unwrap();
    let mut methods = BTreeMap::new();
    for file in &set.file {
        let package = file.package.clone().unwrap_or_default();
        if package != "gitpod.v1" && package != "corral.v1" {
            continue;
        }
        for service in &file.service {
            for method in &service.method {
                let procedure = format!(
                    "{package}.{}/{}",
                    service.name.clone().unwrap_or_default(),
                    method.name.clone().unwrap_or_default()
                );
                let no_side_effects = method.options.as_option().and_then(|o| o.idempotency_level)
                    == Some(IdempotencyLevel::NO_SIDE_EFFECTS);
                methods.insert(procedure, no_side_effects);
            }
        }
    }
    methods
}

/// The methods the server's router serves.
async fn served_methods() -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let config = crate::ServeConfig::new("127.0.0.1:0".parse().unwrap(), dir.path().into());
    let state = crate::build_state(&config).await.unwrap();
    crate::services::router(state)
        .methods()
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn every_served_method_has_exactly_one_policy_row() {
    let rows: Vec<&str> = RPCS.iter().map(|r| r.procedure).collect();
    let unique: BTreeSet<&str> = rows.iter().copied().collect();
    assert_eq!(rows.len(), unique.len(), "an RPC has two rows");
    let served = served_methods().await;
    let mut described: BTreeSet<String> = described_methods().into_keys().collect();
    // Server reflection is served beside the schema, not described in it.
    for service in crate::reflection::SERVICES {
        described.insert(format!("{service}/{}", crate::reflection::METHOD));
    }
    assert_eq!(
        served, described,
        "the router serves what the schema describes, and reflection"
    );
    let without_row: Vec<&String> = served
        .iter()
        .filter(|m| !unique.contains(m.as_str()))
        .collect();
    assert!(
        without_row.is_empty(),
        "served without a policy row: {without_row:?}"
    );
    let not_served: Vec<&&str> = unique.iter().filter(|r| !served.contains(**r)).collect();
    assert!(
        not_served.is_empty(),
        "rows for methods nobody serves: {not_served:?}"
    );
}

#[test]
fn every_rpc_has_a_permission_and_every_permission_is_one_of_a_kind() {
    for rpc in RPCS {
        assert!(
            rpc.permission().is_some(),
            "{} stands for {:?} {:?}, which has no permission",
            rpc.procedure,
            rpc.resource,
            rpc.action
        );
    }
    let pairs: BTreeSet<String> = policy::PERMISSIONS
        .iter()
        .map(|p| format!("{:?}/{:?}", p.resource, p.action))
        .collect();
    assert_eq!(
        pairs.len(),
        policy::PERMISSIONS.len(),
        "a permission is listed twice"
    );
}

#[test]
fn read_only_tokens_may_call_exactly_the_rpcs_marked_no_side_effects() {
    let described = described_methods();
    for rpc in RPCS
        .iter()
        .filter(|r| r.procedure.starts_with("gitpod.v1."))
    {
        let no_side_effects = described[rpc.procedure];
        assert_eq!(
            rpc.action.is_read(),
            no_side_effects,
            "{}: the table says {:?}, the contract says NO_SIDE_EFFECTS={no_side_effects}",
            rpc.procedure,
            rpc.action
        );
    }
}

#[test]
fn runner_tokens_reach_only_their_identity_their_runner_and_their_organization() {
    let reachable: BTreeSet<&str> = RPCS
        .iter()
        .filter(|r| r.procedure.starts_with("gitpod.v1."))
        .filter(|r| {
            r.permission()
                .is_some_and(|p| p.runner_tokens != policy::RunnerTokens::Refused)
        })
        .map(|r| r.method())
        .collect();
    assert_eq!(
        reachable,
        BTreeSet::from([
            "GetAuthenticatedIdentity",
            "GetRunner",
            "ListRunners",
            "GetOrganization"
        ])
    );
    // And the runner protocol takes runner tokens only.
    for rpc in RPCS
        .iter()
        .filter(|r| r.procedure.starts_with("corral.v1."))
    {
        assert_eq!(
            rpc.permission().unwrap().who,
            Who::TheRunner,
            "{}",
            rpc.procedure
        );
    }
}

#[test]
fn state_changing_rpcs_are_audited() {
    for rpc in RPCS
        .iter()
        .filter(|r| r.procedure.starts_with("gitpod.v1."))
    {
        let changes = matches!(rpc.action, Action::Create | Action::Update | Action::Delete);
        if changes {
            assert!(
                rpc.audit.is_some(),
                "{} changes state but is not audited",
                rpc.procedure
            );
        }
    }
}

#[test]
fn the_operator_docs_show_the_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/authorization.md");
    let docs = std::fs::read_to_string(path).unwrap();
    let begin = "<!-- policy table: generated from crates/server/src/authz/policy.rs -->\n";
    let end = "<!-- end of policy table -->";
    let start = docs
        .find(begin)
        .expect("docs/authorization.md marks the table")
        + begin.len();
    let stop = docs[start..].find(end).expect("the table's end is marked") + start;
    let expected = policy::markdown();
    if docs[start..stop].trim() != expected.trim() {
        panic!("docs/authorization.md is out of date; put this between the markers:\n\n{expected}");
    }
}

#[test]
fn services_reach_the_store_only_through_access() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/services");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for forbidden in ["unrestricted_store", "dyn Store"] {
            assert!(
                !text.contains(forbidden),
                "{} uses `{forbidden}`: services reach the store through authz::Access",
                path.display()
            );
        }
    }
}

// decide, case by case.

fn user(org: Uuid, role: OrgRole, read_only: bool) -> Caller {
    let id = new_id();
    Caller::User(UserCaller {
        user: User {
            id,
            org_id: org,
            name: "u".into(),
            email: "u@x".into(),
            status: UserStatus::Active,
            created_at: chrono::Utc::now(),
        },
        org_id: org,
        role,
        group_ids: Vec::new(),
        token_id: new_id(),
        read_only,
    })
}

fn permission(resource: Resource, action: Action) -> &'static policy::Permission {
    policy::permission(resource, action).unwrap()
}

fn forbidden(result: Result<(), Denial>) -> bool {
    matches!(result, Err(Denial::Forbidden(_)))
}

#[test]
fn read_only_tokens_read_but_change_nothing() {
    let org = new_id();
    let admin = user(org, OrgRole::Admin, true);
    let runner = Target::Runner {
        org_id: org,
        runner_id: new_id(),
        role: Some(RunnerRole::Admin),
    };
    assert!(
        decide(
            Some(&admin),
            permission(Resource::Runner, Action::Read),
            runner
        )
        .is_ok()
    );
    for action in [Action::Update, Action::Delete, Action::Use] {
        assert!(forbidden(decide(
            Some(&admin),
            permission(Resource::Runner, action),
            runner
        )));
    }
    assert!(forbidden(decide(
        Some(&admin),
        permission(Resource::Group, Action::Create),
        Target::Unknown
    )));
}

#[test]
fn runner_tokens_see_themselves_and_their_organization_only() {
    let org = new_id();
    let me = new_id();
    let runner = Caller::Runner(RunnerCaller {
        runner_id: me,
        org_id: org,
        token_id: new_id(),
    });
    let target = |runner_id| Target::Runner {
        org_id: org,
        runner_id,
        role: None,
    };
    let read = permission(Resource::Runner, Action::Read);
    assert!(decide(Some(&runner), read, target(me)).is_ok());
    assert_eq!(
        decide(Some(&runner), read, target(new_id())),
        Err(Denial::Hidden)
    );
    let org_read = permission(Resource::Organization, Action::Read);
    assert!(decide(Some(&runner), org_read, Target::Org(org)).is_ok());
    assert_eq!(
        decide(Some(&runner), org_read, Target::Org(new_id())),
        Err(Denial::Hidden)
    );
    for (resource, action) in [
        (Resource::User, Action::Read),
        (Resource::RunnerPolicy, Action::Read),
        (Resource::ScmIntegration, Action::Read),
        (Resource::Runner, Action::Update),
    ] {
        assert!(forbidden(decide(
            Some(&runner),
            permission(resource, action),
            target(me)
        )));
    }
}

#[test]
fn roles_on_runners_decide_and_no_role_hides() {
    let org = new_id();
    let member = user(org, OrgRole::Member, false);
    let with_role = |role| Target::Runner {
        org_id: org,
        runner_id: new_id(),
        role,
    };
    let update = permission(Resource::Runner, Action::Update);
    let read = permission(Resource::Runner, Action::Read);
    assert_eq!(
        decide(Some(&member), read, with_role(None)),
        Err(Denial::Hidden)
    );
    assert!(decide(Some(&member), read, with_role(Some(RunnerRole::User))).is_ok());
    assert!(forbidden(decide(
        Some(&member),
        update,
        with_role(Some(RunnerRole::User))
    )));
    assert!(decide(Some(&member), update, with_role(Some(RunnerRole::Admin))).is_ok());
    // Another organization's runner does not exist, whatever the role.
    let foreign = Target::Runner {
        org_id: new_id(),
        runner_id: new_id(),
        role: Some(RunnerRole::Admin),
    };
    assert_eq!(decide(Some(&member), read, foreign), Err(Denial::Hidden));
    assert_eq!(
        decide(None, read, with_role(None)),
        Err(Denial::Unauthenticated)
    );
}

#[test]
fn personal_things_belong_to_their_owner_and_the_admins() {
    let org = new_id();
    let member = user(org, OrgRole::Member, false);
    let admin = user(org, OrgRole::Admin, false);
    let Caller::User(me) = &member else {
        unreachable!()
    };
    let mine = Target::Owned {
        org_id: org,
        owner: me.user.id,
    };
    let theirs = Target::Owned {
        org_id: org,
        owner: new_id(),
    };
    let read = permission(Resource::HostToken, Action::Read);
    let create = permission(Resource::PersonalAccessToken, Action::Create);
    assert!(decide(Some(&member), read, mine).is_ok());
    assert_eq!(decide(Some(&member), read, theirs), Err(Denial::Hidden));
    assert!(forbidden(decide(Some(&member), create, theirs)));
    assert!(decide(Some(&admin), read, theirs).is_ok());
    assert!(decide(Some(&admin), create, theirs).is_ok());
}

#[test]
fn the_runner_protocol_takes_runner_tokens_only() {
    let org = new_id();
    let admin = user(org, OrgRole::Admin, false);
    let report = permission(Resource::RunnerSelf, Action::Update);
    assert!(forbidden(decide(Some(&admin), report, Target::Unknown)));
}
