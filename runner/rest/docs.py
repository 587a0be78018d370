"""The REST API's documentation pages, served with no network: Swagger UI 5 at `/docs` and ReDoc
at `/redoc`, their scripts and styles from the `fastapi-offline` package (FastAPI's own pages
load them from a CDN, so they stay blank on a machine without internet access). Swagger UI 5,
because FastAPI emits OpenAPI 3.1, which 4.x cannot render.

The pages, their assets and `/openapi.json` are open even when API tokens are configured (they
hold nothing a caller could use). The OpenAPI says what this runner's guards do: the bearer
scheme only when it requires tokens, and then only on the operations that need one (so
Swagger's Authorize button sends the token with the calls made from the page, and open ones
show no lock); the answers every operation can get from the guards (`runner.guards`).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from pydantic.json_schema import models_json_schema

from runner import __version__
from runner.models import ErrorBody, RunRequest
from runner.rest.answers import add_error
from runner.rest.schemas import tighten

DESCRIPTION = """Run one-off containers: send an image, a command, environment variables and
files; get the exit code, stdout, stderr and files back. Everything the run created is removed.

Errors are JSON objects `{"error": <code>, "message": <what to do>, "field": <request field>}`;
each operation lists the ones it can answer, with an example of each.
"""
NO_TOKENS = """
This runner requires no token: it answers callers on this machine only (no operation shows a
lock). With `RUNNER_API_TOKENS` set, every operation but the probes needs
`Authorization: Bearer <token>`.
"""
TAGS = [
    {"name": "runs", "description": "Run a container, to its end or in the background."},
    {"name": "volumes", "description": "Named volumes that runs of the same token mount."},
    {"name": "engine", "description": "Images and containers on the engine."},
    {"name": "runner", "description": "The runner's own state: probes and metrics."},
]
DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OPENAPI_URL = "/openapi.json"
ASSETS_URL = "/docs-assets"
SCHEME = "bearer"


@dataclass(frozen=True)
class Guarded:
    """What the guards in front of the routes do, as the OpenAPI shows it."""

    tokens: bool
    """Tokens are required (API tokens, or an identity provider's)."""
    check_host: bool
    open_paths: Collection[str]
    probe_paths: Collection[str]
    """Paths the Host check skips."""


def documented_app(guarded: Guarded, **options: Any) -> FastAPI:
    """The runner's FastAPI app, whose docs pages need no network; `options` are FastAPI's."""
    app = FastAPIOffline(
        title="oneoff-runner",
        version=__version__,
        description=DESCRIPTION if guarded.tokens else DESCRIPTION + NO_TOKENS,
        openapi_tags=TAGS,
        docs_url=DOCS_URL,
        redoc_url=REDOC_URL,
        openapi_url=OPENAPI_URL,
        static_url=ASSETS_URL,
        swagger_ui_parameters={"persistAuthorization": True},
        **options,
    )
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = _shaped(build(), guarded)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def open_docs_paths() -> frozenset[str]:
    """What a browser needs before it has a token: the pages, their assets, the OpenAPI."""
    assets = files("fastapi_offline").joinpath("static").iterdir()
    return frozenset(
        {DOCS_URL, f"{DOCS_URL}/oauth2-redirect", REDOC_URL, OPENAPI_URL}
        | {f"{ASSETS_URL}/{asset.name}" for asset in assets}
    )


def _shaped(schema: dict[str, Any], guarded: Guarded) -> dict[str, Any]:
    """FastAPI's document, with the models no typed parameter brings (`RunRequest` is read by
    `runner.rest.bodies`, `ErrorBody` only named by the answers) and the guards' answers."""
    _, defs = models_json_schema(
        [(RunRequest, "validation"), (ErrorBody, "serialization")],
        ref_template="#/components/schemas/{model}",
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {}).update(defs["$defs"])
    tighten(components["schemas"])
    if guarded.tokens:
        components["securitySchemes"] = {
            SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "description": "A token from RUNNER_API_TOKENS or RUNNER_OPERATOR_TOKENS, or "
                "an access token of the identity provider the operator trusts.",
            }
        }
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            _guarded_operation(operation, method, path, guarded)
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    return schema


CONSTRAINTS = ("pattern", "minimum", "maximum", "Length", '"integer"', '"number"', '"boolean"')


def _can_be_invalid(operation: dict[str, Any]) -> bool:
    """Whether a parameter of the operation has a value FastAPI would refuse (a free text has
    none)."""
    parameters = json.dumps(operation.get("parameters", []))
    return any(word in parameters for word in CONSTRAINTS)


def _guarded_operation(operation: dict[str, Any], method: str, path: str, guarded: Guarded) -> None:
    responses = operation.setdefault("responses", {})
    if "HTTPValidationError" in str(responses.get("422")):
        del responses["422"]  # FastAPI's own, in a format the runner never answers
        if _can_be_invalid(operation):
            add_error(responses, "invalid", document=True)
    if guarded.tokens and path not in guarded.open_paths:
        operation["security"] = [{SCHEME: []}]
        add_error(responses, "token", document=True)
    add_error(responses, "origin", document=True)
    if guarded.check_host and path not in guarded.probe_paths:
        add_error(responses, "host", document=True)
    if method in ("post", "put", "patch"):  # the guards read these bodies
        add_error(responses, "media_type", document=True)
        add_error(responses, "body_size", document=True)
    operation["responses"] = dict(sorted(responses.items()))
