"""Faults on a real cluster (`pytest -m cluster`): the API server and the kubelet restarted under
a run, a run killed for memory, a run past its timeout, images that cannot be pulled, and a run
no node has the CPU for. The runner's pod deleted under a run is in test_cluster_helm (it needs
the chart's Deployment). Each has a twin through the fake API server (test_cluster_failures,
test_runs, test_async_runs)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backends.labels import INSTANCE
from tests.kubernetes.cluster_support import (
    IMAGE,
    core,
    namespace,
    remove_finished_run,
    remove_record,
    restart,
    wait_for_running,
)
from tests.kubernetes.conftest import Runner
from tests.kubernetes.follow import final_state

pytestmark = pytest.mark.cluster
SLOW = {
    "image": IMAGE,
    "command": ["sh", "-c", "echo before; sleep 20; echo after"],
    "timeout_seconds": 300,
}


def in_background(api: TestClient, body: dict[str, Any]) -> tuple[threading.Thread, list[Any]]:
    answers: list[Any] = []
    thread = threading.Thread(target=lambda: answers.append(api.post("/run", json=body)))
    thread.start()
    return thread, answers


@pytest.mark.parametrize("daemon", ["kube-apiserver", "kubelet"])
def test_a_restart_under_a_run_neither_fails_nor_loses_it(runner: Runner, daemon: str) -> None:
    """The daemon is stopped and started again while a plain run and an async run run: both
    finish as if nothing happened, with all their output."""
    with runner() as api:
        instance = api.app.state.service.settings.instance_id  # type: ignore[attr-defined]
        thread, answers = in_background(api, SLOW)
        run_id = api.post("/runs", json=SLOW).json()["run_id"]
        selector = f"{INSTANCE}={instance}"
        wait_for_running(core(), namespace(), f"{selector},oneoff-runner.run-id={run_id}")
        restart(daemon)
        thread.join(300)
        final = final_state(api, run_id)
        remove_finished_run(namespace(), run_id)
        result = answers[0].json()  # before the runner stops, which checks nothing is left
        assert (result.get("exit_code"), result.get("stdout")) == (0, "before\nafter\n"), result
        assert final["state"] == "succeeded", final
        assert final["result"]["stdout"] == "before\nafter\n"


def test_a_run_past_its_memory_is_oom_killed(runner: Runner) -> None:
    body = {"image": IMAGE, "command": ["sh", "-c", "echo filling; tail /dev/zero"]}
    with runner() as api:
        result = api.post("/run", json={**body, "memory": "16m"}).json()
    assert (result["oom_killed"], result["exit_code"]) == (True, 137), result
    assert result["stdout"] == "filling\n"


def test_an_async_run_past_its_timeout_ends_timed_out_with_its_output(runner: Runner) -> None:
    body = {"image": IMAGE, "command": ["sh", "-c", "echo started; sleep 600"]}
    with runner() as api:
        run_id = api.post("/runs", json={**body, "timeout_seconds": 3}).json()["run_id"]
        final = final_state(api, run_id)
        remove_finished_run(namespace(), run_id)
    assert final["state"] == "timeout", final
    assert (final["result"]["timed_out"], final["result"]["stdout"]) == (True, "started\n")


UNREACHABLE = {"image": "127.0.0.1:9/oneoff-test/unreachable:1", "pull_policy": "always"}


def test_an_unlisted_loopback_registry_is_a_403(runner: Runner) -> None:
    """The node's loopback is the kubelet's to reach, not a caller's: a registry there is a
    403 naming RUNNER_ALLOWED_REGISTRIES, and nothing of the run is left (`runner_app`)."""
    with runner() as api:
        response = api.post("/run", json=UNREACHABLE)
    assert response.status_code == 403, response.text
    assert "RUNNER_ALLOWED_REGISTRIES" in response.json()["message"]


def test_an_image_whose_registry_cannot_be_reached_is_a_502_after_retries(
    runner: Runner,
) -> None:
    """A registry the operator lists, where nothing listens on the port: the kubelet's pulls
    fail and back off; the runner answers once they have failed three times."""
    with runner(allowed_registries=["127.0.0.1:9"]) as api:
        response = api.post("/run", json=UNREACHABLE)
    assert response.status_code == 502, response.text
    assert response.json()["field"] == "image"


def test_an_async_run_of_an_image_that_does_not_exist_fails_saying_so(runner: Runner) -> None:
    body = {"image": "oneoff-runner/does-not-exist:0", "pull_policy": "always"}
    with runner() as api:
        run_id = api.post("/runs", json=body).json()["run_id"]
        final = final_state(api, run_id)
        remove_record(namespace(), run_id)
    assert final["state"] == "failed", final
    assert "does-not-exist" in final["error"]


def test_a_run_no_node_has_the_cpu_for_is_the_documented_503(runner: Runner) -> None:
    """More CPU than the node has (within the runner's maximum): the pod stays Pending, and
    the start timeout ends it with the scheduler's reason."""
    allocatable = core().list_node().items[0].status.allocatable["cpu"]
    cpus = int(allocatable) + 1 if allocatable.isdigit() else 64
    with runner(kube_start_timeout_seconds=5, max_cpus=cpus) as api:
        response = api.post("/run", json={"image": IMAGE, "command": ["true"], "cpus": cpus})
    assert response.status_code == 503, response.text
    message = response.json()["message"]
    assert "Insufficient cpu" in message and "RUNNER_KUBE_START_TIMEOUT_SECONDS" in message
