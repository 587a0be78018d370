"""The benchmark's machinery: a live runner process, timing, statistics, interleaving.

Every figure is measured against a baseline in the same run, interleaved (A B A B ...) after a
warm-up, so that the machine's drift affects both sides alike; results are ratios.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
INSTANCE = f"bench-{os.getpid()}"  # the engine is shared: this run's objects, and only those


@dataclass
class Samples:
    seconds: list[float] = field(default_factory=list)

    def p(self, quantile: float) -> float:
        ordered = sorted(self.seconds)
        index = min(len(ordered) - 1, max(0, round(quantile * (len(ordered) - 1))))
        return ordered[index]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def interleaved(
    actions: dict[str, Callable[[], object]], rounds: int, warmup: int = 2
) -> dict[str, Samples]:
    """Run each action once per round, in turn, after `warmup` untimed rounds."""
    for _ in range(warmup):
        for action in actions.values():
            action()
    samples = {name: Samples() for name in actions}
    for _ in range(rounds):
        for name, action in actions.items():
            samples[name].seconds.append(timed(action))
    return samples


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Runner:
    """A runner started as its own process (`oneoff-runner serve`), as users run it."""

    process: subprocess.Popen[bytes]
    rest: str
    mcp: str

    def rss(self) -> int:
        return _status_kib(self.process.pid, "VmRSS") * 1024

    def reset_peak(self) -> None:
        Path(f"/proc/{self.process.pid}/clear_refs").write_text("5")

    def peak(self) -> int:
        return _status_kib(self.process.pid, "VmHWM") * 1024


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise KeyError(key)


@contextlib.contextmanager
def runner_process(**settings: str) -> Iterator[Runner]:
    rest_port, mcp_port = free_port(), free_port()
    environment = {
        **os.environ,
        "RUNNER_PORT": str(rest_port),
        "RUNNER_MCP_PORT": str(mcp_port),
        "RUNNER_INSTANCE_ID": INSTANCE,
        **{f"RUNNER_{key.upper()}": value for key, value in settings.items()},
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli.main", "serve", "--log-level", "warning"],
        cwd=ROOT,
        env=environment,
        stderr=subprocess.DEVNULL,
    )
    runner = Runner(process, f"http://127.0.0.1:{rest_port}", f"http://127.0.0.1:{mcp_port}/mcp")
    try:
        _wait_healthy(runner)
        yield runner
    finally:
        process.terminate()
        process.wait(30)


def _wait_healthy(runner: Runner) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if runner.process.poll() is not None:
            raise RuntimeError("the runner exited at startup")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{runner.rest}/health", timeout=2).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError("the runner did not become healthy")


def machine() -> dict[str, object]:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    total = int(Path("/proc/meminfo").read_text().split()[1]) * 1024
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(total / 2**30, 1),
        "python": sys.version.split()[0],
    }
