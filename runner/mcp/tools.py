"""The MCP server's tools: every runner capability, with input schemas generated from the shared
models (`runner.models`, shaped by `runner.mcp.schema`) and arguments validated by those same
models, so a bad call gets the same field-naming message as on REST, as an `isError` result the
model can act on. While a run goes on, progress and its output arrive as notifications
(`runner.mcp.progress`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from runner import __version__
from runner.engine_models import (
    ContainerList,
    CreateVolumeRequest,
    ImageList,
    PullImageRequest,
    VolumeList,
    VolumeName,
)
from runner.errors import InvalidRequest, RunnerError
from runner.mcp import text
from runner.mcp.arguments import (
    ListContainersArguments,
    ListImagesArguments,
    McpRunRequest,
    NoArguments,
    RunId,
    RunLogsArguments,
)
from runner.mcp.progress import LogLevels, reporting
from runner.mcp.results import error_result, run_result, status_summary, structured, task_result
from runner.mcp.schema import input_schema
from runner.mcp.tasks import RunTasks, TasksServer, caller
from runner.service import RunnerService
from runner.settings import Settings
from runner.tenancy import Tenant

Body = Callable[[Any, Context], Awaitable[CallToolResult]]
UNSERVED = ("prompts/list", "prompts/get", "resources/list", "resources/read")
UNSERVED_TEMPLATES = ("resources/templates/list",)


class RunnerTool(Tool):
    """A tool that validates its arguments with the runner's own model (unknown ones refused by
    name, every message in the runner's words, as on REST) and turns `RunnerError`s into
    `isError` results the model can act on."""

    request_model: type[BaseModel] = Field(exclude=True)
    body: Body = Field(exclude=True)

    async def run(
        self, arguments: dict[str, Any], context: Context[Any, Any], convert_result: bool = False
    ) -> CallToolResult:
        try:
            request = self.request_model.model_validate(arguments)
        except ValidationError as exc:
            return error_result(self._invalid(exc))
        try:
            return await self.body(request, context)
        except RunnerError as exc:
            return error_result(exc)

    def _invalid(self, exc: ValidationError) -> InvalidRequest:
        """The model's message, except for an unknown argument: that names what the tool takes."""
        invalid = InvalidRequest.from_validation(exc.errors())
        first = exc.errors()[0]
        if first["type"] == "extra_forbidden":
            known = ", ".join(self.request_model.model_fields)
            invalid.message = (
                f"{invalid.field}: not an argument of {self.name}; it takes {known}"
                if len(first["loc"]) == 1
                else f"{invalid.field}: unknown field; check its spelling in the input schema"
            )
        return invalid


def _tool(
    name: str,
    title: str,
    model: type[BaseModel],
    body: Body,
    *,
    read_only: bool = False,
    description: str | None = None,
    explained: bool = True,
) -> RunnerTool:
    """A tool taking `model`'s fields, described by `text.<NAME>`."""

    async def placeholder() -> None:
        """Never called: `RunnerTool.run` calls `body`."""

    destructive = name in ("cancel_run", "remove_volume")
    return RunnerTool(
        fn=placeholder,
        name=name,
        title=title,
        description=description or getattr(text, name.upper()),
        parameters=input_schema(model, explained=explained),
        fn_metadata=func_metadata(placeholder, structured_output=False),
        is_async=True,
        annotations=(
            ToolAnnotations(read_only_hint=True)
            if read_only
            else ToolAnnotations(destructive_hint=destructive)
        ),
        request_model=model,
        body=body,
    )


def _tenant(ctx: Context[Any, Any]) -> Tenant:
    return caller(ctx.request_context.request)


def build_server(service: Callable[[], RunnerService], settings: Settings) -> MCPServer:
    """The MCP server and its tools; `service` gives the running `RunnerService`."""
    levels = LogLevels()
    server = TasksServer(
        "oneoff-runner",
        version=__version__,
        instructions=text.INSTRUCTIONS,
        log_level="WARNING",
        tools=[
            *_run_tools(service, levels, settings),
            *_volume_tools(service),
            *_query_tools(service),
            *_engine_tools(service),
        ],
        middleware=[RunTasks(service, task_result)],
        subscriptions=False,
    )
    handlers = server._lowlevel_server._request_handlers  # noqa: SLF001 - nothing to offer there
    for method in (*UNSERVED, *UNSERVED_TEMPLATES, "completion/complete"):
        handlers.pop(method, None)
    server._lowlevel_server.add_request_handler(  # noqa: SLF001
        "logging/setLevel", types.SetLevelRequestParams, levels.set_level
    )
    return server


def read_only_tools(server: MCPServer) -> frozenset[str]:
    """The tools annotated `readOnlyHint`: calling them changes nothing."""
    tools = server._tool_manager.list_tools()  # noqa: SLF001 - the SDK's list is async only
    return frozenset(
        tool.name for tool in tools if tool.annotations and tool.annotations.read_only_hint
    )


