"""What is on the Docker engine: its version, containers, images and named volumes."""

from __future__ import annotations

import docker

from backends.docker.errors import engine_errors
from backends.labels import volume_tenant
from runner.backend import MANAGED, RUN_ID, TENANT
from runner.errors import NotFound
from runner.models import ContainerInfo, Health, ImageInfo
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
    filters = {"label": [f"{MANAGED}=true", f"{TENANT}={tenant}"]} if managed_only else None
    with engine_errors("listing containers"):
        found = api.containers(all=all_states, filters=filters)
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


def images(api: docker.APIClient, reference: str | None) -> list[ImageInfo]:
    with engine_errors("listing images"):
        found = api.images(name=reference)
    return [
        ImageInfo(id=item["Id"], tags=item.get("RepoTags") or [], size=item.get("Size", 0))
        for item in found
    ]


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
    )
