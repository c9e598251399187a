"""gitpod.v1.OrganizationService: GetOrganization, ListMembers, SetRole."""

from __future__ import annotations

from helpers import Code, ConnectError, expect_error, list_all, op, random_uuid, rc, rp


def _members(actor, org_id=None):
    return list_all(
        lambda p: actor.orgs.list_members(op.ListMembersRequest(organization_id=org_id or actor.org_id, pagination=p)),
        "members",
    )


def test_get_organization(admin, member):
    org = admin.orgs.get_organization(op.GetOrganizationRequest(organization_id=admin.org_id)).organization
    assert org.id == admin.org_id
    assert org.name
    assert org.created_at.seconds > 0
    # members can read their own organization
    assert member.orgs.get_organization(op.GetOrganizationRequest(organization_id=admin.org_id)).organization.id == admin.org_id


def test_get_other_organization_is_hidden(admin, other_org):
    try:
        admin.orgs.get_organization(op.GetOrganizationRequest(organization_id=other_org.org_id))
    except ConnectError as e:
        assert e.code in (Code.NOT_FOUND, Code.PERMISSION_DENIED), e.code
    else:
        raise AssertionError("reading another organization succeeded")
    expect_error(Code.NOT_FOUND, admin.orgs.get_organization, op.GetOrganizationRequest(organization_id=random_uuid()))


def test_list_members(admin, member):
    members = {m.user_id: m for m in _members(admin)}
    assert admin.user_id in members and member.user_id in members
    assert members[admin.user_id].role == op.ORGANIZATION_ROLE_ADMIN
    assert members[member.user_id].role == op.ORGANIZATION_ROLE_MEMBER
    assert members[member.user_id].email == member.email
    # a member sees the same list
    assert {m.user_id for m in _members(member)} == set(members)


def test_list_members_other_org_hidden(admin, other_org):
    assert admin.user_id not in {m.user_id for m in _members(other_org)}
    try:
        _members(admin, other_org.org_id)
    except ConnectError as e:
        assert e.code in (Code.NOT_FOUND, Code.PERMISSION_DENIED), e.code
    else:
        raise AssertionError("listing another organization's members succeeded")


def test_list_members_pagination(fresh_org, make_user):
    org = fresh_org
    added = {make_user(org=org.org_id).user_id for _ in range(4)}
    pages = []
    token = ""
    while True:
        from helpers import pg

        resp = org.orgs.list_members(
            op.ListMembersRequest(organization_id=org.org_id, pagination=pg.PaginationRequest(page_size=2, token=token))
        )
        pages.append([m.user_id for m in resp.members])
        token = resp.pagination.next_token
        if not token or len(pages) > 10:
            break
    flat = [u for p in pages for u in p]
    assert [len(p) for p in pages] == [2, 2, 1], pages
    assert set(flat) == added | {org.user_id}


def test_set_role_promotes_and_demotes(admin, make_user):
    user = make_user()
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    # as a member without a policy, the admin's local runner is invisible
    expect_error(Code.NOT_FOUND, user.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))

    admin.orgs.set_role(op.SetRoleRequest(organization_id=admin.org_id, user_id=user.user_id, role=op.ORGANIZATION_ROLE_ADMIN))
    roles = {m.user_id: m.role for m in _members(admin)}
    assert roles[user.user_id] == op.ORGANIZATION_ROLE_ADMIN
    # as org admin the user is ADMIN on every runner of the org
    user.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r.runner_id, name="renamed-by-new-admin"))
    assert admin.runners.get_runner(rp.GetRunnerRequest(runner_id=r.runner_id)).runner.name == "renamed-by-new-admin"
    admins_group = admin.system_group("admins")
    from helpers import gp, ip

    admin.groups.get_membership(
        gp.GetMembershipRequest(group_id=admins_group.id, subject=ip.Subject(id=user.user_id, principal=ip.PRINCIPAL_USER))
    )

    admin.orgs.set_role(op.SetRoleRequest(organization_id=admin.org_id, user_id=user.user_id, role=op.ORGANIZATION_ROLE_MEMBER))
    roles = {m.user_id: m.role for m in _members(admin)}
    assert roles[user.user_id] == op.ORGANIZATION_ROLE_MEMBER
    expect_error(Code.NOT_FOUND, user.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))


def test_set_role_requires_admin(admin, member, make_user):
    other = make_user()
    expect_error(
        Code.PERMISSION_DENIED,
        member.orgs.set_role,
        op.SetRoleRequest(organization_id=admin.org_id, user_id=other.user_id, role=op.ORGANIZATION_ROLE_ADMIN),
    )
    roles = {m.user_id: m.role for m in _members(admin)}
    assert roles[other.user_id] == op.ORGANIZATION_ROLE_MEMBER


def test_set_role_unknown_user(admin):
    expect_error(
        Code.NOT_FOUND,
        admin.orgs.set_role,
        op.SetRoleRequest(organization_id=admin.org_id, user_id=random_uuid(), role=op.ORGANIZATION_ROLE_ADMIN),
    )
