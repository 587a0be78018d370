"""The runner's memory against what a caller or the process in a container can make it hold:

- returned directories of many entries (`MEMBERS` empty files, a 61 MB tar from the engine),
  one run and then `AT_ONCE` runs at once, against a run returning one file: the runner's peak
  RSS growth, which must not grow with the member count;
- one stdio line of `LINE_MIB` MiB to `oneoff-runner mcp --stdio`, under the default
  `RUNNER_MAX_REQUEST_BYTES` (256 MiB) and under 16 MiB: the server's peak RSS growth, which
  the limit bounds.

Each runner is fresh (memory a process freed earlier is used again without growing its RSS).
`uv run python -m bench.robustness` prints the figures; docs/performance.md quotes them.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from bench.harness import INSTANCE, ROOT, Runner, machine, runner_process
from bench.scenarios import run_body

MiB = 1024 * 1024
MEMBERS = 120_000
AT_ONCE = 8
LINE_MIB = 300
MANY_FILES = f"cd /out && seq 1 {MEMBERS} | xargs touch"
ONE_FILE = "touch /out/one"


def returned_members() -> dict[str, float]:
    """Peak RSS growth (MiB) of a runner returning `MEMBERS` empty files, once and `AT_ONCE`
    times at once, and returning one file as often."""
    limits = {
        "max_archive_members": str(MEMBERS + 10),
        "max_response_bytes": str(256 * MiB),
        "max_concurrent_runs": str(AT_ONCE),
    }
    figures: dict[str, float] = {}
    for name, script in (("one_file", ONE_FILE), ("many_files", MANY_FILES)):
        with runner_process(**limits) as runner, httpx.Client(timeout=600) as http:
            _returning(http, runner, ONE_FILE)  # the code path loaded and warm
            before = runner.rss()
            runner.reset_peak()
            _returning(http, runner, script)
            figures[f"{name}_once_mib"] = (runner.peak() - before) / MiB
            runner.reset_peak()
            with ThreadPoolExecutor(AT_ONCE) as pool:
                list(pool.map(_returning, [http] * AT_ONCE, [runner] * AT_ONCE, [script] * AT_ONCE))
            figures[f"{name}_{AT_ONCE}_at_once_mib"] = (runner.peak() - before) / MiB
    return figures


def _returning(http: httpx.Client, runner: Runner, script: str) -> None:
    volumes = {"/out": {"type": "directory", "response": True}}
    answer = http.post(f"{runner.rest}/run", json=run_body(["sh", "-c", script], volumes=volumes))
    assert answer.status_code == 200, answer.text[:500]
    assert answer.json()["volumes"]["/out"]["error"] is None


def stdio_line(max_request_bytes: int | None) -> float:
    """Peak RSS growth (MiB) of `oneoff-runner mcp --stdio` reading one `LINE_MIB` MiB line."""
    environment = {**os.environ, "RUNNER_INSTANCE_ID": f"{INSTANCE}-stdio"}
    if max_request_bytes is not None:
        environment["RUNNER_MAX_REQUEST_BYTES"] = str(max_request_bytes)
    command = [str(Path(sys.executable).with_name("oneoff-runner")), "mcp", "--stdio"]
    server = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=environment, cwd=ROOT
    )
    assert server.stdin is not None and server.stdout is not None
    try:
        hello = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "b"}}
        _line(server, {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": hello})
        _line(server, {"jsonrpc": "2.0", "id": 2, "method": "ping"})
        before = _status(server.pid, "VmRSS")
        Path(f"/proc/{server.pid}/clear_refs").write_text("5")
        server.stdin.write(b'{"jsonrpc": "2.0", "id": 3, "method": "ping", "params": {"x": "')
        for _ in range(LINE_MIB):
            server.stdin.write(b"x" * MiB)
        server.stdin.write(b'"}}\n')
        server.stdin.flush()
        _answer(server)
        return (_status(server.pid, "VmHWM") - before) / MiB
    finally:
        server.stdin.close()
        server.wait(60)
        server.stdout.close()


def _line(server: subprocess.Popen[bytes], message: object) -> object:
    assert server.stdin is not None
    server.stdin.write(json.dumps(message).encode() + b"\n")
    server.stdin.flush()
    return _answer(server)


def _answer(server: subprocess.Popen[bytes]) -> object:
    assert server.stdout is not None
    ready, _, _ = select.select([server.stdout], [], [], 300)
    assert ready, "the server did not answer"
    return json.loads(server.stdout.readline())


def _status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def main() -> None:
    figures: dict[str, object] = {
        "members": MEMBERS,
        **returned_members(),
        "stdio_line_mib": LINE_MIB,
        "stdio_line_default_limit_growth_mib": stdio_line(None),
        "stdio_line_16_mib_limit_growth_mib": stdio_line(16 * MiB),
        "machine": machine(),
    }
    rounded = {k: round(v, 1) if isinstance(v, float) else v for k, v in figures.items()}
    sys.stdout.write(json.dumps(rounded, indent=1) + "\n")


if __name__ == "__main__":
    main()
