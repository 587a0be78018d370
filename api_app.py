"""The REST front door, assembled: the routes of `runner.rest` over `RunnerService`.

`create_app(settings)` builds the app (tests pass their own settings or backend);
`app = create_app()` is what `uvicorn api_app:app` serves.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from backends import get_backend
from runner.backend import Backend
from runner.browsers import FORM, JSON, checks_host
from runner.guards import guard
from runner.oauth.door import rest_operation
from runner.rest import files, health, inventory, run, runs, volumes
from runner.rest.body_size import BodySizeLimit
from runner.rest.docs import Guarded, documented_app, open_docs_paths
from runner.rest.errors import answer_errors, serves
from runner.service import RunnerService, service_scope
from runner.settings import Settings, get_settings

ROUTES = (run, health, runs, files, volumes, inventory)


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

    open_paths = health.OPEN_PATHS | open_docs_paths()
    tokens = settings.authenticates()
    guarded = Guarded(
        tokens=tokens,
        check_host=checks_host(tokens, settings.allowed_hosts),
        open_paths=open_paths,
        probe_paths=health.OPEN_PATHS if tokens else frozenset(),
    )
    app = documented_app(guarded, lifespan=lifespan)
    app.add_middleware(BodySizeLimit, limit=settings.max_request_bytes)
    guard(
        app,
        settings,
        open_paths=open_paths,
        probe_paths=health.OPEN_PATHS,
        body_types=(JSON, FORM),
        serves_method=lambda scope: serves(app, scope, scope["method"]),
        operation=rest_operation,
    )
    answer_errors(app, settings.max_request_bytes)
    for module in ROUTES:
        app.include_router(module.router)
    return app


app = create_app()
