"""An agent's run_container with RUNNER_WARM_POOL (through the official Python SDK client): it
takes a warm container and answers as the same call to a runner without a pool does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import docker
import pytest
from mcp import Client

from backends.docker.backend import DockerBackend
from mcp_app import create_app
from tests.docker.watching import Events, warm_run_began
from tests.helpers import TEST_IMAGE, remove_objects_of, run_body, serving

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def warm(docker_client, make_module_settings) -> Iterator[tuple[str, DockerBackend]]:  # type: ignore[no-untyped-def]
    settings = make_module_settings(warm_pool=[f"{TEST_IMAGE}=2"])
    backend = DockerBackend(settings)
    with serving(create_app(settings, backend=backend)) as port:
        yield f"http://127.0.0.1:{port}/mcp", backend
    remove_objects_of(docker_client, settings.instance_id)


@pytest.fixture(scope="module")
def cold(docker_client, make_module_settings) -> Iterator[str]:  # type: ignore[no-untyped-def]
    settings = make_module_settings(warm_pool=[])
    with serving(create_app(settings)) as port:
        yield f"http://127.0.0.1:{port}/mcp"
    remove_objects_of(docker_client, settings.instance_id)


async def _answer(url: str, body: dict[str, Any]) -> dict[str, Any]:
    async with Client(url) as client:
        result = await client.call_tool("run_container", body)
    assert result.is_error is False, result.content
    answer = dict(result.structured_content or {})
    for key in (
        "run_id",
        "execution_time",
        "created_at",
        "started_at",
        "finished_at",
        "expires_at",
    ):
        answer.pop(key, None)
    return answer


async def test_run_container_takes_a_warm_container_and_answers_as_a_cold_one(
    warm: tuple[str, DockerBackend], cold: str, docker_client: docker.DockerClient
) -> None:
    url, backend = warm
    body = run_body("sh", "-c", "cat; echo err >&2; exit 4", stdin="from the agent\n")
    assert backend.pool.wait_full(60), "the pool did not fill"
    events = Events(docker_client, backend.settings.instance_id)
    try:
        first = await _answer(url, body)
        began = events.wait("start")
    finally:
        events.close()
    assert warm_run_began(began), began
    second = await _answer(cold, body)
    assert first == second
    assert (first["exit_code"], first["stdout"], first["stderr"]) == (
        4,
        "from the agent\n",
        "err\n",
    )
