"""What the operator trusts, and who a verified token names.

The tenant is the value of one claim the operator chooses (`sub` by default; a dotted path
reaches into objects, e.g. `ext.org`): a string, a number, or a list of exactly one of them. Two
issuers' identical values are different tenants.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from runner.oauth.errors import ScopeMissing, TokenRefused

ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
"""Every algorithm a token may be signed with: public-key ones only. `none` and HS* are never
accepted (an HMAC "signed" with the issuer's public key is the classic forgery)."""

MAX_TENANT_LENGTH = 200


def check_provider_url(url: str) -> None:
    """Keys and answers that decide who gets in travel over TLS, or never leave the host."""
    parsed = urlsplit(url)
    loopback = parsed.hostname in ("127.0.0.1", "localhost", "::1")
    if not parsed.hostname or not (
        parsed.scheme == "https" or (parsed.scheme == "http" and loopback)
    ):
        raise ValueError(
            f"{url!r}: the identity provider is reached over https (http only on loopback)"
        )


@dataclass(frozen=True)
class OAuthPolicy:
    """`issuers`: exact issuer identifiers (`iss`); `audiences`: this runner's resource
    identifiers, one of which `aud` must contain; `leeway`: seconds of clock skew allowed on
    `exp`/`nbf`/`iat`; `jwks_lifespan`: how long fetched keys are used before a refetch;
    `jwks_cooldown`: the least time between two refetches caused by an unknown key id;
    `required_scopes` every request needs, `read_scopes` and `write_scopes` those of the two
    operations (`read`: what changes nothing; `write`: the rest)."""

    issuers: tuple[str, ...]
    audiences: tuple[str, ...]
    tenant_claim: str = "sub"
    required_scopes: tuple[str, ...] = ()
    read_scopes: tuple[str, ...] = ()
    write_scopes: tuple[str, ...] = ()
    algorithms: tuple[str, ...] = ASYMMETRIC_ALGORITHMS
    leeway: float = 30.0
    jwks_lifespan: float = 300.0
    jwks_cooldown: float = 30.0
    introspection_url: str | None = None
    introspection_client_id: str | None = None
    introspection_client_secret: str | None = None
    timeout: float = 5.0

    def scopes_for(self, operation: str) -> tuple[str, ...]:
        return self.read_scopes if operation == "read" else self.write_scopes

    def __post_init__(self) -> None:
        unsafe = [name for name in self.algorithms if name not in ASYMMETRIC_ALGORITHMS]
        if unsafe:
            raise ValueError(f"not public-key algorithms, never accepted: {unsafe}")


@dataclass(frozen=True)
class Identity:
    """Who a verified token names: `tenant` is the tenant claim's value, `scopes` what the
    token grants."""

    issuer: str
    tenant: str
    subject: str | None
    scopes: frozenset[str]


def identity_of(claims: Mapping[str, Any], issuer: str, policy: OAuthPolicy) -> Identity:
    """The identity in verified `claims`; a token without the tenant claim, or without the
    scopes every request needs, is refused."""
    scopes = scopes_of(claims)
    missing = [scope for scope in policy.required_scopes if scope not in scopes]
    if missing:
        raise ScopeMissing(missing)
    subject = claims.get("sub")
    return Identity(
        issuer=issuer,
        tenant=tenant_of(claims, policy.tenant_claim),
        subject=subject if isinstance(subject, str) else None,
        scopes=scopes,
    )


def scopes_of(claims: Mapping[str, Any]) -> frozenset[str]:
    """Scopes as providers write them: `scope` (RFC 9068, RFC 7662: a space-separated string)
    or `scp` (a list, or a string as Entra ID writes it)."""
    found: set[str] = set()
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            found.update(value.split())
        elif isinstance(value, list):
            found.update(item for item in value if isinstance(item, str))
    return frozenset(found)


def tenant_of(claims: Mapping[str, Any], path: str) -> str:
    value: Any = claims
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise TokenRefused(
            "tenant",
            f"the token's {path!r} claim (RUNNER_OAUTH_TENANT_CLAIM) must name one tenant: "
            "a string, a number, or a list of one",
        )
    text = str(value)
    if not text or len(text) > MAX_TENANT_LENGTH or not text.isprintable():
        raise TokenRefused(
            "tenant",
            f"the token's {path!r} claim must be 1 to {MAX_TENANT_LENGTH} printable characters "
            "(it names the tenant in logs and metrics)",
        )
    return text
