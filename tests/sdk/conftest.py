"""Fixtures for the modern (gitpod-sdk 1.x, Connect) compatibility suite."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from corral_harness import CorralServer  # noqa: E402
from helpers import Actor, Api  # noqa: E402

_SERVERS: list[CorralServer] = []


def _start_server() -> CorralServer:
    srv = CorralServer()
    _SERVERS.append(srv)
    try:
        srv.start()
    except Exception:
        srv.cleanup()
        _SERVERS.remove(srv)
        raise
    return srv


def _stop_server(srv: CorralServer) -> None:
    srv.cleanup()
    if srv in _SERVERS:
        _SERVERS.remove(srv)


@pytest.fixture(scope="session")
def server() -> CorralServer:
    """One shared server for the session (tests isolate themselves by org or by unique names)."""
    srv = _start_server()
    yield srv
    _stop_server(srv)


@pytest.fixture
def own_server() -> CorralServer:
    """A server of the test's own, e.g. to stop and start it again."""
    srv = _start_server()
    yield srv
    _stop_server(srv)


@pytest.fixture(scope="session")
def admin(server) -> Actor:
    """The bootstrap admin of the first organization (token from DATA_DIR/admin-token)."""
    return Actor(server, server.admin_token(), email=None)


@pytest.fixture(scope="session")
def make_user(server, admin):
    """Factory: make_user(admin=False, org=None, actor=True) adds a user via the CLI."""

    def make(is_admin: bool = False, org: str | None = None, srv: CorralServer | None = None) -> Actor:
        s = srv or server
        email = f"u-{uuid.uuid4().hex[:10]}@example.com"
        token = s.add_user(email, admin=is_admin, org=org or (admin.org_id if s is server else None))
        return Actor(s, token, email=email)

    return make


@pytest.fixture(scope="session")
def make_org(server):
    """Factory: a new organization (via `corral admin org add`) and its admin actor."""

    def make(srv: CorralServer | None = None) -> Actor:
        s = srv or server
        email = f"oa-{uuid.uuid4().hex[:10]}@example.com"
        token = s.add_org(f"org-{uuid.uuid4().hex[:8]}", email)
        return Actor(s, token, email=email)

    return make


@pytest.fixture(scope="session")
def member(make_user) -> Actor:
    """A plain (non-admin) member of the first organization."""
    return make_user()


@pytest.fixture(scope="session")
def other_org(make_org) -> Actor:
    """The admin of a second organization."""
    return make_org()


@pytest.fixture
def fresh_org(make_org) -> Actor:
    """Admin of a brand-new organization: its lists start empty of runners."""
    return make_org()


@pytest.fixture
def anon(server) -> Api:
    """Clients without an Authorization header."""
    return Api(server.api_url, None)


# -- print the server log when a test fails -------------------------------------


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _SERVERS:
        for srv in list(_SERVERS):
            report.sections.append(
                (f"corral server log ({srv.log_path}, alive={srv.alive()})", srv.log_tail(8000))
            )
