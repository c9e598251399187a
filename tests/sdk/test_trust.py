"""Trust, as the official SDK sees it: read-only tokens read and nothing else, runner
tokens reach only themselves and their organization, every change leaves an audit
event (readable by org admins through EventService), no secret lands in the trail,
the store or the log, and WatchEvents tells each member only what they may see."""

from __future__ import annotations

import threading
import time
import uuid

from google.protobuf.duration_pb2 import Duration

from helpers import Code, ep, expect_error, gp, ip, list_all, new_name, op, rc, rp, up


def _subject(user_id):
    return ip.Subject(id=user_id, principal=ip.PRINCIPAL_USER)


def _read_only_token(actor) -> str:
    return actor.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(
            user_id=actor.user_id, description="read-only", read_only=True, valid_for=Duration(seconds=3600)
        )
    ).token


def _runner_access_token(actor, runner_id_out: list | None = None) -> tuple[str, str]:
    """A runner of `actor` and its access token, obtained the way a runner does."""
    created = actor.create_runner()
    access = actor.api(token=None).identity if False else None  # noqa: F841 (kept simple below)
    from helpers import Api

    anonymous = Api(actor.server.api_url, None)
    token = anonymous.identity.exchange_token(
        ip.ExchangeTokenRequest(exchange_token=created.exchange_token)
    ).access_token
    return created.runner.runner_id, token


# -- read-only tokens --------------------------------------------------------------------


def test_a_read_only_token_reads_and_changes_nothing(server, admin, member):
    from helpers import Api

    token = _read_only_token(admin)
    ro = Api(server.api_url, token)
    runner = admin.create_runner().runner
    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("ro"))).group
    # Reads work, with the owner's rights.
    assert ro.runners.get_runner(rp.GetRunnerRequest(runner_id=runner.runner_id)).runner.name == runner.name
    assert ro.groups.get_group(gp.GetGroupRequest(id=group.id)).group.id == group.id
    ro.runners.list_runners(rp.ListRunnersRequest())
    ro.orgs.list_members(op.ListMembersRequest(organization_id=admin.org_id))
    # Writes are refused, and change nothing.
    attempts = [
        (ro.runners.create_runner, rp.CreateRunnerRequest(name=new_name("ro"), provider=rc.RUNNER_PROVIDER_LINUX_HOST)),
        (ro.runners.update_runner, rp.UpdateRunnerRequest(runner_id=runner.runner_id, name="changed by read-only")),
        (ro.runners.create_runner_token, rp.CreateRunnerTokenRequest(runner_id=runner.runner_id)),
        (ro.groups.create_group, gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("ro"))),
        (ro.groups.update_group, gp.UpdateGroupRequest(group_id=group.id, name="renamed by read-only")),
        (
            ro.orgs.set_role,
            op.SetRoleRequest(organization_id=admin.org_id, user_id=member.user_id, role=op.ORGANIZATION_ROLE_ADMIN),
        ),
        (
            ro.config.create_host_authentication_token,
            rc.CreateHostAuthenticationTokenRequest(
                runner_id=runner.runner_id, host="github.com", token="ghp_never", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
            ),
        ),
        (
            ro.users.create_personal_access_token,
            up.CreatePersonalAccessTokenRequest(user_id=admin.user_id, description="x", read_only=True),
        ),
        (ro.runners.parse_context_url, rp.ParseContextURLRequest(context_url="https://github.com/a/b")),
        (ro.events.watch_events, ep.WatchEventsRequest(organization=True)),
    ]
    for call, request in attempts:
        def attempt():
            result = call(request)
            if hasattr(result, "__next__"):
                next(result)
            return result

        err = expect_error(Code.PERMISSION_DENIED, attempt)
        assert "read-only" in err.message, err.message
    tokens = list_all(lambda p: admin.users.list_personal_access_tokens(up.ListPersonalAccessTokensRequest(pagination=p)), "personal_access_tokens")
    ro_id = next(t.id for t in tokens if t.description == "read-only")
    expect_error(
        Code.PERMISSION_DENIED,
        ro.users.delete_personal_access_token,
        up.DeletePersonalAccessTokenRequest(personal_access_token_id=ro_id),
    )
    assert admin.runners.get_runner(rp.GetRunnerRequest(runner_id=runner.runner_id)).runner.name == runner.name
    assert admin.groups.get_group(gp.GetGroupRequest(id=group.id)).group.name == group.name
    roles = {m.user_id: m.role for m in admin.orgs.list_members(op.ListMembersRequest(organization_id=admin.org_id)).members}
    assert roles.get(member.user_id) == op.ORGANIZATION_ROLE_MEMBER
    # The token still reads.
    ro.runners.get_runner(rp.GetRunnerRequest(runner_id=runner.runner_id))


