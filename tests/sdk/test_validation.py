"""Bad input: every published validation rule for the RPCs we serve yields invalid_argument
naming the field, and changes nothing.

Rules come from `upstream-contract rules runner runner_configuration identity pagination group user`
(and organization for GetOrganization/ListMembers/SetRole)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import pytest
from google.protobuf.duration_pb2 import Duration

from helpers import (
    Code, ConnectError, error_text, gp, ip, list_all, names_field, op, pg, rc, rp, up,
)

BAD_UUID = "not-a-uuid"
NOT_URI = "not a uri"


@dataclass
class Ctx:
    actor: object
    runner_id: str
    remote_runner_id: str
    group_id: str
    membership_id: str
    member_id: str
    env_class_id: str
    host_token_id: str
    scm_id: str
    pat_id: str


@pytest.fixture(scope="module")
def ctx(make_org, make_user) -> Ctx:
    a = make_org()
    member = make_user(org=a.org_id)
    runner = a.create_runner(provider=rc.RUNNER_PROVIDER_LINUX_HOST).runner
    remote = a.create_runner(provider=rc.RUNNER_PROVIDER_AWS_EC2).runner
    group = a.groups.create_group(gp.CreateGroupRequest(organization_id=a.org_id, name="validation-group")).group
    ms = a.groups.create_membership(
        gp.CreateMembershipRequest(group_id=group.id, subject=ip.Subject(id=member.user_id, principal=ip.PRINCIPAL_USER))
    ).member
    ec = a.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=runner.runner_id, display_name="Valid", description="Valid class")
    ).id
    tok = a.config.create_host_authentication_token(
        rc.CreateHostAuthenticationTokenRequest(
            runner_id=runner.runner_id, host="github.com", token="t", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT
        )
    ).token.id
    scm = a.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(runner_id=runner.runner_id, scm_id="github", host="github.com", pat=True)
    ).id
    a.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(user_id=a.user_id, description="validation", valid_for=Duration(seconds=3600))
    )
    pats = a.users.list_personal_access_tokens(
        up.ListPersonalAccessTokensRequest(filter=up.ListPersonalAccessTokensRequest.Filter(user_ids=[a.user_id]))
    ).personal_access_tokens
    pat_id = [p.id for p in pats if p.description == "validation"][0]
    return Ctx(a, runner.runner_id, remote.runner_id, group.id, ms.id, member.user_id, ec, tok, scm, pat_id)


def snapshot(c: Ctx) -> dict:
    """Everything the validation org holds, as comparable bytes."""
    a = c.actor

    def ser(items):
        return sorted(i.SerializeToString(deterministic=True) for i in items)

    runners = list_all(lambda p: a.runners.list_runners(rp.ListRunnersRequest(pagination=p)), "runners")
    state = {"runners": ser(runners)}
    state["policies"] = {
        r.runner_id: ser(a.runners.list_runner_policies(rp.ListRunnerPoliciesRequest(runner_id=r.runner_id)).policies)
        for r in runners
    }
    state["env_classes"] = ser(
        list_all(lambda p: a.config.list_environment_classes(rc.ListEnvironmentClassesRequest(pagination=p)), "environment_classes")
    )
    state["host_tokens"] = ser(
        list_all(lambda p: a.config.list_host_authentication_tokens(rc.ListHostAuthenticationTokensRequest(pagination=p)), "tokens")
    )
    state["scm"] = ser(
        list_all(lambda p: a.config.list_scm_integrations(rc.ListSCMIntegrationsRequest(pagination=p)), "integrations")
    )
    groups = list_all(lambda p: a.groups.list_groups(gp.ListGroupsRequest(pagination=p)), "groups")
    state["groups"] = ser(groups)
    state["memberships"] = {
        g.id: ser(list_all(lambda p, gid=g.id: a.groups.list_memberships(gp.ListMembershipsRequest(group_id=gid, pagination=p)), "members"))
        for g in groups
    }
    pats = list_all(lambda p: a.users.list_personal_access_tokens(up.ListPersonalAccessTokensRequest(pagination=p)), "personal_access_tokens")
    for p in pats:
        p.ClearField("last_used")  # reading with a PAT may touch this
    state["pats"] = ser(pats)
    state["members"] = ser(
        list_all(lambda p: a.orgs.list_members(op.ListMembersRequest(organization_id=a.org_id, pagination=p)), "members")
    )
    return state


@dataclass
class Case:
    id: str
    service: str
    method: str
    build: Callable[[Ctx], object]
    field: str


def _pag(n):
    return pg.PaginationRequest(page_size=n)


def _cfg_update(c, **w):
    return rp.UpdateRunnerRequest(
        runner_id=c.runner_id,
        spec=rp.UpdateRunnerRequest.Spec(configuration=rp.UpdateRunnerRequest.RunnerConfiguration(update_window=rp.UpdateWindow(**w))),
    )


U26 = [f"00000000-0000-4000-8000-{i:012d}" for i in range(26)]

CASES = [
    # ---- RunnerService
    Case("CreateRunner.name.short", "runners", "create_runner",
         lambda c: rp.CreateRunnerRequest(name="ab", provider=rc.RUNNER_PROVIDER_LINUX_HOST), "name"),
    Case("CreateRunner.name.long", "runners", "create_runner",
         lambda c: rp.CreateRunnerRequest(name="n" * 128, provider=rc.RUNNER_PROVIDER_LINUX_HOST), "name"),
    Case("CreateRunner.name.empty", "runners", "create_runner",
         lambda c: rp.CreateRunnerRequest(provider=rc.RUNNER_PROVIDER_LINUX_HOST), "name"),
    Case("CreateRunner.kind.undefined", "runners", "create_runner",
         lambda c: rp.CreateRunnerRequest(name="valid name", kind=99), "kind"),
    Case("CreateRunner.provider.undefined", "runners", "create_runner",
         lambda c: rp.CreateRunnerRequest(name="valid name", provider=99), "provider"),
    Case("CreateRunner.runner_manager_id.uuid", "runners", "create_runner",
         lambda c: rp.CreateRunnerRequest(name="valid name", provider=rc.RUNNER_PROVIDER_LINUX_HOST, runner_manager_id=BAD_UUID),
         "runner_manager_id"),
    Case("GetRunner.runner_id.uuid", "runners", "get_runner", lambda c: rp.GetRunnerRequest(runner_id=BAD_UUID), "runner_id"),
    Case("GetRunner.runner_id.empty", "runners", "get_runner", lambda c: rp.GetRunnerRequest(), "runner_id"),
    Case("ListRunners.creator_ids.uuid", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(creator_ids=[BAD_UUID])), "creator_ids"),
    Case("ListRunners.creator_ids.max", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(creator_ids=U26)), "creator_ids"),
    Case("ListRunners.kinds.undefined", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(kinds=[99])), "kinds"),
    Case("ListRunners.kinds.max", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(kinds=[1] * 26)), "kinds"),
    Case("ListRunners.providers.undefined", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(providers=[99])), "providers"),
    Case("ListRunners.providers.max", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(providers=[1] * 26)), "providers"),
    Case("ListRunners.page_size.max", "runners", "list_runners", lambda c: rp.ListRunnersRequest(pagination=_pag(101)), "page_size"),
    Case("ListRunners.page_size.negative", "runners", "list_runners", lambda c: rp.ListRunnersRequest(pagination=_pag(-1)), "page_size"),
    Case("UpdateRunner.runner_id.uuid", "runners", "update_runner",
         lambda c: rp.UpdateRunnerRequest(runner_id=BAD_UUID, name="valid name"), "runner_id"),
    Case("UpdateRunner.name.short", "runners", "update_runner",
         lambda c: rp.UpdateRunnerRequest(runner_id=c.runner_id, name="ab"), "name"),
    Case("UpdateRunner.name.long", "runners", "update_runner",
         lambda c: rp.UpdateRunnerRequest(runner_id=c.runner_id, name="n" * 128), "name"),
    Case("UpdateRunner.update_window.start", "runners", "update_runner", lambda c: _cfg_update(c, start_hour=24), "start_hour"),
    Case("UpdateRunner.update_window.end", "runners", "update_runner",
         lambda c: _cfg_update(c, start_hour=1, end_hour=25), "end_hour"),
    Case("UpdateRunner.update_window.short", "runners", "update_runner",
         lambda c: _cfg_update(c, start_hour=1, end_hour=2), "window"),
    Case("DeleteRunner.runner_id.uuid", "runners", "delete_runner", lambda c: rp.DeleteRunnerRequest(runner_id=BAD_UUID), "runner_id"),
    Case("CreateRunnerToken.runner_id.uuid", "runners", "create_runner_token",
         lambda c: rp.CreateRunnerTokenRequest(runner_id=BAD_UUID), "runner_id"),
    Case("CreateRunnerLogsToken.runner_id.uuid", "runners", "create_runner_logs_token",
         lambda c: rp.CreateRunnerLogsTokenRequest(runner_id=BAD_UUID), "runner_id"),
    Case("ParseContextURL.runner_id.uuid", "runners", "parse_context_url",
         lambda c: rp.ParseContextURLRequest(runner_id=BAD_UUID, context_url="https://github.com/a/b"), "runner_id"),
    Case("ParseContextURL.context_url.uri", "runners", "parse_context_url",
         lambda c: rp.ParseContextURLRequest(runner_id=c.runner_id, context_url=NOT_URI), "context_url"),
    Case("SearchRepositories.runner_id.uuid", "runners", "search_repositories",
         lambda c: rp.SearchRepositoriesRequest(runner_id=BAD_UUID, search_string="x"), "runner_id"),
    Case("SearchRepositories.limit.max", "runners", "search_repositories",
         lambda c: rp.SearchRepositoriesRequest(runner_id=c.runner_id, search_string="x", limit=101), "limit"),
    Case("SearchRepositories.limit.negative", "runners", "search_repositories",
         lambda c: rp.SearchRepositoriesRequest(runner_id=c.runner_id, search_string="x", limit=-1), "limit"),
    Case("SearchRepositories.page_size.max", "runners", "search_repositories",
         lambda c: rp.SearchRepositoriesRequest(runner_id=c.runner_id, search_string="x", pagination=_pag(101)), "page_size"),
    Case("ListSCMOrganizations.runner_id.uuid", "runners", "list_scm_organizations",
         lambda c: rp.ListSCMOrganizationsRequest(runner_id=BAD_UUID, scm_host="github.com"), "runner_id"),
    Case("ListSCMOrganizations.scm_host.empty", "runners", "list_scm_organizations",
         lambda c: rp.ListSCMOrganizationsRequest(runner_id=c.runner_id), "scm_host"),
    Case("CheckAuthenticationForHost.runner_id.uuid", "runners", "check_authentication_for_host",
         lambda c: rp.CheckAuthenticationForHostRequest(runner_id=BAD_UUID, host="github.com"), "runner_id"),
    Case("CheckRepositoryAccess.runner_id.uuid", "runners", "check_repository_access",
         lambda c: rp.CheckRepositoryAccessRequest(runner_id=BAD_UUID, repository_url="https://github.com/a/b"), "runner_id"),
    Case("CheckRepositoryAccess.repository_url.uri", "runners", "check_repository_access",
         lambda c: rp.CheckRepositoryAccessRequest(runner_id=c.runner_id, repository_url=NOT_URI), "repository_url"),
    Case("ListRunnerPolicies.runner_id.uuid", "runners", "list_runner_policies",
         lambda c: rp.ListRunnerPoliciesRequest(runner_id=BAD_UUID), "runner_id"),
    Case("ListRunnerPolicies.page_size.max", "runners", "list_runner_policies",
         lambda c: rp.ListRunnerPoliciesRequest(runner_id=c.runner_id, pagination=_pag(101)), "page_size"),
    Case("CreateRunnerPolicy.runner_id.uuid", "runners", "create_runner_policy",
         lambda c: rp.CreateRunnerPolicyRequest(runner_id=BAD_UUID, group_id=c.group_id, role=rp.RUNNER_ROLE_USER), "runner_id"),
    Case("CreateRunnerPolicy.group_id.uuid", "runners", "create_runner_policy",
         lambda c: rp.CreateRunnerPolicyRequest(runner_id=c.runner_id, group_id=BAD_UUID, role=rp.RUNNER_ROLE_USER), "group_id"),
    Case("UpdateRunnerPolicy.runner_id.uuid", "runners", "update_runner_policy",
         lambda c: rp.UpdateRunnerPolicyRequest(runner_id=BAD_UUID, group_id=c.group_id, role=rp.RUNNER_ROLE_USER), "runner_id"),
    Case("UpdateRunnerPolicy.group_id.uuid", "runners", "update_runner_policy",
         lambda c: rp.UpdateRunnerPolicyRequest(runner_id=c.runner_id, group_id=BAD_UUID, role=rp.RUNNER_ROLE_USER), "group_id"),
    Case("DeleteRunnerPolicy.runner_id.uuid", "runners", "delete_runner_policy",
         lambda c: rp.DeleteRunnerPolicyRequest(runner_id=BAD_UUID, group_id=c.group_id), "runner_id"),
    Case("DeleteRunnerPolicy.group_id.uuid", "runners", "delete_runner_policy",
         lambda c: rp.DeleteRunnerPolicyRequest(runner_id=c.runner_id, group_id=BAD_UUID), "group_id"),
    # ---- RunnerConfigurationService: host authentication tokens
    Case("CreateHostAuthenticationToken.runner_id.uuid", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=BAD_UUID, host="h.example.com", token="t",
                                                           source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT), "runner_id"),
    Case("CreateHostAuthenticationToken.user_id.uuid", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, user_id=BAD_UUID, host="h.example.com",
                                                           token="t", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT), "user_id"),
    Case("CreateHostAuthenticationToken.host.empty", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, token="t",
                                                           source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT), "host"),
    Case("CreateHostAuthenticationToken.token.empty", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, host="h.example.com",
                                                           source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT), "token"),
    Case("CreateHostAuthenticationToken.source.undefined", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, host="h.example.com", token="t", source=42),
         "source"),
    Case("CreateHostAuthenticationToken.integration_id.uuid", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, host="h.example.com", token="t",
                                                           source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
                                                           integration_id=BAD_UUID), "integration_id"),
    Case("CreateHostAuthenticationToken.scopes.max", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, host="h.example.com", token="t",
                                                           source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
                                                           scopes=[f"s{i}" for i in range(102)]), "scopes"),
    Case("CreateHostAuthenticationToken.subject.id.uuid", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, host="h.example.com", token="t",
                                                           source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
                                                           subject=ip.Subject(id=BAD_UUID, principal=ip.PRINCIPAL_USER)), "subject"),
    Case("CreateHostAuthenticationToken.subject.principal.undefined", "config", "create_host_authentication_token",
         lambda c: rc.CreateHostAuthenticationTokenRequest(runner_id=c.runner_id, host="h.example.com", token="t",
                                                           source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
                                                           subject=ip.Subject(id=c.actor.user_id, principal=77)), "principal"),
    Case("GetHostAuthenticationToken.id.uuid", "config", "get_host_authentication_token",
         lambda c: rc.GetHostAuthenticationTokenRequest(id=BAD_UUID), "id"),
    Case("ListHostAuthenticationTokens.runner_id.uuid", "config", "list_host_authentication_tokens",
         lambda c: rc.ListHostAuthenticationTokensRequest(filter=rc.ListHostAuthenticationTokensRequest.Filter(runner_id=BAD_UUID)),
         "runner_id"),
    Case("ListHostAuthenticationTokens.user_id.uuid", "config", "list_host_authentication_tokens",
         lambda c: rc.ListHostAuthenticationTokensRequest(filter=rc.ListHostAuthenticationTokensRequest.Filter(user_id=BAD_UUID)),
         "user_id"),
    Case("ListHostAuthenticationTokens.subject_id.uuid", "config", "list_host_authentication_tokens",
         lambda c: rc.ListHostAuthenticationTokensRequest(filter=rc.ListHostAuthenticationTokensRequest.Filter(subject_id=BAD_UUID)),
         "subject_id"),
    Case("ListHostAuthenticationTokens.page_size.max", "config", "list_host_authentication_tokens",
         lambda c: rc.ListHostAuthenticationTokensRequest(pagination=_pag(101)), "page_size"),
    Case("UpdateHostAuthenticationToken.id.uuid", "config", "update_host_authentication_token",
         lambda c: rc.UpdateHostAuthenticationTokenRequest(id=BAD_UUID, token="new"), "id"),
    Case("UpdateHostAuthenticationToken.token.empty", "config", "update_host_authentication_token",
         lambda c: rc.UpdateHostAuthenticationTokenRequest(id=c.host_token_id, token=""), "token"),
    Case("DeleteHostAuthenticationToken.id.uuid", "config", "delete_host_authentication_token",
         lambda c: rc.DeleteHostAuthenticationTokenRequest(id=BAD_UUID), "id"),
    # ---- RunnerConfigurationService: schema, SCM integrations, environment classes
    Case("GetRunnerConfigurationSchema.runner_id.uuid", "config", "get_runner_configuration_schema",
         lambda c: rc.GetRunnerConfigurationSchemaRequest(runner_id=BAD_UUID), "runner_id"),
    Case("CreateSCMIntegration.runner_id.uuid", "config", "create_scm_integration",
         lambda c: rc.CreateSCMIntegrationRequest(runner_id=BAD_UUID, scm_id="github", host="github.com", pat=True), "runner_id"),
    Case("GetSCMIntegration.id.uuid", "config", "get_scm_integration", lambda c: rc.GetSCMIntegrationRequest(id=BAD_UUID), "id"),
    Case("ListSCMIntegrations.runner_ids.uuid", "config", "list_scm_integrations",
         lambda c: rc.ListSCMIntegrationsRequest(filter=rc.ListSCMIntegrationsRequest.Filter(runner_ids=[BAD_UUID])), "runner_ids"),
    Case("ListSCMIntegrations.runner_ids.max", "config", "list_scm_integrations",
         lambda c: rc.ListSCMIntegrationsRequest(filter=rc.ListSCMIntegrationsRequest.Filter(runner_ids=U26)), "runner_ids"),
    Case("ListSCMIntegrations.page_size.max", "config", "list_scm_integrations",
         lambda c: rc.ListSCMIntegrationsRequest(pagination=_pag(101)), "page_size"),
    Case("UpdateSCMIntegration.id.uuid", "config", "update_scm_integration",
         lambda c: rc.UpdateSCMIntegrationRequest(id=BAD_UUID, pat=True), "id"),
    Case("DeleteSCMIntegration.id.uuid", "config", "delete_scm_integration",
         lambda c: rc.DeleteSCMIntegrationRequest(id=BAD_UUID), "id"),
    Case("CreateEnvironmentClass.runner_id.uuid", "config", "create_environment_class",
         lambda c: rc.CreateEnvironmentClassRequest(runner_id=BAD_UUID, display_name="Fine", description="Fine"), "runner_id"),
    Case("CreateEnvironmentClass.runner_id.empty", "config", "create_environment_class",
         lambda c: rc.CreateEnvironmentClassRequest(display_name="Fine", description="Fine"), "runner_id"),
    Case("CreateEnvironmentClass.display_name.short", "config", "create_environment_class",
         lambda c: rc.CreateEnvironmentClassRequest(runner_id=c.runner_id, display_name="ab", description="Fine"), "display_name"),
    Case("CreateEnvironmentClass.display_name.long", "config", "create_environment_class",
         lambda c: rc.CreateEnvironmentClassRequest(runner_id=c.runner_id, display_name="d" * 128, description="Fine"),
         "display_name"),
    Case("CreateEnvironmentClass.description.short", "config", "create_environment_class",
         lambda c: rc.CreateEnvironmentClassRequest(runner_id=c.runner_id, display_name="Fine", description="ab"), "description"),
    Case("CreateEnvironmentClass.description.long", "config", "create_environment_class",
         lambda c: rc.CreateEnvironmentClassRequest(runner_id=c.runner_id, display_name="Fine", description="d" * 201),
         "description"),
    Case("GetEnvironmentClass.environment_class_id.uuid", "config", "get_environment_class",
         lambda c: rc.GetEnvironmentClassRequest(environment_class_id=BAD_UUID), "environment_class_id"),
    Case("ListEnvironmentClasses.runner_ids.uuid", "config", "list_environment_classes",
         lambda c: rc.ListEnvironmentClassesRequest(filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=[BAD_UUID])),
         "runner_ids"),
    Case("ListEnvironmentClasses.runner_ids.max", "config", "list_environment_classes",
         lambda c: rc.ListEnvironmentClassesRequest(filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=U26)), "runner_ids"),
    Case("ListEnvironmentClasses.runner_kinds.max", "config", "list_environment_classes",
         lambda c: rc.ListEnvironmentClassesRequest(filter=rc.ListEnvironmentClassesRequest.Filter(runner_kinds=[1] * 26)),
         "runner_kinds"),
    Case("ListEnvironmentClasses.runner_providers.max", "config", "list_environment_classes",
         lambda c: rc.ListEnvironmentClassesRequest(filter=rc.ListEnvironmentClassesRequest.Filter(runner_providers=[1] * 26)),
         "runner_providers"),
    Case("ListEnvironmentClasses.page_size.max", "config", "list_environment_classes",
         lambda c: rc.ListEnvironmentClassesRequest(pagination=_pag(101)), "page_size"),
    Case("UpdateEnvironmentClass.environment_class_id.uuid", "config", "update_environment_class",
         lambda c: rc.UpdateEnvironmentClassRequest(environment_class_id=BAD_UUID, display_name="Fine"), "environment_class_id"),
    Case("UpdateEnvironmentClass.display_name.short", "config", "update_environment_class",
         lambda c: rc.UpdateEnvironmentClassRequest(environment_class_id=c.env_class_id, display_name="ab"), "display_name"),
    Case("UpdateEnvironmentClass.display_name.long", "config", "update_environment_class",
         lambda c: rc.UpdateEnvironmentClassRequest(environment_class_id=c.env_class_id, display_name="d" * 128), "display_name"),
    Case("UpdateEnvironmentClass.description.short", "config", "update_environment_class",
         lambda c: rc.UpdateEnvironmentClassRequest(environment_class_id=c.env_class_id, description="ab"), "description"),
    Case("UpdateEnvironmentClass.description.long", "config", "update_environment_class",
         lambda c: rc.UpdateEnvironmentClassRequest(environment_class_id=c.env_class_id, description="d" * 201), "description"),
    # ---- GroupService
    Case("ListGroups.search.max", "groups", "list_groups",
         lambda c: gp.ListGroupsRequest(filter=gp.ListGroupsRequest.Filter(search="s" * 257)), "search"),
    Case("ListGroups.group_ids.uuid", "groups", "list_groups",
         lambda c: gp.ListGroupsRequest(filter=gp.ListGroupsRequest.Filter(group_ids=[BAD_UUID])), "group_ids"),
    Case("ListGroups.group_ids.max", "groups", "list_groups",
         lambda c: gp.ListGroupsRequest(filter=gp.ListGroupsRequest.Filter(group_ids=U26)), "group_ids"),
    Case("ListGroups.page_size.max", "groups", "list_groups", lambda c: gp.ListGroupsRequest(pagination=_pag(101)), "page_size"),
    Case("CreateGroup.organization_id.uuid", "groups", "create_group",
         lambda c: gp.CreateGroupRequest(organization_id=BAD_UUID, name="valid group"), "organization_id"),
    Case("CreateGroup.name.short", "groups", "create_group",
         lambda c: gp.CreateGroupRequest(organization_id=c.actor.org_id, name="ab"), "name"),
    Case("CreateGroup.name.long", "groups", "create_group",
         lambda c: gp.CreateGroupRequest(organization_id=c.actor.org_id, name="g" * 81), "name"),
    Case("CreateGroup.description.long", "groups", "create_group",
         lambda c: gp.CreateGroupRequest(organization_id=c.actor.org_id, name="valid group 2", description="d" * 256),
         "description"),
    Case("GetGroup.id.uuid", "groups", "get_group", lambda c: gp.GetGroupRequest(id=BAD_UUID), "id"),
    Case("GetGroup.name.short", "groups", "get_group", lambda c: gp.GetGroupRequest(name="ab"), "name"),
    Case("UpdateGroup.group_id.uuid", "groups", "update_group",
         lambda c: gp.UpdateGroupRequest(group_id=BAD_UUID, name="valid name"), "group_id"),
    Case("UpdateGroup.name.short", "groups", "update_group",
         lambda c: gp.UpdateGroupRequest(group_id=c.group_id, name="ab"), "name"),
    Case("UpdateGroup.name.long", "groups", "update_group",
         lambda c: gp.UpdateGroupRequest(group_id=c.group_id, name="g" * 81), "name"),
    Case("UpdateGroup.description.long", "groups", "update_group",
         lambda c: gp.UpdateGroupRequest(group_id=c.group_id, name="validation-group", description="d" * 256), "description"),
    Case("DeleteGroup.group_id.uuid", "groups", "delete_group", lambda c: gp.DeleteGroupRequest(group_id=BAD_UUID), "group_id"),
    Case("CreateMembership.group_id.uuid", "groups", "create_membership",
         lambda c: gp.CreateMembershipRequest(group_id=BAD_UUID, subject=ip.Subject(id=c.member_id, principal=ip.PRINCIPAL_USER)),
         "group_id"),
    Case("CreateMembership.subject.id.uuid", "groups", "create_membership",
         lambda c: gp.CreateMembershipRequest(group_id=c.group_id, subject=ip.Subject(id=BAD_UUID, principal=ip.PRINCIPAL_USER)),
         "subject"),
    Case("CreateMembership.subject.principal.undefined", "groups", "create_membership",
         lambda c: gp.CreateMembershipRequest(group_id=c.group_id, subject=ip.Subject(id=c.member_id, principal=77)),
         "principal"),
    Case("DeleteMembership.membership_id.uuid", "groups", "delete_membership",
         lambda c: gp.DeleteMembershipRequest(membership_id=BAD_UUID), "membership_id"),
    Case("GetMembership.group_id.uuid", "groups", "get_membership",
         lambda c: gp.GetMembershipRequest(group_id=BAD_UUID, subject=ip.Subject(id=c.member_id, principal=ip.PRINCIPAL_USER)),
         "group_id"),
    Case("GetMembership.subject.required", "groups", "get_membership",
         lambda c: gp.GetMembershipRequest(group_id=c.group_id), "subject"),
    Case("ListMemberships.group_id.uuid", "groups", "list_memberships",
         lambda c: gp.ListMembershipsRequest(group_id=BAD_UUID), "group_id"),
    Case("ListMemberships.search.max", "groups", "list_memberships",
         lambda c: gp.ListMembershipsRequest(group_id=c.group_id, filter=gp.ListMembershipsRequest.Filter(search="s" * 257)),
         "search"),
    Case("ListMemberships.page_size.max", "groups", "list_memberships",
         lambda c: gp.ListMembershipsRequest(group_id=c.group_id, pagination=_pag(101)), "page_size"),
    # ---- UserService
    Case("GetUser.user_id.uuid", "users", "get_user", lambda c: up.GetUserRequest(user_id=BAD_UUID), "user_id"),
    Case("CreatePersonalAccessToken.user_id.uuid", "users", "create_personal_access_token",
         lambda c: up.CreatePersonalAccessTokenRequest(user_id=BAD_UUID, description="x", valid_for=Duration(seconds=60)),
         "user_id"),
    Case("CreatePersonalAccessToken.valid_for.max", "users", "create_personal_access_token",
         lambda c: up.CreatePersonalAccessTokenRequest(user_id=c.actor.user_id, description="x",
                                                       valid_for=Duration(seconds=7776001)), "valid_for"),
    Case("CreatePersonalAccessToken.valid_for.negative", "users", "create_personal_access_token",
         lambda c: up.CreatePersonalAccessTokenRequest(user_id=c.actor.user_id, description="x",
                                                       valid_for=Duration(seconds=-60)), "valid_for"),
    Case("GetPersonalAccessToken.id.uuid", "users", "get_personal_access_token",
         lambda c: up.GetPersonalAccessTokenRequest(personal_access_token_id=BAD_UUID), "personal_access_token_id"),
    Case("ListPersonalAccessTokens.user_ids.uuid", "users", "list_personal_access_tokens",
         lambda c: up.ListPersonalAccessTokensRequest(filter=up.ListPersonalAccessTokensRequest.Filter(user_ids=[BAD_UUID])),
         "user_ids"),
    Case("ListPersonalAccessTokens.user_ids.max", "users", "list_personal_access_tokens",
         lambda c: up.ListPersonalAccessTokensRequest(filter=up.ListPersonalAccessTokensRequest.Filter(user_ids=U26)), "user_ids"),
    Case("ListPersonalAccessTokens.page_size.max", "users", "list_personal_access_tokens",
         lambda c: up.ListPersonalAccessTokensRequest(pagination=_pag(101)), "page_size"),
    Case("DeletePersonalAccessToken.id.uuid", "users", "delete_personal_access_token",
         lambda c: up.DeletePersonalAccessTokenRequest(personal_access_token_id=BAD_UUID), "personal_access_token_id"),
    # ---- OrganizationService
    Case("GetOrganization.organization_id.uuid", "orgs", "get_organization",
         lambda c: op.GetOrganizationRequest(organization_id=BAD_UUID), "organization_id"),
    Case("GetOrganization.organization_id.required", "orgs", "get_organization",
         lambda c: op.GetOrganizationRequest(), "organization_id"),
    Case("ListMembers.organization_id.uuid", "orgs", "list_members",
         lambda c: op.ListMembersRequest(organization_id=BAD_UUID), "organization_id"),
    Case("ListMembers.search.max", "orgs", "list_members",
         lambda c: op.ListMembersRequest(organization_id=c.actor.org_id, filter=op.ListMembersRequest.Filter(search="s" * 257)),
         "search"),
    Case("ListMembers.page_size.max", "orgs", "list_members",
         lambda c: op.ListMembersRequest(organization_id=c.actor.org_id, pagination=_pag(101)), "page_size"),
    Case("SetRole.organization_id.uuid", "orgs", "set_role",
         lambda c: op.SetRoleRequest(organization_id=BAD_UUID, user_id=c.member_id, role=op.ORGANIZATION_ROLE_ADMIN),
         "organization_id"),
    Case("SetRole.user_id.uuid", "orgs", "set_role",
         lambda c: op.SetRoleRequest(organization_id=c.actor.org_id, user_id=BAD_UUID, role=op.ORGANIZATION_ROLE_ADMIN),
         "user_id"),
]


# ---- Bounds: every request list and every stored string has a cap (docs/limits.md).
def _members(c, **filter):
    return op.ListMembersRequest(organization_id=c.actor.org_id, filter=op.ListMembersRequest.Filter(**filter))


def _token(c, **over):
    fields = dict(runner_id=c.runner_id, host="h.example.com", token="t", source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT)
    fields.update(over)
    return rc.CreateHostAuthenticationTokenRequest(**fields)


def _scm(c, **over):
    fields = dict(runner_id=c.runner_id, scm_id="gitlab", host="gitlab.bounds.example", pat=True)
    fields.update(over)
    return rc.CreateSCMIntegrationRequest(**fields)


def _class(c, configuration):
    return rc.CreateEnvironmentClassRequest(runner_id=c.runner_id, display_name="Bounded", description="Bounded class",
                                            configuration=configuration)


def _metrics(c, **m):
    return rp.UpdateRunnerRequest(
        runner_id=c.runner_id,
        spec=rp.UpdateRunnerRequest.Spec(configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
            metrics=rp.UpdateRunnerRequest.MetricsConfiguration(**m))),
    )


def _fv(n, key="cpu", value="2"):
    return [rc.FieldValue(key=key, value=value) for _ in range(n)]


CASES += [
    # Lists
    Case("ListMembers.statuses.max", "orgs", "list_members",
         lambda c: _members(c, statuses=[up.USER_STATUS_ACTIVE] * 101), "statuses"),
    Case("ListMembers.statuses.huge", "orgs", "list_members",
         lambda c: _members(c, statuses=[up.USER_STATUS_ACTIVE] * 300_000), "statuses"),
    Case("ListMembers.roles.max", "orgs", "list_members", lambda c: _members(c, roles=[op.ORGANIZATION_ROLE_MEMBER] * 101), "roles"),
    Case("ListMembers.user_ids.max", "orgs", "list_members", lambda c: _members(c, user_ids=U26), "user_ids"),
    Case("ListMembers.exclude_group_ids.max", "orgs", "list_members",
         lambda c: _members(c, exclude_group_ids=U26), "exclude_group_ids"),
    Case("ListRunners.kinds.huge", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(kinds=[99] * 300_000)), "kinds"),
    Case("UpdateHostAuthenticationToken.scopes.max", "config", "update_host_authentication_token",
         lambda c: rc.UpdateHostAuthenticationTokenRequest(id=c.host_token_id, scopes=[f"s{i}" for i in range(102)]), "scopes"),
    Case("CreateEnvironmentClass.configuration.max", "config", "create_environment_class",
         lambda c: _class(c, _fv(101)), "configuration"),
    Case("ValidateRunnerConfiguration.environment_class.configuration.max", "config", "validate_runner_configuration",
         lambda c: rc.ValidateRunnerConfigurationRequest(
             runner_id=c.runner_id,
             environment_class=rc.EnvironmentClass(display_name="Fine", description="Fine", configuration=_fv(101))),
         "configuration"),
    # Strings that are stored or forwarded
    Case("CreateHostAuthenticationToken.token.long", "config", "create_host_authentication_token",
         lambda c: _token(c, token="t" * 16385), "token"),
    Case("CreateHostAuthenticationToken.refresh_token.long", "config", "create_host_authentication_token",
         lambda c: _token(c, refresh_token="r" * 16385), "refresh_token"),
    Case("CreateHostAuthenticationToken.scopes.item.long", "config", "create_host_authentication_token",
         lambda c: _token(c, scopes=["s" * 257]), "scopes"),
    Case("CreateHostAuthenticationToken.host.long", "config", "create_host_authentication_token",
         lambda c: _token(c, host="h" * 60 + "." + "x" * 460), "host"),
    Case("UpdateHostAuthenticationToken.token.long", "config", "update_host_authentication_token",
         lambda c: rc.UpdateHostAuthenticationTokenRequest(id=c.host_token_id, token="t" * 16385), "token"),
    Case("UpdateHostAuthenticationToken.refresh_token.long", "config", "update_host_authentication_token",
         lambda c: rc.UpdateHostAuthenticationTokenRequest(id=c.host_token_id, refresh_token="r" * 16385), "refresh_token"),
    Case("CreateSCMIntegration.scm_id.long", "config", "create_scm_integration",
         lambda c: _scm(c, scm_id="g" * 129), "scm_id"),
    Case("CreateSCMIntegration.oauth_client_id.long", "config", "create_scm_integration",
         lambda c: _scm(c, oauth_client_id="i" * 1025), "oauth_client_id"),
    Case("CreateSCMIntegration.oauth_plaintext_client_secret.long", "config", "create_scm_integration",
         lambda c: _scm(c, oauth_client_id="id", oauth_plaintext_client_secret="s" * 4097), "oauth_plaintext_client_secret"),
    Case("CreateSCMIntegration.issuer_url.long", "config", "create_scm_integration",
         lambda c: _scm(c, issuer_url="https://issuer.example/" + "p" * 2048), "issuer_url"),
    Case("CreateSCMIntegration.virtual_directory.long", "config", "create_scm_integration",
         lambda c: _scm(c, virtual_directory="/" + "d" * 512), "virtual_directory"),
    Case("UpdateSCMIntegration.oauth_client_id.long", "config", "update_scm_integration",
         lambda c: rc.UpdateSCMIntegrationRequest(id=c.scm_id, oauth_client_id="i" * 1025), "oauth_client_id"),
    Case("UpdateSCMIntegration.issuer_url.long", "config", "update_scm_integration",
         lambda c: rc.UpdateSCMIntegrationRequest(id=c.scm_id, issuer_url="https://issuer.example/" + "p" * 2048),
         "issuer_url"),
    Case("CreateEnvironmentClass.configuration.key.long", "config", "create_environment_class",
         lambda c: _class(c, _fv(1, key="k" * 129)), "configuration"),
    Case("CreateEnvironmentClass.configuration.value.long", "config", "create_environment_class",
         lambda c: _class(c, _fv(1, value="v" * 1025)), "configuration"),
    Case("UpdateRunner.honeycomb_api_key.long", "runners", "update_runner",
         lambda c: rp.UpdateRunnerRequest(
             runner_id=c.runner_id,
             spec=rp.UpdateRunnerRequest.Spec(configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                 honeycomb_api_key="k" * 4097))),
         "honeycomb_api_key"),
    Case("UpdateRunner.metrics.url.long", "runners", "update_runner",
         lambda c: _metrics(c, url="https://metrics.example/" + "p" * 2048), "url"),
    Case("UpdateRunner.metrics.username.long", "runners", "update_runner", lambda c: _metrics(c, username="u" * 257),
         "username"),
    Case("UpdateRunner.metrics.password.long", "runners", "update_runner", lambda c: _metrics(c, password="p" * 4097),
         "password"),
    Case("CreateRunner.spec.metrics.url.long", "runners", "create_runner",
         lambda c: rp.CreateRunnerRequest(
             name="bounded runner", provider=rc.RUNNER_PROVIDER_LINUX_HOST,
             spec=rp.RunnerSpec(configuration=rp.RunnerConfiguration(
                 metrics=rp.MetricsConfiguration(url="https://metrics.example/" + "p" * 2048)))),
         "url"),
    Case("CreatePersonalAccessToken.description.long", "users", "create_personal_access_token",
         lambda c: up.CreatePersonalAccessTokenRequest(user_id=c.actor.user_id, description="d" * 1025,
                                                       valid_for=Duration(seconds=60)), "description"),
    Case("ParseContextURL.context_url.long", "runners", "parse_context_url",
         lambda c: rp.ParseContextURLRequest(runner_id=c.runner_id, context_url="https://github.com/" + "a" * 8192),
         "context_url"),
    Case("SearchRepositories.search_string.long", "runners", "search_repositories",
         lambda c: rp.SearchRepositoriesRequest(runner_id=c.runner_id, search_string="s" * 1025), "search_string"),
    Case("ListSCMOrganizations.query.long", "runners", "list_scm_organizations",
         lambda c: rp.ListSCMOrganizationsRequest(runner_id=c.runner_id, scm_host="github.com", query="q" * 1025), "query"),
    Case("ListRunners.pagination.token.long", "runners", "list_runners",
         lambda c: rp.ListRunnersRequest(pagination=pg.PaginationRequest(token="t" * 1025)), "token"),
    # SCM host syntax (corral_contract::scm_host)
    Case("CreateSCMIntegration.host.nul", "config", "create_scm_integration", lambda c: _scm(c, host="\x00"), "host"),
    Case("CreateSCMIntegration.host.userinfo", "config", "create_scm_integration",
         lambda c: _scm(c, host="https://user:pw@gitlab.bounds.example/x"), "host"),
    Case("CreateSCMIntegration.host.dotdot", "config", "create_scm_integration",
         lambda c: _scm(c, host="gitlab.bounds.example/../../x"), "host"),
    Case("CreateSCMIntegration.host.dotdot.ado", "config", "create_scm_integration",
         lambda c: _scm(c, scm_id="azure-devops", host="tfs.bounds.example/tfs/../x"), "host"),
    Case("CreateSCMIntegration.host.path", "config", "create_scm_integration",
         lambda c: _scm(c, host="gitlab.bounds.example/gitlab"), "host"),
    Case("CreateSCMIntegration.host.port0", "config", "create_scm_integration",
         lambda c: _scm(c, host="gitlab.bounds.example:0"), "host"),
    Case("CreateSCMIntegration.host.port70000", "config", "create_scm_integration",
         lambda c: _scm(c, host="gitlab.bounds.example:70000"), "host"),
    Case("CreateSCMIntegration.host.whitespace", "config", "create_scm_integration",
         lambda c: _scm(c, host="gitlab bounds.example"), "host"),
    Case("CreateSCMIntegration.virtual_directory.dotdot", "config", "create_scm_integration",
         lambda c: _scm(c, virtual_directory="/../x"), "virtual_directory"),
    Case("UpdateSCMIntegration.virtual_directory.dotdot", "config", "update_scm_integration",
         lambda c: rc.UpdateSCMIntegrationRequest(id=c.scm_id, virtual_directory="/tfs/../../x"), "virtual_directory"),
    Case("CreateHostAuthenticationToken.host.userinfo", "config", "create_host_authentication_token",
         lambda c: _token(c, host="https://user:pw@github.com"), "host"),
    Case("CreateHostAuthenticationToken.host.path", "config", "create_host_authentication_token",
         lambda c: _token(c, host="github.com/../../x"), "host"),
    Case("CreateHostAuthenticationToken.host.nul", "config", "create_host_authentication_token",
         lambda c: _token(c, host="github.com\x00"), "host"),
    Case("CheckAuthenticationForHost.host.userinfo", "runners", "check_authentication_for_host",
         lambda c: rp.CheckAuthenticationForHostRequest(runner_id=c.runner_id, host="https://user:pw@github.com"), "host"),
    Case("CheckAuthenticationForHost.host.empty", "runners", "check_authentication_for_host",
         lambda c: rp.CheckAuthenticationForHostRequest(runner_id=c.runner_id), "host"),
    Case("SearchRepositories.scm_host.port", "runners", "search_repositories",
         lambda c: rp.SearchRepositoriesRequest(runner_id=c.runner_id, search_string="x", scm_host="github.com:99999"),
         "scm_host"),
    Case("ListSCMOrganizations.scm_host.control", "runners", "list_scm_organizations",
         lambda c: rp.ListSCMOrganizationsRequest(runner_id=c.runner_id, scm_host="github.com\r\nX: y"), "scm_host"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
@pytest.mark.parametrize("codec", ["proto"])
def test_invalid_argument(ctx, case, codec):
    api = ctx.actor.api(codec=codec)
    before = snapshot(ctx)
    fn = getattr(getattr(api, case.service), case.method)
    try:
        result = fn(case.build(ctx))
    except ConnectError as e:
        assert e.code == Code.INVALID_ARGUMENT, f"expected invalid_argument, got {e.code.value}: {error_text(e)}"
        assert names_field(e, case.field), f"error does not name {case.field!r}: {error_text(e)}"
    else:
        pytest.fail(f"{case.id}: call succeeded: {result}")
    assert snapshot(ctx) == before, "a rejected request changed the stored state"


# A few cases again through the JSON codec: the validation result must not depend on it.
JSON_CASES = [c for c in CASES if c.id in {
    "CreateRunner.name.short", "ListRunners.page_size.max", "UpdateRunner.update_window.start",
    "CreateEnvironmentClass.description.long", "CreateGroup.name.short", "GetUser.user_id.uuid",
}]


@pytest.mark.parametrize("case", JSON_CASES, ids=[c.id for c in JSON_CASES])
def test_invalid_argument_json(ctx, case):
    api = ctx.actor.api(codec="json")
    fn = getattr(getattr(api, case.service), case.method)
    with pytest.raises(ConnectError) as ei:
        fn(case.build(ctx))
    assert ei.value.code == Code.INVALID_ARGUMENT, error_text(ei.value)
    assert names_field(ei.value, case.field), error_text(ei.value)


def test_valid_boundaries_accepted(ctx):
    """The edges of each length rule are valid."""
    a = ctx.actor
    r = a.runners.create_runner(rp.CreateRunnerRequest(name="abc", provider=rc.RUNNER_PROVIDER_LINUX_HOST)).runner
    a.runners.update_runner(rp.UpdateRunnerRequest(runner_id=r.runner_id, name="n" * 127))
    assert a.runners.get_runner(rp.GetRunnerRequest(runner_id=r.runner_id)).runner.name == "n" * 127
    ec = a.config.create_environment_class(
        rc.CreateEnvironmentClassRequest(runner_id=r.runner_id, display_name="abc", description="d" * 200)
    ).id
    a.config.update_environment_class(
        rc.UpdateEnvironmentClassRequest(environment_class_id=ec, display_name="e" * 127, description="abc")
    )
    g = a.groups.create_group(gp.CreateGroupRequest(organization_id=a.org_id, name="g" * 80, description="d" * 255)).group
    assert g.name == "g" * 80
    a.groups.update_group(gp.UpdateGroupRequest(group_id=g.id, name="abc", description=""))
    resp = a.runners.list_runners(rp.ListRunnersRequest(pagination=_pag(100)))
    assert isinstance(resp, rp.ListRunnersResponse)
    a.users.create_personal_access_token(
        up.CreatePersonalAccessTokenRequest(user_id=a.user_id, description="max", valid_for=Duration(seconds=7776000))
    )
    # clean up so the module's snapshot stays small
    a.groups.delete_group(gp.DeleteGroupRequest(group_id=g.id))
    a.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=r.runner_id, force=True))


def test_error_never_echoes_a_password_in_a_host(ctx):
    a = ctx.actor
    for call, request in [
        (a.config.create_scm_integration, _scm(ctx, host="https://alice:hunter2@gitlab.bounds.example/x")),
        (a.config.create_host_authentication_token, _token(ctx, host="https://alice:hunter2@github.com")),
    ]:
        with pytest.raises(ConnectError) as ei:
            call(request)
        text = error_text(ei.value)
        assert ei.value.code == Code.INVALID_ARGUMENT, text
        assert "user name or password" in text and "hunter2" not in text and "alice" not in text, text
    result = a.config.validate_runner_configuration(
        rc.ValidateRunnerConfigurationRequest(
            runner_id=ctx.runner_id,
            scm_integration=rc.ValidateRunnerConfigurationRequest.ValidateSCMIntegration(
                scm_id="github", host="https://alice:hunter2@github.com", pat=True),
        )
    ).scm_integration
    assert result.valid is False
    assert "user name or password" in result.host_error and "hunter2" not in result.host_error


def test_hosts_are_stored_in_canonical_form(ctx):
    a = ctx.actor
    r = a.runners.create_runner(rp.CreateRunnerRequest(name="canonical hosts", provider=rc.RUNNER_PROVIDER_LINUX_HOST)).runner
    try:
        for scm_id, given, stored in [
            ("gitea", "HTTP://Gitea.Bounds.Example:3000/", "http://gitea.bounds.example:3000"),
            ("gitlab", "https://GitLab.Bounds.Example:443", "gitlab.bounds.example"),
            ("github", "GitHub.Bounds.Example/", "github.bounds.example"),
            ("github", "[::1]:8080", "[::1]:8080"),
            ("azure-devops", "https://TFS.Bounds.Example/tfs/DefaultCollection/", "tfs.bounds.example/tfs/defaultcollection"),
        ]:
            created = a.config.create_scm_integration(
                rc.CreateSCMIntegrationRequest(runner_id=r.runner_id, scm_id=scm_id, host=given, pat=True))
            got = a.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=created.id)).integration
            assert got.host == stored, (given, got.host)
        # The same host spelled differently is the same host.
        with pytest.raises(ConnectError) as ei:
            a.config.create_scm_integration(rc.CreateSCMIntegrationRequest(
                runner_id=r.runner_id, scm_id="gitlab", host="gitlab.bounds.example/", pat=True))
        assert ei.value.code == Code.ALREADY_EXISTS, error_text(ei.value)
        tok = a.config.create_host_authentication_token(
            rc.CreateHostAuthenticationTokenRequest(runner_id=r.runner_id, host="GitHub.com/", token="t",
                                                    source=rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT,
                                                    scopes=["repo", "read:user", "repo"])
        ).token
        assert tok.host == "github.com"
        assert list(tok.scopes) == ["repo", "read:user"], "duplicate scopes are stored once"
        a.config.update_host_authentication_token(
            rc.UpdateHostAuthenticationTokenRequest(id=tok.id, scopes=["a", "b", "a", "b"]))
        got = a.config.get_host_authentication_token(rc.GetHostAuthenticationTokenRequest(id=tok.id)).token
        assert list(got.scopes) == ["a", "b"]
    finally:
        a.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=r.runner_id, force=True))


def test_bounds_and_duplicates_at_the_edge(ctx):
    """Lists at their bound are fine, and duplicates count once."""
    a = ctx.actor
    me = [m.user_id for m in a.orgs.list_members(_members(ctx, user_ids=[a.user_id] * 25)).members]
    assert me == [a.user_id], "a repeated id matches once"
    many = a.orgs.list_members(_members(ctx, statuses=[up.USER_STATUS_ACTIVE] * 100, roles=[op.ORGANIZATION_ROLE_ADMIN] * 100))
    assert a.user_id in [m.user_id for m in many.members]
    runners = a.runners.list_runners(rp.ListRunnersRequest(filter=rp.ListRunnersRequest.Filter(
        creator_ids=[a.user_id] * 25, providers=[rc.RUNNER_PROVIDER_LINUX_HOST] * 25))).runners
    assert ctx.runner_id in [r.runner_id for r in runners]
    tok = a.config.create_host_authentication_token(
        _token(ctx, host="edge.bounds.example", token="t" * 16384, refresh_token="r" * 16384,
               scopes=[f"s{i}" for i in range(101)]))
    a.config.delete_host_authentication_token(rc.DeleteHostAuthenticationTokenRequest(id=tok.token.id))
