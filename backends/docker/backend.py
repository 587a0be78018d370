"""The Docker engine backend, local or remote (`DOCKER_HOST`), through docker-py's low-level API.

A facade: runs go to `AttachedRuns` (synchronous) and `DetachedRuns` (async), both over one
container core (`Containers`); volumes, listings and pulls to `inventory` and `pull`.

One run: pull per policy → create (without a network: without the engine's network sandbox,
`loopback`), with the content straight in the container or in a run volume it mounts
(`content`) → attach (`output`) → start → its end from the event stream (`exits`) or at the
deadline → copy response paths out (`returned`) → answer, and remove in the background
(`cleanup`); a run that fails removes what it made before it raises. What cannot be removed is
retried by the reaper (`reaping`). With RUNNER_WARM_POOL, a synchronous run that fits takes a
container started ahead (`pool`) instead of create and start. docker-py's exceptions become
`RunnerError`s in `errors.engine_errors` only.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from backends.docker import inventory, reaping
from backends.docker.attached import AttachedRuns
from backends.docker.containers import Containers
from backends.docker.errors import engine_errors, exists
from backends.docker.expiry import Expiries
from backends.docker.pool import Pool
from backends.docker.runs import DetachedRuns
from backends.docker.volume_files import VolumeFiles
from backends.labels import CARRIER_ROLE, MANAGED, volume_labels
from backends.leases import LEASE_SELECTOR
from runner.backend import OutputStream
from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeEntry, VolumeInfo
from runner.errors import Conflict, RunnerError
from runner.private_images import Grants
from runner.settings import Settings
from runner.spec import (
    Outcome,
    PullSpec,
    RunControl,
    RunRecord,
    RunSpec,
    VolumeFill,
    VolumeState,
)

KEEP_WAIT_SECONDS = 30
"""At shutdown, how long the ends of async runs being kept may take."""


class DockerBackend:
    name = "docker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.containers = Containers(settings)
        self.pool = Pool(self.containers)
        self.attached = AttachedRuns(self.containers, self.pool)
        self.detached = DetachedRuns(self.containers, self.pool)
        containers = self.containers
        self.expiries = Expiries(
            lambda: containers.api, settings.instance_id, settings.volume_ttl_seconds
        )
        self.files = VolumeFiles(
            containers.content,
            lambda tenant: containers.labels("volume", CARRIER_ROLE, 60, tenant),
            containers.remove,
            settings.max_archive_members,
        )

    def close(self) -> None:
        self.pool.close()
        self.detached.watchers.close(KEEP_WAIT_SECONDS)
        self.attached.close()
        self.containers.close()

    # ---- runs -------------------------------------------------------------------------------

    def run(self, spec: RunSpec, control: RunControl) -> Outcome:
        with self.pool.running(spec.run_id):
            return self.attached.run(spec, control)

    def cancel(self, run_id: str) -> None:
        self.pool.kill(run_id)
        self.containers.kill_run(run_id)

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        """An async run: a warm container when it fits one (its claim carries its labels),
        else a cold start."""
        with self.pool.running(spec.run_id):
            self.detached.launch(spec, control, idempotency_key)

    def wait_run(self, run_id: str) -> None:
        with self.pool.running():
            self.detached.wait(run_id)

    def settle_run(self, run_id: str, timeout: float) -> None:
        self.detached.watchers.settle(run_id, timeout)

    def find_runs(
        self, *, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        return self.detached.find(tenant, run_id, idempotency_key)

    def run_output(self, run_id: str, *, follow: bool) -> OutputStream:
        return self.detached.output(run_id, follow=follow)

    def collect_run(self, run_id: str) -> Outcome:
        return self.detached.collect(run_id)

    def run_file(self, run_id: str, path: str) -> tuple[str, Iterator[bytes]]:
        return self.detached.file(run_id, path)

    def discard_run(self, run_id: str, record: RunRecord | None = None) -> None:
        self.detached.discard(run_id, record)

    def forget_run(self, run_id: str) -> None:
        self.detached.forget(run_id)

    def record_run(self, record: RunRecord) -> None:
        self.detached.record(record)

    def mark_delivered(self, run_id: str, tenant: str) -> None:
        self.detached.mark_delivered(run_id, tenant)

    # ---- volumes, health, listings, reaping ----------------------------------------------------

    def create_volume(self, fill: VolumeFill) -> str:
        api = self.containers.api
        existed = exists("volume", api.inspect_volume, fill.name)
        if existed and not fill.reuse_existing:
            raise Conflict(
                f"name: a volume named {fill.name!r} exists; choose another name or set "
                "reuse_existing: true to fill it",
                field="name",
            )
        if not existed:
            with engine_errors("creating the volume"):
                api.create_volume(
                    fill.name,
                    driver=fill.driver,
                    driver_opts=fill.driver_opts or None,
                    labels=volume_labels(fill, self.settings.instance_id),
                )
        if fill.expires_at is not None:
            self.expiries.extend(fill.name, fill.tenant, fill.expires_at)
        if fill.tar is None:
            return f"volume {fill.name!r} {'exists' if existed else 'created'}, empty"
        try:
            labels = self.containers.labels("volume", CARRIER_ROLE, 60, fill.tenant)
            self.containers.content.fill_volume(fill.name, fill.tar, labels)
        except RunnerError:
            if not existed:
                self.containers.remove(None, fill.name)
            raise
        return f"volume {fill.name!r} {'filled' if existed else 'created and filled'}"

    def volume_state(self, name: str) -> VolumeState | None:
        return inventory.volume_state(self.containers.api, name)

    def list_volumes(self, *, tenant: str) -> list[VolumeInfo]:
        return self.expiries.stamped(inventory.volumes(self.containers.api, tenant), tenant)

    def remove_volume(self, name: str) -> None:
        inventory.remove_volume(self.containers.api, name)
        self.expiries.forget(name)

    def volume_files(self, name: str, tenant: str, path: str) -> tuple[int, list[VolumeEntry]]:
        return self.files.listing(name, tenant, path)

    def read_volume_file(self, name: str, tenant: str, path: str, max_bytes: int) -> bytes:
        return self.files.read(name, tenant, path, max_bytes)

    def write_volume_file(self, name: str, tenant: str, path: str, data: bytes, mode: int) -> int:
        limit = self.settings.max_volume_bytes
        return self.files.write(name, tenant, path, data, mode, limit)

    def health(self) -> Health:
        return inventory.health(self.containers.api)

    def list_containers(
        self, *, tenant: str, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        return inventory.containers(
            self.containers.api, tenant=tenant, all_states=all_states, managed_only=managed_only
        )

    def list_images(self, *, reference: str | None) -> list[ImageInfo]:
        return inventory.images(self.containers.api, reference)

    def pull_image(self, spec: PullSpec, control: RunControl) -> ImageInfo:
        return self.containers.images.pull(spec, control)

    def image_grants(self) -> Grants:
        return self.containers.images.grants.all()

    def renew_lease(self) -> None:
        """The lease, and the hosts file of runs without a network: made at the first renewal
        (at startup) so that no run waits for it, and made again if it was removed. The warm
        pool starts filling then too."""
        self.containers.lease.renew()
        self.containers.loopback.keep()
        self.pool.start()

    def reap_orphans(self) -> int:
        containers = self.containers
        removed = sum(containers.remove(*leftover) for leftover in containers.take_deferred())
        managed = {"label": f"{MANAGED}=true"}
        api = containers.api
        with engine_errors("reaping leftovers"):
            listing = reaping.Listing(
                containers=api.containers(all=True, filters=managed),
                volumes=api.volumes(filters=managed).get("Volumes") or [],
                leases=api.volumes(filters={"label": LEASE_SELECTOR}).get("Volumes") or [],
                now=time.time(),
                own=containers.lease.owner,
            )
        removed += self.detached.expire(listing.async_containers(), listing.live)
        for container in reaping.containers_to_remove(listing):
            removed += containers.remove(container, None)
        for volume in reaping.volumes_to_remove(listing):
            removed += containers.remove(None, volume)
        removed += self.expiries.reap(time.time())
        return removed + containers.images.grants.reap()
