"""`oneoff-runner run | runs | logs | cancel` driven as a user drives them: a subprocess, its
output piped (not a terminal), its exit code; against the local engine and a served runner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import docker

from tests.helpers import ROOT, TEST_IMAGE, Server, managed_objects, read_until, run_body

TOKEN = "cli-test-token"


def cli(
    *arguments: str, cwd: Path = ROOT, stdin: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "runner.cli.main", *arguments],
        cwd=cwd,
        env={**os.environ, **env},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_i_sends_this_standard_input_to_the_run(instance: str) -> None:
    done = cli(
        "run",
        "-i",
        TEST_IMAGE,
        "--",
        "sh",
        "-c",
        "cat; echo eof",
        stdin="piped\n",
        RUNNER_INSTANCE_ID=instance,
    )
    assert (done.returncode, done.stdout) == (0, "piped\neof\n"), done.stderr


def test_a_local_run_prints_its_output_and_exits_with_its_code(instance: str) -> None:
    done = cli(
        "run",
        "-e",
        "WHO=cli",
        TEST_IMAGE,
        "--",
        "sh",
        "-c",
        "echo hi $WHO; echo oops >&2; exit 3",
        RUNNER_INSTANCE_ID=instance,
    )
    assert done.returncode == 3
    assert done.stdout == "hi cli\n"  # piped: the program's output alone, no progress display
    assert done.stderr == "oops\n"


def test_a_directory_goes_in_with_v_and_comes_back_with_out(tmp_path: Path, instance: str) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "data.txt").write_text("payload\n")
    script = "cp -r /src/sub /out/ && echo copied > /out/note.txt"
    done = cli(
        "run",
        "-v",
        f"{source}:/src:ro",
        "--out",
        "/out:./result",
        TEST_IMAGE,
        "--",
        "sh",
        "-c",
        script,
        cwd=tmp_path,
        RUNNER_INSTANCE_ID=instance,
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "result" / "sub" / "data.txt").read_text() == "payload\n"
    assert (tmp_path / "result" / "note.txt").read_text() == "copied\n"


def test_out_of_a_path_the_run_made_a_symlink_says_so_and_writes_nothing(
    tmp_path: Path, instance: str
) -> None:
    script = "rm -r /out; ln -s /etc /out; echo ran"
    done = cli(
        "run",
        "--out",
        "/out:./result",
        TEST_IMAGE,
        "--",
        "sh",
        "-c",
        script,
        cwd=tmp_path,
        RUNNER_INSTANCE_ID=instance,
    )
    assert done.returncode == 125
    assert done.stdout == "ran\n"
    assert "the run left a symlink at /out, not a directory" in done.stderr
    assert not (tmp_path / "result").exists()


def test_a_run_that_cannot_start_exits_125_and_says_why(instance: str) -> None:
    done = cli("run", "--pull", "never", "oneoff-test/absent:1", RUNNER_INSTANCE_ID=instance)
    assert done.returncode == 125
    assert "oneoff-test/absent:1" in done.stderr
    assert done.stdout == ""


def test_a_timeout_exits_124_saying_so(instance: str) -> None:
    done = cli(
        "run", "--timeout", "1", TEST_IMAGE, "--", "sleep", "60", RUNNER_INSTANCE_ID=instance
    )
    assert done.returncode == 124
    (line,) = done.stderr.splitlines()
    assert line.startswith("timeout: ") and "--timeout" in line


def started(instance: str, script: str, until: bytes) -> tuple[subprocess.Popen[bytes], bytes]:
    """`oneoff-runner run` of `script` in a pipe, and its stdout once `until` has arrived there
    (within a minute: the script must then wait, so the run is still going)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli.main", "run", "--timeout", "600", TEST_IMAGE]
        + ["--", "sh", "-c", script],
        cwd=ROOT,
        env={**os.environ, "RUNNER_INSTANCE_ID": instance},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    seen = read_until(process.stdout, until)
    if until not in seen:
        process.kill()
        process.communicate()
    assert until in seen, f"{until!r} did not arrive while the run went on"
    return process, seen


