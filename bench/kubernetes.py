"""A run through the runner's Kubernetes backend against the same pod run by hand with the
official client, and against a runner with a warm pool (RUNNER_WARM_POOL: the run takes a pod
already started), on a real cluster, interleaved in one run (`KUBECONFIG=... uv run python -m
bench.kubernetes`; `scripts/cluster.sh up` makes one, with the image, busybox:1.36).

By hand: create a Job whose pod is the one the runner would make for the request
(`manifests.pod_spec`), watch its pod to the end, read the logs, delete the Job. Through the
runner: `POST /run` to a runner process (`oneoff-runner serve`, RUNNER_BACKEND=kubernetes).
Warm: the same request to a second runner process whose pool holds one pod of the image; each
warm run waits, untimed, for the pool to be full again. Everything asks for half a CPU, so a
warm pod and a run's pod fit on a two-CPU node together. All in a namespace of the bench's own,
deleted at the end. The command prints the node's
/proc/uptime (CLOCK_BOOTTIME, as this process reads it: one machine, one clock), so each run
gives the time from its request to its container's start, and to its answer. Figures go to
stdout and bench/kubernetes.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.harness import machine, runner_process
from runner.settings import Settings

RESULTS = Path(__file__).with_name("kubernetes.json")
IMAGE = os.environ.get("CLUSTER_TEST_IMAGE", "busybox:1.36")  # as the cluster tests'
COMMAND = ["cat", "/proc/uptime"]
CPUS = "0.5"
Timing = dict[str, float]  # phase -> seconds since the request


def now() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def started_at(stdout: str) -> float:
    """The container's start, from the /proc/uptime it printed (10 ms resolution)."""
    return float(stdout.split()[0])


@contextlib.contextmanager
def bench_namespace(core: Any) -> Iterator[str]:
    name = f"oneoff-bench-{os.getpid()}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        yield name
    finally:
        core.delete_namespace(name)


def settings(space: str) -> Settings:
    return Settings(
        _env_file=None,
        backend="kubernetes",
        kube_namespace=space,
        instance_id="bench-kube",
        default_cpus=float(CPUS),
    )


def hand_pod(space: str) -> dict[str, Any]:
    """The pod the runner makes for `{"image": IMAGE, "command": COMMAND}`, with its limits."""
    from backends.kubernetes.manifests import pod_spec
    from runner.models import RunRequest
    from runner.policy import build_run_spec
    from runner.tenancy import LOCAL

    request = RunRequest(image=IMAGE, command=COMMAND, pull_policy="missing")
    spec, _ = build_run_spec(request, settings(space), "bench", LOCAL, lambda name: None)
    return pod_spec(spec, settings(space), None, None)


def by_hand(core: Any, batch: Any, space: str, pod: dict[str, Any]) -> Timing:
    """create → watch the pod to its end → read the logs → delete; each phase's end."""
    from kubernetes import watch

    name = f"hand-{uuid.uuid4().hex[:10]}"
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"backoffLimit": 0, "template": {"spec": pod}},
    }
    begun = now()
    batch.create_namespaced_job(space, job)
    created = now()
    stream = watch.Watch()
    pod_name = ""
    for event in stream.stream(
        core.list_namespaced_pod, space, label_selector=f"job-name={name}", timeout_seconds=300
    ):
        found = event["object"]
        if found.status.phase in ("Succeeded", "Failed"):
            pod_name = found.metadata.name
            stream.stop()
    ended = now()
    logs = core.read_namespaced_pod_log(pod_name, space, container="run")
    read = now()
    batch.delete_namespaced_job(name, space, propagation_policy="Background")
    return {
        "created": created - begun,
        "started": started_at(logs) - begun,
        "end_seen": ended - begun,
        "logs_read": read - begun,
        "answered": now() - begun,
    }


