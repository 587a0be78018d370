"""The warm pool on a real cluster (`pytest -m cluster`, see test_cluster): a run that takes a warm
pod answers exactly as the same request does as a Job (exit codes, both streams, argv as PID 1,
environment, working dir, user, limits, a command that cannot start, the timeout, OOM), runs
that do not fit go as Jobs, a caller going away deletes its pod, tenants see only their own, the
pool refills behind a deleted pod, and a killed runner's pool is reaped by another runner.

Every runner here asks for a quarter CPU per run: a warm pod holds its requests on the node (two
CPUs on scripts/cluster.sh's), and Jobs must still find room beside it."""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from backends.labels import INSTANCE, POOL, POOL_ROLE, ROLE, RUN_ID, RUN_ROLE
from runner.settings import Settings
from tests.helpers import free_port, instance_id, serving, start_runner, untar_gz, until
from tests.kubernetes.cluster_support import (
    FILES_RUN,
    IMAGE,
    core,
    namespace,
    runner_app,
    wait_for_running,
    watch_until,
)

pytestmark = pytest.mark.cluster
LIMITS: dict[str, Any] = {"default_cpus": 0.25}
POOL_SETTING = [f"{IMAGE}=1"]
SHELL = {"image": IMAGE, "entrypoint": ["sh", "-c"]}
MEMORY_LIMIT = (
    "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"
)


def waiting_pod(api: TestClient) -> Any:
    """The runner's warm pod, once its shell waits (not one being deleted)."""
    instance = api.app.state.service.settings.instance_id  # type: ignore[attr-defined]
    selector = f"{INSTANCE}={instance},{ROLE}={POOL_ROLE}"

    def waiting(pod: Any) -> bool:
        statuses = pod.status.container_statuses or []
        running = any(status.state and status.state.running for status in statuses)
        return running and pod.metadata.deletion_timestamp is None

    return watch_until(
        core().list_namespaced_pod, waiting, namespace=namespace(), label_selector=selector
    )


def warm_runs(api: TestClient) -> float:
    """How many runs took a warm pod (the `warm` phase is timed for those only)."""
    text = api.get("/metrics").text
    found = re.search(r'^oneoff_runner_phase_seconds_count\{phase="warm"\} (\S+)$', text, re.M)
    return float(found.group(1)) if found else 0.0


@pytest.fixture(scope="module")
def warm() -> Iterator[TestClient]:
    with runner_app(warm_pool=POOL_SETTING, **LIMITS) as api:
        yield api


@pytest.fixture(scope="module")
def cold() -> Iterator[TestClient]:
    with runner_app(**LIMITS) as api:
        yield api


def both(warm: TestClient, cold: TestClient, body: dict[str, Any]) -> tuple[dict[str, Any], ...]:
    """The request's answer from a warm pod and as a Job, without what differs by nature (the
    run id, the time), and whether the first took a warm pod."""
    waiting_pod(warm)
    before = warm_runs(warm)
    answers = [api.post("/run", json=body) for api in (warm, cold)]
    took = warm_runs(warm) - before
    results = []
    for answer in answers:
        assert answer.status_code == 200, answer.text
        result = answer.json()
        del result["run_id"], result["execution_time"]
        results.append(result)
    return results[0], results[1], {"took": took}


def sorted_lines(result: dict[str, Any], drop: str = "HOSTNAME=") -> list[str]:
    return sorted(line for line in result["stdout"].splitlines() if not line.startswith(drop))


