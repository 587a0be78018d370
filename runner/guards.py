"""What both HTTP doors (REST and MCP) check before a request reaches them, in one place
(`guard`): today the bearer token; a shared check of `Host` and `Origin` belongs here too.

A bearer token is an API token, or, when the operator trusts an identity provider
(`RUNNER_OAUTH_ISSUERS`), an access token of it (`runner.oauth`): API tokens are compared first,
so they keep working whatever the provider does. With a provider, both doors also serve its
RFC 9728 protected-resource metadata to anyone, and every refusal carries the
`WWW-Authenticate` challenge that points at it.

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
from collections.abc import Callable

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from runner.oauth import OAuthError
from runner.oauth.door import OAuthDoor, allowed
from runner.settings import Settings
from runner.tenancy import LOCAL, Tenant, remember


def guard(
    app: Starlette,
    settings: Settings,
    open_paths: frozenset[str],
    operation: Callable[[Scope], str] | None = None,
) -> None:
    """Put the checks every HTTP door shares in front of `app`; `open_paths` need no token.
    `operation` tells a request's operation (`runner.oauth.door`) from its scope, for the
    scopes an access token needs; a door that cannot (MCP: the body tells) checks them itself."""
    policy = settings.oauth_policy()
    app.add_middleware(
        BearerTokenAuth,
        tokens=settings.tokens(),
        open_paths=open_paths,
        oauth=OAuthDoor(policy) if policy else None,
        operation=operation,
    )


class BearerTokenAuth:
    def __init__(
        self,
        app: ASGIApp,
        tokens: list[tuple[str, Tenant]],
        open_paths: frozenset[str],
        oauth: OAuthDoor | None = None,
        operation: Callable[[Scope], str] | None = None,
    ) -> None:
        self.app = app
        self.operation = operation
        self.tokens = [(token.encode(), tenant) for token, tenant in tokens]
        self.open_paths = open_paths
        self.oauth = oauth
        self.required = bool(tokens) or oauth is not None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.required:
            remember(scope, LOCAL)
        if scope["type"] != "http" or not self.required or scope["path"] in self.open_paths:
            await self.app(scope, receive, send)  # open paths act for no tenant
            return
        if self.oauth is not None and self.oauth.serves(scope["path"]):
            await self.oauth.metadata(scope, send)
            return
        header = Headers(scope=scope).get("authorization", "")
        tenant = self._tenant(header)
        if tenant is None and self.oauth is not None:
            await self._signed_in(scope, receive, send, header)
            return
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

    async def _signed_in(self, scope: Scope, receive: Receive, send: Send, header: str) -> None:
        """A request with no API token, when an identity provider is trusted."""
        assert self.oauth is not None
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented.strip():
            await self.oauth.refuse(scope, send, None)
            return
        try:
            await self.oauth.sign_in(scope, presented.strip())
        except OAuthError as exc:
            await self.oauth.refuse(scope, send, exc)
            return
        if self.operation is None or await allowed(
            self.oauth.policy, scope, self.operation(scope), send
        ):
            await self.app(scope, receive, send)

    def _tenant(self, header: str) -> Tenant | None:
        """The tenant whose token was presented; every token is compared, matching or not."""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        candidate = presented.strip().encode()
        matches = [tenant for token, tenant in self.tokens if hmac.compare_digest(candidate, token)]
        return matches[0] if matches else None
