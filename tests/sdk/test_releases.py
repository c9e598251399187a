"""Runner releases and self-update through the published SDK (docs/releases.md).

The update test runs on a server of its own: every runner on a server where a
release is published may install it, and only a copy of the binary may be
replaced.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile

from connectrpc.code import Code

from corral_harness import require_binary
from gitpod.v1 import runner_pb2 as rp
from helpers import Actor, expect_error, new_name
from runner_harness import RunnerProcess, wait_for


def _real_version() -> str:
    out = subprocess.run([require_binary(), "--version"], capture_output=True, text=True, check=True).stdout
    return re.search(r"(\d+\.\d+\.\d+\S*)", out).group(1)


def _update_note(runner) -> str | None:
    for field in runner.status.additional_info:
        if field.key == "update":
            return field.value
    return None


def _sha256(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def test_create_runner_with_an_empty_update_window_is_refused(admin):
    before = set(admin.runner_ids())
    name = new_name("empty-window")
    expect_error(
        Code.INVALID_ARGUMENT,
        admin.create_runner,
        name=name,
        spec=rp.RunnerSpec(configuration=rp.RunnerConfiguration(update_window=rp.UpdateWindow(start_hour=5, end_hour=5))),
    )
    assert set(admin.runner_ids()) == before, "nothing was created"


def test_a_runner_follows_its_channel_and_window_then_updates(own_server):
    admin = Actor(own_server, own_server.admin_token(), email=None)
    version = _real_version()
    # A closed window (03-05 at the runner's pinned 12:00) and the latest
    # channel, where nothing is published.
    created = admin.create_runner(
        spec=rp.RunnerSpec(
            configuration=rp.RunnerConfiguration(
                auto_update=True,
                release_channel=rp.RUNNER_RELEASE_CHANNEL_LATEST,
                update_window=rp.UpdateWindow(start_hour=3, end_hour=5),
            )
        )
    )
    runner_id = created.runner.runner_id
    bin_dir = tempfile.mkdtemp(prefix="corral-bin-")
    exe = os.path.join(bin_dir, "corral")
    shutil.copy2(require_binary(), exe)
    own_server.cli("admin", "release", "publish", "--channel", "stable", "--version", version,
                   "--file", require_binary(), timeout=300)
    process = RunnerProcess(
        own_server.url, created.exchange_token, binary=exe,
        env={"CORRAL_TEST_VERSION_OVERRIDE": "0.0.1", "CORRAL_TEST_UTC_HOUR": "12"},
    )
    try:
        got = wait_for(admin, runner_id,
                       lambda r: r.status.phase == rp.RUNNER_PHASE_ACTIVE and r.status.version == "0.0.1", process)
        assert got.spec.configuration.release_channel == rp.RUNNER_RELEASE_CHANNEL_LATEST
        assert got.spec.configuration.auto_update is True

        # On stable the release waits for the window.
        admin.runners.update_runner(rp.UpdateRunnerRequest(
            runner_id=runner_id,
            spec=rp.UpdateRunnerRequest.Spec(configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                release_channel=rp.RUNNER_RELEASE_CHANNEL_STABLE)),
        ))
        got = wait_for(admin, runner_id, lambda r: "outside the update window" in (_update_note(r) or ""), process)
        assert got.status.version == "0.0.1"
        assert got.spec.configuration.release_channel == rp.RUNNER_RELEASE_CHANNEL_STABLE

        # Auto-update off: it waits whatever the window.
        admin.runners.update_runner(rp.UpdateRunnerRequest(
            runner_id=runner_id,
            spec=rp.UpdateRunnerRequest.Spec(configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                auto_update=False, update_window=rp.UpdateWindow(start_hour=11, end_hour=13))),
        ))
        got = wait_for(admin, runner_id, lambda r: "auto-update is off" in (_update_note(r) or ""), process)
        assert got.spec.configuration.auto_update is False

        # On, inside 11-13: it installs the release and restarts into it.
        admin.runners.update_runner(rp.UpdateRunnerRequest(
            runner_id=runner_id,
            spec=rp.UpdateRunnerRequest.Spec(configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                auto_update=True)),
        ))
        got = wait_for(admin, runner_id,
                       lambda r: r.status.version == version and r.status.phase == rp.RUNNER_PHASE_ACTIVE,
                       process, timeout=300)
        assert _update_note(got) is None
        assert process.proc.poll() is None, "the runner re-executed itself instead of exiting"
        assert _sha256(exe) == _sha256(require_binary())
    finally:
        process.close()
        shutil.rmtree(bin_dir, ignore_errors=True)
