"""Tenants: who a request acts for, and the label that marks what it made.

Each configured API token is a tenant, and so is each identity an identity provider's access
token names (the value of the operator's tenant claim, per issuer). A tenant sees only its own
runs, tasks, output, records, idempotency keys, volumes and containers; another tenant's answer
404, as if they did not exist.
Without API tokens and without an identity provider there is one tenant, `LOCAL` (single-user
mode).

An *operator* is a tenant that may also see what belongs to no tenant: every container and
image on the engine, and the per-tenant metrics. The holders of `RUNNER_OPERATOR_TOKENS` are
operators, and so is `LOCAL`: without tokens, whoever passes the browser checks on loopback has
the engine's power already; over stdio, the user who started the process. An identity
provider's subjects are tenants, never operators: whoever the provider signs in is not thereby
trusted with the engine.

What the runner creates carries the tenant's *label*: HMAC-SHA256 keyed with the token over a
fixed message. Keyed with the token, so that every runner configured with the same token (any
replica, a restarted runner) computes the same label and answers for the same objects, with no
extra secret to distribute; the label never reveals the token, and a tenant's name can change
without losing its runs. Rotating a token makes a new tenant.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

SCOPE_KEY = "oneoff-runner.tenant"
LABEL_MESSAGE = b"oneoff-runner tenant v1"
IDENTITY_MESSAGE = b"oneoff-runner identity tenant v1"


@dataclass(frozen=True)
class Tenant:
    """`name`: for logs and metrics; `label`: stored on engine and cluster objects; `operator`:
    may see what belongs to no tenant (not part of its identity: the same token is the same
    tenant, whichever list names it)."""

    name: str
    label: str
    operator: bool = field(default=False, compare=False)


LOCAL = Tenant(name="local", label="local", operator=True)


def tenant_for(token: str, name: str | None = None, *, operator: bool = False) -> Tenant:
    """The tenant of `token`; unnamed, it is called after its label (never after the token)."""
    digest = hmac.new(token.encode(), LABEL_MESSAGE, hashlib.sha256).hexdigest()[:32]
    return Tenant(name=name or f"tenant-{digest[:8]}", label=digest, operator=operator)


def tenant_for_identity(issuer: str, value: str) -> Tenant:
    """The tenant an identity provider's token names (`runner.oauth`): keyed with the issuer
    and the tenant claim's value, so every token of that identity is the same tenant, on every
    runner that trusts that issuer; never the same as an API token's tenant."""
    key = f"{issuer}\n{value}".encode()
    digest = hmac.new(key, IDENTITY_MESSAGE, hashlib.sha256).hexdigest()[:32]
    return Tenant(name=value, label=digest)


def parse_token(entry: str, *, operator: bool = False) -> tuple[str, Tenant]:
    """`token` or `name:token`, as the operator writes it: returns (token, tenant)."""
    name, separator, token = entry.strip().partition(":")
    if not separator:
        return name, tenant_for(name, operator=operator)
    return token.strip(), tenant_for(token.strip(), name.strip() or None, operator=operator)


def remember(scope: MutableMapping[str, Any], tenant: Tenant) -> None:
    """The auth middleware's finding, kept on the ASGI scope for the front doors."""
    scope[SCOPE_KEY] = tenant


def tenant_of(scope: MutableMapping[str, Any] | None) -> Tenant:
    """Who a request acts for. No HTTP request (stdio) is the local user; an HTTP request the
    auth middleware did not see is refused, never treated as anyone."""
    if scope is None:
        return LOCAL
    tenant = scope.get(SCOPE_KEY)
    if not isinstance(tenant, Tenant):
        raise RuntimeError("request did not pass through the authentication middleware")
    return tenant
