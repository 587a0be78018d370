"""Registries for pull tests:

- images of the test's own in the local registries: each with a layer no other image has
  (random bytes, so it must really be downloaded), removed from the engine before the test
  pulls it, and after, with the grants the runner kept for it (`unique_image`);
- a proxy that slows a registry down (`SlowProxy`);
- a registry's HTTP face on loopback that records every connection and answers what the test
  says (`FakeRegistry`): the target of SSRF attempts, and a registry that misbehaves.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest

from backends.labels import IMAGE, ROLE
from tests.helpers import (
    PRIVATE_REGISTRY,
    PUBLIC_REGISTRY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    TEST_IMAGE,
)

CREDENTIALS = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
MARKER = "MARKER-from-the-registry-7f3e"
"""What a misbehaving registry puts in its answers: it must never reach a caller."""

NOT_PUBLIC = [
    "127.0.0.1:{port}",
    "localhost:{port}",
    "LOCALHOST:{port}",
    "localhost.:{port}",
    "127.1:{port}",
    "2130706433:{port}",
    "[::1]:{port}",
    "[::ffff:7f00:1]:{port}",
    "0.0.0.0:{port}",
    "169.254.169.254",
    "10.0.0.1:{port}",
    "192.168.1.1",
    "100.64.0.1",
    "[fe80::1]:{port}",
    "[fd00::1]:{port}",
    "no-such-host.invalid",
]
"""Registries that are, or name, loopback (the fake registry listens there on `port`), link-local
(the cloud metadata service), private or CGNAT addresses, or no address at all."""
Push = Callable[..., str]


@pytest.fixture
def unique_image(docker_client: docker.DockerClient) -> Iterator[Push]:
    """`unique_image(private=False, megabytes=1, mirrored=False)`: a new image in a registry,
    absent from the engine; `mirrored`: in the other registry too, under the same path (the
    same image, public and private). Whatever the test pulled of it is removed afterwards,
    with the runner's grants for it (the registries keep it)."""
    made: list[str] = []

    def push(*, private: bool = False, megabytes: int = 1, mirrored: bool = False) -> str:
        registry = PRIVATE_REGISTRY if private else PUBLIC_REGISTRY
        repository = f"{registry}/oneoff-test/pull-{uuid.uuid4().hex[:10]}"
        fill = f"head -c {megabytes * 1_000_000} /dev/urandom > /blob"
        container = docker_client.containers.run(
            TEST_IMAGE, ["sh", "-c", fill], detach=True, network_mode="none"
        )
        try:
            assert container.wait(timeout=60)["StatusCode"] == 0
            container.commit(repository=repository, tag="t")
        finally:
            container.remove(force=True)
        reference = f"{repository}:t"
        registries = [registry, *([PUBLIC_REGISTRY if private else PRIVATE_REGISTRY] * mirrored)]
        for copy in registries:
            copied = repository.replace(registry, copy, 1)
            docker_client.images.get(reference).tag(copied, "t")
            made.append(f"{copied}:t")
            auth = CREDENTIALS if copy == PRIVATE_REGISTRY else None
            pushed = docker_client.images.push(copied, "t", auth_config=auth)
            assert '"error"' not in pushed, pushed
        for pushed_reference in made[-len(registries) :]:
            docker_client.images.remove(pushed_reference)
        return reference

    yield push
    for reference in made:
        remove_with_grants(docker_client, reference)


def remove_with_grants(docker_client: docker.DockerClient, reference: str) -> None:
    """Remove the image the reference names, if the engine has it, and every grant the runner
    keeps for it (`backends.docker.grants`): what a test pulled, nothing else."""
    try:
        image_id = docker_client.api.inspect_image(reference)["Id"]
    except docker.errors.ImageNotFound:
        return
    with contextlib.suppress(docker.errors.ImageNotFound):
        docker_client.images.remove(reference, force=True)
    grants = {"label": [f"{ROLE}=grant", f"{IMAGE}={image_id}"]}
    for volume in docker_client.api.volumes(filters=grants).get("Volumes") or []:
        with contextlib.suppress(docker.errors.NotFound):
            docker_client.api.remove_volume(volume["Name"], force=True)