def _run_tools(
    service: Callable[[], RunnerService], levels: LogLevels, settings: Settings
) -> list[Tool]:
    """The tools that run or make things: a run (now or started) and a volume."""

    async def run_container(request: McpRunRequest, ctx: Context) -> CallToolResult:
        timeout = request.timeout_seconds or service().settings.default_timeout_seconds
        async with reporting(ctx, timeout, levels.wants(ctx, "info")) as progress:
            result, _ = await service().run(request.as_run(), _tenant(ctx), progress)
        return run_result(result)

    async def start_run(request: McpRunRequest, ctx: Context) -> CallToolResult:
        status = await service().runs.start(request.as_run(), _tenant(ctx), None)
        return structured(status, f"{status_summary(status)}; follow it with get_run_logs")

    return [
        _tool(
            "run_container",
            "Run a container",
            McpRunRequest,
            run_container,
            description=text.run_container(settings),
        ),
        _tool("start_run", "Start a long run", McpRunRequest, start_run, explained=False),
    ]


def _volume_tools(service: Callable[[], RunnerService]) -> list[Tool]:
    """The caller's named volumes: create, list, remove."""

    async def create_volume(request: CreateVolumeRequest, ctx: Context) -> CallToolResult:
        result = await service().create_volume(request, _tenant(ctx))
        return structured(result, result.detail)

    async def list_volumes(request: NoArguments, ctx: Context) -> CallToolResult:
        found = await service().list_volumes(_tenant(ctx))
        names = ", ".join(volume.name for volume in found) or "none"
        return structured(VolumeList(volumes=found), f"{len(found)} volume(s): {names}")

    async def remove_volume(request: VolumeName, ctx: Context) -> CallToolResult:
        removed = await service().remove_volume(request.name, _tenant(ctx))
        return structured(removed, f"volume {removed.name!r} removed")

    return [
        _tool("create_volume", "Create a volume", CreateVolumeRequest, create_volume),
        _tool("list_volumes", "List your volumes", NoArguments, list_volumes, read_only=True),
        _tool("remove_volume", "Remove a volume", VolumeName, remove_volume),
    ]


def _query_tools(service: Callable[[], RunnerService]) -> list[Tool]:
    """Tools about async runs: state, output, cancel."""

    async def get_run(request: RunId, ctx: Context) -> CallToolResult:
        status = await service().runs.status(_tenant(ctx), request.run_id)
        return structured(status, status_summary(status))

    async def get_run_logs(request: RunLogsArguments, ctx: Context) -> CallToolResult:
        logs = await service().runs.output(
            _tenant(ctx), request.run_id, request.stdout_offset, request.stderr_offset
        )
        shown = f"run {request.run_id}: {logs.state}\n{logs.stdout}"
        if logs.stderr:
            shown += f"\n--- stderr ---\n{logs.stderr}"
        return structured(logs, shown)

    async def cancel_run(request: RunId, ctx: Context) -> CallToolResult:
        status = await service().runs.remove(_tenant(ctx), request.run_id)
        return structured(status, status_summary(status))

    return [
        _tool("get_run", "Get a run", RunId, get_run, read_only=True),
        _tool(
            "get_run_logs", "Read a run's output", RunLogsArguments, get_run_logs, read_only=True
        ),
        _tool("cancel_run", "Cancel a run", RunId, cancel_run),
    ]


def _engine_tools(service: Callable[[], RunnerService]) -> list[Tool]:
    """Tools about the engine: health, containers, images (listed and pulled)."""

    async def runner_health(request: NoArguments, ctx: Context) -> CallToolResult:
        health = await service().health()
        return structured(health, f"{health.backend} {health.version}: ok")

    async def list_containers(request: ListContainersArguments, ctx: Context) -> CallToolResult:
        found = await service().list_containers(
            _tenant(ctx), all_states=request.all, managed_only=request.managed_only
        )
        if request.status:
            wanted = request.status.lower()
            found = [item for item in found if item.status.lower().startswith(wanted)]
        return structured(ContainerList(containers=found), f"{len(found)} container(s)")

    async def pull_image(request: PullImageRequest, ctx: Context) -> CallToolResult:
        async with reporting(ctx, None, send_output=False) as progress:
            pulled = await service().pull_image(request, _tenant(ctx), progress)
        return structured(pulled, f"pulled {pulled.image}: {pulled.id} ({pulled.size} bytes)")

    async def list_images(request: ListImagesArguments, ctx: Context) -> CallToolResult:
        found = await service().list_images(_tenant(ctx), reference=request.reference)
        tags = ", ".join(tag for image in found for tag in image.tags) or "none tagged"
        return structured(ImageList(images=found), f"{len(found)} image(s): {tags}")

    return [
        _tool("runner_health", "Check the backend", NoArguments, runner_health, read_only=True),
        _tool("docker_health", "Check the backend", NoArguments, runner_health, read_only=True),
        _tool(
            "list_containers",
            "List containers",
            ListContainersArguments,
            list_containers,
            read_only=True,
        ),
        _tool("list_images", "List images", ListImagesArguments, list_images, read_only=True),
        _tool("pull_image", "Pull an image", PullImageRequest, pull_image),
    ]
