"""The files runs hand back, as MCP resources: `resources/read` of a `run://` uri (what a client
does with an answer's `resource_link`), for the run's own tenant, as `read_file` reads it; one
resource template naming such uris; and an empty resource list (a run's files are named in its
answer, not listed: they come and go with runs).

A file is read whole up to `reading.READ_BYTES`; past it, its head comes back with
`_meta` saying so (`oneoff-runner/size`, `oneoff-runner/truncated`). An unknown or foreign uri is
JSON-RPC -32602 naming the uri, as SEP-2164 says.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError

from runner.errors import RunnerError
from runner.mcp.files import HandedBack
from runner.mcp.reading import read_returned
from runner.mcp.tasks import caller
from runner.service import RunnerService

TEMPLATE = types.ResourceTemplate(
    name="returned-file",
    title="A file a run handed back",
    uri_template="run://{run_id}/files/{path}",
    description="A file named in a run's answer (its `outputs` or `response: true` paths), "
    "readable by the token that started the run until the run's result expires.",
)
SIZE = "oneoff-runner/size"
TRUNCATED = "oneoff-runner/truncated"


def serve_resources(server: MCPServer, service: Callable[[], RunnerService]) -> None:
    """Answer `resources/list`, `resources/templates/list` and `resources/read` on `server`."""

    async def listed(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=[])

    async def templates(
        ctx: ServerRequestContext[Any, Any], params: types.PaginatedRequestParams
    ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=[TEMPLATE])

    async def read(
        ctx: ServerRequestContext[Any, Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = str(params.uri)
        try:
            found = await read_returned(service(), caller(ctx.request), uri)
        except RunnerError as exc:
            raise MCPError(types.INVALID_PARAMS, f"{uri}: {exc.message}", {"uri": uri}) from exc
        return types.ReadResourceResult(contents=[contents(uri, found)])

    lowlevel = server._lowlevel_server  # noqa: SLF001 - MCPServer's resources are static ones
    lowlevel.add_request_handler("resources/list", types.PaginatedRequestParams, listed)
    lowlevel.add_request_handler(
        "resources/templates/list", types.PaginatedRequestParams, templates
    )
    lowlevel.add_request_handler("resources/read", types.ReadResourceRequestParams, read)


def contents(
    uri: str, found: HandedBack
) -> types.TextResourceContents | types.BlobResourceContents:
    """The file as text when it is text, else as base64; its size, and whether only its head
    came, in `_meta`."""
    meta = {SIZE: found.size, TRUNCATED: found.size > len(found.data)}
    if found.text:
        text = found.data.decode("utf-8", "ignore")
        return types.TextResourceContents(uri=uri, mime_type=found.mime_type, text=text, _meta=meta)
    blob = base64.b64encode(found.data).decode()
    return types.BlobResourceContents(uri=uri, mime_type=found.mime_type, blob=blob, _meta=meta)
