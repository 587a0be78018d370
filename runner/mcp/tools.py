"""The MCP server's tools: every runner capability, with input schemas generated from the
shared models (`runner.models`) and arguments validated by those same models, so a bad call gets
the same field-naming message as on REST, as an `isError` result the model can act on. While a
run goes on, its phases arrive as progress notifications and its output as log messages."""

from __future__ import annotations

import asyncio
import functools
import inspect
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel, ConfigDict, Field, SkipValidation, ValidationError

from runner import __version__
from runner.errors import InvalidRequest, RunnerError
from runner.mcp.tasks import RunTasks, TasksServer, caller
from runner.mcp.text import (
    CANCEL_RUN,
    CREATE_VOLUME,
    DOCKER_HEALTH,
    GET_RUN,
    GET_RUN_LOGS,
    INSTRUCTIONS,
    LIST_CONTAINERS,
    LIST_IMAGES,
    RUN_CONTAINER,
    START_RUN,
)
from runner.models import (
    ContainerList,
    CreateVolumeRequest,
    CreateVolumeResult,
    Health,
    ImageList,
    RunRequest,
    RunResult,
)
from runner.run_status import RunLogs, RunStatus
from runner.service import RunnerService
from runner.tenancy import Tenant

MAX_TEXT_OUTPUT = 64 * 1024

RunIdArgument = Annotated[str, Field(pattern=r"^[0-9a-f]{16}$", description="From start_run.")]
Offset = Annotated[int, Field(ge=0, description="Bytes already read, from the last answer.")]


def status_summary(status: RunStatus) -> str:
    """The state first; the result's summary once there is one."""
    line = f"run {status.run_id}: {status.state}"
    if status.error:
        line += f": {status.error}"
    return line if status.result is None else f"{line}\n{run_summary(status.result)}"


def task_result(status: RunStatus) -> CallToolResult:
    """What a run_container task ends with: the call's own result, or why there is none."""
    if status.result is not None:
        return _structured(status.result, run_summary(status.result))
    reason = status.error or f"the run ended {status.state} without a result"
    return CallToolResult(content=[TextContent(type="text", text=reason)], is_error=True)


def _fields_as_parameters(model: type[BaseModel]) -> list[inspect.Parameter]:
    """Keyword parameters carrying `model`'s fields: their types, constraints, descriptions
    and examples make the tool's input schema; validation is skipped here and left to `model`
    itself, so the messages are the ones REST gives."""
    parameters = []
    for name, field in model.model_fields.items():
        documented = Field(description=field.description, examples=field.examples)
        metadata = (*field.metadata, SkipValidation, documented)
        annotation = Annotated[(field.annotation, *metadata)]  # type: ignore[name-defined]
        default = (
            inspect.Parameter.empty
            if field.is_required()
            else field.get_default(call_default_factory=True)
        )
        parameters.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
            )
        )
    return parameters


def _model_tool(
    model: type[BaseModel],
    output: type[BaseModel],
    body: Callable[[Any, Context], Awaitable[CallToolResult]],
) -> Callable[..., Awaitable[CallToolResult]]:
    """A tool function whose arguments are `model`'s fields and whose result is `output`."""

    async def tool(ctx: Context, **arguments: Any) -> CallToolResult:
        try:
            request = model.model_validate(arguments)
        except ValidationError as exc:
            return _error(InvalidRequest.from_validation(exc.errors()))
        try:
            return await body(request, ctx)
        except RunnerError as exc:
            return _error(exc)

    context = inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=Context)
    tool.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [context, *_fields_as_parameters(model)],
        return_annotation=Annotated[CallToolResult, output],
    )
    return tool


def _closed(tool: Tool) -> Tool:
    """Refuse unknown arguments (a misspelt field must not be silently dropped) and say so in
    the schema; the refusal names the field, never its value."""
    base = tool.fn_metadata.arg_model
    config = ConfigDict(**base.model_config, extra="forbid", hide_input_in_errors=True)
    closed: type[BaseModel] = type(base.__name__, (base,), {"model_config": config})
    tool.fn_metadata.arg_model = closed  # type: ignore[assignment]
    tool.parameters = closed.model_json_schema(by_alias=True)
    return tool


def _reporting(
    tool: Callable[..., Awaitable[CallToolResult]],
) -> Callable[..., Awaitable[CallToolResult]]:
    """A tool whose `RunnerError`s become `isError` results the model can act on."""

    @functools.wraps(tool)
    async def reported(*args: Any, **kwargs: Any) -> CallToolResult:
        try:
            return await tool(*args, **kwargs)
        except RunnerError as exc:
            return _error(exc)

    return reported


def _tenant(ctx: Context) -> Tenant:
    return caller(ctx.request_context.request)


def _error(exc: RunnerError) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=exc.message)], is_error=True)


def _structured(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json"),
    )


def run_summary(result: RunResult) -> str:
    """What a model reads first: the exit code, then the output, then what came back."""
    lines = [f"exit code {result.exit_code} ({result.status}) in {result.execution_time:.2f}s"]
    if result.timed_out:
        lines.append("the run hit its timeout and was killed")
    if result.oom_killed:
        lines.append("the container ran out of memory (raise `memory`)")
    for name, text, cut in (
        ("stdout", result.stdout, result.stdout_truncated),
        ("stderr", result.stderr, result.stderr_truncated),
    ):
        if text:
            shown = text[:MAX_TEXT_OUTPUT]
            more = cut or len(text) > len(shown)
            lines.append(f"--- {name}{' (truncated)' if more else ''} ---\n{shown}")
    for path, volume in result.volumes.items():
        lines.append(
            f"returned {volume.type} {path}: {len(volume.content)} base64 characters in "
            "structuredContent.volumes"
        )
    return "\n".join(lines)


