"""The identity provider's part of the shared guard (`runner.guards`): who an access token
names, the protected-resource metadata both HTTP doors serve, and the challenge of a refusal.

Token checks may fetch keys or ask the introspection endpoint, so they run in worker threads,
at most `CHECKS_AT_ONCE` at a time: a provider that hangs holds those threads, not the event
loop, and static-token callers go on being served.
"""

from __future__ import annotations

import json
import logging

import anyio
from starlette.datastructures import Headers
from starlette.types import Scope, Send

from runner.oauth.errors import OAuthError, ScopeMissing, VerifierUnavailable
from runner.oauth.metadata import WELL_KNOWN, challenge, document, resource_for
from runner.oauth.policy import OAuthPolicy
from runner.oauth.verifier import TokenVerifier
from runner.tenancy import Tenant, tenant_for_identity

log = logging.getLogger("oneoff_runner.oauth")
CHECKS_AT_ONCE = 8


class OAuthDoor:
    def __init__(self, policy: OAuthPolicy) -> None:
        self.policy = policy
        self.verifier = TokenVerifier(policy)
        self.limiter = anyio.CapacityLimiter(CHECKS_AT_ONCE)

    @staticmethod
    def serves(path: str) -> bool:
        """Whether `path` is protected-resource metadata (answered to anyone)."""
        return path == WELL_KNOWN or path.startswith(WELL_KNOWN + "/")

    async def tenant(self, token: str) -> Tenant:
        """The tenant `token` names; raises `OAuthError` (logged with its reason)."""
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
        return tenant_for_identity(identity.issuer, identity.tenant)

    async def metadata(self, scope: Scope, send: Send) -> None:
        """RFC 9728 metadata of the resource at the path after the well-known prefix."""
        suffix = scope["path"].removeprefix(WELL_KNOWN)
        resource = resource_for(self.policy, _host(scope), suffix)
        body = json.dumps(document(self.policy, resource)).encode()
        headers = [(b"cache-control", b"public, max-age=300")]
        await _answer(send, 200, body, headers)

    async def refuse(self, scope: Scope, send: Send, error: OAuthError | None) -> None:
        """401 (no token, or a bad one), 403 (scopes missing) or 503 (provider unreachable),
        with the challenge that leads a client to the provider."""
        resource = resource_for(self.policy, _host(scope), scope["path"])
        if error is None:
            status, code, reason = 401, "unauthorized", "missing"
            message = "send 'Authorization: Bearer <token>': an access token from the identity "
            message += "provider (see the resource_metadata of WWW-Authenticate) or an API token"
            header = challenge(resource)
        else:
            status, code, reason, message = error.status_code, "", error.reason, error.message
            code = getattr(error, "error", "unavailable")
            scopes = " ".join(error.scopes) if isinstance(error, ScopeMissing) else ""
            header = challenge(resource, code if status != 503 else None, message, scopes)
        headers = [(b"www-authenticate", header.encode())]
        if isinstance(error, VerifierUnavailable):
            headers.append((b"retry-after", str(error.retry_after).encode()))
        body = {"error": code, "reason": reason, "message": message, "field": "Authorization"}
        await _answer(send, status, json.dumps(body).encode(), headers)


def _host(scope: Scope) -> str:
    return Headers(scope=scope).get("host", "")


async def _answer(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
