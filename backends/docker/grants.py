"""The grants of private images (`runner.private_images`), kept on the engine so that they hold
across restarts and for every runner on it: one empty volume per (image id, tenant),
`oneoff-grant-<hash>`, labelled with the role `grant`, the image id and the tenant's label.

Volumes, like leases and records: the engine has no other object a runner may label freely.
Callers can neither take these names (`RESERVED_VOLUME_NAMES`) nor mount them (they are the
runner's own). Grants of images no longer on the engine are removed by the reaper.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import docker

from backends.docker.errors import engine_errors
from backends.docker.inventory import make_own_volume
from backends.labels import GRANT_ROLE, IMAGE, MANAGED, ROLE, TENANT
from runner.errors import NotFound
from runner.private_images import Grants

GRANT_SELECTOR = [f"{MANAGED}=true", f"{ROLE}={GRANT_ROLE}"]


class ImageGrants:
    def __init__(self, api: Callable[[], docker.APIClient]) -> None:
        self._api = api

    def all(self) -> Grants:
        """Every grant on the engine: image id → tenants."""
        found: defaultdict[str, set[str]] = defaultdict(set)
        for labels in self._listed():
            found[labels.get(IMAGE, "")].add(labels.get(TENANT, ""))
        return {image: frozenset(tenants) for image, tenants in found.items()}

    def of(self, image_id: str) -> frozenset[str]:
        """The tenants granted this image; none: it is public."""
        return frozenset(labels.get(TENANT, "") for labels in self._listed(image_id))

    def grant(self, image_id: str, tenant: str) -> None:
        """Record that the tenant proved access to the image (idempotent)."""
        name = "oneoff-grant-" + hashlib.sha256(f"{image_id}\n{tenant}".encode()).hexdigest()[:40]
        labels = {MANAGED: "true", ROLE: GRANT_ROLE, IMAGE: image_id, TENANT: tenant}
        make_own_volume(self._api(), name, labels, "a grant of a private image")

    def make_public(self, image_id: str) -> None:
        """Drop the image's grants: its registry served it to an anonymous pull."""
        for name in self._names(self._volumes([f"{IMAGE}={image_id}"])):
            self._remove(name)

    def reap(self) -> int:
        """Remove the grants of images no longer on the engine. Grants are listed before
        images: a grant made meanwhile is for an image pulled meanwhile, and is not judged."""
        listed = self._volumes([])
        with engine_errors("listing images"):
            present = set(self._api().images(quiet=True, all=True))
        gone = [item for item in listed if (item.get("Labels") or {}).get(IMAGE) not in present]
        for name in self._names(gone):
            self._remove(name)
        return len(gone)

    def _listed(self, image_id: str | None = None) -> list[dict[str, str]]:
        terms = [f"{IMAGE}={image_id}"] if image_id is not None else []
        return [item.get("Labels") or {} for item in self._volumes(terms)]

    def _volumes(self, terms: list[str]) -> list[dict[str, Any]]:
        with engine_errors("listing grants of private images"):
            found = self._api().volumes(filters={"label": [*GRANT_SELECTOR, *terms]})
        return list(found.get("Volumes") or [])

    @staticmethod
    def _names(volumes: list[dict[str, Any]]) -> list[str]:
        return [str(item["Name"]) for item in volumes]

    def _remove(self, name: str) -> None:
        try:
            with engine_errors("removing a grant of a private image"):
                self._api().remove_volume(name, force=True)
        except NotFound:
            pass  # removed by another runner meanwhile