def test_in_a_pipe_each_line_arrives_as_the_run_prints_it(instance: str) -> None:
    """A line right after a burst (which is forwarded at once, being large) arrives without
    waiting for more output."""
    script = "head -c 20000 /dev/zero | tr '\\0' x; echo; echo marker; sleep 300"
    process, seen = started(instance, script, until=b"marker\n")
    assert seen == b"x" * 20000 + b"\nmarker\n"
    assert process.poll() is None  # still running: the line came before the end
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)


def test_sigterm_removes_the_run_at_once(docker_client: docker.DockerClient, instance: str) -> None:
    """As `timeout 3 oneoff-runner run ...` does: the container goes with the command, not
    later when a reaper finds it."""
    process, _ = started(instance, "echo started; sleep 300", until=b"started\n")
    assert managed_objects(docker_client, instance) != []
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, stderr
    assert managed_objects(docker_client, instance) == []


def test_a_bad_memory_size_is_one_line_in_words(instance: str) -> None:
    done = cli("run", "--memory", "1x", TEST_IMAGE, "--", "true", RUNNER_INSTANCE_ID=instance)
    assert done.returncode == 125
    assert done.stderr == "error: memory: write a number and a unit, e.g. 256m or 1g\n"


def test_a_remote_run_with_a_token_prints_output_and_exit_code(server: Server) -> None:
    with server(api_tokens=[TOKEN]) as client:
        url = str(client.base_url)
        done = cli(
            "run",
            "--server",
            url,
            "--token",
            TOKEN,
            TEST_IMAGE,
            "--",
            "sh",
            "-c",
            "echo remote; exit 7",
        )
        refused = cli("run", "--server", url, "--token", "wrong", TEST_IMAGE, "--", "true")
    assert (done.returncode, done.stdout) == (7, "remote\n")
    assert done.stderr == ""  # no asyncio tracebacks from streams closed at exit
    assert refused.returncode == 125
    assert "refused the token" in refused.stderr and "--token" in refused.stderr


def test_a_missing_token_is_asked_for_as_the_command_line_takes_it(server: Server) -> None:
    with server(api_tokens=[TOKEN]) as client:
        done = cli("runs", "--server", str(client.base_url), ONEOFF_RUNNER_TOKEN="")
    assert done.returncode == 125
    assert (
        "asks for an API token" in done.stderr and "--token or ONEOFF_RUNNER_TOKEN" in done.stderr
    )
    assert "Authorization" not in done.stderr


def test_runs_shows_whole_run_ids_in_an_80_column_terminal(server: Server) -> None:
    with server() as client:
        made = [client.post("/runs", json=run_body("true")).json()["run_id"] for _ in range(2)]
        done = cli("runs", "--server", str(client.base_url), COLUMNS="80")
    assert done.returncode == 0, done.stderr
    assert max(len(line.rstrip()) for line in done.stdout.splitlines()) <= 80
    listed = {line.split()[0] for line in done.stdout.splitlines()[1:] if line.strip()}
    assert set(made) <= listed


def test_an_id_that_is_no_run_id_is_said_in_words(server: Server) -> None:
    with server() as client:
        remote = cli("cancel", "nosuchid", "--server", str(client.base_url))
    local = cli("cancel", "nosuchid")
    assert remote.returncode == local.returncode == 125
    assert "16 hex digits" in remote.stderr and "\\" not in remote.stderr
    assert "no run 'nosuchid'" in local.stderr


def test_json_output_is_the_final_status(server: Server) -> None:
    with server() as client:
        done = cli(
            "run", "--json", "--server", str(client.base_url), TEST_IMAGE, "--", "echo", "quiet"
        )
    status = json.loads(done.stdout)
    assert status["state"] == "succeeded"
    assert status["result"]["stdout"] == "quiet\n"
    assert done.returncode == 0
    assert done.stderr == ""


