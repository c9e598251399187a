"""The five SCM RPCs end to end: SDK -> corral serve -> corral runner -> a local
GitHub Enterprise stand-in, with the calling user's host token; and the OAuth
sign-in that gives the user that token.
"""

from __future__ import annotations

import urllib.parse
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
from connectrpc.code import Code
from google.protobuf.timestamp_pb2 import Timestamp

from browser import BrowserSession, request
from fake_github import AUTH_CODE, CLIENT_ID, CLIENT_SECRET, FakeGitHub
from helpers import expect_error
from runner_harness import start_connected_runner
from gitpod.v1 import runner_configuration_pb2 as rc
from gitpod.v1 import runner_pb2 as rp

DETAILS = "gitpod.v1.ParseContextURLPreconditionFailureDetails"


@pytest.fixture
def scm(server, make_user, admin):
    """A fake GitHub Enterprise host, a connected runner with an integration
    (PAT and OAuth) for it, and a member who may use the runner."""
    github = FakeGitHub().start()
    runner, process = start_connected_runner(server, admin, rc.RUNNER_PROVIDER_LINUX_HOST)
    try:
        admin.config.create_scm_integration(
            rc.CreateSCMIntegrationRequest(
                runner_id=runner.runner_id, scm_id="github", host=github.base, pat=True,
                oauth_client_id=CLIENT_ID, oauth_plaintext_client_secret=CLIENT_SECRET,
            )
        )
        member = make_user()
        members = admin.system_group("members")
        admin.runners.create_runner_policy(
            rp.CreateRunnerPolicyRequest(runner_id=runner.runner_id, group_id=members.id, role=rp.RUNNER_ROLE_USER)
        )
        yield github, runner, member
    finally:
        process.close()
        github.stop()


def host_of(github: FakeGitHub) -> str:
    return f"127.0.0.1:{github.port}"


def keep_pat(member, runner, github, token="pat-good"):
    member.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host=host_of(github), token=token,
            source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
        )
    )


def parse(member, runner, url: str):
    return member.runners.parse_context_url(rp.ParseContextURLRequest(runner_id=runner.runner_id, context_url=url))


def test_without_a_token_the_user_is_sent_to_sign_in(scm):
    github, runner, member = scm
    err = expect_error(Code.FAILED_PRECONDITION, parse, member, runner, f"{github.base}/octo/app")
    details = [d for d in err.details if d.type_name == DETAILS]
    assert details, err
    info = rp.ParseContextURLPreconditionFailureDetails.FromString(details[0].message_bytes)
    assert info.scm_id == "github"
    # The runner has an OAuth app for the host, so the way in is its sign-in page.
    assert info.authentication_required_url.startswith(f"{github.base}/login/oauth/authorize?")
    assert f"client_id={CLIENT_ID}" in info.authentication_required_url


def test_check_authentication_offers_pat_and_oauth(scm):
    github, runner, member = scm
    answer = member.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=host_of(github))
    )
    assert not answer.authenticated
    assert answer.scm_id == "github"
    assert answer.supports_pat.create_url.startswith(f"{github.base}/settings/tokens/new")
    assert "repo" in answer.supports_pat.required_scopes
    assert answer.supports_oauth2.auth_url.startswith(f"{github.base}/login/oauth/authorize")
    keep_pat(member, runner, github)
    answer = member.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=host_of(github))
    )
    assert answer.authenticated


