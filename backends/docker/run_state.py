"""What an async run's container tells (its state, its log) and how the runner marks it: read
the same way by whichever runner answers for the run."""

from __future__ import annotations

import contextlib
import socket
import struct
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypeGuard

import docker
import requests
import urllib3

from backends import waiter
from backends.docker import sockets
from backends.docker.errors import engine_errors
from backends.docker.scratch import KINDS
from backends.labels import (
    ASYNC_ROLE,
    CONTAINER,
    CREATED,
    EVICTABLE,
    MARKER,
    ROLE,
    RUN_ID,
    RUN_IMAGE,
    STARTED,
    TENANT,
    TIMEOUT_AT,
)
from backends.records import finished_state
from runner.spec import RunRecord

STOPPED = "-stopped-"
"""A run's container is renamed `oneoff-<id>-stopped-<kind>` (`scratch.KINDS`) before the runner
kills it for its disk, so that whichever runner answers for it can tell why it died."""
ENDED = ("exited", "dead")
"""The engine's states of a container that has stopped for good."""
FRAME_HEADER = struct.Struct(">BxxxL")
STREAMS = {1: "stdout", 2: "stderr"}


class OutputStream:
    """A run's output from its first byte, as the engine's log has it: (stream, bytes) pairs;
    with `follow`, until the container stops. Iterating closes the response at its end; `stop`
    ends it from another thread (closing the response there would wait on the reader's lock)."""

    def __init__(
        self, response: requests.Response, connection: socket.socket, prefix: bytes = b""
    ) -> None:
        self._response = response
        self._socket = connection
        self._prefix = prefix
        self._held = b""

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        raw = self._response.raw
        try:
            while header := raw.read(FRAME_HEADER.size):
                kind, length = FRAME_HEADER.unpack(header)
                data = raw.read(length) if length else b""
                if kind == 1 and self._prefix:
                    data = self._held + data
                    if len(data) < len(self._prefix) and self._prefix.startswith(data):
                        self._held = data
                        continue
                    data, self._prefix = data.removeprefix(self._prefix), b""
                if kind in STREAMS and data:
                    yield STREAMS[kind], data
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return  # stopped under us: the caller stopped listening
        finally:
            self._response.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self._socket.shutdown(socket.SHUT_RDWR)


class KeptOutput:
    """A finished run's output as its result kept it (each stream up to the cap)."""

    def __init__(self, pairs: list[tuple[str, bytes]]) -> None:
        self._pairs = pairs

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        return iter(self._pairs)

    def stop(self) -> None:
        """Nothing to stop: it is all in memory."""


def engine_logs(
    client: docker.APIClient, container: dict[str, Any], *, follow: bool
) -> OutputStream:
    """The run's log from its first byte (the `local` log driver keeps it): for a warm
    container (`claimed`), from after its shell's word that the command starts."""
    url = f"{client.base_url}/v{client.api_version}/containers/{container['Id']}/logs"
    params = {"stdout": 1, "stderr": 1, "follow": int(follow)}
    with engine_errors("reading the run's output"):
        response = client.get(url, params=params, stream=True)
        try:
            response.raise_for_status()
        except requests.exceptions.HTTPError as exc:
            response.close()
            raise docker.errors.create_api_error_from_http_exception(exc) from exc
    marker = container["Labels"].get(MARKER)
    prefix = marker.encode() + waiter.STARTED if marker else b""  # the shell's word, if kept
    return OutputStream(response, sockets.of_response(client, response), prefix)


def record_of(inspected: dict[str, Any]) -> RunRecord:
    """Where an async run is, as its container tells."""
    labels = inspected["Config"]["Labels"]
    state = inspected["State"]
    record = RunRecord(
        run_id=labels[RUN_ID],
        state="running",
        image=labels.get(RUN_IMAGE) or inspected["Config"]["Image"],
        created_at=float(labels[CREATED]),
        started_at=float(labels[STARTED])
        if STARTED in labels
        else _timestamp(state.get("StartedAt")),
        finished_at=_timestamp(state.get("FinishedAt")),
        tenant=labels.get(TENANT, ""),
        evictable=labels.get(EVICTABLE) == "true",
    )
    if state["Status"] == "created":
        record.state = "pulling"
    elif state["Status"] in ENDED:
        record.exit_code = state.get("ExitCode")
        record.oom_killed = bool(state.get("OOMKilled"))
        finished = record.finished_at or time.time()
        record.timed_out = record.exit_code != 0 and finished >= float(labels[TIMEOUT_AT])
        record.scratch_exceeded = stopped_for(inspected.get("Name", "")) is not None
        record.state = finished_state(record)
    return record


def claimed(container: dict[str, Any], claim: dict[str, str]) -> dict[str, Any]:
    """A warm container an async run took (`pool`), as listed, seen as the run's container:
    with its claim's labels, which are the run's (its own were fixed before the run)."""
    return {**container, "Labels": claim}


def is_async_claim(labels: dict[str, str]) -> bool:
    """Whether these are an async run's claim's labels (`pool`), not a container's own."""
    return labels.get(ROLE) == ASYNC_ROLE and CONTAINER in labels


def inspected_as(container: dict[str, Any], inspected: dict[str, Any]) -> dict[str, Any]:
    """`inspected` with the labels of the run's `container` as listed (`claimed`)."""
    return {**inspected, "Config": {**inspected["Config"], "Labels": container["Labels"]}}


def stopped_for(name: str) -> str | None:
    """Why the runner stopped a run for its disk, from its container's name (`STOPPED`)."""
    kind = name.rpartition(STOPPED)[2] if STOPPED in name else None
    return kind if kind in KINDS else None


def _timestamp(value: str | None) -> float | None:
    """The engine's RFC 3339 time (nanoseconds, 'Z'), or None for its zero time."""
    if not value or value.startswith("0001-"):
        return None
    head, _, fraction = value.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + float(f"0.{fraction or 0}")


def present(inspected: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether an inspected container still says something about its run: one being removed
    (by a runner that recorded the run's end first, or past its result's TTL) does not."""
    return inspected is not None and inspected["State"]["Status"] != "removing"
