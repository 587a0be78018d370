"""What a real cluster does to runs, on a real cluster (`pytest -m cluster`, see test_cluster):
an API-server blip under a run, Pod Security admission, the chart's NetworkPolicy and the
chart's generated token across `helm upgrade`. Each case has a twin through the fake API
server (test_cluster_failures, test_async_runs, tests/helm); these show the real thing agrees.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from backends.labels import INSTANCE
from runner.settings import Settings
from tests.helpers import ROOT, LocalClient
from tests.kubernetes.cluster_support import (
    FILES_RUN,
    api_endpoint,
    apply_policy,
    core,
    delete_namespace,
    labelled_namespace,
    namespace,
    probe,
    proxied_kubeconfig,
    remove_finished_run,
    wait_for_failed_create,
    wait_for_running,
)
from tests.kubernetes.follow import final_state

pytestmark = pytest.mark.cluster
IMAGE = os.environ.get("CLUSTER_TEST_IMAGE", "busybox:1.36")
RESTRICTED = {"pod-security.kubernetes.io/enforce": "restricted"}
SLOW = ["sh", "-c", "echo before; sleep 10; echo after"]
Runner = Callable[..., contextlib.AbstractContextManager[TestClient]]
Namespaces = Callable[[dict[str, str]], str]


@pytest.fixture
def runner() -> Runner:
    """`with runner(**settings) as api:` a runner of its own instance id, on the cluster;
    nothing of its runs may be left when it stops."""

    @contextlib.contextmanager
    def start(**changes: Any) -> Iterator[TestClient]:
        changes.setdefault("instance_id", f"cluster-{uuid.uuid4().hex[:8]}")
        changes.setdefault("kube_namespace", namespace())
        settings = Settings(backend="kubernetes", **changes)
        with LocalClient(create_app(settings)) as api:
            yield api
            assert api.get("/containers", params={"all": True}).json() == []

    return start


@pytest.fixture
def own_namespace() -> Iterator[Callable[[dict[str, str]], str]]:
    """`own_namespace(labels)`: a namespace for this test, deleted after it."""
    api, made = core(), []

    def make(labels: dict[str, str]) -> str:
        name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
        labelled_namespace(api, name, labels)
        made.append(name)
        return name

    yield make
    for name in made:
        delete_namespace(api, name)


# ---- an API-server blip ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["sync", "async"])
def test_an_api_server_blip_during_a_run_neither_fails_nor_deletes_it(
    runner: Runner, tmp_path: Path, path: str
) -> None:
    """Every connection to the API server is cut while the run's container runs, and new
    ones refused until the runner has met the outage; the run then finishes as if nothing
    happened, and its Job was there all along."""
    from kubernetes import client

    admin = core()
    body = {"image": IMAGE, "command": SLOW, "timeout_seconds": 120}
    instance = f"cluster-blip-{uuid.uuid4().hex[:8]}"
    selector = f"{INSTANCE}={instance}"
    with (
        proxied_kubeconfig(tmp_path) as (kubeconfig, proxy),
        runner(kubeconfig=kubeconfig, instance_id=instance) as api,
    ):
        answer: dict[str, Any] = {}
        if path == "sync":
            thread = threading.Thread(target=lambda: answer.update(r=api.post("/run", json=body)))
            thread.start()
        else:
            run_id = api.post("/runs", json=body).json()["run_id"]
        wait_for_running(admin, namespace(), selector)
        proxy.cut()
        assert proxy.refused.wait(60), "the runner never called the API server during the cut"
        jobs = client.BatchV1Api().list_namespaced_job(namespace(), label_selector=selector)
        assert len(jobs.items) == 1, "a run was deleted while the API server was away"
        proxy.restore()
        if path == "sync":
            thread.join(300)
            result = answer["r"].json()
        else:
            final = final_state(api, run_id)
            assert final["state"] == "succeeded", final
            result = final["result"]
            remove_finished_run(namespace(), run_id)
    assert (result["exit_code"], result["stdout"]) == (0, "before\nafter\n")


# ---- admission --------------------------------------------------------------------------


def test_a_restricted_namespace_admits_the_runner_s_pods(
    runner: Runner, own_namespace: Namespaces
) -> None:
    """Both helpers and the run's container meet `restricted`; a new namespace's default
    service account comes a moment after it, a refusal the runner waits out."""
    with runner(kube_namespace=own_namespace(RESTRICTED)) as api:
        response = api.post("/run", json=FILES_RUN)
    assert response.status_code == 200, response.text
    assert response.json()["exit_code"] == 0


def test_a_pod_pod_security_refuses_is_a_403_with_its_reason(
    runner: Runner, own_namespace: Namespaces
) -> None:
    """RUNNER_KUBE_ALLOW_ROOT lets a request ask for uid 0; a restricted namespace refuses it."""
    with runner(kube_namespace=own_namespace(RESTRICTED), kube_allow_root=True) as api:
        response = api.post("/run", json={"image": IMAGE, "command": ["id"], "user": "0"})
    assert response.status_code == 403, response.text
    assert "PodSecurity" in response.json()["message"]


def test_a_quota_that_frees_up_lets_the_waiting_run_start(runner: Runner) -> None:
    """A ResourceQuota of no pods refuses the run's pod; deleted once the Job controller has
    said so, its next attempt gets in and the run runs."""
    admin, space = core(), namespace()
    quota = {
        "metadata": {"name": f"oneoff-{uuid.uuid4().hex[:8]}"},
        "spec": {"hard": {"pods": "0"}},
    }
    admin.create_namespaced_resource_quota(space, quota)
    try:
        with runner() as api:
            run_id = api.post("/runs", json={"image": IMAGE, "command": ["echo", "ran"]}).json()[
                "run_id"
            ]
            wait_for_failed_create(admin, space, f"oneoff-{run_id}")
            admin.delete_namespaced_resource_quota(quota["metadata"]["name"], space)
            final = final_state(api, run_id)
            remove_finished_run(space, run_id)
    finally:
        with contextlib.suppress(Exception):
            admin.delete_namespaced_resource_quota(quota["metadata"]["name"], space)
    assert (final["state"], final["result"]["stdout"]) == ("succeeded", "ran\n")


# ---- the chart's NetworkPolicy ----------------------------------------------------------


def test_open_egress_reaches_dns_but_not_metadata_or_private_ranges(
    runner: Runner, own_namespace: Namespaces
) -> None:
    """The chart's policy, applied as rendered. A CNI that ignores NetworkPolicy (the
    precondition, checked first with egress off) would let every probe through."""
    space = own_namespace({})
    endpoint = api_endpoint(core())
    with runner(kube_namespace=space) as api:
        apply_policy(space, egress=None)
        if probe(api, "dns", expect="blocked") != "blocked":
            pytest.skip(
                "the cluster's CNI does not enforce NetworkPolicy (DNS answered with egress "
                "off); run this on one that does: Calico, Cilium, kind 0.24+ (kindnet), k3s"
            )
        apply_policy(space, egress={"enabled": True})
        assert probe(api, "dns", expect="open") == "open"
        assert probe(api, "169.254.169.254:80", expect="blocked") == "blocked"
        assert probe(api, endpoint, expect="blocked") == "blocked"
        apply_policy(space, egress={"enabled": True, "cidrs": [endpoint.split(":")[0] + "/32"]})
        assert probe(api, endpoint, expect="open") == "open"  # the probe can see an open path


# ---- the chart's generated token ----------------------------------------------------------


def test_the_generated_token_survives_helm_upgrade(own_namespace: Namespaces) -> None:
    """No `auth.tokens`: the chart generates one, and `lookup` keeps it on upgrade (needs the
    `helm` binary; nothing of the release has to become ready)."""
    helm = shutil.which("helm")
    if helm is None:
        pytest.fail("this test needs the helm binary on PATH", pytrace=False)
    space = own_namespace({})
    chart = str(ROOT / "deploy" / "helm" / "oneoff-runner")
    common = [
        "-n",
        space,
        "--set",
        "fullnameOverride=tok-runner",
        "--set",
        f"runs.namespace={space}",
    ]
    try:
        subprocess.run([helm, "install", "tok", chart, *common], check=True)
        first = core().read_namespaced_secret("tok-runner-tokens", space).data["tokens"]
        subprocess.run(
            [helm, "upgrade", "tok", chart, *common, "--set", "replicaCount=2"], check=True
        )
        second = core().read_namespaced_secret("tok-runner-tokens", space).data["tokens"]
    finally:
        subprocess.run([helm, "uninstall", "tok", "-n", space], check=False)
    assert first == second and len(first) > 40
