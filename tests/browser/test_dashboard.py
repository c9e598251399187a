"""The web dashboard end to end: a real `corral serve`, real `corral runner`
processes, a local GitHub (tests/sdk/fake_github.py) and Debian's headless
Chromium driven by Playwright.

Screenshots of the main pages (sign-in, fleet, runner page, create-runner
dialog, SCM accounts, environment classes and policies, narrow and dark) are
written to target/screenshots/dashboard/.
"""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from playwright.sync_api import expect

from gitpod.v1 import group_pb2 as gp
from gitpod.v1 import identity_pb2 as ip
from gitpod.v1 import runner_configuration_pb2 as rc
from gitpod.v1 import runner_pb2 as rp
from runner_harness import wait_for


def new_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def phase_cell(page, runner_id: str):
    return page.locator(f'tr[data-runner-id="{runner_id}"] [data-testid="phase"]')


def integration_of(admin, runner):
    (integration,) = admin.config.list_scm_integrations(
        rc.ListSCMIntegrationsRequest(filter=rc.ListSCMIntegrationsRequest.Filter(runner_ids=[runner.runner_id]))
    ).integrations
    return integration


def wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.1)


def host_tokens(actor, runner_id: str):
    return actor.config.list_host_authentication_tokens(
        rc.ListHostAuthenticationTokensRequest(
            filter=rc.ListHostAuthenticationTokensRequest.Filter(runner_id=runner_id)
        )
    ).tokens


