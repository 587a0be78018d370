"""The resource server's pure parts: which tenant a token names, how the runner names itself to
MCP clients (RFC 9728), the challenge of a refusal, and the settings an operator can get wrong.
The checks of real tokens are in tests/identity (against a real provider)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from runner.oauth import OAuthPolicy, TokenRefused
from runner.oauth.door import mcp_operation
from runner.oauth.metadata import challenge, document, metadata_url, resource_for
from runner.oauth.policy import identity_of, scopes_of
from runner.settings import Settings
from runner.tenancy import parse_token, tenant_for_identity

ISSUER = "https://idp.example"
POLICY = OAuthPolicy(
    issuers=(ISSUER,),
    audiences=("https://runner.example.com", "http://127.0.0.1:8001/mcp", "http://127.0.0.1:8000"),
)


@pytest.mark.parametrize(
    ("host", "path", "resource"),
    [
        ("runner.example.com", "/mcp", "https://runner.example.com"),
        ("runner.example.com:443", "/runs", "https://runner.example.com"),
        ("127.0.0.1:8001", "/mcp", "http://127.0.0.1:8001/mcp"),
        ("127.0.0.1:8000", "/runs", "http://127.0.0.1:8000"),
        ("attacker.example", "/mcp", "https://runner.example.com"),  # never echoes a Host
        ("127.0.0.1:8001", "/mcpx", "https://runner.example.com"),  # a prefix is a whole segment
    ],
)
def test_the_runner_names_itself_by_its_configured_audiences(host, path, resource):
    assert resource_for(POLICY, host, path) == resource


def test_the_metadata_lives_where_rfc_9728_puts_it():
    assert metadata_url("https://runner.example.com") == (
        "https://runner.example.com/.well-known/oauth-protected-resource"
    )
    assert metadata_url("http://127.0.0.1:8001/mcp") == (
        "http://127.0.0.1:8001/.well-known/oauth-protected-resource/mcp"
    )
    body = document(POLICY, "http://127.0.0.1:8001/mcp")
    assert body["authorization_servers"] == [ISSUER]
    assert "scopes_supported" not in body


def test_a_challenge_quotes_nothing_a_client_could_misparse():
    header = challenge("https://r.example", "invalid_token", 'say "hi" \\ now\n', "a b")
    assert header == (
        'Bearer realm="oneoff-runner", error="invalid_token", '
        "error_description=\"say 'hi' ' now'\", scope=\"a b\", "
        'resource_metadata="https://r.example/.well-known/oauth-protected-resource"'
    )


@pytest.mark.parametrize(
    ("claims", "scopes"),
    [
        ({"scope": "a b"}, {"a", "b"}),
        ({"scp": ["a", "b"]}, {"a", "b"}),
        ({"scp": "a b"}, {"a", "b"}),  # Entra ID
        ({"scope": "a", "scp": ["b", 3]}, {"a", "b"}),
        ({}, set()),
    ],
)
def test_scopes_are_read_as_providers_write_them(claims, scopes):
    assert scopes_of(claims) == scopes


@pytest.mark.parametrize(
    ("claims", "path", "tenant"),
    [
        ({"sub": "alice"}, "sub", "alice"),
        ({"org": {"id": 42}}, "org.id", "42"),
        ({"groups": ["team-a"]}, "groups", "team-a"),
    ],
)
def test_the_tenant_is_the_chosen_claim(claims, path, tenant):
    policy = OAuthPolicy(issuers=(ISSUER,), audiences=("x",), tenant_claim=path)
    assert identity_of(claims, ISSUER, policy).tenant == tenant


@pytest.mark.parametrize(
    "claims",
    [
        {},
        {"sub": ""},
        {"sub": True},
        {"sub": ["a", "b"]},
        {"sub": {"x": 1}},
        {"sub": "x" * 201},
        {"sub": "alice\nINFO forged log line"},
    ],
)
def test_a_token_that_names_no_single_tenant_is_refused(claims):
    with pytest.raises(TokenRefused) as refused:
        identity_of(claims, ISSUER, OAuthPolicy(issuers=(ISSUER,), audiences=("x",)))
    assert refused.value.reason == "tenant"


@given(value=st.text(min_size=1, max_size=50))
def test_an_identity_is_never_the_tenant_of_an_api_token(value):
    identity = tenant_for_identity(ISSUER, value)
    assert identity != parse_token(value)[1]
    assert identity.label != tenant_for_identity("https://other.example", value).label
    assert identity == tenant_for_identity(ISSUER, value)


def test_symmetric_algorithms_cannot_be_allowed():
    with pytest.raises(ValueError, match="HS256"):
        OAuthPolicy(issuers=(ISSUER,), audiences=("x",), algorithms=("RS256", "HS256"))


@pytest.mark.parametrize(
    "values",
    [
        {"oauth_issuers": [ISSUER]},  # no audience
        {"oauth_issuers": ["http://idp.example"], "oauth_audience": ["x"]},  # plain http
        {"oauth_issuers": ["idp.example"], "oauth_audience": ["x"]},
        {"oauth_introspection_url": "http://idp.example/introspect"},
    ],
)
def test_unsafe_identity_settings_are_refused(values):
    with pytest.raises(ValidationError):
        Settings(instance_id="unit", **values)


def test_a_loopback_provider_may_speak_plain_http():
    settings = Settings(
        instance_id="unit",
        oauth_issuers="http://127.0.0.1:4444, https://idp.example",
        oauth_audience="https://runner.example.com",
        oauth_introspection_client_secret="s3cret",
    )
    policy = settings.oauth_policy()
    assert policy is not None
    assert policy.issuers == ("http://127.0.0.1:4444", "https://idp.example")
    assert policy.introspection_client_secret == "s3cret"
    assert "s3cret" not in repr(settings)


@pytest.mark.parametrize(
    ("message", "operation"),
    [
        ({"method": "tools/call", "params": {"name": "get_run"}}, "read"),
        ({"method": "tools/call", "params": {"name": "run_container"}}, "write"),
        ({"method": "tools/call", "params": {"name": 3}}, "write"),
        ({"method": "tools/call"}, "write"),
        ({"method": "tasks/cancel", "params": {"taskId": "x"}}, "write"),
        ({"method": "tools/list"}, "read"),
        ({"method": "initialize"}, "read"),
        ([{"method": "tools/list"}, {"method": "tools/call", "params": {"name": "x"}}], "write"),
        ([1, "x", None], "read"),
        (None, "read"),  # not JSON: the SDK answers with a parse error
    ],
)
def test_an_mcp_message_writes_unless_everything_in_it_only_reads(message, operation):
    assert mcp_operation(message, {"get_run"}) == operation
