"""What an async run keeps on its backend (labels or annotations on its container or Job), so
that any runner on the same engine or cluster can answer for it: shared by the backends."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TypeVar, get_args

from pydantic import TypeAdapter, ValidationError

from runner.backend import (
    CREATED_BY,
    DEADLINE,
    INSTANCE,
    LABEL_PREFIX,
    MANAGED,
    ROLE,
    RUN_ID,
    TENANT,
    VOLUME_API,
)
from runner.models import is_reserved_label
from runner.run_status import RunState
from runner.spec import CollectSpec, MountSpec, RunRecord, VolumeFill
from runner.tenancy import LOCAL

log = logging.getLogger("oneoff_runner.labels")
T = TypeVar("T")

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
UNREADABLE = (KeyError, ValueError, TypeError, AttributeError, ValidationError)
"""What reading labels the runner did not write can raise (json's errors are ValueErrors)."""


def readable(what: str, read: Callable[[], T]) -> T | None:
    """`read()`, or None, logged, when what the engine holds is not what the runner wrote.

    Anyone with access to the engine or cluster can make objects carrying the runner's labels;
    a malformed one is skipped, so it can never fail a listing for everyone or a startup.
    """
    try:
        return read()
    except UNREADABLE as exc:
        log.warning("skipped %s: its labels are not the runner's (%s)", what, exc)
        return None


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


def deadline_of(labels: Mapping[str, str]) -> float:
    """When an object may be reaped; never, for a deadline that is not a number."""
    value = readable("an object's deadline", lambda: float(labels.get(DEADLINE, "inf")))
    return math.inf if value is None or math.isnan(value) else value


def finished_state(record: RunRecord) -> str:
    if record.timed_out:
        return "timeout"
    return "succeeded" if record.exit_code == 0 else "failed"


def selector(tenant: str | None, run_id: str | None, idempotency_key: str | None) -> list[str]:
    """`key=value` terms finding the runner's runs, one run, or a key's run: the tenant's only,
    unless `tenant` is None (every tenant's, for the runner itself)."""
    terms = [f"{MANAGED}=true"]
    if tenant is not None:
        terms.append(f"{TENANT}={tenant}")
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
        TENANT: record.tenant,
        DEADLINE: str(int(time.time() + ttl)),
    }


def volume_labels(fill: VolumeFill, instance: str) -> dict[str, str]:
    """Labels of a volume made through POST /volume: the caller's, then ours over them."""
    return {**fill.labels, CREATED_BY: VOLUME_API, INSTANCE: instance, TENANT: fill.tenant}


def caller_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels a caller gave (POST /volume), without the runner's own."""
    return {key: value for key, value in labels.items() if not is_reserved_label(key)}


def volume_tenant(labels: dict[str, str]) -> str | None:
    """The tenant owning a volume (or claim): only one made through the API has one."""
    return labels.get(TENANT) if labels.get(CREATED_BY) == VOLUME_API else None


def latest_per_run(records: list[RunRecord]) -> list[RunRecord]:
    """One record per run, oldest run first; a run's record outranks its container or Job
    (it is written when the run ended without them)."""
    by_run = {record.run_id: record for record in records}
    return sorted(by_run.values(), key=lambda record: record.created_at)
