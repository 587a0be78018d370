"""The sockets under docker-py's streams, which it has no public way to hand out: the one place
the Docker backend reaches into docker-py (each transport keeps its socket elsewhere: unix, tcp,
tls, ssh)."""

from __future__ import annotations

import socket
from typing import Any

import docker
import requests


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
