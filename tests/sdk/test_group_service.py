"""gitpod.v1.GroupService: groups, system-managed groups and memberships."""

from __future__ import annotations

import uuid

from helpers import Code, expect_error, gp, ip, list_all, new_name, random_uuid


def _groups(actor, **flt):
    return list_all(
        lambda p: actor.groups.list_groups(gp.ListGroupsRequest(pagination=p, filter=gp.ListGroupsRequest.Filter(**flt))),
        "groups",
    )


def _members(actor, group_id):
    return list_all(
        lambda p: actor.groups.list_memberships(gp.ListMembershipsRequest(pagination=p, group_id=group_id)),
        "members",
    )


def _subject(user_id):
    return ip.Subject(id=user_id, principal=ip.PRINCIPAL_USER)


def test_system_managed_groups(admin):
    system = _groups(admin, system_managed=True)
    names = sorted(g.name for g in system)
    assert "admins" in names and "members" in names, names
    for g in system:
        assert g.system_managed is True
        assert g.organization_id == admin.org_id
    non_system = _groups(admin, system_managed=False)
    assert not any(g.system_managed for g in non_system)
    assert not {g.id for g in system} & {g.id for g in non_system}


def test_system_groups_membership_of_admin_and_member(admin, member):
    admins = admin.system_group("admins")
    members = admin.system_group("members")
    admin_in = admin.groups.get_membership(gp.GetMembershipRequest(group_id=admins.id, subject=_subject(admin.user_id)))
    assert admin_in.member.subject.id == admin.user_id
    assert admin_in.member.group_id == admins.id
    m_in = admin.groups.get_membership(gp.GetMembershipRequest(group_id=members.id, subject=_subject(member.user_id)))
    assert m_in.member.subject.id == member.user_id
    expect_error(
        Code.NOT_FOUND,
        admin.groups.get_membership,
        gp.GetMembershipRequest(group_id=admins.id, subject=_subject(member.user_id)),
    )
    assert member.user_id in {m.subject.id for m in _members(admin, members.id)}


def test_group_lifecycle(admin, member):
    name = new_name("grp")
    g = admin.groups.create_group(
        gp.CreateGroupRequest(organization_id=admin.org_id, name=name, description="a test group")
    ).group
    assert uuid.UUID(g.id)
    assert g.name == name and g.description == "a test group"
    assert g.organization_id == admin.org_id
    assert g.system_managed is False
    assert g.created_at.seconds > 0

    by_id = admin.groups.get_group(gp.GetGroupRequest(id=g.id)).group
    assert by_id.id == g.id and by_id.name == name
    by_name = admin.groups.get_group(gp.GetGroupRequest(name=name)).group
    assert by_name.id == g.id
    assert g.id in {x.id for x in _groups(admin)}
    assert {x.id for x in _groups(admin, group_ids=[g.id])} == {g.id}
    assert g.id in {x.id for x in _groups(admin, search=name)}

    new = new_name("grp2")
    upd = admin.groups.update_group(gp.UpdateGroupRequest(group_id=g.id, name=new, description="changed")).group
    assert upd.id == g.id and upd.name == new and upd.description == "changed"
    again = admin.groups.get_group(gp.GetGroupRequest(id=g.id)).group
    assert again.name == new and again.description == "changed"

    # memberships
    created = admin.groups.create_membership(gp.CreateMembershipRequest(group_id=g.id, subject=_subject(member.user_id)))
    ms = created.member
    assert uuid.UUID(ms.id)
    assert ms.group_id == g.id and ms.subject.id == member.user_id
    assert ms.subject.principal == ip.PRINCIPAL_USER
    listed = _members(admin, g.id)
    assert [m.id for m in listed] == [ms.id]
    got = admin.groups.get_membership(gp.GetMembershipRequest(group_id=g.id, subject=_subject(member.user_id))).member
    assert got.id == ms.id
    assert admin.groups.get_group(gp.GetGroupRequest(id=g.id)).group.member_count == 1

    expect_error(
        Code.ALREADY_EXISTS,
        admin.groups.create_membership,
        gp.CreateMembershipRequest(group_id=g.id, subject=_subject(member.user_id)),
    )

    admin.groups.delete_membership(gp.DeleteMembershipRequest(membership_id=ms.id))
    assert _members(admin, g.id) == []
    expect_error(
        Code.NOT_FOUND,
        admin.groups.get_membership,
        gp.GetMembershipRequest(group_id=g.id, subject=_subject(member.user_id)),
    )

    admin.groups.delete_group(gp.DeleteGroupRequest(group_id=g.id))
    expect_error(Code.NOT_FOUND, admin.groups.get_group, gp.GetGroupRequest(id=g.id))
    assert g.id not in {x.id for x in _groups(admin)}


def test_group_name_unique_in_org(admin):
    name = new_name("dup")
    admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=name))
    expect_error(
        Code.ALREADY_EXISTS,
        admin.groups.create_group,
        gp.CreateGroupRequest(organization_id=admin.org_id, name=name),
    )


def test_system_groups_cannot_be_deleted(admin):
    admins = admin.system_group("admins")
    try:
        admin.groups.delete_group(gp.DeleteGroupRequest(group_id=admins.id))
    except Exception as e:  # noqa: BLE001
        from helpers import ConnectError

        assert isinstance(e, ConnectError)
        assert e.code in (Code.PERMISSION_DENIED, Code.FAILED_PRECONDITION, Code.INVALID_ARGUMENT), e.code
    else:
        raise AssertionError("deleting the system-managed admins group succeeded")
    assert admin.groups.get_group(gp.GetGroupRequest(id=admins.id)).group.system_managed


def test_group_unknown_ids(admin, member):
    rid = random_uuid()
    expect_error(Code.NOT_FOUND, admin.groups.get_group, gp.GetGroupRequest(id=rid))
    expect_error(Code.NOT_FOUND, admin.groups.update_group, gp.UpdateGroupRequest(group_id=rid, name="whatever"))
    expect_error(Code.NOT_FOUND, admin.groups.delete_group, gp.DeleteGroupRequest(group_id=rid))
    expect_error(Code.NOT_FOUND, admin.groups.delete_membership, gp.DeleteMembershipRequest(membership_id=rid))
    expect_error(
        Code.NOT_FOUND,
        admin.groups.create_membership,
        gp.CreateMembershipRequest(group_id=rid, subject=_subject(member.user_id)),
    )
    g = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("u"))).group
    expect_error(
        Code.NOT_FOUND,
        admin.groups.create_membership,
        gp.CreateMembershipRequest(group_id=g.id, subject=_subject(random_uuid())),
    )
    expect_error(Code.NOT_FOUND, admin.groups.list_memberships, gp.ListMembershipsRequest(group_id=rid))


def test_member_cannot_manage_groups(admin, member):
    g = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("adm"))).group
    expect_error(
        Code.PERMISSION_DENIED,
        member.groups.create_group,
        gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("mine")),
    )
    expect_error(Code.PERMISSION_DENIED, member.groups.delete_group, gp.DeleteGroupRequest(group_id=g.id))
    expect_error(
        Code.PERMISSION_DENIED,
        member.groups.create_membership,
        gp.CreateMembershipRequest(group_id=g.id, subject=_subject(member.user_id)),
    )
    assert admin.groups.get_group(gp.GetGroupRequest(id=g.id)).group.id == g.id
