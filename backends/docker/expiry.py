"""When callers' named volumes expire, and their removal once expired (Docker).

A volume made through POST /volume expires RUNNER_VOLUME_TTL_SECONDS after its creation, or at
the time its caller last asked for (`ttl_seconds`). Volumes' labels cannot change, so an
extension is a record: an empty volume `oneoff-expiry-<hash>-<serial>` labelled with the role
`volume-expiry`, the volume's name, its tenant and the time; a new record replaces the older
ones (like leases: made before the old ones go). The reaper removes an expired volume unforced,
so the engine refuses while any container (a run) has it mounted, and tries again at its next
pass; then its records go, and so do records of volumes that are gone.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import time
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

import docker

from backends.docker.errors import engine_errors
from backends.docker.inventory import make_own_volume
from backends.labels import (
    CREATED_BY,
    EXPIRES,
    EXPIRY_ROLE,
    INSTANCE,
    MANAGED,
    ROLE,
    SET_AT,
    TENANT,
    VOLUME,
    VOLUME_API,
    readable,
)
from runner.engine_models import VolumeInfo
from runner.errors import Conflict, NotFound

log = logging.getLogger("oneoff_runner.docker")

EXPIRY_SELECTOR = [f"{MANAGED}=true", f"{ROLE}={EXPIRY_ROLE}"]


class Expiries:
    def __init__(self, api: Callable[[], docker.APIClient], instance: str, ttl: float) -> None:
        self._api = api
        self._instance = instance
        self._ttl = ttl

    def extend(self, name: str, tenant: str, expires_at: float) -> None:
        """Record that the volume expires at `expires_at` (Unix seconds), replacing earlier."""
        older = self._records([f"{VOLUME}={name}"])
        digest = hashlib.sha256(name.encode()).hexdigest()[:16]
        labels = {
            MANAGED: "true",
            ROLE: EXPIRY_ROLE,
            INSTANCE: self._instance,
            VOLUME: name,
            TENANT: tenant,
            EXPIRES: str(int(expires_at)),
            SET_AT: str(time.time_ns()),
        }
        record = f"oneoff-expiry-{digest}-{uuid.uuid4().hex[:8]}"
        make_own_volume(self._api(), record, labels, "the volume's expiry")
        self._remove([item["Name"] for item in older])

    def stamped(self, volumes: list[VolumeInfo], tenant: str) -> list[VolumeInfo]:
        """The tenant's volumes with when each expires."""
        latest = _latest(self._records([f"{TENANT}={tenant}"]))
        return [
            volume.model_copy(
                update={
                    "expires_at": _rfc3339(self._expiry(volume.name, volume.created_at, latest))
                }
            )
            for volume in volumes
        ]

    def forget(self, name: str) -> None:
        """Drop the records of a volume just removed."""
        self._remove([item["Name"] for item in self._records([f"{VOLUME}={name}"])])

    def reap(self, now: float) -> int:
        """Remove the callers' volumes past their expiry that no container uses, and the
        records of volumes that are gone; how many volumes were removed. Records are listed
        before volumes: a record seen is of a volume made before it."""
        records = self._records([])
        with engine_errors("listing callers' volumes"):
            found = self._api().volumes(filters={"label": f"{CREATED_BY}={VOLUME_API}"})
        latest = _latest(records)
        created = {item["Name"]: item.get("CreatedAt") for item in found.get("Volumes") or []}
        removed = {
            name
            for name, at in created.items()
            if self._expiry(name, at, latest) < now and self._remove_volume(name)
        }
        left = set(created) - removed
        self._remove(
            [item["Name"] for item in records if (item.get("Labels") or {}).get(VOLUME) not in left]
        )
        return len(removed)

    def _expiry(self, name: str, created_at: str | None, latest: dict[str, float]) -> float:
        """The latest record's time, or the default from its creation (never, without one)."""
        if name in latest:
            return latest[name]
        created = _created(created_at)
        return math.inf if created is None else created + self._ttl

    def _records(self, terms: list[str]) -> list[dict[str, Any]]:
        with engine_errors("listing volumes' expiries"):
            found = self._api().volumes(filters={"label": [*EXPIRY_SELECTOR, *terms]})
        return list(found.get("Volumes") or [])

    def _remove_volume(self, name: str) -> bool:
        try:
            with engine_errors("removing an expired volume"):
                self._api().remove_volume(name)
        except Conflict:
            return False  # a run uses it: the next pass tries again
        except NotFound:
            return False
        log.info("volume %r removed: it expired", name)
        return True

    def _remove(self, names: list[str]) -> None:
        for name in names:
            try:
                with engine_errors("removing a volume's expiry"):
                    self._api().remove_volume(name, force=True)
            except (NotFound, Conflict):
                pass  # removed by another runner meanwhile


def _latest(records: list[dict[str, Any]]) -> dict[str, float]:
    """Volume name → its latest record's expiry; records the runner did not write skipped."""
    best: dict[str, tuple[int, float]] = {}
    for item in records:
        read = readable("a volume's expiry", functools.partial(_record, item.get("Labels") or {}))
        if read is None:
            continue
        set_at, expires, name = read
        if name not in best or best[name][0] < set_at:
            best[name] = (set_at, expires)
    return {name: expires for name, (_, expires) in best.items()}


def _record(labels: dict[str, str]) -> tuple[int, float, str]:
    return int(labels[SET_AT]), float(labels[EXPIRES]), labels[VOLUME]


def _created(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _rfc3339(moment: float) -> str | None:
    if math.isinf(moment):
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(moment))
