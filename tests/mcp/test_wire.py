"""The MCP endpoint as curl sees it: raw JSON-RPC over HTTP, every protocol version, JSON or
SSE per the Accept header; plus DNS-rebinding protection and bearer tokens."""

from __future__ import annotations

import json

import httpx
import pytest

from api_app import create_app as create_rest_app
from mcp_app import create_app
from tests.fakes import FakeBackend
from tests.helpers import run_body, serving

HANDSHAKE_VERSIONS = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"]
ACCEPTS = {"json": "application/json", "json+sse": "application/json, text/event-stream"}


def rpc(
    url: str,
    method: str,
    params: dict,
    *,
    accept: str,
    version: str | None = None,
    headers: dict | None = None,
) -> httpx.Response:
    all_headers = {"Content-Type": "application/json", "Accept": accept, **(headers or {})}
    if version is not None and version >= "2025-06-18":
        all_headers["MCP-Protocol-Version"] = version
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    return httpx.post(url, json=body, headers=all_headers, timeout=60)


def message(response: httpx.Response) -> dict:
    """The JSON-RPC response, from a JSON body or from the last SSE `data:` event."""
    assert response.status_code == 200, response.text
    if response.headers["content-type"].startswith("text/event-stream"):
        events = [
            line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")
        ]
        replies = [json.loads(event) for event in events if event]
        return [reply for reply in replies if "id" in reply][-1]
    return response.json()


@pytest.mark.parametrize("version", HANDSHAKE_VERSIONS)
@pytest.mark.parametrize("accept", ACCEPTS.values(), ids=ACCEPTS.keys())
def test_curl_sequence_initialize_list_call(mcp_url, version, accept):
    init = message(
        rpc(
            mcp_url,
            "initialize",
            {
                "protocolVersion": version,
                "capabilities": {},
                "clientInfo": {"name": "curl", "version": "8"},
            },
            accept=accept,
        )
    )
    assert init["result"]["protocolVersion"] == version
    assert init["result"]["serverInfo"]["name"] == "oneoff-runner"
    tools = message(rpc(mcp_url, "tools/list", {}, accept=accept, version=version))
    assert "run_container" in {tool["name"] for tool in tools["result"]["tools"]}
    call = message(
        rpc(
            mcp_url,
            "tools/call",
            {
                "name": "run_container",
                "arguments": run_body("echo", "over", "the", "wire"),
            },
            accept=accept,
            version=version,
        )
    )
    result = call["result"]
    assert result["isError"] is False
    assert result["structuredContent"]["stdout"] == "over the wire\n"
    assert result["content"][0]["text"].startswith("exit code 0")


def test_json_only_clients_get_json(fake_url):
    response = rpc(fake_url, "tools/list", {}, accept=ACCEPTS["json"], version="2025-06-18")
    assert response.headers["content-type"].startswith("application/json")


def test_sse_clients_get_an_event_stream_with_progress(mcp_url):
    params = {
        "name": "run_container",
        "arguments": run_body("echo", "streamed"),
        "_meta": {"progressToken": "tok-1"},
    }
    response = rpc(mcp_url, "tools/call", params, accept=ACCEPTS["json+sse"], version="2025-06-18")
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [
        json.loads(line[5:])
        for line in response.text.splitlines()
        if line.startswith("data:") and line[5:].strip()
    ]
    progress = [event for event in events if event.get("method") == "notifications/progress"]
    assert progress and all(event["params"]["progressToken"] == "tok-1" for event in progress)
    assert events[-1]["result"]["structuredContent"]["stdout"] == "streamed\n"


def test_a_foreign_origin_is_refused_on_localhost(fake_url):
    response = rpc(
        fake_url,
        "tools/list",
        {},
        accept=ACCEPTS["json"],
        headers={"Origin": "http://evil.example"},
    )
    assert response.status_code == 403


def test_a_foreign_host_header_is_refused_on_localhost(fake_url):
    response = rpc(
        fake_url, "tools/list", {}, accept=ACCEPTS["json"], headers={"Host": "evil.example"}
    )
    assert response.status_code in (403, 421)


def test_an_allowed_hostname_is_accepted(make_settings):
    settings = make_settings(allowed_hosts=["runner.example.com"])
    with serving(create_app(settings, backend=FakeBackend())) as port:
        response = rpc(
            f"http://127.0.0.1:{port}/mcp",
            "tools/list",
            {},
            accept=ACCEPTS["json"],
            headers={"Host": "runner.example.com"},
        )
    assert response.status_code == 200


@pytest.fixture(scope="module")
def token_urls(make_module_settings):  # type: ignore[no-untyped-def]
    """Both doors with two tokens, over FakeBackends."""
    settings = make_module_settings(api_tokens=["first-token", "second-token"])
    mcp_app, rest_app = (
        create(settings, backend=FakeBackend()) for create in (create_app, create_rest_app)
    )
    with serving(mcp_app) as mcp_port, serving(rest_app) as rest:
        yield f"http://127.0.0.1:{mcp_port}/mcp", f"http://127.0.0.1:{rest}"


@pytest.mark.parametrize(
    "header", [None, "Bearer wrong", "Basic Zmlyc3QtdG9rZW4=", "Bearer", "first-token"]
)
def test_mcp_without_a_valid_token_is_401(token_urls, header):
    mcp_url, _ = token_urls
    headers = {"Authorization": header} if header else {}
    response = rpc(mcp_url, "tools/list", {}, accept=ACCEPTS["json"], headers=headers)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("token", ["first-token", "second-token"])
def test_mcp_with_any_configured_token_works(token_urls, token):
    mcp_url, _ = token_urls
    response = rpc(
        mcp_url,
        "tools/list",
        {},
        accept=ACCEPTS["json"],
        version="2025-06-18",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200


def test_rest_requires_the_token_except_for_health_and_the_docs(token_urls):
    _, rest_url = token_urls
    assert httpx.get(f"{rest_url}/health").status_code == 200
    assert httpx.get(f"{rest_url}/openapi.json").status_code == 200  # the docs pages read it
    assert httpx.get(f"{rest_url}/containers").status_code == 401
    refused = httpx.post(f"{rest_url}/run", json=run_body("true"))
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"].startswith("Bearer")
    allowed = httpx.post(
        f"{rest_url}/run",
        json=run_body("true"),
        timeout=60,
        headers={"Authorization": "Bearer second-token"},
    )
    assert allowed.status_code == 200


def test_mcp_without_tokens_needs_none(fake_url):
    assert rpc(fake_url, "tools/list", {}, accept=ACCEPTS["json"]).status_code == 200
