"""The arguments of the MCP tools that have no REST request model of their own. Like the shared
models, they refuse unknown fields, so a misspelt argument is named rather than dropped."""

from __future__ import annotations

import base64
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from runner.models import NOT_BOOLEAN, RUN_ID_PATTERN, Argv, PullPolicy, RunRequest


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class NoArguments(Arguments):
    pass


class RunId(Arguments):
    run_id: str = Field(pattern=RUN_ID_PATTERN, description="From start_run.")


class RunLogsArguments(RunId):
    stdout_offset: Annotated[int, NOT_BOOLEAN] = Field(
        0, ge=0, description="stdout_offset of the last answer."
    )
    stderr_offset: Annotated[int, NOT_BOOLEAN] = Field(
        0, ge=0, description="stderr_offset of the last answer."
    )


class ListContainersArguments(Arguments):
    all: bool = Field(False, description="Include stopped containers.")
    managed_only: bool = Field(True, description="false: every container (operators only).")
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

    entrypoint: Argv = Field(None, description="Replaces the image's; forms as `command`.")
    scratch: str | None = Field(None, description="Disk limit, e.g. 2g.")
    script: str | None = Field(
        None, description="Shell text, run with /bin/sh -c (instead of `command`)."
    )
    files: dict[str, str | TextFile] = Field(
        default_factory=dict,
        description='Absolute path: its text, or {"content": <text>, "mode": "0755"}.',
    )

    @field_validator("script")
    @classmethod
    def _script_or_command(cls, script: str | None, info: ValidationInfo) -> str | None:
        if script is not None and info.data.get("command") is not None:
            raise ValueError("give either script or command, not both")
        return script

    @field_validator("files")
    @classmethod
    def _absolute(cls, files: dict[str, str | TextFile]) -> dict[str, str | TextFile]:
        for path in files:
            if not path.startswith("/"):
                raise ValueError(f"{path!r} must be an absolute path")
        return files

    def as_run(self) -> RunRequest:
        """The request the runner runs: the script as a command, the files as file volumes."""
        fields = self.model_dump(exclude={"script", "files"}, exclude_none=True)
        if self.script is not None:
            fields["command"] = ["/bin/sh", "-c", self.script]
        volumes = dict(fields.get("volumes", {}))
        for path, file in self.files.items():
            text, mode = (file, None) if isinstance(file, str) else (file.content, file.mode)
            content = base64.b64encode(text.encode()).decode()
            volumes[path] = {"type": "file", "content": content, "mode": mode}
        fields["volumes"] = volumes
        return RunRequest.model_validate(fields)


class TextFile(Arguments):
    content: str = Field(description="The file's text.")
    mode: str | None = Field(None, description='Octal permissions, e.g. "0755".')


McpRunRequest.model_rebuild()
