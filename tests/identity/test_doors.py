"""Both HTTP doors with a real OpenID provider beside API tokens: its tokens are tenants, as API
tokens are; refusals carry the challenge MCP clients follow (RFC 9728); bad tokens are refused
for the right reason; a provider that is down keeps out only its own callers."""

from __future__ import annotations

from pathlib import Path

import docker
import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.helpers import run_body
from tests.identity.doors import STATIC, Runner, bearer, runner
from tests.idp import Provider, running_provider

PRM = "/.well-known/oauth-protected-resource"
NOBODY = "0123456789abcdef"


def mcp_call(url: str, token: str, tool: str, arguments: dict[str, object]) -> httpx.Response:
    message = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": tool, "arguments": arguments},
    }
    headers = {
        **bearer(token),
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-11-25",
    }
    return httpx.post(url, json=message, headers={**headers}, timeout=120)


def test_a_client_credentials_token_runs_on_rest_as_its_tenant(
    doors: Runner, provider: Provider
) -> None:
    token = provider.token(provider.client([doors.rest]), doors.rest)
    ran = httpx.post(f"{doors.rest}/run", json=run_body("echo", "hi"), headers=bearer(token))
    assert ran.status_code == 200, ran.text
    assert ran.json()["stdout"] == "hi\n"


def test_a_client_credentials_token_calls_mcp_tools_as_its_tenant(
    doors: Runner, provider: Provider
) -> None:
    token = provider.token(provider.client([doors.mcp]), doors.mcp)
    answer = mcp_call(doors.mcp, token, "run_container", run_body("echo", "over mcp"))
    assert answer.status_code == 200, answer.text
    assert '"over mcp\\n"' in answer.text or "over mcp" in answer.text


def test_two_identities_are_two_tenants_as_two_api_tokens_are(
    doors: Runner, provider: Provider
) -> None:
    alice = provider.token(provider.client([doors.rest]), doors.rest)
    bob = provider.token(provider.client([doors.rest]), doors.rest)
    started = httpx.post(
        f"{doors.rest}/runs", json=run_body("sh", "-c", "echo mine"), headers=bearer(alice)
    )
    assert started.status_code == 202, started.text
    run_id = started.json()["run_id"]
    assert httpx.get(f"{doors.rest}/runs/{run_id}", headers=bearer(alice)).status_code == 200
    for other in (bob, STATIC):
        theirs = httpx.get(f"{doors.rest}/runs/{run_id}", headers=bearer(other))
        nobody = httpx.get(f"{doors.rest}/runs/{NOBODY}", headers=bearer(other))
        assert theirs.status_code == nobody.status_code == 404
        assert theirs.json()["message"].replace(run_id, "<id>") == nobody.json()["message"].replace(
            NOBODY, "<id>"
        )
        listed = httpx.get(f"{doors.rest}/runs", headers=bearer(other)).json()
        assert run_id not in str(listed)


def test_api_tokens_keep_working_beside_the_provider(doors: Runner) -> None:
    ran = httpx.post(f"{doors.rest}/run", json=run_body("echo", "static"), headers=bearer(STATIC))
    assert ran.status_code == 200, ran.text
    answer = mcp_call(doors.mcp, STATIC, "run_container", run_body("echo", "static"))
    assert answer.status_code == 200


@pytest.mark.parametrize("door", ["rest", "mcp"])
def test_a_401_points_at_the_protected_resource_metadata(
    doors: Runner, provider: Provider, door: str
) -> None:
    url = doors.rest + "/runs" if door == "rest" else doors.mcp
    refused = httpx.post(url, json={})
    assert refused.status_code == 401
    challenge = refused.headers["www-authenticate"]
    assert challenge.startswith("Bearer ")
    metadata_url = challenge.split('resource_metadata="')[1].split('"')[0]
    resource = doors.rest if door == "rest" else doors.mcp
    suffix = "" if door == "rest" else "/mcp"
    assert metadata_url == resource.removesuffix("/mcp") + PRM + suffix
    metadata = httpx.get(metadata_url).json()
    assert metadata["resource"] == resource
    assert metadata["authorization_servers"] == [provider.issuer]
    assert metadata["bearer_methods_supported"] == ["header"]