CASES: dict[str, tuple[dict[str, Any], Callable[[dict[str, Any]], Any], bool]] = {
    # name: (request, what is compared, whether it takes the warm pod)
    "exit code and both streams": (
        {**SHELL, "command": ["echo out; echo err >&2; exit 3"]},
        lambda result: ({**result, "stdout": None}, sorted_lines(result)),  # merged: any order
        True,
    ),
    "argv as PID 1": (
        {"image": IMAGE, "entrypoint": ["cat"], "command": ["/proc/1/cmdline"]},
        lambda result: result,
        True,
    ),
    "environment": (
        {
            "image": IMAGE,
            "entrypoint": ["env"],
            "env_vars": {"GREETING": "hello world", "QUOTED": "it's $HOME\nnext"},
        },
        lambda result: ({**result, "stdout": None}, sorted_lines(result)),
        True,
    ),
    "the kubelet's $(NAME) and $$": (
        {
            "image": IMAGE,
            "entrypoint": ["echo"],
            "command": ["$$", "$(A)", "$(B)", "$(", "$x", "$$(A)"],
            "env_vars": {"A": "1", "B": "x$(A)y"},
        },
        lambda result: result,
        True,
    ),
    "working dir": ({**SHELL, "command": ["pwd"], "working_dir": "/tmp"}, lambda r: r, True),
    "a working dir the run's user cannot make": (
        {**SHELL, "command": ["pwd; stat -c '%a %U %G' ."], "working_dir": "/made/by/the/runtime"},
        lambda result: result,
        False,
    ),
    "user and groups": ({"image": IMAGE, "entrypoint": ["id"]}, lambda result: result, True),
    "memory limit": ({**SHELL, "command": [MEMORY_LIMIT]}, lambda result: result, True),
    "input ends at once": ({**SHELL, "command": ["cat; echo end"]}, lambda r: r, True),
    "a program that is not there": (
        {"image": IMAGE, "entrypoint": ["no-such-program"]},
        lambda result: result,
        False,
    ),
    "the longest timeout": (  # a deadline the API server lets a take set on the pod
        {**SHELL, "command": ["echo long"], "timeout_seconds": 3600},
        lambda result: result,
        True,
    ),
    "timeout": (
        {**SHELL, "command": ["echo before; sleep 600"], "timeout_seconds": 3},
        lambda result: result,
        True,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_warm_run_answers_as_its_job_does(warm: TestClient, cold: TestClient, case: str) -> None:
    body, compared, takes = CASES[case]
    hot, job, took = both(warm, cold, body)
    assert compared(hot) == compared(job), (hot, job)
    assert took == {"took": 1.0 if takes else 0.0}


def test_the_timeout_counts_from_the_command_not_the_pod(warm: TestClient) -> None:
    """The warm pod has waited longer than the run's timeout; the run still gets all of it."""
    pod = waiting_pod(warm)
    waited = time.time() - pod.status.start_time.timestamp()
    time.sleep(max(0.0, 5 - waited))  # a precondition on the pod's age, not a synchronisation
    before = warm_runs(warm)
    body = {**SHELL, "command": ["sleep 2; echo done"], "timeout_seconds": 4}
    result = warm.post("/run", json=body).json()
    assert (result["exit_code"], result["stdout"], result["timed_out"]) == (0, "done\n", False)
    assert warm_runs(warm) == before + 1


def test_a_warm_run_past_its_memory_is_oom_killed() -> None:
    with runner_app(warm_pool=POOL_SETTING, default_memory="16m", **LIMITS) as api:
        waiting_pod(api)
        body = {**SHELL, "command": ["echo filling; tail /dev/zero"]}
        result = api.post("/run", json=body).json()
        assert warm_runs(api) == 1
    assert (result["oom_killed"], result["exit_code"], result["stdout"]) == (True, 137, "filling\n")


@pytest.mark.parametrize(
    "body",
    [
        FILES_RUN,
        {"image": IMAGE, "command": ["sh", "-c", "echo the image's entrypoint"]},
        {**SHELL, "command": ["echo more memory"], "memory": "64m"},
        {**SHELL, "command": ["id"], "user": "1000:1000"},
    ],
    ids=["files", "no entrypoint", "other limits", "other user"],
)
def test_runs_that_do_not_fit_go_as_jobs(warm: TestClient, cold: TestClient, body: Any) -> None:
    hot, job, took = both(warm, cold, body)
    assert unpacked(hot) == unpacked(job)
    assert took == {"took": 0.0}


def unpacked(result: dict[str, Any]) -> dict[str, Any]:
    """The result with its returned archives' files (archives carry the time they were made)."""
    volumes = {
        path: {**value, "content": untar_gz(base64.b64decode(value["content"]))}
        for path, value in result["volumes"].items()
    }
    return {**result, "volumes": volumes}


def test_input_is_refused_with_or_without_a_pool(warm: TestClient, cold: TestClient) -> None:
    body = {**SHELL, "command": ["cat"], "stdin": "hello"}
    answers = [api.post("/run", json=body) for api in (warm, cold)]
    assert [answer.status_code for answer in answers] == [422, 422]
    assert answers[0].json() == answers[1].json()
    assert "stdin" in answers[0].json()["message"]


def test_a_caller_going_away_deletes_its_warm_pod() -> None:
    instance = instance_id("warm-gone")
    settings = Settings(
        backend="kubernetes",
        instance_id=instance,
        kube_namespace=namespace(),
        warm_pool=POOL_SETTING,
        **LIMITS,
    )
    body = json.dumps({**SHELL, "command": ["sleep 120"], "timeout_seconds": 300}).encode()
    request = (
        "POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    selector = f"{INSTANCE}={instance},{ROLE}={RUN_ROLE},{POOL}"
    with serving(create_app(settings)) as port:
        wait_for_running(core(), namespace(), f"{INSTANCE}={instance},{ROLE}={POOL_ROLE}")
        with socket.create_connection(("127.0.0.1", port)) as connection:
            connection.sendall(request)
            taken = wait_for_running(core(), namespace(), selector)
        name = taken.metadata.name  # the caller went away: the runner cancels the run
        watch_until(
            core().list_namespaced_pod,
            lambda pod: pod.metadata.name == name and pod.metadata.deletion_timestamp is not None,
            namespace=namespace(),
            label_selector=selector,
        )


def test_tenants_see_only_their_own_warm_runs() -> None:
    alice, bob = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}
    tokens = ["alice:tok-a", "bob:tok-b"]
    with runner_app(warm_pool=POOL_SETTING, api_tokens=tokens, **LIMITS) as api:
        instance = api.app.state.service.settings.instance_id
        waiting_pod(api)
        answers: list[Any] = []
        as_alice = TestClient(api.app, base_url="http://localhost", headers=alice)
        body = {**SHELL, "command": ["sleep 3"]}
        thread = threading.Thread(target=lambda: answers.append(as_alice.post("/run", json=body)))
        thread.start()
        selector = f"{INSTANCE}={instance},{ROLE}={RUN_ROLE},{POOL}"
        pod = wait_for_running(core(), namespace(), selector)
        run_id = pod.metadata.labels[RUN_ID]
        mine = api.get("/containers", headers=alice).json()
        theirs = api.get("/containers", headers=bob).json()
        thread.join(120)
        assert answers[0].status_code == 200, answers[0].text
    assert [item["run_id"] for item in mine] == [run_id]
    assert [item["name"] for item in mine] == [pod.metadata.name]
    assert theirs == []


def test_the_pool_refills_behind_a_deleted_pod(warm: TestClient) -> None:
    first = waiting_pod(warm)
    core().delete_namespaced_pod(first.metadata.name, namespace())
    instance = warm.app.state.service.settings.instance_id  # type: ignore[attr-defined]
    selector = f"{INSTANCE}={instance},{ROLE}={POOL_ROLE}"
    watch_until(
        core().list_namespaced_pod,
        lambda pod: pod.metadata.name != first.metadata.name,
        namespace=namespace(),
        label_selector=selector,
    )
    body = {**SHELL, "command": ["echo again"]}
    before = warm_runs(warm)
    waiting_pod(warm)
    assert warm.post("/run", json=body).json()["stdout"] == "again\n"
    assert warm_runs(warm) == before + 1


def test_a_killed_runner_s_pool_is_reaped_by_another() -> None:
    instance = instance_id("warm-kill")
    helper = os.environ.get("RUNNER_KUBE_HELPER_IMAGE", "oneoff-runner:dev")

    def runner(instance: str, pool: str) -> subprocess.Popen[bytes]:
        return start_runner(
            instance,
            free_port(),
            backend="kubernetes",
            kube_namespace=namespace(),
            kube_helper_image=helper,
            default_cpus="0.25",
            lease_seconds="1",
            reap_interval_seconds="0.2",
            warm_pool=pool,
        )

    first = runner(instance, POOL_SETTING[0])
    selector = f"{INSTANCE}={instance},{POOL}"
    try:
        wait_for_running(core(), namespace(), selector)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        second = runner(instance_id("warm-reaper"), "")  # its reaper only
        try:
            until(lambda: not _living(selector), 60)
        finally:
            second.terminate()
            second.wait(30)
    finally:
        first.kill()
        for pod in core().list_namespaced_pod(namespace(), label_selector=selector).items:
            core().delete_namespaced_pod(pod.metadata.name, namespace())


def _living(selector: str) -> list[str]:
    pods = core().list_namespaced_pod(namespace(), label_selector=selector).items
    return [pod.metadata.name for pod in pods if pod.metadata.deletion_timestamp is None]
