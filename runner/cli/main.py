"""The `oneoff-runner` command: `serve` (REST and MCP), `mcp` (MCP alone, HTTP or stdio), and
the client commands `run`, `runs`, `logs`, `cancel` (`runner.cli.console`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from pythonjsonlogger.json import JsonFormatter

from runner.cli import console, serving
from runner.settings import Settings, get_settings

log = logging.getLogger("oneoff_runner")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """A mistake in the arguments is one line, and where to read about them."""
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def port_number(text: str) -> int:
    """A TCP port, from the command line."""
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port: give a number from 1 to 65535")
    return int(text)


def parser() -> argparse.ArgumentParser:
    """Every command and its options."""
    parser = _Parser(
        prog="oneoff-runner",
        description="Run one-off containers through a REST API and an MCP server. "
        "Settings come from RUNNER_* environment variables or a .env file.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the REST API and the MCP server")
    mcp = commands.add_parser("mcp", help="start the MCP server alone")
    mcp.add_argument("--stdio", action="store_true", help="speak MCP on stdin/stdout")
    for command in (serve, mcp):
        command.add_argument("--host", help="bind address (default: RUNNER_HOST, 127.0.0.1)")
        command.add_argument(
            "--log-level",
            default="info",
            choices=["debug", "info", "warning"],
            help="info (default): one line per server, the runs, warnings",
        )
        command.add_argument(
            "-v",
            "--verbose",
            action="store_true",
            help="also the HTTP servers' own lines: their start and stop, each request",
        )
    serve.add_argument("--port", type=port_number, help="REST port (default: RUNNER_PORT, 8000)")
    for command in (serve, mcp):
        command.add_argument(
            "--mcp-port", type=port_number, help="MCP port (default: RUNNER_MCP_PORT, 8001)"
        )
    console.add_commands(commands)
    helper = commands.add_parser("pod-helper", help="(inside Kubernetes run pods)")
    helper.add_argument("step", nargs=argparse.REMAINDER)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.command == "pod-helper":
        from backends.kubernetes import pod_helper

        sys.exit(pod_helper.main(args.step))
    if args.command not in ("serve", "mcp"):
        _configure_logging(get_settings(), "warning")
        sys.exit(console.main(args))
    settings = get_settings()
    _configure_logging(settings, args.log_level, verbose=args.verbose)
    overrides = {
        key: value
        for key, value in {
            "host": args.host,
            "port": getattr(args, "port", None),
            "mcp_port": args.mcp_port,
        }.items()
        if value is not None
    }
    settings = settings.model_copy(update=overrides)
    if args.command == "mcp" and args.stdio:
        from mcp_app import serve_stdio

        asyncio.run(serve_stdio(settings))
        return
    _refuse_open_exposure(settings)
    try:
        bound = serving.listeners(settings, rest=args.command == "serve")
    except serving.CannotListen as exc:
        sys.exit(str(exc))
    if not settings.authenticates():
        log.warning("no API tokens (RUNNER_API_TOKENS): anyone on this machine can use it")
    try:
        asyncio.run(serving.serve(settings, bound))
    except KeyboardInterrupt:  # a second Ctrl-C after the loop's own handler was removed
        log.warning("interrupted while stopping: a runner's reaper removes what is left")
    finally:
        # Ctrl-C in a terminal reaches the whole process group (`uv run`, a shell) and can
        # arrive twice; once the servers have stopped, the rest of the exit is not interrupted.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _configure_logging(settings: Settings, level: str, *, verbose: bool = False) -> None:
    """Logs go to stderr (stdout carries the protocol under `mcp --stdio`); with
    RUNNER_LOG_FORMAT=json each line is one JSON object with the run's fields. The HTTP
    servers' and the MCP SDK's own lines (starting, each request) show with `verbose` or at
    debug level only: by default a server says where it serves in one line of ours."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    chatty = logging.NOTSET if verbose or level == "debug" else logging.WARNING
    for name in ("uvicorn.error", "uvicorn.access", "mcp"):
        logging.getLogger(name).setLevel(chatty)


def _refuse_open_exposure(settings: Settings) -> None:
    """Without API tokens or an identity provider the service listens on loopback only, unless
    the operator insists."""
    if settings.authenticates():
        return
    if settings.host not in LOOPBACK and not settings.allow_unauthenticated_remote:
        sys.exit(
            f"refusing to listen on {settings.host} without API tokens: anyone who can reach it "
            "could run containers. Set RUNNER_API_TOKENS or RUNNER_OAUTH_ISSUERS, or "
            "RUNNER_ALLOW_UNAUTHENTICATED_REMOTE"
            "=true if something else guards the network."
        )
    if settings.host not in LOOPBACK and not settings.allowed_hosts:
        log.warning(
            "without API tokens only requests to a loopback name (127.0.0.1, localhost) are "
            "answered; list the names clients call this runner by in RUNNER_ALLOWED_HOSTS"
        )


if __name__ == "__main__":
    main()