# -- runner tokens ------------------------------------------------------------------------


def test_a_runner_token_reaches_only_itself_and_its_organization(server, admin, make_org):
    from helpers import Api

    runner_id, token = _runner_access_token(admin)
    other_runner = admin.create_runner().runner
    as_runner = Api(server.api_url, token)
    me = as_runner.identity.get_authenticated_identity(ip.GetAuthenticatedIdentityRequest())
    assert me.subject.principal == ip.PRINCIPAL_RUNNER and me.subject.id == runner_id
    assert as_runner.runners.get_runner(rp.GetRunnerRequest(runner_id=runner_id)).runner.runner_id == runner_id
    listed = as_runner.runners.list_runners(rp.ListRunnersRequest()).runners
    assert [r.runner_id for r in listed] == [runner_id]
    expect_error(Code.NOT_FOUND, as_runner.runners.get_runner, rp.GetRunnerRequest(runner_id=other_runner.runner_id))
    assert as_runner.orgs.get_organization(op.GetOrganizationRequest(organization_id=admin.org_id)).organization.id == admin.org_id
    other = make_org()
    expect_error(Code.NOT_FOUND, as_runner.orgs.get_organization, op.GetOrganizationRequest(organization_id=other.org_id))
    for call, request in [
        (as_runner.users.get_user, up.GetUserRequest(user_id=admin.user_id)),
        (as_runner.runners.list_runner_policies, rp.ListRunnerPoliciesRequest(runner_id=runner_id)),
        (as_runner.config.list_scm_integrations, rc.ListSCMIntegrationsRequest()),
        (as_runner.config.list_environment_classes, rc.ListEnvironmentClassesRequest()),
        (as_runner.orgs.list_members, op.ListMembersRequest(organization_id=admin.org_id)),
        (as_runner.groups.list_groups, gp.ListGroupsRequest()),
        (as_runner.runners.update_runner, rp.UpdateRunnerRequest(runner_id=runner_id, name="self-renamed")),
        (as_runner.events.list_audit_logs, ep.ListAuditLogsRequest()),
    ]:
        expect_error(Code.PERMISSION_DENIED, call, request)


# -- the audit trail -----------------------------------------------------------------------


