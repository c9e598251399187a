"""The wire: plain HTTP + JSON, gzip, GET, timeouts, error bodies, JSON-era query params,
the JSON codec and GET through the SDK, gRPC-Web and gRPC, path prefixes, oversized bodies."""

from __future__ import annotations

import base64
import os
import gzip
import json
import urllib.parse

import httpx
import pytest

from helpers import Api, Code, ConnectError, expect_error, gp, ip, list_all, new_name, random_uuid, rc, rp, up

RUNNERS = "gitpod.v1.RunnerService"


@pytest.fixture
def http(server):
    with httpx.Client(base_url=server.url, timeout=60.0) as c:
        yield c


def _hdrs(token, **extra):
    h = {"Content-Type": "application/json", "Connect-Protocol-Version": "1", "Authorization": f"Bearer {token}"}
    h.update(extra)
    return h


def _post(http, token, method, body, prefix="/api", service=RUNNERS, **extra_headers):
    return http.post(f"{prefix}/{service}/{method}", content=json.dumps(body), headers=_hdrs(token, **extra_headers))


# -- plain JSON over HTTP ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", ["/api", ""])
def test_post_json_list_runners(http, admin, prefix):
    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    resp = _post(http, admin.token, "ListRunners", {"pagination": {"pageSize": 100}}, prefix=prefix)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    ids = {x["runnerId"] for x in body.get("runners", [])}
    # the runner may be beyond the first page in a busy org; follow the token
    token = body.get("pagination", {}).get("nextToken", "")
    while r.runner_id not in ids and token:
        nxt = _post(http, admin.token, "ListRunners", {"pagination": {"pageSize": 100, "token": token}}, prefix=prefix).json()
        ids |= {x["runnerId"] for x in nxt.get("runners", [])}
        token = nxt.get("pagination", {}).get("nextToken", "")
    assert r.runner_id in ids


def test_json_mapping_of_a_runner(http, admin):
    resp = _post(
        http, admin.token, "CreateRunner", {"name": new_name("json"), "provider": "RUNNER_PROVIDER_GCP", "unknownField": 1}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    runner = body["runner"]
    # proto3 JSON: lowerCamel names, enum names as strings, RFC 3339 timestamps
    assert runner["kind"] == "RUNNER_KIND_REMOTE"
    assert runner["provider"] == "RUNNER_PROVIDER_GCP"
    assert runner["status"]["phase"] == "RUNNER_PHASE_CREATED"
    assert "runnerId" in runner and "runner_id" not in runner
    assert runner["createdAt"].endswith("Z") and "T" in runner["createdAt"]
    assert body["exchangeToken"]
    assert runner["creator"]["principal"] == "PRINCIPAL_USER"


def test_json_enum_numbers_accepted(http, admin):
    resp = _post(http, admin.token, "CreateRunner", {"name": new_name("num"), "provider": 2})
    assert resp.status_code == 200, resp.text
    assert resp.json()["runner"]["provider"] == "RUNNER_PROVIDER_LINUX_HOST"


def test_plain_json_without_connect_header(http, admin):
    # JSON-era clients send no Connect-Protocol-Version header
    resp = http.post(
        f"/api/{RUNNERS}/ListRunners",
        content=b"{}",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin.token}"},
    )
    assert resp.status_code == 200, resp.text
    assert isinstance(resp.json().get("runners", []), list)


