"""Long runs through MCP: start_run, get_run_logs with offsets, get_run, cancel_run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import docker
import pytest
from mcp import Client

from backends.labels import RUN_ID
from tests.helpers import run_body

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(runs_url: str) -> AsyncIterator[Client]:
    async with Client(runs_url) as connected:
        yield connected


async def read_until_finished(client: Client, run_id: str) -> tuple[str, str, int]:
    """Page through get_run_logs as an agent would; returns (stdout, stderr, calls)."""
    stdout = stderr = ""
    offsets = {"stdout_offset": 0, "stderr_offset": 0}
    for calls in range(1, 10_000):
        page = await client.call_tool("get_run_logs", {"run_id": run_id, **offsets})
        assert page.is_error is False, page.content
        logs = page.structured_content
        stdout += logs["stdout"]
        stderr += logs["stderr"]
        offsets = {key: logs[key] for key in offsets}
        if logs["finished"]:
            return stdout, stderr, calls
    raise AssertionError("the run never finished")


async def test_start_run_returns_at_once_and_get_run_has_the_result(client: Client) -> None:
    command = "for i in 1 2 3; do echo step $i; sleep 0.2; done; echo warn >&2"
    started = await client.call_tool("start_run", run_body("sh", "-c", command))
    assert started.is_error is False
    run_id = started.structured_content["run_id"]
    assert started.structured_content["state"] in ("queued", "pulling")
    stdout, stderr, _ = await read_until_finished(client, run_id)
    assert (stdout, stderr) == ("step 1\nstep 2\nstep 3\n", "warn\n")
    final = await client.call_tool("get_run", {"run_id": run_id})
    assert final.structured_content["state"] == "succeeded"
    assert final.structured_content["result"]["stdout"] == stdout
    assert final.content[0].text.startswith(f"run {run_id}: succeeded\nexit code 0")


async def test_cancel_run_stops_the_container(
    client: Client, docker_client: docker.DockerClient
) -> None:
    started = await client.call_tool("start_run", run_body("sh", "-c", "echo up; sleep 300"))
    run_id = started.structured_content["run_id"]
    offsets = {"stdout_offset": 0, "stderr_offset": 0}
    while True:
        page = await client.call_tool("get_run_logs", {"run_id": run_id, **offsets})
        if page.structured_content["stdout"]:
            break
    cancelled = await client.call_tool("cancel_run", {"run_id": run_id})
    assert cancelled.structured_content["state"] == "cancelled"
    assert docker_client.containers.list(all=True, filters={"label": f"{RUN_ID}={run_id}"}) == []


async def test_an_unknown_run_is_a_tool_error_naming_run_id(fake_client: Client) -> None:
    result = await fake_client.call_tool("get_run", {"run_id": "0123456789abcdef"})
    assert result.is_error is True
    assert "run_id" in result.content[0].text


async def test_a_malformed_run_id_is_refused(fake_client: Client) -> None:
    result = await fake_client.call_tool("cancel_run", {"run_id": "../../etc"})
    assert result.is_error is True
    assert "run_id" in result.content[0].text


async def test_start_run_feeds_stdin_to_the_command(client: Client) -> None:
    started = await client.call_tool(
        "start_run", run_body("sh", "-c", "cat; echo eof", stdin="in\n")
    )
    stdout, _, _ = await read_until_finished(client, started.structured_content["run_id"])
    assert stdout == "in\neof\n"
