"""Bearer-token authentication for both front doors, as one ASGI middleware.

Tokens come from settings (`RUNNER_API_TOKENS`, `RUNNER_API_TOKENS_FILE`). Every presented token
is compared with every configured one in constant time, so timing tells nothing about how much
of a token was right. Without configured tokens the middleware lets everything through (the
service then binds to loopback unless the operator says otherwise).
"""

from __future__ import annotations

import hmac
import json

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send


class BearerTokenAuth:
    def __init__(self, app: ASGIApp, tokens: list[str], open_paths: frozenset[str]) -> None:
        self.app = app
        self.tokens = [token.encode() for token in tokens]
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.tokens or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)
            return
        if self._authorized(Headers(scope=scope).get("authorization", "")):
            await self.app(scope, receive, send)
            return
        body = json.dumps(
            {
                "error": "unauthorized",
                "message": "send 'Authorization: Bearer <token>' with a token the operator "
                "configured (RUNNER_API_TOKENS)",
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="oneoff-runner"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    def _authorized(self, header: str) -> bool:
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return False
        candidate = presented.strip().encode()
        matches = [hmac.compare_digest(candidate, token) for token in self.tokens]
        return any(matches)
