"""What the Docker reaper removes: leftovers of runners that are gone, and anything past its
deadline. Judged on one listing of the engine (objects listed before leases, see
`backends.leases`), so the rules are plain functions of labels and states.

- A synchronous run's container and volume, a content carrier, a warm pool container and a warm
  run's claim (`pool`): when its owner no longer holds a lease (it crashed: gone within
  `lease_seconds` + one reap interval), or past its deadline (objects of runners from before
  leases).
- An async run's container is judged by `DetachedRuns.expire` (it outlives its runner on
  purpose); its run volume goes once its owner is gone and it has no container (the launch died
  before creating one).
- Records and leases: past their deadline.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from backends.labels import ASYNC_ROLE, ROLE, RUN_ID
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
        return [item for item in self.containers if _labels(item).get(ROLE) == ASYNC_ROLE]


def containers_to_remove(listing: Listing) -> list[str]:
    return [
        item["Id"]
        for item in listing.containers
        if _labels(item).get(ROLE) != ASYNC_ROLE and _gone(_labels(item), listing)
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
