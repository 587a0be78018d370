"""Fixtures for tests against the real Docker engine. No engine: these fail, loudly."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import docker
import httpx
import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from backends.labels import INSTANCE, POOL_ROLE, ROLE
from runner.settings import Settings
from tests.helpers import (
    SUITE_ID,
    SUITE_KEPT_RUNS,
    TEST_IMAGE,
    TEST_REGISTRIES,
    LocalClient,
    Server,
    instance_id,
    remove_objects_of,
    serving,
)


@pytest.fixture(scope="session", autouse=True)
def warm_runs_taken(docker_client: docker.DockerClient) -> Iterator[None]:
    """With RUNNER_WARM_POOL set (the suite's run with a pool, in CI), runs must have taken warm
    containers, or that run would test nothing it claims to: counted from the engine's events
    (a pool container of this suite renamed to its run's name), read as they come (the engine
    keeps only its last 256) up to a sentinel of the fixture's own."""
    if not os.environ.get("RUNNER_WARM_POOL"):
        yield
        return
    filters = {"type": ["container"], "event": ["rename"], "label": [f"{ROLE}={POOL_ROLE}"]}
    stream = docker_client.api.events(decode=True, filters=filters)
    sentinel = f"{SUITE_ID}-sentinel"
    taken: list[str] = []

    def count() -> None:
        for event in stream:
            instance = event["Actor"]["Attributes"].get(INSTANCE, "")
            if instance == sentinel:
                return
            if instance.startswith(SUITE_ID):
                taken.append(instance)

    reader = threading.Thread(target=count, daemon=True)
    reader.start()
    yield
    made = docker_client.api.create_container(
        TEST_IMAGE, labels={INSTANCE: sentinel, ROLE: POOL_ROLE}
    )["Id"]
    try:
        docker_client.api.rename(made, sentinel)
        reader.join(60)
    finally:
        docker_client.api.remove_container(made, force=True)
        stream.close()
    assert taken, "RUNNER_WARM_POOL is set but no run took a warm container"


@pytest.fixture(scope="module")
def module_settings() -> Settings:
    return Settings(
        instance_id=instance_id("docker"),
        max_output_bytes=64 * 1024,
        allowed_registries=TEST_REGISTRIES,
        max_kept_runs=SUITE_KEPT_RUNS,
    )


@pytest.fixture(scope="module")
def client(docker_client: docker.DockerClient, module_settings: Settings) -> Iterator[TestClient]:
    with LocalClient(create_app(module_settings)) as test_client:
        yield test_client


@pytest.fixture
def app_client(docker_client: docker.DockerClient, make_settings):  # type: ignore[no-untyped-def]
    """A client for an app with specific settings: `app_client(max_timeout_seconds=5)`."""
    clients: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        test_client = LocalClient(create_app(make_settings(**overrides)))
        clients.append(test_client.__enter__())
        return test_client

    yield make
    for test_client in clients:
        test_client.__exit__(None, None, None)


@pytest.fixture
def own_network(docker_client: docker.DockerClient) -> Iterator[str]:
    """A network of the test's own (internal: no way out), removed afterwards; tests never
    rely on the engine's default `bridge`."""
    network = docker_client.networks.create(f"{instance_id('net')}", driver="bridge", internal=True)
    try:
        yield str(network.name)
    finally:
        network.remove()


@pytest.fixture
def instance(docker_client: docker.DockerClient) -> Iterator[str]:
    """An instance id of its own; whatever its runs keep is removed after the test."""
    made = instance_id("async")
    yield made
    remove_objects_of(docker_client, made)


@pytest.fixture
def server(instance: str, make_settings) -> Server:  # type: ignore[no-untyped-def]
    """`with server(**settings) as client:` a runner served by uvicorn, stopped on exit."""

    @contextlib.contextmanager
    def serve(**overrides: object) -> Iterator[httpx.Client]:
        app = create_app(make_settings(instance_id=instance, **overrides))
        with serving(app) as port, httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            client.get("/livez")  # served: the runner (and its pool) started
            pool = getattr(app.state.service.backend, "pool", None)
            assert pool is None or pool.wait_full(60), "the warm pool did not fill"
            yield client  # with RUNNER_WARM_POOL, its first runs take warm containers

    return serve
