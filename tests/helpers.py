"""What many test modules share (fixtures live in the conftest files):

- builders of archives and request bodies, as a caller makes them;
- runners served for a test: an app on a loopback port (`serving`), `oneoff-runner serve` as a
  process (`start_runner`);
- what runners of this suite have on the engine (`objects_of`, `managed_objects`), removed by
  instance (`remove_objects_of`).
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import select
import socket
import subprocess
import sys
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import docker
import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient
from starlette.types import ASGIApp

from backends.labels import (
    CLAIM_ROLE,
    HOSTS_ROLE,
    INSTANCE,
    LEASE_ROLE,
    POOL_ROLE,
    ROLE,
    RUN_ID,
    RUN_ROLE,
)

ROOT = Path(__file__).resolve().parents[1]

TEST_IMAGE = os.environ.get("RUNNER_TEST_IMAGE", "oneoff-test/busybox:latest")
PUBLIC_REGISTRY = os.environ.get("RUNNER_TEST_PUBLIC_REGISTRY", "127.0.0.1:5001")
PRIVATE_REGISTRY = os.environ.get("RUNNER_TEST_REGISTRY", "127.0.0.1:5000")
REGISTRY_USER = os.environ.get("RUNNER_TEST_REGISTRY_USER", "tester")
REGISTRY_PASSWORD = os.environ.get("RUNNER_TEST_REGISTRY_PASSWORD", "s3cret-pass")
TEST_REGISTRIES = [PRIVATE_REGISTRY, PUBLIC_REGISTRY]
SUITE_KEPT_RUNS = 100_000
"""The suite's runners' RUNNER_MAX_KEPT_RUNS: the bound counts a tenant's kept runs on the whole
engine, and every runner of the suite (and of other suites on the engine) calls as the tenant
`local`, whose MCP runs are kept for their TTL; the bound's own tests set a small one."""
"""The suite's own registries, on loopback: every runner it starts lists them
(`RUNNER_ALLOWED_REGISTRIES`), as an operator with a local registry must."""
PUBLIC_IMAGE = f"{PUBLIC_REGISTRY}/oneoff-test/busybox:latest"
PRIVATE_IMAGE = f"{PRIVATE_REGISTRY}/oneoff-test/private-busybox:latest"

# This copy of the suite: every runner it starts has an instance id under it, so the suite finds,
# removes and checks only its own engine objects while other runners and suites share the engine.
SUITE_ID = f"suite-{uuid.uuid4().hex[:8]}"


