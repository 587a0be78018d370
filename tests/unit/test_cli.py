"""The `oneoff-runner` command's own decisions (serving itself is covered by the suites)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runner.cli.main import main

COMMAND = Path(sys.executable).with_name("oneoff-runner")


def test_serving_beyond_loopback_without_tokens_is_refused(monkeypatch):
    monkeypatch.delenv("RUNNER_API_TOKENS", raising=False)
    with pytest.raises(SystemExit) as caught:
        main(["serve", "--host", "0.0.0.0"])
    assert "RUNNER_API_TOKENS" in str(caught.value)


def test_the_command_explains_itself():
    done = subprocess.run([str(COMMAND), "--help"], capture_output=True, text=True, check=True)
    assert "serve" in done.stdout and "mcp" in done.stdout
