"""pull_image through the SDK's own client over real HTTP, against the local registries: progress
while layers download, the image on the engine afterwards, refusals as tool errors, and a
cancelled call stopping the download."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import anyio
import docker
import jsonschema
import pytest
from mcp import Client
from mcp.types import CallToolResult

from mcp_app import create_app
from tests.helpers import PUBLIC_REGISTRY, REGISTRY_USER, TEST_REGISTRIES, serving
from tests.mcp.test_protocol import until
from tests.registries import CREDENTIALS, Push, SlowProxy

pytestmark = pytest.mark.anyio


async def test_a_pull_reports_progress_and_leaves_the_image_on_the_engine(
    slow_registry: tuple[SlowProxy, str], unique_image: Push, docker_client: docker.DockerClient
) -> None:
    """Through a proxy that passes 2 MB/s, so the 4 MB layer downloads for about 2 s: an engine
    that reports a download's bytes on a timer (the containerd image store, Docker 29's default,
    every 100 ms) reports them too, not only one that reports each chunk as it comes."""
    proxy, url = slow_registry
    proxy.rate = 2_000_000
    image = unique_image(megabytes=4).replace(PUBLIC_REGISTRY, proxy.address)
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        notes.append((value, total, message))

    try:
        async with Client(url) as client:
            result = await client.call_tool(
                "pull_image", {"image": image}, progress_callback=on_progress
            )
        assert result.is_error is False, result.content
        assert docker_client.images.get(image).id == result.structured_content["id"]
    finally:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image, force=True)
    assert result.content[0].text.startswith(f"pulled {image}")
    values = [value for value, _, _ in notes]
    assert values and values == sorted(set(values))
    messages = [message or "" for _, _, message in notes]
    assert messages[0].startswith(f"pulling {image}")
    assert any("of 4.0 MB" in message for message in messages), messages


async def test_a_private_pull_with_credentials_and_refusals_that_never_echo_them(
    client: Client, unique_image: Push, docker_client: docker.DockerClient
) -> None:
    image = unique_image(private=True)
    wrong = {"username": REGISTRY_USER, "password": "nope-nope-4242"}
    refused = await client.call_tool("pull_image", {"image": image, "auth_config": wrong})
    assert refused.is_error is True
    assert refused.content[0].text.startswith("auth_config:")
    assert "nope-nope-4242" not in refused.content[0].text
    asked = await client.call_tool("pull_image", {"image": image})
    assert asked.is_error is True and "auth_config" in asked.content[0].text
    pulled = await client.call_tool("pull_image", {"image": image, "auth_config": CREDENTIALS})
    assert pulled.is_error is False, pulled.content
    assert docker_client.images.get(image).id == pulled.structured_content["id"]


async def test_unknown_images_and_arguments_are_tool_errors_naming_them(client: Client) -> None:
    missing = await client.call_tool(
        "pull_image", {"image": f"{PUBLIC_REGISTRY}/oneoff-test/nope:1"}
    )
    assert missing.is_error is True and missing.content[0].text.startswith("image:")
    extra = await client.call_tool("pull_image", {"image": "busybox", "platform": "arm64"})
    assert extra.is_error is True and "platform" in extra.content[0].text


@pytest.fixture
def slow_registry(docker_client, make_settings) -> Iterator[tuple[SlowProxy, str]]:  # type: ignore[no-untyped-def]
    """The anonymous registry through a proxy passing 200 KB/s, and the URL of an MCP server
    whose operator lists the proxy (a registry on loopback) in RUNNER_ALLOWED_REGISTRIES."""
    proxy = SlowProxy(PUBLIC_REGISTRY, rate=200_000)
    settings = make_settings(allowed_registries=[*TEST_REGISTRIES, proxy.address])
    try:
        with serving(create_app(settings)) as port:
            yield proxy, f"http://127.0.0.1:{port}/mcp"
    finally:
        proxy.close()


async def test_a_cancelled_pull_stops_downloading(
    slow_registry: tuple[SlowProxy, str], unique_image: Push, docker_client: docker.DockerClient
) -> None:
    """Through a proxy that passes 200 KB/s, a 4 MB layer would take 20 s; the call is
    cancelled at the first layer progress, and the engine hangs up on the download."""
    proxy, url = slow_registry
    image = unique_image(megabytes=4).replace(PUBLIC_REGISTRY, proxy.address)
    downloading = anyio.Event()

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        if "downloaded" in (message or ""):
            downloading.set()

    try:
        async with Client(url) as client, anyio.create_task_group() as group:

            async def pull() -> None:
                await client.call_tool(
                    "pull_image", {"image": image}, progress_callback=on_progress
                )

            group.start_soon(pull)
            with anyio.fail_after(30):
                await downloading.wait()
            assert proxy.downloading == 1
            group.cancel_scope.cancel()
        await anyio.to_thread.run_sync(until, lambda: proxy.downloading == 0, 15)
        with pytest.raises(docker.errors.ImageNotFound):
            docker_client.images.get(image)
    finally:
        for tag in docker_client.images.list(name=image.rsplit(":", 1)[0]):
            docker_client.images.remove(tag.id, force=True)


async def test_a_pull_past_the_answer_bound_goes_on_and_the_next_call_follows_it(
    unique_image: Push, docker_client: docker.DockerClient, make_settings
) -> None:  # type: ignore[no-untyped-def]
    """Through a proxy passing 400 KB/s, a 4 MB layer takes ~10 s, past a 5 s answer bound:
    each call answers "pulling" within the bound (with a schema-valid result), the pull goes
    on in the runner, and the next calls follow it (one download) until it answers the image."""
    proxy = SlowProxy(PUBLIC_REGISTRY, rate=400_000)
    bound = 5
    settings = make_settings(
        allowed_registries=[*TEST_REGISTRIES, proxy.address], mcp_answer_seconds=bound
    )
    image = unique_image(megabytes=4).replace(PUBLIC_REGISTRY, proxy.address)
    answers: list[tuple[CallToolResult, float]] = []
    try:
        with serving(create_app(settings)) as port:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                schema = next(
                    tool.output_schema
                    for tool in (await client.list_tools()).tools
                    if tool.name == "pull_image"
                )
                while len(answers) < 30:
                    began = time.monotonic()
                    result = await client.call_tool("pull_image", {"image": image})
                    answers.append((result, time.monotonic() - began))
                    if result.is_error or result.structured_content["status"] != "pulling":
                        break
        pulled_id = docker_client.images.get(image).id
    finally:
        proxy.close()
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(image, force=True)
    first, last = answers[0][0], answers[-1][0]
    assert first.structured_content == {
        "status": "pulling",
        "image": image,
        "id": None,
        "size": None,
    }
    assert "call pull_image again with the same arguments" in first.content[0].text
    assert last.is_error is False, last.content
    assert last.structured_content["status"] == "pulled"
    assert last.structured_content["id"] == pulled_id
    assert all(seconds < bound + 1 for _, seconds in answers), answers  # within the bound
    for result, _ in answers:
        jsonschema.validate(result.structured_content, schema)
    assert proxy.downloads == 1  # one pull, followed by every call
