"""The error answers the OpenAPI documents: each one a real body in the runner's error format,
named, so that every route lists exactly the answers it can give (`errors`); the guards' answers,
which every route can give, are added once by `runner.rest.docs`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ERROR_SCHEMA = {"$ref": "#/components/schemas/ErrorBody"}
RUN_ID = "7fe90de5c5d54edb"


@dataclass(frozen=True)
class Answer:
    status: int
    summary: str
    body: dict[str, Any]


def _body(error: str, message: str, field: str | None = None) -> dict[str, Any]:
    return {"error": error, "message": message} | ({"field": field} if field else {})


ANSWERS: dict[str, Answer] = {
    "token": Answer(
        401,
        "No API token, or not one the operator configured.",
        _body(
            "unauthorized",
            "send 'Authorization: Bearer <token>' with a token the operator configured "
            "(RUNNER_API_TOKENS)",
            "Authorization",
        ),
    ),
    "origin": Answer(
        403,
        "A web page of another origin sent the request.",
        _body(
            "origin_refused",
            "Origin: 'https://attacker.example' may not call this runner (a web page of another "
            "site or port); the operator lists the origins that may in RUNNER_ALLOWED_ORIGINS",
            "Origin",
        ),
    ),
    "host": Answer(
        421,
        "The Host header is not a name this runner serves (RUNNER_ALLOWED_HOSTS).",
        _body(
            "misdirected_host",
            "Host: 'rebound.example' is not a name this runner serves (a refusal that stops DNS "
            "rebinding); call it as 127.0.0.1 or localhost, or have the operator list the name "
            "in RUNNER_ALLOWED_HOSTS",
            "Host",
        ),
    ),
    "media_type": Answer(
        415,
        "The body does not say it is JSON (or multipart/form-data where taken).",
        _body(
            "unsupported_media_type",
            "Content-Type: 'text/plain' is not what this endpoint reads; send application/json "
            "or multipart/form-data (curl: -H 'Content-Type: application/json')",
            "Content-Type",
        ),
    ),
    "body_size": Answer(
        413,
        "The body is over the operator's bound (RUNNER_MAX_REQUEST_BYTES).",
        _body(
            "payload_too_large",
            "the request body exceeds the operator's limit of 67108864 bytes "
            "(RUNNER_MAX_REQUEST_BYTES); send large content as multipart parts, or in a named "
            "volume",
        ),
    ),
    "content_size": Answer(
        413,
        "Content sent or returned is over the operator's size limits.",
        _body(
            "payload_too_large",
            "volumes['/data'].content: 20971520 bytes exceed the operator's limit of 10485760 "
            "bytes per content field (RUNNER_MAX_ARCHIVE_BYTES)",
            "volumes['/data'].content",
        ),
    ),
    "unreadable": Answer(
        400,
        "The body is not UTF-8 JSON text.",
        _body(
            "unreadable_body",
            "body: not readable as JSON: send UTF-8 JSON text (Content-Type: application/json)",
            "body",
        ),
    ),
    "invalid": Answer(
        422,
        "A field is invalid; `field` names it, `detail` lists every one.",
        _body(
            "invalid_request",
            "timeout_seconds: Input should be greater than or equal to 1",
            "timeout_seconds",
        )
        | {
            "detail": [
                {
                    "field": "timeout_seconds",
                    "message": "Input should be greater than or equal to 1",
                    "type": "greater_than_equal",
                }
            ]
        },
    ),
    "policy": Answer(
        403,
        "The operator's policy refuses what the request asks.",
        _body(
            "policy_refused",
            "image: 'alpine:3.20' is not allowed by the operator (RUNNER_ALLOWED_IMAGES: "
            "busybox:*)",
            "image",
        ),
    ),
    "operators_only": Answer(
        403,
        "Only an operator (RUNNER_OPERATOR_TOKENS) may see this.",
        _body(
            "policy_refused",
            "managed_only: false lists every container on the engine, which only an operator "
            "may see (a token of RUNNER_OPERATOR_TOKENS)",
            "managed_only",
        ),
    ),
    "metrics_operators": Answer(
        403,
        "The metrics name every tenant (RUNNER_METRICS_TENANTS): for operators only.",
        _body(
            "policy_refused",
            "/metrics names every tenant (RUNNER_METRICS_TENANTS), so it needs an operator "
            "token (RUNNER_OPERATOR_TOKENS)",
            "Authorization",
        ),
    ),
    "registry_auth": Answer(
        401,
        "The registry refused the credentials (auth_config), or needs some.",
        _body(
            "registry_auth_failed",
            "auth_config: the registry of 'registry.example.com/team/app:1' requires credentials "
            "for it (or does not have it); pass auth_config with a username and password",
            "auth_config",
        ),
    ),
    "image_not_found": Answer(
        404,
        "The image is not on the engine (pull_policy never), or not in its registry.",
        _body(
            "image_not_found",
            "image: 'busybox:no-such-tag' was not found in its registry; check the name and tag",
            "image",
        ),
    ),
    "volume_missing": Answer(
        404,
        "A named volume the request mounts does not exist.",
        _body(
            "volume_not_found",
            "volumes['/cache'].name: volume 'cache' does not exist; create it first (POST /volume)",
            "volumes['/cache'].name",
        ),
    ),
    "run_not_found": Answer(
        404,
        "No such run for this token (never started, removed, or another token's).",
        _body(
            "not_found",
            f"run_id: no run '{RUN_ID}': it never existed here, or it finished more than "
            "result_ttl_seconds (3600) ago and was removed",
            "run_id",
        ),
    ),
    "path_not_returned": Answer(
        404,
        "The path is not a `response: true` path of the run.",
        _body(
            "not_found",
            f"path: '/app/out' is not a `response: true` path of run '{RUN_ID}' (it returns: "
            "/app/data)",
            "path",
        ),
    ),
    "volume_not_found": Answer(
        404,
        "No volume of that name among those this token created.",
        _body(
            "volume_not_found",
            "name: no volume 'my-data' among those you created (POST /volume); list yours "
            "with GET /volumes",
            "name",
        ),
    ),
    "volume_path_missing": Answer(
        404,
        "Nothing at that path in the volume.",
        _body("not_found", "path: nothing at 'src/app.py' in volume 'project'", "path"),
    ),
    "volume_path_conflict": Answer(
        409,
        "A symbolic link (never followed), a file on the way, or a directory read as a file.",
        _body(
            "conflict",
            "path: 'src' in volume 'project' is a symbolic link (a run made it); paths never "
            "follow links: name the file it points to, or replace it",
            "path",
        ),
    ),
    "volume_bytes": Answer(
        413,
        "Past what one read returns, what one listing holds, or the volume's size bound.",
        _body(
            "payload_too_large",
            "path: 'data.bin' holds 20000000 bytes, past what one read returns "
            "(RUNNER_MAX_RESPONSE_BYTES: 16777216); read it in a run instead",
            "path",
        ),
    ),
    "volume_exists": Answer(
        409,
        "A volume of that name exists, or the tenant has as many as it may.",
        _body(
            "conflict",
            "name: a volume named 'my-data' exists; choose another name or set "
            "reuse_existing: true to fill it",
            "name",
        ),
    ),
    "volume_in_use": Answer(
        409,
        "A container uses the volume.",
        _body("conflict", "removing volume 'my-data': volume is in use"),
    ),
    "run_unfinished": Answer(
        409,
        "The run has not finished: its files can be read once it has.",
        _body(
            "conflict",
            f"path: run '{RUN_ID}' is still running; its files can be read once it has finished",
            "path",
        ),
    ),
    "unreturnable": Answer(
        409,
        "The run left something else at the path (a symlink, a FIFO, ...), or removed it.",
        _body(
            "unreturnable_path",
            "volumes['/app/out']: the run left a symbolic link at /app/out, not a file; "
            "nothing of it is returned",
            "volumes['/app/out']",
        ),
    ),
    "busy": Answer(
        429,
        "All run slots and the queue are full; retry after Retry-After seconds.",
        _body("busy", "all 8 run slots are busy or taken and 32 runs are queued; retry shortly"),
    ),
    "kept_runs": Answer(
        429,
        "The token keeps as many async runs as it may (RUNNER_MAX_KEPT_RUNS).",
        _body(
            "too_many_kept_runs",
            "you keep 100 async runs, the operator's bound (RUNNER_MAX_KEPT_RUNS: 100): running "
            "ones, and finished ones until their result expires (result_ttl_seconds: 3600); "
            "free one by removing a finished run",
        ),
    ),
    "cancelled": Answer(
        499,
        "The client went away; what it asked was cancelled (no client reads this answer).",
        _body("cancelled", "the client disconnected; its request was cancelled"),
    ),
    "unsupported": Answer(
        501,
        "The backend cannot do this (e.g. list images on Kubernetes).",
        _body(
            "unsupported",
            "content: filling a volume is not available on Kubernetes; create it empty and "
            "write to it from a run",
            "content",
        ),
    ),
    "registry_down": Answer(
        502,
        "The image's registry could not be reached, or failed the pull.",
        _body(
            "registry_unavailable",
            "image: the registry of 'registry.example.com/team/app:1' could not be reached; "
            "check the registry address, or use a local image with pull_policy 'missing' or "
            "'never'",
            "image",
        ),
    ),
    "engine_down": Answer(
        503,
        "The container engine is unreachable, or the runner is shutting down.",
        _body(
            "backend_unavailable",
            "cannot reach the Docker engine while listing containers (ConnectionError); check "
            "that dockerd runs and DOCKER_HOST points at it",
        ),
    ),
}
"""Every documented error answer, by name."""

RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before trying again.",
        "required": True,
        "schema": {"type": "integer", "minimum": 0},
    }
}
HEADERS: dict[str, dict[str, Any]] = {
    "token": {
        "WWW-Authenticate": {
            "description": "The scheme to authenticate with, on a refused token "
            '(`Bearer realm="oneoff-runner"`, or the identity provider\'s challenge).',
            "schema": {"type": "string"},
        }
    },
    "busy": RETRY_AFTER,
    "kept_runs": RETRY_AFTER,
}
"""Headers sent with an answer."""


def errors(*names: str) -> dict[int | str, dict[str, Any]]:
    """The `responses` of a route that can answer the named errors."""
    responses: dict[int | str, dict[str, Any]] = {}
    for name in names:
        add_error(responses, name)
    return responses


def add_error(responses: dict[Any, dict[str, Any]], name: str, *, document: bool = False) -> None:
    """Add the named answer to an operation's responses, FastAPI's (by status), or the OpenAPI
    `document`'s (by status as text), beside the answers of its status already there."""
    answer = ANSWERS[name]
    key: int | str = str(answer.status) if document else answer.status
    response = responses.setdefault(key, {"description": ""})
    examples = (
        response.setdefault("content", {})
        .setdefault("application/json", {"schema": ERROR_SCHEMA})
        .setdefault("examples", {})
    )
    if name in examples:
        return
    examples[name] = {"summary": answer.summary, "value": answer.body}
    response["description"] = " ".join(filter(None, [response.get("description"), answer.summary]))
    if name in HEADERS:
        response.setdefault("headers", {}).update(HEADERS[name])
