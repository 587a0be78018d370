"""Two API tokens over MCP, through the official Python SDK client on Streamable HTTP: neither
tenant can see, read, follow or cancel the other's tasks and runs, list its containers or use its
volumes; for each, the other's things do not exist."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator

import docker
import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from backends.labels import INSTANCE
from mcp_app import create_app
from tests.helpers import instance_id, run_body, serving
from tests.mcp.test_wire import message, rpc
from tests.registries import CREDENTIALS, Push

pytestmark = pytest.mark.anyio
TASKS_VERSION = "2025-11-25"
NOBODY = "0123456789abcdef"
TOKENS = {"alice": "tok-alice", "bob": "tok-bob"}


@pytest.fixture(scope="module")
def tenants_url(docker_client: docker.DockerClient, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    settings = make_module_settings(
        instance_id=instance_id("mcp-tenants"), api_tokens=["alice:tok-alice", "tok-bob"]
    )
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp"
    label = f"{INSTANCE}={settings.instance_id}"
    for container in docker_client.containers.list(all=True, filters={"label": label}):
        container.remove(force=True, v=True)
    for volume in docker_client.volumes.list(filters={"label": label}):
        volume.remove(force=True)


def connect(url: str, who: str) -> Client:
    """The SDK client, speaking 2025-11-25 (the tasks version) with `who`'s bearer token."""
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKENS[who]}"}, timeout=60)
    return Client(streamable_http_client(url, http_client=http), mode="legacy")


@pytest.fixture
async def alice(tenants_url: str) -> AsyncIterator[Client]:
    async with connect(tenants_url, "alice") as client:
        yield client


@pytest.fixture
async def bob(tenants_url: str) -> AsyncIterator[Client]:
    async with connect(tenants_url, "bob") as client:
        yield client


def start_task(url: str, who: str, *command: str) -> str:
    """A task-augmented run_container call (the SDK client cannot make one: it validates the
    answer as a tool result), with `who`'s token."""
    params = {"name": "run_container", "arguments": run_body(*command), "task": {"ttl": 60000}}
    headers = {"Authorization": f"Bearer {TOKENS[who]}"}
    reply = message(
        rpc(
            url,
            "tools/call",
            params,
            accept="application/json",
            version=TASKS_VERSION,
            headers=headers,
        )
    )
    return str(reply["result"]["task"]["taskId"])


async def task_error(client: Client, request: object, result: type) -> str:
    with pytest.raises(MCPError) as caught:
        await client.session.send_request(request, result)  # type: ignore[arg-type]
    return str(caught.value).replace(NOBODY, "<id>")


async def test_tasks_belong_to_the_tenant_that_started_them(tenants_url, alice, bob):
    task_id = start_task(tenants_url, "alice", "sh", "-c", "echo alice-secret")
    payload = types.GetTaskPayloadRequest(params=types.GetTaskPayloadRequestParams(task_id=task_id))
    result = await alice.session.send_request(payload, types.CallToolResult)
    assert result.structured_content["stdout"] == "alice-secret\n"

    listed = await bob.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
    assert task_id not in [task.task_id for task in listed.tasks]
    for make, params, answer in [
        (types.GetTaskRequest, types.GetTaskRequestParams, types.GetTaskResult),
        (types.GetTaskPayloadRequest, types.GetTaskPayloadRequestParams, types.CallToolResult),
        (types.CancelTaskRequest, types.CancelTaskRequestParams, types.CancelTaskResult),
    ]:
        theirs = await task_error(bob, make(params=params(task_id=task_id)), answer)
        nobody = await task_error(bob, make(params=params(task_id=NOBODY)), answer)
        assert theirs.replace(task_id, "<id>") == nobody

    mine = await alice.session.send_request(types.ListTasksRequest(), types.ListTasksResult)
    assert task_id in [task.task_id for task in mine.tasks]
    got = types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=task_id))
    assert (await alice.session.send_request(got, types.GetTaskResult)).status == "completed"


