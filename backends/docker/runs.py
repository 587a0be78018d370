"""Async runs on Docker: containers that outlive the request that started them, and the runner.

Everything a later question needs is kept on the engine, so a restarted runner, or another one
on the same engine, answers for a run: the container's labels carry what the request asked
(timeout, output caps, response paths, idempotency key), its state carries how it went (running,
exit code, OOM, times), the `local` log driver keeps its output, and the stopped container keeps
its files until the result's TTL passes. A run that ends without a container (cancelled, or
failed before it started) leaves a record: an empty volume whose labels hold its state.
"""

from __future__ import annotations

import contextlib
import functools
import socket
import struct
import time
from collections.abc import Iterator
from datetime import datetime
from typing import Any, TypeGuard

import docker
import requests
import urllib3
from docker.types import LogConfig

from backends.docker import sockets
from backends.docker.containers import Containers
from backends.docker.errors import engine_errors
from backends.docker.output import Captured, read_frames
from backends.docker.stdin import StdinFeed
from backends.labels import (
    ASYNC_ROLE,
    CREATED,
    INSTANCE,
    KEY,
    OUTPUT,
    RECORD,
    RECORD_ROLE,
    ROLE,
    RUN_ID,
    TENANT,
    TIMEOUT_AT,
    TTL,
    key_label,
    readable,
    selector,
)
from backends.leases import abandoned, past_deadline
from backends.records import (
    collect_label,
    finished_state,
    latest_per_run,
    record_label,
    record_labels,
    stored_collect,
    stored_record,
)
from runner.errors import BackendUnavailable, Conflict, NotFound
from runner.spec import Outcome, RunControl, RunRecord, RunSpec

LOG_FILES = 4
NEVER_STARTED = "the runner that accepted the run stopped before it started; start it again"
FRAME_HEADER = struct.Struct(">BxxxL")
STREAMS = {1: "stdout", 2: "stderr"}


class OutputStream:
    """A run's output from its first byte, as the engine's log has it: (stream, bytes) pairs;
    with `follow`, until the container stops. Iterating closes the response at its end; `stop`
    ends it from another thread (closing the response there would wait on the reader's lock)."""

    def __init__(self, response: requests.Response, connection: socket.socket) -> None:
        self._response = response
        self._socket = connection

    def __iter__(self) -> Iterator[tuple[str, bytes]]:
        raw = self._response.raw
        try:
            while header := raw.read(FRAME_HEADER.size):
                kind, length = FRAME_HEADER.unpack(header)
                data = raw.read(length) if length else b""
                if kind in STREAMS and data:
                    yield STREAMS[kind], data
        except (requests.RequestException, urllib3.exceptions.HTTPError, OSError, ValueError):
            return  # stopped under us: the caller stopped listening
        finally:
            self._response.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError, AttributeError):
            self._socket.shutdown(socket.SHUT_RDWR)


