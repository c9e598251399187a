"""gitpod.v1.RunnerConfigurationService over Connect with the binary proto codec."""

from __future__ import annotations

import uuid

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from helpers import Code, ConnectError, expect_error, list_all, random_uuid, rc

SECRET_MARK = "s3cr3t-"


@pytest.fixture(scope="module")
def runner(admin):
    return admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner


def _secret() -> str:
    return SECRET_MARK + uuid.uuid4().hex


def _ts(seconds: int) -> Timestamp:
    return Timestamp(seconds=seconds)


# -- host authentication tokens ------------------------------------------------------


def _list_tokens(actor, **flt):
    return list_all(
        lambda p: actor.config.list_host_authentication_tokens(
            rc.ListHostAuthenticationTokensRequest(pagination=p, filter=rc.ListHostAuthenticationTokensRequest.Filter(**flt))
        ),
        "tokens",
    )


def test_host_authentication_token_lifecycle(admin, runner):
    secret, refresh = _secret(), _secret()
    host = f"git-{uuid.uuid4().hex[:6]}.example.com"
    req = rc.CreateHostAuthenticationTokenRequest(
        runner_id=runner.runner_id,
        host=host,
        token=secret,
        refresh_token=refresh,
        source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
        expires_at=_ts(4102444800),  # 2100-01-01
        scopes=["repo", "read:user"],
    )
    resp = admin.config.create_host_authentication_token(req)
    tok = resp.token
    assert uuid.UUID(tok.id)
    assert tok.runner_id == runner.runner_id
    assert tok.host == host
    assert tok.source == rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
    assert list(tok.scopes) == ["repo", "read:user"]
    assert tok.expires_at.seconds == 4102444800
    # it belongs to the caller
    assert tok.subject.id in ("", admin.user_id)
    assert tok.user_id in ("", admin.user_id)
    assert tok.subject.id == admin.user_id or tok.user_id == admin.user_id
    raw = resp.SerializeToString()
    assert secret.encode() not in raw and refresh.encode() not in raw

    got = admin.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id))
    assert got.token.id == tok.id and got.token.host == host
    assert secret.encode() not in got.SerializeToString()

    listed = _list_tokens(admin, runner_id=runner.runner_id)
    assert tok.id in [t.id for t in listed]
    for t in listed:
        assert secret.encode() not in t.SerializeToString()
    assert tok.id in [t.id for t in _list_tokens(admin, subject_id=admin.user_id)]
    assert tok.id not in [t.id for t in _list_tokens(admin, subject_id=random_uuid())]

    new_secret = _secret()
    admin.config.update_host_authentication_token(
        rc.UpdateHostAuthenticationTokenRequest(
            id=tok.id, token=new_secret, expires_at=_ts(4133980800), scopes=["repo"]
        )
    )
    got2 = admin.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id)).token
    assert got2.expires_at.seconds == 4133980800
    assert list(got2.scopes) == ["repo"]
    assert new_secret.encode() not in got2.SerializeToString()

    admin.config.delete_host_authentication_token(rc.DeleteHostAuthenticationTokenRequest(id=tok.id))
    expect_error(Code.NOT_FOUND, admin.config.get_host_authentication_token, rc.GetHostAuthenticationTokenRequest(id=tok.id))
    assert tok.id not in [t.id for t in _list_tokens(admin, runner_id=runner.runner_id)]


def test_host_authentication_token_secret_not_in_json(admin, runner):
    secret = _secret()
    api = admin.api(codec="json")
    tok = api.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host="json.example.com", token=secret,
            source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH,
        )
    ).token
    got = api.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id))
    from google.protobuf.json_format import MessageToJson

    assert secret not in MessageToJson(got)
    assert got.token.source == rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH


