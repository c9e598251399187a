"""A real `corral runner` process for the SDK suites, and waiting on runner state."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time

from corral_harness import require_binary
from gitpod.v1 import runner_pb2 as rp


class RunnerProcess:
    """One `corral runner` with its own data dir; killed and removed on close."""

    def __init__(self, server_url: str, exchange_token: str, extra_args: tuple[str, ...] = (),
                 binary: str | None = None, env: dict[str, str] | None = None, region: str | None = "lab-1"):
        """`binary` (default: the binary under test) with `env` added to the environment;
        `region=None` starts it without `--region`."""
        self.data_dir = tempfile.mkdtemp(prefix="corral-runner-")
        self.log_path = self.data_dir + ".log"
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [binary or require_binary(), "runner", "--server", server_url, "--exchange-token", exchange_token,
             "--data-dir", self.data_dir, *(("--region", region) if region else ()), *extra_args],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, **(env or {})},
        )

    def signal(self, sig: int) -> int:
        os.killpg(self.proc.pid, sig)
        return self.proc.wait(timeout=20)

    def wait_stream_open(self, timeout: float = 30.0) -> None:
        """Waits until the runner's request stream is open: the server sends the runner
        its spec first on every new stream, and the runner logs it. (A runner reports
        itself ACTIVE a moment before it opens the stream; a call forwarded to it in
        that moment is answered `unavailable`.)"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with open(self.log_path, "rb") as f:
                if b"received spec" in f.read():
                    return
            time.sleep(0.05)
        raise AssertionError(f"the runner's request stream never opened\n--- runner log ---\n{self.log()}")

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        self._log.close()
        shutil.rmtree(self.data_dir, ignore_errors=True)
        if os.path.exists(self.log_path):
            os.remove(self.log_path)


def wait_for(actor, runner_id: str, condition, process: RunnerProcess | None = None, timeout: float = 30.0):
    """Polls GetRunner until `condition(runner)` holds; returns that runner."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = actor.runners.get_runner(rp.GetRunnerRequest(runner_id=runner_id)).runner
        if condition(last):
            return last
        time.sleep(0.1)
    log = process.log() if process else ""
    raise AssertionError(f"runner never reached the expected state; last seen: {last}\n--- runner log ---\n{log}")


def start_connected_runner(server, actor, provider, extra_args: tuple[str, ...] = ()) -> tuple:
    """Creates a runner, starts its process (with further `corral runner` flags), and
    waits until it is ACTIVE and its request stream is open (calls forwarded to it
    reach it)."""
    created = actor.create_runner(provider=provider)
    process = RunnerProcess(server.url, created.exchange_token, extra_args)
    try:
        runner = wait_for(actor, created.runner.runner_id, lambda r: r.status.phase == rp.RUNNER_PHASE_ACTIVE, process)
        process.wait_stream_open()
    except BaseException:
        process.close()
        raise
    return runner, process
