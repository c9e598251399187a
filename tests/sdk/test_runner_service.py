"""gitpod.v1.RunnerService over Connect with the binary proto codec."""

from __future__ import annotations

import uuid

import pytest

from helpers import Code, ConnectError, expect_error, gp, ip, list_all, new_name, pg, random_uuid, rc, rp

LOCAL_PROVIDERS = [rc.RUNNER_PROVIDER_LINUX_HOST, rc.RUNNER_PROVIDER_DESKTOP_MAC, rc.RUNNER_PROVIDER_DEV_AGENT]
REMOTE_PROVIDERS = [rc.RUNNER_PROVIDER_AWS_EC2, rc.RUNNER_PROVIDER_GCP, rc.RUNNER_PROVIDER_MANAGED]


def _is_uuid(s: str) -> bool:
    try:
        uuid.UUID(s)
        return True
    except ValueError:
        return False


# -- CreateRunner / GetRunner -------------------------------------------------


def test_create_runner_returns_created_runner_and_exchange_token(admin):
    name = new_name("create")
    resp = admin.runners.create_runner(rp.CreateRunnerRequest(name=name, provider=rc.RUNNER_PROVIDER_LINUX_HOST))
    r = resp.runner
    assert _is_uuid(r.runner_id)
    assert r.name == name
    assert r.provider == rc.RUNNER_PROVIDER_LINUX_HOST
    assert r.kind == rc.RUNNER_KIND_LOCAL
    assert r.status.phase == rp.RUNNER_PHASE_CREATED
    assert r.creator.id == admin.user_id
    assert r.creator.principal == ip.PRINCIPAL_USER
    assert r.HasField("created_at") and r.created_at.seconds > 0
    assert resp.exchange_token, "CreateRunner must return an exchange token"


@pytest.mark.parametrize(
    "provider,kind",
    [(p, rc.RUNNER_KIND_LOCAL) for p in LOCAL_PROVIDERS] + [(p, rc.RUNNER_KIND_REMOTE) for p in REMOTE_PROVIDERS],
    ids=[rc.RunnerProvider.Name(p) for p in LOCAL_PROVIDERS + REMOTE_PROVIDERS],
)
def test_kind_follows_provider(admin, provider, kind):
    r = admin.create_runner(provider=provider).runner
    assert r.kind == kind, f"{rc.RunnerProvider.Name(provider)}: kind {rc.RunnerKind.Name(r.kind)}"
    got = admin.runners.get_runner(rp.GetRunnerRequest(runner_id=r.runner_id)).runner
    assert got.kind == kind and got.provider == provider


def test_kind_and_provider_together_is_invalid(admin):
    before = admin.runner_ids()
    err = expect_error(
        Code.INVALID_ARGUMENT,
        admin.runners.create_runner,
        rp.CreateRunnerRequest(name=new_name("both"), kind=rc.RUNNER_KIND_REMOTE, provider=rc.RUNNER_PROVIDER_AWS_EC2),
    )
    text = (err.message or "").lower() + " ".join(d.type_name for d in err.details)
    assert "kind" in text or "provider" in text, err.message
    assert admin.runner_ids() == before


def test_get_runner_round_trip(admin):
    created = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    got = admin.runners.get_runner(rp.GetRunnerRequest(runner_id=created.runner_id)).runner
    assert got.runner_id == created.runner_id
    assert got.name == created.name
    assert got.kind == rc.RUNNER_KIND_REMOTE
    assert got.status.phase == rp.RUNNER_PHASE_CREATED
    assert got.creator.id == admin.user_id
    assert got.created_at == created.created_at


def test_get_unknown_runner_is_not_found(admin):
    expect_error(Code.NOT_FOUND, admin.runners.get_runner, rp.GetRunnerRequest(runner_id=random_uuid()))


def test_create_runner_with_runner_manager_id_is_refused(admin):
    # Only runners of Ona's runner managers carry one; corral has none.
    name = new_name("mgr")
    err = expect_error(
        Code.INVALID_ARGUMENT,
        admin.runners.create_runner,
        rp.CreateRunnerRequest(name=name, provider=rc.RUNNER_PROVIDER_LINUX_HOST, runner_manager_id=random_uuid()),
    )
    assert "runner_manager_id" in err.message
    runners = list_all(lambda p: admin.runners.list_runners(rp.ListRunnersRequest(pagination=p)), "runners")
    assert name not in {r.name for r in runners}


