"""The core behaviours under gVisor (`RUNNER_RUNTIME=runsc`, registered with the engine by
scripts/ci-provision.sh): content in and out, `:ro`, timeout, output cap, response volumes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from fastapi.testclient import TestClient

from api_app import create_app
from tests.helpers import LocalClient, b64, instance_id, run_body, untar_gz

SCRIPT = b"#!/bin/sh\ncat /in/name.txt > /out/copy.txt\necho written > /in/name.txt\necho $?\n"
Check = Callable[[dict[str, Any]], None]


def content_in_ro_and_out(result: dict[str, Any]) -> None:
    assert result["exit_code"] == 0, result
    assert "Read-only file system" in result["stderr"]
    assert result["stdout"] == "1\n"  # the write to the :ro path failed
    returned = result["volumes"]["/out"]
    assert untar_gz(__import__("base64").b64decode(returned["content"])) == {
        "copy.txt": b"gvisor\n"
    }


def timed_out(result: dict[str, Any]) -> None:
    assert (result["status"], result["timed_out"]) == ("timeout", True), result


def output_capped(result: dict[str, Any]) -> None:
    assert result["stdout_truncated"] is True, result
    assert len(result["stdout"]) == 1024


def runs_in_gvisor(result: dict[str, Any]) -> None:
    assert "gVisor" in result["stdout"], result  # the sandbox's own kernel log


CASES: dict[str, tuple[dict[str, Any], Check]] = {
    "content-in-ro-and-response-volumes": (
        run_body(
            "/in/job.sh",
            volumes={
                "/in/job.sh:ro": {"type": "file", "content": b64(SCRIPT), "mode": "0755"},
                "/in/name.txt:ro": {"type": "file", "content": b64(b"gvisor\n")},
                "/out": {"type": "directory", "response": True},
            },
        ),
        content_in_ro_and_out,
    ),
    "timeout": (run_body("sleep", "30", timeout_seconds=1), timed_out),
    "output-cap": (run_body("sh", "-c", "yes | head -c 100000"), output_capped),
    "kernel": (run_body("dmesg"), runs_in_gvisor),
}


@pytest.fixture(scope="module")
def gvisor(docker_client: docker.DockerClient, make_module_settings) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    runtimes = docker_client.info().get("Runtimes") or {}
    if "runsc" not in runtimes:
        pytest.fail("the engine has no runsc runtime; run scripts/ci-provision.sh", pytrace=False)
    settings = make_module_settings(
        instance_id=instance_id("runsc"), runtime="runsc", max_output_bytes=1024
    )
    with LocalClient(create_app(settings)) as client:
        yield client


@pytest.mark.parametrize("case", list(CASES))
def test_core_behaviours_under_gvisor(gvisor: TestClient, case: str) -> None:
    body, check = CASES[case]
    response = gvisor.post("/run", json=body)
    assert response.status_code == 200, response.text
    check(response.json())


def test_a_request_chooses_gvisor_from_the_allowed_runtimes(app_client) -> None:  # type: ignore[no-untyped-def]
    client = app_client(allowed_runtimes=["runsc"])
    chosen = client.post("/run", json=run_body("dmesg", runtime="runsc")).json()
    default = client.post("/run", json=run_body("dmesg")).json()
    runs_in_gvisor(chosen)
    assert "gVisor" not in default["stdout"]
