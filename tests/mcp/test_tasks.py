"""MCP tasks (protocol 2025-11-25) as a client speaks them on the wire: a task-augmented
run_container call returns a task at once; tasks/get, tasks/result, tasks/list, tasks/cancel."""

from __future__ import annotations

import docker
import httpx

from backends.base import RUN_ID
from tests.helpers import run_body
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


def test_the_tasks_capability_and_the_tool_s_task_support_are_advertised(runs_url):
    init = call(
        runs_url,
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
    tools = {tool["name"]: tool for tool in call(runs_url, "tools/list", {})["result"]["tools"]}
    assert tools["run_container"]["execution"] == {"taskSupport": "optional"}
    assert "execution" not in tools["list_images"]


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


def test_cancelling_a_task_removes_its_container(runs_url, engine: docker.DockerClient):
    task = start_task(runs_url, "sleep", "300")
    cancelled = call(runs_url, "tasks/cancel", {"taskId": task["taskId"]})["result"]
    assert cancelled["status"] == "cancelled"
    label = f"{RUN_ID}={task['taskId']}"
    assert engine.containers.list(all=True, filters={"label": label}) == []
    assert (
        call(runs_url, "tasks/get", {"taskId": task["taskId"]})["result"]["status"] == "cancelled"
    )


def test_an_unknown_task_is_a_protocol_error_naming_it(runs_url):
    reply = call(runs_url, "tasks/get", {"taskId": "0123456789abcdef"})
    assert reply["error"]["code"] == -32602
    assert "0123456789abcdef" in reply["error"]["message"]


def test_bad_arguments_in_a_task_call_are_a_tool_error_naming_the_field(runs_url):
    params = {
        "name": "run_container",
        "arguments": run_body("true", memory="lots"),
        "task": {},
    }
    result = call(runs_url, "tools/call", params)["result"]
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


def test_discovery_advertises_the_tasks_extension(runs_url):
    result = modern(runs_url, "server/discover", {})["result"]
    assert result["capabilities"]["extensions"]["io.modelcontextprotocol/tasks"] == {}


def test_a_declaring_client_gets_a_task_and_polls_it_to_the_inlined_result(runs_url):
    arguments = run_body("sh", "-c", "echo modern; exit 5")
    created = modern(
        runs_url,
        "tools/call",
        {"name": "run_container", "arguments": arguments},
        name="run_container",
        capabilities=EXTENSION,
    )["result"]
    assert created["resultType"] == "task"
    assert created["status"] == "working" and created["pollIntervalMs"] > 0
    task_id = created["taskId"]
    for _ in range(10_000):
        got = modern(
            runs_url, "tasks/get", {"taskId": task_id}, name=task_id, capabilities=EXTENSION
        )
        if got["result"]["status"] != "working":
            break
    task = got["result"]
    assert (task["resultType"], task["status"]) == ("complete", "completed")
    assert task["result"]["structuredContent"]["exit_code"] == 5
    assert task["result"]["structuredContent"]["stdout"] == "modern\n"


def test_a_client_that_does_not_declare_the_extension_gets_the_plain_result(runs_url):
    plain = modern(
        runs_url,
        "tools/call",
        {"name": "run_container", "arguments": run_body("echo", "plain")},
        name="run_container",
    )["result"]
    assert plain["structuredContent"]["stdout"] == "plain\n"
    refused = modern(runs_url, "tasks/get", {"taskId": "0123456789abcdef"}, name="0123456789abcdef")
    assert refused["error"]["code"] == -32021


def test_cancel_through_the_extension(runs_url, engine: docker.DockerClient):
    created = modern(
        runs_url,
        "tools/call",
        {"name": "run_container", "arguments": run_body("sleep", "300")},
        name="run_container",
        capabilities=EXTENSION,
    )["result"]
    task_id = created["taskId"]
    ack = modern(
        runs_url, "tasks/cancel", {"taskId": task_id}, name=task_id, capabilities=EXTENSION
    )
    assert ack["result"] == {"resultType": "complete"}
    got = modern(runs_url, "tasks/get", {"taskId": task_id}, name=task_id, capabilities=EXTENSION)
    assert got["result"]["status"] == "cancelled"
    label = f"{RUN_ID}={task_id}"
    assert engine.containers.list(all=True, filters={"label": label}) == []


def test_a_run_that_cannot_start_completes_with_the_tool_error(runs_url):
    arguments = run_body("true", image="oneoff-test/absent:1")
    created = modern(
        runs_url,
        "tools/call",
        {"name": "run_container", "arguments": arguments},
        name="run_container",
        capabilities=EXTENSION,
    )["result"]
    task_id = created["taskId"]
    for _ in range(10_000):
        got = modern(
            runs_url, "tasks/get", {"taskId": task_id}, name=task_id, capabilities=EXTENSION
        )
        if got["result"]["status"] != "working":
            break
    task = got["result"]
    assert task["status"] == "completed"
    assert task["result"]["isError"] is True
    assert "oneoff-test/absent:1" in task["result"]["content"][0]["text"]
