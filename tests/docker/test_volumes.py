"""Content in and out: file, directory, named volume and host volumes; `:ro`; /volume."""

from __future__ import annotations

import base64
import uuid

import pytest

from tests.helpers import b64, run_body, tar_gz, untar_gz


def run(client, *command: str, volumes: dict[str, object], **fields: object) -> dict:
    response = client.post("/run", json=run_body(*command, volumes=volumes, **fields))
    assert response.status_code == 200, response.text
    return response.json()


def test_file_volume_lands_with_its_mode(client):
    volumes = {"/opt/tool.sh": {"type": "file", "content": b64(b"echo tool"), "mode": "0750"}}
    result = run(client, "sh", "-c", "stat -c %a /opt/tool.sh; cat /opt/tool.sh", volumes=volumes)
    assert result["stdout"] == "750\necho tool"


def test_file_volume_default_mode_is_0644(client):
    volumes = {"/etc/app.conf": {"type": "file", "content": b64(b"x=1")}}
    assert run(client, "stat", "-c", "%a", "/etc/app.conf", volumes=volumes)["stdout"] == "644\n"


def test_directory_volume_unpacks_the_archive_at_the_path(client):
    archive = tar_gz({"sub": None, "sub/a.txt": b"alpha", "b.txt": b"beta"})
    volumes = {"/data": {"type": "directory", "content": b64(archive)}}
    result = run(client, "sh", "-c", "cat /data/sub/a.txt /data/b.txt", volumes=volumes)
    assert result["stdout"] == "alphabeta"


def test_empty_directory_volume_exists_and_is_writable(client):
    volumes = {"/work": {"type": "directory"}}
    assert run(client, "sh", "-c", "touch /work/x && echo ok", volumes=volumes)["stdout"] == "ok\n"


def test_read_only_file_refuses_writes(client):
    volumes = {"/conf.txt:ro": {"type": "file", "content": b64(b"keep")}}
    result = run(client, "sh", "-c", "echo changed > /conf.txt; cat /conf.txt", volumes=volumes)
    assert "Read-only file system" in result["stderr"]
    assert result["stdout"] == "keep"


def test_read_only_directory_refuses_writes(client):
    volumes = {"/in:ro": {"type": "directory", "content": b64(tar_gz({"a": b"1"}))}}
    result = run(client, "sh", "-c", "touch /in/new", volumes=volumes)
    assert result["exit_code"] != 0
    assert "Read-only file system" in result["stderr"]


def test_rw_suffix_is_writable(client):
    volumes = {"/out:rw": {"type": "directory"}}
    assert (
        run(client, "sh", "-c", "echo hi > /out/f && cat /out/f", volumes=volumes)["stdout"]
        == "hi\n"
    )


def test_response_file_returns_what_the_container_wrote(client):
    volumes = {"/state.txt": {"type": "file", "content": b64(b"before"), "response": True}}
    result = run(client, "sh", "-c", "echo after > /state.txt", volumes=volumes)
    returned = result["volumes"]["/state.txt"]
    assert returned["type"] == "file"
    assert base64.b64decode(returned["content"]) == b"after\n"


def test_response_directory_round_trips_as_directory_content(client):
    archive = tar_gz({"keep.txt": b"kept"})
    volumes = {"/w": {"type": "directory", "content": b64(archive), "response": True}}
    result = run(client, "sh", "-c", "mkdir /w/d && echo new > /w/d/new.txt", volumes=volumes)
    files = untar_gz(base64.b64decode(result["volumes"]["/w"]["content"]))
    assert files == {"keep.txt": b"kept", "d": None, "d/new.txt": b"new\n"}
    again = {"/w": {"type": "directory", "content": result["volumes"]["/w"]["content"]}}
    assert run(client, "cat", "/w/d/new.txt", volumes=again)["stdout"] == "new\n"


def test_only_response_paths_come_back(client):
    volumes = {
        "/a": {"type": "directory", "response": True},
        "/b": {"type": "directory"},
    }
    assert set(run(client, "true", volumes=volumes)["volumes"]) == {"/a"}


@pytest.fixture
def volume_name(docker_client):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    yield name
    for volume in docker_client.volumes.list(filters={"name": name}):
        volume.remove(force=True)


def test_create_volume_strips_the_single_top_folder(client, volume_name):
    archive = tar_gz({"target_dir": None, "target_dir/a.txt": b"A", "target_dir/s/b.txt": b"B"})
    response = client.post("/volume", json={"name": volume_name, "content": b64(archive)})
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "success"
    volumes = {"/mnt/v": {"type": "volume", "name": volume_name}}
    result = run(client, "sh", "-c", "cd /mnt/v && find . | sort", volumes=volumes)
    assert result["stdout"].split() == [".", "./a.txt", "./s", "./s/b.txt"]


