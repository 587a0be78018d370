"""The two ways content goes in: writable content at paths the image does not have is unpacked
straight into the run's container (no run volume, no carrier, nothing else to remove);
read-only content, content beside named volumes, at a path the image has or that the runtime
mounts over, goes through a run volume that the container mounts, as before."""

from __future__ import annotations

from tests.docker.test_binary_path import form
from tests.faults import engine_fault, removals_held
from tests.helpers import b64, managed_objects, run_body, tar_gz

MOUNTED = "grep -cE ' /(data|job.sh|root) ' /proc/self/mountinfo; cat /data/a.txt; /job.sh"
"""How many of the paths are mounts in the container, then their content."""


def content(data_key: str = "/data") -> dict[str, object]:
    return {
        data_key: {"type": "directory", "content": b64(tar_gz({"a.txt": b"A\n"}))},
        "/job.sh": {"type": "file", "content": b64(b"#!/bin/sh\necho job\n"), "mode": "0755"},
    }


def test_writable_content_at_new_paths_is_in_the_container_itself(client):
    result = client.post("/run", json=run_body("sh", "-c", MOUNTED, volumes=content())).json()
    assert result["stdout"] == "0\nA\njob\n", result


def test_writable_content_sent_as_parts_is_in_the_container_itself(client):
    volumes = {"/data": {"type": "directory"}, "/job.sh": {"type": "file", "mode": "0755"}}
    body = run_body("sh", "-c", MOUNTED, volumes=volumes)
    parts = {"/data": tar_gz({"a.txt": b"A\n"}), "/job.sh": b"#!/bin/sh\necho job\n"}
    response = client.post("/run", files=form(body, **parts))
    assert response.json()["stdout"] == "0\nA\njob\n", response.text


def test_read_only_content_is_mounted_and_stays_read_only(client):
    """Then the run's content all goes through its volume: both paths are mounts."""
    command = f"{MOUNTED}; touch /data/new"
    result = client.post("/run", json=run_body("sh", "-c", command, volumes=content("/data:ro")))
    assert result.json()["stdout"] == "2\nA\njob\n", result.text
    assert "Read-only file system" in result.json()["stderr"]


def test_content_at_a_directory_the_image_has_is_a_mount_that_hides_it(client):
    volumes = {"/root": {"type": "directory", "content": b64(tar_gz({"mine": b"M"}))}}
    command = "grep -c ' /root ' /proc/self/mountinfo; ls /root"
    result = client.post("/run", json=run_body("sh", "-c", command, volumes=volumes)).json()
    assert result["stdout"] == "1\nmine\n", result


def test_a_writable_directory_for_another_user_is_writable_in_the_container(client):
    volumes = {"/work": {"type": "directory"}}
    command = "grep -c ' /work ' /proc/self/mountinfo; echo ok > /work/f && cat /work/f"
    body = run_body("sh", "-c", command, volumes=volumes, user="65534:65534")
    assert client.post("/run", json=body).json()["stdout"] == "0\nok\n"


@engine_fault
def test_a_run_with_writable_content_makes_only_its_container(app_client, docker_client, tmp_path):
    """Seen while the run's background removal is held at the engine: one object (a run volume
    would be a second, and its carrier's removal would hold the run itself)."""
    with removals_held(app_client, tmp_path / "engine.sock") as (client, instance):
        response = client.post("/run", json=run_body("cat", "/data/a.txt", volumes=content()))
        made = managed_objects(docker_client, instance)
    assert response.json()["stdout"] == "A\n", response.text
    assert made == [f"oneoff-{response.json()['run_id']}"]
    assert client.app.state.service.backend.containers.cleanup.idle(60)
    assert managed_objects(docker_client, instance) == []
