"""Who may see and change what: two users in one organization, and two organizations."""

from __future__ import annotations

import pytest

from helpers import Code, ConnectError, expect_error, gp, ip, list_all, new_name, random_uuid, rc, rp, up


def _get(actor, runner_id):
    return actor.runners.get_runner(rp.GetRunnerRequest(runner_id=runner_id)).runner


def _subject(user_id):
    return ip.Subject(id=user_id, principal=ip.PRINCIPAL_USER)


# -- one organization: admin and a plain member -----------------------------------------


def test_member_cannot_see_local_runner_without_policy(admin, member):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    expect_error(Code.NOT_FOUND, member.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))
    assert r.runner_id not in member.runner_ids()
    expect_error(Code.NOT_FOUND, member.runners.update_runner, rp.UpdateRunnerRequest(runner_id=r.runner_id, name="nope"))
    expect_error(Code.NOT_FOUND, member.runners.delete_runner, rp.DeleteRunnerRequest(runner_id=r.runner_id, force=True))
    expect_error(Code.NOT_FOUND, member.runners.create_runner_token, rp.CreateRunnerTokenRequest(runner_id=r.runner_id))
    expect_error(
        Code.NOT_FOUND, member.runners.list_runner_policies, rp.ListRunnerPoliciesRequest(runner_id=r.runner_id)
    )
    # still there for the admin
    assert _get(admin, r.runner_id).runner_id == r.runner_id


def test_member_is_user_on_remote_runner(admin, member):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    # USER: may read it
    assert _get(member, r.runner_id).runner_id == r.runner_id
    assert r.runner_id in member.runner_ids()
    # ... but not change it
    expect_error(
        Code.PERMISSION_DENIED, member.runners.update_runner, rp.UpdateRunnerRequest(runner_id=r.runner_id, name="mine now")
    )
    expect_error(Code.PERMISSION_DENIED, member.runners.delete_runner, rp.DeleteRunnerRequest(runner_id=r.runner_id))
    expect_error(
        Code.PERMISSION_DENIED, member.runners.delete_runner, rp.DeleteRunnerRequest(runner_id=r.runner_id, force=True)
    )
    expect_error(
        Code.PERMISSION_DENIED, member.runners.create_runner_token, rp.CreateRunnerTokenRequest(runner_id=r.runner_id)
    )
    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("ac"))).group
    expect_error(
        Code.PERMISSION_DENIED,
        member.runners.create_runner_policy,
        rp.CreateRunnerPolicyRequest(runner_id=r.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_ADMIN),
    )
    members = admin.system_group("members")
    expect_error(
        Code.PERMISSION_DENIED,
        member.runners.delete_runner_policy,
        rp.DeleteRunnerPolicyRequest(runner_id=r.runner_id, group_id=members.id),
    )
    # SCM integrations and environment classes are ADMIN business
    expect_error(
        Code.PERMISSION_DENIED,
        member.config.create_environment_class,
        rc.CreateEnvironmentClassRequest(runner_id=r.runner_id, display_name="Mine", description="Mine"),
    )
    expect_error(
        Code.PERMISSION_DENIED,
        member.config.create_scm_integration,
        rc.CreateSCMIntegrationRequest(runner_id=r.runner_id, scm_id="github", host="github.com", pat=True),
    )
    after = _get(admin, r.runner_id)
    assert after.name == r.name


def test_member_as_user_may_use_runner(admin, member):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    ec = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=r.runner_id, display_name="Shared", description="Shared class")
    ).id
    listed = list_all(
        lambda p: member.config.list_environment_classes(
            rc.ListEnvironmentClassesRequest(
                pagination=p, filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=[r.runner_id])
            )
        ),
        "environment_classes",
    )
    assert [c.id for c in listed] == [ec]
    # USER may keep a host token for the runner
    tok = member.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=r.runner_id, host="github.com", token="member-secret", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        )
    ).token
    assert tok.runner_id == r.runner_id
    # a user's host token is private to them
    got = member.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id)).token
    assert got.id == tok.id
    # a runner-executed call reaches the runner check (not a permission error)
    expect_error(
        Code.UNAVAILABLE,
        member.runners.parse_context_url,
        rp.ParseContextURLRequest(runner_id=r.runner_id, context_url="https://github.com/a/b"),
        timeout_ms=30000,
    )


