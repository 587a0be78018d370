"""Archives as streams: content in and out of runs without ever holding it whole.

In: a caller's tar or tar.gz is read as it arrives and re-emitted as a plain tar of only the
members `archives.check_member` and the request's `Budget` let through; a single file is
spooled (a tar header needs its size first). Out: an engine's archive of a returned path is
re-emitted as the file's bytes, or as a plain tar with names relative to the directory.
Every reader is a `ChunkReader`, which stops at its byte limit with a 413 naming the setting.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import tempfile
from collections.abc import Iterator
from typing import IO

from isal import igzip

from runner.archives import UNREADABLE, Budget, check_member, unsafe
from runner.errors import InvalidRequest, PayloadTooLarge

STREAM_CHUNK_BYTES = 256 * 1024
SPOOL_MEMORY_BYTES = 1024 * 1024
TAR_END = b"\0" * (2 * tarfile.BLOCKSIZE)


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
            for member in archive:
                budget.spend(max(member.size, 0), field)
                normal = check_member(member, field, symlinks)
                if member.issparse():
                    raise unsafe(field, member.name, "is a sparse file")
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
    if prefix:
        member.name = prefix + normal
        if member.islnk():
            member.linkname = prefix + posixpath.normpath(member.linkname)
    if not member.isfile():
        member.size = 0
    return member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


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


def spool() -> IO[bytes]:
    """A temporary file that stays in memory up to a MiB, on disk past it."""
    return tempfile.SpooledTemporaryFile(SPOOL_MEMORY_BYTES)


def file_stream(reader: io.RawIOBase) -> Iterator[bytes]:
    """The bytes of the single file in an engine's archive of one path."""
    with tarfile.open(fileobj=reader, mode="r|") as archive:
        for member in archive:
            if member.isfile():
                yield from _member_data(archive, member, padded=False)
                return


def relative_tar_stream(reader: io.RawIOBase, dirname: str) -> Iterator[bytes]:
    """An engine's archive of a directory as a plain tar with names relative to it: the
    engine names members `<dirname>/...`, callers get `...` (the entry for the directory
    itself is dropped), so it can be sent back as a directory's content."""
    prefix = dirname + "/"
    with tarfile.open(fileobj=reader, mode="r|") as archive:
        for member in archive:
            name = posixpath.normpath(member.name)
            if not name.startswith(prefix):
                continue
            member.name = name[len(prefix) :]
            if member.islnk() and member.linkname.startswith(prefix):
                member.linkname = member.linkname[len(prefix) :]
            if not member.isfile():
                member.size = 0
            yield member.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
            if member.isfile():
                yield from _member_data(archive, member)
    yield TAR_END