def test_json_empty_body_as_empty_message(http, admin):
    resp = http.post(
        "/api/gitpod.v1.IdentityService/GetAuthenticatedIdentity",
        content=b"{}",
        headers=_hdrs(admin.token),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["subject"]["id"] == admin.user_id
    assert resp.json()["subject"]["principal"] == "PRINCIPAL_USER"


def test_gzip_request_and_response(http, admin):
    r = admin.create_runner().runner
    body = gzip.compress(json.dumps({"runnerId": r.runner_id}).encode())
    resp = http.post(
        f"/api/{RUNNERS}/GetRunner",
        content=body,
        headers=_hdrs(admin.token, **{"Content-Encoding": "gzip", "Accept-Encoding": "gzip"}),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["runner"]["runnerId"] == r.runner_id
    assert resp.headers.get("content-encoding", "identity") in ("gzip", "identity")


def test_gzip_response_is_gzip_when_large(http, fresh_org):
    for _ in range(30):
        fresh_org.create_runner()
    # read the raw bytes to see what the server sent
    with http.stream(
        "POST",
        f"/api/{RUNNERS}/ListRunners",
        content=json.dumps({"pagination": {"pageSize": 100}}).encode(),
        headers=_hdrs(fresh_org.token, **{"Accept-Encoding": "gzip"}),
    ) as resp:
        raw = b"".join(resp.iter_raw())
        assert resp.status_code == 200
        assert resp.headers.get("content-encoding") == "gzip", dict(resp.headers)
    assert len(json.loads(gzip.decompress(raw))["runners"]) == 30


def test_unsupported_request_compression_rejected(http, admin):
    resp = http.post(
        f"/api/{RUNNERS}/ListRunners",
        content=b"{}",
        headers=_hdrs(admin.token, **{"Content-Encoding": "br-nonsense"}),
    )
    assert resp.status_code != 200
    assert resp.json()["code"] in ("unimplemented", "invalid_argument"), resp.text


def test_get_with_json_message(http, admin):
    r = admin.create_runner().runner
    msg = json.dumps({"runnerId": r.runner_id})
    url = f"/api/{RUNNERS}/GetRunner?" + urllib.parse.urlencode({"connect": "v1", "encoding": "json", "message": msg})
    resp = http.get(url, headers={"Authorization": f"Bearer {admin.token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["runner"]["runnerId"] == r.runner_id


def test_get_without_connect_param(http, admin):
    r = admin.create_runner().runner
    url = f"/api/{RUNNERS}/GetRunner?" + urllib.parse.urlencode(
        {"encoding": "json", "message": json.dumps({"runnerId": r.runner_id})}
    )
    resp = http.get(url, headers={"Authorization": f"Bearer {admin.token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["runner"]["name"] == r.name


def test_get_with_base64_proto_message(http, admin):
    r = admin.create_runner().runner
    raw = rp.GetRunnerRequest(runner_id=r.runner_id).SerializeToString()
    q = {"connect": "v1", "encoding": "proto", "base64": "1", "message": base64.urlsafe_b64encode(raw).decode().rstrip("=")}
    resp = http.get(f"/api/{RUNNERS}/GetRunner?" + urllib.parse.urlencode(q), headers={"Authorization": f"Bearer {admin.token}"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("application/proto")
    assert rp.GetRunnerResponse.FromString(resp.content).runner.runner_id == r.runner_id


def test_get_not_allowed_for_side_effect_rpc(http, fresh_org):
    msg = json.dumps({"name": new_name("viaget"), "provider": "RUNNER_PROVIDER_LINUX_HOST"})
    url = f"/api/{RUNNERS}/CreateRunner?" + urllib.parse.urlencode({"connect": "v1", "encoding": "json", "message": msg})
    resp = http.get(url, headers={"Authorization": f"Bearer {fresh_org.token}"})
    assert resp.status_code != 200
    assert fresh_org.runner_ids() == set()


def test_connect_timeout_ms_accepted(http, admin):
    resp = _post(http, admin.token, "ListRunners", {}, **{"Connect-Timeout-Ms": "15000"})
    assert resp.status_code == 200, resp.text
    # through the SDK too (it sends Connect-Timeout-Ms)
    assert isinstance(admin.runners.list_runners(rp.ListRunnersRequest(), timeout_ms=15000), rp.ListRunnersResponse)


def test_invalid_connect_timeout_is_not_a_server_error(http, admin):
    resp = _post(http, admin.token, "ListRunners", {}, **{"Connect-Timeout-Ms": "not-a-number"})
    assert resp.status_code in (200, 400), resp.text
    if resp.status_code == 400:
        assert resp.json()["code"] == "invalid_argument"


# -- error bodies ------------------------------------------------------------------------


def test_error_body_not_found(http, admin):
    resp = _post(http, admin.token, "GetRunner", {"runnerId": random_uuid()})
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert body["code"] == "not_found"
    assert isinstance(body.get("message", ""), str) and body.get("message")


def test_error_body_unauthenticated(http):
    resp = http.post(f"/api/{RUNNERS}/ListRunners", content=b"{}", headers={"Content-Type": "application/json"})
    assert resp.status_code == 401
    assert resp.json()["code"] == "unauthenticated"


def test_error_body_invalid_argument_has_violations_detail(http, admin):
    resp = _post(http, admin.token, "GetRunner", {"runnerId": "not-a-uuid"})
    assert resp.status_code == 400
    body = resp.json()
    assert body["code"] == "invalid_argument"
    assert "runner_id" in json.dumps(body) or "runnerId" in json.dumps(body) or body.get("details")
    types = [d.get("type") for d in body.get("details", [])]
    assert "buf.validate.Violations" in types, body
    from buf.validate import validate_pb2

    det = next(d for d in body["details"] if d["type"] == "buf.validate.Violations")
    v = validate_pb2.Violations.FromString(base64.b64decode(det["value"] + "=" * (-len(det["value"]) % 4)))
    assert any(el.field_name == "runner_id" for viol in v.violations for el in viol.field.elements), v


def test_malformed_json_is_invalid_argument(http, admin):
    resp = http.post(f"/api/{RUNNERS}/ListRunners", content=b"{not json", headers=_hdrs(admin.token))
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_argument"


def test_malformed_proto_is_invalid_argument(http, admin):
    resp = http.post(
        f"/api/{RUNNERS}/GetRunner",
        content=b"\x0a\xff\xff\xff",
        headers={"Content-Type": "application/proto", "Connect-Protocol-Version": "1", "Authorization": f"Bearer {admin.token}"},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_argument"


def test_unknown_method_and_service(http, admin):
    for path in (f"/api/{RUNNERS}/NoSuchMethod", "/api/gitpod.v1.NoSuchService/Foo"):
        resp = http.post(path, content=b"{}", headers=_hdrs(admin.token))
        assert resp.status_code == 404, (path, resp.status_code)
    # an RPC we do not implement (no LLM RPCs) answers unimplemented or 404
    resp = http.post(
        "/api/gitpod.v1.RunnerConfigurationService/ListLLMIntegrations", content=b"{}", headers=_hdrs(admin.token)
    )
    assert resp.status_code in (404, 501), resp.status_code


def test_unsupported_content_type(http, admin):
    resp = http.post(
        f"/api/{RUNNERS}/ListRunners",
        content=b"{}",
        headers={"Content-Type": "text/plain", "Authorization": f"Bearer {admin.token}"},
    )
    assert resp.status_code == 415, resp.status_code


# -- JSON-era query parameters ----------------------------------------------------------------


def test_json_era_query_params_page(http, fresh_org):
    ids = {fresh_org.create_runner().runner.runner_id for _ in range(5)}
    seen = []
    token = ""
    for _ in range(10):
        params = {"pageSize": "2"}
        if token:
            params["token"] = token
        resp = http.post(
            f"/api/{RUNNERS}/ListRunners",
            params=params,
            content=b"{}",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {fresh_org.token}"},
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        page = [r["runnerId"] for r in body.get("runners", [])]
        assert len(page) <= 2, page
        seen.append(page)
        token = body.get("pagination", {}).get("nextToken", "")
        if not token:
            break
    assert [len(p) for p in seen] == [2, 2, 1], seen
    assert {i for p in seen for i in p} == ids


def test_json_era_query_token_with_body_pagination(http, fresh_org):
    """The 0.x SDKs keep the original body and add ?token= for the next page."""
    ids = {fresh_org.create_runner().runner.runner_id for _ in range(3)}
    body = json.dumps({"pagination": {"pageSize": 2}}).encode()
    hdr = {"Content-Type": "application/json", "Authorization": f"Bearer {fresh_org.token}"}
    first = http.post(f"/api/{RUNNERS}/ListRunners", content=body, headers=hdr).json()
    assert len(first["runners"]) == 2
    nxt = first["pagination"]["nextToken"]
    second = http.post(f"/api/{RUNNERS}/ListRunners", params={"token": nxt}, content=body, headers=hdr).json()
    assert len(second["runners"]) == 1
    assert {r["runnerId"] for r in first["runners"] + second["runners"]} == ids


def test_json_era_query_page_size_over_100_invalid(http, admin):
    resp = http.post(
        f"/api/{RUNNERS}/ListRunners",
        params={"pageSize": "101"},
        content=b"{}",
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {admin.token}"},
    )
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_argument"


# -- the SDK with the JSON codec and with GET -----------------------------------------------


@pytest.mark.parametrize("codec,use_get", [("json", False), ("proto", True), ("json", True)])
def test_sdk_codecs_and_get(admin, member, codec, use_get):
    api = admin.api(codec=codec, use_get=use_get)
    created = api.runners.create_runner(
        rp.CreateRunnerRequest(name=new_name(codec), provider=rc.RUNNER_PROVIDER_AWS_EC2)
    )
    rid = created.runner.runner_id
    assert created.runner.kind == rc.RUNNER_KIND_REMOTE
    got = api.runners.get_runner(rp.GetRunnerRequest(runner_id=rid)).runner
    assert got.name == created.runner.name and got.status.phase == rp.RUNNER_PHASE_CREATED
    listed = list_all(
        lambda p: api.runners.list_runners(
            rp.ListRunnersRequest(pagination=p, filter=rp.ListRunnersRequest.Filter(providers=[rc.RUNNER_PROVIDER_AWS_EC2]))
        ),
        "runners",
    )
    assert rid in {r.runner_id for r in listed}
    pols = api.runners.list_runner_policies(rp.ListRunnerPoliciesRequest(runner_id=rid)).policies
    assert admin.system_group("members").id in {p.group_id for p in pols}
    api.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=rid,
            name=new_name("upd"),
            spec=rp.UpdateRunnerRequest.Spec(
                configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                    update_window=rp.UpdateWindow(start_hour=4), auto_update=True
                )
            ),
        )
    )
    again = api.runners.get_runner(rp.GetRunnerRequest(runner_id=rid)).runner
    assert again.spec.configuration.update_window.start_hour == 4 and again.spec.configuration.auto_update

    ec = api.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=rid, display_name="Codec class", description="via " + codec)
    ).id
    assert api.config.get_environment_class(rc.GetEnvironmentClassRequest(environment_class_id=ec)).environment_class.description == "via " + codec
    classes = api.config.list_environment_classes(
        rc.ListEnvironmentClassesRequest(filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=[rid]))
    ).environment_classes
    assert [c.id for c in classes] == [ec]

    ident = api.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert ident.subject.id == admin.user_id
    assert api.users.get_authenticated_user(up.GetAuthenticatedUserRequest()).user.id == admin.user_id
    groups = api.groups.list_groups(gp.ListGroupsRequest(filter=gp.ListGroupsRequest.Filter(system_managed=True))).groups
    assert {"admins", "members"} <= {g.name for g in groups}

    # errors keep their code through every codec and GET
    err = expect_error(Code.NOT_FOUND, api.runners.get_runner, rp.GetRunnerRequest(runner_id=random_uuid()))
    assert err.message
    err = expect_error(Code.INVALID_ARGUMENT, api.runners.get_runner, rp.GetRunnerRequest(runner_id="bad"))

    api.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=rid, force=True))
    expect_error(Code.NOT_FOUND, api.runners.get_runner, rp.GetRunnerRequest(runner_id=rid))


def test_sdk_without_api_prefix(server, admin):
    api = Api(server.url, admin.token)
    assert api.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest()).organization_id == admin.org_id
    api_get = Api(server.url, admin.token, use_get=True, codec="json")
    assert api_get.users.get_authenticated_user(up.GetAuthenticatedUserRequest()).user.id == admin.user_id


def test_sdk_without_request_compression(server, admin):
    from connectrpc.compat import google_protobuf_binary_codec
    from gitpod.v1 import runner_connect

    client = runner_connect.RunnerServiceClientSync(
        server.api_url, codec=google_protobuf_binary_codec(), send_compression=None, accept_compression=[]
    )
    resp = client.list_runners(rp.ListRunnersRequest(), headers={"Authorization": f"Bearer {admin.token}"})
    assert isinstance(resp, rp.ListRunnersResponse)


# -- gRPC-Web and gRPC ---------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["grpc-web", "grpc"])
def test_other_protocols(admin, protocol):
    api = admin.api(protocol=protocol)
    created = api.runners.create_runner(rp.CreateRunnerRequest(name=new_name(protocol), provider=rc.RUNNER_PROVIDER_GCP))
    rid = created.runner.runner_id
    assert api.runners.get_runner(rp.GetRunnerRequest(runner_id=rid)).runner.kind == rc.RUNNER_KIND_REMOTE
    assert api.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest()).subject.id == admin.user_id
    expect_error(Code.NOT_FOUND, api.runners.get_runner, rp.GetRunnerRequest(runner_id=random_uuid()))
    err = expect_error(Code.INVALID_ARGUMENT, api.runners.get_runner, rp.GetRunnerRequest(runner_id="nope"))
    assert "runner_id" in err.message or any(d.type_name == "buf.validate.Violations" for d in err.details)
    expect_error(Code.UNAUTHENTICATED, Api(admin.server.api_url, "bogus", protocol=protocol).runners.list_runners,
                 rp.ListRunnersRequest())


