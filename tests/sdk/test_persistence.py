"""Data survives a restart of `corral serve` on the same data dir."""

from __future__ import annotations

import os
import stat

from google.protobuf.duration_pb2 import Duration

from helpers import Actor, Api, Code, expect_error, gp, ip, list_all, op, rc, rp, up


def test_admin_token_file_is_private(own_server):
    path = os.path.join(own_server.data_dir, "admin-token")
    mode = stat.S_IMODE(os.stat(path).st_mode)
    assert mode == 0o600, oct(mode)
    assert own_server.admin_token()
    # the token itself is never written to the log
    assert own_server.admin_token() not in own_server.log_tail(10**7)


def test_restart_keeps_data(own_server):
    srv = own_server
    admin = Actor(srv, srv.admin_token())
    org_before = admin.org_id

    # runners: one plain, one updated, one deleted
    r1 = admin.create_runner(name="persist-local", provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    r2 = admin.create_runner(name="persist-remote", provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    r3 = admin.create_runner(name="persist-deleted").runner
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=r2.runner_id,
            name="persist-remote-2",
            spec=rp.UpdateRunnerRequest.Spec(
                configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                    auto_update=True, update_window=rp.UpdateWindow(start_hour=22, end_hour=2), log_level=rp.LOG_LEVEL_WARN
                )
            ),
        )
    )
    admin.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=r3.runner_id, force=True))

    # configuration
    ec = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(
            runner_id=r2.runner_id, display_name="Persisted", description="survives restart",
            configuration=[rc.FieldValue(key="cpu", value="4")],
        )
    ).id
    scm = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=r2.runner_id, scm_id="github", host="github.example.org", pat=True)
    ).id
    tok = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=r2.runner_id, host="github.example.org", token="persist-secret",
            source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT, scopes=["repo"],
        )
    ).token.id

    # identity: a user via the CLI, a group with that user, a policy, a PAT, an exchanged runner token
    user_token = srv.add_user("persist-user@example.com", org=org_before)
    user = Actor(srv, user_token, email="persist-user@example.com")
    group = admin.groups.create_group(
        gp.CreateGroupRequest(organization_id=org_before, name="persisted-group", description="d")
    ).group
    ms = admin.groups.create_membership(
        gp.CreateMembershipRequest(group_id=group.id, subject=ip.Subject(id=user.user_id, principal=ip.PRINCIPAL_USER))
    ).member
    admin.runners.create_runner_policy(
        rp.CreateRunnerPolicyRequest(runner_id=r1.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_ADMIN)
    )
    pat = user.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(user_id=user.user_id, description="persist-pat", valid_for=Duration(seconds=7200))
    ).token
    runner_exchange = admin.runners.create_runner_token(rp.CreateRunnerTokenRequest(runner_id=r1.runner_id)).exchange_token
    runner_access = Api(srv.api_url, None).identity.exchange_token(
        ip.ExchangeTokenRequest(exchange_token=runner_exchange)
    ).access_token
    unused_exchange = admin.runners.create_runner_token(rp.CreateRunnerTokenRequest(runner_id=r2.runner_id)).exchange_token
    org2_token = srv.add_org("Second Persisted Org", "persist-org2@example.com")
    org2 = Actor(srv, org2_token)

    before_ec = admin.config.get_environment_class(rc.GetEnvironmentClassRequest(environment_class_id=ec)).environment_class
    before_runners = {r.runner_id: r for r in admin.all_runners()}
    before_policies = admin.runners.list_runner_policies(rp.ListRunnerPoliciesRequest(runner_id=r2.runner_id)).policies

    # -- restart ------------------------------------------------------------------------
    srv.restart()

    admin2 = Actor(srv, srv.admin_token())  # same token still works
    assert admin2.org_id == org_before
    assert admin2.user_id == admin.user_id

    after_runners = {r.runner_id: r for r in admin2.all_runners()}
    assert set(after_runners) == set(before_runners)
    assert r3.runner_id not in after_runners
    expect_error(Code.NOT_FOUND, admin2.runners.get_runner, rp.GetRunnerRequest(runner_id=r3.runner_id))
    got2 = admin2.runners.get_runner(rp.GetRunnerRequest(runner_id=r2.runner_id)).runner
    assert got2.name == "persist-remote-2"
    assert got2.kind == rc.RUNNER_KIND_REMOTE and got2.provider == rc.RUNNER_PROVIDER_AWS_EC2
    assert got2.spec.configuration.auto_update is True
    assert got2.spec.configuration.log_level == rp.LOG_LEVEL_WARN
    assert got2.spec.configuration.update_window.start_hour == 22
    assert got2.spec.configuration.update_window.end_hour == 2
    assert got2.created_at == before_runners[r2.runner_id].created_at
    assert got2.creator.id == admin.user_id
    assert got2 == before_runners[r2.runner_id]
    assert list(admin2.runners.list_runner_policies(rp.ListRunnerPoliciesRequest(runner_id=r2.runner_id)).policies) == list(before_policies)

    ecl = admin2.config.get_environment_class(rc.GetEnvironmentClassRequest(environment_class_id=ec)).environment_class
    assert ecl.display_name == "Persisted" and ("cpu", "4") in [(f.key, f.value) for f in ecl.configuration]
    assert ecl == before_ec
    s = admin2.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=scm)).integration
    assert s.host == "github.example.org" and s.pat
    t = admin2.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok)).token
    assert t.host == "github.example.org" and list(t.scopes) == ["repo"]

    # users, groups, memberships, policies, tokens
    user2 = Actor(srv, user_token)
    assert user2.user_id == user.user_id
    assert Actor(srv, pat).user_id == user.user_id
    g = admin2.groups.get_group(gp.GetGroupRequest(id=group.id)).group
    assert g.name == "persisted-group"
    members = list_all(lambda p: admin2.groups.list_memberships(gp.ListMembershipsRequest(group_id=group.id, pagination=p)), "members")
    assert [m.id for m in members] == [ms.id]
    # the policy still makes the user ADMIN on r1
    user2.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r1.runner_id, name="renamed-after-restart"))
    runner_me = Api(srv.api_url, runner_access).identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert runner_me.subject.principal == ip.PRINCIPAL_RUNNER and runner_me.subject.id == r1.runner_id
    # an exchange token issued before the restart is still usable once
    assert Api(srv.api_url, None).identity.exchange_token(ip.ExchangeTokenRequest(exchange_token=unused_exchange)).access_token
    # the second organization is still there and still separate
    o2 = Actor(srv, org2_token)
    assert o2.org_id == org2.org_id != org_before
    assert o2.orgs.get_organization(op.GetOrganizationRequest(organization_id=o2.org_id)).organization.name == "Second Persisted Org"
    expect_error(Code.NOT_FOUND, o2.runners.get_runner, rp.GetRunnerRequest(runner_id=r1.runner_id))
    # system groups were not duplicated
    system = list_all(
        lambda p: admin2.groups.list_groups(gp.ListGroupsRequest(pagination=p, filter=gp.ListGroupsRequest.Filter(system_managed=True))),
        "groups",
    )
    assert sorted(x.name for x in system).count("admins") == 1
    assert sorted(x.name for x in system).count("members") == 1


