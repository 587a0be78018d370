"""What both HTTP doors (REST and MCP) check before a request reaches them, in one place
(`guard`): today the bearer token; a shared check of `Host` and `Origin` belongs here too.

Tokens come from settings (`RUNNER_API_TOKENS`, `RUNNER_API_TOKENS_FILE`). Every presented token
is compared with every configured one in constant time, so timing tells nothing about how much
of a token was right. The token that matched names the request's tenant (`runner.tenancy`),
which the middleware leaves on the ASGI scope for the front doors to pass to the service.
Without configured tokens every request is the local tenant (the service then binds to loopback
unless the operator says otherwise).
"""

from __future__ import annotations

import hmac
import json

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from runner.settings import Settings
from runner.tenancy import LOCAL, Tenant, remember


def guard(app: Starlette, settings: Settings, open_paths: frozenset[str]) -> None:
    """Put the checks every HTTP door shares in front of `app`; `open_paths` need no token."""
    app.add_middleware(BearerTokenAuth, tokens=settings.tokens(), open_paths=open_paths)


class BearerTokenAuth:
    def __init__(
        self, app: ASGIApp, tokens: list[tuple[str, Tenant]], open_paths: frozenset[str]
    ) -> None:
        self.app = app
        self.tokens = [(token.encode(), tenant) for token, tenant in tokens]
        self.open_paths = open_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.tokens:
            remember(scope, LOCAL)
        if scope["type"] != "http" or not self.tokens or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)  # open paths act for no tenant
            return
        tenant = self._tenant(Headers(scope=scope).get("authorization", ""))
        if tenant is not None:
            remember(scope, tenant)
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

    def _tenant(self, header: str) -> Tenant | None:
        """The tenant whose token was presented; every token is compared, matching or not."""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        candidate = presented.strip().encode()
        matches = [tenant for token, tenant in self.tokens if hmac.compare_digest(candidate, token)]
        return matches[0] if matches else None
