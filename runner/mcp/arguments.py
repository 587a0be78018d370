"""The arguments of the MCP tools that have no REST request model of their own. Like the shared
models, they refuse unknown fields, so a misspelt argument is named rather than dropped."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from runner.models import PullPolicy, RunRequest


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class NoArguments(Arguments):
    pass


class RunId(Arguments):
    run_id: str = Field(pattern=r"^[0-9a-f]{16}$", description="From start_run.")


class RunLogsArguments(RunId):
    stdout_offset: int = Field(0, ge=0, description="stdout_offset of the last answer.")
    stderr_offset: int = Field(0, ge=0, description="stderr_offset of the last answer.")


class ListContainersArguments(Arguments):
    all: bool = Field(False, description="Include stopped containers.")
    managed_only: bool = Field(True, description="Only the runner's own.")
    status: str | None = Field(None, description="e.g. running, exited")


class ListImagesArguments(Arguments):
    reference: str | None = Field(None, description="e.g. python or python:3.12")


class McpRunRequest(RunRequest):
    """A run as MCP callers send it: the image is pulled only when missing by default (`always`
    is slow, and fails offline), unlike REST's documented `always`."""

    pull_policy: PullPolicy = Field(
        "missing",
        description="missing (default): pull if absent; always: pull first; never: local only.",
    )
