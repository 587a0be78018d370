"""`read_file`: one file a run handed back, by its `run://` uri, for the run's own tenant.

It reads through `RunnerService.run_file`, the call `GET /runs/{id}/files/{path}` uses (the
run's tenant checked first), taking the file out of its returned directory's tar stream. Only
the head of a large file is read: a model gets at most a few hundred KiB from one call.
"""

from __future__ import annotations

import base64
import posixpath
import tarfile
from collections.abc import Iterator

from mcp.types import ContentBlock, ImageContent, TextContent

from runner.archive_streams import ChunkReader, released
from runner.errors import NotFound
from runner.mcp.files import HandedBack, handed_back, parse_uri
from runner.mcp.results import head_and_tail
from runner.service import RunnerService
from runner.tenancy import Tenant
from runner.threads import in_worker

READ_BYTES = 1024 * 1024
"""The most of one file read for a call."""
IMAGE_BYTES = 700 * 1024
TEXT_HEAD = 16 * 1024
TEXT_TAIL = 48 * 1024
BINARY_BYTES = 48 * 1024


async def read_returned(service: RunnerService, tenant: Tenant, uri: str) -> HandedBack:
    """The file `uri` names (its head, when large); NotFound naming `uri` when the run did not
    hand it back, or is not the caller's."""
    run_id, path = parse_uri(uri)
    returned = path
    while returned != "/":
        try:
            kind, chunks = await service.run_file(tenant, run_id, returned)
        except NotFound as exc:
            if exc.field != "path":
                raise
            returned = posixpath.dirname(returned)
            continue
        relative = posixpath.relpath(path, returned) if kind != "file" else None
        limit = service.settings.max_response_bytes
        found = await in_worker(_head, chunks, relative, limit)
        if found is not None:
            return handed_back(path, *found)
        break
    raise NotFound(
        f"uri: run {run_id} handed back no file {path}; its answer lists the files (a directory "
        "is not a file)",
        field="uri",
    )


def _head(chunks: Iterator[bytes], member: str | None, limit: int) -> tuple[bytes, int] | None:
    """(the first `READ_BYTES`, the size) of the file: the stream itself (`member` None), or
    that member of the plain tar stream."""
    with released(chunks):
        if member is None:
            head, size = bytearray(), 0
            for chunk in chunks:  # counted to its end: the backend bounds a returned path
                size += len(chunk)
                head += chunk[: max(READ_BYTES - len(head), 0)]
            return bytes(head), size
        reader = ChunkReader(chunks, limit, "uri")
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            for entry in archive:
                if entry.isfile() and posixpath.normpath(entry.name) == member:
                    extracted = archive.extractfile(entry)
                    data = extracted.read(READ_BYTES) if extracted is not None else b""
                    return data, entry.size
        return None


def file_content(found: HandedBack) -> list[ContentBlock]:
    """What read_file answers: an image as an image when whole and small enough, else text."""
    if found.image and found.size == len(found.data) and found.size <= IMAGE_BYTES:
        data = base64.b64encode(found.data).decode()
        caption = f"{found.path} ({found.mime_type}, {found.size} bytes)"
        return [
            TextContent(type="text", text=caption),
            ImageContent(type="image", data=data, mime_type=found.mime_type),
        ]
    return [TextContent(type="text", text=shown_file(found))]


def shown_file(found: HandedBack) -> str:
    """A file that is not shown as an image, as text: its text (head and tail when long),
    else its base64 when small, else what it is and where to get it whole."""
    whole = found.size == len(found.data)
    if found.text:
        text = found.data.decode("utf-8", "ignore")
        shown, cut = head_and_tail(text, TEXT_HEAD, TEXT_TAIL)
        note = "" if whole and not cut else f" (part of {found.size} bytes)"
        return f"--- {found.path}{note} ---\n{shown}"
    if whole and found.size <= BINARY_BYTES and not found.image:
        encoded = base64.b64encode(found.data).decode()
        return f"{found.path} ({found.mime_type}, {found.size} bytes), base64:\n{encoded}"
    return (
        f"{found.path} ({found.mime_type}, {found.size} bytes) is too large to show here; read "
        "it in the run (e.g. a summary, or a smaller image) or over REST: GET "
        "/runs/{run_id}/files/{path}"
    )
