"""Who owns what on a shared engine or cluster: each runner holds a lease it must keep renewing.

Every object a runner makes for its synchronous runs (and its async runs until they start)
carries `oneoff-runner.owner=<token>`, a token new for every backend object, so two runner
processes never share one, whatever `RUNNER_INSTANCE_ID` says. The lease is an object on the
engine (a volume on Docker, a Secret on Kubernetes) labelled with the token and a deadline a few
renewals ahead. Labels cannot change in place, so renewing creates the next lease object before
removing the previous one: there is always one alive while its runner is.

Any runner's reaper removes objects whose owner holds no live lease: the runner that made them
is provably gone (it stopped renewing), so a crashed runner's leftovers go within
`lease_seconds` + `reap_interval_seconds`. Objects are listed before leases, so an object seen
always has its owner's lease in the later listing if that owner is alive.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable, Iterable

from backends.labels import DEADLINE, INSTANCE, LEASE_ROLE, MANAGED, OWNER, ROLE, deadline_of

LEASE_SELECTOR = [f"{MANAGED}=true", f"{ROLE}={LEASE_ROLE}"]
RENEWALS_PER_LEASE = 3


class Lease:
    """This backend's lease: `create(name, labels)` and `delete(name)` make and remove one
    lease object on the engine or cluster."""

    def __init__(
        self,
        instance: str,
        seconds: float,
        create: Callable[[str, dict[str, str]], None],
        delete: Callable[[str], None],
    ) -> None:
        self.owner = uuid.uuid4().hex
        self.instance = instance
        self.seconds = seconds
        self._create = create
        self._delete = delete
        self._lock = threading.Lock()
        self._held: str | None = None
        self._renewed_at = -math.inf
        self._serial = 0

    def labels(self) -> dict[str, str]:
        """What marks an object as this runner's."""
        return {OWNER: self.owner}

    def hold(self) -> None:
        """Renew unless renewed within the last renewal period: called before anything is
        created, so no object exists whose owner has no lease (also when the engine was down
        at startup)."""
        if time.monotonic() - self._renewed_at >= self.seconds / RENEWALS_PER_LEASE:
            self.renew()

    def renew(self) -> None:
        with self._lock:
            self._serial += 1
            name = f"oneoff-lease-{self.owner}-{self._serial}"
            renewed_at = time.monotonic()
            self._create(name, self._lease_labels())
            previous, self._held, self._renewed_at = self._held, name, renewed_at
            if previous is not None:
                self._delete(previous)

    def release(self) -> None:
        """At a clean stop: whatever is still left is anyone's to remove at once."""
        with self._lock:
            held, self._held = self._held, None
            self._renewed_at = -math.inf
            if held is not None:
                self._delete(held)

    def _lease_labels(self) -> dict[str, str]:
        return {
            MANAGED: "true",
            INSTANCE: self.instance,
            ROLE: LEASE_ROLE,
            OWNER: self.owner,
            DEADLINE: str(math.ceil(time.time() + self.seconds)),
        }


def live_owners(leases: Iterable[dict[str, str]], now: float) -> set[str]:
    """The owners (tokens) whose lease has not expired, from the leases' labels."""
    return {labels[OWNER] for labels in leases if OWNER in labels and deadline_of(labels) >= now}


def abandoned(labels: dict[str, str], live: set[str]) -> bool:
    """Made by a runner that no longer holds its lease."""
    owner = labels.get(OWNER)
    return owner is not None and owner not in live


def past_deadline(labels: dict[str, str], now: float) -> bool:
    return deadline_of(labels) < now
