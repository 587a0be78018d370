from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest

from tests.identity.doors import Runner, runner
from tests.idp import Provider


@pytest.fixture(scope="module")
def doors(provider: Provider, docker_client: docker.DockerClient) -> Iterator[Runner]:
    """REST and MCP trusting the suite's provider, beside one API token (STATIC)."""
    with runner(provider, docker_client) as urls:
        yield urls
