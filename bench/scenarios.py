"""The scenarios of issue 5, each measuring the runner and its baseline in the same run."""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import docker
import httpx
from httpx_sse import connect_sse
from mcp import Client

from bench.baseline import IMAGE, cli_run, sdk_run
from bench.harness import INSTANCE, Runner, Samples, interleaved, timed

ECHO = ["echo", "hi"]
JSON_HEADERS = {"content-type": "application/json"}
Result = dict[str, Any]


def run_body(command: list[str], **fields: object) -> dict[str, object]:
    return {"image": IMAGE, "pull_policy": "never", "command": command, **fields}


def post_run(http: httpx.Client, runner: Runner, body: dict[str, object] | bytes) -> dict[str, Any]:
    """POST /run; a body given as bytes is sent as it is (a client holding its payload)."""
    if isinstance(body, bytes):
        response = http.post(f"{runner.rest}/run", content=body, headers=JSON_HEADERS, timeout=600)
    else:
        response = http.post(f"{runner.rest}/run", json=body, timeout=600)
    response.raise_for_status()
    result: dict[str, Any] = response.json()
    return result


def _summary(samples: dict[str, Samples], subject: str, baselines: list[str]) -> Result:
    figures: Result = {
        name: {"p50_ms": round(s.median * 1000, 1), "p95_ms": round(s.p(0.95) * 1000, 1)}
        for name, s in samples.items()
    }
    for baseline in baselines:
        figures[f"ratio_vs_{baseline}"] = round(
            samples[subject].median / samples[baseline].median, 3
        )
    return figures


def sequential(runner: Runner, api: docker.APIClient, rounds: int) -> Result:
    with httpx.Client() as http:
        samples = interleaved(
            {
                "runner": lambda: post_run(http, runner, run_body(ECHO)),
                "sdk": lambda: sdk_run(api, ECHO),
                "cli": lambda: cli_run(ECHO),
            },
            rounds,
        )
    return _summary(samples, "runner", ["sdk", "cli"])


def concurrency(
    runner: Runner, api: docker.APIClient, clients: int, blocks: int, per_client: int
) -> Result:
    """Runs per second of `clients` threads through the runner and doing the same by hand, in
    alternating blocks (runner, bare, runner, ...) so that the machine's drift hits both; the
    ratio is the median of the blocks' ratios, with their range. A runner block ends when its
    runs' containers are removed too: its deferred removals are part of its work.

    Each side keeps one client for all its threads, as a program would: the bare threads share
    one docker client, the runner's share one HTTP client with a connection per thread (a new
    httpx client per run costs ~40 ms of CPU for its TLS context, on the cores the engine
    needs)."""
    http = httpx.Client(limits=httpx.Limits(max_connections=clients), timeout=600)

    def runner_call() -> None:
        post_run(http, runner, run_body(ECHO))

    def sdk_call() -> None:
        sdk_run(api, ECHO)

    calls: dict[str, Callable[[], None]] = {"runner": runner_call, "sdk": sdk_call}
    for call in calls.values():
        call()  # warm-up
    _settled(api)
    rates: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(blocks):
        for name, call in calls.items():
            rates[name].append(_burst(call, clients, per_client, lambda: _settled(api)))
    http.close()
    ratios = sorted(mine / bare for mine, bare in zip(rates["runner"], rates["sdk"], strict=True))
    return {
        **{name: {"runs_per_s": round(statistics.median(r), 2)} for name, r in rates.items()},
        "throughput_ratio": round(statistics.median(ratios), 3),
        "ratio_range": [round(ratios[0], 3), round(ratios[-1], 3)],
        "blocks": blocks,
    }


def _burst(
    call: Callable[[], object], clients: int, per_client: int, settle: Callable[[], None]
) -> float:
    """Runs per second of `clients` threads making `per_client` calls each, until `settle`."""
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [
            pool.submit(lambda: [call() for _ in range(per_client)]) for _ in range(clients)
        ]:
            future.result()
    settle()
    return clients * per_client / (time.perf_counter() - started)


def _settled(api: docker.APIClient) -> None:
    """Wait until the benchmark runner's synchronous runs have no container left."""
    mine = {"label": [f"oneoff-runner.instance={INSTANCE}", "oneoff-runner.role=run"]}
    deadline = time.monotonic() + 60
    while api.containers(all=True, filters=mine) and time.monotonic() < deadline:
        time.sleep(0.01)


