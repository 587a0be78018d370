"""A bad setting stops startup with exit status 2 and one line per bad variable, naming it and
what it accepts: no traceback, whichever way the service is started."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runner.settings import Settings, get_settings
from runner.settings_errors import unknown_variables, variable
from tests.helpers import ROOT


@pytest.fixture
def stderr_lines(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):  # type: ignore[no-untyped-def]
    def check(**env: str) -> list[str]:
        monkeypatch.chdir(tmp_path)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        with pytest.raises(SystemExit) as stopped:
            get_settings.__wrapped__()
        assert stopped.value.code == 2
        return capsys.readouterr().err.splitlines()

    return check


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RUNNER_MAX_OUTPUT_BYTES", "100", ["greater than or equal to 1024", "1024 or more"]),
        ("RUNNER_PORT", "70000", ["at most 65535", "1 or more"]),
        ("RUNNER_REAP_INTERVAL_SECONDS", "0", ["more than 0", "a number"]),
        ("RUNNER_MAX_CONCURRENT_RUNS", "many", ["valid integer", "an integer, 1 or more"]),
        ("RUNNER_BACKEND", "podman", ["one of docker, kubernetes"]),
        ("RUNNER_NO_NEW_PRIVILEGES", "maybe", ["true or false"]),
        ("RUNNER_MAX_MEMORY", "lots", ["not a size", "e.g. 256m or 1g"]),
        ("RUNNER_KUBE_NODE_SELECTOR", "{", ["not valid JSON", "a JSON object"]),
        ("RUNNER_KUBE_TOLERATIONS", "[1]", ["a JSON list"]),
        ("RUNNER_KUBE_RETURN_LIMIT_BYTES", "1000", ["65536 or more", "at most 268435456"]),
        ("RUNNER_KUBE_RETURN_LIMIT_BYTES", "999999999999", ["at most 268435456"]),
    ],
)
def test_each_kind_of_bad_value_is_one_line_naming_the_variable_and_what_it_accepts(
    stderr_lines,
    variable: str,
    value: str,
    says: list[str],  # type: ignore[no-untyped-def]
) -> None:
    lines = stderr_lines(**{variable: value})
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"bad setting: {variable}: ")
    for words in says:
        assert words in lines[0]


def test_a_default_above_its_maximum_names_both_variables(stderr_lines) -> None:  # type: ignore[no-untyped-def]
    lines = stderr_lines(RUNNER_DEFAULT_CPUS="8", RUNNER_MAX_CPUS="2")
    assert lines == ["bad setting: RUNNER_DEFAULT_CPUS exceeds RUNNER_MAX_CPUS"]


def test_every_bad_variable_gets_its_own_line(stderr_lines) -> None:  # type: ignore[no-untyped-def]
    lines = stderr_lines(RUNNER_PORT="x", RUNNER_MCP_PORT="0", RUNNER_LOG_FORMAT="xml")
    named = sorted(line.split(":")[1].strip() for line in lines)
    assert named == ["RUNNER_LOG_FORMAT", "RUNNER_MCP_PORT", "RUNNER_PORT"]


def test_a_variable_with_an_alias_is_named_both_ways() -> None:
    assert variable(Settings, "docker_host") == "RUNNER_DOCKER_HOST or DOCKER_HOST"


@pytest.mark.parametrize(
    ("variable", "value", "says"),
    [
        ("RUNNER_ALLOWED_HOSTS", "https://runner.example.com", "`name:port`"),
        ("RUNNER_MCP_ALLOWED_HOSTS", "a b", "`name:port`"),
        ("RUNNER_ALLOWED_ORIGINS", "runner.example.com", "scheme://name[:port]"),
    ],
)
def test_a_bad_browser_setting_names_both_its_variables(
    stderr_lines, variable, value, says
) -> None:  # type: ignore[no-untyped-def]
    (line,) = stderr_lines(**{variable: value})
    names = variable.replace("MCP_", "")
    assert line.startswith(f"bad setting: {names} or {names.replace('RUNNER_', 'RUNNER_MCP_')}: ")
    assert says in line and value not in line


def test_the_bad_value_itself_is_not_echoed(stderr_lines) -> None:  # type: ignore[no-untyped-def]
    (line,) = stderr_lines(RUNNER_PORT="s3cret-token")
    assert "s3cret-token" not in line


@pytest.mark.parametrize(
    "command",
    [
        ["-m", "runner.cli.main", "serve"],
        ["-m", "runner.cli.main", "mcp"],
        ["-m", "runner.cli.main", "mcp", "--stdio"],
        ["-m", "uvicorn", "api_app:app"],
        ["-m", "uvicorn", "mcp_app:app", "--port", "8001"],
    ],
    ids=["serve", "mcp", "mcp-stdio", "uvicorn-api", "uvicorn-mcp"],
)
def test_every_way_of_starting_stops_with_the_lines_and_exit_2(command: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, *command],
        cwd=ROOT,
        env={**os.environ, "RUNNER_MAX_OUTPUT_BYTES": "100"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("bad setting: RUNNER_MAX_OUTPUT_BYTES: "), done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 1


def test_a_runner_variable_no_setting_reads_is_a_warning_naming_the_closest(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A typo in the environment or in .env is said, not silently ignored; CI's own RUNNER_*
    variables (GitHub Actions sets RUNNER_OS in every job) are not the runner's."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RUNNER_MAX_MEMROY=1g\nRUNNER_PORT=8123\n")
    monkeypatch.setenv("RUNNER_PROT", "9000")
    monkeypatch.setenv("RUNNER_OS", "Linux")
    settings = get_settings.__wrapped__()
    assert settings.port == 8123
    warnings = [line for line in capsys.readouterr().err.splitlines() if "RUNNER_" in line]
    assert warnings == [
        "warning: RUNNER_PROT (in the environment) is no setting, so it is ignored; did you mean "
        "RUNNER_PORT?",
        "warning: RUNNER_MAX_MEMROY (in .env) is no setting, so it is ignored; did you mean "
        "RUNNER_MAX_MEMORY?",
    ]


def test_a_typo_of_a_renamed_variable_names_the_current_name() -> None:
    """The browser settings lost their MCP_ prefix (both doors read them); their older names are
    still read, so they are no typo, and a typo of one points at the current name."""
    found = {
        "in the environment": [
            "RUNNER_ALLOWED_HOSTS",
            "RUNNER_MCP_ALLOWED_ORIGINS",
            "RUNNER_OPERATOR_TOKENS_FILE",
            "RUNNER_MCP_ALLOWED_HOST",
        ]
    }
    assert unknown_variables(Settings, found) == [
        "RUNNER_MCP_ALLOWED_HOST (in the environment) is no setting, so it is ignored; did you "
        "mean RUNNER_ALLOWED_HOSTS?"
    ]
