"""A named volume's files without a run (`GET`/`PUT /volume/{name}/file...`), and what a volume
holds (its size bound), through the engine's archive API.

Every access goes through a carrier (`content`): a container from the tiny carrier image,
created with the volume at `/v` (read-only for reads), never started, without a network, and
removed afterwards. Paths are walked one part at a time with the engine's stat, and any part
that is a symlink (a run may plant one) is refused: a path never leaves the volume. Should a run
swap a directory for a link between the walk and the copy, the engine resolves it inside the
carrier, whose own files are the empty carrier image's: nothing of the host is reachable.
"""

from __future__ import annotations

import base64
import contextlib
import json
import sys
import tarfile
from collections.abc import Callable, Iterator
from typing import Any, Literal

import docker
from docker.types import Mount

from backends.docker.content import ContentCopier
from backends.docker.errors import engine_errors
from backends.docker.returned import archive_url, engine_archive
from backends.docker.scratch import ENTRY_BYTES, raise_for_status, tree_use
from backends.labels import CARRIER_ROLE, ROLE
from runner import archive_streams, archives
from runner.engine_models import VolumeEntry
from runner.errors import Conflict, IsDirectory, NotFound, PayloadTooLarge

ROOT = "/v"
SYMLINK = 1 << 27
"""Go's `os.ModeSymlink`, in the mode of the engine's stat of a path."""
DIRECTORY = 1 << 31
KINDS: dict[bytes, Literal["file", "directory", "symlink"]] = {
    tarfile.REGTYPE: "file",
    tarfile.DIRTYPE: "directory",
    tarfile.SYMTYPE: "symlink",
}
Stat = dict[str, Any]


def use(entries: int, size: int) -> int:
    """What entries of these bytes use on disk as the volume's bound counts it."""
    return size + ENTRY_BYTES * entries


def listed(
    api: docker.APIClient, container: str, path: str, most: int
) -> tuple[int, list[VolumeEntry]]:
    """What the tree at `path` uses (`scratch.tree_use`) and its entries, relative to it; past
    `most` entries, a 413."""
    found: list[VolumeEntry] = []

    def seen(member: tarfile.TarInfo) -> None:
        if "/" not in member.name:
            return  # the tree's top: `path` itself
        found.append(_entry(member))
        if len(found) > most:
            raise PayloadTooLarge(
                f"path: more than {most} entries (RUNNER_MAX_ARCHIVE_MEMBERS); list a directory "
                "further down",
                field="path",
            )

    return tree_use(api, container, path, sys.maxsize, seen), found


def _entry(member: tarfile.TarInfo) -> VolumeEntry:
    name = member.name.split("/", 1)[1] if "/" in member.name else member.name
    return VolumeEntry(
        path=name,
        type=KINDS.get(member.type, "other"),
        size=member.size if member.isfile() else 0,
        mode=f"{member.mode & 0o7777:04o}",
    )


