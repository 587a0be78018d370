"""An access token in, an `Identity` out.

A JWT is checked here, with PyJWT: its algorithm against the allow-list (public-key algorithms
only) before anything else, its issuer against the trusted ones, its signature against that
issuer's published key (`kid`), then `iss`, `aud` (must contain the runner's audience),
`exp`, `nbf` and `iat` with the operator's leeway. A token that is not a JWT goes to the
introspection endpoint when the operator configured one, and is refused otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import jwt
from jwt import exceptions as jwt_errors

from runner.oauth.errors import TokenRefused
from runner.oauth.introspection import Introspector
from runner.oauth.issuers import Issuer
from runner.oauth.policy import Identity, OAuthPolicy, identity_of

REQUIRED_CLAIMS = ["exp", "iss", "aud"]


class TokenVerifier:
    def __init__(self, policy: OAuthPolicy) -> None:
        self.policy = policy
        self.issuers = {issuer: Issuer(issuer, policy) for issuer in policy.issuers}
        self.introspector = (
            Introspector(policy.introspection_url, policy) if policy.introspection_url else None
        )

    def verify(self, token: str) -> Identity:
        """Who `token` names; raises `TokenRefused` or `VerifierUnavailable`. May block."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt_errors.DecodeError:
            if self.introspector is not None:
                return self._introspected(token)
            raise TokenRefused(
                "malformed",
                "the token is neither an API token of this runner nor a JWT access token",
            ) from None
        return self._verified_jwt(token, header)

    def _verified_jwt(self, token: str, header: Mapping[str, Any]) -> Identity:
        algorithm = header.get("alg")
        if algorithm not in self.policy.algorithms:
            raise TokenRefused(
                "algorithm",
                "the token's signing algorithm is not accepted (public-key algorithms only: "
                f"{', '.join(self.policy.algorithms)})",
            )
        issuer = self._issuer(token)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise TokenRefused("unknown_key", "the token names no signing key (no `kid`)")
        key = issuer.signing_key(kid)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[str(algorithm)],
                audience=list(self.policy.audiences),
                issuer=issuer.issuer,
                leeway=self.policy.leeway,
                options={"require": REQUIRED_CLAIMS, "enforce_minimum_key_length": True},
            )
        except jwt_errors.PyJWTError as exc:
            raise refusal(exc, self.policy.audiences) from None
        return identity_of(claims, issuer.issuer, self.policy)

    def _issuer(self, token: str) -> Issuer:
        """The trusted issuer the token claims to be from (its signature is checked next)."""
        try:
            claimed = jwt.decode(token, options={"verify_signature": False}).get("iss")
        except jwt_errors.PyJWTError:
            claimed = None
        issuer = self.issuers.get(claimed) if isinstance(claimed, str) else None
        if issuer is None:
            raise TokenRefused(
                "issuer", "the token's issuer (iss) is not trusted here (RUNNER_OAUTH_ISSUERS)"
            )
        return issuer

    def _introspected(self, token: str) -> Identity:
        assert self.introspector is not None
        claims = self.introspector.claims(token)
        issuer = claims.get("iss", self.policy.issuers[0])
        if issuer not in self.issuers:
            raise TokenRefused(
                "issuer", "the token's issuer (iss) is not trusted here (RUNNER_OAUTH_ISSUERS)"
            )
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not set(self.policy.audiences) & set(audiences):
            raise TokenRefused("audience", audience_message(self.policy.audiences))
        expires = claims.get("exp")
        if isinstance(expires, int | float) and expires + self.policy.leeway < time.time():
            raise TokenRefused("expired", EXPIRED)
        return identity_of(claims, str(issuer), self.policy)


EXPIRED = "the token has expired: get a new one from the identity provider"


def audience_message(audiences: tuple[str, ...]) -> str:
    return "the token is not for this runner: its audience (aud) must include " + " or ".join(
        repr(audience) for audience in audiences
    )


def refusal(exc: jwt_errors.PyJWTError, audiences: tuple[str, ...]) -> TokenRefused:
    """PyJWT's finding, as a reason an operator can act on."""
    if isinstance(exc, jwt_errors.ExpiredSignatureError):
        return TokenRefused("expired", EXPIRED)
    if isinstance(exc, jwt_errors.ImmatureSignatureError):
        return TokenRefused(
            "not_yet_valid",
            "the token is not valid yet (nbf or iat lies ahead): are the clocks of the runner "
            "and the provider apart? (RUNNER_OAUTH_LEEWAY_SECONDS)",
        )
    if isinstance(exc, jwt_errors.InvalidAudienceError):
        return TokenRefused("audience", audience_message(audiences))
    if isinstance(exc, jwt_errors.InvalidIssuerError):
        return TokenRefused("issuer", "the token's issuer (iss) is not trusted here")
    if isinstance(exc, jwt_errors.InvalidSignatureError):
        return TokenRefused(
            "signature", "the token's signature does not verify with its issuer's key"
        )
    if isinstance(exc, jwt_errors.MissingRequiredClaimError):
        return TokenRefused("claims", f"the token lacks the {exc.claim!r} claim")
    if isinstance(exc, jwt_errors.InvalidAlgorithmError | jwt_errors.InvalidKeyError):
        return TokenRefused(
            "algorithm", "the token's algorithm does not match its issuer's key for that key id"
        )
    return TokenRefused("malformed", "the token could not be read as a JWT access token")
