"""An MCP server on a real loopback port over the real Docker engine, and SDK clients for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from mcp import Client

from mcp_app import create_app
from tests.conftest import remove_objects_of, serving


@pytest.fixture(autouse=True)
def _leak_check(no_leaks: None) -> None:
    """Every test here counts towards the end-of-session leak check."""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def mcp_url(engine, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with serving(create_app(make_module_settings())) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def runs_url(engine, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A server for task tests; what its runs keep is removed after the module. (Their results
    must outlive the test: with a TTL of 0 any runner's reaper on the engine may remove a run
    between two calls.)"""
    settings = make_module_settings()
    try:
        with serving(create_app(settings)) as port:
            yield f"http://127.0.0.1:{port}/mcp"
    finally:
        remove_objects_of(engine, settings.instance_id)


@pytest.fixture
async def client(mcp_url: str) -> AsyncIterator[Client]:
    async with Client(mcp_url) as connected:
        yield connected
