"""The JSON-era SDK (gitpod-sdk 0.11.0) against corral: the seed's runner and
runner-configuration RPCs, auto-pagination through ?token=, and error mapping."""

from __future__ import annotations

import uuid

import pytest
from gitpod import APIStatusError, NotFoundError, PermissionDeniedError, BadRequestError

from conftest import make_client


def _name(prefix="legacy"):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def _members_group_id(client) -> str:
    for g in client.groups.list(filter={"system_managed": True}):
        if g.name == "members":
            return g.id
    raise AssertionError("no system-managed members group")


def test_identity(client):
    me = client.identity.get_authenticated_identity()
    assert me.subject.principal == "PRINCIPAL_USER"
    assert me.subject.id and me.organization_id


def test_runner_create_retrieve_update_delete(client):
    name = _name()
    created = client.runners.create(name=name, provider="RUNNER_PROVIDER_AWS_EC2")
    r = created.runner
    assert r.name == name
    assert r.kind == "RUNNER_KIND_REMOTE"
    assert r.provider == "RUNNER_PROVIDER_AWS_EC2"
    assert r.status.phase == "RUNNER_PHASE_CREATED"
    assert r.created_at is not None
    assert created.exchange_token

    got = client.runners.retrieve(runner_id=r.runner_id).runner
    assert got.runner_id == r.runner_id and got.name == name

    client.runners.update(
        runner_id=r.runner_id,
        name=name + "-x",
        spec={
            "configuration": {
                "auto_update": True,
                "release_channel": "RUNNER_RELEASE_CHANNEL_LATEST",
                "update_window": {"start_hour": 22, "end_hour": 1},
                "log_level": "LOG_LEVEL_INFO",
            }
        },
    )
    got = client.runners.retrieve(runner_id=r.runner_id).runner
    assert got.name == name + "-x"
    cfg = got.spec.configuration
    assert cfg.auto_update is True
    assert cfg.release_channel == "RUNNER_RELEASE_CHANNEL_LATEST"
    assert cfg.update_window.start_hour == 22 and cfg.update_window.end_hour == 1
    assert cfg.log_level == "LOG_LEVEL_INFO"

    # a name-only update leaves the configuration alone
    client.runners.update(runner_id=r.runner_id, name=name + "-y")
    cfg2 = client.runners.retrieve(runner_id=r.runner_id).runner.spec.configuration
    assert cfg2.auto_update is True and cfg2.update_window.start_hour == 22

    client.runners.delete(runner_id=r.runner_id)
    with pytest.raises(NotFoundError):
        client.runners.retrieve(runner_id=r.runner_id)


