"""Runs on the Kubernetes backend, wire-level: every behaviour, and nothing left behind."""

from __future__ import annotations

from pathlib import Path

from api_app import create_app
from backends.kubernetes.inventory import PERMISSIONS
from runner.settings import Settings
from tests.helpers import LocalClient, b64, untar_gz
from tests.kubernetes import fake_scripts as scripts
from tests.kubernetes.fake_api import FakeKubernetes

BODY = {"image": "busybox:1.36", "command": ["sh", "-c", "echo hi"]}


def test_a_run_that_succeeds_returns_its_merged_output(api, fake: FakeKubernetes):
    fake.script = lambda job: scripts.succeeds(b"hi\nerr\n")
    result = api.post("/run", json=BODY)
    assert result.status_code == 200, result.text
    body = result.json()
    assert (body["status"], body["exit_code"]) == ("success", 0)
    assert (body["stdout"], body["stderr"]) == ("hi\nerr\n", "")
    assert body["streams_merged"] is True


def test_the_job_is_shaped_from_the_request(api, fake: FakeKubernetes):
    body = {
        **BODY,
        "entrypoint": ["/bin/sh"],
        "command": ["-c", "echo $A"],
        "env_vars": {"A": "1"},
        "working_dir": "/tmp",
        "user": "1000:2000",
        "pull_policy": "missing",
        "timeout_seconds": 30,
        "memory": "256m",
        "cpus": 0.5,
    }
    api.post("/run", json=body)
    job = next(item for item in fake.received if item["kind"] == "Job")
    spec = job["spec"]
    pod = spec["template"]["spec"]
    # the pod's deadline leaves room to start (the runner lowers it once the run starts);
    # the Job's is a backstop past it
    assert (spec["backoffLimit"], pod["activeDeadlineSeconds"]) == (0, 120 + 30)
    assert spec["activeDeadlineSeconds"] > pod["activeDeadlineSeconds"]
    assert spec["ttlSecondsAfterFinished"] == 600
    assert pod["terminationGracePeriodSeconds"] == 1  # a timeout kills, as on Docker
    assert pod["restartPolicy"] == "Never"
    assert pod["automountServiceAccountToken"] is False
    security = pod["securityContext"]
    assert (security["runAsUser"], security["runAsGroup"], security["runAsNonRoot"]) == (
        1000,
        2000,
        True,
    )
    assert security["seccompProfile"] == {"type": "RuntimeDefault"}
    assert security["fsGroupChangePolicy"] == "OnRootMismatch"
    container = pod["containers"][0]
    assert (container["command"], container["args"]) == (["/bin/sh"], ["-c", "echo $A"])
    assert container["env"] == [{"name": "A", "value": "1"}]
    assert container["workingDir"] == "/tmp"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["resources"]["limits"] == {
        "cpu": "500m",
        "memory": str(256 * 1024 * 1024),
        "ephemeral-storage": "1Gi",
    }
    assert container["securityContext"] == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    assert job["metadata"]["labels"]["oneoff-runner.managed"] == "true"


def test_a_failing_command_reports_its_exit_code(api, fake: FakeKubernetes):
    fake.script = lambda job: scripts.fails(3, b"bad\n")
    body = api.post("/run", json=BODY).json()
    assert (body["status"], body["exit_code"], body["stdout"]) == ("error: 3", 3, "bad\n")


def test_oom_killed_is_reported(api, fake: FakeKubernetes):
    fake.script = lambda job: scripts.fails(137, reason="OOMKilled")
    body = api.post("/run", json=BODY).json()
    assert body["oom_killed"] is True


def test_a_run_killed_at_its_deadline_is_a_timeout_with_its_output(api, fake: FakeKubernetes):
    fake.script = lambda job: scripts.runs_until_deleted(b"started\n")
    body = api.post("/run", json={**BODY, "timeout_seconds": 1}).json()
    assert (body["status"], body["timed_out"]) == ("timeout", True)
    assert body["stdout"] == "started\n"


