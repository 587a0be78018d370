"""Every tool through the SDK's own client, over real HTTP, against the real Docker engine."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError
from mcp_types import LATEST_PROTOCOL_VERSION

from mcp_app import create_app
from runner.engine_models import CreateVolumeRequest
from runner.mcp.arguments import McpRunRequest
from runner.models import RunRequest, VolumeSpec
from tests.fakes import FakeBackend
from tests.helpers import TEST_IMAGE, b64, run_body, serving

pytestmark = pytest.mark.anyio

OLD_NAMES = {"runner_health", "docker_health", "list_containers", "list_images", "list_volumes"}
"""Unlisted, still answering: engine_info and read_volume took their place in the list."""
TOOLS = {
    "run_container",
    "create_volume",
    "remove_volume",
    "read_volume",
    "write_volume_file",
    "engine_info",
    "pull_image",
    "wait_run",
    "read_file",
    "cancel_run",
}


async def tools_by_name(client: Client) -> dict:
    return {tool.name: tool for tool in (await client.list_tools()).tools}


async def test_the_latest_protocol_is_negotiated(fake_client):
    assert fake_client.protocol_version == LATEST_PROTOCOL_VERSION


async def test_every_tool_is_listed_with_a_description_an_example_and_a_title(fake_client):
    tools = await tools_by_name(fake_client)
    assert set(tools) == TOOLS
    for tool in tools.values():
        assert tool.description and "Example" in tool.description, tool.name
        assert tool.title and tool.annotations is not None, tool.name


async def test_annotations_say_which_tools_only_read_and_which_destroy(fake_client):
    """Hints are set where they differ from the spec's defaults (not read-only, destructive,
    not idempotent, open world)."""
    tools = await tools_by_name(fake_client)
    for name in (
        "wait_run",
        "read_file",
        "engine_info",
        "read_volume",
    ):
        hints = tools[name].annotations
        assert hints.read_only_hint is True and hints.open_world_hint is False, name
    for name in ("cancel_run", "remove_volume", "write_volume_file"):
        hints = tools[name].annotations
        assert hints.destructive_hint is None and hints.idempotent_hint is True, name
        assert hints.open_world_hint is False, name
    assert tools["pull_image"].annotations.destructive_hint is False
    assert tools["pull_image"].annotations.idempotent_hint is True
    assert tools["run_container"].annotations.read_only_hint is None
    assert tools["run_container"].annotations.destructive_hint is False
    assert tools["run_container"].annotations.open_world_hint is None


async def test_input_schemas_carry_every_field_of_the_models_inlined(fake_client):
    tools = await tools_by_name(fake_client)
    run_schema = tools["run_container"].input_schema
    assert set(run_schema["properties"]) == set(McpRunRequest.model_fields)
    assert set(RunRequest.model_fields) < set(McpRunRequest.model_fields)
    assert run_schema["required"] == ["image"]
    volume = run_schema["properties"]["volumes"]["additionalProperties"]
    assert set(volume["properties"]) == set(VolumeSpec.model_fields)
    for name, field in run_schema["properties"].items():
        assert field.get("description"), name
    volume_schema = tools["create_volume"].input_schema
    assert set(volume_schema["properties"]) == set(CreateVolumeRequest.model_fields)


async def test_the_pull_policy_defaults_to_missing_over_mcp(fake_client):
    run_schema = (await tools_by_name(fake_client))["run_container"].input_schema
    assert run_schema["properties"]["pull_policy"]["default"] == "missing"
    assert RunRequest.model_fields["pull_policy"].default == "always"


async def test_run_with_input_and_response_volumes(client):
    script = b"#!/bin/sh\necho from-script > /out/result.txt\n"
    body = run_body(
        "/in/job.sh",
        volumes={
            "/in/job.sh:ro": {"type": "file", "content": b64(script), "mode": "0755"},
            "/out": {"type": "directory", "response": True},
        },
    )
    result = await client.call_tool("run_container", body)
    assert result.is_error is False
    structured = result.structured_content
    assert structured["status"] == "success"
    assert [item["path"] for item in structured["files"]] == ["/out/result.txt"]
    assert result.content[1].text == "--- /out/result.txt ---\nfrom-script\n"
    assert "- /out/result.txt (text/plain, 12 bytes): shown below" in result.content[0].text


async def test_a_returned_file_the_run_made_a_symlink_is_named_in_the_text(client):
    volumes = {"/out/f": {"type": "file", "content": b64(b"x"), "response": True}}
    body = run_body("sh", "-c", "ln -sf /etc/shadow /out/f; echo done", volumes=volumes)
    result = await client.call_tool("run_container", body)
    assert result.is_error is False
    assert result.structured_content["stdout"] == "done\n"
    assert "nothing returned from file /out/f: " in result.content[0].text
    assert "a symlink at /out/f" in result.content[0].text


async def test_a_failing_command_is_a_result_that_leads_with_its_exit_code(client):
    result = await client.call_tool("run_container", run_body("sh", "-c", "echo oops >&2; exit 4"))
    assert result.is_error is False
    assert result.structured_content["exit_code"] == 4
    text = result.content[0].text
    assert text.startswith("exit code 4")
    assert "oops" in text


@pytest.mark.parametrize(
    ("arguments", "words"),
    [
        ({"command": ["true"]}, "image"),
        (run_body("true", volumes={"/x:zz": {"type": "directory"}}), ":ro or :rw"),
        (run_body("true", timeout_seconds=-1), "timeout_seconds"),
        (run_body("true", memory="lots"), "memory"),
        (run_body("true", volumes={"/f": {"type": "file", "content": "@@"}}), "base64"),
        (run_body("true", bogus=1), "bogus"),
        (run_body("true", timeout_seconds=True), "timeout_seconds: must be a number, not true"),
    ],
)
async def test_bad_input_is_a_tool_error_naming_the_field(fake_client, arguments, words):
    result = await fake_client.call_tool("run_container", arguments)
    assert result.is_error is True
    assert words in result.content[0].text


REQUIRED = {
    "run_container": {"image": "x"},
    "wait_run": {"run_id": "0123456789abcdef"},
    "create_volume": {"name": "ab"},
}
"""What each tool with a number argument needs besides it."""


def number_arguments(schema: dict) -> list[str]:  # type: ignore[type-arg]
    def kinds(property: dict) -> set[str]:  # type: ignore[type-arg]
        kind = property.get("type")
        return set(kind) if isinstance(kind, list) else {kind}

    return [
        name
        for name, property in schema["properties"].items()
        if kinds(property) & {"number", "integer"}
    ]


async def test_no_number_argument_takes_true_for_one(fake_client):
    """JSON's `true` is no number (pydantic would take it for 1): every number argument of every
    tool refuses it, naming the argument."""
    checked = []
    for tool in (await fake_client.list_tools()).tools:
        for name in number_arguments(tool.input_schema):
            arguments = {**REQUIRED[tool.name], name: True}
            result = await fake_client.call_tool(tool.name, arguments)
            assert result.is_error is True, (tool.name, name)
            assert result.content[0].text.startswith(f"{name}: must be a number"), result
            checked.append(f"{tool.name}.{name}")
    assert {"run_container.timeout_seconds", "wait_run.stdout_offset"} <= set(checked)
    assert {"run_container.wait_seconds", "wait_run.wait_seconds"} <= set(checked)


async def test_an_unknown_tool_is_a_json_rpc_error_for_the_sdk_client(fake_client):
    with pytest.raises(MCPError) as caught:
        await fake_client.call_tool("no_such_tool", {})
    assert caught.value.error.code == -32602
    assert "no_such_tool" in caught.value.error.message


async def test_a_run_that_cannot_happen_is_a_tool_error_saying_what_to_do(client):
    arguments = {"image": "oneoff-test/absent:1", "pull_policy": "never"}
    result = await client.call_tool("run_container", arguments)
    assert result.is_error is True
    assert "pull_policy" in result.content[0].text


async def test_passwords_never_come_back_in_tool_errors(fake_client):
    arguments = run_body("true", auth_config={"username": "u", "password": "pw-9876", "x": 1})
    result = await fake_client.call_tool("run_container", arguments)
    assert result.is_error is True
    assert "pw-9876" not in result.content[0].text


async def test_a_long_run_reports_progress_and_streams_its_output(mcp_url):
    done = False
    progress: list[str | None] = []
    lines: list[tuple[str, str, bool]] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message)

    async def on_log(params) -> None:  # type: ignore[no-untyped-def]
        lines.append((params.logger, params.data, done))

    body = run_body("sh", "-c", "echo first; sleep 2; echo second >&2")
    async with Client(mcp_url, logging_callback=on_log, log_level="info") as client:
        result = await client.call_tool("run_container", body, progress_callback=on_progress)
        done = True
    assert result.structured_content["stdout"] == "first\n"
    assert any(note.startswith("running (") for note in progress if note)
    assert any("--- latest output ---\nfirst\n" in note for note in progress if note)
    assert ("stdout", "first\n", False) in lines
    assert ("stderr", "second\n", False) in lines


async def test_create_volume_then_use_it(client, docker_client):
    name = "oneoff-test-mcp-volume"
    archive = b64(__import__("tests.helpers").helpers.tar_gz({"top/a.txt": b"A"}))
    try:
        created = await client.call_tool("create_volume", {"name": name, "content": archive})
        assert created.is_error is False
        assert created.structured_content["status"] == "success"
        again = await client.call_tool("create_volume", {"name": name})
        assert again.is_error is True and "reuse_existing" in again.content[0].text
        body = run_body("cat", "/v/a.txt", volumes={"/v": {"type": "volume", "name": name}})
        ran = await client.call_tool("run_container", body)
        assert ran.structured_content["stdout"] == "A"
    finally:
        docker_client.volumes.get(name).remove(force=True)


async def test_a_volume_in_use_is_not_removed_and_the_error_says_why(client, docker_client):
    name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
    await client.call_tool("create_volume", {"name": name})
    holder = docker_client.containers.create(TEST_IMAGE, ["true"], volumes=[f"{name}:/v"])
    try:
        refused = await client.call_tool("remove_volume", {"name": name})
        assert refused.is_error is True
        assert "in use" in refused.content[0].text
    finally:
        holder.remove(force=True)
    assert (await client.call_tool("remove_volume", {"name": name})).is_error is False


async def test_engine_info_reports_the_engine_s_health_by_default(client, docker_client):
    result = await client.call_tool("engine_info", {})
    assert result.is_error is False
    assert result.structured_content["version"] == docker_client.version()["Version"]


async def test_the_old_engine_tools_answer_unlisted_as_engine_info_does(fake_client):
    """oneoff-docker-runner's callers name runner_health, docker_health, list_containers and
    list_images: they still answer, with their old arguments, without costing the list."""
    assert OLD_NAMES.isdisjoint(await tools_by_name(fake_client))
    health = await fake_client.call_tool("engine_info", {"what": "health"})
    for name in ("runner_health", "docker_health"):
        old = await fake_client.call_tool(name, {})
        assert old.is_error is False and old.structured_content == health.structured_content
    for name, what, arguments in (
        ("list_containers", "containers", {"all": True, "status": "running"}),
        ("list_images", "images", {"reference": "python"}),
    ):
        old = await fake_client.call_tool(name, arguments)
        new = await fake_client.call_tool("engine_info", {"what": what, **arguments})
        assert old.is_error is False and old.structured_content == new.structured_content


async def test_engine_info_refuses_a_filter_of_another_listing_by_name(fake_client):
    refused = await fake_client.call_tool("engine_info", {"what": "images", "all": True})
    assert refused.is_error is True
    assert refused.content[0].text == "all: does not apply to what: 'images'"
    refused = await fake_client.call_tool("engine_info", {"reference": "python"})
    assert refused.content[0].text == "reference: does not apply to what: 'health'"


async def test_engine_info_finds_the_test_image(client):
    arguments = {"what": "images", "reference": TEST_IMAGE.split(":")[0]}
    result = await client.call_tool("engine_info", arguments)
    tags = [tag for image in result.structured_content["images"] for tag in image["tags"]]
    assert TEST_IMAGE in tags


async def test_engine_info_lists_containers_structured(client, docker_client):
    container = docker_client.containers.create(TEST_IMAGE, ["true"], labels={"test": "mcp"})
    try:
        arguments = {"what": "containers", "all": True, "managed_only": False}
        result = await client.call_tool("engine_info", arguments)
        ids = [item["id"] for item in result.structured_content["containers"]]
        assert container.id[:12] in ids
        managed = await client.call_tool("engine_info", {"what": "containers", "all": True})
        assert container.id[:12] not in [c["id"] for c in managed.structured_content["containers"]]
    finally:
        container.remove(force=True)


async def test_tools_list_fits_the_budget_with_plain_input_schemas(fake_url):
    """Function-calling APIs reject $ref/$defs/anyOf, and models read all of tools/list."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    headers = {"Accept": "application/json", "MCP-Protocol-Version": "2025-06-18"}
    async with httpx.AsyncClient() as http:
        response = await http.post(fake_url, json=body, headers=headers)
    tools = response.json()["result"]["tools"]
    assert len(json.dumps(tools, separators=(",", ":"))) <= 10_240
    for tool in tools:
        schema = json.dumps(tool["inputSchema"])
        for keyword in ('"$ref"', '"$defs"', '"anyOf"', '"oneOf"'):
            assert keyword not in schema, (tool["name"], keyword)
        assert tool["inputSchema"]["additionalProperties"] is False, tool["name"]


