"""What the process in the container leaves at its returned paths (`response: true`) is its own
doing: a symlink, a FIFO, a directory where a file was declared, a symlink loop, nothing at all.
Each is a per-path `error` in the run's result, the run's output and other paths come back,
and nothing is a 500: synchronously, as multipart/mixed, and for an async run for as long as
its result is kept. A directory past RUNNER_MAX_ARCHIVE_MEMBERS is a 413 naming it."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.docker.test_binary_path import names, parts_of
from tests.helpers import Server, b64, run_body

LEFT_AT_A_FILE = {
    "symlink": ("ln -sf /etc/passwd /out/f", "a symlink"),
    "fifo": ("rm /out/f; mkfifo /out/f", "a FIFO"),
    "directory": ("rm /out/f; mkdir /out/f; echo x > /out/f/y", "a directory"),
    "symlink-loop": ("ln -sf /out/f /out/f", "a symlink loop"),
    "symlink-to-a-device": ("ln -sf /dev/zero /out/f", "a symlink"),
    "removed": ("rm /out/f", "nothing"),
}
LEFT_AT_A_DIRECTORY = {
    "symlink": ("rm -r /out/d; ln -s /etc /out/d", "a symlink"),
    "file": ("rm -r /out/d; echo x > /out/d", "a file"),
    "symlink-loop": ("rm -r /out/d; ln -s /out/d /out/d", "a symlink loop"),
}


def body(script: str) -> dict[str, object]:
    """A run that writes the good returned file, then does `script` to the others."""
    volumes = {
        "/out/f": {"type": "file", "content": b64(b"hi"), "response": True},
        "/out/d": {"type": "directory", "response": True},
        "/good": {"type": "file", "content": b64(b""), "response": True},
    }
    return run_body("sh", "-c", f"echo kept > /good; {script}; echo ran", volumes=volumes)


def assert_per_path_error(result: dict, path: str, kind: str) -> None:  # type: ignore[type-arg]
    assert result["stdout"] == "ran\n", result
    volume = result["volumes"][path]
    assert volume["content"] == ""
    assert f"the run left {kind} at {path}" in volume["error"]
    assert volume["error"].startswith(f"volumes['{path}']")


@pytest.mark.parametrize(("script", "kind"), LEFT_AT_A_FILE.values(), ids=LEFT_AT_A_FILE.keys())
def test_a_returned_file_left_as_something_else_is_a_per_path_error(client, script, kind):
    response = client.post("/run", json=body(script))
    assert response.status_code == 200, response.text
    result = response.json()
    assert_per_path_error(result, "/out/f", kind)
    assert result["volumes"]["/good"] == {"type": "file", "content": b64(b"kept\n"), "error": None}


@pytest.mark.parametrize(
    ("script", "kind"), LEFT_AT_A_DIRECTORY.values(), ids=LEFT_AT_A_DIRECTORY.keys()
)
def test_a_returned_directory_left_as_something_else_is_a_per_path_error(client, script, kind):
    response = client.post("/run", json=body(script))
    assert response.status_code == 200, response.text
    assert_per_path_error(response.json(), "/out/d", kind)


def test_as_raw_parts_the_error_is_in_the_result_and_the_other_paths_come(client):
    answer = client.post(
        "/run", json=body(LEFT_AT_A_FILE["symlink"][0]), headers={"Accept": "multipart/mixed"}
    )
    assert answer.status_code == 200, answer.text
    parts = parts_of(answer)
    result = httpx.Response(200, content=parts.pop("result")).json()
    assert_per_path_error(result, "/out/f", "a symlink")
    assert set(parts) == {"/out/d", "/good"}
    assert parts["/good"] == b"kept\n"
    assert names(parts["/out/d"]) == {}


def test_an_async_run_keeps_its_per_path_error_and_its_file_is_a_409(server: Server):
    with server() as client:
        run_id = client.post("/runs", json=body(LEFT_AT_A_FILE["fifo"][0])).json()["run_id"]
        client.get(f"/runs/{run_id}/logs", timeout=60)  # the event stream ends with the run
        first, again = client.get(f"/runs/{run_id}"), client.get(f"/runs/{run_id}")
        file = client.get(f"/runs/{run_id}/files/out/f")
        good = client.get(f"/runs/{run_id}/files/good")
    assert first.status_code == again.status_code == 200
    assert first.json()["state"] == "succeeded"
    assert_per_path_error(first.json()["result"], "/out/f", "a FIFO")
    assert_per_path_error(again.json()["result"], "/out/f", "a FIFO")
    assert file.status_code == 409
    assert file.json()["error"] == "unreturnable_path"
    assert "a FIFO at /out/f" in file.json()["message"]
    assert good.content == b"kept\n"


def test_a_directory_past_the_member_budget_is_413_naming_the_setting(app_client):
    client: TestClient = app_client(max_archive_members=50)
    volumes = {"/out": {"type": "directory", "response": True}}
    script = "for i in $(seq 1 60); do touch /out/f$i; done"
    response = client.post("/run", json=run_body("sh", "-c", script, volumes=volumes))
    assert response.status_code == 413
    assert response.json()["field"] == "volumes['/out']"
    assert "RUNNER_MAX_ARCHIVE_MEMBERS" in response.json()["message"]


def test_a_directory_within_the_member_budget_comes_back_whole(app_client):
    client: TestClient = app_client(max_archive_members=50)
    volumes = {"/out": {"type": "directory", "response": True}}
    script = "for i in $(seq 1 40); do touch /out/f$i; done"
    response = client.post("/run", json=run_body("sh", "-c", script, volumes=volumes))
    assert response.status_code == 200, response.text
    assert response.json()["volumes"]["/out"]["error"] is None
