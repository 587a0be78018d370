"""The warm pool (RUNNER_WARM_POOL): a run that takes a warm container answers as the cold run
of the same request does, on the real engine. Each test sends one request to a runner with a
pool (checking, by its metrics, that the run did take a warm container) and to one without, and
compares the answers."""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
import signal
import socket
import tarfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Any

import docker
import httpx
import pytest
from fastapi.testclient import TestClient
from httpx_sse import connect_sse

from api_app import create_app
from backends.docker import pool as pool_module
from backends.docker.pool import REFILL_AFTER_SECONDS
from backends.labels import CLAIM_ROLE, INSTANCE, POOL_ROLE, ROLE
from backends.waiter import INLINE_BYTES
from runner.models import RunRequest
from runner.policy import build_run_spec
from runner.settings import Settings
from runner.spec import RunControl
from runner.tenancy import LOCAL
from tests.docker.watching import Events, in_background, warm_run_began
from tests.helpers import (
    TEST_IMAGE,
    free_port,
    instance_id,
    remove_objects_of,
    run_body,
    serving,
    start_runner,
    until,
)

POOL = 2
TOKENS = ["alice:alice-secret-token-1234", "bob:bob-secret-token-5678"]
ALICE = {"authorization": "Bearer alice-secret-token-1234"}
BOB = {"authorization": "Bearer bob-secret-token-5678"}
WARM_TAKES = re.compile(r'^oneoff_runner_phase_seconds_count\{phase="warm"\} (\S+)$', re.M)


SCRATCH_WRITER = (
    "i=0; while [ $i -lt 24 ]; do dd if=/dev/zero of=/tmp/f$i bs=1M count=2 2>/dev/null; "
    "i=$((i + 1)); sleep 0.5; done; echo wrote it all"
)
"""48 MiB in 2 MiB files over about 12 s (as tests/docker/test_scratch.py writes)."""


def _settings(**overrides: object) -> Settings:
    return Settings(
        instance_id=instance_id("warm"),
        max_output_bytes=4096,
        api_tokens=TOKENS,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="module")
def warm(docker_client: docker.DockerClient) -> Iterator[TestClient]:
    settings = _settings(warm_pool=[f"{TEST_IMAGE}={POOL}"])
    with TestClient(create_app(settings)) as client:
        yield client
    remove_objects_of(docker_client, settings.instance_id)


@pytest.fixture(scope="module")
def cold(docker_client: docker.DockerClient) -> Iterator[TestClient]:
    settings = _settings()
    with TestClient(create_app(settings)) as client:
        yield client
    remove_objects_of(docker_client, settings.instance_id)


def _pool(client: TestClient) -> Any:
    return client.app.state.service.backend.pool  # type: ignore[attr-defined]


def _takes(client: TestClient) -> float:
    found = WARM_TAKES.search(client.get("/metrics", headers=ALICE).text)
    return float(found.group(1)) if found else 0.0


def _warm_run(warm: TestClient, body: dict[str, object]) -> dict[str, Any]:
    """The run's answer from the runner with a pool; fails unless it took a warm container."""
    assert _pool(warm).wait_full(60), "the pool did not fill"
    before = _takes(warm)
    answer = warm.post("/run", json=body, headers=ALICE)
    assert _takes(warm) == before + 1, f"the run did not take a warm container: {answer.text}"
    result: dict[str, Any] = answer.json()
    return result


def _both(warm: TestClient, cold: TestClient, body: dict[str, object]) -> tuple[Any, Any]:
    """(warm answer, cold answer) of the same request, without the fields that differ by
    nature (the run's id, how long it took)."""
    first = _warm_run(warm, body)
    second = cold.post("/run", json=body, headers=ALICE).json()
    for result in (first, second):
        for key in ("run_id", "execution_time"):
            result.pop(key, None)
    return first, second


