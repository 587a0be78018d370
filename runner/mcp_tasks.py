"""MCP tasks (protocol 2025-11-25) backed by async runs.

A client that augments a `run_container` call with `task` gets a task at once instead of waiting:
the run starts as `POST /runs` would start it and its run id is the task id. `tasks/get`,
`tasks/result`, `tasks/cancel` and `tasks/list` answer from the run's state, which the backend
keeps, so any replica answers and a restart loses nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import mcp_types as types
from mcp.server.context import CallNext, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from pydantic import BaseModel, ValidationError

from runner.errors import InvalidRequest, NotFound, RunnerError
from runner.models import RunRequest
from runner.run_status import RunStatus
from runner.service import RunnerService

TASKS_VERSION = "2025-11-25"
TASK_TOOLS = frozenset({"run_container"})
POLL_MILLISECONDS = 1000
RELATED_TASK = "io.modelcontextprotocol/related-task"

ResultOf = Callable[[RunStatus], types.CallToolResult]


class RunTasks:
    """Server middleware: it answers task-augmented calls and the `tasks/*` methods itself (the
    SDK validates a `tools/call` result as a CallToolResult and serves no `tasks/*`), and adds
    the `tasks` capability to the handshake's answer."""

    def __init__(self, service: Callable[[], RunnerService], result_of: ResultOf) -> None:
        self.service = service
        self.result_of = result_of
        self.methods: dict[str, Callable[[dict[str, Any]], Awaitable[BaseModel]]] = {
            "tasks/get": self._get,
            "tasks/result": self._result,
            "tasks/cancel": self._cancel,
            "tasks/list": self._list,
        }

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> Any:
        params = dict(ctx.params or {})
        if ctx.method == "initialize":
            return _with_tasks_capability(await call_next(ctx))
        if ctx.protocol_version != TASKS_VERSION:
            return await call_next(ctx)
        if ctx.method == "tools/call" and params.get("task") is not None:
            if params.get("name") in TASK_TOOLS:
                return _wire(await self._start(params.get("arguments") or {}))
        if ctx.method in self.methods:
            try:
                return _wire(await self.methods[ctx.method](params))
            except RunnerError as exc:
                raise _protocol_error(exc) from exc
        return await call_next(ctx)

    async def _start(self, arguments: dict[str, Any]) -> BaseModel:
        try:
            request = RunRequest.model_validate(arguments)
            status = await self.service().runs.start(request, None)
        except ValidationError as exc:
            return _tool_error(InvalidRequest.from_validation(exc.errors()))
        except RunnerError as exc:
            return _tool_error(exc)
        return types.CreateTaskResult(task=self._task(status))

    async def _get(self, params: dict[str, Any]) -> BaseModel:
        status = await self.service().runs.status(_task_id(params), with_result=False)
        return types.GetTaskResult(**self._task(status).model_dump())

    async def _result(self, params: dict[str, Any]) -> BaseModel:
        """Blocks until the run ends, as the protocol asks of `tasks/result`."""
        task_id = _task_id(params)
        result = self.result_of(await self.service().runs.wait(task_id))
        result.meta = {**(result.meta or {}), RELATED_TASK: {"taskId": task_id}}
        return result

    async def _cancel(self, params: dict[str, Any]) -> BaseModel:
        status = await self.service().runs.cancel(_task_id(params))
        return types.CancelTaskResult(**self._task(status).model_dump())

    async def _list(self, params: dict[str, Any]) -> BaseModel:
        found = await self.service().runs.list_runs(None, None, 1000)
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
    registry has no field for."""

    async def list_tools(self) -> list[types.Tool]:
        tools = await super().list_tools()
        for tool in tools:
            if tool.name in TASK_TOOLS:
                tool.execution = types.ToolExecution(task_support="optional")
        return tools


def _with_tasks_capability(result: Any) -> Any:
    """The handshake's answer, with `tasks` (tools/call, list, cancel) when 2025-11-25 was
    agreed: the only version whose clients augment calls with tasks."""
    if isinstance(result, dict) and result.get("protocolVersion") == TASKS_VERSION:
        capabilities = result.setdefault("capabilities", {})
        capabilities["tasks"] = {"list": {}, "cancel": {}, "requests": {"tools": {"call": {}}}}
    return result


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


def _tool_error(exc: RunnerError) -> types.CallToolResult:
    return types.CallToolResult(
        content=[types.TextContent(type="text", text=exc.message)], is_error=True
    )


def _protocol_error(exc: RunnerError) -> MCPError:
    code = types.INVALID_PARAMS if isinstance(exc, NotFound) else types.INTERNAL_ERROR
    return MCPError(code=code, message=exc.message)
