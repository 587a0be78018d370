"""An MCP server on a real loopback port over the real Docker engine, and SDK clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from mcp import Client

from backends.labels import INSTANCE
from mcp_app import create_app
from tests.conftest import serving


@pytest.fixture(autouse=True)
def _leak_check(no_leaks: None) -> None:
    """Every test here counts towards the end-of-session leak check."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def mcp_url(docker_client, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with serving(create_app(make_module_settings())) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def runs_url(docker_client, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A server for async runs and tasks. Their records outlive the runs by design (for
    `result_ttl_seconds`), so after the module everything the server made is removed by its
    instance label. (A TTL of 0 raced with the reapers of other runners on the engine, which
    expire records by their own labels.)"""
    settings = make_module_settings(result_ttl_seconds=600)
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp"
    label = f"{INSTANCE}={settings.instance_id}"
    for item in docker_client.api.containers(all=True, filters={"label": label}):
        docker_client.api.remove_container(item["Id"], force=True, v=True)
    for volume in docker_client.api.volumes(filters={"label": label}).get("Volumes") or []:
        docker_client.api.remove_volume(volume["Name"], force=True)


@pytest.fixture
async def client(mcp_url: str) -> AsyncIterator[Client]:
    async with Client(mcp_url) as connected:
        yield connected
