"""Fixtures for tests against the real Docker engine. No engine: these fail, loudly."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from backends.base import LABEL_PREFIX, MANAGED
from runner.settings import Settings
from tests.helpers import TEST_IMAGE


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/docker/" in str(item.path):
            item.add_marker(pytest.mark.docker)


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


@pytest.fixture(scope="session", autouse=True)
def no_leaks(engine: docker.DockerClient) -> Iterator[None]:
    """After the whole suite, nothing with the runner's labels may remain."""
    yield
    containers = engine.containers.list(all=True, filters={"label": MANAGED})
    volumes = engine.volumes.list(filters={"label": MANAGED})
    api_volumes = engine.volumes.list(filters={"label": f"{LABEL_PREFIX}.created-by"})
    leaked = [c.name for c in containers] + [v.name for v in volumes + api_volumes]
    for container in containers:
        container.remove(force=True)
    for volume in volumes + api_volumes:
        volume.remove(force=True)
    assert not leaked, f"the runner leaked: {leaked}"


def managed_objects(engine: docker.DockerClient, instance_id: str) -> list[str]:
    label = f"{LABEL_PREFIX}.instance={instance_id}"
    containers = engine.containers.list(all=True, filters={"label": label})
    volumes = engine.volumes.list(filters={"label": label})
    return [c.name for c in containers] + [v.name for v in volumes]


@pytest.fixture(scope="module")
def module_settings() -> Settings:
    return Settings(instance_id="test-docker-suite", max_output_bytes=64 * 1024)


@pytest.fixture(scope="module")
def client(engine: docker.DockerClient, module_settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(module_settings)) as test_client:
        yield test_client


@pytest.fixture
def app_client(engine: docker.DockerClient, make_settings):  # type: ignore[no-untyped-def]
    """A client for an app with specific settings: `app_client(max_timeout_seconds=5)`."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        test_client = TestClient(create_app(make_settings(**overrides)))
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)
