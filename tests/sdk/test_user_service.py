"""gitpod.v1.UserService: the caller, other users, personal access tokens."""

from __future__ import annotations

import uuid

from google.protobuf.duration_pb2 import Duration

from helpers import Api, Code, ConnectError, expect_error, ip, list_all, random_uuid, up


def test_get_authenticated_user(admin, member):
    me = member.users.get_authenticated_user(up.GetAuthenticatedUserRequest()).user
    assert me.id == member.user_id
    assert me.organization_id == member.org_id
    assert me.email == member.email
    assert me.status in (up.USER_STATUS_ACTIVE, up.USER_STATUS_UNSPECIFIED)

    a = admin.users.get_authenticated_user(up.GetAuthenticatedUserRequest()).user
    assert a.id == admin.user_id and a.organization_id == admin.org_id


def test_get_user(admin, member):
    u = admin.users.get_user(up.GetUserRequest(user_id=member.user_id)).user
    assert u.id == member.user_id
    assert u.email == member.email
    assert u.organization_id == admin.org_id
    own = member.users.get_user(up.GetUserRequest(user_id=member.user_id)).user
    assert own.id == member.user_id


def test_get_unknown_user(admin):
    expect_error(Code.NOT_FOUND, admin.users.get_user, up.GetUserRequest(user_id=random_uuid()))


def _pats(actor, user_ids=None):
    flt = up.ListPersonalAccessTokensRequest.Filter(user_ids=user_ids or [])
    return list_all(
        lambda p: actor.users.list_personal_access_tokens(up.ListPersonalAccessTokensRequest(pagination=p, filter=flt)),
        "personal_access_tokens",
    )


def test_personal_access_token_lifecycle(server, make_user):
    user = make_user()
    desc = f"ci-{uuid.uuid4().hex[:6]}"
    created = user.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(user_id=user.user_id, description=desc, valid_for=Duration(seconds=86400))
    )
    assert created.token

    # the new token authenticates as the same user
    pat_api = Api(server.api_url, created.token)
    me = pat_api.users.get_authenticated_user(up.GetAuthenticatedUserRequest()).user
    assert me.id == user.user_id
    ident = pat_api.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert ident.subject.id == user.user_id and ident.subject.principal == ip.PRINCIPAL_USER

    mine = [p for p in _pats(user, [user.user_id]) if p.description == desc]
    assert len(mine) == 1
    pat = mine[0]
    assert uuid.UUID(pat.id)
    assert pat.user_id == user.user_id
    assert pat.created_at.seconds > 0
    assert pat.expires_at.seconds - pat.created_at.seconds in range(86400 - 5, 86400 + 5)
    assert created.token.encode() not in pat.SerializeToString()

    got = user.users.get_personal_access_token(up.GetPersonalAccessTokenRequest(personal_access_token_id=pat.id)).pat
    assert got.id == pat.id and got.description == desc and got.user_id == user.user_id

    user.users.delete_personal_access_token(up.DeletePersonalAccessTokenRequest(personal_access_token_id=pat.id))
    expect_error(
        Code.NOT_FOUND,
        user.users.get_personal_access_token,
        up.GetPersonalAccessTokenRequest(personal_access_token_id=pat.id),
    )
    assert pat.id not in [p.id for p in _pats(user, [user.user_id])]
    # a deleted token no longer authenticates
    expect_error(Code.UNAUTHENTICATED, pat_api.users.get_authenticated_user, up.GetAuthenticatedUserRequest())


def test_personal_access_token_read_only_flag(make_user):
    user = make_user()
    user.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(
            user_id=user.user_id, description="ro", valid_for=Duration(seconds=3600), read_only=True
        )
    )
    ro = [p for p in _pats(user, [user.user_id]) if p.description == "ro"]
    assert len(ro) == 1 and ro[0].read_only is True


def test_personal_access_token_of_other_user_not_visible_to_member(make_user):
    a = make_user()
    b = make_user()
    a.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(user_id=a.user_id, description="a-only", valid_for=Duration(seconds=3600))
    )
    pat = [p for p in _pats(a, [a.user_id]) if p.description == "a-only"][0]
    # b cannot read or delete a's token, nor create one for a
    with_err = []
    for call, req in [
        (b.users.get_personal_access_token, up.GetPersonalAccessTokenRequest(personal_access_token_id=pat.id)),
        (b.users.delete_personal_access_token, up.DeletePersonalAccessTokenRequest(personal_access_token_id=pat.id)),
        (b.users.create_personal_access_token,
         up.CreatePersonalAccessTokenRequest(user_id=a.user_id, description="x", valid_for=Duration(seconds=60))),
    ]:
        try:
            call(req)
        except ConnectError as e:
            with_err.append(e.code)
        else:
            with_err.append(None)
    assert all(c in (Code.NOT_FOUND, Code.PERMISSION_DENIED) for c in with_err), with_err
    assert pat.id not in [p.id for p in _pats(b)]
    # still there for its owner
    assert pat.id in [p.id for p in _pats(a, [a.user_id])]


def test_unknown_personal_access_token(admin):
    expect_error(
        Code.NOT_FOUND,
        admin.users.get_personal_access_token,
        up.GetPersonalAccessTokenRequest(personal_access_token_id=random_uuid()),
    )
    expect_error(
        Code.NOT_FOUND,
        admin.users.delete_personal_access_token,
        up.DeletePersonalAccessTokenRequest(personal_access_token_id=random_uuid()),
    )