def test_the_run_s_clock_starts_when_its_container_starts(api, fake: FakeKubernetes):
    """A slow image pull does not eat the run's timeout: the pod's deadline is lowered to
    `timeout` past the container's start once it runs, not counted from the Job's."""
    fake.script = lambda job: scripts.runs_until_deleted(b"started\n", start_delay=2)
    body = api.post("/run", json={**BODY, "timeout_seconds": 1}).json()
    assert (body["status"], body["stdout"]) == ("timeout", "started\n")
    patch = next(patch for resource, _, patch in fake.patches if resource == "pods")
    assert patch["spec"]["activeDeadlineSeconds"] in (3, 4)  # the pull's 2 s, then 1 s


def test_an_image_that_cannot_be_pulled_is_a_404_at_once(api, fake: FakeKubernetes):
    fake.script = lambda job: scripts.cannot_pull(
        "ImagePullBackOff", "manifest for busybox:nope not found"
    )
    response = api.post("/run", json={**BODY, "image": "busybox:nope"})
    assert response.status_code == 404
    assert response.json()["field"] == "image"
    assert "busybox:nope" in response.json()["message"]


def test_refused_credentials_are_a_401_and_the_pull_secret_goes_with_the_job(
    api, fake: FakeKubernetes
):
    fake.script = lambda job: scripts.cannot_pull(
        "ErrImagePull", "unauthorized: authentication required"
    )
    body = {
        **BODY,
        "image": "registry.example/team/app:1",
        "auth_config": {"username": "u", "password": "p"},
    }
    response = api.post("/run", json=body)
    assert response.status_code == 401
    assert "p" not in response.json()["message"].split()
    secret = next(
        item for item in fake.received if item.get("type") == "kubernetes.io/dockerconfigjson"
    )
    assert secret["metadata"]["ownerReferences"][0]["kind"] == "Job"
    job = next(item for item in fake.received if item["kind"] == "Job")
    pod = job["spec"]["template"]["spec"]
    assert pod["imagePullSecrets"] == [{"name": secret["metadata"]["name"]}]
    assert pod["containers"][0]["imagePullPolicy"] == "Always"


def test_the_registry_s_words_in_the_kubelet_s_message_never_reach_the_caller(
    api, fake: FakeKubernetes
):
    marker = "MARKER-from-the-registry"
    for words, status in [("403 Forbidden", 401), ("404 Not Found", 404)]:
        message = (
            'failed to pull and unpack image "registry.example/team/app:1": unexpected status '
            f"from GET request to https://registry.example/v2/team/app/manifests/1: {words}: "
            f"{marker}"
        )
        fake.script = lambda job, message=message: scripts.cannot_pull("ErrImagePull", message)
        response = api.post("/run", json={**BODY, "image": "registry.example/team/app:1"})
        assert response.status_code == status, response.text
        assert marker not in response.text


def test_a_registry_that_is_not_public_is_refused_before_any_job(api, fake: FakeKubernetes):
    """The kubelet would pull from the node's loopback or the cluster's network."""
    for image in ("127.0.0.1:6379/x:1", "10.96.0.1/x:1", "169.254.169.254/x:1"):
        response = api.post("/run", json={**BODY, "image": image})
        assert response.status_code == 403, response.text
        assert "RUNNER_ALLOWED_REGISTRIES" in response.json()["message"]
    assert [item for item in fake.received if item["kind"] == "Job"] == []


