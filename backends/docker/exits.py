"""Knowing that a run's process ended as soon as the engine knows it.

The engine answers `wait` only once it has torn the container down (its network namespace, its
mounts): 10–25 ms after the process ended, on every run. Its event stream reports the death
(`die`, with the exit code) before that teardown, and an `oom` before the death. `Exits`
follows that stream for this runner's containers (by their owner label) in one thread and hands
each watched run its exit code and whether the kernel killed something in it for memory.

Any doubt falls back to `wait`: a run gets no watch while the stream is not connected, and a
watch is marked lost when the stream breaks while it waits; the stream asks the engine to
replay what happened since it connected, so an event is never missed between connecting and
reading.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import docker

from backends.docker import sockets
from backends.labels import OWNER

log = logging.getLogger("oneoff_runner.docker")

RECONNECT_SECONDS = 1.0


class Watch:
    """One container's end: `ended` is set by its `die` (then `code` holds its exit code) or
    when the stream broke (then `lost` is true and only `wait` can tell)."""

    def __init__(self) -> None:
        self.ended = threading.Event()
        self.code: int | None = None
        self.oom = False
        self.lost = False


class Exits:
    def __init__(self, client: Callable[[], docker.APIClient], owner: str) -> None:
        self._client = client
        self._filters = json.dumps(
            {"type": ["container"], "event": ["die", "oom"], "label": [f"{OWNER}={owner}"]}
        )
        self._lock = threading.Lock()
        self._watches: dict[str, Watch] = {}
        self._live = False
        self._closed = False
        self._socket: Any = None
        self._thread: threading.Thread | None = None

    def watch(self, container: str) -> Watch | None:
        """Watch `container` (before it starts); None while the stream is not connected."""
        with self._lock:
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(target=self._follow, name="oneoff-exits")
                self._thread.daemon = True
                self._thread.start()
            if not self._live:
                return None
            watch = self._watches[container] = Watch()
            return watch

    def forget(self, container: str) -> None:
        with self._lock:
            self._watches.pop(container, None)

    def close(self) -> None:
        """Stop following: the reader, blocked on the socket, is woken by its shutdown."""
        with self._lock:
            self._closed = True
            connection = self._socket
        if connection is not None:
            with contextlib.suppress(OSError, AttributeError):
                connection.shutdown(socket.SHUT_RDWR)

    def _follow(self) -> None:
        while not self._closed:
            try:
                self._read_stream()
            except Exception as exc:  # noqa: BLE001 - any break: waiters fall back to `wait`
                log.debug("engine event stream broke (%s); runs fall back to wait", exc)
            self._lose_all()
            if not self._closed:
                time.sleep(RECONNECT_SECONDS)

    def _read_stream(self) -> None:
        client = self._client()
        since = f"{time.time() - 1:.9f}"  # replayed: nothing is lost before reading starts
        url = f"{client.base_url}/v{client.api_version}/events"
        params = {"since": since, "filters": self._filters}
        with client.get(url, params=params, stream=True) as response:
            response.raise_for_status()
            connection = sockets.of_response(client, response)
            with self._lock:
                if self._closed:
                    return
                self._socket, self._live = connection, True
            for line in response.iter_lines():
                if line:
                    self._dispatch(json.loads(line))

    def _dispatch(self, event: dict[str, Any]) -> None:
        actor = event.get("Actor") or {}
        with self._lock:
            watch = self._watches.get(str(actor.get("ID", "")))
        if watch is None:
            return
        if event.get("Action") == "oom":
            watch.oom = True
        elif event.get("Action") == "die":
            code = (actor.get("Attributes") or {}).get("exitCode")
            watch.code = int(code) if code is not None else None
            watch.ended.set()

    def _lose_all(self) -> None:
        with self._lock:
            self._live, self._socket = False, None
            watches, self._watches = list(self._watches.values()), {}
        for watch in watches:
            watch.lost = True
            watch.ended.set()