def through_runner(
    http: httpx.Client, rest: str, ready: Callable[[], None] = lambda: None
) -> Timing:
    """POST /run of the command (as `entrypoint`, so a warm pod can take it), after `ready`."""
    ready()
    body = {"image": IMAGE, "pull_policy": "missing", "entrypoint": COMMAND[:1]}
    body["command"] = COMMAND[1:]
    begun = now()
    response = http.post(f"{rest}/run", json=body, timeout=300)
    answered = now() - begun
    response.raise_for_status()
    result = response.json()
    assert result["exit_code"] == 0, result
    return {"started": started_at(result["stdout"]) - begun, "answered": answered}


def pool_full(core: Any, space: str, instance: str) -> Callable[[], None]:
    """Waits until the warm runner's pool pod waits (its shell running)."""
    from kubernetes import watch

    from backends.labels import INSTANCE, POOL_ROLE, ROLE

    selector = f"{INSTANCE}={instance},{ROLE}={POOL_ROLE}"

    def waiting(pod: Any) -> bool:
        statuses = pod.status.container_statuses or []
        running = any(status.state and status.state.running for status in statuses)
        return running and pod.metadata.deletion_timestamp is None

    def wait() -> None:
        found = core.list_namespaced_pod(space, label_selector=selector)
        if any(waiting(pod) for pod in found.items):
            return
        stream = watch.Watch()
        version = found.metadata.resource_version
        for event in stream.stream(
            core.list_namespaced_pod,
            space,
            label_selector=selector,
            resource_version=version,
            timeout_seconds=120,
        ):
            if waiting(event["object"]):
                stream.stop()
                return
        raise RuntimeError("the warm pool did not refill within 120 s")

    return wait


def interleaved(actions: dict[str, Callable[[], Timing]], rounds: int) -> dict[str, list[Timing]]:
    """A B A B ... after one untimed round each, so drift affects both sides alike."""
    for action in actions.values():
        action()
    samples: dict[str, list[Timing]] = {name: [] for name in actions}
    for _ in range(rounds):
        for name, action in actions.items():
            samples[name].append(action())
    return samples


def median(values: list[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def summary(samples: dict[str, list[Timing]]) -> dict[str, Any]:
    """p50 of each phase (ms) for each side, the runner's p50 over the hand's, and the warm
    runner's over the Job runner's."""
    figures: dict[str, Any] = {
        name: {
            f"{phase}_p50_ms": round(median([t[phase] for t in timings]) * 1000)
            for phase in timings[0]
        }
        for name, timings in samples.items()
    }
    for phase in ("started", "answered"):
        runner, hand = (figures[side][f"{phase}_p50_ms"] for side in ("runner", "by_hand"))
        figures[f"{phase}_ratio"] = round(runner / hand, 3)
        if "warm" in figures:
            warm = figures["warm"][f"{phase}_p50_ms"]
            figures[f"warm_over_job_{phase}_ratio"] = round(warm / runner, 3)
    figures["start_to_answer_ms"] = {
        side: values["answered_p50_ms"] - values["started_p50_ms"]
        for side, values in figures.items()
        if isinstance(values, dict) and "started_p50_ms" in values
    }
    return figures


def main() -> None:
    from kubernetes import client, config

    parser = argparse.ArgumentParser(prog="python -m bench.kubernetes")
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    config.load_kube_config()
    core, batch = client.CoreV1Api(), client.BatchV1Api()
    node: Any = core.list_node().items[0]
    results: dict[str, Any] = {
        "machine": machine(),
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "kubernetes": node.status.node_info.kubelet_version,
        "runtime": node.status.node_info.container_runtime_version,
        "rounds": args.rounds,
    }
    with bench_namespace(core) as space:
        pod = hand_pod(space)
        common = {"backend": "kubernetes", "kube_namespace": space, "default_cpus": CPUS}
        with (
            runner_process(**common) as runner,
            runner_process(**common, instance_id="bench-kube-warm", warm_pool=f"{IMAGE}=1") as warm,
            httpx.Client() as http,
        ):
            ready = pool_full(core, space, "bench-kube-warm")
            samples = interleaved(
                {
                    "runner": lambda: through_runner(http, runner.rest),
                    "warm": lambda: through_runner(http, warm.rest, ready),
                    "by_hand": lambda: by_hand(core, batch, space, pod),
                },
                args.rounds,
            )
    results |= summary(samples)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.write(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
