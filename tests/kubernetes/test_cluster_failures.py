"""What a real cluster does to runs, through the fake: admission refusing the pod, API-server
blips, image pulls that fail for a while or for good, the helper image, settings that shape
the pod."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.helpers import b64
from tests.kubernetes import fake_scripts as scripts
from tests.kubernetes.fake_api import FakeKubernetes
from tests.kubernetes.follow import final_state

BODY = {"image": "busybox:1.36", "command": ["sh", "-c", "echo hi"], "timeout_seconds": 1}
QUOTA = "exceeded quota: compute, requested: limits.cpu=1, used: limits.cpu=4, limited: 4"


# ---- pods that are never created ------------------------------------------------------------


def test_a_pod_pod_security_refuses_is_a_403_at_once(configured, fake: FakeKubernetes):
    """The Job controller keeps retrying the pod; the runner does not wait for it (a start
    timeout of 30 s would make a waiting runner answer 503)."""
    api = configured(kube_allow_root=True, kube_start_timeout_seconds=30)
    response = api.post("/run", json={**BODY, "user": "0"})
    assert response.status_code == 403, response.text
    message = response.json()["message"]
    assert "PodSecurity" in message and "runAsNonRoot" in message
    assert fake.named("pods") == []


@pytest.mark.parametrize(
    ("refusal", "status", "field"),
    [
        ('admission webhook "policy.example.com" denied the request: no', 403, None),
        ("maximum memory usage per Container is 256Mi, but limit is 512Mi", 422, "memory"),
        ("minimum cpu usage per Container is 2, but request is 1", 422, "cpus"),
        ('Pod "x" is invalid: spec.containers[0].image: Required value', 422, None),
    ],
)
def test_refusals_that_never_clear_are_answered_at_once(
    configured, fake: FakeKubernetes, refusal: str, status: int, field: str | None
):
    fake.refuse = lambda pod: refusal
    response = configured(kube_start_timeout_seconds=30).post("/run", json=BODY)
    assert response.status_code == status, response.text
    assert refusal in response.json()["message"]
    assert response.json().get("field") == field


def test_a_quota_that_frees_up_while_the_run_waits_lets_it_run(configured, fake: FakeKubernetes):
    """The quota refuses the pod until the runner has read the refusal (another pod of the
    namespace ends meanwhile): the Job controller's next attempt gets in, and the run runs."""
    fake.refuse = lambda pod: None if ("", "events", "list") in fake.calls else QUOTA
    response = configured(kube_start_timeout_seconds=30).post("/run", json=BODY)
    assert response.status_code == 200, response.text
    assert response.json()["exit_code"] == 0
    refused = [event["reason"] for event in fake.list("events", "runs", None)]
    assert "FailedCreate" in refused


def test_an_async_run_waits_out_a_quota_that_frees_up(configured, fake: FakeKubernetes):
    fake.refuse = lambda pod: None if ("", "events", "list") in fake.calls else QUOTA
    api = configured(kube_start_timeout_seconds=30)
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    final = final_state(api, run_id)
    assert (final["state"], final["result"]["exit_code"]) == ("succeeded", 0), final
    fake.delete("jobs", "runs", f"oneoff-{run_id}")  # a finished run stays for its TTL


def test_a_quota_that_never_frees_is_a_503_at_the_start_timeout(configured, fake):
    fake.refuse = lambda pod: QUOTA
    response = configured(kube_start_timeout_seconds=1).post("/run", json=BODY)
    assert response.status_code == 503
    message = response.json()["message"]
    assert "exceeded quota: compute" in message and "RUNNER_KUBE_START_TIMEOUT_SECONDS" in message


def test_an_async_run_whose_pod_stays_refused_fails_with_the_reason(
    configured, fake: FakeKubernetes
):
    fake.refuse = lambda pod: 'error looking up service account runs/runner: "runner" not found'
    api = configured(kube_start_timeout_seconds=1)
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    final = final_state(api, run_id)
    assert final["state"] == "failed"
    assert "service account" in final["error"]
    fake.delete("configmaps", "runs", f"oneoff-{run_id}-record")