def test_oauth_sign_in_stores_an_oauth_host_token(scm, server):
    github, runner, member = scm
    auth_url = member.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=host_of(github))
    ).supports_oauth2.auth_url
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(auth_url).query))
    assert query["redirect_uri"] == f"{server.url}/auth/oauth2/callback"
    # The SCM's authorize page sends the browser back with a code and the
    # state, to a browser signed in to corral as the member.
    back = query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": AUTH_CODE, "state": query["state"]})
    page = BrowserSession.sign_in(server, member.token).get(back)
    assert page.status == 200, page.text
    assert "signed in" in page.text.lower()
    tokens = member.config.list_host_authentication_tokens(
        rc.ListHostAuthenticationTokensRequest(filter=rc.ListHostAuthenticationTokensRequest.Filter(runner_id=runner.runner_id))
    ).tokens
    assert len(tokens) == 1
    assert tokens[0].source == rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
    assert tokens[0].HasField("expires_at")
    assert "repo" in tokens[0].scopes
    assert member.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=host_of(github))
    ).authenticated
    # A forged state is refused and stores nothing.
    forged = query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": AUTH_CODE, "state": "forged"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(forged, timeout=30)
    assert refused.value.code == 400


def _authorize_link(member, runner, github) -> tuple[str, str]:
    """The callback address the SCM would send the browser back to (with a
    code), and the state in it."""
    auth_url = member.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=host_of(github))
    ).supports_oauth2.auth_url
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(auth_url).query))
    back = query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": AUTH_CODE, "state": query["state"]})
    return back, query["state"]


def _host_tokens(actor, runner) -> list:
    return actor.config.list_host_authentication_tokens(
        rc.ListHostAuthenticationTokensRequest(filter=rc.ListHostAuthenticationTokensRequest.Filter(runner_id=runner.runner_id))
    ).tokens


def test_the_oauth_callback_completes_only_for_the_user_who_started_it(scm, server, make_user, admin):
    github, runner, member = scm
    colleague = make_user()
    back, _ = _authorize_link(member, runner, github)

    # Not signed in: a page offers the sign-in, which comes back here; nothing is stored.
    anonymous = request(back)
    assert anonymous.status == 401
    assert "sign in" in anonymous.text.lower()
    next_link = urllib.parse.quote(urllib.parse.urlparse(back).path + "?" + urllib.parse.urlparse(back).query, safe="")
    assert f'href="/?next={next_link}"' in anonymous.text
    # Signed in as someone else (the member sent the colleague their link): refused.
    refused = BrowserSession.sign_in(server, colleague.token).get(back)
    assert refused.status == 403
    assert "another user" in refused.text
    assert _host_tokens(member, runner) == []
    assert _host_tokens(colleague, runner) == []
    assert not any(r.startswith("POST /login/oauth/access_token") for r in github.requests)
    # A session cookie without a live session counts as not signed in.
    ended = BrowserSession.sign_in(server, member.token)
    ended.sign_out()
    assert ended.get(back).status == 401

    # The member's own browser completes it, once.
    mine = BrowserSession.sign_in(server, member.token)
    assert mine.get(back).status == 200
    assert len(_host_tokens(member, runner)) == 1
    again = mine.get(back)
    assert again.status == 400 and "already used" in again.text
    assert len(_host_tokens(member, runner)) == 1


def _integration_of(admin, runner):
    (integration,) = admin.config.list_scm_integrations(
        rc.ListSCMIntegrationsRequest(filter=rc.ListSCMIntegrationsRequest.Filter(runner_ids=[runner.runner_id]))
    ).integrations
    return integration


def test_personal_tokens_are_not_used_where_pat_is_false(scm, admin):
    github, runner, member = scm
    keep_pat(member, runner, github)
    assert parse(member, runner, f"{github.base}/octo/app").git.repo == "app"
    admin.config.update_scm_integration(rc.UpdateSCMIntegrationRequest(id=_integration_of(admin, runner).id, pat=False))
    seen = len(github.requests)
    # The stored PAT stays, but the host no longer sees it: the user must sign in with OAuth.
    err = expect_error(Code.FAILED_PRECONDITION, parse, member, runner, f"{github.base}/octo/app")
    details = [d for d in err.details if d.type_name == DETAILS]
    info = rp.ParseContextURLPreconditionFailureDetails.FromString(details[0].message_bytes)
    assert info.authentication_required_url.startswith(f"{github.base}/login/oauth/authorize?")
    assert github.requests[seen:] == []
    answer = member.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=host_of(github))
    )
    assert not answer.authenticated
    assert not answer.pat_supported