# -- ListRunners ----------------------------------------------------------------


def test_list_runners_and_filters(fresh_org, make_user):
    org = fresh_org
    local = org.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    aws = org.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    gcp = org.create_runner(provider=rc.RUNNER_PROVIDER_GCP).runner
    # a second admin of the same org creates one too, for the creator filter
    other_admin = make_user(is_admin=True, org=org.org_id)
    theirs = other_admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner

    all_ids = org.runner_ids()
    assert all_ids == {local.runner_id, aws.runner_id, gcp.runner_id, theirs.runner_id}

    assert org.runner_ids(kinds=[rc.RUNNER_KIND_LOCAL]) == {local.runner_id, theirs.runner_id}
    assert org.runner_ids(kinds=[rc.RUNNER_KIND_REMOTE]) == {aws.runner_id, gcp.runner_id}
    assert org.runner_ids(providers=[rc.RUNNER_PROVIDER_GCP]) == {gcp.runner_id}
    assert org.runner_ids(providers=[rc.RUNNER_PROVIDER_GCP, rc.RUNNER_PROVIDER_AWS_EC2]) == {gcp.runner_id, aws.runner_id}
    assert org.runner_ids(creator_ids=[other_admin.user_id]) == {theirs.runner_id}
    assert org.runner_ids(creator_ids=[org.user_id]) == {local.runner_id, aws.runner_id, gcp.runner_id}
    assert org.runner_ids(creator_ids=[org.user_id], kinds=[rc.RUNNER_KIND_LOCAL]) == {local.runner_id}
    assert org.runner_ids(creator_ids=[random_uuid()]) == set()


def test_list_runners_pagination(fresh_org):
    org = fresh_org
    created = {org.create_runner().runner.runner_id for _ in range(7)}
    # page size 3: 3 + 3 + 1
    pages = []
    token = ""
    for _ in range(10):
        resp = org.runners.list_runners(_list_req(3, token))
        pages.append([r.runner_id for r in resp.runners])
        token = resp.pagination.next_token
        if not token:
            break
    assert [len(p) for p in pages] == [3, 3, 1], pages
    flat = [i for p in pages for i in p]
    assert len(flat) == len(set(flat)) == 7
    assert set(flat) == created
    # default page size (0 -> 25) returns all seven in one page
    resp = org.runners.list_runners(_list_req(0, ""))
    assert {r.runner_id for r in resp.runners} == created
    assert resp.pagination.next_token == ""


def test_list_runners_page_size_default_is_25(fresh_org):
    org = fresh_org
    for _ in range(27):
        org.create_runner()
    first = org.runners.list_runners(_list_req(0, ""))
    assert len(first.runners) == 25
    assert first.pagination.next_token
    second = org.runners.list_runners(_list_req(0, first.pagination.next_token))
    assert len(second.runners) == 2
    assert not second.pagination.next_token
    assert not {r.runner_id for r in first.runners} & {r.runner_id for r in second.runners}
    # page size 100 is the maximum and is allowed
    assert len(org.runners.list_runners(_list_req(100, "")).runners) == 27


def test_list_runners_page_size_over_100_is_invalid(admin):
    expect_error(Code.INVALID_ARGUMENT, admin.runners.list_runners, _list_req(101, ""))


def test_list_runners_garbage_token_is_not_a_server_error(admin):
    # A token the server never issued: invalid_argument (or ignored), never internal/unknown.
    try:
        admin.runners.list_runners(_list_req(5, "not-a-real-token!!"))
    except ConnectError as e:
        assert e.code == Code.INVALID_ARGUMENT, f"{e.code}: {e.message}"


def _list_req(page_size: int, token: str) -> rp.ListRunnersRequest:
    return rp.ListRunnersRequest(pagination=pg.PaginationRequest(page_size=page_size, token=token))


# -- UpdateRunner ----------------------------------------------------------------


def _get(actor, runner_id):
    return actor.runners.get_runner(rp.GetRunnerRequest(runner_id=runner_id)).runner


