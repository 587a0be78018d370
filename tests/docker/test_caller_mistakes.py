"""Caller mistakes the engine would refuse are 4xx naming the field and the fix, never a 500,
and no answer carries a host path of the engine."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
from fastapi.testclient import TestClient

from tests.helpers import SUITE_ID, b64, run_body

HOST_WORDS = ("/var/lib/docker", "overlay2", "/_data", "/proc/self", "/run/containerd")


def refused(client: TestClient, body: dict[str, object], field: str, words: str) -> str:
    response = client.post("/run", json=body)
    assert 400 <= response.status_code < 500, response.text
    error = response.json()
    assert error["field"].startswith(field), error
    assert words in error["message"], error
    assert not any(word in response.text for word in HOST_WORDS), response.text
    return str(error["message"])


@pytest.fixture(scope="module")
def image_without_cmd(docker_client: docker.DockerClient) -> Iterator[str]:
    """An image with no CMD and no ENTRYPOINT (imported from an empty tar), this suite's own."""
    name = f"oneoff-test/no-cmd:{SUITE_ID}"
    docker_client.api.import_image_from_data(
        b"\0" * 1024, repository=name.split(":")[0], tag=SUITE_ID
    )
    yield name
    docker_client.images.remove(name, force=True)


def test_memory_below_the_engines_minimum(client: TestClient) -> None:
    refused(client, run_body("true", memory="5m"), "memory", "6m")


def test_an_empty_command(client: TestClient) -> None:
    refused(client, run_body(command=[]), "command", "leave `command` out")


def test_an_image_without_cmd_and_no_command(client: TestClient, image_without_cmd: str) -> None:
    refused(client, {"image": image_without_cmd, "pull_policy": "never"}, "command", "give")


@pytest.mark.parametrize("pull_policy", ["never", "always"])
def test_an_image_reference_over_255_characters(client: TestClient, pull_policy: str) -> None:
    body = {"image": "a" * 300 + ":1", "pull_policy": pull_policy, "command": ["true"]}
    refused(client, body, "image", "255")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"env_vars": {"A": "x\0y"}}, "env_vars"),
        ({"env_vars": {"A\0": "x"}}, "env_vars"),
        ({"working_dir": "/a\0b"}, "working_dir"),
        ({"user": "ro\0ot"}, "user"),
        ({"command": ["echo", "a\0b"]}, "command"),
        ({"entrypoint": "sh\0"}, "entrypoint"),
        ({"network": "bri\0dge"}, "network"),
        ({"volumes": {"/a\0b": {"type": "directory"}}}, "volumes"),
    ],
)
def test_nul_bytes_in_a_string_that_reaches_the_engine(
    client: TestClient, fields: dict[str, object], field: str
) -> None:
    refused(client, run_body("true", **fields), field, "NUL")


def test_a_working_dir_that_is_a_file(client: TestClient) -> None:
    refused(client, run_body("true", working_dir="/bin/sh"), "working_dir", "directory")


def test_a_working_dir_too_long_for_the_kernel(client: TestClient) -> None:
    refused(client, run_body("true", working_dir="/" + "a" * 5000), "working_dir", "too long")


@pytest.mark.parametrize("user", ["99999999999", "-1"])
def test_a_user_out_of_range(client: TestClient, user: str) -> None:
    refused(client, run_body("true", user=user), "user", "2147483647")


def test_a_file_mounted_over_a_directory_names_no_engine_path(client: TestClient) -> None:
    body = run_body("true", volumes={"/etc": {"type": "file", "content": b64(b"x")}})
    message = refused(client, body, "volumes", "container path")
    assert '"/etc"' in message


def test_a_directory_mounted_over_a_device_of_the_runtime(client: TestClient) -> None:
    refused(
        client,
        run_body("true", volumes={"/dev/null": {"type": "directory"}}),
        "volumes",
        "/dev/null",
    )


def test_a_runtime_allowed_but_missing_from_the_engine(app_client) -> None:  # type: ignore[no-untyped-def]
    client = app_client(allowed_runtimes=["no-such-runtime"])
    refused(client, run_body("true", runtime="no-such-runtime"), "runtime", "operator")


def test_nul_bytes_in_volume_labels(client: TestClient) -> None:
    response = client.post("/volume", json={"name": "nul-label", "labels": {"a": "b\0"}})
    assert response.status_code == 422
    assert response.json()["field"] == "labels"
