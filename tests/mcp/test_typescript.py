"""The official TypeScript SDK client (`@modelcontextprotocol/sdk`, pinned in
`tests/mcp/node/package.json`) drives the server over Streamable HTTP and over stdio, as agent
hosts built on it do: tools, files in and out, a failing command, bad input, a run longer than
the SDK's 60 s request timeout, cancellation, a task. `node/client.mjs` makes the calls; the
assertions are here."""

from __future__ import annotations

import base64
import itertools
import json
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from backends.labels import INSTANCE
from mcp_app import create_app
from tests.helpers import (
    TEST_REGISTRIES,
    b64,
    instance_id,
    remove_objects_of,
    run_body,
    serving,
    tar_gz,
    untar_gz,
    until,
)
from tests.mcp.nodejs import NODE_DIR, node

pytestmark = pytest.mark.node
STDIO_INSTANCE = instance_id("ts-stdio")


@pytest.fixture(scope="module")
def http_target(docker_client, make_module_settings) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """The HTTP server; after the module, the task's run records (kept for their TTL by
    design) are removed with the rest of both servers' objects."""
    settings = make_module_settings()
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp", settings.instance_id
    for instance in (settings.instance_id, STDIO_INSTANCE):
        remove_objects_of(docker_client, instance)


@pytest.fixture(params=["http", "stdio"])
def target(request, http_target) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """Where the client connects, and the runner instance whose containers it makes."""
    return http_target if request.param == "http" else ("stdio", STDIO_INSTANCE)


def client(target: str, scenario: str, arguments: object = None, timeout: float = 120) -> Any:
    command = [str(Path(sys.executable).with_name("oneoff-runner")), "mcp", "--stdio"]
    env = {
        **os.environ,
        "RUNNER_STDIO_COMMAND": json.dumps(command),
        "RUNNER_INSTANCE_ID": STDIO_INSTANCE,
        "RUNNER_ALLOWED_REGISTRIES": ",".join(TEST_REGISTRIES),
    }
    script = NODE_DIR / "client.mjs"
    ran = node(script, target, scenario, json.dumps(arguments or {}), timeout=timeout, env=env)
    assert ran.returncode == 0, ran.stderr[-4000:]
    return json.loads(ran.stdout)


def call(target: str, tool: str, arguments: dict[str, Any], timeout: float = 120) -> Any:
    return client(target, "call", {"name": tool, "arguments": arguments}, timeout=timeout)


def test_the_tools_and_capabilities(target):
    seen = client(target[0], "tools")
    assert {"run_container", "start_run", "get_run", "cancel_run"} <= set(seen["tools"])
    assert "logging" in seen["capabilities"] and "prompts" not in seen["capabilities"]


def test_a_run_with_files_in_and_out(target):
    script = b"#!/bin/sh\ncat /in/data/a.txt > /out/copy.txt\necho done\n"
    body = run_body(
        "/in/job.sh",
        volumes={
            "/in/job.sh:ro": {"type": "file", "content": b64(script), "mode": "0755"},
            "/in/data": {"type": "directory", "content": b64(tar_gz({"a.txt": b"from ts"}))},
            "/out": {"type": "directory", "response": True},
        },
    )
    seen = call(target[0], "run_container", body)
    structured = seen["result"]["structuredContent"]
    assert structured["stdout"] == "done\n"
    returned = untar_gz(base64.b64decode(structured["volumes"]["/out"]["content"]))
    assert returned == {"copy.txt": b"from ts"}


def test_a_failing_command_is_a_result_with_its_exit_code(target):
    seen = call(target[0], "run_container", run_body("sh", "-c", "echo broke >&2; exit 3"))
    assert seen["result"]["isError"] is False
    assert seen["result"]["structuredContent"]["exit_code"] == 3
    assert seen["result"]["content"][0]["text"].startswith("exit code 3")
    assert {"level": "info", "logger": "stderr", "data": "broke\n"} in seen["logs"]


def test_bad_input_is_a_tool_error_naming_the_field(target):
    seen = call(target[0], "run_container", run_body("true", memory="lots", colour="red"))
    assert seen["result"]["isError"] is True
    assert "memory" in seen["result"]["content"][0]["text"]


def test_an_unknown_tool_is_a_json_rpc_error(target):
    seen = client(target[0], "error", {"name": "no_such_tool", "arguments": {}})
    assert seen.get("code") == -32602, seen
    assert "no_such_tool" in seen["message"]


def running_sleep(
    docker_client: docker.DockerClient, instance: str, seconds: int
) -> Callable[[], bool]:
    def listed() -> bool:
        found = docker_client.api.containers(all=True, filters={"label": f"{INSTANCE}={instance}"})
        return any(item["Command"] == f"sleep {seconds}" for item in found)

    return listed


def test_an_abandoned_call_has_its_container_removed(target, docker_client):
    url, instance = target
    seconds = 377 if url == "stdio" else 378
    seen = client(
        url, "abandon", {"name": "run_container", "arguments": run_body("sleep", str(seconds))}
    )
    assert seen["aborted"] is True
    until(lambda: not running_sleep(docker_client, instance, seconds)(), 15)


def test_a_task_runs_to_its_result(target):
    seen = client(
        target[0], "task", {"name": "run_container", "arguments": run_body("echo", "tasked")}
    )
    assert seen["created"]["status"] == "working"
    assert seen["final"]["status"] == "completed"
    assert seen["result"]["structuredContent"]["stdout"] == "tasked\n"


def test_a_run_longer_than_the_sdk_request_timeout_completes_on_progress(http_target):
    """The SDK gives up on a request after 60 s without progress; the heartbeat keeps it alive."""
    body = run_body("sh", "-c", "sleep 75; echo survived", timeout_seconds=120)
    seen = call(http_target[0], "run_container", body, timeout=150)
    assert seen["result"]["structuredContent"]["stdout"] == "survived\n"
    assert seen["seconds"] > 75
    gaps = [b["progress"] - a["progress"] for a, b in itertools.pairwise(seen["progress"])]
    assert max(gaps) <= 10
    assert {note["total"] for note in seen["progress"]} == {120}


def test_stdin_reaches_the_command(target):
    seen = call(target[0], "run_container", run_body("sh", "-c", "cat; echo eof", stdin="typed\n"))
    assert seen["result"]["structuredContent"]["stdout"] == "typed\neof\n"


def test_a_volume_is_created_listed_and_removed(target, docker_client):
    name = f"oneoff-test-ts-{uuid.uuid4().hex[:8]}"
    calls = [
        {"name": "create_volume", "arguments": {"name": name}},
        {"name": "list_volumes", "arguments": {}},
        {"name": "remove_volume", "arguments": {"name": name}},
        {"name": "list_volumes", "arguments": {}},
    ]
    try:
        created, listed, removed, after = client(target[0], "sequence", calls)["results"]
    finally:
        for volume in docker_client.volumes.list(filters={"name": name}):
            volume.remove(force=True)
    assert created["isError"] is False
    assert name in [volume["name"] for volume in listed["structuredContent"]["volumes"]]
    assert removed["structuredContent"] == {"status": "removed", "name": name}
    assert name not in [volume["name"] for volume in after["structuredContent"]["volumes"]]


def test_an_image_is_pulled_with_progress(target, unique_image, docker_client):
    image = unique_image()
    seen = call(target[0], "pull_image", {"image": image})
    assert seen["result"]["isError"] is False, seen["result"]
    assert docker_client.images.get(image).id == seen["result"]["structuredContent"]["id"]
    assert seen["progress"] and seen["progress"][0]["message"].startswith(f"pulling {image}")
