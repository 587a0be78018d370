"""How far past its scratch limit a fast writer gets before the runner stops it, on an engine
without storage quotas (where the runner samples the writable layer and kills).

`uv run python -m bench.scratch [rounds]` starts a runner (`oneoff-runner serve`) and sends
`POST /run` with `scratch: 100m` and a writer that fills `CHUNK_MIB` files with `dd` as fast as
the disk takes them (each under the per-file bound, RLIMIT_FSIZE), printing a line after each
file: one writer, then four at once. The run's output, which arrives up to the kill, tells how
much was written: at least one chunk per line, and at most one more chunk per writer (the files
being written when the kill came). The overshoot is that, less the limit; the writer stops by
itself at `MAX_CHUNKS` chunks if nothing stops it.

It writes up to a few GiB per run (removed with the run): run it where that is free. The
figures scale with the disk's write speed: measure on the engine you deploy to. docs/security.md
states the figures measured here.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

from bench.harness import ROOT, machine, runner_process

MiB = 1024 * 1024
LIMIT_MIB = 100
CHUNK_MIB = 16
MAX_CHUNKS = 256  # 4 GiB per writer at most
IMAGE = os.environ.get("RUNNER_TEST_IMAGE", "oneoff-test/busybox:latest")
RESULTS = ROOT / "bench" / "scratch.json"


def writer(name: str) -> str:
    return (
        f"i=0; while [ $i -lt {MAX_CHUNKS} ]; do "
        f"dd if=/dev/zero of=/tmp/{name}-$i bs=1M count={CHUNK_MIB} 2>/dev/null || exit 1; "
        f"echo {name} $i; i=$((i + 1)); done"
    )


def script(writers: int) -> str:
    if writers == 1:
        return writer("w0")
    started = " ".join(f"({writer(f'w{n}')}) &" for n in range(writers))
    return f"{started} wait"


def one_run(client: httpx.Client, writers: int) -> dict[str, float]:
    body = {
        "image": IMAGE,
        "pull_policy": "never",
        "command": ["sh", "-c", script(writers)],
        "scratch": f"{LIMIT_MIB}m",
        "timeout_seconds": 120,
    }
    started = time.perf_counter()
    result = client.post("/run", json=body, timeout=180).json()
    seconds = time.perf_counter() - started
    chunks = len(result["stdout"].splitlines())
    return {
        "stopped": float(result["scratch_exceeded"]),
        "seconds": seconds,
        "overshoot_low_mib": chunks * CHUNK_MIB - LIMIT_MIB,
        "overshoot_high_mib": (chunks + writers) * CHUNK_MIB - LIMIT_MIB,
    }


def load() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    figures: dict[str, object] = {"machine": machine(), "load_at_start": load()}
    with runner_process() as runner, httpx.Client(base_url=runner.rest) as client:
        for writers in (1, 4):
            runs = [one_run(client, writers) for _ in range(rounds)]
            high = [run["overshoot_high_mib"] for run in runs]
            figures[f"{writers} writer(s)"] = {
                "runs": runs,
                "all_stopped": all(run["stopped"] for run in runs),
                "median_overshoot_mib": statistics.median(high),
                "max_overshoot_mib": max(high),
            }
            sys.stdout.write(
                f"{writers} writer(s), limit {LIMIT_MIB} MiB, {rounds} runs: past the limit by "
                f"median {statistics.median(high):.0f} MiB, at most {max(high):.0f} MiB "
                f"(upper bounds; stopped: {all(run['stopped'] for run in runs)})\n"
            )
    figures["load_at_end"] = load()
    RESULTS.write_text(json.dumps(figures, indent=2))
    start, end = figures["load_at_start"], figures["load_at_end"]
    sys.stdout.write(f"load average {start} at the start, {end} at the end\n")


if __name__ == "__main__":
    main()
