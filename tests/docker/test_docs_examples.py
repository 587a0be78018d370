"""The examples of the README and of every docs page, run as written, so they cannot drift. The
convention (which blocks run, what is substituted) is in docs/development.md, "The examples are
tests"; this module is its implementation."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import httpx
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters, get_default_environment

from tests.helpers import (
    ROOT,
    SUITE_KEPT_RUNS,
    TEST_IMAGE,
    free_port,
    instance_id,
    remove_objects_of,
    start_runner,
)

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PORTS = (8000, 8001, 9000, 9001)
"""The ports the examples name; each becomes a free port of the test's."""
OTHER_SHELLS = {"bash", "shell", "console", "shell-session", "zsh"}
"""Shell examples are `sh`, so that none escapes the test under another name."""
UNSAFE = re.compile(
    r"\b(kill|pkill|apt-get|apt|systemctl|dockerd|prune|sudo|helm|kind|kubectl|tool install)\b"
)
"""Commands an example may show but this test must never run on a shared machine."""
PRELUDE = """set -euo pipefail
curl() { command curl --fail-with-body "$@"; }
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@dataclass(frozen=True)
class Block:
    page: Path
    line: int
    language: str
    tag: str
    text: str

    def __str__(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def page_blocks(page: Path) -> list[Block]:
    """A page's fenced blocks: language and the rest of the info string (the tag)."""
    blocks: list[Block] = []
    opened: tuple[int, str, str] | None = None
    body: list[str] = []
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if not line.startswith("```"):
            body.append(line)
            continue
        if opened is None:
            language, _, tag = line[3:].strip().partition(" ")
            opened, body = (number, language, tag.strip()), []
        else:
            blocks.append(Block(page, opened[0], opened[1], opened[2], "\n".join(body) + "\n"))
            opened = None
    assert opened is None, f"{page.relative_to(ROOT)}:{opened[0]}: a fence is never closed"
    return blocks


def blocks_of(language: str, tag: str, page: Path | None = None) -> list[Block]:
    return [
        block
        for path in ([page] if page else PAGES)
        for block in page_blocks(path)
        if (block.language, block.tag) == (language, tag)
    ]


def substituted(text: str, ports: dict[int, int]) -> str:
    """The examples' ports become the test's, `busybox` (any tag) the local test image."""
    text = re.sub(r"\b(8000|8001|9000|9001)\b", lambda found: str(ports[int(found[0])]), text)
    return re.sub(r"(?<![\w./-])busybox(:[\w.-]+)?(?![\w/-])", TEST_IMAGE, text)


def clone_state() -> str:
    """What `git status` says of the clone: files an example left would show here."""
    done = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=all"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


@pytest.fixture(autouse=True)
def _clone_unchanged() -> Iterator[None]:
    """Examples run in temporary folders: the clone is as it was after every test here."""
    before = clone_state()
    yield
    assert clone_state() == before, "an example wrote into the clone"


def test_every_page_has_examples_and_the_readme_is_one_of_them() -> None:
    assert PAGES[0].name == "README.md" and len(PAGES) > 10
    assert len(blocks_of("sh", "")) >= 15
    assert blocks_of("sh", "", PAGES[0]) and blocks_of("json", "mcp-config", PAGES[0])


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_block_is_run_or_says_why_not(page: Path) -> None:
    for line, text in enumerate(page.read_text().splitlines(), start=1):
        assert not re.match(r"\s+```", text), f"{page.name}:{line}: an indented fence"
    for block in page_blocks(page):
        untested = block.tag.startswith("not-tested: ") and len(block.tag) > len("not-tested: ")
        if block.language == "sh":
            assert block.tag in ("", "server") or untested, f"{block}: tag {block.tag!r}"
        elif block.language == "json":
            assert block.tag in ("", "mcp-config"), f"{block}: tag {block.tag!r}"
        else:
            assert block.language not in OTHER_SHELLS, f"{block}: write sh, not {block.language}"
            assert block.tag == "", f"{block}: only sh and json blocks take a tag"


