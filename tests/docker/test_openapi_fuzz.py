"""The API is what its OpenAPI document says: Schemathesis (`schemathesis run`, every check, every
phase including stateful testing) against a real runner, as users start it, on the real engine,
with API tokens. Its requests stay off the internet: the runner allows only the suite's image in
its loopback registry, and the hooks (`fuzz_hooks.py`) put that image in every well-formed
request; stateful testing follows the document's links and the Location headers
(`schemathesis.toml`). Seeded and deterministic, one worker, a bounded number of cases per
operation: CI sees the same cases every time, in about three minutes."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import docker
import httpx
import pytest

from tests.helpers import (
    PUBLIC_IMAGE,
    ROOT,
    free_port,
    instance_id,
    remove_objects_of,
    start_runner,
)

pytestmark = pytest.mark.registry
log = logging.getLogger(__name__)
TOKEN = "fuzz-token"
EXAMPLES = 10
"""Cases per operation and phase."""
SCHEMATHESIS = [
    "--checks=all",
    f"--max-examples={EXAMPLES}",
    "--seed=20261206",
    "--generation-deterministic",
    "--generation-allow-x00=false",
    "--workers=1",
    "--request-timeout=30",
    "--no-color",
]
"""NUL bytes are left out: every text field refuses them (`runner.models.StrictModel`), which
the document does not repeat on each string."""


@pytest.fixture
def runner_url(docker_client: docker.DockerClient) -> Iterator[str]:
    instance, port = instance_id("fuzz"), free_port()
    process = start_runner(
        instance,
        port,
        api_tokens=TOKEN,
        allowed_images=PUBLIC_IMAGE,
        default_timeout_seconds="5",
        max_timeout_seconds="10",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        pulled = httpx.post(
            f"{url}/images/pull",
            json={"image": PUBLIC_IMAGE},
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=120,
        )
        assert pulled.status_code == 200, pulled.text
        yield url
    finally:
        process.terminate()
        process.wait(60)
        remove_objects_of(docker_client, instance)


@pytest.mark.timeout(420)
def test_schemathesis_finds_the_api_as_its_openapi_says(runner_url: str, tmp_path: Path) -> None:
    """In a folder of its own: Schemathesis keeps the failures it found there, and replays
    them first on its next run."""
    environment = {
        **os.environ,
        "SCHEMATHESIS_HOOKS": "tests.docker.fuzz_hooks",
        "FUZZ_IMAGE": PUBLIC_IMAGE,
        "PYTHONPATH": str(ROOT),
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "schemathesis.cli",
            f"--config-file={ROOT / 'tests/docker/schemathesis.toml'}",
            "run",
            f"{runner_url}/openapi.json",
            f"--header=Authorization: Bearer {TOKEN}",
            *SCHEMATHESIS,
        ],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert done.returncode == 0, done.stdout[-30000:] + done.stderr[-5000:]
    cases = re.search(r"(\d+) generated", done.stdout)
    assert cases and int(cases.group(1)) >= 1000, done.stdout[-3000:]
    phases = re.findall(r"(\w+) \(in ([\d.]+)s\)", done.stdout)
    log.info("schemathesis: %s cases; phases (s): %s", cases.group(1), phases)
    assert "Stateful" in done.stdout
