"""A run's image made sure of on the engine, per its pull policy and for its tenant: a private
image another tenant pulled (`runner.private_images`) is not handed over from the cache; and the
grants that pulls and checked credentials leave behind (`grants`).

- `always`: pull (with the credentials, if any).
- `missing` / `never`, the image cached: with credentials, the registry is asked whether they
  reach it (no pull); without, it is used if it is public or granted to the tenant, and
  otherwise treated as absent: `never` answers "not on the engine", `missing` pulls it
  anonymously (the registry refuses, as for anyone without credentials).
- absent: creating the container says so (`never`: 404; `missing`: pull, then create).
"""

from __future__ import annotations

from collections.abc import Callable

import docker

from backends.docker import inventory
from backends.docker.errors import create_refused, engine_errors
from backends.docker.grants import ImageGrants
from backends.docker.pull import check_access, pull
from runner.engine_models import ImageInfo
from runner.errors import ImageNotFound, NotFound
from runner.private_images import may_use
from runner.spec import PullSpec, RunControl, RunSpec


class Images:
    def __init__(self, api: Callable[[], docker.APIClient]) -> None:
        self._api = api
        self.grants = ImageGrants(api)

    def ensure(self, spec: RunSpec, control: RunControl) -> None:
        """Pull per the policy, check credentials, or refuse another tenant's private image;
        an absent image is left for the container's creation to find out (one call fewer)."""
        if spec.pull_policy == "always":
            self.pull(spec, control)
            return
        grants = self.grants.all()
        if not grants and spec.auth is None:
            return  # nothing private on the engine
        image_id = self._cached(spec.image)
        if image_id is None:
            return
        if spec.auth is not None:
            check_access(self._api(), spec)
            if grants.get(image_id):
                self.grants.grant(image_id, spec.tenant)
        elif not may_use(grants.get(image_id, frozenset()), spec.tenant):
            if spec.pull_policy == "never":
                raise not_on_engine(spec.image)
            self.pull(spec, control)  # as if absent

    def pull(self, spec: RunSpec | PullSpec, control: RunControl) -> ImageInfo:
        """Pull, then mark the image: granted to the tenant when credentials brought it (or
        it was private already), public when an anonymous pull got it."""
        before = self._ids() if spec.auth is not None else set()
        control.emit("phase", f"pulling {spec.image}")
        pull(self._api(), spec, control)
        pulled = inventory.image(self._api(), spec.image)
        if spec.auth is None:
            self.grants.make_public(pulled.id)
        elif pulled.id not in before or self.grants.of(pulled.id):
            self.grants.grant(pulled.id, spec.tenant)
        return pulled

    def _cached(self, reference: str) -> str | None:
        """The id of the image the reference names on the engine, if it is there."""
        try:
            with engine_errors("inspecting the image", create_refused):
                return str(self._api().inspect_image(reference)["Id"])
        except NotFound:
            return None

    def _ids(self) -> set[str]:
        with engine_errors("listing images"):
            return set(self._api().images(quiet=True, all=True))


def not_on_engine(image: str) -> ImageNotFound:
    return ImageNotFound(
        f"image: {image!r} is not on the engine and pull_policy is 'never'; pull it first or "
        "use pull_policy 'missing'",
        field="image",
    )