def test_update_runner_name_only(admin):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=r.runner_id,
            spec=rp.UpdateRunnerRequest.Spec(
                configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                    auto_update=True, release_channel=rp.RUNNER_RELEASE_CHANNEL_LATEST
                )
            ),
        )
    )
    before = _get(admin, r.runner_id)
    new = new_name("renamed")
    admin.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r.runner_id, name=new))
    after = _get(admin, r.runner_id)
    assert after.name == new
    # the spec was not touched by a name-only update
    assert after.spec.configuration.auto_update is True
    assert after.spec.configuration.release_channel == rp.RUNNER_RELEASE_CHANNEL_LATEST
    assert after.spec.configuration == before.spec.configuration


def test_update_runner_configuration_is_partial(admin):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    name = r.name
    cfg = rp.UpdateRunnerRequest.RunnerConfiguration
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=r.runner_id,
            spec=rp.UpdateRunnerRequest.Spec(
                configuration=cfg(
                    auto_update=True,
                    release_channel=rp.RUNNER_RELEASE_CHANNEL_STABLE,
                    log_level=rp.LOG_LEVEL_DEBUG,
                    devcontainer_image_cache_enabled=True,
                    metrics=rp.UpdateRunnerRequest.MetricsConfiguration(
                        enabled=True, url="https://metrics.example.com/push", username="m"
                    ),
                )
            ),
        )
    )
    got = _get(admin, r.runner_id)
    c = got.spec.configuration
    assert got.name == name
    assert c.auto_update is True
    assert c.release_channel == rp.RUNNER_RELEASE_CHANNEL_STABLE
    assert c.log_level == rp.LOG_LEVEL_DEBUG
    assert c.devcontainer_image_cache_enabled is True
    assert c.metrics.enabled is True
    assert c.metrics.url == "https://metrics.example.com/push"
    assert c.metrics.username == "m"

    # only log_level changes; everything else stays
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=r.runner_id,
            spec=rp.UpdateRunnerRequest.Spec(configuration=cfg(log_level=rp.LOG_LEVEL_WARN)),
        )
    )
    c2 = _get(admin, r.runner_id).spec.configuration
    assert c2.log_level == rp.LOG_LEVEL_WARN
    assert c2.auto_update is True
    assert c2.release_channel == rp.RUNNER_RELEASE_CHANNEL_STABLE
    assert c2.devcontainer_image_cache_enabled is True
    assert c2.metrics.url == "https://metrics.example.com/push"

    # explicit false is applied (optional bool set to false)
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=r.runner_id,
            spec=rp.UpdateRunnerRequest.Spec(configuration=cfg(auto_update=False)),
        )
    )
    c3 = _get(admin, r.runner_id).spec.configuration
    assert c3.auto_update is False
    assert c3.log_level == rp.LOG_LEVEL_WARN


def test_update_runner_desired_phase_and_updated_at(admin):
    r = admin.create_runner().runner
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(runner_id=r.runner_id, name=new_name("ts"))
    )
    got = _get(admin, r.runner_id)
    assert (got.updated_at.seconds, got.updated_at.nanos) >= (r.created_at.seconds, r.created_at.nanos)


def _set_window(actor, runner_id, start=None, end=None):
    w = rp.UpdateWindow()
    if start is not None:
        w.start_hour = start
    if end is not None:
        w.end_hour = end
    return actor.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=runner_id,
            spec=rp.UpdateRunnerRequest.Spec(configuration=rp.UpdateRunnerRequest.RunnerConfiguration(update_window=w)),
        )
    )


@pytest.mark.parametrize(
    "start,end,exp_start,exp_end",
    [
        (3, 5, 3, 5),
        (0, 23, 0, 23),
        (22, 2, 22, 2),  # overnight
        (23, 1, 23, 1),  # overnight, exactly 2 hours
        (10, None, 10, 12),  # end defaults to start + 2
        (22, None, 22, 0),  # default end wraps midnight
    ],
)
def test_update_window_valid(admin, start, end, exp_start, exp_end):
    r = admin.create_runner().runner
    _set_window(admin, r.runner_id, start, end)
    w = _get(admin, r.runner_id).spec.configuration.update_window
    assert w.start_hour == exp_start
    if end is not None:
        assert w.end_hour == exp_end
    else:
        # the default may be stored or implied; when stored it must be start+2
        assert (not w.HasField("end_hour")) or w.end_hour == exp_end, w


