"""The runner's own state: `/health` (readiness), `/livez` (liveness), `/metrics`."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST

from runner.engine_models import Health, Unavailable
from runner.errors import RunnerError
from runner.rest.answers import errors
from runner.rest.deps import Caller, Service

router = APIRouter(tags=["runner"])
OPEN_PATHS = frozenset({"/health", "/livez"})
"""Answered without a token."""


@router.get(
    "/health",
    response_model=Health,
    summary="Readiness",
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


@router.get(
    "/livez", responses={200: {"description": "The process serves requests."}}, summary="Liveness"
)
async def livez() -> dict[str, str]:
    """Liveness: the process answers; never asks the backend, so an API-server or engine
    outage does not restart every replica (and kill the runs in them). `/health` is for
    readiness."""
    return {"status": "alive"}


@router.get(
    "/metrics",
    response_class=Response,
    summary="Prometheus metrics",
    responses={
        **errors("metrics_operators"),
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
    },
)
async def metrics(service: Service, caller: Caller) -> Response:
    """Runs by outcome, phase durations, runs in flight and queued, in Prometheus format. With
    tenant names (RUNNER_METRICS_TENANTS), for operators only."""
    return Response(service.metrics_for(caller), media_type=CONTENT_TYPE_LATEST)
