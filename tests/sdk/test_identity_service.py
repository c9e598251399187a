"""gitpod.v1.IdentityService: who is calling, and exchange tokens for runners."""

from __future__ import annotations

import pytest

from helpers import Api, Code, ConnectError, expect_error, ip, rc, rp


def test_authenticated_identity_of_admin(admin):
    resp = admin.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert resp.subject.principal == ip.PRINCIPAL_USER
    assert resp.subject.id and resp.organization_id
    import uuid

    uuid.UUID(resp.subject.id)
    uuid.UUID(resp.organization_id)


def test_authenticated_identity_of_member_same_org(admin, member):
    assert member.principal == ip.PRINCIPAL_USER
    assert member.org_id == admin.org_id
    assert member.user_id != admin.user_id


def test_other_org_identity(admin, other_org):
    assert other_org.org_id != admin.org_id
    assert other_org.principal == ip.PRINCIPAL_USER


@pytest.mark.parametrize("token", [None, "", "crl_pat_definitely-not-valid", "garbage"])
def test_missing_or_wrong_token_is_unauthenticated(server, token):
    api = Api(server.api_url, token)
    expect_error(Code.UNAUTHENTICATED, api.identity.get_authenticated_identity, ip.GetAuthenticatedIdentityRequest())
    expect_error(Code.UNAUTHENTICATED, api.runners.list_runners, rp.ListRunnersRequest())


def test_non_bearer_authorization_is_unauthenticated(server, admin):
    api = Api(server.api_url, None, extra_headers={"Authorization": f"Basic {admin.token}"})
    expect_error(Code.UNAUTHENTICATED, api.runners.list_runners, rp.ListRunnersRequest())


def _exchange(server, exchange_token: str) -> str:
    # The runner has no credential yet: ExchangeToken is called without Authorization.
    api = Api(server.api_url, None)
    return api.identity.exchange_token(ip.ExchangeTokenRequest(exchange_token=exchange_token)).access_token


def test_exchange_token_from_create_runner(server, admin):
    created = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST)
    access = _exchange(server, created.exchange_token)
    assert access and access != created.exchange_token

    me = Api(server.api_url, access).identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert me.subject.principal == ip.PRINCIPAL_RUNNER
    assert me.subject.id == created.runner.runner_id
    assert me.organization_id == admin.org_id

    # second use of the same exchange token fails
    with pytest.raises(ConnectError) as ei:
        _exchange(server, created.exchange_token)
    assert ei.value.code in (Code.UNAUTHENTICATED, Code.FAILED_PRECONDITION, Code.PERMISSION_DENIED,
                             Code.NOT_FOUND, Code.INVALID_ARGUMENT), ei.value.code


def test_exchange_token_from_create_runner_token_revokes_previous(server, admin):
    created = admin.create_runner()
    first = _exchange(server, created.exchange_token)
    first_api = Api(server.api_url, first)
    assert first_api.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest()).subject.principal == ip.PRINCIPAL_RUNNER

    again = admin.runners.create_runner_token(rp.CreateRunnerTokenRequest(runner_id=created.runner.runner_id))
    second = _exchange(server, again.exchange_token)
    assert second and second != first
    me = Api(server.api_url, second).identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert me.subject.id == created.runner.runner_id
    # the earlier access token of the runner no longer works
    expect_error(Code.UNAUTHENTICATED, first_api.identity.get_authenticated_identity, ip.GetAuthenticatedIdentityRequest())
    with pytest.raises(ConnectError):
        _exchange(server, again.exchange_token)


def test_exchange_garbage_token_fails(server):
    with pytest.raises(ConnectError) as ei:
        _exchange(server, "crl_ex_not-a-real-token")
    assert ei.value.code != Code.INTERNAL and ei.value.code != Code.UNKNOWN


def test_runner_token_cannot_act_as_user(server, admin):
    created = admin.create_runner()
    access = _exchange(server, created.exchange_token)
    api = Api(server.api_url, access)
    # a runner is no user: creating runners must not be allowed for it
    with pytest.raises(ConnectError) as ei:
        api.runners.create_runner(rp.CreateRunnerRequest(name="from-runner", provider=rc.RUNNER_PROVIDER_LINUX_HOST))
    assert ei.value.code in (Code.PERMISSION_DENIED, Code.UNAUTHENTICATED), ei.value.code
