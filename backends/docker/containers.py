"""The container operations both kinds of Docker run use (synchronous: `attached`; async:
`runs`), in one class: the image made sure of, labels, the container prepared with its content
(`content`) and created hardened, its input fed, started, killed, removed (now or in the
background: `cleanup`). It holds what they share: the engine clients, this runner's lease and
the hosts file of runs without a network (`loopback`).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
from collections.abc import Callable, Iterator

import docker
import requests
from docker.types import LogConfig, Mount, Ulimit
from docker.utils import kwargs_from_env

from backends.docker import inventory
from backends.docker.cleanup import Cleanup
from backends.docker.content import ContentCopier, straight_in
from backends.docker.errors import (
    DEFAULT_ADDRESS,
    create_refused,
    engine_errors,
    start_refused,
    unreachable,
)
from backends.docker.images import Images, not_on_engine
from backends.docker.loopback import Loopback
from backends.docker.returned import ReturnedPaths
from backends.docker.scratch import Quota, Sampler, ScratchWatch, stopped_for
from backends.docker.stdin import StdinFeed
from backends.docker.targets import check_targets, link_reader
from backends.labels import CARRIER_ROLE, RUN_ID, run_labels
from backends.leases import Lease
from runner.errors import (
    BackendUnavailable,
    Cancelled,
    Conflict,
    ImageNotFound,
    InvalidRequest,
    NotFound,
    RunnerError,
)
from runner.settings import Settings
from runner.spec import RunControl, RunSpec, placed, timed
from runner.tenancy import LOCAL

log = logging.getLogger("oneoff_runner.docker")
LOG_FILES = 4

CLEANUP_WORKERS = 4
CLEANUP_DRAIN_SECONDS = 60
SAMPLER_CLOSE_SECONDS = 10
CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"
"""The `driver-type` `docker info` reports for the containerd image store."""


class Containers:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._client: docker.APIClient | None = None
        self._stream_client: docker.APIClient | None = None
        self._closed = False
        self.content = ContentCopier(lambda: self.api)
        self.returned = ReturnedPaths(lambda: self.api, settings.max_archive_members)
        self.images = Images(lambda: self.api)
        self.lease = Lease(
            settings.instance_id, settings.lease_seconds, self._create_lease, self._delete_lease
        )
        self.loopback = Loopback(lambda: self.api, self.content, self.lease, settings.instance_id)
        self._deferred: set[tuple[str | None, str | None]] = set()
        self.cleanup = Cleanup(self.remove, CLEANUP_WORKERS, settings.max_concurrent_runs * 2)
        self.quota = Quota(self._probe_quota)
        self.sampler = Sampler(lambda: self.api)

    @property
    def api(self) -> docker.APIClient:
        """The engine client, made on first use so the service starts while the engine is down."""
        with self._lock:
            if self._client is None:
                self._client = self._connect(self.settings.docker_api_timeout_seconds)
            return self._client

    @property
    def streams(self) -> docker.APIClient:
        """The client for attached output, whose read timeout outlasts the longest run: a run
        may print nothing for longer than any one API call may take."""
        settings = self.settings
        with self._lock:
            if self._stream_client is None:
                timeout = settings.max_timeout_seconds + settings.docker_api_timeout_seconds
                self._stream_client = self._connect(timeout)
            return self._stream_client

    def _connect(self, timeout: float) -> docker.APIClient:
        """A client of the engine the settings name; `BackendUnavailable`, naming its address,
        when it cannot be reached, or once closed (a thread still at work then, such as a scratch
        sampler, must not open a client nobody closes)."""
        if self._closed:
            raise BackendUnavailable("the runner is shutting down: the engine's clients are closed")
        options = kwargs_from_env(environment=self.settings.docker_environment())
        try:
            client = docker.APIClient(
                version="auto",
                timeout=int(timeout),
                max_pool_size=self.settings.max_concurrent_runs * 2 + 8,
                **options,
            )
        except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
            raise unreachable(exc, options.get("base_url") or DEFAULT_ADDRESS) from exc
        if client.base_url.startswith("http+docker://"):
            # a local socket: no proxy or .netrc applies, so requests need not look them up
            # on every call (about a tenth of the runner's own CPU for a short run)
            client.trust_env = False
        return client

    def close(self) -> None:
        """Release the lease, finish the queued removals, stop sampling, close the clients."""
        self.lease.release()  # its removal is queued, and drained with the rest
        if (hosts := self.loopback.volume()) is not None:
            self.cleanup.submit(None, hosts)
        self.cleanup.drain(CLEANUP_DRAIN_SECONDS)
        self.sampler.close(SAMPLER_CLOSE_SECONDS)
        with self._lock:
            for client in (self._client, self._stream_client):
                if client is not None:
                    client.close()
            self._client = self._stream_client = None
            self._closed = True

    def labels(self, run_id: str, role: str, lasts: float, tenant: str) -> dict[str, str]:
        """Labels of what a run makes (`lasts` seconds, and the cleanup grace), with this
        runner's owner label; taken before anything is made, so the lease holds."""
        self.lease.hold()
        instance = self.settings.instance_id
        return {**run_labels(run_id, instance, role, tenant, lasts), **self.lease.labels()}

    def kept_log(self) -> LogConfig:
        """The engine's `local` log, bounded at `run_log_max_bytes`: where an async run's
        output is read from, by any runner, while it has its container."""
        size = max(self.settings.run_log_max_bytes // LOG_FILES, 1)
        return LogConfig(type="local", config={"max-size": str(size), "max-file": str(LOG_FILES)})

    def ensure_image(self, spec: RunSpec, control: RunControl) -> None:
        """The image per the run's pull policy, and the tenant's to use (`images`)."""
        self.images.ensure(spec, control)

    def prepare(
        self,
        spec: RunSpec,
        control: RunControl,
        labels: dict[str, str],
        phases: dict[str, float],
        logs: LogConfig | None = None,
    ) -> tuple[str, str | None]:
        """The run's container, created, with its content in place: (container, run volume or
        None). Content goes straight into the container when it can (`content.straight_in`:
        then it has no mounts); else the mounts' targets are checked where they will land
        (`targets`). What this made is removed if it fails."""
        if straight_in(spec):
            with timed(phases, "create"):
                container = self.create(spec, control, None, labels, logs)
            with timed(phases, "prepare"), self._removed_on_error(container, None):
                put = self.content.into_container(spec, control.uploads, container)
            if put:
                return container, None
            self.remove(container, None)  # the image has one of the paths: a mount hides it
        with timed(phases, "prepare"):
            volume = self.content.volume_for(spec, control.uploads, labels)
        with timed(phases, "create"), self._removed_on_error(None, volume):
            container = self.create(spec, control, volume, labels, logs)
        with timed(phases, "prepare"), self._removed_on_error(container, volume):
            mounts = placed(spec)
            targets = [mount.path for mount in mounts]
            check_targets(mounts, link_reader(self.api, container, targets))
        return container, volume

    @contextlib.contextmanager
    def _removed_on_error(self, container: str | None, volume: str | None) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.remove(container, volume)
            raise

    def create(
        self,
        spec: RunSpec,
        control: RunControl,
        volume: str | None,
        labels: dict[str, str],
        logs: LogConfig | None = None,
    ) -> str:
        """The container, hardened: no new privileges, a small capability set, limits on
        memory (no extra swap), CPU, processes and open files; never privileged. By default the
        engine keeps no log: output is read from the attach. Without a network, the runtime
        makes its namespace (`loopback`). `volume`: the run volume holding its content."""
        mounts = self.content.mounts(spec, volume)
        hosts = self.loopback.hosts(spec)
        try:
            return self._create(spec, control, mounts, labels, logs, hosts)
        except InvalidRequest:
            if hosts is None or not self.loopback.lost(hosts):
                raise
        # its hosts file was removed behind the runner's back: made again
        return self._create(spec, control, mounts, labels, logs, self.loopback.hosts(spec))

    def _create(
        self,
        spec: RunSpec,
        control: RunControl,
        mounts: list[Mount],
        labels: dict[str, str],
        logs: LogConfig | None,
        hosts: Mount | None,
    ) -> str:
        nofile, scratch = self.settings.nofile_limit, spec.scratch_bytes
        host_config = self.api.create_host_config(
            mounts=mounts if hosts is None else [*mounts, hosts],
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids_limit,
            security_opt=["no-new-privileges"] if self.settings.no_new_privileges else [],
            cap_drop=["ALL"],
            cap_add=self.settings.cap_add,
            ulimits=[
                Ulimit(name="nofile", soft=nofile, hard=nofile),
                Ulimit(name="fsize", soft=scratch, hard=scratch),
            ],
            network_mode=spec.network,
            privileged=False,
            runtime=spec.runtime,
            log_config=logs or LogConfig(type=LogConfig.types.NONE),
            storage_opt={"size": str(scratch)} if self.quota() else None,
        )
        create = functools.partial(self._create_container, spec, host_config, labels, hosts)
        try:
            return create()
        except ImageNotFound:
            if spec.pull_policy == "never":
                raise not_on_engine(spec.image) from None
            if spec.pull_policy == "always":
                raise
        self.images.pull(spec, control)
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

    def feed_stdin(self, spec: RunSpec, container: str) -> StdinFeed | None:
        """The run's input, attached to the created container; None when it has none."""
        if spec.stdin is None:
            return None
        return StdinFeed.attach(self.streams, container, spec.stdin)

    def start(self, spec: RunSpec, control: RunControl, container: str) -> None:
        if control.cancelled.is_set():
            raise Cancelled("the run was cancelled before it started")
        with engine_errors("starting the container", start_refused(spec)):
            self.api.start(container)
        if control.cancelled.is_set():
            self.kill(container)
        control.emit("phase", "running")

    def watch_scratch(
        self, container: str, limit: int, kill: Callable[[str], None]
    ) -> ScratchWatch:
        """Sample the started run's disk, calling `kill(reason)` once it is past its scratch
        limit or a volume it writes is past RUNNER_MAX_VOLUME_BYTES (where the engine's quota
        holds the layer, only the volumes are sampled)."""
        files = self.settings.max_scratch_files
        if self.quota():
            limit = files = sys.maxsize
        return self.sampler.watch(container, limit, files, kill, self.settings.max_volume_bytes)

    def scratch_message(self, kind: str | None, limit: int) -> str | None:
        """What the result says of a run stopped for its disk (`scratch.KINDS`), if it was."""
        if kind is None:
            return None
        settings = self.settings
        return stopped_for(kind, limit, settings.max_scratch_files, settings.max_volume_bytes)

    def _probe_quota(self) -> bool:
        """Whether the engine enforces `storage_opt size`: not on the containerd image store
        (Docker 29's default), which takes it and ignores it; elsewhere, whether a
        never-started container made with it is accepted (then removed). Decided on success,
        not on the refusal's status (a 500 here)."""
        labels = self.labels("quota-probe", CARRIER_ROLE, 60, LOCAL.label)
        try:
            with engine_errors("asking the engine for storage quotas"):
                status = dict(self.api.info().get("DriverStatus") or [])
                if status.get("driver-type") == CONTAINERD_SNAPSHOTTER:
                    log.debug("no storage quota: the containerd image store ignores size")
                    return False
                probe = self.content.carrier(labels, storage_opt={"size": "64m"})
        except RunnerError as exc:
            log.debug("no storage quota: %s", exc.message)
            return False
        self.remove_later(probe, None)
        return True

    def kill(self, container: str) -> None:
        try:
            with engine_errors("killing the container"):
                self.api.kill(container)
        except (Conflict, NotFound):
            pass  # already stopped or gone: nothing left to kill

    def kill_run(self, run_id: str) -> None:
        """Kill whatever container the run has."""
        with engine_errors("cancelling the run"):
            for found in self.api.containers(filters={"label": f"{RUN_ID}={run_id}"}):
                self.kill(found["Id"])

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

    def remove_later(self, container: str | None, volume: str | None) -> None:
        """Remove in the background (`cleanup`): the caller has what it needs already."""
        self.cleanup.submit(container, volume)

    def take_deferred(self) -> set[tuple[str | None, str | None]]:
        """What `remove` could not remove, for the reaper to retry."""
        with self._lock:
            deferred, self._deferred = self._deferred, set()
        return deferred

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

    def _create_lease(self, name: str, labels: dict[str, str]) -> None:
        inventory.make_own_volume(self.api, name, labels, "the runner's lease")

    def _delete_lease(self, name: str) -> None:
        """In the background: a renewal (taken before a run makes anything) never waits on a
        slow removal."""
        self.cleanup.submit(None, name)
