//! No lost updates: 20 concurrent partial updates, each of one field, fired at
//! each kind of record through the API — runners, environment classes, SCM
//! integrations, host tokens, runner policies, groups and users — on SQLite
//! and on PostgreSQL. Every update answers OK, and afterwards every field
//! holds a value one of its updates wrote: none went back to the value
//! read before the others committed.

mod support;

use std::collections::{BTreeMap, BTreeSet};

use corral_server::domain::OrgRole;
use corral_testkit::PostgresDatabase;
use futures::future::join_all;
use serde_json::{Value, json};
use support::{Client, Server};

const UPDATES: usize = 20;

corral_testkit::on_both_stores!(
    runner_updates_all_land,
    environment_class_updates_all_land,
    scm_integration_updates_all_land,
    host_token_updates_all_land,
    runner_policy_updates_all_land,
    group_updates_all_land,
    user_role_updates_all_land,
);

async fn on_sqlite<F, Fut>(test: F)
where
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    test(Server::start().await).await;
}

async fn on_postgres<F, Fut>(test: F)
where
    F: FnOnce(Server) -> Fut,
    Fut: Future<Output = ()>,
{
    let database = PostgresDatabase::create().await;
    test(Server::start_on(Some(database.url())).await).await;
}

/// Fires `bodies` at `method` all at once; every call must succeed.
async fn fire(client: &Client, method: &str, bodies: Vec<Value>) {
    let calls = bodies.into_iter().map(|body| client.call(method, body));
    for (i, result) in join_all(calls).await.into_iter().enumerate() {
        if let Err(failure) = result {
            panic!("{method} #{i} failed: {failure:?}");
        }
    }
}

