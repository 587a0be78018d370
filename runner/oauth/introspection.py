"""RFC 7662 token introspection, for providers that issue opaque access tokens.

The runner asks the operator's introspection endpoint (with the client credentials the operator
configured) whether a token is active and what it says. An active answer is kept for at most
`CACHE_SECONDS` (and never past the token's `exp`), keyed by a digest of the token, so a revoked
token can be honoured that long. Blocking: worker threads only.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from typing import Any

import httpx

from runner.oauth.errors import TokenRefused, VerifierUnavailable
from runner.oauth.policy import OAuthPolicy

CACHE_SECONDS = 60.0
CACHE_ENTRIES = 10_000


class Introspector:
    def __init__(self, url: str, policy: OAuthPolicy) -> None:
        self.url = url
        self.policy = policy
        self._cache: OrderedDict[bytes, tuple[float, dict[str, Any]]] = OrderedDict()
        self._lock = threading.Lock()

    def claims(self, token: str) -> dict[str, Any]:
        """What the provider says of an active `token`; an inactive one is refused."""
        key = hashlib.sha256(token.encode()).digest()
        now = time.time()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[0] > now:
                return cached[1]
        claims = self._ask(token)
        if claims.get("active") is not True:
            raise TokenRefused(
                "inactive",
                "the identity provider says the token is not active (expired, revoked, or not "
                "one of its tokens)",
            )
        expires = claims.get("exp")
        until = now + CACHE_SECONDS
        if isinstance(expires, int | float):
            until = min(until, float(expires))
        with self._lock:
            self._cache[key] = (until, claims)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return claims

    def _ask(self, token: str) -> dict[str, Any]:
        policy = self.policy
        auth: httpx.Auth | None = None
        if policy.introspection_client_id:
            secret = policy.introspection_client_secret or ""
            auth = httpx.BasicAuth(policy.introspection_client_id, secret)
        try:
            with httpx.Client(timeout=policy.timeout, follow_redirects=False, auth=auth) as http:
                response = http.post(
                    self.url,
                    data={"token": token, "token_type_hint": "access_token"},
                    headers={"Accept": "application/json"},
                )
            answer = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            answer = None
        if not isinstance(answer, dict):
            raise VerifierUnavailable(
                "introspection",
                "the token introspection endpoint (RUNNER_OAUTH_INTROSPECTION_URL) did not "
                "answer; nobody with an opaque token is let in until it does",
            )
        return answer
