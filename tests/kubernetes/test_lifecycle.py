"""The Kubernetes backend's lifecycle: cancellation, reaping, listing, volumes."""

from __future__ import annotations

import threading

import pytest

from backends.kubernetes.backend import KubernetesBackend
from runner.engine_models import CreateVolumeRequest
from runner.errors import Cancelled, Conflict, Unsupported
from runner.models import RunRequest
from runner.policy import build_run_spec, build_volume_fill
from runner.settings import Settings
from runner.spec import RunControl
from runner.tenancy import LOCAL
from tests.helpers import b64, tar_gz
from tests.kubernetes import fake_scripts as scripts
from tests.kubernetes.fake_api import FakeKubernetes
from tests.kubernetes.follow import final_state


@pytest.fixture
def backend(kube_settings: Settings):
    made = KubernetesBackend(kube_settings)
    yield made
    made.close()


def spec_for(settings: Settings, run_id: str = "0123456789abcdef", **fields: object):
    request = RunRequest.model_validate({"image": "busybox:1.36", **fields})
    spec, _ = build_run_spec(request, settings, run_id, LOCAL, lambda name: None)
    return spec


def test_cancel_deletes_the_job_and_the_run_ends_cancelled(
    backend: KubernetesBackend, fake: FakeKubernetes, kube_settings: Settings
):
    fake.script = lambda job: scripts.runs_until_deleted(b"working\n")
    spec = spec_for(kube_settings)
    running = threading.Event()
    control = RunControl(on_event=lambda kind, text: running.set() if text == "running" else None)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            backend.run(spec, control)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    assert running.wait(30)
    control.cancelled.set()
    backend.cancel(spec.run_id)
    worker.join(30)
    assert isinstance(outcome[0], Cancelled)
    assert fake.named("jobs") == fake.named("pods") == fake.named("secrets") == []


def test_reaping_removes_jobs_of_runners_without_a_lease_and_keeps_live_ones(
    backend: KubernetesBackend, fake: FakeKubernetes, kube_settings: Settings
):
    """Ownership is per process: another runner with the same instance id keeps its Jobs while
    it renews its lease, and loses them once it no longer holds one."""
    fake.script = lambda job: scripts.runs_until_deleted()
    other = KubernetesBackend(kube_settings)
    other.renew_lease()
    jobs = {
        "oneoff-gone": _labels("test-kube", owner="0" * 32),
        "oneoff-live": _labels("test-kube", owner=other.jobs.lease.owner),
        "oneoff-mine": _labels("test-kube", owner=backend.jobs.lease.owner),
    }
    for name, labels in jobs.items():
        fake.create("jobs", "runs", {**_job_shell(), "metadata": {"name": name, "labels": labels}})
    assert backend.reap_orphans() == 1
    assert fake.named("jobs") == ["oneoff-live", "oneoff-mine"]
    other.close()
    assert backend.reap_orphans() == 1
    assert fake.named("jobs") == ["oneoff-mine"]
    fake.delete("jobs", "runs", "oneoff-mine")


def test_list_containers_lists_the_runner_s_jobs(backend: KubernetesBackend, fake: FakeKubernetes):
    fake.create(
        "jobs", "runs", {**_job_shell(), "metadata": {"name": "oneoff-a", "labels": _labels("x")}}
    )
    found = backend.list_containers(tenant=LOCAL.label, all_states=True, managed_only=True)
    assert [(item.name, item.run_id) for item in found] == [("oneoff-a", "a")]
    fake.delete("jobs", "runs", "oneoff-a")


def test_a_volume_is_a_persistent_volume_claim(
    backend: KubernetesBackend, fake: FakeKubernetes, kube_settings: Settings
):
    request = CreateVolumeRequest(name="cache", driver_opts={"size": "2Gi"})
    settings = kube_settings.model_copy(update={"allowed_volume_options": {"size": ["2Gi"]}})
    fill = build_volume_fill(request, settings, LOCAL, lambda name: None)
    assert "created" in backend.create_volume(fill)
    claim = fake.objects[("persistentvolumeclaims", "runs", "cache")]
    assert claim["spec"]["resources"]["requests"]["storage"] == "2Gi"
    with pytest.raises(Conflict):
        backend.create_volume(fill)
    with_content = build_volume_fill(
        CreateVolumeRequest(name="other", content=b64(tar_gz({"a.txt": b"a"}))),
        kube_settings,
        LOCAL,
        lambda name: None,
    )
    with pytest.raises(Unsupported):
        backend.create_volume(with_content)


def test_what_the_runner_makes_goes_with_its_owner_config_map(configured, fake: FakeKubernetes):
    """RUNNER_KUBE_OWNER (the chart's `<release>-runs` ConfigMap) owns the runner's Jobs, run
    records and lease: deleting it, as `helm uninstall` does, deletes them, pods and Secrets
    with the Jobs. A finished async run, kept for its TTL, goes too."""
    owner = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "runner-runs"}}
    _, made = fake.create("configmaps", "runs", owner)
    api = configured(kube_owner="runner-runs")
    fake.script = lambda job: scripts.succeeds(b"done\n")
    body = {"image": "busybox:1.36", "volumes": {"/in.txt": {"type": "file", "content": "eA=="}}}
    finished = api.post("/runs", json=body).json()["run_id"]
    assert final_state(api, finished)["state"] == "succeeded"
    fake.script = lambda job: scripts.runs_until_deleted()
    cancelled = api.post("/runs", json=body).json()["run_id"]
    fake.wait_for(lambda: len(fake.named("pods")) == 2)
    assert api.post(f"/runs/{cancelled}/cancel").json()["state"] == "cancelled"
    kept = [
        fake.get(kind, "runs", name)
        for kind, name in [
            ("jobs", f"oneoff-{finished}"),
            ("configmaps", f"oneoff-{cancelled}-record"),
            *(("configmaps", name) for name in fake.named("configmaps") if "lease" in name),
        ]
    ]
    uid = made["metadata"]["uid"]
    owned = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "runner-runs", "uid": uid}]
    assert len(kept) == 3
    for item in kept:
        assert item is not None
        assert item["metadata"]["ownerReferences"] == owned
    fake.delete("configmaps", "runs", "runner-runs")
    fake.settle()
    assert [fake.named(kind) for kind in ("jobs", "pods", "secrets", "configmaps")] == [[]] * 4


def test_an_owner_config_map_that_is_not_there_fails_health_naming_the_setting(configured):
    api = configured(kube_owner="missing")
    response = api.get("/health")
    assert response.status_code == 503
    assert "RUNNER_KUBE_OWNER" in response.json()["message"]


def _labels(instance: str, owner: str | None = None) -> dict[str, str]:
    labels = {
        "oneoff-runner.managed": "true",
        "oneoff-runner.run-id": "a",
        "oneoff-runner.tenant": "local",
        "oneoff-runner.instance": instance,
        "oneoff-runner.deadline": "9999999999",
        "oneoff-runner.role": "run",
    }
    return labels if owner is None else {**labels, "oneoff-runner.owner": owner}


def _job_shell() -> dict:  # type: ignore[type-arg]
    container = {"name": "run", "image": "busybox"}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "spec": {
            "suspend": True,
            "template": {"spec": {"restartPolicy": "Never", "containers": [container]}},
        },
    }
