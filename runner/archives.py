"""Base64, tar and gzip in and out: the one place that touches archive bytes.

Base64 goes through pybase64 and gzip through ISA-L (`isal`): the same formats as the standard
library's, several times faster, which is most of the cost of moving files through JSON.

Input archives are checked member by member before any of their bytes reach an engine: absolute
names, `..`, device nodes, FIFOs, sparse files, hard links out of the tree and writes through a
symlink the archive itself made (or through a hard link to one) are refused, so are header
values no file can have (a time of 1e400, a negative size or owner, a name that is not UTF-8),
and the unpacked size and member count are bounded by a `Budget` shared by the whole request, so
a gzip bomb is stopped after at most the budget's worth of decompression. What passes is
re-emitted with a header of its own (`header`): only name, type, mode, owner, time, size and
link target, never a caller's other PAX records (extended attributes, user names). Archives
are read with `members`, which keeps none of them: tarfile keeps every member it read (about
700 bytes each; 120k empty files cost the runner 90 MB). Output archives are streamed: never
more than the limit is held.
"""

from __future__ import annotations

import io
import math
import posixpath
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, BinaryIO, cast

import pybase64
from isal import igzip
from isal.igzip_lib import IsalError

from runner.errors import InvalidRequest, PayloadTooLarge

UNREADABLE: tuple[type[Exception], ...] = (
    tarfile.TarError,
    EOFError,
    cast(type[Exception], IsalError),
    zlib.error,
    OSError,
    ValueError,  # tarfile's reading of PAX and sparse records it cannot parse
    ArithmeticError,
)
GZIP_LEVEL = 1  # returned archives: speed over size (most of what runs produce is small)
LATEST_MTIME = 8**11 - 1
"""The latest time a plain tar header holds (year 2242); later ones are no file's."""
LARGEST_ID = 2**32 - 2
"""The largest uid or gid Linux has ((uid_t) -1 means "none")."""
LONGEST_NAME = 4096
"""Bytes in the longest path the kernel takes (PATH_MAX)."""


@dataclass
class Budget:
    """What one request's archives may still unpack to, shared across its content fields (or
    how many entries one run's returned directories may still hold)."""

    bytes_left: int
    members_left: int

    def spend(self, size: int, field: str) -> None:
        self.bytes_left -= size
        self.members_left -= 1
        if self.bytes_left < 0:
            raise PayloadTooLarge(
                f"{field}: the archives unpack to more than the operator's limit "
                "(RUNNER_MAX_EXTRACTED_BYTES); send less data or use a named volume",
                field=field,
            )
        if self.members_left < 0:
            raise PayloadTooLarge(
                f"{field}: the archives hold more entries than the operator's limit "
                "(RUNNER_MAX_ARCHIVE_MEMBERS); use fewer files, e.g. one archive of them",
                field=field,
            )


def decode_base64(text: str, field: str, max_bytes: int) -> bytes:
    """Decoded bytes of `text`; 422 naming `field` if it is not base64, 413 if too large.
    Decoded from the str itself: an ASCII copy of a large content field would cost its size
    again at the moment the request's memory peaks."""
    if len(text) // 4 * 3 > max_bytes + 3:
        raise PayloadTooLarge(
            f"{field}: {len(text) // 4 * 3} bytes exceed the operator's limit of {max_bytes} "
            "bytes per content field (RUNNER_MAX_ARCHIVE_BYTES)",
            field=field,
        )
    try:
        return pybase64.b64decode(text, validate=True)
    except ValueError:  # binascii.Error, or text that is not ASCII
        raise InvalidRequest(
            f"{field}: not valid base64; encode the bytes with standard base64 "
            "(e.g. `base64 -w0 file`), without line breaks or URL-safe characters",
            field=field,
        ) from None


def encode_base64(data: bytes) -> str:
    return pybase64.b64encode(data).decode("ascii")


