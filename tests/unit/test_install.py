"""The first `uv run` a reader types installs the runtime only (no test, docs or Helm tools):
the docs say `uv run --no-dev` wherever they start the runner, and that is all it installs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import ROOT

READER_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
OWNERS_FIRST_LINE = "uv run oneoff-runner serve "
"""The README's first command, as the project's owner fixed it (with `uv run pytest` beside it,
which needs the dev group anyway); every other start in the docs installs the runtime only."""
DEV_ONLY = ("pytest", "mkdocs", "helm", "schemathesis", "kubernetes_validate", "mypy", "ruff")


def test_every_uv_run_of_the_runner_in_the_docs_installs_the_runtime_only():
    starts = [
        (page.name, line)
        for page in READER_PAGES
        for line in re.findall(r"uv run [^`\n]*?(?:oneoff-runner|uvicorn)\b.*", page.read_text())
    ]
    assert starts, "the docs start the runner somewhere"
    others = [(page, line) for page, line in starts if not line.startswith(OWNERS_FIRST_LINE)]
    assert [(page, line) for page, line in others if "--no-dev" not in line] == []


def test_uv_run_no_dev_in_a_fresh_clone_installs_no_dev_tool(tmp_path: Path):
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    clone = tmp_path / "clone"
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (clone / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            (clone / name.decode()).write_bytes(source.read_bytes())
    done = subprocess.run(
        ["uv", "run", "--no-dev", "--frozen", "--python", sys.executable]
        + ["oneoff-runner", "--help"],
        cwd=clone,
        env={k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV" and not k.startswith("UV_")},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr
    installed = {
        path.name.lower() for path in (clone / ".venv").glob("lib/python*/site-packages/*")
    }
    assert "fastapi" in installed
    assert [name for name in installed if name.startswith(DEV_ONLY)] == []