def instance_id(kind: str = "test") -> str:
    """A runner instance id of this suite's own, new at each call."""
    return f"{SUITE_ID}-{kind}-{uuid.uuid4().hex[:6]}"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def tar_gz(files: dict[str, bytes | None], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    """A tar.gz of `files` (None makes a directory), plus hand-made members for attacks."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, content in files.items():
            info = tarfile.TarInfo(name)
            if content is None:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                archive.addfile(info)
            else:
                info.size = len(content)
                info.mode = 0o644
                archive.addfile(info, io.BytesIO(content))
        for member in extra or []:
            archive.addfile(member)
    return out.getvalue()


class ZeroTar(io.RawIOBase):
    """A plain tar of one file of `size` zero bytes, made as it is read (never held)."""

    def __init__(self, size: int) -> None:
        info = tarfile.TarInfo("big")
        info.size = size
        self._pieces = iter([info.tobuf(), *([bytes(2**20)] * (size // 2**20)), bytes(1024)])

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return next(self._pieces, b"")


def gzip_bomb(size: int) -> bytes:
    """A small tar.gz of one file of `size` zero bytes: it weighs little and unpacks to `size`."""
    zeros = tarfile.TarInfo("zeros")
    zeros.size = size
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        archive.addfile(zeros, io.BytesIO(bytes(size)))
    return out.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    """A hand-made archive member (no content), for attacks."""
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


def untar_gz(data: bytes) -> dict[str, bytes | None]:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as archive:
        return {
            member.name: (archive.extractfile(member).read() if member.isfile() else None)  # type: ignore[union-attr]
            for member in archive
        }


def run_body(*command: str, **fields: object) -> dict[str, object]:
    """A /run body on the local test image, which no registry has: pull_policy never."""
    body: dict[str, object] = {"image": TEST_IMAGE, "pull_policy": "never"}
    if command:
        body["command"] = list(command)
    body.update(fields)
    return body


# ---- runners served for a test ----------------------------------------------------------------


@contextlib.contextmanager
def serving(app: ASGIApp, port: int = 0) -> Iterator[int]:
    """Serve `app` with uvicorn on a loopback port (`port`, or a free one); yields the port,
    already listening (the socket is bound before the server starts, so requests queue until
    it is up)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


Server = Callable[..., contextlib.AbstractContextManager[httpx.Client]]
"""The `server` fixture of tests/docker: `with server(**settings) as client:`."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_runner(
    instance: str,
    port: int,
    mcp_port: int | None = None,
    app: str | None = None,
    stderr: IO[bytes] | None = None,
    **settings: str,
) -> subprocess.Popen[bytes]:
    """`oneoff-runner serve` as its own process, as users run it (or plain `uvicorn <app>`);
    returns once it is healthy. Its stderr goes to `stderr` when given."""
    environment = {
        **os.environ,
        "RUNNER_INSTANCE_ID": instance,
        "RUNNER_PORT": str(port),
        "RUNNER_MCP_PORT": str(mcp_port or free_port()),
        "RUNNER_ALLOWED_REGISTRIES": ",".join(TEST_REGISTRIES),
        "RUNNER_MAX_KEPT_RUNS": str(SUITE_KEPT_RUNS),
        **{f"RUNNER_{key.upper()}": value for key, value in settings.items()},
    }
    command = ["runner.cli.main", "serve", "--log-level", "warning"]
    if app is not None:
        command = ["uvicorn", app, "--port", str(port), "--log-level", "warning"]
    process = subprocess.Popen(
        [sys.executable, "-m", *command],
        cwd=ROOT,
        env=environment,
        stderr=stderr,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)  # polling a process that is starting: nothing to wait on instead
    process.kill()
    pytest.fail("the runner did not start")


def read_until(pipe: IO[bytes], marker: bytes, seconds: float = 60) -> bytes:
    """What a child process writes to `pipe` until `marker` has come (or it closed the pipe, or
    `seconds` passed), read as it arrives: from the file descriptor, which a buffered reader
    would hide from select."""
    seen = b""
    deadline = time.monotonic() + seconds
    while marker not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([pipe], [], [], deadline - time.monotonic())
        chunk = os.read(pipe.fileno(), 65536) if ready else b""
        if ready and not chunk:
            break
        seen += chunk
    return seen


# ---- what runners of this suite have on the engine -----------------------------------------


def until(condition: Callable[[], object], seconds: float) -> None:
    """Polls an outside condition (the engine's state, which no event announces) until it
    holds."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.1)


HELD_ROLES = (LEASE_ROLE, HOSTS_ROLE, POOL_ROLE)
"""What a runner holds on the engine while it lives, beside its runs (its warm pool too)."""


def objects_of(docker_client: docker.DockerClient, instance: str) -> list[tuple[str, str | None]]:
    """(name, role) of every container, then every volume, runners of `instance` have on the
    engine (a container being removed may have no name left: then its id). With
    RUNNER_WARM_POOL, a pool container a run took (renamed to the run's name) is a run's."""
    label = {"label": f"{INSTANCE}={instance}"}
    containers = docker_client.api.containers(all=True, filters=label)
    volumes = docker_client.api.volumes(filters=label).get("Volumes") or []
    found = [
        ((item.get("Names") or [item["Id"]])[0].lstrip("/"), (item.get("Labels") or {}).get(ROLE))
        for item in containers
    ]
    taken = [(name, RUN_ROLE if taken_warm(name, role) else role) for name, role in found]
    return taken + [(item["Name"], (item.get("Labels") or {}).get(ROLE)) for item in volumes]


def taken_warm(name: str, role: str | None) -> bool:
    """Whether a container of this name and role is a warm pool container a run took (the pool
    renames it to the run's name; one being removed may have only its id)."""
    return role == POOL_ROLE and name.startswith("oneoff-") and not name.startswith("oneoff-pool-")


def run_containers(
    docker_client: docker.DockerClient, run_id: str, *, all_states: bool = True
) -> list[dict[str, Any]]:
    """The run's containers as the engine lists them: those labelled for it, and (with
    RUNNER_WARM_POOL) the warm container it took, which has its name but not its labels."""
    api = docker_client.api
    labelled = api.containers(all=all_states, filters={"label": f"{RUN_ID}={run_id}"})
    named = api.containers(all=all_states, filters={"name": f"oneoff-{run_id}"})
    taken = [
        item
        for item in named
        if item["Names"][0].startswith(f"/oneoff-{run_id}")
        and taken_warm(item["Names"][0][1:], (item.get("Labels") or {}).get(ROLE))
    ]
    return [*labelled, *taken]


def managed_objects(docker_client: docker.DockerClient, instance: str) -> list[str]:
    """What runners of `instance` made for runs (what each holds while it lives, its lease and
    its hosts file, aside; a warm run's claim goes with its container)."""
    return [
        name
        for name, role in objects_of(docker_client, instance)
        if role not in (*HELD_ROLES, CLAIM_ROLE)
    ]


def remove_objects_of(docker_client: docker.DockerClient, instance: str) -> None:
    """Remove whatever runners of `instance` (an id of this suite's) left, leases included."""
    label = {"label": f"{INSTANCE}={instance}"}
    for item in docker_client.api.containers(all=True, filters=label):
        remove_gone(docker_client.api.remove_container, item["Id"], force=True, v=True)
    for item in docker_client.api.volumes(filters=label).get("Volumes") or []:
        remove_gone(docker_client.api.remove_volume, item["Name"], force=True)


def remove_gone(remove: Callable[..., object], name: str, **options: object) -> None:
    """Remove, taking gone already, or (409) being removed by a runner's reaper, which finishes
    the job (the leak check at the end of the session tells if it does not), as done."""
    try:
        remove(name, **options)
    except docker.errors.APIError as exc:
        if exc.status_code not in (404, 409):
            raise


class LocalClient(TestClient):
    """Starlette's TestClient, calling as a local program does: to `localhost` (its default
    host name, `testserver`, is not one a runner serves: `runner.browsers`)."""

    def __init__(self, app: ASGIApp, **options: Any) -> None:
        super().__init__(app, base_url="http://localhost", **options)
