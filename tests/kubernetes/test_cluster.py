"""The Kubernetes backend end to end on a real cluster: `pytest -m cluster` with KUBECONFIG
pointing at one (kind or k3d; see the README), the runner's image loaded into it, and
RUNNER_KUBE_HELPER_IMAGE naming that image. Deselected by default; it never stands in for the
wire-level tests next to it."""

from __future__ import annotations

import base64
import os
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from runner.settings import Settings
from tests.helpers import LocalClient, untar_gz
from tests.kubernetes.cluster_support import FILES_RUN, namespace, remove_finished_run
from tests.kubernetes.follow import final_state

pytestmark = pytest.mark.cluster
IMAGE = os.environ.get("CLUSTER_TEST_IMAGE", "busybox:1.36")


@pytest.fixture(scope="module")
def cluster_api() -> Iterator[TestClient]:
    if not os.environ.get("KUBECONFIG"):
        pytest.fail("-m cluster needs KUBECONFIG pointing at a cluster (see README)", pytrace=False)
    settings = Settings(
        backend="kubernetes",
        instance_id="cluster-tests",
        kube_namespace=os.environ.get("RUNNER_KUBE_NAMESPACE", "default"),
    )
    with LocalClient(create_app(settings)) as client:
        assert client.get("/health").status_code == 200, client.get("/health").text
        yield client
        assert client.get("/containers", params={"all": True}).json() == []


def test_a_run_prints_and_exits(cluster_api: TestClient) -> None:
    body = {"image": IMAGE, "command": ["sh", "-c", "echo out; echo err >&2; exit 3"]}
    result = cluster_api.post("/run", json=body).json()
    assert result["exit_code"] == 3
    assert set(result["stdout"].split()) == {"out", "err"}
    assert result["streams_merged"] is True


def test_files_go_in_and_come_back(cluster_api: TestClient) -> None:
    result = cluster_api.post("/run", json=FILES_RUN).json()
    assert result["exit_code"] == 0, result
    content = base64.b64decode(result["volumes"]["/out"]["content"])
    assert untar_gz(content) == {"b.txt": b"payload\n"}


def test_a_timeout_ends_the_job(cluster_api: TestClient) -> None:
    body = {"image": IMAGE, "command": ["sleep", "600"], "timeout_seconds": 5}
    assert cluster_api.post("/run", json=body).json()["timed_out"] is True


def test_a_missing_image_is_a_404(cluster_api: TestClient) -> None:
    body = {"image": "oneoff-runner/does-not-exist:0", "pull_policy": "always"}
    assert cluster_api.post("/run", json=body).status_code == 404


def test_a_timeout_counts_from_the_container_s_start(cluster_api: TestClient) -> None:
    """pull_policy always: the pull takes its time, the run still gets its 3 s."""
    body = {
        "image": IMAGE,
        "pull_policy": "always",
        "command": ["sh", "-c", "echo started; sleep 600"],
        "timeout_seconds": 3,
    }
    result = cluster_api.post("/run", json=body).json()
    assert (result["timed_out"], result["stdout"]) == (True, "started\n")


def test_an_absent_image_with_pull_policy_never_is_a_404_at_once(cluster_api: TestClient) -> None:
    body = {"image": "oneoff-runner/never-pulled:0", "pull_policy": "never"}
    response = cluster_api.post("/run", json=body)
    assert response.status_code == 404
    assert "pull_policy" in response.json()["message"]


def test_returned_content_past_the_kubernetes_bound_is_a_413(cluster_api: TestClient) -> None:
    body = {
        "image": IMAGE,
        "command": ["sh", "-c", "head -c 8388608 /dev/urandom > /out/big.bin"],
        "volumes": {"/out": {"type": "directory", "response": True}},
    }
    response = cluster_api.post("/run", json=body)
    assert response.status_code == 413
    assert response.json()["field"] == "volumes"


def test_an_async_run_returns_its_paths(cluster_api: TestClient) -> None:
    body = {
        "image": IMAGE,
        "command": ["sh", "-c", "echo done > /out/r.txt"],
        "volumes": {"/out": {"type": "directory", "response": True}},
    }
    run_id = cluster_api.post("/runs", json=body).json()["run_id"]
    final = final_state(cluster_api, run_id)
    content = base64.b64decode(final["result"]["volumes"]["/out"]["content"])
    assert untar_gz(content) == {"r.txt": b"done\n"}
    remove_finished_run(namespace(), run_id)
