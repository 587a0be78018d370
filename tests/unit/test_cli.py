"""The `oneoff-runner` command's own decisions, as a user meets them before anything runs:
ports, arguments, help, an engine it cannot reach (serving itself is covered by the suites)."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backends.docker.errors import DEFAULT_ADDRESS, unreachable
from runner.cli.main import main, parser
from runner.settings import Settings
from tests.helpers import free_port

COMMAND = Path(sys.executable).with_name("oneoff-runner")


def test_serving_beyond_loopback_without_tokens_is_refused(monkeypatch):
    monkeypatch.delenv("RUNNER_API_TOKENS", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--host", "0.0.0.0"])
    assert "RUNNER_API_TOKENS" in str(caught.value)


def test_the_command_explains_itself():
    done = subprocess.run([str(COMMAND), "--help"], capture_output=True, text=True, check=True)
    assert "serve" in done.stdout and "mcp" in done.stdout


def serve(*arguments: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`oneoff-runner serve` as a user starts it; it must end by itself."""
    return subprocess.run(
        [str(COMMAND), "serve", *arguments],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_serve_on_a_taken_port_exits_at_once_naming_the_port_and_the_fix():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        mcp_port = free_port()
        done = serve("--port", str(port), "--mcp-port", str(mcp_port))
    assert done.returncode != 0
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert f"port {port}" in line and "in use" in line and "--port or RUNNER_PORT" in line
    for number in (port, mcp_port):  # nothing left listening: both are free again
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", number))


def test_a_taken_mcp_port_names_its_own_option_and_frees_the_rest_port():
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        done = serve("--port", str(port), "--mcp-port", str(taken.getsockname()[1]))
    (line,) = done.stderr.splitlines()
    assert "MCP server" in line and "--mcp-port or RUNNER_MCP_PORT" in line
    with socket.socket() as sock:  # bound before the MCP port failed, and closed
        sock.bind(("127.0.0.1", port))


def test_a_port_out_of_range_is_one_line_before_anything_starts():
    done = serve("--port", "99999")
    assert done.returncode == 2
    (line,) = done.stderr.splitlines()
    assert "--port: 99999 is not a port" in line and "1 to 65535" in line


def test_run_help_documents_every_option_with_units_and_defaults():
    (run,) = [
        command
        for action in parser()._actions  # noqa: SLF001 - argparse keeps its commands there
        if isinstance(action, argparse._SubParsersAction)  # noqa: SLF001
        for name, command in action.choices.items()
        if name == "run"
    ]
    for action in run._actions:  # noqa: SLF001
        assert action.help, f"{action.dest} has no help text"
    shown = " ".join(run.format_help().split())
    defaults = Settings.model_fields
    assert (
        "--timeout SECONDS" in shown and f"{defaults['default_timeout_seconds'].default:g}" in shown
    )
    assert "--memory SIZE" in shown and "256m or 1g" in shown
    assert f"RUNNER_DEFAULT_MEMORY, {defaults['default_memory'].default}" in shown
    assert f"RUNNER_DEFAULT_CPUS, {defaults['default_cpus'].default:g}" in shown


def test_an_unreachable_engine_is_named_by_its_address():
    done = subprocess.run(
        [str(COMMAND), "run", "busybox", "--", "true"],
        env={**os.environ, "DOCKER_HOST": "unix:///nonexistent/docker.sock"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 125
    (line,) = done.stderr.splitlines()
    assert "unix:///nonexistent/docker.sock" in line and "does not exist" in line
    assert "DOCKER_HOST" in line


def test_the_docker_command_s_context_is_named_when_the_default_socket_is_missing(
    tmp_path, monkeypatch
):
    """Rootless Docker sets up a context; docker-py does not follow it, so the message says."""
    name, host = "rootless", "unix:///run/user/1000/docker.sock"
    meta = tmp_path / ".docker" / "contexts" / "meta" / hashlib.sha256(name.encode()).hexdigest()
    meta.mkdir(parents=True)
    endpoint = {"docker": {"Host": host, "SkipTLSVerify": False}}
    (meta / "meta.json").write_text(
        json.dumps({"Name": name, "Metadata": {}, "Endpoints": endpoint})
    )
    (tmp_path / ".docker" / "config.json").write_text(json.dumps({"currentContext": name}))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    message = unreachable(FileNotFoundError(2, "No such file"), DEFAULT_ADDRESS).message
    assert f"context 'rootless', at {host}" in message and f"DOCKER_HOST={host}" in message
