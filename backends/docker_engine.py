"""The Docker engine backend, local or remote (`DOCKER_HOST`), through docker-py's low-level API.

One run: pull per policy → a run volume filled through a never-started carrier container → create
→ start → wait until the deadline → read capped logs → copy response paths out → remove, with the
removal in `finally` so that every way out cleans up. File and directory content reach the run as
bind mounts of paths inside that volume (the engine resolves them on its own host), so `:ro` holds
and nothing depends on the runner's filesystem. docker-py's exceptions become `RunnerError`s in
`_engine_errors` and nowhere else.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import docker
import requests
from docker.types import LogConfig, Mount
from docker.utils import kwargs_from_env

from backends.base import DEADLINE, INSTANCE, LABEL_PREFIX, MANAGED, ROLE, RUN_ID
from runner import archives
from runner.errors import (
    BackendUnavailable,
    Cancelled,
    Conflict,
    ImageNotFound,
    InvalidRequest,
    NotFound,
    RegistryAuthFailed,
    RegistryUnavailable,
    RunnerError,
    VolumeNotFound,
)
from runner.models import ContainerInfo, Health, ImageInfo
from runner.settings import Settings
from runner.spec import MountSpec, Outcome, RegistryAuth, RunSpec, VolumeFill

log = logging.getLogger("oneoff_runner.docker")

CARRIER_IMAGE = "oneoff-runner/carrier"
CARRIER_TAG = "1"
CLEANUP_GRACE_SECONDS = 300
ARCHIVE_CHUNK_BYTES = 1024 * 1024
Translate = Callable[[str], RunnerError | None]


class DockerBackend:
    name = "docker"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._lock = threading.Lock()
        self._client: docker.APIClient | None = None
        self._carrier_ready = False

    @property
    def api(self) -> docker.APIClient:
        """The engine client, made on first use so the service starts while the engine is down."""
        with self._lock:
            if self._client is None:
                with _engine_errors("connecting to the Docker engine"):
                    self._client = self._connect()
            return self._client

    def _connect(self) -> docker.APIClient:
        return docker.APIClient(
            version="auto",
            timeout=int(self._settings.docker_api_timeout_seconds),
            max_pool_size=self._settings.max_concurrent_runs * 2 + 8,
            **kwargs_from_env(environment=self._settings.docker_environment()),
        )

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    # ---- runs -------------------------------------------------------------------------------

    def run(self, spec: RunSpec) -> Outcome:
        phases: dict[str, float] = {}
        with _timed(phases, "pull"):
            self._ensure_image(spec)
        labels = self._labels(spec.run_id, "run", spec.timeout_seconds)
        volume: str | None = None
        container: str | None = None
        try:
            with _timed(phases, "prepare"):
                volume = self._content_volume(spec, labels)
                mounts = self._mounts(spec, volume)
            with _timed(phases, "create"):
                container = self._create(spec, mounts, labels)
            with _timed(phases, "run"):
                exit_code, timed_out = self._start_and_wait(spec, container)
            with _timed(phases, "collect"):
                outcome = self._collect(spec, container, exit_code, timed_out)
        finally:
            with _timed(phases, "cleanup"):
                self._remove(container, volume)
        outcome.phases = phases
        return outcome

    def cancel(self, run_id: str) -> None:
        with _engine_errors("cancelling the run"):
            for found in self.api.containers(filters={"label": f"{RUN_ID}={run_id}"}):
                self._kill(found["Id"])

    def _labels(self, run_id: str, role: str, timeout: float) -> dict[str, str]:
        deadline = int(time.time() + timeout + CLEANUP_GRACE_SECONDS)
        return {
            MANAGED: "true",
            RUN_ID: run_id,
            INSTANCE: self._settings.instance_id,
            DEADLINE: str(deadline),
            ROLE: role,
        }

    def _ensure_image(self, spec: RunSpec) -> None:
        """Pull per policy. With credentials the pull always happens, so they are checked."""
        if spec.pull_policy != "always" and spec.auth is None and self._image_present(spec.image):
            return
        if spec.pull_policy == "never":
            raise ImageNotFound(
                f"image: {spec.image!r} is not on the engine and pull_policy is 'never'; "
                "pull it first or use pull_policy 'missing'",
                field="image",
            )
        self._pull(spec.image, spec.auth)

    def _image_present(self, image: str) -> bool:
        try:
            with _engine_errors("inspecting the image"):
                self.api.inspect_image(image)
        except NotFound:
            return False
        return True

    def _pull(self, image: str, auth: RegistryAuth | None) -> None:
        auth_config = None
        if auth is not None:
            auth_config = {key: value for key, value in vars(auth).items() if value is not None}

        def translate(message: str) -> RunnerError:
            if auth is not None:
                message = message.replace(auth.password, "***")
            return _pull_failure(message, image, with_auth=auth is not None)

        with _engine_errors(f"pulling {image!r}", translate):
            events = self.api.pull(image, stream=True, decode=True, auth_config=auth_config)
            for event in events:
                if "error" in event:
                    raise translate(str(event["error"]))

    def _content_volume(self, spec: RunSpec, labels: dict[str, str]) -> str | None:
        """Create and fill the run's volume with every file and directory mount's content.

        Entry `<n>` of the volume holds mount `n`: a file, or a directory the tar.gz unpacks into.
        """
        entries: list[tuple[str, bytes | None, int]] = []
        unpack: list[tuple[str, bytes]] = []
        empty_dir_mode = 0o777 if spec.user not in (None, "", "root", "0", "0:0") else 0o755
        for index, mount in enumerate(spec.mounts):
            if mount.kind == "file":
                entries.append((str(index), mount.content or b"", mount.mode))
            elif mount.kind == "directory":
                entries.append((str(index), None, empty_dir_mode))
                if mount.content:
                    unpack.append((str(index), mount.content))
        if not entries:
            return None
        name = f"oneoff-{spec.run_id}"
        with _engine_errors("creating the run's volume"):
            self.api.create_volume(name, driver="local", labels=labels)
        self._fill_volume(name, [("", archives.tar_of(entries)), *unpack], labels)
        return name

    def _fill_volume(
        self, volume: str, parts: list[tuple[str, bytes]], labels: dict[str, str]
    ) -> None:
        """Unpack tars into `volume` through a container that is created but never started."""
        self._ensure_carrier_image()
        with _engine_errors("copying content into the volume", _content_refused):
            carrier = self.api.create_container(
                f"{CARRIER_IMAGE}:{CARRIER_TAG}",
                command=["/carrier-is-never-started"],
                labels={**labels, ROLE: "carrier"},
                network_disabled=True,
                use_config_proxy=False,
                host_config=self.api.create_host_config(
                    mounts=[Mount(target="/v", source=volume, type="volume")]
                ),
            )["Id"]
            try:
                for subpath, data in parts:
                    self.api.put_archive(carrier, f"/v/{subpath}".rstrip("/"), data)
            finally:
                self.api.remove_container(carrier, force=True)

    def _ensure_carrier_image(self) -> None:
        """Import, once, the tiny local image carriers are made from: no registry needed."""
        if self._carrier_ready:
            return
        with _engine_errors("preparing the carrier image"):
            try:
                self.api.inspect_image(f"{CARRIER_IMAGE}:{CARRIER_TAG}")
            except docker.errors.ImageNotFound:
                data = archives.tar_of([("v", None, 0o755)])
                self.api.import_image_from_data(data, repository=CARRIER_IMAGE, tag=CARRIER_TAG)
        self._carrier_ready = True

    def _mounts(self, spec: RunSpec, volume: str | None) -> list[Mount]:
        root = None
        if volume is not None:
            with _engine_errors("inspecting the run's volume"):
                root = self.api.inspect_volume(volume)["Mountpoint"]
        return [self._mount(index, mount, root) for index, mount in enumerate(spec.mounts)]

    def _mount(self, index: int, mount: MountSpec, root: str | None) -> Mount:
        if mount.kind in ("file", "directory"):
            return Mount(mount.path, f"{root}/{index}", type="bind", read_only=mount.read_only)
        if mount.kind == "volume":
            self._require_volume(mount)
            return Mount(mount.path, mount.name, type="volume", read_only=mount.read_only)
        return Mount(mount.path, mount.host_path, type="bind", read_only=mount.read_only)

    def _require_volume(self, mount: MountSpec) -> None:
        """The engine would silently create a missing named volume; refuse instead."""
        try:
            with _engine_errors("inspecting the named volume"):
                self.api.inspect_volume(str(mount.name))
        except NotFound:
            raise VolumeNotFound(
                f"volumes[{mount.key!r}].name: volume {mount.name!r} does not exist; "
                "create it first (POST /volume)",
                field=f"volumes[{mount.key!r}].name",
            ) from None

    def _create(self, spec: RunSpec, mounts: list[Mount], labels: dict[str, str]) -> str:
        host_config = self.api.create_host_config(
            mounts=mounts,
            mem_limit=spec.memory_bytes,
            memswap_limit=spec.memory_bytes,
            nano_cpus=spec.nano_cpus,
            pids_limit=spec.pids_limit,
            security_opt=["no-new-privileges"],
            network_mode=spec.network,
            privileged=False,
            log_config=LogConfig(type=LogConfig.types.JSON),
        )
        with _engine_errors("creating the container", _create_refused):
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
            )
        return str(created["Id"])

    def _start_and_wait(self, spec: RunSpec, container: str) -> tuple[int | None, bool]:
        """Start and wait until exit or the deadline; returns (exit code, timed out).

        `wait(timeout=)` is an HTTP read timeout, not a deadline: on expiry we kill, then wait
        again for the exit status.
        """
        if spec.cancelled.is_set():
            raise Cancelled("the run was cancelled before it started")
        with _engine_errors("starting the container", _start_refused(spec)):
            self.api.start(container)
        if spec.cancelled.is_set():
            self._kill(container)
        started = time.monotonic()
        try:
            with _engine_errors("waiting for the container"):
                status = self.api.wait(container, timeout=spec.timeout_seconds)  # type: ignore[arg-type]
            return status.get("StatusCode"), False
        except BackendUnavailable:
            if time.monotonic() - started < spec.timeout_seconds:
                raise
        self._kill(container)
        with _engine_errors("waiting for the killed container"):
            status = self.api.wait(container, timeout=30)
        return status.get("StatusCode"), True

    def _kill(self, container: str) -> None:
        try:
            with _engine_errors("killing the container"):
                self.api.kill(container)
        except (Conflict, NotFound):
            pass  # already stopped or gone: nothing left to kill

    def _collect(
        self, spec: RunSpec, container: str, exit_code: int | None, timed_out: bool
    ) -> Outcome:
        if spec.cancelled.is_set():
            raise Cancelled("the run was cancelled")
        stdout, stdout_cut = self._output(container, "stdout", spec.max_output_bytes)
        stderr, stderr_cut = self._output(container, "stderr", spec.max_output_bytes)
        with _engine_errors("inspecting the container"):
            state = self.api.inspect_container(container)["State"]
        return Outcome(
            exit_code=exit_code,
            stdout=stdout,
            stderr=stderr,
            stdout_truncated=stdout_cut,
            stderr_truncated=stderr_cut,
            timed_out=timed_out,
            oom_killed=bool(state.get("OOMKilled")),
            returned=self._returned(spec, container),
        )

    def _output(self, container: str, stream: str, cap: int) -> tuple[bytes, bool]:
        """At most `cap` bytes of one stream; the rest is never read, so memory stays bounded."""
        with _engine_errors(f"reading the container's {stream}"):
            chunks = self.api.logs(
                container, stdout=stream == "stdout", stderr=stream == "stderr", stream=True
            )
            try:
                return _read_capped(chunks, cap)
            finally:
                # docker-py's own close() shuts the socket under a live response (and fails
                # over SSH); closing the HTTP response releases it cleanly on every transport.
                chunks._response.close()  # type: ignore[attr-defined]

    def _returned(self, spec: RunSpec, container: str) -> dict[str, tuple[str, bytes]]:
        returned: dict[str, tuple[str, bytes]] = {}
        budget = spec.max_response_bytes
        for mount in spec.mounts:
            if not mount.response:
                continue
            field = f"volumes[{mount.key!r}]"
            with (
                _engine_errors(f"copying {mount.path} out of the container"),
                self._archive(container, mount.path) as chunks,
            ):
                reader = archives.ChunkReader(chunks, budget, field)
                if mount.kind == "file":
                    content = archives.file_from_tar_stream(reader)
                else:
                    dirname = mount.path.rsplit("/", 1)[-1]
                    content = archives.directory_tar_gz_from_stream(reader, dirname)
            budget -= len(content)
            returned[mount.path] = (mount.kind, content)
        return returned

    @contextmanager
    def _archive(self, container: str, path: str) -> Iterator[Iterator[bytes]]:
        """The engine's tar of `path`, as chunks; the HTTP response is closed on exit.

        docker-py's `get_archive` hands out a generator that leaves the response open when it
        is not drained (we stop at the size limit), and the engine then will not remove the
        container until the stream ends; so the request is made here, on the client's session.
        """
        url = f"{self.api.base_url}/v{self.api.api_version}/containers/{container}/archive"
        response = self.api.get(url, params={"path": path}, stream=True)
        try:
            try:
                response.raise_for_status()
            except requests.exceptions.HTTPError as exc:
                raise docker.errors.create_api_error_from_http_exception(exc) from exc
            yield response.iter_content(ARCHIVE_CHUNK_BYTES)
        finally:
            response.close()

    def _remove(self, container: str | None, volume: str | None) -> None:
        """Best effort: what cannot be removed now (engine gone) the reaper removes later."""
        try:
            with _engine_errors("removing the run's container and volume"):
                if container is not None:
                    self.api.remove_container(container, force=True, v=True)
                if volume is not None:
                    self.api.remove_volume(volume, force=True)
        except RunnerError as exc:
            log.warning("cleanup deferred to the reaper: %s", exc.message)

    # ---- volumes, health, listings, reaping ----------------------------------------------------

    def create_volume(self, fill: VolumeFill) -> str:
        existed = self._volume_exists(fill.name)
        if existed and not fill.reuse_existing:
            raise Conflict(
                f"name: a volume named {fill.name!r} exists; choose another name or set "
                "reuse_existing: true to fill it",
                field="name",
            )
        if not existed:
            with _engine_errors("creating the volume"):
                self.api.create_volume(
                    fill.name,
                    driver=fill.driver,
                    driver_opts=fill.driver_opts or None,
                    labels={**fill.labels, f"{LABEL_PREFIX}.created-by": "volume-api"},
                )
        if fill.tar is None:
            return f"volume {fill.name!r} {'exists' if existed else 'created'}, empty"
        try:
            self._fill_volume(fill.name, [("", fill.tar)], self._labels("volume", "carrier", 60))
        except RunnerError:
            if not existed:
                self._remove(None, fill.name)
            raise
        return f"volume {fill.name!r} {'filled' if existed else 'created and filled'}"

    def _volume_exists(self, name: str) -> bool:
        try:
            with _engine_errors("inspecting the volume"):
                self.api.inspect_volume(name)
        except NotFound:
            return False
        return True

    def health(self) -> Health:
        with _engine_errors("checking the engine"):
            version = self.api.version()
        return Health(
            backend=self.name,
            version=str(version.get("Version")),
            details={
                "api_version": str(version.get("ApiVersion")),
                "os": str(version.get("Os")),
                "arch": str(version.get("Arch")),
            },
        )

    def list_containers(self, *, all_states: bool, managed_only: bool) -> list[ContainerInfo]:
        filters = {"label": f"{MANAGED}=true"} if managed_only else None
        with _engine_errors("listing containers"):
            found = self.api.containers(all=all_states, filters=filters)
        return [
            ContainerInfo(
                id=item["Id"][:12],
                name=(item.get("Names") or ["/"])[0].lstrip("/"),
                image=item.get("Image", ""),
                status=item.get("Status") or item.get("State", ""),
                run_id=(item.get("Labels") or {}).get(RUN_ID),
            )
            for item in found
        ]

    def list_images(self, *, reference: str | None) -> list[ImageInfo]:
        with _engine_errors("listing images"):
            found = self.api.images(name=reference)
        return [
            ImageInfo(id=item["Id"], tags=item.get("RepoTags") or [], size=item.get("Size", 0))
            for item in found
        ]

    def reap_orphans(self, *, startup: bool) -> int:
        now = time.time()

        def orphaned(labels: dict[str, str] | None) -> bool:
            labels = labels or {}
            if startup and labels.get(INSTANCE) == self._settings.instance_id:
                return True
            return float(labels.get(DEADLINE, "inf")) < now

        removed = 0
        with _engine_errors("reaping leftovers"):
            for item in self.api.containers(all=True, filters={"label": f"{MANAGED}=true"}):
                if orphaned(item.get("Labels")):
                    self._remove(item["Id"], None)
                    removed += 1
            volumes = self.api.volumes(filters={"label": f"{MANAGED}=true"}).get("Volumes") or []
            for item in volumes:
                if orphaned(item.get("Labels")):
                    self._remove(None, item["Name"])
                    removed += 1
        return removed


def _read_capped(chunks: Iterator[bytes], cap: int) -> tuple[bytes, bool]:
    buffer = bytearray()
    for chunk in chunks:
        room = cap - len(buffer)
        if len(chunk) > room:
            buffer += chunk[:room]
            return bytes(buffer), True
        buffer += chunk
    return bytes(buffer), False


@contextmanager
def _timed(phases: dict[str, float], name: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        phases[name] = round(time.perf_counter() - started, 4)


@contextmanager
def _engine_errors(action: str, translate: Translate | None = None) -> Iterator[None]:
    """The one boundary where docker-py's and requests' exceptions become `RunnerError`s."""
    try:
        yield
    except RunnerError:
        raise
    except docker.errors.APIError as exc:
        message = _explanation(exc)
        specific = translate(message) if translate else None
        if specific is not None:
            raise specific from exc
        status = exc.status_code or 500
        if status == 404:
            raise NotFound(f"{action}: {message}") from exc
        if status == 409:
            raise Conflict(f"{action}: {message}") from exc
        raise RunnerError(f"the Docker engine failed while {action}: {message}") from exc
    except (requests.exceptions.RequestException, docker.errors.DockerException) as exc:
        raise BackendUnavailable(
            f"cannot reach the Docker engine while {action} ({type(exc).__name__}); check that "
            "dockerd runs and DOCKER_HOST points at it"
        ) from exc


def _explanation(exc: docker.errors.APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode("utf-8", "replace")
    return str(explanation or exc)


_AUTH_WORDS = (
    "unauthorized",
    "authentication required",
    "no basic auth credentials",
    "incorrect username or password",
    "access denied",
)
_UNREACHABLE_WORDS = (
    "no such host",
    "connection refused",
    "i/o timeout",
    "dial tcp",
    "timeout",
    "tls:",
    "server gave http response",
    "network is unreachable",
)


def _pull_failure(message: str, image: str, *, with_auth: bool) -> RunnerError:
    """One clear error per way a registry says no; the credentials are never part of it."""
    low = message.lower()
    if "pull access denied" in low or "repository does not exist" in low:
        if with_auth:
            return RegistryAuthFailed(
                f"auth_config: the registry refused access to {image!r}: the credentials were "
                "rejected or the image does not exist; check the image name and the credentials",
                field="auth_config",
            )
        return ImageNotFound(
            f"image: {image!r} was not found, or is private: check the name, or pass "
            "auth_config with credentials for its registry",
            field="image",
        )
    if any(word in low for word in _AUTH_WORDS):
        if with_auth:
            return RegistryAuthFailed(
                f"auth_config: the registry rejected the credentials for {image!r}; check "
                "auth_config.username and auth_config.password (and serveraddress)",
                field="auth_config",
            )
        return RegistryAuthFailed(
            f"auth_config: the registry of {image!r} requires credentials; pass auth_config "
            "with a username and password",
            field="auth_config",
        )
    if "manifest unknown" in low or "not found" in low or "manifest for" in low:
        return ImageNotFound(
            f"image: {image!r} was not found in its registry; check the name and tag",
            field="image",
        )
    if any(word in low for word in _UNREACHABLE_WORDS):
        return RegistryUnavailable(
            f"image: the registry of {image!r} could not be reached ({message}); check the "
            "registry address, or use a local image with pull_policy 'missing' or 'never'",
            field="image",
        )
    if "invalid reference format" in low:
        return InvalidRequest(f"image: {image!r} is not a valid image reference", field="image")
    return RegistryUnavailable(f"image: pulling {image!r} failed: {message}", field="image")


def _content_refused(message: str) -> RunnerError | None:
    return InvalidRequest(
        f"volumes: the engine refused the content ({message}); check the archives' paths",
        field="volumes",
    )


def _missing_network(message: str) -> RunnerError | None:
    low = message.lower()
    if "network" in low and "not found" in low:
        return NotFound(f"network: {message}; name an existing network", field="network")
    return None


def _create_refused(message: str) -> RunnerError | None:
    low = message.lower()
    if network_error := _missing_network(message):
        return network_error
    if "bind source path does not exist" in low:
        return InvalidRequest(
            f"volumes: {message}; host_path must exist on the engine's host", field="volumes"
        )
    if "invalid reference format" in low:
        return InvalidRequest(f"image: {message}", field="image")
    return None


def _start_refused(spec: RunSpec) -> Translate:
    argv_field = "entrypoint" if spec.entrypoint else "command"

    def translate(message: str) -> RunnerError | None:
        low = message.lower()
        if network_error := _missing_network(message):
            return network_error
        if "unable to find user" in low or "no matching entries in passwd" in low:
            return InvalidRequest(
                f"user: {spec.user!r} does not exist in the image ({message}); use a numeric "
                "uid[:gid] or a user the image defines",
                field="user",
            )
        if "executable file not found" in low or "no such file or directory" in low:
            return InvalidRequest(
                f"{argv_field}: the program to run was not found in the image ({message}); "
                "check the path, or give an absolute one",
                field=argv_field,
            )
        if "permission denied" in low:
            return InvalidRequest(
                f"{argv_field}: the program could not be executed ({message}); a script "
                'needs mode "0755" and a shebang line',
                field=argv_field,
            )
        return InvalidRequest(f"the container could not start: {message}")

    return translate