@pytest.mark.parametrize(
    "fields",
    [
        {"command": ["cat", "/proc/1/cmdline"]},
        {"entrypoint": ["cat"], "command": ["/proc/1/cmdline"]},
        {"entrypoint": ["cat", "/proc/1/cmdline"]},
        {
            "entrypoint": ["/bin/sh", "-c", 'cat /proc/1/cmdline; echo; echo "$0|$1"'],
            "command": ["it's a", "two\nlines"],
        },
    ],
)
def test_the_command_is_pid_1_combined_with_the_image_as_the_engine_does(warm, cold, fields):
    first, second = _both(warm, cold, run_body(**fields))
    assert first == second
    assert first["exit_code"] == 0 and first["stdout"]


def test_the_image_default_command_runs_when_the_request_names_none(warm, cold):
    first, second = _both(warm, cold, run_body(stdin="echo from-the-image-cmd\n"))
    assert first == second
    assert first["stdout"] == "from-the-image-cmd\n"


def test_the_environment_is_the_cold_runs(warm, cold):
    env = {"A": "x'y\nz", "PATH": "/bin:/usr/bin", "EMPTY": "", "PWD": "/set-by-caller"}
    body = run_body("env", env_vars=env)
    first, second = _both(warm, cold, body)

    def lines(result: dict[str, Any]) -> list[str]:
        return sorted(line for line in result["stdout"].split("\n") if "HOSTNAME=" not in line)

    assert lines(first) == lines(second)
    assert "SHLVL=1" not in first["stdout"] and "PWD=/set-by-caller" in first["stdout"]


@pytest.mark.parametrize("working_dir", ["/etc", "/new/deep/dir"])
def test_the_working_dir_is_the_cold_runs_made_as_the_engine_makes_it(warm, cold, working_dir):
    script = "pwd; stat -c '%a %u %g' . /new /new/deep 2>&1; env | grep PWD"
    first, second = _both(warm, cold, run_body("sh", "-c", script, working_dir=working_dir))
    assert first == second


@pytest.mark.parametrize(
    "body",
    [run_body("pwd", working_dir="/etc/passwd"), run_body("no-such-program")],
    ids=["working-dir-is-a-file", "no-such-program"],
)
def test_a_command_that_cannot_start_is_refused_as_on_the_cold_path(warm, cold, body):
    """The shell finds out before `exec`; the run then goes cold, which refuses it as always."""
    assert _pool(warm).wait_full(60)
    first = warm.post("/run", json=body, headers=ALICE)
    second = cold.post("/run", json=body, headers=ALICE)
    assert (first.status_code, first.json()) == (second.status_code, second.json())
    assert first.status_code == 422


@pytest.mark.parametrize("code", [0, 3, 137])
def test_exit_codes_are_the_cold_runs(warm, cold, code):
    first, second = _both(warm, cold, run_body("sh", "-c", f"echo out; echo err >&2; exit {code}"))
    assert first == second
    assert first["exit_code"] == code


def test_a_signal_from_outside_ends_it_as_on_the_cold_path(warm, cold):
    """OOM: the kernel's SIGKILL, with the run's memory limit (not the pool's) in force.

    `oom_killed` is left out of the comparison: on cgroup v1 the engine loses a container's
    `oom` now and then when its only process dies at once (containerd drops it once the cgroup
    is gone; CI saw it on a cold run). Reporting it is tested in test_runs and test_exits."""
    v1, v2 = "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max"
    limit = f"cat {v1} 2>/dev/null || cat {v2}"
    hog = f"{limit}; x=aaaaaaaa; while :; do x=$x$x; done"
    first, second = _both(warm, cold, run_body("sh", "-c", hog, memory="16m"))
    for result in (first, second):
        result.pop("oom_killed")
    assert first == second
    assert (first["exit_code"], first["stdout"]) == (137, f"{16 * 1024 * 1024}\n")


def test_a_run_past_its_scratch_is_stopped_as_on_the_cold_path(warm, cold):
    """The disk bound holds in a warm container too (sampled from the command's start)."""
    first, second = _both(warm, cold, run_body("sh", "-c", SCRATCH_WRITER, scratch="8m"))
    for result in (first, second):
        assert (result["status"], result["exit_code"]) == ("scratch_exceeded", 137), result
        assert "wrote it all" not in result["stdout"]
    assert first["message"] == second["message"]


