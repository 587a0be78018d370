"""`oneoff-runner mcp --stdio`, launched as a client such as Claude Desktop would."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment

from tests.helpers import instance_id, run_body

pytestmark = [pytest.mark.anyio, pytest.mark.docker]


async def test_stdio_server_runs_a_container(tmp_path):
    command = Path(sys.executable).with_name("oneoff-runner")
    environment = {**get_default_environment(), "RUNNER_INSTANCE_ID": instance_id("stdio")}
    server = StdioServerParameters(
        command=str(command), args=["mcp", "--stdio"], env=environment, cwd=str(tmp_path)
    )
    async with Client(server) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert "run_container" in tools
        result = await client.call_tool("run_container", run_body("echo", "via", "stdio"))
    assert result.is_error is False
    assert result.structured_content["stdout"] == "via stdio\n"