def test_local_runner_kind(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_LINUX_HOST").runner
    assert r.kind == "RUNNER_KIND_LOCAL"


def test_invalid_input_is_bad_request(client):
    with pytest.raises(BadRequestError) as ei:
        client.runners.create(name="ab", provider="RUNNER_PROVIDER_LINUX_HOST")
    assert ei.value.status_code == 400
    body = ei.value.body
    assert isinstance(body, dict) and body.get("code") == "invalid_argument", body
    with pytest.raises(BadRequestError):
        client.runners.create(name=_name(), kind="RUNNER_KIND_REMOTE", provider="RUNNER_PROVIDER_AWS_EC2")
    with pytest.raises(BadRequestError):
        client.runners.list(pagination={"page_size": 101})


def test_list_auto_paginates(fresh_client):
    c = fresh_client
    ids = {c.runners.create(name=_name("page"), provider="RUNNER_PROVIDER_LINUX_HOST").runner.runner_id for _ in range(30)}

    # default page size (25): two pages, iterated transparently
    first = c.runners.list()
    assert len(first.runners) == 25
    assert first.pagination.next_token
    assert {r.runner_id for r in c.runners.list()} == ids

    # small pages through the body's pagination and the query's token
    seen = [r.runner_id for r in c.runners.list(pagination={"page_size": 7})]
    assert len(seen) == 30 and set(seen) == ids
    # page size as a query parameter (JSON-era style)
    page = c.runners.list(page_size=4)
    assert len(page.runners) == 4
    seen_q = [r.runner_id for r in c.runners.list(page_size=4)]
    assert len(seen_q) == 30 and set(seen_q) == ids

    # pages one by one
    p = c.runners.list(pagination={"page_size": 10})
    count = len(p.runners)
    pages = 1
    while p.has_next_page():
        p = p.get_next_page()
        count += len(p.runners)
        pages += 1
    assert count == 30 and pages == 3


def test_list_filters(fresh_client):
    c = fresh_client
    local = c.runners.create(name=_name(), provider="RUNNER_PROVIDER_LINUX_HOST").runner.runner_id
    remote = c.runners.create(name=_name(), provider="RUNNER_PROVIDER_GCP").runner.runner_id
    assert {r.runner_id for r in c.runners.list(filter={"kinds": ["RUNNER_KIND_LOCAL"]})} == {local}
    assert {r.runner_id for r in c.runners.list(filter={"providers": ["RUNNER_PROVIDER_GCP"]})} == {remote}
    me = c.identity.get_authenticated_identity().subject.id
    assert {r.runner_id for r in c.runners.list(filter={"creator_ids": [me]})} == {local, remote}


def test_runner_tokens(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_LINUX_HOST").runner
    tok = client.runners.create_runner_token(runner_id=r.runner_id)
    assert tok.exchange_token
    logs = client.runners.create_logs_token(runner_id=r.runner_id)
    assert logs.access_token
    # the exchange token becomes a runner access token
    ex = client.identity.exchange_token(exchange_token=tok.exchange_token)
    assert ex.access_token


def test_policies(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_AWS_EC2").runner
    members = _members_group_id(client)
    policies = {p.group_id: p.role for p in client.runners.policies.list(runner_id=r.runner_id)}
    assert policies.get(members) == "RUNNER_ROLE_USER"

    g = client.groups.create(name=_name("grp"), organization_id=client.identity.get_authenticated_identity().organization_id).group
    created = client.runners.policies.create(runner_id=r.runner_id, group_id=g.id, role="RUNNER_ROLE_ADMIN").policy
    assert created.group_id == g.id and created.role == "RUNNER_ROLE_ADMIN"
    updated = client.runners.policies.update(runner_id=r.runner_id, group_id=g.id, role="RUNNER_ROLE_USER").policy
    assert updated.role == "RUNNER_ROLE_USER"
    assert {p.group_id: p.role for p in client.runners.policies.list(runner_id=r.runner_id)}[g.id] == "RUNNER_ROLE_USER"
    client.runners.policies.delete(runner_id=r.runner_id, group_id=g.id)
    assert g.id not in {p.group_id for p in client.runners.policies.list(runner_id=r.runner_id)}


def test_host_authentication_tokens(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_LINUX_HOST").runner
    hat = client.runners.configurations.host_authentication_tokens
    created = hat.create(
        runner_id=r.runner_id, host="github.com", token="legacy-secret-value",
        source="HOST_AUTHENTICATION_TOKEN_SOURCE_PAT", scopes=["repo"],
    ).token
    assert created.host == "github.com" and created.runner_id == r.runner_id
    got = hat.retrieve(id=created.id).token
    assert got.id == created.id
    assert "legacy-secret-value" not in got.model_dump_json()
    assert created.id in {t.id for t in hat.list(filter={"runner_id": r.runner_id})}
    hat.update(id=created.id, token="legacy-secret-2", scopes=["repo", "user"])
    assert sorted(hat.retrieve(id=created.id).token.scopes) == ["repo", "user"]
    hat.delete(id=created.id)
    with pytest.raises(NotFoundError):
        hat.retrieve(id=created.id)


def test_scm_integrations(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_AWS_EC2").runner
    scm = client.runners.configurations.scm_integrations
    sid = scm.create(runner_id=r.runner_id, scm_id="github", host="github.com", pat=True).id
    got = scm.retrieve(id=sid).integration
    assert got.host == "github.com" and got.pat is True and got.runner_id == r.runner_id
    assert [i.id for i in scm.list(filter={"runner_ids": [r.runner_id]})] == [sid]
    scm.update(id=sid, oauth_client_id="legacy-client")
    assert scm.retrieve(id=sid).integration.oauth.client_id == "legacy-client"
    # a secret needs the runner's public key: failed_precondition
    with pytest.raises(APIStatusError) as ei:
        scm.create(runner_id=r.runner_id, scm_id="gitlab", host="gitlab.com",
                   oauth_client_id="c", oauth_plaintext_client_secret="s")
    assert ei.value.body.get("code") == "failed_precondition", ei.value.body
    scm.delete(id=sid)
    with pytest.raises(NotFoundError):
        scm.retrieve(id=sid)


def test_environment_classes(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_AWS_EC2").runner
    ecs = client.runners.configurations.environment_classes
    eid = ecs.create(
        runner_id=r.runner_id, display_name="Legacy class", description="from the 0.11 SDK",
        configuration=[{"key": "cpu", "value": "4"}],
    ).id
    got = ecs.retrieve(environment_class_id=eid).environment_class
    assert got.display_name == "Legacy class"
    assert ("cpu", "4") in [(f.key, f.value) for f in got.configuration]
    ecs.update(environment_class_id=eid, enabled=False, description="changed")
    got = ecs.retrieve(environment_class_id=eid).environment_class
    # proto3 JSON leaves out false: the JSON-era SDK reads that as None
    assert got.enabled in (False, None) and got.description == "changed"
    assert [c.id for c in ecs.list(filter={"runner_ids": [r.runner_id]})] == [eid]


def test_schema_and_validate(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_LINUX_HOST").runner
    try:
        client.runners.configurations.schema.retrieve(runner_id=r.runner_id)
    except APIStatusError as e:
        assert e.body.get("code") in ("failed_precondition", "unavailable"), e.body
    res = client.runners.configurations.validate(
        runner_id=r.runner_id, environment_class={"display_name": "x", "description": "fine description"}
    )
    assert res.environment_class is not None and not res.environment_class.valid  # proto3 JSON omits false
    assert res.environment_class.display_name_error


def test_parse_context_url_unavailable(client):
    r = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_LINUX_HOST").runner
    with pytest.raises(APIStatusError) as ei:
        client.runners.parse_context_url(runner_id=r.runner_id, context_url="https://github.com/gitpod-io/gitpod")
    assert ei.value.status_code == 503
    assert ei.value.body.get("code") == "unavailable"
    assert "connect" in ei.value.body.get("message", "").lower()


def test_unknown_runner_not_found(client):
    with pytest.raises(NotFoundError) as ei:
        client.runners.retrieve(runner_id=str(uuid.uuid4()))
    assert ei.value.body.get("code") == "not_found"


def test_member_permissions(server, client):
    token = server.add_user(f"legacy-m-{uuid.uuid4().hex[:6]}@example.com")
    member = make_client(server, token)
    remote = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_AWS_EC2").runner
    assert member.runners.retrieve(runner_id=remote.runner_id).runner.runner_id == remote.runner_id
    with pytest.raises(PermissionDeniedError):
        member.runners.update(runner_id=remote.runner_id, name="not allowed")
    local = client.runners.create(name=_name(), provider="RUNNER_PROVIDER_LINUX_HOST").runner
    with pytest.raises(NotFoundError):
        member.runners.retrieve(runner_id=local.runner_id)


def test_bad_token_is_401(server):
    from gitpod import AuthenticationError

    bad = make_client(server, "not-a-token")
    with pytest.raises(AuthenticationError):
        bad.runners.list()
