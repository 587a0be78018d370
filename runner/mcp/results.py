"""What a run's tool calls answer (`run_container`, `wait_run`, a task's result): text a model
reads first, content it can see (text files, images, links to the rest), and a small
`structuredContent` declared by `RUN_VIEW`.

Output is cut in the middle, keeping its head and its tail (the error is usually at the end),
in the text and the structured content alike, so one chatty run does not fill a model's
context. No base64 goes into `structuredContent` (some hosts feed it to the model); an error
result carries none (a client validating it against the schema would hide the error).
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta

from mcp.types import (
    CallToolResult,
    ContentBlock,
    ImageContent,
    ResourceLink,
    TextContent,
)
from pydantic import BaseModel

from runner.errors import RunnerError
from runner.mcp import files as returned
from runner.mcp.files import HandedBack
from runner.mcp.progress import tail_text
from runner.models import RunResult
from runner.run_status import RunLogs, RunStatus

TEXT_HEAD = 4 * 1024
TEXT_TAIL = 12 * 1024
RUNNING_TAIL_BYTES = 4 * 1024
RUN_VIEW = {
    "type": "object",
    "properties": {
        "run_id": {"type": "string"},
        "state": {"type": "string"},
        "finished": {"type": "boolean"},
        "exit_code": {"type": ["integer", "null"]},
        "stdout_offset": {"type": "integer"},
        "stderr_offset": {"type": "integer"},
    },
    "required": ["run_id", "state", "finished"],
}
"""The `outputSchema` of the run tools: few properties, open to more (see docs/mcp.md)."""


def error_result(exc: RunnerError) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=exc.message)], is_error=True)


def structured(model: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)],
        structured_content=model.model_dump(mode="json"),
    )


def head_and_tail(text: str, head: int, tail: int) -> tuple[str, bool]:
    """`text` with its middle replaced by a marker when it is longer than `head + tail`."""
    if len(text) <= head + tail:
        return text, False
    skipped = len(text) - head - tail
    return f"{text[:head]}\n[... {skipped} characters cut ...]\n{text[-tail:]}", True


def _next_call(run_id: str, stdout_offset: int, stderr_offset: int) -> str:
    arguments = {"run_id": run_id, "stdout_offset": stdout_offset, "stderr_offset": stderr_offset}
    return f"wait_run {json.dumps(arguments)}"


def running_answer(status: RunStatus, logs: RunLogs, elapsed: float) -> CallToolResult:
    """A run still going (queued, pulling, running): not an error; the run id, the exact next
    call, and the newest output since the offsets the caller passed."""
    run_id = status.run_id
    doing = {"queued": "waiting for a free slot", "pulling": "pulling its image"}
    state = doing.get(status.state, "still running")
    lines = [
        f"run {run_id} is {state} after {elapsed:.0f}s (not an error).",
        f"Next: {_next_call(run_id, logs.stdout_offset, logs.stderr_offset)}  "
        "(cancel_run stops it)",
    ]
    shown: dict[str, str] = {}
    for name, text in (("stdout", logs.stdout), ("stderr", logs.stderr)):
        data = text.encode()
        if data:
            shown[name] = tail_text(data, RUNNING_TAIL_BYTES)
            lines.append(
                f"--- {name} (last {len(shown[name].encode())} of {len(data)} new bytes) ---"
            )
            lines.append(shown[name])
    view = {
        "run_id": run_id,
        "state": status.state,
        "finished": False,
        "exit_code": None,
        "elapsed_seconds": round(elapsed, 1),
        "stdout": shown.get("stdout", ""),
        "stderr": shown.get("stderr", ""),
        "stdout_offset": logs.stdout_offset,
        "stderr_offset": logs.stderr_offset,
        "files": [],
    }
    return CallToolResult(
        content=[TextContent(type="text", text="\n".join(lines))], structured_content=view
    )


def ended_answer(
    status: RunStatus, offsets: tuple[int, int], expires_at: datetime | None
) -> CallToolResult:
    """A run that has ended (blocking: decodes its returned files). One that never ran (bad
    image, refused) is an error result; a cancelled one says so; one that ran gives its exit
    code, its output after `offsets`, and its returned files."""
    if status.result is None:
        if status.state != "cancelled":
            reason = status.error or f"run {status.run_id} ended {status.state} without a result"
            return CallToolResult(content=[TextContent(type="text", text=reason)], is_error=True)
        view = {
            "run_id": status.run_id,
            "state": "cancelled",
            "finished": True,
            "exit_code": None,
            "stdout_offset": offsets[0],
            "stderr_offset": offsets[1],
            "files": [],
        }
        text = f"run {status.run_id} was cancelled: its container was killed and removed"
        return CallToolResult(
            content=[TextContent(type="text", text=text)], structured_content=view
        )
    return finished_answer(status.result, status.state, offsets, expires_at)


def finished_answer(
    result: RunResult, state: str, offsets: tuple[int, int], expires_at: datetime | None
) -> CallToolResult:
    lines = [f"exit code {result.exit_code} ({result.status}) in {result.execution_time:.2f}s"]
    if result.timed_out:
        lines.append("the run hit its timeout and was killed (raise `timeout_seconds`)")
    if result.oom_killed:
        lines.append("the container ran out of memory (raise `memory`)")
    if result.scratch_exceeded:
        lines.append(result.message or "the run wrote past its disk limit (raise `scratch`)")
    view: dict[str, object] = {
        "run_id": result.run_id,
        "state": state,
        "finished": True,
        "exit_code": result.exit_code,
        "status": result.status,
        "timed_out": result.timed_out,
        "oom_killed": result.oom_killed,
        "scratch_exceeded": result.scratch_exceeded,
        "execution_time": result.execution_time,
    }
    for name, text, cut, offset in (
        ("stdout", result.stdout, result.stdout_truncated, offsets[0]),
        ("stderr", result.stderr, result.stderr_truncated, offsets[1]),
    ):
        data = text.encode()
        after = data[offset:].decode("utf-8", "replace") if offset else text
        shown, middle_cut = head_and_tail(after, TEXT_HEAD, TEXT_TAIL)
        if shown:
            more = " (truncated)" if cut or middle_cut else ""
            part = f" (bytes {offset}-{len(data)})" if offset else ""
            lines.append(f"--- {name}{part}{more} ---\n{shown}")
        view[name] = shown
        view[f"{name}_truncated"] = cut or middle_cut
        view[f"{name}_offset"] = max(len(data), offset)
    found, notes = returned.returned_files(result)
    lines.extend(notes)
    content: list[ContentBlock] = []
    if found:
        content, listed = _shown(result.run_id, found, expires_at, lines)
        view["files"] = listed
    else:
        view["files"] = []
    if expires_at is not None:
        view["expires_at"] = _iso(expires_at)
    return CallToolResult(
        content=[TextContent(type="text", text="\n".join(lines)), *content],
        structured_content=view,
    )


def _shown(
    run_id: str, found: list[HandedBack], expires_at: datetime | None, lines: list[str]
) -> tuple[list[ContentBlock], list[dict[str, object]]]:
    """The files as content (small text files, images within the caps, a link for each) and
    as structured entries; every file named in `lines`."""
    until = f" (read_file reads them until {_iso(expires_at)})" if expires_at else ""
    lines.append(f"returned files{until}:")
    texts: list[ContentBlock] = []
    images: list[ContentBlock] = []
    links: list[ContentBlock] = []
    listed: list[dict[str, object]] = []
    text_total = image_total = 0
    for item in found[: returned.LISTED_FILES]:
        link = returned.uri(run_id, item.path)
        how = "link"
        if item.text and item.size <= returned.TEXT_SHOWN_BYTES:
            if text_total + item.size <= returned.TEXT_SHOWN_TOTAL:
                text_total += item.size
                how = "text"
                texts.append(
                    TextContent(type="text", text=f"--- {item.path} ---\n{item.data.decode()}")
                )
        elif item.image and item.size <= returned.IMAGE_SHOWN_BYTES:
            if len(images) < returned.IMAGES_SHOWN and (
                image_total + item.size <= returned.IMAGE_SHOWN_TOTAL
            ):
                image_total += item.size
                how = "image"
                images.append(
                    ImageContent(
                        type="image",
                        data=base64.b64encode(item.data).decode(),
                        mime_type=item.mime_type,
                    )
                )
        where = "shown below" if how != "link" else f'read_file {{"uri": "{link}"}}'
        lines.append(f"- {item.path} ({item.mime_type}, {item.size} bytes): {where}")
        name = item.path.rsplit("/", 1)[-1]
        links.append(
            ResourceLink(
                type="resource_link", uri=link, name=name, mime_type=item.mime_type, size=item.size
            )
        )
        listed.append(
            {
                "path": item.path,
                "uri": link,
                "size": item.size,
                "mime_type": item.mime_type,
                "shown": how,
            }
        )
    if len(found) > returned.LISTED_FILES:
        lines.append(f"... and {len(found) - returned.LISTED_FILES} more files, not listed")
    return [*texts, *images, *links], listed


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def expiry(status: RunStatus, ttl_seconds: float) -> datetime | None:
    """When the run's result, and its returned files, go."""
    if status.finished_at is None:
        return None
    return status.finished_at + timedelta(seconds=ttl_seconds)
