"""MCP tasks (protocol 2025-11-25) as a client speaks them on the wire: a task-augmented
run_container call returns a task at once; tasks/get, tasks/result, tasks/list, tasks/cancel."""

from __future__ import annotations

import docker

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
