"""Requests resolved against the operator's settings and the caller's tenant: defaults, maxima,
allow-lists, content, named volumes.

The one place that decides what a request may do. It decodes and checks content, and asks the
backend about named volumes, so it is blocking work: the service calls it off the event loop.
"""

from __future__ import annotations

import fnmatch
import posixpath
import time
from collections.abc import Callable
from typing import Any

from runner.archives import Budget, check_tar_gz, decode_base64, repacked, single_top_folder
from runner.engine_models import CreateVolumeRequest, ImageInfo, PullImageRequest
from runner.errors import (
    Conflict,
    InvalidRequest,
    PayloadTooLarge,
    PolicyRefused,
    VolumeNotFound,
)
from runner.models import AuthConfig, MountPoint, RunRequest, VolumeSpec
from runner.private_images import Grants, usable_images
from runner.registries import check_registry, names_registry
from runner.settings import Settings
from runner.sizes import parse_size
from runner.spec import (
    Arriving,
    MountSpec,
    PullSpec,
    RegistryAuth,
    RunSpec,
    VolumeFill,
    VolumeState,
    placed,
)
from runner.tenancy import Tenant
from runner.uploads import Uploads, checked

NEVER_NETWORKS = ("host",)
NEVER_HOST_PATHS = (
    "/var/run/docker.sock",
    "/run/docker.sock",
    "/run/docker",
    "/var/run/docker",
    "/run/containerd",
    "/var/run/containerd",
    "/var/lib/docker",
    "/var/lib/containerd",
    "/proc",
    "/sys",
    "/dev",
)
"""The engine's sockets and state (every tenant's volumes), and the kernel's views of the host
(`/proc/1/root` is the host's root): never mounted, whatever the operator allows."""
NEVER_TARGETS = ("/dev", "/proc", "/sys")
"""Container paths no mount may be at or under: the kernel's and the runtime's own filesystems
(memory-backed `/dev/shm` and `/dev/mqueue`, sysfs, cgroupfs, procfs). A volume there swaps what
the memory limit bounds for host disk that nothing bounds, or replaces what the kernel shows."""
RUNTIME_FILES = ("/etc/hosts", "/etc/hostname", "/etc/resolv.conf")
"""Files the engine writes into every container: a run may bring its own file there, never a
directory or volume (the engine would refuse it only when the container starts)."""

SHARED_KINDS = ("volume", "host")
"""Mounts whose content a run does not own alone: other runs, or the host, write there."""

VolumeLookup = Callable[[str], VolumeState | None]
"""The backend's answer about a named volume (`Backend.volume_state`)."""


def build_run_spec(
    request: RunRequest,
    settings: Settings,
    run_id: str,
    tenant: Tenant,
    volumes: VolumeLookup,
    uploads: Uploads | None = None,
) -> tuple[RunSpec, Arriving | None]:
    """The backend's instructions for `request` made by `tenant`, or the error that refuses it;
    with them, its content parts still to arrive (`uploads`), checked as the backend reads
    them, in the same budget."""
    _allowed_image(request.image, settings)
    if request.pull_policy != "never" or request.auth_config is not None:
        check_registry(request.image, settings.allowed_registries)  # the engine may contact it
    budget = Budget(settings.max_extracted_bytes, settings.max_archive_members)
    mounts = [_mount(key, spec, settings, budget) for key, spec in request.volumes.items()]
    for mount in mounts:
        if mount.kind == "volume":
            _allowed_named_volume(mount, tenant, volumes(str(mount.name)), settings)
    spec = RunSpec(
        run_id=run_id,
        tenant=tenant.label,
        image=request.image,
        command=request.argv("command"),
        entrypoint=request.argv("entrypoint"),
        env=request.env_strings(),
        working_dir=request.working_dir,
        user=request.user,
        pull_policy=request.pull_policy,
        auth=_auth(request.auth_config),
        mounts=mounts,
        **_limits(request, settings),
        pids_limit=settings.pids_limit,
        network=_network(request.network, settings),
        max_output_bytes=settings.max_output_bytes,
        max_response_bytes=settings.max_response_bytes,
        runtime=_runtime(request.runtime, settings),
        stdin=_stdin(request.stdin, settings),
    )
    shared = [(mount, mount.path) for mount in mounts if mount.kind in SHARED_KINDS]
    for mount in placed(spec):
        outside_shared(mount, mount.path, shared)
    if uploads is None:
        return spec, None
    return spec, checked(uploads, spec.mounts, budget, settings.max_archive_bytes)


