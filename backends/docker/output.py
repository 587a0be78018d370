"""A run's output as the Docker engine streams it: both streams read from one attach, the first
`max_output_bytes` of each kept, the rest drained (so the container never blocks on a full
pipe), and what is kept forwarded to a listener in batches as it arrives."""

from __future__ import annotations

import codecs
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from runner.spec import EventSink

FORWARD_BYTES = 16 * 1024
FORWARD_SECONDS = 0.1


@dataclass
class Captured:
    kept: dict[str, bytearray]
    cut: dict[str, bool]


def read_frames(
    frames: Iterable[tuple[bytes | None, bytes | None]],
    cap: int,
    events: EventSink | None,
    close: Callable[[], None],
) -> Captured:
    """Read (stdout, stderr) pairs to their end, keeping `cap` bytes of each, what is kept
    forwarded to `events`; `close` releases the stream on every way out."""
    captured = Captured(
        kept={"stdout": bytearray(), "stderr": bytearray()},
        cut={"stdout": False, "stderr": False},
    )
    forward = {name: Forward(events, name) for name in captured.kept} if events else {}
    try:
        for frame in frames:
            for name, data in zip(("stdout", "stderr"), frame, strict=True):
                if not data:
                    continue
                buffer = captured.kept[name]
                kept = data[: cap - len(buffer)]
                buffer += kept
                captured.cut[name] |= len(kept) < len(data)
                if kept and name in forward:
                    forward[name](kept)
    finally:
        close()
        for sink in forward.values():
            sink.flush()
    return captured


class Forward:
    """Output for the listener: decoded without splitting a UTF-8 sequence across events, and
    gathered into events of up to `FORWARD_BYTES` or `FORWARD_SECONDS` (a program printing
    short lines must not become one event per line). Nothing waits longer than
    `FORWARD_SECONDS` for more: a line followed by silence goes out on its own."""

    def __init__(self, events: EventSink, stream: str) -> None:
        self.events = events
        self.stream = stream
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.pending = bytearray()
        self.lock = threading.Lock()
        self.timer: threading.Timer | None = None

    def __call__(self, chunk: bytes) -> None:
        with self.lock:
            self.pending += chunk
            if len(self.pending) < FORWARD_BYTES:
                if self.timer is None:
                    self.timer = threading.Timer(FORWARD_SECONDS, self.flush)
                    self.timer.daemon = True
                    self.timer.start()
                return
        self.flush()

    def flush(self) -> None:
        """Forward what is pending, now (from the reader, or from the timer's thread)."""
        with self.lock:  # held while forwarding, so events keep their order
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            text = self.decoder.decode(bytes(self.pending))
            self.pending.clear()
            if text:
                self.events(self.stream, text)
