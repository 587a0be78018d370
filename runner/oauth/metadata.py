"""RFC 9728 protected-resource metadata, and the `WWW-Authenticate` challenge that points at it
(as the MCP authorization spec requires of a 401), so that a client finds the issuer and runs
its own sign-in.

The runner names itself with the configured audiences (`RUNNER_OAUTH_AUDIENCE`), never with a
`Host` header: for a request, the resource is the configured audience on the same host and port
whose path is the longest prefix of the request's path (`/mcp` for the MCP door when the
operator lists `https://runner.example.com/mcp`), else the first one. Its metadata lives at its
origin + `/.well-known/oauth-protected-resource` + its path, as RFC 9728 places it.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from runner.oauth.policy import OAuthPolicy

WELL_KNOWN = "/.well-known/oauth-protected-resource"
DEFAULT_PORTS = {"http": 80, "https": 443}


def resource_for(policy: OAuthPolicy, host: str, path: str) -> str:
    """The audience that names this runner to a request for `path` sent to `host`."""
    best, best_length = policy.audiences[0], -1
    for audience in policy.audiences:
        parsed = urlsplit(audience)
        prefix = parsed.path.rstrip("/")
        under = path == prefix or path.startswith(prefix + "/")
        if _netloc(parsed.scheme, parsed.netloc) == _netloc("", host) and under:
            if len(prefix) > best_length:
                best, best_length = audience, len(prefix)
    return best


def metadata_url(resource: str) -> str:
    parsed = urlsplit(resource)
    return f"{parsed.scheme}://{parsed.netloc}{WELL_KNOWN}{parsed.path.rstrip('/')}"


def document(policy: OAuthPolicy, resource: str) -> dict[str, Any]:
    """The metadata of `resource`: who issues its tokens, and how to present them."""
    body: dict[str, Any] = {
        "resource": resource,
        "authorization_servers": list(policy.issuers),
        "bearer_methods_supported": ["header"],
        "resource_name": "oneoff-runner",
    }
    scopes = [*policy.required_scopes, *policy.read_scopes, *policy.write_scopes]
    if scopes:
        body["scopes_supported"] = list(dict.fromkeys(scopes))
    return body


def challenge(
    resource: str, error: str | None = None, description: str = "", scope: str = ""
) -> str:
    """`WWW-Authenticate: Bearer ...` (RFC 6750 §3, RFC 9728 §5.1)."""
    parts = ['realm="oneoff-runner"']
    if error:
        parts.append(f'error="{error}"')
        if description:
            parts.append(f'error_description="{_quotable(description)}"')
    if scope:
        parts.append(f'scope="{_quotable(scope)}"')
    parts.append(f'resource_metadata="{metadata_url(resource)}"')
    return "Bearer " + ", ".join(parts)


def _quotable(text: str) -> str:
    """RFC 6750 allows printable ASCII but `"` and `\\` in a quoted parameter."""
    return "".join(c if " " <= c <= "~" and c not in '"\\' else "'" for c in text)


def _netloc(scheme: str, netloc: str) -> tuple[str, int | None]:
    """(host, port), with a default port as None: a Host header may omit it, and TLS may end
    before the runner, so neither the scheme nor a default port tells two origins apart."""
    try:
        parsed = urlsplit(f"//{netloc}")
        port = parsed.port
    except ValueError:
        return ("", None)
    if port == DEFAULT_PORTS.get(scheme) or (not scheme and port in (80, 443)):
        port = None
    return (parsed.hostname or "", port)