def _limits(request: RunRequest, settings: Settings) -> dict[str, Any]:
    """Timeout, memory, CPUs and disk: the request's, or the operator's default, within the
    maxima."""
    memory = parse_size(request.memory) if request.memory else None
    cpus = _within(
        "cpus", request.cpus, settings.default_cpus, settings.max_cpus, "RUNNER_MAX_CPUS"
    )
    scratch = parse_size(request.scratch) if request.scratch else None
    return {
        "scratch_bytes": int(
            _within(
                "scratch",
                scratch,
                settings.default_scratch_bytes,
                settings.max_scratch_bytes,
                "RUNNER_MAX_SCRATCH_BYTES",
            )
        ),
        "timeout_seconds": _within(
            "timeout_seconds",
            request.timeout_seconds,
            settings.default_timeout_seconds,
            settings.max_timeout_seconds,
            "RUNNER_MAX_TIMEOUT_SECONDS",
        ),
        "memory_bytes": int(
            _within(
                "memory",
                memory,
                parse_size(settings.default_memory),
                parse_size(settings.max_memory),
                "RUNNER_MAX_MEMORY",
            )
        ),
        "nano_cpus": int(cpus * 1e9),
    }


def build_volume_fill(
    request: CreateVolumeRequest, settings: Settings, tenant: Tenant, volumes: VolumeLookup
) -> VolumeFill:
    """Check the driver and its options, and that an existing volume of that name is the
    tenant's; decode and check the content, stripping a single top-level folder as documented."""
    _allowed_driver(request, settings)
    existing = volumes(request.name)
    if existing is not None and existing.tenant != tenant.label:
        raise Conflict(
            f"name: a volume named {request.name!r} exists and is not one you created; "
            "choose another name",
            field="name",
        )
    tar = None
    if request.content:
        data = decode_base64(request.content, "content", settings.max_archive_bytes)
        budget = Budget(settings.max_extracted_bytes, settings.max_archive_members)
        tar = repacked(data, single_top_folder(check_tar_gz(data, "content", budget)))
    return VolumeFill(
        name=request.name,
        tar=tar,
        driver=request.driver,
        driver_opts=request.driver_opts,
        labels=request.labels,
        reuse_existing=request.reuse_existing,
        tenant=tenant.label,
        expires_at=_expiry(request, settings),
    )


def _expiry(request: CreateVolumeRequest, settings: Settings) -> float | None:
    """When a volume asked to live `ttl_seconds` from now expires; at most the operator's
    maximum away."""
    if request.ttl_seconds is None:
        return None
    bound = settings.max_volume_ttl_seconds
    ttl = _within("ttl_seconds", request.ttl_seconds, 0, bound, "RUNNER_MAX_VOLUME_TTL_SECONDS")
    return time.time() + ttl


def require_own_volume(name: str, tenant: Tenant, volumes: VolumeLookup) -> None:
    """A volume the tenant created through the API, or `VolumeNotFound`: whether another
    tenant's or made some other way, the answer is the same, and confirms nothing."""
    state = volumes(name)
    if state is None or state.tenant != tenant.label:
        raise VolumeNotFound(
            f"name: no volume {name!r} among those you created (POST /volume); list yours "
            "with GET /volumes",
            field="name",
        )


def _allowed_driver(request: CreateVolumeRequest, settings: Settings) -> None:
    """Drivers and options from the operator's lists only; options that bind a host path are
    refused whatever the lists say (a "named volume" would then be a host mount)."""
    if request.driver is not None and request.driver not in settings.allowed_volume_drivers:
        raise PolicyRefused(
            f"driver: {request.driver!r} is not allowed by the operator "
            f"(RUNNER_ALLOWED_VOLUME_DRIVERS: {', '.join(settings.allowed_volume_drivers)})",
            field="driver",
        )
    if _binds(request.driver_opts):
        raise PolicyRefused(
            "driver_opts: a volume that binds a host path (type none, o bind, device) is "
            "never created; use host volumes, which the operator controls",
            field="driver_opts",
        )
    for option, value in request.driver_opts.items():
        field = f"driver_opts.{option}"
        if value not in settings.allowed_volume_options.get(option, []):
            raise PolicyRefused(
                f"{field}: {value!r} is not allowed by the operator "
                "(RUNNER_ALLOWED_VOLUME_OPTIONS)",
                field=field,
            )


def _binds(options: dict[str, str]) -> bool:
    return (
        options.get("type") in ("none", "bind")
        or "bind" in options.get("o", "")
        or options.get("device", "").startswith("/")
    )


