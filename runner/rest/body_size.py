"""The request body bound of the REST door (`RUNNER_MAX_REQUEST_BYTES`), answered in the runner's
error format: Starlette's own bound answers `text/plain` when a route answers without reading the
body. A declared length over the bound is refused before any route runs; a body that grows past
it (no or a false Content-Length) stops the read with Starlette's 413, which the route's error
handlers (`runner.rest.errors`) answer as JSON.
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.errors import PayloadTooLarge
from runner.refusals import refuse


def too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"the request body exceeds the operator's limit of {limit} bytes "
        "(RUNNER_MAX_REQUEST_BYTES); send large content as multipart parts, or in a named volume"
    )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            await refuse(send, too_large(self.limit), [("connection", "close")])
            return
        received = 0

        async def bounded() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413)
            return message

        await self.app(scope, bounded, send)
