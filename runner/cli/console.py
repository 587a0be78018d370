"""The `run`, `runs`, `logs` and `cancel` commands: requests from arguments, events to the
terminal, and the exit code a script can rely on.

The container's stdout goes to stdout and its stderr to stderr, as they arrive. Until the run
starts, a spinner and per-layer pull bars show on stderr, only when stdout is a terminal (so
`run ... > file` and pipes get the program's output alone). Exit codes: the container's own;
124 when it timed out (as timeout(1)); 125 when the run could not happen (as docker run); 130
when cancelled.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import stat
import sys
from collections.abc import AsyncGenerator
from datetime import datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from runner.cli.client import ClientError, Event, LocalRuns, RemoteRuns, Runs
from runner.settings import Settings, get_settings

EXIT_TIMEOUT = 124
EXIT_RUNNER_ERROR = 125
EXIT_CANCELLED = 130


def _default(name: str, unit: str = "") -> str:
    """A setting's built-in default, as help text shows it."""
    return f"{Settings.model_fields[name].default:g}{unit}"


def add_commands(commands: Any) -> None:
    """The client commands, on the `oneoff-runner` parser's subcommands."""
    run = commands.add_parser("run", help="run a container, print its output, exit with its code")
    run.add_argument("image", help="the image to run, e.g. busybox or python:3.12-slim")
    run.add_argument(
        "cmd",
        nargs=argparse.REMAINDER,
        help="after --: the command and its arguments (default: the image's own)",
    )
    run.add_argument(
        "-e",
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable of the run; -e KEY passes this shell's value (repeatable)",
    )
    run.add_argument(
        "-v",
        "--volume",
        action="append",
        default=[],
        metavar="LOCAL:PATH[:ro]",
        help="copy a local file or folder to PATH in the container before it starts; :ro "
        "makes it read-only (repeatable)",
    )
    run.add_argument(
        "--out",
        action="append",
        default=[],
        metavar="PATH:LOCAL_DIR",
        help="after the run, copy the container's PATH (file or folder) to LOCAL_DIR here "
        "(repeatable)",
    )
    run.add_argument(
        "--pull",
        choices=["always", "missing", "never"],
        default="missing",
        help="when to pull the image (default: missing, only when the engine lacks it, as "
        "docker run)",
    )
    run.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="kill the run after this many seconds (default: the runner's "
        f"RUNNER_DEFAULT_TIMEOUT_SECONDS, {_default('default_timeout_seconds')} unless set; "
        f"at most RUNNER_MAX_TIMEOUT_SECONDS, {_default('max_timeout_seconds')})",
    )
    run.add_argument(
        "--memory",
        metavar="SIZE",
        help="memory limit: a number and a unit, e.g. 256m or 1g (default: the runner's "
        f"RUNNER_DEFAULT_MEMORY, {Settings.model_fields['default_memory'].default} unless set; "
        f"at most RUNNER_MAX_MEMORY, {Settings.model_fields['max_memory'].default})",
    )
    run.add_argument(
        "--cpus",
        type=float,
        metavar="CPUS",
        help="CPU limit in CPUs, e.g. 0.5 (default: the runner's RUNNER_DEFAULT_CPUS, "
        f"{_default('default_cpus')} unless set; at most RUNNER_MAX_CPUS, "
        f"{_default('max_cpus')})",
    )
    run.add_argument(
        "--runtime",
        help="the OCI runtime, as docker run, e.g. runsc: one the operator allows (default: "
        "the runner's RUNNER_RUNTIME, else the engine's)",
    )
    run.add_argument("--entrypoint", help="the program to run instead of the image's ENTRYPOINT")
    run.add_argument(
        "-w", "--workdir", metavar="DIR", help="working directory (default: the image's)"
    )
    run.add_argument(
        "-u", "--user", help="uid[:gid], or a user the image defines (default: the image's)"
    )
    run.add_argument(
        "--scratch",
        metavar="SIZE",
        help="disk the run may write: a number and a unit, e.g. 2g (default: the runner's "
        "RUNNER_DEFAULT_SCRATCH_BYTES; at most RUNNER_MAX_SCRATCH_BYTES)",
    )
    run.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="as docker run -i: send this standard input, read to its end, as the run's stdin",
    )
    runs = commands.add_parser("runs", help="list async runs")
    runs.add_argument("--state", help="only runs in this state, e.g. running")
    logs = commands.add_parser("logs", help="print a run's output")
    logs.add_argument("run_id", help="the run's id, as `runs` lists it")
    logs.add_argument("-f", "--follow", action="store_true", help="until the run ends")
    cancel = commands.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run_id", help="the run's id, as `runs` lists it")
    for command in (run, runs, logs, cancel):
        command.add_argument(
            "--server",
            default=os.environ.get("ONEOFF_RUNNER_SERVER"),
            metavar="URL",
            help="a runner's REST API, e.g. http://127.0.0.1:8000 (default: "
            "ONEOFF_RUNNER_SERVER; without either, this machine's engine)",
        )
        command.add_argument(
            "--token",
            default=os.environ.get("ONEOFF_RUNNER_TOKEN"),
            help="the API token --server asks for (default: ONEOFF_RUNNER_TOKEN)",
        )
        command.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace) -> int:
    """Run one client command; returns the process's exit code. SIGTERM and SIGHUP stop it as
    Ctrl-C does (a run here is killed and removed, one on a server cancelled), with their own
    exit codes (143, 129)."""
    if getattr(args, "interactive", False):  # read before the event loop: it blocks
        args.stdin = sys.stdin.buffer.read().decode("utf-8", "replace")
    stopped_by: list[int] = []
    try:
        return asyncio.run(_command(args, stopped_by))
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except asyncio.CancelledError:
        if not stopped_by:
            raise
        return 128 + stopped_by[0]
    except ClientError as exc:
        say("error", str(exc))
        return EXIT_RUNNER_ERROR


