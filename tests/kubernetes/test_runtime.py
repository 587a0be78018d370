"""On Kubernetes a run's runtime is its pod's RuntimeClass (e.g. gvisor)."""

from __future__ import annotations

from api_app import create_app
from runner.settings import Settings
from tests.helpers import LocalClient
from tests.kubernetes import fake_scripts as scripts
from tests.kubernetes.fake_api import FakeKubernetes

BODY = {"image": "busybox:1.36", "command": ["true"]}


def test_the_chosen_runtime_is_the_pods_runtime_class(
    fake: FakeKubernetes, kube_settings: Settings
) -> None:
    fake.script = lambda job: scripts.succeeds()
    settings = kube_settings.model_copy(update={"allowed_runtimes": ["gvisor"]})
    with LocalClient(create_app(settings)) as client:
        chosen = client.post("/run", json={**BODY, "runtime": "gvisor"})
        default = client.post("/run", json=BODY)
    assert (chosen.status_code, default.status_code) == (200, 200)
    pods = [item["spec"]["template"]["spec"] for item in fake.received if item["kind"] == "Job"]
    assert [pod.get("runtimeClassName") for pod in pods] == ["gvisor", None]
