"""REST answers for errors, in one place: a `RunnerError` is its status and JSON body, a
request FastAPI could not validate is the runner's 422, anything else a logged 500."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from runner.errors import Busy, InvalidRequest, RunnerError
from runner.models import ErrorBody

log = logging.getLogger("oneoff_runner.api")

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, "model": ErrorBody}
    for code, text in {
        401: "Missing or wrong API token, or the registry refused the credentials.",
        403: "The operator's policy refused the request, a listing is an operator's, or a web "
        "page of another origin sent it.",
        404: "Image, volume or run not found.",
        409: "The volume exists, or is in use.",
        413: "Content or returned content over the operator's size limits.",
        415: "The body is not application/json (or multipart/form-data where taken).",
        421: "The Host header is not a name this runner serves (RUNNER_ALLOWED_HOSTS).",
        422: "A field is invalid; `field` names it.",
        429: "All run slots and the queue are full, or (POST /runs) the caller keeps as many "
        "async runs as it may; see Retry-After.",
        501: "The backend cannot do this (e.g. list images on Kubernetes).",
        502: "The image registry could not be reached.",
        499: "The client went away; the run was cancelled.",
        503: "The container engine is unreachable, or the runner is shutting down.",
    }.items()
}
"""The documented error answers of every route."""

JSON_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {
        "description": value["description"],
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
    for code, value in ERRORS.items()
}
"""The same, for routes whose success is not JSON (errors are JSON all the same)."""


def answer_errors(app: FastAPI) -> None:
    """Install the app's error answers."""
    app.add_exception_handler(RunnerError, _runner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)


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