async def test_run_tools_answer_only_for_the_tenant_s_own_runs(alice, bob):
    started = await alice.call_tool(
        "run_container", {**run_body("sh", "-c", "echo up; exec sleep 120"), "wait_seconds": 0}
    )
    run_id = started.structured_content["run_id"]
    try:
        for tool, arguments in [
            ("wait_run", {"run_id": run_id, "wait_seconds": 0}),
            ("read_file", {"uri": f"run://{run_id}/files/out/a.txt"}),
            ("cancel_run", {"run_id": run_id}),
        ]:
            theirs = await bob.call_tool(tool, arguments)
            nobody_arguments = json.loads(json.dumps(arguments).replace(run_id, NOBODY))
            nobody = await bob.call_tool(tool, nobody_arguments)
            assert theirs.is_error and nobody.is_error
            assert theirs.content[0].text.replace(run_id, "<id>") == nobody.content[0].text.replace(
                NOBODY, "<id>"
            )
        looked = await alice.call_tool("wait_run", {"run_id": run_id, "wait_seconds": 0})
        state = looked.structured_content["state"]
        assert state in ("queued", "pulling", "running")
        for tool, what in (("engine_info", {"what": "containers"}), ("list_containers", {})):
            listed = await bob.call_tool(tool, {**what, "all": True})
            found = listed.structured_content["containers"]
            assert run_id not in [item["run_id"] for item in found], tool
            everything = await bob.call_tool(tool, {**what, "managed_only": False})
            assert everything.is_error, tool
    finally:
        cancelled = await alice.call_tool("cancel_run", {"run_id": run_id})
        assert cancelled.structured_content["state"] == "cancelled"


async def test_a_volume_made_by_one_tenant_is_refused_to_the_other(alice, bob, docker_client):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    try:
        made = await alice.call_tool("create_volume", {"name": name})
        assert made.is_error is False, made.content
        mount = run_body("true", volumes={"/v": {"type": "volume", "name": name}})
        refused = await bob.call_tool("run_container", mount)
        assert refused.is_error
        assert "RUNNER_ALLOWED_VOLUMES" in refused.content[0].text
        ran = await alice.call_tool("run_container", mount)
        assert ran.is_error is False, ran.content
    finally:
        for volume in docker_client.volumes.list(filters={"name": name}):
            volume.remove(force=True)


async def test_volumes_are_listed_and_removed_by_their_tenant_only(alice, bob, docker_client):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    try:
        assert (await alice.call_tool("create_volume", {"name": name})).is_error is False
        mine = await alice.call_tool("list_volumes", {})
        assert name in [volume["name"] for volume in mine.structured_content["volumes"]]
        theirs = await bob.call_tool("list_volumes", {})
        assert name not in [volume["name"] for volume in theirs.structured_content["volumes"]]
        refused = await bob.call_tool("remove_volume", {"name": name})
        assert refused.is_error is True and refused.content[0].text.startswith("name:")
        assert docker_client.volumes.get(name).name == name
        removed = await alice.call_tool("remove_volume", {"name": name})
        assert removed.is_error is False
        assert removed.structured_content == {"status": "removed", "name": name}
        assert docker_client.volumes.list(filters={"name": name}) == []
    finally:
        for volume in docker_client.volumes.list(filters={"name": name}):
            volume.remove(force=True)


async def test_a_host_bind_volume_is_refused(alice, docker_client):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    attack = {"name": name, "driver_opts": {"type": "none", "o": "bind", "device": "/"}}
    refused = await alice.call_tool("create_volume", attack)
    assert refused.is_error
    assert "driver_opts" in refused.content[0].text
    assert docker_client.volumes.list(filters={"name": name}) == []


async def test_a_private_image_alice_pulled_is_neither_run_nor_listed_for_bob(
    alice: Client, bob: Client, unique_image: Push
) -> None:
    image = unique_image(private=True)
    pulled = await alice.call_tool("pull_image", {"image": image, "auth_config": CREDENTIALS})
    assert pulled.is_error is False, pulled.content
    image_id = pulled.structured_content["id"]
    run = {"image": image, "command": ["echo", "ran"], "pull_policy": "never"}
    assert (await alice.call_tool("run_container", run)).structured_content["stdout"] == "ran\n"
    refused = await bob.call_tool("run_container", run)
    assert refused.is_error is True and refused.content[0].text.startswith("image:")

    async def listed(client: Client) -> list[str]:
        looked = await client.call_tool("engine_info", {"what": "images"})
        images = looked.structured_content["images"]
        return [item["id"] for item in images]

    assert image_id in await listed(alice)
    assert image_id not in await listed(bob)
