"""Settings and permissions on a real cluster (`pytest -m cluster`, see test_cluster): the
runtime class and scratch size reach a real pod and the real API server keeps them; the
chart's Role gives the runner what its runs need and no Secret it could read. Twins through
the fake API server: test_cluster_failures (pod fields), test_runs and test_async_runs (the
calls made are exactly PERMISSIONS) and tests/helm/test_chart.py (the Role)."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from backends.labels import INSTANCE
from tests.helpers import ROOT
from tests.kubernetes.cluster_support import (
    IMAGE,
    core,
    delete_namespace,
    namespace,
    remove_finished_run,
    wait_for_running,
)
from tests.kubernetes.conftest import Namespaces, Runner
from tests.kubernetes.follow import final_state

pytestmark = pytest.mark.cluster


@pytest.fixture
def runtime_class() -> Iterator[str]:
    """A RuntimeClass of the test's own, on the cluster's default handler (`runc` on kind and
    k3d), removed afterwards."""
    from kubernetes import client

    node = client.NodeV1Api(core().api_client)
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    node.create_runtime_class(
        client.V1RuntimeClass(metadata=client.V1ObjectMeta(name=name), handler="runc")
    )
    yield name
    node.delete_runtime_class(name)


def test_runtime_class_and_scratch_size_reach_a_real_pod(
    runner: Runner, runtime_class: str
) -> None:
    """RUNNER_RUNTIME becomes the pod's runtimeClassName, RUNNER_KUBE_SCRATCH_SIZE the scratch
    emptyDir's sizeLimit and the run's ephemeral-storage limit; the real API server keeps them
    (it drops no field as unknown), the kubelet runs the pod, and the files still flow."""
    instance = f"cluster-settings-{uuid.uuid4().hex[:8]}"
    body = {
        "image": IMAGE,
        "command": ["sh", "-c", "cat /in.txt; sleep 5"],
        "volumes": {"/in.txt": {"type": "file", "content": "cGF5bG9hZAo="}},  # "payload\n"
        "timeout_seconds": 120,
    }
    with runner(instance_id=instance, runtime=runtime_class, kube_scratch_size="64Mi") as api:
        run_id = api.post("/runs", json=body).json()["run_id"]
        pod = wait_for_running(core(), namespace(), f"{INSTANCE}={instance}")
        final = final_state(api, run_id)
        remove_finished_run(namespace(), run_id)
    spec: Any = pod.spec
    assert spec.runtime_class_name == runtime_class
    assert spec.security_context.fs_group_change_policy == "OnRootMismatch"
    assert {v.name: v.empty_dir.size_limit for v in spec.volumes if v.empty_dir}["content"] == (
        "64Mi"
    )
    run = next(container for container in spec.containers if container.name == "run")
    assert run.resources.limits["ephemeral-storage"] == "64Mi"
    assert (final["state"], final["result"]["stdout"]) == ("succeeded", "payload\n"), final


def test_the_chart_s_role_gives_runs_what_they_need_and_no_secret(
    own_namespace: Namespaces,
) -> None:
    """Installed with `runs.createNamespace`, the chart makes the runs namespace; the real
    authorizer then lets the runner's service account make Jobs (and set their finalizers,
    for OwnerReferencesPermissionEnforcement), make warm pods and attach to them, and list its
    ConfigMaps, but never read or list
    Secrets, where the release's token and Helm's release data live (needs `helm`)."""
    from kubernetes import client

    helm = shutil.which("helm")
    if helm is None:
        pytest.fail("this test needs the helm binary on PATH", pytrace=False)
    release_space = own_namespace({})
    runs_space = f"oneoff-runs-{uuid.uuid4().hex[:8]}"
    chart = str(ROOT / "deploy" / "helm" / "oneoff-runner")
    settings = ["fullnameOverride=rbac-runner", f"runs.namespace={runs_space}"]
    settings.append("runs.createNamespace=true")
    install = [helm, "install", "rbac", chart, "-n", release_space]
    try:
        subprocess.run([*install, *(f"--set={item}" for item in settings)], check=True)
        assert core().read_namespace(runs_space).metadata.name == runs_space
        account = f"system:serviceaccount:{release_space}:rbac-runner"
        review = client.AuthorizationV1Api(core().api_client)

        def allowed(verb: str, resource: str, group: str = "", sub: str = "") -> bool:
            attributes = client.V1ResourceAttributes(
                namespace=runs_space, verb=verb, group=group, resource=resource, subresource=sub
            )
            spec = client.V1SubjectAccessReviewSpec(user=account, resource_attributes=attributes)
            answer = review.create_subject_access_review(client.V1SubjectAccessReview(spec=spec))
            return bool(answer.status.allowed)

        assert allowed("create", "jobs", "batch")
        assert allowed("update", "jobs", "batch", "finalizers")
        assert allowed("list", "configmaps")
        assert allowed("create", "pods") and allowed("delete", "pods")  # warm pods
        assert allowed("create", "pods", "", "attach")
        assert not allowed("list", "secrets")
        assert not allowed("get", "secrets")
    finally:
        subprocess.run([helm, "uninstall", "rbac", "-n", release_space], check=False)
        delete_namespace(core(), runs_space)  # helm's uninstall may have removed it already