def test_sign_in_with_a_token_and_a_wrong_one_is_refused(ui, admin):
    page = ui.page
    page.goto("/")
    expect(page.get_by_role("heading", name="Sign in to corral")).to_be_visible()
    ui.shot("sign-in")
    page.get_by_label("Personal access token").fill("crl_pat_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    ui.shot("sign-in-refused")
    page.get_by_label("Personal access token").fill(admin.token)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Runners")).to_be_visible()
    expect(page.get_by_role("button", name="Create runner")).to_be_visible()


def test_a_runner_turns_active_in_the_list_without_a_reload(ui, server, admin, runners):
    created = admin.create_runner(name=new_name("live"))
    runner_id = created.runner.runner_id
    page = ui.sign_in(admin.token)
    expect(phase_cell(page, runner_id)).to_have_text("created")
    page.evaluate("window.__sameDocument = true")
    process = runners(server.url, created.exchange_token)
    expect(phase_cell(page, runner_id)).to_have_text("active", timeout=45_000)
    # The same document: the row changed in place, the page was not reloaded.
    assert page.evaluate("window.__sameDocument") is True
    row = page.locator(f'tr[data-runner-id="{runner_id}"]')
    expect(row).to_contain_text("lab-1")  # the region the runner reports
    ui.shot("fleet")
    assert process.proc.poll() is None


def test_create_a_runner_in_the_ui_start_it_and_set_its_update_window(ui, server, admin, runners):
    ui.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page = ui.sign_in(admin.token)
    page.get_by_role("button", name="Create runner").click()
    dialog = page.get_by_role("dialog", name="Create a runner")
    expect(dialog).to_be_visible()
    name = new_name("ui")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Region").fill("eu-west")
    ui.shot("create-runner-dialog")
    dialog.get_by_role("button", name="Create").click()
    token_field = dialog.get_by_test_id("exchange-token")
    expect(token_field).not_to_have_value("")
    token = token_field.input_value()
    command = dialog.get_by_test_id("runner-command").input_value()
    # The same line `corral runners create` prints.
    assert command == f"corral runner --server {server.url} --exchange-token {token}"
    dialog.get_by_role("button", name="Copy").last.click()
    expect(dialog.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == command
    ui.shot("create-runner-token")
    parts = command.split()
    process = runners(parts[parts.index("--server") + 1], parts[parts.index("--exchange-token") + 1])
    dialog.get_by_role("link", name=f"Open {name}").click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    runner_id = page.url.rsplit("/", 1)[1]
    wait_for(admin, runner_id, lambda r: r.status.phase == rp.RUNNER_PHASE_ACTIVE, process, timeout=45)
    expect(page.get_by_test_id("runner-phase")).to_have_text("active")

    form = page.get_by_role("form", name="Configuration")
    form.get_by_label("From hour").fill("2")
    form.get_by_label("To hour").fill("5")
    form.get_by_label("Release channel").select_option(label="latest")
    form.get_by_role("button", name="Save configuration").click()
    expect(form.get_by_text("Saved.")).to_be_visible()
    saved = admin.runners.get_runner(rp.GetRunnerRequest(runner_id=runner_id)).runner
    window = saved.spec.configuration.update_window
    assert (window.start_hour, window.end_hour) == (2, 5)
    assert saved.spec.configuration.release_channel == rp.RUNNER_RELEASE_CHANNEL_LATEST
    expect(page.get_by_test_id("replica")).not_to_have_text("not connected")
    ui.shot("runner")


def test_environment_classes_from_the_schema_and_policies(ui, admin, scm):
    _github, runner = scm
    page = ui.sign_in(admin.token, f"/#/runners/{runner.runner_id}")
    page.get_by_role("button", name="Add environment class").click()
    dialog = page.get_by_role("dialog", name="Add an environment class")
    name = new_name("class")
    dialog.get_by_label("Name", exact=True).fill(name)
    dialog.get_by_label("Description").fill("Four cores on the GPU hosts")
    # A field of the runner's schema that the form was generated from.
    dialog.get_by_label(re.compile("^CPUs")).fill("4")
    dialog.get_by_label(re.compile("^Host label")).fill("bad label!")
    ui.shot("environment-class-dialog")
    dialog.get_by_role("button", name="Validate and add").click()
    expect(dialog.get_by_role("alert")).to_contain_text("host_label")
    dialog.get_by_label(re.compile("^Host label")).fill("gpu-1")
    dialog.get_by_role("button", name="Validate and add").click()
    expect(dialog).to_be_hidden()
    expect(page.get_by_role("row", name=re.compile(name))).to_be_visible()
    classes = admin.config.list_environment_classes(
        rc.ListEnvironmentClassesRequest(filter=rc.ListEnvironmentClassesRequest.Filter(runner_ids=[runner.runner_id]))
    ).environment_classes
    assert name in [c.display_name for c in classes]
    page.get_by_role("row", name=re.compile(name)).get_by_role("button", name="Edit").click()
    edit = page.get_by_role("dialog", name=f"Edit {name}")
    edit.get_by_label("Description").fill("Eight cores now")
    edit.get_by_role("button", name="Save").click()
    expect(page.get_by_role("row", name=re.compile(name))).to_contain_text("Eight cores now")
    # The members group's policy (from the fixture) is listed by group name.
    expect(page.get_by_role("row", name=re.compile("^members"))).to_be_visible()
    ui.shot("runner-classes-policies")
    # An integration's PAT switch, off and on again (the other tests need it on).
    toggle = page.get_by_label(re.compile("^Personal tokens allowed for"))
    for allowed in (False, True):
        toggle.set_checked(allowed)
        expect(page.get_by_role("status")).to_contain_text("allowed")
        wait_until(lambda: integration_of(admin, runner).pat == allowed)


def test_connect_a_host_with_a_personal_access_token(open_browser, scm, make_user):
    github, runner = scm
    member = make_user()
    ui = open_browser()
    page = ui.sign_in(member.token, "/#/scm")
    # Members do not see admin-only actions.
    page.get_by_role("link", name="Runners").click()
    expect(page.get_by_role("heading", name="Runners")).to_be_visible()
    expect(page.get_by_role("button", name="Create runner")).to_have_count(0)
    page.get_by_role("link", name="SCM accounts").click()
    page.get_by_label("Runner").select_option(runner.runner_id)
    host = f"127.0.0.1:{github.port}"
    page.get_by_label("Host").fill(host)
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("button", name="Sign in with GitHub")).to_be_visible()
    page.get_by_label("Personal access token").fill("pat-good")
    ui.shot("scm-connect")
    page.get_by_role("button", name="Save token").click()
    row = page.locator(f'tr[data-host="{host}"]')
    expect(row.get_by_test_id("token-source")).to_have_text("pat")
    ui.shot("scm-accounts")
    (token,) = host_tokens(member, runner.runner_id)
    assert token.source == rc.HOST_AUTHENTICATION_TOKEN_SOURCE_PAT


def test_oauth_sign_in_through_the_connect_action(open_browser, server, scm, make_user):
    github, runner = scm
    member = make_user()
    ui = open_browser()
    page = ui.sign_in(member.token, "/#/scm")
    page.get_by_label("Runner").select_option(runner.runner_id)
    page.get_by_label("Host").fill(f"127.0.0.1:{github.port}")
    page.get_by_role("button", name="Connect").click()
    # Same tab: to the SCM's authorize page, which sends the browser back to the callback.
    with page.expect_navigation(url=re.compile(r"/auth/oauth2/callback")):
        page.get_by_role("button", name="Sign in with GitHub").click()
    expect(page.locator("body")).to_contain_text(re.compile("signed in", re.I))
    assert "GET /login/oauth/authorize" in github.requests
    (token,) = host_tokens(member, runner.runner_id)
    assert token.source == rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH
    page.goto("/#/scm")
    expect(page.get_by_test_id("token-source")).to_have_text("oauth")


def test_the_callback_is_refused_for_another_signed_in_user(open_browser, scm, make_user):
    github, runner = scm
    started_by = make_user()
    other = make_user()
    auth_url = started_by.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=f"127.0.0.1:{github.port}")
    ).supports_oauth2.auth_url
    ui = open_browser()
    page = ui.sign_in(other.token)
    response = page.goto(auth_url)
    assert "/auth/oauth2/callback" in page.url
    assert response.status == 403
    expect(page.locator("body")).to_contain_text("another user")
    expect(page.locator("body")).not_to_contain_text(re.compile("you are signed in", re.I))
    ui.shot("oauth-callback-other-user")
    assert not host_tokens(started_by, runner.runner_id)
    assert not host_tokens(other, runner.runner_id)


