"""SIGTERM under a server the runner does not control (`uvicorn api_app:app`, `uvicorn
mcp_app:app`): the server's own handling stops accepting and waits for every request in flight,
however long; the runner must also hear the signal, so `shutdown_grace_seconds` holds there too.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def also_on_signal(callback: Callable[[], None]) -> Iterator[None]:
    """While inside, SIGTERM/SIGINT also call `callback` on this event loop, after the
    handler a server installed (which keeps doing what it did). Without such a handler (the
    default action, or `serve`, which handles signals itself), nothing changes."""
    loop = asyncio.get_running_loop()
    installed: dict[signal.Signals, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for number in SIGNALS:
            previous = signal.getsignal(number)
            if callable(previous) and previous is not signal.default_int_handler:
                installed[number] = previous
                signal.signal(number, _chained(previous, loop, callback))
    try:
        yield
    finally:
        for number, previous in installed.items():
            signal.signal(number, previous)


def _chained(
    previous: Callable[[int, FrameType | None], Any],
    loop: asyncio.AbstractEventLoop,
    callback: Callable[[], None],
) -> Callable[[int, FrameType | None], None]:
    def handler(number: int, frame: FrameType | None) -> None:
        previous(number, frame)
        loop.call_soon_threadsafe(callback)

    return handler
