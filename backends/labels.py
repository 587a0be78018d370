"""The labels the runner puts on all it makes (containers, volumes, Jobs, Secrets, ConfigMaps),
in one place: their keys, the roles, how long what they mark is kept, and reading them back.
Every key is under the prefix no caller may use (`runner.models.RESERVED_LABEL_PREFIX`)."""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from pydantic import ValidationError

from runner.models import RESERVED_LABEL_PREFIX, is_reserved_label
from runner.spec import VolumeFill

log = logging.getLogger("oneoff_runner.labels")
T = TypeVar("T")

PREFIX = RESERVED_LABEL_PREFIX
MANAGED = f"{PREFIX}.managed"
""""true" on everything the runner makes."""
RUN_ID = f"{PREFIX}.run-id"
INSTANCE = f"{PREFIX}.instance"
"""The `RUNNER_INSTANCE_ID` of the runner that made it."""
DEADLINE = f"{PREFIX}.deadline"
"""Unix seconds after which any runner's reaper may remove it."""
ROLE = f"{PREFIX}.role"
TENANT = f"{PREFIX}.tenant"
"""The tenant's label (`runner.tenancy`): the keyed hash, never the token."""
OWNER = f"{PREFIX}.owner"
"""The lease token of the runner process that made it (`backends.leases`)."""
CREATED_BY = f"{PREFIX}.created-by"
VOLUME_API = "volume-api"
"""`CREATED_BY` of volumes made through POST /volume: the only ones a tenant owns."""

# What an async run keeps of its request and its end (`backends.records`).
CREATED = f"{PREFIX}.created"
TIMEOUT_AT = f"{PREFIX}.timeout-at"
TTL = f"{PREFIX}.ttl"
KEY = f"{PREFIX}.idempotency-key"
OUTPUT = f"{PREFIX}.output"
RECORD = f"{PREFIX}.record"
IMAGE = f"{PREFIX}.image"
"""The image id a grant is for (`backends.docker.grants`)."""
SCRATCH = f"{PREFIX}.scratch"
"""The run's disk limit in bytes, for whichever runner samples it."""
EVICTABLE = f"{PREFIX}.evictable"
""""true" on an async run MCP's run_container started: once an answer delivered its result, it
may be removed to make room under the tenant's kept-runs bound."""
DELIVERED = f"{PREFIX}.delivered"
""""true" on a Kubernetes Job whose final result an answer delivered."""
VOLUME = f"{PREFIX}.volume"
"""The named volume an expiry record is for (`backends.docker.expiry`)."""
EXPIRES = f"{PREFIX}.expires"
"""Unix seconds after which the reaper removes that volume, once no run uses it."""
SET_AT = f"{PREFIX}.set-at"
"""When an expiry record was made (nanoseconds): the latest counts."""
CONTAINER = f"{PREFIX}.container"
"""The id of the warm container a claim gives its run (`backends.docker.pool`)."""
MARKER = f"{PREFIX}.marker"
"""On an async run's claim: what the warm container's shell printed before the run's command,
so its log is read from after it."""
STARTED = f"{PREFIX}.started"
"""On an async run's claim: when its command started (its warm container started earlier)."""
RUN_IMAGE = f"{PREFIX}.run-image"
"""On an async run's claim: the image as the request named it."""
POOL = f"{PREFIX}.pool"
"""On a Kubernetes warm pod: the pool entry it was made for (`backends.kubernetes.warm`)."""

# Roles: what an object is to the runner.
RUN_ROLE = "run"
"""A synchronous run's container, volume or Job."""
ASYNC_ROLE = "async-run"
RECORD_ROLE = "run-record"
RESULT_ROLE = "run-result"
"""A finished async run's result, kept without its container (`backends.docker.results`)."""
CARRIER_ROLE = "carrier"
"""A container, never started, through which a volume is filled."""
LEASE_ROLE = "lease"
HOSTS_ROLE = "hosts"
"""The Docker runner's hosts file for runs without a network."""
GRANT_ROLE = "grant"
"""A tenant's proven access to a private image on the Docker engine."""
POOL_ROLE = "pool"
"""A warm container waiting for its run (`backends.docker.pool`): no run, no tenant yet."""
DELIVERED_ROLE = "delivered"
"""A Docker volume marking that an answer delivered an evictable run's result (its labels are
fixed): any runner on the engine sees the mark."""
EXPIRY_ROLE = "volume-expiry"
"""A volume recording when a caller's named volume expires (volumes' labels are fixed)."""
CLAIM_ROLE = "warm-claim"
"""A volume naming the run and tenant a warm container was given to (its labels are fixed)."""

CLEANUP_GRACE_SECONDS = 300
"""How long past its run's end what a run made is kept before any reaper may remove it."""


def run_labels(run_id: str, instance: str, role: str, tenant: str, lasts: float) -> dict[str, str]:
    """The labels of what a run makes, kept `lasts` seconds (and the cleanup grace)."""
    return {
        MANAGED: "true",
        RUN_ID: run_id,
        INSTANCE: instance,
        DEADLINE: str(int(time.time() + lasts + CLEANUP_GRACE_SECONDS)),
        ROLE: role,
        TENANT: tenant,
    }


def key_label(idempotency_key: str) -> str:
    """Keys are kept hashed (a caller's key may be anything; labels are shown to anyone), short
    enough for a Kubernetes label value."""
    return hashlib.sha256(idempotency_key.encode()).hexdigest()[:40]


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


def deadline_of(labels: Mapping[str, str]) -> float:
    """When an object may be reaped; never, for a deadline that is not a number."""
    value = readable("an object's deadline", lambda: float(labels.get(DEADLINE, "inf")))
    return math.inf if value is None or math.isnan(value) else value


def volume_labels(fill: VolumeFill, instance: str) -> dict[str, str]:
    """Labels of a volume made through POST /volume: the caller's, then ours over them."""
    return {**fill.labels, CREATED_BY: VOLUME_API, INSTANCE: instance, TENANT: fill.tenant}


def caller_labels(labels: dict[str, str]) -> dict[str, str]:
    """The labels a caller gave (POST /volume), without the runner's own."""
    return {key: value for key, value in labels.items() if not is_reserved_label(key)}


def volume_tenant(labels: dict[str, str]) -> str | None:
    """The tenant owning a volume (or claim): only one made through the API has one."""
    return labels.get(TENANT) if labels.get(CREATED_BY) == VOLUME_API else None
