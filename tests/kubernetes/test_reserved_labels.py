"""Records the Kubernetes backend reads back are checked: garbage is skipped, never a 500 and
never a failed startup."""

from __future__ import annotations

import json

from api_app import create_app
from backends.labels import DEADLINE, MANAGED, RECORD, ROLE, RUN_ID, TENANT
from runner.settings import Settings
from tests.helpers import LocalClient
from tests.kubernetes.fake_api import FakeKubernetes

GARBAGE = {
    "0123456789abcdef": "{not json",
    "1123456789abcdef": json.dumps({"run_id": "someone-else", "state": "cancelled"}),
    "2123456789abcdef": json.dumps(
        {"run_id": "2123456789abcdef", "state": "hacked", "image": "x", "created_at": 1}
    ),
}


def test_garbage_records_are_skipped_at_startup_and_in_listings(
    fake: FakeKubernetes, kube_settings: Settings
) -> None:
    for run_id, text in GARBAGE.items():
        labels = {MANAGED: "true", ROLE: "run-record", RUN_ID: run_id, DEADLINE: "soon"}
        labels[TENANT] = "local"  # the tenant a runner without tokens answers for
        metadata = {"name": f"garbage-{run_id}", "labels": labels, "annotations": {RECORD: text}}
        fake.create(
            "configmaps", "runs", {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
        )
    with LocalClient(create_app(kube_settings)) as client:  # startup reaps: reads each deadline
        listed = client.get("/runs")
        one = client.get("/runs/0123456789abcdef")
    for run_id in GARBAGE:
        fake.delete("configmaps", "runs", f"garbage-{run_id}")
    assert listed.status_code == 200
    assert listed.json()["runs"] == []
    assert one.status_code == 404
