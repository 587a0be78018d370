"""Runners that trust a provider of tests/idp.py, for the tests of this directory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import docker

import api_app
import mcp_app
from backends.labels import INSTANCE
from runner.settings import Settings
from tests.helpers import free_port, instance_id, serving
from tests.idp import Provider

STATIC = "tok-static-caller"


@dataclass(frozen=True)
class Runner:
    rest: str
    mcp: str


@contextlib.contextmanager
def runner(
    provider: Provider, docker_client: docker.DockerClient, **overrides: object
) -> Iterator[Runner]:
    """REST and MCP doors trusting `provider`, beside the API token STATIC; each door names
    itself (its audience) by its own URL."""
    rest_port, mcp_port = free_port(), free_port()
    urls = Runner(f"http://127.0.0.1:{rest_port}", f"http://127.0.0.1:{mcp_port}/mcp")
    instances = [instance_id("oauth-rest"), instance_id("oauth-mcp")]
    values: dict[str, object] = {
        "api_tokens": [f"static:{STATIC}"],
        "oauth_issuers": [provider.issuer],
        "oauth_audience": [urls.rest, urls.mcp],
        "oauth_leeway_seconds": 0,
        "oauth_jwks_refresh_seconds": 0,
    }
    values.update(overrides)
    rest = api_app.create_app(Settings(instance_id=instances[0], **values))  # type: ignore[arg-type]
    mcp = mcp_app.create_app(Settings(instance_id=instances[1], **values))  # type: ignore[arg-type]
    try:
        with serving(rest, rest_port), serving(mcp, mcp_port):
            yield urls
    finally:
        for instance in instances:
            label = f"{INSTANCE}={instance}"
            for item in docker_client.api.containers(all=True, filters={"label": label}):
                docker_client.api.remove_container(item["Id"], force=True, v=True)
            for volume in docker_client.volumes.list(filters={"label": label}):
                volume.remove(force=True)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