@pytest.mark.parametrize(
    "start,end",
    [
        (24, None),  # start hour out of range
        (3, 24),  # end hour out of range
        (3, 4),  # one hour window
        (5, 5),  # empty window
        (23, 0),  # overnight, only one hour
    ],
)
def test_update_window_invalid(admin, start, end):
    r = admin.create_runner().runner
    _set_window(admin, r.runner_id, 1, 5)
    before = _get(admin, r.runner_id)
    err = expect_error(Code.INVALID_ARGUMENT, _set_window, admin, r.runner_id, start, end)
    assert "hour" in (err.message or "").lower() or "window" in (err.message or "").lower() or err.details, err.message
    assert _get(admin, r.runner_id).spec == before.spec


def test_update_unknown_runner_is_not_found(admin):
    expect_error(
        Code.NOT_FOUND, admin.runners.update_runner, rp.UpdateRunnerRequest(runner_id=random_uuid(), name="whatever")
    )


# -- DeleteRunner ---------------------------------------------------------------


@pytest.mark.parametrize("force", [False, True])
def test_delete_never_connected_runner_removes_it(admin, force):
    r = admin.create_runner().runner
    assert r.runner_id in admin.runner_ids()
    admin.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=r.runner_id, force=force))
    expect_error(Code.NOT_FOUND, admin.runners.get_runner, rp.GetRunnerRequest(runner_id=r.runner_id))
    assert r.runner_id not in admin.runner_ids()


def test_delete_unknown_runner_is_not_found(admin):
    expect_error(Code.NOT_FOUND, admin.runners.delete_runner, rp.DeleteRunnerRequest(runner_id=random_uuid()))


def test_deleted_runner_cannot_be_updated_or_tokened(admin):
    r = admin.create_runner().runner
    admin.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=r.runner_id, force=True))
    expect_error(Code.NOT_FOUND, admin.runners.update_runner, rp.UpdateRunnerRequest(runner_id=r.runner_id, name="abcd"))
    expect_error(Code.NOT_FOUND, admin.runners.create_runner_token, rp.CreateRunnerTokenRequest(runner_id=r.runner_id))


# -- tokens -------------------------------------------------------------------------


def test_create_runner_token(admin):
    r = admin.create_runner().runner
    t1 = admin.runners.create_runner_token(rp.CreateRunnerTokenRequest(runner_id=r.runner_id))
    t2 = admin.runners.create_runner_token(rp.CreateRunnerTokenRequest(runner_id=r.runner_id))
    assert t1.exchange_token and t2.exchange_token
    assert t1.exchange_token != t2.exchange_token


def test_create_runner_token_unknown_runner(admin):
    expect_error(Code.NOT_FOUND, admin.runners.create_runner_token, rp.CreateRunnerTokenRequest(runner_id=random_uuid()))


def test_create_runner_logs_token(admin):
    r = admin.create_runner().runner
    resp = admin.runners.create_runner_logs_token(rp.CreateRunnerLogsTokenRequest(runner_id=r.runner_id))
    assert resp.access_token
    expect_error(
        Code.NOT_FOUND, admin.runners.create_runner_logs_token, rp.CreateRunnerLogsTokenRequest(runner_id=random_uuid())
    )


# -- runner-executed RPCs: the runner is not connected ------------------------------------


def _scm_calls(runner_id):
    return {
        "ParseContextURL": ("parse_context_url", rp.ParseContextURLRequest(
            runner_id=runner_id, context_url="https://github.com/gitpod-io/gitpod")),
        "SearchRepositories": ("search_repositories", rp.SearchRepositoriesRequest(
            runner_id=runner_id, search_string="gitpod", scm_host="github.com")),
        "ListSCMOrganizations": ("list_scm_organizations", rp.ListSCMOrganizationsRequest(
            runner_id=runner_id, scm_host="github.com")),
        "CheckAuthenticationForHost": ("check_authentication_for_host", rp.CheckAuthenticationForHostRequest(
            runner_id=runner_id, host="github.com")),
        "CheckRepositoryAccess": ("check_repository_access", rp.CheckRepositoryAccessRequest(
            runner_id=runner_id, repository_url="https://github.com/gitpod-io/gitpod")),
    }