# -- oversized body --------------------------------------------------------------------------


def test_oversized_body_rejected_server_survives(http, server, admin):
    big = json.dumps({"name": "x" * (8 * 1024 * 1024), "provider": "RUNNER_PROVIDER_LINUX_HOST"}).encode()
    try:
        resp = http.post(f"/api/{RUNNERS}/CreateRunner", content=big, headers=_hdrs(admin.token))
        assert resp.status_code != 200
    except httpx.HTTPError:
        pass  # the server may close the connection early; that is a rejection too
    assert server.alive()
    # On a new connection: the server answered before reading the whole body
    # and closed that one, which the pooled client may not have noticed yet.
    assert httpx.get(f"{server.url}/healthz").status_code == 200
    assert admin.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest()).subject.id == admin.user_id


def test_oversized_proto_body_rejected_via_sdk(admin, server):
    # random hex does not shrink much under the SDK's gzip: still several MiB on the wire
    req = rp.CreateRunnerRequest(name=os.urandom(4 * 1024 * 1024).hex(), provider=rc.RUNNER_PROVIDER_LINUX_HOST)
    with pytest.raises(ConnectError) as ei:
        admin.runners.create_runner(req)
    assert ei.value.code != Code.INTERNAL
    assert server.alive()


def test_healthz(http):
    assert http.get("/healthz").status_code == 200


