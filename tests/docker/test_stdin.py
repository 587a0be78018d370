"""`stdin`: text on the command's standard input, then end of file, on the real engine, through
POST /run and POST /runs."""

from __future__ import annotations

import hashlib
import threading
import time

import docker
import pytest
from fastapi.testclient import TestClient

from tests.docker.test_async_runs import follow_to_exit, start, wait_for_output
from tests.helpers import Server, managed_objects, run_body, run_containers, until

MIB = 1024 * 1024
BIG = "".join(f"line {i:07d}\n" for i in range(MIB // 13 + 1))
"""A little over 1 MiB of text: far more than a pipe (64 KiB) or a socket buffer holds."""


def run(client: TestClient, *command: str, **fields: object) -> dict:  # type: ignore[type-arg]
    response = client.post("/run", json=run_body(*command, **fields))
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def feeds_alive() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "oneoff-stdin"]


def test_cat_echoes_its_input_then_sees_end_of_file(client):
    result = run(client, "sh", "-c", "cat; echo eof", stdin="hello\nworld\x00!\n")
    assert result["stdout"] == "hello\nworld\x00!\neof\n"
    assert result["exit_code"] == 0


def test_a_shell_reads_its_script_from_stdin(client):
    result = run(client, "sh", stdin="X=piped; echo $X && echo ok | tr a-z A-Z\n")
    assert result["stdout"] == "piped\nOK\n"


def test_without_stdin_the_input_is_empty(client):
    assert run(client, "sh", "-c", "wc -c")["stdout"].strip() == "0"


def test_a_mebibyte_in_while_the_command_prints_a_lot_first(client):
    """Output that fills every pipe before the command reads its input must not deadlock."""
    result = run(client, "sh", "-c", "seq 1 300000 >&2; md5sum", stdin=BIG, timeout_seconds=60)
    assert result["stdout"].split()[0] == hashlib.md5(BIG.encode()).hexdigest()
    assert result["stderr_truncated"] is True
    assert result["timed_out"] is False


def test_a_mebibyte_echoed_back_in_full_through_the_output_cap(app_client):
    client = app_client(max_output_bytes=4 * MIB)
    result = run(client, "cat", stdin=BIG, timeout_seconds=60)
    assert result["stdout"] == BIG


def test_a_command_that_never_reads_its_input_still_finishes(client):
    started = time.monotonic()
    result = run(client, "echo", "done", stdin=BIG, timeout_seconds=30)
    assert (result["stdout"], result["exit_code"], result["timed_out"]) == ("done\n", 0, False)
    assert time.monotonic() - started < 20
    until(lambda: not feeds_alive(), 10)


def test_a_timeout_with_unread_input_leaves_nothing_behind(
    app_client, docker_client, make_settings
):
    settings = make_settings()
    client = app_client(instance_id=settings.instance_id)
    result = run(client, "sleep", "30", stdin=BIG, timeout_seconds=1)
    assert result["timed_out"] is True
    until(lambda: not feeds_alive(), 10)
    until(lambda: managed_objects(docker_client, settings.instance_id) == [], 30)


def test_input_over_the_limit_is_refused_naming_stdin(app_client):
    client = app_client(max_archive_bytes=1024)
    response = client.post("/run", json=run_body("cat", stdin="x" * 1025))
    assert response.status_code == 413
    assert response.json()["field"] == "stdin"
    assert "RUNNER_MAX_ARCHIVE_BYTES" in response.json()["message"]
    assert client.post("/run", json=run_body("cat", stdin="x" * 1024)).status_code == 200


@pytest.mark.parametrize("bad", [7, ["a"], {"text": "a"}])
def test_stdin_that_is_not_text_is_a_422_naming_it(client, bad):
    response = client.post("/run", json=run_body("cat", stdin=bad))
    assert response.status_code == 422
    assert response.json()["field"] == "stdin"


def test_an_async_run_reads_its_input(server: Server) -> None:
    with server() as client:
        run_id = start(client, "sh", "-c", "md5sum", stdin=BIG)
        _, status = follow_to_exit(client, run_id)
    assert status["result"]["stdout"].split()[0] == hashlib.md5(BIG.encode()).hexdigest()


def test_cancelling_an_async_run_with_unread_input_removes_it(
    server: Server, docker_client: docker.DockerClient
) -> None:
    with server() as client:
        run_id = start(client, "sh", "-c", "echo ready; sleep 300", stdin=BIG)
        wait_for_output(client, run_id, "ready")
        assert client.delete(f"/runs/{run_id}").json()["state"] == "cancelled"
        assert run_containers(docker_client, run_id) == []
    until(lambda: not feeds_alive(), 10)
