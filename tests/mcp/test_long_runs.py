"""A long run through the official Python SDK client with its default options and the server's
default answer bound: a 70 s run answers "still running" well before a 60 s client timeout, and
wait_run brings the rest."""

from __future__ import annotations

import time

import pytest
from mcp import Client

from runner.settings import Settings
from tests.helpers import run_body
from tests.mcp.test_runs import read_until_finished

pytestmark = pytest.mark.anyio
DEFAULT_BOUND = Settings.model_fields["mcp_answer_seconds"].default


@pytest.mark.timeout(240)
async def test_a_70_second_run_answers_still_running_then_wait_run_finishes_it(
    mcp_url: str,
) -> None:
    body = {**run_body("sh", "-c", "echo begin; sleep 70; echo end"), "timeout_seconds": 120}
    async with Client(mcp_url) as client:
        began = time.monotonic()
        first = await client.call_tool("run_container", body)
        answered = time.monotonic() - began
        view = first.structured_content
        everything, _, calls = await read_until_finished(client, view["run_id"])
        final = await client.call_tool("wait_run", {"run_id": view["run_id"], "wait_seconds": 0})
    assert first.is_error is False and view["finished"] is False
    assert "still running" in first.content[0].text and "wait_run" in first.content[0].text
    assert DEFAULT_BOUND - 10 < answered <= DEFAULT_BOUND + 5  # it followed, then answered
    assert view["stdout"] == "begin\n" and everything == "begin\nend\n"
    assert calls == 1  # the remaining ~27 s fit in one wait_run
    assert final.structured_content["exit_code"] == 0
