"""Every example a model or a reader is shown validates against the published schemas: each
tool's `Example:` call, and every call in docs/mcp.md (its tools table and its `json` blocks
that name a tool), so a strict client never blocks what the words teach."""

from __future__ import annotations

import json
import re

import jsonschema
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.anyio
MCP_PAGE = ROOT / "docs" / "mcp.md"
README_LOOP = re.compile(r"```jsonl\n(.*?)```", re.DOTALL)
TABLE_ROW = re.compile(r"^\| `(\w+)` \|.*\| `(\{.*\})` \|$", re.MULTILINE)
CALL_BLOCK = re.compile(r"```json\n(\{.*?\})\n```", re.DOTALL)


def page_calls() -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """(tool, arguments) of the page: its table rows, and its json blocks shaped
    {"name": ..., "arguments": ...}."""
    text = MCP_PAGE.read_text()
    calls = [(tool, json.loads(arguments)) for tool, arguments in TABLE_ROW.findall(text)]
    for block in CALL_BLOCK.findall(text):
        body = json.loads(block)
        if set(body) == {"name", "arguments"}:
            calls.append((body["name"], body["arguments"]))
    return calls


def readme_calls() -> list[tuple[str, dict]]:  # type: ignore[type-arg]
    """(tool, arguments) of the README's agent loop: one call a line."""
    (block,) = README_LOOP.findall((ROOT / "README.md").read_text())
    return [(call["name"], call["arguments"]) for call in map(json.loads, block.splitlines())]


async def test_every_tool_example_validates_against_its_input_schema(fake_client):
    tools = (await fake_client.list_tools()).tools
    for tool in tools:
        example = tool.description.rsplit("Example: ", 1)[1].strip()
        jsonschema.validate(json.loads(example), tool.input_schema)


async def test_every_call_in_the_mcp_page_validates_against_the_published_schemas(fake_client):
    schemas = {tool.name: tool.input_schema for tool in (await fake_client.list_tools()).tools}
    calls = page_calls()
    assert {"run_container", "wait_run", "read_file"} <= {tool for tool, _ in calls}
    for tool, arguments in calls:
        jsonschema.validate(arguments, schemas[tool])


async def test_the_readme_s_agent_loop_validates_against_the_published_schemas(fake_client):
    """Workspace, install once, a plot back, an edit, a long run followed by wait_run."""
    schemas = {tool.name: tool.input_schema for tool in (await fake_client.list_tools()).tools}
    calls = readme_calls()
    assert [tool for tool, _ in calls] == [
        "create_volume",
        "run_container",
        "run_container",
        "write_volume_file",
        "run_container",
        "wait_run",
    ]
    for tool, arguments in calls:
        jsonschema.validate(arguments, schemas[tool])


async def test_the_forms_the_descriptions_teach_pass_the_schema_and_the_model(fake_client):
    """`command` as a string, `env_vars` ints and bools, `files` as {content, mode}."""
    schema = {tool.name: tool for tool in (await fake_client.list_tools()).tools}
    arguments = {
        "image": "busybox",
        "command": "echo hi",
        "env_vars": {"N": 3, "DEBUG": True, "NAME": "x"},
        "files": {"/a.sh": {"content": "echo", "mode": "0755"}, "/b.txt": "text"},
        "outputs": ["/out"],
        "wait_seconds": 0,
    }
    jsonschema.validate(arguments, schema["run_container"].input_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**arguments, "files": {"/a": 3}}, schema["run_container"].input_schema)
