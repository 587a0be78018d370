"""Faults against the real engine: the engine gone mid-run, the runner killed or stopped
mid-run, a container that ignores SIGTERM. Nothing is lost and nothing is left behind."""

from __future__ import annotations

import contextlib
import signal
import threading
import time

import httpx
import pytest

from runner.backend import INSTANCE, ROLE
from tests.conftest import free_port, managed_objects, start_runner
from tests.faults import EngineProxy, engine_fault
from tests.helpers import instance_id, run_body


class Events:
    """The engine's container events for one runner instance, read as they happen."""

    def __init__(self, engine, instance: str, seconds: int = 60) -> None:  # type: ignore[no-untyped-def]
        self.instance = instance
        self.stream = engine.api.events(
            decode=True, until=int(time.time()) + seconds, filters={"type": "container"}
        )

    def wait(self, action: str, role: str = "run") -> dict:
        for event in self.stream:
            attributes = event.get("Actor", {}).get("Attributes", {})
            if attributes.get(INSTANCE) != self.instance or attributes.get(ROLE) != role:
                continue
            if event["Action"] == action:
                return event
        pytest.fail(f"no {action!r} event for instance {self.instance}")

    def close(self) -> None:
        self.stream.close()


def in_background(call):  # type: ignore[no-untyped-def]
    """Run `call` in a thread; returns a function that joins it and gives its result."""
    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()

    def result() -> object:
        thread.join(120)
        return box[0] if box else None

    return result


def test_a_container_ignoring_sigterm_is_stopped_at_its_timeout(client):
    body = run_body("sh", "-c", "trap '' TERM; sleep 60", timeout_seconds=1)
    result = client.post("/run", json=body).json()
    assert result["timed_out"] is True
    assert result["execution_time"] < 20


@engine_fault
def test_engine_gone_mid_run_is_503_then_the_next_run_works_and_nothing_is_left(
    app_client, engine, tmp_path
):
    proxy = EngineProxy(tmp_path / "engine.sock")
    proxy.start()
    client = app_client(docker_host=proxy.docker_host, reap_interval_seconds=0.2)
    instance = client.app.state.service.settings.instance_id
    events = Events(engine, instance)
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
        events.wait("destroy")
        assert client.app.state.service.backend.cleanup.idle(60)
    finally:
        events.close()
        proxy.cut()
    assert managed_objects(engine, instance) == []


def post_run(port: int, body: dict[str, object]):  # type: ignore[no-untyped-def]
    def call():  # type: ignore[no-untyped-def]
        try:
            return httpx.post(f"http://127.0.0.1:{port}/run", json=body, timeout=120)
        except httpx.HTTPError as exc:
            return exc

    return in_background(call)


def test_a_killed_runner_reaps_its_leftovers_when_it_restarts(engine):
    instance, port = instance_id("kill"), free_port()
    events = Events(engine, instance, seconds=90)
    first = start_runner(instance, port)
    try:
        pending = post_run(port, run_body("sleep", "60", volumes={"/in": {"type": "directory"}}))
        events.wait("start")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        assert isinstance(pending(), httpx.HTTPError)
        assert managed_objects(engine, instance), "the kill should have left the run behind"
        second = start_runner(instance, port)
        events.wait("destroy")
        second.terminate()
        second.wait(30)
    finally:
        events.close()
        first.kill()
    assert managed_objects(engine, instance) == []


@contextlib.contextmanager
def running_in_a_runner(engine, body, **settings: str):  # type: ignore[no-untyped-def]
    """A runner process with one run started in it; afterwards nothing of it may remain."""
    instance, port = instance_id("signal"), free_port()
    events = Events(engine, instance)
    runner = start_runner(instance, port, **settings)
    try:
        pending = post_run(port, body)
        events.wait("start")
        yield runner, pending, events
    finally:
        events.close()
        runner.kill()
    assert managed_objects(engine, instance) == []


def test_sigterm_lets_a_run_in_flight_finish_within_the_grace(engine):
    body = run_body("sh", "-c", "sleep 2; echo finished")
    with running_in_a_runner(engine, body, shutdown_grace_seconds="30") as (runner, pending, _):
        runner.send_signal(signal.SIGTERM)
        response = pending()
        assert isinstance(response, httpx.Response) and response.status_code == 200
        assert response.json()["stdout"] == "finished\n"
        assert runner.wait(30) == 0


def test_sigterm_kills_and_removes_a_run_that_outlasts_the_grace(engine):
    body = run_body("sleep", "60", volumes={"/in": {"type": "directory"}})
    with running_in_a_runner(engine, body, shutdown_grace_seconds="1") as (runner, _, events):
        started = time.monotonic()
        runner.send_signal(signal.SIGTERM)
        assert runner.wait(40) == 0
        events.wait("destroy")
        assert time.monotonic() - started < 40
