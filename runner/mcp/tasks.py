"""MCP tasks backed by async runs, on both wires that define them.

2025-11-25 (core, experimental): a client that augments a `run_container` call with `task` gets a
task at once; `tasks/get`, `tasks/result`, `tasks/cancel`, `tasks/list` follow it.
2026-07-28 (the `io.modelcontextprotocol/tasks` extension, SEP-2663): a client that declares the
extension gets a task for `run_container`; `tasks/get` (the result inlined once completed),
`tasks/update`, `tasks/cancel` follow it.

Either way the run starts as `POST /runs` would start it, its run id is the task id, and every
answer comes from the run's state, which the backend keeps: any replica answers, a restart loses
nothing. Tasks belong to the tenant whose token started them; for another they do not exist.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.shared.exceptions import MCPError
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from pydantic import BaseModel, ValidationError

from runner.errors import InvalidRequest, NotFound, RunnerError
from runner.mcp.arguments import McpRunRequest
from runner.mcp.results import error_result
from runner.run_status import RunStatus
from runner.service import RunnerService
from runner.tenancy import Tenant, tenant_of

TASKS_VERSION = "2025-11-25"
EXTENSION = "io.modelcontextprotocol/tasks"
EXTENSION_METHODS = frozenset({"tasks/get", "tasks/update", "tasks/cancel"})
TASK_TOOLS = frozenset({"run_container"})
POLL_MILLISECONDS = 2000
RELATED_TASK = "io.modelcontextprotocol/related-task"

ResultOf = Callable[[RunStatus], Awaitable[types.CallToolResult]]


def caller(request: Any) -> Tenant:
    """The tenant of an MCP request: its HTTP request's (stdio has none: the local user)."""
    return tenant_of(getattr(request, "scope", None))


class RunTasks:
    """Server middleware: it answers task-augmented calls and the `tasks/*` methods itself (the
    SDK validates a `tools/call` result as a CallToolResult and serves no `tasks/*`), and adds
    the `tasks` capability to the handshake's answer."""

    def __init__(self, service: Callable[[], RunnerService], result_of: ResultOf) -> None:
        self.service = service
        self.result_of = result_of
        self.methods: dict[str, Callable[[dict[str, Any], Tenant], Awaitable[BaseModel]]] = {
            "tasks/get": self._get,
            "tasks/result": self._result,
            "tasks/cancel": self._cancel,
            "tasks/list": self._list,
        }

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        params = dict(ctx.params or {})
        tenant = caller(ctx.request)
        if ctx.method == "initialize":
            return _with_tasks_capability(await call_next(ctx))
        if ctx.method == "server/discover":
            return _with_tasks_extension(await call_next(ctx))
        try:
            if ctx.protocol_version == TASKS_VERSION:
                answer = await self._core(ctx.method, params, tenant)
            elif ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
                answer = await self._extension(ctx.method, params, tenant)
            else:
                answer = None
        except RunnerError as exc:
            raise _protocol_error(exc) from exc
        return answer if answer is not None else await call_next(ctx)

    async def _core(
        self, method: str, params: dict[str, Any], tenant: Tenant
    ) -> dict[str, Any] | None:
        """2025-11-25; None: not ours to answer."""
        if method == "tools/call" and params.get("task") is not None:
            if params.get("name") in TASK_TOOLS:
                started = await self._start(params, tenant)
                if isinstance(started, RunStatus):
                    return _wire(types.CreateTaskResult(task=self._task(started)))
                return _wire(started)
        if method in self.methods:
            return _wire(await self.methods[method](params, tenant))
        return None

    async def _extension(
        self, method: str, params: dict[str, Any], tenant: Tenant
    ) -> dict[str, Any] | None:
        """2026-07-28, for clients that declare the extension; None: not ours to answer."""
        if method == "tools/call" and params.get("name") in TASK_TOOLS and _declares(params):
            started = await self._start(params, tenant)
            if isinstance(started, RunStatus):
                return {"resultType": "task", **self._extension_task(started)}
            return {"resultType": "complete", **_wire(started)}
        if method not in EXTENSION_METHODS:
            return None
        if not _declares(params):
            raise MCPError(
                code=types.MISSING_REQUIRED_CLIENT_CAPABILITY,
                message="Missing required client capability",
                data={"requiredCapabilities": {"extensions": {EXTENSION: {}}}},
            )
        runs = self.service().runs
        if method == "tasks/cancel":
            await runs.cancel(tenant, _task_id(params))
            return {"resultType": "complete"}
        status = await runs.status(tenant, _task_id(params), with_result=False)
        if method == "tasks/update":  # no run ever asks for input: nothing to take
            return {"resultType": "complete"}
        task = self._extension_task(status)
        if task["status"] == "completed":
            task["result"] = _wire(await self.result_of(await runs.status(tenant, status.run_id)))
        return {"resultType": "complete", **task}

    def _extension_task(self, status: RunStatus) -> dict[str, Any]:
        """The 2026 shape: a run that never ran completed with a tool error (`failed` is for
        JSON-RPC errors only)."""
        task = _wire(self._task(status))
        task["ttlMs"], task["pollIntervalMs"] = task.pop("ttl"), task.pop("pollInterval")
        if task["status"] == "failed":
            task["status"] = "completed"  # its result is the tool error
        return task

    async def _start(
        self, params: dict[str, Any], tenant: Tenant
    ) -> RunStatus | types.CallToolResult:
        """The started run, or the tool error saying why it could not start."""
        try:
            request = McpRunRequest.model_validate(params.get("arguments") or {})
            return await self.service().runs.start(request.as_run(), tenant, None)
        except ValidationError as exc:
            return error_result(InvalidRequest.from_validation(exc.errors()))
        except RunnerError as exc:
            return error_result(exc)

    async def _get(self, params: dict[str, Any], tenant: Tenant) -> BaseModel:
        runs = self.service().runs
        status = await runs.status(tenant, _task_id(params), with_result=False)
        return types.GetTaskResult(**self._task(status).model_dump())

    async def _result(self, params: dict[str, Any], tenant: Tenant) -> BaseModel:
        """Blocks until the run ends, as the protocol asks of `tasks/result`."""
        task_id = _task_id(params)
        result = await self.result_of(await self.service().runs.wait(tenant, task_id))
        result.meta = {**(result.meta or {}), RELATED_TASK: {"taskId": task_id}}
        return result

    async def _cancel(self, params: dict[str, Any], tenant: Tenant) -> BaseModel:
        """A task that has ended cannot be cancelled (2025-11-25: -32602)."""
        runs = self.service().runs
        task_id = _task_id(params)
        message = f"taskId: task {task_id} has already ended; there is nothing to cancel"
        if (await runs.status(tenant, task_id, with_result=False)).finished:
            raise MCPError(code=types.INVALID_PARAMS, message=message)
        status = await runs.cancel(tenant, task_id)
        if status.state != "cancelled":  # it ended meanwhile
            raise MCPError(code=types.INVALID_PARAMS, message=message)
        return types.CancelTaskResult(**self._task(status).model_dump())

    async def _list(self, params: dict[str, Any], tenant: Tenant) -> BaseModel:
        found = await self.service().runs.list_runs(tenant, None, None, 1000)
        return types.ListTasksResult(tasks=[self._task(status) for status in found.runs])

    def _task(self, status: RunStatus) -> types.Task:
        ttl = self.service().settings.result_ttl_seconds
        updated = status.finished_at or status.started_at or status.created_at
        return types.Task(
            task_id=status.run_id,
            status=_task_status(status),
            status_message=status.error or status.state,
            created_at=_iso(status.created_at),
            last_updated_at=_iso(updated),
            ttl=int(ttl * 1000),
            poll_interval=POLL_MILLISECONDS,
        )


