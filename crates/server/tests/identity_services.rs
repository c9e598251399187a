//! UserService, GroupService and OrganizationService end to end: a server on a
//! random local port, driven with Connect's JSON encoding over plain HTTP/1.1.

mod support;

use corral_server::domain::OrgRole;
use serde_json::{Value, json};
use support::Server;

fn user_subject(id: &str) -> Value {
    json!({"id": id, "principal": "PRINCIPAL_USER"})
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list[field]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn seconds(timestamp: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(timestamp.as_str().unwrap())
        .unwrap()
        .timestamp()
}

#[tokio::test]
async fn personal_access_token_lifecycle() {
    let server = Server::start().await;
    let admin = &server.admin;
    let (member_id, member) = server.user("dev@example.com", OrgRole::Member).await;

    let me = member
        .ok("UserService/GetAuthenticatedUser", json!({}))
        .await;
    assert_eq!(me["user"]["id"], member_id.as_str());
    assert_eq!(me["user"]["organizationId"], server.org_id.as_str());
    assert_eq!(me["user"]["email"], "dev@example.com");

    // A read-only token valid for a day, created by the member for themself.
    let created = member
        .ok(
            "UserService/CreatePersonalAccessToken",
            json!({"userId": member_id, "description": "ci", "validFor": "86400s", "readOnly": true}),
        )
        .await;
    let token = created["token"].as_str().unwrap();
    assert!(token.starts_with("crl_pat_"));
    let via_pat = server.client(token);
    let me = via_pat
        .ok("UserService/GetAuthenticatedUser", json!({}))
        .await;
    assert_eq!(me["user"]["id"], member_id.as_str());

    // Listed with the member's own tokens (the default), without the secret.
    let listed = member
        .ok("UserService/ListPersonalAccessTokens", json!({}))
        .await;
    let pats = listed["personalAccessTokens"].as_array().unwrap();
    let pat = pats
        .iter()
        .find(|p| p["description"] == "ci")
        .expect("the new token is listed");
    assert!(!listed.to_string().contains(token));
    assert_eq!(pat["userId"], member_id.as_str());
    assert_eq!(pat["readOnly"], true);
    assert_eq!(pat["creator"]["id"], member_id.as_str());
    let lifetime = seconds(&pat["expiresAt"]) - seconds(&pat["createdAt"]);
    assert!((86_395..=86_405).contains(&lifetime), "{lifetime}");
    let pat_id = pat["id"].as_str().unwrap().to_string();
    let got = member
        .ok(
            "UserService/GetPersonalAccessToken",
            json!({"personalAccessTokenId": pat_id}),
        )
        .await;
    assert_eq!(got["pat"]["description"], "ci");

    // No validity means 30 days; more than 90 days is refused.
    member
        .ok(
            "UserService/CreatePersonalAccessToken",
            json!({"userId": member_id, "description": "default"}),
        )
        .await;
    let listed = member
        .ok("UserService/ListPersonalAccessTokens", json!({}))
        .await;
    let default = listed["personalAccessTokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["description"] == "default")
        .unwrap()
        .clone();
    let lifetime = seconds(&default["expiresAt"]) - seconds(&default["createdAt"]);
    assert!(
        (30 * 86_400 - 5..=30 * 86_400 + 5).contains(&lifetime),
        "{lifetime}"
    );
    member
        .fails(
            "invalid_argument",
            "UserService/CreatePersonalAccessToken",
            json!({"userId": member_id, "validFor": "7776001s"}),
        )
        .await;

    // Paging goes through the store: one token per page.
    let first = member
        .ok(
            "UserService/ListPersonalAccessTokens",
            json!({"pagination": {"pageSize": 1}}),
        )
        .await;
    assert_eq!(first["personalAccessTokens"].as_array().unwrap().len(), 1);
    let next = first["pagination"]["nextToken"].as_str().unwrap();
    let second = member
        .ok(
            "UserService/ListPersonalAccessTokens",
            json!({"pagination": {"pageSize": 1, "token": next}}),
        )
        .await;
    assert_eq!(second["personalAccessTokens"].as_array().unwrap().len(), 1);
    assert_ne!(
        ids(&first, "personalAccessTokens"),
        ids(&second, "personalAccessTokens")
    );

    // The admin's tokens do not exist for the member; the member's do for the admin.
    let admin_me = admin
        .ok("UserService/GetAuthenticatedUser", json!({}))
        .await;
    let admin_id = admin_me["user"]["id"].as_str().unwrap().to_string();
    let admin_pats = admin
        .ok("UserService/ListPersonalAccessTokens", json!({}))
        .await;
    let admin_pat = ids(&admin_pats, "personalAccessTokens")[0].clone();
    member
        .fails(
            "not_found",
            "UserService/GetPersonalAccessToken",
            json!({"personalAccessTokenId": admin_pat}),
        )
        .await;
    member
        .fails(
            "not_found",
            "UserService/DeletePersonalAccessToken",
            json!({"personalAccessTokenId": admin_pat}),
        )
        .await;
    member
        .fails(
            "permission_denied",
            "UserService/CreatePersonalAccessToken",
            json!({"userId": admin_id}),
        )
        .await;
    let others = member
        .ok(
            "UserService/ListPersonalAccessTokens",
            json!({"filter": {"userIds": [admin_id]}}),
        )
        .await;
    assert!(ids(&others, "personalAccessTokens").is_empty());
    let members_pats = admin
        .ok(
            "UserService/ListPersonalAccessTokens",
            json!({"filter": {"userIds": [member_id]}}),
        )
        .await;
    assert!(ids(&members_pats, "personalAccessTokens").contains(&pat_id));
    admin
        .ok(
            "UserService/GetPersonalAccessToken",
            json!({"personalAccessTokenId": pat_id}),
        )
        .await;

    // An admin may issue a token for a user of their organization.
    let for_member = admin
        .ok(
            "UserService/CreatePersonalAccessToken",
            json!({"userId": member_id, "description": "by admin"}),
        )
        .await;
    let me = server
        .client(for_member["token"].as_str().unwrap())
        .ok("UserService/GetAuthenticatedUser", json!({}))
        .await;
    assert_eq!(me["user"]["id"], member_id.as_str());

    // Deleting a token: gone, and it no longer authenticates.
    member
        .ok(
            "UserService/DeletePersonalAccessToken",
            json!({"personalAccessTokenId": pat_id}),
        )
        .await;
    member
        .fails(
            "not_found",
            "UserService/GetPersonalAccessToken",
            json!({"personalAccessTokenId": pat_id}),
        )
        .await;
    via_pat
        .fails(
            "unauthenticated",
            "UserService/GetAuthenticatedUser",
            json!({}),
        )
        .await;

    // Users: those of the organization, nobody else.
    let got = member
        .ok("UserService/GetUser", json!({"userId": admin_id}))
        .await;
    assert_eq!(got["user"]["id"], admin_id.as_str());
    member
        .fails(
            "not_found",
            "UserService/GetUser",
            json!({"userId": uuid::Uuid::now_v7().to_string()}),
        )
        .await;
}

#[tokio::test]
async fn groups_and_memberships() {
    let server = Server::start().await;
    let admin = &server.admin;
    let (member_id, member) = server.user("dev@example.com", OrgRole::Member).await;

    // Members may not manage groups.
    member
        .fails(
            "permission_denied",
            "GroupService/CreateGroup",
            json!({"organizationId": server.org_id, "name": "mine"}),
        )
        .await;

    let group = admin
        .ok(
            "GroupService/CreateGroup",
            json!({"organizationId": server.org_id, "name": "Platform", "description": "infra"}),
        )
        .await["group"]
        .clone();
    let group_id = group["id"].as_str().unwrap().to_string();
    assert_eq!(group["name"], "Platform");
    assert_eq!(group["organizationId"], server.org_id.as_str());
    assert!(group.get("systemManaged").is_none_or(|v| v == false));
    admin
        .fails(
            "already_exists",
            "GroupService/CreateGroup",
            json!({"organizationId": server.org_id, "name": "Platform"}),
        )
        .await;

    // Reading: by id, by name, by the deprecated field, and listing with filters.
    let by_id = member
        .ok("GroupService/GetGroup", json!({"id": group_id}))
        .await;
    assert_eq!(by_id["group"]["name"], "Platform");
    let by_name = member
        .ok("GroupService/GetGroup", json!({"name": "Platform"}))
        .await;
    assert_eq!(by_name["group"]["id"], group_id.as_str());
    let legacy = member
        .ok("GroupService/GetGroup", json!({"groupId": group_id}))
        .await;
    assert_eq!(legacy["group"]["id"], group_id.as_str());
    let all = member.ok("GroupService/ListGroups", json!({})).await;
    assert_eq!(all["groups"].as_array().unwrap().len(), 3);
    let system = member
        .ok(
            "GroupService/ListGroups",
            json!({"filter": {"systemManaged": true}}),
        )
        .await;
    let mut names: Vec<_> = system["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].clone())
        .collect();
    names.sort_by_key(|n| n.to_string());
    assert_eq!(names, [json!("admins"), json!("members")]);
    let custom = member
        .ok(
            "GroupService/ListGroups",
            json!({"filter": {"systemManaged": false}}),
        )
        .await;
    assert_eq!(ids(&custom, "groups"), [group_id.as_str()]);
    let search = member
        .ok(
            "GroupService/ListGroups",
            json!({"filter": {"search": "platf"}}),
        )
        .await;
    assert_eq!(ids(&search, "groups"), [group_id.as_str()]);
    let by_ids = member
        .ok(
            "GroupService/ListGroups",
            json!({"filter": {"groupIds": [group_id]}}),
        )
        .await;
    assert_eq!(ids(&by_ids, "groups"), [group_id.as_str()]);
    let paged = member
        .ok(
            "GroupService/ListGroups",
            json!({"pagination": {"pageSize": 2}}),
        )
        .await;
    assert_eq!(paged["groups"].as_array().unwrap().len(), 2);
    let rest = member
        .ok(
            "GroupService/ListGroups",
            json!({"pagination": {"pageSize": 2, "token": paged["pagination"]["nextToken"]}}),
        )
        .await;
    assert_eq!(rest["groups"].as_array().unwrap().len(), 1);

    // Updating; the system groups keep their names and cannot be deleted.
    let updated = admin
        .ok(
            "GroupService/UpdateGroup",
            json!({"groupId": group_id, "name": "Platform Team", "description": ""}),
        )
        .await;
    assert_eq!(updated["group"]["name"], "Platform Team");
    assert!(updated["group"].get("description").is_none_or(|d| d == ""));
    member
        .fails(
            "permission_denied",
            "GroupService/UpdateGroup",
            json!({"groupId": group_id, "name": "Mine now"}),
        )
        .await;
    let admins = admin
        .ok("GroupService/GetGroup", json!({"name": "admins"}))
        .await["group"]
        .clone();
    let admins_id = admins["id"].as_str().unwrap().to_string();
    assert_eq!(admins["systemManaged"], true);
    assert_eq!(admins["memberCount"], 1);
    admin
        .fails(
            "failed_precondition",
            "GroupService/UpdateGroup",
            json!({"groupId": admins_id, "name": "bosses"}),
        )
        .await;
    admin
        .fails(
            "failed_precondition",
            "GroupService/DeleteGroup",
            json!({"groupId": admins_id}),
        )
        .await;

    // Memberships.
    member
        .fails(
            "permission_denied",
            "GroupService/CreateMembership",
            json!({"groupId": group_id, "subject": user_subject(&member_id)}),
        )
        .await;
    let created = admin
        .ok(
            "GroupService/CreateMembership",
            json!({"groupId": group_id, "subject": user_subject(&member_id)}),
        )
        .await["member"]
        .clone();
    let membership_id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["groupId"], group_id.as_str());
    assert_eq!(created["subject"]["id"], member_id.as_str());
    assert_eq!(created["subject"]["principal"], "PRINCIPAL_USER");
    admin
        .fails(
            "already_exists",
            "GroupService/CreateMembership",
            json!({"groupId": group_id, "subject": user_subject(&member_id)}),
        )
        .await;
    admin
        .fails(
            "not_found",
            "GroupService/CreateMembership",
            json!({"groupId": group_id, "subject": user_subject(&uuid::Uuid::now_v7().to_string())}),
        )
        .await;
    let message = admin
        .fails(
            "failed_precondition",
            "GroupService/CreateMembership",
            json!({"groupId": admins_id, "subject": user_subject(&member_id)}),
        )
        .await;
    assert!(message.contains("SetRole"), "{message}");
    let got = member
        .ok(
            "GroupService/GetMembership",
            json!({"groupId": group_id, "subject": user_subject(&member_id)}),
        )
        .await;
    assert_eq!(got["member"]["id"], membership_id.as_str());
    let listed = member
        .ok("GroupService/ListMemberships", json!({"groupId": group_id}))
        .await;
    assert_eq!(ids(&listed, "members"), [membership_id.as_str()]);
    let searched = member
        .ok(
            "GroupService/ListMemberships",
            json!({"groupId": group_id, "filter": {"search": "nobody"}}),
        )
        .await;
    assert!(ids(&searched, "members").is_empty());
    let counted = member
        .ok("GroupService/GetGroup", json!({"id": group_id}))
        .await;
    assert_eq!(counted["group"]["memberCount"], 1);
    admin
        .fails(
            "not_found",
            "GroupService/GetMembership",
            json!({"groupId": admins_id, "subject": user_subject(&member_id)}),
        )
        .await;

    // The admins group's memberships change only through SetRole.
    let admin_in_admins = admin
        .ok(
            "GroupService/ListMemberships",
            json!({"groupId": admins_id}),
        )
        .await["members"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    admin
        .fails(
            "failed_precondition",
            "GroupService/DeleteMembership",
            json!({"membershipId": admin_in_admins}),
        )
        .await;

    member
        .fails(
            "permission_denied",
            "GroupService/DeleteMembership",
            json!({"membershipId": membership_id}),
        )
        .await;
    admin
        .ok(
            "GroupService/DeleteMembership",
            json!({"membershipId": membership_id}),
        )
        .await;
    admin
        .fails(
            "not_found",
            "GroupService/GetMembership",
            json!({"groupId": group_id, "subject": user_subject(&member_id)}),
        )
        .await;
    admin
        .fails(
            "not_found",
            "GroupService/DeleteMembership",
            json!({"membershipId": membership_id}),
        )
        .await;

    member
        .fails(
            "permission_denied",
            "GroupService/DeleteGroup",
            json!({"groupId": group_id}),
        )
        .await;
    admin
        .ok("GroupService/DeleteGroup", json!({"groupId": group_id}))
        .await;
    admin
        .fails(
            "not_found",
            "GroupService/GetGroup",
            json!({"id": group_id}),
        )
        .await;
    admin
        .fails(
            "not_found",
            "GroupService/ListMemberships",
            json!({"groupId": group_id}),
        )
        .await;
}

#[tokio::test]
async fn set_role_promotes_and_demotes() {
    let server = Server::start().await;
    let admin = &server.admin;
    let (member_id, member) = server.user("dev@example.com", OrgRole::Member).await;
    let (_, third) = server.user("ops@example.com", OrgRole::Member).await;
    let admin_id = admin
        .ok("UserService/GetAuthenticatedUser", json!({}))
        .await["user"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let org = json!(server.org_id);
    let role_of = |members: &Value, id: &str| {
        members["members"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["userId"] == id)
            .map(|m| m["role"].clone())
            .unwrap()
    };

    let got = member
        .ok(
            "OrganizationService/GetOrganization",
            json!({"organizationId": org}),
        )
        .await;
    assert_eq!(got["organization"]["id"], org);
    assert_eq!(got["organization"]["name"], "Default Organization");
    let members = member
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": org}),
        )
        .await;
    assert_eq!(members["members"].as_array().unwrap().len(), 3);
    assert_eq!(role_of(&members, &admin_id), "ORGANIZATION_ROLE_ADMIN");
    assert_eq!(role_of(&members, &member_id), "ORGANIZATION_ROLE_MEMBER");
    let page = member
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": org, "pagination": {"pageSize": 2}}),
        )
        .await;
    assert_eq!(page["members"].as_array().unwrap().len(), 2);
    let rest = member
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": org, "pagination": {"pageSize": 2, "token": page["pagination"]["nextToken"]}}),
        )
        .await;
    assert_eq!(rest["members"].as_array().unwrap().len(), 1);
    assert!(rest["pagination"].get("nextToken").is_none_or(|t| t == ""));
    let admins_only = member
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": org, "filter": {"roles": ["ORGANIZATION_ROLE_ADMIN"]}}),
        )
        .await;
    assert_eq!(admins_only["members"].as_array().unwrap().len(), 1);

    // Only admins set roles; the role must be ADMIN or MEMBER.
    member
        .fails(
            "permission_denied",
            "OrganizationService/SetRole",
            json!({"organizationId": org, "userId": member_id, "role": "ORGANIZATION_ROLE_ADMIN"}),
        )
        .await;
    let message = admin
        .fails(
            "invalid_argument",
            "OrganizationService/SetRole",
            json!({"organizationId": org, "userId": member_id}),
        )
        .await;
    assert!(message.contains("role"), "{message}");
    admin
        .fails(
            "not_found",
            "OrganizationService/SetRole",
            json!({"organizationId": org, "userId": uuid::Uuid::now_v7().to_string(), "role": "ORGANIZATION_ROLE_ADMIN"}),
        )
        .await;

    // Promoted: an admin now, in the admins group, and able to manage groups.
    admin
        .ok(
            "OrganizationService/SetRole",
            json!({"organizationId": org, "userId": member_id, "role": "ORGANIZATION_ROLE_ADMIN"}),
        )
        .await;
    let members = admin
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": org}),
        )
        .await;
    assert_eq!(role_of(&members, &member_id), "ORGANIZATION_ROLE_ADMIN");
    let admins_id = admin
        .ok("GroupService/GetGroup", json!({"name": "admins"}))
        .await["group"]["id"]
        .clone();
    member
        .ok(
            "GroupService/GetMembership",
            json!({"groupId": admins_id, "subject": user_subject(&member_id)}),
        )
        .await;
    member
        .ok(
            "GroupService/CreateGroup",
            json!({"organizationId": org, "name": "promoted"}),
        )
        .await;
    third
        .fails(
            "permission_denied",
            "GroupService/CreateGroup",
            json!({"organizationId": org, "name": "nope"}),
        )
        .await;

    // The promoted admin demotes the first; the last admin cannot be demoted.
    member
        .ok(
            "OrganizationService/SetRole",
            json!({"organizationId": org, "userId": admin_id, "role": "ORGANIZATION_ROLE_MEMBER"}),
        )
        .await;
    member
        .fails(
            "failed_precondition",
            "OrganizationService/SetRole",
            json!({"organizationId": org, "userId": member_id, "role": "ORGANIZATION_ROLE_MEMBER"}),
        )
        .await;
    let members = member
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": org}),
        )
        .await;
    assert_eq!(role_of(&members, &admin_id), "ORGANIZATION_ROLE_MEMBER");
    assert_eq!(role_of(&members, &member_id), "ORGANIZATION_ROLE_ADMIN");
    admin
        .fails(
            "permission_denied",
            "GroupService/CreateGroup",
            json!({"organizationId": org, "name": "demoted"}),
        )
        .await;
}

