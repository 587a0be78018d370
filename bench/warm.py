"""`uv run python -m bench.warm [--quick]`: the warm pool (issue 26) against the cold path, in
one run: two runner processes on the same engine, one with RUNNER_WARM_POOL and one without,
measured interleaved (A B A B ...) so the machine's drift hits both.

- sequential `echo hi`: warm p50 and p90 over cold's (targets <= 0.30 and <= 0.40);
- the same as an async run (POST /runs, then its log stream to the `exit` event, as a caller
  waiting on it does; MCP's run_container is one), reported;
- the same with one 1 KiB file in (target <= 0.60);
- runs per second at 4 and 16 clients with and without the pool, in alternating blocks; a
  block ends when its runs' containers are gone and the pool is full again, so the refill's
  engine work counts (target >= 1.0);
- memory: each idle pool container's (its cgroup's usage), and the runner's RSS with a pool of
  16 against the same runner without one.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import docker
import httpx

from bench.baseline import IMAGE
from bench.harness import INSTANCE, Runner, Samples, machine, runner_process, timed
from bench.scenarios import ECHO, _burst, post_run, run_body

POOL = 16
LOOK_SECONDS = 0.05
"""How often a wait asks the engine (both sides alike): each listing costs the engine CPU, and
asked every few ms while the pool refills, it slowed the very refill a block times."""
SSE = {"accept": "text/event-stream"}
FILE_KIB = 1


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.warm")
    parser.add_argument("--quick", action="store_true", help="fewer rounds, for a smoke run")
    args = parser.parse_args()
    rounds, blocks, per_client = (10, 2, 4) if args.quick else (40, 8, 8)
    api = docker.APIClient(version="auto")
    results: dict[str, Any] = {"machine": machine(), "when": time.strftime("%Y-%m-%d %H:%M")}
    common = {"max_concurrent_runs": "16", "max_queued_runs": "64", "max_kept_runs": "256"}
    warm_id, cold_id = f"{INSTANCE}-warm", f"{INSTANCE}-cold"
    with (
        runner_process(instance_id=cold_id, **common) as cold,
        runner_process(instance_id=warm_id, warm_pool=f"{IMAGE}={POOL}", **common) as warm,
    ):
        full = _pool_full(api, warm_id)
        full()

        def quiet() -> None:  # the cold runner's last run removed, the pool full again
            _gone(api, cold_id)
            full()

        results["memory"] = _memory(api, warm_id, warm, cold)
        results["echo"] = _latency(warm, cold, quiet, run_body(ECHO), rounds)
        async_runs = AsyncRuns()
        try:
            results["async_echo"] = _latency(warm, cold, quiet, run_body(ECHO), rounds, async_runs)
        finally:
            async_runs.remove()
        body = run_body(["cat", "/in/file"], volumes={"/in/file": _file()})
        results["file_1kib"] = _latency(warm, cold, quiet, body, rounds)
        results["throughput"] = {
            str(clients): _throughput(api, warm, cold, full, clients, blocks, per_client)
            for clients in (4, 16)
        }
    results["targets"] = _targets(results)
    sys.stdout.write(json.dumps(results, indent=1) + "\n")


def _file() -> dict[str, object]:
    return {"type": "file", "content": base64.b64encode(b"a" * FILE_KIB * 1024).decode()}


def _latency(
    warm: Runner,
    cold: Runner,
    quiet: Callable[[], None],
    body: dict[str, object],
    rounds: int,
    run: Callable[[httpx.Client, Runner, dict[str, object]], dict[str, Any]] = post_run,
) -> dict[str, Any]:
    """p50/p90 of one run at a time (`run`: a synchronous one by default), warm and cold
    interleaved after two untimed rounds. Each starts on a quiet engine (`quiet`: the other
    side's removal done, the pool full), so a lone caller never waits for the refill and no
    refill or removal slows the run after it."""
    http = httpx.Client(timeout=600)
    samples = {"warm": Samples(), "cold": Samples()}

    def alone(runner: Runner) -> float:
        quiet()
        return timed(lambda: _checked(run(http, runner, body)))

    for round_ in range(rounds + 2):
        took = {"warm": alone(warm), "cold": alone(cold)}
        for name, seconds in took.items():
            if round_ >= 2:
                samples[name].seconds.append(seconds)
    http.close()
    figures: dict[str, Any] = {
        name: {"p50_ms": _ms(s.median), "p90_ms": _ms(s.p(0.9))} for name, s in samples.items()
    }
    figures["p50_ratio"] = round(samples["warm"].median / samples["cold"].median, 3)
    figures["p90_ratio"] = round(samples["warm"].p(0.9) / samples["cold"].p(0.9), 3)
    return figures


class AsyncRuns:
    """A caller of async runs: POST /runs, then the run's log stream up to its `exit` event;
    the result is returned, the runs are removed at the end (`remove`), off the clock."""

    def __init__(self) -> None:
        self.started: list[str] = []

    def __call__(
        self, http: httpx.Client, runner: Runner, body: dict[str, object]
    ) -> dict[str, Any]:
        started = http.post(f"{runner.rest}/runs", json=body)
        started.raise_for_status()
        self.started.append(f"{runner.rest}/runs/{started.json()['run_id']}")
        with http.stream("GET", f"{self.started[-1]}/logs", headers=SSE) as response:
            event = ""
            for line in response.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: ") and event == "exit":
                    result: dict[str, Any] = json.loads(line.removeprefix("data: "))["result"]
                    return result
        raise RuntimeError(f"the log stream of {self.started[-1]} ended without an exit event")

    def remove(self) -> None:
        with httpx.Client(timeout=60) as http:
            for url in self.started:
                http.delete(url).raise_for_status()


def _checked(result: dict[str, Any]) -> None:
    if result["exit_code"] != 0:
        raise RuntimeError(f"a benchmark run failed: {result}")


def _throughput(
    api: docker.APIClient,
    warm: Runner,
    cold: Runner,
    full: Any,
    clients: int,
    blocks: int,
    per_client: int,
) -> dict[str, Any]:
    """Runs per second of `clients` threads, with and without the pool, alternating blocks;
    a block ends when its runs are removed and (with the pool) the pool is full again."""
    http = httpx.Client(limits=httpx.Limits(max_connections=clients * 2), timeout=600)

    def settle_warm() -> None:
        _gone(api, f"{INSTANCE}-warm")
        full()

    sides: dict[str, tuple[Runner, Callable[[], None]]] = {
        "pool": (warm, settle_warm),
        "no_pool": (cold, lambda: _gone(api, f"{INSTANCE}-cold")),
    }
    rates: dict[str, list[float]] = {name: [] for name in sides}
    for _ in range(blocks):
        for name, (runner, settle) in sides.items():

            def call(runner: Runner = runner) -> None:
                post_run(http, runner, run_body(ECHO))

            rates[name].append(_burst(call, clients, per_client, settle))
    http.close()
    ratios = sorted(a / b for a, b in zip(rates["pool"], rates["no_pool"], strict=True))
    return {
        **{name: round(statistics.median(r), 2) for name, r in rates.items()},
        "ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
    }


def _pool_full(api: docker.APIClient, instance: str) -> Any:
    """A wait until the runner's pool holds POOL running containers and nothing else."""
    pool = {"label": [f"oneoff-runner.instance={instance}", "oneoff-runner.role=pool"]}

    def wait() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            found = api.containers(all=True, filters=pool)
            if len(found) == POOL and all(item["State"] == "running" for item in found):
                return
            time.sleep(LOOK_SECONDS)
        raise RuntimeError("the warm pool did not fill")

    return wait


def _gone(api: docker.APIClient, instance: str) -> None:
    mine = {"label": [f"oneoff-runner.instance={instance}", "oneoff-runner.role=run"]}
    deadline = time.monotonic() + 60
    while api.containers(all=True, filters=mine) and time.monotonic() < deadline:
        time.sleep(LOOK_SECONDS)


def _memory(api: docker.APIClient, instance: str, warm: Runner, cold: Runner) -> dict[str, Any]:
    pool = {"label": [f"oneoff-runner.instance={instance}", "oneoff-runner.role=pool"]}
    usages = [
        api.stats(item["Id"], stream=False)["memory_stats"].get("usage", 0)
        for item in api.containers(filters=pool)
    ]
    return {
        "pool_containers": len(usages),
        "idle_container_kib_median": round(statistics.median(usages) / 1024, 1),
        "runner_rss_mib_pool_16": round(warm.rss() / 2**20, 1),
        "runner_rss_mib_no_pool": round(cold.rss() / 2**20, 1),
    }


def _targets(results: dict[str, Any]) -> dict[str, Any]:
    checks = {
        "warm echo p50 / cold": (results["echo"]["p50_ratio"], "<=", 0.30),
        "warm echo p90 / cold": (results["echo"]["p90_ratio"], "<=", 0.40),
        "warm 1 KiB file / cold": (results["file_1kib"]["p50_ratio"], "<=", 0.60),
        "4 clients runs/s pool / none": (results["throughput"]["4"]["ratio"], ">=", 1.0),
        "16 clients runs/s pool / none": (results["throughput"]["16"]["ratio"], ">=", 1.0),
    }
    return {
        name: {"value": value, "limit": f"{sense} {limit}", "met": _met(value, sense, limit)}
        for name, (value, sense, limit) in checks.items()
    }


def _met(value: float, sense: str, limit: float) -> bool:
    return value <= limit if sense == "<=" else value >= limit


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 1)


if __name__ == "__main__":
    main()
