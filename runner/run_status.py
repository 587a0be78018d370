"""Wire models of async runs (`POST /runs`, MCP `start_run`): where a run is, and its result.

Shared by REST, MCP and the CLI client, like `runner.models`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from runner.models import RunResult

RunState = Literal["queued", "pulling", "running", "succeeded", "failed", "timeout", "cancelled"]
FINISHED_STATES: frozenset[str] = frozenset({"succeeded", "failed", "timeout", "cancelled"})


class RunAccepted(BaseModel):
    run_id: str
    state: RunState
    status_url: str = Field(description="GET it for the state, and the result once finished.")
    logs_url: str = Field(description="GET it for output as Server-Sent Events, from the start.")


class RunStatus(BaseModel):
    run_id: str
    state: RunState = Field(
        description="queued → pulling → running → succeeded | failed | timeout | cancelled."
    )
    image: str
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error: str | None = Field(
        None,
        description="Why the run never ran (e.g. image not found), when it failed so; in a "
        "log stream's `exit` event, also why its result could not be read.",
    )
    result: RunResult | None = Field(
        None, description="The same result POST /run returns, once the run has finished."
    )

    @property
    def finished(self) -> bool:
        return self.state in FINISHED_STATES


class RunList(BaseModel):
    runs: list[RunStatus]


class RunLogs(BaseModel):
    """Output so far, from byte offsets the caller kept from its previous call."""

    run_id: str
    state: RunState
    stdout: str
    stderr: str
    stdout_offset: int = Field(description="Pass back as stdout_offset to get only newer output.")
    stderr_offset: int = Field(description="Pass back as stderr_offset to get only newer output.")
    finished: bool = Field(description="No more output will come; get_run has the result.")
