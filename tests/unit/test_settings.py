"""Settings come from RUNNER_* variables, DOCKER_* variables and a .env file."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from runner.settings import Settings


def test_env_file_and_docker_variables_are_read(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text(
        "RUNNER_MAX_CPUS=3\nDOCKER_HOST=tcp://10.0.0.1:2376\nRUNNER_ALLOWED_NETWORKS=none,ci-net\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    settings = Settings()
    assert settings.max_cpus == 3
    assert settings.allowed_networks == ["none", "ci-net"]
    assert settings.docker_environment() == {"DOCKER_HOST": "tcp://10.0.0.1:2376"}


def test_environment_wins_over_the_env_file(tmp_path, monkeypatch):
    (tmp_path / ".env").write_text("RUNNER_PORT=9000\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNNER_PORT", "9100")
    assert Settings().port == 9100


@pytest.mark.parametrize(
    "values",
    [
        {"default_timeout_seconds": 100, "max_timeout_seconds": 10},
        {"default_memory": "8g", "max_memory": "1g"},
        {"default_cpus": 8, "max_cpus": 1},
        {"max_memory": "a lot"},
    ],
)
def test_inconsistent_settings_are_refused_at_startup(values):
    with pytest.raises(ValidationError):
        Settings(**values)


def test_the_kubernetes_backend_asks_for_the_helper_image_nothing_publishes():
    with pytest.raises(ValidationError, match="kube_helper_image"):
        Settings(_env_file=None, backend="kubernetes")  # type: ignore[call-arg]
    assert Settings(_env_file=None, backend="kubernetes", kube_helper_image="r/x:1")  # type: ignore[call-arg]


def test_the_older_mcp_names_of_the_browser_settings_still_work(monkeypatch):
    monkeypatch.setenv("RUNNER_MCP_ALLOWED_HOSTS", "runner.example.com")
    monkeypatch.setenv("RUNNER_MCP_ALLOWED_ORIGINS", "https://tools.example.com")
    settings = Settings(_env_file=None)
    assert settings.allowed_hosts == ["runner.example.com"]
    assert settings.allowed_origins == ["https://tools.example.com"]
    monkeypatch.setenv("RUNNER_ALLOWED_HOSTS", "new.example.com")
    assert Settings(_env_file=None).allowed_hosts == ["new.example.com"]
