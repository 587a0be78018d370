"""Many runners on one engine, as real processes: none removes, kills or answers for another's
live runs, whatever their instance ids; a crashed one's leftovers go within the documented
bound; shutting down never leaves a run in a state other than the one the API reports."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import docker
import httpx
import pytest

from backends.docker.backend import DockerBackend
from backends.labels import INSTANCE, MANAGED
from runner.settings import Settings
from tests.docker.watching import (
    WAITS_FOR_GO,
    Events,
    held_by,
    post_run,
    release,
    runner_process,
    stop,
)
from tests.faults import EngineProxy, engine_fault
from tests.helpers import (
    TEST_IMAGE,
    free_port,
    instance_id,
    managed_objects,
    remove_objects_of,
    run_body,
    run_containers,
    start_runner,
)


@pytest.mark.parametrize("identity", ["its own id", "the same id"])
def test_a_long_run_survives_another_runner_starting_reaping_and_stopping(docker_client, identity):
    first = instance_id("first")
    second = first if identity == "the same id" else instance_id("second")
    events = Events(docker_client, first)
    try:
        with runner_process(first) as (_, port):
            pending = post_run(port, run_body("sh", "-c", WAITS_FOR_GO))
            started = events.wait("start")
            with runner_process(second, reap_interval_seconds="0.2"):
                pass  # started (reaping at startup), then stopped by SIGTERM
            reaper = DockerBackend(Settings(instance_id=second))
            try:
                reaper.reap_orphans()  # what it removes on this shared engine is others' business
            finally:
                reaper.close()
            assert docker_client.api.inspect_container(started["Actor"]["ID"])["State"]["Running"]
            release(docker_client, started["Actor"]["ID"])
            response = pending()
            assert isinstance(response, httpx.Response), response
            assert response.status_code == 200, response.text
            assert response.json()["stdout"] == "survived\n"
    finally:
        events.close()
    assert managed_objects(docker_client, first) == managed_objects(docker_client, second) == []


def test_a_killed_runner_s_leftovers_go_within_its_lease_and_one_reap(docker_client):
    """Removed by another runner on the engine: the dead one never comes back. The bound is
    lease_seconds + reap_interval_seconds after the kill (here 2 + 0.5; the stream of engine
    events the test reads ends 15 s after the kill)."""
    dead, port = instance_id("dead"), free_port()
    fast = {"lease_seconds": "2", "reap_interval_seconds": "0.5"}
    with runner_process(instance_id("reaper"), **fast):
        events = Events(docker_client, dead)
        victim = start_runner(dead, port, **fast)
        try:
            post_run(port, run_body("sleep", "60", volumes={"/in": {"type": "directory"}}))
            events.wait("start")
            victim.send_signal(signal.SIGKILL)
            victim.wait(30)
            assert managed_objects(docker_client, dead), "the kill should have left the run behind"
            assert held_by(docker_client, dead), "the kill should have left its lease behind"
            events.close()
            events = Events(docker_client, dead, seconds=15)
            events.until_nothing_left()
        finally:
            events.close()
            victim.kill()


def test_sigterm_with_queued_async_runs_never_starts_them_and_says_so(docker_client):
    """The running run is handed over (any runner answers for it); the queued ones never run,
    leave no container in any state, and their records say so."""
    instance, after = instance_id("queue"), instance_id("after")
    events = Events(docker_client, instance)
    try:
        with runner_process(instance, max_concurrent_runs="1", shutdown_grace_seconds="1") as (
            process,
            port,
        ):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                running = start(client, "sh", "-c", "echo running; sleep 300")
                events.wait("start", role="async-run")
                queued = [start(client, "echo", "ran") for _ in range(3)]
                states = {client.get(f"/runs/{run_id}").json()["state"] for run_id in queued}
                assert states == {"queued"}
            assert stop(process) == 0
        with runner_process(after) as (_, port):
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
                for run_id in queued:
                    status = client.get(f"/runs/{run_id}").json()
                    assert status["state"] == "failed", status
                    assert "never ran" in status["error"]
                    assert containers_of(docker_client, run_id) == []
                assert client.get(f"/runs/{running}").json()["state"] == "running"
                assert client.delete(f"/runs/{running}").json()["state"] == "cancelled"
    finally:
        events.close()
        remove_objects_of(docker_client, instance)  # the runs' records, kept for result_ttl_seconds
        remove_objects_of(docker_client, after)


def test_sigterm_under_plain_uvicorn_holds_the_grace(docker_client):
    """`uvicorn api_app:app` waits for every request; the runner still kills a run that
    outlasts the grace, its caller learns why, and nothing is left."""
    instance, port = instance_id("uvicorn"), free_port()
    events = Events(docker_client, instance)
    process = start_runner(instance, port, app="api_app:app", shutdown_grace_seconds="1")
    try:
        pending = post_run(port, run_body("sleep", "60", volumes={"/in": {"type": "directory"}}))
        events.wait("start")
        process.send_signal(signal.SIGTERM)
        response = pending()
        assert isinstance(response, httpx.Response), response
        assert response.status_code == 503, response.text
        assert "shutdown_grace_seconds" in response.json()["message"]
        process.wait(60)
    finally:
        events.close()
        stop(process)
    assert managed_objects(docker_client, instance) == []
    assert held_by(docker_client, instance) == []


def start(client: httpx.Client, *command: str) -> str:
    response = client.post("/runs", json=run_body(*command))
    assert response.status_code == 202, response.text
    return str(response.json()["run_id"])


def containers_of(docker_client: docker.DockerClient, run_id: str) -> list[str]:
    found = run_containers(docker_client, run_id)
    return [f"{item['Id'][:12]} ({item['State']})" for item in found]


@engine_fault
def test_a_removal_another_runner_has_in_progress_counts_as_done(
    docker_client: docker.DockerClient, instance: str, tmp_path: Path
) -> None:
    """Two reapers remove the same leftover: the engine answers the second 409 "already in
    progress", which is the outcome it wanted, not a cleanup to retry later."""
    container = docker_client.api.create_container(
        TEST_IMAGE, ["true"], labels={MANAGED: "true", INSTANCE: instance}
    )["Id"]
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    proxy.refused.append(f"DELETE /v1.41/containers/{container}?".encode())
    message = f"removal of container {container} is already in progress"  # as moby says it
    proxy.refusal = (b"409 Conflict", json.dumps({"message": message}).encode())
    backend = DockerBackend(Settings(instance_id=instance, docker_host=proxy.docker_host))
    try:
        assert backend.containers.remove(container, None) is True  # not deferred
    finally:
        backend.close()