def test_a_file_larger_than_a_smaller_scratch_is_refused_as_on_the_cold_path(warm, cold):
    """The cold path's `fsize` ulimit is the run's scratch: a warm run lowers its own to it."""
    script = "dd if=/dev/zero of=/tmp/big bs=1M count=1 seek=63 2>&1; echo status $?; ulimit -f"
    first, second = _both(warm, cold, run_body("sh", "-c", script, scratch="8m"))
    assert first == second
    assert "status 0" not in first["stdout"] and first["stdout"].endswith("\n16384\n")


def test_the_runs_limits_are_in_force_before_its_command(warm, cold):
    script = (
        "cd /sys/fs/cgroup; cat memory/memory.limit_in_bytes memory/memory.memsw.limit_in_bytes"
    )
    script += " cpu/cpu.cfs_quota_us pids/pids.max"
    first, second = _both(warm, cold, run_body("sh", "-c", script, memory="48m", cpus=0.5))
    assert first == second
    assert first["stdout"].split() == [str(48 * 2**20), str(48 * 2**20), "50000", "512"]


@pytest.mark.parametrize("stdin", [None, "", "line one\nline two\n\0binary\xff", "x" * 200_000])
def test_stdin_is_the_cold_runs(warm, cold, stdin):
    body = run_body("sh", "-c", "wc -c; cat | head -c 64", stdin=stdin)
    if stdin is None:
        del body["stdin"]
    first, second = _both(warm, cold, body)
    assert first == second


def test_a_timeout_counts_from_the_command_and_kills_it_as_on_the_cold_path(warm, cold):
    body = run_body("sh", "-c", "echo started; sleep 30", timeout_seconds=1)
    first = _warm_run(warm, body)
    second = cold.post("/run", json=body, headers=ALICE).json()
    assert (first["status"], first["timed_out"], first["stdout"]) == ("timeout", True, "started\n")
    assert (second["status"], second["timed_out"], second["stdout"]) == (
        "timeout",
        True,
        "started\n",
    )
    assert 1 <= first["execution_time"] < 5


def test_output_caps_are_the_cold_runs(warm, cold):
    body = run_body("sh", "-c", "head -c 10000 /dev/zero | tr '\\0' a; head -c 5000 /dev/zero >&2")
    first, second = _both(warm, cold, body)
    assert first == second
    assert first["stdout_truncated"] and first["stderr_truncated"]


def test_files_in_and_out_are_the_cold_runs(warm, cold):
    tree = io.BytesIO()
    with tarfile.open(fileobj=tree, mode="w:gz") as archive:
        data = b"inner\n"
        info = tarfile.TarInfo("sub/inner.txt")
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    volumes = {
        "/in/one.txt": {"type": "file", "content": base64.b64encode(b"k" * 1024).decode()},
        "/in/tree": {"type": "directory", "content": base64.b64encode(tree.getvalue()).decode()},
        "/out": {"type": "directory", "response": True},
        "/out-file.txt": {"type": "file", "response": True, "content": ""},
    }
    script = "wc -c /in/one.txt; cat /in/tree/sub/inner.txt; ls -ld /in/tree /out | cut -c1-10; "
    script += "echo made > /out/made.txt; echo file > /out-file.txt"
    first, second = _both(warm, cold, run_body("sh", "-c", script, volumes=volumes))
    first_tar = first["volumes"].pop("/out")["content"]
    second_tar = second["volumes"].pop("/out")["content"]
    assert first == second
    assert _members(first_tar) == _members(second_tar) == {"made.txt": b"made\n"}


