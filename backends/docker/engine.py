"""The Docker engine backend, local or remote (`DOCKER_HOST`), through docker-py's low-level API.

One run (`attached`; async runs: `runs`): pull per policy → create (without a network: without
the engine's network sandbox, `loopback`), with the content straight in the container or in a
run volume it mounts (`content`) → attach (`output`) → start → its end
from the event stream (`exits`) or at the deadline → copy response paths out (`returned`) →
answer, and remove in the background (`cleanup`); a run that fails removes what it made before
it raises. What cannot be removed is retried by the reaper. docker-py's exceptions become
`RunnerError`s in `errors.engine_errors` only.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterator

import docker
from docker.types import LogConfig, Mount, Ulimit
from docker.utils import kwargs_from_env

from backends.docker import inventory, reaping
from backends.docker.attached import AttachedRuns
from backends.docker.cleanup import Cleanup
from backends.docker.content import ContentCopier, straight_in
from backends.docker.errors import create_refused, engine_errors, exists, start_refused
from backends.docker.loopback import Loopback
from backends.docker.pull import pull, pulls_first
from backends.docker.returned import ReturnedPaths
from backends.docker.runs import DetachedRuns, OutputStream
from backends.docker.stdin import StdinFeed
from backends.labels import volume_labels
from backends.leases import LEASE_SELECTOR, Lease
from runner.backend import DEADLINE, INSTANCE, MANAGED, ROLE, RUN_ID, TENANT, timed
from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeInfo
from runner.errors import (
    Cancelled,
    Conflict,
    ImageNotFound,
    InvalidRequest,
    NotFound,
    RunnerError,
)
from runner.settings import Settings
from runner.spec import (
    Outcome,
    PullSpec,
    RunRecord,
    RunSpec,
    VolumeFill,
    VolumeState,
)

log = logging.getLogger("oneoff_runner.docker")

CLEANUP_GRACE_SECONDS = 300
CLEANUP_WORKERS = 4
CLEANUP_DRAIN_SECONDS = 60


class DockerBackend:
    name = "docker"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._client: docker.APIClient | None = None
        self._stream_client: docker.APIClient | None = None
        self.content = ContentCopier(lambda: self.api)
        self.returned = ReturnedPaths(lambda: self.api)
        self.lease = Lease(
            settings.instance_id, settings.lease_seconds, self._create_lease, self._delete_lease
        )
        self.loopback = Loopback(lambda: self.api, self.content, self.lease, settings.instance_id)
        self.detached = DetachedRuns(self)
        self.attached = AttachedRuns(self)
        self._deferred: set[tuple[str | None, str | None]] = set()
        self.cleanup = Cleanup(self.remove, CLEANUP_WORKERS, settings.max_concurrent_runs * 2)

    @property
    def api(self) -> docker.APIClient:
        """The engine client, made on first use so the service starts while the engine is down."""
        with self._lock:
            if self._client is None:
                with engine_errors("connecting to the Docker engine"):
                    self._client = self._connect(self.settings.docker_api_timeout_seconds)
            return self._client

    @property
    def streams(self) -> docker.APIClient:
        """The client for attached output, whose read timeout outlasts the longest run: a run
        may print nothing for longer than any one API call may take."""
        settings = self.settings
        with self._lock:
            if self._stream_client is None:
                with engine_errors("connecting to the Docker engine"):
                    timeout = settings.max_timeout_seconds + settings.docker_api_timeout_seconds
                    self._stream_client = self._connect(timeout)
            return self._stream_client

    def _connect(self, timeout: float) -> docker.APIClient:
        client = docker.APIClient(
            version="auto",
            timeout=int(timeout),
            max_pool_size=self.settings.max_concurrent_runs * 2 + 8,
            **kwargs_from_env(environment=self.settings.docker_environment()),
        )
        if client.base_url.startswith("http+docker://"):
            # a local socket: no proxy or .netrc applies, so requests need not look them up
            # on every call (about a tenth of the runner's own CPU for a short run)
            client.trust_env = False
        return client

    def close(self) -> None:
        self.attached.close()
        self.lease.release()  # its removal is queued, and drained with the rest
        if (hosts := self.loopback.volume()) is not None:
            self.cleanup.submit(None, hosts)
        self.cleanup.drain(CLEANUP_DRAIN_SECONDS)
        with self._lock:
            for client in (self._client, self._stream_client):
                if client is not None:
                    client.close()
            self._client = self._stream_client = None

    # ---- runs -------------------------------------------------------------------------------

    def run(self, spec: RunSpec) -> Outcome:
        return self.attached.run(spec)

    def prepare(
        self,
        spec: RunSpec,
        labels: dict[str, str],
        phases: dict[str, float],
        logs: LogConfig | None = None,
    ) -> tuple[str, str | None]:
        """The run's container, created, with its content in place: (container, run volume or
        None). Content goes straight into the container when it can (`content.straight_in`);
        what this made is removed if it fails."""
        if straight_in(spec):
            with timed(phases, "create"):
                container = self.create(spec, self.content.mounts(spec, None), labels, logs)
            with timed(phases, "prepare"), self._removed_on_error(container, None):
                placed = self.content.into_container(spec, container)
            if placed:
                return container, None
            self.remove(container, None)  # the image has one of the paths: a mount hides it
        with timed(phases, "prepare"):
            volume = self.content.volume_for(spec, labels)
        with timed(phases, "create"), self._removed_on_error(None, volume):
            return self.create(spec, self.content.mounts(spec, volume), labels, logs), volume

    @contextlib.contextmanager
    def _removed_on_error(self, container: str | None, volume: str | None) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.remove(container, volume)
            raise

    def cancel(self, run_id: str) -> None:
        with engine_errors("cancelling the run"):
            for found in self.api.containers(filters={"label": f"{RUN_ID}={run_id}"}):
                self.kill(found["Id"])

    # ---- async runs (`runs`) -----------------------------------------------------------

    def launch(self, spec: RunSpec, idempotency_key: str | None) -> None:
        self.detached.launch(spec, idempotency_key)

    def wait_run(self, run_id: str) -> None:
        self.detached.wait(run_id)

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

    def record_run(self, record: RunRecord) -> None:
        self.detached.mark(record)

    def labels(self, run_id: str, role: str, timeout: float, tenant: str) -> dict[str, str]:
        """Labels of what a run makes; taken before anything is made, so the lease holds."""
        self.lease.hold()
        deadline = int(time.time() + timeout + CLEANUP_GRACE_SECONDS)
        return {
            MANAGED: "true",
            RUN_ID: run_id,
            INSTANCE: self.settings.instance_id,
            DEADLINE: str(deadline),
            ROLE: role,
            TENANT: tenant,
            **self.lease.labels(),
        }

    def ensure_image(self, spec: RunSpec) -> None:
        """Pull up front when the policy says always, or when credentials came (so they are
        checked: a cached private image is never handed to a caller without them). Otherwise
        creating the container tells whether the image is there: one engine call fewer."""
        if pulls_first(spec):
            self._pull_for(spec)

    def _pull_for(self, spec: RunSpec) -> None:
        spec.emit("phase", f"pulling {spec.image}")
        pull(self.api, spec, spec.emit)

    def create(
        self,
        spec: RunSpec,
        mounts: list[Mount],
        labels: dict[str, str],
        logs: LogConfig | None = None,
    ) -> str:
        """The container, hardened: no new privileges, a small capability set, limits on
        memory (no extra swap), CPU, processes and open files; never privileged. By default the
        engine keeps no log: output is read from the attach. Without a network, the runtime
        makes its namespace (`loopback`)."""
        hosts = self.loopback.hosts(spec)
        try:
            return self._create(spec, mounts, labels, logs, hosts)
        except InvalidRequest:
            if hosts is None or not self.loopback.lost(hosts):
                raise
        # its hosts file was removed behind the runner's back: made again
        return self._create(spec, mounts, labels, logs, self.loopback.hosts(spec))

    def _create(
        self,
        spec: RunSpec,
        mounts: list[Mount],
        labels: dict[str, str],
        logs: LogConfig | None,
        hosts: Mount | None,
    ) -> str:
        nofile = self.settings.nofile_limit
        host_config = self.api.create_host_config(
            mounts=mounts if hosts is None else [*mounts, hosts],
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids_limit,
            security_opt=["no-new-privileges"] if self.settings.no_new_privileges else [],
            cap_drop=["ALL"],
            cap_add=self.settings.cap_add,
            ulimits=[Ulimit(name="nofile", soft=nofile, hard=nofile)],
            network_mode=spec.network,
            privileged=False,
            runtime=spec.runtime,
            log_config=logs or LogConfig(type=LogConfig.types.NONE),
        )
        create = functools.partial(self._create_container, spec, host_config, labels, hosts)
        try:
            return create()
        except ImageNotFound:
            if spec.pull_policy == "never":
                raise ImageNotFound(
                    f"image: {spec.image!r} is not on the engine and pull_policy is 'never'; "
                    "pull it first or use pull_policy 'missing'",
                    field="image",
                ) from None
            if pulls_first(spec):
                raise
        self._pull_for(spec)
        return create()

    def _create_container(
        self,
        spec: RunSpec,
        host_config: dict[str, object],
        labels: dict[str, str],
        hosts: Mount | None,
    ) -> str:
        with engine_errors("creating the container", create_refused):
            created = self.api.create_container(
                spec.image,
                command=spec.command,
                entrypoint=spec.entrypoint,
                environment=spec.env,
                working_dir=spec.working_dir,
                user=spec.user,
                labels=labels,
                name=f"oneoff-{spec.run_id}",
                host_config=host_config,
                use_config_proxy=False,
                stdin_open=spec.stdin is not None,  # with StdinOnce: end of file after it
                network_disabled=hosts is not None,
            )
        return str(created["Id"])

    def start(self, spec: RunSpec, container: str) -> None:
        if spec.cancelled.is_set():
            raise Cancelled("the run was cancelled before it started")
        with engine_errors("starting the container", start_refused(spec)):
            self.api.start(container)
        if spec.cancelled.is_set():
            self.kill(container)
        spec.emit("phase", "running")

    def kill(self, container: str) -> None:
        try:
            with engine_errors("killing the container"):
                self.api.kill(container)
        except (Conflict, NotFound):
            pass  # already stopped or gone: nothing left to kill

    def feed(self, spec: RunSpec, container: str) -> StdinFeed | None:
        """The run's input, attached to the created container; None when it has none."""
        if spec.stdin is None:
            return None
        return StdinFeed.attach(self.streams, container, spec.stdin)

    def remove(self, container: str | None, volume: str | None) -> bool:
        """Best effort: what cannot be removed now (engine gone) is retried by the reaper."""
        try:
            with engine_errors("removing the run's container and volume"):
                if container is not None:
                    self._ignore_missing(self.api.remove_container, container, force=True, v=True)
                if volume is not None:
                    self._ignore_missing(self.api.remove_volume, volume, force=True)
        except RunnerError as exc:
            log.warning("cleanup deferred to the reaper: %s", exc.message)
            with self._lock:
                self._deferred.add((container, volume))
            return False
        return True

    @staticmethod
    def _ignore_missing(remove: Callable[..., object], name: str, **options: object) -> None:
        try:
            remove(name, **options)
        except docker.errors.NotFound:
            pass  # already gone
        except docker.errors.APIError as exc:
            if exc.status_code != 409 or "already in progress" not in str(exc.explanation):
                raise
            # another runner (its reaper) is removing it

    # ---- volumes, health, listings, reaping ----------------------------------------------------

    def create_volume(self, fill: VolumeFill) -> str:
        existed = exists("volume", self.api.inspect_volume, fill.name)
        if existed and not fill.reuse_existing:
            raise Conflict(
                f"name: a volume named {fill.name!r} exists; choose another name or set "
                "reuse_existing: true to fill it",
                field="name",
            )
        if not existed:
            with engine_errors("creating the volume"):
                self.api.create_volume(
                    fill.name,
                    driver=fill.driver,
                    driver_opts=fill.driver_opts or None,
                    labels=volume_labels(fill, self.settings.instance_id),
                )
        if fill.tar is None:
            return f"volume {fill.name!r} {'exists' if existed else 'created'}, empty"
        try:
            labels = self.labels("volume", "carrier", 60, fill.tenant)
            self.content.fill_volume(fill.name, fill.tar, labels)
        except RunnerError:
            if not existed:
                self.remove(None, fill.name)
            raise
        return f"volume {fill.name!r} {'filled' if existed else 'created and filled'}"

    def volume_state(self, name: str) -> VolumeState | None:
        return inventory.volume_state(self.api, name)

    def list_volumes(self, *, tenant: str) -> list[VolumeInfo]:
        return inventory.volumes(self.api, tenant)

    def remove_volume(self, name: str) -> None:
        inventory.remove_volume(self.api, name)

    def health(self) -> Health:
        return inventory.health(self.api)

    def list_containers(
        self, *, tenant: str, all_states: bool, managed_only: bool
    ) -> list[ContainerInfo]:
        return inventory.containers(
            self.api, tenant=tenant, all_states=all_states, managed_only=managed_only
        )

    def list_images(self, *, reference: str | None) -> list[ImageInfo]:
        return inventory.images(self.api, reference)

    def pull_image(self, spec: PullSpec) -> ImageInfo:
        spec.emit("phase", f"pulling {spec.image}")
        pull(self.api, spec, spec.emit)
        return inventory.image(self.api, spec.image)

    def renew_lease(self) -> None:
        """The lease, and the hosts file of runs without a network: made at the first renewal
        (at startup) so that no run waits for it, and made again if it was removed."""
        self.lease.renew()
        self.loopback.keep()

    def _create_lease(self, name: str, labels: dict[str, str]) -> None:
        inventory.make_own_volume(self.api, name, labels, "the runner's lease")

    def _delete_lease(self, name: str) -> None:
        """In the background: a renewal (taken before a run makes anything) never waits on a
        slow removal."""
        self.cleanup.submit(None, name)

    def reap_orphans(self) -> int:
        with self._lock:
            deferred, self._deferred = self._deferred, set()
        removed = sum(self.remove(container, volume) for container, volume in deferred)
        managed = {"label": f"{MANAGED}=true"}
        with engine_errors("reaping leftovers"):
            listing = reaping.Listing(
                containers=self.api.containers(all=True, filters=managed),
                volumes=self.api.volumes(filters=managed).get("Volumes") or [],
                leases=self.api.volumes(filters={"label": LEASE_SELECTOR}).get("Volumes") or [],
                now=time.time(),
                own=self.lease.owner,
            )
        removed += self.detached.expire(listing.async_containers(), listing.live)
        for container in reaping.containers_to_remove(listing):
            removed += self.remove(container, None)
        for volume in reaping.volumes_to_remove(listing):
            removed += self.remove(None, volume)
        return removed