def say(label: str, message: str) -> None:
    """One line on stderr, `label` coloured on a terminal; the message is printed as it is
    (never read as markup: a bracket in it stays)."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(
        Text.assemble((f"{label}:", "red" if label == "error" else "yellow"), " ", message)
    )


async def _command(args: argparse.Namespace, stopped_by: list[int]) -> int:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(signal_number, _stop, task, signal_number, stopped_by)
    runs: Runs = RemoteRuns(args.server, args.token) if args.server else LocalRuns(get_settings())
    try:
        if args.command == "run":
            return await _run(runs, args)
        if args.command == "runs":
            return _print_runs(await runs.list(args.state), args.json)
        if args.command == "logs":
            return await _show(runs, runs.events(args.run_id, follow=args.follow), args)
        status = await runs.cancel(args.run_id)
        _line(json.dumps(status) if args.json else f"{status['run_id']}: {status['state']}")
        return 0
    finally:
        await runs.close()


def _stop(task: asyncio.Task[int], signal_number: int, stopped_by: list[int]) -> None:
    if not stopped_by:
        stopped_by.append(signal_number)
        task.cancel()


async def _run(runs: Runs, args: argparse.Namespace) -> int:
    body = request_body(args)
    try:
        return await _show(runs, runs.run(body, local_content(args)), args)
    except asyncio.CancelledError:
        if isinstance(runs, RemoteRuns) and runs.started:
            await runs.cancel(runs.started)  # Ctrl-C: the run stops too
        raise


async def _show(runs: Runs, events: AsyncGenerator[Event], args: argparse.Namespace) -> int:
    """Show `events` until the exit event. The stream is closed here, before the client goes:
    left to the loop's shutdown, the generators nested in it (httpx-sse, httpx) are closed
    concurrently with it, and each close fails with "aclose(): asynchronous generator is
    already running"."""
    display = Display(live=sys.stdout.isatty() and not args.json, quiet=args.json)
    try:
        async with contextlib.aclosing(events):
            async for kind, text in events:
                if kind == "exit":
                    return await _finish(runs, json.loads(text), args, display)
                display.event(kind, text)
    finally:
        display.close()
    raise ClientError("the runner closed the stream before the run ended")


async def _finish(
    runs: Runs, status: dict[str, Any], args: argparse.Namespace, display: Display
) -> int:
    display.close()
    result = status.get("result")
    if args.json:
        _line(json.dumps(status))
    if result is not None:
        for spec in getattr(args, "out", []):
            await runs.save(status, *_split_out(spec))
    if status.get("error"):
        raise ClientError(status["error"])
    if not args.json:
        _notes(status, following=args.command == "run")
    state = status["state"]
    if state == "cancelled":
        return EXIT_CANCELLED
    if state == "timeout":
        return EXIT_TIMEOUT
    if result is None:  # logs of a run that is still going, without --follow
        return 0
    return int(result["exit_code"] if result["exit_code"] is not None else EXIT_RUNNER_ERROR)


def _notes(status: dict[str, Any], *, following: bool) -> None:
    """What the exit code alone does not say: a timeout, a cancel, a memory kill, output cut."""
    result = status.get("result") or {}
    if status["state"] == "timeout":
        more = "; give it longer with --timeout SECONDS" if following else ""
        say("timeout", f"the run took longer than its timeout and was killed{more}")
    elif status["state"] == "cancelled":
        say("cancelled", "the run was cancelled")
    if result.get("oom_killed"):
        more = "; give it more with --memory, e.g. --memory 1g" if following else ""
        say("out of memory", f"the run reached its memory limit and was killed{more}")
    for stream in ("stdout", "stderr"):
        if result.get(f"{stream}_truncated"):
            say("truncated", f"{stream} passed the runner's output cap and was cut")


