"""`uv run python -m bench.calls`: which engine API calls one run makes, and how long each takes,
for the runner's Docker backend and for the bare SDK sequence it is measured against.

Every HTTP request a docker-py client sends is recorded (method, path with ids folded, start
and end relative to the run's start, thread); streamed responses (attach, archives) end when
their headers arrive. This is the evidence for where a run's time goes: count the calls the
bare sequence does not make, and see which of them wait for one another.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import re
import statistics
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import docker

from backends.docker.backend import DockerBackend
from bench.baseline import IMAGE, directory_tar, sdk_run
from bench.harness import INSTANCE
from bench.scenarios import _inner
from runner.models import RunRequest
from runner.policy import build_run_spec
from runner.settings import Settings
from runner.spec import RunControl
from runner.tenancy import LOCAL

MOUNTED_FILE = {"type": "file", "content": base64.b64encode(b"x").decode()}
"""Read-only content: a mount (through a run volume), whose target is checked (`targets`)."""
ID = re.compile(r"/(?:[0-9a-f]{64}|oneoff-[0-9a-z-]+)(?=/|$)")
VERSION = re.compile(r"^/v[0-9.]+")


@dataclass
class Call:
    what: str
    start: float
    end: float
    thread: str


@dataclass
class Trace:
    origin: float = field(default_factory=time.perf_counter)
    calls: list[Call] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, method: str, url: str, started: float) -> None:
        path = url.split("?", 1)[0].split("://", 1)[-1]
        path = VERSION.sub("", ID.sub("/{id}", path[path.find("/") :]))
        call = Call(
            f"{method} {path}",
            started - self.origin,
            time.perf_counter() - self.origin,
            threading.current_thread().name,
        )
        with self.lock:
            self.calls.append(call)


@contextmanager
def traced(*clients: docker.APIClient) -> Iterator[Trace]:
    """Record every request `clients` send while the block runs."""
    trace = Trace()
    originals = [client.send for client in clients]

    def hook(send: Callable[..., Any]) -> Callable[..., Any]:
        def timed_send(request: Any, **options: Any) -> Any:
            started = time.perf_counter()
            try:
                return send(request, **options)
            finally:
                trace.record(request.method, request.url, started)

        return timed_send

    for client, send in zip(clients, originals, strict=True):
        client.send = hook(send)  # type: ignore[method-assign]
    try:
        yield trace
    finally:
        for client, send in zip(clients, originals, strict=True):
            client.send = send  # type: ignore[method-assign]


def runner_run(backend: DockerBackend, body: dict[str, Any]) -> Callable[[], object]:
    def run() -> object:
        request = RunRequest.model_validate(body)
        spec, _ = build_run_spec(request, backend.settings, _run_id(), LOCAL, backend.volume_state)
        return backend.run(spec, RunControl())

    return run


_counter = iter(range(10**9))


def _run_id() -> str:
    return f"calls{next(_counter):011d}"


def report(name: str, traces: list[Trace]) -> str:
    """Calls per run and their median duration; the last run's timeline."""
    counts: Counter[str] = Counter()
    durations: dict[str, list[float]] = {}
    for trace in traces:
        for call in trace.calls:
            counts[call.what] += 1
            durations.setdefault(call.what, []).append(call.end - call.start)
    spans = [max(call.end for call in trace.calls) for trace in traces if trace.calls]
    lines = [
        f"\n== {name}: {sum(counts.values()) / len(traces):.1f} calls per run, "
        f"p50 {statistics.median(spans) * 1000:.1f} ms to its last call's end"
    ]
    for what, count in counts.most_common():
        median = statistics.median(durations[what]) * 1000
        lines.append(f"  {count / len(traces):4.1f} x {what:<45} p50 {median:7.1f} ms")
    lines.append("  timeline of the last run (ms from its start):")
    for call in sorted(traces[-1].calls, key=lambda c: c.start):
        span = f"{call.start * 1000:7.1f} - {call.end * 1000:7.1f}"
        lines.append(f"    {span}  {call.what}  [{call.thread}]")
    return "\n".join(lines) + "\n"


def content_body(kib: int, key: str) -> dict[str, Any]:
    """A directory of `kib` KiB in (JSON, base64 of a tar.gz) and returned."""
    tar = _inner(directory_tar(kib * 1024))
    content = base64.b64encode(gzip.compress(tar, compresslevel=1)).decode()
    volume = {"type": "directory", "content": content, "response": True}
    return {"image": IMAGE, "pull_policy": "never", "command": ["true"], "volumes": {key: volume}}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.calls")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--content-kib", type=int, default=1024, help="directory in and out")
    args = parser.parse_args()
    settings = Settings(instance_id=INSTANCE, max_concurrent_runs=16)
    backend = DockerBackend(settings)
    api = docker.APIClient(version="auto")
    echo = {"image": IMAGE, "pull_policy": "never", "command": ["echo", "hi"]}
    tar = directory_tar(args.content_kib * 1024)
    runner_clients = [backend.containers.api, backend.containers.streams]
    cases: dict[str, tuple[Callable[[], object], list[docker.APIClient]]] = {
        "runner echo": (runner_run(backend, echo), runner_clients),
        "runner echo, a :ro file mounted at /in/f": (
            runner_run(backend, {**echo, "volumes": {"/in/f:ro": MOUNTED_FILE}}),
            runner_clients,
        ),
        "bare SDK echo": (lambda: sdk_run(api, ["echo", "hi"]), [api]),
        "runner directory in and out": (
            runner_run(backend, content_body(args.content_kib, "/data")),
            runner_clients,
        ),
        "runner directory in (:ro) and out": (
            runner_run(backend, content_body(args.content_kib, "/data:ro")),
            runner_clients,
        ),
        "bare SDK directory in and out": (lambda: sdk_run(api, ["true"], data=tar), [api]),
    }
    try:
        for name, (action, clients) in cases.items():
            action()  # warm-up: connections, the carrier image
            traces = []
            for _ in range(args.rounds):
                with traced(*clients) as trace:
                    action()
                traces.append(trace)
            sys.stdout.write(report(name, traces))
    finally:
        backend.close()


if __name__ == "__main__":
    main()