def test_the_callback_sends_a_signed_out_browser_to_sign_in_and_back(open_browser, scm, make_user):
    github, runner = scm
    member = make_user()
    auth_url = member.runners.check_authentication_for_host(
        rp.CheckAuthenticationForHostRequest(runner_id=runner.runner_id, host=f"127.0.0.1:{github.port}")
    ).supports_oauth2.auth_url
    ui = open_browser()
    page = ui.page
    page.goto(auth_url)
    assert "/auth/oauth2/callback" in page.url
    assert not host_tokens(member, runner.runner_id)
    page.get_by_role("link", name="Sign in and continue").click()
    expect(page.get_by_role("heading", name="Sign in to corral")).to_be_visible()
    page.get_by_label("Personal access token").fill(member.token)
    with page.expect_navigation(url=re.compile(r"/auth/oauth2/callback")):
        page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body")).to_contain_text(re.compile("you are signed in", re.I))
    (token,) = host_tokens(member, runner.runner_id)
    assert token.source == rc.HOST_AUTHENTICATION_TOKEN_SOURCE_OAUTH


def test_sign_in_ignores_a_next_that_is_not_the_callback(ui, admin):
    page = ui.sign_in(admin.token, "/?next=https%3A%2F%2Fevil.example%2F")
    expect(page.get_by_role("heading", name="Runners")).to_be_visible()
    assert page.url.startswith(ui.server.url)


def test_sign_out_revokes_the_session(ui, server, admin):
    page = ui.sign_in(admin.token)
    session = page.evaluate("fetch('/auth/session').then(r => r.json())")
    cookies = {c["name"]: c["value"] for c in ui.context.cookies()}
    assert "corral_session" in cookies
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to corral")).to_be_visible()
    # The old cookie no longer works, neither for the session nor for the API.
    old = f"corral_session={cookies['corral_session']}"
    request = urllib.request.Request(f"{server.url}/auth/session", headers={"Cookie": old})
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("the revoked session still answers")
    except urllib.error.HTTPError as e:
        assert e.code == 401
    request = urllib.request.Request(
        f"{server.url}/gitpod.v1.RunnerService/ListRunners", data=b"{}", method="POST",
        headers={"Cookie": old, "Content-Type": "application/json", "X-CSRF-Token": session["csrfToken"]},
    )
    try:
        urllib.request.urlopen(request, timeout=10)
        raise AssertionError("the revoked session still calls the API")
    except urllib.error.HTTPError as e:
        assert json.loads(e.read())["code"] == "unauthenticated"


def focused(page) -> str:
    return page.evaluate("(document.activeElement.innerText || document.activeElement.getAttribute('aria-label') || document.activeElement.id || '').trim()")


def tab_to(page, text: str, limit: int = 40) -> None:
    for _ in range(limit):
        page.keyboard.press("Tab")
        if focused(page) == text:
            return
    raise AssertionError(f"Tab never reached {text!r}")


