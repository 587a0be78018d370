"""The REST front door: thin routes over `RunnerService`, errors mapped in one place.

`create_app(settings)` builds the app (tests pass their own settings or backend);
`app = create_app()` is what `uvicorn api_app:app` serves.
"""

from __future__ import annotations

import asyncio
import logging
import posixpath
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from fastapi.sse import EventSourceResponse, ServerSentEvent
from prometheus_client import CONTENT_TYPE_LATEST

from backends import get_backend
from runner import __version__
from runner.api_docs import documented_app, open_docs_paths
from runner.auth import BearerTokenAuth
from runner.backend import Backend
from runner.engine_models import (
    Health,
    Unavailable,
)
from runner.errors import Busy, InvalidRequest, RunnerError
from runner.models import RunResult
from runner.rest_bodies import REQUEST_BODY, document_run_request, feeding, run_body
from runner.rest_deps import ERRORS, Caller, Service, cancel_on_disconnect
from runner.rest_engine import router as engine_router
from runner.rest_files import (
    OCTETS,
    PARTS_ANSWER,
    TAR,
    download_name,
    media_type,
    parts_answer,
    wants_parts,
)
from runner.run_status import RunAccepted, RunList, RunState, RunStatus
from runner.service import RunnerService, service_scope
from runner.settings import Settings, get_settings
from runner.spec import ReturnedFile

log = logging.getLogger("oneoff_runner.api")
OPEN_PATHS = frozenset({"/health", "/livez"})
router = APIRouter()

DESCRIPTION = """Run one-off containers: send an image, a command, environment variables and
files; get the exit code, stdout, stderr and files back. Everything the run created is removed.

Errors are JSON objects `{"error": <code>, "message": <what to do>, "field": <request field>}`.
"""


@router.post(
    "/run",
    response_model=RunResult,
    responses={**ERRORS, 200: PARTS_ANSWER},
    summary="Run a container",
    openapi_extra=REQUEST_BODY,
)
async def run(service: Service, caller: Caller, request: Request) -> Response:
    """Pull, run to completion, return output and `response: true` volumes, remove everything.

    The body is the JSON run request, or `multipart/form-data`: the JSON in a part named
    `request`, then each file or directory volume's content as raw bytes in a part named by its
    volume key (a directory's as tar or tar.gz). 200 whenever the container ran, whatever its
    exit code (see `status` and `exit_code`). If the client disconnects, the container is
    killed and removed.
    """
    files: dict[str, ReturnedFile] | None = {} if wants_parts(request) else None
    async with run_body(request, service) as body:
        work = service.run(
            body.request, caller, uploads=body.uploads, ticket=body.ticket, files=files
        )
        result = await cancel_on_disconnect(request, work, body)
    if files is not None:
        return parts_answer(result, files)
    # Returned content can be tens of MiB of base64: serialised once, by orjson (4x pydantic's).
    return Response(orjson.dumps(result.model_dump()), media_type="application/json")


@router.get(
    "/health",
    response_model=Health,
    responses={503: {"description": "Backend unreachable.", "model": Unavailable}},
)
async def health(service: Service) -> Health | JSONResponse:
    """200 with the engine's version when the backend answers; 503 with the reason otherwise."""
    try:
        return await service.health()
    except RunnerError as exc:
        return JSONResponse(
            status_code=503,
            content={"status": "unavailable", "backend": service.backend.name, **exc.to_dict()},
        )


@router.get("/livez", responses={200: {"description": "The process serves requests."}})
async def livez() -> dict[str, str]:
    """Liveness: the process answers; never asks the backend, so an API-server or engine
    outage does not restart every replica (and kill the runs in them). `/health` is for
    readiness."""
    return {"status": "alive"}


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {}}}},
)
async def metrics(service: Service) -> Response:
    """Runs by outcome, phase durations, runs in flight and queued, in Prometheus format."""
    return Response(service.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


# errors are JSON even where the success is an event stream
JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": value["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for code, value in ERRORS.items()
}
RunId = Annotated[str, Path(pattern=r"^[0-9a-f]{16}$", description="From POST /runs.")]


