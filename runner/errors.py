"""The one exception hierarchy of the runner.

Every failure a caller can cause or meet is one of these, carrying the HTTP status it maps to,
the request field it concerns (when there is one) and a message that says what to do. REST turns
them into responses in one place (`runner.rest.errors`), MCP into tool errors in one place
(`runner.mcp.tools.RunnerTool`).
Backends translate their SDK's exceptions into this tree at exactly one boundary each.

    RunnerError (500)
    ├── UnreadableBody (400)          a body that is not text in the encoding it must be in
    ├── InvalidRequest (422)          a field is malformed: names the field and the fix
    ├── PolicyRefused (403)           the operator's policy forbids what was asked
    ├── Unauthenticated (401)         no valid API token (`runner.guards`)
    ├── BrowserRefused                what a web page could send (`runner.browsers`)
    │   ├── CrossSiteRefused (403)    a foreign Origin, or a cross-site fetch
    │   ├── UnsupportedMediaType (415) a body that does not say application/json
    │   └── MisdirectedHost (421)     a Host header the runner does not serve (DNS rebinding)
    ├── RegistryAuthFailed (401)      the registry refused the credentials (never echoed)
    ├── NotFound (404)
    │   ├── ImageNotFound             not on the engine / not in the registry
    │   └── VolumeNotFound
    ├── MethodNotAllowed (405)        a method the path does not serve; carries Allow
    ├── Conflict (409)                e.g. a volume of that name exists
    │   └── Unreturnable              a returned path the run left as something else (a
    │                                 symlink, a FIFO, ...) or removed; in a run's result, a
    │                                 per-path `error`
    │   └── IsDirectory               a volume's directory read as a file
    ├── PayloadTooLarge (413)         archive, file or returned content over a size limit
    ├── Busy (429)                    concurrency and queue are full; carries Retry-After
    │   └── KeptRunsFull              a tenant keeps as many async runs as it may
    ├── Cancelled (499)               the caller went away or cancelled the run
    ├── Unsupported (501)             the backend cannot do this (e.g. list images on Kubernetes)
    ├── RegistryUnavailable (502)     the registry could not be reached
    └── BackendUnavailable (503)      the engine / API server is unreachable
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class RunnerError(Exception):
    """Base of every error the runner reports to a caller."""

    status_code = 500
    code = "internal_error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict[str, Any]:
        """The body REST returns and the text MCP shows: stable keys for programs and people."""
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class UnreadableBody(RunnerError):
    status_code = 400
    code = "unreadable_body"


class InvalidRequest(RunnerError):
    status_code = 422
    code = "invalid_request"

    def __init__(
        self, message: str, *, field: str | None = None, detail: list[dict[str, str]] | None = None
    ) -> None:
        super().__init__(message, field=field)
        self.detail = detail

    @classmethod
    def from_validation(cls, errors: Sequence[Mapping[str, Any]]) -> InvalidRequest:
        """From pydantic's errors: the message names the first bad field; `detail` lists every
        one. The rejected values are left out: they may hold credentials."""
        detail = [
            {
                "field": _field_name(error["loc"]),
                "message": _in_words(error),
                "type": str(error["type"]),
            }
            for error in errors
        ]
        first = detail[0] if detail else {"field": "body", "message": "invalid request"}
        return cls(f"{first['field']}: {first['message']}", field=first["field"], detail=detail)

    def to_dict(self) -> dict[str, Any]:
        body = super().to_dict()
        if self.detail is not None:
            body["detail"] = self.detail
        return body


def _in_words(error: Mapping[str, Any]) -> str:
    """pydantic's message, but a pattern said in words rather than as its regex."""
    if error["type"] == "string_pattern_mismatch":
        # imported here: the pod helper uses this module, and must not load pydantic (memory)
        from runner.models import PATTERN_WORDS

        pattern = str((error.get("ctx") or {}).get("pattern"))
        return PATTERN_WORDS.get(pattern, "not in the form the API schema gives for it")
    return str(error["msg"]).removeprefix("Value error, ")


def _field_name(loc: Sequence[int | str]) -> str:
    """`volumes['/app:ro'].content` style: dots for names, brackets for keys and indexes; a
    header by its name (`Idempotency-Key`)."""
    if len(loc) == 2 and loc[0] == "header":
        return "-".join(word.capitalize() for word in str(loc[1]).split("-"))
    parts = list(loc)[1:] if loc and loc[0] == "body" else list(loc)
    name = ""
    for part in parts:
        if isinstance(part, int) or "/" in part or ":" in part:
            name += f"[{part!r}]"
        else:
            name += f".{part}" if name else part
    return name or "body"


class PolicyRefused(RunnerError):
    status_code = 403
    code = "policy_refused"


class Unauthenticated(RunnerError):
    status_code = 401
    code = "unauthorized"


class BrowserRefused(RunnerError):
    """A request refused before any door saw it; `field` names the header."""


class CrossSiteRefused(BrowserRefused):
    status_code = 403
    code = "origin_refused"


class UnsupportedMediaType(BrowserRefused):
    status_code = 415
    code = "unsupported_media_type"


class MisdirectedHost(BrowserRefused):
    status_code = 421
    code = "misdirected_host"


class RegistryAuthFailed(RunnerError):
    status_code = 401
    code = "registry_auth_failed"


class NotFound(RunnerError):
    status_code = 404
    code = "not_found"


class ImageNotFound(NotFound):
    code = "image_not_found"


class VolumeNotFound(NotFound):
    code = "volume_not_found"


class MethodNotAllowed(RunnerError):
    status_code = 405
    code = "method_not_allowed"

    def __init__(self, message: str, *, allow: list[str]) -> None:
        super().__init__(message)
        self.allow = allow


class Conflict(RunnerError):
    status_code = 409
    code = "conflict"


class Unreturnable(Conflict):
    code = "unreturnable_path"


class IsDirectory(Conflict):
    code = "is_a_directory"


class PayloadTooLarge(RunnerError):
    status_code = 413
    code = "payload_too_large"


class Busy(RunnerError):
    status_code = 429
    code = "busy"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KeptRunsFull(Busy):
    code = "too_many_kept_runs"


class VolumesFull(RunnerError):
    """The tenant has as many named volumes as the operator allows; removing one frees a place."""

    status_code = 409
    code = "too_many_volumes"


class Cancelled(RunnerError):
    status_code = 499
    code = "cancelled"


class RegistryUnavailable(RunnerError):
    status_code = 502
    code = "registry_unavailable"


class Unsupported(RunnerError):
    status_code = 501
    code = "unsupported"


class BackendUnavailable(RunnerError):
    status_code = 503
    code = "backend_unavailable"
