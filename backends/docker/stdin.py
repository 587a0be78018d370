"""A run's standard input, written through an attach of its own and then closed.

The container is created with its input open and `StdinOnce`, so when this attach closes its
writing side the engine closes the container's input: the command reads the text, then end of
file. The writing happens in a thread of its own, apart from the thread that reads the output,
so a command that prints a lot before it reads (or never reads) cannot deadlock the two. The
engine keeps an input attach open after its container stopped when the input was not all
read, so the run's end calls `stop` (its output ended, or its container was seen to stop):
a command that never reads its input leaves it unread, nothing more.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from typing import Any

import docker

from backends.docker import sockets
from backends.docker.errors import engine_errors

CHUNK = 64 * 1024


class StdinFeed:
    def __init__(self, attached: Any, data: bytes) -> None:
        self._attached = attached
        self._socket = sockets.plain(attached)
        self._data = data
        self._thread = threading.Thread(target=self._write, name="oneoff-stdin", daemon=True)

    @classmethod
    def attach(cls, api: docker.APIClient, container: str, data: bytes) -> StdinFeed:
        """Attach to the (created, not yet started) container's input and start writing."""
        with engine_errors("attaching to the container's input"):
            attached = api.attach_socket(container, params={"stdin": 1, "stream": 1})
        feed = cls(attached, data)
        feed._thread.start()
        return feed

    def _write(self) -> None:
        """Write everything, signal end of file, then hold the attach until the engine ends it
        (closing it early would not matter to the container, but the engine logs it)."""
        try:
            view = memoryview(self._data)
            for start in range(0, len(view), CHUNK):
                self._socket.sendall(view[start : start + CHUNK])
            self._socket.shutdown(socket.SHUT_WR)
            while self._socket.recv(CHUNK):
                pass
        except OSError:
            pass  # the container stopped, or the run ended: its input goes unread
        finally:
            self._close()

    def stop(self) -> None:
        """End the feed from another thread: a blocked write returns at once."""
        with contextlib.suppress(OSError):
            self._socket.shutdown(socket.SHUT_RDWR)

    def _close(self) -> None:
        """The response first (it holds the socket's file), then the socket itself."""
        response = getattr(self._attached, "_response", None)
        with contextlib.suppress(OSError, ValueError):
            if response is not None:
                response.close()
            self._attached.close()
            self._socket.close()
