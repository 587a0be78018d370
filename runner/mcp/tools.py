"""The MCP server's tools: every runner capability, with input schemas generated from the shared
models (`runner.models`, shaped by `runner.mcp.schema`) and arguments validated by those same
models, so a bad call gets the same field-naming message as on REST, as an `isError` result the
model can act on. Every call answers within `mcp_answer_seconds`: a run is an async run
followed by the call (`runner.mcp.follow`), with progress carrying its latest output
(`runner.mcp.progress`)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import mcp_types as types
from mcp.server.caching import CacheHint
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.tools import Tool
from mcp.server.mcpserver.utilities.func_metadata import func_metadata
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field, ValidationError

from runner import __version__
from runner.engine_models import (
    ContainerList,
    CreateVolumeRequest,
    CreateVolumeResult,
    Health,
    ImageList,
    PullImageRequest,
    RemovedVolume,
    VolumeList,
    VolumeName,
    WriteVolumeFile,
)
from runner.errors import InvalidRequest, IsDirectory, RunnerError
from runner.mcp import text
from runner.mcp.arguments import (
    EngineInfoArguments,
    ListContainersArguments,
    ListImagesArguments,
    McpRunRequest,
    NoArguments,
    ReadFileArguments,
    ReadVolumeArguments,
    RunId,
    WaitRunArguments,
    WriteVolumeFileArguments,
)
from runner.mcp.follow import ASSEMBLY_SECONDS, answer
from runner.mcp.progress import LogLevels, reporting
from runner.mcp.pulls import Pulls, PullView, still_pulling
from runner.mcp.reading import file_content, read_returned
from runner.mcp.resources import serve_resources
from runner.mcp.results import RUN_VIEW, ended_answer, error_result, expiry, structured
from runner.mcp.schema import input_schema, output_schema
from runner.mcp.tasks import RunTasks, TasksServer, caller
from runner.run_status import RunStatus
from runner.service import RunnerService
from runner.settings import Settings
from runner.tenancy import Tenant

Body = Callable[[Any, Context], Awaitable[CallToolResult]]
UNSERVED = ("prompts/list", "prompts/get", "completion/complete")
LIST_TTL_MS = 3_600_000
"""How long a client may cache the tool list (and the resource lists, which name no run): they
change only with the runner's version."""


class RunnerTool(Tool):
    """A tool that validates its arguments with the runner's own model (unknown ones refused by
    name, every message in the runner's words, as on REST) and turns `RunnerError`s into
    `isError` results the model can act on."""

    request_model: type[BaseModel] = Field(exclude=True)
    body: Body = Field(exclude=True)
    declared_output: dict[str, Any] | None = Field(None, exclude=True)

    @property
    def output_schema(self) -> dict[str, Any] | None:
        """What `structuredContent` holds (error results carry none)."""
        return self.declared_output

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
    hints: ToolAnnotations,
    *,
    output: type[BaseModel] | dict[str, Any] | None = None,
    description: str | None = None,
) -> RunnerTool:
    """A tool taking `model`'s fields, described by `text.<NAME>`, its structured content
    declared by `output` (a model, shown shallow, or a schema)."""

    async def placeholder() -> None:
        """Never called: `RunnerTool.run` calls `body`."""

    return RunnerTool(
        fn=placeholder,
        name=name,
        title=title,
        description=description or getattr(text, name.upper()),
        parameters=input_schema(model, text.FIELDS.get(name, {})),
        fn_metadata=func_metadata(placeholder, structured_output=False),
        is_async=True,
        annotations=hints,
        request_model=model,
        body=body,
        declared_output=output
        if isinstance(output, dict) or output is None
        else output_schema(output),
    )


READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
"""Hints differ from the spec's defaults only where they are set: a tool is presumed to write,
destructively, not idempotently, to an open world."""
REMOVES = ToolAnnotations(idempotent_hint=True, open_world_hint=False)
RUNS = ToolAnnotations(destructive_hint=False)
PULLS = ToolAnnotations(destructive_hint=False, idempotent_hint=True)
WRITES = REMOVES
"""Writing a file replaces what was there (destructive), and again changes nothing more."""
CREATES = ToolAnnotations(destructive_hint=False, idempotent_hint=True, open_world_hint=False)


def _tenant(ctx: Context[Any, Any]) -> Tenant:
    return caller(ctx.request_context.request)


def build_server(service: Callable[[], RunnerService], settings: Settings) -> MCPServer:
    """The MCP server and its tools; `service` gives the running `RunnerService`."""
    levels = LogLevels()
    server = TasksServer(
        "oneoff-runner",
        version=__version__,
        instructions=text.instructions(settings),
        log_level="WARNING",
        unlisted=UNLISTED,
        tools=[
            *_run_tools(service, levels, settings),
            *_volume_tools(service),
            *_engine_tools(service, settings),
        ],
        middleware=[RunTasks(service, _task_answer(service))],
        subscriptions=False,
        cache_hints={
            "tools/list": CacheHint(LIST_TTL_MS, "public"),
            "server/discover": CacheHint(LIST_TTL_MS, "public"),
            "resources/list": CacheHint(LIST_TTL_MS, "public"),
            "resources/templates/list": CacheHint(LIST_TTL_MS, "public"),
        },
    )
    handlers = server._lowlevel_server._request_handlers  # noqa: SLF001 - nothing to offer there
    for method in UNSERVED:
        handlers.pop(method, None)
    serve_resources(server, service)
    server._lowlevel_server.add_request_handler(  # noqa: SLF001
        "logging/setLevel", types.SetLevelRequestParams, levels.set_level
    )
    return server