def test_member_cannot_read_others_host_token(admin, member):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    tok = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=r.runner_id, host="github.com", token="admin-secret", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        )
    ).token
    try:
        member.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id))
    except ConnectError as e:
        assert e.code in (Code.NOT_FOUND, Code.PERMISSION_DENIED), e.code
    else:
        raise AssertionError("a member read the admin's host authentication token")
    try:
        member.config.delete_host_authentication_token(rc.DeleteHostAuthenticationTokenRequest(id=tok.id))
    except ConnectError as e:
        assert e.code in (Code.NOT_FOUND, Code.PERMISSION_DENIED), e.code
    else:
        raise AssertionError("a member deleted the admin's host authentication token")
    assert admin.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id)).token.id == tok.id


def test_removing_members_policy_hides_remote_runner(admin, member):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_GCP).runner
    assert _get(member, r.runner_id).runner_id == r.runner_id
    members = admin.system_group("members")
    admin.runners.delete_runner_policy(rp.DeleteRunnerPolicyRequest(runner_id=r.runner_id, group_id=members.id))
    expect_error(Code.NOT_FOUND, member.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))
    assert r.runner_id not in member.runner_ids()


def test_group_policy_grants_admin(admin, make_user):
    user = make_user()
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    expect_error(Code.NOT_FOUND, user.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))
    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("ops"))).group
    admin.groups.create_membership(gp.CreateMembershipRequest(group_id=group.id, subject=_subject(user.user_id)))

    admin.runners.create_runner_policy(
        rp.CreateRunnerPolicyRequest(runner_id=r.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_USER)
    )
    assert _get(user, r.runner_id).runner_id == r.runner_id
    expect_error(Code.PERMISSION_DENIED, user.runners.update_runner, rp.UpdateRunnerRequest(runner_id=r.runner_id, name="abc"))

    admin.runners.update_runner_policy(
        rp.UpdateRunnerPolicyRequest(runner_id=r.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_ADMIN)
    )
    user.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r.runner_id, name="ops-renamed"))
    assert _get(admin, r.runner_id).name == "ops-renamed"
    user.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=r.runner_id, display_name="Ops class", description="by ops")
    )

    # leaving the group takes the access away
    ms = admin.groups.get_membership(gp.GetMembershipRequest(group_id=group.id, subject=_subject(user.user_id))).member
    admin.groups.delete_membership(gp.DeleteMembershipRequest(membership_id=ms.id))
    expect_error(Code.NOT_FOUND, user.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))


def test_creator_is_admin_of_own_runner(admin, make_user):
    user = make_user()
    r = user.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    assert r.creator.id == user.user_id
    user.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r.runner_id, name="creator-renamed"))
    assert _get(user, r.runner_id).name == "creator-renamed"
    user.runners.create_runner_token(rp.CreateRunnerTokenRequest(runner_id=r.runner_id))
    # the org admin sees and manages it too
    assert _get(admin, r.runner_id).name == "creator-renamed"
    assert r.runner_id in admin.runner_ids()
    # another member does not see it
    other = make_user()
    expect_error(Code.NOT_FOUND, other.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))
    user.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=r.runner_id))
    expect_error(Code.NOT_FOUND, admin.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))