def test_host_authentication_token_subject_keeps_its_principal(admin, runner):
    from gitpod.v1 import identity_pb2 as ip

    subject = ip.Subject(id=admin.user_id, principal=ip.PRINCIPAL_USER)
    tok = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host=f"subject-{uuid.uuid4().hex[:6]}.example.com", token=_secret(),
            source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT, subject=subject,
        )
    ).token
    assert tok.subject == subject
    got = admin.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id)).token
    assert got.subject == subject
    listed = [t for t in _list_tokens(admin, runner_id=runner.runner_id) if t.id == tok.id]
    assert [t.subject for t in listed] == [subject]

    # A host token is a user's: another principal is refused, and nothing is created.
    host = f"service-{uuid.uuid4().hex[:6]}.example.com"
    expect_error(
        Code.INVALID_ARGUMENT,
        admin.config.create_host_authentication_token,
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host=host, token=_secret(),
            source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
            subject=ip.Subject(id=admin.user_id, principal=ip.PRINCIPAL_SERVICE_ACCOUNT),
        ),
    )
    assert host not in [t.host for t in _list_tokens(admin, runner_id=runner.runner_id)]


def test_host_authentication_token_unknown_ids(admin):
    expect_error(
        Code.NOT_FOUND,
        admin.config.create_host_authentication_token,
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=random_uuid(), host="github.com", token="x", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        ),
    )
    for call, req in [
        (admin.config.get_host_authentication_token, rc.GetHostAuthenticationTokenRequest(id=random_uuid())),
        (admin.config.update_host_authentication_token, rc.UpdateHostAuthenticationTokenRequest(id=random_uuid(), token="y")),
        (admin.config.delete_host_authentication_token, rc.DeleteHostAuthenticationTokenRequest(id=random_uuid())),
    ]:
        expect_error(Code.NOT_FOUND, call, req)


# -- configuration schema ------------------------------------------------------------


def test_get_runner_configuration_schema(admin, runner):
    try:
        resp = admin.config.get_runner_configuration_schema(
            rc.GetRunnerConfigurationSchemaRequest(runner_id=runner.runner_id)
        )
    except ConnectError as e:
        # a runner that never connected has not uploaded its schema yet
        assert e.code in (Code.FAILED_PRECONDITION, Code.UNAVAILABLE), f"{e.code}: {e.message}"
    else:
        assert isinstance(resp, rc.GetRunnerConfigurationSchemaResponse)
    expect_error(
        Code.NOT_FOUND,
        admin.config.get_runner_configuration_schema,
        rc.GetRunnerConfigurationSchemaRequest(runner_id=random_uuid()),
    )


# -- SCM integrations ------------------------------------------------------------------


def _list_scm(actor, runner_ids):
    return list_all(
        lambda p: actor.config.list_scm_integrations(
            rc.ListSCMIntegrationsRequest(pagination=p, filter=rc.ListSCMIntegrationsRequest.Filter(runner_ids=runner_ids))
        ),
        "integrations",
    )


def test_scm_integration_lifecycle(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    host = f"gitlab-{uuid.uuid4().hex[:6]}.example.com"
    created = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="gitlab", host=host, pat=True)
    )
    assert uuid.UUID(created.id)
    got = admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=created.id)).integration
    assert got.id == created.id
    assert got.runner_id == runner.runner_id
    assert got.scm_id == "gitlab"
    assert got.host == host
    assert got.pat is True

    assert [i.id for i in _list_scm(admin, [runner.runner_id])] == [created.id]

    admin.config.update_scm_integration(
        rc.UpdateSCMIntegrationRequest(id=created.id, oauth_client_id="client-123", issuer_url="https://sso.example.com")
    )
    got2 = admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=created.id)).integration
    assert got2.oauth.client_id == "client-123"
    assert got2.oauth.issuer_url == "https://sso.example.com"
    assert not got2.virtual_directory
    assert got2.pat is True
    assert got2.host == host

    admin.config.update_scm_integration(rc.UpdateSCMIntegrationRequest(id=created.id, pat=False))
    assert admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=created.id)).integration.pat is False

    admin.config.delete_scm_integration(rc.DeleteSCMIntegrationRequest(id=created.id))
    expect_error(Code.NOT_FOUND, admin.config.get_scm_integration, rc.GetSCMIntegrationRequest(id=created.id))
    assert _list_scm(admin, [runner.runner_id]) == []


def _scm_host() -> str:
    return f"git-{uuid.uuid4().hex[:8]}.example.com"