def test_both_metadata_paths_answer_on_both_doors(doors: Runner) -> None:
    for base in (doors.rest, doors.mcp.removesuffix("/mcp")):
        for path in (PRM, PRM + "/mcp"):
            answer = httpx.get(base + path)
            assert answer.status_code == 200
            assert answer.headers["content-type"] == "application/json"


def refused(doors: Runner, token: str) -> tuple[str, str]:
    """(RFC 6750 error of the challenge, the body's reason) of a refused REST request."""
    answer = httpx.get(f"{doors.rest}/runs", headers=bearer(token))
    assert answer.status_code == 401, answer.text
    assert 'error="invalid_token"' in answer.headers["www-authenticate"]
    assert token not in answer.text
    return answer.json()["error"], answer.json()["reason"]


def signed_by_us(token: str, **header: object) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return jwt.encode(claims, key, algorithm="RS256", headers=header)


def test_bad_tokens_are_refused_for_the_right_reason(doors: Runner, provider: Provider) -> None:
    good = provider.token(provider.client([doors.rest]), doors.rest)
    expired = provider.token(provider.client([doors.rest], lifespan="1ms"), doors.rest)
    elsewhere = "http://elsewhere.test/"
    misdirected = provider.token(provider.client([doors.rest, elsewhere]), elsewhere)
    kid = jwt.get_unverified_header(good)["kid"]
    claims = jwt.decode(good, options={"verify_signature": False})
    cases = {
        "expired": expired,
        "audience": misdirected,
        "signature": signed_by_us(good, kid=kid),
        "unknown_key": signed_by_us(good, kid="made-up"),
        "algorithm": jwt.encode(claims, None, algorithm="none"),
        "malformed": "not-a-token-of-anyone",
    }
    for reason, token in cases.items():
        assert refused(doors, token) == ("invalid_token", reason), reason


def test_a_token_without_a_required_scope_is_403(
    provider: Provider, docker_client: docker.DockerClient
) -> None:
    with runner(provider, docker_client, oauth_required_scopes=["runs"]) as urls:
        client = provider.client([urls.rest], scope="runs other")
        scoped = provider.token(client, urls.rest, scope="runs")
        assert httpx.get(f"{urls.rest}/runs", headers=bearer(scoped)).status_code == 200
        unscoped = provider.token(client, urls.rest, scope="other")
        answer = httpx.get(f"{urls.rest}/runs", headers=bearer(unscoped))
        assert answer.status_code == 403
        challenge = answer.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and 'scope="runs"' in challenge
        assert httpx.get(urls.rest + PRM).json()["scopes_supported"] == ["runs"]


def test_reading_and_writing_need_their_own_scopes_on_both_doors(
    provider: Provider, docker_client: docker.DockerClient
) -> None:
    scopes = {"oauth_read_scopes": ["runs.read"], "oauth_write_scopes": ["runs.write"]}
    with runner(provider, docker_client, **scopes) as urls:
        audiences = [urls.rest, urls.mcp]
        client = provider.client(audiences, scope="runs.read runs.write")
        reader = {door: provider.token(client, door, scope="runs.read") for door in audiences}
        writer = {door: provider.token(client, door, scope="runs.write") for door in audiences}
        assert httpx.get(f"{urls.rest}/runs", headers=bearer(reader[urls.rest])).status_code == 200
        body = run_body("true")
        answer = httpx.post(f"{urls.rest}/run", json=body, headers=bearer(reader[urls.rest]))
        assert answer.status_code == 403
        assert 'scope="runs.write"' in answer.headers["www-authenticate"]
        answer = httpx.post(f"{urls.rest}/run", json=body, headers=bearer(writer[urls.rest]))
        assert answer.status_code == 200
        assert httpx.get(f"{urls.rest}/runs", headers=bearer(writer[urls.rest])).status_code == 403

        assert mcp_call(urls.mcp, reader[urls.mcp], "list_volumes", {}).status_code == 200
        refused = mcp_call(urls.mcp, reader[urls.mcp], "run_container", body)
        assert refused.status_code == 403
        assert 'error="insufficient_scope"' in refused.headers["www-authenticate"]
        assert mcp_call(urls.mcp, writer[urls.mcp], "run_container", body).status_code == 200
        assert mcp_call(urls.mcp, STATIC, "run_container", body).status_code == 200
        assert httpx.get(urls.rest + PRM).json()["scopes_supported"] == ["runs.read", "runs.write"]