def test_files_go_in_and_a_directory_comes_back(api, fake: FakeKubernetes):
    def program(root: Path) -> None:
        script = (root / "0" / "file").read_text()
        (root / "1" / "result.txt").write_text(f"ran {script.strip()}\n")

    fake.script = lambda job: scripts.succeeds(program=program)
    body = {
        **BODY,
        "volumes": {
            "/job.sh:ro": {"type": "file", "content": b64(b"echo hi\n"), "mode": "0755"},
            "/out": {"type": "directory", "response": True},
        },
    }
    result = api.post("/run", json=body).json()
    import base64

    returned = result["volumes"]["/out"]
    assert untar_gz(base64.b64decode(returned["content"])) == {"result.txt": b"ran echo hi\n"}
    job = next(item for item in fake.received if item["kind"] == "Job")
    mounts = job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert mounts[0] == {
        "name": "content",
        "mountPath": "/job.sh",
        "subPath": "0/file",
        "readOnly": True,
    }
    names = [c["name"] for c in job["spec"]["template"]["spec"]["initContainers"]]
    assert names == ["unpack", "collect"]
    # the collect sidecar writes the paths between SIGTERM and SIGKILL: 5 s + 1 s per MiB
    assert job["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 5 + 7


def test_content_over_the_secret_limit_is_413(api, fake: FakeKubernetes):
    big = b64(b"x" * (900 * 1024))
    body = {
        **BODY,
        "volumes": {"/a": {"type": "file", "content": big}, "/b": {"type": "file", "content": big}},
    }
    response = api.post("/run", json=body)
    assert response.status_code == 413
    assert "Secret" in response.json()["message"]


def test_a_non_numeric_user_is_refused_naming_the_field(api):
    response = api.post("/run", json={**BODY, "user": "nobody"})
    assert response.status_code == 422
    assert response.json()["field"] == "user"


def test_stdin_is_refused_naming_it_and_the_backend_before_anything_is_made(
    api, fake: FakeKubernetes
):
    response = api.post("/run", json={**BODY, "stdin": "hello"})
    assert response.status_code == 422
    assert response.json()["field"] == "stdin"
    assert "Kubernetes" in response.json()["message"]
    assert fake.named("jobs") == []


def test_root_is_refused_unless_allowed(api):
    response = api.post("/run", json={**BODY, "user": "0"})
    assert response.status_code == 403


def test_a_claim_not_made_through_the_api_is_refused_before_anything_is_made(
    api, fake: FakeKubernetes
):
    body = {**BODY, "volumes": {"/data": {"type": "volume", "name": "cache"}}}
    fake.received.clear()  # the runner's lease, taken at startup
    response = api.post("/run", json=body)
    assert response.status_code == 403
    assert "RUNNER_ALLOWED_VOLUMES" in response.json()["message"]
    assert fake.received == []


def test_a_missing_allowed_claim_is_404_before_anything_is_made(
    fake: FakeKubernetes, kube_settings: Settings
):
    settings = kube_settings.model_copy(update={"allowed_volumes": ["cache"]})
    with LocalClient(create_app(settings)) as client:
        body = {**BODY, "volumes": {"/data": {"type": "volume", "name": "cache"}}}
        response = client.post("/run", json=body)
    assert response.status_code == 404
    assert fake.named("jobs") == []


def test_health_reports_the_api_server_and_missing_permissions(
    api, fake: FakeKubernetes, kube_settings: Settings
):
    health = api.get("/health").json()
    assert health["version"] == "v1.33.0-fake"
    assert "RUNNER_PIDS_LIMIT" in health["details"]["not_applied"]
    fake.granted = {
        (group, resource, verb)
        for (group, resource), verbs in PERMISSIONS.items()
        for verb in verbs
        if resource != "pods/log"
    }
    with LocalClient(create_app(kube_settings)) as fresh:  # asks now, not from a cache
        response = fresh.get("/health")
    assert response.status_code == 503
    assert "may not get pods/log" in response.json()["message"]


def test_list_images_says_it_is_not_available(api):
    response = api.get("/images")
    assert response.status_code == 501
    assert "Kubernetes" in response.json()["message"]


def test_workspace_features_answer_501_saying_what_kubernetes_lacks(api):
    """The volume file endpoints and ttl_seconds are the Docker backend's; content under a
    volume's mount is refused rather than mounted over the claim and lost."""
    assert api.post("/volume", json={"name": "ws-k8s"}).status_code == 200
    answers = [
        api.get("/volume/ws-k8s/files"),
        api.get("/volume/ws-k8s/file", params={"path": "a"}),
        api.put("/volume/ws-k8s/file", json={"path": "a", "content": "x"}),
        api.post("/volume", json={"name": "ws-k8s", "reuse_existing": True, "ttl_seconds": 600}),
        api.post(
            "/run",
            json={
                "image": "busybox",
                "command": ["true"],
                "volumes": {
                    "/work": {"type": "volume", "name": "ws-k8s"},
                    "/work/a.txt": {"type": "file", "content": "eA=="},
                },
            },
        ),
    ]
    assert [answer.status_code for answer in answers] == [501] * 5
    assert "Kubernetes" in answers[0].json()["message"]
    assert "not written into the volume on Kubernetes" in answers[4].json()["message"]
