"""Named volumes as workspaces, through the REST door of a served runner: the files a run is
given under a volume are kept in it (the run → edit → rerun loop)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import docker
import httpx
import pytest

from tests.helpers import b64, instance_id, remove_objects_of, run_body, serving

A = {"Authorization": "Bearer tok-alice"}
B = {"Authorization": "Bearer tok-bob"}


@pytest.fixture(scope="module")
def instance(docker_client: docker.DockerClient) -> Iterator[str]:
    made = instance_id("workspace")
    yield made
    remove_objects_of(docker_client, made)


@pytest.fixture(scope="module")
def runner(instance: str, make_module_settings) -> Iterator[httpx.Client]:  # type: ignore[no-untyped-def]
    """A served runner with two tenants, alice and bob."""
    from api_app import create_app

    settings = make_module_settings(instance_id=instance, api_tokens=["alice:tok-alice", "tok-bob"])
    with (
        serving(create_app(settings)) as port,
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


def test_read_only_content_under_a_workspace_is_not_written_into_it(runner, workspace):
    mounted = {"/work": {"type": "volume", "name": workspace}}
    given = {**mounted, "/work/conf:ro": {"type": "file", "content": b64(b"ro")}}
    assert run(runner, "cat", "/work/conf", volumes=given)["stdout"] == "ro"
    left = run(runner, "sh", "-c", "wc -c < /work/conf", volumes=mounted)["stdout"]
    assert left.strip() == "0"  # the engine's mount point, never the content