# -- the SDK's own high-level entry point ----------------------------------------------------


def test_ona_sdk_client(server, admin):
    from ona_sdk import create_client

    ona = create_client(api_key=admin.token, base_url=server.api_url, timeout=30.0)
    ident = ona.services.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert ident.subject.id == admin.user_id
    created = ona.services.runner.create_runner(
        rp.CreateRunnerRequest(name=new_name("ona"), provider=rc.RUNNER_PROVIDER_MANAGED)
    )
    assert created.runner.kind == rc.RUNNER_KIND_REMOTE
    got = ona.services.runner.get_runner(rp.GetRunnerRequest(runner_id=created.runner.runner_id), use_get=True)
    assert got.runner.name == created.runner.name
    classes = ona.services.runner_configuration.list_environment_classes(
        rc.ListEnvironmentClassesRequest(
            filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=[created.runner.runner_id])
        )
    )
    assert list(classes.environment_classes) == []


# -- every NO_SIDE_EFFECTS RPC we serve: POST/proto, GET/proto and GET/JSON agree -------------


@pytest.fixture(scope="module")
def readables(admin, member):
    from google.protobuf.duration_pb2 import Duration

    r = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    tok = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=r.runner_id, host="get.example.com", token="x", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        )
    ).token.id
    scm = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=r.runner_id, scm_id="github", host="github.com", pat=True)
    ).id
    ec = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=r.runner_id, display_name="GET class", description="for GET")
    ).id
    admin.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(user_id=admin.user_id, description="get-pat", valid_for=Duration(seconds=600))
    )
    pat = [p for p in admin.users.list_personal_access_tokens(
        up.ListPersonalAccessTokensRequest(filter=up.ListPersonalAccessTokensRequest.Filter(user_ids=[admin.user_id]))
    ).personal_access_tokens if p.description == "get-pat"][0].id
    members = admin.system_group("members")
    subject = ip.Subject(id=member.user_id, principal=ip.PRINCIPAL_USER)
    from helpers import op

    return [
        ("runners", "get_runner", rp.GetRunnerRequest(runner_id=r.runner_id)),
        ("runners", "list_runners", rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(creator_ids=[admin.user_id]))),
        ("runners", "list_runner_policies", rp.ListRunnerPoliciesRequest(runner_id=r.runner_id)),
        ("config", "get_host_authentication_token", rc.GetHostAuthenticationTokenRequest(id=tok)),
        ("config", "list_host_authentication_tokens", rc.ListHostAuthenticationTokensRequest(
            filter=rc.ListHostAuthenticationTokensRequest.Filter(runner_id=r.runner_id))),
        ("config", "get_runner_configuration_schema", rc.GetRunnerConfigurationSchemaRequest(runner_id=r.runner_id)),
        ("config", "get_scm_integration", rc.GetSCMIntegrationRequest(id=scm)),
        ("config", "list_scm_integrations", rc.ListSCMIntegrationsRequest(
            filter=rc.ListSCMIntegrationsRequest.Filter(runner_ids=[r.runner_id]))),
        ("config", "get_environment_class", rc.GetEnvironmentClassRequest(environment_class_id=ec)),
        ("config", "list_environment_classes", rc.ListEnvironmentClassesRequest(
            filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=[r.runner_id]))),
        ("identity", "get_authenticated_identity", ip.GetAuthenticatedIdentityRequest()),
        ("users", "get_authenticated_user", up.GetAuthenticatedUserRequest()),
        ("users", "get_user", up.GetUserRequest(user_id=member.user_id)),
        ("users", "get_personal_access_token", up.GetPersonalAccessTokenRequest(personal_access_token_id=pat)),
        ("users", "list_personal_access_tokens", up.ListPersonalAccessTokensRequest(
            filter=up.ListPersonalAccessTokensRequest.Filter(user_ids=[admin.user_id]))),
        ("groups", "get_group", gp.GetGroupRequest(id=members.id)),
        ("groups", "list_groups", gp.ListGroupsRequest(filter=gp.ListGroupsRequest.Filter(system_managed=True))),
        ("groups", "get_membership", gp.GetMembershipRequest(group_id=members.id, subject=subject)),
        ("groups", "list_memberships", gp.ListMembershipsRequest(group_id=members.id, pagination={"page_size": 100})),
        ("orgs", "get_organization", op.GetOrganizationRequest(organization_id=admin.org_id)),
        ("orgs", "list_members", op.ListMembersRequest(organization_id=admin.org_id, pagination={"page_size": 100})),
    ]


