"""`uv run python -m bench.targets`: what checking where mounts land (`backends.docker.targets`)
adds to a run. Echo runs through the Docker backend, without mounts and with a read-only file at
`/in/f` (a mount), each with the check and with it skipped, interleaved so that the machine's
drift hits all alike; and the time of the check itself, alone, in the same runs."""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from backends.docker import containers
from backends.docker.backend import DockerBackend
from bench.baseline import IMAGE
from bench.calls import MOUNTED_FILE, runner_run
from bench.harness import INSTANCE, Samples, interleaved
from runner.settings import Settings

ECHO = {"image": IMAGE, "pull_policy": "never", "command": ["echo", "hi"]}


@contextmanager
def check(enabled: bool, spent: Samples) -> Iterator[None]:
    """The check as the backend calls it, timed into `spent`, or skipped."""
    original = containers.check_targets

    def timed(*args: Any) -> None:
        started = time.perf_counter()
        original(*args)
        spent.seconds.append(time.perf_counter() - started)

    containers.check_targets = timed if enabled else lambda *args: None  # type: ignore[assignment]
    try:
        yield
    finally:
        containers.check_targets = original  # type: ignore[assignment]


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.targets")
    parser.add_argument("--rounds", type=int, default=20)
    rounds = parser.parse_args().rounds
    backend = DockerBackend(Settings(instance_id=INSTANCE, max_concurrent_runs=4))
    spent = Samples()

    def run(body: dict[str, Any], enabled: bool) -> Callable[[], None]:
        action = runner_run(backend, body)

        def checked() -> None:
            with check(enabled, spent):
                action()

        return checked

    mounted = {**ECHO, "volumes": {"/in/f:ro": MOUNTED_FILE}}
    try:
        samples = interleaved(
            {
                "echo, no mounts": run(ECHO, True),
                "echo, a :ro file, checked": run(mounted, True),
                "echo, a :ro file, not checked": run(mounted, False),
            },
            rounds,
        )
    finally:
        backend.close()
    for name, taken in {**samples, "the check alone (2 stats)": spent}.items():
        sys.stdout.write(f"{name:<32} p50 {taken.median * 1000:7.1f} ms")
        sys.stdout.write(f"  p95 {taken.p(0.95) * 1000:7.1f} ms\n")


if __name__ == "__main__":
    main()
