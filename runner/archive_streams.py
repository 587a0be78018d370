"""Archives as streams: content in and out of runs without ever holding it whole.

In: a caller's tar or tar.gz is read as it arrives and re-emitted as a plain tar of only the
members `archives.check_member` and the request's `Budget` let through; a single file is
spooled (a tar header needs its size first). Out: an engine's archive of a returned path is
re-emitted as the file's bytes, or as a plain tar with names relative to the directory, once
its first member shows that the run left what was declared there (`Unreturnable` otherwise:
a symlink, a FIFO, a device, a directory for a file), counting members against a
`Budget` of members. Every reader is a `ChunkReader`, which stops at its byte limit with a 413
naming the setting; none keeps the members it read (`archives.members`).
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

from isal import igzip

from runner.archives import UNREADABLE, Budget, check_member, header, members
from runner.errors import InvalidRequest, PayloadTooLarge, Unreturnable

STREAM_CHUNK_BYTES = 256 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
TAR_END = b"\0" * (2 * tarfile.BLOCKSIZE)
BROKEN = (tarfile.TarError, EOFError, ValueError, ArithmeticError)
"""What reading a tar that is not whole raises (`archives.UNREADABLE`, less the transport's
OSError)."""


class ChunkReader(io.RawIOBase):
    """A file object over an iterator of byte chunks, refusing to read past `limit` bytes
    (`setting` names the operator's limit in the 413)."""

    def __init__(
        self,
        chunks: Iterator[bytes],
        limit: int,
        field: str,
        setting: str = "RUNNER_MAX_RESPONSE_BYTES",
    ) -> None:
        self._chunks = chunks
        self._pending = memoryview(b"")
        self._left = limit
        self._field = field
        self._setting = setting

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            self._left -= len(chunk)
            if self._left < 0:
                raise PayloadTooLarge(
                    f"{self._field}: the content exceeds the operator's limit ({self._setting}); "
                    "send or return less, or use a named volume",
                    field=self._field,
                )
            self._pending = memoryview(chunk)
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        self._pending = self._pending[size:]
        return size


def checked_members(
    reader: io.RawIOBase, field: str, budget: Budget, prefix: str = ""
) -> Iterator[bytes]:
    """A caller's tar or tar.gz, read as it arrives, re-emitted as the plain tar members (no
    end-of-archive: `TAR_END` closes a whole tar) that passed `archives.check_member` and the
    budget, named under `prefix` (its entry for the directory itself dropped), so several can
    make one archive. The engine never sees a byte of a member before it is judged, and a gzip
    bomb stops at the budget. Never holds more than one chunk."""
    source = io.BufferedReader(reader, STREAM_CHUNK_BYTES)
    inflated = igzip.IGzipFile(fileobj=source, mode="rb") if _is_gzip(source) else source
    symlinks: set[str] = set()
    try:
        with tarfile.open(fileobj=inflated, mode="r|") as archive:
            for member in members(archive):
                normal = check_member(member, field, symlinks)
                budget.spend(member.size, field)
                if prefix and normal == ".":
                    continue
                yield _header(member, prefix, normal)
                if member.isfile():
                    yield from _member_data(archive, member)
        while source.read(STREAM_CHUNK_BYTES):
            pass  # trailing padding: read (and counted against the limit), not unpacked
    except UNREADABLE as exc:
        raise InvalidRequest(
            f"{field}: not a readable tar or tar.gz ({exc}); make it with `tar czf x.tar.gz "
            "-C DIR .`",
            field=field,
        ) from None


def _header(member: tarfile.TarInfo, prefix: str, normal: str) -> bytes:
    """The member's header, named `prefix` + its name (and a hard link's target with it)."""
    if not prefix:
        return header(member, member.name)
    linkname = prefix + posixpath.normpath(member.linkname) if member.islnk() else None
    return header(member, prefix + normal, linkname)


def _is_gzip(source: io.BufferedReader[io.RawIOBase]) -> bool:
    return source.peek(2)[:2] == b"\x1f\x8b"


def _member_data(
    archive: tarfile.TarFile, member: tarfile.TarInfo, *, padded: bool = True
) -> Iterator[bytes]:
    data = archive.extractfile(member)
    assert data is not None
    left = member.size
    while left > 0:
        chunk = data.read(min(left, STREAM_CHUNK_BYTES))
        if not chunk:
            raise tarfile.ReadError("unexpected end of data")
        left -= len(chunk)
        yield chunk
    if padded and member.size % tarfile.BLOCKSIZE:
        yield b"\0" * (tarfile.BLOCKSIZE - member.size % tarfile.BLOCKSIZE)


def file_member(
    reader: io.RawIOBase, name: str, mode: int, field: str, budget: Budget
) -> Iterator[bytes]:
    """One file arriving as raw bytes, as a plain tar member `name` (no end-of-archive). A tar
    header needs the size first, so the bytes are spooled (to disk past `SPOOL_MEMORY_BYTES`),
    never held."""
    with spool() as spooled:
        while chunk := reader.read(STREAM_CHUNK_BYTES):
            spooled.write(chunk)
        info = tarfile.TarInfo(name)
        info.size = spooled.tell()
        info.mode = mode
        budget.spend(info.size, field)
        spooled.seek(0)
        yield info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
        while chunk := spooled.read(STREAM_CHUNK_BYTES):
            yield chunk
        if info.size % tarfile.BLOCKSIZE:
            yield b"\0" * (tarfile.BLOCKSIZE - info.size % tarfile.BLOCKSIZE)


def entry(name: str, content: bytes | None, mode: int) -> bytes:
    """One plain tar member, whole: a file holding `content`, or a directory (None)."""
    info = tarfile.TarInfo(name)
    info.mode = mode
    if content is None:
        info.type = tarfile.DIRTYPE
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    info.size = len(content)
    padding = b"\0" * (-len(content) % tarfile.BLOCKSIZE)
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape") + content + padding


@contextmanager
def released(chunks: Iterator[bytes]) -> Iterator[Iterator[bytes]]:
    """`chunks`, closed on exit: a generator left part-read holds its engine response (and a
    socket) open until the garbage collector finds it, in whatever order it finalizes them."""
    try:
        yield chunks
    finally:
        _close(chunks)


def _close(chunks: Iterator[bytes]) -> None:
    """Close `chunks` when it can be closed (a generator can; a list's iterator cannot)."""
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


class Prepended(Iterator[bytes]):
    """`first`, then `chunks`; `close()` closes `chunks` whenever it is called, read or not
    (`itertools.chain` has no close, and a generator's reaches `chunks` only mid-`yield from`)."""

    def __init__(self, first: bytes, chunks: Iterator[bytes]) -> None:
        self._first: list[bytes] = [first]
        self._chunks = chunks

    def __next__(self) -> bytes:
        return self._first.pop() if self._first else next(self._chunks)

    def close(self) -> None:
        _close(self._chunks)


def spool() -> IO[bytes]:
    """A temporary file that stays in memory up to a MiB, on disk past it."""
    return tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES)


