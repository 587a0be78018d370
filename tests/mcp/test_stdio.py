"""`oneoff-runner mcp --stdio`, launched as a client such as Claude Desktop would (the SDK's
stdio client), and on raw pipes as a broken or hostile client would drive it: every line gets
an answer, a line past RUNNER_MAX_REQUEST_BYTES is refused without being held, and the next
request is served."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment
from mcp.shared.exceptions import MCPError

from tests.helpers import SUITE_KEPT_RUNS, instance_id, run_body

pytestmark = [pytest.mark.anyio, pytest.mark.docker]
COMMAND = [str(Path(sys.executable).with_name("oneoff-runner")), "mcp", "--stdio"]
MiB = 1024 * 1024


def sdk_server(tmp_path: Path) -> StdioServerParameters:
    environment = {
        **get_default_environment(),
        "RUNNER_INSTANCE_ID": instance_id("stdio"),
        "RUNNER_MAX_KEPT_RUNS": str(SUITE_KEPT_RUNS),
    }
    return StdioServerParameters(
        command=COMMAND[0], args=COMMAND[1:], env=environment, cwd=str(tmp_path)
    )


async def test_stdio_server_runs_a_container(tmp_path):
    async with Client(sdk_server(tmp_path)) as client:
        tools = {tool.name for tool in (await client.list_tools()).tools}
        assert "run_container" in tools
        result = await client.call_tool("run_container", run_body("echo", "via", "stdio"))
    assert result.is_error is False
    assert result.structured_content["stdout"] == "via stdio\n"


async def test_an_unknown_tool_is_a_json_rpc_error_and_the_session_goes_on(tmp_path):
    async with Client(sdk_server(tmp_path)) as client:
        with pytest.raises(MCPError) as caught:
            await client.call_tool("no_such_tool", {})
        bad = await client.call_tool("run_container", run_body("true", timeout_seconds=True))
        good = await client.call_tool("run_container", run_body("echo", "still", "here"))
    assert caught.value.error.code == -32602
    assert bad.is_error is True
    assert bad.content[0].text.startswith("timeout_seconds: must be a number")
    assert good.structured_content["stdout"] == "still here\n"


class Pipes:
    """The server on raw pipes: lines in, one JSON answer per line out."""

    def __init__(self, tmp_path: Path, **settings: str) -> None:
        environment = {
            **os.environ,
            "RUNNER_INSTANCE_ID": instance_id("stdio-raw"),
            "RUNNER_MAX_KEPT_RUNS": str(SUITE_KEPT_RUNS),
            **{f"RUNNER_{key.upper()}": value for key, value in settings.items()},
        }
        self.process = subprocess.Popen(
            COMMAND, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=tmp_path
        )
        self.send(request("initialize", 0, INITIALIZE))
        assert self.answer()["result"]["serverInfo"]["name"] == "oneoff-runner"
        self.send({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def send(self, message: Any) -> None:
        line = message if isinstance(message, bytes) else json.dumps(message).encode() + b"\n"
        assert self.process.stdin is not None
        self.process.stdin.write(line)
        self.process.stdin.flush()

    def answer(self, seconds: float = 60) -> Any:
        """The next line the server writes; fails the test after `seconds` without one."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], seconds)
        assert ready, f"no answer within {seconds}s"
        return json.loads(self.process.stdout.readline())

    def status(self, key: str) -> int:
        """A figure of /proc/<pid>/status, in bytes (VmRSS, VmHWM)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) * 1024
        raise KeyError(key)

    def close(self) -> None:
        """End of input ends the server, which exits cleanly."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.close()
        try:
            assert self.process.wait(60) == 0
        finally:
            self.process.stdout.close()


INITIALIZE = {
    "protocolVersion": "2025-06-18",
    "capabilities": {},
    "clientInfo": {"name": "pipes", "version": "1"},
}


def request(method: str, request_id: int, params: dict | None = None) -> dict:  # type: ignore[type-arg]
    return {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}


@pytest.fixture(scope="module")
def pipes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipes]:
    """One server for the module: each test leaves it serving, or says it did not."""
    served = Pipes(tmp_path_factory.mktemp("stdio"), max_request_bytes=str(16 * MiB))
    yield served
    served.close()


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"garbage{\n", -32700),
        (b'{"jsonrpc": "2.0", "id": 1, "method": "ping"\n', -32700),
        (b"\xff\xfe not utf-8\n", -32700),
        (b"[" * 100_000 + b"\n", -32700),
        (b"null\n", -32600),
        (b"[]\n", -32600),
        (b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}\n', -32600),
        (b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}\n', -32600),
        (b'{"jsonrpc": "2.0", "id": true, "method": "ping"}\n', -32600),
        (b'{"jsonrpc": "2.0", "id": null, "method": "ping"}\n', -32600),
        (b'{"jsonrpc": "1.0", "id": 1, "method": "ping"}\n', -32600),
    ],
    ids=[
        "garbage",
        "truncated",
        "not-utf8",
        "nested-too-deeply",
        "null",
        "empty-batch",
        "object-id",
        "float-id",
        "bool-id",
        "null-id",
        "json-rpc-1",
    ],
)
def test_a_line_that_is_no_message_is_answered_and_the_next_is_served(pipes, line, code):
    pipes.send(line)
    answer = pipes.answer()
    assert answer["id"] is None
    assert answer["error"]["code"] == code
    pipes.send(request("ping", 2))
    assert pipes.answer() == {"jsonrpc": "2.0", "id": 2, "result": {}}


def test_a_line_over_the_limit_is_refused_without_being_held(pipes):
    """300 MiB in one line against a 16 MiB limit: answered once it passes the limit, the rest
    skipped as it comes (the SDK's own transport held it all: 1.27 GB)."""
    pipes.send(request("ping", 1))  # warm: the code path loaded
    assert pipes.answer()["id"] == 1
    before = pipes.status("VmRSS")
    Path(f"/proc/{pipes.process.pid}/clear_refs").write_text("5")  # VmHWM := VmRSS
    head = json.dumps(request("tools/call", 3, {"name": "run_container"}))[:-2].encode()
    pipes.send(head + b', "arguments": {"stdin": "')
    started = time.monotonic()
    for _ in range(300):
        pipes.send(b"x" * MiB)
    pipes.send(b'"}}}\n')
    answer = pipes.answer()
    grown = pipes.status("VmHWM") - before
    assert answer["id"] is None and answer["error"]["code"] == -32600
    assert "RUNNER_MAX_REQUEST_BYTES" in answer["error"]["message"]
    assert grown < 64 * MiB, f"the server grew by {grown / MiB:.0f} MiB"
    assert time.monotonic() - started < 120
    pipes.send(request("ping", 4))
    assert pipes.answer() == {"jsonrpc": "2.0", "id": 4, "result": {}}