class VolumeFiles:
    def __init__(
        self,
        content: ContentCopier,
        labels: Callable[[str], dict[str, str]],
        remove: Callable[[str | None, str | None], object],
        max_members: int,
    ) -> None:
        self._content = content
        self._labels = labels
        self._remove = remove
        self._max_members = max_members

    def listing(self, volume: str, tenant: str, path: str) -> tuple[int, list[VolumeEntry]]:
        """What the volume holds under `path`: (its use, its entries)."""
        with self._carrier(volume, tenant, read_only=True) as carrier:
            if self._walk(carrier, path, volume) is None:
                raise _nothing_at(path, volume)
            with engine_errors("listing the volume's files"):
                return listed(self._api, carrier, _at(path), self._max_members)

    def read(self, volume: str, tenant: str, path: str, max_bytes: int) -> bytes:
        """One file's bytes: 409 for a directory, 413 past `max_bytes`."""
        with self._carrier(volume, tenant, read_only=True) as carrier:
            found = self._walk(carrier, path, volume)
            if found is None:
                raise _nothing_at(path, volume)
            if not path or found["mode"] & DIRECTORY:
                raise IsDirectory(
                    f"path: {path or '/'!r} is a directory; list it (GET /volume/{{name}}/files,"
                    " list_volume_files) and read a file in it",
                    field="path",
                )
            if int(found.get("size", 0)) > max_bytes:
                raise PayloadTooLarge(
                    f"path: {path!r} holds {found['size']} bytes, past what one read returns "
                    f"(RUNNER_MAX_RESPONSE_BYTES: {max_bytes}); read it in a run instead",
                    field="path",
                )
            with (
                engine_errors("reading the volume's file"),
                engine_archive(self._api, carrier, _at(path)) as chunks,
            ):
                reader = archive_streams.ChunkReader(chunks, max_bytes + 2**20, "path")
                return b"".join(archive_streams.file_stream(reader, path, "path"))

    def write(self, volume: str, tenant: str, path: str, data: bytes, mode: int, limit: int) -> int:
        """Write one file (its missing parent directories made); the volume's use after it.
        413, writing nothing, when that would be past `limit` (RUNNER_MAX_VOLUME_BYTES)."""
        with self._carrier(volume, tenant, read_only=False) as carrier:
            found = self._walk(carrier, path, volume, missing_ok=True)
            if found is not None and found["mode"] & DIRECTORY:
                raise Conflict(f"path: {path!r} is a directory; name a file", field="path")
            with engine_errors("measuring the volume"):
                used = tree_use(self._api, carrier, ROOT, limit + use(1, len(data)))
            replaced = use(1, int(found["size"])) if found is not None else 0
            after = used - replaced + use(1, len(data))
            if after > limit:
                raise PayloadTooLarge(
                    f"content: volume {volume!r} would use {after} bytes, past its bound "
                    f"(RUNNER_MAX_VOLUME_BYTES: {limit}); remove files from it first",
                    field="content",
                )
            with engine_errors("writing into the volume"):
                self._api.put_archive(carrier, ROOT, archives.tar_of([(path, data, mode)]))
            return after

    @property
    def _api(self) -> docker.APIClient:
        return self._content.api()

    @contextlib.contextmanager
    def _carrier(self, volume: str, tenant: str, *, read_only: bool) -> Iterator[str]:
        """A carrier with the volume at `/v`, removed on exit (by the reaper if the engine
        fails then)."""
        mounts = [Mount(ROOT, volume, type="volume", read_only=read_only)]
        labels = {**self._labels(tenant), ROLE: CARRIER_ROLE}
        with engine_errors("preparing access to the volume"):
            carrier = self._content.carrier(labels, mounts=mounts)
        try:
            yield carrier
        finally:
            self._remove(carrier, None)

    def _walk(
        self, carrier: str, path: str, volume: str, *, missing_ok: bool = False
    ) -> Stat | None:
        """The engine's stat of `path`, each part on the way judged first: a symlink is
        refused, a file on the way is a 409; None when something on the way is missing."""
        found: Stat = {"mode": DIRECTORY, "size": 0}
        parts = path.split("/") if path else []
        for depth in range(1, len(parts) + 1):
            part = "/".join(parts[:depth])
            if not found["mode"] & DIRECTORY:
                raise Conflict(f"path: {parts[depth - 2]!r} on the way is a file", field="path")
            stat = self._stat(carrier, part)
            if stat is None:
                return None
            if stat["mode"] & SYMLINK:
                raise Conflict(
                    f"path: {part!r} in volume {volume!r} is a symbolic link (a run made it); "
                    "paths never follow links: name the file it points to, or replace it",
                    field="path",
                )
            found = stat
        return found

    def _stat(self, carrier: str, path: str) -> Stat | None:
        api = self._api
        with engine_errors("looking at the volume's file"):
            response = api.head(archive_url(api, carrier), params={"path": _at(path)})
        if response.status_code == 404:
            return None
        header = response.headers.get("X-Docker-Container-Path-Stat", "")
        if response.status_code != 200 or not header:
            with engine_errors("looking at the volume's file"):
                raise_for_status(response)
            raise NotFound(f"path: {path!r} could not be looked at", field="path")
        stat: Stat = json.loads(base64.b64decode(header))
        return stat


def _at(path: str) -> str:
    return f"{ROOT}/{path}" if path else ROOT


def _nothing_at(path: str, volume: str) -> NotFound:
    return NotFound(f"path: nothing at {path!r} in volume {volume!r}", field="path")
