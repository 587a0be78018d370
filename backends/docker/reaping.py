"""What the Docker reaper removes: leftovers of runners that are gone, and anything past its
deadline. Judged on one listing of the engine (objects listed before leases, see
`backends.leases`), so the rules are plain functions of labels and states.

- A synchronous run's container and volume, a content carrier, a warm pool container and a warm
  run's claim (`pool`): when its owner no longer holds a lease (it crashed: gone within
  `lease_seconds` + one reap interval), or past its deadline (objects of runners from before
  leases).
- An async run's container is judged by `DetachedRuns.expire` (it outlives its runner on
  purpose), and so is a warm container an async run claimed, seen with its claim's labels (the
  run's); its run volume or claim goes once its owner is gone and it has no container (the
  launch died before creating one, or its warm container was removed).
- Records and leases: past their deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backends.docker.run_state import claimed, is_async_claim
from backends.labels import ASYNC_ROLE, CONTAINER, ROLE, RUN_ID
from backends.leases import abandoned, live_owners, past_deadline


@dataclass
class Listing:
    containers: list[dict[str, Any]]
    volumes: list[dict[str, Any]]
    leases: list[dict[str, Any]]
    now: float
    own: str
    live: set[str] = field(init=False)

    def __post_init__(self) -> None:
        self.live = live_owners((item.get("Labels") or {} for item in self.leases), self.now)
        self.live.add(self.own)

    def async_containers(self) -> list[dict[str, Any]]:
        """Async runs' containers: their own, and the warm containers their claims name."""
        own = [item for item in self.containers if _labels(item).get(ROLE) == ASYNC_ROLE]
        claims = self.async_claims()
        warm = [
            claimed(item, claims[item["Id"]]) for item in self.containers if item["Id"] in claims
        ]
        return own + warm

    def async_claims(self) -> dict[str, dict[str, str]]:
        """Async runs' claims' labels, by the warm container they name."""
        found = (_labels(item) for item in self.volumes)
        return {labels[CONTAINER]: labels for labels in found if is_async_claim(labels)}


def containers_to_remove(listing: Listing) -> list[str]:
    taken = listing.async_claims()  # their async runs judge them
    return [
        item["Id"]
        for item in listing.containers
        if _labels(item).get(ROLE) != ASYNC_ROLE
        and item["Id"] not in taken
        and _gone(_labels(item), listing)
    ]


def volumes_to_remove(listing: Listing) -> list[str]:
    with_container = {_labels(item).get(RUN_ID) for item in listing.async_containers()}
    chosen = []
    for item in listing.volumes:
        labels = _labels(item)
        if labels.get(ROLE) == ASYNC_ROLE:
            died = abandoned(labels, listing.live) and labels.get(RUN_ID) not in with_container
            if died or past_deadline(labels, listing.now):
                chosen.append(item["Name"])
        elif _gone(labels, listing):
            chosen.append(item["Name"])
    return chosen


def _gone(labels: dict[str, str], listing: Listing) -> bool:
    return abandoned(labels, listing.live) or past_deadline(labels, listing.now)


def _labels(item: dict[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = item.get("Labels") or {}
    return labels
