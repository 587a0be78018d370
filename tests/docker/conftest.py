"""Fixtures for tests against the real Docker engine. No engine: these fail, loudly."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from runner.settings import Settings


@pytest.fixture(autouse=True)
def _leak_check(no_leaks: None) -> None:
    """Every test here counts towards the end-of-session leak check."""


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
