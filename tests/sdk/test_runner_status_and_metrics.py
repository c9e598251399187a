"""What a connected runner's status says, and its metrics push, as the official SDK sees
them (docs/runner-status-and-metrics.md).

Each test starts its own `corral runner` against the shared server: capabilities are
exactly what the runner serves, gateway_info names the replica with a measured latency,
additional_info carries the operator's `--info`, log URLs follow `--advertise-url` and
answer there, and the metrics configuration set through UpdateRunner reaches a
remote-write receiver (a small one in this test: the Rust end-to-end test uses a real
Prometheus) with its basic auth, changes included.
"""

from __future__ import annotations

import base64
import http.server
import socket
import threading
import time
import urllib.request

import pytest

from corral_harness import free_port
from helpers import Code, expect_error
from runner_harness import RunnerProcess, start_connected_runner, wait_for
from gitpod.v1 import runner_configuration_pb2 as rc
from gitpod.v1 import runner_pb2 as rp


@pytest.fixture
def advertised_runner(server, admin):
    port = free_port()
    runner, process = start_connected_runner(
        server,
        admin,
        rc.RUNNER_PROVIDER_LINUX_HOST,
        (
            "--listen", f"127.0.0.1:{port}",
            "--advertise-url", f"http://localhost:{port}/",
            "--info", "team=sdk",
            "--info", "rack=r2",
        ),
    )
    try:
        yield runner, process, port
    finally:
        process.close()


def test_capabilities_are_exactly_what_the_runner_serves(advertised_runner):
    runner, _, _ = advertised_runner
    assert sorted(runner.status.capabilities) == sorted([
        rp.RUNNER_CAPABILITY_LIST_SCM_ORGANIZATIONS,
        rp.RUNNER_CAPABILITY_CHECK_REPOSITORY_ACCESS,
    ])


def test_gateway_info_names_the_replica_with_a_measured_latency(server, admin, advertised_runner):
    runner, process, _ = advertised_runner
    # The latency is the round trip of the runner's previous call (sign-up, then reports).
    runner = wait_for(
        admin,
        runner.runner_id,
        lambda r: r.status.gateway_info.latency.ToMicroseconds() > 0,
        process,
    )
    gateway = runner.status.gateway_info.gateway
    assert gateway.url == server.url
    assert gateway.name == socket.gethostname()
    assert gateway.region == ""
    assert runner.status.gateway_info.latency.ToSeconds() < 60


def test_additional_info_carries_the_operators_info(advertised_runner):
    runner, _, _ = advertised_runner
    assert [(f.key, f.value) for f in runner.status.additional_info] == [("team", "sdk"), ("rack", "r2")]


def test_log_urls_follow_the_advertised_url_and_answer_there(admin, advertised_runner):
    runner, _, port = advertised_runner
    assert runner.status.log_url == f"http://localhost:{port}/logs"
    assert runner.status.support_bundle_url == f"http://localhost:{port}/support-bundle"
    token = admin.runners.create_runner_logs_token(
        rp.CreateRunnerLogsTokenRequest(runner_id=runner.runner_id)
    ).access_token
    for url in (runner.status.log_url, runner.status.support_bundle_url):
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200, url


class _Receiver:
    """Records the remote-write POSTs it gets; answers 401 unless the basic auth is right."""

    def __init__(self, username: str, password: str):
        self.expected = "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()
        self.requests: list[dict] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (the stdlib's name)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                auth = self.headers.get("Authorization", "")
                receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body, "auth": auth})
                self.send_response(204 if auth == receiver.expected else 401)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/api/v1/write"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def accepted(self) -> list[dict]:
        return [r for r in self.requests if r["auth"] == self.expected]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _wait(condition, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"never: {what}")


def _set_metrics(admin, runner_id: str, **fields):
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=runner_id,
            spec=rp.UpdateRunnerRequest.Spec(
                configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                    metrics=rp.UpdateRunnerRequest.MetricsConfiguration(**fields)
                )
            ),
        )
    )


