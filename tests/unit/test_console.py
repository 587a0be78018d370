"""The CLI's own logic: requests from arguments, the progress display."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from runner.cli.client import ClientError
from runner.cli.console import Display, request_body
from runner.cli.main import parser


def parsed(*argv: str) -> argparse.Namespace:
    return parser().parse_args(["run", *argv])


def test_arguments_become_the_request(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("a")
    script = tmp_path / "job.sh"
    script.write_text("echo hi\n")
    script.chmod(0o755)
    args = parsed(
        "-e",
        "A=1",
        "-v",
        f"{tmp_path / 'src'}:/src:ro",
        "-v",
        f"{script}:/job.sh",
        "--out",
        "/src:./back",
        "--out",
        "/out:./result",
        "--timeout",
        "30",
        "--memory",
        "1g",
        "--cpus",
        "2",
        "--pull",
        "never",
        "-w",
        "/src",
        "-u",
        "1000",
        "img:1",
        "--",
        "sh",
        "/job.sh",
    )
    body = request_body(args)
    assert body["image"] == "img:1"
    assert body["command"] == ["sh", "/job.sh"]
    assert body["env_vars"] == {"A": "1"}
    assert (body["timeout_seconds"], body["memory"], body["cpus"]) == (30, "1g", 2)
    assert (body["pull_policy"], body["working_dir"], body["user"]) == ("never", "/src", "1000")
    volumes = body["volumes"]
    assert volumes["/src:ro"]["type"] == "directory" and volumes["/src:ro"]["response"] is True
    assert volumes["/job.sh"]["mode"] == "0755"
    assert volumes["/out"] == {"type": "directory", "response": True}


def test_the_runtime_is_chosen_as_with_docker_run() -> None:
    assert request_body(parsed("--runtime", "runsc", "img:1"))["runtime"] == "runsc"
    assert "runtime" not in request_body(parsed("img:1"))


def test_the_default_pull_policy_is_docker_run_s() -> None:
    assert request_body(parsed("img"))["pull_policy"] == "missing"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-v", "nowhere:/x", "img"], "neither a file nor a directory"),
        (["-v", "relative", "img"], "LOCAL:/container/path"),
        (["--out", "relative", "img"], "/container/path:LOCAL_DIR"),
    ],
)
def test_bad_arguments_name_themselves(argv: list[str], words: str) -> None:
    with pytest.raises(ClientError, match=words):
        request_body(parsed(*argv))


def test_pull_progress_shows_a_bar_per_layer_until_output_starts() -> None:
    display = Display(
        live=True, quiet=False, console=Console(file=io.StringIO(), force_terminal=True)
    )
    assert display.progress is not None
    progress = display.progress
    display.event("phase", "pulling img:1")
    layer = {"id": "abc123", "status": "Downloading", "current": 512, "total": 2048}
    display.event("pull", json.dumps(layer))
    display.event("pull", json.dumps({**layer, "current": 2048}))
    tasks = {task.description: task for task in progress.tasks}
    assert "pulling img:1" in tasks
    assert (tasks["Downloading abc123"].completed, tasks["Downloading abc123"].total) == (
        2048,
        2048,
    )
    display.event("stdout", "")
    assert display.progress is None  # the run's output goes out unadorned


def test_without_a_terminal_there_is_no_progress_display() -> None:
    display = Display(live=False, quiet=False)
    display.event("pull", json.dumps({"id": "x", "status": "s", "current": 1, "total": 2}))
    assert display.progress is None