def test_create_volume_without_a_top_folder_extracts_as_is(client, volume_name):
    archive = tar_gz({"a.txt": b"A", "b.txt": b"B"})
    assert (
        client.post("/volume", json={"name": volume_name, "content": b64(archive)}).status_code
        == 200
    )
    volumes = {"/mnt/v:ro": {"type": "volume", "name": volume_name}}
    assert run(client, "cat", "/mnt/v/a.txt", "/mnt/v/b.txt", volumes=volumes)["stdout"] == "AB"


def test_create_volume_twice_is_a_conflict_unless_reused(client, volume_name):
    assert client.post("/volume", json={"name": volume_name}).status_code == 200
    again = client.post("/volume", json={"name": volume_name})
    assert again.status_code == 409
    assert "reuse_existing" in again.json()["message"]
    archive = tar_gz({"x.txt": b"X"})
    reused = client.post(
        "/volume", json={"name": volume_name, "content": b64(archive), "reuse_existing": True}
    )
    assert reused.status_code == 200


def test_named_volume_persists_between_runs(client, volume_name):
    assert client.post("/volume", json={"name": volume_name}).status_code == 200
    volumes = {"/v": {"type": "volume", "name": volume_name}}
    run(client, "sh", "-c", "echo persisted > /v/f", volumes=volumes)
    assert run(client, "cat", "/v/f", volumes=volumes)["stdout"] == "persisted\n"


def test_missing_allowed_named_volume_is_404_not_silently_created(app_client, docker_client):
    name = f"oneoff-test-missing-{uuid.uuid4().hex[:8]}"
    client = app_client(allowed_volumes=["oneoff-test-missing-*"])
    body = run_body("true", volumes={"/v": {"type": "volume", "name": name}})
    response = client.post("/run", json=body)
    assert response.status_code == 404
    assert "POST /volume" in response.json()["message"]
    assert docker_client.volumes.list(filters={"name": name}) == []


def test_host_volume_binds_an_allowed_path(app_client, tmp_path):
    (tmp_path / "hello.txt").write_text("from host")
    client = app_client(allowed_host_paths=[str(tmp_path)])
    volumes = {"/h:ro": {"type": "host", "host_path": str(tmp_path)}}
    assert run(client, "cat", "/h/hello.txt", volumes=volumes)["stdout"] == "from host"


def test_host_volume_outside_the_allowed_prefixes_is_refused(app_client, tmp_path):
    client = app_client(allowed_host_paths=[str(tmp_path / "allowed")])
    body = run_body("true", volumes={"/h": {"type": "host", "host_path": str(tmp_path)}})
    response = client.post("/run", json=body)
    assert response.status_code == 403
    assert "RUNNER_ALLOWED_HOST_PATHS" in response.json()["message"]


def test_host_volumes_are_refused_by_default(client):
    body = run_body("true", volumes={"/h": {"type": "host", "host_path": "/etc"}})
    assert client.post("/run", json=body).status_code == 403


def test_a_non_root_user_can_write_its_response_directory(client):
    volumes = {"/out": {"type": "directory", "response": True}}
    result = run(client, "sh", "-c", "echo mine > /out/f", volumes=volumes, user="65534:65534")
    assert result["exit_code"] == 0, result["stderr"]
    assert untar_gz(base64.b64decode(result["volumes"]["/out"]["content"])) == {"f": b"mine\n"}


def test_returned_content_over_the_limit_is_413_and_leaves_nothing(app_client, docker_client):
    from tests.helpers import managed_objects

    client = app_client(max_response_bytes=64 * 1024)
    volumes = {"/out": {"type": "directory", "response": True}}
    body = run_body("sh", "-c", "head -c 1000000 /dev/urandom > /out/big", volumes=volumes)
    response = client.post("/run", json=body)
    assert response.status_code == 413
    assert "RUNNER_MAX_RESPONSE_BYTES" in response.json()["message"]
    assert managed_objects(docker_client, client.app.state.service.settings.instance_id) == []


def test_a_one_character_volume_name_is_422_naming_it_never_the_engine_s_500(client):
    """The engine needs two characters; the published pattern says so, and the runner too."""
    created = client.post("/volume", json={"name": "a"})
    mounted = client.post(
        "/run", json=run_body("true", volumes={"/v": {"type": "volume", "name": "a"}})
    )
    removed = client.delete("/volume/a")
    assert [created.status_code, mounted.status_code, removed.status_code] == [422, 422, 422]
    assert created.json()["field"] == "name"
    assert mounted.json()["field"] == "volumes['/v'].name"
    pattern = client.get("/openapi.json").json()["components"]["schemas"]["CreateVolumeRequest"]
    assert pattern["properties"]["name"]["pattern"].endswith("[A-Za-z0-9][A-Za-z0-9_.-]{1,254}$")
