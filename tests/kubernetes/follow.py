"""Following an async run to its end over the REST API, as a client does."""

from __future__ import annotations

import json
from typing import Any

import httpx
from fastapi.testclient import TestClient


def final_state(api: TestClient, run_id: str) -> dict[str, Any]:
    """The `exit` event of the run's log stream: its final state and result."""
    with api.stream("GET", f"/runs/{run_id}/logs") as stream:
        lines = list(stream.iter_lines())
    exit_data = lines[lines.index("event: exit") + 1]
    return json.loads(exit_data.removeprefix("data: "))  # type: ignore[no-any-return]


def follow(api: TestClient | httpx.Client, run_id: str) -> tuple[str, dict[str, Any]]:
    """The run's log stream to its end, as a client reads it: (its output, the exit event)."""
    output, event = "", ""
    with api.stream("GET", f"/runs/{run_id}/logs") as stream:
        assert stream.status_code == 200, stream.read()
        for line in stream.iter_lines():
            if line.startswith("event: "):
                event = line.removeprefix("event: ")
            elif line.startswith("data: ") and event == "stdout":
                output += json.loads(line.removeprefix("data: "))
            elif line.startswith("data: ") and event == "exit":
                return output, json.loads(line.removeprefix("data: "))
    raise AssertionError(f"the log stream of {run_id} ended without its exit event")