#[tokio::test]
async fn other_organizations_do_not_exist() {
    let server = Server::start().await;
    let admin = &server.admin;
    let org = server.org_id.clone();
    let (member_id, _) = server.user("dev@example.com", OrgRole::Member).await;
    let group_id = admin
        .ok(
            "GroupService/CreateGroup",
            json!({"organizationId": org, "name": "ours"}),
        )
        .await["group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let admin_pat = ids(
        &admin
            .ok("UserService/ListPersonalAccessTokens", json!({}))
            .await,
        "personalAccessTokens",
    )[0]
    .clone();

    let (other_org, other_admin_id, other) = server.other_org().await;
    let their_group = other
        .ok(
            "GroupService/CreateGroup",
            json!({"organizationId": other_org, "name": "ours"}),
        )
        .await["group"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(their_group, group_id);

    let hidden = [
        (
            "OrganizationService/GetOrganization",
            json!({"organizationId": org}),
        ),
        (
            "OrganizationService/ListMembers",
            json!({"organizationId": org}),
        ),
        (
            "OrganizationService/SetRole",
            json!({"organizationId": org, "userId": member_id, "role": "ORGANIZATION_ROLE_ADMIN"}),
        ),
        (
            "GroupService/CreateGroup",
            json!({"organizationId": org, "name": "intruders"}),
        ),
        ("GroupService/GetGroup", json!({"id": group_id})),
        (
            "GroupService/UpdateGroup",
            json!({"groupId": group_id, "name": "hijacked"}),
        ),
        ("GroupService/DeleteGroup", json!({"groupId": group_id})),
        ("GroupService/ListMemberships", json!({"groupId": group_id})),
        (
            "GroupService/CreateMembership",
            json!({"groupId": group_id, "subject": user_subject(&other_admin_id)}),
        ),
        ("UserService/GetUser", json!({"userId": member_id})),
        (
            "UserService/GetPersonalAccessToken",
            json!({"personalAccessTokenId": admin_pat}),
        ),
        (
            "UserService/DeletePersonalAccessToken",
            json!({"personalAccessTokenId": admin_pat}),
        ),
        (
            "UserService/CreatePersonalAccessToken",
            json!({"userId": member_id}),
        ),
    ];
    for (method, body) in hidden {
        other.fails("not_found", method, body).await;
    }
    // Our admin cannot pull their users into our groups or read their group.
    admin
        .fails(
            "not_found",
            "GroupService/CreateMembership",
            json!({"groupId": group_id, "subject": user_subject(&other_admin_id)}),
        )
        .await;
    admin
        .fails(
            "not_found",
            "GroupService/GetGroup",
            json!({"id": their_group}),
        )
        .await;
    let tokens = other
        .ok(
            "UserService/ListPersonalAccessTokens",
            json!({"filter": {"userIds": [member_id]}}),
        )
        .await;
    assert!(ids(&tokens, "personalAccessTokens").is_empty());

    // Each organization lists only its own.
    let theirs = other.ok("GroupService/ListGroups", json!({})).await;
    assert!(
        theirs["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| g["organizationId"] == other_org.as_str())
    );
    assert!(!ids(&theirs, "groups").contains(&group_id));
    let members = other
        .ok(
            "OrganizationService/ListMembers",
            json!({"organizationId": other_org}),
        )
        .await;
    let member_ids: Vec<_> = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["userId"].clone())
        .collect();
    assert_eq!(member_ids, [json!(other_admin_id)]);
    assert_eq!(
        admin
            .ok("GroupService/GetGroup", json!({"id": group_id}))
            .await["group"]["name"],
        "ours"
    );
}