def test_oauth_sign_in_goes_to_the_issuer_url(scm, admin, server):
    github, runner, member = scm
    issuer = FakeGitHub().start()
    try:
        admin.config.update_scm_integration(
            rc.UpdateSCMIntegrationRequest(id=_integration_of(admin, runner).id, issuer_url=issuer.base)
        )
        auth_url = member.runners.check_authentication_for_host(
            rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=host_of(github))
        ).supports_oauth2.auth_url
        assert auth_url.startswith(f"{issuer.base}/login/oauth/authorize?"), auth_url
        query = dict(urllib.parse.parse_qsl(urllib.parse.urlparse(auth_url).query))
        back = query["redirect_uri"] + "?" + urllib.parse.urlencode({"code": AUTH_CODE, "state": query["state"]})
        page = BrowserSession.sign_in(server, member.token).get(back)
        assert page.status == 200, page.text
        # The code was traded at the issuer's token endpoint, not the SCM host's.
        assert "POST /login/oauth/access_token authorization_code" in issuer.requests
        assert not any(r.startswith("POST ") for r in github.requests)
        (token,) = member.config.list_host_authentication_tokens(
            rc.ListHostAuthenticationTokensRequest(
                filter=rc.ListHostAuthenticationTokensRequest.Filter(runner_id=runner.runner_id)
            )
        ).tokens
        assert token.source == rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
    finally:
        issuer.stop()


def test_expired_oauth_token_is_refreshed_before_use(scm):
    github, runner, member = scm
    past = Timestamp()
    past.FromDatetime(datetime.now(timezone.utc) - timedelta(hours=1))
    created = member.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host=host_of(github), token="expired-oauth-token",
            source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH, expires_at=past, refresh_token="refresh-0",
        )
    ).token
    answer = parse(member, runner, f"{github.base}/octo/app")
    assert answer.git.repo == "app"
    assert any(r.endswith("refresh_token") for r in github.requests)
    renewed = member.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=created.id)).token
    assert renewed.expires_at.ToDatetime(tzinfo=timezone.utc) > datetime.now(timezone.utc)


@pytest.mark.parametrize(
    "path, want",
    [
        ("/octo/app", {"branch": "main", "owner": "octo", "repo": "app"}),
        ("/octo/app.git", {"branch": "main", "repo": "app"}),
        ("/octo/app/tree/feature/x/src", {"branch": "feature/x"}),
        ("/octo/app/tree/feature", {"branch": "feature"}),
        ("/octo/app/tree/release/2024", {"tag": "release/2024"}),
        ("/octo/app/commit/c0ffee0", {"commit": "c0ffee" + "0" * 34}),
        ("/octo/lib/", {"branch": "trunk", "repo": "lib"}),
    ],
)
def test_parse_context_url_resolves_refs_through_the_runner(scm, path, want):
    github, runner, member = scm
    keep_pat(member, runner, github)
    url = github.base + path
    answer = parse(member, runner, url)
    assert answer.original_context_url == url
    assert answer.scm_id == "github"
    assert answer.git.host == host_of(github)
    assert answer.git.clone_url == f"{github.base}/{answer.git.owner}/{answer.git.repo}.git"
    for field, value in want.items():
        assert getattr(answer.git, field) == value, (field, answer.git)