class SlowProxy:
    """A TCP proxy to a registry that passes its answers on at `rate` bytes a second, so a pull
    lasts long enough to be cancelled. `downloading`: connections that have carried more than
    `BLOB_BYTES` and are still open (a layer on its way)."""

    BLOB_BYTES = 64 * 1024

    def __init__(self, target: str, rate: int) -> None:
        host, port = target.split(":")
        self.target = (host, int(port))
        self.rate = rate
        self.server = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.server.getsockname()[1]}"
        self.downloading = 0
        self.downloads = 0
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        with contextlib.suppress(OSError):
            while True:
                client, _ = self.server.accept()
                upstream = socket.create_connection(self.target)
                for work in (self._upload, self._download):
                    threading.Thread(target=work, args=(client, upstream), daemon=True).start()

    def _upload(self, client: socket.socket, upstream: socket.socket) -> None:
        try:
            while data := client.recv(65536):
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _download(self, client: socket.socket, upstream: socket.socket) -> None:
        carried = 0
        try:
            while data := upstream.recv(max(self.rate // 10, 1)):
                client.sendall(data)
                carried += len(data)
                if carried - len(data) < self.BLOB_BYTES <= carried:
                    self._count(+1)
                time.sleep(0.1)  # pacing the bytes, not waiting for anything
        except OSError:
            pass
        finally:
            if carried >= self.BLOB_BYTES:
                self._count(-1)
            _close(client, upstream)

    def _count(self, change: int) -> None:
        with self._lock:
            self.downloading += change
            self.downloads += max(change, 0)

    def close(self) -> None:
        self.server.close()


def _close(*sockets: socket.socket) -> None:
    for end in sockets:
        with contextlib.suppress(OSError):
            end.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            end.close()


class FakeRegistry:
    """A registry's HTTP face on loopback: 127.0.0.1, and ::1 on the same port. `/v2/` answers
    as a registry does; any other path `status` with `body`. `contacts` counts the connections
    it accepted, whatever came on them (a TLS hello too: the engine tries HTTPS first)."""

    def __init__(self, status: int = 404, body: bytes = b"", content_type: str = "text/plain"):
        self.status, self.body, self.content_type = status, body, content_type
        self.contacts = 0
        self._lock = threading.Lock()
        self._servers = self._bind()
        self.port = self._servers[0].server_address[1]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True).start()

    def _bind(self) -> list[http.server.ThreadingHTTPServer]:
        for _ in range(20):
            first = self._server(socket.AF_INET, ("127.0.0.1", 0))
            try:
                second = self._server(socket.AF_INET6, ("::1", first.server_address[1]))
            except OSError:
                first.server_close()  # the port is taken on ::1: another one
                continue
            return [first, second]
        raise OSError("no port free on both 127.0.0.1 and ::1")

    def _server(self, family: int, address: tuple[str, int]) -> http.server.ThreadingHTTPServer:
        registry = self

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

            def verify_request(self, request: object, client_address: object) -> bool:
                with registry._lock:
                    registry.contacts += 1
                return True

        return Server(address, _handler(self))

    def close(self) -> None:
        for server in self._servers:
            server.shutdown()
            server.server_close()


def _handler(registry: FakeRegistry) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        # A status line even to what is not HTTP (a TLS hello): an HTTPS client then sees a
        # plain HTTP server and the engine falls back to HTTP, as with a real registry.
        default_request_version = "HTTP/1.0"

        def do_GET(self) -> None:
            if self.path == "/v2/":
                self._answer(200, b"{}", "application/json")
            else:
                self._answer(registry.status, registry.body, registry.content_type)

        do_HEAD = do_GET

        def _answer(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Docker-Distribution-API-Version", "registry/2.0")
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


@pytest.fixture
def fake_registry() -> Iterator[Callable[..., FakeRegistry]]:
    """`fake_registry(status=404, body=b"...")`: a `FakeRegistry`, closed after the test."""
    made: list[FakeRegistry] = []

    def make(**answer: object) -> FakeRegistry:
        made.append(FakeRegistry(**answer))  # type: ignore[arg-type]
        return made[-1]

    yield make
    for registry in made:
        registry.close()
