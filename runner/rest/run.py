"""`POST /run`: a run to its end in one request."""

from __future__ import annotations

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response

from runner.models import RunResult
from runner.rest.answers import errors
from runner.rest.bodies import REQUEST_BODY, run_body
from runner.rest.deps import Caller, Service, cancel_on_disconnect
from runner.rest.files import PARTS_ANSWER, parts_answer, wants_parts

RUN_ERRORS = (
    "invalid",
    "policy",
    "registry_auth",
    "image_not_found",
    "volume_missing",
    "content_size",
    "busy",
    "cancelled",
    "registry_down",
    "engine_down",
)
"""What a run can be refused with, before or while it runs."""

router = APIRouter(tags=["runs"])


@router.post(
    "/run",
    response_model=RunResult,
    responses={**errors(*RUN_ERRORS), 200: PARTS_ANSWER},
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
    raw = wants_parts(request)
    async with run_body(request, service) as body:
        work = service.run(
            body.request, caller, uploads=body.uploads, ticket=body.ticket, raw_returned=raw
        )
        result, files = await cancel_on_disconnect(request, work, body)
    if raw:
        return parts_answer(result, files)
    # Returned content can be tens of MiB of base64: serialised once, by orjson (4x pydantic's).
    return Response(orjson.dumps(result.model_dump()), media_type="application/json")
