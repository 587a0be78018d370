"""Run request bodies for the REST door: JSON, or multipart with content parts.

Admission comes first: a queue place is reserved before a byte of the body is read, so a full
runner answers 429 without reading a large body. A JSON body is parsed once, from its bytes, by
`model_validate_json` (no intermediate dicts: about its own size again in memory); a multipart
body's content parts are streamed (`runner.rest.multipart`).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from starlette.requests import Request

from runner.admission import Ticket
from runner.errors import InvalidRequest
from runner.models import RunRequest
from runner.rest.multipart import FORM, forward_parts, is_form, read_run_form
from runner.service import RunnerService
from runner.uploads import Uploads

REQUEST_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/RunRequest"}},
            FORM: {
                "schema": {
                    "type": "object",
                    "required": ["request"],
                    "properties": {
                        "request": {
                            "$ref": "#/components/schemas/RunRequestWithParts",
                            "description": "The run request (JSON), first. A file or "
                            "directory volume whose content comes as a part leaves out "
                            "`content`.",
                        }
                    },
                    "additionalProperties": {
                        "type": "string",
                        "format": "binary",
                        "description": "A part named by a volume key: a file's bytes, or a "
                        "tar / tar.gz unpacked at a directory volume.",
                    },
                },
                "encoding": {"request": {"contentType": "application/json"}},
            },
        },
    }
}
"""OpenAPI for a route that reads its run request with `run_body`."""


@dataclass
class RunBody:
    request: RunRequest
    ticket: Ticket
    uploads: Uploads | None = None
    parts: AsyncIterator[Any] | None = None


@contextlib.asynccontextmanager
async def run_body(request: Request, service: RunnerService) -> AsyncIterator[RunBody]:
    """The run request, with a queue place reserved before the body was read (released on
    exit by an error; a run that takes it releases it when it gets its slot) and, for
    multipart, the content parts still to come."""
    ticket = service.admission.reserve()
    try:
        if is_form(request):
            parsed, parts = await read_run_form(request, service.settings.max_request_bytes)
            yield RunBody(parsed, ticket, Uploads(), parts)
        else:
            raw = await _body(request, service.settings.max_request_bytes)
            parsed = _json_request(raw)
            del raw  # the run decodes its content while this frame lives: the bytes go now
            yield RunBody(parsed, ticket)
    except BaseException:
        ticket.release()
        raise


async def _body(request: Request, limit: int) -> bytes:
    """The body as one bytes object, held once: written in place into a buffer sized from
    Content-Length (within `limit`), which `getvalue` hands over uncopied (a unit test checks
    it). The app's body limit refuses a body past `limit` as it streams; one without
    Content-Length grows as it comes."""
    length = request.headers.get("content-length", "")
    declared = int(length) if length.isdigit() and int(length) <= limit else 0
    buffer = io.BytesIO(bytes(declared))
    view, filled = buffer.getbuffer(), 0
    async for chunk in request.stream():
        end = filled + len(chunk)
        if end <= declared:
            view[filled:end] = chunk
        else:  # longer than declared, or no Content-Length: it grows from here on
            view.release()
            declared = -1
            buffer.seek(filled)
            buffer.write(chunk)
        filled = end
    view.release()
    buffer.truncate(filled)
    return buffer.getvalue()


def _json_request(raw: bytes) -> RunRequest:
    """Strictly as JSON types: `"30"` is not a number, nor `0` a boolean (the OpenAPI says
    which each field is)."""
    try:
        return RunRequest.model_validate_json(raw, strict=True)
    except ValidationError as exc:
        raise InvalidRequest.from_validation(exc.errors()) from None


async def feed_parts(body: RunBody, until: asyncio.Future[Any]) -> None:
    """Hand the body's content parts on to `body.uploads` until they end, or `until` does."""
    if body.uploads is None or body.parts is None:
        return
    feeder = asyncio.ensure_future(forward_parts(body.parts, body.uploads))
    try:
        await asyncio.wait({feeder, until}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        feeder.cancel()
        await asyncio.gather(feeder, return_exceptions=True)
