"""What is on the engine besides runs: containers, and images (listed, and pulled ahead of
runs)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request

from runner.engine_models import ContainerInfo, ImageInfo, PulledImage, PullImageRequest
from runner.rest.answers import errors
from runner.rest.deps import Caller, Service, cancel_on_disconnect

router = APIRouter(tags=["engine"])


@router.get(
    "/containers",
    response_model=list[ContainerInfo],
    responses=errors("invalid", "operators_only", "engine_down"),
    summary="List containers",
)
async def list_containers(
    service: Service,
    caller: Caller,
    all_states: Annotated[bool, Query(alias="all", description="Include stopped ones.")] = False,
    managed_only: Annotated[
        bool, Query(description="false: every container on the engine (operators only).")
    ] = True,
) -> list[ContainerInfo]:
    """Containers on the engine: by default your own runs in progress. Every container on the
    engine (`managed_only=false`) only for an operator (403 for other tenants)."""
    return await service.list_containers(caller, all_states=all_states, managed_only=managed_only)


@router.get(
    "/images",
    response_model=list[ImageInfo],
    responses=errors("unsupported", "engine_down"),
    summary="List images",
)
async def list_images(
    service: Service,
    caller: Caller,
    reference: Annotated[str | None, Query(description="e.g. busybox or busybox:1.36")] = None,
) -> list[ImageInfo]:
    """Images present on the engine that you may run (RUNNER_ALLOWED_IMAGES), optionally
    filtered by reference: not another tenant's private ones (pulled with credentials you have
    not shown); an operator sees them all."""
    return await service.list_images(caller, reference=reference)


@router.post(
    "/images/pull",
    response_model=PulledImage,
    responses=errors(
        "unreadable",
        "invalid",
        "policy",
        "registry_auth",
        "image_not_found",
        "cancelled",
        "registry_down",
        "engine_down",
    ),
    summary="Pull an image",
)
async def pull_image(
    body: PullImageRequest, service: Service, caller: Caller, request: Request
) -> PulledImage:
    """Pull an image onto the engine ahead of runs, under the runs' policy: only images the
    operator allows (403), `auth_config` for a private registry, used for this pull only and
    never echoed (401 when the registry refuses it, 404 when it has no such image, 502 when it
    cannot be reached). A client that disconnects stops the pull."""
    return await cancel_on_disconnect(request, service.pull_image(body, caller))
