"""What an async run keeps on its backend (labels or annotations on its container or Job), so
that any runner on the same engine or cluster can answer for it: shared by the backends."""

from __future__ import annotations

import hashlib
import json
import time

from runner.backend import DEADLINE, INSTANCE, LABEL_PREFIX, MANAGED, ROLE, RUN_ID
from runner.spec import MountSpec, RunRecord, RunSpec

ASYNC_ROLE = "async-run"
RECORD_ROLE = "run-record"
TIMEOUT_AT = f"{LABEL_PREFIX}.timeout-at"
CREATED = f"{LABEL_PREFIX}.created"
KEY = f"{LABEL_PREFIX}.idempotency-key"
OUTPUT = f"{LABEL_PREFIX}.output"
RECORD = f"{LABEL_PREFIX}.record"
TTL = f"{LABEL_PREFIX}.ttl"
CLEANUP_GRACE_SECONDS = 300


def key_label(idempotency_key: str) -> str:
    """Keys are kept hashed (a caller's key may be anything; labels are shown to anyone), short
    enough for a Kubernetes label value."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


def output_label(spec: RunSpec) -> str:
    """What collecting the result later needs of the request: caps and response paths."""
    return json.dumps(
        {
            "max_output": spec.max_output_bytes,
            "max_response": spec.max_response_bytes,
            "response": [[m.key, m.path, m.kind] for m in spec.mounts if m.response],
        }
    )


def stored_spec(run_id: str, output: str) -> RunSpec:
    """The request as `output_label` kept it, for collecting."""
    kept = json.loads(output)
    mounts = [
        MountSpec(key=key, path=path, read_only=False, kind=kind, response=True)
        for key, path, kind in kept["response"]
    ]
    return RunSpec.stored(run_id, mounts, kept["max_output"], kept["max_response"])


def record_label(record: RunRecord) -> str:
    return json.dumps(vars(record))


def stored_record(text: str) -> RunRecord:
    return RunRecord(**json.loads(text))


def finished_state(record: RunRecord) -> str:
    if record.timed_out:
        return "timeout"
    return "succeeded" if record.exit_code == 0 else "failed"


def selector(run_id: str | None, idempotency_key: str | None) -> list[str]:
    """`key=value` terms finding the runner's runs, one run, or a key's run."""
    terms = [f"{MANAGED}=true"]
    if run_id is not None:
        terms.append(f"{RUN_ID}={run_id}")
    if idempotency_key is not None:
        terms.append(f"{KEY}={key_label(idempotency_key)}")
    return terms


def record_labels(record: RunRecord, instance: str, ttl: float) -> dict[str, str]:
    """Labels of a run's record, which is reaped once the result's TTL has passed."""
    return {
        MANAGED: "true",
        RUN_ID: record.run_id,
        INSTANCE: instance,
        ROLE: RECORD_ROLE,
        DEADLINE: str(int(time.time() + ttl)),
    }


def latest_per_run(records: list[RunRecord]) -> list[RunRecord]:
    """One record per run, oldest run first; a run's record outranks its container or Job
    (it is written when the run ended without them)."""
    by_run = {record.run_id: record for record in records}
    return sorted(by_run.values(), key=lambda record: record.created_at)
