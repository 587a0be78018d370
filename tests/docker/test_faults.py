"""Faults against the real engine: the engine gone mid-run, the runner killed or stopped
mid-run, a container that ignores SIGTERM. Nothing is lost and nothing is left behind."""

from __future__ import annotations

import contextlib
import signal
import time

import httpx
import pytest

from tests.docker.watching import Events, held_by, in_background, post_run
from tests.faults import EngineProxy, engine_fault
from tests.helpers import free_port, instance_id, managed_objects, run_body, start_runner


def test_a_container_ignoring_sigterm_is_stopped_at_its_timeout(client):
    body = run_body("sh", "-c", "trap '' TERM; sleep 60", timeout_seconds=1)
    result = client.post("/run", json=body).json()
    assert result["timed_out"] is True
    assert result["execution_time"] < 20


@pytest.fixture
def proxy(tmp_path):  # type: ignore[no-untyped-def]
    """A proxy in front of the engine, cut only after the apps using it have stopped (asked
    for before `app_client`), so that they can remove their lease on the way out."""
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    yield proxy
    proxy.cut()


@engine_fault
def test_engine_gone_mid_run_is_503_then_the_next_run_works_and_nothing_is_left(
    proxy, app_client, docker_client
):
    client = app_client(docker_host=proxy.docker_host, reap_interval_seconds=0.2)
    instance = client.app.state.service.settings.instance_id
    events = Events(docker_client, instance)
    try:
        pending = in_background(lambda: client.post("/run", json=run_body("sleep", "30")))
        events.wait("start")
        proxy.cut()
        failed = pending()
        assert failed.status_code == 503
        assert "Docker engine" in failed.json()["message"]
        assert client.get("/health").status_code == 503
        proxy.start()
        again = client.post("/run", json=run_body("echo", "back"))
        assert again.status_code == 200 and again.json()["stdout"] == "back\n"
        events.until_no_runs_left()  # the cut run's (reaped) and this one's (cleaned up)
        assert client.app.state.service.backend.containers.cleanup.idle(60)
    finally:
        events.close()
    assert managed_objects(docker_client, instance) == []


def test_a_killed_runner_s_leftovers_go_when_it_restarts_once_its_lease_expires(docker_client):
    instance, port = instance_id("kill"), free_port()
    fast = {"lease_seconds": "2", "reap_interval_seconds": "0.5"}
    events = Events(docker_client, instance, seconds=90)
    first = start_runner(instance, port, **fast)
    try:
        pending = post_run(port, run_body("sleep", "60", volumes={"/in": {"type": "directory"}}))
        events.wait("start")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert isinstance(pending(), httpx.HTTPError)
        assert managed_objects(docker_client, instance), "the kill should have left the run behind"
        dead_held = held_by(docker_client, instance)
        second = start_runner(instance, port, **fast)
        events.wait("destroy")
        events.until_removed(dead_held)  # the dead runner's lease and hosts file too
        second.terminate()
        second.wait(30)
    finally:
        events.close()
        first.kill()
    assert managed_objects(docker_client, instance) == []


@contextlib.contextmanager
def running_in_a_runner(docker_client, body, stderr=None, **settings: str):  # type: ignore[no-untyped-def]
    """A runner process with one run started in it; afterwards nothing of it may remain."""
    instance, port = instance_id("signal"), free_port()
    events = Events(docker_client, instance)
    runner = start_runner(instance, port, stderr=stderr, **settings)
    try:
        pending = post_run(port, body)
        events.wait("start")
        yield runner, pending, events
    finally:
        events.close()
        runner.kill()
    assert managed_objects(docker_client, instance) == []


def test_sigterm_lets_a_run_in_flight_finish_within_the_grace(docker_client):
    body = run_body("sh", "-c", "sleep 2; echo finished")
    with running_in_a_runner(docker_client, body, shutdown_grace_seconds="30") as (
        runner,
        pending,
        _,
    ):
        runner.send_signal(signal.SIGTERM)
        response = pending()
        assert isinstance(response, httpx.Response) and response.status_code == 200
        assert response.json()["stdout"] == "finished\n"
        assert runner.wait(30) == 0


def test_ctrl_c_twice_lets_the_run_finish_and_exits_without_a_traceback(docker_client, tmp_path):
    """Ctrl-C in a terminal reaches every process of the group (`uv run`, a shell) and users
    press it twice: the second one neither cuts the run short nor prints a traceback."""
    body = run_body("sh", "-c", "sleep 2; echo finished")
    log = tmp_path / "stderr"
    with (
        log.open("wb") as stderr,
        running_in_a_runner(docker_client, body, stderr, shutdown_grace_seconds="30") as running,
    ):
        runner, pending, _ = running
        runner.send_signal(signal.SIGINT)
        runner.send_signal(signal.SIGINT)
        response = pending()
        assert isinstance(response, httpx.Response) and response.status_code == 200
        assert response.json()["stdout"] == "finished\n"
        assert runner.wait(30) == 0
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_sigterm_kills_and_removes_a_run_that_outlasts_the_grace(docker_client):
    body = run_body("sleep", "60", volumes={"/in": {"type": "directory"}})
    with running_in_a_runner(docker_client, body, shutdown_grace_seconds="1") as (
        runner,
        _,
        events,
    ):
        started = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(40) == 0
        events.wait("destroy")
        assert time.monotonic() - started < 40
