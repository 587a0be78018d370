"""What a tool call answers: the text a model reads first, and the structured content.

Models read the text. Output is cut in the middle, keeping its head and its tail (the error is
usually at the end), and the structured content is capped the same way, so one chatty run does
not fill a model's context.
"""

from __future__ import annotations

import base64
import io
import tarfile

from mcp.types import CallToolResult, TextContent
from pydantic import BaseModel

from runner.errors import RunnerError
from runner.models import ReturnedVolume, RunResult
from runner.run_status import RunStatus

TEXT_HEAD = 4 * 1024
TEXT_TAIL = 12 * 1024
STRUCTURED_HEAD = 16 * 1024
STRUCTURED_TAIL = 48 * 1024
RETURNED_TEXT_LIMIT = 4 * 1024
RETURNED_ARCHIVE_LIMIT = 64 * 1024


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


def run_result(result: RunResult) -> CallToolResult:
    """A finished run: the summary as text, the capped result as structured content."""
    stdout, out_cut = head_and_tail(result.stdout, STRUCTURED_HEAD, STRUCTURED_TAIL)
    stderr, err_cut = head_and_tail(result.stderr, STRUCTURED_HEAD, STRUCTURED_TAIL)
    capped = result.model_copy(
        update={
            "stdout": stdout,
            "stderr": stderr,
            "stdout_truncated": result.stdout_truncated or out_cut,
            "stderr_truncated": result.stderr_truncated or err_cut,
        }
    )
    return structured(capped, run_summary(result))


def run_summary(result: RunResult) -> str:
    """What a model reads first: the exit code, then the output, then what came back."""
    lines = [f"exit code {result.exit_code} ({result.status}) in {result.execution_time:.2f}s"]
    if result.timed_out:
        lines.append("the run hit its timeout and was killed (raise `timeout_seconds`)")
    if result.oom_killed:
        lines.append("the container ran out of memory (raise `memory`)")
    if result.scratch_exceeded:
        lines.append(result.message or "the run wrote past its disk limit (raise `scratch`)")
    for name, text, cut in (
        ("stdout", result.stdout, result.stdout_truncated),
        ("stderr", result.stderr, result.stderr_truncated),
    ):
        if text:
            shown, middle_cut = head_and_tail(text, TEXT_HEAD, TEXT_TAIL)
            more = " (truncated)" if cut or middle_cut else ""
            lines.append(f"--- {name}{more} ---\n{shown}")
    for path, volume in result.volumes.items():
        if volume.error is not None:
            lines.append(f"nothing returned from {volume.type} {path}: {volume.error}")
            continue
        lines.append(
            f"returned {volume.type} {path}: {len(volume.content)} base64 characters in "
            "structuredContent.volumes"
        )
        lines.extend(
            f"--- {name} ---\n{text}" for name, text in returned_texts(path, volume).items()
        )
    return "\n".join(lines)


def returned_texts(path: str, volume: ReturnedVolume) -> dict[str, str]:
    """The small text files of a returned path, by path, so a model reads them without
    decoding base64 or tar.gz; binary and large files stay in the archive only."""
    if len(volume.content) > RETURNED_ARCHIVE_LIMIT:
        return {}
    try:
        data = base64.b64decode(volume.content)
        if volume.type == "file":
            files = {path: data}
        else:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
                files = {
                    f"{path.rstrip('/')}/{member.name}": archive.extractfile(member).read()  # type: ignore[union-attr]
                    for member in archive
                    if member.isfile() and member.size <= RETURNED_TEXT_LIMIT
                }
    except (ValueError, tarfile.TarError, OSError):
        return {}
    return {name: text for name, raw in files.items() if (text := _text(raw)) is not None}


def _text(data: bytes) -> str | None:
    """`data` as text, when it is small UTF-8 without NUL bytes."""
    if len(data) > RETURNED_TEXT_LIMIT or b"\0" in data:
        return None
    try:
        return data.decode()
    except UnicodeDecodeError:
        return None


def status_summary(status: RunStatus) -> str:
    """The state first; the result's summary once there is one."""
    line = f"run {status.run_id}: {status.state}"
    if status.error:
        line += f": {status.error}"
    return line if status.result is None else f"{line}\n{run_summary(status.result)}"


def task_result(status: RunStatus) -> CallToolResult:
    """What a run_container task ends with: the call's own result, or why there is none."""
    if status.result is not None:
        return run_result(status.result)
    reason = status.error or f"the run ended {status.state} without a result"
    return CallToolResult(content=[TextContent(type="text", text=reason)], is_error=True)
