"""Waiting on the real engine and on runner processes without sleeping: the engine's own
events, calls in the background, runner processes that are always stopped."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Collection, Iterator

import docker
import httpx
import pytest

from backends.labels import ASYNC_ROLE, INSTANCE, POOL_ROLE, ROLE, RUN_ROLE
from tests.helpers import (
    HELD_ROLES,
    TEST_IMAGE,
    free_port,
    managed_objects,
    objects_of,
    start_runner,
    taken_warm,
)


class Events:
    """The engine's container events for one runner instance, read as they happen."""

    def __init__(
        self, docker_client: docker.DockerClient, instance: str, seconds: int = 60
    ) -> None:
        self.docker_client = docker_client
        self.instance = instance
        self.stream = docker_client.api.events(
            decode=True,
            until=int(time.time()) + seconds,
            filters={"type": ["container", "volume"]},
        )

    def wait(self, action: str, role: str = "run") -> dict:  # type: ignore[type-arg]
        """The next `action` event of a container of `role`; with RUNNER_WARM_POOL, a warm
        container's renaming to its run's name counts as a run's start (synchronous or async),
        and once renamed it is a run's container."""
        for event in self.stream:
            attributes = event.get("Actor", {}).get("Attributes", {})
            if event["Type"] != "container" or attributes.get(INSTANCE) != self.instance:
                continue
            if attributes.get(ROLE) == role and event["Action"] == action:
                return event  # type: ignore[no-any-return]
            if role not in (RUN_ROLE, ASYNC_ROLE):
                continue
            if action == "start" and warm_run_began(event):
                return event  # type: ignore[no-any-return]
            name, own_role = attributes.get("name", ""), attributes.get(ROLE)
            if event["Action"] == action and taken_warm(name, own_role):
                return event  # type: ignore[no-any-return]
        pytest.fail(f"no {action!r} event for instance {self.instance}")

    def until_nothing_left(self) -> None:
        """Until nothing of the instance is on the engine, lease included; fails when the
        stream's time is up first."""
        self._until_gone(lambda: everything_of(self.docker_client, self.instance))

    def until_no_runs_left(self) -> None:
        """Until nothing of the instance's runs is on the engine (what its live runner holds
        aside)."""
        self._until_gone(lambda: managed_objects(self.docker_client, self.instance))

    def until_removed(self, names: list[str]) -> None:
        """Until none of these containers or volumes of the instance is on the engine (another
        runner's reaper may be removing them)."""
        self._until_gone(lambda: set(names) & set(everything_of(self.docker_client, self.instance)))

    def _until_gone(self, left: Callable[[], Collection[str]]) -> None:
        """Until `left()` is empty, re-checked at each removal the engine reports; fails with
        what is left when the stream's time is up first."""
        if not left():
            return
        for event in self.stream:
            if event["Action"] == "destroy" and not left():
                return
        pytest.fail(f"instance {self.instance} left {sorted(left())} past the bound")

    def close(self) -> None:
        self.stream.close()


def warm_run_began(event: dict) -> bool:  # type: ignore[type-arg]
    """Whether a container event is a warm pool container taken by a run (`backends.docker.pool`
    renames it to the run's name then)."""
    attributes = event.get("Actor", {}).get("Attributes", {})
    return event.get("Action") == "rename" and attributes.get(ROLE) == POOL_ROLE


def everything_of(docker_client: docker.DockerClient, instance: str) -> list[str]:
    return [name for name, _ in objects_of(docker_client, instance)]


def held_by(docker_client: docker.DockerClient, instance: str) -> list[str]:
    """What runners of the instance hold while they live: their leases and hosts files."""
    return [name for name, role in objects_of(docker_client, instance) if role in HELD_ROLES]


def in_background(call: Callable[[], object]) -> Callable[[], object]:
    """Run `call` in a thread; returns a function that joins it and gives its result."""
    box: list[object] = []
    thread = threading.Thread(target=lambda: box.append(call()), daemon=True)
    thread.start()

    def result() -> object:
        thread.join(120)
        return box[0] if box else None

    return result


def post_run(port: int, body: dict[str, object]) -> Callable[[], object]:
    def call() -> object:
        try:
            return httpx.post(f"http://127.0.0.1:{port}/run", json=body, timeout=120)
        except httpx.HTTPError as exc:
            return exc

    return in_background(call)


@contextlib.contextmanager
def runner_process(instance: str, **settings: str) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """`oneoff-runner serve` in its own process; stopped with SIGTERM on exit (killed if it
    does not stop)."""
    port = free_port()
    process = start_runner(instance, port, **settings)
    try:
        yield process, port
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(60)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait(10)


def release(docker_client: docker.DockerClient, container: str) -> None:
    """Let a run waiting for /tmp/go (`WAITS_FOR_GO`) finish."""
    created = docker_client.api.exec_create(container, ["touch", "/tmp/go"])
    docker_client.api.exec_start(created["Id"])


WAITS_FOR_GO = "until [ -e /tmp/go ]; do sleep 0.1; done; echo survived"


SENTINEL_ROLE = "test-sentinel"


@contextlib.contextmanager
def containers_made(docker_client: docker.DockerClient, instance: str) -> Iterator[list[str]]:
    """The roles of the containers runners of `instance` create while the block runs (what a
    runner holds aside), from the engine's event stream, filled in when the block ends: a
    container of the test's own, made then, is the last event read, so the list is complete."""
    made: list[str] = []
    label = f"{INSTANCE}={instance}"
    stream = docker_client.api.events(
        decode=True, filters={"type": ["container"], "event": ["create"], "label": [label]}
    )
    try:
        yield made
        sentinel = docker_client.api.create_container(
            TEST_IMAGE, labels={INSTANCE: instance, ROLE: SENTINEL_ROLE}
        )
        docker_client.api.remove_container(sentinel["Id"], force=True)
        for event in stream:
            role = event.get("Actor", {}).get("Attributes", {}).get(ROLE)
            if role == SENTINEL_ROLE:
                break
            if role not in HELD_ROLES:
                made.append(str(role))
    finally:
        stream.close()
