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
import stat
import sys
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TaskID, TextColumn
from rich.table import Table

from runner.cli.client import ClientError, Event, LocalRuns, RemoteRuns, Runs
from runner.settings import get_settings

EXIT_TIMEOUT = 124
EXIT_RUNNER_ERROR = 125
EXIT_CANCELLED = 130


def add_commands(commands: Any) -> None:
    """The client commands, on the `oneoff-runner` parser's subcommands."""
    run = commands.add_parser("run", help="run a container, print its output, exit with its code")
    run.add_argument("image")
    run.add_argument("cmd", nargs=argparse.REMAINDER, help="command and arguments (after --)")
    run.add_argument("-e", "--env", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("-v", "--volume", action="append", default=[], metavar="LOCAL:PATH[:ro]")
    run.add_argument("--out", action="append", default=[], metavar="PATH:LOCAL_DIR")
    run.add_argument(
        "--pull",
        choices=["always", "missing", "never"],
        default="missing",
        help="as docker run: pull only when the image is absent (default)",
    )
    run.add_argument("--timeout", type=float, metavar="SECONDS")
    run.add_argument("--memory", metavar="SIZE", help="e.g. 512m")
    run.add_argument("--scratch", metavar="SIZE", help="disk the run may write, e.g. 2g")
    run.add_argument("--cpus", type=float)
    run.add_argument("--runtime", help="as docker run, e.g. runsc (one the operator allows)")
    run.add_argument("--entrypoint")
    run.add_argument("-w", "--workdir")
    run.add_argument("-u", "--user")
    run.add_argument(
        "-i",
        "--interactive",
        action="store_true",
        help="as docker run -i: send this standard input, read to its end, as the run's stdin",
    )
    runs = commands.add_parser("runs", help="list async runs")
    runs.add_argument("--state", help="only runs in this state")
    logs = commands.add_parser("logs", help="print a run's output")
    logs.add_argument("run_id")
    logs.add_argument("-f", "--follow", action="store_true", help="until the run ends")
    cancel = commands.add_parser("cancel", help="cancel a run")
    cancel.add_argument("run_id")
    for command in (run, runs, logs, cancel):
        command.add_argument(
            "--server",
            default=os.environ.get("ONEOFF_RUNNER_SERVER"),
            help="runner URL (default: the local engine)",
        )
        command.add_argument("--token", default=os.environ.get("ONEOFF_RUNNER_TOKEN"))
        command.add_argument("--json", action="store_true", help="machine-readable output")


def main(args: argparse.Namespace) -> int:
    """Run one client command; returns the process's exit code."""
    if getattr(args, "interactive", False):  # read before the event loop: it blocks
        args.stdin = sys.stdin.buffer.read().decode("utf-8", "replace")
    try:
        return asyncio.run(_command(args))
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    except ClientError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return EXIT_RUNNER_ERROR


async def _command(args: argparse.Namespace) -> int:
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
    state = status["state"]
    if state == "cancelled":
        return EXIT_CANCELLED
    if state == "timeout":
        return EXIT_TIMEOUT
    if result is None:  # logs of a run that is still going, without --follow
        return 0
    return int(result["exit_code"] if result["exit_code"] is not None else EXIT_RUNNER_ERROR)


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
    if as_json:
        _line(json.dumps(runs))
        return 0
    table = Table("RUN ID", "STATE", "IMAGE", "CREATED", "FINISHED", box=None)
    for run in runs:
        table.add_row(
            run["run_id"], run["state"], run["image"], run["created_at"], run["finished_at"] or ""
        )
    Console().print(table)
    return 0


def _line(text: str) -> None:
    """A line of the command's own answer on stdout (what scripts read)."""
    sys.stdout.write(text + "\n")
