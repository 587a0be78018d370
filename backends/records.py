"""What an async run keeps on its backend (labels or annotations on its container or Job), so
that any runner on the same engine or cluster can answer for it: shared by the backends."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import get_args

from pydantic import TypeAdapter

from backends.labels import (
    DEADLINE,
    INSTANCE,
    MANAGED,
    RECORD_ROLE,
    ROLE,
    RUN_ID,
    TENANT,
    readable,
)
from runner.run_status import RunState
from runner.spec import CollectSpec, MountSpec, RunRecord
from runner.tenancy import LOCAL


def collect_label(collect: CollectSpec) -> str:
    """What collecting the result later needs of the request: caps and response paths."""
    return json.dumps(
        {
            "max_output": collect.max_output_bytes,
            "max_response": collect.max_response_bytes,
            "response": [[m.key, m.path, m.kind] for m in collect.returned],
        }
    )


def stored_collect(label: str) -> CollectSpec:
    """What `collect_label` kept."""
    kept = json.loads(label)
    returned = tuple(
        MountSpec(key=key, path=path, read_only=False, kind=kind, response=True)
        for key, path, kind in kept["response"]
    )
    return CollectSpec(kept["max_output"], kept["max_response"], returned)


def record_label(record: RunRecord) -> str:
    return json.dumps(vars(record))


_RECORD = TypeAdapter(RunRecord)
_STATES = frozenset(get_args(RunState))
LATEST = 2.0**34
"""Unix seconds past any real record's times (year 2514), inside what datetime can hold."""


def stored_record(text: str | None, labels: Mapping[str, str]) -> RunRecord | None:
    """The record `record_label` wrote for the run and tenant its object's `labels` name, or
    None, logged, for anything else."""
    run_id = labels.get(RUN_ID)
    return readable(f"the record of run {run_id!r}", lambda: _checked(text, labels))


def _checked(text: str | None, labels: Mapping[str, str]) -> RunRecord:
    if text is None:
        raise ValueError("it holds no record")
    record = _RECORD.validate_json(text)
    times = (record.created_at, record.started_at, record.finished_at)
    if record.run_id != labels.get(RUN_ID):
        raise ValueError(f"it names run {record.run_id!r}")
    if record.tenant != labels.get(TENANT, LOCAL.label):
        raise ValueError("it names another tenant than its label")
    if record.state not in _STATES:
        raise ValueError(f"unknown state {record.state!r}")
    if not all(0 <= moment < LATEST for moment in times if moment is not None):
        raise ValueError("a time is not a Unix time")
    return record


def finished_state(record: RunRecord) -> str:
    if record.timed_out:
        return "timeout"
    return "succeeded" if record.exit_code == 0 else "failed"


def record_labels(record: RunRecord, instance: str, ttl: float) -> dict[str, str]:
    """Labels of a run's record, which is reaped once the result's TTL has passed."""
    return {
        MANAGED: "true",
        RUN_ID: record.run_id,
        INSTANCE: instance,
        ROLE: RECORD_ROLE,
        TENANT: record.tenant,
        DEADLINE: str(int(time.time() + ttl)),
    }


def latest_per_run(records: list[RunRecord]) -> list[RunRecord]:
    """One record per run, oldest run first; a run's record outranks its container or Job
    (it is written when the run ended without them)."""
    by_run = {record.run_id: record for record in records}
    return sorted(by_run.values(), key=lambda record: record.created_at)
