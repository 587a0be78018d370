"""The TypeScript SDK's OAuth client completes the MCP authorization flow against the runner and
a real provider, as a hosted MCP client does: 401, the runner's RFC 9728 metadata, the
provider's metadata, dynamic client registration, authorization code with PKCE and the RFC 8707
resource (the sign-in automated by the provider's test app), then a tool call with the token."""

from __future__ import annotations

import json
from urllib.parse import parse_qs, urlsplit

import jwt
import pytest

from tests.helpers import run_body
from tests.identity.doors import Runner
from tests.idp import USER, Provider
from tests.mcp.nodejs import NODE_DIR, node

pytestmark = pytest.mark.node


def test_the_typescript_sdk_signs_in_and_calls_a_tool(doors: Runner, provider: Provider) -> None:
    call = {"name": "run_container", "arguments": run_body("echo", "signed in")}
    ran = node(NODE_DIR / "oauth.mjs", doors.mcp, json.dumps(call), timeout=180)
    assert ran.returncode == 0, ran.stderr[-4000:]
    seen = json.loads(ran.stdout.strip().splitlines()[-1])

    assert seen["refusedFirst"] is True
    asked = parse_qs(urlsplit(seen["authorizationUrl"]).query)
    assert seen["authorizationUrl"].startswith(f"{provider.issuer}/oauth2/auth?")
    assert asked["resource"] == [doors.mcp]
    assert asked["code_challenge_method"] == ["S256"]
    assert asked["client_id"] == [seen["clientId"]]

    claims = jwt.decode(seen["accessToken"], options={"verify_signature": False})
    assert (claims["iss"], claims["sub"]) == (provider.issuer, USER)
    assert doors.mcp in claims["aud"]

    result = seen["result"]
    assert result.get("isError") is not True, result
    assert result["structuredContent"]["stdout"] == "signed in\n"
