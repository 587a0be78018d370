"""Load: 200 mixed runs at concurrency 16 through REST and MCP. Every request gets a correct
answer or a clean 429, memory comes back near where it was, and nothing is left behind but the
results of MCP's runs (async, kept for the result TTL)."""

from __future__ import annotations

import asyncio
import resource
from collections import Counter

import httpx
import pytest
from mcp import Client

from backends.labels import ASYNC_ROLE, DELIVERED_ROLE, RECORD_ROLE, RESULT_ROLE
from tests.helpers import (
    HELD_ROLES,
    b64,
    free_port,
    instance_id,
    objects_of,
    remove_objects_of,
    run_body,
    start_runner,
)

pytestmark = pytest.mark.anyio
KEPT_ROLES = {RECORD_ROLE, RESULT_ROLE, DELIVERED_ROLE, ASYNC_ROLE}
"""What an async run (run_container's runs are async) may leave when its runner stops: its kept
end (and the mark that an answer delivered it) for the result TTL, or, while that end is being
kept, its container, which another runner adopts or reaps by design."""

MIX = [
    (run_body("echo", "ok"), lambda r: r["status"] == "success" and r["stdout"] == "ok\n"),
    (run_body("sh", "-c", "exit 3"), lambda r: r["status"] == "error: 3"),
    (run_body("sleep", "30", timeout_seconds=1), lambda r: r["status"] == "timeout"),
    (
        run_body("sh", "-c", "head -c 3000000 /dev/zero | tr '\\0' a"),
        lambda r: r["stdout_truncated"] is True,
    ),
    (
        run_body("cat", "/in.txt", volumes={"/in.txt": {"type": "file", "content": b64(b"in")}}),
        lambda r: r["stdout"] == "in",
    ),
    (run_body("true", volumes={"/x:zz": {"type": "directory"}}), None),  # bad input
]


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_two_hundred_mixed_runs_through_rest_and_mcp(docker_client):
    instance, rest_port, mcp_port = instance_id("load"), free_port(), free_port()
    runner = start_runner(
        instance,
        rest_port,
        mcp_port,
        max_concurrent_runs="8",
        max_queued_runs="8",
        max_output_bytes="65536",
    )
    try:
        baseline = rss(runner.pid)
        outcomes = await drive(f"http://127.0.0.1:{rest_port}", f"http://127.0.0.1:{mcp_port}/mcp")
        after = rss(runner.pid)
    finally:
        runner.terminate()
        runner.wait(60)
    try:
        assert outcomes["correct"] + outcomes["busy"] == 200, outcomes
        assert outcomes["correct"] >= 190, outcomes
        assert after - baseline < 64 * 2**20, f"RSS grew by {(after - baseline) / 2**20:.0f} MiB"
        left = [item for item in objects_of(docker_client, instance) if item[1] not in HELD_ROLES]
        assert {role for _, role in left} <= KEPT_ROLES, left
    finally:  # the kept runs count against the local tenant's bound on the whole engine
        remove_objects_of(docker_client, instance)


async def drive(rest_url: str, mcp_url: str) -> Counter[str]:
    outcomes: Counter[str] = Counter()
    jobs = asyncio.Queue[int]()
    for index in range(200):
        jobs.put_nowait(index)

    async with httpx.AsyncClient(timeout=120) as http, Client(mcp_url) as mcp:

        async def worker() -> None:
            while not jobs.empty():
                index = jobs.get_nowait()
                body, correct = MIX[index % len(MIX)]
                if index % 2:
                    outcome = await via_rest(http, rest_url, body, correct)
                else:
                    outcome = await via_mcp(mcp, body, correct)
                outcomes[outcome] += 1

        await asyncio.gather(*(worker() for _ in range(16)))
    return outcomes


async def via_rest(http, url, body, correct) -> str:  # type: ignore[no-untyped-def]
    response = await http.post(f"{url}/run", json=body)
    if response.status_code == 429:
        return "busy" if "retry-after" in response.headers else "wrong"
    if correct is None:
        return "correct" if response.status_code == 422 else "wrong"
    if response.status_code == 200 and correct(response.json()):
        return "correct"
    return f"wrong: REST {body.get('command')} -> {response.status_code} {response.text[:200]}"


async def via_mcp(mcp, body, correct) -> str:  # type: ignore[no-untyped-def]
    result = await mcp.call_tool("run_container", body)
    text = result.content[0].text
    if result.is_error:
        if "run slots are busy" in text:
            return "busy"
        return "correct" if correct is None and ":ro or :rw" in text else "wrong"
    if correct is not None and correct(result.structured_content):
        return "correct"
    return f"wrong: MCP {body.get('command')} -> {text[:200]}"
