"""Two API tokens are two tenants: neither can see, read, cancel or reuse the other's runs,
output, idempotency keys, volumes or containers; for each, the other's things do not exist."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import docker
import httpx
import pytest
from httpx_sse import connect_sse

from backends.labels import INSTANCE, POOL_ROLE, ROLE, RUN_ID, RUN_ROLE, TENANT
from runner.tenancy import tenant_for
from tests.docker.watching import warm_run_began
from tests.helpers import TEST_IMAGE, Server, run_body, run_containers

A = {"Authorization": "Bearer tok-alice"}
B = {"Authorization": "Bearer tok-bob"}
NOBODY = "0123456789abcdef"
KEY = f"k-{uuid.uuid4().hex}"
"""Alice's idempotency key: the tokens are the same in every copy of the suite (so the tenants
are too), the key is this copy's own."""


@pytest.fixture
def tenants(server: Server) -> Iterator[httpx.Client]:
    """A runner with two tokens: alice's (named) and bob's (unnamed)."""
    with server(api_tokens=["alice:tok-alice", "tok-bob"]) as client:
        yield client


@pytest.fixture
def alice_run(tenants: httpx.Client) -> Iterator[str]:
    """Alice's async run, running (its first line printed) until cancelled, started with
    idempotency key `KEY`."""
    headers = {**A, "Idempotency-Key": KEY}
    body = run_body("sh", "-c", "echo up; exec sleep 120")
    started = tenants.post("/runs", json=body, headers=headers)
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    logs = f"/runs/{run_id}/logs"
    with connect_sse(tenants, "GET", logs, headers=A, timeout=60) as source:
        assert next(e.data for e in source.iter_sse() if e.event == "stdout") == '"up\\n"'
    yield run_id
    tenants.delete(f"/runs/{run_id}", headers=A)


def _not_found(response, run_id: str) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 404, response.text
    return str(response.json()["message"]).replace(run_id, "<id>")


def test_another_tenant_s_run_answers_exactly_as_a_run_that_never_existed(tenants, alice_run):
    for method, path in [("GET", ""), ("GET", "/logs?follow=false"), ("DELETE", "")]:
        theirs = tenants.request(method, f"/runs/{alice_run}{path}", headers=B)
        nobody = tenants.request(method, f"/runs/{NOBODY}{path}", headers=B)
        assert _not_found(theirs, alice_run) == _not_found(nobody, NOBODY)
    assert alice_run not in [
        run["run_id"] for run in tenants.get("/runs", headers=B).json()["runs"]
    ]
    assert tenants.get(f"/runs/{alice_run}", headers=A).json()["state"] in ("pulling", "running")
    assert alice_run in [run["run_id"] for run in tenants.get("/runs", headers=A).json()["runs"]]


def test_an_idempotency_key_belongs_to_its_tenant(tenants, alice_run):
    again = tenants.post("/runs", json=run_body("true"), headers={**A, "Idempotency-Key": KEY})
    assert again.json()["run_id"] == alice_run
    bobs = tenants.post("/runs", json=run_body("true"), headers={**B, "Idempotency-Key": KEY})
    assert bobs.status_code == 202
    assert bobs.json()["run_id"] != alice_run
    tenants.delete(f"/runs/{bobs.json()['run_id']}", headers=B)


def test_containers_are_listed_to_their_tenant_only(tenants, alice_run, docker_client):
    def listed(headers: dict[str, str]) -> list[str | None]:
        return [
            item["run_id"] for item in tenants.get("/containers?all=true", headers=headers).json()
        ]

    assert alice_run in listed(A)
    assert alice_run not in listed(B)
    everything = tenants.get("/containers?managed_only=false", headers=B)
    assert everything.status_code == 403
    assert everything.json()["field"] == "managed_only"


def test_the_tenant_is_kept_as_a_keyed_hash_never_the_token(tenants, alice_run, docker_client):
    (container,) = run_containers(docker_client, alice_run)
    labels = container["Labels"]
    if labels.get(ROLE) == POOL_ROLE:  # a warm container: its claim carries the run's labels
        labels = docker_client.api.inspect_volume(f"oneoff-{alice_run}-claim")["Labels"]
    assert labels[TENANT] == tenant_for("tok-alice").label
    assert "tok-alice" not in str(labels)


def test_another_tenant_s_volume_cannot_be_mounted_or_refilled(tenants, docker_client):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    try:
        assert tenants.post("/volume", json={"name": name}, headers=A).status_code == 200
        mount = run_body("true", volumes={"/v": {"type": "volume", "name": name}})
        refused = tenants.post("/run", json=mount, headers=B)
        assert refused.status_code == 403
        assert "RUNNER_ALLOWED_VOLUMES" in refused.json()["message"]
        refill = {"name": name, "reuse_existing": True}
        assert tenants.post("/volume", json=refill, headers=B).status_code == 409
        assert tenants.post("/run", json=mount, headers=A).status_code == 200
        assert tenants.post("/volume", json=refill, headers=A).status_code == 200
    finally:
        for volume in docker_client.volumes.list(filters={"name": name}):
            volume.remove(force=True)


