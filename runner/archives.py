"""Base64, tar and gzip in and out: the one place that touches archive bytes.

Base64 goes through pybase64 and gzip through ISA-L (`isal`): the same formats as the standard
library's, several times faster, which is most of the cost of moving files through JSON.

Input archives are checked member by member before any of their bytes reach an engine: absolute
names, `..`, device nodes, FIFOs, hard links out of the tree and writes through a symlink the
archive itself made (or through a hard link to one) are refused, and the unpacked size and
member count are bounded by a `Budget` shared by the whole request, so a gzip bomb is stopped
after at most the budget's worth of decompression. Output archives are streamed: never more
than the limit is held.
"""

from __future__ import annotations

import io
import posixpath
import tarfile
import zlib
from collections.abc import Iterable
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
)
GZIP_LEVEL = 1  # returned archives: speed over size (most of what runs produce is small)


@dataclass
class Budget:
    """What one request's archives may still unpack to; shared across its content fields."""

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
                "(RUNNER_MAX_ARCHIVE_MEMBERS); pack fewer files",
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
            for member in archive:
                budget.spend(max(member.size, 0), field)
                names.append(check_member(member, field, symlinks))
    except UNREADABLE as exc:
        raise InvalidRequest(
            f"{field}: not a readable tar.gz ({exc}); make it with `tar czf x.tar.gz DIR` "
            "and send its base64",
            field=field,
        ) from None
    return names


def check_member(member: tarfile.TarInfo, field: str, symlinks: set[str]) -> str:
    name = member.name
    if name.startswith("/"):
        raise unsafe(field, name, "is an absolute path")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../"):
        raise unsafe(field, name, "climbs out of the target directory with '..'")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise unsafe(field, name, "is a device node or FIFO")
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


def strip_top_folder(data: bytes, top: str) -> bytes:
    """Re-pack a checked tar.gz as a plain tar with `top/` removed from every name."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=_gunzip(data), mode="r|") as source,
        tarfile.open(fileobj=out, mode="w|") as target,
    ):
        _repack(source, target, top)
    return out.getvalue()


def _repack(source: tarfile.TarFile, target: tarfile.TarFile, prefix: str) -> None:
    """Copy members from `source` to `target`, names (and hard-link targets) made relative to
    `prefix`; the entry for `prefix` itself is dropped."""
    for member in source:
        member.name = _relative(member.name, prefix)
        if not member.name:
            continue
        if member.islnk():
            member.linkname = _relative(member.linkname, prefix)
        target.addfile(member, source.extractfile(member) if member.isfile() else None)


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


def file_from_tar_stream(reader: io.RawIOBase) -> bytes:
    """The single file in an engine's archive of one path."""
    with tarfile.open(fileobj=reader, mode="r|") as archive:
        for member in archive:
            extracted = archive.extractfile(member)
            if extracted is not None:
                return extracted.read()
    return b""


def directory_tar_gz_from_stream(reader: io.RawIOBase, dirname: str) -> bytes:
    """Re-pack an engine's archive of a directory as tar.gz with names relative to it.

    The engine names members `<dirname>/...`; callers get `...`, so the archive can be sent back
    as `directory` content and recreate the same tree.
    """
    out = io.BytesIO()
    with (
        igzip.IGzipFile(fileobj=out, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as packed,
        tarfile.open(fileobj=reader, mode="r|") as source,
        tarfile.open(fileobj=packed, mode="w|") as target,
    ):
        _repack(source, target, dirname)
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