def test_a_key_rotation_at_the_provider_is_picked_up(doors: Runner, provider: Provider) -> None:
    client = provider.client([doors.rest])
    before = provider.token(client, doors.rest)
    assert httpx.get(f"{doors.rest}/runs", headers=bearer(before)).status_code == 200
    kid = provider.rotate_keys()
    after = provider.token(client, doors.rest)
    assert jwt.get_unverified_header(after)["kid"] == kid
    assert httpx.get(f"{doors.rest}/runs", headers=bearer(after)).status_code == 200


def test_a_provider_that_is_down_keeps_out_only_its_callers(
    tmp_path: Path, docker_client: docker.DockerClient
) -> None:
    """Its callers get 503 with Retry-After (not 401: their token may be fine, and a client
    that signs in again would meet the same provider); API tokens go on working."""
    with running_provider(tmp_path / "idp.log") as gone:
        doomed = runner(gone, docker_client)
        urls = doomed.__enter__()
        token = gone.token(gone.client([urls.rest]), urls.rest)
    try:
        answer = httpx.get(f"{urls.rest}/runs", headers=bearer(token))
        assert answer.status_code == 503, answer.text
        assert answer.headers["retry-after"]
        assert answer.json()["reason"] == "issuer"
        assert httpx.get(f"{urls.rest}/runs", headers=bearer(STATIC)).status_code == 200
        ran = httpx.post(f"{urls.rest}/run", json=run_body("true"), headers=bearer(STATIC))
        assert ran.status_code == 200
        assert mcp_call(urls.mcp, token, "list_volumes", {}).status_code == 503
    finally:
        doomed.__exit__(None, None, None)


def test_a_signed_in_identity_is_a_tenant_not_an_operator(
    doors: Runner, provider: Provider
) -> None:
    """Whoever the provider signs in gets a tenant's view, on both doors: not every container
    on the engine (403 naming the parameter), not the per-tenant metrics."""
    rest_token = provider.token(provider.client([doors.rest]), doors.rest)
    every = httpx.get(f"{doors.rest}/containers?managed_only=false", headers=bearer(rest_token))
    assert every.status_code == 403, every.text
    assert every.json()["field"] == "managed_only"
    own = httpx.get(f"{doors.rest}/containers", headers=bearer(rest_token))
    assert own.status_code == 200, own.text
    mcp_token = provider.token(provider.client([doors.mcp]), doors.mcp)
    listed = mcp_call(doors.mcp, mcp_token, "list_containers", {"managed_only": False})
    assert listed.status_code == 200, listed.text
    assert '"isError":true' in listed.text.replace(" ", ""), listed.text
    assert "RUNNER_OPERATOR_TOKENS" in listed.text


def test_beside_a_provider_only_operator_tokens_make_operators(
    provider: Provider, docker_client: docker.DockerClient
) -> None:
    """No tenant API token, a provider trusted: a caller with no token is no longer the local
    operator of a token-less runner, but a 401 with the challenge, even on loopback; an
    operator token (RUNNER_OPERATOR_TOKENS) still sees every container."""
    with runner(provider, docker_client, api_tokens=[], operator_tokens=["ops:tok-ops"]) as urls:
        answer = httpx.get(f"{urls.rest}/containers?managed_only=false")
        operator = httpx.get(
            f"{urls.rest}/containers?managed_only=false", headers=bearer("tok-ops")
        )
        mcp = httpx.post(
            urls.mcp,
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
        )
    assert answer.status_code == 401, answer.text
    assert "resource_metadata=" in answer.headers["www-authenticate"]
    assert mcp.status_code == 401, mcp.text
    assert operator.status_code == 200, operator.text
