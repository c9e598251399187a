"""Browser sessions at the API level: signing in with an API token gives an
HttpOnly cookie; the official SDK's clients then work with that cookie and the
session's CSRF token, and without the token they are refused; signing out
revokes the session. The dashboard in a real browser is tested in tests/browser.
"""

from __future__ import annotations

import json

from google.protobuf.duration_pb2 import Duration

from browser import BrowserSession, cookie_of, request, sign_in_request
from helpers import Api, Code, expect_error, ip, up


def _me(api: Api):
    return api.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())


def _sign_ins(server) -> int:
    return sum(e.get("rpc") == "corral.dashboard/SignIn" for e in server.audit_events())


def test_sign_in_gives_an_http_only_session_that_the_sdk_can_use(server, member):
    answer = sign_in_request(server, member.token)
    assert answer.status == 200, answer.text
    cookie = answer.headers["set-cookie"]
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")[1:]}
    assert {"httponly", "path", "max-age", "samesite"} <= attributes, cookie
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in attributes, "Secure only when the server is reached over https"
    assert answer.headers["cache-control"] == "no-store"
    info = answer.json()
    assert info["userId"] == member.user_id
    assert info["role"] == "member"
    assert info["readOnly"] is False
    session_token = cookie_of(answer)
    assert session_token.startswith("crl_ses_")
    assert session_token not in answer.text, "the session token stays in the cookie"

    session = BrowserSession(server, session_token, info["csrfToken"], info)
    assert _me(session.api()).subject.id == member.user_id
    # The page asks who it is on load.
    current = request(f"{server.url}/auth/session", headers=session.headers(csrf=False))
    assert current.status == 200
    assert current.json()["csrfToken"] == info["csrfToken"]


def test_a_session_call_without_its_csrf_token_is_refused(server, admin):
    session = BrowserSession.sign_in(server, admin.token)
    for csrf in ("", "0" * 64, BrowserSession.sign_in(server, admin.token).csrf):
        err = expect_error(Code.UNAUTHENTICATED, _me, session.api(csrf=csrf))
        assert "X-CSRF-Token" in err.message
        err = expect_error(
            Code.UNAUTHENTICATED,
            session.api(csrf=csrf).users.create_personal_access_token,
            up.CreatePersonalAccessTokenRequest(
                user_id=admin.user_id, description="forged", valid_for=Duration(seconds=60)
            ),
        )
    # Nothing was created by the refused calls.
    tokens = admin.users.list_personal_access_tokens(up.ListPersonalAccessTokensRequest()).personal_access_tokens
    assert not any(t.description == "forged" for t in tokens)


def test_a_session_token_is_no_bearer_token(server, member):
    session = BrowserSession.sign_in(server, member.token)
    err = expect_error(Code.UNAUTHENTICATED, _me, Api(server.api_url, session.cookie))
    assert "browser session" in err.message


def test_sign_in_takes_only_a_valid_personal_token(server, admin):
    created = admin.create_runner()
    exchange = created.exchange_token
    runner_token = Api(server.api_url, None).identity.exchange_token(
        ip.ExchangeTokenRequest(exchange_token=exchange)
    ).access_token
    before = _sign_ins(server)
    for token in ("", "nonsense", "crl_pat_" + "x" * 43, runner_token, exchange):
        answer = sign_in_request(server, token)
        assert answer.status == 401, (token[:8], answer.status, answer.text)
        assert "set-cookie" not in answer.headers
        assert json.loads(answer.body)["error"]
    # Not JSON, not from this server's pages, too large: refused before any token is read.
    form = request(f"{server.url}/auth/session", "POST", f"token={admin.token}".encode(),
                   {"Content-Type": "application/x-www-form-urlencoded"})
    assert form.status == 415
    foreign = sign_in_request(server, admin.token, {"Origin": "https://evil.example"})
    assert foreign.status == 403 and "set-cookie" not in foreign.headers
    huge = request(f"{server.url}/auth/session", "POST",
                   json.dumps({"token": "x" * 100_000}).encode(), {"Content-Type": "application/json"})
    assert huge.status == 413
    assert _sign_ins(server) == before
    # The dashboard's own origin is welcome.
    assert sign_in_request(server, admin.token, {"Origin": server.url}).status == 200
    assert _sign_ins(server) == before + 1


def test_a_read_only_token_opens_a_read_only_session(server, member):
    read_only = member.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(
            user_id=member.user_id, description="ro", read_only=True, valid_for=Duration(seconds=600)
        )
    ).token
    session = BrowserSession.sign_in(server, read_only)
    assert session.info["readOnly"] is True
    assert _me(session.api()).subject.id == member.user_id
    expect_error(
        Code.PERMISSION_DENIED,
        session.api().users.create_personal_access_token,
        up.CreatePersonalAccessTokenRequest(
            user_id=member.user_id, description="more", valid_for=Duration(seconds=60)
        ),
    )


def test_sign_out_revokes_the_session(server, member):
    session = BrowserSession.sign_in(server, member.token)
    other = BrowserSession.sign_in(server, member.token)
    # Without the CSRF token a page of another site cannot sign anyone out.
    assert session.sign_out(csrf=False).status == 403
    assert _me(session.api()).subject.id == member.user_id

    out = session.sign_out()
    assert out.status == 204
    cleared = out.headers["set-cookie"]
    assert cleared.startswith("corral_session=;") and "Max-Age=0" in cleared
    expect_error(Code.UNAUTHENTICATED, _me, session.api())
    assert request(f"{server.url}/auth/session", headers=session.headers()).status == 401
    # Other sessions of the same user go on; the API token too.
    assert _me(other.api()).subject.id == member.user_id
    assert _me(member.api()).subject.id == member.user_id
    events = [e for e in server.audit_events() if e.get("rpc") == "corral.dashboard/SignOut"]
    assert any(e.get("subject_id") == member.user_id or member.user_id in json.dumps(e) for e in events)


def test_sessions_are_not_listed_as_personal_access_tokens(server, make_user):
    user = make_user()
    BrowserSession.sign_in(server, user.token)
    tokens = user.users.list_personal_access_tokens(up.ListPersonalAccessTokensRequest()).personal_access_tokens
    assert all(t.description != "browser session" for t in tokens)