class Display:
    """Progress on stderr until the run starts, then the run's own output, unadorned."""

    def __init__(self, *, live: bool, quiet: bool, console: Console | None = None) -> None:
        self.quiet = quiet
        self.progress: Progress | None = None
        self.layers: dict[str, TaskID] = {}
        if live:
            self.progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                console=console or Console(stderr=True),
                transient=True,
            )
            self.status = self.progress.add_task("waiting for the run", total=None)
            self.progress.start()

    def event(self, kind: str, text: str) -> None:
        if kind in ("stdout", "stderr"):
            self.close()
            if not self.quiet:
                stream = sys.stdout if kind == "stdout" else sys.stderr
                stream.write(text)
                stream.flush()
        elif self.progress is not None and kind == "phase":
            self.progress.update(self.status, description=text)
        elif self.progress is not None and kind == "pull":
            self._layer(json.loads(text))

    def _layer(self, layer: dict[str, Any]) -> None:
        assert self.progress is not None
        if layer["id"] not in self.layers:
            self.layers[layer["id"]] = self.progress.add_task(layer["id"], total=layer["total"])
        self.progress.update(
            self.layers[layer["id"]],
            completed=layer["current"],
            total=layer["total"],
            description=f"{layer['status']} {layer['id']}",
        )

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def request_body(args: argparse.Namespace) -> dict[str, Any]:
    """A /run request from `run`'s arguments. Local paths are declared here; their content
    goes as parts (`local_content`)."""
    body: dict[str, Any] = {"image": args.image}
    command = args.cmd[1:] if args.cmd[:1] == ["--"] else args.cmd
    options = {
        "command": command or None,
        "entrypoint": args.entrypoint,
        "working_dir": args.workdir,
        "user": args.user,
        "pull_policy": args.pull,
        "timeout_seconds": args.timeout,
        "memory": args.memory,
        "scratch": args.scratch,
        "cpus": args.cpus,
        "runtime": args.runtime,
        "stdin": getattr(args, "stdin", None),
    }
    body.update({key: value for key, value in options.items() if value is not None})
    if args.env:
        body["env_vars"] = dict(_env_pair(item) for item in args.env)
    volumes: dict[str, Any] = {}
    for spec in args.volume:
        volumes.update(_volume(spec))
    for spec in args.out:
        path = _split_out(spec)[0]
        existing = next((key for key in volumes if key.split(":")[0] == path), None)
        if existing is None:
            volumes[path] = {"type": "directory", "response": True}
        else:
            volumes[existing]["response"] = True
    if volumes:
        body["volumes"] = volumes
    return body


def _env_pair(item: str) -> tuple[str, str]:
    """KEY=VALUE, or KEY alone to pass this shell's value on, as docker run does."""
    key, equals, value = item.partition("=")
    if not equals:
        if key not in os.environ:
            raise ClientError(f"-e {key}: give KEY=VALUE, or export {key} first")
        value = os.environ[key]
    return key, value


def local_content(args: argparse.Namespace) -> dict[str, Path]:
    """Each `-v` volume key and the local file or directory that is its content."""
    return dict(_split_volume(spec)[::-1] for spec in args.volume)


def _split_volume(spec: str) -> tuple[Path, str]:
    local, _, rest = spec.partition(":")
    if not rest.startswith("/"):
        raise ClientError(f"-v {spec}: give LOCAL:/container/path[:ro]")
    source = Path(local).expanduser()
    if not (source.is_dir() or source.is_file()):
        raise ClientError(f"-v {spec}: {local} is neither a file nor a directory")
    return source, rest


def _volume(spec: str) -> dict[str, Any]:
    source, key = _split_volume(spec)
    if source.is_dir():
        return {key: {"type": "directory"}}
    return {key: {"type": "file", "mode": f"0{stat.S_IMODE(source.stat().st_mode):o}"}}


def _split_out(spec: str) -> tuple[str, Path]:
    path, _, local = spec.partition(":")
    if not path.startswith("/") or not local:
        raise ClientError(f"--out {spec}: give /container/path:LOCAL_DIR")
    return path, Path(local).expanduser()


def _print_runs(runs: list[dict[str, Any]], as_json: bool) -> int:
    """A table whose run ids are never cut, whatever the terminal's width: they are what `logs`
    and `cancel` take."""
    if as_json:
        _line(json.dumps(runs))
        return 0
    table = Table(box=None)
    table.add_column("RUN ID", no_wrap=True, min_width=len(runs[0]["run_id"]) if runs else 6)
    table.add_column("STATE", no_wrap=True)
    table.add_column("IMAGE", overflow="fold")
    table.add_column("CREATED", no_wrap=True)
    table.add_column("FINISHED", no_wrap=True)
    for run in runs:
        created, finished = _when(run["created_at"]), _when(run["finished_at"])
        table.add_row(run["run_id"], run["state"], run["image"], created, finished)
    Console().print(table)
    return 0


def _when(timestamp: str | None) -> str:
    """An API timestamp as this machine's local time, to the second."""
    if not timestamp:
        return ""
    moment = datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone()
    return moment.strftime("%m-%d %H:%M:%S")


def _line(text: str) -> None:
    """A line of the command's own answer on stdout (what scripts read)."""
    sys.stdout.write(text + "\n")
