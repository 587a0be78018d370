"""Long and chatty runs through the official Python SDK client with its default options and the
server's default answer bound: a 70 s run answers "still running" well before a 60 s client
timeout and wait_run brings the rest; a run flooding both streams yields notifications bounded
in rate and size, and the answer still has the output."""

from __future__ import annotations

import time

import anyio
import pytest
from mcp import Client

from runner.mcp.progress import (
    LOG_CALL_BYTES,
    LOG_CHUNK_BYTES,
    MIN_INTERVAL_SECONDS,
    PROGRESS_MESSAGE_BYTES,
    PROGRESS_TAIL_BYTES,
)
from runner.settings import Settings
from tests.helpers import run_body
from tests.mcp.test_runs import read_until_finished

pytestmark = pytest.mark.anyio
DEFAULT_BOUND = Settings.model_fields["mcp_answer_seconds"].default
MARKER_ROOM = 200
"""What a log message adds to its chunk: the count of bytes left out, the 64 KiB note."""


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


async def test_a_flooding_run_gets_notifications_bounded_in_rate_and_size(mcp_url: str) -> None:
    """About 2 MB on each stream over 10 s: progress and log messages at most one a second
    each, progress messages at most 1200 bytes with the newest output, log messages at most a
    chunk each and 64 KiB in all, then a note; the answer comes within the bound."""
    script = (
        # each round ends with "line N" on stdout, so the newest output between rounds holds it
        "i=0; while [ $i -lt 100 ]; do yes fedcba9876543210 | head -c 20000 >&2; "
        "yes 0123456789abcdef | head -c 20000; echo line $i; i=$((i+1)); sleep 0.1; done"
    )
    progress: list[str] = []
    logs: dict[str, list[str]] = {"stdout": [], "stderr": []}

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async def on_log(params) -> None:  # type: ignore[no-untyped-def]
        logs[params.logger].append(params.data)

    # log_level: the client asks for the output as log messages, which the 64 KiB cap stops
    async with Client(mcp_url, logging_callback=on_log, log_level="info") as client:
        began = time.monotonic()
        with anyio.fail_after(DEFAULT_BOUND + 10):  # the answer bound holds, logs or not
            result = await client.call_tool(
                "run_container", run_body("sh", "-c", script), progress_callback=on_progress
            )
        seconds = time.monotonic() - began
    view = result.structured_content
    at_most = seconds / MIN_INTERVAL_SECONDS + 2
    assert view["finished"] is True and view["exit_code"] == 0, (seconds, view["finished"])
    assert view["stdout_truncated"] is True  # past the capture limit, said so
    assert 3 <= len(progress) <= at_most, (len(progress), seconds)
    assert max(len(note.encode()) for note in progress) <= PROGRESS_MESSAGE_BYTES
    tails = [note.split("--- latest output ---\n", 1)[1] for note in progress if "---" in note]
    assert tails and max(len(tail.encode()) for tail in tails) <= PROGRESS_TAIL_BYTES
    assert any("line " in tail for tail in tails)  # the newest output, from a line start
    every = logs["stdout"] + logs["stderr"]
    assert all(1 <= len(logs[name]) <= at_most for name in logs), logs.keys()
    assert max(len(text.encode()) for text in every) <= LOG_CHUNK_BYTES + MARKER_ROOM
    assert sum(len(text.encode()) for text in every) <= LOG_CALL_BYTES + LOG_CHUNK_BYTES
    assert any("bytes not shown" in text for text in every)  # coalesced, newest lines kept
    assert any("live output limited to 64 KiB" in text for text in every)