def test_runs_logs_and_cancel_manage_a_server_run(server: Server) -> None:
    own = {"ONEOFF_RUNNER_TOKEN": f"own-{uuid.uuid4().hex}"}  # a tenant of its own: the engine
    with server(api_tokens=[own["ONEOFF_RUNNER_TOKEN"]]) as client:  # is shared with other suites
        client.headers["Authorization"] = f"Bearer {own['ONEOFF_RUNNER_TOKEN']}"
        url = str(client.base_url)
        run_id = client.post("/runs", json=run_body("sh", "-c", "echo begun; sleep 300")).json()[
            "run_id"
        ]
        with client.stream("GET", f"/runs/{run_id}/logs") as stream:
            next(line for line in stream.iter_lines() if "begun" in line)
        listed = json.loads(cli("runs", "--json", "--server", url, **own).stdout)
        so_far = cli("logs", run_id, "--server", url, **own)
        cancelled = cli("cancel", run_id, "--server", url, **own)
        followed = cli("logs", "-f", run_id, "--server", url, **own)
        unknown = cli("logs", "0123456789abcdef", "--server", url, **own)
    assert [run["run_id"] for run in listed] == [run_id]
    assert listed[0]["state"] == "running"
    assert (so_far.returncode, so_far.stdout, so_far.stderr) == (0, "begun\n", "")
    assert cancelled.stdout == f"{run_id}: cancelled\n"
    assert followed.returncode == 130
    assert unknown.returncode == 125
    assert "run_id" in unknown.stderr


def test_the_cli_refuses_a_bad_env_argument_naming_it() -> None:
    done = cli("run", "-e", "UNSET_VARIABLE_FOR_TEST", TEST_IMAGE)
    assert done.returncode == 125
    assert "-e UNSET_VARIABLE_FOR_TEST" in done.stderr


def test_unreachable_server_is_a_clear_error() -> None:
    done = cli("runs", "--server", "http://127.0.0.1:9")
    assert done.returncode == 125
    assert "cannot reach the runner" in done.stderr


def test_on_a_terminal_a_progress_display_runs_until_the_output_starts(instance: str) -> None:
    """In a pseudo-terminal the live display (spinner, phases) draws on stderr, then steps
    aside for the program's own output."""
    import pty

    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "runner.cli.main", "run", TEST_IMAGE, "--", "echo", "from-a-tty"],
        cwd=ROOT,
        env={**os.environ, "RUNNER_INSTANCE_ID": instance, "TERM": "xterm", "COLUMNS": "100"},
        stdin=secondary,
        stdout=secondary,
        stderr=secondary,
    )
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 4096)
        except OSError:  # the terminal closed: the process is done with it
            break
        if not chunk:
            break
        seen += chunk
    os.close(primary)
    assert process.wait(60) == 0
    assert b"from-a-tty" in seen
    assert b"\x1b[?25l" in seen  # the live display hid the cursor while it drew


def test_a_remote_run_sends_and_receives_files_over_the_binary_path(
    tmp_path: Path, server: Server
) -> None:
    source = tmp_path / "src"
    (source / "sub").mkdir(parents=True)
    (source / "sub" / "data.txt").write_text("payload\n")
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/sh\ncp -r /src/sub /out/ && echo done > /note.txt\n")
    script.chmod(0o755)
    (tmp_path / "empty.txt").write_text("")
    with server() as client:
        done = cli(
            "run",
            "--server",
            str(client.base_url),
            "-v",
            f"{source}:/src:ro",
            "-v",
            f"{script}:/job.sh",
            "-v",
            f"{tmp_path / 'empty.txt'}:/note.txt",
            "--out",
            "/out:./result",
            "--out",
            "/note.txt:./note.txt",
            TEST_IMAGE,
            "--",
            "/job.sh",
            cwd=tmp_path,
        )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "result" / "sub" / "data.txt").read_text() == "payload\n"
    assert (tmp_path / "note.txt").read_text() == "done\n"
