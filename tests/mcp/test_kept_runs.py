"""The kept-runs bound and agents: an MCP run whose result an answer delivered makes room for
the tenant's next run; a REST run, or an MCP run nobody has read, never does, and the bound
still refuses then."""

from __future__ import annotations

import uuid

import docker
import httpx
import pytest

from api_app import create_app as create_rest_app
from backends.labels import RUN_ID, TENANT
from mcp_app import create_app
from runner.tenancy import tenant_for
from tests.docker.test_async_runs import follow_to_exit, start
from tests.helpers import remove_objects_of, run_body, serving, until
from tests.mcp.test_scratch import own_tenant, sdk_client

pytestmark = pytest.mark.anyio
BOUND = 2


def kept_runs(docker_client: docker.DockerClient, token: str) -> set[str]:
    """The runs the engine keeps anything of (a container, a result) for the token's tenant."""
    label = {"label": f"{TENANT}={tenant_for(token).label}"}
    return {
        item["Labels"][RUN_ID]
        for item in docker_client.api.containers(all=True, filters=label)
        if RUN_ID in item["Labels"]
    }


async def test_delivered_runs_make_room_under_the_bound(
    make_settings, docker_client: docker.DockerClient
) -> None:  # type: ignore[no-untyped-def]
    token = uuid.uuid4().hex
    answers, held = [], []
    async with own_tenant(make_settings, docker_client, token, max_kept_runs=BOUND) as client:
        for number in range(BOUND + 2):
            answer = await client.call_tool("run_container", run_body("echo", str(number)))
            answers.append(answer)
            held.append(kept_runs(docker_client, token))
        ids = [answer.structured_content["run_id"] for answer in answers]
        first = await client.call_tool("wait_run", {"run_id": ids[0], "wait_seconds": 0})
        last = await client.call_tool("wait_run", {"run_id": ids[-1], "wait_seconds": 0})
    assert [answer.is_error for answer in answers] == [False] * (BOUND + 2)
    stdouts = [answer.structured_content["stdout"] for answer in answers]
    assert stdouts == [f"{number}\n" for number in range(BOUND + 2)]
    assert max(len(runs) for runs in held) <= BOUND, held
    assert held[-1] == set(ids[-BOUND:])  # the oldest went first
    assert first.is_error is True and "run_id" in first.content[0].text  # removed: not found
    assert last.is_error is False and last.structured_content["stdout"] == "3\n"


async def test_unread_and_rest_runs_are_kept_and_the_bound_still_refuses(
    make_settings, docker_client: docker.DockerClient
) -> None:  # type: ignore[no-untyped-def]
    """A REST run whose result nobody read and an MCP run that finished unread hold the two
    places: the next run is refused. Once wait_run has delivered the MCP run, it makes room;
    the REST run is never removed."""
    token = uuid.uuid4().hex
    rest_settings = make_settings(api_tokens=[f"rest:{token}"], result_ttl_seconds=600)
    headers = {"Authorization": f"Bearer {token}"}
    try:
        with (
            serving(create_rest_app(rest_settings)) as port,
            httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as rest,
        ):
            rest_run = start(rest, "echo", "rest")
            follow_to_exit(rest, rest_run)  # finished; its result never read over MCP
            async with own_tenant(
                make_settings, docker_client, token, max_kept_runs=BOUND
            ) as client:
                unread = await client.call_tool("run_container", run_body("true", wait_seconds=0))
                unread_id = unread.structured_content["run_id"]
                assert unread.structured_content["finished"] is False
                # on the engine once launched; then finished, and no MCP answer delivered it
                until(lambda: rest.get(f"/runs/{unread_id}").status_code == 200, 30)
                follow_to_exit(rest, unread_id)
                refused = await client.call_tool("run_container", run_body("true"))
                delivered = await client.call_tool("wait_run", {"run_id": unread_id})
                admitted = await client.call_tool("run_container", run_body("echo", "after"))
                again = await client.call_tool("run_container", run_body("echo", "again"))
                held = kept_runs(docker_client, token)
            status = rest.get(f"/runs/{rest_run}")
    finally:
        remove_objects_of(docker_client, rest_settings.instance_id)
    assert refused.is_error is True
    assert f"RUNNER_MAX_KEPT_RUNS: {BOUND}" in refused.content[0].text
    assert "cancel_run" in refused.content[0].text
    assert delivered.is_error is False and delivered.structured_content["finished"] is True
    assert admitted.is_error is False and admitted.structured_content["stdout"] == "after\n"
    assert again.is_error is False and again.structured_content["stdout"] == "again\n"
    assert held == {rest_run, again.structured_content["run_id"]}
    assert status.status_code == 200 and status.json()["result"]["stdout"] == "rest\n"


async def test_runs_one_runner_delivered_make_room_on_another(
    make_settings, docker_client: docker.DockerClient
) -> None:  # type: ignore[no-untyped-def]
    """The delivered mark is on the engine: a second runner of the tenant (a replica, or the
    first one restarted) removes the runs the first one delivered to make room."""
    token = uuid.uuid4().hex
    first, second = (
        make_settings(api_tokens=[f"agent:{token}"], max_kept_runs=BOUND) for _ in range(2)
    )
    try:
        with serving(create_app(first)) as port:
            async with sdk_client(port, token) as client:
                delivered = [
                    await client.call_tool("run_container", run_body("echo", str(number)))
                    for number in range(BOUND)
                ]
        with serving(create_app(second)) as port:
            async with sdk_client(port, token) as client:
                admitted = await client.call_tool("run_container", run_body("echo", "more"))
        held = kept_runs(docker_client, token)
    finally:
        for settings in (first, second):
            remove_objects_of(docker_client, settings.instance_id)
    ids = [answer.structured_content["run_id"] for answer in delivered]
    assert [answer.is_error for answer in delivered] == [False] * BOUND
    assert admitted.is_error is False, admitted.content[0].text
    assert admitted.structured_content["stdout"] == "more\n"
    assert held == {*ids[1:], admitted.structured_content["run_id"]}  # the oldest went
