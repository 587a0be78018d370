"""What is on the Docker engine: its version, containers and images."""

from __future__ import annotations

import docker

from backends.docker.errors import engine_errors
from runner.backend import MANAGED, RUN_ID
from runner.models import ContainerInfo, Health, ImageInfo


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
    api: docker.APIClient, *, all_states: bool, managed_only: bool
) -> list[ContainerInfo]:
    filters = {"label": f"{MANAGED}=true"} if managed_only else None
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
