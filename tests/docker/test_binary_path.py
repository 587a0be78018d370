"""The binary path end to end on the real engine: content in as multipart parts (raw bytes),
returned paths out as multipart/mixed parts or a file / tar download; every check of the
archive path applies to the streamed bytes, and nothing is left behind when one refuses."""

from __future__ import annotations

import io
import json
import tarfile
from typing import Any

import httpx
import pytest
from python_multipart.multipart import MultipartParser, parse_options_header

from tests.helpers import (
    LocalClient,
    ZeroTar,
    gzip_bomb,
    managed_objects,
    run_body,
    tar_gz,
    tar_member,
)

MiB = 1024 * 1024


def form(body: dict[str, Any], **parts: Any) -> list[tuple[str, Any]]:
    """Multipart fields: the request first, then each content part (key: volume key)."""
    fields: list[tuple[str, Any]] = [("request", (None, json.dumps(body), "application/json"))]
    return fields + [(key, ("content", data)) for key, data in parts.items()]


def parts_of(response: httpx.Response) -> dict[str, bytes]:
    """A multipart/mixed answer's parts by name, parsed as a client would."""
    boundary = parse_options_header(response.headers["content-type"])[1][b"boundary"]
    found: dict[str, bytearray] = {}
    state = {"field": b"", "value": b"", "name": ""}

    def header_end() -> None:
        if state["field"].lower() == b"content-disposition":
            state["name"] = parse_options_header(state["value"])[1][b"name"].decode()
            found[state["name"]] = bytearray()
        state["field"] = state["value"] = b""

    parser = MultipartParser(
        boundary,
        {
            "on_header_field": lambda d, s, e: state.__setitem__("field", state["field"] + d[s:e]),
            "on_header_value": lambda d, s, e: state.__setitem__("value", state["value"] + d[s:e]),
            "on_header_end": header_end,
            "on_part_data": lambda d, s, e: found[state["name"]].extend(d[s:e]),
        },
    )
    parser.write(response.content)
    return {name: bytes(data) for name, data in found.items()}


