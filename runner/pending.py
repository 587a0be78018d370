"""An async run before its container exists: queued for a slot, then pulling and preparing.

Kept in this process's memory only, with the phase and pull-progress events its log
subscribers replay; once the container exists, the backend answers for the run.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from runner.admission import Ticket
from runner.run_status import RunState, RunStatus
from runner.spec import RunControl, RunRecord, RunSpec
from runner.tenancy import Tenant


@dataclass
class Pending:
    """A run whose container does not exist yet."""

    spec: RunSpec
    control: RunControl
    key: str | None
    ticket: Ticket
    tenant: Tenant
    state: str = "queued"
    cancelled: bool = False
    stopped: bool = False
    events: list[tuple[str, str]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def image(self) -> str:
        return self.spec.image

    @property
    def created_at(self) -> float:
        return self.spec.accepted_at or 0.0

    def add(self, kind: str, text: str) -> None:
        self.events.append((kind, text))
        self._notify()

    def move(self, state: str) -> None:
        self.state = state
        self._notify()

    def _notify(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def record(self, state: str, error: str | None = None) -> RunRecord:
        return RunRecord(
            run_id=self.spec.run_id,
            state=state,
            image=self.image,
            created_at=self.created_at,
            finished_at=time.time(),
            error=error,
            tenant=self.tenant.label,
            evictable=self.spec.evictable,
        )


async def replay(pending: Pending) -> AsyncIterator[tuple[str, str]]:
    seen = 0
    while True:
        changed = pending.changed
        for event in pending.events[seen:]:
            yield event
        seen = len(pending.events)
        if pending.state not in ("queued", "pulling") or pending.cancelled:
            return
        await changed.wait()


def pending_status(pending: Pending) -> RunStatus:
    state: RunState = "cancelled" if pending.cancelled else pending.state  # type: ignore[assignment]
    return RunStatus(
        run_id=pending.spec.run_id,
        state=state,
        image=pending.image,
        created_at=datetime.fromtimestamp(pending.created_at, UTC),
    )
