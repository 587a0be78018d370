"""The host's disk, attacked by the process in the container through the real doors: a run that
writes past its scratch limit is stopped and says so; many empty entries are counted; one file
never outgrows the limit; mounts over the kernel's filesystems are refused. Limits are a few MiB
and writers stop by themselves well short of a disk's worth, so a failure here costs little."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, cast

import docker
import pytest

from backends.labels import RUN_ID
from tests.docker.test_async_runs import follow_to_exit, start
from tests.helpers import Server, managed_objects, run_body, run_containers, until

WRITER = (
    "i=0; while [ $i -lt 24 ]; do dd if=/dev/zero of=/tmp/f$i bs=1M count=2 2>/dev/null; "
    "i=$((i + 1)); sleep 0.5; done; echo wrote it all"
)
"""48 MiB in 2 MiB files (each under the per-file bound) over about 12 s: long enough to be
seen under load, when one slow sample stretches the next interval to ten times its length."""
ENTRIES = (
    "mkdir /tmp/d && cd /tmp/d && i=0; while [ $i -lt 40000 ]; do mkdir $i; i=$((i + 1)); done"
)
"""40,000 empty directories: nothing `SizeRw` sees, 160 MiB of the host's disk."""


def test_a_run_writing_past_its_scratch_is_stopped_and_says_so(client) -> None:
    result = client.post("/run", json=run_body("sh", "-c", WRITER, scratch="8m")).json()
    assert result["status"] == "scratch_exceeded", result
    assert result["scratch_exceeded"] is True
    assert result["exit_code"] == 137
    assert "wrote it all" not in result["stdout"]
    assert "8.0 MiB" in result["message"] and "scratch" in result["message"]


def test_an_async_run_writing_past_its_scratch_is_stopped_and_says_so(server: Server) -> None:
    with server() as client:
        run_id = start(client, "sh", "-c", WRITER, scratch="8m")
        _, status = follow_to_exit(client, run_id)
    assert status["state"] == "failed"
    assert status["result"]["status"] == "scratch_exceeded", status
    assert status["result"]["scratch_exceeded"] is True
    assert "RUNNER_MAX_SCRATCH_BYTES" in status["result"]["message"]


def test_empty_directories_count_against_the_scratch(client) -> None:
    result = client.post("/run", json=run_body("sh", "-c", ENTRIES, scratch="16m")).json()
    assert result["status"] == "scratch_exceeded", result
    assert "16.0 MiB" in result["message"]


def test_too_many_entries_stop_a_run_whatever_its_scratch(app_client) -> None:
    client = app_client(max_scratch_files=1000)
    result = client.post("/run", json=run_body("sh", "-c", ENTRIES, scratch="1g")).json()
    assert result["status"] == "scratch_exceeded", result
    assert "RUNNER_MAX_SCRATCH_FILES" in result["message"]


def test_a_tree_too_deep_to_measure_stops_the_run(client) -> None:
    """Deeper than the host's PATH_MAX under the engine's data root: the engine's walk fails
    (SizeRw -1), and what cannot be measured cannot be let run."""
    deep = "i=0; while [ $i -lt 3000 ]; do mkdir d && cd d || break; i=$((i + 1)); done; sleep 30"
    result = client.post("/run", json=run_body("sh", "-c", deep, scratch="64m")).json()
    assert result["status"] == "scratch_exceeded", result
    assert "could not be measured" in result["message"]


@pytest.mark.parametrize(
    "command",
    ["fallocate -l 64M /tmp/big", "dd if=/dev/zero of=/tmp/big bs=1M count=1 seek=63"],
)
def test_no_single_file_outgrows_the_scratch(client, command: str) -> None:
    """RLIMIT_FSIZE: the kernel refuses at once, before any sample could see it."""
    script = f"{command}; echo status $?; ls -l /tmp/big"
    result = client.post("/run", json=run_body("sh", "-c", script, scratch="8m")).json()
    assert "status 0" not in result["stdout"], result
    assert "File size limit exceeded" in result["stderr"] or "status 1" in result["stdout"]
    assert " 67108864 " not in result["stdout"]


def test_a_run_within_its_scratch_is_left_alone(client) -> None:
    script = "dd if=/dev/zero of=/tmp/f bs=1M count=3 2>/dev/null && echo ok"
    result = client.post("/run", json=run_body("sh", "-c", script, scratch="8m")).json()
    assert (result["status"], result["stdout"]) == ("success", "ok\n"), result
    assert result["scratch_exceeded"] is False and result["message"] is None


@pytest.mark.parametrize(
    ("key", "spec"),
    [
        ("/dev/shm", {"type": "directory"}),
        ("/dev/mqueue:rw", {"type": "directory"}),
        ("/sys", {"type": "directory"}),
        ("/sys/fs/cgroup", {"type": "directory"}),
        ("/proc/x", {"type": "directory"}),
        ("//proc", {"type": "file", "content": ""}),
        ("/etc/resolv.conf", {"type": "directory"}),
        ("/etc/hostname", {"type": "directory"}),
    ],
)
def test_mounts_over_the_kernel_s_filesystems_are_refused_naming_the_key(
    app_client, docker_client: docker.DockerClient, key: str, spec: dict[str, object]
) -> None:
    client = app_client()
    instance = client.app.state.service.settings.instance_id
    response = client.post("/run", json=run_body("true", volumes={key: spec}))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == f"volumes[{key!r}]"
    assert managed_objects(docker_client, instance) == []


def test_a_named_volume_over_dev_shm_is_refused(app_client, docker_client) -> None:
    client = app_client()
    name = f"scratch-shm-{client.app.state.service.settings.instance_id[-6:]}"
    assert client.post("/volume", json={"name": name}).status_code == 200
    try:
        volumes = {"/dev/shm": {"type": "volume", "name": name}}
        response = client.post("/run", json=run_body("true", volumes=volumes))
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "volumes['/dev/shm']"
    finally:
        docker_client.api.remove_volume(name)


