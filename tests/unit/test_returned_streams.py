"""What an engine hands out for a returned path, as the run left it: anything but what was
declared is `Unreturnable` before a byte goes out; a directory's members count against the
member budget; and reading keeps memory flat in the member count (tarfile alone keeps every
member it read: about 700 bytes each)."""

from __future__ import annotations

import io
import itertools
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator

import pytest

from runner.archive_streams import (
    ChunkReader,
    Prepended,
    checked_members,
    file_stream,
    relative_tar_stream,
    released,
)
from runner.archives import Budget
from runner.errors import PayloadTooLarge, Unreturnable

FIELD = "volumes['/out/x']"


def engine_tar(*members: tarfile.TarInfo) -> ChunkReader:
    """A reader of what the engine would send: these members (files hold b"data")."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for member in members:
            member.size = 4 if member.isfile() else 0
            tar.addfile(member, io.BytesIO(b"data") if member.isfile() else None)
    return ChunkReader(iter([out.getvalue()]), 10**9, FIELD)


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


LEFT_INSTEAD_OF_A_FILE = [
    (member("x", tarfile.SYMTYPE, "/etc/passwd"), "a symlink"),
    (member("x", tarfile.FIFOTYPE), "a FIFO"),
    (member("x", tarfile.CHRTYPE), "a character device"),
    (member("x", tarfile.BLKTYPE), "a block device"),
    (member("x", tarfile.DIRTYPE), "a directory"),
    (None, "nothing"),
]


@pytest.mark.parametrize(
    ("left", "kind"), LEFT_INSTEAD_OF_A_FILE, ids=[kind for _, kind in LEFT_INSTEAD_OF_A_FILE]
)
def test_a_file_path_holding_something_else_is_unreturnable_naming_it(left, kind):
    reader = engine_tar(*([left, member("x/inside")] if left else []))
    with pytest.raises(Unreturnable) as caught:
        next(file_stream(reader, "/out/x", FIELD))
    assert caught.value.field == FIELD
    assert f"left {kind} at /out/x, not a file" in caught.value.message
    assert caught.value.status_code == 409


@pytest.mark.parametrize(
    ("left", "kind"),
    [
        (member("x", tarfile.SYMTYPE, "/etc"), "a symlink"),
        (member("x"), "a file"),
        (member("x", tarfile.FIFOTYPE), "a FIFO"),
    ],
    ids=["symlink", "file", "fifo"],
)
def test_a_directory_path_holding_something_else_is_unreturnable(left, kind):
    with pytest.raises(Unreturnable, match=f"left {kind} at /out/x, not a directory"):
        next(relative_tar_stream(engine_tar(left), "/out/x", FIELD, Budget(10**9, 10)))


def test_a_cut_short_archive_is_unreturnable_not_a_crash():
    whole = engine_tar(member("x")).read()
    reader = ChunkReader(iter([whole[:300]]), 10**9, FIELD)
    with pytest.raises(Unreturnable, match="could not be read"):
        b"".join(file_stream(reader, "/out/x", FIELD))


def test_a_directory_past_the_member_budget_is_413_naming_the_setting():
    reader = engine_tar(member("x", tarfile.DIRTYPE), *(member(f"x/{n}") for n in range(11)))
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_ARCHIVE_MEMBERS") as caught:
        b"".join(relative_tar_stream(reader, "/out/x", FIELD, Budget(10**9, 10)))
    assert caught.value.field == FIELD


def test_the_member_budget_is_shared_by_a_run_s_directories():
    shared = Budget(10**9, 10)
    first = engine_tar(member("x", tarfile.DIRTYPE), *(member(f"x/{n}") for n in range(6)))
    b"".join(relative_tar_stream(first, "/out/x", FIELD, shared))
    second = engine_tar(member("x", tarfile.DIRTYPE), *(member(f"x/{n}") for n in range(6)))
    with pytest.raises(PayloadTooLarge):
        b"".join(relative_tar_stream(second, "/out/x", FIELD, shared))


KEPT_PER_MEMBER = 100
"""Bytes of memory per member read at most: tarfile keeps about 730 (its TarInfo)."""


def many_empty_files(top: str, count: int) -> Iterator[bytes]:
    """An engine's archive of `top` holding `count` empty files, made as it is read."""
    folder = member(top, tarfile.DIRTYPE).tobuf(tarfile.PAX_FORMAT)
    empty = member(f"{top}/{'f' * 120}").tobuf(tarfile.PAX_FORMAT)  # a PAX name, as engines do
    return itertools.chain([folder], itertools.repeat(empty, count), [bytes(1024)])


Read = Callable[[ChunkReader, int], Iterator[bytes]]
READERS: dict[str, Read] = {
    "returned directory": lambda r, n: relative_tar_stream(r, "/out/x", FIELD, Budget(10**9, n)),
    "uploaded directory": lambda r, n: checked_members(r, FIELD, Budget(10**9, n + 1), "x/"),
}


def peak_memory(read: Read, count: int) -> int:
    reader = ChunkReader(many_empty_files("x", count), 10**10, FIELD)
    tracemalloc.start()
    try:
        for _ in read(reader, count):
            pass
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("read", READERS.values(), ids=READERS.keys())
def test_reading_more_members_takes_no_more_memory(read):
    """tracemalloc is slow: a thousand more members tell as well as 120k whether each is kept."""
    grown = peak_memory(read, 1300) - peak_memory(read, 300)
    assert grown < KEPT_PER_MEMBER * 1000, f"{grown} bytes more for 1000 more members"


def test_a_stream_left_part_read_closes_the_engine_stream_it_reads() -> None:
    """What the service hands on (its first chunk read ahead) and a reader that stops early:
    the engine's response under them closes then, not when the collector finds it."""
    closed: list[bool] = []

    def engine_stream() -> Iterator[bytes]:
        try:
            yield from (b"first", b"second", b"third")
        finally:
            closed.append(True)

    for read in (0, 1, 2):  # closed before reading, at the chunk read ahead, past it
        closed.clear()
        chunks = engine_stream()
        handed_on = Prepended(next(chunks), chunks)
        with released(handed_on):
            assert list(itertools.islice(handed_on, read)) == [b"first", b"second"][:read]
            assert closed == []
        assert closed == [True], read
