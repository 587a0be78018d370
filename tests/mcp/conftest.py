"""MCP servers for the tests, and SDK clients for them:

- over a `FakeBackend`, for the protocol (no engine): in-process, the SDK's client straight on
  the server as the SDK's own tests do (`fake_client`), or on a loopback port (`fake_url`);
- over the real Docker engine, on a loopback port, for runs (`mcp_url`, `runs_url`, `client`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from mcp import Client

from mcp_app import create_app
from runner.mcp.tools import build_server
from runner.service import RunnerService
from tests.fakes import FakeBackend
from tests.helpers import remove_objects_of, serving


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
async def fake_client(make_settings) -> AsyncIterator[Client]:  # type: ignore[no-untyped-def]
    settings = make_settings()
    service = RunnerService(settings, FakeBackend())
    await service.start()
    try:
        async with Client(build_server(lambda: service, settings)) as connected:
            yield connected
    finally:
        await service.stop()


@pytest.fixture(scope="module")
def fake_url(make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with serving(create_app(make_module_settings(), backend=FakeBackend())) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def mcp_url(docker_client, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """Every run_container is an async run, kept for `result_ttl_seconds` by design: after the
    module, what the server made is removed by its instance label."""
    settings = make_module_settings()
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp"
    remove_objects_of(docker_client, settings.instance_id)


@pytest.fixture(scope="module")
def runs_url(docker_client, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A server for async runs and tasks. Their records outlive the runs by design (for
    `result_ttl_seconds`), so after the module everything the server made is removed by its
    instance label. (A TTL of 0 raced with the reapers of other runners on the engine, which
    expire records by their own labels.)"""
    settings = make_module_settings(result_ttl_seconds=600)
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp"
    remove_objects_of(docker_client, settings.instance_id)


@pytest.fixture
async def client(mcp_url: str) -> AsyncIterator[Client]:
    async with Client(mcp_url) as connected:
        yield connected
