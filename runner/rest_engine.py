"""REST routes about what is on the engine besides runs: the caller's named volumes (create,
list, remove), containers, images (listed, and pulled ahead of runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from runner.engine_models import (
    ContainerInfo,
    CreateVolumeRequest,
    CreateVolumeResult,
    ImageInfo,
    PulledImage,
    PullImageRequest,
    RemovedVolume,
    VolumeInfo,
)
from runner.models import VOLUME_NAME_PATTERN
from runner.rest_deps import ERRORS, Caller, Service, cancel_on_disconnect

router = APIRouter()


@router.post(
    "/volume",
    response_model=CreateVolumeResult,
    responses=ERRORS,
    summary="Create a named volume",
)
async def create_volume(
    body: CreateVolumeRequest, service: Service, caller: Caller
) -> CreateVolumeResult:
    """Create a named volume and fill it from a base64 tar.gz; no image from a registry needed.
    Runs of the same tenant may mount it.

    200, as oneoff-docker-runner answered (its clients check for it); an existing volume is a
    409 unless `reuse_existing`."""
    return await service.create_volume(body, caller)


@router.get("/volumes", response_model=list[VolumeInfo], responses=ERRORS, summary="List volumes")
async def list_volumes(service: Service, caller: Caller) -> list[VolumeInfo]:
    """The named volumes you created with POST /volume (same API token), by name; no other
    volume on the engine is ever listed."""
    return await service.list_volumes(caller)


@router.delete(
    "/volume/{name}", response_model=RemovedVolume, responses=ERRORS, summary="Remove a volume"
)
async def remove_volume(
    name: Annotated[str, Path(pattern=VOLUME_NAME_PATTERN, description="From GET /volumes.")],
    service: Service,
    caller: Caller,
) -> RemovedVolume:
    """Remove a volume you created, and its data. 404 for any other name (another token's
    volume, one not made through the runner, none at all); 409 while a container uses it."""
    return await service.remove_volume(name, caller)


@router.get("/containers", response_model=list[ContainerInfo], responses=ERRORS)
async def list_containers(
    service: Service,
    caller: Caller,
    all_states: Annotated[bool, Query(alias="all", description="Include stopped ones.")] = False,
    managed_only: Annotated[bool, Query(description="Only the runner's own.")] = True,
) -> list[ContainerInfo]:
    """Containers on the engine: by default your own runs in progress."""
    return await service.list_containers(caller, all_states=all_states, managed_only=managed_only)


@router.get("/images", response_model=list[ImageInfo], responses=ERRORS)
async def list_images(
    service: Service,
    reference: Annotated[str | None, Query(description="e.g. busybox or busybox:1.36")] = None,
) -> list[ImageInfo]:
    """Images present on the engine, optionally filtered by reference."""
    return await service.list_images(reference=reference)


@router.post("/images/pull", response_model=PulledImage, responses=ERRORS, summary="Pull an image")
async def pull_image(
    body: PullImageRequest, service: Service, caller: Caller, request: Request
) -> PulledImage:
    """Pull an image onto the engine ahead of runs, under the runs' policy: only images the
    operator allows (403), `auth_config` for a private registry, used for this pull only and
    never echoed (401 when the registry refuses it, 404 when it has no such image, 502 when it
    cannot be reached). A client that disconnects stops the pull."""
    return await cancel_on_disconnect(request, service.pull_image(body, caller))
