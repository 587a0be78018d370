"""Every kind of bad input gets a 4xx whose message names the field and the fix."""

from __future__ import annotations

import pytest

from tests.helpers import LocalClient, b64, run_body, tar_gz


def refused(api, body, status=422):
    response = api.post("/run", json=body)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["message"]
    return error


def with_volumes(volumes):
    return run_body("true", volumes=volumes)


@pytest.mark.parametrize(
    ("volumes", "words"),
    [
        ({"relative/path": {"type": "directory"}}, "absolute"),
        ({"/data:xx": {"type": "directory"}}, ":ro or :rw"),
        ({"/": {"type": "directory"}}, "root"),
        ({"/a": {"type": "directory"}, "/a/:ro": {"type": "directory"}}, "same path"),
        ({"/f": {"type": "file"}}, "needs `content`"),
        ({"/v": {"type": "volume"}}, "needs `name`"),
        ({"/v": {"type": "volume", "name": "bad/name"}}, "name: not a volume name"),
        ({"/v": {"type": "volume", "name": "x"}}, "name: not a volume name"),
        ({"/h": {"type": "host"}}, "needs `host_path`"),
        ({"/h": {"type": "host", "host_path": "rel"}}, "absolute"),
        ({"/v": {"type": "volume", "name": "xy", "response": True}}, "file and directory"),
        ({"/f": {"type": "file", "content": "", "mode": "rwx"}}, "octal"),
        ({"/f": {"type": "nonsense"}}, "file"),
        ({"/f": {"type": "file", "content": "", "contnet": "x"}}, "contnet"),
    ],
)
def test_bad_volume_specs_are_422_naming_the_problem(api, volumes, words):
    error = refused(api, with_volumes(volumes))
    assert error["field"].startswith("volumes")
    assert words in error["message"]


def test_malformed_base64_names_the_volume(api):
    error = refused(api, with_volumes({"/f": {"type": "file", "content": "%%%not base64"}}))
    assert error["field"] == "volumes['/f'].content"
    assert "base64" in error["message"]


def test_corrupt_gzip_names_the_volume(api):
    error = refused(api, with_volumes({"/d": {"type": "directory", "content": b64(b"garbage")}}))
    assert error["field"] == "volumes['/d'].content"
    assert "tar.gz" in error["message"]


def test_tar_member_that_climbs_out_is_refused(api):
    import tarfile

    escape = tarfile.TarInfo("../../etc/cron.d/x")
    archive = tar_gz({}, extra=[escape])
    error = refused(api, with_volumes({"/d": {"type": "directory", "content": b64(archive)}}))
    assert "'..'" in error["message"]


def test_absolute_tar_member_is_refused(api):
    import tarfile

    archive = tar_gz({}, extra=[tarfile.TarInfo("/etc/passwd")])
    error = refused(api, with_volumes({"/d": {"type": "directory", "content": b64(archive)}}))
    assert "absolute" in error["message"]


@pytest.mark.parametrize(
    ("fields", "field", "setting"),
    [
        ({"timeout_seconds": 601}, "timeout_seconds", "RUNNER_MAX_TIMEOUT_SECONDS"),
        ({"memory": "2g"}, "memory", "RUNNER_MAX_MEMORY"),
        ({"cpus": 3}, "cpus", "RUNNER_MAX_CPUS"),
    ],
)
def test_limits_above_the_operator_maximum_are_403(api, fields, field, setting):
    """The operator's policy refuses them: the request itself is well formed."""
    error = refused(api, run_body("true", **fields), status=403)
    assert error["field"] == field
    assert setting in error["message"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"timeout_seconds": 0}, "timeout_seconds"),
        ({"memory": "lots"}, "memory"),
        ({"cpus": -1}, "cpus"),
        ({"image": ""}, "image"),
        ({"pull_policy": "sometimes"}, "pull_policy"),
        ({"working_dir": "tmp"}, "working_dir"),
        ({"env_vars": {"A=B": "x"}}, "env_vars"),
        ({"env_vars": {"A": 1.5}}, "env_vars.A"),
        ({"command": "echo 'unbalanced"}, "command"),
        ({"auth_config": {"username": "u"}}, "auth_config.password"),
        ({"imagee": "typo"}, "imagee"),
    ],
)
def test_malformed_fields_are_422_naming_the_field(api, fields, field):
    error = refused(api, run_body("true", **fields))
    assert error["field"].startswith(field), error


@pytest.mark.parametrize(
    ("path", "body", "field", "words"),
    [
        ("/run", run_body("true", memory="1x"), "memory", "write a number and a unit, e.g. 256m"),
        ("/runs/nosuchid", None, "run_id", "a run id is 16 hex digits"),
    ],
)
def test_a_malformed_value_is_said_in_words_not_as_a_regex(api, path, body, field, words):
    response = api.post(path, json=body) if body else api.get(path)
    assert response.status_code == 422, response.text
    error = response.json()
    assert error["field"].endswith(field) and words in error["message"], error
    assert "^" not in response.text and "\\d" not in response.text


def test_missing_image_is_422(api):
    assert refused(api, {"command": ["true"]})["field"] == "image"


def test_invalid_json_is_422(api):
    response = api.post("/run", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_network_outside_the_allowed_list_is_403(api):
    error = refused(api, run_body("true", network="my-net"), status=403)
    assert error["field"] == "network"
    assert "RUNNER_ALLOWED_NETWORKS" in error["message"]


def test_passwords_in_refused_requests_are_not_echoed(api):
    body = run_body("true", auth_config={"username": "u", "password": "hunter2", "x": 1})
    response = api.post("/run", json=body)
    assert response.status_code == 422
    assert "hunter2" not in response.text


def test_volume_request_with_bad_name_is_422(api):
    response = api.post("/volume", json={"name": "../etc"})
    assert response.status_code == 422
    assert response.json()["field"] == "name"


def test_volume_content_must_be_a_tar_gz(api):
    response = api.post("/volume", json={"name": "ok", "content": b64(b"plain text")})
    assert response.status_code == 422
    assert response.json()["field"] == "content"


def test_oversized_content_is_413(make_settings, fake):

    from api_app import create_app

    settings = make_settings(max_archive_bytes=2048)
    with LocalClient(create_app(settings, backend=fake)) as api:
        body = with_volumes({"/f": {"type": "file", "content": b64(b"x" * 10_000)}})
        response = api.post("/run", json=body)
    assert response.status_code == 413
    assert response.json()["field"] == "volumes['/f'].content"


def test_request_body_over_the_limit_is_413(make_settings, fake):

    from api_app import create_app

    with LocalClient(create_app(make_settings(max_request_bytes=4096), backend=fake)) as api:
        body = with_volumes({"/f": {"type": "file", "content": b64(b"x" * 8000)}})
        response = api.post("/run", json=body)
    assert response.status_code == 413
    assert fake.specs == []
