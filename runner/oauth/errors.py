"""Why an access token was not accepted, in words an operator can act on.

A reason says which check failed (expired, audience, signing key, ...) and never echoes the
token, its claims or the keys: the audience and issuers it names are public anyway (the
protected-resource metadata lists them).
"""

from __future__ import annotations


class OAuthError(Exception):
    status_code = 500

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class TokenRefused(OAuthError):
    """The token is not good here; `reason` is a short code (`expired`, `audience`, ...), and
    `error` the RFC 6750 error code for the `WWW-Authenticate` challenge."""

    status_code = 401
    error = "invalid_token"


class ScopeMissing(TokenRefused):
    """A good token without the scopes this operation needs (RFC 6750: 403)."""

    status_code = 403
    error = "insufficient_scope"

    def __init__(self, scopes: list[str]) -> None:
        names = " ".join(scopes)
        super().__init__("scope", f"the token lacks the scope(s) this needs: {names}")
        self.scopes = scopes


class VerifierUnavailable(OAuthError):
    """The issuer's keys or its introspection endpoint could not be reached: nobody is let in
    with a token that needs them, and the caller should retry later."""

    status_code = 503
    retry_after = 10
