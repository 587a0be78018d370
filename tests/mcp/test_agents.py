"""An agent's loop through the official Python SDK client, real server, real engine: a run
answers within the bound (`mcp_answer_seconds`) with its result or "still running" and the
next call; wait_run follows it; the files in `outputs` come back as a model sees them (text,
an image, links), read_file reads them, for the run's tenant only."""

from __future__ import annotations

import base64
import contextlib
import json
import struct
import time
import zlib
from collections.abc import AsyncIterator, Iterator

import anyio
import docker
import httpx2
import jsonschema
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from mcp_app import create_app
from runner.mcp.resources import SIZE, TRUNCATED
from runner.mcp.results import RUN_VIEW
from tests.helpers import TEST_IMAGE, instance_id, remove_objects_of, run_containers, serving

pytestmark = pytest.mark.anyio
ANSWER = 6


def png(width: int, height: int) -> bytes:
    """A valid grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture(scope="module")
def agents_url(docker_client: docker.DockerClient, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """A server with a short answer bound, and two tokens."""
    settings = make_module_settings(
        instance_id=instance_id("mcp-agents"),
        mcp_answer_seconds=ANSWER,
        api_tokens=["alice:tok-alice", "tok-bob"],
    )
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp"
    remove_objects_of(docker_client, settings.instance_id)


@contextlib.asynccontextmanager
async def connect(url: str, token: str) -> AsyncIterator[Client]:
    """The SDK client with the default protocol, as `token`'s tenant."""
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
        async with Client(streamable_http_client(url, http_client=http)) as client:
            yield client


PLOT = png(64, 48)
FILES_SCRIPT = (
    "printf 'accuracy 0.91\\n' > /out/summary.txt; "
    "base64 -d /in/plot.b64 > /out/plot.png; "
    "head -c 3000 /dev/urandom > /out/model.bin; echo made"
)
FILES_RUN = {
    "image": TEST_IMAGE,
    "pull_policy": "never",
    "files": {"/in/plot.b64": base64.b64encode(PLOT).decode()},
    "script": FILES_SCRIPT,
    "outputs": ["/out"],
}


async def test_returned_files_come_as_text_an_image_and_links(agents_url: str) -> None:
    async with connect(agents_url, "tok-alice") as alice, connect(agents_url, "tok-bob") as bob:
        result = await alice.call_tool("run_container", FILES_RUN)
        assert result.is_error is False, result.content
        kinds = [block.type for block in result.content]
        assert kinds == ["text", "text", "image", "resource_link", "resource_link", "resource_link"]
        text = result.content[0].text
        for path in ("/out/summary.txt", "/out/plot.png", "/out/model.bin"):
            assert path in text, text
        assert result.content[1].text == "--- /out/summary.txt ---\naccuracy 0.91\n"
        assert base64.b64decode(result.content[2].data) == PLOT
        view = result.structured_content
        assert view["finished"] is True and view["stdout"] == "made\n"
        assert "base64" not in json.dumps(view) and len(json.dumps(view)) < 4096
        uris = {item["path"]: item["uri"] for item in view["files"]}
        image = await alice.call_tool("read_file", {"uri": uris["/out/plot.png"]})
        assert base64.b64decode(image.content[1].data) == PLOT
        binary = await alice.call_tool("read_file", {"uri": uris["/out/model.bin"]})
        assert binary.is_error is False, binary.content[0].text
        assert len(base64.b64decode(binary.content[0].text.split("\n", 1)[1])) == 3000
        for attempt in (
            uris["/out/summary.txt"],
            uris["/out/summary.txt"].replace("summary.txt", "../../etc/passwd"),
            uris["/out/summary.txt"].replace("/files/out/summary.txt", "/files/in/plot.b64"),
        ):
            refused = await bob.call_tool("read_file", {"uri": attempt})
            assert refused.is_error is True and refused.structured_content is None
        other = await alice.call_tool("read_file", {"uri": uris["/out/summary.txt"][:-3] + "md"})
        assert other.is_error is True and "handed back no file" in other.content[0].text


async def test_a_run_past_the_bound_answers_still_running_then_wait_run_finishes_it(
    agents_url: str, docker_client: docker.DockerClient
) -> None:
    async with connect(agents_url, "tok-alice") as alice:
        arguments = {
            "image": TEST_IMAGE,
            "pull_policy": "never",
            "script": "echo first; sleep 9; echo second; echo late >&2",
            "timeout_seconds": 60,
        }
        started = time.monotonic()
        first = await alice.call_tool("run_container", arguments)
        assert time.monotonic() - started < ANSWER + 1
        view = first.structured_content
        assert first.is_error is False and view["finished"] is False and view["state"] == "running"
        assert "not an error" in first.content[0].text and "wait_run" in first.content[0].text
        assert view["stdout"] == "first\n" and view["stdout_offset"] == 6
        run_id = view["run_id"]
        assert run_containers(docker_client, run_id, all_states=False)
        calls = [view]
        while not calls[-1]["finished"]:
            nxt = {key: calls[-1][key] for key in ("run_id", "stdout_offset", "stderr_offset")}
            answer = await alice.call_tool("wait_run", nxt)
            assert answer.is_error is False
            calls.append(answer.structured_content)
        final = calls[-1]
        assert final["exit_code"] == 0 and final["stdout"] == "second\n"
        assert final["stderr"] == "late\n"
        looked = await alice.call_tool("wait_run", {"run_id": run_id, "wait_seconds": 0})
        assert looked.structured_content["stdout"] == "first\nsecond\n"