class TasksServer(MCPServer):
    """Lists `run_container` with `execution.taskSupport: optional`, which the SDK's tool
    registry has no field for; answers a call of an unknown tool with the protocol error the
    spec asks for (-32602), where the SDK answers with a tool error (`isError`) that a client
    takes for the tool's own answer. Tools named `unlisted` answer calls but are not listed."""

    def __init__(self, *args: Any, unlisted: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.unlisted = unlisted

    async def list_tools(self) -> list[types.Tool]:
        tools = [tool for tool in await super().list_tools() if tool.name not in self.unlisted]
        for tool in tools:
            if tool.name in TASK_TOOLS:
                tool.execution = types.ToolExecution(task_support="optional")
        return tools

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> types.CallToolResult | types.InputRequiredResult:
        if self._tool_manager.get_tool(name) is None:
            message = f"Unknown tool: {name}; tools/list names the tools"
            raise MCPError(code=types.INVALID_PARAMS, message=message)
        return await super().call_tool(name, arguments, context)


def _with_tasks_capability(result: Any) -> Any:
    """The handshake's answer, with `tasks` (tools/call, list, cancel) when 2025-11-25 was
    agreed: the only version whose clients augment calls with tasks."""
    if isinstance(result, dict) and result.get("protocolVersion") == TASKS_VERSION:
        capabilities = result.setdefault("capabilities", {})
        capabilities["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    return result


def _with_tasks_extension(result: Any) -> Any:
    if isinstance(result, dict):
        capabilities = result.setdefault("capabilities", {})
        capabilities.setdefault("extensions", {})[EXTENSION] = {}
    return result


def _declares(params: dict[str, Any]) -> bool:
    """The request's own client capabilities name the extension (2026: per request)."""
    meta = params.get("_meta") or {}
    capabilities = meta.get(types.CLIENT_CAPABILITIES_META_KEY) or {}
    return EXTENSION in (capabilities.get("extensions") or {})


def _task_id(params: dict[str, Any]) -> str:
    task_id = params.get("taskId")
    if not isinstance(task_id, str):
        raise MCPError(code=types.INVALID_PARAMS, message="taskId: a task id string is required")
    return task_id


def _wire(result: BaseModel) -> dict[str, Any]:
    return result.model_dump(by_alias=True, mode="json", exclude_none=True)


def _task_status(status: RunStatus) -> types.TaskStatus:
    """A run that ran to an exit code has completed (a non-zero exit is a result); one that
    never ran has failed."""
    if not status.finished:
        return "working"
    if status.state == "cancelled":
        return "cancelled"
    return "failed" if status.error else "completed"


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _protocol_error(exc: RunnerError) -> MCPError:
    code = types.INVALID_PARAMS if isinstance(exc, NotFound) else types.INTERNAL_ERROR
    return MCPError(code=code, message=exc.message)
