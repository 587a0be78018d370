"""The sockets under docker-py's streams, which it has no public way to hand out, and its pool
of them: the one place the Docker backend reaches into docker-py (each transport keeps its
socket elsewhere: unix, tcp, tls, ssh)."""

from __future__ import annotations

import socket
from typing import Any

import docker
import requests
from docker.transport import UnixHTTPAdapter
from docker.transport.unixconn import UnixHTTPConnectionPool

MOUNT = "http+docker://"
"""Where docker-py mounts its transport; the host part of its URLs is unused."""


def plain(connection: Any) -> socket.socket:
    """The socket itself, out of docker-py's wrapper where it has one."""
    sock: socket.socket = getattr(connection, "_sock", connection)
    return sock


def of_response(client: docker.APIClient, response: requests.Response) -> socket.socket:
    """The socket a streamed `response` of `client` reads from."""
    return plain(client._get_raw_response_socket(response))  # type: ignore[attr-defined]  # noqa: SLF001


def attach_response(frames: Any) -> requests.Response:
    """The HTTP response under an attach's frames (their own close() fails over SSH)."""
    response: requests.Response = frames._response  # noqa: SLF001
    return response


class _EnginePool(UnixHTTPAdapter):
    """docker-py's unix-socket transport with one connection pool for the engine, and none
    made again once closed (a thread still holding the client gets a connection error)."""

    closed = False

    def get_connection(self, url: str | bytes, proxies: Any = None) -> UnixHTTPConnectionPool:
        if self.closed:
            raise requests.exceptions.ConnectionError("the engine's client is closed")
        return super().get_connection(MOUNT, proxies)

    def close(self) -> None:
        self.closed = True
        super().close()


def one_pool(client: docker.APIClient, max_idle: int) -> None:
    """Give `client` (on a unix socket) one connection pool, keeping at most `max_idle` idle
    connections (0: as many as were ever in use at once). docker-py keys its pools by URL,
    query included, and keeps the 25 latest: each container's calls open sockets of their own,
    and a pool evicted while a call puts its connection back leaks that socket
    (docker/docker-py#3268). Other transports (tcp, tls, ssh) keep docker-py's pools."""
    adapter = client.adapters.get(MOUNT)
    if type(adapter) is not UnixHTTPAdapter:
        return
    engine = _EnginePool("http+unix://" + adapter.socket_path, adapter.timeout, 1, max_idle)
    adapter.close()
    client.mount(MOUNT, engine)
    client._custom_adapter = engine  # type: ignore[attr-defined]  # noqa: SLF001
