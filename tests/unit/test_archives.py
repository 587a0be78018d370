"""Archive checks: what a hostile or broken archive gets refused for, and what passes."""

from __future__ import annotations

import gzip
import tarfile

import pytest

from runner.archive_streams import ChunkReader
from runner.archives import (
    Budget,
    check_tar_gz,
    decode_base64,
    repacked,
    single_top_folder,
)
from runner.errors import InvalidRequest, PayloadTooLarge
from tests.helpers import b64, gzip_bomb, tar_gz, untar_gz
from tests.helpers import tar_member as member


def budget(size: int = 10**9, members: int = 10_000) -> Budget:
    return Budget(size, members)


def test_a_plain_archive_passes_and_lists_its_names():
    names = check_tar_gz(tar_gz({"d": None, "d/a.txt": b"a"}), "f", budget())
    assert names == ["d", "d/a.txt"]


@pytest.mark.parametrize(
    ("extra", "why"),
    [
        (member("/etc/passwd"), "absolute"),
        (member("../escape"), "'..'"),
        (member("a/../../escape"), "'..'"),
        (member("dev", tarfile.CHRTYPE), "device"),
        (member("fifo", tarfile.FIFOTYPE), "FIFO"),
        (member("hl", tarfile.LNKTYPE, "../../etc/shadow"), "hard link"),
        (member("hl", tarfile.LNKTYPE, "/etc/shadow"), "hard link"),
    ],
)
def test_unsafe_members_are_refused_naming_the_member(extra, why):
    with pytest.raises(InvalidRequest) as caught:
        check_tar_gz(tar_gz({}, extra=[extra]), "volumes['/x'].content", budget())
    assert why in caught.value.message
    assert extra.name in caught.value.message
    assert caught.value.field == "volumes['/x'].content"


def test_writing_through_a_symlink_the_archive_made_is_refused():
    link = member("link", tarfile.SYMTYPE, "/etc")
    through = member("link/passwd")
    with pytest.raises(InvalidRequest, match="through a symlink"):
        check_tar_gz(tar_gz({}, extra=[link, through]), "f", budget())


def test_a_symlink_alone_is_allowed():
    assert check_tar_gz(tar_gz({}, extra=[member("l", tarfile.SYMTYPE, "target")]), "f", budget())


def test_corrupt_gzip_is_invalid():
    with pytest.raises(InvalidRequest, match="tar.gz"):
        check_tar_gz(b"not gzip at all", "f", budget())


def test_gzip_of_something_that_is_not_tar_is_invalid():
    with pytest.raises(InvalidRequest, match="tar.gz"):
        check_tar_gz(gzip.compress(b"hello" * 200), "f", budget())


def test_truncated_archive_is_invalid():
    data = tar_gz({"a": b"x" * 100_000})
    with pytest.raises(InvalidRequest):
        check_tar_gz(data[: len(data) // 2], "f", budget())


def test_a_gzip_bomb_is_stopped_by_the_unpacked_size_budget():
    bomb = gzip_bomb(200 * 1024 * 1024)
    assert len(bomb) < 1024 * 1024
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_EXTRACTED_BYTES"):
        check_tar_gz(bomb, "f", budget(size=10 * 1024 * 1024))


def test_too_many_members_is_too_large():
    data = tar_gz({f"f{i}": b"" for i in range(20)})
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_ARCHIVE_MEMBERS"):
        check_tar_gz(data, "f", budget(members=10))


def test_the_budget_is_shared_across_fields():
    shared = budget(size=150)
    check_tar_gz(tar_gz({"a": b"x" * 100}), "first", shared)
    with pytest.raises(PayloadTooLarge) as caught:
        check_tar_gz(tar_gz({"b": b"x" * 100}), "second", shared)
    assert caught.value.field == "second"


def test_base64_round_trip():
    assert decode_base64(b64(b"\x00\xff data"), "f", 100) == b"\x00\xff data"


@pytest.mark.parametrize("text", ["not base64!", "YWJj\nZGVm", "YW=Jj", "ünïcode"])
def test_malformed_base64_is_invalid_and_names_the_field(text):
    with pytest.raises(InvalidRequest) as caught:
        decode_base64(text, "volumes['/a'].content", 1000)
    assert caught.value.field == "volumes['/a'].content"
    assert "base64" in caught.value.message


def test_base64_over_the_limit_is_refused_before_decoding():
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_ARCHIVE_BYTES"):
        decode_base64("A" * 4000, "f", 1000)


@pytest.mark.parametrize(
    ("names", "top"),
    [
        (["target", "target/a", "target/b/c"], "target"),
        (["target/a"], "target"),
        (["a", "b"], None),
        (["a.txt"], None),
        ([".", "a", "b"], None),
        ([], None),
    ],
)
def test_single_top_folder(names, top):
    assert single_top_folder(names) == top


def test_repacking_strips_the_top_folder_and_keeps_the_tree_below_it():
    data = tar_gz({"t": None, "t/a": b"A", "t/s": None, "t/s/b": b"B"})
    assert untar_gz(repacked(data, "t")) == {"a": b"A", "s": None, "s/b": b"B"}


def test_repacking_without_a_top_folder_keeps_every_name():
    data = tar_gz({"a": b"A", "d": None, "d/b": b"B"})
    assert untar_gz(repacked(data, None)) == {"a": b"A", "d": None, "d/b": b"B"}


def test_returned_content_over_the_limit_is_too_large():
    reader = ChunkReader(iter([b"x" * 600, b"y" * 600]), 1000, "volumes['/out']")
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_RESPONSE_BYTES"):
        reader.read()


def test_writing_through_a_hard_link_to_a_symlink_is_refused():
    extra = [member("s", tarfile.SYMTYPE, "/elsewhere"), member("h", tarfile.LNKTYPE, "s")]
    through = member("h/evil")
    with pytest.raises(InvalidRequest, match="'h/evil' would be written through a symlink"):
        check_tar_gz(tar_gz({}, extra=[*extra, through]), "f", budget())


def test_a_hard_link_through_a_symlink_is_refused():
    extra = [member("s", tarfile.SYMTYPE, "/etc"), member("h", tarfile.LNKTYPE, "s/shadow")]
    with pytest.raises(InvalidRequest, match="hard link through a symlink"):
        check_tar_gz(tar_gz({}, extra=extra), "f", budget())


def test_a_hard_link_to_a_symlink_alone_is_allowed():
    extra = [member("s", tarfile.SYMTYPE, "target"), member("h", tarfile.LNKTYPE, "s")]
    assert check_tar_gz(tar_gz({}, extra=extra), "f", budget()) == ["s", "h"]
