"""Long runs through MCP: run_container answering at once (`wait_seconds: 0`), wait_run with
offsets until finished, cancel_run."""

from __future__ import annotations

from collections.abc import AsyncIterator

import docker
import pytest
from mcp import Client

from tests.helpers import run_body, run_containers

pytestmark = pytest.mark.anyio


@pytest.fixture
async def client(runs_url: str) -> AsyncIterator[Client]:
    async with Client(runs_url) as connected:
        yield connected


async def read_until_finished(client: Client, run_id: str) -> tuple[str, str, int]:
    """Page through wait_run as an agent would; returns (stdout, stderr, calls)."""
    stdout = stderr = ""
    offsets = {"stdout_offset": 0, "stderr_offset": 0}
    for calls in range(1, 10_000):
        page = await client.call_tool("wait_run", {"run_id": run_id, **offsets})
        assert page.is_error is False, page.content
        logs = page.structured_content
        stdout += logs["stdout"]
        stderr += logs["stderr"]
        offsets = {key: logs[key] for key in offsets}
        if logs["finished"]:
            return stdout, stderr, calls
    raise AssertionError("the run never finished")


def started_now(body: dict) -> dict:  # type: ignore[type-arg]
    return {**body, "wait_seconds": 0}


async def test_a_run_answers_at_once_and_wait_run_has_the_result(client: Client) -> None:
    command = "for i in 1 2 3; do echo step $i; sleep 0.2; done; echo warn >&2"
    started = await client.call_tool("run_container", started_now(run_body("sh", "-c", command)))
    assert started.is_error is False
    run_id = started.structured_content["run_id"]
    assert started.structured_content["state"] in ("queued", "pulling")
    assert "not an error" in started.content[0].text
    stdout, stderr, _ = await read_until_finished(client, run_id)
    assert (stdout, stderr) == ("step 1\nstep 2\nstep 3\n", "warn\n")
    final = await client.call_tool("wait_run", {"run_id": run_id, "wait_seconds": 0})
    assert final.structured_content["state"] == "succeeded"
    assert final.structured_content["stdout"] == stdout
    assert final.content[0].text.startswith("exit code 0")


async def test_cancel_run_stops_the_container(
    client: Client, docker_client: docker.DockerClient
) -> None:
    body = started_now(run_body("sh", "-c", "echo up; sleep 300"))
    started = await client.call_tool("run_container", body)
    run_id = started.structured_content["run_id"]
    offsets = {"stdout_offset": 0, "stderr_offset": 0}
    while True:
        page = await client.call_tool("wait_run", {"run_id": run_id, "wait_seconds": 1, **offsets})
        if page.structured_content["stdout"]:
            break
    cancelled = await client.call_tool("cancel_run", {"run_id": run_id})
    assert cancelled.structured_content["state"] == "cancelled"
    assert run_containers(docker_client, run_id) == []


async def test_an_unknown_run_is_a_tool_error_naming_run_id(fake_client: Client) -> None:
    for tool in ("wait_run", "cancel_run"):
        result = await fake_client.call_tool(tool, {"run_id": "0123456789abcdef"})
        assert result.is_error is True
        assert result.structured_content is None
        assert "run_id" in result.content[0].text


async def test_a_malformed_run_id_is_refused(fake_client: Client) -> None:
    result = await fake_client.call_tool("cancel_run", {"run_id": "../../etc"})
    assert result.is_error is True
    assert "run_id" in result.content[0].text


async def test_an_async_run_feeds_stdin_to_the_command(client: Client) -> None:
    body = started_now(run_body("sh", "-c", "cat; echo eof", stdin="in\n"))
    started = await client.call_tool("run_container", body)
    stdout, _, _ = await read_until_finished(client, started.structured_content["run_id"])
    assert stdout == "in\neof\n"