class DetachedRuns:
    def __init__(self, containers: Containers) -> None:
        self.containers = containers
        self.settings = containers.settings
        self._feeds: dict[str, StdinFeed] = {}
        """Input still being written, by run: stopped when the run is seen to end (the engine
        keeps an input attach open after its container stopped)."""

    def launch(self, spec: RunSpec, control: RunControl, idempotency_key: str | None) -> None:
        """Pull, prepare content, create and start; returns once the container runs."""
        containers = self.containers
        containers.ensure_image(spec, control)
        labels = self._labels(spec, idempotency_key)
        size = max(self.settings.run_log_max_bytes // LOG_FILES, 1)
        logs = LogConfig(type="local", config={"max-size": str(size), "max-file": "4"})
        container, volume = containers.prepare(spec, control, labels, {}, logs)
        feed: StdinFeed | None = None
        try:
            feed = containers.feed_stdin(spec, container)
            containers.start(spec, control, container)
            if feed is not None:
                self._feeds[spec.run_id] = feed
        except BaseException:
            if feed is not None:
                feed.stop()
            containers.remove(container, volume)
            raise

    def _labels(self, spec: RunSpec, idempotency_key: str | None) -> dict[str, str]:
        """The run's labels; the owner's only matters until it starts (a launch that died with
        its runner is removed by whoever sees the lease gone), after which any runner answers."""
        now = time.time()
        ttl = self.settings.result_ttl_seconds
        lasts = spec.timeout_seconds + ttl
        labels = {
            **self.containers.labels(spec.run_id, ASYNC_ROLE, lasts, spec.tenant),
            CREATED: repr(spec.accepted_at or now),
            TIMEOUT_AT: repr(now + spec.timeout_seconds),
            TTL: repr(ttl),
            OUTPUT: collect_label(spec.collecting),
        }
        if idempotency_key is not None:
            labels[KEY] = key_label(idempotency_key)
        return labels

    def wait(self, run_id: str) -> None:
        """Block until the run's container stops, killing it when its timeout passes; then
        its input, if any is left unread, is dropped."""
        try:
            self._wait(run_id)
        finally:
            self._stop_feed(run_id)

    def _stop_feed(self, run_id: str) -> None:
        feed = self._feeds.pop(run_id, None)
        if feed is not None:
            feed.stop()

    def _wait(self, run_id: str) -> None:
        container = self._container(run_id)
        if container is None or container["State"] != "running":
            return
        remaining = float(container["Labels"][TIMEOUT_AT]) - time.time()
        try:
            if remaining > 0:
                with engine_errors("waiting for the container"):
                    self.containers.streams.wait(container["Id"], timeout=remaining)  # type: ignore[arg-type]
                return
        except NotFound:
            return
        except BackendUnavailable:
            if float(container["Labels"][TIMEOUT_AT]) > time.time():
                raise
        self.containers.kill(container["Id"])

    def find(
        self, tenant: str | None, run_id: str | None, idempotency_key: str | None
    ) -> list[RunRecord]:
        label = selector(tenant, run_id, idempotency_key)
        api = self.containers.api
        with engine_errors("listing runs"):
            containers = api.containers(
                all=True, filters={"label": [*label, f"{ROLE}={ASYNC_ROLE}"]}
            )
            inspected = [self._inspect(item["Id"]) for item in containers]
            records = [self._readable(item) for item in inspected if _present(item)]
            if idempotency_key is None:
                found = api.volumes(filters={"label": [*label, f"{ROLE}={RECORD_ROLE}"]})
                for item in found.get("Volumes") or []:
                    kept = item.get("Labels") or {}
                    records.append(stored_record(kept.get(RECORD), kept))
        return latest_per_run([record for record in records if record is not None])

    def _readable(self, inspected: dict[str, Any]) -> RunRecord | None:
        return readable(f"container {inspected['Id'][:12]}", lambda: self._record_of(inspected))

    def _record_of(self, inspected: dict[str, Any]) -> RunRecord:
        labels = inspected["Config"]["Labels"]
        state = inspected["State"]
        record = RunRecord(
            run_id=labels[RUN_ID],
            state="running",
            image=inspected["Config"]["Image"],
            created_at=float(labels[CREATED]),
            started_at=_timestamp(state.get("StartedAt")),
            finished_at=_timestamp(state.get("FinishedAt")),
            tenant=labels.get(TENANT, ""),
        )
        if state["Status"] == "created":
            record.state = "pulling"
        elif state["Status"] in ("exited", "dead"):
            record.exit_code = state.get("ExitCode")
            record.oom_killed = bool(state.get("OOMKilled"))
            finished = record.finished_at or time.time()
            record.timed_out = record.exit_code != 0 and finished >= float(labels[TIMEOUT_AT])
            record.state = finished_state(record)
        return record

    def output(self, run_id: str, *, follow: bool) -> OutputStream:
        container = self._require(run_id)
        client = self.containers.streams if follow else self.containers.api
        url = f"{client.base_url}/v{client.api_version}/containers/{container['Id']}/logs"
        params = {"stdout": 1, "stderr": 1, "follow": int(follow)}
        with engine_errors("reading the run's output"):
            response = client.get(url, params=params, stream=True)
            try:
                response.raise_for_status()
            except requests.exceptions.HTTPError as exc:
                response.close()
                raise docker.errors.create_api_error_from_http_exception(exc) from exc
        return OutputStream(response, sockets.of_response(client, response))

    def collect(self, run_id: str) -> Outcome:
        """The finished run's result: the first `max_output` bytes of each stream, and its
        `response: true` paths, read from the stopped container."""
        container = self._require(run_id)
        with engine_errors("reading the run's state"):
            record = self._record_of(self.containers.api.inspect_container(container["Id"]))
        collect = stored_collect(container["Labels"][OUTPUT])
        stream = self.output(run_id, follow=False)
        pairs = ((data, None) if kind == "stdout" else (None, data) for kind, data in stream)
        captured: Captured = read_frames(pairs, collect.max_output_bytes, None, pairs.close)
        returned, unreturned = self.containers.returned.returned(collect, container["Id"])
        return Outcome(
            exit_code=record.exit_code,
            stdout=bytes(captured.kept["stdout"]),
            stderr=bytes(captured.kept["stderr"]),
            stdout_truncated=captured.cut["stdout"],
            stderr_truncated=captured.cut["stderr"],
            timed_out=record.timed_out,
            oom_killed=record.oom_killed,
            returned=returned,
            unreturned=unreturned,
        )

    def file(self, run_id: str, path: str) -> tuple[str, Iterator[bytes]]:
        """A finished run's `response: true` path, streamed out of its stopped container."""
        container = self._require(run_id)
        if container["State"] not in ("exited", "dead"):
            raise Conflict(
                f"path: run {run_id!r} is still {container['State']}; its files can be read "
                "once it has finished",
                field="path",
            )
        collect = stored_collect(container["Labels"][OUTPUT])
        mount = next((mount for mount in collect.returned if mount.path == path), None)
        if mount is None:
            returned = ", ".join(mount.path for mount in collect.returned) or "nothing"
            raise NotFound(
                f"path: {path!r} is not a `response: true` path of run {run_id!r} (it returns: "
                f"{returned})",
                field="path",
            )
        limit = collect.max_response_bytes
        return mount.kind, self.containers.returned.stream(container["Id"], mount, limit)

    def discard(
        self, run_id: str, record: RunRecord | None = None, instance: str | None = None
    ) -> None:
        """Kill the run's container, keep `record` once it has stopped, then remove the container
        and volume, if they are still there. The record comes before the removal (it outranks
        the container), so the run never looks gone meanwhile."""
        self._stop_feed(run_id)
        container = self._container(run_id)
        if container is not None:
            self.containers.kill(container["Id"])
        if record is not None:
            self.record(record, instance)
        self.containers.remove(container["Id"] if container else None, f"oneoff-{run_id}")

    def record(self, record: RunRecord, instance: str | None = None) -> None:
        """Keep a run's end where a restarted runner finds it, for the result's TTL; labelled
        with the runner that ran it (`instance`, by default this one)."""
        labels = record_labels(
            record, instance or self.settings.instance_id, self.settings.result_ttl_seconds
        )
        labels[RECORD] = record_label(record)
        with engine_errors("recording the run's end"):
            self.containers.api.create_volume(f"oneoff-{record.run_id}-record", labels=labels)

    def expire(self, found: list[dict[str, Any]], live: set[str]) -> int:
        """Of the async runs' containers `found`: kill runs past their timeout (nobody was
        watching them), remove finished runs past their TTL, and remove runs whose launch died
        with its runner (created, never started; their record says so). Returns how many runs
        were removed."""
        removed = 0
        now = time.time()
        for item in found:
            expire = functools.partial(self._expired, item, live, now)
            removed += bool(readable(f"container {item['Id'][:12]}", expire))
        return removed

    def _expired(self, item: dict[str, Any], live: set[str], now: float) -> bool:
        labels = item["Labels"]
        if item["State"] == "running" and float(labels[TIMEOUT_AT]) < now:
            self.containers.kill(item["Id"])
        elif item["State"] == "created" and self._launch_died(labels, live, now):
            self.abandon(labels[RUN_ID], item)
            return True
        elif item["State"] in ("exited", "dead"):
            with engine_errors("expiring async runs"):
                inspected = self._inspect(item["Id"])
            if inspected is None:
                return False
            record = self._record_of(inspected)
            if (record.finished_at or now) + float(labels[TTL]) <= now:
                self.discard(record.run_id)
                return True
        return False

    @staticmethod
    def _launch_died(labels: dict[str, str], live: set[str], now: float) -> bool:
        return abandoned(labels, live) or past_deadline(labels, now)

    def abandon(self, run_id: str, container: dict[str, Any]) -> None:
        """A run that never started: recorded as such, then removed. The record comes first (it
        outranks the container when both are there), so a run being reaped by another runner
        never looks gone to a caller or to this runner's reaper."""
        labels = container["Labels"]
        record = RunRecord(
            run_id=run_id,
            state="failed",
            image=container.get("Image", ""),
            created_at=float(labels[CREATED]),
            finished_at=time.time(),
            error=NEVER_STARTED,
        )
        if TENANT in labels:
            record.tenant = labels[TENANT]
        self.discard(run_id, record, labels.get(INSTANCE))

    def _inspect(self, container: str) -> dict[str, Any] | None:
        """The container, or None when it went since it was listed (another runner on the
        engine removed it)."""
        try:
            inspected: dict[str, Any] = self.containers.api.inspect_container(container)
        except docker.errors.NotFound:
            return None
        return inspected

    def _container(self, run_id: str) -> dict[str, Any] | None:
        filters = {"label": [f"{RUN_ID}={run_id}", f"{ROLE}={ASYNC_ROLE}"]}
        with engine_errors("finding the run's container"):
            found = self.containers.api.containers(all=True, filters=filters)
        return found[0] if found else None

    def _require(self, run_id: str) -> dict[str, Any]:
        container = self._container(run_id)
        if container is None:
            raise NotFound(
                f"run {run_id!r} has no container: it was cancelled, failed to start, or its "
                "result expired",
                field="run_id",
            )
        return container


def _timestamp(value: str | None) -> float | None:
    """The engine's RFC 3339 time (nanoseconds, 'Z'), or None for its zero time."""
    if not value or value.startswith("0001-"):
        return None
    head, _, fraction = value.rstrip("Z").partition(".")
    seconds = datetime.fromisoformat(head + "+00:00").timestamp()
    return seconds + float(f"0.{fraction or 0}")


def _present(inspected: dict[str, Any] | None) -> TypeGuard[dict[str, Any]]:
    """Whether an inspected container still says something about its run: one being removed
    (by a runner that recorded the run's end first, or past its result's TTL) does not."""
    return inspected is not None and inspected["State"]["Status"] != "removing"
