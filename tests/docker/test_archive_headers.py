"""A caller's archive whose PAX headers say what no file can have (a time of 1e400, a negative
size or owner, a name that is not UTF-8), through every door that takes content: a 4xx naming
the field and the header field, nothing left on the engine; an async run never answers 202
and then vanishes (JSON: refused before it starts; multipart: its record says why)."""

from __future__ import annotations

import pytest

from tests.docker.test_binary_path import form
from tests.helpers import Server, b64, managed_objects, run_body
from tests.unit.test_archive_headers import archive

ABSURD = {
    "mtime-1e400": ({"mtime": "1e400"}, "mtime"),
    "mtime-nan": ({"mtime": "nan"}, "mtime"),
    "size-negative": ({"size": "-5"}, "size"),
    "uid-negative": ({"uid": "-1"}, "uid"),
    "gid-past-32-bits": ({"gid": "4294967296"}, "gid"),
    "name-not-utf8": ({"path": "caf\udce9"}, "name"),
}
CASES = [pytest.param(pax, what, id=name) for name, (pax, what) in ABSURD.items()]
DIRECTORY = {"/app": {"type": "directory"}}


def with_content(pax: dict[str, str]) -> dict[str, object]:
    volumes = {"/app": {"type": "directory", "content": b64(archive(pax))}}
    return run_body("ls", "/app", volumes=volumes)


@pytest.mark.parametrize(("pax", "what"), CASES)
def test_in_json_content_it_is_422_naming_the_field(client, docker_client, pax, what):
    for path in ("/run", "/runs"):
        response = client.post(path, json=with_content(pax))
        assert response.status_code == 422, response.text
        assert response.json()["field"] == "volumes['/app'].content"
        assert f"its {what} " in response.json()["message"]
    instance = client.app.state.service.settings.instance_id
    assert managed_objects(docker_client, instance) == []


@pytest.mark.parametrize(("pax", "what"), CASES)
def test_in_a_multipart_part_it_is_422_naming_the_field(client, docker_client, pax, what):
    parts = {"/app": archive(pax, gz=False)}
    response = client.post("/run", files=form(run_body("ls", "/app", volumes=DIRECTORY), **parts))
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "volumes['/app']"
    assert f"its {what} " in response.json()["message"]
    instance = client.app.state.service.settings.instance_id
    assert managed_objects(docker_client, instance) == []


def test_an_async_multipart_run_that_gets_one_is_failed_with_the_reason(server: Server):
    body = run_body("ls", "/app", volumes=DIRECTORY)
    with server() as client:
        accepted = client.post("/runs", files=form(body, **{"/app": archive({"mtime": "1e400"})}))
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["run_id"]
        client.get(f"/runs/{run_id}/logs", timeout=60)  # the event stream ends with the run
        status = client.get(f"/runs/{run_id}")
    assert status.status_code == 200
    assert status.json()["state"] == "failed"
    assert "volumes['/app']: archive member 'a.txt': its mtime" in status.json()["error"]


def test_a_named_volume_s_content_is_422_naming_it(client):
    body = {"name": "oneoff-test-never-made", "content": b64(archive({"mtime": "1e400"}))}
    response = client.post("/volume", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["field"] == "content"
