"""The MCP wire at its edges, as curl and sockets see it: logging levels, cancellation by
notification and by hang-up, batches, malformed bodies, the size limit, tasks' corner cases,
routing headers, and what the server advertises."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import docker
import httpx
import pytest

from backends.labels import INSTANCE
from mcp_app import create_app
from runner.settings import Settings
from tests.fakes import FakeBackend
from tests.helpers import b64, remove_objects_of, run_body, serving, until
from tests.mcp.test_tasks import modern
from tests.mcp.test_wire import message

TOKENS = {"a": "token-of-a", "b": "token-of-b"}
SSE = "application/json, text/event-stream"


@pytest.fixture(scope="module")
def served(docker_client, make_module_settings) -> Iterator[tuple[str, Settings]]:  # type: ignore[no-untyped-def]
    """A server over the engine, for what runs containers: (its URL, its settings). Its runs
    are kept for their TTL by design: after the module, they are removed by its label."""
    settings = make_module_settings(api_tokens=list(TOKENS.values()))
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp", settings
    remove_objects_of(docker_client, settings.instance_id)


@pytest.fixture(scope="module")
def url(make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A server over a FakeBackend, with the same tokens: the protocol alone."""
    settings = make_module_settings(api_tokens=list(TOKENS.values()))
    with serving(create_app(settings, backend=FakeBackend())) as port:
        yield f"http://127.0.0.1:{port}/mcp"


def post(
    url: str,
    body: object,
    *,
    who: str = "a",
    version: str | None = "2025-06-18",
    accept: str = "application/json",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    all_headers = {"Accept": accept, "Authorization": f"Bearer {TOKENS[who]}", **(headers or {})}
    if version is not None:
        all_headers["MCP-Protocol-Version"] = version
    return httpx.post(url, json=body, headers=all_headers, timeout=60)


def request(method: str, params: dict | None = None, id: int = 1) -> dict:  # type: ignore[type-arg]
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params or {}}


def events(response: httpx.Response) -> list[dict]:  # type: ignore[type-arg]
    return [
        json.loads(line[5:])
        for line in response.text.splitlines()
        if line.startswith("data:") and line[5:].strip()
    ]


# ---- logging -------------------------------------------------------------------------------