async def test_cancelling_the_call_cancels_the_run_but_a_wait_only_stops_waiting(
    agents_url: str,
) -> None:
    async with connect(agents_url, "tok-alice") as alice:
        arguments = {
            "image": TEST_IMAGE,
            "pull_policy": "never",
            "script": "sleep 30",
            "wait_seconds": 0,
        }
        started = await alice.call_tool("run_container", arguments)
        run_id = started.structured_content["run_id"]
        with pytest.raises(TimeoutError), anyio.fail_after(2):
            await alice.call_tool("wait_run", {"run_id": run_id})
        still = await alice.call_tool("wait_run", {"run_id": run_id, "wait_seconds": 0})
        assert still.structured_content["state"] == "running"
        cancelled = await alice.call_tool("cancel_run", {"run_id": run_id})
        assert cancelled.structured_content["state"] == "cancelled"


async def test_every_run_answer_matches_the_declared_output_schema(agents_url: str) -> None:
    async with connect(agents_url, "tok-alice") as alice:
        quick = {"image": TEST_IMAGE, "pull_policy": "never", "command": "echo hi"}
        done = await alice.call_tool("run_container", quick)
        slow = await alice.call_tool(
            "run_container", {**quick, "command": ["sleep", "20"], "wait_seconds": 0}
        )
        for answer in (done, slow):
            jsonschema.validate(answer.structured_content, RUN_VIEW)
        await alice.call_tool("cancel_run", {"run_id": slow.structured_content["run_id"]})


def roles_of_run(docker_client: docker.DockerClient, run_id: str) -> list[str]:
    """The roles of the engine's containers of the run, in any state."""
    found = run_containers(docker_client, run_id)
    return sorted(item["Labels"]["oneoff-runner.role"] for item in found)


@pytest.mark.parametrize("script", ["echo kept > /work/k", "sleep 8; echo kept > /work/k"])
async def test_an_ended_run_keeps_its_result_not_its_container(
    agents_url: str, docker_client: docker.DockerClient, script: str
) -> None:
    """Answered by run_container, or (past the bound) by wait_run: the run's container is gone
    by then, so the workspace it mounted is removed at once; its result and files stay."""
    async with connect(agents_url, "tok-alice") as alice:
        name = f"oneoff-test-{time.monotonic_ns()}"
        assert (await alice.call_tool("create_volume", {"name": name})).is_error is False
        arguments = {
            "image": TEST_IMAGE,
            "pull_policy": "never",
            "volumes": {"/work": {"type": "volume", "name": name}},
            "script": f"{script}; mkdir -p /out; echo report > /out/r.txt",
            "outputs": ["/out"],
        }
        answer = await alice.call_tool("run_container", arguments)
        view = answer.structured_content
        while not view["finished"]:
            answer = await alice.call_tool("wait_run", {"run_id": view["run_id"]})
            view = answer.structured_content
        assert view["exit_code"] == 0, answer.content
        assert roles_of_run(docker_client, view["run_id"]) == ["run-result"]
        removed = await alice.call_tool("remove_volume", {"name": name})
        assert removed.is_error is False, removed.content
        read = await alice.call_tool("read_file", {"uri": view["files"][0]["uri"]})
        assert read.is_error is False and "report" in read.content[0].text
        looked = await alice.call_tool("wait_run", {"run_id": view["run_id"], "wait_seconds": 0})
        assert looked.structured_content["exit_code"] == 0


async def test_linked_files_are_read_as_resources_by_their_tenant_only(agents_url: str) -> None:
    """What a client does with a resource_link: resources/read of its uri. Text comes as text,
    other files as base64 blobs; another tenant, a path the run did not hand back and a uri
    that is not a run's are JSON-RPC -32602 naming the uri (SEP-2164)."""
    async with connect(agents_url, "tok-alice") as alice, connect(agents_url, "tok-bob") as bob:
        result = await alice.call_tool("run_container", FILES_RUN)
        links = {block.uri: block for block in result.content if block.type == "resource_link"}
        templates = await alice.list_resource_templates()
        listed = await alice.list_resources()
        read = {uri: (await alice.read_resource(uri)).contents[0] for uri in links}
        refused = []
        summary = next(uri for uri in links if uri.endswith("summary.txt"))
        for client, uri in (
            (bob, summary),
            (alice, summary[:-3] + "md"),
            (alice, "file:///etc/passwd"),
        ):
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri)
            refused.append(caught.value)
    assert [template.uri_template for template in templates.resource_templates] == [
        "run://{run_id}/files/{path}"
    ]
    assert listed.resources == []
    by_name = {uri.rsplit("/", 1)[1]: contents for uri, contents in read.items()}
    assert by_name["summary.txt"].text == "accuracy 0.91\n"
    assert by_name["summary.txt"].mime_type == "text/plain"
    assert base64.b64decode(by_name["plot.png"].blob) == PLOT
    assert by_name["plot.png"].mime_type == "image/png"
    assert len(base64.b64decode(by_name["model.bin"].blob)) == 3000
    sizes = {"summary.txt": 14, "plot.png": len(PLOT), "model.bin": 3000}
    assert {name: by_name[name].meta for name in sizes} == {
        name: {SIZE: size, TRUNCATED: False} for name, size in sizes.items()
    }
    assert [error.code for error in refused] == [-32602] * 3
    assert [error.message.split(": ")[0] for error in refused] == [
        summary,
        summary[:-3] + "md",
        "file:///etc/passwd",
    ]
    assert "handed back no file" in refused[1].message
