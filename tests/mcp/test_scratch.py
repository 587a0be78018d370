"""The host's disk through MCP: a run writing past its scratch is stopped and the tool result
says so, an async run's result is read from what was kept once its container is gone, and mounts
over the kernel's filesystems are tool errors naming the volume key, and so are a volume and an
async run past the tenant's bounds."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator

import docker
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from mcp_app import create_app
from tests.docker.test_scratch import WRITER
from tests.helpers import remove_objects_of, run_body, run_containers, serving, until
from tests.mcp.test_runs import read_until_finished

pytestmark = pytest.mark.anyio


@pytest.fixture
async def runs_client(runs_url: str) -> AsyncIterator[Client]:
    async with Client(runs_url) as connected:
        yield connected


async def test_run_container_past_its_scratch_says_so(client: Client) -> None:
    result = await client.call_tool("run_container", run_body("sh", "-c", WRITER, scratch="8m"))
    assert result.is_error is False
    assert result.structured_content["status"] == "scratch_exceeded", result.structured_content
    assert result.structured_content["scratch_exceeded"] is True
    assert "scratch limit of 8.0 MiB" in result.content[0].text


async def test_wait_run_reads_a_finished_run_from_its_kept_result(
    runs_client: Client, docker_client: docker.DockerClient
) -> None:
    body = run_body("sh", "-c", f"echo before; {WRITER}", scratch="8m", wait_seconds=0)
    started = await runs_client.call_tool("run_container", body)
    run_id = started.structured_content["run_id"]
    stdout, _, _ = await read_until_finished(runs_client, run_id)

    def kept() -> list[list[str]]:
        found = run_containers(docker_client, run_id)
        return [item["Names"] for item in found]

    until(lambda: kept() == [[f"/oneoff-{run_id}-result"]], 30)  # its container removed
    final = await runs_client.call_tool("wait_run", {"run_id": run_id, "wait_seconds": 0})
    assert final.structured_content["stdout"] == stdout == "before\n"
    assert final.structured_content["scratch_exceeded"] is True
    removed = await runs_client.call_tool("cancel_run", {"run_id": run_id})
    assert removed.is_error is False
    gone = await runs_client.call_tool("wait_run", {"run_id": run_id, "wait_seconds": 0})
    assert gone.is_error is True and "run_id" in gone.content[0].text


@pytest.mark.parametrize("key", ["/dev/shm", "/sys/fs/cgroup", "/proc/sys", "/etc/resolv.conf"])
async def test_a_mount_over_the_kernel_s_filesystems_is_a_tool_error(
    fake_client: Client, key: str
) -> None:
    result = await fake_client.call_tool(
        "run_container", run_body("true", volumes={key: {"type": "directory"}})
    )
    assert result.is_error is True
    assert f"volumes[{key!r}]" in result.content[0].text


async def test_a_bad_scratch_is_a_tool_error_like_memory(fake_client: Client) -> None:
    result = await fake_client.call_tool("run_container", run_body("true", scratch="lots"))
    assert result.is_error is True
    assert "scratch" in result.content[0].text
    assert "write a number and a unit" in result.content[0].text


@contextlib.asynccontextmanager
async def own_tenant(
    make_settings, docker_client: docker.DockerClient, token: str | None = None, **bounds: int
) -> AsyncIterator[Client]:  # type: ignore[no-untyped-def]
    """The SDK client on a runner of its own under `bounds`, as a tenant of its own (the engine
    is shared) unless `token` names one; what the runner made is removed after."""
    token = token or uuid.uuid4().hex
    settings = make_settings(api_tokens=[f"bounded:{token}"], **bounds)
    try:
        with serving(create_app(settings)) as port:
            async with sdk_client(port, token) as client:
                yield client
    finally:
        remove_objects_of(docker_client, settings.instance_id)


@contextlib.asynccontextmanager
async def sdk_client(port: int, token: str) -> AsyncIterator[Client]:
    """The official SDK's client on the MCP door at `port`, with `token`."""
    url = f"http://127.0.0.1:{port}/mcp"
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        httpx2.AsyncClient(headers=headers, timeout=60) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        yield client


async def test_create_volume_past_the_bound_is_a_tool_error_naming_it(
    make_settings, docker_client: docker.DockerClient
) -> None:  # type: ignore[no-untyped-def]
    names = [f"disk-bound-{uuid.uuid4().hex[:12]}" for _ in range(2)]
    async with own_tenant(make_settings, docker_client, max_volumes_per_tenant=1) as client:
        first = await client.call_tool("create_volume", {"name": names[0]})
        second = await client.call_tool("create_volume", {"name": names[1]})
    assert first.is_error is False
    assert second.is_error is True
    assert "RUNNER_MAX_VOLUMES_PER_TENANT: 1" in second.content[0].text
    assert "remove_volume" in second.content[0].text


async def test_a_run_past_the_kept_runs_bound_is_a_tool_error_naming_it(
    make_settings, docker_client: docker.DockerClient
) -> None:  # type: ignore[no-untyped-def]
    at_once = run_body("true", wait_seconds=0)
    async with own_tenant(make_settings, docker_client, max_kept_runs=1) as client:
        first = await client.call_tool("run_container", at_once)
        run_id = first.structured_content["run_id"]
        refused = await client.call_tool("run_container", at_once)
        await read_until_finished(client, run_id)
        assert (await client.call_tool("cancel_run", {"run_id": run_id})).is_error is False
        again = await client.call_tool("run_container", at_once)
        await read_until_finished(client, again.structured_content["run_id"])
    assert first.is_error is False and again.is_error is False
    assert refused.is_error is True
    assert "RUNNER_MAX_KEPT_RUNS: 1" in refused.content[0].text
    assert "cancel_run" in refused.content[0].text
