"""The `oneoff-runner` command: `serve` (REST and MCP), `mcp` (MCP alone, HTTP or stdio), and
the client commands `run`, `runs`, `logs`, `cancel` (`runner.cli.console`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

import uvicorn
from pythonjsonlogger.json import JsonFormatter
from starlette.types import ASGIApp

from runner.cli import console
from runner.settings import Settings, get_settings

if TYPE_CHECKING:
    from runner.service import RunnerService

log = logging.getLogger("oneoff_runner")
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def parser() -> argparse.ArgumentParser:
    """Every command and its options."""
    parser = argparse.ArgumentParser(
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
        command.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    serve.add_argument("--port", type=int, help="REST port (default: RUNNER_PORT, 8000)")
    for command in (serve, mcp):
        command.add_argument("--mcp-port", type=int, help="MCP port (default: RUNNER_MCP_PORT)")
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
    _configure_logging(settings, args.log_level)
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
        asyncio.run(_serve(settings, rest=args.command == "serve", log_level=args.log_level))
    except KeyboardInterrupt:  # a second Ctrl-C after the loop's own handler was removed
        log.warning("interrupted while stopping: a runner's reaper removes what is left")
    finally:
        # Ctrl-C in a terminal reaches the whole process group (`uv run`, a shell) and can
        # arrive twice; once the servers have stopped, the rest of the exit is not interrupted.
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _configure_logging(settings: Settings, level: str) -> None:
    """Logs go to stderr (stdout carries the protocol under `mcp --stdio`); with
    RUNNER_LOG_FORMAT=json each line is one JSON object with the run's fields."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def _refuse_open_exposure(settings: Settings) -> None:
    """Without API tokens or an identity provider the service listens on loopback only, unless
    the operator insists."""
    if settings.tokens() or settings.oauth_issuers:
        return
    if settings.host not in LOOPBACK and not settings.allow_unauthenticated_remote:
        sys.exit(
            f"refusing to listen on {settings.host} without API tokens: anyone who can reach it "
            "could run containers. Set RUNNER_API_TOKENS or RUNNER_OAUTH_ISSUERS, or "
            "RUNNER_ALLOW_UNAUTHENTICATED_REMOTE"
            "=true if something else guards the network."
        )
    log.warning("no API tokens configured (RUNNER_API_TOKENS): requests are not authenticated")


async def _serve(settings: Settings, *, rest: bool, log_level: str) -> None:
    """One service shared by both front doors: one concurrency limit, one reaper."""
    import api_app
    import mcp_app
    from backends import get_backend
    from runner.service import service_scope

    async with service_scope(settings, lambda: get_backend(settings)) as service:
        apps: list[tuple[ASGIApp, int, str]] = [
            (mcp_app.create_app(settings, service=service), settings.mcp_port, "MCP at /mcp")
        ]
        if rest:
            rest_app = api_app.create_app(settings, service=service)
            apps.append((rest_app, settings.port, "REST API (docs at /docs)"))
        for _, port, what in apps:
            log.info("%s on http://%s:%d", what, settings.host, port)
        servers = [
            _Server(
                uvicorn.Config(
                    app,
                    host=settings.host,
                    port=port,
                    log_level=log_level,
                    timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
                )
            )
            for app, port, _ in apps
        ]
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, _stop, servers, service)
        await asyncio.gather(*(server.serve() for server in servers))


def _stop(servers: list[_Server], service: RunnerService) -> None:
    """SIGTERM/SIGINT: every server stops accepting, lets requests in flight finish (up to the
    grace), then the shared service kills and removes what is left, and the process exits 0."""
    service.begin_shutdown()
    for server in servers:
        server.should_exit = True


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Signals are handled once for all servers (`_stop`): uvicorn's own handling re-raises
        the signal when a server ends, which would kill the process before the cleanup."""
        yield


if __name__ == "__main__":
    main()
