"""Admission: how many runs may run and wait at once; past that, `Busy` at once (429)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from runner.errors import Busy


class Admission:
    """At most `running` runs at once and `queued` waiting; past that, `Busy` at once.

    A ticket is taken before a request's body is read, so a ticket holder may still be sending
    its body: tickets beyond the free slots are the queue, and there are never more of them
    than the queue limit, however slowly bodies come."""

    def __init__(self, running: int, queued: int) -> None:
        self._slots = asyncio.Semaphore(running)
        self._capacity = running
        self._queue_limit = queued
        self.waiting = 0
        """Tickets not yet turned into a slot."""
        self.running = 0

    @property
    def queued(self) -> int:
        """Runs that will wait for a slot: tickets past the slots free now."""
        return max(0, self.waiting - (self._capacity - self.running))

    def reserve(self) -> Ticket:
        """A place in the queue now (or Busy now), for a run that takes its slot later."""
        if self.waiting >= self._capacity - self.running + self._queue_limit:
            raise Busy(
                f"all {self.running} run slots are busy or taken and {self.queued} runs are "
                "queued; retry shortly",
                retry_after=2,
            )
        self.waiting += 1
        return Ticket(self)

    @contextlib.asynccontextmanager
    async def slot(self, ticket: Ticket | None = None) -> AsyncIterator[None]:
        ticket = ticket or self.reserve()
        try:
            await self._slots.acquire()
        finally:
            ticket.release()
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()


class Ticket:
    """A queue place; released once, when its run gets a slot or will never ask for one."""

    def __init__(self, admission: Admission) -> None:
        self._admission: Admission | None = admission

    def release(self) -> None:
        if self._admission is not None:
            self._admission.waiting -= 1
            self._admission = None
