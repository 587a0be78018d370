"""A run as MCP notifications: progress (phases, and a heartbeat while it lasts) and its output
as log messages at the level the client asked for.

Clients time a tool call out unless progress keeps coming (the TypeScript SDK after 60 s, even
with `resetTimeoutOnProgress`, if nothing arrives), so a heartbeat goes out every
`HEARTBEAT_SECONDS` whatever the run is doing, carrying the elapsed seconds as `progress` and the
run's timeout as `total`.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, get_args

import anyio
import mcp_types as types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context

HEARTBEAT_SECONDS = 5.0
PULL_REPORT_SECONDS = 0.5
"""Layer progress comes many times a second; a notification at most this often carries it."""
LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)
OUTPUT_LEVEL: types.LoggingLevel = "info"


class LogLevels:
    """The `logging/setLevel` of each caller (protocols before 2026-07-28, where the level is
    per request). Over stateless HTTP a caller is its bearer token; over stdio, the one client."""

    def __init__(self) -> None:
        self.levels: dict[str, types.LoggingLevel] = {}

    async def set_level(
        self, ctx: ServerRequestContext[Any, Any], params: types.SetLevelRequestParams
    ) -> types.EmptyResult:
        self.levels[_caller(ctx.request)] = params.level
        return types.EmptyResult()

    def wants(self, ctx: Context, level: types.LoggingLevel) -> bool:
        chosen = self.levels.get(_caller(ctx.request_context.request), LEVELS[0])
        return LEVELS.index(level) >= LEVELS.index(chosen)


def _caller(request: Any) -> str:
    headers = getattr(request, "headers", None)
    return str(headers.get("authorization", "")) if headers is not None else ""


class RunProgress:
    """Turns run events into MCP notifications, in order, without blocking the run."""

    def __init__(self, ctx: Context, total: float | None, send_output: bool) -> None:
        self.ctx = ctx
        self.total = total
        self.send_output = send_output
        self.send, self.receive = anyio.create_memory_object_stream[tuple[str, str]](
            max_buffer_size=1024
        )
        self.started = self.sent_at = time.monotonic()
        self.phase = "starting"
        self.last = 0.0
        self.layers: dict[str, tuple[int, int]] = {}
        """Bytes downloaded and size of each layer being pulled, as the engine reports them."""

    def __call__(self, kind: str, text: str) -> None:
        try:
            self.send.send_nowait((kind, text))
        except anyio.WouldBlock:
            pass  # a client that cannot keep up loses live lines, never the result

    async def pump(self) -> None:
        """Forward events until the run ends, with progress at least every heartbeat."""
        async with self.receive:
            while True:
                event = None
                wait = self.sent_at + HEARTBEAT_SECONDS - time.monotonic()
                with anyio.move_on_after(max(wait, 0)):
                    try:
                        event = await self.receive.receive()
                    except anyio.EndOfStream:
                        return
                if event is not None:
                    await self._forward(*event)
                if time.monotonic() - self.sent_at >= HEARTBEAT_SECONDS:
                    await self._progress(self.phase)

    async def _forward(self, kind: str, text: str) -> None:
        if kind == "phase":
            self.phase = text
            await self._progress(text)
        elif kind in ("stdout", "stderr") and self.send_output:
            await self.ctx.log(OUTPUT_LEVEL, text, logger_name=kind)
        elif kind == "pull":
            layer = json.loads(text)
            if str(layer["status"]).startswith("Downloading"):  # not extracting
                self.layers[layer["id"]] = (int(layer["current"]), int(layer["total"]))
            if time.monotonic() - self.sent_at >= PULL_REPORT_SECONDS:
                await self._progress(self.phase)

    async def _progress(self, message: str) -> None:
        """Progress is the elapsed seconds, strictly increasing, as the protocol asks."""
        elapsed = max(round(time.monotonic() - self.started, 1), self.last + 0.1)
        self.last, self.sent_at = elapsed, time.monotonic()
        note = f"{message} ({elapsed:.0f}s elapsed"
        note += f" of at most {self.total:.0f}s)" if self.total else ")"
        if self.layers:
            done = sum(current for current, _ in self.layers.values())
            size = sum(total for _, total in self.layers.values())
            note += f"; downloaded {done / 1e6:.1f} of {size / 1e6:.1f} MB"
        await self.ctx.report_progress(elapsed, self.total, message=note)


@asynccontextmanager
async def reporting(
    ctx: Context, total: float | None, send_output: bool
) -> AsyncIterator[RunProgress]:
    """Notifications for the duration of the block: events given to the yielded sink are
    forwarded in order, with a heartbeat, until the block ends."""
    progress = RunProgress(ctx, total, send_output)
    pump = asyncio.ensure_future(progress.pump())
    try:
        yield progress
    finally:
        progress.send.close()
        await asyncio.gather(pump, return_exceptions=True)
