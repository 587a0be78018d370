"""Fixtures shared by every suite."""

from __future__ import annotations

import contextlib
import gc
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import docker
import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp

from backends.labels import HOSTS_ROLE, INSTANCE, LEASE_ROLE, ROLE
from runner.settings import Settings
from tests.helpers import SUITE_ID, TEST_IMAGE, instance_id

pytest_plugins = ["tests.registries"]
ENGINE_SUITES = ("/tests/docker/", "/tests/mcp/")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if any(suite in str(item.path) for suite in ENGINE_SUITES):
            item.add_marker(pytest.mark.docker)


@pytest.fixture
def collect_garbage() -> Iterator[None]:
    yield
    gc.collect()


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {"instance_id": instance_id()}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def make_module_settings():  # type: ignore[no-untyped-def]
    return _settings


@pytest.fixture
def make_settings():
    """Settings for a test app: its own instance id, so its startup reaping touches only it."""
    return _settings


@contextlib.contextmanager
def serving(app: ASGIApp) -> Iterator[int]:
    """Serve `app` with uvicorn on a loopback port; yields the port, already listening (the
    socket is bound before the server starts, so requests queue until it is up)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(
            f"no Docker engine reachable ({exc}); run scripts/ci-provision.sh or start dockerd",
            pytrace=False,
        )
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"test image {TEST_IMAGE} missing; run scripts/ci-provision.sh", pytrace=False)
    yield client
    client.close()


def _suite_objects(docker_client: docker.DockerClient) -> tuple[list[str], list[str]]:
    """Containers (ids) and volumes (names) made by runners of this copy of the suite (never
    another's). Listed without inspecting each: other suites remove theirs meanwhile."""

    def ours(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(INSTANCE, "").startswith(f"{SUITE_ID}-")

    containers = docker_client.api.containers(all=True, filters={"label": INSTANCE})
    volumes = docker_client.api.volumes(filters={"label": INSTANCE}).get("Volumes") or []
    return (
        [item["Id"] for item in containers if ours(item.get("Labels"))],
        [item["Name"] for item in volumes if ours(item.get("Labels"))],
    )


@pytest.fixture(scope="session")
def no_leaks(docker_client: docker.DockerClient) -> Iterator[None]:
    """After the whole suite, nothing its runners made may remain; what did is removed, and
    nothing else on the (shared) engine is looked at or touched."""
    yield
    containers, volumes = _suite_objects(docker_client)
    for container in containers:
        _remove(docker_client.api.remove_container, container, force=True, v=True)
    for volume in volumes:
        _remove(docker_client.api.remove_volume, volume, force=True)
    assert not containers + volumes, f"the runner leaked: {containers + volumes}"


HELD_ROLES = (LEASE_ROLE, HOSTS_ROLE)
"""What a runner holds on the engine while it lives, beside its runs."""


def objects_of(docker_client: docker.DockerClient, instance: str) -> list[tuple[str, str | None]]:
    """(name, role) of every container, then every volume, runners of `instance` have on the
    engine (a container being removed may have no name left: then its id)."""
    label = {"label": f"{INSTANCE}={instance}"}
    containers = docker_client.api.containers(all=True, filters=label)
    volumes = docker_client.api.volumes(filters=label).get("Volumes") or []
    return [
        ((item.get("Names") or [item["Id"]])[0].lstrip("/"), (item.get("Labels") or {}).get(ROLE))
        for item in containers
    ] + [(item["Name"], (item.get("Labels") or {}).get(ROLE)) for item in volumes]


def managed_objects(docker_client: docker.DockerClient, instance: str) -> list[str]:
    """What runners of `instance` made for runs (what each holds while it lives, its lease and
    its hosts file, aside)."""
    return [name for name, role in objects_of(docker_client, instance) if role not in HELD_ROLES]


def remove_objects_of(docker_client: docker.DockerClient, instance: str) -> None:
    """Remove whatever runners of `instance` (an id of this suite's) left, leases included."""
    label = {"label": f"{INSTANCE}={instance}"}
    for item in docker_client.api.containers(all=True, filters=label):
        _remove(docker_client.api.remove_container, item["Id"], force=True, v=True)
    for item in docker_client.api.volumes(filters=label).get("Volumes") or []:
        _remove(docker_client.api.remove_volume, item["Name"], force=True)


def _remove(remove: Callable[..., object], name: str, **options: object) -> None:
    """Gone already, or (409) being removed by a runner's reaper, which finishes the job (the
    leak check at the end of the session tells if it does not)."""
    try:
        remove(name, **options)
    except docker.errors.APIError as exc:
        if exc.status_code not in (404, 409):
            raise


ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_runner(
    instance: str,
    port: int,
    mcp_port: int | None = None,
    app: str | None = None,
    stderr: IO[bytes] | None = None,
    **settings: str,
) -> subprocess.Popen[bytes]:
    """`oneoff-runner serve` as its own process, as users run it (or plain `uvicorn <app>`);
    returns once it is healthy. Its stderr goes to `stderr` when given."""
    environment = {
        **os.environ,
        "RUNNER_INSTANCE_ID": instance,
        "RUNNER_PORT": str(port),
        "RUNNER_MCP_PORT": str(mcp_port or free_port()),
        **{f"RUNNER_{key.upper()}": value for key, value in settings.items()},
    }
    command = ["runner.cli.main", "serve", "--log-level", "warning"]
    if app is not None:
        command = ["uvicorn", app, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=environment,
        stderr=stderr,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)  # polling a process that is starting: nothing to wait on instead
    process.kill()
    pytest.fail("the runner did not start")
