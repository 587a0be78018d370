"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned) against our
server: every server scenario of the suite runs once; the ones that need a feature we do not
offer are listed, with the reason, in `conformance-expected.yml`. The suite's own baseline check
fails on an unlisted failure and on a listed scenario that passes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.mcp.nodejs import CONFORMANCE, node

pytestmark = pytest.mark.node
EXPECTED = Path(__file__).resolve().parent / "conformance-expected.yml"


def test_every_applicable_conformance_scenario_passes(mcp_url, tmp_path):
    ran = node(
        CONFORMANCE,
        "server",
        "--url",
        mcp_url,
        "--suite",
        "all",
        "--expected-failures",
        EXPECTED,
        "-o",
        tmp_path,
        timeout=300,
    )
    assert ran.returncode == 0, ran.stdout[-6000:] + ran.stderr[-2000:]
    assert "Baseline check passed" in ran.stdout
