"""Async runs (POST /runs) on the Kubernetes backend: state in the Job and its pod, so a new
runner answers for a run; cancel; a pod that cannot start; idempotency."""

from __future__ import annotations

import dataclasses
import uuid

import pytest
from fastapi.testclient import TestClient
from mcp import Client

from api_app import create_app
from backends.kubernetes.inventory import PERMISSIONS, WARM_ONLY
from backends.labels import DELIVERED, EVICTABLE
from mcp_app import create_app as create_mcp_app
from runner.settings import Settings
from runner.spec import RunRecord
from runner.tenancy import LOCAL, tenant_for
from tests.helpers import LocalClient, serving
from tests.kubernetes import fake_scripts as scripts
from tests.kubernetes.fake_api import FakeKubernetes
from tests.kubernetes.follow import follow

BODY = {"image": "busybox:1.36", "command": ["sh", "-c", "echo hi"]}


def test_an_async_run_is_followed_and_collected(api: TestClient, fake: FakeKubernetes) -> None:
    fake.script = lambda job: scripts.succeeds(b"line 1\nline 2\n")
    accepted = api.post("/runs", json=BODY)
    assert accepted.status_code == 202
    run_id = accepted.json()["run_id"]
    output, final = follow(api, run_id)
    assert output == "line 1\nline 2\n"
    assert final["state"] == "succeeded"
    assert final["result"]["stdout"] == "line 1\nline 2\n"
    assert final["result"]["streams_merged"] is True
    job = next(item for item in fake.received if item["kind"] == "Job")
    assert job["metadata"]["labels"]["oneoff-runner.role"] == "async-run"
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600  # the result's TTL
    api.delete(f"/runs/{run_id}")  # finished: left as it is
    fake.delete("jobs", "runs", f"oneoff-{run_id}")  # as its TTL would


def test_a_new_runner_answers_for_a_run_another_started(
    api: TestClient, fake: FakeKubernetes, kube_settings: Settings
) -> None:
    fake.script = lambda job: scripts.fails(2, b"broken\n")
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    follow(api, run_id)
    other = kube_settings.model_copy(update={"instance_id": "another-replica"})
    with LocalClient(create_app(other)) as second:
        status = second.get(f"/runs/{run_id}").json()
        listed = second.get("/runs").json()["runs"]
    assert (status["state"], status["result"]["exit_code"]) == ("failed", 2)
    assert [run["run_id"] for run in listed] == [run_id]
    fake.delete("jobs", "runs", f"oneoff-{run_id}")


def test_cancel_deletes_the_job_and_leaves_a_record(api: TestClient, fake: FakeKubernetes) -> None:
    fake.script = lambda job: scripts.runs_until_deleted(b"working\n")
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    with api.stream("GET", f"/runs/{run_id}/logs") as stream:
        next(line for line in stream.iter_lines() if "working" in line)
    cancelled = api.post(f"/runs/{run_id}/cancel").json()
    assert cancelled["state"] == "cancelled"
    assert fake.named("jobs") == fake.named("pods") == []
    assert api.get(f"/runs/{run_id}").json()["state"] == "cancelled"
    assert fake.run_configmaps() == [f"oneoff-{run_id}-record"]
    assert fake.named("secrets") == []
    fake.delete("configmaps", "runs", f"oneoff-{run_id}-record")


def test_a_run_recorded_twice_keeps_its_first_end(api: TestClient, fake: FakeKubernetes) -> None:
    """Two runners may end the same run (a cancel and its launch, two reapers): the first end
    kept counts, and the second is no error."""
    backend = api.app.state.service.backend  # type: ignore[attr-defined]
    first = RunRecord(run_id=uuid.uuid4().hex[:16], state="cancelled", image="x", created_at=1.0)
    backend.record_run(first)
    backend.record_run(dataclasses.replace(first, state="failed", error="a later end"))
    (kept,) = backend.find_runs(tenant=None, run_id=first.run_id, idempotency_key=None)
    assert (kept.state, kept.error) == ("cancelled", None)
    fake.delete("configmaps", "runs", f"oneoff-{first.run_id}-record")


