"""The arguments of the MCP tools that have no REST request model of their own. Like the shared
models, they refuse unknown fields, so a misspelt argument is named rather than dropped."""

from __future__ import annotations

import base64
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from runner.engine_models import volume_path
from runner.models import (
    NOT_BOOLEAN,
    RUN_ID_PATTERN,
    VOLUME_NAME_PATTERN,
    Argv,
    PullPolicy,
    RunRequest,
)

ANSWER_CAP = 55.0
"""The most `wait_seconds` may ask for (the operator's `mcp_answer_seconds` bounds it below)."""


class Arguments(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class NoArguments(Arguments):
    pass


class RunId(Arguments):
    run_id: str = Field(pattern=RUN_ID_PATTERN, description="From run_container.")


WaitSeconds = Annotated[float | None, NOT_BOOLEAN]


class WaitRunArguments(RunId):
    wait_seconds: WaitSeconds = Field(
        None, ge=0, le=ANSWER_CAP, allow_inf_nan=False, description="0: only look."
    )
    stdout_offset: Annotated[int, NOT_BOOLEAN] = Field(0, ge=0, description="From the last answer.")
    stderr_offset: Annotated[int, NOT_BOOLEAN] = Field(0, ge=0, description="Likewise.")


class ReadFileArguments(Arguments):
    uri: str = Field(max_length=4096, description="A run:// uri from a run's answer.")


class ReadVolumeArguments(Arguments):
    """read_volume: without a name, the caller's volumes; with one, a file or a directory."""

    name: str | None = Field(None, pattern=VOLUME_NAME_PATTERN)
    path: str = ""

    _path = field_validator("path")(volume_path)


class WriteVolumeFileArguments(Arguments):
    name: str = Field(pattern=VOLUME_NAME_PATTERN)
    path: str
    content: str
    encoding: Literal["text", "base64"] = "text"

    _path = field_validator("path")(volume_path)


class ListContainersArguments(Arguments):
    all: bool = Field(False, description="Include stopped containers.")
    managed_only: bool = Field(True, description="false: every container (operators only).")
    status: str | None = Field(None, description="e.g. running, exited")


class ListImagesArguments(Arguments):
    reference: str | None = Field(None, description="e.g. python or python:3.12")


EngineView = Literal["health", "containers", "images"]


class EngineInfoArguments(ListContainersArguments, ListImagesArguments):
    """engine_info's: what to look at, and the filters of that listing only."""

    what: EngineView = Field("health", description="health, containers or images.")

    def misplaced(self) -> str | None:
        """A filter given that does not apply to `what`."""
        applies = {"health": set(), "containers": {"all", "managed_only", "status"}}
        wrong = self.model_fields_set - {"what"} - applies.get(self.what, {"reference"})
        return min(wrong, default=None)


class McpRunRequest(RunRequest):
    """A run as MCP callers send it: the image is pulled only when missing by default (`always`
    is slow, and fails offline), unlike REST's documented `always`."""

    pull_policy: PullPolicy = Field(
        "missing",
        description="missing (default): pull if absent; always: pull first; never: local only.",
    )

    command: Argv = Field(None, description="Exec form: a list, or a string split like a shell.")
    entrypoint: Argv = Field(None, description="Replaces the image's; as `command`.")
    scratch: str | None = Field(None, description="Disk limit, e.g. 2g.")
    runtime: str | None = Field(
        None, min_length=1, description="e.g. runsc (gVisor), if the operator allows it."
    )
    script: str | None = Field(
        None, description="Shell text, run with /bin/sh -c (instead of `command`)."
    )
    files: dict[str, str | TextFile] = Field(
        default_factory=dict,
        description='Absolute path: its text, or {"content": <text>, "mode": "0755"}.',
    )
    outputs: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="Absolute directories handed back after the run.",
    )
    wait_seconds: WaitSeconds = Field(
        None, ge=0, le=ANSWER_CAP, allow_inf_nan=False, description="0: answer at once."
    )

    @model_validator(mode="before")
    @classmethod
    def _file_needs_content(cls, data: Any) -> Any:
        """A file volume without content is refused in MCP's words (REST's message speaks of
        multipart parts, which MCP has not)."""
        volumes = data.get("volumes") if isinstance(data, dict) else None
        for key, volume in (volumes or {}).items() if isinstance(volumes, dict) else ():
            if isinstance(volume, dict) and volume.get("type") == "file":
                if volume.get("content") is None:
                    raise ValueError(
                        f"volumes[{key!r}]: a file volume needs `content` (base64; or use "
                        "`files` for text); to get back a file the run writes, name its "
                        "directory in `outputs`"
                    )
        return data

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

    @field_validator("outputs")
    @classmethod
    def _output_directories(cls, outputs: list[str], info: ValidationInfo) -> list[str]:
        taken = {key.split(":")[0].rstrip("/") for key in info.data.get("volumes") or {}}
        for path in outputs:
            if not path.startswith("/") or path.rstrip("/") == "":
                raise ValueError(f"{path!r} must be an absolute directory other than /")
            if path.rstrip("/") in taken:
                raise ValueError(f"{path!r} is also in `volumes`: name it in one of the two")
        return outputs

    def as_run(self) -> RunRequest:
        """The request the runner runs: the script as a command, the files as file volumes."""
        fields = self.model_dump(
            exclude={"script", "files", "outputs", "wait_seconds"}, exclude_none=True
        )
        if self.script is not None:
            fields["command"] = ["/bin/sh", "-c", self.script]
        volumes = dict(fields.get("volumes", {}))
        for path, file in self.files.items():
            text, mode = (file, None) if isinstance(file, str) else (file.content, file.mode)
            content = base64.b64encode(text.encode()).decode()
            volumes[path] = {"type": "file", "content": content, "mode": mode}
        for path in self.outputs:
            volumes[path.rstrip("/")] = {"type": "directory", "response": True}
        fields["volumes"] = volumes
        return RunRequest.model_validate(fields)


class TextFile(Arguments):
    content: str = Field(description="The file's text.")
    mode: str | None = Field(None, description='Octal permissions, e.g. "0755".')


McpRunRequest.model_rebuild()