def test_only_admins_create_remote_runners(admin, make_user):
    # docs/design.md: any member may create local runners; only org admins remote ones.
    user = make_user()
    before = admin.runner_ids()
    expect_error(
        Code.PERMISSION_DENIED,
        user.runners.create_runner,
        rp.CreateRunnerRequest(name=new_name("remote"), provider=rc.RUNNER_PROVIDER_AWS_EC2),
    )
    assert admin.runner_ids() == before
    assert user.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner.kind == rc.RUNNER_KIND_LOCAL


def test_org_admin_manages_members_runner(admin, make_user):
    user = make_user()
    r = user.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    admin.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r.runner_id, name="admin-renamed"))
    assert _get(user, r.runner_id).name == "admin-renamed"
    admin.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=r.runner_id, force=True))
    expect_error(Code.NOT_FOUND, user.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))


def test_member_list_shows_only_visible_runners(fresh_org, make_user):
    org = fresh_org
    m = make_user(org=org.org_id)
    local = org.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    remote = org.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    own = m.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    assert m.runner_ids() == {remote.runner_id, own.runner_id}
    assert org.runner_ids() == {local.runner_id, remote.runner_id, own.runner_id}


# -- two organizations ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def foreign(admin):
    """Things in the first organization that the second organization must not see."""
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    ec = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=r.runner_id, display_name="Hidden", description="Hidden class")
    ).id
    scm = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=r.runner_id, scm_id="github", host="github.com", pat=True)
    ).id
    tok = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=r.runner_id, host="github.com", token="t0k", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        )
    ).token.id
    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("hidden"))).group
    return {"runner": r, "env_class": ec, "scm": scm, "host_token": tok, "group": group}


def test_other_org_cannot_see_runner(other_org, foreign):
    rid = foreign["runner"].runner_id
    o = other_org
    expect_error(Code.NOT_FOUND, o.runners.get_runner, rp.GetRunnerRequest(runner_id=rid))
    assert rid not in o.runner_ids()
    expect_error(Code.NOT_FOUND, o.runners.update_runner, rp.UpdateRunnerRequest(runner_id=rid, name="stolen"))
    expect_error(Code.NOT_FOUND, o.runners.delete_runner, rp.DeleteRunnerRequest(runner_id=rid, force=True))
    expect_error(Code.NOT_FOUND, o.runners.create_runner_token, rp.CreateRunnerTokenRequest(runner_id=rid))
    expect_error(Code.NOT_FOUND, o.runners.create_runner_logs_token, rp.CreateRunnerLogsTokenRequest(runner_id=rid))
    expect_error(Code.NOT_FOUND, o.runners.list_runner_policies, rp.ListRunnerPoliciesRequest(runner_id=rid))
    members = o.system_group("members")
    expect_error(
        Code.NOT_FOUND,
        o.runners.create_runner_policy,
        rp.CreateRunnerPolicyRequest(runner_id=rid, group_id=members.id, role=rp.RUNNER_ROLE_ADMIN),
    )
    expect_error(
        Code.NOT_FOUND,
        o.runners.parse_context_url,
        rp.ParseContextURLRequest(runner_id=rid, context_url="https://github.com/a/b"),
    )
    expect_error(
        Code.NOT_FOUND,
        o.config.create_host_authentication_token,
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=rid, host="github.com", token="x", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        ),
    )
    expect_error(
        Code.NOT_FOUND,
        o.config.create_environment_class,
        rc.CreateEnvironmentClassRequest(runner_id=rid, display_name="Intruder", description="Intruder"),
    )
    expect_error(
        Code.NOT_FOUND,
        o.config.get_runner_configuration_schema,
        rc.GetRunnerConfigurationSchemaRequest(runner_id=rid),
    )