@pytest.mark.parametrize(
    ("scratch", "status", "words"),
    [
        ("12x", 422, "write a number and a unit, e.g. 256m or 1g"),
        ("0.5m", 422, "minimum of 1m"),
        ("9g", 403, "RUNNER_MAX_SCRATCH_BYTES"),
    ],
)
def test_the_scratch_field_is_checked_like_memory(client, scratch, status, words) -> None:
    response = client.post("/run", json=run_body("true", scratch=scratch))
    assert response.status_code == status, response.text
    assert response.json()["field"] == "scratch"
    assert words in response.json()["message"]


def test_a_finished_async_run_keeps_its_result_without_its_container(
    server: Server, docker_client: docker.DockerClient
) -> None:
    volumes = {
        "/out": {"type": "directory", "response": True},
        "/note.txt": {"type": "file", "content": "", "response": True},
    }
    script = "echo out; echo err >&2; echo data > /out/a.txt; echo note > /note.txt"
    with server() as client:
        run_id = start(client, "sh", "-c", script, volumes=volumes)
        follow_to_exit(client, run_id)

        def listed() -> list[dict[str, Any]]:
            found = run_containers(docker_client, run_id)
            return cast(list[dict[str, Any]], found)

        until(lambda: [item["Names"] for item in listed()] == [[f"/oneoff-{run_id}-result"]], 30)
        kept = listed()
        status = client.get(f"/runs/{run_id}").json()
        logs = client.get(f"/runs/{run_id}/logs", params={"follow": "false"}).text
        note = client.get(f"/runs/{run_id}/files/note.txt")
        directory = client.get(f"/runs/{run_id}/files/out")
        removed = client.delete(f"/runs/{run_id}")
        after = [client.get(f"/runs/{run_id}"), client.get(f"/runs/{run_id}/files/out")]
        left = run_containers(docker_client, run_id)
        records = docker_client.api.volumes(filters={"label": f"{RUN_ID}={run_id}"}).get("Volumes")
    assert kept[0]["State"] == "created"  # never started: it only holds the result
    assert (status["state"], status["result"]["stdout"], status["result"]["stderr"]) == (
        "succeeded",
        "out\n",
        "err\n",
    )
    assert set(status["result"]["volumes"]) == {"/out", "/note.txt"}
    assert '"out\\n"' in logs and '"err\\n"' in logs
    assert note.content == b"note\n"
    assert b"a.txt" in directory.content and b"data\n" in directory.content
    assert removed.status_code == 200 and removed.json()["result"]["stdout"] == "out\n"
    assert [answer.status_code for answer in after] == [404, 404]
    assert (left, records or []) == ([], [])


def test_the_kept_runs_bound_answers_429_naming_it(server: Server) -> None:
    token = uuid.uuid4().hex  # a tenant of its own: the engine is shared
    with server(max_kept_runs=2, api_tokens=[f"bounded:{token}"]) as client:
        client.headers["Authorization"] = f"Bearer {token}"
        first = start(client, "true")
        second = start(client, "true")
        refused = client.post("/runs", json=run_body("true"))
        follow_to_exit(client, first)
        assert client.delete(f"/runs/{first}").status_code == 200
        again = client.post("/runs", json=run_body("true"))
        follow_to_exit(client, second)
        assert again.status_code == 202, again.text
        follow_to_exit(client, again.json()["run_id"])  # none left for another runner to keep
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"] == "too_many_kept_runs"
    assert "RUNNER_MAX_KEPT_RUNS" in refused.json()["message"]
    assert "DELETE /runs/" in refused.json()["message"]
    assert int(refused.headers["retry-after"]) >= 1
    assert again.status_code == 202, again.text


def test_the_volume_bound_answers_409_naming_it_even_to_a_burst(
    server: Server, docker_client: docker.DockerClient
) -> None:
    """Five creations at once against a bound of two: two volumes, three refusals naming the
    bound; refilling one's own adds none; removing one frees its place."""
    token = uuid.uuid4().hex  # a tenant of its own: the engine is shared
    names = [f"disk-bound-{uuid.uuid4().hex[:12]}" for _ in range(6)]
    try:
        with server(max_volumes_per_tenant=2, api_tokens=[f"volumes:{token}"]) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            with ThreadPoolExecutor(5) as pool:
                asked = [pool.submit(client.post, "/volume", json={"name": n}) for n in names[:5]]
                burst = [future.result() for future in asked]
            made = [name for name, answer in zip(names, burst, strict=False) if answer.is_success]
            refused = [answer for answer in burst if not answer.is_success]
            refill = client.post("/volume", json={"name": made[0], "reuse_existing": True})
            listed = docker_client.volumes.list(filters={"name": "disk-bound"})
            assert client.delete(f"/volume/{made[0]}").status_code == 200
            again = client.post("/volume", json={"name": names[5]})
    finally:
        for volume in docker_client.volumes.list(filters={"name": "disk-bound"}):
            if volume.name in names:
                volume.remove(force=True)
    assert len(made) == 2 and len(refused) == 3
    assert {answer.status_code for answer in refused} == {409}
    body = refused[0].json()
    assert (body["error"], body["field"]) == ("too_many_volumes", "name")
    assert "RUNNER_MAX_VOLUMES_PER_TENANT: 2" in body["message"]
    assert "DELETE /volume/" in body["message"]
    assert refill.status_code == 200, refill.text
    assert {volume.name for volume in listed} & set(names) == set(made)  # none for a refusal
    assert again.status_code == 200, again.text
