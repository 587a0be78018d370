"""multipart/form-data run requests, read as they arrive (the binary path in).

The body is fed chunk by chunk to python-multipart's push parser: the first part, `request`,
is the JSON run request (read whole: it is small); every later part is one volume's content,
named by its volume key, and goes on to `Uploads` a chunk at a time, so a request of any size
costs a few chunks of memory. What the bytes may be is judged later, by `runner.archives`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator
from typing import Any

from pydantic import ValidationError
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request

from runner.errors import Cancelled, InvalidRequest, PayloadTooLarge, RunnerError
from runner.models import CONTENT_PARTS, RunRequest
from runner.uploads import Begin, End, Event, Uploads

REQUEST_PART = "request"
FORM = "multipart/form-data"


def is_form(request: Request) -> bool:
    return request.headers.get("content-type", "").lower().startswith(FORM)


async def read_run_form(
    request: Request, max_request_bytes: int
) -> tuple[RunRequest, AsyncIterator[Event]]:
    """The run request of the first part, and the events of the parts after it (unread)."""
    events = _form_events(request)
    first = await anext(events, None)
    if not isinstance(first, Begin) or first.key != REQUEST_PART:
        raise InvalidRequest(
            "request: the first part of a multipart request must be the JSON run request, "
            "named `request` (curl -F request=@run.json -F /app/data=@data.tar.gz ...)",
            field="request",
        )
    raw = bytearray()
    async for event in events:
        if not isinstance(event, bytes):
            break
        raw += event
        if len(raw) > max_request_bytes:
            raise PayloadTooLarge(
                "request: the JSON part exceeds the operator's limit (RUNNER_MAX_REQUEST_BYTES); "
                "send content as parts, not inline",
                field="request",
            )
    try:
        parsed = RunRequest.model_validate_json(raw, strict=True, context={CONTENT_PARTS: True})
        return parsed, events
    except ValidationError as exc:
        raise InvalidRequest.from_validation(exc.errors()) from None


async def forward_parts(events: AsyncIterator[Event], uploads: Uploads) -> None:
    """Hand the remaining parts to `uploads`, then None; a broken body becomes the error the
    reader of `uploads` raises (and the run fails with it)."""
    try:
        async for event in events:
            await uploads.put(event)
    except RunnerError as exc:
        await uploads.put(exc)
        return
    await uploads.put(None)


async def _form_events(request: Request) -> AsyncIterator[Event]:
    """Begin / bytes / End for each part, as the body arrives."""
    boundary = parse_options_header(request.headers.get("content-type"))[1].get(b"boundary")
    if not boundary:
        raise InvalidRequest("the multipart Content-Type has no boundary", field="request")
    ready: deque[Event] = deque()
    parser = MultipartParser(boundary, _callbacks(ready))
    try:
        async for chunk in request.stream():
            parser.write(chunk)
            while ready:
                yield ready.popleft()
        parser.finalize()
    except MultipartParseError as exc:
        raise InvalidRequest(f"request: not a readable multipart body ({exc})") from None
    except ClientDisconnect:
        raise Cancelled("the client went away while sending the request") from None
    except HTTPException as exc:
        if exc.status_code != 413:
            raise
        raise PayloadTooLarge(
            "the request body exceeds the operator's limit (RUNNER_MAX_REQUEST_BYTES)"
        ) from None
    while ready:
        yield ready.popleft()


def _callbacks(ready: deque[Event]) -> Any:
    """python-multipart's callbacks, turning each part into Begin(name), bytes..., End."""
    header: dict[str, bytes] = {"field": b"", "value": b"", "name": b""}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        if header["field"].lower() == b"content-disposition":
            header["name"] = parse_options_header(header["value"])[1].get(b"name", b"")
        header["field"] = header["value"] = b""

    def on_headers_finished() -> None:
        name, header["name"] = header["name"], b""
        if not name:
            raise InvalidRequest("a multipart part has no name; name each part by its volume key")
        ready.append(Begin(name.decode("utf-8", "replace")))

    def on_part_data(data: bytes, start: int, end: int) -> None:
        ready.append(bytes(data[start:end]))

    return {
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_headers_finished": on_headers_finished,
        "on_part_data": on_part_data,
        "on_part_end": lambda: ready.append(End()),
    }
