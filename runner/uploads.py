"""Content that arrives as raw bytes while its run is prepared (the binary path).

A multipart request's content parts are read from the socket on the event loop and handed, a
few chunks at a time, to the worker thread that fills the run's volume: `Uploads` is that
hand-over, bounded, so a slow engine slows the client (TCP back-pressure) instead of filling
memory. `checked` turns the parts into what a backend unpacks: plain tars whose every member
was judged by `runner.archives` before it is passed on.
"""

from __future__ import annotations

import asyncio
import functools
import io
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from runner import archive_streams
from runner.archives import Budget
from runner.errors import InvalidRequest, RunnerError
from runner.spec import MountSpec

QUEUE_DEPTH = 8
PART_WAIT_SECONDS = 300


@dataclass(frozen=True)
class Begin:
    key: str


@dataclass(frozen=True)
class End:
    pass


Event = Begin | bytes | End | RunnerError | None
"""What the reader hands over: a part begins, its bytes, it ends; an error; None: no more."""


class Uploads:
    """A bounded queue from the event loop (`put`) to one worker thread (`parts`)."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[Event] = asyncio.Queue(QUEUE_DEPTH)
        self._taken: deque[Event] = deque()

    async def put(self, event: Event) -> None:
        await self._queue.put(event)

    async def _take(self) -> list[Event]:
        """The next event and all queued behind it: one crossing to the loop for many chunks."""
        taken = [await self._queue.get()]
        while not self._queue.empty():
            taken.append(self._queue.get_nowait())
        return taken

    def _get(self) -> Event:
        """The next event, waiting in the worker thread (never on the loop)."""
        if not self._taken:
            waiting = asyncio.run_coroutine_threadsafe(self._take(), self._loop)
            try:
                self._taken.extend(waiting.result(PART_WAIT_SECONDS))
            except TimeoutError:
                waiting.cancel()
                raise InvalidRequest(
                    f"the request body stalled for {PART_WAIT_SECONDS}s; send the content parts "
                    "without pausing"
                ) from None
        event = self._taken.popleft()
        if isinstance(event, RunnerError):
            raise event
        return event

    def parts(self) -> Iterator[tuple[str, Iterator[bytes]]]:
        """(part name, its bytes as they arrive); each part's bytes must be read to the end
        before the next part is asked for."""
        while (event := self._get()) is not None:
            if isinstance(event, Begin):
                yield event.key, self._chunks()

    def _chunks(self) -> Iterator[bytes]:
        while isinstance(event := self._get(), bytes):
            yield event


Members = Callable[[str], Iterator[bytes]]
"""A content part as plain tar members (no end-of-archive), named as its mount's container path
(without the leading slash) under the prefix given: the file, or the directory's members."""


def checked(
    uploads: Uploads, mounts: list[MountSpec], budget: Budget, max_bytes: int
) -> Iterator[tuple[int, Members]]:
    """(index of the mount it fills, its checked members) for each content part; each part's
    members must be read to the end before the next part is asked for.

    A part that names no file or directory volume, comes twice, or duplicates inline content
    is refused; so is a file volume whose content never came.
    """
    targets = {mount.key: (n, mount) for n, mount in enumerate(mounts) if _takes_part(mount)}
    seen: set[str] = set()
    for key, chunks in uploads.parts():
        field = f"volumes[{key!r}]"
        if key not in targets or key in seen:
            raise InvalidRequest(
                f"{field}: a content part must name a file or directory volume of the request, "
                "once, that has no inline `content`; declare it in `volumes` (e.g. "
                '{"type": "directory"}) and send its part once',
                field=field,
            )
        seen.add(key)
        index, mount = targets[key]
        reader = archive_streams.ChunkReader(chunks, max_bytes, field, "RUNNER_MAX_ARCHIVE_BYTES")
        yield index, functools.partial(_members, reader, mount, field, budget)
    missing = [key for key, (_, mount) in targets.items() if mount.kind == "file"]
    missing = [key for key in missing if key not in seen]
    if missing:
        field = f"volumes[{missing[0]!r}].content"
        raise InvalidRequest(
            f"{field}: a file volume needs its content, inline (base64) or as a part named "
            f"{missing[0]!r}",
            field=field,
        )


def _members(
    reader: io.RawIOBase, mount: MountSpec, field: str, budget: Budget, prefix: str
) -> Iterator[bytes]:
    name = prefix + relative_path(mount)
    if mount.kind == "file":
        return archive_streams.file_member(reader, name, mount.mode, field, budget)
    return archive_streams.checked_members(reader, field, budget, f"{name}/")


def relative_path(mount: MountSpec) -> str:
    """A mount's container path as a tar member name: without its leading slash."""
    return mount.path.lstrip("/")


def _takes_part(mount: MountSpec) -> bool:
    return mount.kind in ("file", "directory") and mount.content is None
