"""Following an async run to its end over the REST API, as a client does."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient


def final_state(api: TestClient, run_id: str) -> dict[str, Any]:
    """The `exit` event of the run's log stream: its final state and result."""
    with api.stream("GET", f"/runs/{run_id}/logs") as stream:
        lines = list(stream.iter_lines())
    exit_data = lines[lines.index("event: exit") + 1]
    return json.loads(exit_data.removeprefix("data: "))  # type: ignore[no-any-return]