def test_metrics_configuration_reaches_the_collector_with_its_credentials(admin, advertised_runner):
    runner, process, _ = advertised_runner
    receiver = _Receiver("sdk-user", "right-password")
    try:
        _set_metrics(admin, runner.runner_id, enabled=True, url=receiver.url,
                     username="sdk-user", password="wrong-password")
        _wait(lambda: receiver.requests, "a push arrives")
        assert not receiver.accepted()
        # The password is write-only; the runner keeps working while refused.
        got = admin.runners.get_runner(rp.GetRunnerRequest(runner_id=runner.runner_id)).runner
        assert got.spec.configuration.metrics.password == ""
        assert got.spec.configuration.metrics.url == receiver.url
        assert got.status.phase == rp.RUNNER_PHASE_ACTIVE

        # A new password takes effect without a restart.
        _set_metrics(admin, runner.runner_id, password="right-password")
        _wait(receiver.accepted, "a push with the right credentials")
        push = receiver.accepted()[0]
        assert push["path"] == "/api/v1/write"
        headers = {k.lower(): v for k, v in push["headers"].items()}
        assert headers["content-encoding"] == "snappy"
        assert headers["content-type"] == "application/x-protobuf"
        assert headers["x-prometheus-remote-write-version"] == "0.1.0"
        assert len(push["body"]) > 0
        assert b"right-password" not in process.log().encode()
        assert b"wrong-password" not in process.log().encode()

        # Disabled: the runner stops pushing and keeps running.
        _set_metrics(admin, runner.runner_id, enabled=False)
        _wait(lambda: "metrics push disabled" in process.log(), "the runner stops pushing")
        assert process.proc.poll() is None
    finally:
        receiver.close()


def test_a_metrics_url_that_is_not_http_is_refused_and_nothing_changes(admin, advertised_runner):
    runner, _, _ = advertised_runner
    _set_metrics(admin, runner.runner_id, url="https://collector.example/api/v1/write")
    for bad in ("ftp://collector.example/write", "collector.example:9090", "http:///write", "http://a b/write",
                "https://user:secret@collector.example/write"):
        expect_error(
            Code.INVALID_ARGUMENT,
            admin.runners.update_runner,
            rp.UpdateRunnerRequest(
                runner_id=runner.runner_id,
                spec=rp.UpdateRunnerRequest.Spec(
                    configuration=rp.UpdateRunnerRequest.RunnerConfiguration(
                        metrics=rp.UpdateRunnerRequest.MetricsConfiguration(url=bad, enabled=True)
                    )
                ),
            ),
        )
    got = admin.runners.get_runner(rp.GetRunnerRequest(runner_id=runner.runner_id)).runner
    assert got.spec.configuration.metrics.url == "https://collector.example/api/v1/write"
    assert not got.spec.configuration.metrics.enabled


def test_region_is_the_spec_hint_when_the_runner_has_no_region_flag(server, admin):
    created = admin.create_runner(spec=rp.RunnerSpec(configuration=rp.RunnerConfiguration(region="eu-hint-1")))
    process = RunnerProcess(server.url, created.exchange_token, region=None)
    try:
        # The spec arrives on the stream, possibly after the first report: the next one has it.
        runner = wait_for(admin, created.runner.runner_id, lambda r: r.status.region == "eu-hint-1", process)
        assert runner.status.phase == rp.RUNNER_PHASE_ACTIVE
    finally:
        process.close()
    created = admin.create_runner(spec=rp.RunnerSpec(configuration=rp.RunnerConfiguration(region="eu-hint-1")))
    process = RunnerProcess(server.url, created.exchange_token, region="eu-actual-2")
    try:
        runner = wait_for(admin, created.runner.runner_id, lambda r: r.status.phase == rp.RUNNER_PHASE_ACTIVE, process)
        assert runner.status.region == "eu-actual-2"
    finally:
        process.close()
