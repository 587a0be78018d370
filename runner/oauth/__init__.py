"""The runner as an OAuth 2.1 resource server: access tokens from the operator's identity
provider, beside the static API tokens.

- `policy.OAuthPolicy`: what the operator trusts (issuers, the audience that names this runner,
  the claim that names the tenant, scopes, introspection), built from settings.
- `verifier.TokenVerifier`: one access token in, an `Identity` out, or `TokenRefused` (401: the
  token is bad, with a reason an operator can act on) or `VerifierUnavailable` (503: the
  provider cannot be asked right now; nobody is let in). Blocking: the doors call it in a
  worker thread.
- `issuers.Issuer`: an issuer's discovery document and signing keys, fetched and cached.
- `introspection.Introspector`: RFC 7662 for opaque tokens.
- `metadata`: RFC 9728 protected-resource metadata and the `WWW-Authenticate` challenge that
  points MCP clients at it.

    OAuthError
    ├── TokenRefused (401, or 403 for missing scopes)
    └── VerifierUnavailable (503)
"""

from runner.oauth.errors import OAuthError, TokenRefused, VerifierUnavailable
from runner.oauth.policy import Identity, OAuthPolicy
from runner.oauth.verifier import TokenVerifier

__all__ = [
    "Identity",
    "OAuthError",
    "OAuthPolicy",
    "TokenRefused",
    "TokenVerifier",
    "VerifierUnavailable",
]
