"""Crossing between worker threads and the event loop, in one place.

Worker threads (SDK calls) hand events and results to the loop; a loop that has closed (the
runner stopped) takes nothing. Waits that last as long as a run get a thread of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import anyio

from runner.spec import EventSink

T = TypeVar("T")


def to_loop(loop: asyncio.AbstractEventLoop, callback: Callable[..., Any], *args: Any) -> None:
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback, *args)


def on_this_loop(listener: EventSink) -> EventSink:
    """A sink worker threads may call: each event is handed to `listener` on this event loop."""
    loop = asyncio.get_running_loop()

    def sink(kind: str, text: str) -> None:
        to_loop(loop, listener, kind, text)

    return sink


async def in_worker(function: Callable[..., T], *args: object) -> T:
    """Blocking work (SDK calls, decoding) goes to a shared worker thread, never the loop."""
    return await anyio.to_thread.run_sync(function, *args)


async def own_thread(function: Callable[..., Any], *args: Any) -> Any:
    """Blocking work that lasts as long as a run (waiting for it to end), in a thread of its
    own: it must not hold one of the shared worker threads for hours, and whoever awaits it
    may stop waiting at any time (the thread then ends with the run)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Any] = loop.create_future()

    def work() -> None:
        try:
            result = function(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting task
            to_loop(loop, _settle, done, None, exc)
        else:
            to_loop(loop, _settle, done, result, None)

    threading.Thread(target=work, name="oneoff-wait", daemon=True).start()
    return await done


def _settle(done: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if done.cancelled():
        return
    if error is not None:
        done.set_exception(error)
    else:
        done.set_result(result)