class RunProgress:
    """Turns run events into MCP notifications, in order, without blocking the run."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.send, self.receive = anyio.create_memory_object_stream[tuple[str, str]](
            max_buffer_size=1024
        )
        self.step = 0

    def __call__(self, kind: str, text: str) -> None:
        try:
            self.send.send_nowait((kind, text))
        except anyio.WouldBlock:
            pass  # a client that cannot keep up loses live lines, never the result

    async def pump(self) -> None:
        async with self.receive:
            async for kind, text in self.receive:
                if kind == "phase":
                    self.step += 1
                    await self.ctx.report_progress(self.step, message=text)
                elif kind in ("stdout", "stderr"):
                    await self.ctx.log("info", text, logger_name=kind)


def build_server(service: Callable[[], RunnerService]) -> MCPServer:
    """The MCP server and its tools; `service` gives the running `RunnerService`."""
    server = TasksServer(
        "oneoff-runner",
        version=__version__,
        instructions=INSTRUCTIONS,
        log_level="WARNING",
        tools=[_closed(tool) for tool in _model_tools(service)],
        middleware=[RunTasks(service, task_result)],
    )
    _add_run_queries(server, service)
    _add_engine_queries(server, service)
    return server


def _model_tools(service: Callable[[], RunnerService]) -> list[Tool]:
    """The tools whose arguments are a request model: a run (now or started) and a volume."""

    async def run_container(request: RunRequest, ctx: Context) -> CallToolResult:
        progress = RunProgress(ctx)
        pump = asyncio.ensure_future(progress.pump())
        try:
            result = await service().run(request, _tenant(ctx), progress)
        finally:
            progress.send.close()
            await asyncio.gather(pump, return_exceptions=True)
        return _structured(result, run_summary(result))

    async def create_volume(request: CreateVolumeRequest, ctx: Context) -> CallToolResult:
        result = await service().create_volume(request, _tenant(ctx))
        return _structured(result, result.detail)

    async def start_run(request: RunRequest, ctx: Context) -> CallToolResult:
        status = await service().runs.start(request, _tenant(ctx), None)
        return _structured(status, f"{status_summary(status)}; follow it with get_run_logs")

    return [
        Tool.from_function(
            _model_tool(RunRequest, RunStatus, start_run), name="start_run", description=START_RUN
        ),
        Tool.from_function(
            _model_tool(RunRequest, RunResult, run_container),
            name="run_container",
            description=RUN_CONTAINER,
        ),
        Tool.from_function(
            _model_tool(CreateVolumeRequest, CreateVolumeResult, create_volume),
            name="create_volume",
            description=CREATE_VOLUME,
        ),
    ]


def _add_run_queries(server: MCPServer, service: Callable[[], RunnerService]) -> None:
    """Tools about async runs: state, output, cancel."""

    @server.tool(description=GET_RUN)
    @_reporting
    async def get_run(run_id: RunIdArgument, ctx: Context) -> Annotated[CallToolResult, RunStatus]:
        status = await service().runs.status(_tenant(ctx), run_id)
        return _structured(status, status_summary(status))

    @server.tool(description=GET_RUN_LOGS)
    @_reporting
    async def get_run_logs(
        run_id: RunIdArgument, ctx: Context, stdout_offset: Offset = 0, stderr_offset: Offset = 0
    ) -> Annotated[CallToolResult, RunLogs]:
        logs = await service().runs.output(_tenant(ctx), run_id, stdout_offset, stderr_offset)
        text = f"run {run_id}: {logs.state}\n{logs.stdout}"
        if logs.stderr:
            text += f"\n--- stderr ---\n{logs.stderr}"
        return _structured(logs, text)

    @server.tool(description=CANCEL_RUN)
    @_reporting
    async def cancel_run(
        run_id: RunIdArgument, ctx: Context
    ) -> Annotated[CallToolResult, RunStatus]:
        status = await service().runs.cancel(_tenant(ctx), run_id)
        return _structured(status, status_summary(status))


def _add_engine_queries(server: MCPServer, service: Callable[[], RunnerService]) -> None:
    """Tools about the engine itself: health, containers, images."""

    @server.tool(description=DOCKER_HEALTH)
    @_reporting
    async def docker_health() -> Annotated[CallToolResult, Health]:
        health = await service().health()
        return _structured(health, f"{health.backend} {health.version}: ok")

    @server.tool(description=LIST_CONTAINERS)
    @_reporting
    async def list_containers(
        ctx: Context,
        all: Annotated[bool, Field(description="Include stopped containers.")] = False,
        managed_only: Annotated[bool, Field(description="Only the runner's own.")] = True,
        status: Annotated[str | None, Field(description="e.g. running, exited")] = None,
    ) -> Annotated[CallToolResult, ContainerList]:
        found = await service().list_containers(
            _tenant(ctx), all_states=all, managed_only=managed_only
        )
        if status:
            found = [item for item in found if item.status.lower().startswith(status.lower())]
        listing = ContainerList(containers=found)
        return _structured(listing, f"{len(found)} container(s)")

    @server.tool(description=LIST_IMAGES)
    @_reporting
    async def list_images(
        reference: Annotated[str | None, Field(description="e.g. python or python:3.12")] = None,
    ) -> Annotated[CallToolResult, ImageList]:
        found = await service().list_images(reference=reference)
        tags = ", ".join(tag for image in found for tag in image.tags) or "none tagged"
        return _structured(ImageList(images=found), f"{len(found)} image(s): {tags}")