def _allowed_named_volume(
    mount: MountSpec, tenant: Tenant, state: VolumeState | None, settings: Settings
) -> None:
    """A tenant's own volumes (made through POST /volume) and the operator's allowed names,
    and never another tenant's, one the runner made for itself, or one that binds the engine's
    socket or state. The refusal of a name not allowed is the same whether the volume exists or
    not, and whoever owns it: it confirms nothing."""
    field = f"volumes[{mount.key!r}].name"
    name = str(mount.name)
    if state is not None and state.runner_made:
        raise PolicyRefused(
            f"{field}: {name!r} is one the runner made for itself (a run's content, its lease "
            "or its hosts file), which runs never mount whatever RUNNER_ALLOWED_VOLUMES says; "
            "create your own with POST /volume",
            field=field,
        )
    own = state is not None and state.tenant == tenant.label
    a_tenants = state is not None and state.tenant is not None  # made through POST /volume
    by_name = any(fnmatch.fnmatchcase(name, pattern) for pattern in settings.allowed_volumes)
    if not own and (a_tenants or not by_name):
        raise PolicyRefused(
            f"{field}: {name!r} is not a volume you created (POST /volume) nor one the operator "
            "allows (RUNNER_ALLOWED_VOLUMES); create your own with POST /volume",
            field=field,
        )
    if state is not None and state.host_path is not None:
        _refuse_never_paths(field, state.host_path, settings)


def _within(field: str, asked: float | None, default: float, maximum: float, env: str) -> float:
    if asked is None:
        return default
    if asked > maximum:
        raise PolicyRefused(
            f"{field}: {asked:g} is above the operator's maximum of {maximum:g} ({env}); "
            "ask for less",
            field=field,
        )
    return asked


def runnable_images(
    images: list[ImageInfo], grants: Grants, tenant: Tenant, settings: Settings
) -> list[ImageInfo]:
    """What a tenant's image listing shows: the images it may run, by a tag (only those tags
    are shown) or by id, less the private ones it holds no grant for (`runner.private_images`);
    an operator sees them all."""
    if tenant.operator:
        return images
    shown = []
    for image in usable_images(images, grants, tenant.label):
        tags = [tag for tag in image.tags if image_allowed(tag, settings)]
        if tags or image_allowed(image.id, settings):
            shown.append(image.model_copy(update={"tags": tags}))
    return shown


def image_allowed(image: str, settings: Settings) -> bool:
    """Glob patterns match the reference as written and as the engine reads it
    (`python:3` is `docker.io/library/python:3`); a pattern ending in / is a registry prefix."""
    candidates = {image, _qualified(image)}
    return any(
        candidate.startswith(pattern)
        if pattern.endswith("/")
        else fnmatch.fnmatchcase(candidate, pattern)
        for pattern in settings.allowed_images
        for candidate in candidates
    )


def _allowed_image(image: str, settings: Settings) -> None:
    if image_allowed(image, settings):
        return
    raise PolicyRefused(
        f"image: {image!r} is not allowed by the operator (RUNNER_ALLOWED_IMAGES: "
        f"{', '.join(settings.allowed_images) or 'none'})",
        field="image",
    )


def _qualified(image: str) -> str:
    if names_registry(image):
        return image
    return f"docker.io/{image}" if "/" in image else f"docker.io/library/{image}"


def _network(asked: str | None, settings: Settings) -> str:
    network = asked or settings.default_network
    if network in NEVER_NETWORKS or network.startswith("container:"):
        raise PolicyRefused(
            f"network: {network!r} would share a namespace with the host or another "
            "container; that is never allowed",
            field="network",
        )
    if asked not in (None, "none") and network not in settings.allowed_networks:
        raise PolicyRefused(
            f"network: {network!r} is not allowed by the operator (RUNNER_ALLOWED_NETWORKS: "
            f"{', '.join(settings.allowed_networks) or 'none'})",
            field="network",
        )
    return network


def _runtime(asked: str | None, settings: Settings) -> str | None:
    """The operator's runtime, or one the operator lets requests choose."""
    if asked is None or asked == settings.runtime or asked in settings.allowed_runtimes:
        return asked or settings.runtime
    allowed = [name for name in (settings.runtime, *settings.allowed_runtimes) if name]
    raise PolicyRefused(
        f"runtime: {asked!r} is not allowed by the operator (RUNNER_ALLOWED_RUNTIMES: "
        f"{', '.join(allowed) or 'none'}); leave runtime out to use the default",
        field="runtime",
    )


def _stdin(text: str | None, settings: Settings) -> bytes | None:
    """The input as UTF-8, within the cap of one content field: it is held in memory."""
    if text is None:
        return None
    data = text.encode()
    if len(data) > settings.max_archive_bytes:
        raise PayloadTooLarge(
            f"stdin: {len(data)} bytes is over the operator's limit of "
            f"{settings.max_archive_bytes} bytes (RUNNER_MAX_ARCHIVE_BYTES); send less input",
            field="stdin",
        )
    return data