def test_a_pod_that_cannot_pull_ends_the_run_failed(api: TestClient, fake: FakeKubernetes) -> None:
    fake.script = lambda job: scripts.cannot_pull("ImagePullBackOff", "not found")
    run_id = api.post("/runs", json={**BODY, "image": "busybox:nope"}).json()["run_id"]
    _, final = follow(api, run_id)
    assert final["state"] == "failed"
    assert "busybox:nope" in final["error"]
    assert fake.named("jobs") == []
    fake.delete("configmaps", "runs", f"oneoff-{run_id}-record")


def test_an_idempotency_key_finds_the_job(api: TestClient, fake: FakeKubernetes) -> None:
    key = {"Idempotency-Key": "deploy-7"}
    first = api.post("/runs", json=BODY, headers=key).json()["run_id"]
    follow(api, first)
    again = api.post("/runs", json=BODY, headers=key).json()["run_id"]
    assert again == first
    fake.delete("jobs", "runs", f"oneoff-{first}")


def test_the_backend_calls_exactly_what_the_chart_s_role_grants(
    configured, fake: FakeKubernetes
) -> None:
    """Every kind of call, on one fake: plain and async runs with content, credentials and a
    response path, a cancel, a claim, reaping, owned by a ConfigMap as the chart sets it; the
    calls made are the PERMISSIONS, no more."""
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "runner-runs"}}
    fake.create("configmaps", "runs", owner)
    api = configured(kube_owner="runner-runs")
    # a pod slow to start: its end is seen by a watch, not by the first list
    fake.script = lambda job: scripts.Script(
        [scripts.running(), scripts.finished(0)], {"run": b"ok\n"}, start_delay=0.5
    )
    body = {
        **BODY,
        "image": "registry.example/app:1",
        "auth_config": {"username": "u", "password": "p"},
        "volumes": {
            "/in.txt": {"type": "file", "content": "aGk="},
            "/out": {"type": "directory", "response": True},
        },
    }
    assert api.post("/run", json=body).status_code == 200
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    follow(api, run_id)
    fake.script = lambda job: scripts.runs_until_deleted()
    held = api.post("/runs", json=BODY).json()["run_id"]
    api.delete(f"/runs/{held}")
    api.app.state.service.backend.mark_delivered(held, LOCAL.label)  # type: ignore[attr-defined]
    fake.script = lambda job: scripts.succeeds()
    api.post("/volume", json={"name": "cache"})
    api.post("/run", json={**BODY, "volumes": {"/c": {"type": "volume", "name": "cache"}}})
    fake.refuse = lambda pod: 'admission webhook "policy.example.com" denied the request'
    assert api.post("/run", json=BODY).status_code == 403
    assert [volume["name"] for volume in api.get("/volumes").json()] == ["cache"]
    assert api.delete("/volume/cache").status_code == 200
    expired = {
        "oneoff-runner.managed": "true",
        "oneoff-runner.role": "run-record",
        "oneoff-runner.deadline": "1",
    }
    fake.create(
        "configmaps",
        "runs",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "old-record", "labels": expired},
        },
    )
    api.app.state.service.backend.reap_orphans()
    assert "old-record" not in fake.named("configmaps")
    # a warm pod's create, attach and delete: the fake has no attach; test_cluster_warm makes
    # them on a real cluster, and test_cluster_settings checks the chart's Role grants them
    made = {
        (group, resource, verb)
        for (group, resource), verbs in PERMISSIONS.items()
        for verb in verbs
    }
    assert fake.calls == made - WARM_ONLY
    for name in fake.named("jobs"):
        fake.delete("jobs", "runs", name)
    for name in fake.named("configmaps"):
        fake.delete("configmaps", "runs", name)


def test_tenants_see_only_their_own_runs_and_claims(
    fake: FakeKubernetes, kube_settings: Settings
) -> None:
    """The tenant travels as a label on Jobs, run records and claims; the fake API server
    filters by it as the real one does."""
    fake.script = lambda job: scripts.succeeds(b"alice-secret\n")
    alice, bob = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}
    settings = kube_settings.model_copy(update={"api_tokens": ["alice:tok-a", "tok-b"]})
    with LocalClient(create_app(settings)) as api:
        run_id = api.post("/runs", json=BODY, headers=alice).json()["run_id"]
        assert api.get(f"/runs/{run_id}", headers=alice).status_code == 200
        for method in ("GET", "DELETE"):
            assert api.request(method, f"/runs/{run_id}", headers=bob).status_code == 404
        assert api.get("/runs", headers=bob).json()["runs"] == []
        assert api.get("/containers?all=true", headers=bob).json() == []
        assert [
            item["run_id"] for item in api.get("/containers?all=true", headers=alice).json()
        ] == [run_id]
        assert api.post("/volume", json={"name": "alices"}, headers=alice).status_code == 200
        mount = {**BODY, "volumes": {"/v": {"type": "volume", "name": "alices"}}}
        assert api.post("/run", json=mount, headers=bob).status_code == 403
        assert api.post("/run", json=mount, headers=alice).status_code == 200
        api.delete(f"/runs/{run_id}", headers=alice)
    job = next(item for item in fake.received if item["kind"] == "Job")
    assert job["metadata"]["labels"]["oneoff-runner.tenant"] == tenant_for("tok-a").label
    fake.delete("jobs", "runs", f"oneoff-{run_id}")
    fake.delete("persistentvolumeclaims", "runs", "alices")