def test_scm_integration_issuer_url_must_be_an_http_url(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    host = _scm_host()
    for bad in ["sso.example.com", "ftp://sso.example.com", "/oauth", "https://user:pw@sso.example.com",
                "https://sso.example.com/?x=1"]:
        err = expect_error(
            Code.INVALID_ARGUMENT,
            admin.config.create_scm_integration,
            rc.CreateSCMIntegrationRequest(
                runner_id=runner.runner_id, scm_id="github", host=host, pat=True,
                oauth_client_id="cid", issuer_url=bad,
            ),
        )
        assert "issuer_url" in err.message, err.message
        assert "pw" not in err.message
    assert _list_scm(admin, [runner.runner_id]) == []

    created = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(
            runner_id=runner.runner_id, scm_id="github", host=host, pat=True,
            oauth_client_id="cid", issuer_url="https://sso.example.com/realm",
        )
    )
    err = expect_error(
        Code.INVALID_ARGUMENT,
        admin.config.update_scm_integration,
        rc.UpdateSCMIntegrationRequest(id=created.id, issuer_url="javascript:alert(1)"),
    )
    assert "issuer_url" in err.message
    got = admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=created.id)).integration
    assert got.oauth.issuer_url == "https://sso.example.com/realm"


def test_scm_integration_for_a_host_twice_is_already_exists(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    host = _scm_host()
    first = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="gitlab", host=f"http://{host}", pat=True)
    )
    for spelling in [host, f"https://{host}/", f"http://{host.upper()}", f"http://{host}:80"]:
        expect_error(
            Code.ALREADY_EXISTS,
            admin.config.create_scm_integration,
            rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="github", host=spelling, pat=True),
        )
    assert [i.id for i in _list_scm(admin, [runner.runner_id])] == [first.id]
    # Another port is another host; another runner may have the same host.
    admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="gitlab", host=f"{host}:8443", pat=True)
    )
    other = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=other.runner_id, scm_id="gitlab", host=host, pat=True)
    )


def test_virtual_directory_is_for_azure_devops_only(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    for scm_id in ["github", "gitlab", "bitbucket", "bitbucket-server", "gitea"]:
        err = expect_error(
            Code.INVALID_ARGUMENT,
            admin.config.create_scm_integration,
            rc.CreateSCMIntegrationRequest(
                runner_id=runner.runner_id, scm_id=scm_id, host=_scm_host(), pat=True, virtual_directory="/tfs"
            ),
        )
        assert "virtual_directory" in err.message
    assert _list_scm(admin, [runner.runner_id]) == []
    gitlab = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="gitlab", host=_scm_host(), pat=True)
    )
    expect_error(
        Code.INVALID_ARGUMENT,
        admin.config.update_scm_integration,
        rc.UpdateSCMIntegrationRequest(id=gitlab.id, virtual_directory="/gitlab"),
    )
    assert not admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=gitlab.id)).integration.virtual_directory
    # Azure DevOps Server: the prefix before the collection.
    ado = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(
            runner_id=runner.runner_id, scm_id="azure-devops", host=_scm_host(), pat=True, virtual_directory="/tfs"
        )
    )
    assert admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=ado.id)).integration.virtual_directory == "/tfs"


def test_pat_false_refuses_personal_host_tokens(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    host = _scm_host()
    integration = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(
            runner_id=runner.runner_id, scm_id="gitlab", host=f"http://{host}", pat=False, oauth_client_id="cid"
        )
    )
    for source in [rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT, rc.HOST_AUTHENTICATION_TOKEN_SOURCE_UNSPECIFIED]:
        err = expect_error(
            Code.FAILED_PRECONDITION,
            admin.config.create_host_authentication_token,
            rc.CreateHostAuthenticationTokenRequest(runner_id=runner.runner_id, host=host, token=_secret(), source=source),
        )
        assert "pat" in err.message
    assert _list_tokens(admin, runner_id=runner.runner_id) == []
    # OAuth tokens are what such a host takes.
    oauth = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host=host, token=_secret(), source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
        )
    ).token
    admin.config.delete_host_authentication_token(rc.DeleteHostAuthenticationTokenRequest(id=oauth.id))
    # Once PATs are allowed again, they are accepted.
    admin.config.update_scm_integration(rc.UpdateSCMIntegrationRequest(id=integration.id, pat=True))
    pat = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host=host, token=_secret(), source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        )
    ).token
    assert [t.id for t in _list_tokens(admin, runner_id=runner.runner_id)] == [pat.id]


