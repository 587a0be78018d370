"""A run as MCP notifications, bounded: progress carrying the phase and the latest output, and
(for clients that asked for them) the output as log messages.

Progress (sent only when the request carries a `progressToken`) is the channel both protocol
eras keep: at most one notification a second while something changes, a heartbeat every
`HEARTBEAT_SECONDS` otherwise, `progress` the elapsed seconds (strictly increasing), `total` the
run's timeout, `message` the phase and, when output arrived since the last one, its newest
`PROGRESS_TAIL_BYTES`. Log messages (deprecated in 2026-07-28) are coalesced per stream to at
most one a second of at most `LOG_CHUNK_BYTES` (the newest whole lines), and stop after
`LOG_CALL_BYTES` a call: a chatty run cannot flood a client, and the answer has the output.
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
MIN_INTERVAL_SECONDS = 1.0
"""Rate limit of each channel (the spec asks for one): a notification at most this often."""
PROGRESS_TAIL_BYTES = 1024
PROGRESS_MESSAGE_BYTES = 1200
LOG_CHUNK_BYTES = 4096
LOG_CALL_BYTES = 64 * 1024
LEVELS: tuple[types.LoggingLevel, ...] = get_args(types.LoggingLevel)
OUTPUT_LEVEL: types.LoggingLevel = "info"
STREAMS = ("stdout", "stderr")


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


def tail_text(data: bytes, limit: int) -> str:
    """The last `limit` bytes of `data`, from a line start when there is one, as text (a
    character cut at the edge dropped)."""
    if len(data) <= limit:
        return data.decode("utf-8", "replace")
    cut = data[-limit:]
    newline = cut.find(b"\n")
    if 0 <= newline < len(cut) - 1:
        cut = cut[newline + 1 :]
    return cut.decode("utf-8", "ignore")


class RunProgress:
    """Turns run events into bounded MCP notifications, in order, without blocking the run."""

    def __init__(self, ctx: Context, total: float | None, send_output: bool) -> None:
        self.ctx = ctx
        self.total = total
        self.send_output = send_output
        self.send, self.receive = anyio.create_memory_object_stream[tuple[str, str]](
            max_buffer_size=1024
        )
        self.started = time.monotonic()
        self.sent_at = self.started - MIN_INTERVAL_SECONDS
        self.logged_at = 0.0
        self.phase = "starting"
        self.last = 0.0
        self.changed = False
        """A phase or pull progress came since the last progress notification."""
        self.tail = b""
        self.fresh = False
        """Output arrived since the last progress notification."""
        self.unsent = dict.fromkeys(STREAMS, b"")
        self.skipped = dict.fromkeys(STREAMS, 0)
        self.logged = 0
        self.layers: dict[str, tuple[int, int]] = {}
        """Bytes downloaded and size of each layer being pulled, as the engine reports them."""

    def __call__(self, kind: str, text: str) -> None:
        try:
            self.send.send_nowait((kind, text))
        except anyio.WouldBlock:
            pass  # a client that cannot keep up loses live lines, never the result

    async def pump(self) -> None:
        """Forward events until the run ends: progress at least every heartbeat, at most
        every `MIN_INTERVAL_SECONDS`; the log messages still due when it ends go out."""
        async with self.receive:
            while True:
                with anyio.move_on_after(max(self._due() - time.monotonic(), 0)):
                    try:
                        self._take(*await self.receive.receive())
                    except anyio.EndOfStream:
                        await self._log()
                        return
                    while True:  # whatever else is waiting, before deciding what to send
                        try:
                            self._take(*self.receive.receive_nowait())
                        except (anyio.WouldBlock, anyio.EndOfStream):
                            break
                await self._send_due()

    def _due(self) -> float:
        """When the next notification may or must go out."""
        due = self.sent_at + (
            MIN_INTERVAL_SECONDS if self.changed or self.fresh else HEARTBEAT_SECONDS
        )
        if any(self.unsent.values()):
            due = min(due, self.logged_at + MIN_INTERVAL_SECONDS)
        return due

    def _take(self, kind: str, text: str) -> None:
        if kind == "phase":
            self.phase, self.changed = text, True
        elif kind in STREAMS:
            data = text.encode()
            self.tail = (self.tail + data)[-PROGRESS_TAIL_BYTES:]
            self.fresh = True
            if self.send_output and self.logged < LOG_CALL_BYTES:
                kept = self.unsent[kind] + data
                self.skipped[kind] += max(len(kept) - LOG_CHUNK_BYTES, 0)
                self.unsent[kind] = kept[-LOG_CHUNK_BYTES:]
        elif kind == "pull":
            layer = json.loads(text)
            if str(layer["status"]).startswith("Downloading"):  # not extracting
                self.layers[layer["id"]] = (int(layer["current"]), int(layer["total"]))
                self.changed = True

    async def _send_due(self) -> None:
        now = time.monotonic()
        if now - self.sent_at >= (
            MIN_INTERVAL_SECONDS if self.changed or self.fresh else HEARTBEAT_SECONDS
        ):
            await self._progress()
        if now - self.logged_at >= MIN_INTERVAL_SECONDS:
            await self._log()

    async def _progress(self) -> None:
        """Progress is the elapsed seconds, strictly increasing, as the protocol asks."""
        elapsed = max(round(time.monotonic() - self.started, 1), self.last + 0.1)
        self.last, self.sent_at = elapsed, time.monotonic()
        note = f"{self.phase} ({elapsed:.0f}s elapsed"
        note += f" of at most {self.total:.0f}s)" if self.total else ")"
        if self.layers:
            done = sum(current for current, _ in self.layers.values())
            size = sum(total for _, total in self.layers.values())
            note += f"; downloaded {done / 1e6:.1f} of {size / 1e6:.1f} MB"
        note = note[: PROGRESS_MESSAGE_BYTES // 4]
        if self.fresh:
            room = PROGRESS_MESSAGE_BYTES - len(note.encode()) - 40
            note += "\n--- latest output ---\n" + tail_text(self.tail, min(room, len(self.tail)))
        self.changed = self.fresh = False
        await self.ctx.report_progress(elapsed, self.total, message=note)

    async def _log(self) -> None:
        """The output that came since the last log message, newest whole lines, per stream."""
        for name in STREAMS:
            data, skipped = self.unsent[name], self.skipped[name]
            self.unsent[name], self.skipped[name] = b"", 0  # past the limit, dropped: never due
            if not data or self.logged >= LOG_CALL_BYTES:
                continue
            if skipped:
                start = data.find(b"\n") + 1 if b"\n" in data[:-1] else 0
                shown = data[start:].decode("utf-8", "ignore")
                text = f"[... {skipped + start} bytes not shown ...]\n{shown}"
            else:
                text = data.decode("utf-8", "replace")
            self.logged += len(text.encode())
            if self.logged >= LOG_CALL_BYTES:
                text += "\n[live output limited to 64 KiB here; the answer has the output]"
            self.logged_at = time.monotonic()
            await self.ctx.log(OUTPUT_LEVEL, text, logger_name=name)


@asynccontextmanager
async def reporting(
    ctx: Context, total: float | None, send_output: bool
) -> AsyncIterator[RunProgress]:
    """Notifications for the duration of the block: events given to the yielded sink are
    forwarded, bounded, until the block ends."""
    progress = RunProgress(ctx, total, send_output)
    pump = asyncio.ensure_future(progress.pump())
    try:
        yield progress
    finally:
        progress.send.close()
        await asyncio.gather(pump, return_exceptions=True)