def file_stream(reader: io.RawIOBase, path: str, field: str) -> Iterator[bytes]:
    """The bytes of the single file in an engine's archive of `path`; Unreturnable, before
    the first byte, when the run left something else there."""
    with _engine_archive(reader, path, field) as archive:
        member = archive.next()
        if member is None or not member.isfile():
            raise _left_instead(path, member, "a file", field)
        yield from _member_data(archive, member, padded=False)


def relative_tar_stream(
    reader: io.RawIOBase, path: str, field: str, budget: Budget
) -> Iterator[bytes]:
    """An engine's archive of the directory `path` as a plain tar with names relative to it:
    the engine names members `<last part of path>/...`, callers get `...` (the entry for the
    directory itself is dropped), so it can be sent back as a directory's content.
    Unreturnable, before the first byte, when the run left something else there."""
    with _engine_archive(reader, path, field) as archive:
        stream = members(archive)
        top = next(stream, None)
        if top is None or not top.isdir():
            raise _left_instead(path, top, "a directory", field)
        prefix = posixpath.normpath(top.name) + "/"
        for member in stream:
            budget.spend(0, field)
            name = posixpath.normpath(member.name)
            if not name.startswith(prefix):
                continue
            linkname = member.linkname
            if member.islnk() and linkname.startswith(prefix):
                linkname = linkname[len(prefix) :]
            yield header(member, name[len(prefix) :], linkname)
            if member.isfile():
                yield from _member_data(archive, member)
    yield TAR_END


@contextmanager
def _engine_archive(reader: io.RawIOBase, path: str, field: str) -> Iterator[tarfile.TarFile]:
    """An engine's archive of a returned path, opened as a stream; one that is no tar (cut
    short, say) is Unreturnable. (OSError is not caught: that is the engine's connection, which
    the backend reports.)"""
    try:
        with tarfile.open(fileobj=reader, mode="r|") as archive:
            yield archive
    except BROKEN as exc:
        raise Unreturnable(
            f"{field}: {path} could not be read out of the container ({exc})", field=field
        ) from None


KINDS = {
    tarfile.SYMTYPE: "a symlink",
    tarfile.LNKTYPE: "a hard link",
    tarfile.DIRTYPE: "a directory",
    tarfile.FIFOTYPE: "a FIFO",
    tarfile.CHRTYPE: "a character device",
    tarfile.BLKTYPE: "a block device",
}


def _left_instead(
    path: str, member: tarfile.TarInfo | None, declared: str, field: str
) -> Unreturnable:
    found = "nothing" if member is None else KINDS.get(member.type, "a file")
    return Unreturnable(
        f"{field}: the run left {found} at {path}, not {declared}; nothing of it is returned",
        field=field,
    )
