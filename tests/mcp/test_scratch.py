"""The host's disk through MCP: a run writing past its scratch is stopped and the tool result
says so, an async run's result is read from what was kept once its container is gone, and mounts
over the kernel's filesystems are tool errors naming the volume key."""

from __future__ import annotations

from collections.abc import AsyncIterator

import docker
import pytest
from mcp import Client

from backends.labels import RUN_ID
from tests.docker.test_scratch import WRITER
from tests.helpers import run_body, until
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


async def test_get_run_reads_a_finished_run_from_its_kept_result(
    runs_client: Client, docker_client: docker.DockerClient
) -> None:
    body = run_body("sh", "-c", f"echo before; {WRITER}", scratch="8m")
    started = await runs_client.call_tool("start_run", body)
    run_id = started.structured_content["run_id"]
    stdout, _, _ = await read_until_finished(runs_client, run_id)

    def kept() -> list[list[str]]:
        found = docker_client.api.containers(all=True, filters={"label": f"{RUN_ID}={run_id}"})
        return [item["Names"] for item in found]

    until(lambda: kept() == [[f"/oneoff-{run_id}-result"]], 30)  # its container removed
    final = await runs_client.call_tool("get_run", {"run_id": run_id})
    assert final.structured_content["result"]["stdout"] == stdout == "before\n"
    assert final.structured_content["result"]["scratch_exceeded"] is True
    removed = await runs_client.call_tool("cancel_run", {"run_id": run_id})
    assert removed.is_error is False
    gone = await runs_client.call_tool("get_run", {"run_id": run_id})
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
