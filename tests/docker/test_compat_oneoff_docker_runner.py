"""Clients of oneoff-docker-runner keep working: the requests of its README and the payloads of
its tests (github.com/tumf/oneoff-docker-runner), replayed against this runner on the real engine.

The corpus is copied as it is, with one adaptation: images come from the local test registries
instead of Docker Hub (`alpine:latest` → the anonymous registry's busybox, so `pull_policy:
always` still pulls; credentialed examples → the private registry with its test user), and
placeholders (`<base64-of-tar-gz>`, `/absolute/path/to/...`) become real values. Where this
runner answers differently on purpose, the test asserts our answer; the README's "Coming from
oneoff-docker-runner" lists each difference and why.
"""

from __future__ import annotations

import base64
import copy
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import httpx
import pytest
from fastapi.testclient import TestClient

import mcp_app
from tests.helpers import (
    PRIVATE_IMAGE,
    PRIVATE_REGISTRY,
    PUBLIC_IMAGE,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    LocalClient,
    b64,
    serving,
    tar_gz,
    untar_gz,
)

pytestmark = pytest.mark.registry

# Their README's directory archive (one `data/` folder) and script (writes /app/data/test.txt).
DATA_DIR = (
    "H4sIAGq4eGYAA0tJLEnUZ6AtMDAwMDc1VQDTZhDawMgEQkOBgqGJmbGZobGJobGBgoGhkaGBGYOCKY3dBQalxSWJRUC"
    "nlJTmpuFTB1SWhk8B1B9wehSMglEwCgY5AADBaWLyAAYAAA=="
)
TEST_SH = "IyEvYmluL2FzaAoKZWNobyAiSGVsbG8sIFdvcmxkISIgPiAvYXBwL2RhdGEvdGVzdC50eHQ="
# Their README's /volume content: data/test1.txt and data/test2.txt.
VOLUME_CONTENT = (
    "H4sIAIQOfmYAA+2TMQ7DIAxFcxRO0Biw4TxIabYsjSPl+HUhStWFjdCqfgxeLPHh6U+J0zi0BQAikckzlAkOyzwwFoOP"
    "CBEoGLBOzmCoca7MtnJ6SBTelrm2J2tzbeF4xzl/hOnln+8r2xvv3OYO+Y+AWPNPb/8RxL+PVvxDmzif/Ln/rL53CKUb"
    "Z//dt/Tfl/6T9v8KsvreIRRFUZTLeQL28PKYAA4AAA=="
)
DOCKER_HUB_AUTH = {
    "username": "your-username",
    "password": "your-password",
    "email": "your-email@example.com",
    "serveraddress": "https://index.docker.io/v1/",
}

README_RUNS: dict[str, dict[str, Any]] = {
    "run-on-localhost": {
        "image": "alpine:latest",
        "command": ["/test.sh"],
        "volumes": {
            "/app/data": {"content": DATA_DIR, "response": True, "type": "directory"},
            "/test.sh:ro": {"mode": "0755", "content": TEST_SH, "type": "file"},
        },
    },
    "rest-api-usage": {
        "image": "alpine:latest",
        "command": ["echo", "Hello, World!"],
        "env_vars": {"MY_VAR": "value"},
        "auth_config": DOCKER_HUB_AUTH,
    },
    "request-example": {
        "image": "alpine:latest",
        "command": ["/bin/sh", "-c", "echo Hello > /mnt/out.txt && ls -l /mnt"],
        "entrypoint": None,
        "env_vars": {"MY_VAR": "value", "FLAG": True, "NUM": 123},
        "pull_policy": "always",
        "auth_config": DOCKER_HUB_AUTH,
        "volumes": {
            "/mnt/in:ro": {"type": "directory", "content": "<base64-of-tar-gz>", "response": False},
            "/mnt/out": {
                "type": "directory",
                "content": "<base64-of-empty-tar-gz>",
                "response": True,
            },
            "/mnt/script.sh:ro": {"type": "file", "mode": "0755", "content": "<base64-of-script>"},
        },
    },
    "quick-start-echo": {
        "image": "alpine:latest",
        "command": ["echo", "Hello from REST API!"],
        "pull_policy": "always",
    },
    "quick-start-env": {
        "image": "alpine:latest",
        "command": ["sh", "-c", 'echo "Env var: $TEST_VAR"'],
        "env_vars": {"TEST_VAR": "production"},
        "pull_policy": "always",
    },
    "their-test-run-container": {
        "image": "alpine:latest",
        "command": ["sh", "/app/test.sh"],
        "volumes": {
            "/app/test.sh:ro": {"type": "file", "content": TEST_SH},
            "/app/data": {"type": "directory", "content": DATA_DIR, "response": True},
        },
    },
}
EXPECTED_STDOUT = {
    "rest-api-usage": "Hello, World!\n",
    "quick-start-echo": "Hello from REST API!\n",
    "quick-start-env": "Env var: production\n",
}


