"""Returned paths as raw bytes (the binary path out).

- `POST /run` with `Accept: multipart/mixed` answers with the JSON result in a first part named
  `result`, then each `response: true` path in a part named by its container path: a file's
  bytes, or a plain tar of a directory with names relative to it. The parts are read from
  spooled files (the run's container is already gone), a chunk at a time.
- `GET /runs/{id}/files/{path}` streams one path of a finished async run.
"""

from __future__ import annotations

import posixpath
import re
import secrets
from collections.abc import Iterator
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Path
from starlette.convertors import Convertor, register_url_convertor
from starlette.requests import Request
from starlette.responses import StreamingResponse

from runner.errors import NotFound
from runner.models import RunResult
from runner.rest.answers import errors
from runner.rest.deps import Caller, RunId, Service
from runner.spec import ReturnedFile

MIXED = "multipart/mixed"


class AnyPath(Convertor[str]):
    """Starlette's `path`, newlines included: any path a caller sends reaches the route (and
    gets the runner's own 404 when it is not a returned path)."""

    regex = r"[\s\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anypath", AnyPath())

CHUNK_BYTES = 256 * 1024
TAR = "application/x-tar"
OCTETS = "application/octet-stream"


PARTS_ANSWER: dict[str, Any] = {
    "description": "The result (JSON); with `Accept: multipart/mixed`, the result in a part "
    "named `result`, then each `response: true` path in a part named by the path: a file's "
    "bytes, or a plain tar of a directory.",
    "content": {MIXED: {"schema": {"type": "string", "format": "binary"}}},
}
"""OpenAPI for `POST /run`'s 200 beside its JSON."""

router = APIRouter(tags=["runs"])


@router.get(
    "/runs/{run_id}/files/{path:anypath}",
    response_class=StreamingResponse,
    responses={
        **errors(
            "invalid",
            "run_not_found",
            "path_not_returned",
            "run_unfinished",
            "unreturnable",
            "engine_down",
        ),
        200: {
            "content": {TAR: {}, OCTETS: {}},
            "headers": {
                "Content-Disposition": {
                    "description": "`attachment` with the path's last part as file name.",
                    "required": True,
                    "schema": {"type": "string"},
                }
            },
        },
    },
    summary="A returned path, as raw bytes",
)
async def run_file(
    run_id: RunId,
    path: Annotated[str, Path(description="A `response: true` container path, e.g. app/data.")],
    service: Service,
    caller: Caller,
) -> StreamingResponse:
    """A finished run's `response: true` path: a file's bytes (`application/octet-stream`), or
    a plain tar of a directory with names relative to it (`application/x-tar`). The path is
    written without its leading slash (`files/app/data`); `files//app/data` is a 404."""
    if path.startswith("/"):
        raise NotFound(
            f"path: {path!r} starts with '/'; write the container path without its leading "
            f"slash: /runs/{run_id}/files/{path.lstrip('/')}",
            field="path",
        )
    container_path = posixpath.normpath("/" + path)
    kind, chunks = await service.run_file(caller, run_id, container_path)
    name = download_name(container_path, kind)
    return StreamingResponse(
        chunks,
        media_type=media_type(kind),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


def wants_parts(request: Request) -> bool:
    return MIXED in request.headers.get("accept", "").lower()


def media_type(kind: str) -> str:
    return TAR if kind == "directory" else OCTETS


def download_name(path: str, kind: str) -> str:
    """A file name for Content-Disposition: the path's last part, in safe characters."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", posixpath.basename(path)) or "content"
    return f"{name}.tar" if kind == "directory" else name


def parts_answer(result: RunResult, files: dict[str, ReturnedFile]) -> StreamingResponse:
    boundary = secrets.token_hex(16)
    return StreamingResponse(
        _parts(boundary, result, files),
        media_type=f'{MIXED}; boundary="{boundary}"',
    )


def _parts(boundary: str, result: RunResult, files: dict[str, ReturnedFile]) -> Iterator[bytes]:
    try:
        yield _head(boundary, "result", "application/json", None)
        yield orjson.dumps(result.model_dump())
        for path, (kind, spooled) in files.items():
            yield _head(boundary, path, media_type(kind), download_name(path, kind))
            while chunk := spooled.read(CHUNK_BYTES):
                yield chunk
        yield f"\r\n--{boundary}--\r\n".encode()
    finally:
        for _, spooled in files.values():
            spooled.close()


def _head(boundary: str, name: str, content_type: str, filename: str | None) -> bytes:
    disposition = f'form-data; name="{_quoted(name)}"'
    if filename is not None:
        disposition += f'; filename="{_quoted(filename)}"'
    return (
        f"\r\n--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        f"Content-Type: {content_type}\r\n\r\n"
    ).encode()


def _quoted(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"')
