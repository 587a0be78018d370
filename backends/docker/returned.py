"""Returned paths (`response: true`) out of a run's stopped container, through the engine's
archive API: re-packed as tar.gz for the JSON answer, or streamed as the file's bytes or a
plain tar for the binary path.

What the run left at a path is the run's doing: a symlink, a FIFO, a device, a directory for
a file (`archive_streams`), nothing at all, or a symlink loop (the engine's refusal) is an
`Unreturnable` error of that path, which a run's result carries per path; the run's other
paths and its output come back all the same. Sizes and member counts are the operator's
limits: past them the whole answer is a 413.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import docker
import requests

from backends.docker.errors import engine_errors
from runner import archive_streams, archives
from runner.errors import RunnerError, Unreturnable
from runner.spec import CollectSpec, MountSpec, ReturnedFile

ARCHIVE_CHUNK_BYTES = 1024 * 1024
LEFT_BY_ENGINE = {
    "could not find the file": "nothing at {path}",
    "no such file or directory": "nothing at {path}",
    "too many links": "a symlink loop at {path}",
    "not a directory": "a file where a folder on the way to {path} was",
}
"""The engine's refusals to archive a path that are the run's doing, and what it left."""
Returned = dict[str, tuple[str, bytes]]
Unreturned = dict[str, tuple[str, str]]


def archive_url(api: docker.APIClient, container: str) -> str:
    return f"{api.base_url}/v{api.api_version}/containers/{container}/archive"


@contextmanager
def engine_archive(api: docker.APIClient, container: str, path: str) -> Iterator[Iterator[bytes]]:
    """The engine's tar of `path` in the container, as chunks; the HTTP response is closed on
    exit.

    docker-py's `get_archive` hands out a generator that leaves the response open when it is
    not drained (we stop at size limits), and the engine then will not remove the container
    until the stream ends; so the request is made here, on the client's session.
    """
    # identity: otherwise the engine gzips the stream (slowly) only for us to inflate it
    headers = {"Accept-Encoding": "identity"}
    response = api.get(
        archive_url(api, container), params={"path": path}, stream=True, headers=headers
    )
    try:
        try:
            response.raise_for_status()
        except requests.exceptions.HTTPError as exc:
            raise docker.errors.create_api_error_from_http_exception(exc) from exc
        yield response.iter_content(ARCHIVE_CHUNK_BYTES)
    finally:
        response.close()


class ReturnedPaths:
    def __init__(self, api: Callable[[], docker.APIClient], max_members: int) -> None:
        self.api = api
        self.max_members = max_members

    def returned(self, collect: CollectSpec, container: str) -> tuple[Returned, Unreturned]:
        """Every `response: true` path's content (a file's bytes, a directory's tar.gz), and
        why the others could not be returned."""
        returned: Returned = {}
        unreturned: Unreturned = {}
        budget = collect.max_response_bytes
        members = self._members()
        for mount in collect.returned:
            try:
                chunks = self.stream(container, mount, budget, members)
                content = (
                    archives.gzipped(chunks) if mount.kind == "directory" else b"".join(chunks)
                )
            except Unreturnable as exc:
                unreturned[mount.path] = (mount.kind, exc.message)
                continue
            budget -= len(content)
            returned[mount.path] = (mount.kind, content)
        return returned, unreturned

    def stream(
        self,
        container: str,
        mount: MountSpec,
        limit: int,
        members: archives.Budget | None = None,
    ) -> Iterator[bytes]:
        """A returned path as the engine hands it out: the file's bytes, or a plain tar with
        names relative to the directory; past `limit` bytes or the member budget, a 413;
        Unreturnable (before the first byte) when the run left something else there."""
        members = members or self._members()
        field = f"volumes[{mount.key!r}]"
        with self._reading(container, mount, limit) as reader:
            if mount.kind == "file":
                yield from archive_streams.file_stream(reader, mount.path, field)
            else:
                yield from archive_streams.relative_tar_stream(reader, mount.path, field, members)

    def spooled(
        self, collect: CollectSpec, container: str
    ) -> tuple[dict[str, ReturnedFile], Unreturned]:
        """Every `response: true` path, spooled (to disk past a MiB) so that the container can
        go before the caller has read them, and why the others could not be returned."""
        spooled: dict[str, ReturnedFile] = {}
        unreturned: Unreturned = {}
        budget = collect.max_response_bytes
        members = self._members()
        try:
            for mount in collect.returned:
                spool = archive_streams.spool()
                spooled[mount.path] = (mount.kind, spool)
                try:
                    for chunk in self.stream(container, mount, budget, members):
                        spool.write(chunk)
                except Unreturnable as exc:
                    del spooled[mount.path]
                    spool.close()
                    unreturned[mount.path] = (mount.kind, exc.message)
                    continue
                budget -= spool.tell()
                spool.seek(0)
        except BaseException:
            for _, spool in spooled.values():
                spool.close()
            raise
        return spooled, unreturned

    def _members(self) -> archives.Budget:
        """What one run's returned directories may hold: RUNNER_MAX_ARCHIVE_MEMBERS entries
        (their bytes are bounded as they stream)."""
        return archives.Budget(sys.maxsize, self.max_members)

    @contextmanager
    def _reading(
        self, container: str, mount: MountSpec, limit: int
    ) -> Iterator[archive_streams.ChunkReader]:
        """The engine's tar of a returned path, as a reader that stops at `limit` bytes."""
        field = f"volumes[{mount.key!r}]"
        with (
            engine_errors(f"copying {mount.path} out of the container", _left(mount, field)),
            engine_archive(self.api(), container, mount.path) as chunks,
        ):
            yield archive_streams.ChunkReader(chunks, limit, field)


def _left(mount: MountSpec, field: str) -> Callable[[str], RunnerError | None]:
    """The engine's refusal to archive the path, when the run's doing, as Unreturnable."""

    def translate(message: str) -> RunnerError | None:
        low = message.lower()
        for words, found in LEFT_BY_ENGINE.items():
            if words in low:
                left = found.format(path=mount.path)
                return Unreturnable(
                    f"{field}: the run left {left}; nothing of it is returned", field=field
                )
        return None

    return translate