def names(tar: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        return {
            m.name: archive.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            for m in archive
        }


def post(client: Any, body: dict[str, Any], **parts: Any) -> httpx.Response:
    return client.post("/run", files=form(body, **parts), headers={"Accept": "multipart/mixed"})


def test_a_file_and_a_directory_go_in_as_raw_bytes_and_come_back_as_raw_bytes(client):
    script = "cat /in/a.txt /script.sh > /out/copy; mkdir /out/sub; echo b > /out/sub/b"
    body = run_body(
        "sh",
        "/script.sh",
        volumes={
            "/script.sh:ro": {"type": "file", "mode": "0755"},
            "/in": {"type": "directory"},
            "/out": {"type": "directory", "response": True},
        },
    )
    script_bytes = f"{script}\n".encode()
    response = post(
        client, body, **{"/script.sh:ro": script_bytes, "/in": tar_gz({"a.txt": b"A\n"})}
    )
    assert response.status_code == 200, response.text
    parts = parts_of(response)
    assert json.loads(parts["result"])["exit_code"] == 0
    assert names(parts["/out"]) == {"copy": b"A\n" + script_bytes, "sub": None, "sub/b": b"b\n"}


def test_a_plain_tar_is_accepted_for_a_directory(client):
    plain = names_to_tar({"x": b"plain"})
    body = run_body("cat", "/d/x", volumes={"/d": {"type": "directory"}})
    response = client.post("/run", files=form(body, **{"/d": plain}))
    assert response.json()["stdout"] == "plain"


def names_to_tar(files: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def test_read_only_content_parts_refuse_writes(client):
    body = run_body(
        "sh",
        "-c",
        "echo no > /f; echo no > /d/new",
        volumes={"/f:ro": {"type": "file"}, "/d:ro": {"type": "directory"}},
    )
    response = client.post("/run", files=form(body, **{"/f:ro": b"x", "/d:ro": tar_gz({"a": b""})}))
    result = response.json()
    assert result["exit_code"] != 0
    assert result["stderr"].count("Read-only file system") == 2


def test_a_finished_async_runs_returned_paths_download_as_a_file_and_a_tar(server):
    volumes = {"/out.txt": {"type": "file", "content": "", "response": True}}
    volumes["/out"] = {"type": "directory", "response": True}
    body = run_body("sh", "-c", "echo f > /out.txt; echo g > /out/g", volumes=volumes)
    with server() as client:
        run_id = client.post("/runs", files=form(body)).json()["run_id"]
        client.get(f"/runs/{run_id}/logs", timeout=60)  # the event stream ends with the run
        assert client.get(f"/runs/{run_id}/files/out.txt").content == b"f\n"
        tar = client.get(f"/runs/{run_id}/files/out")
        missing = client.get(f"/runs/{run_id}/files/etc/passwd")
    assert tar.headers["content-type"] == "application/x-tar"
    assert names(tar.content) == {"g": b"g\n"}
    assert missing.status_code == 404
    assert "/out.txt, /out" in missing.json()["message"]


def test_a_returned_path_written_with_a_leading_slash_is_404_however_many(server):
    volumes = {"/out": {"type": "directory", "response": True}}
    with server() as client:
        run_id = client.post("/runs", json=run_body("true", volumes=volumes)).json()["run_id"]
        client.get(f"/runs/{run_id}/logs", timeout=60)  # the event stream ends with the run
        answers = [client.get(f"/runs/{run_id}/files{slashes}out") for slashes in ("//", "///")]
        assert client.get(f"/runs/{run_id}/files/out").status_code == 200
    assert [answer.status_code for answer in answers] == [404, 404]
    assert {answer.json()["field"] for answer in answers} == {"path"}
    assert f"/runs/{run_id}/files/out" in answers[1].json()["message"]


def test_a_200_mib_directory_streams_in(server):
    limits = {"max_archive_bytes": 300 * MiB, "max_extracted_bytes": 300 * MiB}
    with server(max_request_bytes=300 * MiB, **limits) as client:
        body = run_body("wc", "-c", "/d/big", volumes={"/d": {"type": "directory"}})
        files = form(body) + [("/d", ("big.tar", ZeroTar(200 * MiB)))]
        response = client.post("/run", files=files, timeout=120)
    assert response.status_code == 200, response.text
    assert response.json()["stdout"].split()[0] == str(200 * MiB)


def hostile() -> list[Any]:
    m = tar_member
    bomb = gzip_bomb(64 * MiB)
    cases = {
        "absolute": (tar_gz({}, extra=[m("/etc/passwd")]), 422),
        "dotdot": (tar_gz({}, extra=[m("../escape")]), 422),
        "nested-dotdot": (tar_gz({}, extra=[m("a/../../escape")]), 422),
        "device": (tar_gz({}, extra=[m("dev", tarfile.CHRTYPE)]), 422),
        "fifo": (tar_gz({}, extra=[m("fifo", tarfile.FIFOTYPE)]), 422),
        "hardlink-out": (tar_gz({}, extra=[m("hl", tarfile.LNKTYPE, "../../etc/shadow")]), 422),
        "hardlink-abs": (tar_gz({}, extra=[m("hl", tarfile.LNKTYPE, "/etc/shadow")]), 422),
        "through-symlink": (
            tar_gz({}, extra=[m("link", tarfile.SYMTYPE, "/etc"), m("link/passwd")]),
            422,
        ),
        "through-hardlink-to-symlink": (
            tar_gz(
                {},
                extra=[m("s", tarfile.SYMTYPE, "/v"), m("h", tarfile.LNKTYPE, "s"), m("h/1/evil")],
            ),
            422,
        ),
        "hardlink-through-symlink": (
            tar_gz(
                {}, extra=[m("s", tarfile.SYMTYPE, "/etc"), m("h", tarfile.LNKTYPE, "s/shadow")]
            ),
            422,
        ),
        "garbage": (b"not an archive" * 100, 422),
        "truncated": (tar_gz({"a": bytes(range(256)) * 4000})[:2000], 422),
        "gzip-bomb": (bomb, 413),
        "too-many-members": (tar_gz({f"f{i}": b"" for i in range(30)}), 413),
    }
    return [pytest.param(data, status, id=name) for name, (data, status) in cases.items()]


@pytest.fixture(scope="module")
def strict(docker_client, make_module_settings):  # type: ignore[no-untyped-def]
    from api_app import create_app

    settings = make_module_settings(
        max_extracted_bytes=8 * MiB, max_archive_members=20, max_archive_bytes=2 * MiB
    )
    with LocalClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize(("data", "status"), hostile())
def test_hostile_archives_sent_as_raw_bytes_are_refused_and_leave_nothing(
    strict, docker_client, data, status
):
    body = run_body("true", volumes={"/d": {"type": "directory"}})
    response = strict.post("/run", files=form(body, **{"/d": data}))
    assert response.status_code == status, response.text
    assert response.json()["field"].startswith("volumes['/d']")
    assert managed_objects(docker_client, strict.app.state.service.settings.instance_id) == []


def test_a_part_over_the_size_limit_is_413_mid_stream_and_leaves_nothing(strict, docker_client):
    body = run_body("true", volumes={"/f": {"type": "file"}})
    response = strict.post("/run", files=form(body, **{"/f": bytes(5 * MiB)}))
    assert response.status_code == 413
    assert "RUNNER_MAX_ARCHIVE_BYTES" in response.json()["message"]
    assert managed_objects(docker_client, strict.app.state.service.settings.instance_id) == []


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ([("/d", ("x", b"1"))], "first part"),
        (form(run_body("true"), **{"/nope": b"1"}), "declare it"),
        (form(run_body("true", volumes={"/f": {"type": "file"}})), "as a part named '/f'"),
        (
            form(
                run_body("true", volumes={"/f": {"type": "file", "content": "eA=="}}),
                **{"/f": b"1"},
            ),
            "no inline",
        ),
    ],
    ids=["request-not-first", "undeclared-part", "file-without-part", "content-twice"],
)
def test_malformed_multipart_requests_are_422_naming_the_fix(strict, docker_client, fields, words):
    response = strict.post("/run", files=fields)
    assert response.status_code == 422, response.text
    assert words in response.json()["message"]
    assert managed_objects(docker_client, strict.app.state.service.settings.instance_id) == []
