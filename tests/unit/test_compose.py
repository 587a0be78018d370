"""compose.yaml, as Compose itself reads it (`docker-compose config`, from scripts/ci-provision.sh):
the service is built from the Dockerfile, reaches the engine through the mounted socket, publishes
both ports on loopback, and cannot start without tokens. (The image itself is not built here: its
base image comes from Docker Hub.)"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from runner.settings import Settings
from tests.helpers import ROOT

pytestmark = pytest.mark.compose
SOCKET = "/var/run/docker.sock"


def compose_config(**env: str) -> subprocess.CompletedProcess[str]:
    compose = shutil.which("docker-compose")
    if compose is None:
        pytest.fail("docker-compose missing; run scripts/ci-provision.sh", pytrace=False)
    clean = {k: v for k, v in os.environ.items() if k not in ("RUNNER_API_TOKENS", "DOCKER_GID")}
    return subprocess.run(
        [compose, "--project-directory", str(ROOT), "-f", str(ROOT / "compose.yaml"), "config"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    done = compose_config(RUNNER_API_TOKENS="compose-token", DOCKER_GID="998")
    assert done.returncode == 0, done.stderr
    runner: dict[str, Any] = yaml.safe_load(done.stdout)["services"]["runner"]
    return runner


def test_the_service_is_built_from_the_dockerfile(service: dict[str, Any]) -> None:
    assert service["build"]["context"] == str(ROOT)
    assert (ROOT / "Dockerfile").read_text().count('CMD ["oneoff-runner", "serve"]') == 1


def test_it_reaches_the_engine_through_the_mounted_socket(service: dict[str, Any]) -> None:
    assert f"{SOCKET}:{SOCKET}:rw" in service["volumes"]
    assert service["group_add"] == ["998"]  # the socket's group, for the image's uid 10001


def test_both_ports_are_published_on_loopback_by_default(service: dict[str, Any]) -> None:
    defaults = Settings()
    assert sorted(service["ports"]) == [
        f"127.0.0.1:{defaults.port}:{defaults.port}/tcp",
        f"127.0.0.1:{defaults.mcp_port}:{defaults.mcp_port}/tcp",
    ]


def test_it_cannot_start_without_tokens() -> None:
    done = compose_config(DOCKER_GID="998")
    assert done.returncode != 0
    assert "set RUNNER_API_TOKENS" in done.stderr


def test_its_environment_is_valid_settings_with_tokens(service: dict[str, Any]) -> None:
    environment = {key: value for key, value in service["environment"].items() if value}
    settings = Settings(_env_file=None, host="0.0.0.0", **_fields(environment))  # type: ignore[call-arg]
    assert [token for token, _ in settings.tokens()] == ["compose-token"]
    assert settings.instance_id == "compose-runner"


def test_the_container_is_locked_down(service: dict[str, Any]) -> None:
    assert service["read_only"] is True
    assert service["cap_drop"] == ["ALL"]
    assert "no-new-privileges:true" in service["security_opt"]


def test_docker_socket_mounts_another_socket_where_the_runner_looks() -> None:
    """Rootless Docker's socket is under $XDG_RUNTIME_DIR, not /var/run."""
    rootless = "/run/user/1000/docker.sock"
    done = compose_config(RUNNER_API_TOKENS="compose-token", DOCKER_GID="0", DOCKER_SOCKET=rootless)
    assert done.returncode == 0, done.stderr
    runner = yaml.safe_load(done.stdout)["services"]["runner"]
    assert runner["volumes"] == [f"{rootless}:{SOCKET}:rw"]


def test_runner_host_publishes_the_ports_beyond_loopback() -> None:
    done = compose_config(
        RUNNER_API_TOKENS="compose-token", DOCKER_GID="998", RUNNER_HOST="0.0.0.0"
    )
    assert done.returncode == 0, done.stderr
    ports = yaml.safe_load(done.stdout)["services"]["runner"]["ports"]
    assert all(port.startswith("0.0.0.0:") for port in ports), ports


def test_the_service_image_starts_from_a_base_pinned_by_digest() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^ARG BASE_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11-slim@sha256:[0-9a-f]{64}", base)
    stages = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert stages and set(stages) == {"${BASE_IMAGE}"}


def _fields(environment: dict[str, str]) -> dict[str, str]:
    return {key.removeprefix("RUNNER_").lower(): value for key, value in environment.items()}