def test_keyboard_only(ui, admin):
    page = ui.page
    page.goto("/")
    # The token field has the focus; Enter submits.
    expect(page.get_by_label("Personal access token")).to_be_focused()
    page.keyboard.type(admin.token)
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Runners")).to_be_visible()
    tab_to(page, "Create runner")
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog", name="Create a runner")
    expect(dialog).to_be_visible()
    assert page.evaluate("document.activeElement.name") == "name"
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    assert focused(page) == "Create runner"
    tab_to(page, "SCM accounts")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="SCM accounts")).to_be_visible()
    tab_to(page, "Access tokens")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Access tokens")).to_be_visible()
    # A visible focus ring on the focused control.
    tab_to(page, "Create token")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def test_personal_access_tokens_are_shown_once_and_listed(ui, admin):
    page = ui.sign_in(admin.token, "/#/tokens")
    description = new_name("laptop")
    page.get_by_label("Description").fill(description)
    page.get_by_role("button", name="Create token").click()
    token = page.get_by_test_id("new-pat").input_value()
    assert token.startswith("crl_pat_")
    expect(page.get_by_role("row", name=re.compile(description))).to_be_visible()
    ui.shot("access-tokens")


def test_narrow_and_dark(open_browser, admin, scm):
    _github, runner = scm
    ui = open_browser(viewport={"width": 375, "height": 812}, color_scheme="dark")
    page = ui.sign_in(admin.token)
    expect(phase_cell(page, runner.runner_id)).to_have_text("active")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    assert background != "rgb(246, 247, 245)", "dark mode keeps the light background"
    ui.shot("narrow-dark-fleet")
    page.get_by_role("button", name="Create runner").click()
    expect(page.get_by_role("dialog", name="Create a runner")).to_be_visible()
    ui.shot("narrow-dark-create-runner", full_page=False)
    page.keyboard.press("Escape")
    page.goto(f"/#/runners/{runner.runner_id}")
    expect(page.get_by_test_id("runner-phase")).to_have_text("active")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    ui.shot("narrow-dark-runner")
    light = open_browser(viewport={"width": 375, "height": 812}, color_scheme="light")
    light.sign_in(admin.token, "/#/scm")
    expect(light.page.get_by_role("heading", name="SCM accounts")).to_be_visible()
    assert light.page.evaluate("document.documentElement.scrollWidth") <= 375
    light.shot("narrow-light-scm")


def test_logs_and_support_bundle_from_the_runner_with_a_fresh_logs_token(ui, admin, scm):
    _github, runner = scm
    page = ui.sign_in(admin.token, f"/#/runners/{runner.runner_id}")
    expect(page.get_by_test_id("runner-phase")).to_have_text("active")
    with page.expect_download() as download:
        page.get_by_role("button", name="Download support bundle").click()
    assert download.value.suggested_filename.endswith("support-bundle.tar.gz")
    with ui.context.expect_page() as opened:
        page.get_by_role("button", name="Download logs").click()
    logs = opened.value
    logs.wait_for_load_state()
    assert "token=crl_lt_" in logs.url
    assert "serving logs" in logs.locator("body").inner_text()
    logs.close()


def test_a_new_runner_token_and_deleting_a_runner_after_confirming(ui, admin):
    created = admin.create_runner(name=new_name("doomed"))
    runner_id = created.runner.runner_id
    page = ui.sign_in(admin.token, f"/#/runners/{runner_id}")
    page.get_by_role("button", name="New runner token").click()
    page.get_by_role("dialog", name="Create a new runner token?").get_by_role("button", name="Create token").click()
    shown = page.get_by_role("dialog", name="New runner token")
    token = shown.get_by_test_id("exchange-token").input_value()
    assert token.startswith("crl_ex_") and token != created.exchange_token
    page.keyboard.press("Escape")
    expect(shown).to_be_hidden()
    page.get_by_role("button", name="Delete runner").click()
    confirm = page.get_by_role("dialog", name=re.compile("^Delete doomed"))
    # Cancelling keeps the runner.
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    assert admin.runners.get_runner(rp.GetRunnerRequest(runner_id=runner_id)).runner.runner_id == runner_id
    page.get_by_role("button", name="Delete runner").click()
    page.get_by_role("dialog", name=re.compile("^Delete doomed")).get_by_role("button", name="Delete runner").click()
    expect(page.get_by_role("heading", name="Runners")).to_be_visible()
    expect(page.locator(f'tr[data-runner-id="{runner_id}"]')).to_have_count(0)


