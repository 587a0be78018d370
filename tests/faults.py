"""Fault injection for the engine connection: a unix-socket proxy to the real Docker socket that
a test can cut (every open connection dies, new ones are refused) and restore."""

from __future__ import annotations

import contextlib
import os
import queue
import select
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest


def engine_socket() -> str:
    """The socket of the engine the suite runs against: DOCKER_HOST's when it names one (as for
    `scripts/engine.sh`), else the default."""
    host = os.environ.get("DOCKER_HOST", "")
    return host.removeprefix("unix://") if host.startswith("unix://") else "/var/run/docker.sock"


# docker-py does not close a unix socket whose connect() failed, nor one reset under a live
# response; those library sockets are collected inside the test that cut the engine, so their
# warnings cannot land on another test.
def engine_fault(test: Callable[..., None]) -> Callable[..., None]:
    for mark in (
        pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
        pytest.mark.filterwarnings("ignore::ResourceWarning"),
        pytest.mark.usefixtures("collect_garbage"),
    ):
        test = mark(test)
    return test


@contextlib.contextmanager
def removals_held(app_client: Callable[..., Any], path: Path) -> Iterator[tuple[Any, str]]:
    """(client, its instance id) of an app reaching the engine through a proxy that holds every
    removal the runner asks for until the block ends: what a run made is there to be seen."""
    proxy = EngineProxy(path)
    proxy.start()
    client = app_client(docker_host=proxy.docker_host)
    proxy.removals.clear()
    try:
        yield client, client.app.state.service.settings.instance_id
    finally:
        proxy.removals.set()


class EngineProxy:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._listener: socket.socket | None = None
        self._connections: list[socket.socket] = []
        self._lock = threading.Lock()
        self.removals = threading.Event()
        self.removals.set()
        self.refused: list[bytes] = []
        """Requests whose first line contains one of these get `refusal` from the "engine"."""
        self.refusal = (b"500 Internal Server Error", REFUSAL)
        self.hold = b""
        """Only DELETE requests whose first line contains this wait for `removals` (b"": all)."""
        self.waiting: queue.Queue[bytes] = queue.Queue()
        """The first line of each DELETE request held, as it starts waiting."""

    @contextlib.contextmanager
    def removal_held(self, container: str, call: Callable[[], object]) -> Iterator[None]:
        """`call` in a thread, until it asks the engine to remove `container`: held there while
        the block runs, then let go and `call` joined."""
        self.hold = f"/containers/{container}?".encode()
        self.removals.clear()
        thread = threading.Thread(target=call, daemon=True)
        thread.start()
        try:
            self.waiting.get(timeout=60)
            yield
        finally:
            self.removals.set()
            thread.join(60)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def start(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.path))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def cut(self) -> None:
        """The engine is gone: the socket disappears and every open connection is reset."""
        with self._lock:
            listener, self._listener = self._listener, None
            connections, self._connections = self._connections, []
        if listener is not None:
            listener.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
            connection.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(engine_socket())
            with self._lock:
                self._connections += [client, upstream]
            threading.Thread(target=pipe, args=(client, upstream, self), daemon=True).start()


REFUSAL = b'{"message": "refused by the test"}'


def pipe(one: socket.socket, other: socket.socket, proxy: EngineProxy) -> None:
    """Bytes both ways; a DELETE request from the runner (`one`) that `hold` names waits while
    `removals` is clear (the engine then removes nothing until the test lets it), and a refused
    request is answered with `refusal` and its connection closed. A side's end of file is
    passed on as the engine's socket would take it (a half-close: an attach's input ends, its
    output goes on)."""
    peers = {one: other, other: one}
    reading = set(peers)
    try:
        while reading:
            readable, _, _ = select.select(list(reading), [], [])
            for source in readable:
                data = source.recv(65536)
                if not data:
                    reading.discard(source)
                    peers[source].shutdown(socket.SHUT_WR)
                    continue
                line = data.split(b"\r\n", 1)[0]
                held = not proxy.removals.is_set() and proxy.hold in line
                if source is one and line.startswith(b"DELETE ") and held:
                    proxy.waiting.put(line)
                    proxy.removals.wait()
                if source is one and any(refused in line for refused in proxy.refused):
                    status, body = proxy.refusal
                    one.sendall(
                        b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nConnection: close"
                        b"\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)
                    )
                    return
                peers[source].sendall(data)
    except (OSError, ValueError):
        return
    finally:
        for end in (one, other):
            with contextlib.suppress(OSError):
                end.close()
