"""The caller's named volumes: `POST /volume`, `GET /volumes`, `DELETE /volume/{name}`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from runner.engine_models import CreateVolumeRequest, CreateVolumeResult, RemovedVolume, VolumeInfo
from runner.models import VOLUME_NAME_PATTERN
from runner.rest.answers import errors
from runner.rest.deps import Caller, Service

router = APIRouter(tags=["volumes"])


@router.post(
    "/volume",
    response_model=CreateVolumeResult,
    responses={
        200: {
            "links": {
                "remove": {
                    "operationId": "remove_volume_volume__name__delete",
                    "parameters": {"name": "$response.body#/name"},
                }
            }
        },
        **errors(
            "unreadable",
            "invalid",
            "policy",
            "volume_exists",
            "content_size",
            "unsupported",
            "engine_down",
        ),
    },
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


@router.get(
    "/volumes",
    response_model=list[VolumeInfo],
    responses=errors("engine_down"),
    summary="List volumes",
)
async def list_volumes(service: Service, caller: Caller) -> list[VolumeInfo]:
    """The named volumes you created with POST /volume (same API token), by name; no other
    volume on the engine is ever listed."""
    return await service.list_volumes(caller)


@router.delete(
    "/volume/{name}",
    response_model=RemovedVolume,
    responses=errors("invalid", "volume_not_found", "volume_in_use", "engine_down"),
    summary="Remove a volume",
)
async def remove_volume(
    name: Annotated[str, Path(pattern=VOLUME_NAME_PATTERN, description="From GET /volumes.")],
    service: Service,
    caller: Caller,
) -> RemovedVolume:
    """Remove a volume you created, and its data. 404 for any other name (another token's
    volume, one not made through the runner, none at all); 409 while a container uses it."""
    return await service.remove_volume(name, caller)
