"""Fixtures shared by every suite."""

from __future__ import annotations

import uuid

import pytest

from runner.settings import Settings


@pytest.fixture
def make_settings():
    """Settings for a test app: its own instance id, so its startup reaping touches only it."""

    def make(**overrides: object) -> Settings:
        values: dict[str, object] = {"instance_id": f"test-{uuid.uuid4().hex[:8]}"}
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make
