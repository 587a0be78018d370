"""The README's examples, run as written, so they cannot drift. The convention (which blocks run,
what is substituted) is in the README's "The README's examples are tests"; this module is its
implementation."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment

from tests.helpers import ROOT, TEST_IMAGE, free_port, start_runner

README = ROOT / "README.md"
README_PORTS = (8000, 8001, 9000, 9001)
UNSAFE = re.compile(r"\b(kill|pkill|apt-get|apt|systemctl|dockerd|prune|sudo|helm|kind|kubectl)\b")
"""Commands a README example may show but this test must never run on a shared machine."""
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body "$@"; }
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Block:
    line: int
    language: str
    tag: str
    text: str


def readme_blocks() -> list[Block]:
    """Fenced blocks: language and the rest of the info string (the tag)."""
    blocks: list[Block] = []
    opened: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(README.read_text().splitlines(), start=1):
        if not line.startswith("```"):
            body.append(line)
            continue
        if opened is None:
            language, _, tag = line[3:].strip().partition(" ")
            opened, body = (number, language, tag.strip()), []
        else:
            blocks.append(Block(opened[0], opened[1], opened[2], "\n".join(body) + "\n"))
            opened = None
    return blocks


def substituted(text: str, ports: dict[int, int]) -> str:
    """The README's ports become the test's, `busybox` (any tag) the local test image."""
    text = re.sub(r"\b(8000|8001|9000|9001)\b", lambda found: str(ports[int(found[0])]), text)
    return re.sub(r"(?<![\w./-])busybox(:[\w.-]+)?(?![\w/-])", TEST_IMAGE, text)


def blocks_of(language: str, tag: str) -> list[Block]:
    return [block for block in readme_blocks() if (block.language, block.tag) == (language, tag)]


def test_every_block_is_run_or_says_why_not() -> None:
    known = {("sh", ""), ("sh", "server"), ("json", "mcp-config"), ("json", "")}
    for block in readme_blocks():
        untested = block.tag.startswith("not-tested: ") and len(block.tag) > len("not-tested: ")
        assert (block.language, block.tag) in known or untested, f"README line {block.line}"
    assert len(blocks_of("sh", "")) >= 6


def test_no_block_that_runs_changes_the_machine() -> None:
    """Blocks that install packages or signal the engine must say `not-tested: <why>`."""
    for block in blocks_of("sh", "") + blocks_of("sh", "server"):
        found = UNSAFE.search(block.text)
        assert found is None, f"README line {block.line} runs {found[0]!r}: mark it not-tested"


@pytest.fixture
def environment(tmp_path: Path, instance: str) -> dict[str, str]:
    """A reader's shell: this checkout for `uv run`, tools installed under tmp_path."""
    tools = tmp_path / "tools"
    return {
        **os.environ,
        "UV_PROJECT": str(ROOT),
        "UV_FROZEN": "1",
        "UV_TOOL_DIR": str(tools),
        "UV_TOOL_BIN_DIR": str(tools / "bin"),
        "PATH": f"{tools / 'bin'}:{os.environ['PATH']}",
        "RUNNER_INSTANCE_ID": instance,
    }


@pytest.fixture
def runner(instance: str) -> Iterator[dict[int, int]]:
    """`oneoff-runner serve` on free ports; the README's ports mapped to them."""
    ports = {port: free_port() for port in README_PORTS}
    process = start_runner(instance, ports[8000], ports[8001])
    yield ports
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def test_the_sh_blocks_run_in_order_as_written(
    runner: dict[int, int], environment: dict[str, str], tmp_path: Path
) -> None:
    test_no_block_that_runs_changes_the_machine()
    workdir = tmp_path / "reader"
    workdir.mkdir()
    script = PRELUDE + "".join(
        f"echo '### README line {block.line}' >&2\n{substituted(block.text, runner)}"
        for block in blocks_of("sh", "")
    )
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=workdir,
        env=environment,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


@pytest.mark.parametrize("block", blocks_of("sh", "server"), ids=lambda block: f"line{block.line}")
def test_a_server_block_serves_and_stops_on_ctrl_c(
    block: Block, environment: dict[str, str], tmp_path: Path
) -> None:
    """Served, then stopped by Ctrl-C without a traceback. (The exit status is `uv run`'s, which
    reports a Ctrl-C that reached it as 130 or 1 whatever the runner did; the runner's own 0 is
    tested in tests/docker/test_faults.py.)"""
    ports = {port: free_port() for port in README_PORTS}
    mentioned = {port: ports[port] for port in README_PORTS if str(port) in block.text}
    log = tmp_path / "server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            ["bash", "-c", PRELUDE + substituted(block.text, ports)],
            cwd=tmp_path,
            env=environment,
            stderr=output,
            start_new_session=True,
        )
        try:
            assert _first_health(mentioned, server)["status"] == "ok"
        finally:
            os.killpg(server.pid, signal.SIGINT)  # Ctrl-C in its terminal: the process group
            server.wait(60)
    assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    assert _closed(mentioned), "the server block left a port open after Ctrl-C"


def _first_health(ports: dict[int, int], server: subprocess.Popen[bytes]) -> dict[str, str]:
    """The health of the first README port the block's server answers on."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        for port in ports.values():
            try:
                answer: dict[str, str] = httpx.get(f"http://127.0.0.1:{port}/health").json()
                return answer
            except (httpx.HTTPError, ValueError):  # not up yet, or not the REST port
                pass
        time.sleep(0.2)  # polling a process that is starting: nothing to wait on instead
    pytest.fail(f"the server block did not serve (exit {server.poll()})")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "block", blocks_of("json", "mcp-config"), ids=lambda block: f"line{block.line}"
)
async def test_an_mcp_client_configuration_connects_and_runs(block: Block, instance: str) -> None:
    servers = json.loads(block.text.replace("/path/to/oneoff-runner", str(ROOT)))["mcpServers"]
    for config in servers.values():
        command = shutil.which(config["command"]) or config["command"]
        environment = {**get_default_environment(), "RUNNER_INSTANCE_ID": instance}
        server = StdioServerParameters(command=command, args=config["args"], env=environment)
        async with Client(server) as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert "run_container" in tools
            arguments = {"image": TEST_IMAGE, "pull_policy": "never", "command": ["echo", "hi"]}
            result = await client.call_tool("run_container", arguments)
        assert result.is_error is False
        assert result.structured_content["stdout"] == "hi\n"


def _closed(ports: dict[int, int]) -> bool:
    for port in ports.values():
        try:
            httpx.get(f"http://127.0.0.1:{port}/health")
            return False
        except httpx.HTTPError:
            pass
    return True