GET_RPCS = [
    "get_runner", "list_runners", "list_runner_policies", "get_host_authentication_token",
    "list_host_authentication_tokens", "get_runner_configuration_schema", "get_scm_integration",
    "list_scm_integrations", "get_environment_class", "list_environment_classes", "get_authenticated_identity",
    "get_authenticated_user", "get_user", "get_personal_access_token", "list_personal_access_tokens", "get_group",
    "list_groups", "get_membership", "list_memberships", "get_organization", "list_members",
]


def _strip_volatile(msg):
    # last_used of a PAT changes with every call made with it
    for p in getattr(msg, "personal_access_tokens", []):
        p.ClearField("last_used")
    if msg.DESCRIPTOR.name == "GetPersonalAccessTokenResponse":
        msg.pat.ClearField("last_used")
    return msg


@pytest.mark.parametrize("rpc", GET_RPCS)
def test_get_matches_post(admin, readables, rpc):
    service, method, req = next(x for x in readables if x[1] == rpc)
    post = _strip_volatile(getattr(getattr(admin.api(), service), method)(req))
    get_proto = _strip_volatile(getattr(getattr(admin.api(use_get=True), service), method)(req))
    get_json = _strip_volatile(getattr(getattr(admin.api(use_get=True, codec="json"), service), method)(req))
    assert post == get_proto, f"{rpc}: GET (proto) differs from POST"
    assert post == get_json, f"{rpc}: GET (json) differs from POST"
    assert post.ByteSize() > 0, f"{rpc}: empty response"
