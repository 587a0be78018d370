"""The token verifier against a real OpenID provider (Ory Hydra, tests/idp.py): its tokens
are accepted for what they say, and forged, expired, misdirected and unsigned ones are refused
with the reason an operator needs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from runner.oauth import OAuthPolicy, TokenRefused, TokenVerifier, VerifierUnavailable
from tests.idp import Provider, running_provider

AUDIENCE = "http://runner.test/"
OTHER = "http://other-service.test/"


def policy(provider: Provider, **overrides: object) -> OAuthPolicy:
    values: dict[str, object] = {"issuers": (provider.issuer,), "audiences": (AUDIENCE,)}
    values.update(overrides)
    return OAuthPolicy(**values)  # type: ignore[arg-type]


def refusal(verifier: TokenVerifier, token: str) -> TokenRefused:
    with pytest.raises(TokenRefused) as refused:
        verifier.verify(token)
    return refused.value


def forged(provider: Provider, token: str, **header: object) -> str:
    """The claims of a real token, signed by a key of our own under `header`."""
    claims = jwt.decode(token, options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers=header)


def base64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def test_a_client_credentials_token_names_its_client(provider: Provider) -> None:
    client = provider.client([AUDIENCE])
    identity = TokenVerifier(policy(provider)).verify(provider.token(client, AUDIENCE))
    assert (identity.issuer, identity.tenant, identity.subject) == (
        provider.issuer,
        client.id,
        client.id,
    )
    assert "runs" in identity.scopes


def test_the_tenant_comes_from_the_claim_the_operator_chose(provider: Provider) -> None:
    client = provider.client([AUDIENCE])
    verifier = TokenVerifier(policy(provider, tenant_claim="client_id"))
    assert verifier.verify(provider.token(client, AUDIENCE)).tenant == client.id
    missing = TokenVerifier(policy(provider, tenant_claim="ext.org"))
    assert refusal(missing, provider.token(client, AUDIENCE)).reason == "tenant"


def test_an_expired_token_is_refused_as_expired(provider: Provider) -> None:
    client = provider.client([AUDIENCE], lifespan="1ms")  # issued already expired
    refused = refusal(TokenVerifier(policy(provider, leeway=0)), provider.token(client, AUDIENCE))
    assert (refused.reason, refused.status_code) == ("expired", 401)
    assert "expired" in refused.message


def test_a_token_for_another_audience_is_refused(provider: Provider) -> None:
    client = provider.client([AUDIENCE, OTHER])
    refused = refusal(TokenVerifier(policy(provider)), provider.token(client, OTHER))
    assert refused.reason == "audience"
    assert AUDIENCE in refused.message


def test_a_token_of_an_untrusted_issuer_is_refused(provider: Provider) -> None:
    client = provider.client([AUDIENCE])
    verifier = TokenVerifier(OAuthPolicy(issuers=("https://idp.example",), audiences=(AUDIENCE,)))
    assert refusal(verifier, provider.token(client, AUDIENCE)).reason == "issuer"


def test_a_token_signed_by_another_key_under_the_issuers_key_id_is_refused(
    provider: Provider,
) -> None:
    token = provider.token(provider.client([AUDIENCE]), AUDIENCE)
    kid = jwt.get_unverified_header(token)["kid"]
    refused = refusal(TokenVerifier(policy(provider)), forged(provider, token, kid=kid))
    assert refused.reason == "signature"


def test_a_token_signed_by_a_key_the_issuer_does_not_publish_is_refused(
    provider: Provider,
) -> None:
    token = provider.token(provider.client([AUDIENCE]), AUDIENCE)
    refused = refusal(TokenVerifier(policy(provider)), forged(provider, token, kid="made-up"))
    assert refused.reason == "unknown_key"


def test_an_unsigned_token_is_refused(provider: Provider) -> None:
    token = provider.token(provider.client([AUDIENCE]), AUDIENCE)
    claims = jwt.decode(token, options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none")
    assert jwt.get_unverified_header(unsigned)["alg"] == "none"
    assert refusal(TokenVerifier(policy(provider)), unsigned).reason == "algorithm"


def test_an_hmac_keyed_with_the_issuers_public_key_is_refused(provider: Provider) -> None:
    """The classic forgery: HS256 with the published RSA key as the shared secret."""
    token = provider.token(provider.client([AUDIENCE]), AUDIENCE)
    header = jwt.get_unverified_header(token)
    public = jwt.PyJWKClient(f"{provider.issuer}/.well-known/jwks.json").get_signing_key(
        header["kid"]
    )
    pem = public.key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    claims = jwt.decode(token, options={"verify_signature": False})
    parts = [{"alg": "HS256", "typ": "JWT", "kid": header["kid"]}, claims]
    signing_input = ".".join(base64url(json.dumps(part).encode()) for part in parts)
    signature = hmac.new(pem, signing_input.encode(), hashlib.sha256).digest()
    hmac_token = f"{signing_input}.{base64url(signature)}"
    assert refusal(TokenVerifier(policy(provider)), hmac_token).reason == "algorithm"


def test_a_key_rotation_at_the_provider_is_picked_up(provider: Provider) -> None:
    client = provider.client([AUDIENCE])
    verifier = TokenVerifier(policy(provider, jwks_cooldown=0))
    before = provider.token(client, AUDIENCE)
    verifier.verify(before)  # the old keys are now cached
    kid = provider.rotate_keys()
    after = provider.token(client, AUDIENCE)
    assert jwt.get_unverified_header(after)["kid"] == kid
    assert verifier.verify(after).tenant == client.id


def test_unknown_key_ids_refetch_the_keys_at_most_once_per_cooldown(provider: Provider) -> None:
    client = provider.client([AUDIENCE])
    verifier = TokenVerifier(policy(provider, jwks_cooldown=3600))
    verifier.verify(provider.token(client, AUDIENCE))
    provider.rotate_keys()
    assert refusal(verifier, provider.token(client, AUDIENCE)).reason == "unknown_key"


def test_opaque_tokens_are_introspected(provider: Provider) -> None:
    client = provider.client([AUDIENCE], opaque=True)
    verifier = TokenVerifier(
        policy(provider, introspection_url=f"{provider.admin}/admin/oauth2/introspect")
    )
    token = provider.token(client, AUDIENCE)
    assert token.startswith("ory_at_")
    assert verifier.verify(token).tenant == client.id
    assert refusal(verifier, token + "x").reason == "inactive"
    other = provider.client([AUDIENCE, OTHER], opaque=True)
    assert refusal(verifier, provider.token(other, OTHER)).reason == "audience"


def test_without_introspection_an_opaque_token_is_refused(provider: Provider) -> None:
    token = provider.token(provider.client([AUDIENCE], opaque=True), AUDIENCE)
    assert refusal(TokenVerifier(policy(provider)), token).reason == "malformed"


def test_required_scopes_are_enforced(provider: Provider) -> None:
    client = provider.client([AUDIENCE], scope="runs admin")
    verifier = TokenVerifier(policy(provider, required_scopes=("admin",)))
    assert verifier.verify(provider.token(client, AUDIENCE, scope="runs admin")).tenant
    refused = refusal(verifier, provider.token(client, AUDIENCE, scope="runs"))
    assert (refused.reason, refused.status_code) == ("scope", 403)


def test_a_provider_that_cannot_be_reached_lets_nobody_in(tmp_path: Path) -> None:
    with running_provider(tmp_path / "idp.log") as gone:
        client = gone.client([AUDIENCE])
        token = gone.token(client, AUDIENCE)
        verifier = TokenVerifier(policy(gone, timeout=2))
    started = time.monotonic()
    with pytest.raises(VerifierUnavailable) as unavailable:
        verifier.verify(token)
    assert unavailable.value.status_code == 503
    with pytest.raises(VerifierUnavailable):  # backing off: answered without asking again
        verifier.verify(token)
    assert time.monotonic() - started < 10
