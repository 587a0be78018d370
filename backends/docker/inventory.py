"""What is on the Docker engine: its version, containers, images and named volumes; and the
runner's own volumes made so that no one else's can stand in for them."""

from __future__ import annotations

from typing import Any

import docker

from backends.docker.errors import engine_errors
from backends.labels import (
    CONTAINER,
    CREATED_BY,
    MANAGED,
    POOL_ROLE,
    ROLE,
    RUN_ID,
    TENANT,
    VOLUME_API,
    caller_labels,
    volume_tenant,
)
from runner.engine_models import ContainerInfo, Health, ImageInfo, VolumeInfo
from runner.errors import Conflict, NotFound, RunnerError, VolumeNotFound
from runner.spec import VolumeState


def health(api: docker.APIClient) -> Health:
    with engine_errors("checking the engine"):
        version = api.version()
    return Health(
        backend="docker",
        version=str(version.get("Version")),
        details={
            "api_version": str(version.get("ApiVersion")),
            "os": str(version.get("Os")),
            "arch": str(version.get("Arch")),
        },
    )


def containers(
    api: docker.APIClient, *, tenant: str, all_states: bool, managed_only: bool
) -> list[ContainerInfo]:
    """The engine's containers, or (`managed_only`) the tenant's runs': those labelled for it,
    and the warm containers its runs claimed (`backends.docker.pool`), shown as their runs."""
    filters = {"label": [f"{MANAGED}=true", f"{TENANT}={tenant}"]} if managed_only else None
    with engine_errors("listing containers"):
        found = api.containers(all=all_states, filters=filters)
        claimed = _claimed(api, tenant, all_states) if managed_only else []
    return [_container_info(item, (item.get("Labels") or {}).get(RUN_ID)) for item in found] + [
        _container_info(item, run_id, f"oneoff-{run_id}") for item, run_id in claimed
    ]


def _claimed(api: docker.APIClient, tenant: str, all_states: bool) -> list[tuple[Any, str]]:
    """The tenant's runs' warm containers, with their run ids, from the runner's claims (a
    synchronous run's or an async run's: both name their container)."""
    terms = [f"{MANAGED}=true", CONTAINER, f"{TENANT}={tenant}"]
    claims = api.volumes(filters={"label": terms}).get("Volumes") or []
    runs = {
        labels[CONTAINER]: labels[RUN_ID]
        for labels in (claim.get("Labels") or {} for claim in claims)
        if CONTAINER in labels and RUN_ID in labels
    }
    if not runs:
        return []
    pool = {"id": list(runs), "label": [f"{MANAGED}=true", f"{ROLE}={POOL_ROLE}"]}
    return [(item, runs[item["Id"]]) for item in api.containers(all=all_states, filters=pool)]


def _container_info(
    item: dict[str, Any], run_id: str | None, name: str | None = None
) -> ContainerInfo:
    return ContainerInfo(
        id=item["Id"][:12],
        name=name or (item.get("Names") or ["/"])[0].lstrip("/"),
        image=item.get("Image", ""),
        status=item.get("Status") or item.get("State", ""),
        run_id=run_id,
    )


def images(api: docker.APIClient, reference: str | None) -> list[ImageInfo]:
    with engine_errors("listing images"):
        found = api.images(name=reference)
    return [_image_info(item) for item in found]


def image(api: docker.APIClient, reference: str) -> ImageInfo:
    """One image, as the engine has it now (e.g. just pulled)."""
    with engine_errors("inspecting the image"):
        return _image_info(api.inspect_image(reference))


def _image_info(item: dict[str, Any]) -> ImageInfo:
    return ImageInfo(id=item["Id"], tags=item.get("RepoTags") or [], size=item.get("Size", 0))


def volume_state(api: docker.APIClient, name: str) -> VolumeState | None:
    """The tenant that created the volume through the API, and the host path a `local` volume
    with the `bind` option mounts (the engine resolves that path on the host)."""
    try:
        with engine_errors("inspecting the named volume"):
            found = api.inspect_volume(name)
    except NotFound:
        return None
    labels = found.get("Labels") or {}
    options = found.get("Options") or {}
    binds = "bind" in str(options.get("o", "")) or options.get("type") == "none"
    return VolumeState(
        tenant=volume_tenant(labels),
        host_path=str(options.get("device", "")) if binds else None,
        runner_made=labels.get(MANAGED) == "true",
    )


def volumes(api: docker.APIClient, tenant: str) -> list[VolumeInfo]:
    """The tenant's volumes: those POST /volume labelled for it, never any other."""
    filters = {"label": [f"{CREATED_BY}={VOLUME_API}", f"{TENANT}={tenant}"]}
    with engine_errors("listing volumes"):
        found = api.volumes(filters=filters).get("Volumes") or []
    listed = [
        VolumeInfo(
            name=item["Name"],
            driver=item.get("Driver", ""),
            created_at=item.get("CreatedAt"),
            labels=caller_labels(item.get("Labels") or {}),
        )
        for item in found
        if volume_tenant(item.get("Labels") or {}) == tenant
    ]
    return sorted(listed, key=lambda volume: volume.name)


def remove_volume(api: docker.APIClient, name: str) -> None:
    """Remove it, unforced: the engine refuses while a container (running or stopped) has it
    mounted, and that refusal is the caller's to act on."""
    try:
        with engine_errors("removing the volume"):
            api.remove_volume(name)
    except Conflict:
        raise Conflict(
            f"name: volume {name!r} is in use by a container (a run that mounts it); remove it "
            "once no run uses it",
            field="name",
        ) from None
    except NotFound:
        raise VolumeNotFound(f"name: volume {name!r} no longer exists", field="name") from None


def make_own_volume(
    api: docker.APIClient, name: str, labels: dict[str, str], what: str
) -> dict[str, Any]:
    """Create a volume of the runner's own; the engine's description of it (`Mountpoint`...).
    The engine answers a create of a name that exists with the existing volume, whoever made
    it: one without these labels is not the runner's and is not used (callers cannot take
    these names, `RESERVED_VOLUME_NAMES`; this holds against anyone else on the engine)."""
    with engine_errors(f"creating {what}"):
        made: dict[str, Any] = api.create_volume(name, driver="local", labels=labels)
    found = made.get("Labels") or {}
    if any(found.get(key) != value for key, value in labels.items()):
        raise RunnerError(
            f"creating {what}: a volume named {name!r} exists and is not this runner's"
        )
    return made