def test_scm_integration_secret_needs_runner_public_key(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    err = expect_error(
        Code.FAILED_PRECONDITION,
        admin.config.create_scm_integration,
        rc.CreateSCMIntegrationRequest(
            runner_id=runner.runner_id, scm_id="github", host="github.com",
            oauth_client_id="cid", oauth_plaintext_client_secret="plain-secret",
        ),
    )
    assert err.message
    assert _list_scm(admin, [runner.runner_id]) == []

    # without a secret it works; adding a secret later fails the same way
    created = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="github", host="github.com", pat=True)
    )
    expect_error(
        Code.FAILED_PRECONDITION,
        admin.config.update_scm_integration,
        rc.UpdateSCMIntegrationRequest(id=created.id, oauth_plaintext_client_secret="plain-secret"),
    )
    got = admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=created.id)).integration
    assert not got.oauth.encrypted_client_secret


def test_scm_integration_unknown_ids(admin):
    expect_error(
        Code.NOT_FOUND,
        admin.config.create_scm_integration,
        rc.CreateSCMIntegrationRequest(runner_id=random_uuid(), scm_id="github", host="github.com", pat=True),
    )
    for call, req in [
        (admin.config.get_scm_integration, rc.GetSCMIntegrationRequest(id=random_uuid())),
        (admin.config.update_scm_integration, rc.UpdateSCMIntegrationRequest(id=random_uuid(), pat=True)),
        (admin.config.delete_scm_integration, rc.DeleteSCMIntegrationRequest(id=random_uuid())),
    ]:
        expect_error(Code.NOT_FOUND, call, req)


# -- environment classes -------------------------------------------------------------------


def _list_classes(actor, **flt):
    return list_all(
        lambda p: actor.config.list_environment_classes(
            rc.ListEnvironmentClassesRequest(pagination=p, filter=rc.ListEnvironmentClassesRequest.Filter(**flt))
        ),
        "environment_classes",
    )


def test_environment_class_lifecycle(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    # keys from the built-in schema of a runner that has not connected yet (docs/design.md)
    cfg = [rc.FieldValue(key="cpu", value="8"), rc.FieldValue(key="memory", value="16")]
    created = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(
            runner_id=runner.runner_id, display_name="Large", description="Big machine", configuration=cfg
        )
    )
    assert uuid.UUID(created.id)
    ec = admin.config.get_environment_class(rc.GetEnvironmentClassRequest(environment_class_id=created.id)).environment_class
    assert ec.id == created.id
    assert ec.runner_id == runner.runner_id
    assert ec.display_name == "Large"
    assert ec.description == "Big machine"
    stored = {(f.key, f.value) for f in ec.configuration}
    assert {("cpu", "8"), ("memory", "16")} <= stored, stored
    # settings left out are stored with their defaults, if at all: never a key twice
    assert len({k for k, _ in stored}) == len(ec.configuration)

    second = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=runner.runner_id, display_name="Small", description="Small one")
    )
    assert {c.id for c in _list_classes(admin, runner_ids=[runner.runner_id])} == {created.id, second.id}

    # partial update: display name only
    admin.config.update_environment_class(
        rc.UpdateEnvironmentClassRequest(environment_class_id=created.id, display_name="Larger")
    )
    ec2 = admin.config.get_environment_class(rc.GetEnvironmentClassRequest(environment_class_id=created.id)).environment_class
    assert ec2.display_name == "Larger"
    assert ec2.description == "Big machine"
    assert list(ec2.configuration) == list(ec.configuration)

    admin.config.update_environment_class(rc.UpdateEnvironmentClassRequest(environment_class_id=created.id, enabled=False))
    ec3 = admin.config.get_environment_class(rc.GetEnvironmentClassRequest(environment_class_id=created.id)).environment_class
    assert ec3.enabled is False
    assert ec3.display_name == "Larger"
    disabled = {c.id for c in _list_classes(admin, runner_ids=[runner.runner_id], enabled=False)}
    enabled = {c.id for c in _list_classes(admin, runner_ids=[runner.runner_id], enabled=True)}
    assert created.id in disabled and created.id not in enabled

    admin.config.update_environment_class(
        rc.UpdateEnvironmentClassRequest(environment_class_id=created.id, enabled=True, description="Back again")
    )
    ec4 = admin.config.get_environment_class(rc.GetEnvironmentClassRequest(environment_class_id=created.id)).environment_class
    assert ec4.enabled is True and ec4.description == "Back again"