def test_small_content_is_put_in_place_as_on_the_cold_path(warm, cold):
    """Content the waiter writes itself (`waiter.content_steps`): the same bytes, owner, modes
    and times as the engine's unpacking, parents made alike; a path the image already has goes
    cold with the same answer."""
    data = bytes(range(256)) + b"%s\\n'$(id)"
    volumes = {
        "/in/a/every.bin": {"type": "file", "content": base64.b64encode(data).decode()},
        "/in/run.sh": {"type": "file", "content": base64.b64encode(b"-x").decode(), "mode": "0755"},
        "/in/empty": {"type": "directory"},
        "/top.txt": {"type": "file", "content": ""},
    }
    script = (
        "stat -c '%n %a %U:%G %Y %F' /in/a/every.bin /in/run.sh /in/empty /top.txt; "
        "stat -c '%n %a %U:%G %F' /in /in/a; md5sum /in/a/every.bin"
    )
    first, second = _both(warm, cold, run_body("sh", "-c", script, volumes=volumes))
    assert first == second
    assert " 0 " in first["stdout"] and first["exit_code"] == 0

    there = {"/etc/passwd": {"type": "file", "content": base64.b64encode(b"mine\n").decode()}}
    body = run_body("cat", "/etc/passwd", volumes=there)
    assert _pool(warm).wait_full(60), "the pool did not fill"
    answers = [client.post("/run", json=body, headers=ALICE).json() for client in (warm, cold)]
    assert [(a["stdout"], a["exit_code"]) for a in answers] == [("mine\n", 0)] * 2


def test_only_content_past_the_inline_bound_goes_through_the_engines_archive_call(
    warm, docker_client
):
    """The engine's unpacking into a running container costs ~45 ms; the waiter's line a few:
    it must be the one used for small content, and the engine for the rest."""

    def unpacked_by_the_engine(size: int) -> bool:
        since = int(time.time())
        content = base64.b64encode(b"x" * size).decode()
        volumes = {"/in/file": {"type": "file", "content": content}}
        result = _warm_run(
            warm, run_body("sh", "-c", "wc -c < /in/file; hostname", volumes=volumes)
        )
        assert result["stdout"].split()[0] == str(size)
        container = result["stdout"].split()[1]
        events = docker_client.api.events(
            since=since,
            until=int(time.time()) + 1,
            filters={"type": ["container"], "event": ["extract-to-dir"], "container": [container]},
            decode=True,
        )
        return any(True for _ in events)

    assert not unpacked_by_the_engine(INLINE_BYTES)
    assert unpacked_by_the_engine(INLINE_BYTES + 1)


def _members(content: str) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(content))) as archive:
        return {
            member.name.split("/", 1)[-1]: archive.extractfile(member).read()  # type: ignore[union-attr]
            for member in archive.getmembers()
            if member.isfile()
        }


def test_a_run_that_does_not_fit_goes_cold_with_the_same_answer(warm, cold):
    """A read-only mount must exist at create: not poolable, cold, same answer."""
    volumes = {"/ro.txt:ro": {"type": "file", "content": base64.b64encode(b"ro").decode()}}
    before = _takes(warm)
    first = warm.post("/run", json=run_body("cat", "/ro.txt", volumes=volumes), headers=ALICE)
    assert _takes(warm) == before
    assert first.json()["stdout"] == "ro"


def test_a_warm_run_is_listed_to_its_tenant_as_a_cold_one_and_the_pool_to_no_one(
    warm, docker_client
):
    assert _pool(warm).wait_full(60)
    instance = warm.app.state.service.settings.instance_id  # type: ignore[attr-defined]
    answers: list[Any] = []
    body = run_body("sleep", "3", timeout_seconds=60)
    thread = threading.Thread(
        target=lambda: answers.append(warm.post("/run", json=body, headers=ALICE))
    )
    thread.start()
    try:
        until(lambda: _claims(docker_client, instance), 30)
        claim = _claims(docker_client, instance)[0]["Labels"]
        alice = warm.get("/containers", headers=ALICE).json()
        bob = warm.get("/containers", headers=BOB).json()
    finally:
        thread.join(60)
    run_id = answers[0].json()["run_id"]
    assert claim["oneoff-runner.run-id"] == run_id
    assert [(item["name"], item["run_id"]) for item in alice] == [(f"oneoff-{run_id}", run_id)]
    assert bob == []


