"""Async runs: `POST /runs` starts one and answers at once; the other routes follow, list and
cancel runs (their returned paths as bytes: `runner.rest.files`)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import Response
from fastapi.sse import EventSourceResponse, ServerSentEvent

from runner.rest.answers import errors
from runner.rest.bodies import REQUEST_BODY, feed_parts, run_body
from runner.rest.deps import Caller, RunId, Service, known_run
from runner.run_status import RunAccepted, RunList, RunState, RunStatus

router = APIRouter(tags=["runs"])
RUN_LOOKUP = errors("invalid", "run_not_found", "engine_down")
RUN_LINKS = {
    name: {"operationId": operation, "parameters": {"run_id": "$response.body#/run_id"}}
    for name, operation in {
        "status": "get_run_runs__run_id__get",
        "logs": "run_logs_runs__run_id__logs_get",
        "cancel": "cancel_run_runs__run_id__cancel_post",
        "remove": "remove_run_runs__run_id__delete",
    }.items()
}
"""Where an async run's id leads (a synchronous run's id leads nowhere: it is not kept)."""
LOCATION = {
    "Location": {
        "description": "The run's status URL, as `status_url`.",
        "required": True,
        "schema": {"type": "string", "format": "uri"},
    }
}


@router.post(
    "/runs",
    response_model=RunAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **errors(
            "invalid",
            "policy",
            "volume_missing",
            "content_size",
            "busy",
            "kept_runs",
            "engine_down",
        ),
        202: {"headers": LOCATION, "links": RUN_LINKS},
    },
    summary="Start a run, return at once",
    openapi_extra=REQUEST_BODY,
)
async def start_run(
    service: Service,
    caller: Caller,
    request: Request,
    response: Response,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            description="A repeated key returns the run it started (keys are per API token).",
        ),
    ] = None,
) -> RunAccepted:
    """Same body as POST /run. The run goes on after this answers, and after the client goes
    away; follow it with the returned URLs, cancel it with DELETE. A multipart request is
    answered once its content is in (or the run failed to start: see its state)."""
    async with run_body(request, service) as body:
        started = await service.runs.start(
            body.request, caller, idempotency_key, body.uploads, body.ticket
        )
        launched = asyncio.ensure_future(service.runs.until_launched(started.run_id))
        await feed_parts(body, until=launched)
    status_url = str(request.url_for("get_run", run_id=started.run_id))
    response.headers["Location"] = status_url
    return RunAccepted(
        run_id=started.run_id,
        state=started.state,
        status_url=status_url,
        logs_url=str(request.url_for("run_logs", run_id=started.run_id)),
    )


@router.get(
    "/runs/{run_id}", response_model=RunStatus, responses=RUN_LOOKUP, summary="A run's state"
)
async def get_run(run_id: RunId, service: Service, caller: Caller) -> Response:
    """State and times; once finished, `result` holds what POST /run would have returned."""
    found = await service.runs.status(caller, run_id)
    return Response(orjson.dumps(found.model_dump(mode="json")), media_type="application/json")


@router.get(
    "/runs/{run_id}/logs",
    response_class=EventSourceResponse,
    responses=RUN_LOOKUP,
    summary="Follow a run's output (Server-Sent Events)",
)
async def run_logs(
    run_id: Annotated[str, Depends(known_run)],
    service: Service,
    caller: Caller,
    follow: Annotated[bool, Query(description="false: the output so far, then exit.")] = True,
) -> AsyncIterator[ServerSentEvent]:
    """Events `stdout` and `stderr` (data: a JSON string) from the run's first byte, so a late
    subscriber misses nothing; `phase` and `pull` (layer progress) while it starts; then one
    `exit` event whose data is the final state with the result, as GET /runs/{id} gives it."""
    async for kind, text in service.runs.events(caller, run_id, follow=follow):
        if kind in ("exit", "pull"):
            yield ServerSentEvent(event=kind, raw_data=text)
        else:
            yield ServerSentEvent(event=kind, data=text)


@router.delete(
    "/runs/{run_id}", response_model=RunStatus, responses=RUN_LOOKUP, summary="Remove a run"
)
async def remove_run(run_id: RunId, service: Service, caller: Caller) -> RunStatus:
    """Remove the run with its result and returned files, killing it first if it has not
    ended (its container is removed): the answer is its last status (`cancelled` for a run
    that was killed), and it is not found from then on."""
    return await service.runs.remove(caller, run_id, unfinished=True)


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunStatus,
    responses=RUN_LOOKUP,
    summary="Cancel a run, keep its state",
)
async def cancel_run(run_id: RunId, service: Service, caller: Caller) -> RunStatus:
    """Kill the run and remove its container; its state becomes `cancelled` and stays
    readable (GET /runs/{id}, its logs so far) until it expires or is removed (DELETE). A run
    that has ended is left as it is. No body."""
    return await service.runs.cancel(caller, run_id)


@router.get(
    "/runs",
    response_model=RunList,
    responses=errors("invalid", "engine_down"),
    summary="List runs",
)
async def list_runs(
    service: Service,
    caller: Caller,
    state: Annotated[RunState | None, Query(description="Only runs in this state.")] = None,
    image: Annotated[str | None, Query(description="Only runs of this image.")] = None,
    limit: Annotated[
        int, Query(ge=1, le=1000, description="Newest first, at most this many.")
    ] = 100,
) -> RunList:
    """Async runs the backend still keeps (finished ones for `result_ttl_seconds`), without
    their results."""
    return await service.runs.list_runs(caller, state, image, limit)