SCM_RPCS = ["ParseContextURL", "SearchRepositories", "ListSCMOrganizations", "CheckAuthenticationForHost",
            "CheckRepositoryAccess"]


@pytest.fixture(scope="module")
def idle_runner(admin):
    return admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner


@pytest.mark.parametrize("rpc", SCM_RPCS)
def test_runner_rpc_unavailable_when_not_connected(admin, idle_runner, rpc):
    method, req = _scm_calls(idle_runner.runner_id)[rpc]
    err = expect_error(Code.UNAVAILABLE, getattr(admin.runners, method), req, timeout_ms=30000)
    assert "connect" in (err.message or "").lower(), f"message should say the runner is not connected: {err.message!r}"


@pytest.mark.parametrize("rpc", SCM_RPCS)
def test_runner_rpc_unknown_runner_not_found(admin, rpc):
    method, req = _scm_calls(random_uuid())[rpc]
    expect_error(Code.NOT_FOUND, getattr(admin.runners, method), req)


# -- policies ---------------------------------------------------------------------------


def _policies(actor, runner_id):
    return {
        p.group_id: p.role
        for p in list_all(
            lambda p: actor.runners.list_runner_policies(rp.ListRunnerPoliciesRequest(runner_id=runner_id, pagination=p)),
            "policies",
        )
    }


def test_remote_runner_gets_members_user_policy(admin):
    members = admin.system_group("members")
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    assert _policies(admin, r.runner_id).get(members.id) == rp.RUNNER_ROLE_USER


def test_policy_create_update_delete(admin):
    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("pol"))).group
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner

    created = admin.runners.create_runner_policy(
        rp.CreateRunnerPolicyRequest(runner_id=r.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_ADMIN)
    ).policy
    assert created.group_id == group.id and created.role == rp.RUNNER_ROLE_ADMIN
    assert _policies(admin, r.runner_id)[group.id] == rp.RUNNER_ROLE_ADMIN

    # creating it again conflicts
    expect_error(
        Code.ALREADY_EXISTS,
        admin.runners.create_runner_policy,
        rp.CreateRunnerPolicyRequest(runner_id=r.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_USER),
    )

    updated = admin.runners.update_runner_policy(
        rp.UpdateRunnerPolicyRequest(runner_id=r.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_USER)
    ).policy
    assert updated.group_id == group.id and updated.role == rp.RUNNER_ROLE_USER
    assert _policies(admin, r.runner_id)[group.id] == rp.RUNNER_ROLE_USER

    admin.runners.delete_runner_policy(rp.DeleteRunnerPolicyRequest(runner_id=r.runner_id, group_id=group.id))
    assert group.id not in _policies(admin, r.runner_id)

    # the members policy of the remote runner can be removed too (to restrict it)
    members = admin.system_group("members")
    admin.runners.delete_runner_policy(rp.DeleteRunnerPolicyRequest(runner_id=r.runner_id, group_id=members.id))
    assert members.id not in _policies(admin, r.runner_id)


def test_policy_unknown_ids(admin):
    r = admin.create_runner().runner
    group = admin.system_group("members")
    expect_error(
        Code.NOT_FOUND,
        admin.runners.create_runner_policy,
        rp.CreateRunnerPolicyRequest(runner_id=random_uuid(), group_id=group.id, role=rp.RUNNER_ROLE_USER),
    )
    expect_error(
        Code.NOT_FOUND,
        admin.runners.create_runner_policy,
        rp.CreateRunnerPolicyRequest(runner_id=r.runner_id, group_id=random_uuid(), role=rp.RUNNER_ROLE_USER),
    )
    expect_error(
        Code.NOT_FOUND,
        admin.runners.update_runner_policy,
        rp.UpdateRunnerPolicyRequest(runner_id=r.runner_id, group_id=random_uuid(), role=rp.RUNNER_ROLE_USER),
    )
    expect_error(
        Code.NOT_FOUND,
        admin.runners.list_runner_policies,
        rp.ListRunnerPoliciesRequest(runner_id=random_uuid()),
    )
