"""What every REST route shares: the service and the caller as injected dependencies, a run id
in a path, and cancelling work when the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Path, Request

from runner.errors import Cancelled
from runner.models import RUN_ID_PATTERN
from runner.rest.bodies import RunBody, feed_parts
from runner.service import RunnerService
from runner.tenancy import Tenant, tenant_of

T = TypeVar("T")


def get_service(request: Request) -> RunnerService:
    service: RunnerService = request.app.state.service
    return service


def get_tenant(request: Request) -> Tenant:
    """The tenant the auth middleware found for this request's token."""
    return tenant_of(request.scope)


Service = Annotated[RunnerService, Depends(get_service)]
Caller = Annotated[Tenant, Depends(get_tenant)]
RunId = Annotated[str, Path(pattern=RUN_ID_PATTERN, description="From POST /runs.")]


async def known_run(run_id: RunId, service: Service, caller: Caller) -> str:
    """404 before a stream starts, for a run the caller does not have."""
    await service.runs.require(caller, run_id)
    return run_id


async def cancel_on_disconnect(
    request: Request, work: Coroutine[Any, Any, T], body: RunBody | None = None
) -> T:
    """Await `work` (feeding it the body's content parts, if any), cancelling it if the client
    goes away (a run's container is then removed; a pull stops)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        if body is not None:
            await feed_parts(body, until=task)
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(disconnected())
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise Cancelled("the client disconnected; its request was cancelled")
    return task.result()
