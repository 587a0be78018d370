"""REST answers for errors, in one place: a `RunnerError` is its status and JSON body, a
request FastAPI could not validate is the runner's 422, Starlette's own answers (no such path,
a method the path does not serve, a body it could not parse, one over the size bound) are the
runner's errors too, and anything else a logged 500."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import Scope

from runner.errors import (
    Busy,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    RunnerError,
    UnreadableBody,
)
from runner.rest.body_size import too_large

log = logging.getLogger("oneoff_runner.api")
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def answer_errors(app: FastAPI, max_request_bytes: int) -> None:
    """Install the app's error answers."""

    async def starlette_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        return _answer(_runner_error_of(request, exc, max_request_bytes))

    app.add_exception_handler(RunnerError, _runner_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(HTTPException, starlette_error)
    app.add_exception_handler(Exception, _unexpected_error)


def _answer(exc: RunnerError) -> JSONResponse:
    headers = None
    if isinstance(exc, Busy):
        headers = {"Retry-After": str(exc.retry_after)}
    elif isinstance(exc, MethodNotAllowed):
        headers = {"Allow": ", ".join(exc.allow)}
    return JSONResponse(status_code=exc.status_code, content=exc.to_dict(), headers=headers)


def _runner_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RunnerError)
    return _answer(exc)


def _validation_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return _answer(InvalidRequest.from_validation(exc.errors()))


def _runner_error_of(request: Request, exc: HTTPException, limit: int) -> RunnerError:
    """What Starlette or FastAPI refused, as the runner's error."""
    path = request.url.path
    if exc.status_code == 404:
        return NotFound(f"no such path: {path!r}; the API's paths are listed at /docs")
    if exc.status_code == 405:
        allow = methods_at(request.app, request.scope)
        return MethodNotAllowed(
            f"{request.method} is not a method of {path}; it takes {', '.join(allow)}",
            allow=allow,
        )
    if exc.status_code == 413:
        return too_large(limit)
    if exc.status_code == 400:
        return UnreadableBody(
            "body: not readable as JSON: send UTF-8 JSON text (Content-Type: application/json)",
            field="body",
        )
    error = RunnerError(str(exc.detail))
    error.status_code = exc.status_code
    return error


def methods_at(app: Starlette, scope: Scope) -> list[str]:
    """Every method some route serves at the request's path (Starlette's 405 names only the
    first route's)."""
    return [method for method in METHODS if serves(app, scope, method)]


def serves(app: Starlette, scope: Scope, method: str) -> bool:
    """Whether a route of `app` serves `method` at the request's path."""
    probe = {**scope, "method": method}
    return any(route.matches(probe)[0] == Match.FULL for route in app.router.routes)


def _unexpected_error(_: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(
        status_code=500,
        content={"error": "internal_error", "message": "internal error; see the server's log"},
    )
