"""A volume as an agent's workspace over MCP, through the official Python SDK client on
Streamable HTTP: create it, install once into it, run, read a file, edit it, run again; another
tenant sees none of it."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import datetime

import docker
import pytest
from mcp import Client

from mcp_app import create_app
from tests.helpers import TEST_IMAGE, instance_id, remove_objects_of, serving
from tests.mcp.test_tenancy import connect

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def workspaces_url(docker_client: docker.DockerClient, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    settings = make_module_settings(
        instance_id=instance_id("mcp-workspaces"),
        api_tokens=["alice:tok-alice", "tok-bob"],
        max_volume_bytes="2m",
    )
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp"
    remove_objects_of(docker_client, settings.instance_id)


@pytest.fixture
async def alice(workspaces_url: str) -> AsyncIterator[Client]:
    async with connect(workspaces_url, "alice") as client:
        yield client


@pytest.fixture
async def bob(workspaces_url: str) -> AsyncIterator[Client]:
    async with connect(workspaces_url, "bob") as client:
        yield client


@pytest.fixture
async def workspace(alice: Client) -> AsyncIterator[str]:
    name = f"ws-{uuid.uuid4().hex[:8]}"
    assert (await alice.call_tool("create_volume", {"name": name})).is_error is False
    yield name
    await alice.call_tool("remove_volume", {"name": name})


def mounted(name: str, script: str, **fields: object) -> dict[str, object]:
    volumes = {"/work": {"type": "volume", "name": name}}
    return {
        "image": TEST_IMAGE,
        "pull_policy": "never",
        "script": script,
        "volumes": volumes,
        **fields,
    }


async def test_the_agent_loop_install_run_read_edit_rerun(alice: Client, workspace: str):
    install = mounted(
        workspace, "mkdir -p /work/lib && echo 'greet() { echo hello $1; }' > /work/lib/greet.sh"
    )
    assert (await alice.call_tool("run_container", install)).structured_content["exit_code"] == 0
    app = {"/work/app.sh": ". /work/lib/greet.sh; greet v1"}
    first = await alice.call_tool("run_container", mounted(workspace, "sh /work/app.sh", files=app))
    assert first.structured_content["stdout"] == "hello v1\n"
    read = await alice.call_tool("read_volume", {"name": workspace, "path": "app.sh"})
    assert read.content[0].text == ". /work/lib/greet.sh; greet v1"
    edit = {"name": workspace, "path": "app.sh", "content": ". /work/lib/greet.sh; greet v2"}
    assert (await alice.call_tool("write_volume_file", edit)).is_error is False
    again = await alice.call_tool("run_container", mounted(workspace, "sh /work/app.sh"))
    assert again.structured_content["stdout"] == "hello v2\n"
    listed = await alice.call_tool("read_volume", {"name": workspace})
    assert listed.content[0].text.split("\n")[1:] == ["app.sh  30", "lib/  0", "lib/greet.sh  27"]


async def test_read_volume_without_a_name_lists_the_caller_s_volumes(alice, bob, workspace):
    mine = await alice.call_tool("read_volume", {})
    theirs = await bob.call_tool("read_volume", {})
    assert workspace in [volume["name"] for volume in mine.structured_content["volumes"]]
    assert workspace not in [volume["name"] for volume in theirs.structured_content["volumes"]]


async def test_another_tenant_s_workspace_does_not_exist_for_it(alice, bob, workspace):
    await alice.call_tool("write_volume_file", {"name": workspace, "path": "a", "content": "x"})
    read = await bob.call_tool("read_volume", {"name": workspace, "path": "a"})
    wrote = await bob.call_tool(
        "write_volume_file", {"name": workspace, "path": "a", "content": "y"}
    )
    assert read.is_error and wrote.is_error
    assert read.content[0].text.startswith("name: no volume")
    assert (await alice.call_tool("read_volume", {"name": workspace, "path": "a"})).content[
        0
    ].text == "x"


async def test_a_path_out_of_the_volume_is_a_tool_error_naming_path(alice, workspace):
    for path in ("../etc/passwd", "/etc/passwd"):
        answer = await alice.call_tool("read_volume", {"name": workspace, "path": path})
        assert answer.is_error is True
        assert "path" in answer.content[0].text


async def test_create_volume_again_with_ttl_seconds_extends_its_life(alice, workspace):
    body = {"name": workspace, "reuse_existing": True, "ttl_seconds": 7200}
    assert (await alice.call_tool("create_volume", body)).is_error is False
    listed = await alice.call_tool("read_volume", {})
    (mine,) = [v for v in listed.structured_content["volumes"] if v["name"] == workspace]
    left = (
        datetime.fromisoformat(mine["expires_at"].replace("Z", "+00:00")).timestamp() - time.time()
    )
    assert 7200 - 120 < left <= 7200
    assert f"{workspace} (expires {mine['expires_at']})" in listed.content[0].text


async def test_a_run_growing_a_workspace_past_its_bound_is_stopped_saying_so(alice, workspace):
    script = "i=0; while [ $i -lt 200 ]; do head -c 262144 /dev/zero > /work/f$i; i=$((i+1)); done"
    answer = await alice.call_tool("run_container", mounted(workspace, script + "; sleep 30"))
    assert answer.structured_content["status"] == "scratch_exceeded", answer.structured_content
    assert "RUNNER_MAX_VOLUME_BYTES" in answer.content[0].text
    big = {"name": workspace, "path": "big", "content": "x" * 3_000_000}
    refused = await alice.call_tool("write_volume_file", big)
    assert refused.is_error and "RUNNER_MAX_VOLUME_BYTES" in refused.content[0].text
