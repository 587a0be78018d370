"""A run's output as the service hands it on: followed live from the backend's stream in a thread
of its own and decoded into events, or read whole."""

from __future__ import annotations

import asyncio
import codecs
import threading
from collections.abc import AsyncGenerator
from typing import Any

from runner.backend import OutputStream
from runner.models import RunResult
from runner.threads import to_loop


async def stream_events(stream: OutputStream) -> AsyncGenerator[tuple[str, str], None]:
    """The stream read in its own thread (not the shared pool: a follower lasts as long as its
    run), decoded, consecutive chunks of one stream joined into one event."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue()

    def pump() -> None:
        try:
            for item in stream:
                to_loop(loop, queue.put_nowait, item)
        finally:
            to_loop(loop, queue.put_nowait, None)

    threading.Thread(target=pump, name="oneoff-follow", daemon=True).start()
    decoders = {name: codecs.getincrementaldecoder("utf-8")("replace") for name in STREAMS}
    try:
        ended = False
        while not ended and (item := await queue.get()) is not None:
            batch = [item]
            while not queue.empty():
                following = queue.get_nowait()
                if following is None:
                    ended = True
                    break
                batch.append(following)
            for kind, data in _joined(batch):
                if text := decoders[kind].decode(data):
                    yield kind, text
    finally:
        stream.stop()


def _joined(batch: list[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """Consecutive chunks of one stream as one: a program printing short lines must not become
    one event per line."""
    joined: list[tuple[str, bytes]] = []
    for kind, data in batch:
        if joined and joined[-1][0] == kind:
            joined[-1] = (kind, joined[-1][1] + data)
        else:
            joined.append((kind, data))
    return joined


STREAMS = ("stdout", "stderr")


def missed(result: RunResult | None, sent: dict[str, int]) -> list[tuple[str, str]]:
    """(stream, text) of a finished run's output past the `sent` characters of each stream:
    what an engine's follow gave up on (Docker 20.10 ends it on the container's exit, often
    before a last line without a newline is read)."""
    if result is None:
        return []
    rest = {"stdout": result.stdout[sent["stdout"] :], "stderr": result.stderr[sent["stderr"] :]}
    return [(name, text) for name, text in rest.items() if text]


def read_all(backend: Any, run_id: str) -> dict[str, bytes]:
    kept = {name: bytearray() for name in STREAMS}
    for kind, data in backend.run_output(run_id, follow=False):
        kept[kind] += data
    return {name: bytes(value) for name, value in kept.items()}
