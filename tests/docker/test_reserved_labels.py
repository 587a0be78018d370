"""The runner's labels (`oneoff-runner.*`) are its own: callers cannot set them, and what the
runner reads back from the engine is checked before it is believed."""

from __future__ import annotations

import json
import uuid

import docker
import pytest

from backends.labels import DEADLINE, INSTANCE, MANAGED, RECORD, ROLE, RUN_ID, TENANT
from runner.tenancy import LOCAL
from tests.helpers import Server, run_body


def forged_record(run_id: str, **fields: object) -> str:
    record = {"run_id": run_id, "state": "cancelled", "image": "x", "created_at": 1.0}
    return json.dumps({**record, **fields})


def test_a_volume_cannot_forge_a_record_that_cancels_a_live_run(server: Server) -> None:
    with server() as client:
        run_id = client.post("/runs", json=run_body("sleep", "300")).json()["run_id"]
        forged = {
            MANAGED: "true",
            ROLE: "run-record",
            RUN_ID: run_id,
            RECORD: forged_record(run_id),
        }
        answer = client.post("/volume", json={"name": f"forged-{run_id}", "labels": forged})
        state = client.get(f"/runs/{run_id}").json()["state"]
        client.delete(f"/runs/{run_id}")
    assert answer.status_code == 422
    assert answer.json()["field"] == "labels"
    assert "oneoff-runner." in answer.json()["message"]
    assert state in ("pulling", "running")


@pytest.mark.parametrize("label", ["oneoff-runner.instance", "Oneoff-Runner.deadline"])
def test_no_label_in_the_runners_namespace_is_accepted(server: Server, label: str) -> None:
    with server() as client:
        answer = client.post(
            "/volume", json={"name": f"v-{uuid.uuid4().hex}", "labels": {label: "0"}}
        )
    assert answer.status_code == 422
    assert label in answer.json()["message"]


GARBAGE = {
    "not-json": "{not json",
    "missing-fields": '{"run_id": "%s"}',
    "unknown-state": forged_record("%s", state="hacked"),
    "time-out-of-range": forged_record("%s", created_at=1e300),
    "names-another-run": forged_record("someone-else"),
    "names-another-tenant": forged_record("%s", tenant="someone-else"),
}


def test_garbage_records_on_the_engine_are_skipped_at_startup_and_in_listings(
    server: Server, docker_client: docker.DockerClient, instance: str
) -> None:
    made = []
    try:
        for kind, text in GARBAGE.items():
            run_id = uuid.uuid4().hex[:16]
            labels = {MANAGED: "true", ROLE: "run-record", RUN_ID: run_id, INSTANCE: instance}
            labels[TENANT] = LOCAL.label  # the tenant the server below answers for
            labels |= {RECORD: text.replace("%s", run_id), DEADLINE: "soon" if made else "1e999"}
            made.append(docker_client.volumes.create(f"garbage-{run_id}-{kind}", labels=labels))
        with server() as client:  # its startup reaps: every deadline above is read
            listed = client.get("/runs")
            one = client.get(f"/runs/{made[0].attrs['Labels'][RUN_ID]}")
    finally:  # at once: other runners share this engine
        for volume in made:
            volume.remove(force=True)
    assert listed.status_code == 200
    forged = {volume.attrs["Labels"][RUN_ID] for volume in made}
    assert not {run["run_id"] for run in listed.json()["runs"]} & forged
    assert one.status_code == 404