def test_no_block_that_runs_changes_the_machine() -> None:
    """Blocks that install packages or signal the engine must say `not-tested: <why>`."""
    for block in blocks_of("sh", "") + blocks_of("sh", "server"):
        found = UNSAFE.search(block.text)
        assert found is None, f"{block} runs {found[0]!r}: mark it not-tested"


@pytest.fixture(scope="module")
def instance(docker_client: docker.DockerClient) -> Iterator[str]:
    made = instance_id("docs")
    yield made
    remove_objects_of(docker_client, made)


@pytest.fixture(scope="module")
def environment(tmp_path_factory: pytest.TempPathFactory, instance: str) -> dict[str, str]:
    """A reader's shell: `oneoff-runner` is this clone's command and `uv run` finds the clone
    from any folder; anything a tool install would add goes to a temporary folder."""
    tools = tmp_path_factory.mktemp("tools")
    (tools / "bin").mkdir()
    command = Path(sys.executable).parent / "oneoff-runner"
    assert command.exists(), f"{command} missing: run the tests with `uv run pytest`"
    (tools / "bin" / "oneoff-runner").symlink_to(command)
    return {
        **os.environ,
        "UV_PROJECT": str(ROOT),
        "UV_FROZEN": "1",
        "UV_TOOL_DIR": str(tools),
        "UV_TOOL_BIN_DIR": str(tools / "bin"),
        "PATH": f"{tools / 'bin'}:{os.environ['PATH']}",
        "RUNNER_INSTANCE_ID": instance,
        "RUNNER_MAX_KEPT_RUNS": str(SUITE_KEPT_RUNS),
    }


@pytest.fixture(scope="module")
def runner(instance: str) -> Iterator[dict[int, int]]:
    """`oneoff-runner serve` on free ports, shared by the pages; the examples' ports mapped to
    them."""
    ports = {port: free_port() for port in PORTS}
    process = start_runner(instance, ports[8000], ports[8001])
    yield ports
    process.send_signal(signal.SIGTERM)
    assert process.wait(60) == 0


def pages_with_examples() -> list[Path]:
    return [page for page in PAGES if blocks_of("sh", "", page)]


@pytest.mark.parametrize(
    "page", pages_with_examples(), ids=lambda page: str(page.relative_to(ROOT))
)
def test_the_sh_blocks_of_a_page_run_in_order_as_written(
    page: Path, runner: dict[int, int], environment: dict[str, str], tmp_path: Path
) -> None:
    """One bash session per page, as a reader following it in one terminal, in an empty
    folder."""
    workdir = tmp_path / "reader"
    workdir.mkdir()
    script = PRELUDE + "".join(
        f"echo '### {block}' >&2\n{substituted(block.text, runner)}"
        for block in blocks_of("sh", "", page)
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


@pytest.mark.parametrize("block", blocks_of("sh", "server"), ids=str)
def test_a_server_block_serves_and_stops_on_ctrl_c(
    block: Block, environment: dict[str, str], tmp_path: Path
) -> None:
    """Served, then stopped by Ctrl-C without a traceback. (The exit status is `uv run`'s, which
    reports a Ctrl-C that reached it as 130 or 1 whatever the runner did; the runner's own 0 is
    tested in tests/docker/test_faults.py.)"""
    ports = {port: free_port() for port in PORTS}
    mentioned = {port: ports[port] for port in PORTS if str(port) in block.text}
    assert mentioned, f"{block}: a server block names its ports, so the test can move them"
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
    """The health of the first port the block's server answers on."""
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
@pytest.mark.parametrize("block", blocks_of("json", "mcp-config"), ids=str)
async def test_an_mcp_client_configuration_connects_and_runs(block: Block, instance: str) -> None:
    servers = json.loads(block.text.replace("/path/to/oneoff-runner", str(ROOT)))["mcpServers"]
    for config in servers.values():
        command = shutil.which(config["command"]) or config["command"]
        environment = {
            **get_default_environment(),
            "RUNNER_INSTANCE_ID": instance,
            "RUNNER_MAX_KEPT_RUNS": str(SUITE_KEPT_RUNS),
        }
        if "DOCKER_HOST" in os.environ:  # the suite's engine (the SDK passes only a few)
            environment["DOCKER_HOST"] = os.environ["DOCKER_HOST"]
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
