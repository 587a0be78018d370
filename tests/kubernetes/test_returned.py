"""Returned paths on Kubernetes: streamed through the collect sidecar's log, bounded, and a
clear answer when the kubelet rotated the log or the sidecar was cut short."""

from __future__ import annotations

import base64
import io
import json
import os
import tarfile
from pathlib import Path

from fastapi.testclient import TestClient

from tests.helpers import untar_gz
from tests.kubernetes import fake_scripts as scripts
from tests.kubernetes.fake_api import FakeKubernetes
from tests.kubernetes.follow import final_state

MiB = 1024 * 1024
BODY = {
    "image": "busybox:1.36",
    "command": ["sh", "-c", "make things"],
    "volumes": {"/out": {"type": "directory", "response": True}},
}


def writes(size: int):  # type: ignore[no-untyped-def]
    def program(root: Path) -> None:
        (root / "0" / "data.bin").write_bytes(os.urandom(size))

    return program


def test_megabytes_come_back_through_the_log(api: TestClient, fake: FakeKubernetes):
    fake.log_max_bytes = 10 * MiB  # the kubelet's default containerLogMaxSize
    fake.script = lambda job: scripts.succeeds(program=writes(3 * MiB))
    result = api.post("/run", json=BODY)
    assert result.status_code == 200, result.text
    content = base64.b64decode(result.json()["volumes"]["/out"]["content"])
    assert len(untar_gz(content)["data.bin"]) == 3 * MiB


def test_content_past_what_the_kubelet_keeps_is_a_413(api: TestClient, fake: FakeKubernetes):
    """RUNNER_MAX_RESPONSE_BYTES is 64 MiB by default; the log holds 10 MiB: 7 MiB it is."""
    fake.log_max_bytes = 10 * MiB
    fake.script = lambda job: scripts.succeeds(program=writes(8 * MiB))
    response = api.post("/run", json=BODY)
    assert response.status_code == 413
    assert response.json()["field"] == "volumes"
    assert f"exceeds {7 * MiB} bytes" in response.json()["message"]
    assert "RUNNER_KUBE_RETURN_LIMIT_BYTES" in response.json()["message"]


def test_a_lower_return_limit_setting_is_a_413_naming_it(configured, fake: FakeKubernetes):
    """The collect sidecar stops at the setting (its `error` record), and the 413 names it."""
    api = configured(kube_return_limit_bytes=256 * 1024)
    fake.script = lambda job: scripts.succeeds(program=writes(300 * 1024))
    response = api.post("/run", json=BODY)
    assert response.status_code == 413, response.text
    message = response.json()["message"]
    assert f"exceeds {256 * 1024} bytes" in message
    assert "RUNNER_KUBE_RETURN_LIMIT_BYTES" in message
    fake.script = lambda job: scripts.succeeds(program=writes(200 * 1024))
    assert api.post("/run", json=BODY).status_code == 200


def test_a_lower_max_response_bytes_is_named_instead(configured, fake: FakeKubernetes):
    api = configured(max_response_bytes=100 * 1024)
    fake.script = lambda job: scripts.succeeds(program=writes(150 * 1024))
    response = api.post("/run", json=BODY)
    assert response.status_code == 413, response.text
    assert "RUNNER_MAX_RESPONSE_BYTES" in response.json()["message"]


def test_a_rotated_collect_log_is_a_413_that_says_so(api: TestClient, fake: FakeKubernetes):
    fake.log_max_bytes = 64 * 1024  # a cluster with a small containerLogMaxSize
    fake.script = lambda job: scripts.succeeds(program=writes(200 * 1024))
    response = api.post("/run", json=BODY)
    assert response.status_code == 413
    assert "rotated" in response.json()["message"]


def test_a_collect_log_cut_short_is_a_clear_error(api: TestClient, fake: FakeKubernetes):
    def cut(job: dict) -> scripts.Script:  # type: ignore[type-arg]
        script = scripts.succeeds(program=writes(100 * 1024))
        script.collect_cut = 70 * 1024
        return script

    fake.script = cut
    response = api.post("/run", json=BODY)
    assert response.status_code == 503
    assert "collect sidecar" in response.json()["message"]


def test_a_collect_sidecar_stopped_before_it_wrote_is_a_503_not_a_rotation(
    api: TestClient, fake: FakeKubernetes
):
    """Its log holds only what it said on stderr (merged into the pod log, as on a real
    cluster): no record at all."""

    def cut(job: dict) -> scripts.Script:  # type: ignore[type-arg]
        script = scripts.succeeds(program=writes(1024))
        script.collect_cut = 60  # the ready line and the start of the first record
        return script

    fake.script = cut
    response = api.post("/run", json=BODY)
    assert response.status_code == 503
    assert "collect sidecar" in response.json()["message"]


def test_an_async_run_whose_paths_are_lost_ends_its_log_stream_saying_so(
    api: TestClient, fake: FakeKubernetes
):
    """The stream still ends with its `exit` event (the run's state, no result, and why);
    GET /runs/{id} answers the error itself."""

    def cut(job: dict) -> scripts.Script:  # type: ignore[type-arg]
        script = scripts.collects(writes(100 * 1024))
        script.collect_cut = 70 * 1024
        return script

    fake.script = cut
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    final = final_state(api, run_id)
    assert (final["state"], final["result"]) == ("succeeded", None), final
    assert "collect sidecar" in final["error"]
    response = api.get(f"/runs/{run_id}")
    assert response.status_code == 503
    assert "collect sidecar" in response.json()["message"]
    fake.delete("jobs", "runs", f"oneoff-{run_id}")


def test_an_async_run_is_not_finished_while_its_paths_are_being_collected(
    api: TestClient, fake: FakeKubernetes
):
    """The run's container has exited, its collect sidecar still writes: not finished yet,
    so no result is read before the paths are there."""
    exited = [scripts.running(), scripts.run_exited(0)]
    fake.script = lambda job: scripts.Script(exited, program=writes(1024), hold=True)
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    fake.wait_for(lambda: '"terminated"' in json.dumps(fake.list("pods", "runs", None)))
    (record,) = api.app.state.service.backend.find_runs(
        tenant=None, run_id=run_id, idempotency_key=None
    )
    assert record.state == "running"
    api.delete(f"/runs/{run_id}")
    fake.delete("configmaps", "runs", f"oneoff-{run_id}-record")


def test_an_async_run_returns_its_paths_once_collected(api: TestClient, fake: FakeKubernetes):
    fake.script = lambda job: scripts.collects(writes(1024))
    run_id = api.post("/runs", json=BODY).json()["run_id"]
    final = final_state(api, run_id)
    assert final["state"] == "succeeded"
    returned = base64.b64decode(final["result"]["volumes"]["/out"]["content"])
    assert len(untar_gz(returned)["data.bin"]) == 1024
    raw = api.get(f"/runs/{run_id}/files/out")  # what MCP's read_file reads
    assert raw.headers["content-type"] == "application/x-tar", raw.text
    with tarfile.open(fileobj=io.BytesIO(raw.content)) as tar:
        assert tar.extractfile("data.bin").read() == untar_gz(returned)["data.bin"]  # type: ignore[union-attr]
    missing = api.get(f"/runs/{run_id}/files/elsewhere")
    assert (missing.status_code, missing.json()["field"]) == (404, "path"), missing.text
    fake.delete("jobs", "runs", f"oneoff-{run_id}")