def test_every_change_is_audited_and_no_secret_is_kept(own_server):
    """One fresh installation: every kind of change through the SDK, then the trail as the
    published API and `corral admin audit` show it, and the store and log searched for the
    secrets the test handed over."""
    from helpers import Actor, Api

    srv = own_server
    admin = Actor(srv, srv.admin_token())
    member = Actor(srv, srv.add_user(f"m-{uuid.uuid4().hex[:8]}@example.com", org=admin.org_id))
    secrets = [srv.admin_token(), member.token]
    host_secret = f"ghp_SECRET{uuid.uuid4().hex}"
    refresh_secret = f"ghr_SECRET{uuid.uuid4().hex}"
    new_host_secret = f"ghp_ROTATED{uuid.uuid4().hex}"
    secrets += [host_secret, refresh_secret, new_host_secret]
    expected: list[tuple[str, str | None]] = []  # (action, subject id)

    created = admin.create_runner()
    runner_id = created.runner.runner_id
    secrets.append(created.exchange_token)
    expected.append(("RunnerService.CreateRunner", runner_id))
    admin.runners.update_runner(rp.UpdateRunnerRequest(runner_id=runner_id, name="audited"))
    expected.append(("RunnerService.UpdateRunner", runner_id))
    exchange = admin.runners.create_runner_token(rp.CreateRunnerTokenRequest(runner_id=runner_id)).exchange_token
    secrets.append(exchange)
    expected.append(("RunnerService.CreateRunnerToken", runner_id))
    access = Api(srv.api_url, None).identity.exchange_token(ip.ExchangeTokenRequest(exchange_token=exchange)).access_token
    secrets.append(access)
    expected.append(("IdentityService.ExchangeToken", runner_id))
    logs = admin.runners.create_runner_logs_token(rp.CreateRunnerLogsTokenRequest(runner_id=runner_id)).access_token
    secrets.append(logs)
    expected.append(("RunnerService.CreateRunnerLogsToken", runner_id))

    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("audit"))).group
    expected.append(("GroupService.CreateGroup", group.id))
    admin.groups.update_group(gp.UpdateGroupRequest(group_id=group.id, name=new_name("audit2")))
    expected.append(("GroupService.UpdateGroup", group.id))
    membership = admin.groups.create_membership(gp.CreateMembershipRequest(group_id=group.id, subject=_subject(member.user_id))).member
    expected.append(("GroupService.CreateMembership", group.id))
    admin.runners.create_runner_policy(rp.CreateRunnerPolicyRequest(runner_id=runner_id, group_id=group.id, role=rp.RUNNER_ROLE_USER))
    expected.append(("RunnerService.CreateRunnerPolicy", runner_id))
    admin.runners.update_runner_policy(rp.UpdateRunnerPolicyRequest(runner_id=runner_id, group_id=group.id, role=rp.RUNNER_ROLE_ADMIN))
    expected.append(("RunnerService.UpdateRunnerPolicy", runner_id))
    admin.runners.delete_runner_policy(rp.DeleteRunnerPolicyRequest(runner_id=runner_id, group_id=group.id))
    expected.append(("RunnerService.DeleteRunnerPolicy", runner_id))
    admin.groups.delete_membership(gp.DeleteMembershipRequest(membership_id=membership.id))
    expected.append(("GroupService.DeleteMembership", group.id))
    admin.groups.delete_group(gp.DeleteGroupRequest(group_id=group.id))
    expected.append(("GroupService.DeleteGroup", group.id))
    admin.orgs.set_role(op.SetRoleRequest(organization_id=admin.org_id, user_id=member.user_id, role=op.ORGANIZATION_ROLE_MEMBER))
    expected.append(("OrganizationService.SetRole", member.user_id))

    pat = admin.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(user_id=admin.user_id, description="audited", valid_for=Duration(seconds=600))
    ).token
    secrets.append(pat)
    pat_id = next(
        t.id
        for t in list_all(lambda p: admin.users.list_personal_access_tokens(up.ListPersonalAccessTokensRequest(pagination=p)), "personal_access_tokens")
        if t.description == "audited"
    )
    expected.append(("UserService.CreatePersonalAccessToken", pat_id))
    admin.users.delete_personal_access_token(up.DeletePersonalAccessTokenRequest(personal_access_token_id=pat_id))
    expected.append(("UserService.DeletePersonalAccessToken", pat_id))

    token = admin.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner_id, host="github.com", token=host_secret, refresh_token=refresh_secret,
            source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
        )
    ).token
    expected.append(("RunnerConfigurationService.CreateHostAuthenticationToken", token.id))
    admin.config.update_host_authentication_token(rc.UpdateHostAuthenticationTokenRequest(id=token.id, token=new_host_secret))
    expected.append(("RunnerConfigurationService.UpdateHostAuthenticationToken", token.id))
    integration_id = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner_id, scm_id="github", host="github.com", pat=True)
    ).id
    expected.append(("RunnerConfigurationService.CreateSCMIntegration", integration_id))
    admin.config.update_scm_integration(rc.UpdateSCMIntegrationRequest(id=integration_id, oauth_client_id="client-1"))
    expected.append(("RunnerConfigurationService.UpdateSCMIntegration", integration_id))
    class_id = admin.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(
            runner_id=runner_id, display_name="audited class", description="for the trail",
            configuration=[rc.FieldValue(key="cpu", value="2")],
        )
    ).id
    expected.append(("RunnerConfigurationService.CreateEnvironmentClass", class_id))
    admin.config.update_environment_class(rc.UpdateEnvironmentClassRequest(environment_class_id=class_id, enabled=False))
    expected.append(("RunnerConfigurationService.UpdateEnvironmentClass", class_id))
    # Credentials handed to a runner (here: it is not connected, and that is recorded too).
    expect_error(
        Code.UNAVAILABLE,
        admin.runners.parse_context_url,
        rp.ParseContextURLRequest(runner_id=runner_id, context_url="https://github.com/o/r"),
    )
    expected.append(("RunnerService.ParseContextURL (failed: unavailable)", runner_id))
    # A refusal is recorded, with its outcome.
    expect_error(Code.NOT_FOUND, member.runners.update_runner, rp.UpdateRunnerRequest(runner_id=runner_id, name="mine"))
    expected.append(("RunnerService.UpdateRunner (failed: not_found)", runner_id))
    expect_error(Code.PERMISSION_DENIED, member.groups.create_group, gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("no")))
    expected.append(("GroupService.CreateGroup (failed: permission_denied)", None))
    admin.config.delete_scm_integration(rc.DeleteSCMIntegrationRequest(id=integration_id))
    expected.append(("RunnerConfigurationService.DeleteSCMIntegration", integration_id))
    admin.config.delete_host_authentication_token(rc.DeleteHostAuthenticationTokenRequest(id=token.id))
    expected.append(("RunnerConfigurationService.DeleteHostAuthenticationToken", token.id))
    admin.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=runner_id, force=True))
    expected.append(("RunnerService.DeleteRunner", runner_id))

    # The trail through the published API, oldest first.
    entries = list_all(lambda p: admin.events.list_audit_logs(ep.ListAuditLogsRequest(pagination=p)), "entries", page_size=7)
    seen = [(e.action, e.subject_id) for e in entries]
    position = 0
    for action, subject in expected:
        matches = [i for i, (a, s) in enumerate(seen) if a == action and (subject is None or s == subject) and i >= position]
        assert matches, f"no audit entry {action} on {subject} after position {position}; trail: {seen}"
        position = matches[0] + 1
    by_action = {e.action: e for e in entries}
    entry = by_action["RunnerService.UpdateRunner"]
    assert entry.actor_id == admin.user_id and entry.actor_principal == ip.PRINCIPAL_USER
    assert entry.subject_type == ep.RESOURCE_TYPE_RUNNER
    assert entry.kind == ep.AUDIT_LOG_ENTRY_KIND_RESOURCE_CHANGE
    assert by_action["RunnerService.ParseContextURL (failed: unavailable)"].kind == ep.AUDIT_LOG_ENTRY_KIND_CREDENTIAL_ACCESS
    assert by_action["IdentityService.ExchangeToken"].actor_principal == ip.PRINCIPAL_RUNNER
    one = admin.events.get_audit_log(ep.GetAuditLogRequest(audit_log_entry_id=entry.id)).entry
    assert one.action == entry.action and one.created_at == entry.created_at
    # Filters and newest-first order.
    mine = admin.events.list_audit_logs(
        ep.ListAuditLogsRequest(filter=ep.ListAuditLogsRequest.Filter(actor_ids=[member.user_id]))
    ).entries
    assert mine and {e.actor_id for e in mine} == {member.user_id}
    newest = admin.events.list_audit_logs(
        ep.ListAuditLogsRequest(sort=__import__("gitpod.v1.pagination_pb2", fromlist=["Sort"]).Sort(field="createdAt", order=2))
    ).entries
    assert newest[0].action == "RunnerService.DeleteRunner"
    # Only org admins read the trail.
    expect_error(Code.PERMISSION_DENIED, member.events.list_audit_logs, ep.ListAuditLogsRequest())
    expect_error(Code.PERMISSION_DENIED, member.events.get_audit_log, ep.GetAuditLogRequest(audit_log_entry_id=entry.id))

    # The operators' view holds request ids and client addresses too.
    events = srv.audit_events(admin.org_id)
    assert len(events) == len(entries)
    assert all(e["request_id"] and e["client_address"] == "127.0.0.1" for e in events), events[:3]

    # No secret anywhere: not in the trail (API or CLI), the store, or the server's log.
    haystacks = {
        "audit API": "\n".join(str(e) for e in entries),
        "corral admin audit": str(events),
        "server log": srv.server_log(),
    }
    dump = srv.store_dump()
    for secret in secrets:
        for where, text in haystacks.items():
            assert secret not in text, f"a secret appears in the {where}"
        assert secret.encode() not in dump, "a secret is stored in plain text"