def _task_answer(service: Callable[[], RunnerService]) -> Callable[[RunStatus], Any]:
    """What a run_container task ends with: the call's own answer, from the ended run."""

    async def of(status: RunStatus) -> CallToolResult:
        settings = service().settings
        await service().runs.settle(status.run_id, settings.mcp_answer_seconds)  # volumes free
        expires = expiry(status, settings.result_ttl_seconds)
        return await anyio.to_thread.run_sync(ended_answer, status, (0, 0), expires)

    return of


def read_only_tools(server: MCPServer) -> frozenset[str]:
    """The tools annotated `readOnlyHint`: calling them changes nothing."""
    tools = server._tool_manager.list_tools()  # noqa: SLF001 - the SDK's list is async only
    return frozenset(
        tool.name for tool in tools if tool.annotations and tool.annotations.read_only_hint
    )


def _run_tools(
    service: Callable[[], RunnerService], levels: LogLevels, settings: Settings
) -> list[Tool]:
    """The tools of runs: run (and follow for up to the answer bound), wait, read its files,
    cancel."""
    bound = settings.mcp_answer_seconds

    async def run_container(request: McpRunRequest, ctx: Context) -> CallToolResult:
        arrived = time.monotonic()
        runs, tenant = service().runs, _tenant(ctx)
        wait = bound if request.wait_seconds is None else min(request.wait_seconds, bound)
        timeout = request.timeout_seconds or service().settings.default_timeout_seconds
        started = await runs.start(request.as_run(), tenant, None, evictable=True)
        try:
            async with reporting(ctx, timeout, levels.wants(ctx, "info")) as progress:
                progress("phase", started.state)
                return await answer(
                    service(), tenant, started.run_id, arrived + wait, (0, 0), progress
                )
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True), contextlib.suppress(RunnerError):
                await runs.cancel(tenant, started.run_id)  # the caller pressed stop
            raise

    async def wait_run(request: WaitRunArguments, ctx: Context) -> CallToolResult:
        arrived = time.monotonic()
        tenant = _tenant(ctx)
        wait = bound if request.wait_seconds is None else min(request.wait_seconds, bound)
        await service().runs.require(tenant, request.run_id)
        offsets = (request.stdout_offset, request.stderr_offset)
        async with reporting(ctx, None, levels.wants(ctx, "info")) as progress:
            return await answer(
                service(), tenant, request.run_id, arrived + wait, offsets, progress
            )

    async def read_file(request: ReadFileArguments, ctx: Context) -> CallToolResult:
        found = await read_returned(service(), _tenant(ctx), request.uri)
        return CallToolResult(content=file_content(found))

    async def cancel_run(request: RunId, ctx: Context) -> CallToolResult:
        status = await service().runs.remove(_tenant(ctx), request.run_id)
        return structured(status, f"run {status.run_id}: {status.state}")

    return [
        _tool(
            "run_container",
            "Run a container",
            McpRunRequest,
            run_container,
            RUNS,
            output=RUN_VIEW,
            description=text.run_container(settings),
        ),
        _tool(
            "wait_run",
            "Wait for a run",
            WaitRunArguments,
            wait_run,
            READS,
            output=RUN_VIEW,
            description=text.wait_run(settings),
        ),
        _tool("read_file", "Read a returned file", ReadFileArguments, read_file, READS),
        _tool("cancel_run", "Cancel a run", RunId, cancel_run, REMOVES, output=RunStatus),
    ]