async def known_run(run_id: RunId, service: Service, caller: Caller) -> str:
    """404 before a stream starts, for a run the caller does not have."""
    await service.runs.require(caller, run_id)
    return run_id


@router.post(
    "/runs",
    response_model=RunAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    responses=ERRORS,
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
        await feeding(body, asyncio.ensure_future(service.runs.launched(started.run_id)))
    status_url = str(request.url_for("get_run", run_id=started.run_id))
    response.headers["Location"] = status_url
    return RunAccepted(
        run_id=started.run_id,
        state=started.state,
        status_url=status_url,
        logs_url=str(request.url_for("run_logs", run_id=started.run_id)),
    )


@router.get("/runs/{run_id}", response_model=RunStatus, responses=ERRORS, summary="A run's state")
async def get_run(run_id: RunId, service: Service, caller: Caller) -> Response:
    """State and times; once finished, `result` holds what POST /run would have returned."""
    found = await service.runs.status(caller, run_id)
    return Response(orjson.dumps(found.model_dump(mode="json")), media_type="application/json")


@router.get(
    "/runs/{run_id}/logs",
    response_class=EventSourceResponse,
    responses=JSON_ERRORS,
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


@router.get(
    "/runs/{run_id}/files/{path:anypath}",
    response_class=StreamingResponse,
    responses={**JSON_ERRORS, 200: {"content": {TAR: {}, OCTETS: {}}}},
    summary="A returned path, as raw bytes",
)
async def run_file(
    run_id: RunId,
    path: Annotated[str, Path(description="A `response: true` container path, e.g. app/data.")],
    service: Service,
    caller: Caller,
) -> StreamingResponse:
    """A finished run's `response: true` path: a file's bytes (`application/octet-stream`), or
    a plain tar of a directory with names relative to it (`application/x-tar`)."""
    container_path = posixpath.normpath("/" + path)
    kind, chunks = await service.run_file(caller, run_id, container_path)
    name = download_name(container_path, kind)
    return StreamingResponse(
        chunks,
        media_type=media_type(kind),
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.delete("/runs/{run_id}", response_model=RunStatus, responses=ERRORS, summary="Cancel")
async def cancel_run(run_id: RunId, service: Service, caller: Caller) -> RunStatus:
    """Kill the run and remove its container; its state becomes `cancelled`. A finished run is
    left as it is."""
    return await service.runs.cancel(caller, run_id)


@router.get("/runs", response_model=RunList, responses=ERRORS, summary="List runs")
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


def _runner_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RunnerError)
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Busy) else None
    return JSONResponse(status_code=exc.status_code, content=exc.to_dict(), headers=headers)


def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _runner_error(request, InvalidRequest.from_validation(exc.errors()))


def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(
        status_code=500,
        content={"error": "internal_error", "message": "internal error; see the server's log"},
    )


def create_app(
    settings: Settings | None = None,
    backend: Backend | None = None,
    service: RunnerService | None = None,
) -> FastAPI:
    """The REST app. Given a `service` (shared with MCP in `serve`) it uses it; otherwise its
    lifespan builds its own, which reaps leftovers at startup."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service_scope(
            settings, lambda: backend or get_backend(settings), service
        ) as running:
            app.state.service = running
            yield

    app = documented_app(
        title="oneoff-runner",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        max_body_size=settings.max_request_bytes,
    )
    app.add_middleware(
        BearerTokenAuth, tokens=settings.tokens(), open_paths=OPEN_PATHS | open_docs_paths()
    )
    app.add_exception_handler(RunnerError, _runner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.include_router(router)
    app.include_router(engine_router)
    document_run_request(app)
    return app


app = create_app()
