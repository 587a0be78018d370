"""Small builders shared by the tests: archives and request bodies as a caller makes them."""

from __future__ import annotations

import base64
import io
import os
import tarfile
import uuid

TEST_IMAGE = os.environ.get("RUNNER_TEST_IMAGE", "oneoff-test/busybox:latest")
PUBLIC_REGISTRY = os.environ.get("RUNNER_TEST_PUBLIC_REGISTRY", "127.0.0.1:5001")
PRIVATE_REGISTRY = os.environ.get("RUNNER_TEST_REGISTRY", "127.0.0.1:5000")
REGISTRY_USER = os.environ.get("RUNNER_TEST_REGISTRY_USER", "tester")
REGISTRY_PASSWORD = os.environ.get("RUNNER_TEST_REGISTRY_PASSWORD", "s3cret-pass")
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
