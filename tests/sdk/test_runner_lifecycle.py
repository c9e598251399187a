"""The runner lifecycle as the official SDK sees it, with a real `corral runner`.

Each test starts its own runner process against the shared server and watches the
runner through the public API only: ACTIVE with the status it reported, its schema,
secrets sealed to its key, INACTIVE after a clean stop, and DELETING then gone.
"""

from __future__ import annotations

import os
import signal

import pytest
from connectrpc.code import Code

from helpers import expect_error, new_name
from runner_harness import start_connected_runner, wait_for
from gitpod.v1 import runner_configuration_pb2 as rc
from gitpod.v1 import runner_pb2 as rp


@pytest.fixture
def connected_runner(server, admin):
    runner, process = start_connected_runner(server, admin, rc.RUNNER_PROVIDER_LINUX_HOST)
    try:
        yield runner, process
    finally:
        process.close()


def test_connected_runner_reports_its_status(admin, connected_runner):
    runner, _ = connected_runner
    status = runner.status
    assert status.phase == rp.RUNNER_PHASE_ACTIVE
    assert status.version
    assert status.region == "lab-1"
    assert "kernel" in status.system_details
    assert len(status.public_key) == 32
    assert status.log_url.startswith("http://")
    assert status.support_bundle_url.startswith("http://")
    assert status.HasField("updated_at")
    # The JSON codec and GET see the same runner.
    via_json = admin.api(codec="json", use_get=True).runners.get_runner(rp.GetRunnerRequest(runner_id=runner.runner_id))
    assert via_json.runner.status.public_key == status.public_key


def test_connected_runner_publishes_its_schema(admin, connected_runner):
    runner, _ = connected_runner
    schema = admin.config.get_runner_configuration_schema(
        rc.GetRunnerConfigurationSchemaRequest(runner_id=runner.runner_id)
    ).schema
    assert schema.version
    assert {f.id for f in schema.environment_classes} >= {"cpu", "memory", "disk"}
    assert "github" in {s.scm_id for s in schema.scm}


def test_oauth_secret_is_sealed_once_the_runner_has_a_key(admin, connected_runner):
    runner, _ = connected_runner
    created = admin.config.create_scm_integration(
        rc.CreateSCMIntegrationRequest(
            runner_id=runner.runner_id, scm_id="github", host=f"{new_name('gh')}.example.com", pat=True,
            oauth_client_id="client-id", oauth_plaintext_client_secret="very-secret",
        )
    )
    integration = admin.config.get_scm_integration(rc.GetSCMIntegrationRequest(id=created.id)).integration
    sealed = integration.oauth.encrypted_client_secret
    assert b"very-secret" not in sealed
    assert len(sealed) == len("very-secret") + 48  # a sealed box: ephemeral key + tag


def test_scm_request_without_a_token_asks_the_user_to_authenticate(admin, connected_runner):
    runner, _ = connected_runner
    err = expect_error(
        Code.FAILED_PRECONDITION,
        admin.runners.parse_context_url,
        rp.ParseContextURLRequest(runner_id=runner.runner_id, context_url="https://github.com/a/b"),
    )
    details = [d for d in err.details if d.type_name == "gitpod.v1.ParseContextURLPreconditionFailureDetails"]
    assert details, err
    info = rp.ParseContextURLPreconditionFailureDetails.FromString(details[0].message_bytes)
    assert info.scm_id == "github"
    assert info.authentication_required_url.startswith("https://github.com/settings/tokens")


def test_clean_stop_makes_the_runner_inactive(admin, connected_runner):
    runner, process = connected_runner
    assert process.signal(signal.SIGTERM) == 0
    stopped = wait_for(admin, runner.runner_id, lambda r: r.status.phase == rp.RUNNER_PHASE_INACTIVE)
    assert stopped.status.phase == rp.RUNNER_PHASE_INACTIVE


def test_deleting_a_connected_runner_removes_it_after_it_cleans_up(admin, connected_runner):
    runner, process = connected_runner
    admin.runners.delete_runner(rp.DeleteRunnerRequest(runner_id=runner.runner_id))
    assert process.proc.wait(timeout=30) == 0, process.log()
    assert not os.path.exists(os.path.join(process.data_dir, "credentials.json"))
    expect_error(Code.NOT_FOUND, admin.runners.get_runner, rp.GetRunnerRequest(runner_id=runner.runner_id))
    assert runner.runner_id not in admin.runner_ids()


def test_update_reaches_the_spec_the_runner_is_given(admin, connected_runner):
    runner, _ = connected_runner
    admin.runners.update_runner(
        rp.UpdateRunnerRequest(
            runner_id=runner.runner_id,
            spec=rp.UpdateRunnerRequest.Spec(
                configuration=rp.UpdateRunnerRequest.RunnerConfiguration(log_level=rp.LOG_LEVEL_DEBUG)
            ),
        )
    )
    updated = admin.runners.get_runner(rp.GetRunnerRequest(runner_id=runner.runner_id)).runner
    assert updated.spec.configuration.log_level == rp.LOG_LEVEL_DEBUG
    assert updated.status.phase == rp.RUNNER_PHASE_ACTIVE