def health_under_load(runner: Runner, in_flight: int, probes: int) -> Result:
    """/health latency while `in_flight` runs occupy the runner."""
    body = run_body(["sleep", "3"])
    pool = ThreadPoolExecutor(in_flight)

    def one_run() -> None:
        with httpx.Client() as http:
            post_run(http, runner, body)

    runs = [pool.submit(one_run) for _ in range(in_flight)]
    samples = Samples()
    with httpx.Client() as http:
        _wait_for_running(http, runner, in_flight)
        for _ in range(probes):
            samples.seconds.append(
                timed(lambda: http.get(f"{runner.rest}/health").raise_for_status())
            )
    for run in runs:
        run.result()
    pool.shutdown()
    return {
        "health_p50_ms": round(samples.median * 1000, 2),
        "health_p99_ms": round(samples.p(0.99) * 1000, 2),
        "runs_in_flight": in_flight,
    }


def _wait_for_running(http: httpx.Client, runner: Runner, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = http.get(f"{runner.rest}/containers").json()
        if len([item for item in found if item["status"].startswith("Up")]) >= count:
            return
        time.sleep(0.05)
    raise RuntimeError("runs did not start")


def big_output(runner: Runner, mebibytes: int, cap: int) -> Result:
    command = [
        "sh",
        "-c",
        f"yes 0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTU "
        f"| head -c {mebibytes * 2**20}",
    ]
    with httpx.Client() as http:
        post_run(http, runner, run_body(["true"]))
        before = runner.rss()
        runner.reset_peak()
        started = time.perf_counter()
        result = post_run(http, runner, run_body(command, timeout_seconds=600))
        wall = time.perf_counter() - started
        growth = runner.peak() - before
    assert result["stdout_truncated"], "the output cap did not apply"
    return {
        "output_mib": mebibytes,
        "wall_s": round(wall, 2),
        "peak_rss_growth_mib": round(growth / 2**20, 2),
        "cap_mib": round(cap / 2**20, 2),
        "growth_per_cap": round(growth / cap, 2),
    }


def _inner(tar: bytes) -> bytes:
    """The same bytes as the SDK's tar, but relative to /data, as a `directory` volume wants."""
    import io
    import tarfile

    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(tar)) as source,
        tarfile.open(fileobj=out, mode="w") as target,
    ):
        for member in source:
            if member.name == "data":
                continue
            member.name = member.name.removeprefix("data/")
            target.addfile(member, source.extractfile(member))
    return out.getvalue()


def mcp_vs_rest(runner: Runner, rounds: int) -> Result:
    async def measure() -> dict[str, Samples]:
        async with Client(runner.mcp) as client, httpx.AsyncClient() as http:

            async def via_mcp() -> None:
                result = await client.call_tool("run_container", run_body(ECHO))
                assert not result.is_error

            async def via_rest() -> None:
                response = await http.post(f"{runner.rest}/run", json=run_body(ECHO), timeout=600)
                response.raise_for_status()

            actions = {"mcp": via_mcp, "rest": via_rest}
            for action in actions.values():
                await action()
            samples = {name: Samples() for name in actions}
            for _ in range(rounds):
                for name, action in actions.items():
                    started = time.perf_counter()
                    await action()
                    samples[name].seconds.append(time.perf_counter() - started)
            return samples

    return _summary(asyncio.run(measure()), "mcp", ["rest"])


def async_vs_sync(runner: Runner, api: docker.APIClient, rounds: int) -> Result:
    """`echo hi` started with POST /runs and followed over SSE to its exit event, against the
    same run through POST /run: what keeping the state on the engine costs."""

    def via_runs(http: httpx.Client) -> None:
        started = http.post(f"{runner.rest}/runs", json=run_body(ECHO), timeout=600)
        started.raise_for_status()
        with connect_sse(http, "GET", started.json()["logs_url"], timeout=600) as source:
            for event in source.iter_sse():
                if event.event == "exit":
                    assert json.loads(event.data)["state"] == "succeeded"

    with httpx.Client() as http:
        samples = interleaved(
            {
                "runs": lambda: via_runs(http),
                "run": lambda: post_run(http, runner, run_body(ECHO)),
            },
            rounds,
        )
    # finished async runs are kept for their TTL; the benchmark's go now
    mine = ["oneoff-runner.role=async-run", f"oneoff-runner.instance={INSTANCE}"]
    for container in api.containers(all=True, filters={"label": mine}):
        api.remove_container(container["Id"], force=True, v=True)
    return _summary(samples, "runs", ["run"])


def runsc_vs_runc(runner: Runner, rounds: int) -> Result:
    """`echo hi` under gVisor (`runtime: runsc`) against the engine's runc, both through the
    runner: what the sandbox costs a short run."""
    with httpx.Client() as http:
        samples = interleaved(
            {
                "runsc": lambda: post_run(http, runner, run_body(ECHO, runtime="runsc")),
                "runc": lambda: post_run(http, runner, run_body(ECHO, runtime="runc")),
            },
            rounds,
        )
    return _summary(samples, "runsc", ["runc"])
