"""Header values no file can have, sent in a caller's archive: refused naming the request field
and the header field, on every way in (base64 tar.gz, raw tar parts, named volumes); and what
passes reaches the engine with a header of the runner's own, none of the caller's other PAX
records."""

from __future__ import annotations

import io
import tarfile

import pytest

from runner.archive_streams import TAR_END, ChunkReader, checked_members
from runner.archives import Budget, check_tar_gz, repacked
from runner.errors import InvalidRequest, PayloadTooLarge

FIELD = "volumes['/app'].content"


def archive(pax: dict[str, str], name: str = "a.txt", *, gz: bool = True) -> bytes:
    """A tar (gzip by default) of one small file whose PAX header says `pax`."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gz else "w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(name)
        info.size = 2
        info.pax_headers = pax
        tar.addfile(info, io.BytesIO(b"hi"))
    return out.getvalue()


ABSURD = [
    ({"mtime": "1e400"}, "mtime"),
    ({"mtime": "nan"}, "mtime"),
    ({"mtime": "-99999999999"}, "mtime"),
    ({"mtime": "1e30"}, "mtime"),
    ({"size": "-5"}, "size"),
    ({"uid": "-1"}, "uid"),
    ({"uid": "99999999999999999999"}, "uid"),
    ({"gid": "4294967296"}, "gid"),
    ({"path": "caf\udce9"}, "name"),
    ({"path": "d/" * 2100 + "f"}, "name"),
    ({"linkpath": "caf\udce9"}, "link target"),
]


@pytest.mark.parametrize(("pax", "what"), ABSURD, ids=lambda v: str(v)[:30])
def test_an_absurd_header_is_refused_naming_the_field_and_the_header_field(pax, what):
    with pytest.raises(InvalidRequest) as caught:
        check_tar_gz(archive(pax), FIELD, Budget(10**9, 100))
    assert caught.value.field == FIELD
    assert f"its {what} " in caught.value.message


@pytest.mark.parametrize(("pax", "what"), ABSURD, ids=lambda v: str(v)[:30])
def test_an_absurd_header_in_a_raw_part_is_refused_before_a_byte_is_passed_on(pax, what):
    passed: list[bytes] = []
    reader = ChunkReader(iter([archive(pax, gz=False)]), 10**9, "volumes['/app']")
    with pytest.raises(InvalidRequest, match=f"its {what} "):
        for chunk in checked_members(reader, "volumes['/app']", Budget(10**9, 100), "app/"):
            passed.append(chunk)
    assert passed == []


def test_a_size_no_budget_holds_is_too_large():
    with pytest.raises(PayloadTooLarge, match="RUNNER_MAX_EXTRACTED_BYTES"):
        check_tar_gz(archive({"size": "9" * 30}), FIELD, Budget(10**9, 100))


@pytest.mark.parametrize("pax", [{"GNU.sparse.map": "x,y"}, {"GNU.sparse.size": "zz"}])
def test_sparse_records_tarfile_cannot_parse_make_an_unreadable_archive(pax):
    with pytest.raises(InvalidRequest, match="not a readable tar"):
        check_tar_gz(archive(pax), FIELD, Budget(10**9, 100))


def test_what_passes_reaches_the_engine_with_the_runner_s_own_header():
    pax = {"SCHILY.xattr.security.capability": "x", "comment": "hi", "uname": "evil"}
    data = archive({**pax, "mtime": "1700000000.5"}, gz=False)
    reader = ChunkReader(iter([data]), 10**9, "f")
    emitted = b"".join(checked_members(reader, "f", Budget(10**9, 10), "app/")) + TAR_END
    with tarfile.open(fileobj=io.BytesIO(emitted)) as tar:
        (member,) = tar.getmembers()
        assert tar.extractfile(member).read() == b"hi"  # type: ignore[union-attr]
    assert (member.name, member.mtime, member.uname) == ("app/a.txt", 1700000000, "")
    assert not set(member.pax_headers) & set(pax)


def test_a_named_volume_s_content_is_re_emitted_too():
    data = archive({"SCHILY.xattr.user.x": "v"})
    check_tar_gz(data, "content", Budget(10**9, 10))
    with tarfile.open(fileobj=io.BytesIO(repacked(data, None)), mode="r:gz") as tar:
        (member,) = tar.getmembers()
    assert member.name == "a.txt"
    assert "SCHILY.xattr.user.x" not in member.pax_headers
