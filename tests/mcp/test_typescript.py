"""The official TypeScript SDK client (`@modelcontextprotocol/sdk`, pinned in
`tests/mcp/node/package.json`) drives the server over Streamable HTTP and over stdio, as agent
hosts built on it do: tools, files in and out, a failing command, bad input, a run longer than
the SDK's 60 s request timeout, cancellation, a task. `node/client.mjs` makes the calls; the
assertions are here."""

from __future__ import annotations

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
from runner.mcp.resources import SIZE, TRUNCATED
from tests.helpers import (
    SUITE_KEPT_RUNS,
    TEST_REGISTRIES,
    b64,
    instance_id,
    remove_objects_of,
    run_body,
    serving,
    tar_gz,
    until,
)
from tests.mcp.nodejs import NODE_DIR, node

pytestmark = pytest.mark.node
STDIO_INSTANCE = instance_id("ts-stdio")


@pytest.fixture(scope="module")
def http_target(docker_client, make_module_settings) -> Iterator[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """The HTTP server; after the module, the runs' containers and records (kept for their TTL
    by design) are removed with the rest of both servers' objects."""
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
        "RUNNER_MAX_KEPT_RUNS": str(SUITE_KEPT_RUNS),
    }
    script = NODE_DIR / "client.mjs"
    ran = node(script, target, scenario, json.dumps(arguments or {}), timeout=timeout, env=env)
    assert ran.returncode == 0, ran.stderr[-4000:]
    return json.loads(ran.stdout)


def call(target: str, tool: str, arguments: dict[str, Any], timeout: float = 120) -> Any:
    return client(target, "call", {"name": tool, "arguments": arguments}, timeout=timeout)


def test_the_tools_and_capabilities(target):
    seen = client(target[0], "tools")
    assert {"run_container", "wait_run", "read_file", "cancel_run"} <= set(seen["tools"])
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
    assert [item["path"] for item in structured["files"]] == ["/out/copy.txt"]
    assert seen["result"]["content"][1] == {
        "type": "text",
        "text": "--- /out/copy.txt ---\nfrom ts",
    }


def test_a_returned_file_is_read_through_its_resource_link(target):
    """The host follows the answer's resource_link with resources/read, as hosts do."""
    script = "printf 'from ts' > /out/copy.txt; printf '\\000\\377' > /out/raw.bin"
    body = run_body("sh", "-c", script, outputs=["/out"])
    seen = client(target[0], "links", {"name": "run_container", "arguments": body})
    contents = {
        item["contents"][0]["uri"].rsplit("/", 1)[1]: item["contents"][0] for item in seen["read"]
    }
    assert contents["copy.txt"]["text"] == "from ts"
    assert contents["raw.bin"]["blob"] == b64(b"\x00\xff")
    assert contents["raw.bin"]["_meta"] == {SIZE: 2, TRUNCATED: False}


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


def loop(target: str, arguments: dict[str, Any], timeout: float) -> list[dict[str, Any]]:
    """An agent's loop with the SDK's default options: run_container, then wait_run with the
    offsets each answer gives until the run has finished; every call and its duration."""
    call = {"name": "run_container", "arguments": arguments}
    calls: list[dict[str, Any]] = client(target, "loop", call, timeout=timeout)["calls"]
    return calls


def assert_the_loop(calls: list[dict[str, Any]], expected_stdout: str) -> None:
    """Every call answered within the bound (45 s, under the SDK's 60 s), no error; only the
    last one finished; the output, read across the offsets, is whole."""
    assert all(call["seconds"] < 47 for call in calls), [call["seconds"] for call in calls]
    views = [call["result"]["structuredContent"] for call in calls]
    assert [call["result"].get("isError", False) for call in calls] == [False] * len(calls)
    assert [view["finished"] for view in views] == [False] * (len(views) - 1) + [True]
    for call in calls[:-1]:
        assert "still running" in call["result"]["content"][0]["text"]
    assert "".join(view["stdout"] for view in views) == expected_stdout
    assert views[-1]["exit_code"] == 0


def test_a_70_second_run_through_default_options(target, docker_client):
    """The SDK times a request out after 60 s unless the host opts into progress resets; the
    run answers "still running" before that, and wait_run brings the rest."""
    script = "echo begin; sleep 70; echo end"
    arguments = {**run_body("sh", "-c", script), "timeout_seconds": 120}
    calls = loop(target[0], arguments, timeout=150)
    assert len(calls) == 2
    assert calls[0]["seconds"] > 40
    assert_the_loop(calls, "begin\nend\n")


@pytest.mark.timeout(480)
def test_a_five_minute_run_through_default_options(http_target):
    script = "for i in 1 2 3 4 5; do echo minute $i; sleep 60; done"
    arguments = {**run_body("sh", "-c", script), "timeout_seconds": 400}
    calls = loop(http_target[0], arguments, timeout=420)
    assert len(calls) >= 7
    assert_the_loop(calls, "".join(f"minute {i}\n" for i in range(1, 6)))


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


def test_a_workspace_keeps_a_file_written_and_edited_without_a_run(target, docker_client):
    name = f"oneoff-test-ts-{uuid.uuid4().hex[:8]}"
    mounted = run_body("cat", "/work/app.txt", volumes={"/work": {"type": "volume", "name": name}})
    calls = [
        {"name": "create_volume", "arguments": {"name": name}},
        {
            "name": "write_volume_file",
            "arguments": {"name": name, "path": "app.txt", "content": "v1"},
        },
        {"name": "read_volume", "arguments": {"name": name, "path": "app.txt"}},
        {
            "name": "write_volume_file",
            "arguments": {"name": name, "path": "app.txt", "content": "v2"},
        },
        {"name": "run_container", "arguments": mounted},
        {"name": "remove_volume", "arguments": {"name": name}},
    ]
    try:
        results = client(target[0], "sequence", calls)["results"]
    finally:
        for volume in docker_client.volumes.list(filters={"name": name}):
            volume.remove(force=True)
    assert [result["isError"] for result in results] == [False] * 6
    assert results[2]["content"][0]["text"] == "v1"
    assert results[4]["structuredContent"]["stdout"] == "v2"


def test_an_image_is_pulled_with_progress(target, unique_image, docker_client):
    image = unique_image()
    seen = call(target[0], "pull_image", {"image": image})
    assert seen["result"]["isError"] is False, seen["result"]
    assert docker_client.images.get(image).id == seen["result"]["structuredContent"]["id"]
    assert seen["progress"] and seen["progress"][0]["message"].startswith(f"pulling {image}")
