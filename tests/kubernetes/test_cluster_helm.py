"""The chart on a real cluster, as a user installs and uses it (`pytest -m cluster`): `helm
install` with the runner's image built here, the REST API through `kubectl port-forward`, runs
with files both ways, an async run followed to its end, MCP through the Service (files both ways,
a cancel), a private image pulled with the caller's credentials and with a pull Secret, `helm
upgrade` keeping the token and the runs, the runner's pod deleted under a run, and `helm
uninstall` leaving no run object behind. One release for the module; the tests run in this
order, uninstall last."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from tests.helpers import PRIVATE_REGISTRY, PUBLIC_REGISTRY, untar_gz, until
from tests.kubernetes.cluster_release import Release, installed
from tests.kubernetes.cluster_support import (
    FILES_RUN,
    IMAGE,
    WAIT_SECONDS,
    core,
    wait_for_running,
)
from tests.kubernetes.follow import follow
from tests.registries import CREDENTIALS, Push

pytestmark = pytest.mark.cluster
SLOW = {"image": IMAGE, "command": ["sh", "-c", "echo begun; sleep 15; echo ended"]}


@pytest.fixture(scope="module")
def release() -> Iterator[Release]:
    """The chart, listing the test's private registry (on the node's loopback) as one runs may
    pull from: a registry there is refused unless the operator lists it."""
    with installed(f"config.allowed_registries={{{PRIVATE_REGISTRY}}}") as made:
        yield made


def started(release: Release, body: dict[str, Any]) -> str:
    """An async run of `body`, once its container runs."""
    with release.client() as api:
        run_id = str(api.post("/runs", json=body).json()["run_id"])
    wait_for_running(core(), release.space, f"oneoff-runner.run-id={run_id}")
    return run_id


def test_the_runner_answers_its_generated_token_only(release: Release) -> None:
    with release.client() as api:
        health = api.get("/health")
        assert health.status_code == 200, health.text
        assert health.json()["backend"] == "kubernetes"
    with release.client(token="not-the-token") as stranger:
        assert stranger.get("/runs").status_code == 401


def test_a_run_takes_files_in_and_returns_them(release: Release) -> None:
    with release.client() as api:
        result = api.post("/run", json=FILES_RUN).json()
    assert result["exit_code"] == 0, result
    content = base64.b64decode(result["volumes"]["/out"]["content"])
    assert untar_gz(content) == {"b.txt": b"payload\n"}


def test_an_async_run_is_followed_to_its_end(release: Release) -> None:
    body = {
        "image": IMAGE,
        "command": ["sh", "-c", "echo one; sleep 2; echo two > /out/r.txt; echo two"],
        "volumes": {"/out": {"type": "directory", "response": True}},
    }
    with release.client() as api:
        run_id = api.post("/runs", json=body).json()["run_id"]
        output, final = follow(api, run_id)
    assert output == "one\ntwo\n"
    assert (final["state"], final["result"]["exit_code"]) == ("succeeded", 0), final
    content = base64.b64decode(final["result"]["volumes"]["/out"]["content"])
    assert untar_gz(content) == {"r.txt": b"two\n"}


def test_a_private_image_is_pulled_with_the_caller_s_credentials(
    release: Release, unique_image: Push
) -> None:
    """From the authenticated registry on 127.0.0.1:5000, which the node's containerd reaches
    and the chart's config.allowed_registries lists: without credentials the registry's refusal
    is a 401 naming auth_config; with them, a pull Secret of the run's own. The anonymous
    registry beside it, not listed, is a 403 naming RUNNER_ALLOWED_REGISTRIES."""
    private = unique_image(private=True)
    body = {"image": private, "command": ["sh", "-c", "test -f /blob && echo pulled"]}
    with release.client() as api:
        unlisted = api.post("/run", json={**body, "image": f"{PUBLIC_REGISTRY}/oneoff-test/x:1"})
        assert unlisted.status_code == 403, unlisted.text
        assert "RUNNER_ALLOWED_REGISTRIES" in unlisted.json()["message"]
        refused = api.post("/run", json=body)
        assert refused.status_code == 401, refused.text
        assert refused.json()["field"] == "auth_config"
        result = api.post("/run", json={**body, "auth_config": CREDENTIALS}).json()
    assert (result.get("exit_code"), result.get("stdout")) == (0, "pulled\n"), result


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_mcp_through_the_chart_s_service_runs_with_files_and_cancels(
    release: Release,
) -> None:
    """The official SDK client through the Service's MCP port: run_container with a file in and
    a directory back, whose file read_file reads; run_container answering at once, then
    cancel_run, after which the run's pod is gone."""
    async with release.mcp() as client:
        ran = await client.call_tool("run_container", FILES_RUN)
        assert ran.is_error is False, ran.content
        view = ran.structured_content
        assert (view["finished"], view["exit_code"]) == (True, 0), ran.content
        assert [item["path"] for item in view["files"]] == ["/out/b.txt"], view
        read = await client.call_tool("read_file", {"uri": view["files"][0]["uri"]})
        assert read.is_error is False, read.content
        assert read.content[0].text == "--- /out/b.txt ---\npayload\n", read.content
        started = await client.call_tool("run_container", {**SLOW, "wait_seconds": 0})
        run_id = started.structured_content["run_id"]
        selector = f"oneoff-runner.run-id={run_id}"
        await anyio.to_thread.run_sync(wait_for_running, core(), release.space, selector)
        cancelled = await client.call_tool("cancel_run", {"run_id": run_id})
        assert cancelled.structured_content["state"] == "cancelled", cancelled.content
    until(
        lambda: not core().list_namespaced_pod(release.space, label_selector=selector).items,
        WAIT_SECONDS,
    )