def test_logging_is_declared_and_set_level_is_honoured_per_caller(served):
    url, _ = served
    init = request(
        "initialize",
        {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    )
    assert "logging" in message(post(url, init))["result"]["capabilities"]
    quiet = post(url, request("logging/setLevel", {"level": "error"}))
    assert message(quiet)["result"] == {}
    call = request("tools/call", {"name": "run_container", "arguments": run_body("echo", "hi")})
    logged = [event for event in events(post(url, call, accept=SSE)) if "method" in event]
    assert not [event for event in logged if event["method"] == "notifications/message"]
    other = [event.get("method") for event in events(post(url, call, who="b", accept=SSE))]
    assert "notifications/message" in other
    post(url, request("logging/setLevel", {"level": "debug"}))


# ---- cancellation ----------------------------------------------------------------------------


def containers_of(
    docker_client: docker.DockerClient, settings: Settings, seconds: int
) -> Callable[[], list[str]]:
    """The server's containers running `sleep <seconds>` (each test sleeps its own length)."""

    def listed() -> list[str]:
        label = f"{INSTANCE}={settings.instance_id}"
        found = docker_client.api.containers(all=True, filters={"label": label})
        return [item["Id"] for item in found if item["Command"] == f"sleep {seconds}"]

    return listed


def open_call(url: str, body: dict, *, who: str = "a") -> socket.socket:  # type: ignore[type-arg]
    """A tools/call sent over a raw socket, its answer not read: a client mid-request."""
    host, port = url.removeprefix("http://").split("/")[0].split(":")
    payload = json.dumps(body).encode()
    head = (
        f"POST /mcp HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Accept: application/json\r\nMCP-Protocol-Version: 2025-06-18\r\n"
        f"Authorization: Bearer {TOKENS[who]}\r\nContent-Length: {len(payload)}\r\n\r\n"
    )
    sock = socket.create_connection((host, int(port)))
    sock.sendall(head.encode() + payload)
    return sock


def sleeping(served, docker_client, id: int):  # type: ignore[no-untyped-def]
    """A tools/call of `sleep <300 + id>` in flight, once its container runs: (url, the
    container listing, the client's socket, the cancel notification for it)."""
    url, settings = served
    running = containers_of(docker_client, settings, 300 + id)
    arguments = run_body("sleep", str(300 + id))
    sock = open_call(
        url, request("tools/call", {"name": "run_container", "arguments": arguments}, id)
    )
    until(running, 30)
    cancel = {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": id}}
    return url, running, sock, cancel


def test_a_json_client_that_hangs_up_has_its_container_removed(served, docker_client):
    _, running, sock, _ = sleeping(served, docker_client, 11)
    sock.close()
    until(lambda: not running(), 15)


def test_notifications_cancelled_over_http_removes_the_container(served, docker_client):
    url, running, sock, cancel = sleeping(served, docker_client, 12)
    assert post(url, cancel).status_code == 202
    until(lambda: not running(), 15)
    sock.settimeout(15)
    assert b"request cancelled" in sock.recv(65536)
    sock.close()


def test_another_caller_cannot_cancel_a_request(served, docker_client):
    url, running, sock, cancel = sleeping(served, docker_client, 13)
    post(url, cancel, who="b")
    assert post(url, request("ping")).status_code == 200  # the cancel has been handled
    assert running()
    post(url, cancel)
    until(lambda: not running(), 15)
    sock.close()


# ---- JSON-RPC framing ------------------------------------------------------------------------


def test_a_batch_on_2025_03_26_is_answered_as_an_array(url):
    batch = [
        request("ping", id=1),
        request("tools/list", id=2),
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
    ]
    answers = post(url, batch, version=None).json()
    assert [answer["id"] for answer in answers] == [1, 2]
    assert answers[0]["result"] == {}
    assert answers[1]["result"]["tools"]


def test_a_batch_on_a_later_protocol_is_an_invalid_request(url):
    response = post(url, [request("ping")], version="2025-06-18")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32600


@pytest.mark.parametrize("body", [{"foo": 1}, {"jsonrpc": "1.0", "id": 1, "method": "ping"}, 7])
def test_a_body_that_is_not_a_message_is_an_invalid_request(url, body):
    response = post(url, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == -32600
    assert "pydantic" not in error["message"]


@pytest.mark.parametrize(
    "body",
    [
        b"null",
        b'{"jsonrpc": "2.0", "id": {"a": 1}, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": [1], "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": 1.5, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": true, "method": "ping"}',
        b'{"jsonrpc": "2.0", "id": null, "method": "ping"}',
    ],
    ids=["null", "object-id", "array-id", "float-id", "bool-id", "null-id"],
)
def test_a_request_without_a_string_or_integer_id_is_an_invalid_request(url, body):
    """The SDK would take these for notifications and answer an empty 202: the client would
    wait forever for its answer."""
    headers = {"Content-Type": "application/json", "MCP-Protocol-Version": "2025-06-18"}
    response = httpx.post(
        url,
        content=body,
        headers={**headers, "Accept": "application/json", "Authorization": f"Bearer {TOKENS['a']}"},
    )
    assert response.status_code == 400
    assert response.json()["id"] is None
    assert response.json()["error"]["code"] == -32600


def test_json_nested_too_deeply_to_read_is_a_parse_error(url):
    body = b'{"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"a": ' + b"[" * 100_000
    response = httpx.post(
        url,
        content=body + b"]" * 100_000 + b"}}",
        headers={
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Authorization": f"Bearer {TOKENS['a']}",
        },
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == -32700


@pytest.mark.parametrize("task", [None, {"ttl": 60000}], ids=["call", "task-augmented-call"])
def test_an_unknown_tool_is_a_protocol_error_not_a_tool_result(url, task):
    params = {"name": "no_such_tool", "arguments": {}} | ({"task": task} if task else {})
    answer = message(post(url, request("tools/call", params), version="2025-11-25"))
    assert "result" not in answer
    assert answer["error"]["code"] == -32602
    assert "no_such_tool" in answer["error"]["message"]


def test_the_size_limit_is_runner_max_request_bytes(make_settings):
    settings = make_settings(max_request_bytes=64 * 1024)
    with serving(create_app(settings, backend=FakeBackend())) as port:
        big = run_body("true", volumes={"/f": {"type": "file", "content": b64(b"x" * 65536)}})
        body = request("tools/call", {"name": "run_container", "arguments": big})
        refused = httpx.post(
            f"http://127.0.0.1:{port}/mcp", json=body, headers={"Accept": "application/json"}
        )
    assert refused.status_code == 413
    assert "RUNNER_MAX_REQUEST_BYTES" in refused.json()["error"]["message"]


def test_requests_past_the_sdk_s_own_4_mib_are_served(served):
    url, _ = served
    content = b64(b"y" * (5 * 1024 * 1024))
    body = run_body("wc", "-c", "/f", volumes={"/f": {"type": "file", "content": content}})
    call = post(url, request("tools/call", {"name": "run_container", "arguments": body}))
    assert message(call)["result"]["structuredContent"]["stdout"].split()[0] == "5242880"


# ---- what is advertised ----------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2025-06-18", "2025-11-25"])
def test_only_what_exists_is_advertised(url, version):
    init = request(
        "initialize",
        {
            "protocolVersion": version,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    )
    capabilities = message(post(url, init, version=None))["result"]["capabilities"]
    assert "prompts" not in capabilities and "completions" not in capabilities
    assert capabilities["resources"] == {"subscribe": False, "listChanged": False}
    assert message(post(url, request("prompts/list")))["error"]["code"] == -32601
    assert (
        message(post(url, request("resources/subscribe", {"uri": "run://x"})))["error"]["code"]
        == -32601
    )


def test_discovery_on_2026_advertises_resources_without_subscriptions_or_list_changes(fake_url):
    found = modern(fake_url, "server/discover", {})["result"]["capabilities"]
    assert "prompts" not in found
    assert not found["resources"].get("subscribe") and not found["resources"].get("listChanged")
    assert not found["tools"].get("listChanged")


# ---- unknown arguments -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "arguments"),
    [
        ("wait_run", {"run_id": "0123456789abcdef", "runid": "x"}),
        ("engine_info", {"verbose": True}),
        ("runner_health", {"verbose": True}),
        ("list_images", {"ref": "busybox"}),
    ],
)
def test_unknown_arguments_are_refused_by_name_in_our_words(url, tool, arguments):
    call = post(url, request("tools/call", {"name": tool, "arguments": arguments}))
    result = message(call)["result"]
    assert result["isError"] is True
    text = result["content"][0]["text"]
    unknown = next(name for name in arguments if name != "run_id")
    assert text.startswith(f"{unknown}: not an argument of {tool}")
    assert "pydantic" not in text and "http" not in text