def test_a_cancel_by_another_tenant_leaves_the_run_running(tenants, alice_run, docker_client):
    assert tenants.delete(f"/runs/{alice_run}", headers=B).status_code == 404
    (container,) = run_containers(docker_client, alice_run, all_states=False)
    assert container["State"] == "running"


def test_a_sync_run_is_logged_for_its_named_tenant_and_counted_without_names(tenants, caplog):
    caplog.set_level(logging.INFO, logger="oneoff_runner")
    assert tenants.post("/run", json=run_body("true"), headers=A).status_code == 200
    metrics = tenants.get("/metrics", headers=B).text
    assert 'oneoff_runner_runs_total{outcome="success"} 1.0' in metrics
    assert "alice" not in metrics  # names only with RUNNER_METRICS_TENANTS, for operators
    assert "tenant=alice" in caplog.text
    assert "tok-alice" not in caplog.text


def test_a_sync_run_is_listed_to_its_tenant_only(tenants, docker_client, instance):
    def listed(headers: dict[str, str]) -> list[str | None]:
        return [item["run_id"] for item in tenants.get("/containers", headers=headers).json()]

    began = {"type": "container", "event": ["start", "rename"], "label": f"{INSTANCE}={instance}"}
    events = docker_client.events(decode=True, filters=began)
    answers: list[dict[str, object]] = []
    body = run_body("sleep", "60")
    worker = threading.Thread(
        target=lambda: answers.append(tenants.post("/run", json=body, headers=A).json())
    )
    worker.start()
    try:
        event = next(item for item in events if _run_began(item))
    finally:
        events.close()
    run_id = _run_of(event)
    assert run_id in listed(A)
    assert run_id not in listed(B)
    docker_client.containers.get(event["Actor"]["ID"]).kill()
    worker.join(60)
    assert answers[0]["exit_code"] == 137


def _run_began(event: dict[str, Any]) -> bool:
    role = event["Actor"]["Attributes"].get(ROLE)
    return (event["Action"], role) == ("start", RUN_ROLE) or warm_run_began(event)


def _run_of(event: dict[str, Any]) -> str:
    """The run whose container started, or (RUNNER_WARM_POOL) took a warm container: renamed
    `oneoff-<run>`, as a cold run's is named."""
    attributes = event["Actor"]["Attributes"]
    if warm_run_began(event):
        return str(attributes["name"]).removeprefix("oneoff-")
    return str(attributes[RUN_ID])


def test_a_wrong_token_is_401(tenants):
    assert tenants.get("/runs", headers={"Authorization": "Bearer tok-eve"}).status_code == 401


def test_no_engine_object_carries_a_token(
    docker_client: docker.DockerClient, tenants, alice_run, instance
):
    tenants.post("/run", json=run_body("true"), headers=B)
    tenants.post(f"/runs/{alice_run}/cancel", headers=A)  # leaves a record
    label = {"label": f"{INSTANCE}={instance}"}
    kept = [item.labels for item in docker_client.containers.list(all=True, filters=label)]
    kept += [item.attrs["Labels"] for item in docker_client.volumes.list(filters=label)]
    assert kept
    assert all("tok-" not in str(labels) for labels in kept)


def test_what_belongs_to_no_tenant_is_listed_to_operators_only(server, docker_client):
    """On the real engine: a container and an image tag of nobody's (the test's own) are in an
    operator's listings; a tenant may not list every container, and sees only the images and
    tags it may run (RUNNER_ALLOWED_IMAGES)."""
    hidden = f"oneoff-test/hidden-{uuid.uuid4().hex[:8]}:latest"
    docker_client.images.get(TEST_IMAGE).tag(hidden)
    stranger = docker_client.containers.create(TEST_IMAGE, labels={"oneoff-test": "stranger"})
    operator = {"Authorization": "Bearer tok-ops"}
    try:
        with server(
            api_tokens=["tok-bob"], operator_tokens=["ops:tok-ops"], allowed_images=[TEST_IMAGE]
        ) as client:
            every = client.get("/containers?managed_only=false&all=true", headers=operator)
            refused = client.get("/containers?managed_only=false&all=true", headers=B)
            tenant_images = client.get("/images", headers=B).json()
            hidden_by_name = client.get("/images", params={"reference": hidden}, headers=B)
            operator_images = client.get("/images", headers=operator).json()
    finally:
        stranger.remove(force=True)
        docker_client.images.remove(hidden)
    assert stranger.short_id in [item["id"] for item in every.json()]
    assert refused.status_code == 403
    assert refused.json()["field"] == "managed_only"
    assert "RUNNER_OPERATOR_TOKENS" in refused.json()["message"]
    assert [image["tags"] for image in tenant_images] == [[TEST_IMAGE]]
    assert hidden_by_name.json() == []
    assert any(hidden in image["tags"] for image in operator_images)
