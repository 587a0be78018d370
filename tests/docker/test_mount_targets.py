"""Mount targets redirected through symlinks, through the real doors on the real engine: a mount
that a symlink in the container (in its image, the run's content, its uploaded parts or a named
volume a previous run filled) would take under /dev, /proc or /sys, or into a named volume, is
refused before the run starts, naming its volume key, and nothing of the run is left; a benign
symlink on the way is followed as the runtime follows it."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator

import docker
import pytest
from mcp import Client

from mcp_app import create_app as create_mcp_app
from tests.docker.test_async_runs import follow_to_exit, start
from tests.docker.test_binary_path import form
from tests.helpers import (
    TEST_IMAGE,
    b64,
    instance_id,
    managed_objects,
    remove_objects_of,
    run_body,
    serving,
    tar_gz,
    tar_member,
    until,
)

LINKS = {
    "work/shm": "/dev/shm",
    "kernel": "/sys/kernel",
    "opt/data-link": "/data",
    "benign": "/opt",
}
"""The symlinks the test image adds to the test image (and `work/`, `opt/` as directories)."""
SHM_LINK = tar_member("shm", tarfile.SYMTYPE, "/dev/shm")


@pytest.fixture(scope="module")
def linked_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """The test image with `LINKS`, committed from a never-started container; removed after."""
    api = docker_client.api
    tag = f"{instance_id('links')}:1"
    container = api.create_container(TEST_IMAGE, command=["true"])["Id"]
    try:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as archive:
            for folder in ("work", "opt"):
                archive.addfile(tar_member(folder, tarfile.DIRTYPE))
            for name, target in LINKS.items():
                archive.addfile(tar_member(name, tarfile.SYMTYPE, target))
        api.put_archive(container, "/", out.getvalue())
        repository, _, version = tag.partition(":")
        api.commit(container, repository=repository, tag=version)
    finally:
        api.remove_container(container, force=True)
    yield tag
    api.remove_image(tag, force=True)


@pytest.fixture
def runner(app_client, docker_client):  # type: ignore[no-untyped-def]
    """A REST client of a runner of its own, and a check that it leaves nothing of its runs
    (a finished run's container goes in the background)."""
    client = app_client()
    yield client
    instance = client.app.state.service.settings.instance_id
    until(lambda: managed_objects(docker_client, instance) == [], 30)


@pytest.fixture
def volume(runner) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A named volume the runner's tenant made, in which a previous run put `shm -> /dev/shm`."""
    name = f"targets-{runner.app.state.service.settings.instance_id[-6:]}"
    assert runner.post("/volume", json={"name": name}).status_code == 200
    planted = run_body(
        "ln", "-s", "/dev/shm", "/v/shm", volumes={"/v": {"type": "volume", "name": name}}
    )
    assert runner.post("/run", json=planted).json()["exit_code"] == 0
    yield name
    assert runner.delete(f"/volume/{name}").status_code in (200, 204)


def refused(response, key: str, words: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, response.text
    assert response.json()["field"] == f"volumes[{key!r}]", response.text
    assert words in response.json()["message"], response.text


@pytest.mark.parametrize(
    ("key", "lands"),
    [("/work/shm:ro", "to /dev/shm, at or under /dev"), ("/kernel/x:ro", "/sys/kernel/x")],
)
def test_a_symlink_in_the_image_cannot_take_a_mount_under_dev_or_sys(
    runner, linked_image: str, key: str, lands: str
) -> None:
    body = run_body("true", volumes={key: {"type": "directory"}}, image=linked_image)
    refused(runner.post("/run", json=body), key, lands)


def test_a_symlink_in_the_runs_own_content_cannot_take_a_mount_to_dev_shm(runner) -> None:
    volumes = {
        "/work": {"type": "directory", "content": b64(tar_gz({}, extra=[SHM_LINK]))},
        "/work/shm": {"type": "directory"},
    }
    refused(runner.post("/run", json=run_body("true", volumes=volumes)), "/work/shm", "/dev/shm")


def test_a_symlink_in_an_uploaded_part_cannot_take_a_mount_to_dev_shm(runner) -> None:
    volumes = {"/work": {"type": "directory"}, "/work/shm/x": {"type": "file"}}
    parts = {"/work": tar_gz({}, extra=[SHM_LINK]), "/work/shm/x": b"x"}
    response = runner.post("/run", files=form(run_body("true", volumes=volumes), **parts))
    refused(response, "/work/shm/x", "/dev/shm/x")


def test_a_mount_inside_a_named_volume_is_refused(runner, volume: str) -> None:
    """The volume holds `shm -> /dev/shm` now; whatever it holds, another run may change it
    between the check and the start."""
    volumes = {"/work": {"type": "volume", "name": volume}, "/work/shm:ro": {"type": "directory"}}
    response = runner.post("/run", json=run_body("true", volumes=volumes))
    refused(response, "/work/shm:ro", "is inside the named volume mounted at /work")


def test_a_symlink_in_the_image_cannot_take_a_mount_into_a_named_volume(
    runner, volume: str, linked_image: str
) -> None:
    volumes = {
        "/data": {"type": "volume", "name": volume},
        "/opt/data-link/shm": {"type": "directory"},
    }
    body = run_body("true", volumes=volumes, image=linked_image)
    refused(runner.post("/run", json=body), "/opt/data-link/shm", "inside the named volume")


def test_an_async_run_with_a_redirected_mount_fails_before_it_starts(runner) -> None:
    volumes = {
        "/work": {"type": "directory", "content": b64(tar_gz({}, extra=[SHM_LINK]))},
        "/work/shm": {"type": "directory"},
    }
    run_id = start(runner, "true", volumes=volumes)
    _, status = follow_to_exit(runner, run_id)
    assert runner.delete(f"/runs/{run_id}").status_code == 200  # its record: nothing else is left
    assert status["state"] == "failed", status
    assert "volumes['/work/shm']" in status["error"] and "/dev/shm" in status["error"]


def test_benign_symlinks_on_the_way_are_followed(runner, linked_image: str) -> None:
    """`/benign -> /opt` in the image, `lib -> /usr` in the run's content: mounts through them
    land where the links lead, as `docker run` would put them."""
    data = b64(tar_gz({"a.txt": b"A\n"}))
    volumes = {
        "/benign/in:ro": {"type": "directory", "content": data},
        "/work": {
            "type": "directory",
            "content": b64(tar_gz({}, extra=[tar_member("lib", tarfile.SYMTYPE, "/usr")])),
        },
        "/work/lib/in": {"type": "directory", "content": data},
    }
    command = "cat /opt/in/a.txt /usr/in/a.txt"
    body = run_body("sh", "-c", command, volumes=volumes, image=linked_image)
    result = runner.post("/run", json=body).json()
    assert result["stdout"] == "A\nA\n", result


@pytest.mark.anyio
async def test_over_mcp_a_redirected_mount_is_a_tool_error(
    docker_client: docker.DockerClient, make_settings
) -> None:  # type: ignore[no-untyped-def]
    settings = make_settings()
    volumes = {
        "/work": {"type": "directory", "content": b64(tar_gz({}, extra=[SHM_LINK]))},
        "/work/shm": {"type": "directory"},
    }
    try:
        with serving(create_mcp_app(settings)) as port:
            async with Client(f"http://127.0.0.1:{port}/mcp") as client:
                result = await client.call_tool("run_container", run_body("true", volumes=volumes))
        assert result.is_error is True, result
        assert "volumes['/work/shm']" in result.content[0].text
        assert "/dev/shm" in result.content[0].text
        left = managed_objects(docker_client, settings.instance_id)
        kept = ("-record", "-delivered")  # its end, and that the answer delivered it
        assert [name for name in left if not name.endswith(kept)] == []
    finally:
        remove_objects_of(docker_client, settings.instance_id)


def test_a_symlink_loop_on_the_way_is_a_422_naming_volumes(runner) -> None:
    """The engine mounts every volume to look at any path, so a loop stops them all."""
    loop = [
        tar_member("a", tarfile.SYMTYPE, "/work/b"),
        tar_member("b", tarfile.SYMTYPE, "/work/a"),
    ]
    volumes = {
        "/work": {"type": "directory", "content": b64(tar_gz({}, extra=loop))},
        "/work/a/x": {"type": "directory"},
    }
    response = runner.post("/run", json=run_body("true", volumes=volumes))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "volumes"
    assert "symlink loop" in response.json()["message"]