def adapted(body: dict[str, Any]) -> dict[str, Any]:
    """The request as written, with the local registries' images and real placeholder values."""
    text = json.dumps(body)
    text = text.replace('"<base64-of-tar-gz>"', json.dumps(b64(tar_gz({"in.txt": b"in"}))))
    text = text.replace('"<base64-of-empty-tar-gz>"', json.dumps(b64(tar_gz({}))))
    text = text.replace('"<base64-of-script>"', json.dumps(b64(b"#!/bin/sh\necho script\n")))
    request = json.loads(text)
    if request.get("auth_config"):
        request["image"] = PRIVATE_IMAGE
        request["auth_config"].update(
            username=REGISTRY_USER, password=REGISTRY_PASSWORD, serveraddress=PRIVATE_REGISTRY
        )
    else:
        request["image"] = PUBLIC_IMAGE
    return request


@pytest.fixture(scope="module")
def compat(docker_client: docker.DockerClient, make_module_settings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    settings = make_module_settings(allowed_host_paths=["/tmp"])
    from api_app import create_app

    with LocalClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("name", README_RUNS)
def test_their_run_requests_succeed_with_the_fields_they_read(
    compat: TestClient, name: str
) -> None:
    response = compat.post("/run", json=adapted(README_RUNS[name]))
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["status"] == "success"
    assert isinstance(result["stderr"], str) and isinstance(result["execution_time"], float)
    if name in EXPECTED_STDOUT:
        assert result["stdout"] == EXPECTED_STDOUT[name]
    if "/app/data" in README_RUNS[name].get("volumes", {}):
        returned = result["volumes"]["/app/data"]
        assert returned["type"] == "directory"
        assert untar_gz(base64.b64decode(returned["content"]))["test.txt"] == b"Hello, World!\n"


def test_the_request_example_writes_and_returns_its_output_directory(compat: TestClient) -> None:
    result = compat.post("/run", json=adapted(README_RUNS["request-example"])).json()
    assert "out.txt" in result["stdout"] and "script.sh" in result["stdout"]
    assert list(result["volumes"]) == ["/mnt/out"]


def test_explicit_nulls_mean_not_given(compat: TestClient) -> None:
    body = adapted(
        {
            "image": "alpine:latest",
            "command": ["sh", "-c", "echo ${MY_VAR:-unset}; ls /out"],
            "entrypoint": None,
            "env_vars": None,
            "pull_policy": None,
            "auth_config": None,
            "volumes": {"/out": {"type": "directory", "content": None, "response": None}},
        }
    )
    response = compat.post("/run", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "unset\n"
    assert compat.post("/run", json={**body, "volumes": None}).status_code == 200


def test_a_required_field_given_as_null_is_still_refused_by_name(compat: TestClient) -> None:
    response = compat.post("/run", json={"image": None})
    assert response.status_code == 422
    assert response.json()["field"] == "image"


def test_host_binds_as_their_tests_send_them(compat: TestClient, tmp_path: Path) -> None:
    """Allowed only under the operator's RUNNER_ALLOWED_HOST_PATHS (here /tmp)."""
    (tmp_path / "host.txt").write_text("from host\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.txt").write_text("A\n")
    file_bind = {"/app/host.txt:ro": {"type": "host", "host_path": str(tmp_path / "host.txt")}}
    dir_bind = {"/app/data": {"type": "host", "host_path": str(tmp_path / "data")}}
    outputs = []
    for volumes, command in [
        (file_bind, "cat /app/host.txt || true"),
        (dir_bind, "ls -la /app/data || true"),
    ]:
        body = adapted({"image": "alpine:latest", "command": ["sh", "-c", command]})
        response = compat.post("/run", json={**body, "volumes": volumes})
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "success"
        outputs.append(response.json()["stdout"])
    assert outputs[0] == "from host\n"
    assert "a.txt" in outputs[1]


@pytest.mark.parametrize(
    "volume",
    [
        {"type": "host", "host_path": "relative/path.txt"},
        {"type": "host", "host_path": "/tmp/host.txt", "response": True},
    ],
    ids=["relative-host-path", "response-on-host"],
)
def test_what_they_refused_with_400_is_a_422_naming_the_field(
    compat: TestClient, volume: dict[str, Any]
) -> None:
    body = adapted({"image": "alpine:latest", "command": ["sh", "-c", "true"]})
    response = compat.post("/run", json={**body, "volumes": {"/app/host.txt": volume}})
    assert response.status_code == 422
    assert response.json()["field"].startswith("volumes")


def test_a_non_zero_exit_is_a_200_result_not_a_500(compat: TestClient) -> None:
    body = adapted({"image": "alpine:latest", "command": ["sh", "-c", "echo out; exit 3"]})
    response = compat.post("/run", json=body)
    assert response.status_code == 200
    assert (response.json()["status"], response.json()["exit_code"]) == ("error: 3", 3)


@pytest.fixture
def volume_name(docker_client: docker.DockerClient) -> Iterator[str]:
    name = f"oneoff-compat-{uuid.uuid4().hex[:8]}"  # their "my-volume", unique on a shared engine
    yield name
    for volume in docker_client.volumes.list(filters={"name": name}):
        volume.remove(force=True)


def test_their_volume_request_answers_200_with_status_and_detail(
    compat: TestClient, volume_name: str
) -> None:
    response = compat.post("/volume", json={"name": volume_name, "content": VOLUME_CONTENT})
    assert response.status_code == 200
    assert response.json()["status"] == "success" and response.json()["detail"]
    nulls = {"name": volume_name, "driver": None, "driver_opts": None, "labels": None}
    assert compat.post("/volume", json={**nulls, "reuse_existing": True}).status_code == 200
    mounted = {"/v:ro": {"type": "volume", "name": volume_name}}
    listing = compat.post(
        "/run",
        json={**adapted({"image": "alpine:latest", "command": ["ls", "/v"]}), "volumes": mounted},
    )
    assert listing.json()["stdout"].split() == ["test1.txt", "test2.txt"]


def test_their_health_check(compat: TestClient) -> None:
    response = compat.get("/health")
    assert (response.status_code, response.json()["status"]) == (200, "ok")


@pytest.fixture(scope="module")
def mcp_url(docker_client: docker.DockerClient, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    with serving(mcp_app.create_app(make_module_settings())) as port:
        yield f"http://127.0.0.1:{port}/mcp"


def rpc(url: str, body: dict[str, Any], accept: str = "application/json") -> httpx.Response:
    headers = {"Content-Type": "application/json", "Accept": accept}
    return httpx.post(url, json=body, headers=headers, timeout=60)


def test_their_mcp_requests(mcp_url: str) -> None:
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2024-11-05",
            "capabilities": {"tools": {}},
            "clientInfo": {"name": "test-client", "version": "1.0.0"},
        },
    }
    assert rpc(mcp_url, initialize).json()["result"]["protocolVersion"] == "2024-11-05"
    tools = rpc(mcp_url, {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}).json()
    listed = {tool["name"] for tool in tools["result"]["tools"]}
    assert {"run_container", "create_volume", "engine_info"} <= listed
    for number, name in enumerate(("docker_health", "list_containers", "list_images"), 10):
        # their names, no longer listed (engine_info took their place), still answer
        call = {"name": name, "arguments": {}}
        body = {"jsonrpc": "2.0", "id": number, "method": "tools/call", "params": call}
        answered = rpc(mcp_url, body).json()["result"]
        assert name not in listed and answered["isError"] is False, (name, answered)
        assert answered["structuredContent"], name
    arguments = adapted({"image": "alpine:latest", "command": ["echo", "Hello from MCP!"]})
    call = {"name": "run_container", "arguments": arguments}
    answer = rpc(mcp_url, {"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": call})
    assert answer.json()["result"]["structuredContent"]["stdout"] == "Hello from MCP!\n"


def test_their_sse_post_needs_both_types_in_accept(mcp_url: str) -> None:
    """Their "Test SSE" request accepts only text/event-stream; the MCP specification asks a
    client to accept both, and the SDK's transport answers 406 saying so."""
    health = {"jsonrpc": "2.0", "id": 4, "method": "tools/call"}
    health["params"] = {"name": "docker_health", "arguments": {}}  # type: ignore[assignment]
    refused = rpc(mcp_url, health, accept="text/event-stream")
    assert refused.status_code == 406
    assert "application/json and text/event-stream" in refused.text
    streamed = rpc(mcp_url, health, accept="application/json, text/event-stream")
    assert streamed.headers["content-type"].startswith("text/event-stream")
    assert '"isError":false' in streamed.text.replace(" ", "")


def test_their_n8n_style_accept_header(mcp_url: str) -> None:
    listed = rpc(
        mcp_url,
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        accept="application/json, text/event-stream",
    )
    assert listed.status_code == 200
    assert "run_container" in listed.text


def test_their_debug_commands_sse_get_and_a_post_without_accept(mcp_url: str) -> None:
    headers = {"Accept": "text/event-stream"}
    with httpx.stream("GET", mcp_url, headers=headers, timeout=10) as stream:
        assert stream.status_code == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
    bare = httpx.post(mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert bare.status_code == 200
    assert "run_container" in bare.text


def test_the_adaptation_changes_only_images_credentials_and_placeholders() -> None:
    original = copy.deepcopy(README_RUNS["request-example"])
    request = adapted(original)
    assert original == README_RUNS["request-example"]
    assert request["image"] == PRIVATE_IMAGE
    assert {key for key in request if request[key] != original[key]} == {
        "image",
        "auth_config",
        "volumes",
    }
