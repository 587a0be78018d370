"""`serve` and `mcp` over HTTP: every listening socket is bound before anything else starts (a
port that is taken or not allowed is one line and exit 1, with nothing left listening), one
service is shared by both servers, and each server says in one line where it serves once it
does."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import uvicorn
from starlette.types import ASGIApp

from runner.settings import Settings

if TYPE_CHECKING:
    from runner.service import RunnerService

log = logging.getLogger("oneoff_runner")
BACKLOG = 2048  # uvicorn's default


@dataclass
class Listener:
    """One server's bound sockets (a name such as `localhost` may give one per address)."""

    what: str
    port: int
    option: str
    path: str = ""
    sockets: list[socket.socket] = field(default_factory=list)


class CannotListen(Exception):
    """A port could not be bound: the message says which and what to do."""


def listeners(settings: Settings, *, rest: bool) -> list[Listener]:
    """The servers' sockets, bound and listening: connections queue until the servers start.
    Raises `CannotListen` (having closed what it bound) when one cannot be bound."""
    wanted = [Listener("MCP server", settings.mcp_port, "--mcp-port or RUNNER_MCP_PORT", "/mcp")]
    if rest:
        wanted.insert(0, Listener("REST API", settings.port, "--port or RUNNER_PORT"))
    try:
        for listener in wanted:
            listener.sockets = _bind(settings.host, listener)
    except CannotListen:
        for listener in wanted:
            for sock in listener.sockets:
                sock.close()
        raise
    return wanted


def _bind(host: str, listener: Listener) -> list[socket.socket]:
    """Every address `host` names, bound as uvicorn binds them (SO_REUSEADDR; IPv6 only on
    IPv6 sockets)."""
    try:
        addresses = socket.getaddrinfo(
            host, listener.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise CannotListen(
            f"cannot serve on {host}: {exc.strerror}; give an address of this machine with "
            "--host or RUNNER_HOST, e.g. 127.0.0.1"
        ) from None
    bound: list[socket.socket] = []
    try:
        for family, kind, protocol, _, address in dict.fromkeys(addresses):
            sock = socket.socket(family, kind, protocol)
            bound.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
    except OSError as exc:
        for sock in bound:
            sock.close()
        raise CannotListen(_refused(host, listener, exc)) from None
    return bound


def _refused(host: str, listener: Listener, exc: OSError) -> str:
    where = f"{listener.what} on {host} port {listener.port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"cannot serve the {where}: the port is in use (another runner?); stop what "
            f"listens there, or choose a free port with {listener.option}"
        )
    if exc.errno == errno.EACCES:
        return (
            f"cannot serve the {where}: permission denied (ports below 1024 need privileges); "
            f"choose a port of 1024 or more with {listener.option}"
        )
    if exc.errno == errno.EADDRNOTAVAIL:
        return (
            f"cannot serve the {where}: {host} is not an address of this machine; give one "
            "with --host or RUNNER_HOST, e.g. 127.0.0.1"
        )
    return f"cannot serve the {where}: {exc.strerror}"


async def serve(settings: Settings, bound: list[Listener]) -> None:
    """One service shared by both front doors (one concurrency limit, one reaper), each app on
    its bound sockets, until SIGINT or SIGTERM."""
    import api_app
    import mcp_app
    from backends import get_backend
    from runner.service import service_scope

    async with service_scope(settings, lambda: get_backend(settings)) as service:
        apps: dict[str, Callable[..., ASGIApp]] = {
            "REST API": api_app.create_app,
            "MCP server": mcp_app.create_app,
        }
        servers = [
            _Server(
                uvicorn.Config(
                    apps[listener.what](settings, service=service),
                    host=settings.host,
                    port=listener.port,
                    log_config=None,  # the process's own logging (runner.cli.main)
                    log_level=None,
                    timeout_graceful_shutdown=int(settings.shutdown_grace_seconds),
                ),
                listener,
                settings.host,
            )
            for listener in bound
        ]
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, _stop, servers, service)
        await asyncio.gather(*(server.serve(sockets=server.listener.sockets) for server in servers))


def _stop(servers: list[_Server], service: RunnerService) -> None:
    """SIGTERM/SIGINT: every server stops accepting, lets requests in flight finish (up to the
    grace), then the shared service kills and removes what is left, and the process exits 0."""
    service.begin_shutdown()
    for server in servers:
        server.should_exit = True


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, listener: Listener, host: str) -> None:
        super().__init__(config)
        self.listener = listener
        self.host = f"[{host}]" if ":" in host else host

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Started: the one line that says where."""
        await super().startup(sockets)
        if self.started:
            url = f"http://{self.host}:{self.listener.port}{self.listener.path}"
            extra = "" if self.listener.path else " (API pages at /docs)"
            log.info("%s on %s%s", self.listener.what, url, extra)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Signals are handled once for all servers (`_stop`): uvicorn's own handling re-raises
        the signal when a server ends, which would kill the process before the cleanup."""
        yield