def check_tar_gz(data: bytes, field: str, budget: Budget) -> list[str]:
    """Validate a tar.gz and return its member names (normalised); raise naming `field`."""
    names: list[str] = []
    symlinks: set[str] = set()
    try:
        with tarfile.open(fileobj=_gunzip(data), mode="r|") as archive:
            for member in members(archive):
                names.append(check_member(member, field, symlinks))
                budget.spend(member.size, field)
    except UNREADABLE as exc:
        raise InvalidRequest(
            f"{field}: not a readable tar.gz ({exc}); make it with `tar czf x.tar.gz DIR` "
            "and send its base64",
            field=field,
        ) from None
    return names


def members(archive: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """The members of an archive opened as a stream (`r|`), none kept once the next is read."""
    while (member := archive.next()) is not None:
        archive.members.clear()  # type: ignore[attr-defined]  # tarfile's list of those read
        yield member


def check_member(member: tarfile.TarInfo, field: str, symlinks: set[str]) -> str:
    """The member's normalised name, once its header and its place in the tree are judged
    safe (`symlinks`: what the archive made so far that a later member must not go through);
    raises InvalidRequest naming `field`, the member and what is wrong."""
    _check_header(member, field)
    name = member.name
    if name.startswith("/"):
        raise unsafe(field, name, "is an absolute path")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        raise unsafe(field, name, "climbs out of the target directory with '..'")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise unsafe(field, name, "is a device node or FIFO")
    if member.issparse():
        raise unsafe(field, name, "is a sparse file")
    if _through_symlink(normal, symlinks):
        raise unsafe(field, name, "would be written through a symlink the archive made")
    if member.islnk():
        target = posixpath.normpath(member.linkname)
        if member.linkname.startswith("/") or target == ".." or target.startswith("../"):
            raise unsafe(field, name, "is a hard link out of the archive's tree")
        if _through_symlink(target, symlinks):
            raise unsafe(field, name, "is a hard link through a symlink the archive made")
        if target in symlinks:  # a hard link to a symlink is that symlink under a second name
            symlinks.add(normal)
    if member.issym():
        symlinks.add(normal)
    return normal


def _check_header(member: tarfile.TarInfo, field: str) -> None:
    """Header values a file can have: names in UTF-8 and at most PATH_MAX, a time between 1970
    and 2242, sizes and owners that are not negative (a PAX record can say anything)."""
    for what, text in (("name", member.name), ("link target", member.linkname)):
        try:
            encoded = text.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad_header(field, member, what, "is not UTF-8") from None
        if len(encoded) > LONGEST_NAME:
            raise _bad_header(field, member, what, f"is longer than {LONGEST_NAME} bytes")
    if not (math.isfinite(member.mtime) and 0 <= member.mtime <= LATEST_MTIME):
        why = f"{member.mtime!r} is not a time between 1970 and 2242"
        raise _bad_header(field, member, "mtime", why)
    for what, value, most in (
        ("size", member.size, math.inf),
        ("uid", member.uid, LARGEST_ID),
        ("gid", member.gid, LARGEST_ID),
    ):
        if not 0 <= value <= most:
            raise _bad_header(field, member, what, f"{value!r} is out of range")


def _bad_header(field: str, member: tarfile.TarInfo, what: str, why: str) -> InvalidRequest:
    name = member.name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return InvalidRequest(
        f"{field}: archive member {name[:200]!r}: its {what} {why}; pack the files again with "
        "a standard tar (`tar czf x.tar.gz -C DIR .`)",
        field=field,
    )


def header(member: tarfile.TarInfo, name: str, linkname: str | None = None) -> bytes:
    """A new PAX header for `member` under `name` (and `linkname`): its type, permissions,
    owner, time, size (files only) and link target; none of its other records. A time no file
    has (an engine's archive is not judged by `check_member`) becomes 0."""
    info = tarfile.TarInfo(name)
    info.type = tarfile.REGTYPE if member.isfile() else member.type
    info.mode = member.mode & 0o7777
    info.uid, info.gid = member.uid, member.gid
    info.mtime = int(member.mtime) if math.isfinite(member.mtime) else 0
    info.size = member.size if member.isfile() else 0
    info.devmajor, info.devminor = member.devmajor, member.devminor
    info.linkname = member.linkname if linkname is None else linkname
    return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def _through_symlink(normal: str, symlinks: set[str]) -> bool:
    """Whether a parent of `normal` is a symlink (or a hard link to one) the archive made."""
    parts = normal.split("/")
    return any("/".join(parts[:depth]) in symlinks for depth in range(1, len(parts)))


def unsafe(field: str, name: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"{field}: archive member {name!r} {why}; pack the files with paths relative to "
        "the directory",
        field=field,
    )


def _gunzip(data: bytes) -> igzip.IGzipFile:
    """A reader of the gzip stream in `data`."""
    return igzip.IGzipFile(fileobj=io.BytesIO(data), mode="rb")


def single_top_folder(names: list[str]) -> str | None:
    """The one top-level folder every member sits in (`tar czf x.tar.gz dir`), if there is one."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) != 1:
        return None
    top = tops.pop()
    return top if any("/" in name for name in names) else None


def repacked(data: bytes, top: str | None) -> bytes:
    """A checked tar.gz re-emitted member by member (`header`: none of the caller's other
    records reach the engine) as a tar.gz, with `top/` removed from every name when given."""
    return gzipped(_repacked_members(data, top or ""))


def _repacked_members(data: bytes, top: str) -> Iterator[bytes]:
    with tarfile.open(fileobj=_gunzip(data), mode="r|") as source:
        for member in members(source):
            name = _relative(member.name, top) if top else member.name
            if not name:
                continue
            linkname = _relative(member.linkname, top) if member.islnk() and top else None
            yield header(member, name, linkname)
            if member.isfile():
                yield from _data(source, member)
    yield b"\0" * (2 * tarfile.BLOCKSIZE)


def _data(source: tarfile.TarFile, member: tarfile.TarInfo) -> Iterator[bytes]:
    """A file member's data and its padding to the next block."""
    data = source.extractfile(member)
    assert data is not None
    while chunk := data.read(256 * 1024):
        yield chunk
    if member.size % tarfile.BLOCKSIZE:
        yield b"\0" * (tarfile.BLOCKSIZE - member.size % tarfile.BLOCKSIZE)


def _relative(name: str, prefix: str) -> str:
    normal = posixpath.normpath(name)
    if normal == prefix:
        return ""
    return normal[len(prefix) + 1 :] if normal.startswith(prefix + "/") else normal


def tar_of(entries: Iterable[tuple[str, bytes | None, int]]) -> bytes:
    """A plain tar of (name, content, mode): content None makes a directory."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, content, mode in entries:
            info = tarfile.TarInfo(name)
            info.mode = mode
            if content is None:
                info.type = tarfile.DIRTYPE
                archive.addfile(info)
            else:
                info.size = len(content)
                archive.addfile(info, io.BytesIO(content))
    return out.getvalue()


def gzipped(chunks: Iterable[bytes]) -> bytes:
    """The chunks as one gzip stream (fast, `GZIP_LEVEL`)."""
    out = io.BytesIO()
    with igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as packed:
        for chunk in chunks:
            packed.write(chunk)
    return out.getvalue()


def pack_directory(path: Path) -> bytes:
    """A local directory as tar.gz with names relative to it: `directory` content for a run."""
    out = io.BytesIO()
    pack_directory_into(path, out)
    return out.getvalue()


def pack_directory_into(path: Path, out: BinaryIO) -> None:
    """`pack_directory`, streamed into `out` (memory stays small whatever the tree's size)."""
    with (
        igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as packed,
        tarfile.open(fileobj=packed, mode="w|") as target,
    ):
        for child in sorted(path.iterdir()):
            target.add(child, arcname=child.name)


def unpack_directory(data: bytes, target: Path) -> None:
    """Unpack a directory's tar.gz locally, decompressed as a stream: memory stays at a few
    chunks whatever the compression ratio (tarfile's own gzip reader inflates each 10 KiB
    read at once, ~10 MiB of zeros, and held 36 MiB for a 256 MiB file of them)."""
    unpack_tar(cast(IO[bytes], _gunzip(data)), target)


def unpack_tar(source: IO[bytes], target: Path) -> None:
    """Unpack a tar (plain or gzip) locally; tarfile's `data` filter refuses absolute names,
    `..`, links out of `target` and device files."""
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=source, mode="r|*") as archive:
        archive.extractall(target, filter="data")
