"""Pages loaded in headless Chromium (Debian's `chromium`, from scripts/ci-provision.sh), checked
in the DOM after the page's scripts ran, not in the HTML the server sent."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--virtual-time-budget=20000",
    "--enable-logging=stderr",
    "--v=0",
)
CONSOLE = ":CONSOLE"
"""How Chromium marks, in its log, a message of the page's console (errors included)."""


@dataclass(frozen=True)
class Loaded:
    dom: str
    console: list[str]
    """What the page wrote to its console, uncaught errors included."""


def load(url: str) -> Loaded:
    """The page's DOM once its scripts ran (and fetched what they fetch), from a fresh profile."""
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium missing; run scripts/ci-provision.sh", pytrace=False)
    with tempfile.TemporaryDirectory() as profile:
        done = subprocess.run(
            [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if CONSOLE in line]
    return Loaded(done.stdout, console)


def rendered(url: str) -> str:
    return load(url).dom
