"""What every REST route shares: the service and the caller as injected dependencies, the
documented error answers, and cancelling work when the client goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from runner.errors import Cancelled
from runner.models import ErrorBody
from runner.rest_bodies import RunBody, feeding
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

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "model": ErrorBody}
    for code, text in {
        401: "Missing or wrong API token, or the registry refused the credentials.",
        403: "The operator's policy refused the request.",
        404: "Image, volume or run not found.",
        409: "The volume exists, or is in use.",
        413: "Content or returned content over the operator's size limits.",
        422: "A field is invalid; `field` names it.",
        429: "All run slots and the queue are full; see Retry-After.",
        501: "The backend cannot do this (e.g. list images on Kubernetes).",
        502: "The image registry could not be reached.",
        499: "The client went away; the run was cancelled.",
        503: "The container engine is unreachable, or the runner is shutting down.",
    }.items()
}


async def cancel_on_disconnect(
    request: Request, work: Coroutine[Any, Any, T], body: RunBody | None = None
) -> T:
    """Await `work` (feeding it the body's content parts, if any), cancelling it if the client
    goes away (a run's container is then removed; a pull stops)."""
    task = asyncio.ensure_future(work)

    async def disconnected() -> None:
        if body is not None:
            await feeding(body, task)
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