async def test_the_description_states_the_defaults_that_surprise(fake_client):
    description = " ".join((await tools_by_name(fake_client))["run_container"].description.split())
    for words in ("no network", "timeout_seconds", "512m memory", "Answers within 45s"):
        assert words in description


async def test_a_script_runs_through_the_shell(client):
    result = await client.call_tool(
        "run_container", {"image": TEST_IMAGE, "script": "X=shell; echo $X && echo ok | tr a-z A-Z"}
    )
    assert result.structured_content["stdout"] == "shell\nOK\n"


async def test_text_files_go_in_and_small_text_files_come_back_as_text(client):
    arguments = {
        "image": TEST_IMAGE,
        "files": {
            "/in/a.txt": "alpha\n",
            "/in/run.sh": {"content": "#!/bin/sh\necho ran", "mode": "0755"},
        },
        "script": "/in/run.sh; cp /in/a.txt /out/b.txt",
        "volumes": {"/out": {"type": "directory", "response": True}},
    }
    result = await client.call_tool("run_container", arguments)
    assert result.structured_content["stdout"] == "ran\n"
    assert result.content[1].text == "--- /out/b.txt ---\nalpha\n"


async def test_stdin_reaches_the_command_then_end_of_file(client):
    arguments = {"image": TEST_IMAGE, "script": "cat; echo eof", "stdin": "from the model\n"}
    result = await client.call_tool("run_container", arguments)
    assert result.structured_content["stdout"] == "from the model\neof\n"


async def test_stdin_over_the_limit_is_a_tool_error_naming_it(make_settings):
    app = create_app(make_settings(max_archive_bytes=1024), backend=FakeBackend())
    with serving(app) as port:
        async with Client(f"http://127.0.0.1:{port}/mcp") as client:
            arguments = {"image": TEST_IMAGE, "script": "cat", "stdin": "x" * 2000}
            result = await client.call_tool("run_container", arguments)
    assert result.is_error is True
    assert result.content[0].text.startswith("stdin:")


async def test_script_and_command_together_are_refused(fake_client):
    result = await fake_client.call_tool(
        "run_container", {"image": TEST_IMAGE, "script": "true", "command": ["true"]}
    )
    assert result.is_error is True
    assert result.content[0].text.startswith("script:")


async def test_long_output_keeps_its_head_and_its_tail(client):
    script = "seq 1 100000; echo the-error-at-the-end >&2"
    result = await client.call_tool("run_container", {"image": TEST_IMAGE, "script": script})
    text = result.content[0].text
    assert "\n1\n2\n" in text and "100000\n" in text and "characters cut" in text
    assert "the-error-at-the-end" in text
    assert len(text) < 20_000