def test_a_member_sees_the_apis_refusal_and_no_admin_actions(open_browser, admin, make_user):
    created = admin.create_runner(name=new_name("private"))
    member = make_user()
    ui = open_browser()
    page = ui.sign_in(member.token, f"/#/runners/{created.runner.runner_id}")
    # The runner does not exist for someone without a policy on it.
    expect(page.get_by_role("alert")).to_be_visible()
    page.get_by_role("link", name="Groups").click()
    expect(page.get_by_role("heading", name="Groups")).to_be_visible()
    expect(page.get_by_role("button", name="Create group")).to_have_count(0)


def test_groups_and_members(ui, admin, make_user):
    member = make_user()
    page = ui.sign_in(admin.token, "/#/groups")
    page.get_by_role("button", name="Create group").click()
    dialog = page.get_by_role("dialog", name="Create a group")
    name = new_name("team")
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Description").fill("The team that runs the runners")
    dialog.get_by_role("button", name="Create").click()
    page.get_by_role("link", name=name).click()
    expect(page.get_by_role("heading", name=name)).to_be_visible()
    page.get_by_label("Person").select_option(member.user_id)
    page.get_by_role("button", name="Add member").click()
    expect(page.get_by_role("table", name="Members").locator("tbody tr")).to_have_count(1)
    ui.shot("group")
    group = next(g for g in admin.groups.list_groups(gp.ListGroupsRequest()).groups if g.name == name)
    members = admin.groups.list_memberships(gp.ListMembershipsRequest(group_id=group.id)).members
    assert [m.subject.id for m in members] == [member.user_id]


def test_add_and_delete_an_scm_integration(ui, admin, scm):
    _github, runner = scm
    page = ui.sign_in(admin.token, f"/#/runners/{runner.runner_id}")
    page.get_by_role("button", name="Add SCM integration").click()
    dialog = page.get_by_role("dialog", name="Add an SCM integration")
    # The SCMs offered are the runner's schema's.
    dialog.get_by_label("SCM").select_option(label="GitLab")
    dialog.get_by_label("Host").fill("not a host/")
    dialog.get_by_role("button", name="Validate and add").click()
    expect(dialog.get_by_role("alert")).to_be_visible()
    dialog.get_by_label("Host").fill("https://gitlab.example.test")
    dialog.get_by_role("button", name="Validate and add").click()
    expect(dialog).to_be_hidden()
    row = page.get_by_role("row", name=re.compile("gitlab.example.test"))
    expect(row).to_contain_text("gitlab")
    row.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog", name="Delete the integration?").get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0)
    assert integration_of(admin, runner).scm_id == "github"


def test_a_member_with_the_runner_admin_role_administers_that_runner_only(open_browser, admin, make_user, scm):
    _github, shared = scm  # members hold the USER role on it
    member = make_user()
    created = admin.create_runner(name=new_name("team"))
    group = admin.groups.create_group(gp.CreateGroupRequest(organization_id=admin.org_id, name=new_name("ops"))).group
    admin.groups.create_membership(
        gp.CreateMembershipRequest(group_id=group.id, subject=ip.Subject(id=member.user_id, principal=ip.PRINCIPAL_USER))
    )
    admin.runners.create_runner_policy(
        rp.CreateRunnerPolicyRequest(runner_id=created.runner.runner_id, group_id=group.id, role=rp.RUNNER_ROLE_ADMIN)
    )
    ui = open_browser()
    page = ui.sign_in(member.token, f"/#/runners/{created.runner.runner_id}")
    expect(page.get_by_role("button", name="Save configuration")).to_be_visible()
    expect(page.get_by_role("button", name="Delete runner")).to_be_visible()
    page.get_by_label("Log level").select_option(label="debug")
    page.get_by_role("button", name="Save configuration").click()
    expect(page.get_by_text("Saved.")).to_be_visible()
    page.goto(f"/#/runners/{shared.runner_id}")
    expect(page.get_by_role("heading", name=shared.name)).to_be_visible()
    expect(page.get_by_role("button", name="Download logs")).to_be_visible()
    expect(page.get_by_role("button", name="Save configuration")).to_have_count(0)
    expect(page.get_by_role("button", name="Delete runner")).to_have_count(0)