def test_claims_are_listed_and_removed_by_their_tenant_only(
    fake: FakeKubernetes, kube_settings: Settings
) -> None:
    alice, bob = {"Authorization": "Bearer tok-a"}, {"Authorization": "Bearer tok-b"}
    settings = kube_settings.model_copy(update={"api_tokens": ["alice:tok-a", "tok-b"]})
    claim = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": {}}
    fake.put("persistentvolumeclaims", "runs", {**claim, "metadata": {"name": "by-hand"}}, "ADDED")
    with LocalClient(create_app(settings)) as api:
        body = {"name": "alices", "labels": {"team": "ci"}}
        assert api.post("/volume", json=body, headers=alice).status_code == 200
        (listed,) = api.get("/volumes", headers=alice).json()
        assert (listed["name"], listed["labels"]) == ("alices", {"team": "ci"})
        assert api.get("/volumes", headers=bob).json() == []
        for name in ("alices", "by-hand"):
            assert api.delete(f"/volume/{name}", headers=bob).status_code == 404
        assert api.delete("/volume/by-hand", headers=alice).status_code == 404
        assert api.delete("/volume/alices", headers=alice).status_code == 200
        assert api.get("/volumes", headers=alice).json() == []
    assert fake.named("persistentvolumeclaims") == ["by-hand"]
    fake.delete("persistentvolumeclaims", "runs", "by-hand")


@pytest.mark.anyio
async def test_delivered_marks_are_labels_every_runner_reads(
    api: TestClient, fake: FakeKubernetes, kube_settings: Settings
) -> None:
    """run_container's run is labelled evictable on its Job, and once its answer delivered the
    result, delivered: a second runner reads both. A REST run is never evictable, and a run
    kept as a record only (cancelled) is marked on its record."""
    fake.script = lambda job: scripts.succeeds(b"hi\n")
    with serving(create_mcp_app(kube_settings)) as port:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            answer = await client.call_tool("run_container", {**BODY, "wait_seconds": 30})
    mcp_run = answer.structured_content["run_id"]
    fake.script = lambda job: scripts.runs_until_deleted(b"working\n")
    rest_run = api.post("/runs", json=BODY).json()["run_id"]
    assert api.post(f"/runs/{rest_run}/cancel").json()["state"] == "cancelled"
    other = kube_settings.model_copy(update={"instance_id": "another-replica"})
    with LocalClient(create_app(other)) as second:
        backend = second.app.state.service.backend  # type: ignore[attr-defined]
        before = backend.find_runs(tenant=None, run_id=rest_run, idempotency_key=None)
        backend.mark_delivered(rest_run, LOCAL.label)
        found = {
            record.run_id: record
            for record in backend.find_runs(tenant=None, run_id=None, idempotency_key=None)
        }
    labels = fake.get("jobs", "runs", f"oneoff-{mcp_run}")["metadata"]["labels"]  # type: ignore[index]
    assert answer.is_error is False and answer.structured_content["stdout"] == "hi\n"
    assert (labels[EVICTABLE], labels[DELIVERED]) == ("true", "true")
    assert (found[mcp_run].evictable, found[mcp_run].delivered) == (True, True)
    assert [(record.evictable, record.delivered) for record in before] == [(False, False)]
    assert (found[rest_run].evictable, found[rest_run].delivered) == (False, True)
    fake.delete("jobs", "runs", f"oneoff-{mcp_run}")  # as its TTL would
    fake.delete("configmaps", "runs", f"oneoff-{rest_run}-record")