def test_pull_request_from_a_fork_clones_the_fork(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    answer = parse(member, runner, f"{github.base}/octo/app/pull/7")
    assert answer.pull_request.id == "7"
    assert answer.pull_request.title == "Fix the thing"
    assert answer.pull_request.draft
    assert answer.pull_request.author == "contributor"
    assert answer.pull_request.from_branch == "patch-1"
    assert answer.pull_request.to_branch == "main"
    # The fork and its branch are what to fetch; the base repository is upstream.
    assert answer.git.clone_url == f"{github.base}/fork-owner/app.git"
    assert (answer.git.owner, answer.git.repo) == ("fork-owner", "app")
    assert answer.git.branch == "patch-1"
    assert answer.git.upstream_remote_url == f"{github.base}/octo/app.git"
    issue = parse(member, runner, f"{github.base}/octo/app/issues/3")
    assert issue.issue.id == "3" and issue.issue.title == "It breaks on Tuesdays"


def test_unknown_ref_is_not_found_and_unknown_host_invalid(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    expect_error(Code.NOT_FOUND, parse, member, runner, f"{github.base}/octo/app/tree/no-such-branch")
    expect_error(Code.INVALID_ARGUMENT, parse, member, runner, "https://scm.unknown.example/a/b")


def test_rejected_token_asks_to_authenticate_again(scm):
    github, runner, member = scm
    keep_pat(member, runner, github, token="pat-revoked")
    err = expect_error(Code.FAILED_PRECONDITION, parse, member, runner, f"{github.base}/octo/app")
    assert any(d.type_name == DETAILS for d in err.details)


def test_rate_limit_is_resource_exhausted(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    github.rate_limited = True
    expect_error(Code.RESOURCE_EXHAUSTED, parse, member, runner, f"{github.base}/octo/app")


def test_search_repositories_pages_with_the_published_token_format(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    first = member.runners.search_repositories(
        rp.SearchRepositoriesRequest(runner_id=runner.runner_id, scm_host=host_of(github), search_string="service",
                                     pagination={"page_size": 2})
    )
    assert [r.name for r in first.repositories] == ["octo/service-0", "octo/service-1"]
    assert first.pagination.next_token == "2/3/5"
    assert first.last_page == 3
    second = member.runners.search_repositories(
        rp.SearchRepositoriesRequest(runner_id=runner.runner_id, scm_host=host_of(github), search_string="service",
                                     pagination={"page_size": 2, "token": first.pagination.next_token})
    )
    assert [r.name for r in second.repositories] == ["octo/service-2", "octo/service-3"]
    # The deprecated limit still sets the page size.
    limited = member.runners.search_repositories(
        rp.SearchRepositoriesRequest(runner_id=runner.runner_id, scm_host=host_of(github), search_string="service", limit=4)
    )
    assert len(limited.repositories) == 4


def test_list_scm_organizations_filters_by_query(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    answer = member.runners.list_scm_organizations(
        rp.ListSCMOrganizationsRequest(runner_id=runner.runner_id, scm_host=host_of(github), query="acm")
    )
    assert [o.name for o in answer.organizations] == ["acme"]
    assert answer.organizations[0].url == f"{github.base}/acme"


def test_list_scm_organizations_says_where_the_user_is_admin(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    answer = member.runners.list_scm_organizations(
        rp.ListSCMOrganizationsRequest(runner_id=runner.runner_id, scm_host=host_of(github))
    )
    assert [(o.name, o.is_admin) for o in answer.organizations] == [("acme", True), ("octo", False)]


def test_check_repository_access(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    ok = member.runners.check_repository_access(
        rp.CheckRepositoryAccessRequest(runner_id=runner.runner_id, repository_url=f"{github.base}/octo/app")
    )
    assert ok.has_access and not ok.error_message
    missing = member.runners.check_repository_access(
        rp.CheckRepositoryAccessRequest(runner_id=runner.runner_id, repository_url=f"{github.base}/octo/nope")
    )
    assert not missing.has_access
    assert missing.error_message


def test_runner_is_picked_when_none_is_named(scm):
    github, runner, member = scm
    keep_pat(member, runner, github)
    answer = member.runners.parse_context_url(rp.ParseContextURLRequest(context_url=f"{github.base}/octo/app"))
    assert answer.git.repo == "app"
