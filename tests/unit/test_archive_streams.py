"""Archives as streams: what a caller's raw tar / tar.gz becomes on its way to the engine, what
is refused on the way, and what an engine's archive becomes on its way out."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from runner.archive_streams import (
    TAR_END,
    ChunkReader,
    checked_members,
    entry,
    file_member,
    file_stream,
    relative_tar_stream,
)
from runner.archives import Budget
from runner.errors import InvalidRequest, PayloadTooLarge
from tests.helpers import gzip_bomb, tar_gz
from tests.helpers import tar_member as member


def reader(data: bytes, limit: int = 10**9, chunk: int = 7000) -> ChunkReader:
    chunks = iter([data[i : i + chunk] for i in range(0, len(data), chunk)])
    return ChunkReader(chunks, limit, "volumes['/in']", "RUNNER_MAX_ARCHIVE_BYTES")


def through(
    data: bytes, budget: Budget | None = None, limit: int = 10**9, prefix: str = ""
) -> dict[str, bytes]:
    """What the engine would unpack: the checked members, read back as a tar."""
    stream = checked_members(
        reader(data, limit), "volumes['/in']", budget or Budget(10**9, 100), prefix
    )
    return unpacked(b"".join(stream) + TAR_END)


def unpacked(tar: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r:") as archive:
        return {
            m.name: (archive.extractfile(m).read() if m.isfile() else b"")  # type: ignore[union-attr]
            for m in archive
        }


def plain_tar(files: dict[str, bytes | None]) -> bytes:
    return gzip.decompress(tar_gz(files))  # type: ignore[arg-type]


def test_a_tar_gz_and_a_plain_tar_come_through_as_the_same_plain_tar():
    files = {"a.txt": b"a" * 100_000, "d/b": b"b"}
    assert through(tar_gz(files)) == through(plain_tar(files)) == {**files}


HOSTILE = [
    [member("/etc/passwd")],
    [member("../escape")],
    [member("a/../../escape")],
    [member("dev", tarfile.CHRTYPE)],
    [member("fifo", tarfile.FIFOTYPE)],
    [member("hl", tarfile.LNKTYPE, "../../etc/shadow")],
    [member("hl", tarfile.LNKTYPE, "/etc/shadow")],
    [member("link", tarfile.SYMTYPE, "/etc"), member("link/passwd")],
    [member("s", tarfile.SYMTYPE, "/v"), member("h", tarfile.LNKTYPE, "s"), member("h/1/evil")],
    [member("s", tarfile.SYMTYPE, "/etc"), member("h", tarfile.LNKTYPE, "s/shadow")],
]


@pytest.mark.parametrize("members", HOSTILE, ids=lambda ms: ms[-1].name)
def test_hostile_members_are_refused_before_a_byte_of_them_is_passed_on(members):
    passed: list[bytes] = []
    stream = checked_members(
        reader(tar_gz({"ok": b"fine"}, extra=members)), "volumes['/in']", Budget(10**9, 100)
    )
    with pytest.raises(InvalidRequest) as caught:
        for chunk in stream:
            passed.append(chunk)
    assert caught.value.field == "volumes['/in']"
    assert members[-1].name.encode() not in b"".join(passed)


@pytest.mark.parametrize(
    "data",
    [
        b"not an archive at all" * 100,
        gzip.compress(b"hello" * 200),
        tar_gz({"a": os.urandom(99_999)})[:50_000],
    ],
    ids=["garbage", "gzip-of-text", "truncated"],
)
def test_unreadable_content_is_invalid(data):
    with pytest.raises(InvalidRequest, match="tar"):
        through(data)


def test_a_gzip_bomb_stops_at_the_unpacked_budget():
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_EXTRACTED_BYTES"):
        through(gzip_bomb(200 * 1024 * 1024), Budget(10 * 1024 * 1024, 100))


def test_too_many_members_is_too_large():
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_ARCHIVE_MEMBERS"):
        through(tar_gz({f"f{i}": b"" for i in range(20)}), Budget(10**9, 10))


def test_content_over_the_byte_limit_is_413_naming_the_setting():
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_ARCHIVE_BYTES"):
        through(plain_tar({"big": b"x" * 100_000}), limit=50_000)


def test_a_file_becomes_a_tar_of_one_member_with_its_mode():
    budget = Budget(10**9, 10)
    data = b"".join(file_member(reader(b"#!/bin/sh\n" * 50_000), "bin/x", 0o755, "f", budget))
    with tarfile.open(fileobj=io.BytesIO(data + TAR_END)) as archive:
        (only,) = archive.getmembers()
        assert (only.name, only.mode, only.size) == ("bin/x", 0o755, 500_000)
    assert budget.bytes_left == 10**9 - 500_000


def test_members_under_a_prefix_keep_their_hard_links_inside_it_and_drop_the_root_entry():
    files = {".": None, "a.txt": b"A", "sub/b": b"B"}
    link = member("h", tarfile.LNKTYPE, "a.txt")
    data = gzip.decompress(tar_gz(files, extra=[link]))  # type: ignore[arg-type]
    stream = b"".join(checked_members(reader(data), "f", Budget(10**9, 10), "app/data/"))
    with tarfile.open(fileobj=io.BytesIO(stream + TAR_END)) as archive:
        names = {m.name: m.linkname for m in archive}
    assert names == {"app/data/a.txt": "", "app/data/sub/b": "", "app/data/h": "app/data/a.txt"}


def test_parts_made_one_after_another_unpack_as_one_archive():
    first = entry("data", None, 0o777) + entry("job.sh", b"echo hi", 0o755)
    second = b"".join(checked_members(reader(plain_tar({"x": b"X"})), "f", Budget(99, 9), "data/"))
    assert unpacked(first + second + TAR_END) == {"data": b"", "job.sh": b"echo hi", "data/x": b"X"}


def test_an_engine_archive_of_a_directory_comes_out_relative_to_it():
    engine_tar = plain_tar({"data": None, "data/a": b"A", "data/sub/b": b"B" * 5000})
    out = b"".join(relative_tar_stream(reader(engine_tar), "/x/data", "f", Budget(10**9, 10)))
    with tarfile.open(fileobj=io.BytesIO(out)) as archive:
        assert sorted(archive.getnames()) == ["a", "sub/b"]


def test_an_engine_archive_of_a_file_comes_out_as_its_bytes():
    engine_tar = plain_tar({"f.txt": b"hello" * 3000})
    assert b"".join(file_stream(reader(engine_tar), "/x/f.txt", "f")) == b"hello" * 3000