def _volume_tools(service: Callable[[], RunnerService]) -> list[Tool]:
    """The caller's named volumes: create, list, remove; read and write their files."""

    async def create_volume(request: CreateVolumeRequest, ctx: Context) -> CallToolResult:
        result = await service().create_volume(request, _tenant(ctx))
        return structured(result, result.detail)

    async def list_volumes(request: NoArguments, ctx: Context) -> CallToolResult:
        found = await service().list_volumes(_tenant(ctx))
        names = ", ".join(f"{v.name} (expires {v.expires_at or 'never'})" for v in found) or "none"
        return structured(VolumeList(volumes=found), f"{len(found)} volume(s): {names}")

    async def remove_volume(request: VolumeName, ctx: Context) -> CallToolResult:
        removed = await service().remove_volume(request.name, _tenant(ctx))
        return structured(removed, f"volume {removed.name!r} removed")

    async def read_volume(request: ReadVolumeArguments, ctx: Context) -> CallToolResult:
        workspaces, tenant = service().workspaces, _tenant(ctx)
        if request.name is None:
            return await list_volumes(NoArguments(), ctx)
        if request.path:
            with contextlib.suppress(IsDirectory):
                found = await workspaces.read(request.name, request.path, tenant)
                return structured(found, found.content)
        listing = await workspaces.files(request.name, request.path, tenant)
        return structured(listing, text.listing(listing))

    async def write_volume_file(request: WriteVolumeFileArguments, ctx: Context) -> CallToolResult:
        body = WriteVolumeFile.model_validate(request.model_dump(exclude={"name"}))
        written = await service().workspaces.write(request.name, body, _tenant(ctx))
        return structured(
            written,
            f"wrote {written.path} ({written.size} bytes); volume uses {written.total_bytes}",
        )

    return [
        _tool(
            "create_volume",
            "Create a volume",
            CreateVolumeRequest,
            create_volume,
            CREATES,
            output=CreateVolumeResult,
        ),
        _tool("list_volumes", "List your volumes", NoArguments, list_volumes, READS),
        _tool(
            "remove_volume",
            "Remove a volume",
            VolumeName,
            remove_volume,
            REMOVES,
            output=RemovedVolume,
        ),
        _tool("read_volume", "Read volumes", ReadVolumeArguments, read_volume, READS),
        _tool(
            "write_volume_file",
            "Write a volume's file",
            WriteVolumeFileArguments,
            write_volume_file,
            WRITES,
        ),
    ]


def _engine_tools(service: Callable[[], RunnerService], settings: Settings) -> list[Tool]:
    """Tools about the engine: one to look at it (health, containers, images), one to pull. The
    tools it replaced answer under their old names, unlisted (callers of oneoff-docker-runner
    call them by name)."""

    async def health(ctx: Context) -> CallToolResult:
        found = await service().health()
        return structured(found, f"{found.backend} {found.version}: ok")

    async def containers(request: ListContainersArguments, ctx: Context) -> CallToolResult:
        found = await service().list_containers(
            _tenant(ctx), all_states=request.all, managed_only=request.managed_only
        )
        if request.status:
            wanted = request.status.lower()
            found = [item for item in found if item.status.lower().startswith(wanted)]
        return structured(ContainerList(containers=found), f"{len(found)} container(s)")

    async def images(request: ListImagesArguments, ctx: Context) -> CallToolResult:
        found = await service().list_images(_tenant(ctx), reference=request.reference)
        tags = ", ".join(tag for image in found for tag in image.tags) or "none tagged"
        return structured(ImageList(images=found), f"{len(found)} image(s): {tags}")

    async def engine_info(request: EngineInfoArguments, ctx: Context) -> CallToolResult:
        if (misplaced := request.misplaced()) is not None:
            raise InvalidRequest(
                f"{misplaced}: does not apply to what: {request.what!r}", field=misplaced
            )
        if request.what == "containers":
            return await containers(ListContainersArguments(**_given(request)), ctx)
        if request.what == "images":
            return await images(ListImagesArguments(**_given(request)), ctx)
        return await health(ctx)

    async def runner_health(request: NoArguments, ctx: Context) -> CallToolResult:
        return await health(ctx)

    pulls = Pulls()
    within = settings.mcp_answer_seconds - ASSEMBLY_SECONDS

    async def pull_image(request: PullImageRequest, ctx: Context) -> CallToolResult:
        async with reporting(ctx, None, send_output=False) as progress:
            view, lasted = await pulls.follow(service(), request, _tenant(ctx), progress, within)
        if view.status == "pulling":
            return structured(view, still_pulling(view, lasted))
        return structured(view, f"pulled {view.image}: {view.id} ({view.size} bytes)")

    alias = "The old name of engine_info {}."
    return [
        _tool(
            "engine_info",
            "Look at the engine",
            EngineInfoArguments,
            engine_info,
            READS,
            output=ENGINE_VIEW,
        ),
        _tool("pull_image", "Pull an image", PullImageRequest, pull_image, PULLS, output=PullView),
        *(
            _tool(name, title, model, body, READS, output=shape, description=alias.format(what))
            for name, title, model, body, shape, what in (
                ("runner_health", "Check the backend", NoArguments, runner_health, Health, "{}"),
                ("docker_health", "Check the backend", NoArguments, runner_health, Health, "{}"),
                (
                    "list_containers",
                    "List containers",
                    ListContainersArguments,
                    containers,
                    ContainerList,
                    '{"what": "containers"}',
                ),
                (
                    "list_images",
                    "List images",
                    ListImagesArguments,
                    images,
                    ImageList,
                    '{"what": "images"}',
                ),
            )
        ),
    ]


ENGINE_VIEW = {
    "type": "object",
    "properties": {
        "version": {"type": "string"},
        "containers": {"type": "array"},
        "images": {"type": "array"},
    },
}
"""engine_info's `structuredContent`: `Health`, `ContainerList` or `ImageList` by `what`."""
UNLISTED = frozenset(
    {"runner_health", "docker_health", "list_containers", "list_images", "list_volumes"}
)
"""Tools callable by name but not listed: engine_info and read_volume took their place."""


def _given(request: EngineInfoArguments) -> dict[str, Any]:
    """The filters the caller gave (`what` aside)."""
    return request.model_dump(include=request.model_fields_set - {"what"})
