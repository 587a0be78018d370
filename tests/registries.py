"""Images of the test's own in the local registries, for pulls: each with a layer no other image
has (random bytes, so it must really be downloaded), removed from the engine before the test
pulls it, and after."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator

import docker
import pytest

from tests.helpers import (
    PRIVATE_REGISTRY,
    PUBLIC_REGISTRY,
    REGISTRY_PASSWORD,
    REGISTRY_USER,
    TEST_IMAGE,
)

CREDENTIALS = {"username": REGISTRY_USER, "password": REGISTRY_PASSWORD}
Push = Callable[..., str]


@pytest.fixture
def unique_image(docker_client: docker.DockerClient) -> Iterator[Push]:
    """`unique_image(private=False, megabytes=1)`: a new image in a registry, absent from the
    engine; whatever the test pulled of it is removed afterwards (the registry keeps it)."""
    made: list[str] = []

    def push(*, private: bool = False, megabytes: int = 1) -> str:
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
        made.append(reference)
        pushed = docker_client.images.push(
            repository, "t", auth_config=CREDENTIALS if private else None
        )
        assert '"error"' not in pushed, pushed
        docker_client.images.remove(reference)
        return reference

    yield push
    for reference in made:
        with contextlib.suppress(docker.errors.ImageNotFound):
            docker_client.images.remove(reference)


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
