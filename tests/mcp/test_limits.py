"""Limits and runtimes through MCP: the same refusals as REST, as tool errors naming the field
and the fix."""

from __future__ import annotations

import pytest

from tests.helpers import run_body

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"memory": "0"}, "memory"),
        ({"cpus": 1e-10}, "0.01"),
        ({"timeout_seconds": 1e-9}, "0.1"),
    ],
)
async def test_a_limit_below_its_floor_is_a_tool_error(fake_client, fields, words):  # type: ignore[no-untyped-def]
    result = await fake_client.call_tool("run_container", run_body("true", **fields))
    assert result.is_error is True
    text = result.content[0].text
    assert words in text and next(iter(fields)) in text, text


async def test_a_runtime_the_operator_did_not_allow_is_a_tool_error(fake_client):  # type: ignore[no-untyped-def]
    result = await fake_client.call_tool("run_container", run_body("true", runtime="runsc"))
    assert result.is_error is True
    assert "RUNNER_ALLOWED_RUNTIMES" in result.content[0].text


async def test_a_malformed_size_is_said_in_words_not_as_a_regex(fake_client):  # type: ignore[no-untyped-def]
    result = await fake_client.call_tool("run_container", run_body("true", memory="1x"))
    assert result.is_error is True
    text = result.content[0].text
    assert "memory" in text and "write a number and a unit, e.g. 256m or 1g" in text, text
    assert "^" not in text and "\\d" not in text
