"""No SSRF through image references, through the REST doors and the real engine: a registry on
a loopback, link-local or private address (literal, or a name for one) is refused before the
engine is asked anything, unless the operator lists it; and a registry's answer never reaches
the caller, only the kind of failure. (MCP's doors: tests/mcp/test_registries.py.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import docker
import pytest
from fastapi.testclient import TestClient

from tests.helpers import PUBLIC_IMAGE, TEST_IMAGE, until
from tests.registries import CREDENTIALS, MARKER, NOT_PUBLIC, FakeRegistry


@pytest.fixture
def target(fake_registry: Callable[..., FakeRegistry]) -> FakeRegistry:
    """A service on the host's loopback that answers as a registry would: it must never be
    contacted."""
    return fake_registry(status=200, body=b"{}")


def refused(response, registry: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == 403, response.text
    body = response.json()
    assert body["field"] == "image"
    assert "RUNNER_ALLOWED_REGISTRIES" in body["message"]
    assert registry in body["message"]


@pytest.mark.parametrize("registry", NOT_PUBLIC)
def test_a_registry_that_is_not_public_is_refused_at_every_rest_door(
    client: TestClient, target: FakeRegistry, registry: str, docker_client: docker.DockerClient
) -> None:
    domain = registry.format(port=target.port)
    image = f"{domain}/oneoff-test/x:1"
    run = {"image": image, "command": ["true"]}
    refused(client.post("/run", json=run), domain)
    refused(client.post("/run", json={**run, "pull_policy": "missing"}), domain)
    refused(
        client.post("/run", json={**run, "pull_policy": "never", "auth_config": CREDENTIALS}),
        domain,
    )
    refused(client.post("/runs", json=run), domain)
    refused(client.post("/images/pull", json={"image": image}), domain)
    refused(client.post("/images/pull", json={"image": image, "auth_config": CREDENTIALS}), domain)
    assert target.contacts == 0
    assert docker_client.images.list(name=image.rsplit(":", 1)[0]) == []


def test_a_listed_registry_is_contacted_and_only_on_the_listed_port(
    app_client,  # type: ignore[no-untyped-def]
    fake_registry: Callable[..., FakeRegistry],
) -> None:
    listed, other = fake_registry(status=200, body=b"{}"), fake_registry(status=200, body=b"{}")
    client = app_client(allowed_registries=[f"127.0.0.1:{listed.port}"])
    response = client.post("/images/pull", json={"image": f"127.0.0.1:{listed.port}/x/y:1"})
    assert response.status_code == 502, response.text  # it answers no manifest the engine can use
    assert listed.contacts > 0
    refused(
        client.post("/images/pull", json={"image": f"127.0.0.1:{other.port}/x/y:1"}), "127.0.0.1"
    )
    assert other.contacts == 0


def test_by_default_even_the_suite_s_own_registry_is_refused(app_client) -> None:  # type: ignore[no-untyped-def]
    client = app_client(allowed_registries=[])
    response = client.post("/run", json={"image": PUBLIC_IMAGE, "command": ["true"]})
    refused(response, PUBLIC_IMAGE.split("/")[0])


@pytest.fixture
def local_only_image(docker_client: docker.DockerClient) -> Iterator[str]:
    """The test image under a loopback registry's name, on the engine only."""
    repository = f"localhost:1/oneoff-test/local-{uuid.uuid4().hex[:8]}"
    docker_client.images.get(TEST_IMAGE).tag(repository, "t")
    yield f"{repository}:t"
    docker_client.images.remove(f"{repository}:t")


def test_a_local_image_runs_with_pull_policy_never_whatever_its_registry(
    app_client,  # type: ignore[no-untyped-def]
    local_only_image: str,
) -> None:
    """`never` contacts no registry: nothing to refuse. Any other policy may contact it."""
    client = app_client(allowed_registries=[])
    body = {"image": local_only_image, "pull_policy": "never", "command": ["echo", "local"]}
    response = client.post("/run", json=body)
    assert response.status_code == 200, response.text
    assert response.json()["stdout"] == "local\n"
    refused(client.post("/run", json={**body, "pull_policy": "missing"}), "localhost:1")


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (404, MARKER.encode(), "text/plain"),
        (
            404,
            b'{"errors": [{"code": "MANIFEST_UNKNOWN", "message": "' + MARKER.encode() + b'"}]}',
            "application/json",
        ),
        (500, MARKER.encode(), "text/plain"),
        (403, MARKER.encode(), "text/plain"),
        (429, MARKER.encode(), "text/plain"),
        (
            401,
            b'{"errors": [{"code": "UNAUTHORIZED", "message": "' + MARKER.encode() + b'"}]}',
            "application/json",
        ),
    ],
)
def test_a_registry_s_answer_never_reaches_the_caller(
    app_client,  # type: ignore[no-untyped-def]
    instance: str,
    fake_registry: Callable[..., FakeRegistry],
    status: int,
    body: bytes,
    content_type: str,
) -> None:
    registry = fake_registry(status=status, body=body, content_type=content_type)
    address = f"127.0.0.1:{registry.port}"
    client = app_client(instance_id=instance, allowed_registries=[address])  # keeps run records
    image = f"{address}/oneoff-test/x:1"
    answers = [
        client.post("/images/pull", json={"image": image}),
        client.post("/images/pull", json={"image": image, "auth_config": CREDENTIALS}),
        client.post("/run", json={"image": image, "command": ["true"]}),
    ]
    for answer in answers:
        assert answer.status_code in (401, 404, 502), answer.text
        assert MARKER not in answer.text
        assert "HTTP" not in answer.json()["message"]
    started = client.post("/runs", json={"image": image, "command": ["true"]})
    assert started.status_code == 202, started.text
    path = f"/runs/{started.json()['run_id']}"
    until(lambda: client.get(path).json()["state"] == "failed", 60)
    assert MARKER not in client.get(path).text
    assert registry.contacts > 0


def test_a_registry_s_failure_is_named_by_its_kind(app_client, fake_registry) -> None:  # type: ignore[no-untyped-def]
    kinds = {404: 404, 401: 401, 429: 502, 500: 502}
    for status, expected in kinds.items():
        registry = fake_registry(status=status, body=MARKER.encode())
        address = f"127.0.0.1:{registry.port}"
        client = app_client(allowed_registries=[address])
        response = client.post("/images/pull", json={"image": f"{address}/oneoff-test/x:1"})
        assert response.status_code == expected, (status, response.text)