def _claims(docker_client: docker.DockerClient, instance: str) -> list[dict[str, Any]]:
    claims = {"label": [f"{INSTANCE}={instance}", f"{ROLE}={CLAIM_ROLE}"]}
    return docker_client.api.volumes(filters=claims).get("Volumes") or []  # type: ignore[no-any-return]


def test_a_caller_going_away_kills_and_removes_its_warm_run(make_settings, docker_client, instance):
    body = json.dumps(run_body("sleep", "60", timeout_seconds=120)).encode()
    request = (
        "POST /run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    app = create_app(make_settings(instance_id=instance, warm_pool=[f"{TEST_IMAGE}={POOL}"]))
    events = Events(docker_client, instance)
    try:
        with serving(app) as port:
            httpx.get(f"http://127.0.0.1:{port}/livez")  # served: the pool has started
            assert app.state.service.backend.pool.wait_full(60)
            connection = socket.create_connection(("127.0.0.1", port))
            connection.sendall(request)
            taken = events.wait("start")  # a warm container renamed for the run
            assert warm_run_began(taken)
            connection.close()  # the caller went away: the runner cancels the run
            events.until_removed([taken["Actor"]["Attributes"]["name"]])
            until(lambda: not _claims(docker_client, instance), 30)
    finally:
        events.close()


def _pool_containers(docker_client: docker.DockerClient, instance: str) -> list[dict[str, Any]]:
    pool = {"label": [f"{INSTANCE}={instance}", f"{ROLE}={POOL_ROLE}"]}
    return docker_client.api.containers(all=True, filters=pool)  # type: ignore[no-any-return]


def test_pool_containers_removed_behind_its_back_cost_a_refill_not_a_run(warm, docker_client):
    pool = _pool(warm)
    assert pool.wait_full(60)
    instance = warm.app.state.service.settings.instance_id  # type: ignore[attr-defined]
    for item in _pool_containers(docker_client, instance):
        docker_client.api.remove_container(item["Id"], force=True)
    result = warm.post("/run", json=run_body("echo", "still"), headers=ALICE).json()
    assert (result["exit_code"], result["stdout"]) == (0, "still\n")
    assert pool.wait_full(60)
    after = _warm_run(warm, run_body("echo", "warm again"))
    assert after["stdout"] == "warm again\n"


class PoolEvents:
    """The pool containers' events of a runner from now on (the engine replays those since
    now, whenever the stream connects)."""

    def __init__(self, docker_client: docker.DockerClient, warm: TestClient) -> None:
        instance = warm.app.state.service.settings.instance_id  # type: ignore[attr-defined]
        self.stream = docker_client.api.events(
            decode=True,
            since=f"{time.time():.9f}",  # type: ignore[arg-type]
            until=int(time.time()) + 60,
            filters={
                "type": ["container"],
                "label": [f"{INSTANCE}={instance}", f"{ROLE}={POOL_ROLE}"],
            },
        )

    def to_refill(self) -> dict[str, float]:
        """Their actions up to the first refill's `create`, each with when it first happened
        (seconds, the engine's clock)."""
        seen: dict[str, float] = {}
        for event in self.stream:
            seen.setdefault(event["Action"], event["timeNano"] / 1e9)
            if event["Action"] == "create":
                return seen
        pytest.fail(f"no refill of the pool: {seen}")


def test_a_taken_container_is_refilled_once_its_run_is_over_not_beside_it(
    warm, docker_client, monkeypatch
):
    """A container's start is the engine's heaviest work: begun at the take, the refill would
    slow the run the pool is for. It begins once the run is over (the hold made long here, so
    that a slow machine cannot outlast it)."""
    monkeypatch.setattr(pool_module, "REFILL_AFTER_SECONDS", 30.0)
    assert _pool(warm).wait_full(60)
    events = PoolEvents(docker_client, warm)
    try:
        ran = _warm_run(warm, run_body("sh", "-c", "sleep 0.5; echo done"))
        assert ran["stdout"] == "done\n"
        actions = events.to_refill()
    finally:
        events.stream.close()
    assert "die" in actions, f"the refill began before the run ended: {list(actions)}"


def test_a_run_longer_than_the_hold_has_its_container_refilled_while_it_runs(warm, docker_client):
    """The refill waits for a run, but at most REFILL_AFTER_SECONDS: a long run does not keep
    its entry short."""
    assert _pool(warm).wait_full(60)
    assert REFILL_AFTER_SECONDS == 2
    events = PoolEvents(docker_client, warm)
    try:
        answer = in_background(lambda: _warm_run(warm, run_body("sh", "-c", "sleep 6; echo done")))
        actions = events.to_refill()
    finally:
        events.stream.close()
    assert "die" not in actions, f"the refill waited for the run's end: {list(actions)}"
    waited = actions["create"] - actions["rename"]  # the take's claim renames it, at once
    assert waited > REFILL_AFTER_SECONDS - 1, f"the refill began {waited:.2f}s after the take"
    assert answer() is not None and answer()["stdout"] == "done\n"  # type: ignore[index]


# ---- async runs (POST /runs, MCP's run_container) -----------------------------------------


def _async(client: TestClient, body: dict[str, object], headers: dict[str, str] = ALICE) -> str:
    started = client.post("/runs", json=body, headers=headers)
    assert started.status_code == 202, started.text
    return str(started.json()["run_id"])


def _followed(client: TestClient, run_id: str) -> dict[str, Any]:
    """The run's output as its log stream gave it, per stream, and its final status, without
    what differs by nature (its id, its times)."""
    seen: dict[str, str] = {"stdout": "", "stderr": ""}
    with connect_sse(
        client, "GET", f"/runs/{run_id}/logs", headers={**ALICE}, timeout=60
    ) as source:
        for event in source.iter_sse():
            if event.event in seen:
                seen[event.event] += json.loads(event.data)
    status = client.get(f"/runs/{run_id}", headers=ALICE).json()
    assert status["started_at"] and status["finished_at"], status
    for key in ("run_id", "created_at", "started_at", "finished_at"):
        status.pop(key)
    for key in ("run_id", "execution_time"):
        (status["result"] or {}).pop(key, None)
    return {"streamed": seen, "status": status}


def _both_async(
    warm: TestClient, cold: TestClient, docker_client: docker.DockerClient, body: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(warm, cold) of the same async run, as followed; fails unless the first took a warm
    container (the engine's `rename` of a pool container to the run's name)."""
    assert _pool(warm).wait_full(60), "the pool did not fill"
    events = Events(docker_client, warm.app.state.service.settings.instance_id)  # type: ignore[attr-defined]
    try:
        run_id = _async(warm, body)
        began = events.wait("start")  # the engine replays what it kept of the past first
        while began["Actor"]["Attributes"]["name"] != f"oneoff-{run_id}":
            began = events.wait("start")
    finally:
        events.close()
    assert warm_run_began(began), began
    return _followed(warm, run_id), _followed(cold, _async(cold, body))


@pytest.mark.parametrize(
    "fields",
    [
        {"command": ["sh", "-c", "echo out; cat; echo err >&2; env | grep ^GREETING; exit 3"]},
        {"command": ["pwd"], "working_dir": "/made/here"},
        {
            "command": ["cat", "/in/one.txt"],
            "volumes": {"/in/one.txt": {"type": "file", "content": "b25l"}},
        },
    ],
    ids=["exit-stdin-env", "working-dir", "file-in"],
)
def test_an_async_run_takes_a_warm_container_and_ends_as_a_cold_one(
    warm, cold, docker_client, fields
):
    body = run_body(stdin="from stdin\n", env_vars={"GREETING": "hello"}, **fields)
    first, second = _both_async(warm, cold, docker_client, body)
    assert first == second
    assert first["status"]["result"]["exit_code"] is not None


def test_an_async_warm_runs_files_come_back_as_a_cold_ones(warm, cold, docker_client):
    volumes = {"/out": {"type": "directory", "response": True}}
    body = run_body("sh", "-c", "echo made > /out/made.txt", volumes=volumes)
    first, second = _both_async(warm, cold, docker_client, body)
    first_tar = first["status"]["result"]["volumes"].pop("/out")["content"]
    second_tar = second["status"]["result"]["volumes"].pop("/out")["content"]
    assert first == second
    assert _members(first_tar) == _members(second_tar) == {"made.txt": b"made\n"}


def test_an_async_warm_run_times_out_as_a_cold_one(warm, cold, docker_client):
    body = run_body("sh", "-c", "echo started; sleep 60", timeout_seconds=1)
    first, second = _both_async(warm, cold, docker_client, body)
    assert first == second
    assert (first["status"]["state"], first["streamed"]["stdout"]) == ("timeout", "started\n")


def test_an_async_warm_run_is_its_tenants_and_cancelling_it_removes_it(warm, docker_client):
    assert _pool(warm).wait_full(60)
    run_id = _async(warm, run_body("sh", "-c", "echo ready; sleep 60"))
    with connect_sse(warm, "GET", f"/runs/{run_id}/logs", headers={**ALICE}, timeout=60) as source:
        next(event for event in source.iter_sse() if event.event == "stdout")
    (container,) = [
        item
        for item in docker_client.api.containers(filters={"name": f"oneoff-{run_id}"})
        if item["Labels"].get(ROLE) == POOL_ROLE  # a warm container, not one made for it
    ]
    listed = {
        name: [run["run_id"] for run in warm.get("/runs", headers=who).json()["runs"]]
        for name, who in (("alice", ALICE), ("bob", BOB))
    }
    assert run_id in listed["alice"] and run_id not in listed["bob"]
    assert warm.get(f"/runs/{run_id}", headers=BOB).status_code == 404
    assert warm.post(f"/runs/{run_id}/cancel", headers=BOB).status_code == 404
    assert docker_client.api.inspect_container(container["Id"])["State"]["Running"]
    cancelled = warm.post(f"/runs/{run_id}/cancel", headers=ALICE)
    assert cancelled.json()["state"] == "cancelled"
    claims = docker_client.api.volumes(filters={"name": f"oneoff-{run_id}-claim"})["Volumes"]
    assert docker_client.api.containers(all=True, filters={"id": container["Id"]}) == []
    assert not claims
    assert warm.get(f"/runs/{run_id}", headers=ALICE).json()["state"] == "cancelled"


def test_an_async_warm_run_outlives_its_runner_and_another_keeps_its_end(docker_client):
    """Its claim, not its container's labels, says whose it is: the dead runner's reaper
    removes the idle pool and leaves the run, which another runner watches and keeps."""
    instance, port = instance_id("warm-async"), free_port()
    fast = {"lease_seconds": "1", "reap_interval_seconds": "0.2"}
    first = start_runner(instance, port, warm_pool=f"{TEST_IMAGE}=2", **fast)
    try:
        until(lambda: len(_running(_idle_pool(docker_client, instance))) == 2, 60)
        script = "trap 'echo asked; exit 5' USR1; echo started; while :; do sleep 0.1; done"
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            started = client.post("/runs", json=run_body("sh", "-c", script))
            run_id = started.json()["run_id"]
            with connect_sse(client, "GET", f"/runs/{run_id}/logs", timeout=60) as source:
                next(event for event in source.iter_sse() if event.event == "stdout")
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        other = free_port()
        second = start_runner(instance, other, warm_pool="", **fast)
        try:
            until(lambda: not _idle_pool(docker_client, instance), 30)  # its reaper ran
            (taken,) = docker_client.api.containers(filters={"name": f"oneoff-{run_id}"})
            docker_client.api.kill(taken["Id"], signal="SIGUSR1")
            with httpx.Client(base_url=f"http://127.0.0.1:{other}") as client:
                with connect_sse(client, "GET", f"/runs/{run_id}/logs", timeout=60) as source:
                    *_, end = source.iter_sse()
        finally:
            second.terminate()
            second.wait(30)
        status = json.loads(end.data)
        assert (end.event, status["state"]) == ("exit", "failed"), status
        result = status["result"]
        assert (result["exit_code"], result["stdout"]) == (5, "started\nasked\n")
    finally:
        first.kill()
        remove_objects_of(docker_client, instance)


def _running(containers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [item for item in containers if item["State"] == "running"]


def _idle_pool(docker_client: docker.DockerClient, instance: str) -> list[dict[str, Any]]:
    """The instance's pool containers no run took (a taken one has its run's name): those of a
    dead runner exit (their shell reads end of file), and only a reaper removes them."""
    pool = _pool_containers(docker_client, instance)
    return [item for item in pool if item["Names"][0].startswith("/oneoff-pool-")]


def test_a_finished_runs_attach_is_closed_only_once_its_reader_is_done(warm):
    """Closed under a reader about to poll it, the attach's number could be reused by another
    connection, which the reader would then wait on (a CI run's exit once waited 13 minutes on
    such a reader)."""
    pool = _pool(warm)
    assert pool.wait_full(60)
    settings = warm.app.state.service.settings  # type: ignore[attr-defined]
    request = RunRequest.model_validate(run_body("true"))
    spec, _ = build_run_spec(request, settings, secrets.token_hex(8), LOCAL, lambda name: None)
    taken = pool.take(spec, RunControl())
    assert taken is not None
    attach, reader = taken.waiting.socket, Future[None]()
    pool.finish(spec.run_id, taken, later=False, reader=reader)
    assert attach.fileno() != -1, "closed while its reader still reads"
    reader.set_result(None)
    assert attach.fileno() == -1


def test_an_image_without_a_shell_is_not_pooled_and_its_runs_go_cold(docker_client, tmp_path):
    image = _shell_less_image(docker_client)
    settings = _settings(warm_pool=[f"{image}=1"])
    try:
        with TestClient(create_app(settings)) as client:
            assert _pool(client).wait_full(60)  # full: the entry is marked not poolable
            result = client.post(
                "/run",
                json={
                    "image": image,
                    "pull_policy": "never",
                    "command": ["/busybox", "echo", "no shell"],
                },
                headers=ALICE,
            ).json()
            assert (result["exit_code"], result["stdout"]) == (0, "no shell\n")
            assert _takes(client) == 0
    finally:
        remove_objects_of(docker_client, settings.instance_id)
        docker_client.api.remove_image(image, force=True)


def _shell_less_image(docker_client: docker.DockerClient) -> str:
    """An image of the test's own holding only a static busybox at /busybox: no /bin/sh."""
    carrier = docker_client.api.create_container(TEST_IMAGE, command=["true"])["Id"]
    try:
        chunks, _ = docker_client.api.get_archive(carrier, "/bin/busybox")
        source = tarfile.open(fileobj=io.BytesIO(b"".join(chunks)))
        member = source.getmember("busybox")
        data = source.extractfile(member).read()  # type: ignore[union-attr]
    finally:
        docker_client.api.remove_container(carrier, force=True)
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo("busybox")
        info.size, info.mode = len(data), 0o755
        archive.addfile(info, io.BytesIO(data))
    name = f"{instance_id('noshell')}:1"
    repository, tag = name.split(":")
    docker_client.api.import_image_from_data(out.getvalue(), repository=repository, tag=tag)
    return name


def test_a_runner_killed_with_a_full_pool_leaves_nothing_past_the_reaping_bound(docker_client):
    instance, port = instance_id("warm-kill"), free_port()
    fast = {"lease_seconds": "1", "reap_interval_seconds": "0.2"}
    events = Events(docker_client, instance)
    first = start_runner(instance, port, warm_pool=f"{TEST_IMAGE}=3", **fast)
    try:
        until(
            lambda: (
                len(
                    [
                        c
                        for c in _pool_containers(docker_client, instance)
                        if c["State"] == "running"
                    ]
                )
                == 3
            ),
            60,
        )
        first.send_signal(signal.SIGKILL)
        first.wait(30)
        second = start_runner(instance, free_port(), warm_pool="", **fast)  # its reaper only
        try:
            until(lambda: not _pool_containers(docker_client, instance), 30)
        finally:
            second.terminate()
            second.wait(30)
        events.until_nothing_left()
    finally:
        events.close()
        first.kill()
        remove_objects_of(docker_client, instance)