def build_pull_spec(request: PullImageRequest, settings: Settings, tenant: Tenant) -> PullSpec:
    """An image pull under the same policy as a run's: the image allow-list, the caller's
    credentials for this pull only."""
    _allowed_image(request.image, settings)
    check_registry(request.image, settings.allowed_registries)
    return PullSpec(image=request.image, auth=_auth(request.auth_config), tenant=tenant.label)


def _auth(auth: AuthConfig | None) -> RegistryAuth | None:
    if auth is None:
        return None
    return RegistryAuth(
        username=auth.username,
        password=auth.password.get_secret_value(),
        email=auth.email,
        serveraddress=auth.serveraddress,
    )


def _mount(key: str, spec: VolumeSpec, settings: Settings, budget: Budget) -> MountSpec:
    point = MountPoint.parse(key)
    _allowed_target(key, point.path, spec.type)
    field = f"volumes[{key!r}].content"
    content = None
    if spec.content or (spec.type == "file" and spec.content is not None):
        content = decode_base64(spec.content, field, settings.max_archive_bytes)
        if spec.type == "directory":
            check_tar_gz(content, field, budget)
        else:
            budget.spend(len(content), field)
    if spec.type == "host":
        _allowed_host_path(key, spec.host_path or "", settings)
    return MountSpec(
        key=key,
        path=point.path,
        read_only=point.read_only,
        kind=spec.type,
        content=content,
        mode=int(spec.mode, 8) if spec.mode else 0o644,
        response=spec.response,
        name=spec.name,
        host_path=_normal(spec.host_path) if spec.host_path else None,
    )


def _allowed_target(key: str, path: str, kind: str) -> None:
    """Never over the kernel's or runtime's filesystems; at the engine's own files, a file only."""
    field = f"volumes[{key!r}]"
    for never in NEVER_TARGETS:
        if within_path(path, never):
            raise InvalidRequest(
                f"{field}: {path} is at or under {never}, which the kernel and the runtime "
                "provide (there a volume would replace memory-backed or kernel filesystems with "
                "host disk); mount it elsewhere",
                field=field,
            )
    if path in RUNTIME_FILES and kind != "file":
        raise InvalidRequest(
            f"{field}: {path} is a file the engine writes into every container; a run may "
            f"bring its own there as a `file` volume, not a {kind}",
            field=field,
        )


def outside_shared(mount: MountSpec, path: str, shared: list[tuple[MountSpec, str]]) -> None:
    """Refuse `mount`, reaching `path`, inside another of `shared` (a named volume or host
    path, where it lands): a symlink made there before the run starts could move it."""
    field = f"volumes[{mount.key!r}]"
    for other, landing in shared:
        if other is not mount and path != landing and within_path(path, landing):
            what = "named volume" if other.kind == "volume" else "host path"
            how = "is" if path == mount.path else f"leads through a symlink to {path},"
            raise InvalidRequest(
                f"{field}: {mount.path} {how} inside the {what} mounted at {other.path}, whose "
                "content may change before the run starts (a symlink there would move this "
                f"mount); mount it beside the {what}, not inside it",
                field=field,
            )


def _allowed_host_path(key: str, host_path: str, settings: Settings) -> None:
    normal = _normal(host_path)
    field = f"volumes[{key!r}].host_path"
    _refuse_never_paths(field, host_path, settings)
    for prefix in settings.allowed_host_paths:
        if within_path(normal, _normal(prefix)):
            return
    raise PolicyRefused(
        f"{field}: {host_path!r} is not under a host path the operator allows "
        "(RUNNER_ALLOWED_HOST_PATHS); use a file, directory or named volume instead",
        field=field,
    )


def _refuse_never_paths(field: str, host_path: str, settings: Settings) -> None:
    """A path that is, holds or lies in the engine's socket or state, or the kernel's views."""
    normal = _normal(host_path)
    for never in [*NEVER_HOST_PATHS, *_unix_socket(settings.docker_host)]:
        if within_path(never, normal) or within_path(normal, never):
            raise PolicyRefused(
                f"{field}: {host_path!r} is, holds or lies in {never}, the container engine's "
                "socket or state or the kernel's view of the host: a run with it could control "
                "the host, so it is never mounted",
                field=field,
            )


def _normal(path: str) -> str:
    """Normalised, with one leading slash (POSIX keeps `//`, which the engine reads as `/`)."""
    return "/" + posixpath.normpath("/" + path).lstrip("/")


def within_path(path: str, root: str) -> bool:
    """Whether `path` is `root` or under it (both normalised)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def _unix_socket(docker_host: str | None) -> list[str]:
    if docker_host and docker_host.startswith("unix://"):
        return [_normal(docker_host.removeprefix("unix://"))]
    return []
