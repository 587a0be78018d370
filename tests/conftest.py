"""Fixtures shared by every suite, and the lanes: what each test needs beyond Python.

- A test is marked by what it needs: `docker` (every test under tests/docker/, and any test
  that uses the `docker_client` fixture), `registry`, `chromium`, `compose`, `node`, `cluster`,
  `idp` (any test that uses the `provider` fixture: a real OpenID provider, tests/idp.py).
  A test marked `docker` gets the engine before it starts: it fails loudly when none is
  reachable.
- The tests of the Kubernetes backend against its fake API server need nothing but take
  minutes: `kubernetes`.
- A test that is none of these is `fast`: `uv run pytest -m fast` runs in about half a minute,
  without an engine, a browser, Node or Compose.
- Cluster tests run only when `-m` names them (`-m cluster`), whatever else `-m` says.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator

import docker
import pytest

from backends.labels import DEADLINE, DELIVERED_ROLE, INSTANCE, RECORD_ROLE, RESULT_ROLE, ROLE
from runner.settings import Settings
from tests.helpers import (
    SUITE_ID,
    SUITE_KEPT_RUNS,
    TEST_IMAGE,
    TEST_REGISTRIES,
    instance_id,
    remove_gone,
)

pytest_plugins = ["tests.registries", "tests.idp"]
KEPT_ENDS = (RECORD_ROLE, RESULT_ROLE, DELIVERED_ROLE)
NOT_FAST = ("docker", "registry", "chromium", "compose", "node", "cluster", "kubernetes", "idp")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = str(item.path)
        if "/tests/docker/" in path or "docker_client" in item.fixturenames:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.docker)
        if "provider" in item.fixturenames:  # type: ignore[attr-defined]
            item.add_marker(pytest.mark.idp)
        if "/tests/kubernetes/" in path and not item.get_closest_marker("cluster"):
            item.add_marker(pytest.mark.kubernetes)
        if not any(item.get_closest_marker(name) for name in NOT_FAST):
            item.add_marker(pytest.mark.fast)
    if "cluster" not in config.getoption("markexpr"):
        cluster = [item for item in items if item.get_closest_marker("cluster")]
        config.hook.pytest_deselected(items=cluster)
        items[:] = [item for item in items if not item.get_closest_marker("cluster")]


@pytest.fixture(autouse=True)
def _engine_first(request: pytest.FixtureRequest) -> None:
    """A test marked `docker` has the engine before it starts (or fails, saying so)."""
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("docker_client")


@pytest.fixture
def collect_garbage() -> Iterator[None]:
    yield
    gc.collect()


def _settings(**overrides: object) -> Settings:
    values: dict[str, object] = {
        "instance_id": instance_id(),
        "allowed_registries": TEST_REGISTRIES,
        "max_kept_runs": SUITE_KEPT_RUNS,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def make_module_settings():  # type: ignore[no-untyped-def]
    return _settings


@pytest.fixture
def make_settings():
    """Settings for a test app: its own instance id, so its startup reaping touches only it."""
    return _settings


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    """The real engine, with the test image. After the session, nothing this suite's runners
    made may remain on it: what did is removed, and nothing else on the (shared) engine is
    looked at or touched."""
    try:
        client = docker.from_env()
        client.ping()
    except docker.errors.DockerException as exc:
        pytest.fail(
            f"no Docker engine reachable ({exc}); run scripts/ci-provision.sh or start dockerd",
            pytrace=False,
        )
    try:
        client.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        pytest.fail(f"test image {TEST_IMAGE} missing; run scripts/ci-provision.sh", pytrace=False)
    yield client
    try:
        _no_leaks(client)
    finally:
        client.close()


def _no_leaks(client: docker.DockerClient) -> None:
    """Remove what this suite's runners left; fail on anything but a run's kept end (a record
    with a deadline, which expires by itself). Those are expected: another runner's reaper may
    keep an abandoned run's end after its own runner's fixture removed that runner's objects."""
    containers, volumes = _suite_objects(client)
    for container in containers:
        remove_gone(client.api.remove_container, container, force=True, v=True)
    for volume in volumes:
        remove_gone(client.api.remove_volume, volume, force=True)
    found = {**containers, **volumes}
    leaked = [f"{name} ({instance}, {role})" for name, (instance, role) in found.items() if role]
    assert not leaked, f"the runner leaked: {leaked}"


def _suite_objects(
    client: docker.DockerClient,
) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
    """Containers (ids) and volumes (names) made by runners of this copy of the suite (never
    another's), each with its instance and role (empty for a kept end that expires by itself).
    Listed without inspecting each: other suites remove theirs meanwhile."""

    def ours(labels: dict[str, str] | None) -> bool:
        return (labels or {}).get(INSTANCE, "").startswith(f"{SUITE_ID}-")

    def owner(labels: dict[str, str]) -> tuple[str, str]:
        role = labels.get(ROLE, "")
        expires = role in KEPT_ENDS and DEADLINE in labels
        return labels[INSTANCE], "" if expires else role or "unlabelled"

    containers = client.api.containers(all=True, filters={"label": INSTANCE})
    volumes = client.api.volumes(filters={"label": INSTANCE}).get("Volumes") or []
    return (
        {item["Id"]: owner(item["Labels"]) for item in containers if ours(item.get("Labels"))},
        {item["Name"]: owner(item["Labels"]) for item in volumes if ours(item.get("Labels"))},
    )
