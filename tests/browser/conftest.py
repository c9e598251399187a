"""Fixtures for the dashboard's browser suite: a real `corral serve`, real
runners, a local GitHub, and Debian's Chromium driven by Playwright.

The SDK suite's harnesses are reused by path (tests/sdk). Chromium is
/usr/bin/chromium (or $CHROMIUM): Playwright never downloads a browser.
Screenshots go to target/screenshots/dashboard/.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "sdk"))

from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright  # noqa: E402

from corral_harness import REPO_ROOT, CorralServer  # noqa: E402
from fake_github import CLIENT_ID, CLIENT_SECRET, FakeGitHub  # noqa: E402
from gitpod.v1 import runner_configuration_pb2 as rc  # noqa: E402
from gitpod.v1 import runner_pb2 as rp  # noqa: E402
from helpers import Actor  # noqa: E402
from runner_harness import RunnerProcess, wait_for  # noqa: E402

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = REPO_ROOT / "target" / "screenshots" / "dashboard"
TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def server() -> CorralServer:
    srv = CorralServer()
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()


@pytest.fixture(scope="session")
def admin(server) -> Actor:
    return Actor(server, server.admin_token())


@pytest.fixture(scope="session")
def make_user(server, admin):
    """make_user(is_admin=False): a new user of the first organization."""

    def make(is_admin: bool = False) -> Actor:
        email = f"u-{uuid.uuid4().hex[:10]}@example.com"
        return Actor(server, server.add_user(email, admin=is_admin, org=admin.org_id), email=email)

    return make


@pytest.fixture(scope="session")
def browser() -> Browser:
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (or set CHROMIUM)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield b
        b.close()


class Session:
    """One browser context (its own cookies) on the server, with helpers."""

    def __init__(self, browser: Browser, server: CorralServer, **context_args):
        self.server = server
        self.context: BrowserContext = browser.new_context(base_url=server.url, **context_args)
        self.context.set_default_timeout(TIMEOUT_MS)
        self.page: Page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        # The CSP forbids inline code and other origins: a violation is a bug.
        self.page.on("console", lambda m: m.type == "error" and "Content Security Policy" in m.text
                     and self.errors.append(m.text))

    def sign_in(self, token: str, path: str = "/") -> Page:
        page = self.page
        page.goto(path)
        page.get_by_label("Personal access token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("button", name="Sign out")).to_be_visible()
        return page

    def shot(self, name: str, full_page: bool = True) -> None:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=full_page)

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def open_browser(browser, server):
    """open_browser(**context_args): a fresh browser context; closed after the test."""
    sessions: list[Session] = []

    def make(**context_args) -> Session:
        s = Session(browser, server, **context_args)
        sessions.append(s)
        return s

    yield make
    for s in sessions:
        s.close()
    for s in sessions:
        assert not s.errors, f"script errors or CSP violations in the page: {s.errors}"


@pytest.fixture
def ui(open_browser) -> Session:
    return open_browser(viewport={"width": 1280, "height": 900})


@pytest.fixture
def runners():
    """start(exchange_token): a `corral runner` process; all killed after the test."""
    started: list[RunnerProcess] = []

    def start(server_url: str, exchange_token: str) -> RunnerProcess:
        process = RunnerProcess(server_url, exchange_token)
        started.append(process)
        return process

    yield start
    for process in started:
        process.close()


@pytest.fixture(scope="session")
def scm(server, admin, make_user):
    """A local GitHub, a connected runner with a PAT-and-OAuth integration for
    it, and a member who may use the runner (through the members group)."""
    github = FakeGitHub().start()
    created = admin.create_runner(name=f"scm-{uuid.uuid4().hex[:6]}")
    process = RunnerProcess(server.url, created.exchange_token)
    try:
        runner = wait_for(admin, created.runner.runner_id, lambda r: r.status.phase == rp.RUNNER_PHASE_ACTIVE, process)
        admin.config.create_scm_integration(
            rc.CreateSCMIntegrationRequest(
                runner_id=runner.runner_id, scm_id="github", host=github.base, pat=True,
                oauth_client_id=CLIENT_ID, oauth_plaintext_client_secret=CLIENT_SECRET,
            )
        )
        members = admin.system_group("members")
        admin.runners.create_runner_policy(
            rp.CreateRunnerPolicyRequest(runner_id=runner.runner_id, group_id=members.id, role=rp.RUNNER_ROLE_USER)
        )
        yield github, runner
    finally:
        process.close()
        github.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        srv = item.funcargs.get("server")
        if srv is not None:
            report.sections.append(("corral server log (tail)", srv.log_tail(8000)))