def test_a_pod_no_node_can_take_is_a_503_with_the_scheduler_s_reason(
    configured, fake: FakeKubernetes
):
    fake.script = lambda job: scripts.unschedulable("0/3 nodes are available: 3 Insufficient cpu.")
    api = configured(kube_start_timeout_seconds=1)
    response = api.post("/run", json={**BODY, "timeout_seconds": 600})
    assert response.status_code == 503
    assert "Insufficient cpu" in response.json()["message"]


# ---- API-server blips -----------------------------------------------------------------------


def blipping(output: bytes) -> scripts.Script:
    """Runs, and the API server restarts under it (watch dropped, history gone, 503s)."""
    return scripts.Script(
        [scripts.running(), scripts.finished(0)],
        {"run": output},
        during=lambda f: f.blip(),
        start_delay=0.5,  # the runner is watching when the restart comes
        pauses={0: 0.5},  # and the run goes on after it
    )


def test_a_run_survives_an_api_server_blip(api: TestClient, fake: FakeKubernetes):
    fake.script = lambda job: blipping(b"through\n")
    result = api.post("/run", json={**BODY, "timeout_seconds": 30})
    assert result.status_code == 200, result.text
    assert (result.json()["status"], result.json()["stdout"]) == ("success", "through\n")
    # every watch asks for bookmarks and starts from a resourceVersion; the dropped one was
    # resumed from where it was, the server had forgotten it (410), and a new list went on
    assert all(query.get("allowWatchBookmarks") == "true" for query in fake.watch_queries)
    assert all(query.get("resourceVersion") for query in fake.watch_queries)
    assert len(fake.watch_queries) >= 2 and fake.expired_watches >= 1


def test_an_async_run_survives_an_api_server_blip(api: TestClient, fake: FakeKubernetes):
    fake.script = lambda job: blipping(b"through\n")
    run_id = api.post("/runs", json={**BODY, "timeout_seconds": 30}).json()["run_id"]
    final = final_state(api, run_id)
    assert final["state"] == "succeeded", final
    assert final["result"]["stdout"] == "through\n"
    fake.delete("jobs", "runs", f"oneoff-{run_id}")


def test_a_run_whose_clock_cannot_be_started_for_an_outage_goes_on(api, fake: FakeKubernetes):
    """As a real API server restarting when the run's container starts: its deadline cannot be
    lowered (every PATCH refused, past the client's retries); the run goes on and answers."""
    fake.refused_patches = 100
    fake.script = lambda job: scripts.Script(
        [scripts.running(), scripts.finished(0)], {"run": b"through\n"}, pauses={0: 0.5}
    )
    result = api.post("/run", json={**BODY, "timeout_seconds": 30})
    assert result.status_code == 200, result.text
    assert (result.json()["status"], result.json()["stdout"]) == ("success", "through\n")
    fake.refused_patches = 0


# ---- images ---------------------------------------------------------------------------------


def test_an_image_absent_with_pull_policy_never_is_a_404_at_once(api, fake: FakeKubernetes):
    message = 'Container image "busybox:1.36" is not present with pull policy of Never'
    fake.script = lambda job: scripts.Script(
        [scripts.waiting("ErrImageNeverPull", message)], hold=True
    )
    response = api.post("/run", json={**BODY, "pull_policy": "never"})
    assert response.status_code == 404
    assert "pull_policy" in response.json()["message"]


def test_a_rate_limited_pull_is_waited_on(api: TestClient, fake: FakeKubernetes):
    limited = "toomanyrequests: You have reached your pull rate limit"
    fake.script = lambda job: scripts.pull_fails_then_succeeds(limited, b"pulled\n")
    result = api.post("/run", json={**BODY, "timeout_seconds": 30})
    assert result.status_code == 200, result.text
    assert result.json()["stdout"] == "pulled\n"