def test_environment_class_configuration_checked_against_schema(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    schema = admin.config.get_runner_configuration_schema(
        rc.GetRunnerConfigurationSchemaRequest(runner_id=runner.runner_id)
    ).schema
    cpu = next(f for f in schema.environment_classes if f.id == "cpu")
    assert cpu.WhichOneof("type") == "int" and cpu.int.max >= 1

    def classes():
        return _list_classes(admin, runner_ids=[runner.runner_id])

    for bad, key in [
        ([rc.FieldValue(key="no_such_setting", value="1")], "no_such_setting"),
        ([rc.FieldValue(key="cpu", value=str(cpu.int.max + 1))], "cpu"),
        ([rc.FieldValue(key="cpu", value="lots")], "cpu"),
    ]:
        err = expect_error(
            Code.INVALID_ARGUMENT,
            admin.config.create_environment_class,
            rc.CreateEnvironmentClassRequest(
                runner_id=runner.runner_id, display_name="Bad config", description="Bad config", configuration=bad
            ),
        )
        assert key in err.message, err.message
        assert classes() == []

    # the same checks through ValidateRunnerConfiguration: reported, not raised
    res = admin.config.validate_runner_configuration(
        rc.ValidateRunnerConfigurationRequest(
            runner_id=runner.runner_id,
            environment_class=rc.EnvironmentClass(
                display_name="Fine name", description="Fine description",
                configuration=[rc.FieldValue(key="no_such_setting", value="1")],
            ),
        )
    ).environment_class
    assert res.valid is False
    assert "no_such_setting" in [e.key for e in res.configuration_errors]


def test_environment_class_filters_by_runner(admin):
    a = admin.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    b = admin.create_runner(provider=rc.RUNNER_PROVIDER_GCP).runner
    ca = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=a.runner_id, display_name="A class", description="for A")
    ).id
    cb = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=b.runner_id, display_name="B class", description="for B")
    ).id
    assert {c.id for c in _list_classes(admin, runner_ids=[a.runner_id])} == {ca}
    assert {c.id for c in _list_classes(admin, runner_ids=[a.runner_id, b.runner_id])} == {ca, cb}
    gcp = {c.id for c in _list_classes(admin, runner_providers=[rc.RUNNER_PROVIDER_GCP])}
    assert cb in gcp and ca not in gcp


def test_environment_class_unknown_ids(admin):
    expect_error(
        Code.NOT_FOUND,
        admin.config.create_environment_class,
        rc.CreateEnvironmentClassRequest(runner_id=random_uuid(), display_name="Nope", description="Nope"),
    )
    expect_error(
        Code.NOT_FOUND,
        admin.config.get_environment_class,
        rc.GetEnvironmentClassRequest(environment_class_id=random_uuid()),
    )
    expect_error(
        Code.NOT_FOUND,
        admin.config.update_environment_class,
        rc.UpdateEnvironmentClassRequest(environment_class_id=random_uuid(), display_name="Nope"),
    )


# -- ValidateRunnerConfiguration ------------------------------------------------------------


