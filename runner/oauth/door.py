"""The identity provider's part of the shared guard (`runner.guards`): who an access token
names, which operation a request is, the protected-resource metadata both HTTP doors serve, and
the challenge of a refusal.

Token checks may fetch keys or ask the introspection endpoint, so they run in worker threads,
at most `CHECKS_AT_ONCE` at a time: a provider that hangs holds those threads, not the event
loop, and static-token callers go on being served.

Operations, for `RUNNER_OAUTH_READ_SCOPES` and `_WRITE_SCOPES`: on REST a GET or HEAD reads and
everything else writes; on MCP a call of a read-only tool (annotated `readOnlyHint`) reads, any
other tool call and `tasks/cancel` write, and the rest of the protocol (initialize, listings,
task status) reads. API-token callers may do both.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import anyio
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from runner.oauth.errors import OAuthError, ScopeMissing, VerifierUnavailable
from runner.oauth.metadata import WELL_KNOWN, challenge, document, resource_for
from runner.oauth.policy import OAuthPolicy
from runner.oauth.verifier import TokenVerifier
from runner.refusals import answer
from runner.tenancy import remember, tenant_for_identity

log = logging.getLogger("oneoff_runner.oauth")
CHECKS_AT_ONCE = 8
SCOPES_KEY = "oneoff-runner.oauth-scopes"
READING_METHODS = frozenset({"GET", "HEAD"})
WRITING_MESSAGES = frozenset({"tasks/cancel"})


class OAuthDoor:
    def __init__(self, policy: OAuthPolicy) -> None:
        self.policy = policy
        self.verifier = TokenVerifier(policy)
        self.limiter = anyio.CapacityLimiter(CHECKS_AT_ONCE)

    @staticmethod
    def serves(path: str) -> bool:
        """Whether `path` is protected-resource metadata (answered to anyone)."""
        return path == WELL_KNOWN or path.startswith(WELL_KNOWN + "/")

    async def sign_in(self, scope: Scope, token: str) -> None:
        """Leave the tenant `token` names (and its scopes) on `scope`; raises `OAuthError`,
        logged with its reason."""
        try:
            identity = await anyio.to_thread.run_sync(
                self.verifier.verify, token, limiter=self.limiter
            )
        except VerifierUnavailable as exc:
            log.warning("access token not checked: %s", exc.message)
            raise
        except OAuthError as exc:
            log.info("access token refused (%s): %s", exc.reason, exc.message)
            raise
        remember(scope, tenant_for_identity(identity.issuer, identity.tenant))
        scope[SCOPES_KEY] = identity.scopes

    async def metadata(self, scope: Scope, send: Send) -> None:
        """RFC 9728 metadata of the resource at the path after the well-known prefix."""
        suffix = scope["path"].removeprefix(WELL_KNOWN)
        resource = resource_for(self.policy, _host(scope), suffix)
        await answer(
            send, 200, document(self.policy, resource), [("cache-control", "public, max-age=300")]
        )

    async def refuse(self, scope: Scope, send: Send, error: OAuthError | None) -> None:
        await refuse(self.policy, scope, send, error)


async def allowed(policy: OAuthPolicy, scope: Scope, operation: str, send: Send) -> bool:
    """Whether the caller's token grants the scopes of `operation`; if not, the 403 is sent."""
    granted = scope.get(SCOPES_KEY)
    if granted is None:
        return True  # an API token
    missing = [name for name in policy.scopes_for(operation) if name not in granted]
    if missing:
        await refuse(policy, scope, send, ScopeMissing(missing))
    return not missing


def rest_operation(scope: Scope) -> str:
    return "read" if scope["method"] in READING_METHODS else "write"


def mcp_operation(message: Any, read_only_tools: Collection[str]) -> str:
    """`write` if any JSON-RPC message of `message` (one, or a batch) changes something."""
    for item in message if isinstance(message, list) else [message]:
        method = item.get("method") if isinstance(item, dict) else None
        params = item.get("params") if isinstance(item, dict) else None
        tool = params.get("name") if isinstance(params, dict) else None
        if method in WRITING_MESSAGES or (method == "tools/call" and tool not in read_only_tools):
            return "write"
    return "read"


async def refuse(policy: OAuthPolicy, scope: Scope, send: Send, error: OAuthError | None) -> None:
    """401 (no token, or a bad one), 403 (scopes missing) or 503 (provider unreachable), with
    the challenge that leads a client to the provider."""
    resource = resource_for(policy, _host(scope), scope["path"])
    if error is None:
        status, code, reason = 401, "unauthorized", "missing"
        message = "send 'Authorization: Bearer <token>': an access token from the identity "
        message += "provider (see the resource_metadata of WWW-Authenticate) or an API token"
        header = challenge(resource)
    else:
        status, reason, message = error.status_code, error.reason, error.message
        code = getattr(error, "error", "unavailable")
        scopes = " ".join(error.scopes) if isinstance(error, ScopeMissing) else ""
        header = challenge(resource, code if status != 503 else None, message, scopes)
    headers = [("www-authenticate", header)]
    if isinstance(error, VerifierUnavailable):
        headers.append(("retry-after", str(error.retry_after)))
    body = {"error": code, "reason": reason, "message": message, "field": "Authorization"}
    await answer(send, status, body, headers)


def _host(scope: Scope) -> str:
    return Headers(scope=scope).get("host", "")
