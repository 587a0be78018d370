"""MCP tasks (protocol 2025-11-25) as a client speaks them on the wire: a task-augmented
run_container call returns a task at once; tasks/get, tasks/result, tasks/list, tasks/cancel."""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import docker
import httpx

from tests.helpers import run_body, run_containers
from tests.mcp.test_wire import message, rpc

VERSION = "2025-11-25"
JSON = "application/json"


def call(url: str, method: str, params: dict) -> dict:  # type: ignore[type-arg]
    return message(rpc(url, method, params, accept=JSON, version=VERSION))


def start_task(url: str, *command: str) -> dict:  # type: ignore[type-arg]
    params = {"name": "run_container", "arguments": run_body(*command), "task": {"ttl": 60000}}
    reply = call(url, "tools/call", params)
    assert "result" in reply, reply
    return reply["result"]["task"]


def test_the_tasks_capability_and_the_tool_s_task_support_are_advertised(fake_url):
    init = call(
        fake_url,
        "initialize",
        {
            "protocolVersion": VERSION,
            "capabilities": {},
            "clientInfo": {"name": "t", "version": "1"},
        },
    )
    tasks = init["result"]["capabilities"]["tasks"]
    assert tasks["requests"] == {"tools": {"call": {}}}
    assert "cancel" in tasks and "list" in tasks
    tools = {tool["name"]: tool for tool in call(fake_url, "tools/list", {})["result"]["tools"]}
    assert tools["run_container"]["execution"] == {"taskSupport": "optional"}
    assert "execution" not in tools["engine_info"]


def test_a_task_returns_at_once_and_its_result_is_the_call_s_result(runs_url):
    task = start_task(runs_url, "sh", "-c", "echo from-task; exit 2")
    assert task["status"] == "working"
    assert task["pollInterval"] > 0 and task["ttl"] is not None
    result = call(runs_url, "tasks/result", {"taskId": task["taskId"]})["result"]
    assert result["structuredContent"]["exit_code"] == 2
    assert result["structuredContent"]["stdout"] == "from-task\n"
    assert result["_meta"]["io.modelcontextprotocol/related-task"] == {"taskId": task["taskId"]}
    got = call(runs_url, "tasks/get", {"taskId": task["taskId"]})["result"]
    assert got["status"] == "completed"
    listed = call(runs_url, "tasks/list", {})["result"]["tasks"]
    assert task["taskId"] in [item["taskId"] for item in listed]


def test_cancelling_a_task_removes_its_container(runs_url, docker_client: docker.DockerClient):
    task = start_task(runs_url, "sleep", "300")
    cancelled = call(runs_url, "tasks/cancel", {"taskId": task["taskId"]})["result"]
    assert cancelled["status"] == "cancelled"
    assert run_containers(docker_client, task["taskId"]) == []
    assert (
        call(runs_url, "tasks/get", {"taskId": task["taskId"]})["result"]["status"] == "cancelled"
    )


def test_cancelling_a_finished_task_is_invalid_params(runs_url):
    task = start_task(runs_url, "true")
    call(runs_url, "tasks/result", {"taskId": task["taskId"]})
    reply = call(runs_url, "tasks/cancel", {"taskId": task["taskId"]})
    assert reply.get("error", {}).get("code") == -32602, reply


def test_created_at_does_not_change_between_create_and_get(runs_url):
    """The run's container is made after the task is answered; the task keeps its time."""
    task = start_task(runs_url, "sleep", "5")
    got = call(runs_url, "tasks/get", {"taskId": task["taskId"]})["result"]
    while got["statusMessage"] != "running":
        got = call(runs_url, "tasks/get", {"taskId": task["taskId"]})["result"]
    assert got["createdAt"] == task["createdAt"]
    call(runs_url, "tasks/cancel", {"taskId": task["taskId"]})


def test_an_unknown_task_is_a_protocol_error_naming_it(fake_url):
    reply = call(fake_url, "tasks/get", {"taskId": "0123456789abcdef"})
    assert reply["error"]["code"] == -32602
    assert "0123456789abcdef" in reply["error"]["message"]


def test_bad_arguments_in_a_task_call_are_a_tool_error_naming_the_field(fake_url):
    params = {
        "name": "run_container",
        "arguments": run_body("true", memory="lots"),
        "task": {},
    }
    result = call(fake_url, "tools/call", params)["result"]
    assert result["isError"] is True
    assert "memory" in result["content"][0]["text"]


# ---- 2026-07-28: the io.modelcontextprotocol/tasks extension (SEP-2663) ------------------

MODERN = "2026-07-28"
EXTENSION = {"extensions": {"io.modelcontextprotocol/tasks": {}}}