def test_a_transient_create_container_error_is_waited_on(api: TestClient, fake: FakeKubernetes):
    conflict = 'Error: failed to reserve container name "run_oneoff": name is reserved'
    fake.script = lambda job: scripts.Script(
        [scripts.waiting("CreateContainerError", conflict), scripts.running(), scripts.finished(0)],
        {"run": b"made\n"},
        pauses={0: 0.5},  # long enough for any watch to see it
    )
    assert api.post("/run", json=BODY).json()["stdout"] == "made\n"


def test_a_helper_image_that_cannot_be_pulled_is_named_as_such(
    api: TestClient, fake: FakeKubernetes
):
    fake.script = lambda job: scripts.cannot_pull(
        "ImagePullBackOff", "manifest unknown", container="unpack"
    )
    body = {**BODY, "volumes": {"/in.txt": {"type": "file", "content": b64(b"x")}}}
    response = api.post("/run", json=body)
    assert response.status_code == 503
    message = response.json()["message"]
    assert "helper image" in message and "RUNNER_KUBE_HELPER_IMAGE" in message
    assert "busybox" not in message


# ---- settings that shape the pod --------------------------------------------------------------


def test_pull_secrets_runtime_class_and_scratch_size_reach_the_pod(
    configured, fake: FakeKubernetes
):
    api = configured(
        kube_image_pull_secrets=["regcred"],
        runtime="gvisor",
        kube_scratch_size="2Gi",
        default_scratch_bytes=3 * 2**30,
    )
    body = {**BODY, "volumes": {"/in.txt": {"type": "file", "content": b64(b"x")}}}
    assert api.post("/run", json=body).status_code == 200
    job = next(item for item in fake.received if item.get("kind") == "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["runtimeClassName"] == "gvisor"
    assert pod["volumes"][0] == {"name": "content", "emptyDir": {"sizeLimit": "2Gi"}}
    assert pod["containers"][0]["resources"]["limits"]["ephemeral-storage"] == "2Gi"


def test_a_run_s_scratch_is_its_ephemeral_storage_under_the_kubernetes_ceiling(
    configured, fake: FakeKubernetes
):
    api = configured(kube_scratch_size="2Gi")
    body = {
        **BODY,
        "scratch": "64m",
        "volumes": {"/in.txt": {"type": "file", "content": b64(b"x")}},
    }
    assert api.post("/run", json=body).status_code == 200
    job = next(item for item in fake.received if item.get("kind") == "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"][0] == {"name": "content", "emptyDir": {"sizeLimit": "64Mi"}}
    assert pod["containers"][0]["resources"]["limits"]["ephemeral-storage"] == "64Mi"


# ---- the helper containers ------------------------------------------------------------------


def test_content_that_cannot_be_unpacked_is_a_422_with_the_helper_s_words(
    api: TestClient, fake: FakeKubernetes
):
    fake.script = lambda job: scripts.Script(
        [], unpack_fails="OSError: [Errno 28] No space left on device"
    )
    body = {**BODY, "volumes": {"/in.txt": {"type": "file", "content": b64(b"x")}}}
    response = api.post("/run", json=body)
    assert response.status_code == 422
    assert response.json()["field"] == "volumes"
    assert "No space left on device" in response.json()["message"]


def test_helper_statuses_follow_the_kubelet_s_order(api: TestClient, fake: FakeKubernetes):
    """unpack completes first; the collect sidecar runs until the run's container has exited."""
    seen: list[list[tuple[str, str]]] = []

    def record(item: dict) -> None:  # type: ignore[type-arg]
        statuses = item.get("status", {}).get("initContainerStatuses", [])
        seen.append([(s["name"], next(iter(s["state"]))) for s in statuses])

    fake.script = lambda job: scripts.collects(lambda root: None)
    body = {**BODY, "volumes": {"/out": {"type": "directory", "response": True}}}
    assert api.post("/run", json=body).status_code == 200
    for _, kind, resource, item in fake.history:
        if resource == "pods" and kind == "MODIFIED":
            record(item)
    assert [("unpack", "terminated"), ("collect", "running")] in seen
    assert seen[-1] == [("unpack", "terminated"), ("collect", "terminated")]
