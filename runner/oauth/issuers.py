"""One trusted issuer: its discovery document and its signing keys, fetched when first needed
and cached.

The keys (PyJWT's `PyJWKClient`) are refetched when their lifespan ends, and when a token names
a key id the cached set lacks (the provider rotated its keys), at most once per cooldown, so a
stream of made-up key ids cannot turn the runner into a flood against the provider. A failed
fetch keeps the last good keys until their lifespan ends; after a failure the provider is not
asked again for `FAILURE_BACKOFF` seconds (the caller is told to retry). Every call may block:
worker threads only.
"""

from __future__ import annotations

import threading
import time
from typing import Any, NoReturn

import httpx
from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientConnectionError, PyJWKClientError, PyJWKSetError

from runner.oauth.errors import TokenRefused, VerifierUnavailable
from runner.oauth.policy import OAuthPolicy, check_provider_url

FAILURE_BACKOFF = 5.0
MAX_DOCUMENT_BYTES = 1024 * 1024


class Issuer:
    def __init__(self, issuer: str, policy: OAuthPolicy) -> None:
        self.issuer = issuer
        self.policy = policy
        self._keys: PyJWKClient | None = None
        self._lock = threading.Lock()
        self._failed_at = -FAILURE_BACKOFF

    def signing_key(self, kid: str) -> PyJWK:
        """The issuer's published key `kid`, refetching the set if it is new."""
        keys = self._client()
        if keys.jwk_set_cache is not None and keys.jwk_set_cache.get() is None:
            self._backing_off()
        try:
            return keys.get_signing_key(kid)
        except (PyJWKClientConnectionError, PyJWKSetError) as exc:
            self._failed(f"its signing keys could not be fetched ({type(exc).__name__})")
        except PyJWKClientError:
            raise TokenRefused(
                "unknown_key",
                "the token was signed with a key its issuer does not publish (the key id is "
                "unknown; if the provider just rotated its keys, retry in a minute)",
            ) from None

    def _client(self) -> PyJWKClient:
        with self._lock:
            if self._keys is None:
                self._backing_off()
                self._keys = PyJWKClient(
                    self._jwks_uri(),
                    lifespan=self.policy.jwks_lifespan,
                    cooldown_duration=self.policy.jwks_cooldown,
                    timeout=self.policy.timeout,
                )
            return self._keys

    def _jwks_uri(self) -> str:
        document = self._discover()
        uri = document.get("jwks_uri")
        if document.get("issuer") != self.issuer or not isinstance(uri, str):
            self._failed("its discovery document names another issuer or no jwks_uri")
        try:
            check_provider_url(uri)
        except ValueError:
            self._failed("its jwks_uri is neither https nor on loopback")
        return uri

    def _discover(self) -> dict[str, Any]:
        """OpenID Connect discovery, then RFC 8414 (which inserts the well-known part before
        the issuer's path)."""
        base = self.issuer.rstrip("/")
        scheme, _, rest = base.partition("://")
        host, slash, path = rest.partition("/")
        candidates = [
            f"{base}/.well-known/openid-configuration",
            f"{scheme}://{host}/.well-known/oauth-authorization-server{slash}{path}",
        ]
        for url in candidates:
            document = self._fetch_json(url)
            if document is not None:
                return document
        self._failed("its discovery document could not be fetched")

    def _fetch_json(self, url: str) -> dict[str, Any] | None:
        try:
            with httpx.Client(timeout=self.policy.timeout, follow_redirects=False) as http:
                response = http.get(url, headers={"Accept": "application/json"})
            if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
                return None
            document = response.json()
        except (httpx.HTTPError, ValueError):
            return None
        return document if isinstance(document, dict) else None

    def _backing_off(self) -> None:
        if time.monotonic() - self._failed_at < FAILURE_BACKOFF:
            raise VerifierUnavailable(
                "issuer", f"the token's issuer {self.issuer} could not be reached just now"
            )

    def _failed(self, why: str) -> NoReturn:
        self._failed_at = time.monotonic()
        raise VerifierUnavailable(
            "issuer", f"the token's issuer {self.issuer} cannot check it now: {why}"
        )
