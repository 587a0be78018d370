"""A JSON answer sent straight to an ASGI `send`, for the guards that answer a request before
any door sees it (`runner.guards`, `runner.oauth.door`)."""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import Any

from starlette.types import Send

from runner.browsers import JSON
from runner.errors import RunnerError


async def answer(
    send: Send, status: int, body: dict[str, Any], headers: Collection[tuple[str, str]] = ()
) -> None:
    """Send `body` as the whole JSON response, with `headers` besides its type and length."""
    encoded = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(encoded)).encode()),
                *((name.encode(), value.encode()) for name, value in headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": encoded})


async def refuse(send: Send, error: RunnerError, headers: Collection[tuple[str, str]] = ()) -> None:
    """Answer a request no door will see, with the JSON body and status of `error`."""
    await answer(send, error.status_code, error.to_dict(), headers)
