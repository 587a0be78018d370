"""No SSRF through image references at MCP's doors (run_container, pull_image), with
the SDK's own client over real HTTP: registries that are not public are refused as tool errors
naming `image` and RUNNER_ALLOWED_REGISTRIES before the engine contacts them, and a registry's
answer never reaches the agent."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from mcp import Client

from mcp_app import create_app
from tests.helpers import serving
from tests.registries import CREDENTIALS, MARKER, NOT_PUBLIC, FakeRegistry

pytestmark = pytest.mark.anyio


def refused(result, domain: str) -> None:  # type: ignore[no-untyped-def]
    assert result.is_error is True
    text = result.content[0].text
    assert text.startswith("image:"), text
    assert "RUNNER_ALLOWED_REGISTRIES" in text and domain in text


@pytest.mark.parametrize("registry", NOT_PUBLIC)
async def test_a_registry_that_is_not_public_is_refused_by_every_tool(
    client: Client, fake_registry: Callable[..., FakeRegistry], registry: str
) -> None:
    target = fake_registry(status=200, body=b"{}")
    domain = registry.format(port=target.port)
    image = f"{domain}/oneoff-test/x:1"
    run = {"image": image, "command": ["true"]}
    refused(await client.call_tool("run_container", run), domain)
    refused(await client.call_tool("run_container", {**run, "pull_policy": "missing"}), domain)
    refused(await client.call_tool("run_container", {**run, "wait_seconds": 0}), domain)
    refused(await client.call_tool("pull_image", {"image": image}), domain)
    with_auth = {"image": image, "auth_config": CREDENTIALS}
    refused(await client.call_tool("pull_image", with_auth), domain)
    assert target.contacts == 0


@pytest.fixture
async def misbehaving(
    fake_registry: Callable[..., FakeRegistry],
    make_settings,
    docker_client,  # type: ignore[no-untyped-def]
) -> AsyncIterator[tuple[Client, str]]:
    """A registry answering 404 with a marker in its body, listed by the operator, and a
    client of an MCP server on the real engine."""
    registry = fake_registry(status=404, body=MARKER.encode())
    address = f"127.0.0.1:{registry.port}"
    with serving(create_app(make_settings(allowed_registries=[address]))) as port:
        async with Client(f"http://127.0.0.1:{port}/mcp") as connected:
            yield connected, f"{address}/oneoff-test/x:1"
    assert registry.contacts > 0


async def test_a_registry_s_answer_never_reaches_the_agent(
    misbehaving: tuple[Client, str],
) -> None:
    client, image = misbehaving
    for tool, arguments in [
        ("pull_image", {"image": image}),
        ("pull_image", {"image": image, "auth_config": CREDENTIALS}),
        ("run_container", {"image": image, "command": ["true"]}),
    ]:
        result = await client.call_tool(tool, arguments)
        assert result.is_error is True
        assert MARKER not in result.content[0].text
        assert result.content[0].text.startswith(("image:", "auth_config:"))