# -- change notifications -----------------------------------------------------------------


def test_watch_events_tells_a_member_only_what_they_may_see(server, admin, make_user):
    member = make_user()
    received: list = []
    stream = member.events.watch_events(ep.WatchEventsRequest(organization=True))

    def read():
        try:
            for event in stream:
                received.append(event)
        except Exception:  # the stream ends with the session
            pass

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.5)  # let the stream open before anything changes
    hidden = admin.create_runner().runner  # a local runner of the admin's: not the member's to see
    admin.runners.update_runner(rp.UpdateRunnerRequest(runner_id=hidden.runner_id, name="still hidden"))
    mine = member.create_runner().runner
    admin.runners.update_runner(rp.UpdateRunnerRequest(runner_id=mine.runner_id, name="renamed by the admin"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len([e for e in received if e.resource_id == mine.runner_id]) < 2:
        time.sleep(0.05)
    about_mine = [(e.operation, e.resource_type) for e in received if e.resource_id == mine.runner_id]
    assert about_mine[:2] == [
        (ep.RESOURCE_OPERATION_CREATE, ep.RESOURCE_TYPE_RUNNER),
        (ep.RESOURCE_OPERATION_UPDATE, ep.RESOURCE_TYPE_RUNNER),
    ], received
    assert hidden.runner_id not in {e.resource_id for e in received}


def test_watch_events_filters_by_resource_type(server, admin):
    received: list = []
    stream = admin.events.watch_events(
        ep.WatchEventsRequest(
            organization=True,
            resource_type_filters=[ep.WatchEventsRequest.ResourceTypeFilter(resource_type=ep.RESOURCE_TYPE_GROUP)],
        )
    )
    threading.Thread(target=lambda: [received.append(e) for e in stream], daemon=True).start()
    time.sleep(0.5)
    admin.create_runner()
    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("w"))).group
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not received:
        time.sleep(0.05)
    assert [(e.resource_type, e.resource_id) for e in received] == [(ep.RESOURCE_TYPE_GROUP, group.id)]


def test_runner_tokens_and_no_scope_cannot_watch(server, admin):
    from helpers import Api

    _, token = _runner_access_token(admin)
    def first(api, request):
        return next(iter(api.events.watch_events(request)))

    expect_error(Code.PERMISSION_DENIED, first, Api(server.api_url, token), ep.WatchEventsRequest(organization=True))
    expect_error(Code.UNAUTHENTICATED, first, Api(server.api_url, None), ep.WatchEventsRequest(organization=True))
    expect_error(Code.INVALID_ARGUMENT, first, admin.api(), ep.WatchEventsRequest())
