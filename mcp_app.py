"""The MCP front door: the server and its tools (`runner.mcp.tools`) over Streamable HTTP and
stdio.

The HTTP app is stateless (any replica can answer any request) and speaks plain JSON or SSE as
the client's `Accept` header asks; `runner.mcp.http` handles what spans messages (batches,
cancellation, hang-ups, the size limit) in front of both, and `runner.guards` what both doors
check first (the token, and what a web page could send). `create_app(settings)` builds it;
`app = create_app()` is what `uvicorn mcp_app:app` serves.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPDeprecationWarning
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from backends import get_backend
from runner.backend import Backend
from runner.guards import guard
from runner.mcp import stdio
from runner.mcp.http import Authorize, JsonRpcDoor
from runner.mcp.tools import build_server, read_only_tools
from runner.oauth.door import allowed, mcp_operation
from runner.service import RunnerService, service_scope
from runner.settings import Settings, get_settings

log = logging.getLogger("oneoff_runner.mcp")

# Output reaches clients as log messages, which protocol 2026-07-28 deprecates (SEP-2577) but
# older clients rely on; modern clients get them only when they opt in with a log level.
warnings.filterwarnings(
    "ignore", message="The logging capability is deprecated", category=MCPDeprecationWarning
)

NO_SDK_HOST_CHECK = TransportSecuritySettings(enable_dns_rebinding_protection=False)
"""The SDK's own Host and Origin check is off: `runner.guards` makes it for both doors alike.
(The SDK still refuses a POST that is not JSON, behind the guard's own 415.)"""


class _ByAccept:
    """Sends each request to the JSON or the SSE transport, as its `Accept` header asks."""

    def __init__(self, json_app: Starlette, sse_app: Starlette) -> None:
        self.json_app = json_app
        self.sse_app = sse_app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        accept = Headers(scope=scope).get("accept", "").lower()
        wants_sse = "text/event-stream" in accept or "*/*" in accept
        await (self.sse_app if wants_sse else self.json_app)(scope, receive, send)


def create_app(
    settings: Settings | None = None,
    backend: Backend | None = None,
    service: RunnerService | None = None,
) -> Starlette:
    """The Streamable HTTP app at `/mcp`. Given a `service` (shared with REST in `serve`), it
    uses it; otherwise its lifespan builds and stops its own."""
    settings = settings or get_settings()
    running: list[RunnerService] = []
    server = build_server(lambda: running[0], settings)
    transports = [
        server.streamable_http_app(
            stateless_http=True,
            json_response=json_mode,
            transport_security=NO_SDK_HOST_CHECK,
            max_request_body_size=settings.max_request_bytes,
        )
        for json_mode in (True, False)
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            running[:] = [
                await stack.enter_async_context(
                    service_scope(settings, lambda: backend or get_backend(settings), service)
                )
            ]
            for transport in transports:
                await stack.enter_async_context(transport.router.lifespan_context(transport))
            yield

    door = JsonRpcDoor(
        _ByAccept(*transports), settings.max_request_bytes, _authorize(settings, server)
    )
    app = Starlette(routes=[Route("/mcp", door)], lifespan=lifespan)
    guard(app, settings, open_paths=())
    return app


def _authorize(settings: Settings, server: MCPServer) -> Authorize | None:
    """The scopes an access token needs for a message (`runner.oauth.door`)."""
    policy = settings.oauth_policy()
    if policy is None:
        return None
    read_only = read_only_tools(server)

    async def authorize(scope: Scope, message: Any, send: Send) -> bool:
        return await allowed(policy, scope, mcp_operation(message, read_only), send)

    return authorize


async def serve_stdio(settings: Settings) -> None:
    """MCP over stdin/stdout, for clients that launch a command (Claude Desktop, Cursor), with
    the same request size limit as HTTP (`runner.mcp.stdio`)."""
    async with service_scope(settings, lambda: get_backend(settings)) as service:
        server = build_server(lambda: service, settings)
        await stdio.serve(server._lowlevel_server, settings.max_request_bytes)  # noqa: SLF001


app = create_app()