def test_validate_environment_class(admin, runner):
    ok = admin.config.validate_runner_configuration(
        rc.ValidateRunnerConfigurationRequest(
            runner_id=runner.runner_id,
            environment_class=rc.EnvironmentClass(display_name="Fine name", description="Fine description"),
        )
    )
    assert ok.WhichOneof("result") == "environment_class"
    assert ok.environment_class.valid is True, ok

    bad = admin.config.validate_runner_configuration(
        rc.ValidateRunnerConfigurationRequest(
            runner_id=runner.runner_id,
            environment_class=rc.EnvironmentClass(display_name="x", description="Fine description"),
        )
    )
    assert bad.WhichOneof("result") == "environment_class"
    assert bad.environment_class.valid is False
    assert bad.environment_class.HasField("display_name_error") and bad.environment_class.display_name_error


def test_validate_scm_integration(admin, runner):
    resp = admin.config.validate_runner_configuration(
        rc.ValidateRunnerConfigurationRequest(
            runner_id=runner.runner_id,
            scm_integration=rc.ValidateRunnerConfigurationRequest.ValidateSCMIntegration(
                scm_id="github", host="github.com", pat=True
            ),
        )
    )
    assert resp.WhichOneof("result") == "scm_integration"
    assert resp.scm_integration.valid is True, resp

    bad = admin.config.validate_runner_configuration(
        rc.ValidateRunnerConfigurationRequest(
            runner_id=runner.runner_id,
            scm_integration=rc.ValidateRunnerConfigurationRequest.ValidateSCMIntegration(scm_id="github", host="", pat=True),
        )
    )
    assert bad.WhichOneof("result") == "scm_integration"
    assert bad.scm_integration.valid is False
    assert bad.scm_integration.host_error


def _validate_scm(admin, runner, **fields):
    resp = admin.config.validate_runner_configuration(
        rc.ValidateRunnerConfigurationRequest(
            runner_id=runner.runner_id,
            scm_integration=rc.ValidateRunnerConfigurationRequest.ValidateSCMIntegration(**fields),
        )
    )
    assert resp.WhichOneof("result") == "scm_integration"
    return resp.scm_integration


def test_validate_scm_integration_reports_hosts_issuers_and_virtual_directories(admin):
    runner = admin.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    host = _scm_host()
    existing = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="gitlab", host=host, pat=True)
    )
    dup = _validate_scm(admin, runner, scm_id="gitlab", host=f"http://{host}/", pat=True)
    assert dup.valid is False
    assert existing.id in dup.host_error
    # The same integration, named by its id: an update, no duplicate.
    assert _validate_scm(admin, runner, id=existing.id, scm_id="gitlab", host=host, pat=True).valid is True

    bad_issuer = _validate_scm(
        admin, runner, scm_id="github", host=_scm_host(), pat=True, oauth_client_id="cid", issuer_url="ldap://sso"
    )
    assert bad_issuer.valid is False
    assert "issuer_url" in bad_issuer.oauth_error
    good_issuer = _validate_scm(
        admin, runner, scm_id="github", host=_scm_host(), pat=True, oauth_client_id="cid",
        issuer_url="https://sso.example.com",
    )
    assert good_issuer.valid is True, good_issuer

    misplaced = _validate_scm(admin, runner, scm_id="github", host=_scm_host(), pat=True, virtual_directory="/tfs")
    assert misplaced.valid is False
    assert "virtual_directory" in misplaced.host_error
    ado = _validate_scm(admin, runner, scm_id="azure-devops", host=_scm_host(), pat=True, virtual_directory="/tfs")
    assert ado.valid is True, ado
    # Validation changes nothing.
    assert [i.id for i in _list_scm(admin, [runner.runner_id])] == [existing.id]


def test_schema_oauth_callback_url_is_absolute(admin, runner, server):
    schema = admin.config.get_runner_configuration_schema(
        rc.GetRunnerConfigurationSchemaRequest(runner_id=runner.runner_id)
    ).schema
    assert schema.scm
    for scm in schema.scm:
        assert scm.oauth.callback_url == f"{server.url}/auth/oauth2/callback", scm


def test_validate_unknown_runner(admin):
    expect_error(
        Code.NOT_FOUND,
        admin.config.validate_runner_configuration,
        rc.ValidateRunnerConfigurationRequest(
            runner_id=random_uuid(),
            environment_class=rc.EnvironmentClass(display_name="Fine name", description="Fine description"),
        ),
    )
