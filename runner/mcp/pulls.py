"""`pull_image` within the answer bound: a pull lasts as long as the registry takes, longer than
hosts wait for a call (the TypeScript SDK gives up after 60 s), so a call answers within
`RUNNER_MCP_ANSWER_SECONDS` with the image, or with "still pulling" while the pull goes on in
the runner. The next call with the same arguments, by the same tenant, follows that pull
instead of starting another. A call the host cancels stops its pull, as before.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from typing import Literal

import anyio
from pydantic import BaseModel, Field

from runner.engine_models import PulledImage, PullImageRequest
from runner.service import RunnerService
from runner.spec import EventSink
from runner.tenancy import Tenant

Key = tuple[str, str, str]


class PullView(BaseModel):
    """What pull_image answers: the pulled image, or a pull still going."""

    status: Literal["pulled", "pulling"]
    image: str = Field(description="The reference as asked.")
    id: str | None = Field(None, description="The image's id on the engine, once pulled.")
    size: int | None = Field(None, description="Bytes on the engine, once pulled.")


class Relay:
    """The pull's events, to whichever call follows it now (none between calls)."""

    def __init__(self) -> None:
        self.listener: EventSink | None = None

    def __call__(self, kind: str, text: str) -> None:
        if self.listener is not None:
            self.listener(kind, text)


class Pulls:
    """The pulls that outlived the call that started them, by tenant and arguments."""

    def __init__(self) -> None:
        self._going: dict[Key, tuple[asyncio.Task[PulledImage], Relay, float]] = {}

    async def follow(
        self,
        service: RunnerService,
        request: PullImageRequest,
        tenant: Tenant,
        listener: EventSink,
        seconds: float,
    ) -> tuple[PullView, float]:
        """The pull of `request` (started, or the one going), followed for at most `seconds`;
        with how long it has lasted."""
        key = _key(request, tenant)
        if key not in self._going:
            relay = Relay()
            pull = asyncio.ensure_future(service.pull_image(request, tenant, relay))
            pull.add_done_callback(_retrieved)
            pull.add_done_callback(lambda _: self._drop(key, pull))
            self._going[key] = (pull, relay, time.monotonic())
        pull, relay, began = self._going[key]
        relay.listener = listener
        try:
            with anyio.move_on_after(seconds):
                found = await asyncio.shield(pull)
                return PullView(status="pulled", **found.model_dump(exclude={"status"})), 0.0
        except asyncio.CancelledError:
            pull.cancel()  # the host stopped the call: the pull stops too
            raise
        finally:
            relay.listener = None
        return PullView(status="pulling", image=request.image), time.monotonic() - began

    def _drop(self, key: Key, pull: asyncio.Task[PulledImage]) -> None:
        if key in self._going and self._going[key][0] is pull:
            del self._going[key]


def _key(request: PullImageRequest, tenant: Tenant) -> Key:
    """Calls follow one pull only with the same tenant, image and credentials."""
    auth = request.auth_config.model_dump_json() if request.auth_config else ""
    return tenant.label, request.image, hashlib.sha256(auth.encode()).hexdigest()


def _retrieved(pull: asyncio.Task[PulledImage]) -> None:
    """A pull nobody followed to its end failed or was cancelled: nothing to report then (the
    next call pulls again and answers its own error)."""
    if not pull.cancelled():
        pull.exception()


def still_pulling(view: PullView, seconds: float) -> str:
    return (
        f"still pulling {view.image} ({seconds:.0f}s so far); it goes on in the runner: call "
        "pull_image again with the same arguments to wait for it"
    )
