"""What `oneoff-runner serve` says to whoever starts it, at the default log level: one line per
server with its URL (and one warning when nothing asks for a token), nothing twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx

from tests.helpers import ROOT, free_port, read_until


def test_startup_is_one_line_per_server_with_its_url(instance: str) -> None:
    port, mcp_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli.main", "serve"],
        cwd=ROOT,
        env={
            **os.environ,
            "RUNNER_INSTANCE_ID": instance,
            "RUNNER_PORT": str(port),
            "RUNNER_MCP_PORT": str(mcp_port),
        },
        stderr=subprocess.PIPE,
    )
    assert process.stderr is not None
    seen = read_until(process.stderr, b"/mcp\n")
    if b"(API pages at /docs)\n" not in seen:  # the servers start side by side, in any order
        seen += read_until(process.stderr, b"(API pages at /docs)\n")
    try:
        assert httpx.get(f"http://127.0.0.1:{port}/livez", timeout=10).status_code == 200
    finally:
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=120)
    assert process.returncode == 0, rest
    said = [line.split(" ", 2)[2] for line in (seen + rest).decode().splitlines()]
    # what the backend finds out about the engine once (how scratch limits hold) is no server's
    said = [line for line in said if not line.startswith("INFO oneoff_runner.docker: ")]
    servers = [
        f"INFO oneoff_runner: REST API on http://127.0.0.1:{port} (API pages at /docs)",
        f"INFO oneoff_runner: MCP server on http://127.0.0.1:{mcp_port}/mcp",
    ]
    warning = "WARNING oneoff_runner: no API tokens (RUNNER_API_TOKENS): anyone on this machine"
    assert said[0].startswith(warning) and sorted(said[1:]) == sorted(servers), said