def modern(url: str, method: str, params: dict, *, name: str | None = None, capabilities=None):  # type: ignore[no-untyped-def, type-arg]
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": capabilities or {},
    }
    headers = {
        "Content-Type": "application/json",
        "Accept": JSON,
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": method,
    }
    if name is not None:
        headers["Mcp-Name"] = name
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": meta}}
    reply: dict = httpx.post(url, json=body, headers=headers, timeout=60).json()  # type: ignore[type-arg]
    return reply  # errors come with a 4xx status on this wire


def call_as_task(url: str, arguments: dict, *, capabilities=EXTENSION) -> dict:  # type: ignore[no-untyped-def, type-arg]
    params = {"name": "run_container", "arguments": arguments}
    reply: dict = modern(url, "tools/call", params, name="run_container", capabilities=capabilities)  # type: ignore[type-arg]
    return reply["result"]  # type: ignore[no-any-return]


def on_task(url: str, method: str, task_id: str) -> dict:  # type: ignore[type-arg]
    reply: dict = modern(url, method, {"taskId": task_id}, name=task_id, capabilities=EXTENSION)  # type: ignore[type-arg]
    return reply


def poll(url: str, task_id: str) -> dict:  # type: ignore[type-arg]
    """tasks/get until the task leaves `working`, as a client polls."""
    for _ in range(10_000):
        task: dict = on_task(url, "tasks/get", task_id)["result"]  # type: ignore[type-arg]
        if task["status"] != "working":
            return task
    raise AssertionError("the task never ended")


def test_discovery_advertises_the_tasks_extension(fake_url):
    result = modern(fake_url, "server/discover", {})["result"]
    assert result["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"] == {}


def test_a_declaring_client_gets_a_task_and_polls_it_to_the_inlined_result(runs_url):
    created = call_as_task(runs_url, run_body("sh", "-c", "echo modern; exit 5"))
    assert created["resultType"] == "task"
    assert created["status"] == "working" and created["pollIntervalMs"] > 0
    task = poll(runs_url, created["taskId"])
    assert (task["resultType"], task["status"]) == ("complete", "completed")
    assert task["result"]["structuredContent"]["exit_code"] == 5
    assert task["result"]["structuredContent"]["stdout"] == "modern\n"


def test_a_client_that_does_not_declare_the_extension_gets_the_plain_result(runs_url):
    plain = call_as_task(runs_url, run_body("echo", "plain"), capabilities={})
    assert plain["structuredContent"]["stdout"] == "plain\n"
    refused = modern(runs_url, "tasks/get", {"taskId": "0123456789abcdef"}, name="0123456789abcdef")
    assert refused["error"]["code"] == -32021


def test_cancel_through_the_extension(runs_url, docker_client: docker.DockerClient):
    task_id = call_as_task(runs_url, run_body("sleep", "300"))["taskId"]
    assert on_task(runs_url, "tasks/cancel", task_id)["result"] == {"resultType": "complete"}
    assert on_task(runs_url, "tasks/get", task_id)["result"]["status"] == "cancelled"
    assert run_containers(docker_client, task_id) == []


def test_a_task_method_whose_mcp_name_is_not_its_task_is_a_header_mismatch(runs_url):
    task_id = call_as_task(runs_url, run_body("true"))["taskId"]
    for name in ("0123456789abcdef", None):
        reply = modern(
            runs_url, "tasks/get", {"taskId": task_id}, name=name, capabilities=EXTENSION
        )
        assert reply["error"]["code"] == -32020
    assert poll(runs_url, task_id)["status"] == "completed"


def test_surrounding_whitespace_in_mcp_name_is_accepted(fake_url):
    """As HTTP reads a field (RFC 9110 §5.5); httpx refuses to send such a value, http.client
    does not."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MODERN,
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    params = {"name": "runner_health", "arguments": {}, "_meta": meta}
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})
    headers = {
        "Content-Type": "application/json",
        "Accept": JSON,
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": "  runner_health  ",
    }
    connection = http.client.HTTPConnection(urlsplit(fake_url).netloc, timeout=60)
    connection.request("POST", "/mcp", body, headers)
    reply = json.loads(connection.getresponse().read())
    connection.close()
    assert reply["result"]["isError"] is False


def test_a_run_that_cannot_start_completes_with_the_tool_error(runs_url):
    created = call_as_task(runs_url, run_body("true", image="oneoff-test/absent:1"))
    task = poll(runs_url, created["taskId"])
    assert task["status"] == "completed"
    assert task["result"]["isError"] is True
    assert "oneoff-test/absent:1" in task["result"]["content"][0]["text"]
