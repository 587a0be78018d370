"""Returned paths, read from the collect sidecar's log as it streams (the records
`pod_helper.collect` writes), within a bound and with a clear error for every way it can fail.

The bound: the kubelet keeps one container log file of `containerLogMaxSize` (10 MiB by
default) and the API serves only the newest, so the returned content (base64 in the log, a
third larger) is held under `RUNNER_KUBE_RETURN_LIMIT_BYTES` (7 MiB) whatever
`RUNNER_MAX_RESPONSE_BYTES` says. A log without its first record was rotated; one without its
last was cut (the sidecar was killed).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from runner.errors import BackendUnavailable, PayloadTooLarge, RunnerError
from runner.settings import Settings

LINE_LIMIT_BYTES = 128 * 1024


class ReturnLimit(NamedTuple):
    """The bound on a run's returned content, and the setting that set it."""

    size: int
    setting: str


def return_limit(settings: Settings, max_response_bytes: int) -> ReturnLimit:
    """The lower of the Kubernetes bound and the run's own cap on returned content."""
    if settings.kube_return_limit_bytes < max_response_bytes:
        return ReturnLimit(settings.kube_return_limit_bytes, "RUNNER_KUBE_RETURN_LIMIT_BYTES")
    return ReturnLimit(max_response_bytes, "RUNNER_MAX_RESPONSE_BYTES")


def log_bytes_for(limit: int) -> int:
    """How much of the sidecar's log holds `limit` bytes of content, with its records."""
    return limit * 4 // 3 + (limit // (48 * 1024) + 64) * 64 + 4096


def read_returned(chunks: Iterable[bytes], limit: ReturnLimit) -> dict[str, tuple[str, bytes]]:
    records = _records(_lines(chunks))
    first = next(records, None)
    if first is None:  # not one record: the sidecar was stopped before it wrote
        raise _cut()
    if "begin" not in first:
        raise PayloadTooLarge(
            "volumes: the returned content outgrew the collect sidecar's log, which the kubelet "
            "rotated (containerLogMaxSize); return less, or write it to a volume",
            field="volumes",
        )
    returned: dict[str, tuple[str, bytearray]] = {}
    current, size = bytearray(), 0
    for record in records:
        if "error" in record:
            raise _too_large(limit)
        if record.get("done"):
            return {path: (kind, bytes(data)) for path, (kind, data) in returned.items()}
        if "path" in record:
            current = bytearray()
            returned[str(record["path"])] = (str(record["kind"]), current)
        elif "data" in record:
            chunk = _decoded(record["data"])
            size += len(chunk)
            if size > limit.size:
                raise _too_large(limit)
            current += chunk
    raise _cut()


def _too_large(limit: ReturnLimit) -> RunnerError:
    why = (
        "which the kubelet's container log (containerLogMaxSize) must hold"
        if limit.setting == "RUNNER_KUBE_RETURN_LIMIT_BYTES"
        else "the operator's cap on returned content"
    )
    return PayloadTooLarge(
        f"volumes: the returned content exceeds {limit.size} bytes, the limit on Kubernetes "
        f"({limit.setting}, {why}); return less, or write it to a volume",
        field="volumes",
    )


def _cut() -> RunnerError:
    return BackendUnavailable(
        "the collect sidecar's log ends before its last record: the sidecar was stopped while "
        "writing (evicted, or out of memory), and the returned paths are lost; run again"
    )


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    pending = b""
    for chunk in chunks:
        pending += chunk
        *lines, pending = pending.split(b"\n")
        yield from lines
        if len(pending) > LINE_LIMIT_BYTES:
            raise _cut()
    if pending:
        yield pending


def _records(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """The sidecar's records. A pod log merges a container's stdout and stderr, so lines that
    are not records come first: the sidecar saying it is ready, and, in a rotated log, the end
    of a line whose start was rotated away. From the first record on, every line is one."""
    for line in lines:
        with contextlib.suppress(RunnerError):
            first = _record(line)
            break
    else:
        return
    yield first
    for line in lines:
        yield _record(line)


def _record(line: bytes) -> dict[str, Any]:
    try:
        record = json.loads(line)
    except ValueError:
        raise _cut() from None
    if not isinstance(record, dict):
        raise _cut()
    return record


def _decoded(text: object) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError):
        raise _cut() from None
