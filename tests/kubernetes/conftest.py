"""The Kubernetes backend against a fake API server that speaks the real wire protocol."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from runner.settings import Settings
from tests.helpers import LocalClient
from tests.kubernetes.cluster_support import core, delete_namespace, labelled_namespace, runner_app
from tests.kubernetes.fake_api import FakeKubernetes, Script

Scripted = Callable[[dict[str, Any]], Script]


@pytest.fixture
def fake() -> Iterator[FakeKubernetes]:
    with FakeKubernetes() as server:
        yield server
    assert server.invalid == [], "the backend sent objects the Kubernetes schemas refuse"


@pytest.fixture
def kube_settings(fake: FakeKubernetes, tmp_path: Path) -> Settings:
    return Settings(
        backend="kubernetes",
        kube_helper_image="oneoff-runner:test",
        instance_id="test-kube",
        kubeconfig=fake.kubeconfig(tmp_path),
        kube_namespace="runs",
        max_output_bytes=64 * 1024,
        allowed_registries=["registry.example"],  # the tests' private registry
    )


@pytest.fixture
def api(fake: FakeKubernetes, kube_settings: Settings) -> Iterator[TestClient]:
    """The REST app on the Kubernetes backend; set `fake.script` to play the run's pod."""
    with LocalClient(create_app(kube_settings)) as client:
        yield client
    fake.settle()
    leftovers = [
        name for kind in ("jobs", "secrets", "configmaps", "pods") for name in fake.named(kind)
    ]
    assert leftovers == [], f"left behind: {leftovers}"


@pytest.fixture
def configured(fake: FakeKubernetes, kube_settings: Settings) -> Iterator[type[TestClient]]:
    """The REST app with some settings changed: `configured(**settings)`."""
    made: list[TestClient] = []

    def client(**changes: object) -> TestClient:
        app = LocalClient(create_app(kube_settings.model_copy(update=changes)))
        made.append(app.__enter__())
        return made[-1]

    yield client  # type: ignore[misc]
    for app in made:
        app.__exit__(None, None, None)
    fake.settle()
    assert [name for kind in ("jobs", "pods") for name in fake.named(kind)] == []


# ---- the real cluster (`-m cluster`) ---------------------------------------------------------

Runner = Callable[..., AbstractContextManager[TestClient]]
Namespaces = Callable[[dict[str, str]], str]


@pytest.fixture
def runner() -> Runner:
    """`with runner(**settings) as api:` a runner on the cluster, of its own instance id;
    nothing of its runs may be left when it stops (`cluster_support.runner_app`)."""
    return runner_app


@pytest.fixture
def own_namespace() -> Iterator[Namespaces]:
    """`own_namespace(labels)`: a namespace for this test, deleted after it."""
    api, made = core(), []

    def make(labels: dict[str, str]) -> str:
        name = f"oneoff-test-{uuid.uuid4().hex[:8]}"
        labelled_namespace(api, name, labels)
        made.append(name)
        return name

    yield make
    for name in made:
        delete_namespace(api, name)
