"""Fixtures for the legacy suite (gitpod-sdk 0.11.0: the JSON-era Stainless SDK).

Runs in its own venv; shares only the standard-library server harness with the modern suite."""

from __future__ import annotations

import os
import sys
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from corral_harness import CorralServer  # noqa: E402

from gitpod import Gitpod  # noqa: E402

_SERVERS: list[CorralServer] = []


@pytest.fixture(scope="session")
def server():
    srv = CorralServer()
    _SERVERS.append(srv)
    try:
        srv.start()
        yield srv
    finally:
        srv.cleanup()
        _SERVERS.remove(srv)


def make_client(srv: CorralServer, token: str) -> Gitpod:
    # The SDK's default base URL is https://app.gitpod.io/api; paths are /gitpod.v1.Service/Method.
    # No retries: a 503 (unavailable) must surface at once.
    return Gitpod(base_url=srv.api_url, bearer_token=token, max_retries=0, timeout=60.0)


@pytest.fixture(scope="session")
def client(server) -> Gitpod:
    return make_client(server, server.admin_token())


@pytest.fixture
def fresh_client(server) -> Gitpod:
    """Admin of a new organization, so lists start empty."""
    token = server.add_org(f"legacy-{uuid.uuid4().hex[:8]}", f"legacy-{uuid.uuid4().hex[:8]}@example.com")
    return make_client(server, token)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for srv in _SERVERS:
            report.sections.append((f"corral server log ({srv.log_path})", srv.log_tail(8000)))
