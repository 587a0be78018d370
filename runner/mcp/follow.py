"""Following an async run inside one tool call, within the answer bound.

`run_container` and `wait_run` start or find a run, forward its events (phases, output) to the
call's notifications until it ends or the bound is near, then answer: the result once it has
ended, else "still running" with the next call to make. The run belongs to the backend, not to
the call: a call that stops waiting leaves it running (`run_container`'s caller cancelling is
the one exception, handled by the tool: the user pressed stop).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable

import anyio
from mcp.types import CallToolResult

from runner.mcp.results import ended_answer, expiry, running_answer
from runner.service import RunnerService
from runner.spec import EventSink
from runner.tenancy import Tenant
from runner.threads import in_worker

ASSEMBLY_SECONDS = 2.0
"""Kept from the bound, once the run has ended, for keeping its end and building the answer."""
READ_SECONDS = 0.5
"""Of those, kept for reading the kept result and building the answer."""


async def answer(
    service: RunnerService,
    tenant: Tenant,
    run_id: str,
    until: float,
    offsets: tuple[int, int],
    sink: EventSink | None,
) -> CallToolResult:
    """The run's answer once it has ended, or at `until` (a `time.monotonic()` moment) with
    what it has done so far; output before `offsets` (bytes of stdout, stderr) is not shown."""
    seconds = until - ASSEMBLY_SECONDS - time.monotonic()
    if seconds > 0 and await _follow(service, tenant, run_id, seconds, offsets, sink):
        # its container goes once its end is kept: answering after that frees its volumes
        await service.runs.settle(run_id, max(until - READ_SECONDS - time.monotonic(), 0))
    status = await service.runs.status(tenant, run_id)
    if status.finished:
        expires = expiry(status, service.settings.result_ttl_seconds)
        ended = await in_worker(ended_answer, status, offsets, expires)
        await service.runs.delivered(tenant, run_id)  # room under the kept-runs bound, if needed
        return ended
    logs = await service.runs.output(tenant, run_id, *offsets)
    began = (status.started_at or status.created_at).timestamp()
    return running_answer(status, logs, time.time() - began)


async def _follow(
    service: RunnerService,
    tenant: Tenant,
    run_id: str,
    seconds: float,
    offsets: tuple[int, int],
    sink: EventSink | None,
) -> bool:
    """Until the run ends or `seconds` pass, its events to `sink` (output before `offsets`
    left out: the caller has seen it); whether it ended."""
    skip = dict(zip(("stdout", "stderr"), offsets, strict=True))
    forward: Callable[[str, str], None] = sink or (lambda kind, text: None)
    # closed on the way out, so the engine's log stream under it is closed now, not at GC
    with anyio.move_on_after(seconds):
        async with contextlib.aclosing(service.runs.events(tenant, run_id)) as events:
            async for kind, text in events:
                if kind == "exit":
                    return True
                if kind in skip and skip[kind] > 0:
                    data = text.encode()
                    text = data[skip[kind] :].decode("utf-8", "ignore")
                    skip[kind] = max(skip[kind] - len(data), 0)
                    if not text:
                        continue
                forward(kind, text)
    return False
