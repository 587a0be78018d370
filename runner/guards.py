"""What both HTTP doors (REST and MCP) check before a request reaches them, in one place
(`guard`), outermost first:

1. `BrowserGuard`: what a web page in the operator's browser could send (DNS rebinding,
   cross-site requests, bodies that do not say what they are: `runner.browsers`); every answer
   also forbids framing, so no page can lay a runner's /docs under a click.
2. CORS answers, for the origins the operator allows (`RUNNER_ALLOWED_ORIGINS`) and no others.
3. `BearerTokenAuth`: the API token. Tokens come from settings (`RUNNER_API_TOKENS`,
   `RUNNER_OPERATOR_TOKENS`, their files). Every presented token is compared with every
   configured one in constant time, so timing tells nothing about how much of a token was
   right. The token that matched names the request's tenant (`runner.tenancy`), which the
   middleware leaves on the ASGI scope for the front doors to pass to the service. Without
   configured tokens every request is the local tenant, an operator (the service then binds to
   loopback unless the operator says otherwise).

A refusal is JSON, `{"error", "message", "field"}`, the same on both doors; `field` names the
header to fix, the message the setting that would allow it.
"""

from __future__ import annotations

import hmac
import json
import re
from collections.abc import Collection

from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runner.browsers import JSON, BrowserPolicy, parse_origin
from runner.errors import RunnerError, Unauthenticated
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
) -> None:
    """Put the checks every HTTP door shares in front of `app`: `open_paths` need no token,
    `probe_paths` (among them) skip the Host check when tokens are required, and request
    bodies must be of `body_types`."""
    tokens = settings.tokens()
    app.add_middleware(BearerTokenAuth, tokens=tokens, open_paths=frozenset(open_paths))
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
        tokens=bool(tokens),
        probe_paths=probe_paths,
        body_types=body_types,
    )
    app.add_middleware(BrowserGuard, policy=policy)


async def refuse(send: Send, error: RunnerError, headers: Collection[tuple[str, str]] = ()) -> None:
    """Answer a request no door will see, with the JSON body of `error`."""
    body = json.dumps(error.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": error.status_code,
            "headers": [
                (b"content-type", JSON.encode()),
                (b"content-length", str(len(body)).encode()),
                *((name.encode(), value.encode()) for name, value in headers),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class BrowserGuard:
    def __init__(self, app: ASGIApp, policy: BrowserPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self.policy.judge(scope)
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
        error = Unauthenticated(
            "send 'Authorization: Bearer <token>' with a token the operator configured "
            "(RUNNER_API_TOKENS)",
            field="Authorization",
        )
        await refuse(send, error, [("www-authenticate", 'Bearer realm="oneoff-runner"')])

    def _tenant(self, header: str) -> Tenant | None:
        """The tenant whose token was presented; every token is compared, matching or not."""
        scheme, _, presented = header.partition(" ")
        if scheme.lower() != "bearer" or not presented:
            return None
        candidate = presented.strip().encode()
        matches = [tenant for token, tenant in self.tokens if hmac.compare_digest(candidate, token)]
        return matches[0] if matches else None


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
