"""Removal after the answer: a run's container and volume are removed in the background once
its caller has the result. The engine is reached through a proxy that can hold the runner's
DELETE requests, so "the answer came while the removal was pending" is a fact, not a race."""

from __future__ import annotations

import signal

import httpx

from tests.docker.watching import Events
from tests.faults import EngineProxy, engine_fault, removals_held
from tests.helpers import free_port, instance_id, managed_objects, run_body, start_runner


@engine_fault
def test_the_answer_does_not_wait_for_the_removal(app_client, docker_client, tmp_path):
    with removals_held(app_client, tmp_path / "engine.sock") as (client, instance):
        result = client.post("/run", json=run_body("echo", "hi")).json()
        left_while_held = managed_objects(docker_client, instance)
    assert result["stdout"] == "hi\n"
    assert left_while_held == [f"oneoff-{result['run_id']}"]
    assert client.app.state.service.backend.containers.cleanup.idle(60)
    assert managed_objects(docker_client, instance) == []


@engine_fault
def test_a_runner_killed_before_its_background_removal_reaps_it_when_it_restarts(
    docker_client, tmp_path
):
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    instance, port = instance_id("cleanup-kill"), free_port()
    fast = {"lease_seconds": "1", "reap_interval_seconds": "0.2"}  # the dead runner's lease
    events = Events(docker_client, instance)
    first = start_runner(instance, port, docker_host=proxy.docker_host, **fast)
    try:
        proxy.removals.clear()
        body = run_body("echo", "hi")
        answer = httpx.post(f"http://127.0.0.1:{port}/run", json=body, timeout=120)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        proxy.cut()  # the held removal dies with the connection it was sent on
        proxy.removals.set()
        left = managed_objects(docker_client, instance)
        second = start_runner(instance, port, **fast)
        events.wait("destroy")  # once the dead runner's lease has expired
        second.terminate()
        second.wait(30)
    finally:
        events.close()
        first.kill()
        proxy.cut()
    assert answer.json()["stdout"] == "hi\n"
    run_id = answer.json()["run_id"]
    assert left == [f"oneoff-{run_id}"]
    assert managed_objects(docker_client, instance) == []