def test_other_org_cannot_see_configuration(other_org, foreign):
    o = other_org
    expect_error(
        Code.NOT_FOUND,
        o.config.get_environment_class,
        rc.GetEnvironmentClassRequest(environment_class_id=foreign["env_class"]),
    )
    expect_error(
        Code.NOT_FOUND,
        o.config.update_environment_class,
        rc.UpdateEnvironmentClassRequest(environment_class_id=foreign["env_class"], enabled=False),
    )
    expect_error(Code.NOT_FOUND, o.config.get_scm_integration, rc.GetSCMIntegrationRequest(id=foreign["scm"]))
    expect_error(Code.NOT_FOUND, o.config.delete_scm_integration, rc.DeleteSCMIntegrationRequest(id=foreign["scm"]))
    expect_error(
        Code.NOT_FOUND, o.config.get_host_authentication_token, rc.GetHostAuthenticationTokenRequest(id=foreign["host_token"])
    )
    classes = list_all(lambda p: o.config.list_environment_classes(rc.ListEnvironmentClassesRequest(pagination=p)),
                       "environment_classes")
    assert foreign["env_class"] not in {c.id for c in classes}
    scms = list_all(lambda p: o.config.list_scm_integrations(rc.ListSCMIntegrationsRequest(pagination=p)), "integrations")
    assert foreign["scm"] not in {i.id for i in scms}
    # filtering by the foreign runner id shows nothing (or is refused as not found)
    try:
        got = o.config.list_environment_classes(
            rc.ListEnvironmentClassesRequest(
                filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=[foreign["runner"].runner_id])
            )
        )
        assert list(got.environment_classes) == []
    except ConnectError as e:
        assert e.code == Code.NOT_FOUND, e.code


def test_other_org_cannot_see_groups_or_users(admin, other_org, foreign):
    o = other_org
    g = foreign["group"]
    for call, req in [
        (o.groups.get_group, gp.GetGroupRequest(id=g.id)),
        (o.groups.update_group, gp.UpdateGroupRequest(group_id=g.id, name="hijacked")),
        (o.groups.delete_group, gp.DeleteGroupRequest(group_id=g.id)),
        (o.groups.list_memberships, gp.ListMembershipsRequest(group_id=g.id)),
        (o.groups.create_membership, gp.CreateMembershipRequest(group_id=g.id, subject=_subject(o.user_id))),
        (o.users.get_user, up.GetUserRequest(user_id=admin.user_id)),
    ]:
        try:
            call(req)
        except ConnectError as e:
            assert e.code in (Code.NOT_FOUND, Code.PERMISSION_DENIED), f"{call.__name__}: {e.code}"
        else:
            raise AssertionError(f"{call.__name__} across organizations succeeded")
    groups = list_all(lambda p: o.groups.list_groups(gp.ListGroupsRequest(pagination=p)), "groups")
    assert g.id not in {x.id for x in groups}
    assert all(x.organization_id == o.org_id for x in groups)
    # other org cannot add itself a group in our organization
    try:
        o.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("x")))
    except ConnectError as e:
        assert e.code in (Code.NOT_FOUND, Code.PERMISSION_DENIED), e.code
    else:
        raise AssertionError("created a group in another organization")
    assert admin.groups.get_group(gp.GetGroupRequest(id=g.id)).group.name == g.name


def test_policy_with_foreign_group_rejected(admin, other_org):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    foreign_group = other_org.system_group("members")
    expect_error(
        Code.NOT_FOUND,
        admin.runners.create_runner_policy,
        rp.CreateRunnerPolicyRequest(runner_id=r.runner_id, group_id=foreign_group.id, role=rp.RUNNER_ROLE_USER),
    )


def test_same_runner_name_in_two_orgs(admin, other_org):
    name = new_name("twin")
    a = admin.create_runner(name=name).runner
    b = other_org.create_runner(name=name).runner
    assert a.runner_id != b.runner_id
    assert _get(admin, a.runner_id).name == name
    assert _get(other_org, b.runner_id).name == name


def test_unknown_runner_ids_are_not_found_for_everyone(member, other_org):
    rid = random_uuid()
    for actor in (member, other_org):
        expect_error(Code.NOT_FOUND, actor.runners.get_runner, rp.GetRunnerRequest(runner_id=rid))
