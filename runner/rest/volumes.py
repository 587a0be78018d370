"""The caller's named volumes: `POST /volume`, `GET /volumes`, `DELETE /volume/{name}`; and
their files without a run: `GET /volume/{name}/files`, `GET`/`PUT /volume/{name}/file`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from runner.engine_models import (
    CreateVolumeRequest,
    CreateVolumeResult,
    RemovedVolume,
    VolumeFile,
    VolumeFiles,
    VolumeInfo,
    WriteVolumeFile,
    WrittenVolumeFile,
    volume_path,
)
from runner.errors import InvalidRequest
from runner.models import VOLUME_NAME_PATTERN
from runner.rest.answers import errors
from runner.rest.deps import Caller, Service

router = APIRouter(tags=["volumes"])
Name = Annotated[str, Path(pattern=VOLUME_NAME_PATTERN, description="From GET /volumes.")]
VOLUME_FILE_ERRORS = (
    "invalid",
    "volume_not_found",
    "volume_path_missing",
    "volume_path_conflict",
    "volume_bytes",
    "unsupported",
    "engine_down",
)
InPath = Annotated[
    str, Query(description="Relative to the volume's root, e.g. src/app.py; empty: the root.")
]


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
    name: Name,
    service: Service,
    caller: Caller,
) -> RemovedVolume:
    """Remove a volume you created, and its data. 404 for any other name (another token's
    volume, one not made through the runner, none at all); 409 while a container uses it."""
    return await service.remove_volume(name, caller)


@router.get(
    "/volume/{name}/files",
    response_model=VolumeFiles,
    responses=errors(*VOLUME_FILE_ERRORS),
    summary="List a volume's files",
)
async def list_volume_files(
    name: Name, service: Service, caller: Caller, path: InPath = ""
) -> VolumeFiles:
    """Every entry under `path` (every level down; at most RUNNER_MAX_ARCHIVE_MEMBERS), and
    what they use against the volume's size bound. 404 for another token's volume."""
    return await service.workspaces.files(name, _checked(path), caller)


@router.get(
    "/volume/{name}/file",
    response_model=VolumeFile,
    responses=errors(*VOLUME_FILE_ERRORS),
    summary="Read a file",
)
async def read_volume_file(
    name: Name, path: InPath, service: Service, caller: Caller
) -> VolumeFile:
    """One file of the volume: its text, or base64 when it is not UTF-8; at most
    RUNNER_MAX_RESPONSE_BYTES (413). A symbolic link on the path is a 409: never followed."""
    return await service.workspaces.read(name, _checked(path), caller)


@router.put(
    "/volume/{name}/file",
    response_model=WrittenVolumeFile,
    responses=errors("unreadable", *VOLUME_FILE_ERRORS),
    summary="Write a file",
)
async def write_volume_file(
    name: Name, body: WriteVolumeFile, service: Service, caller: Caller
) -> WrittenVolumeFile:
    """Write (make or replace) one file, and any missing directories on its path; runs that
    mount the volume see it. 413 when the volume would be past RUNNER_MAX_VOLUME_BYTES."""
    return await service.workspaces.write(name, body, caller)


def _checked(path: str) -> str:
    try:
        return volume_path(path)
    except ValueError as exc:
        raise InvalidRequest(f"path: {exc}", field="path") from None