/// What `updates` wrote, per field: the values each field may now hold.
fn written(updates: &[(&'static str, Value)]) -> BTreeMap<&'static str, BTreeSet<String>> {
    let mut fields: BTreeMap<&'static str, BTreeSet<String>> = BTreeMap::new();
    for (field, value) in updates {
        fields.entry(field).or_default().insert(value.to_string());
    }
    fields
}

/// Asserts that each field named in `updates` holds one of the values
/// written to it, reading it from `record` by its JSON path.
fn all_landed(record: &Value, updates: &[(&'static str, Value)], path: impl Fn(&str) -> String) {
    for (field, values) in written(updates) {
        let pointer = path(field);
        // Proto3 JSON leaves out fields at their default: `false` here, as
        // no update writes an empty string or zero.
        let now = record
            .pointer(&pointer)
            .unwrap_or(&Value::Bool(false))
            .to_string();
        assert!(
            values.contains(&now),
            "{field} holds {now}, which no update wrote (written: {values:?}): an update was lost"
        );
    }
}

/// A runner of the admin's, with its id.
async fn runner(server: &Server) -> String {
    let created = server.create_runner("contended").await;
    created["runner"]["runnerId"].as_str().unwrap().to_string()
}

async fn runner_updates_all_land(server: Server) {
    let id = runner(&server).await;
    // One field per update, each away from its initial value.
    let fields: Vec<(&'static str, Value)> = (0..UPDATES)
        .map(|i| match i % 10 {
            0 => ("name", json!(format!("name {i}"))),
            1 => ("desiredPhase", json!("RUNNER_PHASE_INACTIVE")),
            2 => ("releaseChannel", json!("RUNNER_RELEASE_CHANNEL_LATEST")),
            3 => ("autoUpdate", json!(false)),
            4 => (
                "logLevel",
                json!(["LOG_LEVEL_DEBUG", "LOG_LEVEL_WARN"][i % 2]),
            ),
            5 => (
                "metricsUrl",
                json!(format!("https://metrics{i}.example.com/push")),
            ),
            6 => ("metricsUsername", json!(format!("user{i}"))),
            7 => ("updateWindowStartHour", json!(i)),
            8 => ("devcontainerImageCacheEnabled", json!(true)),
            _ => ("continuousProfiling", json!(true)),
        })
        .collect();
    let bodies = fields
        .iter()
        .map(|(field, value)| {
            let configuration = match *field {
                "name" | "desiredPhase" => json!({}),
                "metricsUrl" => json!({"metrics": {"url": value}}),
                "metricsUsername" => json!({"metrics": {"username": value}}),
                "updateWindowStartHour" => json!({"updateWindow": {"startHour": value}}),
                other => json!({ other: value }),
            };
            match *field {
                "name" => json!({"runnerId": id, "name": value}),
                "desiredPhase" => json!({"runnerId": id, "spec": {"desiredPhase": value}}),
                _ => json!({"runnerId": id, "spec": {"configuration": configuration}}),
            }
        })
        .collect();
    fire(&server.admin, "RunnerService/UpdateRunner", bodies).await;
    let got = server
        .admin
        .ok("RunnerService/GetRunner", json!({"runnerId": id}))
        .await;
    all_landed(&got["runner"], &fields, |field| match field {
        "name" => "/name".into(),
        "desiredPhase" => "/spec/desiredPhase".into(),
        "metricsUrl" => "/spec/configuration/metrics/url".into(),
        "metricsUsername" => "/spec/configuration/metrics/username".into(),
        "updateWindowStartHour" => "/spec/configuration/updateWindow/startHour".into(),
        other => format!("/spec/configuration/{other}"),
    });
}

async fn environment_class_updates_all_land(server: Server) {
    let runner_id = runner(&server).await;
    let created = server
        .admin
        .ok(
            "RunnerConfigurationService/CreateEnvironmentClass",
            json!({"runnerId": runner_id, "displayName": "initial", "description": "initial",
                   "configuration": [{"key": "cpu", "value": "2"}]}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let fields: Vec<(&'static str, Value)> = (0..UPDATES)
        .map(|i| match i % 3 {
            0 => ("displayName", json!(format!("class {i}"))),
            1 => ("description", json!(format!("description {i}"))),
            _ => ("enabled", json!(false)),
        })
        .collect();
    let bodies = fields
        .iter()
        .map(|(field, value)| json!({"environmentClassId": id, *field: value}))
        .collect();
    fire(
        &server.admin,
        "RunnerConfigurationService/UpdateEnvironmentClass",
        bodies,
    )
    .await;
    let got = server
        .admin
        .ok(
            "RunnerConfigurationService/GetEnvironmentClass",
            json!({"environmentClassId": id}),
        )
        .await;
    all_landed(&got["environmentClass"], &fields, |field| {
        format!("/{field}")
    });
}

async fn scm_integration_updates_all_land(server: Server) {
    let runner_id = runner(&server).await;
    let created = server
        .admin
        .ok(
            "RunnerConfigurationService/CreateSCMIntegration",
            json!({"runnerId": runner_id, "scmId": "github", "host": "github.example.com",
                   "pat": true, "oauthClientId": "initial"}),
        )
        .await;
    let id = created["id"].as_str().unwrap().to_string();
    let fields: Vec<(&'static str, Value)> = (0..UPDATES)
        .map(|i| match i % 3 {
            0 => ("oauthClientId", json!(format!("client-{i}"))),
            1 => ("issuerUrl", json!(format!("https://issuer{i}.example.com"))),
            _ => ("pat", json!(false)),
        })
        .collect();
    let bodies = fields
        .iter()
        .map(|(field, value)| json!({"id": id, *field: value}))
        .collect();
    fire(
        &server.admin,
        "RunnerConfigurationService/UpdateSCMIntegration",
        bodies,
    )
    .await;
    let got = server
        .admin
        .ok(
            "RunnerConfigurationService/GetSCMIntegration",
            json!({"id": id}),
        )
        .await;
    let integration = &got["integration"];
    all_landed(integration, &fields, |field| match field {
        "oauthClientId" => "/oauth/clientId".into(),
        "issuerUrl" => "/oauth/issuerUrl".into(),
        other => format!("/{other}"),
    });
}

async fn host_token_updates_all_land(server: Server) {
    let runner_id = runner(&server).await;
    let created = server
        .admin
        .ok(
            "RunnerConfigurationService/CreateHostAuthenticationToken",
            json!({"runnerId": runner_id, "host": "github.example.com", "token": "initial",
                   "source": "HOST_AUTHENTICATION_TOKEN_SOURCE_PAT"}),
        )
        .await;
    let id = created["token"]["id"].as_str().unwrap().to_string();
    let fields: Vec<(&'static str, Value)> = (0..UPDATES)
        .map(|i| match i % 3 {
            0 => ("token", json!(format!("ghp_token{i}"))),
            1 => (
                "expiresAt",
                json!(format!("2030-01-{:02}T00:00:00Z", i + 1)),
            ),
            _ => ("scopes", json!([format!("scope-{i}")])),
        })
        .collect();
    let bodies = fields
        .iter()
        .map(|(field, value)| json!({"id": id, *field: value}))
        .collect();
    fire(
        &server.admin,
        "RunnerConfigurationService/UpdateHostAuthenticationToken",
        bodies,
    )
    .await;
    let got = server
        .admin
        .ok(
            "RunnerConfigurationService/GetHostAuthenticationToken",
            json!({"id": id}),
        )
        .await;
    let visible: Vec<(&'static str, Value)> = fields
        .iter()
        .filter(|(field, _)| *field != "token")
        .cloned()
        .collect();
    all_landed(&got["token"], &visible, |field| format!("/{field}"));
    // The secret itself is never returned: read it as the store keeps it.
    let token_id = id.parse().unwrap();
    let stored = server
        .state
        .unrestricted_store()
        .get_host_token(token_id)
        .await
        .unwrap();
    let secret = String::from_utf8(
        server
            .state
            .data_key
            .decrypt(&stored.token_encrypted)
            .unwrap(),
    )
    .unwrap();
    let tokens: Vec<(&'static str, Value)> = fields
        .iter()
        .filter(|(field, _)| *field == "token")
        .cloned()
        .collect();
    all_landed(&json!({ "token": secret }), &tokens, |_| "/token".into());
}

async fn runner_policy_updates_all_land(server: Server) {
    let runner_id = runner(&server).await;
    let mut groups = Vec::new();
    for i in 0..UPDATES {
        let group = server
            .admin
            .ok(
                "GroupService/CreateGroup",
                json!({"organizationId": server.org_id, "name": format!("group {i}")}),
            )
            .await;
        let group_id = group["group"]["id"].as_str().unwrap().to_string();
        server
            .admin
            .ok(
                "RunnerService/CreateRunnerPolicy",
                json!({"runnerId": runner_id, "groupId": group_id, "role": "RUNNER_ROLE_USER"}),
            )
            .await;
        groups.push(group_id);
    }
    let bodies = groups
        .iter()
        .map(|group_id| {
            json!({"runnerId": runner_id, "groupId": group_id, "role": "RUNNER_ROLE_ADMIN"})
        })
        .collect();
    fire(&server.admin, "RunnerService/UpdateRunnerPolicy", bodies).await;
    let got = server
        .admin
        .ok(
            "RunnerService/ListRunnerPolicies",
            json!({"runnerId": runner_id, "pagination": {"pageSize": 100}}),
        )
        .await;
    let roles: BTreeMap<String, String> = got["policies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["groupId"].as_str().unwrap().to_string(),
                p["role"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    for group_id in &groups {
        assert_eq!(roles[group_id], "RUNNER_ROLE_ADMIN", "group {group_id}");
    }
}

async fn group_updates_all_land(server: Server) {
    let group = server
        .admin
        .ok(
            "GroupService/CreateGroup",
            json!({"organizationId": server.org_id, "name": "contended"}),
        )
        .await;
    let group_id = group["group"]["id"].as_str().unwrap().to_string();
    // Twenty new members at once: every membership stays.
    let mut users = Vec::new();
    for i in 0..UPDATES {
        let (id, _) = server
            .user(&format!("member{i}@example.com"), OrgRole::Member)
            .await;
        users.push(id);
    }
    let bodies = users
        .iter()
        .map(
            |id| json!({"groupId": group_id, "subject": {"id": id, "principal": "PRINCIPAL_USER"}}),
        )
        .collect();
    fire(&server.admin, "GroupService/CreateMembership", bodies).await;
    let members = server
        .admin
        .ok(
            "GroupService/ListMemberships",
            json!({"groupId": group_id, "pagination": {"pageSize": 100}}),
        )
        .await;
    let listed: BTreeSet<String> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["subject"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, users.iter().cloned().collect::<BTreeSet<_>>());
    // Twenty renames at once: a name and its description always stay together.
    let bodies = (0..UPDATES)
        .map(|i| {
            json!({"groupId": group_id, "name": format!("name {i}"),
                   "description": format!("description {i}")})
        })
        .collect();
    fire(&server.admin, "GroupService/UpdateGroup", bodies).await;
    let got = server
        .admin
        .ok("GroupService/GetGroup", json!({"id": group_id}))
        .await;
    let name = got["group"]["name"].as_str().unwrap();
    let number = name.strip_prefix("name ").unwrap();
    assert_eq!(
        got["group"]["description"].as_str().unwrap(),
        format!("description {number}")
    );
}

async fn user_role_updates_all_land(server: Server) {
    let mut users = Vec::new();
    for i in 0..UPDATES {
        let (id, _) = server
            .user(&format!("promoted{i}@example.com"), OrgRole::Member)
            .await;
        users.push(id);
    }
    let bodies = users
        .iter()
        .map(|id| {
            json!({"organizationId": server.org_id, "userId": id,
                   "role": "ORGANIZATION_ROLE_ADMIN"})
        })
        .collect();
    fire(&server.admin, "OrganizationService/SetRole", bodies).await;
    let members = server
        .admin
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": server.org_id, "pagination": {"pageSize": 100}}),
        )
        .await;
    let admins: BTreeSet<String> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "ORGANIZATION_ROLE_ADMIN")
        .map(|m| m["userId"].as_str().unwrap().to_string())
        .collect();
    for id in &users {
        assert!(admins.contains(id), "user {id} did not become an admin");
    }
}
