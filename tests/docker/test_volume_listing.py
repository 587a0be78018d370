"""GET /volumes and DELETE /volume/{name}: a tenant sees and removes the volumes it created,
and nothing else on the engine, on the real engine."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import docker
import httpx
import pytest
from httpx_sse import connect_sse

from backends.labels import CREATED_BY, TENANT, VOLUME_API
from runner.tenancy import tenant_for
from tests.helpers import Server, run_body

A = {"Authorization": "Bearer tok-alice"}
B = {"Authorization": "Bearer tok-bob"}


@pytest.fixture
def tenants(server: Server) -> Iterator[httpx.Client]:
    with server(api_tokens=["alice:tok-alice", "tok-bob"]) as client:
        yield client


@pytest.fixture
def names(docker_client: docker.DockerClient) -> Iterator[list[str]]:
    """Unique volume names for the test; whatever is left of them is removed afterwards."""
    made = [f"oneoff-test-{uuid.uuid4().hex[:10]}" for _ in range(3)]
    yield made
    for name in made:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_volume(name, force=True)


def listed(client: httpx.Client, headers: dict[str, str]) -> list[str]:
    response = client.get("/volumes", headers=headers)
    assert response.status_code == 200, response.text
    return [volume["name"] for volume in response.json()]


def test_a_tenant_lists_its_own_volumes_with_its_labels(tenants, names):
    mine, other, _ = names
    body = {"name": mine, "labels": {"team": "ci"}}
    assert tenants.post("/volume", json=body, headers=A).status_code == 200
    assert tenants.post("/volume", json={"name": other}, headers=B).status_code == 200
    (volume,) = [item for item in tenants.get("/volumes", headers=A).json() if item["name"] == mine]
    assert volume["labels"] == {"team": "ci"} and volume["driver"] == "local"
    assert volume["created_at"]
    assert other not in listed(tenants, A)
    assert other in listed(tenants, B) and mine not in listed(tenants, B)


def test_a_volume_not_made_through_the_runner_is_never_listed_or_removable(
    tenants, names, docker_client
):
    """Not even one carrying a tenant's label: only POST /volume makes a volume a tenant's."""
    forged, _, _ = names
    docker_client.api.create_volume(forged, labels={TENANT: tenant_for("tok-alice").label})
    assert forged not in listed(tenants, A)
    removed = tenants.delete(f"/volume/{forged}", headers=A)
    assert removed.status_code == 404
    assert removed.json()["field"] == "name"
    assert docker_client.api.inspect_volume(forged)["Name"] == forged


def test_removing_answers_another_tenant_s_volume_as_one_that_never_existed(
    tenants, names, docker_client
):
    alices, never, _ = names
    assert tenants.post("/volume", json={"name": alices}, headers=A).status_code == 200
    theirs = tenants.delete(f"/volume/{alices}", headers=B)
    nobody = tenants.delete(f"/volume/{never}", headers=B)
    assert theirs.status_code == nobody.status_code == 404
    assert theirs.json()["message"].replace(alices, "x") == nobody.json()["message"].replace(
        never, "x"
    )
    assert docker_client.api.inspect_volume(alices)["Labels"][CREATED_BY] == VOLUME_API


def test_a_tenant_removes_its_volume_and_its_data(tenants, names, docker_client):
    name = names[0]
    assert tenants.post("/volume", json={"name": name}, headers=A).status_code == 200
    removed = tenants.delete(f"/volume/{name}", headers=A)
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"status": "removed", "name": name}
    assert name not in listed(tenants, A)
    with pytest.raises(docker.errors.NotFound):
        docker_client.api.inspect_volume(name)
    assert tenants.delete(f"/volume/{name}", headers=A).status_code == 404


def test_a_volume_in_use_by_a_running_container_is_a_409_saying_so(tenants, names, docker_client):
    name = names[0]
    assert tenants.post("/volume", json={"name": name}, headers=A).status_code == 200
    mount = {"/v": {"type": "volume", "name": name}}
    started = tenants.post(
        "/runs", json=run_body("sh", "-c", "echo up; sleep 120", volumes=mount), headers=A
    )
    run_id = started.json()["run_id"]
    try:
        with connect_sse(tenants, "GET", f"/runs/{run_id}/logs", headers=A, timeout=60) as source:
            assert next(e.data for e in source.iter_sse() if e.event == "stdout") == '"up\\n"'
        refused = tenants.delete(f"/volume/{name}", headers=A)
        assert refused.status_code == 409
        assert refused.json()["field"] == "name"
        assert "in use" in refused.json()["message"]
        assert "/var/lib/docker" not in refused.text
        assert name in listed(tenants, A)
    finally:
        tenants.delete(f"/runs/{run_id}", headers=A)
    assert tenants.delete(f"/volume/{name}", headers=A).status_code == 200


@pytest.mark.parametrize("bad", ["-starts-with-a-dash", "a" * 300, "sp ace"])
def test_a_name_that_cannot_be_a_volume_is_a_422(tenants, bad):
    response = tenants.delete(f"/volume/{bad}", headers=A)
    assert response.status_code == 422
    assert response.json()["field"] == "path.name"
