"""The REST API's documentation pages, served with no network: Swagger UI 5 at `/docs` and ReDoc
at `/redoc`, their scripts and styles from the `fastapi-offline` package (FastAPI's own pages
load them from a CDN, so they stay blank on a machine without internet access). Swagger UI 5,
because FastAPI emits OpenAPI 3.1, which 4.x cannot render.

The pages, their assets and `/openapi.json` are open even when API tokens are configured (they
hold nothing a caller could use); the OpenAPI declares a bearer scheme, so Swagger's Authorize
button sends the token with the calls made from the page.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from runner import __version__

DESCRIPTION = """Run one-off containers: send an image, a command, environment variables and
files; get the exit code, stdout, stderr and files back. Everything the run created is removed.

Errors are JSON objects `{"error": <code>, "message": <what to do>, "field": <request field>}`.
"""
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs-assets"
SCHEME = "bearer"


def documented_app(**options: Any) -> FastAPI:
    """The runner's FastAPI app, whose docs pages need no network; `options` are FastAPI's."""
    app = FastAPIOffline(
        title="oneoff-runner",
        version=__version__,
        description=DESCRIPTION,
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        openapi_url=OPENAPI_URL,
        static_url=ASSETS_URL,
        swagger_ui_parameters={"persistAuthorization": True},
        **options,
    )
    _declare_bearer_scheme(app)
    return app


def open_docs_paths() -> frozenset[str]:
    """What a browser needs before it has a token: the pages, their assets, the OpenAPI."""
    assets = files("fastapi_offline").joinpath("static").iterdir()
    return frozenset(
        {DOCS_URL, f"{DOCS_URL}/oauth2-redirect", REDOC_URL, OPENAPI_URL}
        | {f"{ASSETS_URL}/{asset.name}" for asset in assets}
    )


def _declare_bearer_scheme(app: FastAPI) -> None:
    """Every operation needs `Authorization: Bearer <token>` when the operator configured
    tokens; `/health` never does (the auth middleware enforces this; the OpenAPI says it)."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = build()
            schema.setdefault("components", {})["securitySchemes"] = {
                SCHEME: {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "A token from RUNNER_API_TOKENS (needed only when the "
                    "operator configured some).",
                }
            }
            schema["security"] = [{SCHEME: []}]
            for operation in schema["paths"].get("/health", {}).values():
                operation["security"] = []
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
