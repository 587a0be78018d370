"""What both HTTP doors (REST and MCP) check before a request reaches them, in one place
(`guard`), outermost first:

1. `BrowserGuard`: what a web page in the operator's browser could send (DNS rebinding,
   cross-site requests, bodies that do not say what they are: `runner.browsers`); every answer
   also forbids framing, so no page can lay a runner's /docs under a click.
2. CORS answers, for the origins the operator allows (`RUNNER_ALLOWED_ORIGINS`) and no others.
3. `BearerTokenAuth`: who the caller is. A bearer token is an API token (`RUNNER_API_TOKENS`,
   `RUNNER_OPERATOR_TOKENS`, their files) or, when the operator trusts an identity provider
   (`RUNNER_OAUTH_ISSUERS`), an access token of it (`runner.oauth`). API tokens are compared
   first, so they keep working whatever the provider does; every presented token is compared
   with every configured one in constant time, so timing tells nothing about how much of a
   token was right. The token names the request's tenant (`runner.tenancy`): an API token's
   (an operator's for an operator token), or the provider's subject (a tenant, never an
   operator, whose scopes must also cover the operation). The middleware leaves it on the ASGI
   scope for the front doors to pass to the service. With neither tokens nor a provider every
   request is the local tenant, an operator (the service then binds to loopback unless the
   operator says otherwise).

With a provider, both doors also serve its RFC 9728 protected-resource metadata to anyone, and
every 401 and 403 of a token carries the `WWW-Authenticate` challenge that points at it.

A refusal is JSON, `{"error", "message", "field"}`, the same on both doors; `field` names the
header to fix, the message the setting that would allow it.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable, Collection

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.browsers import JSON, BrowserPolicy, parse_origin
from runner.errors import Unauthenticated, UnsupportedMediaType
from runner.oauth import OAuthError
from runner.oauth.door import OAuthDoor, allowed
from runner.refusals import refuse
from runner.settings import Settings
from runner.tenancy import LOCAL, Tenant, remember

CORS_EXPOSED = ["Location", "Retry-After", "Content-Disposition", "Mcp-Session-Id"]


def guard(
    app: Starlette,
    settings: Settings,
    *,
    open_paths: Collection[str],
    probe_paths: Collection[str] = (),
    body_types: Collection[str] = (JSON,),
    serves_method: Callable[[Scope], bool] | None = None,
    operation: Callable[[Scope], str] | None = None,
) -> None:
    """Put the checks every HTTP door shares in front of `app`: `open_paths` need no token,
    `probe_paths` (among them) skip the Host check when tokens are required, and request
    bodies must be of `body_types` where `serves_method` says the path takes the request's
    method (elsewhere the door's 405 answers; default: everywhere). `operation` tells a
    request's operation (`runner.oauth.door`) from its scope, for the scopes an access token
    needs; a door that cannot (MCP: the body tells) checks them itself."""
    oauth = settings.oauth_policy()
    app.add_middleware(
        BearerTokenAuth,
        tokens=settings.tokens(),
        open_paths=frozenset(open_paths),
        oauth=OAuthDoor(oauth) if oauth else None,
        operation=operation,
    )
    if settings.allowed_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origin_regex=_origins_pattern(settings.allowed_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["*"],
            expose_headers=CORS_EXPOSED,
        )
    policy = BrowserPolicy.of(
        hosts=settings.allowed_hosts,
        origins=settings.allowed_origins,
        tokens=settings.authenticates(),
        probe_paths=probe_paths,
        body_types=body_types,
    )
    app.add_middleware(BrowserGuard, policy=policy, serves_method=serves_method)


class BrowserGuard:
    def __init__(
        self,
        app: ASGIApp,
        policy: BrowserPolicy,
        serves_method: Callable[[Scope], bool] | None,
    ) -> None:
        self.app = app
        self.policy = policy
        self.serves_method = serves_method

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.policy.judge(scope)
        unserved = self.serves_method is not None and not self.serves_method(scope)
        if isinstance(refusal, UnsupportedMediaType) and unserved:
            refusal = None  # no body is read here: the method gets its 405
        if refusal is not None:
            await refuse(send, refusal, [("x-frame-options", "DENY")])
            return

        async def unframed(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (b"x-frame-options", b"DENY")]
            await send(message)

        await self.app(scope, receive, unframed)


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
        self.tokens = [(token.encode(), tenant) for token, tenant in tokens]
        self.open_paths = open_paths
        self.oauth = oauth
        self.operation = operation
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
        presented = _bearer(Headers(scope=scope).get("authorization", ""))
        tenant = self._tenant(presented)
        if tenant is not None:
            remember(scope, tenant)
            await self.app(scope, receive, send)
        elif self.oauth is not None:
            await self._signed_in(scope, receive, send, presented)
        else:
            error = Unauthenticated(
                "send 'Authorization: Bearer <token>' with a token the operator configured "
                "(RUNNER_API_TOKENS)",
                field="Authorization",
            )
            await refuse(send, error, [("www-authenticate", 'Bearer realm="oneoff-runner"')])

    async def _signed_in(self, scope: Scope, receive: Receive, send: Send, token: str) -> None:
        """A request with no API token, when an identity provider is trusted."""
        assert self.oauth is not None
        if not token:
            await self.oauth.refuse(scope, send, None)
            return
        try:
            await self.oauth.sign_in(scope, token)
        except OAuthError as exc:
            await self.oauth.refuse(scope, send, exc)
            return
        if self.operation is None or await allowed(
            self.oauth.policy, scope, self.operation(scope), send
        ):
            await self.app(scope, receive, send)

    def _tenant(self, presented: str) -> Tenant | None:
        """The tenant whose API token was presented; every token is compared, matching or not."""
        if not presented:
            return None
        candidate = presented.encode()
        matches = [tenant for token, tenant in self.tokens if hmac.compare_digest(candidate, token)]
        return matches[0] if matches else None


def _bearer(header: str) -> str:
    """The token of `Authorization: Bearer <token>`; empty for any other header."""
    scheme, _, presented = header.partition(" ")
    return presented.strip() if scheme.lower() == "bearer" else ""


def _origins_pattern(entries: list[str]) -> str:
    """One regular expression for CORS of the allowed origins (`:*`: any port)."""
    alternatives = []
    for entry in entries:
        origin = parse_origin(entry, entry=True)
        name = origin.address.name
        host = re.escape(f"[{name}]" if ":" in name else name)
        port = origin.address.port
        suffix = r"(?::[0-9]+)?" if origin.address.any_port else (f":{port}" if port else "")
        alternatives.append(f"{origin.scheme}://{host}{suffix}")
    return "(?:" + "|".join(alternatives) + ")"
