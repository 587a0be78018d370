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
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest
import uvicorn
from docker.models.containers import Container
from docker.models.volumes import Volume
from starlette.types import ASGIApp

from runner.backend import INSTANCE
from runner.settings import Settings
from tests.helpers import SUITE_ID, TEST_IMAGE, instance_id

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
def engine() -> Iterator[docker.DockerClient]:
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


def _suite_objects(
    engine: docker.DockerClient,
) -> tuple[list[Container], list[Volume]]:
    """Containers and volumes made by runners of this copy of the suite (never another's)."""

    def ours(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(INSTANCE, "").startswith(f"{SUITE_ID}-")

    # sparse: no inspect per container, which fails when another suite removes one meanwhile
    containers = engine.containers.list(all=True, sparse=True, filters={"label": INSTANCE})
    volumes = engine.volumes.list(filters={"label": INSTANCE})
    return (
        [item for item in containers if ours(item.attrs.get("Labels"))],
        [item for item in volumes if ours(item.attrs.get("Labels"))],
    )


@pytest.fixture(scope="session")
def no_leaks(engine: docker.DockerClient) -> Iterator[None]:
    """After the whole suite, nothing its runners made may remain; what did is removed, and
    nothing else on the (shared) engine is looked at or touched."""
    yield
    containers, volumes = _suite_objects(engine)
    leaked = [str((c.attrs.get("Names") or [c.id])[0]) for c in containers] + [
        v.name for v in volumes
    ]
    for container in containers:
        container.remove(force=True)
    for volume in volumes:
        volume.remove(force=True)
    assert not leaked, f"the runner leaked: {leaked}"


def managed_objects(engine: docker.DockerClient, instance: str) -> list[str]:
    label = f"{INSTANCE}={instance}"
    containers = engine.containers.list(all=True, filters={"label": label})
    volumes = engine.volumes.list(filters={"label": label})
    return [c.name for c in containers] + [v.name for v in volumes]


ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_runner(
    instance: str, port: int, mcp_port: int | None = None, **settings: str
) -> subprocess.Popen[bytes]:
    """`oneoff-runner serve` as its own process, as users run it; returns once it is healthy."""
    environment = {
        **os.environ,
        "RUNNER_INSTANCE_ID": instance,
        "RUNNER_PORT": str(port),
        "RUNNER_MCP_PORT": str(mcp_port or free_port()),
        **{f"RUNNER_{key.upper()}": value for key, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli.main", "serve", "--log-level", "warning"],
        cwd=ROOT,
        env=environment,
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