def test_helm_upgrade_keeps_the_token_and_the_runs(release: Release, unique_image: Push) -> None:
    """The upgrade gives run pods an operator's pull Secret: the runner's pod is replaced. The
    token stays, a finished run keeps its result, a run in flight goes on and the new pod
    answers for it, and runs pull the private image with the Secret."""
    from kubernetes import client

    token = release.token()
    with release.client() as api:
        finished = api.post("/runs", json={"image": IMAGE, "command": ["echo", "kept"]}).json()
        assert follow(api, finished["run_id"])[1]["state"] == "succeeded"
    in_flight = started(release, SLOW)
    (before,) = release.runner_pods()
    secret = client.V1Secret(
        metadata=client.V1ObjectMeta(name="regcred"),
        type="kubernetes.io/dockerconfigjson",
        string_data={".dockerconfigjson": json.dumps(_docker_config())},
    )
    core().create_namespaced_secret(release.space, secret)
    release.helm("upgrade", "runs.imagePullSecrets={regcred}")
    release.forward.close()  # it forwarded to the replaced pod
    after = release.ready_runner_other_than(before.metadata.name)
    assert after.metadata.name != before.metadata.name
    assert release.token() == token
    private = unique_image(private=True)
    with release.client(token) as api:
        kept = api.get(f"/runs/{finished['run_id']}").json()
        assert kept["result"]["stdout"] == "kept\n", kept
        output, final = follow(api, in_flight)
        ran = api.post(
            "/run", json={"image": private, "pull_policy": "always", "command": ["true"]}
        )
    assert (output, final["state"]) == ("begun\nended\n", "succeeded"), final
    assert ran.status_code == 200 and ran.json()["exit_code"] == 0, ran.text


def test_a_deleted_runner_pod_is_replaced_and_its_async_run_answered(release: Release) -> None:
    run_id = started(release, SLOW)
    (pod,) = [item for item in release.runner_pods() if not item.metadata.deletion_timestamp]
    core().delete_namespaced_pod(pod.metadata.name, release.space)
    release.forward.close()
    release.ready_runner_other_than(pod.metadata.name)
    with release.client() as api:
        output, final = follow(api, run_id)
    assert (output, final["state"]) == ("begun\nended\n", "succeeded"), final


def test_helm_uninstall_leaves_no_run_object(release: Release) -> None:
    """A run in flight, a finished one (kept for its TTL) and a cancelled one (its record): all
    go with the release."""
    in_flight = started(release, {"image": IMAGE, "command": ["sleep", "600"]})
    with release.client() as api:
        finished = api.post("/runs", json={"image": IMAGE, "command": ["true"]}).json()["run_id"]
        assert follow(api, finished)[1]["state"] == "succeeded"
        cancelled = started(release, {"image": IMAGE, "command": ["sleep", "600"]})
        assert api.post(f"/runs/{cancelled}/cancel").json()["state"] == "cancelled"
        assert {run["run_id"] for run in api.get("/runs").json()["runs"]} >= {
            in_flight,
            finished,
            cancelled,
        }
    assert release.run_objects() != []
    release.uninstall()
    until(lambda: release.run_objects() == [], WAIT_SECONDS)


def _docker_config() -> dict[str, Any]:
    auth = base64.b64encode(f"{CREDENTIALS['username']}:{CREDENTIALS['password']}".encode())
    entry = {**CREDENTIALS, "auth": auth.decode()}
    return {"auths": {PRIVATE_REGISTRY: entry}}
