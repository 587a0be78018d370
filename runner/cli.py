"""The `oneoff-runner` command: `serve` starts the service."""

from __future__ import annotations

import argparse
import logging

import uvicorn

from runner.settings import Settings, get_settings

log = logging.getLogger("oneoff_runner")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="oneoff-runner", description="Run one-off containers through a REST API."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="start the REST API (settings: RUNNER_* env vars)")
    serve.add_argument("--host", help="bind address (default: RUNNER_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="REST port (default: RUNNER_PORT or 8000)")
    serve.add_argument("--log-level", default="info", choices=["debug", "info", "warning"])
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.command == "serve":
        _serve(get_settings(), args.host, args.port, args.log_level)


def _serve(settings: Settings, host: str | None, port: int | None, log_level: str) -> None:
    from api_app import create_app

    host = host or settings.host
    port = port or settings.port
    log.info("REST API on http://%s:%d (docs at /docs), backend %s", host, port, settings.backend)
    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level)