def test_restart_does_not_bootstrap_again(own_server):
    srv = own_server
    first = srv.admin_token()
    admin = Actor(srv, first)
    orgs_members = list_all(lambda p: admin.orgs.list_members(op.ListMembersRequest(organization_id=admin.org_id, pagination=p)), "members")
    srv.restart()
    assert srv.admin_token() == first
    again = Actor(srv, first)
    assert again.org_id == admin.org_id
    after = list_all(lambda p: again.orgs.list_members(op.ListMembersRequest(organization_id=again.org_id, pagination=p)), "members")
    assert {m.user_id for m in after} == {m.user_id for m in orgs_members}


def test_cli_works_while_serving(own_server):
    srv = own_server
    admin = Actor(srv, srv.admin_token())
    tok = srv.add_user("cli-admin@example.com", admin=True, org=admin.org_id)
    a2 = Actor(srv, tok)
    assert a2.org_id == admin.org_id
    roles = {m.user_id: m.role for m in list_all(
        lambda p: admin.orgs.list_members(op.ListMembersRequest(organization_id=admin.org_id, pagination=p)), "members")}
    assert roles[a2.user_id] == op.ORGANIZATION_ROLE_ADMIN
    # an admin added by the CLI is in the admins group and may manage the org's runners
    r = admin.create_runner().runner
    a2.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r.runner_id, name="by-cli-admin"))
