"""Named volumes as workspaces, through the REST door of a served runner: the files a run is
given under a volume are kept in it (the run → edit → rerun loop)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import datetime

import docker
import httpx
import pytest
from httpx_sse import connect_sse

from backends.labels import TENANT, VOLUME
from tests.helpers import b64, instance_id, remove_objects_of, run_body, serving

A = {"Authorization": "Bearer tok-alice"}
B = {"Authorization": "Bearer tok-bob"}


@pytest.fixture(scope="module")
def instance(docker_client: docker.DockerClient) -> Iterator[str]:
    made = instance_id("workspace")
    yield made
    remove_objects_of(docker_client, made)


@pytest.fixture(scope="module")
def app(instance: str, make_module_settings):  # type: ignore[no-untyped-def]
    """A runner with two tenants, alice and bob."""
    from api_app import create_app

    settings = make_module_settings(
        instance_id=instance, api_tokens=["alice:tok-alice", "tok-bob"], max_volume_bytes="2m"
    )
    return create_app(settings)


@pytest.fixture(scope="module")
def runner(app) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """`app`, served."""
    with (
        serving(app) as port,
        httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=A, timeout=120) as client,
    ):
        yield client


@pytest.fixture
def workspace(runner: httpx.Client) -> Iterator[str]:
    name = f"ws-{uuid.uuid4().hex[:8]}"
    assert runner.post("/volume", json={"name": name}).status_code == 200
    yield name
    runner.delete(f"/volume/{name}")


def run(client: httpx.Client, *command: str, **fields: object) -> dict[str, object]:
    response = client.post("/run", json=run_body(*command, **fields))
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


def test_a_file_given_under_a_workspace_is_kept_for_the_next_run(runner, workspace):
    volumes = {
        "/work": {"type": "volume", "name": workspace},
        "/work/app.py": {"type": "file", "content": b64(b"print('v1')\n")},
    }
    assert run(runner, "cat", "/work/app.py", volumes=volumes)["stdout"] == "print('v1')\n"
    again = {"/work": {"type": "volume", "name": workspace}}
    assert run(runner, "cat", "/work/app.py", volumes=again)["stdout"] == "print('v1')\n"


def test_an_edit_in_a_run_and_a_file_given_again_both_persist(runner, workspace):
    mounted = {"/work": {"type": "volume", "name": workspace}}
    run(runner, "sh", "-c", "echo edited > /work/notes.txt", volumes=mounted)
    given = {**mounted, "/work/src/app.py": {"type": "file", "content": b64(b"v2\n")}}
    result = run(runner, "sh", "-c", "cat /work/notes.txt /work/src/app.py", volumes=given)
    assert result["stdout"] == "edited\nv2\n"
    rerun = run(runner, "sh", "-c", "echo more >> /work/src/app.py", volumes=mounted)
    assert rerun["exit_code"] == 0
    assert run(runner, "cat", "/work/src/app.py", volumes=mounted)["stdout"] == "v2\nmore\n"


def test_a_directory_given_under_a_workspace_adds_its_files_to_it(runner, workspace):
    from tests.helpers import tar_gz

    mounted = {"/work": {"type": "volume", "name": workspace}}
    run(runner, "sh", "-c", "echo old > /work/keep.txt", volumes=mounted)
    archive = tar_gz({"a.txt": b"A"})
    given = {**mounted, "/work/d": {"type": "directory", "content": b64(archive)}}
    run(runner, "true", volumes=given)
    found = run(runner, "sh", "-c", "cat /work/keep.txt /work/d/a.txt", volumes=mounted)
    assert found["stdout"] == "old\nA"


def test_read_only_content_under_a_workspace_is_refused_not_mounted_into_it(runner, workspace):
    """`:ro` content would be a bind mount inside the volume, which a symlink made there could
    move (tests/docker/test_mount_targets.py): refused, naming where to put it instead."""
    mounted = {"/work": {"type": "volume", "name": workspace}}
    given = {**mounted, "/work/conf:ro": {"type": "file", "content": b64(b"ro")}}
    refused = runner.post("/run", json=run_body("cat", "/work/conf", volumes=given))
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "volumes['/work/conf:ro']"
    assert "mount it beside the named volume" in refused.json()["message"]


# ---- files without a run -----------------------------------------------------------------------


def write(client: httpx.Client, name: str, path: str, content: str, **fields: object):  # type: ignore[no-untyped-def]
    return client.put(f"/volume/{name}/file", json={"path": path, "content": content, **fields})


def test_a_file_written_without_a_run_is_read_back_and_seen_by_runs(runner, workspace):
    written = write(runner, workspace, "src/app.py", "print('hi')\n", mode="0755")
    assert written.status_code == 200, written.text
    assert written.json()["size"] == 12
    read = runner.get(f"/volume/{workspace}/file", params={"path": "src/app.py"})
    assert read.json() | {"name": None} == {
        "name": None,
        "path": "src/app.py",
        "content": "print('hi')\n",
        "encoding": "text",
        "size": 12,
    }
    mounted = {"/work": {"type": "volume", "name": workspace}}
    result = run(
        runner, "sh", "-c", "stat -c %a /work/src/app.py; cat /work/src/app.py", volumes=mounted
    )
    assert result["stdout"] == "755\nprint('hi')\n"


def test_what_a_run_wrote_is_listed_and_read_binary_as_base64(runner, workspace):
    mounted = {"/work": {"type": "volume", "name": workspace}}
    command = "mkdir -p /work/out && printf '\\377\\376' > /work/out/blob && echo ok > /work/a"
    run(runner, "sh", "-c", command, volumes=mounted)
    listed = runner.get(f"/volume/{workspace}/files").json()
    entries = {entry["path"]: (entry["type"], entry["size"]) for entry in listed["entries"]}
    assert entries == {"a": ("file", 3), "out": ("directory", 0), "out/blob": ("file", 2)}
    assert listed["total_bytes"] >= 5 and listed["max_bytes"] > listed["total_bytes"]
    sub = runner.get(f"/volume/{workspace}/files", params={"path": "out"}).json()
    assert [entry["path"] for entry in sub["entries"]] == ["blob"]
    blob = runner.get(f"/volume/{workspace}/file", params={"path": "out/blob"}).json()
    assert (blob["encoding"], blob["content"]) == ("base64", b64(b"\xff\xfe"))


def test_another_tenant_s_volume_answers_404_to_every_file_endpoint(runner, workspace):
    write(runner, workspace, "secret.txt", "alice's")
    theirs = [
        runner.get(f"/volume/{workspace}/files", headers=B),
        runner.get(f"/volume/{workspace}/file", params={"path": "secret.txt"}, headers=B),
        runner.put(f"/volume/{workspace}/file", json={"path": "x", "content": "bob"}, headers=B),
    ]
    assert [response.status_code for response in theirs] == [404, 404, 404]
    assert all(workspace in response.json()["message"] for response in theirs)
    names = {entry["path"] for entry in runner.get(f"/volume/{workspace}/files").json()["entries"]}
    assert names == {"secret.txt"}


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/etc/passwd"])
def test_a_path_out_of_the_volume_is_422_naming_path(runner, workspace, path):
    answers = [
        runner.get(f"/volume/{workspace}/file", params={"path": path}),
        runner.get(f"/volume/{workspace}/files", params={"path": path}),
        write(runner, workspace, path, "x"),
    ]
    assert [response.status_code for response in answers] == [422, 422, 422]
    assert {response.json()["field"] for response in answers} == {"path"}


def test_a_symlink_a_run_planted_is_never_followed(runner, workspace):
    mounted = {"/work": {"type": "volume", "name": workspace}}
    run(runner, "sh", "-c", "ln -s / /work/esc && ln -s /etc/passwd /work/pw", volumes=mounted)
    answers = [
        runner.get(f"/volume/{workspace}/file", params={"path": "esc/etc/passwd"}),
        runner.get(f"/volume/{workspace}/file", params={"path": "pw"}),
        runner.get(f"/volume/{workspace}/files", params={"path": "esc"}),
        write(runner, workspace, "esc/planted", "x"),
        write(runner, workspace, "pw", "x"),
    ]
    assert [response.status_code for response in answers] == [409] * 5
    assert all("symbolic link" in response.json()["message"] for response in answers)
    listed = runner.get(f"/volume/{workspace}/files").json()["entries"]
    assert {(entry["path"], entry["type"]) for entry in listed} == {
        ("esc", "symlink"),
        ("pw", "symlink"),
    }


def test_a_directory_is_not_read_as_a_file_and_a_missing_path_is_404(runner, workspace):
    write(runner, workspace, "d/f", "x")
    directory = runner.get(f"/volume/{workspace}/file", params={"path": "d"})
    missing = runner.get(f"/volume/{workspace}/file", params={"path": "nothing/here"})
    onto = write(runner, workspace, "d", "x")
    assert [directory.status_code, missing.status_code, onto.status_code] == [409, 404, 409]
    assert "is a directory" in directory.json()["message"]


def test_file_endpoints_leave_nothing_behind(runner, workspace, instance, docker_client):
    from tests.helpers import managed_objects

    write(runner, workspace, "a", "x")
    runner.get(f"/volume/{workspace}/file", params={"path": "a"})
    runner.get(f"/volume/{workspace}/file", params={"path": "missing"})
    runner.get(f"/volume/{workspace}/files")
    assert managed_objects(docker_client, instance) == [workspace]  # no carrier is left


# ---- lifetime ----------------------------------------------------------------------------------


def expires_in(client: httpx.Client, name: str) -> float:
    """Seconds from now until the volume expires, as GET /volumes shows it."""
    listed = {volume["name"]: volume for volume in client.get("/volumes").json()}
    expires = datetime.fromisoformat(listed[name]["expires_at"].replace("Z", "+00:00"))
    return expires.timestamp() - time.time()


def test_a_volume_shows_when_it_expires_and_the_caller_extends_it(runner, workspace):
    assert 7 * 86400 - 120 < expires_in(runner, workspace) <= 7 * 86400
    body = {"name": workspace, "reuse_existing": True, "ttl_seconds": 3600}
    assert runner.post("/volume", json=body).status_code == 200
    assert 3600 - 120 < expires_in(runner, workspace) <= 3600
    longer = runner.post("/volume", json={**body, "ttl_seconds": 31 * 86400})
    assert longer.status_code == 403  # above the operator's maximum, as every limit
    assert "RUNNER_MAX_VOLUME_TTL_SECONDS" in longer.json()["message"]
    assert 3600 - 120 < expires_in(runner, workspace) <= 3600


def test_another_tenant_cannot_extend_a_volume(runner, workspace):
    body = {"name": workspace, "reuse_existing": True, "ttl_seconds": 3600}
    assert runner.post("/volume", json=body, headers=B).status_code == 409
    assert expires_in(runner, workspace) > 86400


def test_an_expired_volume_is_reaped_once_no_run_uses_it(app, runner, workspace, docker_client):
    backend = app.state.service.backend
    tenant = docker_client.volumes.get(workspace).attrs["Labels"][TENANT]
    mounted = {"/work": {"type": "volume", "name": workspace}}
    body = run_body("sh", "-c", "echo up; exec sleep 300", volumes=mounted)
    started = runner.post("/runs", json=body)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    with connect_sse(runner, "GET", f"/runs/{run_id}/logs", timeout=60) as source:
        assert next(e.data for e in source.iter_sse() if e.event == "stdout") == '"up\\n"'
    backend.expiries.extend(workspace, tenant, time.time() - 1)
    assert expires_in(runner, workspace) < 0
    backend.reap_orphans()
    assert docker_client.volumes.get(workspace).name == workspace  # in use: kept
    assert runner.delete(f"/runs/{run_id}").status_code == 200
    deadline = time.monotonic() + 60
    while docker_client.volumes.list(filters={"name": workspace}):
        assert time.monotonic() < deadline, "the expired volume was never reaped"
        backend.reap_orphans()
    assert workspace not in [volume["name"] for volume in runner.get("/volumes").json()]
    records = docker_client.volumes.list(filters={"label": f"{VOLUME}={workspace}"})
    assert records == []


# ---- size bound (RUNNER_MAX_VOLUME_BYTES: 2 MiB here) -------------------------------------------


def test_a_write_past_the_volume_bound_is_413_naming_it_and_writes_nothing(runner, workspace):
    assert (
        write(runner, workspace, "half", b64(b"x" * 1_000_000), encoding="base64").status_code
        == 200
    )
    over = write(runner, workspace, "more", b64(b"y" * 1_200_000), encoding="base64")
    assert over.status_code == 413
    assert "RUNNER_MAX_VOLUME_BYTES" in over.json()["message"]
    names = [entry["path"] for entry in runner.get(f"/volume/{workspace}/files").json()["entries"]]
    assert names == ["half"]
    replaced = write(runner, workspace, "half", b64(b"z" * 1_500_000), encoding="base64")
    assert replaced.status_code == 200  # what it replaces is no longer counted


def test_a_run_growing_a_volume_past_its_bound_is_stopped_saying_so(runner, workspace):
    mounted = {"/work": {"type": "volume", "name": workspace}}
    script = (
        "i=0; while [ $i -lt 200 ]; do head -c 262144 /dev/zero > /work/f$i; i=$((i+1)); "
        "sleep 0.05; done"
    )
    result = run(runner, "sh", "-c", script, volumes=mounted)
    assert result["status"] == "scratch_exceeded" and result["scratch_exceeded"] is True
    assert "RUNNER_MAX_VOLUME_BYTES" in result["message"]
    used = runner.get(f"/volume/{workspace}/files").json()
    assert 2 * 1024 * 1024 < used["total_bytes"] < 200 * 262144


def test_a_run_within_the_volume_bound_is_not_stopped(runner, workspace):
    mounted = {"/work": {"type": "volume", "name": workspace}}
    script = "head -c 1000000 /dev/zero > /work/f; sleep 1; echo done"
    result = run(runner, "sh", "-c", script, volumes=mounted)
    assert (result["status"], result["stdout"]) == ("success", "done\n")
