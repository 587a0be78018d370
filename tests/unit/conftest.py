from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from tests.fakes import FakeBackend
from tests.helpers import LocalClient


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def fake() -> FakeBackend:
    return FakeBackend()


@pytest.fixture
def api(fake: FakeBackend, make_settings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """The real REST app over a FakeBackend: validation, policy and error mapping, no engine."""
    settings = make_settings(max_timeout_seconds=600, max_memory="1g", max_cpus=2.0)
    with LocalClient(create_app(settings, backend=fake)) as client:
        yield client
